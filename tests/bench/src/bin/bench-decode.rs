//! `cargo xtask bench` (decode part): nanoseconds per datagram and per
//! sample of the XDP program (BPF_PROG_TEST_RUN with `repeat`, timed by the
//! kernel) against the userspace decoder, on the same datagrams,
//! in one run. Prints Markdown; writes JSON to the path given as argument.

use std::{path::PathBuf, time::Instant};

use aya::programs::{TestRun, TestRunOptions};
use edge_sensor::{
    config::TelemetryConfig,
    pcap,
    telemetry::{UserDecoder, frame},
    xdp::{LoadOptions, Sensor},
};
use edge_sensor_common::TelemetryKind;
use edge_sensor_tests::{
    frame::*,
    sflow::{Datagram, Record, Sample},
};

/// Kernel-side repetitions per datagram (the kernel reports the mean).
const XDP_REPEAT: u32 = 20_000;
/// Userspace passes over the whole set.
const USER_PASSES: u32 = 2_000;

struct Set {
    name: String,
    frames: Vec<Vec<u8>>,
}

/// A datagram as a busy switch sends it: 7 flow samples, each a 128-byte
/// Ethernet header plus an extended_switch record (about 1.4 kB).
fn realistic() -> Set {
    let mut frames = Vec::new();
    for seq in 0..16u32 {
        let samples = (0..7u8)
            .map(|i| {
                let mut tcp = vec![0u8; 20 + 1400];
                tcp[12] = 5 << 4;
                tcp[13] = if i % 2 == 0 { 0x02 } else { 0x10 };
                let pkt = ethernet(
                    &[(ETH_P_8021Q, 10)],
                    ETH_P_IPV4,
                    &ipv4(
                        [192, 0, 2, i],
                        [203, 0, 113, (seq % 8) as u8],
                        IPPROTO_TCP,
                        &tcp,
                    ),
                );
                Sample::flow(
                    1000,
                    vec![
                        Record::Other {
                            format: 1001,
                            body: vec![0; 16],
                        },
                        Record::ethernet(&pkt, 128),
                    ],
                )
            })
            .collect();
        let payload = Datagram::new(seq + 1, samples).encode();
        frames.push(ethernet(
            &[],
            ETH_P_IPV4,
            &ipv4(
                [198, 18, 7, 1],
                [198, 18, 7, 2],
                IPPROTO_UDP,
                &udp(50000, 6343, &payload),
            ),
        ));
    }
    Set {
        name: "synthetic switch, 7 samples x 128 B header".into(),
        frames,
    }
}

fn capture(path: &str) -> Set {
    let frames = pcap::ethernet_frames(&edge_sensor_tests::shared_captures().join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .into_iter()
        .filter(|f| {
            frame::telemetry_datagram(f, |p| (p == 6343).then_some(TelemetryKind::Sflow)).is_some()
        })
        .collect();
    Set {
        name: path.into(),
        frames,
    }
}

struct Row {
    name: String,
    datagrams: usize,
    samples: u64,
    xdp_ns: f64,
    user_ns: f64,
}

fn main() {
    let out = std::env::args().nth(1).map(PathBuf::from);
    let sets = [
        realistic(),
        capture("lab/pmacct-1.7.7_sfprobe_v5_rate1.pcap"),
        capture("lab/pmacct-1.7.7_sfprobe_v5_ipv6-agent.pcap"),
        capture("public/pktvisor/sflow_keyed.pcap"),
    ];
    let ports: Vec<_> = TelemetryConfig::default().ports().collect();
    let sensor = Sensor::load(&LoadOptions::unpinned(1 << 16))
        .unwrap_or_else(|e| panic!("load: {e:#?} (run as root)"));

    let mut rows = Vec::new();
    for set in &sets {
        // Samples per pass, from the userspace decoder.
        let mut probe = UserDecoder::new(&ports, &[], false);
        for f in &set.frames {
            probe.frame(f);
        }
        let samples: u64 = probe
            .report
            .exporters
            .values()
            .map(|t| t.stats.samples)
            .sum();

        let mut xdp_total_ns = 0f64;
        for f in &set.frames {
            let r = sensor
                .program()
                .test_run(TestRunOptions {
                    data_in: Some(f),
                    repeat: XDP_REPEAT,
                    ..Default::default()
                })
                .expect("test run");
            xdp_total_ns += r.duration.as_nanos() as f64;
        }

        let mut user = UserDecoder::new(&ports, &[], false);
        let start = Instant::now();
        for _ in 0..USER_PASSES {
            for f in &set.frames {
                std::hint::black_box(user.frame(std::hint::black_box(f)));
            }
        }
        let user_total_ns = start.elapsed().as_nanos() as f64 / f64::from(USER_PASSES);

        rows.push(Row {
            name: set.name.clone(),
            datagrams: set.frames.len(),
            samples,
            xdp_ns: xdp_total_ns / set.frames.len() as f64,
            user_ns: user_total_ns / set.frames.len() as f64,
        });
    }

    println!("## Decode cost: XDP program vs userspace decoder\n");
    println!(
        "XDP: BPF_PROG_TEST_RUN, {XDP_REPEAT} repeats per datagram (kernel-timed mean). Userspace: the userspace decoder, {USER_PASSES} passes, same frames, same process. Neither includes receive costs (driver, socket).\n"
    );
    println!(
        "| datagrams | count | samples/datagram | XDP ns/datagram | user ns/datagram | XDP ns/sample | user ns/sample | user / XDP |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut json = Vec::new();
    for r in &rows {
        let per = r.samples as f64 / r.datagrams as f64;
        let (xs, us) = if per > 0.0 {
            (r.xdp_ns / per, r.user_ns / per)
        } else {
            (f64::NAN, f64::NAN)
        };
        println!(
            "| {} | {} | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} |",
            r.name,
            r.datagrams,
            per,
            r.xdp_ns,
            r.user_ns,
            xs,
            us,
            r.user_ns / r.xdp_ns
        );
        json.push(serde_json::json!({
            "set": r.name, "datagrams": r.datagrams, "samples_per_datagram": per,
            "xdp_ns_per_datagram": r.xdp_ns, "user_ns_per_datagram": r.user_ns,
            "user_over_xdp": r.user_ns / r.xdp_ns,
        }));
    }
    if let Some(path) = out {
        std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).expect("write JSON");
        eprintln!("bench: wrote {}", path.display());
    }
}
