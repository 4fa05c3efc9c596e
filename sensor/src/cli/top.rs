//! `edge-sensor top`: destinations ranked by current rate.

use std::{
    collections::BTreeMap,
    io::{IsTerminal, Write},
    net::IpAddr,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Result, bail};
use edge_sensor_common::{Class, DstStats};

use super::{TopArgs, style::Style};
use crate::{
    rates::{self, DstRates, with_unit},
    xdp::read,
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
pub enum IpVersion {
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
    Ok(read::pinned_destinations(&args.pin_path)?)
}

/// Ranked, filtered, cut to the limit.
fn ranked(args: &TopArgs, mut rows: Vec<DstRates>) -> Vec<DstRates> {
    rows.retain(|r| match args.family {
        Some(IpVersion::V4) => r.ip.is_ipv4(),
        Some(IpVersion::V6) => r.ip.is_ipv6(),
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
    let style = Style::stdout();
    // In place only on a terminal: piped `--watch` output is a log of tables.
    let in_place = args.watch && !args.json && std::io::stdout().is_terminal();
    let mut before = read(&args)?;
    let mut then = Instant::now();
    let mut first = true;
    loop {
        std::thread::sleep(interval);
        let after = read(&args)?;
        let now = Instant::now();
        let mut rows = ranked(&args, rates::between(&before, &after, now - then));
        let mitigated = mitigated(&args.socket);
        let mut stdout = std::io::stdout().lock();
        if args.json {
            let out = json(&rows, (now - then).as_secs_f64(), &mitigated).to_string() + "\n";
            stdout.write_all(out.as_bytes())?;
        } else if in_place {
            let (height, width) = terminal_size().unwrap_or((24, 80));
            // Fit the screen: a taller frame would scroll, a wider line wrap,
            // and either leave remains of earlier frames behind.
            rows.truncate(height.saturating_sub(3));
            let plain = table(&rows, after.len(), Style { colour: false }, &mitigated);
            let mut lines = vec![title(&args, after.len())];
            lines.extend(plain.lines().map(str::to_owned));
            for line in &mut lines {
                line.truncate(width);
            }
            lines[0] = style.dim(&lines[0]);
            lines[1] = style.header(&lines[1]);
            // Clear once, then overwrite from the top: each line erased to
            // its end, no newline after the last (on the bottom row it would
            // scroll), the rest of the screen erased.
            let mut out = String::from(if first { "\x1b[2J\x1b[H" } else { "\x1b[H" });
            out.push_str(&lines.join("\x1b[K\r\n"));
            out.push_str("\x1b[K\x1b[J");
            stdout.write_all(out.as_bytes())?;
        } else {
            stdout.write_all(table(&rows, after.len(), style, &mitigated).as_bytes())?;
        }
        stdout.flush()?;
        if !args.watch {
            return Ok(());
        }
        first = false;
        (before, then) = (after, now);
    }
}

/// The first line of `--watch`: what is shown, and when (UTC).
fn title(args: &TopArgs, tracked: usize) -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    format!(
        "edge-sensor top - {h:02}:{m:02}:{s:02} UTC - by {} every {} s - {tracked} tracked - {}",
        format!("{:?}", args.by).to_lowercase(),
        args.interval,
        args.pin_path.display()
    )
}

/// Rows and columns of the terminal on stdout, if it is one.
fn terminal_size() -> Option<(usize, usize)> {
    // SAFETY: TIOCGWINSZ fills a winsize; stdout is a valid descriptor.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let rc = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) };
    (rc == 0 && size.ws_row > 0 && size.ws_col > 0)
        .then_some((usize::from(size.ws_row), usize::from(size.ws_col)))
}

/// What the running daemon mitigates, if it answers (`None`: unknown; the
/// maps alone do not say).
fn mitigated(socket: &std::path::Path) -> Option<Vec<ipnet::IpNet>> {
    let answer = crate::control::request(
        socket,
        &crate::control::Request::Mitigations,
        Duration::from_millis(500),
    )
    .ok()?;
    let crate::control::Response::Ok { body } = answer else {
        return None;
    };
    Some(
        body["mitigations"]
            .as_array()?
            .iter()
            .filter_map(|m| m["victim"].as_str()?.parse().ok())
            .collect(),
    )
}

fn is_mitigated(ip: &std::net::IpAddr, m: &Option<Vec<ipnet::IpNet>>) -> Option<bool> {
    m.as_ref().map(|nets| nets.iter().any(|n| n.contains(ip)))
}

fn json(rows: &[DstRates], interval: f64, m: &Option<Vec<ipnet::IpNet>>) -> serde_json::Value {
    let dst = |r: &DstRates| {
        serde_json::json!({
            "ip": r.ip,
            "mitigated": is_mitigated(&r.ip, m),
            "pps": r.pps(Class::All), "bps": r.bps(Class::All),
            "tcp_pps": r.pps(Class::Tcp), "tcp_syn_pps": r.pps(Class::TcpSyn),
            "udp_pps": r.pps(Class::Udp), "icmp_pps": r.pps(Class::Icmp),
            "fragment_pps": r.pps(Class::Fragment), "other_pps": r.pps(Class::Other),
            "udp_bps": r.bps(Class::Udp), "tcp_bps": r.bps(Class::Tcp),
        })
    };
    serde_json::json!({ "interval_s": interval, "destinations": rows.iter().map(dst).collect::<Vec<_>>() })
}

fn table(rows: &[DstRates], tracked: usize, style: Style, m: &Option<Vec<ipnet::IpNet>>) -> String {
    let mut out = style.header(&format!(
        "{:<40} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11} {:>3}",
        "DESTINATION", "PPS", "BPS", "TCP", "SYN", "UDP", "ICMP", "FRAG", "MIT"
    ));
    out.push('\n');
    let pps = |v: f64| with_unit(v, "pps");
    for r in rows {
        out.push_str(&format!(
            "{:<40} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11} {:>3}\n",
            r.ip.to_string(),
            pps(r.pps(Class::All)),
            with_unit(r.bps(Class::All), "bps"),
            pps(r.pps(Class::Tcp)),
            pps(r.pps(Class::TcpSyn)),
            pps(r.pps(Class::Udp)),
            pps(r.pps(Class::Icmp)),
            pps(r.pps(Class::Fragment)),
            match is_mitigated(&r.ip, m) {
                Some(true) => "*",
                Some(false) => "",
                None => "?",
            },
        ));
    }
    // MIT: `*` under mitigation, `?` when the daemon did not answer.
    out.push_str(&format!("{tracked} destinations tracked\n"));
    out
}
