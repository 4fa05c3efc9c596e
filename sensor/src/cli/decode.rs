//! `edge-sensor decode`.

use anyhow::{Result, bail};

use super::{
    DecodeArgs,
    exporters::exporter_table,
    rows::{DestinationRow, ExporterRow, report_json},
};
use crate::{config::Config, counters::Report, decode::Decoder};

pub fn decode(args: DecodeArgs) -> Result<()> {
    let config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    let mut decoder = Decoder::new(args.engine, &config.telemetry)?;
    for file in &args.files {
        if decoder.capture(file)? == 0 {
            let ports: Vec<String> = config
                .telemetry
                .ports()
                .map(|(p, k)| format!("{}/{p}", k.name()))
                .collect();
            bail!(
                "{}: no telemetry datagrams (UDP to {}); wrong file, or set the ports with --config",
                file.display(),
                ports.join(", ")
            );
        }
    }
    let mut report = decoder.report()?;
    // A capture decoded now was not "seen" now: no last-seen times.
    for t in report.exporters.values_mut() {
        t.stats.last_seen_ns = 0;
    }
    if args.json {
        println!("{}", report_json(&report));
    } else {
        print!("{}", text(&report, decoder.datagrams, decoder.dropped));
    }
    Ok(())
}

fn text(report: &Report, datagrams: u64, dropped: u64) -> String {
    let mut out = format!(
        "{datagrams} telemetry datagrams, {dropped} fully consumed (XDP_DROP), {} passed on\n\n",
        datagrams - dropped
    );
    out.push_str(&format!(
        "{:<40} {:>12} {:>14} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
        "DESTINATION", "PACKETS", "BYTES", "TCP", "SYN", "UDP", "ICMP", "FRAG", "OTHER"
    ));
    for (ip, stats) in &report.destinations {
        let r = DestinationRow::new(*ip, stats);
        out.push_str(&format!(
            "{:<40} {:>12} {:>14} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
            r.ip.to_string(),
            r.packets,
            r.bytes,
            r.tcp_packets,
            r.tcp_syn_packets,
            r.udp_packets,
            r.icmp_packets,
            r.fragment_packets,
            r.other_packets
        ));
    }
    out.push('\n');
    let rows: Vec<_> = report
        .exporters
        .iter()
        .map(|(id, t)| ExporterRow::new(*id, t))
        .collect();
    out.push_str(&exporter_table(&rows));
    out
}
