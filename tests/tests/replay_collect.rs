//! The benchmark's building blocks, checked for correctness: the replay
//! generator sends real capture datagrams (sFlow with its sampled
//! destinations spread over many addresses, and IPFIX with its templates)
//! (through a UDP socket, and as whole frames written with AF_PACKET) at a
//! low rate from one namespace to `edge-sensor collect --user` in
//! another, and the collector's per-destination and per-exporter totals
//! equal the truth (the userspace decoder over exactly the datagrams sent).

use std::{net::SocketAddr, os::unix::process::CommandExt, process::Stdio, time::Duration};

use edge_sensor::counters::Report;
use edge_sensor_common::TelemetryKind;
use edge_sensor_tests::{
    Guarded,
    netns::Link,
    replay::{self, Spread, Workload},
    require_root, sensor_bin, shared_captures,
};

#[test]
fn replayed_captures_are_counted_by_collect_user_exactly_as_sent() {
    require_root();
    let link = Link::new();
    let dir = std::env::temp_dir().join(format!("es-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let report_path = dir.join("collect.json");
    let log = dir.join("collect.log");
    let (sflow_port, ipfix_port) = (16343, 14739);

    let collector = link
        .b
        .command(sensor_bin())
        .args(["collect", "--user", "--port"])
        .arg(format!("sflow/{sflow_port}"))
        .arg("--port")
        .arg(format!("ipfix/{ipfix_port}"))
        .arg("--json-report")
        .arg(&report_path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .process_group(0)
        .spawn()
        .map(Guarded)
        .expect("start edge-sensor collect");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&log)
        .unwrap_or_default()
        .matches("collecting")
        .count()
        < 2
    {
        assert!(
            std::time::Instant::now() < deadline,
            "collect did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let captures = shared_captures();
    let sflow = Workload::from_captures(
        &[&captures.join("lab/pmacct-1.7.7_sfprobe_v5_rate1.pcap")],
        TelemetryKind::Sflow,
    )
    .spread(Spread {
        base: "10.0.0.0".parse().unwrap(),
        count: 1000,
    });
    assert!(
        sflow.rewritable_per_cycle() > 0,
        "no sampled IPv4 header to spread"
    );
    let ipfix = Workload::from_captures(
        &[&captures.join("lab/softflowd-1.1.0_v10.pcap")],
        TelemetryKind::Ipfix,
    );
    let to = |port| SocketAddr::new(link.b_addr, port);
    let raw = replay::raw_via(&link);
    let (sent_sflow, sent_ipfix) = link.a.run(|| {
        let s = replay::send(
            &sflow,
            to(sflow_port),
            4000.0,
            Duration::from_secs(10),
            Some(3000),
        )
        .expect("replay sFlow");
        // IPFIX as whole frames (AF_PACKET), as the benchmark sends.
        let i = replay::send_via(
            &raw,
            &ipfix,
            to(ipfix_port),
            2000.0,
            Duration::from_secs(10),
            Some(600),
        )
        .expect("replay IPFIX");
        (s, i)
    });
    assert_eq!((sent_sflow.datagrams, sent_ipfix.datagrams), (3000, 600));
    std::thread::sleep(Duration::from_millis(500));
    let status = collector
        .stop(libc::SIGTERM)
        .expect("collect exits on SIGTERM");
    assert!(
        status.success(),
        "collect failed: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    let got: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report_path).expect("the report")).unwrap();
    let mut truth = Report::default();
    truth.merge(
        &sflow
            .truth(sent_sflow.datagrams, sent_sflow.src, sflow_port)
            .report,
    );
    truth.merge(
        &ipfix
            .truth(sent_ipfix.datagrams, sent_ipfix.src, ipfix_port)
            .report,
    );
    assert_eq!(got["datagrams"], 3600, "datagrams received");
    // 1000 spread destinations plus the capture's IPv6 and IPFIX ones.
    assert!(
        truth.destinations.len() > 1000,
        "{}",
        truth.destinations.len()
    );
    let expected = edge_sensor::cli::rows::report_json(&truth);
    assert_eq!(
        got["report"]["destinations"], expected["destinations"],
        "per-destination totals"
    );
    // Every counter, but not when each side last saw the exporter.
    let counters = |rows: &serde_json::Value| {
        let mut rows = rows.clone();
        for row in rows.as_array_mut().into_iter().flatten() {
            if let Some(o) = row.as_object_mut() {
                o.remove("last_seen_secs");
            }
        }
        rows
    };
    assert_eq!(
        counters(&got["report"]["exporters"]),
        counters(&expected["exporters"]),
        "per-exporter totals"
    );
    assert!(got["cpu_user_s"].as_f64().unwrap() + got["cpu_system_s"].as_f64().unwrap() > 0.0);
    let _ = std::fs::remove_dir_all(&dir);
}
