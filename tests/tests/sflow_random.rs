//! Randomized sFlow datagrams, well-formed and mutated (cut, words
//! overwritten, bytes flipped), through the XDP program and the userspace
//! decoder: after every datagram both must hold identical counters and have
//! given the same verdict. A difference shrinks to a minimal datagram.

use std::{cell::RefCell, net::IpAddr};

use edge_sensor_tests::{
    engines::Both,
    frame::*,
    sflow::{Datagram, Record, Sample},
};
use proptest::{
    prelude::*,
    test_runner::{Config, TestRunner},
};

fn packet() -> impl Strategy<Value = Vec<u8>> {
    (
        0usize..6,
        prop::sample::select(vec![IPPROTO_TCP, IPPROTO_UDP, 1, 58, 47]),
        any::<u8>(),
        prop::sample::select(vec![0u16, 0x2000, 0x0011, 0x4000]),
        prop::collection::vec(any::<u8>(), 0..60),
        0u8..4,
    )
        .prop_map(|(shape, proto, flags, frag, payload, vlans)| {
            let mut l4 = vec![0u8; 20];
            l4[12] = 5 << 4;
            l4[13] = flags;
            l4.extend(payload);
            let tags: Vec<(u16, u16)> = (0..vlans)
                .map(|i| (ETH_P_8021Q, u16::from(i) + 1))
                .collect();
            let dst6 = [
                0x20,
                1,
                0xd,
                0xb8,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                shape as u8,
            ];
            match shape {
                0 | 1 => ethernet(
                    &tags,
                    ETH_P_IPV4,
                    &ipv4_with([192, 0, 2, 1], [203, 0, 113, shape as u8], proto, frag, &l4),
                ),
                2 => ethernet(&tags, ETH_P_IPV6, &ipv6([0; 16], dst6, proto, &l4)),
                3 => {
                    let mut chain = vec![proto, 0, (frag >> 8) as u8, frag as u8, 0, 0, 0, 1];
                    chain.extend(&l4);
                    ethernet(&tags, ETH_P_IPV6, &ipv6([0; 16], dst6, 44, &chain))
                }
                4 => {
                    let mut labels = vec![0, 1, 0x01, 64];
                    labels.extend(ipv4([192, 0, 2, 1], [203, 0, 113, 4], proto, &l4));
                    ethernet(&tags, 0x8847, &labels)
                }
                _ => ethernet(&tags, ETH_P_ARP, &l4),
            }
        })
}

fn record() -> impl Strategy<Value = Record> {
    prop_oneof![
        4 => (packet(), 14usize..140, prop::sample::select(vec![1u32, 1, 11, 12, 13]), prop::sample::select(vec![0u32, 4, 4, 100]))
            .prop_map(|(frame, snap, protocol, stripped)| {
                let header = if protocol == 1 { frame[..frame.len().min(snap)].to_vec() } else { frame[14.min(frame.len())..frame.len().min(snap)].to_vec() };
                Record::Header { protocol, frame_length: frame.len() as u32 + 4, stripped, header }
            }),
        1 => (any::<u32>(), prop::sample::select(vec![6u32, 17, 1, 300]), any::<[u8; 4]>(), any::<u32>())
            .prop_map(|(length, protocol, dst, tcp_flags)| Record::Ipv4 { length: length % 10_000, protocol, dst, tcp_flags }),
        1 => (any::<u32>(), prop::sample::select(vec![6u32, 17, 58]), any::<[u8; 16]>(), any::<u32>())
            .prop_map(|(length, protocol, dst, tcp_flags)| Record::Ipv6 { length: length % 10_000, protocol, dst, tcp_flags }),
        1 => (prop::sample::select(vec![1001u32, 1002, 2, (4413 << 12) | 1, 3, 4, 1]), prop::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(format, body)| Record::Other { format, body }),
    ]
}

fn sample() -> impl Strategy<Value = Sample> {
    prop_oneof![
        5 => (any::<bool>(), prop::sample::select(vec![0u32, 1, 10, 1000, 1 << 24, (1 << 24) + 1, u32::MAX]), any::<u32>(), prop::collection::vec(record(), 0..4))
            .prop_map(|(expanded, rate, drops, records)| Sample::Flow { expanded, rate, drops, records }),
        1 => (prop::sample::select(vec![2u32, 4, 5, (9 << 12) | 1]), prop::collection::vec(any::<u8>(), 0..60))
            .prop_map(|(format, body)| Sample::Other { format, body }),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    None,
    Cut(usize),
    Word(usize, u32),
    Flip(usize, u8),
}

fn datagram() -> impl Strategy<Value = Vec<u8>> {
    let agents = prop::sample::select(vec![
        IpAddr::from([198, 18, 7, 1]),
        IpAddr::from([198, 18, 7, 2]),
        "2001:db8::7".parse().unwrap(),
    ]);
    let mutation = prop_oneof![
        3 => Just(Mutation::None),
        1 => any::<usize>().prop_map(Mutation::Cut),
        1 => (any::<usize>(), prop::sample::select(vec![0u32, 1, 3, 5, 8, 0xffff_ffff, 0x8000_0000, 1000])).prop_map(|(at, w)| Mutation::Word(at, w)),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Mutation::Flip(at, b)),
    ];
    (
        agents,
        0u32..4,
        0u32..6,
        prop::collection::vec(sample(), 0..4),
        mutation,
    )
        .prop_map(|(agent, sub_agent, sequence, samples, mutation)| {
            let mut d = Datagram::new(sequence, samples);
            d.agent = agent;
            d.sub_agent = sub_agent;
            let mut bytes = d.encode();
            match mutation {
                Mutation::None => {}
                Mutation::Cut(at) => bytes.truncate(at % (bytes.len() + 1)),
                Mutation::Word(at, w) => {
                    // Only at word boundaries, where lengths and counts live.
                    let at = (at % (bytes.len() / 4).max(1)) * 4;
                    if at + 4 <= bytes.len() {
                        bytes[at..at + 4].copy_from_slice(&w.to_be_bytes());
                    }
                }
                Mutation::Flip(at, b) => {
                    if !bytes.is_empty() {
                        let at = at % bytes.len();
                        bytes[at] ^= b;
                    }
                }
            }
            bytes
        })
}

#[test]
fn random_and_mutated_datagrams_decode_identically_in_both_engines() {
    let both = RefCell::new(Both::new());
    let mut runner = TestRunner::new(Config {
        cases: 3000,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&datagram(), |payload| {
        let frame = ethernet(
            &[],
            ETH_P_IPV4,
            &ipv4(
                [198, 18, 7, 1],
                [198, 18, 7, 2],
                IPPROTO_UDP,
                &udp(5000, 6343, &payload),
            ),
        );
        prop_assume!(frame.len() <= 3400);
        let mut both = both.borrow_mut();
        // Each case from empty counters, so a failure shrinks on its own.
        both.xdp.reset().expect("reset xdp");
        both.user.reset().expect("reset user");
        let what = format!("datagram {payload:02x?}");
        both.frame(&what, &frame);
        both.reports(&what);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
