//! The XDP program run on crafted frames through BPF_PROG_TEST_RUN (aya's
//! `TestRun`), with its real maps: which frames are telemetry, what passes
//! untouched. (sFlow contents: `sflow_fixtures.rs`.)

use std::net::IpAddr;

use aya::programs::{TestRun, TestRunOptions};
use edge_sensor::{
    counters::{ExporterId, Report},
    xdp::{LoadOptions, Sensor},
};
use edge_sensor_common::{Class, TelemetryKind};
use edge_sensor_tests::{frame::*, require_root};

const XDP_PASS: u32 = 2;

const SRC4: [u8; 4] = [198, 18, 7, 1];
const DST4: [u8; 4] = [198, 18, 7, 2];
const SRC6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const DST6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

fn load() -> Sensor {
    require_root();
    Sensor::load(&LoadOptions::unpinned(1 << 16)).unwrap_or_else(|e| panic!("load: {e:#?}"))
}

fn counters(sensor: &Sensor) -> Report {
    sensor.report().expect("read maps")
}

/// The exporters counted, as (id, datagrams, bytes).
fn exporters(sensor: &Sensor) -> Vec<(ExporterId, u64, u64)> {
    counters(sensor)
        .exporters
        .iter()
        .map(|(id, t)| (*id, t.stats.datagrams, t.stats.bytes))
        .collect()
}

/// Runs `frame` through the program; asserts XDP_PASS and an unmodified frame.
fn run(sensor: &Sensor, name: &str, frame: &[u8]) {
    let mut out = vec![0u8; frame.len() + 256];
    let result = sensor
        .program()
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("{name}: test run: {e:#?}"));
    assert_eq!(result.return_value, XDP_PASS, "{name}: verdict");
    assert_eq!(
        &out[..result.data_size_out as usize],
        frame,
        "{name}: frame modified"
    );
}

fn v4_udp(dport: u16, payload: &[u8]) -> Vec<u8> {
    ethernet(
        &[],
        ETH_P_IPV4,
        &ipv4(SRC4, DST4, IPPROTO_UDP, &udp(5000, dport, payload)),
    )
}

fn v4_from(src: [u8; 4], vlans: &[(u16, u16)], dport: u16, payload: &[u8]) -> Vec<u8> {
    ethernet(
        vlans,
        ETH_P_IPV4,
        &ipv4(src, DST4, IPPROTO_UDP, &udp(1, dport, payload)),
    )
}

/// A flow datagram and the exporter row it must produce: name, frame,
/// source, port, kind, payload length.
struct FlowCase(&'static str, Vec<u8>, IpAddr, u16, TelemetryKind, u64);

/// IPFIX and NetFlow datagrams are (until their parsers land) counted per
/// source and passed on; the datagram is found behind VLAN tags, IP options
/// and in IPv6 alike.
#[test]
fn flow_datagrams_are_counted_per_source_and_passed() {
    let payload = vec![0x11u8; 300];
    let with_options = {
        let mut ip = ipv4(
            [198, 18, 7, 12],
            DST4,
            IPPROTO_UDP,
            &udp(1, 4739, &payload[..30]),
        );
        ip[0] = 0x46;
        ip.splice(20..20, [1, 1, 1, 0]); // NOP NOP NOP EOL
        let total = (ip.len() as u16).to_be_bytes();
        ip[2..4].copy_from_slice(&total);
        ethernet(&[], ETH_P_IPV4, &ip)
    };
    let v6 = ethernet(
        &[],
        ETH_P_IPV6,
        &ipv6(SRC6, DST6, IPPROTO_UDP, &udp(5000, 2055, &payload[..64])),
    );
    let cases: Vec<FlowCase> = vec![
        FlowCase(
            "IPFIX over IPv4",
            v4_udp(4739, &payload[..100]),
            SRC4.into(),
            4739,
            TelemetryKind::Ipfix,
            100,
        ),
        FlowCase(
            "NetFlow over IPv6",
            v6,
            SRC6.into(),
            2055,
            TelemetryKind::Netflow,
            64,
        ),
        FlowCase(
            "NetFlow behind an 802.1Q tag",
            v4_from(
                [198, 18, 7, 10],
                &[(ETH_P_8021Q, 100)],
                2055,
                &payload[..10],
            ),
            IpAddr::from([198, 18, 7, 10]),
            2055,
            TelemetryKind::Netflow,
            10,
        ),
        FlowCase(
            "IPFIX behind QinQ (802.1ad + 802.1Q)",
            v4_from(
                [198, 18, 7, 11],
                &[(ETH_P_8021AD, 10), (ETH_P_8021Q, 20)],
                4739,
                &payload[..20],
            ),
            IpAddr::from([198, 18, 7, 11]),
            4739,
            TelemetryKind::Ipfix,
            20,
        ),
        FlowCase(
            "IPFIX in IPv4 with options (IHL 6)",
            with_options,
            IpAddr::from([198, 18, 7, 12]),
            4739,
            TelemetryKind::Ipfix,
            30,
        ),
        FlowCase(
            "empty datagram",
            v4_udp(2055, &[]),
            SRC4.into(),
            2055,
            TelemetryKind::Netflow,
            0,
        ),
    ];
    for FlowCase(name, frame, src, port, kind, len) in &cases {
        let sensor = load();
        run(&sensor, name, frame);
        run(&sensor, name, frame);
        let id = ExporterId {
            ip: *src,
            sub_agent: 0,
            port: *port,
            kind: *kind as u8,
        };
        assert_eq!(exporters(&sensor), vec![(id, 2, 2 * len)], "{name}");
        assert!(counters(&sensor).destinations.is_empty(), "{name}");
    }
}

#[test]
fn other_traffic_and_truncated_frames_pass_untouched_and_uncounted() {
    let payload = [0x22u8; 64];
    let good = v4_udp(4739, &payload);
    let udp4 = |frag: u16| {
        ethernet(
            &[],
            ETH_P_IPV4,
            &ipv4_with(SRC4, DST4, IPPROTO_UDP, frag, &udp(1, 4739, &payload)),
        )
    };
    let hop_by_hop = [&[17u8, 0, 1, 4, 0, 0, 0, 0][..], &udp(1, 4739, &payload)].concat();
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("UDP to a non-telemetry port", v4_udp(53, &payload)),
        (
            "TCP to the IPFIX port",
            ethernet(
                &[],
                ETH_P_IPV4,
                &ipv4(SRC4, DST4, IPPROTO_TCP, &udp(5000, 4739, &payload)),
            ),
        ),
        ("ARP", ethernet(&[], ETH_P_ARP, &[0u8; 28])),
        ("first IPv4 fragment (MF)", udp4(0x2000)),
        ("later IPv4 fragment", udp4(0x0010)),
        (
            "IPv6 hop-by-hop header before UDP",
            ethernet(&[], ETH_P_IPV6, &ipv6(SRC6, DST6, 0, &hop_by_hop)),
        ),
        (
            "three VLAN tags (deeper than parsed)",
            v4_from(
                SRC4,
                &[(ETH_P_8021AD, 1), (ETH_P_8021Q, 2), (ETH_P_8021Q, 3)],
                4739,
                &payload,
            ),
        ),
        ("IPv4 header length below 20", {
            let mut f = good.clone();
            f[14] = 0x44;
            f
        }),
        ("IP version 6 in an IPv4 ethertype", {
            let mut f = good.clone();
            f[14] = 0x65;
            f
        }),
        ("UDP length below the UDP header", {
            let mut f = good.clone();
            f[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&7u16.to_be_bytes());
            f
        }),
        ("UDP length beyond the frame", {
            let mut f = good.clone();
            f[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&200u16.to_be_bytes());
            f
        }),
        ("only an Ethernet header", good[..14].to_vec()),
    ];
    // Every truncation of a telemetry frame between the Ethernet header and
    // the end of its payload.
    for cut in 15..good.len() {
        cases.push(("truncated telemetry frame", good[..cut].to_vec()));
    }
    let v6 = ethernet(
        &[],
        ETH_P_IPV6,
        &ipv6(SRC6, DST6, IPPROTO_UDP, &udp(1, 4739, &payload)),
    );
    for cut in 15..v6.len() {
        cases.push(("truncated IPv6 telemetry frame", v6[..cut].to_vec()));
    }
    let vlan = v4_from(SRC4, &[(ETH_P_8021Q, 7)], 4739, &payload);
    for cut in 14..18 {
        cases.push(("truncated VLAN tag", vlan[..cut].to_vec()));
    }

    let sensor = load();
    for (name, frame) in &cases {
        run(&sensor, &format!("{name} ({} bytes)", frame.len()), frame);
        assert_eq!(
            counters(&sensor),
            Report::default(),
            "{name} ({} bytes) was counted",
            frame.len()
        );
    }
    // The same program still counts a good frame afterwards.
    run(&sensor, "good frame", &good);
    assert_eq!(counters(&sensor).exporters.len(), 1);
}

#[test]
fn the_port_table_follows_the_configuration() {
    let mut sensor = load();
    sensor
        .set_ports(&[(9996, TelemetryKind::Ipfix)])
        .expect("set ports");
    run(
        &sensor,
        "default IPFIX port, no longer configured",
        &v4_udp(4739, &[0; 10]),
    );
    assert_eq!(counters(&sensor), Report::default());
    run(
        &sensor,
        "newly configured IPFIX port",
        &v4_udp(9996, &[0; 10]),
    );
    let rows = exporters(&sensor);
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].0.port, rows[0].0.protocol(), rows[0].2),
        (9996, "ipfix", 10)
    );
}

/// Every online CPU runs the program on the same destination at once (one
/// thread pinned per CPU, BPF_PROG_TEST_RUN repeating in the kernel): the
/// destination's counters, one value shared by all CPUs, must come out
/// exact. Plain adds on a shared value would lose some of them. (Under the
/// kernel matrix's single-CPU guests this checks the count only.)
#[test]
fn every_cpu_counting_one_destination_at_once_loses_nothing() {
    use edge_sensor_tests::filled::{RATE, syn_datagram};
    const REPEAT: u32 = 100_000;
    const ROUNDS: u32 = 10;
    const SAMPLES: usize = 5;
    let sensor = load();
    let victim = [203, 0, 113, 77];
    let frame = syn_datagram(victim, SAMPLES);
    let cpus = aya::util::online_cpus().expect("online CPUs");
    let start = std::sync::Barrier::new(cpus.len());
    std::thread::scope(|scope| {
        for &cpu in &cpus {
            let (sensor, frame, start) = (&sensor, &frame, &start);
            scope.spawn(move || {
                // SAFETY: a zeroed cpu_set_t with one bit set, for this thread.
                unsafe {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    libc::CPU_SET(cpu as usize, &mut set);
                    assert_eq!(
                        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set),
                        0,
                        "pinning to CPU {cpu}"
                    );
                }
                let mut out = vec![0u8; frame.len() + 256];
                start.wait();
                for _ in 0..ROUNDS {
                    sensor
                        .program()
                        .test_run(TestRunOptions {
                            data_in: Some(frame),
                            data_out: Some(&mut out),
                            repeat: REPEAT,
                            ..Default::default()
                        })
                        .unwrap_or_else(|e| panic!("CPU {cpu}: test run: {e:#?}"));
                }
            });
        }
    });
    let counted = counters(&sensor).destinations[&IpAddr::from(victim)];
    let expected =
        cpus.len() as u64 * u64::from(ROUNDS * REPEAT) * SAMPLES as u64 * u64::from(RATE);
    eprintln!(
        "{} CPUs counted {expected} packets into one destination",
        cpus.len()
    );
    assert_eq!(counted.packets[Class::All as usize], expected, "packets");
    assert_eq!(
        counted.packets[Class::TcpSyn as usize],
        expected,
        "SYN packets"
    );
}
