//! `edge-sensor top` against pinned maps that the real XDP program fills
//! while `top` (a separate process) measures: ranking, classes, filters.

use std::{
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use aya::programs::{TestRun, TestRunOptions};
use edge_sensor::xdp::{LoadOptions, Sensor};
use edge_sensor_tests::{
    PinDir,
    frame::*,
    require_root, sensor_bin,
    sflow::{Datagram, Record, Sample},
};
use serde_json::Value;

/// An sFlow datagram with `n` samples (rate 1000) of TCP SYNs to `victim`.
fn syn_datagram(victim: [u8; 4], n: usize) -> Vec<u8> {
    let mut tcp = vec![0u8; 20];
    tcp[12] = 5 << 4;
    tcp[13] = 0x02;
    let pkt = ethernet(
        &[],
        ETH_P_IPV4,
        &ipv4([192, 0, 2, 1], victim, IPPROTO_TCP, &tcp),
    );
    let samples = (0..n)
        .map(|_| Sample::flow(1000, vec![Record::ethernet(&pkt, 128)]))
        .collect();
    let payload = Datagram::new(1, samples).encode();
    ethernet(
        &[],
        ETH_P_IPV4,
        &ipv4(
            [198, 18, 7, 1],
            [198, 18, 7, 2],
            IPPROTO_UDP,
            &udp(1, 6343, &payload),
        ),
    )
}

fn top(pin: &PinDir, extra: &[&str]) -> Value {
    let out = Command::new(sensor_bin())
        .args(["top", "--json", "--interval", "1", "--pin-path"])
        .arg(pin.path())
        .args(extra)
        .output()
        .expect("run top");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("top --json is JSON")
}

#[test]
fn top_ranks_destinations_by_current_rate() {
    require_root();
    let pin = PinDir::new();
    let mut opts = LoadOptions::unpinned(1 << 16);
    opts.pin_dir = Some(pin.path().to_owned());
    let sensor = Sensor::load(&opts).unwrap_or_else(|e| panic!("load: {e:#?}"));
    let big = syn_datagram([203, 0, 113, 10], 4);
    let small = syn_datagram([203, 0, 113, 20], 1);

    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            // Bounded: at most 20 s of traffic, whatever happens.
            let deadline = Instant::now() + Duration::from_secs(20);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                for frame in [&big, &small] {
                    sensor
                        .program()
                        .test_run(TestRunOptions {
                            data_in: Some(frame),
                            ..Default::default()
                        })
                        .expect("test run");
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        let all = top(&pin, &[]);
        let v6 = top(&pin, &["--family", "v6"]);
        let by_udp = top(&pin, &["--by", "udp", "--limit", "1"]);
        stop.store(true, Ordering::Relaxed);

        let rows = all["destinations"].as_array().expect("destinations");
        assert_eq!(rows.len(), 2, "{all}");
        assert_eq!(
            rows[0]["ip"], "203.0.113.10",
            "the busier victim first: {all}"
        );
        assert_eq!(rows[1]["ip"], "203.0.113.20");
        let (p0, p1) = (
            rows[0]["pps"].as_f64().unwrap(),
            rows[1]["pps"].as_f64().unwrap(),
        );
        assert!(p1 > 0.0, "{all}");
        // Four samples against one per round: about four times the rate.
        assert!((3.0..5.0).contains(&(p0 / p1)), "ratio {}: {all}", p0 / p1);
        assert_eq!(
            rows[0]["tcp_syn_pps"], rows[0]["pps"],
            "all of it SYN: {all}"
        );
        assert_eq!(rows[0]["udp_pps"], 0.0);
        assert!(rows[0]["bps"].as_f64().unwrap() > 0.0);
        assert_eq!(v6["destinations"].as_array().unwrap().len(), 0, "{v6}");
        assert_eq!(
            by_udp["destinations"].as_array().unwrap().len(),
            1,
            "{by_udp}"
        );
    });
}

#[test]
fn top_without_a_loaded_sensor_says_so() {
    let out = Command::new(sensor_bin())
        .args([
            "top",
            "--pin-path",
            "/sys/fs/bpf/edge-sensor-test-absent/v1",
        ])
        .output()
        .expect("run top");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is the sensor loaded?"), "{err}");
}
