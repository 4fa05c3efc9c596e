//! The XDP program run on crafted frames through BPF_PROG_TEST_RUN (aya's
//! `TestRun`), with its real maps: what is counted, what passes untouched.

use std::net::IpAddr;

use aya::programs::{TestRun, TestRunOptions};
use edge_sensor::{
    config::TelemetryConfig,
    exporters::{self, ExporterRow},
    xdp::{LoadOptions, Sensor},
};
use edge_sensor_common::{EXPORTER_STATS, TelemetryKind};
use edge_sensor_tests::{frame::*, require_root};

const XDP_PASS: u32 = 2;

const SRC4: [u8; 4] = [198, 18, 7, 1];
const DST4: [u8; 4] = [198, 18, 7, 2];
const SRC6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const DST6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

fn load() -> Sensor {
    require_root();
    Sensor::load(&LoadOptions {
        pin_dir: None,
        ports: TelemetryConfig::default().ports().collect(),
    })
    .unwrap_or_else(|e| panic!("load: {e:#?}"))
}

fn counters(sensor: &Sensor) -> Vec<ExporterRow> {
    exporters::read(sensor.ebpf().map(EXPORTER_STATS).expect("map")).expect("read map")
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

struct Counted {
    name: &'static str,
    frame: Vec<u8>,
    src: IpAddr,
    port: u16,
    kind: TelemetryKind,
    payload_len: u64,
}

#[test]
fn telemetry_datagrams_are_counted_per_exporter_and_passed() {
    let payload = vec![0x11u8; 300];
    let cases = [
        Counted {
            name: "sFlow over IPv4",
            frame: v4_udp(6343, &payload),
            src: SRC4.into(),
            port: 6343,
            kind: TelemetryKind::Sflow,
            payload_len: 300,
        },
        Counted {
            name: "IPFIX over IPv4",
            frame: v4_udp(4739, &payload[..100]),
            src: SRC4.into(),
            port: 4739,
            kind: TelemetryKind::Ipfix,
            payload_len: 100,
        },
        Counted {
            name: "NetFlow over IPv6",
            frame: ethernet(
                &[],
                ETH_P_IPV6,
                &ipv6(SRC6, DST6, IPPROTO_UDP, &udp(5000, 2055, &payload[..64])),
            ),
            src: SRC6.into(),
            port: 2055,
            kind: TelemetryKind::Netflow,
            payload_len: 64,
        },
        Counted {
            name: "sFlow behind an 802.1Q tag",
            frame: ethernet(
                &[(ETH_P_8021Q, 100)],
                ETH_P_IPV4,
                &ipv4(
                    [198, 18, 7, 10],
                    DST4,
                    IPPROTO_UDP,
                    &udp(1, 6343, &payload[..10]),
                ),
            ),
            src: IpAddr::from([198, 18, 7, 10]),
            port: 6343,
            kind: TelemetryKind::Sflow,
            payload_len: 10,
        },
        Counted {
            name: "sFlow behind QinQ (802.1ad + 802.1Q)",
            frame: ethernet(
                &[(ETH_P_8021AD, 10), (ETH_P_8021Q, 20)],
                ETH_P_IPV4,
                &ipv4(
                    [198, 18, 7, 11],
                    DST4,
                    IPPROTO_UDP,
                    &udp(1, 6343, &payload[..20]),
                ),
            ),
            src: IpAddr::from([198, 18, 7, 11]),
            port: 6343,
            kind: TelemetryKind::Sflow,
            payload_len: 20,
        },
        Counted {
            name: "sFlow in IPv4 with options (IHL 6)",
            frame: {
                let mut ip = ipv4(
                    [198, 18, 7, 12],
                    DST4,
                    IPPROTO_UDP,
                    &udp(1, 6343, &payload[..30]),
                );
                ip[0] = 0x46;
                ip.splice(20..20, [1, 1, 1, 0]); // NOP NOP NOP EOL
                let total = (ip.len() as u16).to_be_bytes();
                ip[2..4].copy_from_slice(&total);
                ethernet(&[], ETH_P_IPV4, &ip)
            },
            src: IpAddr::from([198, 18, 7, 12]),
            port: 6343,
            kind: TelemetryKind::Sflow,
            payload_len: 30,
        },
        Counted {
            name: "empty datagram",
            frame: v4_udp(6343, &[]),
            src: SRC4.into(),
            port: 6343,
            kind: TelemetryKind::Sflow,
            payload_len: 0,
        },
    ];

    for case in &cases {
        let sensor = load();
        run(&sensor, case.name, &case.frame);
        run(&sensor, case.name, &case.frame);
        let rows = counters(&sensor);
        assert_eq!(
            rows,
            vec![ExporterRow {
                ip: case.src,
                port: case.port,
                protocol: case.kind.name(),
                datagrams: 2,
                bytes: 2 * case.payload_len,
            }],
            "{}",
            case.name
        );
    }
}

#[test]
fn other_traffic_and_truncated_frames_pass_untouched_and_uncounted() {
    let payload = [0x22u8; 64];
    let good = v4_udp(6343, &payload);
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("UDP to a non-telemetry port", v4_udp(53, &payload)),
        (
            "TCP to the sFlow port",
            ethernet(
                &[],
                ETH_P_IPV4,
                &ipv4(SRC4, DST4, IPPROTO_TCP, &udp(5000, 6343, &payload)),
            ),
        ),
        ("ARP", ethernet(&[], ETH_P_ARP, &[0u8; 28])),
        (
            "first IPv4 fragment (MF)",
            ethernet(
                &[],
                ETH_P_IPV4,
                &ipv4_with(SRC4, DST4, IPPROTO_UDP, 0x2000, &udp(1, 6343, &payload)),
            ),
        ),
        (
            "later IPv4 fragment",
            ethernet(
                &[],
                ETH_P_IPV4,
                &ipv4_with(SRC4, DST4, IPPROTO_UDP, 0x0010, &udp(1, 6343, &payload)),
            ),
        ),
        (
            "IPv6 hop-by-hop header before UDP",
            ethernet(
                &[],
                ETH_P_IPV6,
                &ipv6(
                    SRC6,
                    DST6,
                    0,
                    &[&[17u8, 0, 1, 4, 0, 0, 0, 0][..], &udp(1, 6343, &payload)].concat(),
                ),
            ),
        ),
        (
            "three VLAN tags (deeper than parsed)",
            ethernet(
                &[(ETH_P_8021AD, 1), (ETH_P_8021Q, 2), (ETH_P_8021Q, 3)],
                ETH_P_IPV4,
                &ipv4(SRC4, DST4, IPPROTO_UDP, &udp(1, 6343, &payload)),
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
        &ipv6(SRC6, DST6, IPPROTO_UDP, &udp(1, 6343, &payload)),
    );
    for cut in 15..v6.len() {
        cases.push(("truncated IPv6 telemetry frame", v6[..cut].to_vec()));
    }
    let vlan = ethernet(
        &[(ETH_P_8021Q, 7)],
        ETH_P_IPV4,
        &ipv4(SRC4, DST4, IPPROTO_UDP, &udp(1, 6343, &payload)),
    );
    for cut in 14..18 {
        cases.push(("truncated VLAN tag", vlan[..cut].to_vec()));
    }

    let sensor = load();
    for (name, frame) in &cases {
        run(&sensor, &format!("{name} ({} bytes)", frame.len()), frame);
        assert_eq!(
            counters(&sensor),
            vec![],
            "{name} ({} bytes) was counted",
            frame.len()
        );
    }
    // The same program still counts a good frame afterwards.
    run(&sensor, "good frame", &good);
    assert_eq!(counters(&sensor).len(), 1);
}

#[test]
fn the_port_table_follows_the_configuration() {
    let mut sensor = load();
    sensor
        .set_ports(&[(9996, TelemetryKind::Ipfix)])
        .expect("set ports");
    run(
        &sensor,
        "default sFlow port, no longer configured",
        &v4_udp(6343, &[0; 10]),
    );
    assert_eq!(counters(&sensor), vec![]);
    run(
        &sensor,
        "newly configured IPFIX port",
        &v4_udp(9996, &[0; 10]),
    );
    let rows = counters(&sensor);
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].port, rows[0].protocol, rows[0].bytes),
        (9996, "ipfix", 10)
    );
}
