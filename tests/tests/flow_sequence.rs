//! NetFlow v9 and IPFIX sequence numbers, in both engines: v9 numbers
//! datagrams (RFC 3954 §5.1), IPFIX numbers data records (RFC 7011 §3.1).
//! The kernel checks every datagram, taken or passed on; after an IPFIX
//! datagram it passed (its records uncounted there), the next one sets a new
//! baseline instead of counting a false gap.

use std::net::IpAddr;

use edge_sensor::counters::ExporterId;
use edge_sensor_common::{IPFIX_PORT, NETFLOW_PORT, TelemetryKind};
use edge_sensor_tests::{engines::Both, frame::*};

const EXPORTER: [u8; 4] = [192, 0, 2, 9];
const DOMAIN: u32 = 77;

fn frame(port: u16, payload: &[u8]) -> Vec<u8> {
    ethernet(
        &[],
        ETH_P_IPV4,
        &ipv4(EXPORTER, [192, 0, 2, 2], 17, &udp(40000, port, payload)),
    )
}

fn set(id: u16, body: &[u8]) -> Vec<u8> {
    let mut s = id.to_be_bytes().to_vec();
    s.extend(((body.len() + 4) as u16).to_be_bytes());
    s.extend(body);
    s
}

/// Template 256: destinationIPv4Address, packetDeltaCount (4).
fn template_body() -> Vec<u8> {
    vec![1, 0, 0, 2, 0, 12, 0, 4, 0, 2, 0, 4]
}

fn records(n: u32) -> Vec<u8> {
    let mut b = Vec::new();
    for i in 0..n {
        b.extend([203, 0, 113, 1 + i as u8]);
        b.extend(5u32.to_be_bytes());
    }
    set(256, &b)
}

fn ipfix(seq: u32, sets: &[Vec<u8>]) -> Vec<u8> {
    let mut m = vec![0, 10, 0, 0, 0x65, 0, 0, 0];
    m.extend(seq.to_be_bytes());
    m.extend(DOMAIN.to_be_bytes());
    for s in sets {
        m.extend(s);
    }
    let len = (m.len() as u16).to_be_bytes();
    m[2..4].copy_from_slice(&len);
    frame(IPFIX_PORT, &m)
}

fn v9(seq: u32, uptime: u32, sets: &[Vec<u8>]) -> Vec<u8> {
    let mut m = vec![0, 9, 0, sets.len() as u8];
    m.extend(uptime.to_be_bytes());
    m.extend(0x6500_0000u32.to_be_bytes());
    m.extend(seq.to_be_bytes());
    m.extend(DOMAIN.to_be_bytes());
    for s in sets {
        m.extend(s);
    }
    frame(NETFLOW_PORT, &m)
}

fn gaps_and_resets(both: &Both, what: &str, port: u16, kind: TelemetryKind) -> (u64, u64) {
    let report = both.reports(what);
    let id = ExporterId {
        ip: IpAddr::from(EXPORTER),
        sub_agent: DOMAIN,
        port,
        kind: kind as u8,
    };
    let s = &report.exporters.get(&id).expect("the exporter's row").stats;
    (s.sequence_gaps, s.sequence_resets)
}

#[test]
fn ipfix_counts_records_and_resynchronises_after_a_passed_datagram() {
    let mut both = Both::new();
    let kind = TelemetryKind::Ipfix;
    // Template and data together: passed on (the kernel has no plan yet).
    both.frame(
        "template+data",
        &ipfix(0, &[set(2, &template_body()), records(2)]),
    );
    // Taken by the kernel now; the baseline is set here (after a passed one).
    both.frame("data 2", &ipfix(2, &[records(3)]));
    assert_eq!(gaps_and_resets(&both, "baseline", IPFIX_PORT, kind), (0, 0));
    both.frame("data 5", &ipfix(5, &[records(2), records(1)]));
    assert_eq!(gaps_and_resets(&both, "in order", IPFIX_PORT, kind), (0, 0));
    // 2 records lost (expected 8: records, not datagrams, are numbered).
    both.frame("data 10", &ipfix(10, &[records(2)]));
    assert_eq!(gaps_and_resets(&both, "gap", IPFIX_PORT, kind), (2, 0));
    // The exporter restarts: the sequence goes back.
    both.frame("restart", &ipfix(0, &[records(1)]));
    assert_eq!(gaps_and_resets(&both, "reset", IPFIX_PORT, kind), (2, 1));
}

#[test]
fn netflow9_counts_datagrams_taken_or_passed() {
    let mut both = Both::new();
    let kind = TelemetryKind::Netflow;
    both.frame("template", &v9(100, 1000, &[set(0, &template_body())]));
    both.frame("data", &v9(101, 2000, &[records(2)]));
    // Two datagrams lost (102, 103); one of them would have been passed.
    both.frame("after a gap", &v9(104, 3000, &[records(1)]));
    assert_eq!(gaps_and_resets(&both, "gap", NETFLOW_PORT, kind), (2, 0));
    both.frame(
        "template again",
        &v9(105, 4000, &[set(0, &template_body())]),
    );
    both.frame("data again", &v9(106, 5000, &[records(1)]));
    assert_eq!(
        gaps_and_resets(&both, "in order", NETFLOW_PORT, kind),
        (2, 0)
    );
}
