//! `edge-sensor exporters`.

use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use anyhow::Result;
use edge_sensor_common::ParseError;

use super::ExportersArgs;
use super::rows::ExporterRow;
use crate::xdp::read;

pub fn exporters(args: ExportersArgs) -> Result<()> {
    if !(0.0..=60.0).contains(&args.interval) {
        anyhow::bail!("--interval must be between 0 and 60 seconds");
    }
    let before = (args.interval > 0.0)
        .then(|| read::pinned_exporters(&args.pin_path))
        .transpose()?;
    let then = Instant::now();
    if before.is_some() {
        std::thread::sleep(Duration::from_secs_f64(args.interval));
    }
    let report = read::pinned_exporters(&args.pin_path)?;
    let secs = then.elapsed().as_secs_f64();
    let evicted = templates_evicted(&args.socket);
    let mut rows: Vec<_> = report
        .exporters
        .iter()
        .map(|(id, t)| {
            let mut row = ExporterRow::new(*id, t);
            if let Some(before) = &before {
                let old = before
                    .exporters
                    .get(id)
                    .map(|t| t.stats)
                    .unwrap_or_default();
                // A counter that went down (map re-created) gives no rate.
                let rate = |now: u64, then: u64| now.saturating_sub(then) as f64 / secs;
                row.datagrams_per_s = Some(rate(t.stats.datagrams, old.datagrams));
                let (now_s, then_s) = if t.stats.samples > 0 {
                    (t.stats.samples, old.samples)
                } else {
                    (t.stats.records, old.records)
                };
                row.samples_per_s = Some(rate(now_s, then_s));
            }
            row
        })
        .collect();
    for row in &mut rows {
        row.templates_evicted = evicted
            .as_ref()
            .map(|e| e.get(&row.ip).copied().unwrap_or(0));
    }
    if args.json {
        println!("{}", serde_json::json!({ "exporters": rows }));
    } else {
        print!("{}", exporter_table(&rows));
    }
    Ok(())
}

/// Templates evicted per exporter address, from the running daemon (`None`:
/// it did not answer).
fn templates_evicted(socket: &std::path::Path) -> Option<HashMap<IpAddr, u64>> {
    let answer = crate::control::request(
        socket,
        &crate::control::Request::Status,
        Duration::from_millis(500),
    )
    .ok()?;
    let crate::control::Response::Ok { body } = answer else {
        return None;
    };
    Some(
        body["templates"]["templates_evicted"]
            .as_object()?
            .iter()
            .filter_map(|(ip, n)| Some((ip.parse().ok()?, n.as_u64()?)))
            .collect(),
    )
}

/// Exporters as an aligned table; errors listed by reason below it.
pub fn exporter_table(rows: &[ExporterRow]) -> String {
    let mut out = format!(
        "{:<40} {:>10} {:>5} {:<8} {:>10} {:>10} {:>9} {:>9} {:>8} {:>7} {:>8} {:<28} {:>9} {:>8}\n",
        "EXPORTER",
        "SUB-AGENT",
        "PORT",
        "PROTO",
        "DATAGRAMS",
        "SAMPLES",
        "DGRAMS/S",
        "SAMPLES/S",
        "LOST",
        "LOSS%",
        "ERRORS",
        "SAMPLING",
        "LAST SEEN",
        "EVICTED"
    );
    for r in rows {
        let sampling = if r.sampling_rate == 0 {
            "-".to_string()
        } else {
            format!("1:{} {}", r.sampling_rate, r.sampling_source)
        };
        let seen = r
            .last_seen_secs
            .map_or("-".to_string(), |s| format!("{s:.0}s ago"));
        out.push_str(&format!(
            "{:<40} {:>10} {:>5} {:<8} {:>10} {:>10} {:>9} {:>9} {:>8} {:>7.2} {:>8} {:<28} {:>9} {:>8}\n",
            r.ip.to_string(),
            r.sub_agent,
            r.port,
            r.protocol,
            r.datagrams,
            r.samples,
            r.datagrams_per_s.map_or("-".into(), |v| format!("{v:.1}")),
            r.samples_per_s.map_or("-".into(), |v| format!("{v:.1}")),
            r.sequence_gaps,
            r.loss_percent,
            r.errors.total(),
            sampling,
            seen,
            // `?`: the daemon did not answer (templates live only there).
            r.templates_evicted.map_or("?".into(), |n| n.to_string()),
        ));
    }
    if rows.is_empty() {
        out.push_str("(no telemetry received yet)\n");
    }
    for r in rows.iter().filter(|r| r.errors.total() > 0) {
        let reasons: Vec<String> = ParseError::ALL
            .iter()
            .filter(|e| r.errors.0[**e as usize] > 0)
            .map(|e| format!("{} {}", e.name(), r.errors.0[*e as usize]))
            .collect();
        out.push_str(&format!("  {} errors: {}\n", r.ip, reasons.join(", ")));
    }
    out
}
