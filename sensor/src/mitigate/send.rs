//! Sending a mitigation: per router, the rule its dialect takes (or a
//! blackhole where it refuses one), within `max_per_peer`; and a router's
//! quarantine of a rule.

use super::{Announcer, Mitigation, MitigationKind, Mitigator, Record, SentRule};
use crate::bgp::{
    ComponentKind, FlowSpec, Outcome, Route,
    dialect::{self, Widening},
};

/// Whether a rule may be widened for a router that cannot match one of its
/// components. The wider rule still covers the attack (it matches a
/// superset) and the destination (the victim) is never dropped, so
/// `min_coverage` holds; but the fingerprint only knows the normal traffic
/// the whole match hits, so the wider rule's hit is unknown: allowed only
/// when `max_normal_hit` accepts any (1.0), else refused (the router then
/// gets the RTBH fallback).
struct PolicyWidening {
    max_normal_hit: f64,
}

impl Widening for PolicyWidening {
    fn allow(&self, _wider: &FlowSpec, dropped: ComponentKind) -> Result<(), String> {
        if self.max_normal_hit >= 1.0 {
            Ok(())
        } else {
            Err(format!(
                "the normal traffic a rule without {dropped} would hit is unknown, \
                 and max_normal_hit is {}",
                self.max_normal_hit
            ))
        }
    }
}

impl Mitigator {
    /// Mitigations a router holds now (other than the one being sent).
    fn held_by(&self, peer: &str) -> usize {
        self.active
            .values()
            .filter(|m| {
                m.peers
                    .iter()
                    .any(|(p, o)| p == peer && !o.contains("refused") && !o.starts_with("not sent"))
            })
            .count()
    }

    /// Announces `m` (and its fallback): a blackhole to the routers that
    /// refused a filter, where a blackhole is allowed. Routers holding
    /// `max_per_peer` mitigations already are left out.
    pub(super) fn send(&self, m: &mut Mitigation, a: &dyn Announcer) {
        m.peers.clear();
        if m.dry_run {
            m.peers.push(("*".into(), "dry run: not announced".into()));
            return;
        }
        let all = a.peers();
        let (full, open): (Vec<String>, Vec<String>) = all
            .into_iter()
            .partition(|p| self.held_by(p) >= self.cfg.max_per_peer);
        for p in &full {
            m.peers.push((
                p.clone(),
                format!(
                    "refused: it holds {} mitigations (max_per_peer)",
                    self.cfg.max_per_peer
                ),
            ));
        }
        if !full.is_empty() && open.is_empty() {
            return;
        }
        let mut refused = Vec::new();
        if let Route::FlowSpec { rule, actions } = m.route.clone() {
            // Per router, the best rule its dialect takes; routers given
            // the same rule share one announcement.
            let judge = PolicyWidening {
                max_normal_hit: if m.manual {
                    0.0
                } else {
                    self.cfg.max_normal_hit
                },
            };
            m.sent.clear();
            let mut groups: Vec<(Route, Vec<String>)> = Vec::new();
            for (peer, d) in a.dialects().into_iter().filter(|(p, _)| open.contains(p)) {
                match dialect::adapt(&rule, &actions, &d, &judge) {
                    Ok(adapted) => {
                        let route = Route::FlowSpec {
                            rule: adapted.rule,
                            actions: adapted.actions,
                        };
                        match groups.iter_mut().find(|(r, _)| *r == route) {
                            Some((_, peers)) => peers.push(peer.clone()),
                            None => groups.push((route.clone(), vec![peer.clone()])),
                        }
                        m.sent.push(SentRule {
                            peer,
                            dialect: d.profile,
                            route: Some(route),
                            changes: adapted.changes.iter().map(ToString::to_string).collect(),
                            refused: None,
                        });
                    }
                    Err(why) => {
                        m.peers.push((peer.clone(), format!("refused: {why}")));
                        refused.push(peer.clone());
                        m.sent.push(SentRule {
                            peer,
                            dialect: d.profile,
                            route: None,
                            changes: Vec::new(),
                            refused: Some(why.to_string()),
                        });
                    }
                }
            }
            for (route, peers) in groups {
                let names: Vec<&str> = peers.iter().map(String::as_str).collect();
                match a.announce_to(&names, route) {
                    Ok(ann) => {
                        for (peer, outcome) in &ann.peers {
                            m.peers.push((peer.clone(), outcome_text(outcome)));
                            if let Outcome::Refused(r) = outcome {
                                refused.push(peer.clone());
                                if let Some(s) = m.sent.iter_mut().find(|s| s.peer == *peer) {
                                    s.route = None;
                                    s.refused = Some(r.to_string());
                                }
                            }
                        }
                    }
                    Err(e) => {
                        for peer in peers {
                            m.peers.push((peer.clone(), format!("refused: {e}")));
                            refused.push(peer);
                        }
                    }
                }
            }
        } else {
            let result = if full.is_empty() {
                a.announce(m.route.clone())
            } else {
                let open: Vec<&str> = open.iter().map(String::as_str).collect();
                a.announce_to(&open, m.route.clone())
            };
            let ann = match result {
                Ok(ann) => ann,
                Err(e) => {
                    m.peers.push(("*".into(), format!("refused: {e}")));
                    return;
                }
            };
            for (peer, outcome) in &ann.peers {
                m.peers.push((peer.clone(), outcome_text(outcome)));
                if matches!(outcome, Outcome::Refused(_)) {
                    refused.push(peer.clone());
                }
            }
        }
        if m.kind == MitigationKind::Flowspec && !refused.is_empty() && m.fallback.is_none() {
            let hole = Route::blackhole(m.victim.addr());
            if m.victim.prefix_len() == m.victim.max_prefix_len()
                && self.safe(&hole, m.victim, false).is_ok()
            {
                m.fallback = Some(hole);
                m.fallback_peers = refused;
            }
        } else if m.kind == MitigationKind::Flowspec
            && m.fallback.is_some()
            && !m.fallback_peers.is_empty()
        {
            // A router that refuses the filter now (e.g. quarantined it)
            // gets the blackhole too.
            for p in refused {
                if !m.fallback_peers.contains(&p) {
                    m.fallback_peers.push(p);
                }
            }
        }
        if let Some(hole) = m.fallback.clone() {
            let peers: Vec<&str> = m.fallback_peers.iter().map(String::as_str).collect();
            let result = if peers.is_empty() {
                a.announce(hole)
            } else {
                a.announce_to(&peers, hole)
            };
            match result {
                Ok(ann) => {
                    for (peer, outcome) in &ann.peers {
                        m.peers.push((
                            peer.clone(),
                            format!("blackhole: {}", outcome_text(outcome)),
                        ));
                    }
                }
                Err(e) => m
                    .peers
                    .push(("*".into(), format!("blackhole refused: {e}"))),
            }
        }
    }

    /// The speaker quarantined `route` for `peer` (the router reset the
    /// session over it, `reason`): every mitigation using it is announced
    /// again, so that router refuses it and gets the fallback (a blackhole
    /// of the victim, where allowed).
    pub fn on_quarantine(
        &mut self,
        peer: &str,
        route: &Route,
        reason: &str,
        a: &dyn Announcer,
    ) -> Vec<Record> {
        let ids: Vec<u64> = self
            .active
            .values()
            .filter(|m| uses(m, peer, route) || m.fallback.as_ref() == Some(route))
            .map(|m| m.id)
            .collect();
        // The rule sent to that router (adapted to its dialect) or the
        // mitigation's own.
        fn uses(m: &Mitigation, peer: &str, route: &Route) -> bool {
            &m.route == route
                || m.sent
                    .iter()
                    .any(|s| s.peer == peer && s.route.as_ref() == Some(route))
        }
        let mut out = Vec::new();
        for id in ids {
            let mut m = self.active.remove(&id).expect("present");
            if uses(&m, peer, route) && !m.dry_run {
                self.send(&mut m, a);
            }
            let fallback = m
                .fallback
                .as_ref()
                .filter(|f| *f != route)
                .filter(|_| {
                    m.fallback_peers.is_empty() || m.fallback_peers.iter().any(|p| p == peer)
                })
                .map(ToString::to_string);
            tracing::warn!(mitigation = id, peer, %route, reason, fallback = ?fallback,
                "mitigation rule quarantined for a router");
            out.push(Record::MitigationQuarantined {
                peer: peer.to_owned(),
                route: route.clone(),
                router_reason: reason.to_owned(),
                fallback,
                mitigation: m.clone(),
            });
            self.active.insert(id, m);
            self.dirty = true;
        }
        if out.is_empty() {
            out.push(Record::RouteQuarantined {
                peer: peer.to_owned(),
                route: route.clone(),
                router_reason: reason.to_owned(),
            });
        }
        out
    }
}

fn outcome_text(o: &Outcome) -> String {
    match o {
        Outcome::Accepted => "accepted".into(),
        Outcome::Unchanged => "unchanged".into(),
        Outcome::Refused(r) => format!("refused: {r}"),
        Outcome::InForceElsewhere { from } => {
            format!("not sent: the same rule is in force from {from} (another system)")
        }
    }
}
