//! The daemon's metrics endpoint and what each poll sets on it (names in
//! [`crate::metrics::daemon`]).

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use edge_sensor_common::DST_STATS;

use super::{Daemon, unix_now};
use crate::{
    config::Config,
    http,
    metrics::{self, Metrics, daemon as names},
    mitigate,
};

/// The HTTP listener (metrics and the JSON API asking through
/// `requests`), if configured and its address could be bound.
pub(super) async fn start(
    config: &Config,
    requests: tokio::sync::mpsc::Sender<crate::control::Pending>,
) -> Option<Metrics> {
    let addr = config.daemon.metrics_addr()?;
    let m = Metrics::for_daemon();
    // A token file that cannot be trusted leaves the API read-only; the
    // daemon still protects.
    let token = config.daemon.api_token_file.as_deref().and_then(|path| {
        http::Token::from_file(path)
            .map_err(|e| tracing::error!("{e}: the API's write endpoints are off"))
            .ok()
            .map(std::sync::Arc::new)
    });
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => {
            tracing::info!(%addr, writes = token.is_some(), "metrics on http://{addr}/metrics, the API on http://{addr}/api/v1/");
            let router = http::metrics_router(m.clone())
                .merge(http::api_router(http::Api { requests, token }));
            tokio::spawn(http::serve(listener, router));
            Some(m)
        }
        Err(e) => {
            tracing::error!("metrics endpoint {addr}: {e}");
            None
        }
    }
}

impl Daemon<'_> {
    pub(super) fn update_metrics(&mut self, took: Duration) {
        if let Some(m) = &self.metrics {
            m.set_poll(took, unix_now() as f64);
        }
        self.update_state_metrics();
    }

    /// Everything [`Self::update_metrics`] sets but the poll's own timing:
    /// also after a decision between polls, so the metrics show a
    /// mitigation as soon as the router has it.
    pub(super) fn update_state_metrics(&mut self) {
        let Some(m) = &self.metrics else { return };
        for mode in ["xdp", "userspace"] {
            let on = self.fast.mode() == mode;
            m.set(
                names::FAST_PATH,
                &[("mode", mode)],
                if on { 1.0 } else { 0.0 },
            );
        }
        if self.sensor.is_some()
            && self
                .maps_read
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            self.maps_read = Some(Instant::now());
            match crate::xdp::inspect::list(&self.config.xdp.pin_path) {
                Ok(maps) => {
                    m.set_maps(&maps);
                    if let Some(id) = maps.iter().find(|x| x.name == DST_STATS).map(|x| x.id) {
                        let (programs, runs, time) = metrics::pinned::programs_using(id);
                        m.set_programs(programs, runs, time, metrics::pinned::bpf_stats_enabled());
                    }
                }
                Err(e) => tracing::warn!("metrics: reading the pinned maps: {e}"),
            }
        }
        if let Some(g) = self.global() {
            m.set_global(&g);
        }
        let kernel = match self.sensor.as_deref() {
            Some(sensor) if !self.fast.is_userspace() => Some(sensor.exporters_report()),
            _ => None,
        };
        match kernel {
            Some(Ok(mut report)) => {
                report.merge(&self.decoder.report);
                m.set_exporters(&report);
            }
            Some(Err(_)) => {}
            None => m.set_exporters(&self.decoder.report),
        }
        let attacks = self.detector.as_ref().map_or(0, |d| d.attacks().len());
        m.set(names::ATTACKS_ACTIVE, &[], attacks as f64);
        let mut kinds: BTreeMap<&str, f64> =
            BTreeMap::from([("flowspec", 0.0), ("blackhole", 0.0)]);
        for mi in self.mitigator.active() {
            let k = match mi.kind {
                mitigate::MitigationKind::Flowspec => "flowspec",
                mitigate::MitigationKind::Blackhole => "blackhole",
            };
            *kinds.entry(k).or_default() += 1.0;
        }
        for (k, v) in kinds {
            m.set(names::MITIGATIONS_ACTIVE, &[("kind", k)], v);
        }
        let now = unix_now();
        m.replace(
            names::MITIGATION,
            self.mitigator.active().map(|mi| {
                (
                    vec![
                        ("id", mi.id.to_string()),
                        ("victim", mi.victim.to_string()),
                        ("kind", format!("{:?}", mi.kind).to_lowercase()),
                        ("manual", mi.manual.to_string()),
                    ],
                    now.saturating_sub(mi.created) as f64,
                )
            }),
        );
        if let Some(s) = &self.speaker {
            for p in s.status() {
                let up = matches!(p.state, crate::bgp::SessionState::Established);
                m.set(
                    names::BGP_PEER_ESTABLISHED,
                    &[("peer", &p.name)],
                    if up { 1.0 } else { 0.0 },
                );
                m.set(
                    names::BGP_PEER_ROUTES,
                    &[("peer", &p.name)],
                    p.adj_rib_out as f64,
                );
                m.set(
                    names::BGP_PEER_FLAP_RESETS,
                    &[("peer", &p.name)],
                    p.flap.resets as f64,
                );
                let r = &p.rib_in;
                for (kind, n) in [
                    ("prefixes", r.prefixes),
                    ("paths", r.paths),
                    ("flowspec_rules", r.flowspec_rules),
                    ("stale", r.stale),
                ] {
                    m.set(
                        names::BGP_PEER_RECEIVED,
                        &[("peer", &p.name), ("kind", kind)],
                        n as f64,
                    );
                }
                m.set(
                    names::BGP_UPDATES_RECEIVED,
                    &[("peer", &p.name)],
                    p.updates_received as f64,
                );
                for (reason, n) in &p.update_errors {
                    m.set(
                        names::BGP_UPDATE_ERRORS,
                        &[("peer", &p.name), ("reason", reason.name())],
                        *n as f64,
                    );
                }
            }
            let quarantined = s.quarantine().into_iter().flat_map(|(peer, list)| {
                list.into_iter().map(move |q| {
                    (
                        vec![
                            ("peer", peer.clone()),
                            ("route", q.route.to_string()),
                            ("reason", q.reason),
                        ],
                        q.since as f64,
                    )
                })
            });
            m.replace(names::BGP_ROUTE_QUARANTINED, quarantined);
        }
        for file in super::StateFile::ALL {
            let ok = self.saves.error(file).is_none();
            m.set(
                names::STATE_PERSISTED,
                &[("file", file.name())],
                if ok { 1.0 } else { 0.0 },
            );
            m.set(
                names::STATE_SAVE_FAILURES,
                &[("file", file.name())],
                self.saves.failures[file as usize] as f64,
            );
        }
        let t = self.decoder.templates();
        m.set(names::TEMPLATES, &[], t.templates().count() as f64);
        m.set(names::TEMPLATE_MEMORY, &[], t.memory_bytes() as f64);
        m.replace(
            names::TEMPLATES_EVICTED,
            t.evicted()
                .map(|(ip, n)| (vec![("exporter", ip.to_string())], n as f64)),
        );
        if let Some(w) = self.watch_stats() {
            m.set(
                names::WATCH_SAMPLES,
                &[("what", "streamed")],
                w.streamed as f64,
            );
            m.set(names::WATCH_SAMPLES, &[("what", "lost")], w.lost as f64);
        }
        self.set_cluster_metrics(m);
    }

    /// `[cluster]`'s state and the node's counters (absent without it).
    fn set_cluster_metrics(&self, m: &Metrics) {
        let Some(c) = &self.cluster else { return };
        let Some(r) = &c.last else { return };
        let s = r.stats;
        let clustered = r.status == crate::cluster::Status::Clustered;
        m.set(
            names::CLUSTER_CLUSTERED,
            &[],
            if clustered { 1.0 } else { 0.0 },
        );
        m.set(names::CLUSTER_MEMBERS, &[], s.members as f64);
        let ok = s.steps - s.failed_steps;
        m.set(names::CLUSTER_STEPS, &[("result", "ok")], ok as f64);
        m.set(
            names::CLUSTER_STEPS,
            &[("result", "failed")],
            s.failed_steps as f64,
        );
        m.set(
            names::CLUSTER_STEPS,
            &[("result", "skipped")],
            c.skipped_polls as f64,
        );
        m.set(names::CLUSTER_FALLBACKS, &[], s.fallbacks as f64);
        m.set(
            names::CLUSTER_SUMMARY_BYTES,
            &[],
            s.summary_bytes_published as f64,
        );
        m.set(
            names::CLUSTER_SUMMARY_MESSAGES,
            &[],
            s.summary_parts_published as f64,
        );
        m.set(
            names::CLUSTER_SUMMARY_LEFT_OUT,
            &[],
            s.summary_entries_left_out as f64,
        );
        m.set(
            names::CLUSTER_NETWORK_DESTINATIONS,
            &[],
            s.network_destinations as f64,
        );
        let owned = r.owned_by(c.name()).count();
        m.set(
            names::CLUSTER_NETWORK_ATTACKS,
            &[("owner", "self")],
            owned as f64,
        );
        m.set(
            names::CLUSTER_NETWORK_ATTACKS,
            &[("owner", "other")],
            (r.attacks.len() - owned) as f64,
        );
        m.set(
            names::CLUSTER_CLAIM_WRITES,
            &[("result", "ok")],
            s.claim_writes as f64,
        );
        m.set(
            names::CLUSTER_CLAIM_WRITES,
            &[("result", "failed")],
            s.claim_write_errors as f64,
        );
        m.set(names::CLUSTER_HANDOVERS, &[], c.handovers as f64);
        m.replace(
            names::CLUSTER_MEMBER_SUMMARY_AGE,
            r.members.iter().filter_map(|mv| {
                mv.summary_age_ms
                    .map(|ms| (vec![("member", mv.name.clone())], ms as f64 / 1000.0))
            }),
        );
    }
}
