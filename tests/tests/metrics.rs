//! `edge-sensor metrics` against pinned maps the real XDP program fills:
//! scraped over TCP like Prometheus does, the exposition parsed, the values
//! compared with the maps read directly; and the Grafana dashboard queries
//! only metrics that exist.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::unix::process::CommandExt,
    path::Path,
    process::{Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use edge_sensor::xdp::{inspect, pins, read};
use edge_sensor_common::GLOBAL_STATS;
use edge_sensor_tests::{
    Guarded,
    filled::{Filled, syn_datagram},
    require_root, sensor_bin,
};
use serde_json::Value;

/// One sample line: name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text exposition format (0.0.4), checking that every sample's
/// family has one HELP and one TYPE line before it.
fn parse(text: &str) -> Vec<Sample> {
    let mut described = BTreeSet::new();
    let mut typed = BTreeSet::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap().to_owned();
            assert!(described.insert(name), "HELP twice: {line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap().to_owned();
            assert!(matches!(parts.next(), Some("counter" | "gauge")), "{line}");
            assert!(typed.insert(name), "TYPE twice: {line}");
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line {line:?}"
        );
        let (series, value) = line.rsplit_once(' ').expect(line);
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect(line);
                let labels = body
                    .split("\",")
                    .map(|pair| {
                        let (k, v) = pair.split_once("=\"").expect(line);
                        (k.to_owned(), v.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (name.to_owned(), labels)
            }
        };
        assert!(
            described.contains(&name) && typed.contains(&name),
            "{name} undescribed"
        );
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

fn scrape(addr: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: sensor\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    Some(body.to_owned())
}

/// Scrapes until `done` holds on the parsed samples (at most `limit`).
fn scrape_until(
    addr: SocketAddr,
    limit: Duration,
    done: impl Fn(&[Sample]) -> bool,
) -> Vec<Sample> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(body) = scrape(addr) {
            let samples = parse(&body);
            if done(&samples) {
                return samples;
            }
        }
        assert!(Instant::now() < deadline, "metrics never got there");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn start_metrics(pin: &Path, addr: SocketAddr) -> Guarded {
    let child = Command::new(sensor_bin())
        .args(["metrics", "--bpf-stats", "--interval", "0.2", "--listen"])
        .arg(addr.to_string())
        .arg("--pin-path")
        .arg(pin)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start edge-sensor metrics");
    Guarded(child)
}

#[test]
fn metrics_equal_the_maps_and_the_dashboard_queries_only_them() {
    require_root();
    let f = Filled::new();
    let (big, small) = (
        syn_datagram([203, 0, 113, 10], 4),
        syn_datagram([203, 0, 113, 20], 1),
    );
    let addr = free_port();
    // With --bpf-stats the kernel counts runs while the exporter runs.
    let _metrics = start_metrics(f.path(), addr);
    scrape_until(addr, Duration::from_secs(15), |s| {
        value(s, "edge_sensor_bpf_stats_enabled", &[]) == Some(1.0)
    });
    const ROUNDS: u64 = 7;
    for _ in 0..ROUNDS {
        f.send(&big);
        f.send(&small);
    }

    // Still: counters equal the maps read directly. The exporter reads the
    // maps and the program's statistics one after the other, each refresh:
    // wait for a refresh that began after the last run.
    let still = scrape_until(addr, Duration::from_secs(15), |s| {
        value(s, "edge_sensor_exporter_datagrams_total", &[]) == Some((2 * ROUNDS) as f64)
            && value(s, "edge_sensor_xdp_program_runs_total", &[]) == Some((2 * ROUNDS) as f64)
    });
    let report = read::pinned_exporters(f.path()).unwrap();
    let (id, totals) = report.exporters.iter().next().unwrap();
    let exporter = [
        ("exporter", "198.18.7.1"),
        ("protocol", "sflow"),
        ("port", "6343"),
    ];
    let sub_agent = id.sub_agent.to_string();
    let mut labels = exporter.to_vec();
    labels.push(("sub_agent", &sub_agent));
    for (name, expected) in [
        (
            "edge_sensor_exporter_datagrams_total",
            totals.stats.datagrams,
        ),
        ("edge_sensor_exporter_bytes_total", totals.stats.bytes),
        ("edge_sensor_exporter_samples_total", totals.stats.samples),
        ("edge_sensor_exporter_records_total", totals.stats.records),
        (
            "edge_sensor_exporter_sequence_gaps_total",
            totals.stats.sequence_gaps,
        ),
        (
            "edge_sensor_exporter_sequence_resets_total",
            totals.stats.sequence_resets,
        ),
    ] {
        assert_eq!(
            value(&still, name, &labels),
            Some(expected as f64),
            "{name}"
        );
    }
    assert_eq!(totals.stats.samples, 5 * ROUNDS);
    let mut bad_version = labels.clone();
    bad_version.push(("reason", "bad_version"));
    assert_eq!(
        value(
            &still,
            "edge_sensor_exporter_parse_errors_total",
            &bad_version
        ),
        Some(0.0)
    );

    let global = read::global(&pins::spec(GLOBAL_STATS).unwrap().open(f.path()).unwrap()).unwrap();
    assert_eq!(global.telemetry_datagrams, 2 * ROUNDS);
    assert_eq!(
        value(&still, "edge_sensor_xdp_telemetry_datagrams_total", &[]),
        Some(global.telemetry_datagrams as f64)
    );
    assert_eq!(
        value(&still, "edge_sensor_xdp_consumed_datagrams_total", &[]),
        Some(global.consumed_datagrams as f64)
    );
    for m in inspect::list(f.path()).unwrap() {
        let map = [("map", m.name.as_str())];
        assert_eq!(
            value(&still, "edge_sensor_map_entries", &map),
            m.entries.map(|n| n as f64)
        );
        assert_eq!(
            value(&still, "edge_sensor_map_max_entries", &map),
            Some(f64::from(m.max_entries))
        );
        assert_eq!(
            value(&still, "edge_sensor_map_memory_bytes", &map),
            m.memlock.map(|n| n as f64)
        );
    }
    assert_eq!(
        value(&still, "edge_sensor_map_entries", &[("map", "DST_STATS")]),
        Some(2.0)
    );
    assert_eq!(value(&still, "edge_sensor_xdp_programs", &[]), Some(1.0));
    assert_eq!(
        value(&still, "edge_sensor_bpf_stats_enabled", &[]),
        Some(1.0)
    );
    let runs = f.sensor.program().info().unwrap().run_count();
    assert_eq!(
        runs,
        2 * ROUNDS,
        "one run per test run while --bpf-stats holds"
    );
    assert_eq!(
        value(&still, "edge_sensor_xdp_program_runs_total", &[]),
        Some(runs as f64)
    );
    let poll = value(&still, "edge_sensor_poll_duration_seconds", &[]).unwrap();
    assert!(poll > 0.0 && poll < 5.0, "{poll}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let last = value(&still, "edge_sensor_last_poll_timestamp_seconds", &[]).unwrap();
    assert!((now - last).abs() < 10.0, "{now} {last}");

    // Moving: the busiest destinations' rates, ranked like `top`.
    let stop = AtomicBool::new(false);
    let moving = std::thread::scope(|s| {
        s.spawn(|| {
            f.stream(
                &[&big, &small],
                &stop,
                Duration::from_millis(2),
                Duration::from_secs(30),
            )
        });
        let moving = scrape_until(addr, Duration::from_secs(15), |s| {
            let pps = |ip| {
                value(
                    s,
                    "edge_sensor_destination_pps",
                    &[("destination", ip), ("class", "all")],
                )
            };
            // Rates over a poll interval of streaming, not of the still rounds.
            let streaming = value(s, "edge_sensor_exporter_samples_total", &[])
                .is_some_and(|n| n > (5 * ROUNDS + 500) as f64);
            streaming
                && pps("203.0.113.10").is_some_and(|p| p > 0.0)
                && pps("203.0.113.20").is_some_and(|p| p > 0.0)
        });
        stop.store(true, Ordering::Relaxed);
        moving
    });
    let pps = |ip, class| {
        value(
            &moving,
            "edge_sensor_destination_pps",
            &[("destination", ip), ("class", class)],
        )
        .unwrap()
    };
    let ratio = pps("203.0.113.10", "all") / pps("203.0.113.20", "all");
    assert!(
        (3.0..5.0).contains(&ratio),
        "four samples against one: {ratio}"
    );
    assert_eq!(pps("203.0.113.10", "tcp_syn"), pps("203.0.113.10", "all"));
    assert_eq!(pps("203.0.113.10", "udp"), 0.0);
    let bps = value(
        &moving,
        "edge_sensor_destination_bps",
        &[("destination", "203.0.113.10"), ("class", "all")],
    )
    .unwrap();
    assert!(bps > 0.0);
    assert_eq!(
        value(&moving, "edge_sensor_destinations_tracked", &[]),
        Some(2.0)
    );

    // Pins gone (the sensor unloaded): polls fail and are counted, the
    // endpoint keeps serving the last values.
    for entry in std::fs::read_dir(f.path()).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let failing = scrape_until(addr, Duration::from_secs(15), |s| {
        value(s, "edge_sensor_poll_errors_total", &[]).is_some_and(|n| n >= 1.0)
    });
    assert_eq!(
        value(&failing, "edge_sensor_map_entries", &[("map", "DST_STATS")]),
        Some(2.0)
    );

    // The dashboard queries only metrics the exposition has, with series.
    let present: BTreeSet<&str> = moving.iter().map(|s| s.name.as_str()).collect();
    for name in dashboard_metrics() {
        assert!(
            present.contains(name.as_str()),
            "the dashboard queries {name}, which is not exported"
        );
    }
}

/// Every `edge_sensor_*` metric the dashboard's queries name.
fn dashboard_metrics() -> BTreeSet<String> {
    let dashboard = dashboard();
    let mut exprs = Vec::new();
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(e)) = m.get("expr") {
                    out.push(e.clone());
                }
                m.values().for_each(|v| walk(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(&dashboard, &mut exprs);
    assert!(exprs.len() >= 10, "{} queries", exprs.len());
    let mut names = BTreeSet::new();
    for e in exprs {
        let mut rest = e.as_str();
        while let Some(i) = rest.find("edge_sensor_") {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            names.insert(tail[..end].to_owned());
            rest = &tail[end..];
        }
    }
    names
}

fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/grafana/edge-sensor.json");
    let text = std::fs::read_to_string(&path).expect("contrib/grafana/edge-sensor.json");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

#[test]
fn the_dashboard_is_an_importable_grafana_dashboard() {
    let d = dashboard();
    assert_eq!(d["uid"], "edge-sensor");
    assert!(d["title"].is_string() && d["schemaVersion"].as_u64().unwrap() >= 30);
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(vars, ["datasource", "instance"]);
    let panels = d["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "duplicate panel id: {p}"
        );
        let pos = &p["gridPos"];
        let (x, w) = (pos["x"].as_u64().unwrap(), pos["w"].as_u64().unwrap());
        assert!(x + w <= 24, "panel wider than the grid: {}", p["title"]);
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{}", p["title"]);
        for t in targets {
            let expr = t["expr"].as_str().unwrap();
            assert!(
                expr.contains("instance=~\"$instance\""),
                "{}: {expr}",
                p["title"]
            );
            assert_eq!(
                expr.matches('(').count(),
                expr.matches(')').count(),
                "{expr}"
            );
        }
    }
    assert!(dashboard_metrics().len() >= 15);
}
