//! `edge-sensor rib`: the routes peers sent us (their Adj-RIBs-In), asked
//! of the running daemon; `rib flowspec` puts the Flow Spec rules other
//! systems announce beside ours; `rib refresh` sends a ROUTE-REFRESH
//! (RFC 2918).

use std::{fmt::Write as _, path::PathBuf};

use anyhow::{Result, bail};
use serde_json::Value;

use super::ask::{ask, print, s};
use crate::{
    bgp::{Family, MatchMode, RibQuery, rib_in::query::parse_prefix},
    control::Request,
};

#[derive(Debug, clap::Args)]
pub struct RibArgs {
    #[command(subcommand)]
    pub action: Option<RibAction>,
    #[command(flatten)]
    pub filter: RibFilter,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
    /// The daemon's control socket.
    #[arg(long, global = true, default_value = crate::control::DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct RibFilter {
    /// A prefix or an address.
    pub prefix: Option<String>,
    /// Only this peer (its name in [[bgp.peers]]).
    #[arg(long, global = true)]
    pub peer: Option<String>,
    /// Only this family: ipv4-unicast, ipv6-unicast, ipv4-flowspec,
    /// ipv6-flowspec.
    #[arg(long, global = true)]
    pub family: Option<String>,
    /// The longest prefix covering PREFIX (the default).
    #[arg(long, group = "mode")]
    pub longest: bool,
    /// Exactly PREFIX.
    #[arg(long, group = "mode")]
    pub exact: bool,
    /// PREFIX and every prefix inside it.
    #[arg(long, group = "mode")]
    pub more_specific: bool,
    /// Routes carrying this community (ASN:VALUE) or large community
    /// (GLOBAL:LOCAL1:LOCAL2).
    #[arg(long, global = true)]
    pub community: Option<String>,
    /// At most this many rows (default 1000; 0: all).
    #[arg(long, global = true)]
    pub limit: Option<usize>,
}

#[derive(Debug, clap::Subcommand)]
pub enum RibAction {
    /// Received Flow Spec rules, with their validation (RFC 8955 §6, RFC
    /// 9117), beside the rules we announce.
    Flowspec {
        /// Rules whose destination covers this prefix or address.
        prefix: Option<String>,
    },
    /// Ask a peer to send its routes again (ROUTE-REFRESH, RFC 2918).
    Refresh {
        /// The peer's name.
        peer: String,
    },
}

fn family(name: &str) -> Result<Family> {
    match serde_json::from_value(Value::String(name.to_string())) {
        Ok(f) => Ok(f),
        Err(_) => bail!(
            "unknown family `{name}` (ipv4-unicast, ipv6-unicast, ipv4-flowspec, ipv6-flowspec)"
        ),
    }
}

fn query(f: &RibFilter, prefix: Option<&str>, flowspec_only: bool) -> Result<RibQuery> {
    let prefix = match prefix {
        None => None,
        Some(p) => match parse_prefix(p) {
            Some(n) => Some(n),
            None => bail!("`{p}` is neither a prefix nor an address"),
        },
    };
    Ok(RibQuery {
        peer: f.peer.clone(),
        family: f.family.as_deref().map(family).transpose()?,
        prefix,
        mode: if f.exact {
            MatchMode::Exact
        } else if f.more_specific {
            MatchMode::MoreSpecific
        } else {
            MatchMode::Longest
        },
        community: f.community.clone(),
        flowspec_only,
        limit: f.limit,
    })
}

pub fn rib(args: RibArgs) -> Result<()> {
    let f = &args.filter;
    match &args.action {
        Some(RibAction::Refresh { peer }) => {
            let families = f.family.as_deref().map(family).transpose()?;
            let body = ask(
                &args.socket,
                &Request::RibRefresh {
                    peer: peer.clone(),
                    families: families.into_iter().collect(),
                },
            )?;
            print(args.json, &body, |b| {
                let fams: Vec<String> = b["families"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(s)
                    .collect();
                format!(
                    "ROUTE-REFRESH sent to {} for {}\n",
                    s(&b["peer"]),
                    fams.join(", ")
                )
            });
        }
        Some(RibAction::Flowspec { prefix }) => {
            let prefix = prefix.as_deref().or(f.prefix.as_deref());
            let body = ask(
                &args.socket,
                &Request::Rib {
                    query: query(f, prefix, true)?,
                },
            )?;
            print(args.json, &body, flowspec_table);
        }
        None => {
            let body = ask(
                &args.socket,
                &Request::Rib {
                    query: query(f, f.prefix.as_deref(), false)?,
                },
            )?;
            print(args.json, &body, routes_table);
        }
    }
    Ok(())
}

fn communities(a: &Value) -> String {
    let mut c: Vec<String> = a["communities"]
        .as_array()
        .into_iter()
        .flatten()
        .map(s)
        .collect();
    c.extend(
        a["large_communities"]
            .as_array()
            .into_iter()
            .flatten()
            .map(s),
    );
    if c.is_empty() {
        "-".into()
    } else {
        c.join(" ")
    }
}

fn as_path(a: &Value) -> String {
    let mut out = Vec::new();
    for seg in a["as_path"].as_array().into_iter().flatten() {
        let asns: Vec<String> = seg["asns"]
            .as_array()
            .into_iter()
            .flatten()
            .map(s)
            .collect();
        match seg["type"].as_str() {
            Some("sequence") => out.push(asns.join(" ")),
            Some("set") => out.push(format!("{{{}}}", asns.join(","))),
            _ => out.push(format!("({})", asns.join(" "))),
        }
    }
    if out.is_empty() {
        "-".into()
    } else {
        out.join(" ")
    }
}

fn truncated(b: &Value, out: &mut String) {
    if b["truncated"] == true {
        out.push_str("(more rows matched: raise --limit, 0 for all)\n");
    }
}

fn routes_table(b: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<12} {:<24} {:>7} {:<20} {:<24} {:>6} {:>6}  COMMUNITIES",
        "PEER", "PREFIX", "PATH-ID", "NEXT HOP", "AS PATH", "LPREF", "MED"
    );
    for r in b["routes"].as_array().into_iter().flatten() {
        let a = &r["attributes"];
        let stale = if r["stale"] == true { " (stale)" } else { "" };
        let _ = writeln!(
            out,
            "{:<12} {:<24} {:>7} {:<20} {:<24} {:>6} {:>6}  {}{stale}",
            s(&r["peer"]),
            s(&r["prefix"]),
            s(&r["path_id"]),
            s(&a["next_hop"]),
            as_path(a),
            s(&a["local_pref"]),
            s(&a["med"]),
            communities(a),
        );
    }
    truncated(b, &mut out);
    out
}

fn flowspec_table(b: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "received:");
    let _ = writeln!(
        out,
        "  {:<12} {:>7} {:<14} {:<28} RULE",
        "PEER", "PATH-ID", "VALIDATION", "ACTIONS"
    );
    for r in b["flowspec"].as_array().into_iter().flatten() {
        let actions = actions_text(&r["actions"]);
        let stale = if r["stale"] == true { " (stale)" } else { "" };
        let _ = writeln!(
            out,
            "  {:<12} {:>7} {:<14} {:<28} {}{stale}",
            s(&r["peer"]),
            s(&r["path_id"]),
            s(&r["validation"]["state"]),
            if actions.is_empty() { "-" } else { &actions },
            s(&r["rule"]),
        );
    }
    let _ = writeln!(out, "ours (announced):");
    for r in b["ours"].as_array().into_iter().flatten() {
        let actions = actions_text(&r["actions"]);
        let _ = writeln!(
            out,
            "  {:<12} {:>7} {:<14} {:<28} {}",
            s(&r["peer"]),
            "-",
            "-",
            actions,
            s(&r["rule"]),
        );
    }
    truncated(b, &mut out);
    out
}

/// A rule's actions, comma-separated ("" for none).
fn actions_text(actions: &Value) -> String {
    actions
        .as_array()
        .into_iter()
        .flatten()
        .map(action_text)
        .collect::<Vec<_>>()
        .join(",")
}

fn action_text(a: &Value) -> String {
    match serde_json::from_value::<crate::bgp::Action>(a.clone()) {
        Ok(crate::bgp::Action::TrafficRateBytes { rate: 0.0, .. }) => "discard".into(),
        Ok(crate::bgp::Action::TrafficRateBytes { rate, .. }) => format!("rate {rate} B/s"),
        _ => s(&a["action"]),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parsed(args: &[&str]) -> RibArgs {
        let mut all = vec!["edge-sensor", "rib"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all).unwrap().command {
            Command::Rib(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn command_line_becomes_the_control_request() {
        let a = parsed(&[
            "10.1.2.3",
            "--more-specific",
            "--peer",
            "r1",
            "--family",
            "ipv4-unicast",
            "--community",
            "65000:1",
        ]);
        let q = query(&a.filter, a.filter.prefix.as_deref(), false).unwrap();
        assert_eq!(q.mode, MatchMode::MoreSpecific);
        assert_eq!(q.prefix, Some("10.1.2.3/32".parse().unwrap()));
        assert_eq!(q.family, Some(Family::Ipv4Unicast));
        let request = Request::Rib { query: q.clone() };
        let line = serde_json::to_string(&request).unwrap();
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), request);

        let a = parsed(&["flowspec", "198.18.0.0/16", "--json"]);
        assert!(a.json);
        let Some(RibAction::Flowspec { prefix }) = &a.action else {
            panic!("{a:?}")
        };
        let q = query(&a.filter, prefix.as_deref(), true).unwrap();
        assert!(q.flowspec_only && q.mode == MatchMode::Longest);
        assert!(query(&a.filter, Some("nonsense"), false).is_err());
        assert!(family("ipv5").is_err());
        assert!(matches!(
            parsed(&["refresh", "r1"]).action,
            Some(RibAction::Refresh { .. })
        ));
    }
}
