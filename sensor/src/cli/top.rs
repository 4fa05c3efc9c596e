//! `edge-sensor top`: destinations ranked by current rate.

use std::{
    collections::BTreeMap,
    io::{IsTerminal, Write},
    net::IpAddr,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use edge_sensor_common::{Class, DstStats};

use super::TopArgs;
use crate::{
    counters::read_pinned_destinations,
    rates::{self, DstRates, human},
};

/// What `top` ranks by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    Pps,
    Bps,
    Syn,
    Udp,
    Icmp,
    Frag,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Family {
    V4,
    V6,
}

impl By {
    fn key(self, r: &DstRates) -> f64 {
        match self {
            By::Pps => r.pps(Class::All),
            By::Bps => r.bps(Class::All),
            By::Syn => r.pps(Class::TcpSyn),
            By::Udp => r.pps(Class::Udp),
            By::Icmp => r.pps(Class::Icmp),
            By::Frag => r.pps(Class::Fragment),
        }
    }
}

fn read(args: &TopArgs) -> Result<BTreeMap<IpAddr, DstStats>> {
    Ok(read_pinned_destinations(&args.pin_path)?)
}

/// Ranked, filtered, cut to the limit.
fn ranked(args: &TopArgs, mut rows: Vec<DstRates>) -> Vec<DstRates> {
    rows.retain(|r| match args.family {
        Some(Family::V4) => r.ip.is_ipv4(),
        Some(Family::V6) => r.ip.is_ipv6(),
        None => true,
    });
    rows.sort_by(|a, b| {
        args.by
            .key(b)
            .total_cmp(&args.by.key(a))
            .then(a.ip.cmp(&b.ip))
    });
    rows.truncate(args.limit);
    rows
}

pub fn top(args: TopArgs) -> Result<()> {
    if !(0.05..=60.0).contains(&args.interval) {
        bail!("--interval must be between 0.05 and 60 seconds");
    }
    let interval = Duration::from_secs_f64(args.interval);
    let mut before = read(&args)?;
    let mut then = Instant::now();
    loop {
        std::thread::sleep(interval);
        let after = read(&args)?;
        let now = Instant::now();
        let rows = ranked(&args, rates::between(&before, &after, now - then));
        let out = if args.json {
            json(&rows, (now - then).as_secs_f64()).to_string() + "\n"
        } else {
            table(&rows, after.len())
        };
        let mut stdout = std::io::stdout().lock();
        if args.watch && stdout.is_terminal() && !args.json {
            write!(stdout, "\x1b[2J\x1b[H")?;
        }
        stdout.write_all(out.as_bytes())?;
        stdout.flush()?;
        if !args.watch {
            return Ok(());
        }
        (before, then) = (after, now);
    }
}

fn json(rows: &[DstRates], interval: f64) -> serde_json::Value {
    let dst = |r: &DstRates| {
        serde_json::json!({
            "ip": r.ip,
            "pps": r.pps(Class::All), "bps": r.bps(Class::All),
            "tcp_pps": r.pps(Class::Tcp), "tcp_syn_pps": r.pps(Class::TcpSyn),
            "udp_pps": r.pps(Class::Udp), "icmp_pps": r.pps(Class::Icmp),
            "fragment_pps": r.pps(Class::Fragment), "other_pps": r.pps(Class::Other),
            "udp_bps": r.bps(Class::Udp), "tcp_bps": r.bps(Class::Tcp),
        })
    };
    serde_json::json!({ "interval_s": interval, "destinations": rows.iter().map(dst).collect::<Vec<_>>() })
}

fn table(rows: &[DstRates], tracked: usize) -> String {
    let mut out = format!(
        "{:<40} {:>10} {:>11} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
        "DESTINATION", "PPS", "BPS", "TCP", "SYN", "UDP", "ICMP", "FRAG"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<40} {:>10} {:>11} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
            r.ip.to_string(),
            human(r.pps(Class::All)),
            format!("{}b", human(r.bps(Class::All))),
            human(r.pps(Class::Tcp)),
            human(r.pps(Class::TcpSyn)),
            human(r.pps(Class::Udp)),
            human(r.pps(Class::Icmp)),
            human(r.pps(Class::Fragment)),
        ));
    }
    out.push_str(&format!("{tracked} destinations tracked\n"));
    out
}
