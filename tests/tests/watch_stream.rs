//! The kernel's sample stream for watched destinations (`WATCHED` ->
//! `WATCH_SAMPLES`), through BPF_PROG_TEST_RUN with the real program: only
//! watched destinations are streamed, with the packets and bytes the kernel
//! counted, and the daemon's decoder reads ports, flags and lengths back.

use std::{collections::BTreeSet, net::IpAddr};

use aya::programs::{TestRun, TestRunOptions};
use edge_sensor::{
    telemetry::{template::TemplateCache, watch},
    xdp::{LoadOptions, Sensor},
};
use edge_sensor_common::{NETFLOW_PORT, SFLOW_PORT, WatchKind};
use edge_sensor_tests::{
    frame::*,
    require_root,
    sflow::{Datagram, Record, Sample},
};

const VICTIM: [u8; 4] = [203, 0, 113, 80];
const OTHER: [u8; 4] = [203, 0, 113, 81];
const ATTACKER: [u8; 4] = [198, 51, 100, 9];

fn run(sensor: &Sensor, frame: &[u8]) {
    let mut out = vec![0u8; frame.len() + 256];
    sensor
        .program()
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("test run: {e:#?}"));
}

/// An Ethernet/IPv4/TCP frame of `len` bytes on the wire.
fn tcp_frame(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut tcp = vec![0u8; 20];
    tcp[0..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&dport.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    ethernet(&[], ETH_P_IPV4, &ipv4(src, dst, 6, &tcp))
}

fn udp_frame4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    ethernet(
        &[],
        ETH_P_IPV4,
        &ipv4(src, dst, 17, &udp(sport, dport, &[0; 100])),
    )
}

fn sflow(samples: Vec<Sample>) -> Vec<u8> {
    let payload = Datagram::new(1, samples).encode();
    ethernet(
        &[],
        ETH_P_IPV4,
        &ipv4(
            [192, 0, 2, 1],
            [192, 0, 2, 2],
            17,
            &udp(50000, SFLOW_PORT, &payload),
        ),
    )
}

fn raw_sample(rate: u32, frame: Vec<u8>) -> Sample {
    Sample::flow(rate, vec![Record::ethernet(&frame, 128)])
}

#[test]
fn only_watched_destinations_are_streamed_and_decode_back() {
    require_root();
    let mut sensor =
        Sensor::load(&LoadOptions::unpinned(1 << 16)).unwrap_or_else(|e| panic!("load: {e:#?}"));
    let mut ring = sensor.take_watch_ring().expect("ring");
    let templates = TemplateCache::new();
    let datagram = sflow(vec![
        raw_sample(1000, tcp_frame(ATTACKER, VICTIM, 40000, 80, 0x02)),
        raw_sample(1000, udp_frame4(ATTACKER, OTHER, 53, 4444)),
        raw_sample(500, udp_frame4(ATTACKER, VICTIM, 123, 5555)),
    ]);

    // Nothing watched: nothing streamed (and no lookup at all).
    run(&sensor, &datagram);
    assert!(Sensor::read_watch(&mut ring, 100).is_empty());

    let victim = IpAddr::from(VICTIM);
    sensor
        .set_watched(&BTreeSet::from([victim]))
        .expect("watch");
    run(&sensor, &datagram);
    let got = Sensor::read_watch(&mut ring, 100);
    assert_eq!(
        got.len(),
        2,
        "the two samples for the victim, not the other"
    );
    let decoded: Vec<_> = got
        .iter()
        .map(|s| {
            assert_eq!(s.kind, WatchKind::SflowRecord as u8);
            watch::decode(s, &templates).expect("decode")
        })
        .collect();
    let syn = &decoded[0];
    assert_eq!(syn.dst, victim);
    assert_eq!(syn.src, IpAddr::from(ATTACKER));
    assert_eq!((syn.protocol, syn.src_port, syn.dst_port), (6, 40000, 80));
    assert_eq!(syn.tcp_flags, 0x02);
    assert_eq!(syn.packets, 1000, "scaled by the sampling rate");
    // Counted as the frame sFlow describes (54 bytes with Ethernet); the
    // packet's length for a rule is the IP length its header states.
    assert_eq!(syn.bytes, 1000 * 54);
    assert_eq!(syn.packet_len, 40);
    let ntp = &decoded[1];
    assert_eq!((ntp.protocol, ntp.src_port, ntp.dst_port), (17, 123, 5555));
    assert_eq!(ntp.packets, 500);

    // NetFlow v5 records of the victim are streamed too.
    let mut v5 = vec![0u8; 24];
    v5[0..2].copy_from_slice(&5u16.to_be_bytes());
    v5[2..4].copy_from_slice(&2u16.to_be_bytes());
    v5[22..24].copy_from_slice(&((1u16 << 14) | 100).to_be_bytes());
    for dst in [VICTIM, OTHER] {
        let mut r = [0u8; 48];
        r[0..4].copy_from_slice(&ATTACKER);
        r[4..8].copy_from_slice(&dst);
        r[16..20].copy_from_slice(&3u32.to_be_bytes());
        r[20..24].copy_from_slice(&1200u32.to_be_bytes());
        r[32..34].copy_from_slice(&1900u16.to_be_bytes());
        r[34..36].copy_from_slice(&80u16.to_be_bytes());
        r[38] = 17;
        v5.extend_from_slice(&r);
    }
    let frame = ethernet(
        &[],
        ETH_P_IPV4,
        &ipv4(
            [192, 0, 2, 1],
            [192, 0, 2, 2],
            17,
            &udp(50001, NETFLOW_PORT, &v5),
        ),
    );
    run(&sensor, &frame);
    let got = Sensor::read_watch(&mut ring, 100);
    assert_eq!(got.len(), 1);
    let p = watch::decode(&got[0], &templates).expect("decode v5");
    assert_eq!((p.dst, p.src_port, p.dst_port), (victim, 1900, 80));
    assert_eq!((p.packets, p.bytes, p.packet_len), (300, 120_000, 400));

    // Unwatched again: nothing more.
    sensor.set_watched(&BTreeSet::new()).expect("unwatch");
    run(&sensor, &datagram);
    assert!(Sensor::read_watch(&mut ring, 100).is_empty());
    let stats = sensor.watch_stats().expect("stats");
    assert_eq!((stats.streamed, stats.lost), (3, 0));
}
