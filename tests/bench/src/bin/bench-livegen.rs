//! The kernel-transmitted generator on its own (`edge_sensor_bench::livegen`):
//! how fast it offers a capture's frames to the collector namespace over a
//! veth, with nothing attached there, and whether the peer received exactly
//! what it says it sent. Prints one JSON line per capture. A first step of
//! issue 20 item 1: the rate search of `bench-collect` still uses the
//! AF_PACKET generator.
//!
//! `bench-livegen [SECONDS [COPIES [THREADS]]]` (default 2 s, at most 30;
//! COPIES of a frame per call, default 8192; THREADS calling at once,
//! default 1). On 6.18 a call costs ~25 ms of wall time (its page pool's
//! set-up and tear-down) whatever COPIES, and calls from several threads
//! do not overlap: the rate is COPIES x ~40 per second, in bursts.

use std::time::{Duration, Instant};

use edge_sensor::{config::TelemetryConfig, pcap, telemetry::frame};
use edge_sensor_bench::livegen::{LiveGen, thread_cpu_s};
use edge_sensor_tests::{netns::Link, require_root, shared_captures};
use serde_json::{Value, json};

/// Copies of one frame per `BPF_PROG_TEST_RUN` call, by default.
const REPEAT: u32 = 8192;

fn rx_packets(link: &Link) -> u64 {
    let out = link
        .b
        .ip_output(&["-s", "-j", "link", "show", "dev", &link.b_if]);
    let v: Value = serde_json::from_str(&out).expect("ip -j link");
    v[0]["stats64"]["rx"]["packets"]
        .as_u64()
        .expect("rx packets")
}

fn main() {
    require_root();
    let seconds: u64 = std::env::args()
        .nth(1)
        .map_or(2, |s| s.parse().expect("SECONDS"))
        .clamp(1, 30);
    let repeat: u32 = std::env::args()
        .nth(2)
        .map_or(REPEAT, |s| s.parse().expect("COPIES"))
        .clamp(1, 1 << 20);
    let threads: usize = std::env::args()
        .nth(3)
        .map_or(1, |s| s.parse().expect("THREADS"))
        .clamp(1, 256);
    let ports: Vec<_> = TelemetryConfig::default().ports().collect();
    let link = Link::new();
    // veth takes XDP_TX/redirected frames only when its peer runs NAPI:
    // GRO on (as bench-collect sets it, with threaded NAPI).
    // `ip netns exec`: it mounts the namespace's own /sys.
    let napi = std::process::Command::new("ip")
        .args(["netns", "exec", &link.b.name, "sh", "-c"])
        .arg(format!(
            "ethtool -K {0} gro on && echo 1 > /sys/class/net/{0}/threaded",
            link.b_if
        ))
        .status()
        .expect("ethtool");
    assert!(napi.success(), "enabling NAPI on {}", link.b_if);
    let mac: Value =
        serde_json::from_str(&link.b.ip_output(&["-j", "link", "show", "dev", &link.b_if]))
            .expect("ip -j link");
    let mac: Vec<u8> = mac[0]["address"]
        .as_str()
        .expect("MAC")
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).expect("MAC byte"))
        .collect();

    for capture in [
        "lab/pmacct-1.7.7_sfprobe_v5_rate1.pcap",
        "lab/softflowd-1.1.0_v10.pcap",
    ] {
        let frames: Vec<Vec<u8>> = pcap::ethernet_frames(&shared_captures().join(capture))
            .unwrap_or_else(|e| panic!("{capture}: {e}"))
            .into_iter()
            .filter(|f| {
                frame::telemetry_datagram(f, |p| {
                    ports.iter().find(|(q, _)| *q == p).map(|(_, k)| *k)
                })
                .is_some()
            })
            .map(|mut f| {
                // Addressed to the collector's veth, as a router would.
                f[..6].copy_from_slice(&mac);
                f
            })
            .collect();
        assert!(!frames.is_empty(), "{capture}: no telemetry frame");
        let if_a = link.a_if.clone();
        let distinct = frames.len();
        let before = rx_packets(&link);
        let (sent, elapsed, cpu_s) = link.a.run(move || {
            let name = std::ffi::CString::new(if_a).unwrap();
            // SAFETY: a NUL-terminated name.
            let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
            assert_ne!(ifindex, 0, "no sender veth");
            let generator = LiveGen::load().unwrap_or_else(|e| panic!("load: {e}"));
            let start = Instant::now();
            // Calls from several threads, to see whether they overlap.
            let parts: Vec<(u64, f64)> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..threads)
                    .map(|_| {
                        let (generator, frames) = (&generator, &frames);
                        s.spawn(move || {
                            let cpu0 = thread_cpu_s();
                            let mut sent = 0u64;
                            // Bounded: at most `seconds`, whole batches.
                            'outer: while start.elapsed() < Duration::from_secs(seconds) {
                                for f in frames {
                                    generator.send(ifindex, f, repeat).unwrap_or_else(|e| {
                                        panic!("BPF_PROG_TEST_RUN live frames: {e}")
                                    });
                                    sent += u64::from(repeat);
                                    if start.elapsed() >= Duration::from_secs(seconds) {
                                        break 'outer;
                                    }
                                }
                            }
                            (sent, thread_cpu_s() - cpu0)
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            (
                parts.iter().map(|p| p.0).sum::<u64>(),
                start.elapsed(),
                parts.iter().map(|p| p.1).sum::<f64>(),
            )
        });
        // Let the peer's NAPI drain what is still queued.
        std::thread::sleep(Duration::from_millis(200));
        let received = rx_packets(&link) - before;
        let rate = sent as f64 / elapsed.as_secs_f64();
        println!(
            "{}",
            json!({
                "capture": capture,
                "distinct_frames": distinct,
                "repeat_per_call": repeat,
                "sent": sent,
                "elapsed_s": elapsed.as_secs_f64(),
                "sent_per_s": rate,
                // The sending thread's CPU (user + system): the rate per
                // CPU-second is what the generator could reach on a core of
                // its own, whatever else ran on the machine meanwhile.
                "sender_cpu_s": cpu_s,
                "sent_per_cpu_s": sent as f64 / cpu_s,
                "peer_rx_packets": received,
                "peer_received_fraction": received as f64 / sent as f64,
            })
        );
    }
}
