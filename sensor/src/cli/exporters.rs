//! `edge-sensor exporters`.

use anyhow::Result;
use edge_sensor_common::ParseError;

use super::ExportersArgs;
use crate::counters::{ExporterRow, Report};

pub fn exporters(args: ExportersArgs) -> Result<()> {
    let report = Report::read_pinned_exporters(&args.pin_path)?;
    let rows: Vec<_> = report
        .exporters
        .iter()
        .map(|(id, t)| ExporterRow::new(*id, t))
        .collect();
    if args.json {
        println!("{}", serde_json::json!({ "exporters": rows }));
    } else {
        print!("{}", exporter_table(&rows));
    }
    Ok(())
}

/// Exporters as an aligned table; errors listed by reason below it.
pub fn exporter_table(rows: &[ExporterRow]) -> String {
    let mut out = format!(
        "{:<40} {:>10} {:>5} {:<8} {:>10} {:>10} {:>8} {:>7} {:>8} {:<28} {:>9}\n",
        "EXPORTER",
        "SUB-AGENT",
        "PORT",
        "PROTO",
        "DATAGRAMS",
        "SAMPLES",
        "LOST",
        "LOSS%",
        "ERRORS",
        "SAMPLING",
        "LAST SEEN"
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
            "{:<40} {:>10} {:>5} {:<8} {:>10} {:>10} {:>8} {:>7.2} {:>8} {:<28} {:>9}\n",
            r.ip.to_string(),
            r.sub_agent,
            r.port,
            r.protocol,
            r.datagrams,
            r.samples,
            r.sequence_gaps,
            r.loss_percent,
            r.errors.total(),
            sampling,
            seen,
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
