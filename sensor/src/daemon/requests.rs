//! The control socket's requests (`edge-sensor status`, `attacks`, `ban`,
//! ...), answered from the loop's state.

use std::net::IpAddr;

use edge_sensor_common::LAYOUT_VERSION;
use serde_json::json;

use super::{Daemon, mitigation::StateFile, unix_now};
use crate::{
    bgp::Speaker,
    control::{Request, Response},
    detect::Detector,
};

impl Daemon<'_> {
    /// A control socket request.
    pub(super) fn handle(&mut self, request: Request) -> Response {
        let ok = |body| Response::Ok { body };
        let err = |message: String| Response::Error { message };
        match request {
            Request::Status => ok(self.status()),
            Request::Attacks => {
                let current = self
                    .detector
                    .as_ref()
                    .map(Detector::attacks)
                    .unwrap_or_default();
                let mut current = serde_json::to_value(current).unwrap_or_default();
                // Flow Spec rules other systems have in force over each
                // victim (issue 15).
                if let (Some(s), Some(list)) = (&self.speaker, current.as_array_mut()) {
                    for a in list {
                        let victim = a["victim"]
                            .as_str()
                            .and_then(|v| v.parse::<ipnet::IpNet>().ok());
                        if let Some(v) = victim {
                            a["covered_by"] = json!(s.foreign_rules_covering(v.addr()));
                        }
                    }
                }
                ok(
                    json!({"detection": self.detector.is_some(), "current": current,
                    "recent": self.recent.iter().rev().collect::<Vec<_>>()}),
                )
            }
            Request::Mitigations => ok(json!({
                "dry_run": self.mitigator.config().dry_run,
                "mitigations": self.mitigator.active().collect::<Vec<_>>(),
            })),
            Request::Bgp => ok(json!({
                "configured": self.speaker.is_some(),
                "peers": self.speaker.as_ref().map(Speaker::status).unwrap_or_default(),
            })),
            Request::BgpQuarantine => ok(json!({
                "configured": self.speaker.is_some(),
                "quarantine": self.speaker.as_ref().map(Speaker::quarantine).unwrap_or_default(),
            })),
            Request::Rib { query } => {
                let Some(s) = &self.speaker else {
                    return err("no BGP peers configured".into());
                };
                match s.rib(&query) {
                    Ok(answer) => {
                        let mut body = json!({"configured": true, "routes": answer.routes,
                            "flowspec": answer.flowspec, "truncated": answer.truncated});
                        if query.flowspec_only {
                            body["ours"] = json!(ours_flowspec(s, &query));
                        }
                        ok(body)
                    }
                    Err(e) => err(e.to_string()),
                }
            }
            Request::RibRefresh { peer, families } => {
                let Some(s) = &self.speaker else {
                    return err("no BGP peers configured".into());
                };
                match s.route_refresh(&peer, &families) {
                    Ok(asked) => ok(json!({"peer": peer, "families": asked})),
                    Err(e) => err(e.to_string()),
                }
            }
            Request::ClearQuarantine { peer } => {
                let Some(s) = &self.speaker else {
                    return err("no BGP peers configured".into());
                };
                match s.clear_quarantine(&peer) {
                    Ok(cleared) => {
                        self.events.record(json!({"event": "quarantine_cleared",
                            "peer": peer, "routes": cleared}));
                        let saved = s.save_quarantine();
                        let persisted = saved.is_ok();
                        self.saves
                            .record(StateFile::Quarantine, saved.err().map(|e| e.to_string()));
                        ok(json!({"peer": peer, "cleared": cleared, "persisted": persisted}))
                    }
                    Err(e) => err(e.to_string()),
                }
            }
            Request::Ban {
                ip,
                flowspec,
                blackhole,
                duration_secs,
            } => {
                let Ok(ip) = ip.parse::<IpAddr>() else {
                    return err(format!("`{ip}` is not an address"));
                };
                let result = self.mitigator.ban(
                    ip,
                    flowspec.as_deref(),
                    blackhole,
                    duration_secs,
                    unix_now(),
                    &self.speaker,
                );
                match result {
                    Ok(m) => {
                        self.events
                            .record(json!({"event": "mitigation_announced", "mitigation": m}));
                        let mut body = json!({"mitigation": m});
                        self.persisted(&mut body);
                        ok(body)
                    }
                    Err(e) => {
                        self.events.record(json!({"event": "mitigation_refused",
                            "victim": ip, "reason": e.to_string(), "manual": true}));
                        self.save_mitigations();
                        err(e.to_string())
                    }
                }
            }
            Request::View => ok(self.view()),
            Request::Cluster => ok(self.cluster_json()),
            Request::Unban { target } => match self.mitigator.unban(&target, &self.speaker) {
                Ok(records) => {
                    let mut body = json!({"withdrawn": records.len()});
                    for r in records {
                        self.events.record(r);
                    }
                    self.persisted(&mut body);
                    ok(body)
                }
                Err(e) => {
                    self.save_mitigations();
                    err(e.to_string())
                }
            },
        }
    }

    /// Saves the mitigations and says in `body` whether that worked: a ban
    /// that is active but not on disk is lost by a restart.
    fn persisted(&mut self, body: &mut serde_json::Value) {
        let persisted = self.save_mitigations();
        body["persisted"] = json!(persisted);
        if !persisted {
            let why = self
                .saves
                .error(StateFile::Mitigations)
                .unwrap_or("unknown error");
            body["warning"] = json!(format!(
                "active, not persisted: {why} (a restart would lose it)"
            ));
        }
    }

    fn status(&self) -> serde_json::Value {
        let global = self.global();
        let peers: Vec<_> = self
            .speaker
            .as_ref()
            .map(|s| {
                s.status()
                    .into_iter()
                    .map(|p| {
                        json!({"name": p.name, "address": p.address, "state": p.state,
                        "uptime_secs": p.uptime_secs, "routes": p.adj_rib_out})
                    })
                    .collect()
            })
            .unwrap_or_default();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "layout_version": LAYOUT_VERSION,
            "pid": std::process::id(),
            "uptime_secs": self.started.elapsed().as_secs(),
            "pin_path": self.config.xdp.pin_path,
            "interfaces": self.config.xdp.interfaces,
            "fast_path": self.fast.to_json(),
            "telemetry": global.map(|g| json!({
                "datagrams": g.telemetry_datagrams, "rejected": g.rejected_datagrams,
                "consumed": g.consumed_datagrams, "passed": g.passed_datagrams})),
            "detection": self.detector.as_ref().map(|d| json!({
                "attacks": d.attacks().len(), "watched": d.watched().len(), "stats": d.stats()})),
            "mitigations": {
                "active": self.mitigator.active().count(),
                "dry_run": self.mitigator.config().dry_run,
            },
            "bgp": peers,
            "watch_decode_errors": self.watch_errors,
            "state": self.saves.to_json(&self.config.daemon.state_dir),
            "templates": self.templates_json(),
            "last_reload": self.last_reload,
            "cluster": self.cluster_status_json(),
        })
    }
}

impl Daemon<'_> {
    /// The web view's document (`GET /api/v1/view`).
    fn view(&self) -> serde_json::Value {
        use edge_sensor_common::Class;
        let top: Vec<_> = self
            .top
            .iter()
            .map(|r| {
                json!({"ip": r.ip, "pps": r.pps(Class::All), "bps": r.bps(Class::All),
                    "tcp_pps": r.pps(Class::Tcp), "syn_pps": r.pps(Class::TcpSyn),
                    "udp_pps": r.pps(Class::Udp), "icmp_pps": r.pps(Class::Icmp),
                    "fragment_pps": r.pps(Class::Fragment)})
            })
            .collect();
        // The exporters only: the userspace collector's report also holds
        // every destination, and cloning it and making a JSON row of each
        // to keep the exporters' was a million rows a request, in the
        // daemon's loop, at 1M tracked.
        use crate::counters::rows::exporters_json;
        let exporters = if self.fast.is_userspace() {
            Some(exporters_json(&self.decoder.report.exporters))
        } else {
            self.sensor
                .as_deref()
                .and_then(|s| s.exporters_report().ok())
                .map(|r| exporters_json(&r.exporters))
        }
        .unwrap_or_default();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_secs": self.started.elapsed().as_secs(),
            "poll_interval_secs": self.poll_interval().as_secs_f64(),
            "tracked": self.destinations.len(),
            "top": top,
            "attacks": self.detector.as_ref().map(Detector::attacks).unwrap_or_default(),
            "mitigations": self.mitigator.active().map(|m| json!({
                "id": m.id, "victim": m.victim, "kind": m.kind, "manual": m.manual,
                "created": m.created, "reason": m.reason, "rule": route_text(&m.route),
                "sent": m.sent.iter().map(|s| json!({
                    "peer": s.peer, "dialect": s.dialect,
                    "rule": s.route.as_ref().map(route_text), "refused": s.refused,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "dry_run": self.mitigator.config().dry_run,
            "bgp": self.speaker.as_ref().map(Speaker::status).unwrap_or_default(),
            "exporters": exporters,
        })
    }
}

/// A route as the operator reads it: the rule and its actions.
fn route_text(route: &crate::bgp::Route) -> String {
    match route {
        crate::bgp::Route::FlowSpec { actions, .. } => {
            let actions: Vec<String> = actions.iter().map(ToString::to_string).collect();
            format!("{} then {}", route.key(), actions.join(", "))
        }
        crate::bgp::Route::Blackhole { .. } => route.key().to_string(),
    }
}

/// Our Flow Spec rules per peer (the Adj-RIBs-Out), for `rib flowspec`.
fn ours_flowspec(s: &Speaker, query: &crate::bgp::RibQuery) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for p in s.status() {
        if query.peer.as_ref().is_some_and(|n| *n != p.name) {
            continue;
        }
        for r in s.routes(&p.name).unwrap_or_default() {
            if let crate::bgp::Route::FlowSpec { rule, actions } = &r
                && query.family.is_none_or(|f| f == r.family())
            {
                out.push(
                    json!({"peer": p.name, "family": r.family(), "rule": rule.to_string(),
                    "destination": rule.destination().map(|d| d.net()), "actions": actions}),
                );
            }
        }
    }
    out
}
