//! sFlow datagrams through the real XDP program and the userspace decoder,
//! case by case: each must give the same verdict and counters in both, and
//! the counters each case is written for.

use std::net::IpAddr;

use edge_sensor::{counters::Report, telemetry::Verdict};
use edge_sensor_common::{Class, ParseError};
use edge_sensor_tests::{
    engines::Both,
    frame::*,
    sflow::{Datagram, Record, Sample, V4_SAMPLES_OFF},
};

const EXPORTER: [u8; 4] = [198, 18, 7, 1];
const COLLECTOR: [u8; 4] = [198, 18, 7, 2];
const VICTIM: [u8; 4] = [203, 0, 113, 9];
const VICTIM6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x99];
const ATTACKER: [u8; 4] = [192, 0, 2, 66];

/// An sFlow datagram in a frame from the exporter to the collector.
fn sflow_frame(payload: &[u8]) -> Vec<u8> {
    ethernet(
        &[],
        ETH_P_IPV4,
        &ipv4(EXPORTER, COLLECTOR, IPPROTO_UDP, &udp(40000, 6343, payload)),
    )
}

/// A sampled TCP packet to the victim with `flags`, `len` bytes of payload.
fn tcp_packet(flags: u8, len: usize) -> Vec<u8> {
    let mut tcp = vec![0u8; 20 + len];
    tcp[0..2].copy_from_slice(&1234u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    ethernet(&[], ETH_P_IPV4, &ipv4(ATTACKER, VICTIM, IPPROTO_TCP, &tcp))
}

fn udp_packet(vlans: &[(u16, u16)], len: usize) -> Vec<u8> {
    ethernet(
        vlans,
        ETH_P_IPV4,
        &ipv4(
            ATTACKER,
            VICTIM,
            IPPROTO_UDP,
            &udp(123, 4444, &vec![7; len]),
        ),
    )
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

/// What a case must count.
struct Expect {
    /// (destination, class, packets, bytes) that must hold.
    dst: Vec<(IpAddr, Class, u64, u64)>,
    /// Errors that must have been counted (reason, count).
    errors: Vec<(ParseError, u64)>,
    verdict: Verdict,
}

fn counted(dst: impl Into<IpAddr>, classes: &[Class], packets: u64, bytes: u64) -> Expect {
    let dst = dst.into();
    let mut v = vec![(dst, Class::All, packets, bytes)];
    v.extend(classes.iter().map(|c| (dst, *c, packets, bytes)));
    Expect {
        dst: v,
        errors: vec![],
        verdict: Verdict::Drop,
    }
}

fn error(reason: ParseError, verdict: Verdict) -> Expect {
    Expect {
        dst: vec![],
        errors: vec![(reason, 1)],
        verdict,
    }
}

fn check(name: &str, payload: &[u8], expect: &Expect) {
    let mut both = Both::new();
    let verdict = both.frame(name, &sflow_frame(payload));
    assert_eq!(verdict, Some(expect.verdict), "{name}: verdict");
    let report = both.reports(name);
    for &(ip, class, packets, bytes) in &expect.dst {
        let s = report
            .destinations
            .get(&ip)
            .unwrap_or_else(|| panic!("{name}: {ip} not counted: {report:?}"));
        assert_eq!(
            (s.packets[class as usize], s.bytes[class as usize]),
            (packets, bytes),
            "{name}: {ip} {}",
            class.name()
        );
    }
    if expect.dst.is_empty() {
        assert!(
            report.destinations.is_empty(),
            "{name}: counted {:?}",
            report.destinations
        );
    }
    let errors = errors(&report);
    for &(reason, n) in &expect.errors {
        assert_eq!(
            errors[reason as usize],
            n,
            "{name}: {} errors: {errors:?}",
            reason.name()
        );
    }
    let expected_total: u64 = expect.errors.iter().map(|e| e.1).sum();
    assert_eq!(
        errors.iter().sum::<u64>(),
        expected_total,
        "{name}: errors {errors:?}"
    );
}

fn errors(report: &Report) -> [u64; ParseError::COUNT] {
    let mut all = [0; ParseError::COUNT];
    for t in report.exporters.values() {
        for (a, e) in all.iter_mut().zip(t.stats.errors) {
            *a += e;
        }
    }
    all
}

fn one(rate: u32, records: Vec<Record>) -> Vec<u8> {
    Datagram::new(1, vec![Sample::flow(rate, records)]).encode()
}

#[test]
fn well_formed_samples_are_counted_by_destination_and_class() {
    let syn = tcp_packet(SYN, 0);
    let syn_len = syn.len() as u64; // frame_length - stripped = the frame
    let udp_pkt = udp_packet(&[], 100);
    let ext_switch = Record::Other {
        format: 1001,
        body: vec![0; 16],
    };
    let v6_udp = ethernet(
        &[],
        ETH_P_IPV6,
        &ipv6(
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            VICTIM6,
            IPPROTO_UDP,
            &udp(5, 6, &[0; 50]),
        ),
    );
    let v6_frag = {
        let frag_hdr = [IPPROTO_UDP, 0, 0, 1, 0, 0, 0, 42]; // offset 0, M set
        let mut body = frag_hdr.to_vec();
        body.extend(udp(5, 6, &[0; 30]));
        let hop = [44u8, 0, 1, 4, 0, 0, 0, 0];
        let mut chain = hop.to_vec();
        chain.extend(body);
        ethernet(
            &[],
            ETH_P_IPV6,
            &ipv6(
                [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                VICTIM6,
                0,
                &chain,
            ),
        )
    };
    let frag_later = ethernet(
        &[],
        ETH_P_IPV4,
        &ipv4_with(ATTACKER, VICTIM, IPPROTO_TCP, 0x00b9, &[0; 64]),
    );
    let mpls = {
        let ip = ipv4(ATTACKER, VICTIM, IPPROTO_UDP, &udp(1, 2, &[0; 10]));
        let mut labels = vec![0x00, 0x01, 0x00, 0x40, 0x00, 0x02, 0x01, 0x40]; // 16, 32 (bottom)
        labels.extend(ip);
        ethernet(&[], 0x8847, &labels)
    };
    let icmp6 = ethernet(
        &[],
        ETH_P_IPV6,
        &ipv6(
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            VICTIM6,
            58,
            &[128, 0, 0, 0, 0, 1, 0, 1],
        ),
    );
    let arp = ethernet(&[], ETH_P_ARP, &[0u8; 28]);
    let raw_ip = ipv4(ATTACKER, VICTIM, IPPROTO_UDP, &udp(1, 2, &[0; 20]));

    let cases: Vec<(&str, Vec<u8>, Expect)> = vec![
        (
            "TCP SYN, raw Ethernet header, rate 100",
            one(100, vec![ext_switch.clone(), Record::ethernet(&syn, 128)]),
            counted(VICTIM, &[Class::Tcp, Class::TcpSyn], 100, 100 * syn_len),
        ),
        (
            "SYN-ACK is TCP but not SYN",
            one(10, vec![Record::ethernet(&tcp_packet(SYN | ACK, 0), 128)]),
            Expect {
                dst: vec![
                    (VICTIM.into(), Class::Tcp, 10, 10 * syn_len),
                    (VICTIM.into(), Class::TcpSyn, 0, 0),
                ],
                errors: vec![],
                verdict: Verdict::Drop,
            },
        ),
        (
            "UDP, header cut at 64 bytes: length from frame_length",
            one(1000, vec![Record::ethernet(&udp_pkt, 64)]),
            counted(VICTIM, &[Class::Udp], 1000, 1000 * udp_pkt.len() as u64),
        ),
        (
            "expanded flow sample",
            Datagram::new(
                1,
                vec![Sample::Flow {
                    expanded: true,
                    rate: 7,
                    drops: 0,
                    records: vec![Record::ethernet(&udp_pkt, 128)],
                }],
            )
            .encode(),
            counted(VICTIM, &[Class::Udp], 7, 7 * udp_pkt.len() as u64),
        ),
        (
            "IPv6 agent",
            {
                let mut d = Datagram::new(
                    1,
                    vec![Sample::flow(2, vec![Record::ethernet(&udp_pkt, 128)])],
                );
                d.agent = IpAddr::from(VICTIM6);
                d.encode()
            },
            counted(VICTIM, &[Class::Udp], 2, 2 * udp_pkt.len() as u64),
        ),
        (
            "counter sample skipped, flow sample counted",
            Datagram::new(
                1,
                vec![
                    Sample::Other {
                        format: 2,
                        body: vec![0; 100],
                    },
                    Sample::flow(3, vec![Record::ethernet(&udp_pkt, 128)]),
                ],
            )
            .encode(),
            counted(VICTIM, &[Class::Udp], 3, 3 * udp_pkt.len() as u64),
        ),
        (
            "other enterprise's sample skipped",
            Datagram::new(
                1,
                vec![
                    Sample::Other {
                        format: (4413 << 12) | 1,
                        body: vec![1; 40],
                    },
                    Sample::flow(3, vec![Record::ethernet(&udp_pkt, 128)]),
                ],
            )
            .encode(),
            counted(VICTIM, &[Class::Udp], 3, 3 * udp_pkt.len() as u64),
        ),
        (
            "unknown records skipped",
            one(
                5,
                vec![
                    Record::Other {
                        format: (9 << 12) | 1,
                        body: vec![9; 12],
                    },
                    Record::Other {
                        format: 1002,
                        body: vec![0; 16],
                    },
                    Record::ethernet(&udp_pkt, 128),
                ],
            ),
            counted(VICTIM, &[Class::Udp], 5, 5 * udp_pkt.len() as u64),
        ),
        (
            "sampled_ipv4 record alone",
            one(
                50,
                vec![Record::Ipv4 {
                    length: 1500,
                    protocol: 6,
                    dst: VICTIM,
                    tcp_flags: 0x02,
                }],
            ),
            counted(VICTIM, &[Class::Tcp, Class::TcpSyn], 50, 50 * 1500),
        ),
        (
            "sampled_ipv6 record alone",
            one(
                50,
                vec![Record::Ipv6 {
                    length: 1280,
                    protocol: 17,
                    dst: VICTIM6,
                    tcp_flags: 0,
                }],
            ),
            counted(VICTIM6, &[Class::Udp], 50, 50 * 1280),
        ),
        (
            "raw header wins over sampled_ipv4",
            one(
                4,
                vec![
                    Record::Ipv4 {
                        length: 9999,
                        protocol: 1,
                        dst: ATTACKER,
                        tcp_flags: 0,
                    },
                    Record::ethernet(&udp_pkt, 128),
                ],
            ),
            counted(VICTIM, &[Class::Udp], 4, 4 * udp_pkt.len() as u64),
        ),
        (
            "802.1Q tag",
            one(
                1,
                vec![Record::ethernet(&udp_packet(&[(ETH_P_8021Q, 10)], 20), 128)],
            ),
            counted(VICTIM, &[Class::Udp], 1, 14 + 4 + 20 + 8 + 20),
        ),
        (
            "QinQ",
            one(
                1,
                vec![Record::ethernet(
                    &udp_packet(&[(ETH_P_8021AD, 10), (ETH_P_8021Q, 20)], 20),
                    128,
                )],
            ),
            counted(VICTIM, &[Class::Udp], 1, 14 + 8 + 20 + 8 + 20),
        ),
        (
            "four nested VLAN tags",
            one(
                1,
                vec![Record::ethernet(
                    &udp_packet(
                        &[
                            (ETH_P_8021AD, 1),
                            (ETH_P_8021Q, 2),
                            (ETH_P_8021Q, 3),
                            (ETH_P_8021Q, 4),
                        ],
                        20,
                    ),
                    128,
                )],
            ),
            counted(VICTIM, &[Class::Udp], 1, 14 + 16 + 20 + 8 + 20),
        ),
        (
            "MPLS label stack",
            one(1, vec![Record::ethernet(&mpls, 128)]),
            counted(VICTIM, &[Class::Udp], 1, mpls.len() as u64),
        ),
        (
            "IPv6 UDP",
            one(9, vec![Record::ethernet(&v6_udp, 128)]),
            counted(VICTIM6, &[Class::Udp], 9, 9 * v6_udp.len() as u64),
        ),
        (
            "IPv6 hop-by-hop then fragment header",
            one(2, vec![Record::ethernet(&v6_frag, 128)]),
            counted(
                VICTIM6,
                &[Class::Udp, Class::Fragment],
                2,
                2 * v6_frag.len() as u64,
            ),
        ),
        (
            "later IPv4 fragment of TCP: TCP, fragment, not SYN",
            one(3, vec![Record::ethernet(&frag_later, 128)]),
            counted(
                VICTIM,
                &[Class::Tcp, Class::Fragment],
                3,
                3 * frag_later.len() as u64,
            ),
        ),
        (
            "ICMPv6",
            one(1, vec![Record::ethernet(&icmp6, 128)]),
            counted(VICTIM6, &[Class::Icmp], 1, icmp6.len() as u64),
        ),
        (
            "header protocol 11 (raw IPv4)",
            one(
                6,
                vec![Record::Header {
                    protocol: 11,
                    frame_length: 48,
                    stripped: 0,
                    header: raw_ip.clone(),
                }],
            ),
            counted(VICTIM, &[Class::Udp], 6, 6 * 48),
        ),
        (
            "stripped above 64 is not believed",
            one(
                1,
                vec![Record::Header {
                    protocol: 1,
                    frame_length: 1500,
                    stripped: 1372,
                    header: udp_pkt[..128.min(udp_pkt.len())].to_vec(),
                }],
            ),
            counted(VICTIM, &[Class::Udp], 1, 1500),
        ),
        (
            "sampling rate 2^24 is accepted",
            one(1 << 24, vec![Record::ethernet(&udp_pkt, 128)]),
            counted(
                VICTIM,
                &[Class::Udp],
                1 << 24,
                (1 << 24) * udp_pkt.len() as u64,
            ),
        ),
        (
            "trailing bytes: counted, noted, passed on",
            {
                let mut d = one(1, vec![Record::ethernet(&udp_pkt, 128)]);
                d.extend([0; 8]);
                d
            },
            Expect {
                dst: vec![(VICTIM.into(), Class::Udp, 1, udp_pkt.len() as u64)],
                errors: vec![(ParseError::TrailingBytes, 1)],
                verdict: Verdict::Pass,
            },
        ),
        (
            "ARP: no destination",
            one(1, vec![Record::ethernet(&arp, 128)]),
            error(ParseError::NoDestination, Verdict::Drop),
        ),
        (
            "header protocol 13 (MPLS): no destination",
            one(
                1,
                vec![Record::Header {
                    protocol: 13,
                    frame_length: 60,
                    stripped: 0,
                    header: vec![0; 40],
                }],
            ),
            error(ParseError::NoDestination, Verdict::Drop),
        ),
        (
            "header cut before the destination",
            one(1, vec![Record::ethernet(&udp_pkt, 14 + 18)]),
            error(ParseError::NoDestination, Verdict::Drop),
        ),
        (
            "no records",
            one(1, vec![]),
            error(ParseError::NoDestination, Verdict::Drop),
        ),
    ];
    for (name, payload, expect) in &cases {
        check(name, payload, expect);
    }
}

#[test]
fn malformed_datagrams_are_counted_by_reason_and_passed_on() {
    let udp = udp_packet(&[], 40);
    let good = one(10, vec![Record::ethernet(&udp, 128)]);
    let patch = |at: usize, word: u32| {
        let mut d = good.clone();
        d[at..at + 4].copy_from_slice(&word.to_be_bytes());
        d
    };
    let s = V4_SAMPLES_OFF; // first sample
    let r = s + 8 + 32; // first record
    let cases: Vec<(&str, Vec<u8>, Expect)> = vec![
        (
            "version 4",
            patch(0, 4),
            error(ParseError::BadVersion, Verdict::Pass),
        ),
        (
            "agent address type 3",
            patch(4, 3),
            error(ParseError::BadAgentAddress, Verdict::Pass),
        ),
        (
            "empty datagram",
            vec![],
            error(ParseError::TruncatedHeader, Verdict::Pass),
        ),
        (
            "sample length past the datagram",
            patch(s + 4, 10_000),
            error(ParseError::BadSampleLength, Verdict::Pass),
        ),
        (
            "sample length 1 (pmacct 1.7.7 IPv6 bug)",
            patch(s + 4, 1),
            error(ParseError::BadSampleLength, Verdict::Pass),
        ),
        (
            "more samples announced than present",
            patch(24, 3),
            Expect {
                dst: vec![(VICTIM.into(), Class::All, 10, 10 * udp.len() as u64)],
                errors: vec![(ParseError::MissingSamples, 1)],
                verdict: Verdict::Pass,
            },
        ),
        (
            "record length past the sample",
            patch(r + 4, 5000),
            error(ParseError::BadRecordLength, Verdict::Pass),
        ),
        (
            "more records announced than present",
            patch(s + 8 + 28, 2),
            error(ParseError::BadRecordLength, Verdict::Pass),
        ),
        (
            "header_length past the record",
            patch(r + 8 + 12, 4000),
            error(ParseError::BadRecordLength, Verdict::Pass),
        ),
        (
            "sampling rate 0",
            one(0, vec![Record::ethernet(&udp, 128)]),
            error(ParseError::ZeroSamplingRate, Verdict::Pass),
        ),
        (
            "sampling rate 2^24 + 1",
            one((1 << 24) + 1, vec![Record::ethernet(&udp, 128)]),
            error(ParseError::SamplingRateTooHigh, Verdict::Pass),
        ),
        (
            "40 records, more than walked",
            one(1, {
                let mut v = vec![Record::ethernet(&udp, 128)];
                v.extend(vec![
                    Record::Other {
                        format: 1001,
                        body: vec![]
                    };
                    39
                ]);
                v
            }),
            Expect {
                dst: vec![(VICTIM.into(), Class::All, 1, udp.len() as u64)],
                errors: vec![(ParseError::TooManyRecords, 1)],
                verdict: Verdict::Pass,
            },
        ),
        (
            "sampled_ipv4 record too short",
            one(
                1,
                vec![Record::Other {
                    format: 3,
                    body: vec![0; 28],
                }],
            ),
            error(ParseError::BadRecordLength, Verdict::Pass),
        ),
        (
            "sampled_ipv6 record too short",
            one(
                1,
                vec![Record::Other {
                    format: 4,
                    body: vec![0; 52],
                }],
            ),
            error(ParseError::BadRecordLength, Verdict::Pass),
        ),
        (
            "flow sample shorter than its fixed part",
            Datagram::new(
                1,
                vec![Sample::Other {
                    format: 1,
                    body: vec![0; 28],
                }],
            )
            .encode(),
            error(ParseError::BadSampleLength, Verdict::Pass),
        ),
        (
            "expanded sample shorter than its fixed part",
            Datagram::new(
                1,
                vec![Sample::Other {
                    format: 3,
                    body: vec![0; 40],
                }],
            )
            .encode(),
            error(ParseError::BadSampleLength, Verdict::Pass),
        ),
    ];
    for (name, payload, expect) in &cases {
        check(name, payload, expect);
    }
}

/// Cut at every byte: both engines agree, nothing is counted twice, and no
/// cut datagram is dropped as if it had been fully read.
#[test]
fn every_truncation_agrees_and_is_never_consumed() {
    let udp = udp_packet(&[(ETH_P_8021Q, 5)], 40);
    let good = Datagram::new(
        1,
        vec![
            Sample::Other {
                format: 2,
                body: vec![0; 24],
            },
            Sample::flow(
                10,
                vec![
                    Record::Other {
                        format: 1001,
                        body: vec![0; 16],
                    },
                    Record::ethernet(&udp, 128),
                ],
            ),
            Sample::flow(
                20,
                vec![Record::Ipv4 {
                    length: 100,
                    protocol: 17,
                    dst: VICTIM,
                    tcp_flags: 0,
                }],
            ),
        ],
    )
    .encode();
    let mut both = Both::new();
    for cut in 0..good.len() {
        let name = format!("cut at {cut} of {}", good.len());
        let verdict = both.frame(&name, &sflow_frame(&good[..cut]));
        assert_eq!(verdict, Some(Verdict::Pass), "{name}");
        both.reports(&name);
    }
    assert_eq!(
        both.frame("whole", &sflow_frame(&good)),
        Some(Verdict::Drop)
    );
    both.reports("after all cuts");
}

#[test]
fn sequence_gaps_resets_and_agent_drops_are_tracked_per_agent() {
    let udp = udp_packet(&[], 10);
    let mut both = Both::new();
    for seq in [1, 2, 5, 6, 3] {
        let d = Datagram::new(
            seq,
            vec![Sample::Flow {
                expanded: false,
                rate: 1,
                drops: seq * 10,
                records: vec![Record::ethernet(&udp, 128)],
            }],
        );
        both.frame(&format!("seq {seq}"), &sflow_frame(&d.encode()));
    }
    // Another sub-agent of the same agent has its own sequence.
    let mut other = Datagram::new(100, vec![]);
    other.sub_agent = 4;
    both.frame("sub-agent 4", &sflow_frame(&other.encode()));

    let report = both.reports("sequences");
    let agent: IpAddr = EXPORTER.into();
    let main = report
        .exporters
        .iter()
        .find(|(id, _)| id.ip == agent && id.sub_agent == 3)
        .expect("sub-agent 3")
        .1;
    assert_eq!(main.stats.datagrams, 5);
    assert_eq!(main.stats.sequence_gaps, 2, "3 and 4 were lost");
    assert_eq!(main.stats.sequence_resets, 1, "6 -> 3 went backwards");
    assert_eq!(main.agent_drops, 60);
    let sub4 = report
        .exporters
        .iter()
        .find(|(id, _)| id.sub_agent == 4)
        .expect("sub-agent 4")
        .1;
    assert_eq!((sub4.stats.datagrams, sub4.stats.sequence_gaps), (1, 0));
}
