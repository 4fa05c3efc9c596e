//! Random and mutated NetFlow v5 datagrams through both engines: after each
//! one the XDP program and the userspace decoder must agree exactly.

use std::cell::RefCell;

use edge_sensor_tests::{engines::Both, frame::*};
use proptest::{
    prelude::*,
    test_runner::{Config, TestRunner},
};

fn datagram() -> impl Strategy<Value = Vec<u8>> {
    let record = (
        any::<[u8; 4]>(),
        any::<u32>(),
        any::<u32>(),
        any::<u8>(),
        prop::sample::select(vec![1u8, 6, 17, 58, 47]),
    )
        .prop_map(|(dst, packets, octets, flags, proto)| {
            let mut r = vec![192, 0, 2, 1];
            r.extend(dst);
            r.extend([0; 8]);
            r.extend(packets.to_be_bytes());
            r.extend(octets.to_be_bytes());
            r.extend([0; 12]);
            r.extend([0, flags, proto, 0]);
            r.extend([0; 8]);
            r
        });
    (
        prop::collection::vec(record, 0..34),
        prop::option::of(0u16..40),
        any::<u32>(),
        any::<u16>(),
        any::<[u8; 2]>(),
        prop::option::of(any::<usize>()),
    )
        .prop_map(|(records, count, seq, sampling, engine, cut)| {
            let mut d = Vec::new();
            d.extend(5u16.to_be_bytes());
            d.extend(count.unwrap_or(records.len() as u16).to_be_bytes());
            d.extend([0; 12]);
            d.extend(seq.to_be_bytes());
            d.extend(engine);
            d.extend(sampling.to_be_bytes());
            records.iter().for_each(|r| d.extend(r));
            if let Some(at) = cut {
                d.truncate(at % (d.len() + 1));
            }
            d
        })
}

#[test]
fn random_v5_datagrams_decode_identically_in_both_engines() {
    let both = RefCell::new(Both::new());
    let mut runner = TestRunner::new(Config {
        cases: 1500,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&datagram(), |payload| {
        let mut both = both.borrow_mut();
        both.xdp.reset().expect("reset xdp");
        both.user.reset().expect("reset user");
        let frame = ethernet(
            &[],
            ETH_P_IPV4,
            &ipv4(
                [198, 18, 5, 1],
                [198, 18, 5, 2],
                IPPROTO_UDP,
                &udp(9000, 2055, &payload),
            ),
        );
        let what = format!("v5 datagram {payload:02x?}");
        both.frame(&what, &frame);
        both.reports(&what);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
