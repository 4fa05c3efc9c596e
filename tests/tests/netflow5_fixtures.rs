//! NetFlow v5 datagrams through the XDP program and the userspace decoder:
//! same verdicts and counters in both, and the counters each case expects.

use std::net::IpAddr;

use edge_sensor::telemetry::Verdict;
use edge_sensor_common::{Class, ParseError};
use edge_sensor_tests::{engines::Both, frame::*};

const EXPORTER: [u8; 4] = [198, 18, 5, 1];

/// One v5 flow record.
struct Flow {
    dst: [u8; 4],
    packets: u32,
    octets: u32,
    proto: u8,
    flags: u8,
}

/// A v5 datagram: header claiming `count` records (None: the real number),
/// flow sequence `seq`, sampling interval field `sampling`, engine 3/7.
fn v5(flows: &[Flow], count: Option<u16>, seq: u32, sampling: u16) -> Vec<u8> {
    let mut d = Vec::new();
    d.extend(5u16.to_be_bytes());
    d.extend(count.unwrap_or(flows.len() as u16).to_be_bytes());
    d.extend(1000u32.to_be_bytes()); // sys_uptime
    d.extend(1_700_000_000u32.to_be_bytes());
    d.extend(0u32.to_be_bytes());
    d.extend(seq.to_be_bytes());
    d.extend([3, 7]);
    d.extend(sampling.to_be_bytes());
    for f in flows {
        d.extend([192, 0, 2, 1]);
        d.extend(f.dst);
        d.extend([0; 4]); // nexthop
        d.extend([0; 4]); // input, output
        d.extend(f.packets.to_be_bytes());
        d.extend(f.octets.to_be_bytes());
        d.extend([0; 8]); // first, last
        d.extend(1234u16.to_be_bytes());
        d.extend(80u16.to_be_bytes());
        d.extend([0, f.flags, f.proto, 0]);
        d.extend([0; 8]); // AS, masks, pad
    }
    d
}

fn frame(payload: &[u8]) -> Vec<u8> {
    ethernet(
        &[],
        ETH_P_IPV4,
        &ipv4(
            EXPORTER,
            [198, 18, 5, 2],
            IPPROTO_UDP,
            &udp(9000, 2055, payload),
        ),
    )
}

fn flow(dst: [u8; 4], packets: u32, octets: u32, proto: u8, flags: u8) -> Flow {
    Flow {
        dst,
        packets,
        octets,
        proto,
        flags,
    }
}

#[test]
fn records_are_counted_scaled_by_the_sampling_interval() {
    let mut both = Both::new();
    let flows = [
        flow([203, 0, 113, 1], 10, 600, 6, 0x02), // SYN only
        flow([203, 0, 113, 1], 5, 300, 6, 0x12),  // SYN-ACK: TCP, not SYN
        flow([203, 0, 113, 2], 100, 9000, 17, 0), // UDP
        flow([203, 0, 113, 3], 1, 84, 1, 0),      // ICMP
        flow([203, 0, 113, 3], 2, 100, 47, 0),    // GRE: other
    ];
    // 0x4064: mode 1 (deterministic), interval 100.
    let verdict = both.frame("sampled 1:100", &frame(&v5(&flows, None, 1, 0x4064)));
    assert_eq!(verdict, Some(Verdict::Drop));
    let report = both.reports("sampled 1:100");
    let get = |ip: [u8; 4], c: Class| {
        let s = report.destinations[&IpAddr::from(ip)];
        (s.packets[c as usize], s.bytes[c as usize])
    };
    assert_eq!(get([203, 0, 113, 1], Class::All), (1500, 90_000));
    assert_eq!(get([203, 0, 113, 1], Class::TcpSyn), (1000, 60_000));
    assert_eq!(get([203, 0, 113, 2], Class::Udp), (10_000, 900_000));
    assert_eq!(get([203, 0, 113, 3], Class::Icmp), (100, 8_400));
    assert_eq!(get([203, 0, 113, 3], Class::Other), (200, 10_000));
    let (id, t) = report.exporters.iter().next().unwrap();
    assert_eq!(
        (id.ip, id.sub_agent, id.protocol()),
        (IpAddr::from(EXPORTER), 0x0307, "netflow")
    );
    assert_eq!((t.stats.records, t.stats.error_total()), (5, 0));
}

#[test]
fn interval_zero_means_unsampled() {
    let mut both = Both::new();
    both.frame(
        "unsampled",
        &frame(&v5(&[flow([203, 0, 113, 9], 7, 700, 17, 0)], None, 1, 0)),
    );
    let report = both.reports("unsampled");
    assert_eq!(
        report.destinations[&IpAddr::from([203, 0, 113, 9])].packets[0],
        7
    );
}

#[test]
fn sequence_numbers_count_flow_records() {
    let mut both = Both::new();
    let three = [
        flow([203, 0, 113, 1], 1, 1, 6, 0),
        flow([203, 0, 113, 1], 1, 1, 6, 0),
        flow([203, 0, 113, 1], 1, 1, 6, 0),
    ];
    both.frame("seq 0, 3 flows", &frame(&v5(&three, None, 0, 0)));
    both.frame("seq 3, in order", &frame(&v5(&three, None, 3, 0)));
    both.frame("seq 10: flows 6..9 lost", &frame(&v5(&three, None, 10, 0)));
    both.frame("seq 2: went back", &frame(&v5(&three, None, 2, 0)));
    let report = both.reports("sequence");
    let t = report.exporters.values().next().unwrap();
    assert_eq!((t.stats.sequence_gaps, t.stats.sequence_resets), (4, 1));
}

#[test]
fn malformed_datagrams_are_counted_and_passed_on() {
    let one = [flow([203, 0, 113, 1], 1, 60, 6, 0)];
    let good = v5(&one, None, 1, 0);
    let cases: Vec<(&str, Vec<u8>, ParseError, u64)> = vec![
        (
            "header cut at 20 bytes",
            good[..20].to_vec(),
            ParseError::TruncatedHeader,
            0,
        ),
        (
            "count says 2, one present",
            v5(&one, Some(2), 1, 0),
            ParseError::MissingSamples,
            1,
        ),
        (
            "count says 31",
            v5(&one, Some(31), 1, 0),
            ParseError::TooManySamples,
            1,
        ),
        (
            "record cut short",
            good[..good.len() - 1].to_vec(),
            ParseError::MissingSamples,
            0,
        ),
        (
            "trailing bytes",
            [good.clone(), vec![0; 10]].concat(),
            ParseError::TrailingBytes,
            1,
        ),
    ];
    for (name, payload, reason, counted) in cases {
        let mut both = Both::new();
        assert_eq!(
            both.frame(name, &frame(&payload)),
            Some(Verdict::Pass),
            "{name}"
        );
        let report = both.reports(name);
        let t = report.exporters.values().next().unwrap();
        assert_eq!(
            t.stats.errors[reason as usize], 1,
            "{name}: {:?}",
            t.stats.errors
        );
        assert_eq!(t.stats.error_total(), 1, "{name}");
        let packets: u64 = report.destinations.values().map(|s| s.packets[0]).sum();
        assert_eq!(packets, counted, "{name}: packets counted");
    }
    // Not version 5 (v9/IPFIX until their parsers land, or junk): counted
    // per source, passed on, never parsed as v5.
    let mut both = Both::new();
    let mut v9 = good.clone();
    v9[1] = 9;
    assert_eq!(both.frame("v9", &frame(&v9)), Some(Verdict::Pass));
    assert!(both.reports("v9").destinations.is_empty());
}

#[test]
fn every_truncation_agrees() {
    let flows: Vec<Flow> = (0..4)
        .map(|i| flow([203, 0, 113, i], 3, 300, 17, 0))
        .collect();
    let good = v5(&flows, None, 1, 0x0002);
    let mut both = Both::new();
    for cut in 0..good.len() {
        let name = format!("cut at {cut}");
        assert_eq!(
            both.frame(&name, &frame(&good[..cut])),
            Some(Verdict::Pass),
            "{name}"
        );
    }
    both.reports("after every cut");
}
