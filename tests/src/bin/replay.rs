//! The replay generator on its own: real capture datagrams to a collector
//! at a controlled rate; prints what it sent (and, with `--truth`, the
//! per-destination totals of exactly those datagrams) as JSON.
//!
//! ```text
//! replay --capture FILE [--capture FILE...] --kind sflow|ipfix --to IP:PORT
//!        --rate DATAGRAMS_PER_S --seconds S [--count N]
//!        [--spread BASE_IPV4/COUNT] [--truth]
//! ```
//! Run it inside the sender's namespace (`nsenter --net=...`).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use edge_sensor_common::TelemetryKind;
use edge_sensor_tests::replay::{self, Spread, Workload};

fn main() {
    let mut captures = Vec::new();
    let (mut kind, mut to, mut rate, mut seconds) = (TelemetryKind::Sflow, None, 1000.0, 1.0);
    let (mut count, mut spread, mut truth) = (None, None, false);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--capture" => captures.push(PathBuf::from(value())),
            "--kind" => {
                kind = match value().as_str() {
                    "sflow" => TelemetryKind::Sflow,
                    "ipfix" => TelemetryKind::Ipfix,
                    "netflow" => TelemetryKind::Netflow,
                    other => usage(&format!("unknown kind {other}")),
                }
            }
            "--to" => {
                to = Some(
                    value()
                        .parse::<SocketAddr>()
                        .unwrap_or_else(|e| usage(&e.to_string())),
                )
            }
            "--rate" => {
                rate = value()
                    .parse()
                    .unwrap_or_else(|_| usage("--rate: a number"))
            }
            "--seconds" => {
                seconds = value()
                    .parse()
                    .unwrap_or_else(|_| usage("--seconds: a number"))
            }
            "--count" => {
                count = Some(
                    value()
                        .parse()
                        .unwrap_or_else(|_| usage("--count: a number")),
                )
            }
            "--spread" => {
                let v = value();
                let (base, n) = v
                    .split_once('/')
                    .unwrap_or_else(|| usage("--spread BASE/COUNT"));
                spread = Some(Spread {
                    base: base
                        .parse()
                        .unwrap_or_else(|_| usage("--spread: an IPv4 base")),
                    count: n.parse().unwrap_or_else(|_| usage("--spread: a count")),
                });
            }
            "--truth" => truth = true,
            other => usage(&format!("unknown argument {other}")),
        }
    }
    let to = to.unwrap_or_else(|| usage("--to IP:PORT is required"));
    if captures.is_empty() {
        usage("at least one --capture");
    }
    let paths: Vec<_> = captures.iter().map(PathBuf::as_path).collect();
    let mut workload = Workload::from_captures(&paths, kind);
    if let Some(s) = spread {
        workload = workload.spread(s);
    }
    let sent = replay::send(&workload, to, rate, Duration::from_secs_f64(seconds), count)
        .unwrap_or_else(|e| panic!("sending to {to}: {e}"));
    let mut out = serde_json::json!({
        "datagrams": sent.datagrams,
        "bytes": sent.bytes,
        "elapsed_s": sent.elapsed.as_secs_f64(),
        "rate": sent.rate(),
        "src": sent.src.to_string(),
    });
    if truth {
        let decoder = workload.truth(sent.datagrams, sent.src, to.port());
        out["truth"] = edge_sensor::cli::rows::report_json(&decoder.report);
    }
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "replay: {problem}\nusage: replay --capture FILE... --kind sflow|ipfix --to IP:PORT \
         --rate N --seconds S [--count N] [--spread BASE/COUNT] [--truth]"
    );
    std::process::exit(2)
}
