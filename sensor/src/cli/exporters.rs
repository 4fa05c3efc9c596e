//! `edge-sensor exporters`.

use anyhow::Result;

use super::ExportersArgs;
use crate::exporters::{self, ExporterRow};

pub fn exporters(args: ExportersArgs) -> Result<()> {
    let rows = exporters::read_pinned(&args.pin_path)?;
    if args.json {
        println!("{}", serde_json::json!({ "exporters": rows }));
    } else {
        print!("{}", table(&rows));
    }
    Ok(())
}

fn table(rows: &[ExporterRow]) -> String {
    let mut out = format!(
        "{:<40} {:>5} {:<8} {:>12} {:>14}\n",
        "EXPORTER", "PORT", "PROTO", "DATAGRAMS", "BYTES"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<40} {:>5} {:<8} {:>12} {:>14}\n",
            r.ip.to_string(),
            r.port,
            r.protocol,
            r.datagrams,
            r.bytes
        ));
    }
    if rows.is_empty() {
        out.push_str("(no telemetry received yet)\n");
    }
    out
}
