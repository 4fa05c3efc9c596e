//! Commands answered by the running daemon over its control socket:
//! `attacks`, `mitigations`, `bgp`, `status`, `ban`, `unban`.

use std::{fmt::Write as _, time::Duration};

use anyhow::{Result, bail};
use serde_json::Value;

use super::{AskArgs, BanArgs, BgpAction, BgpArgs, UnbanArgs};
use crate::{
    control::{self, Request, Response},
    detect::config::parse_duration,
    rates::human,
};

const TIMEOUT: Duration = Duration::from_secs(10);

pub(super) fn ask(socket: &std::path::Path, request: &Request) -> Result<Value> {
    match control::request(socket, request, TIMEOUT)? {
        Response::Ok { body } => Ok(body),
        Response::Error { message } => bail!("the daemon refused: {message}"),
    }
}

pub(super) fn print(json: bool, body: &Value, table: impl FnOnce(&Value) -> String) {
    if json {
        println!("{body}");
    } else {
        print!("{}", table(body));
    }
}

pub(super) fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

pub fn attacks(args: AskArgs) -> Result<()> {
    let body = ask(&args.socket, &Request::Attacks)?;
    print(args.json, &body, |b| {
        let mut out = String::new();
        if b["detection"] == false {
            out.push_str("detection is off (no [detect] section)\n");
        }
        let _ = writeln!(
            out,
            "{:<5} {:<22} {:<24} {:<10} {:>10} {:>10} {:>7}  MATCH",
            "ID", "VICTIM", "CLASS", "STATE", "PEAK PPS", "PEAK BPS", "SECS"
        );
        for (state, list) in [("active", &b["current"]), ("ended", &b["recent"])] {
            for a in list.as_array().into_iter().flatten() {
                let class = match &a["class"] {
                    Value::Object(o) => match o.get("port") {
                        Some(port) => format!("{}:{}", s(&a["class"]["type"]), s(port)),
                        None => s(&a["class"]["type"]),
                    },
                    v => s(v),
                };
                let _ = writeln!(
                    out,
                    "{:<5} {:<22} {:<24} {:<10} {:>10} {:>10} {:>7.0}  {}",
                    s(&a["id"]),
                    s(&a["victim"]),
                    class,
                    state,
                    human(a["peak_pps"].as_f64().unwrap_or(0.0)),
                    human(a["peak_bps"].as_f64().unwrap_or(0.0)),
                    a["duration_s"].as_f64().unwrap_or(0.0),
                    match_text(&a["fingerprint"]["match"]),
                );
                for r in a["covered_by"].as_array().into_iter().flatten() {
                    let _ = writeln!(
                        out,
                        "{:<5} already covered by another system's rule from {}: {}",
                        "",
                        s(&r["peer"]),
                        s(&r["rule"]),
                    );
                }
            }
        }
        out
    });
    Ok(())
}

/// A match object in the `ban --flowspec` syntax.
fn match_text(m: &Value) -> String {
    let mut parts = Vec::new();
    if !m["source"].is_null() {
        parts.push(format!("src {}", s(&m["source"])));
    }
    let list = |v: &Value| {
        v.as_array()
            .map(|a| a.iter().map(s).collect::<Vec<_>>().join(","))
            .unwrap_or_default()
    };
    for (key, word) in [
        ("protocols", "proto"),
        ("source_ports", "src-port"),
        ("destination_ports", "dst-port"),
        ("icmp_types", "icmp-type"),
    ] {
        let l = list(&m[key]);
        if !l.is_empty() {
            parts.push(format!("{word} {l}"));
        }
    }
    if let Some(r) = m["packet_length"].as_object() {
        parts.push(format!("len {}-{}", s(&r["min"]), s(&r["max"])));
    }
    if !m["fragment"].is_null() {
        parts.push(s(&m["fragment"]));
    }
    if parts.is_empty() {
        "any".into()
    } else {
        parts.join(" ")
    }
}

pub fn mitigations(args: AskArgs) -> Result<()> {
    let body = ask(&args.socket, &Request::Mitigations)?;
    print(args.json, &body, |b| {
        let mut out = String::new();
        if b["dry_run"] == true {
            out.push_str("DRY RUN: nothing is announced\n");
        }
        let _ = writeln!(
            out,
            "{:<5} {:<22} {:<10} {:<8} {:<11} {:<12}  ROUTE / PEERS",
            "ID", "VICTIM", "KIND", "ATTACK", "STATE", "HOLD UNTIL"
        );
        let list = b["mitigations"].as_array().cloned().unwrap_or_default();
        for m in &list {
            let state = if m["manual"] == true {
                "manual"
            } else if m["ended"].is_null() {
                "attack on"
            } else {
                "releasing"
            };
            let peers: Vec<String> = m["peers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| format!("{}: {}", s(&p[0]), s(&p[1])))
                .collect();
            let _ = writeln!(
                out,
                "{:<5} {:<22} {:<10} {:<8} {:<11} {:<12}  {}\n{:>76}{}",
                s(&m["id"]),
                s(&m["victim"]),
                s(&m["kind"]),
                s(&m["attack"]),
                state,
                s(&m["expires"]
                    .as_u64()
                    .map_or(m["hold_until"].clone(), Value::from)),
                route_text(&m["route"]),
                "",
                peers.join("; "),
            );
            // Per router, the rule actually sent (adapted to its dialect).
            for sent in m["sent"].as_array().into_iter().flatten() {
                let what = match sent["refused"].as_str() {
                    Some(why) => format!("no rule: {why}"),
                    None => {
                        let changes: Vec<String> = sent["changes"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(s)
                            .collect();
                        let mut t = route_text(&sent["route"]);
                        if !changes.is_empty() {
                            let _ = write!(t, " ({})", changes.join("; "));
                        }
                        t
                    }
                };
                let _ = writeln!(
                    out,
                    "{:>62}{} [{}]: {what}",
                    "",
                    s(&sent["peer"]),
                    s(&sent["dialect"]),
                );
            }
        }
        if list.is_empty() {
            out.push_str("(no active mitigation)\n");
        }
        out
    });
    Ok(())
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of unix seconds.
fn utc_time(t: u64) -> String {
    let (days, secs) = ((t / 86400) as i64, t % 86400);
    // Civil from days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn route_text(r: &Value) -> String {
    serde_json::from_value::<crate::bgp::Route>(r.clone())
        .map(|r| r.to_string())
        .unwrap_or_else(|_| r.to_string())
}

pub fn bgp(bgp: BgpArgs) -> Result<()> {
    let args = bgp.ask;
    if let Some(BgpAction::ClearQuarantine { peer }) = bgp.action {
        let body = ask(&args.socket, &Request::ClearQuarantine { peer })?;
        print(args.json, &body, |b| {
            let n = b["cleared"].as_array().map_or(0, Vec::len);
            format!("{}: {n} routes out of quarantine\n", s(&b["peer"]))
        });
        return Ok(());
    }
    if bgp.quarantine {
        let body = ask(&args.socket, &Request::BgpQuarantine)?;
        print(args.json, &body, |b| {
            let mut out = String::new();
            if !bgp_configured(b, &mut out) {
                return out;
            }
            let _ = writeln!(
                out,
                "{:<12} {:<20} {:<60}  ROUTER'S REASON",
                "PEER", "SINCE", "ROUTE"
            );
            for (peer, list) in b["quarantine"].as_object().into_iter().flatten() {
                for q in list.as_array().into_iter().flatten() {
                    let since = q["since"].as_u64().map_or("-".into(), utc_time);
                    let _ = writeln!(
                        out,
                        "{:<12} {:<20} {:<60}  {}",
                        peer,
                        since,
                        route_text(&q["route"]),
                        s(&q["reason"])
                    );
                }
            }
            out
        });
        return Ok(());
    }
    let body = ask(&args.socket, &Request::Bgp)?;
    print(args.json, &body, |b| {
        let mut out = String::new();
        if !bgp_configured(b, &mut out) {
            return out;
        }
        let _ = writeln!(
            out,
            "{:<12} {:<26} {:<8} {:<12} {:>9} {:>5} {:>7} {:>9} {:>9}  LAST ERROR",
            "PEER", "ADDRESS", "AS", "STATE", "UPTIME", "HOLD", "ROUTES", "SENT", "WITHDRAWN"
        );
        for p in b["peers"].as_array().into_iter().flatten() {
            let hold = &p["negotiated"]["hold_time"];
            let _ = writeln!(
                out,
                "{:<12} {:<26} {:<8} {:<12} {:>9} {:>5} {:>7} {:>9} {:>9}  {}",
                s(&p["name"]),
                format!("{}:{}", s(&p["address"]), s(&p["port"])),
                s(&p["peer_asn"]),
                s(&p["state"]),
                p["uptime_secs"]
                    .as_u64()
                    .map_or("-".into(), |u| format!("{u}s")),
                s(hold),
                s(&p["adj_rib_out"]),
                s(&p["routes_announced"]),
                s(&p["routes_withdrawn"]),
                s(&p["last_error"]),
            );
            if let Some(fams) = p["negotiated"]["families"].as_array() {
                let f: Vec<String> = fams.iter().map(s).collect();
                let _ = writeln!(out, "{:<12} families {}", "", f.join(", "));
            }
            let flap = &p["flap"];
            if flap["quarantined"].as_u64().unwrap_or(0) > 0
                || flap["resets"].as_u64().unwrap_or(0) > 0
            {
                let _ = writeln!(
                    out,
                    "{:<12} flap: {} quarantined, {} suspects, {} resets, back-off {:.0}s{}, last reset: {}",
                    "",
                    s(&flap["quarantined"]),
                    s(&flap["suspects"]),
                    s(&flap["resets"]),
                    flap["backoff_secs"].as_f64().unwrap_or(0.0),
                    flap["reconnect_in_secs"]
                        .as_f64()
                        .map_or(String::new(), |t| format!(" (next try in {t:.0}s)")),
                    s(&flap["last_reset"]),
                );
            }
            if let Some(errs) = p["update_errors"].as_object()
                && !errs.is_empty()
            {
                let e: Vec<String> = errs.iter().map(|(k, v)| format!("{k} {}", s(v))).collect();
                let _ = writeln!(
                    out,
                    "{:<12} received UPDATE errors (RFC 7606): {}",
                    "",
                    e.join(", ")
                );
            }
            let rib = &p["rib_in"];
            let eor: Vec<String> = rib["end_of_rib"]
                .as_array()
                .into_iter()
                .flatten()
                .map(s)
                .collect();
            let errors: u64 = p["update_errors"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(_, v)| v.as_u64())
                .sum();
            let _ = writeln!(
                out,
                "{:<12} received: {} prefixes, {} paths, {} flow spec rules, {} updates, {} errors, {} stale; End-of-RIB: {}",
                "",
                s(&rib["prefixes"]),
                s(&rib["paths"]),
                s(&rib["flowspec_rules"]),
                s(&p["updates_received"]),
                errors,
                s(&rib["stale"]),
                if eor.is_empty() {
                    "-".into()
                } else {
                    eor.join(", ")
                },
            );
            if let Some(fams) = p["afi_safi_disabled"].as_array()
                && !fams.is_empty()
            {
                let f: Vec<String> = fams.iter().map(s).collect();
                let _ = writeln!(out, "{:<12} disabled families {}", "", f.join(", "));
            }
            for (what, key) in [
                ("NOTIFICATION sent", "last_notification_sent"),
                ("NOTIFICATION received", "last_notification_received"),
            ] {
                if !p[key].is_null() {
                    let _ = writeln!(out, "{:<12} last {what}: {}", "", s(&p[key]));
                }
            }
            if let Some(caps) = p["refused_capabilities"].as_array()
                && !caps.is_empty()
            {
                let c: Vec<String> = caps.iter().map(|c| c.to_string()).collect();
                let _ = writeln!(out, "{:<12} refused capabilities {}", "", c.join(", "));
            }
            // The latest state changes, newest first.
            for t in p["history"].as_array().into_iter().flatten().rev().take(5) {
                let _ = writeln!(
                    out,
                    "{:<12} {} {} -> {}{}",
                    "",
                    unix_time(t["at"].as_u64().unwrap_or(0)),
                    s(&t["from"]),
                    s(&t["to"]),
                    t["reason"]
                        .as_str()
                        .map_or(String::new(), |r| format!(" ({r})")),
                );
            }
        }
        out
    });
    Ok(())
}

pub fn cluster(args: AskArgs) -> Result<()> {
    let body = ask(&args.socket, &Request::Cluster)?;
    print(args.json, &body, |b| {
        let mut out = String::new();
        if b["configured"] == false {
            out.push_str("no [cluster] section: a single sensor\n");
            return out;
        }
        let _ = writeln!(
            out,
            "sensor {}   {}{}",
            s(&b["name"]),
            s(&b["state"]),
            b["reason"]
                .as_str()
                .map_or(String::new(), |r| format!(": {r}"))
        );
        let _ = writeln!(
            out,
            "\n{:<24} {:<5} {:>14} {:>12}",
            "MEMBER", "LIVE", "HEARTBEAT AGO", "SUMMARY LAG"
        );
        for m in b["members"].as_array().into_iter().flatten() {
            let age = |v: &Value| {
                v.as_u64()
                    .map_or("-".into(), |ms| format!("{:.1} s", ms as f64 / 1000.0))
            };
            let _ = writeln!(
                out,
                "{:<24} {:<5} {:>14} {:>12}",
                s(&m["name"]),
                if m["live"] == true { "yes" } else { "no" },
                age(&m["heartbeat_age_ms"]),
                age(&m["summary_age_ms"]),
            );
        }
        let _ = writeln!(
            out,
            "\n{:<24} {:<20} {:>12} {:<24} ANNOUNCED BY",
            "VICTIM", "CLASS", "PPS", "OWNER"
        );
        for a in b["attacks"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "{:<24} {:<20} {:>12.0} {:<24} {}",
                s(&a["victim"]),
                s(&a["class"]),
                a["pps"].as_f64().unwrap_or(0.0),
                s(&a["owner"]),
                a["announced_by"].as_str().unwrap_or("-"),
            );
        }
        out
    });
    Ok(())
}

pub fn status(args: AskArgs) -> Result<()> {
    let body = ask(&args.socket, &Request::Status)?;
    print(args.json, &body, |b| {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "edge-sensor {}   layout v{}   pid {}   up {} s",
            s(&b["version"]),
            s(&b["layout_version"]),
            s(&b["pid"]),
            s(&b["uptime_secs"])
        );
        let st = &b["state"];
        if st["persisted"] == false {
            let failing: Vec<String> = st["files"]
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(_, f)| f["persisted"] == false)
                .map(|(name, f)| format!("{name}: {}", s(&f["error"])))
                .collect();
            let _ = writeln!(
                out,
                "state       NOT PERSISTED in {} ({}): a restart would lose what changed",
                s(&st["dir"]),
                failing.join("; ")
            );
        }
        let t = &b["templates"];
        if t.is_object() {
            let evicted: u64 = t["templates_evicted"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(_, n)| n.as_u64())
                .sum();
            let _ = writeln!(
                out,
                "templates   {} held, {} bytes, {} evicted over the limits",
                s(&t["count"]),
                s(&t["memory_bytes"]),
                evicted
            );
        }
        let _ = writeln!(
            out,
            "xdp         {} (pins {})",
            b["interfaces"]
                .as_array()
                .map(|a| a.iter().map(s).collect::<Vec<_>>().join(", "))
                .unwrap_or_default(),
            s(&b["pin_path"])
        );
        let fast = &b["fast_path"];
        let userspace = fast["mode"] == "userspace";
        if userspace {
            let _ = writeln!(
                out,
                "fast path   userspace collector (recvmmsg): {}",
                s(&fast["reason"])
            );
        } else {
            let attached: Vec<String> = fast["attached"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| format!("{} {}", s(&a["interface"]), s(&a["mode"])))
                .collect();
            let _ = writeln!(out, "fast path   xdp ({})", attached.join(", "));
        }
        let t = &b["telemetry"];
        let _ = writeln!(
            out,
            "telemetry   {} datagrams: {} consumed {}, {} passed on, {} rejected",
            s(&t["datagrams"]),
            s(&t["consumed"]),
            if userspace {
                "by the collector"
            } else {
                "in the kernel"
            },
            s(&t["passed"]),
            s(&t["rejected"])
        );
        match b["detection"].as_object() {
            Some(d) => {
                let _ = writeln!(
                    out,
                    "detection   {} attacks, {} destinations watched",
                    s(&d["attacks"]),
                    s(&d["watched"])
                );
            }
            None => out.push_str("detection   off\n"),
        }
        let m = &b["mitigations"];
        let _ = writeln!(
            out,
            "mitigation  {} active{}",
            s(&m["active"]),
            if m["dry_run"] == true {
                " (dry run)"
            } else {
                ""
            }
        );
        let peers: Vec<String> = b["bgp"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| format!("{} {}", s(&p["name"]), s(&p["state"])))
            .collect();
        let _ = writeln!(
            out,
            "bgp         {}",
            if peers.is_empty() {
                "no peers".into()
            } else {
                peers.join(", ")
            }
        );
        out
    });
    Ok(())
}

pub fn ban(args: BanArgs) -> Result<()> {
    let duration_secs = match &args.r#for {
        Some(text) => Some(
            parse_duration(text)
                .map_err(|e| anyhow::anyhow!("--for {text}: {e}"))?
                .as_secs()
                .max(1),
        ),
        None => None,
    };
    let body = ask(
        &args.socket,
        &Request::Ban {
            ip: args.ip.to_string(),
            flowspec: args.flowspec.clone(),
            blackhole: args.blackhole,
            duration_secs,
        },
    )?;
    if args.json {
        println!("{body}");
    } else {
        let m = &body["mitigation"];
        println!(
            "mitigation {} for {}: {} until {} (unix)",
            s(&m["id"]),
            s(&m["victim"]),
            route_text(&m["route"]),
            s(&m["expires"])
        );
        if let Some(w) = body["warning"].as_str() {
            eprintln!("warning: {w}");
        }
    }
    Ok(())
}

pub fn unban(args: UnbanArgs) -> Result<()> {
    let body = ask(
        &args.socket,
        &Request::Unban {
            target: args.target.clone(),
        },
    )?;
    if args.json {
        println!("{body}");
    } else {
        println!("{} mitigation(s) withdrawn", s(&body["withdrawn"]));
        if let Some(w) = body["warning"].as_str() {
            eprintln!("warning: {w}");
        }
    }
    Ok(())
}

/// Whether the daemon's answer `b` comes from a speaker; if not, says so in
/// `out`.
fn bgp_configured(b: &serde_json::Value, out: &mut String) -> bool {
    if b["configured"] == false {
        out.push_str("no BGP peers configured ([bgp] section)\n");
        return false;
    }
    true
}

/// Unix seconds as `YYYY-MM-DD hh:mm:ss` UTC.
fn unix_time(t: u64) -> String {
    i64::try_from(t)
        .ok()
        .and_then(|t| jiff::Timestamp::from_second(t).ok())
        .map_or_else(
            || t.to_string(),
            |ts| ts.strftime("%Y-%m-%d %H:%M:%S").to_string(),
        )
}

#[cfg(test)]
mod time_tests {
    #[test]
    fn unix_seconds_read_as_utc_dates() {
        assert_eq!(super::unix_time(0), "1970-01-01 00:00:00");
        assert_eq!(
            super::unix_time(1_796_428_800 + 3_661),
            "2026-12-05 01:01:01"
        );
        assert_eq!(super::unix_time(951_782_400), "2000-02-29 00:00:00");
    }
}
