//! The mitigation policy: attacks in, BGP announcements out, safely.
//!
//! For each attack the detector reports, the victim's host group action
//! says what is allowed; the fingerprint's quality and the attack's size say
//! which: a Flow Spec filter (discard or police) when the match covers
//! enough of the attack and little normal traffic, else a blackhole (RTBH,
//! RFC 7999) of the single victim address. Routers that refuse a filter get
//! the blackhole instead; `flowspec_then_blackhole` escalates an attack that
//! goes on. A mitigation stays at least `min_hold`, and is withdrawn once its
//! attack has ended (the detector's own hysteresis decides that).
//!
//! Safety comes before all of it, checked for every route, automatic or
//! manual: inside the own networks, never a blackhole for `never_blackhole`
//! or for more than one address, never a filter broader than the configured
//! prefix length, at most `max_active` at once and `max_new_per_minute` new
//! ones. Active mitigations are kept in a state file; after a restart they
//! are announced again and withdrawn when no attack on them is seen again.

pub mod config;
pub mod log;
pub mod rule;

use std::{
    collections::{BTreeMap, VecDeque},
    net::IpAddr,
};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use config::MitigationConfig;

use crate::{
    bgp::{
        self, Action, Announcement, ComponentKind, Dialect, FlowSpec, Outcome, Profile, Route,
        RouteError, RouteKey,
        dialect::{self, Widening},
    },
    detect::{Action as GroupAction, Attack, Event, Scope},
};

/// A restored mitigation whose attack is not seen again is withdrawn no
/// sooner than this after the restart (the detector needs a few polls).
pub const RESTORE_GRACE_SECS: u64 = 60;

/// Where routes go: the BGP speaker, or nowhere (no peers, tests).
pub trait Announcer {
    fn announce(&self, route: Route) -> Result<Announcement, RouteError>;
    fn announce_to(&self, peers: &[&str], route: Route) -> Result<Announcement, RouteError>;
    fn withdraw_key(&self, key: &RouteKey) -> usize;
    /// The routers, by name.
    fn peers(&self) -> Vec<String>;
    /// Each router's Flow Spec dialect (default: `generic` for all).
    fn dialects(&self) -> Vec<(String, Dialect)> {
        self.peers()
            .into_iter()
            .map(|p| (p, Dialect::profile(Profile::Generic)))
            .collect()
    }
}

impl Announcer for bgp::Speaker {
    fn peers(&self) -> Vec<String> {
        self.config().peers.iter().map(|p| p.name.clone()).collect()
    }
    fn dialects(&self) -> Vec<(String, Dialect)> {
        self.config()
            .peers
            .iter()
            .map(|p| (p.name.clone(), p.flowspec.dialect()))
            .collect()
    }
    fn announce(&self, route: Route) -> Result<Announcement, RouteError> {
        bgp::Speaker::announce(self, route)
    }
    fn announce_to(&self, peers: &[&str], route: Route) -> Result<Announcement, RouteError> {
        bgp::Speaker::announce_to(self, peers, route)
    }
    fn withdraw_key(&self, key: &RouteKey) -> usize {
        bgp::Speaker::withdraw_key(self, key)
    }
}

/// The daemon's BGP speaker, if configured. Without one (`None`), routes
/// are decided and logged, sent nowhere.
impl Announcer for Option<bgp::Speaker> {
    fn peers(&self) -> Vec<String> {
        self.as_ref().map(Announcer::peers).unwrap_or_default()
    }
    fn dialects(&self) -> Vec<(String, Dialect)> {
        self.as_ref().map(Announcer::dialects).unwrap_or_default()
    }
    fn announce(&self, route: Route) -> Result<Announcement, RouteError> {
        match self {
            Some(speaker) => Announcer::announce(speaker, route),
            None => Ok(Announcement {
                key: route.key(),
                peers: Vec::new(),
            }),
        }
    }
    fn announce_to(&self, peers: &[&str], route: Route) -> Result<Announcement, RouteError> {
        match self {
            Some(speaker) => Announcer::announce_to(speaker, peers, route),
            None => self.announce(route),
        }
    }
    fn withdraw_key(&self, key: &RouteKey) -> usize {
        self.as_ref()
            .map_or(0, |speaker| Announcer::withdraw_key(speaker, key))
    }
}

/// What a mitigation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Flowspec,
    Blackhole,
}

/// One active mitigation (what `edge-sensor mitigations` shows, and what
/// the state file holds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mitigation {
    pub id: u64,
    pub victim: IpNet,
    pub kind: Kind,
    pub route: Route,
    /// A blackhole added for routers that refused the filter, or on
    /// escalation, and the peers it went to (empty: all).
    pub fallback: Option<Route>,
    pub fallback_peers: Vec<String>,
    /// The detector's attack id (`None`: manual, or restored and not seen
    /// again yet).
    pub attack: Option<u64>,
    pub class: Option<String>,
    pub reason: String,
    pub manual: bool,
    /// Unix seconds.
    pub created: u64,
    /// Not withdrawn before this.
    pub hold_until: u64,
    /// Manual bans: withdrawn at this time.
    pub expires: Option<u64>,
    /// When its attack ended (then it is withdrawn once held long enough).
    pub ended: Option<u64>,
    /// `flowspec_then_blackhole`: the blackhole follows at this time if the
    /// attack is still on.
    pub escalate_at: Option<u64>,
    /// Per peer: what it did with the route.
    pub peers: Vec<(String, String)>,
    /// Flow spec mitigations: per router, the rule actually sent (adapted
    /// to its dialect) or why none was.
    #[serde(default)]
    pub sent: Vec<SentRule>,
    pub dry_run: bool,
}

/// What one router was given for a flow spec mitigation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentRule {
    pub peer: String,
    /// Its dialect's profile.
    pub dialect: Profile,
    /// The rule sent (`None`: refused, see `refused`).
    pub route: Option<Route>,
    /// How it differs from the mitigation's rule (empty: the same).
    pub changes: Vec<String>,
    /// Why this router got no rule (it gets the blackhole fallback where
    /// one is allowed).
    pub refused: Option<String>,
}

impl Mitigation {
    fn keys(&self) -> Vec<RouteKey> {
        let mut keys = vec![self.route.key()];
        for r in self.sent.iter().filter_map(|s| s.route.as_ref()) {
            if !keys.contains(&r.key()) {
                keys.push(r.key());
            }
        }
        if let Some(f) = &self.fallback {
            keys.push(f.key());
        }
        keys
    }
}

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

/// The policy engine and the set of active mitigations.
pub struct Mitigator {
    cfg: MitigationConfig,
    own_networks: Vec<IpNet>,
    active: BTreeMap<u64, Mitigation>,
    next_id: u64,
    /// Unix seconds of recent new announcements (rate limit).
    recent: VecDeque<u64>,
    dirty: bool,
}

/// A log record: what happened, as JSON (for the event log and `tracing`).
pub type Record = serde_json::Value;

impl Mitigator {
    pub fn new(cfg: MitigationConfig, own_networks: Vec<IpNet>) -> Self {
        Self {
            cfg,
            own_networks,
            active: BTreeMap::new(),
            next_id: 1,
            recent: VecDeque::new(),
            dirty: false,
        }
    }

    /// New policy and limits (SIGHUP); active mitigations stay.
    pub fn reconfigure(&mut self, cfg: MitigationConfig, own_networks: Vec<IpNet>) {
        self.cfg = cfg;
        self.own_networks = own_networks;
    }

    pub fn config(&self) -> &MitigationConfig {
        &self.cfg
    }

    pub fn active(&self) -> impl Iterator<Item = &Mitigation> {
        self.active.values()
    }

    /// What to persist; `Some` once after every change.
    pub fn take_changed(&mut self) -> Option<Vec<Mitigation>> {
        std::mem::take(&mut self.dirty).then(|| self.active.values().cloned().collect())
    }

    /// Mitigations saved before a restart: announced again (a route that
    /// no longer passes the safety checks is dropped), and withdrawn later
    /// unless an attack on them is seen again.
    pub fn restore(&mut self, saved: Vec<Mitigation>, now: u64, a: &dyn Announcer) -> Vec<Record> {
        let mut out = Vec::new();
        for mut m in saved {
            self.next_id = self.next_id.max(m.id + 1);
            if m.expires.is_some_and(|t| t <= now) {
                out.push(json!({"event": "mitigation_expired", "mitigation": m}));
                continue;
            }
            if let Err(why) = self.safe(&m.route, m.victim, false) {
                out.push(json!({"event": "mitigation_dropped", "reason": why, "mitigation": m}));
                continue;
            }
            if !m.manual {
                m.attack = None;
                m.ended = Some(m.ended.unwrap_or(now));
                m.hold_until = m.hold_until.max(now + RESTORE_GRACE_SECS);
            }
            m.dry_run = self.cfg.dry_run;
            self.send(&mut m, a);
            out.push(json!({"event": "mitigation_restored", "mitigation": m}));
            self.active.insert(m.id, m);
            self.dirty = true;
        }
        out
    }

    /// Acts on a detector event.
    pub fn on_event(&mut self, ev: &Event, now: u64, a: &dyn Announcer) -> Vec<Record> {
        match ev {
            Event::AttackStarted(attack) => self.started(attack, now, a),
            Event::AttackUpdated(attack) => self.updated(attack, now, a),
            Event::AttackEnded(attack) => {
                for m in self.active.values_mut() {
                    if m.attack == Some(attack.id) {
                        m.ended = Some(now);
                        m.escalate_at = None;
                        self.dirty = true;
                    }
                }
                Vec::new()
            }
        }
    }

    fn started(&mut self, attack: &Attack, now: u64, a: &dyn Announcer) -> Vec<Record> {
        // A mitigation already there for this victim (restored after a
        // restart, or held after an earlier attack): it covers this one.
        if let Some(m) = self.active.values_mut().find(|m| {
            !m.manual
                && m.victim == attack.victim
                && m.attack.is_none_or(|id| id != attack.id)
                && m.ended.is_some()
        }) {
            m.attack = Some(attack.id);
            m.ended = None;
            m.class = Some(attack.class.to_string());
            m.hold_until = m.hold_until.max(now + self.cfg.min_hold.as_secs());
            self.dirty = true;
            return vec![
                json!({"event": "mitigation_adopted", "attack": attack.id, "mitigation": m.id}),
            ];
        }
        if attack.action == GroupAction::Alert {
            return vec![
                json!({"event": "alert_only", "attack": attack.id, "victim": attack.victim}),
            ];
        }
        let (kind, route, reason) = match self.choose(attack) {
            Ok(choice) => choice,
            Err(why) => {
                return vec![json!({"event": "mitigation_refused", "attack": attack.id,
                    "victim": attack.victim, "reason": why})];
            }
        };
        let m = Mitigation {
            id: self.next_id,
            victim: attack.victim,
            kind,
            route,
            fallback: None,
            fallback_peers: Vec::new(),
            attack: Some(attack.id),
            class: Some(attack.class.to_string()),
            reason,
            manual: false,
            created: now,
            hold_until: now + self.cfg.min_hold.as_secs(),
            expires: None,
            ended: None,
            escalate_at: (kind == Kind::Flowspec
                && attack.action == GroupAction::FlowspecThenBlackhole)
                .then(|| now + self.cfg.escalate_after.as_secs()),
            peers: Vec::new(),
            sent: Vec::new(),
            dry_run: self.cfg.dry_run,
        };
        self.admit(m, now, a)
    }

    /// Safety checks and limits, then the announcement.
    fn admit(&mut self, mut m: Mitigation, now: u64, a: &dyn Announcer) -> Vec<Record> {
        if let Err(why) = self.safe(&m.route, m.victim, true) {
            return vec![json!({"event": "mitigation_refused", "attack": m.attack,
                "victim": m.victim, "reason": why})];
        }
        if let Err(why) = self.within_rate(now) {
            return vec![json!({"event": "mitigation_refused", "attack": m.attack,
                "victim": m.victim, "reason": why})];
        }
        self.next_id += 1;
        self.recent.push_back(now);
        self.send(&mut m, a);
        let rec = json!({"event": "mitigation_announced", "mitigation": m});
        self.active.insert(m.id, m);
        self.dirty = true;
        vec![rec]
    }

    /// The kind and route for an attack, per its group's action and the
    /// policy; `Err` when no safe mitigation fits.
    fn choose(&self, attack: &Attack) -> Result<(Kind, Route, String), String> {
        let fp = &attack.fingerprint;
        let too_big = self
            .cfg
            .blackhole_above_bps
            .is_some_and(|r| attack.peak_bps > r.0);
        let precise =
            fp.covers_attack >= self.cfg.min_coverage && fp.hits_normal <= self.cfg.max_normal_hit;
        let blackhole = || -> Result<(Kind, Route, String), String> {
            let ip = self.host(attack)?;
            let route = Route::blackhole(ip);
            self.safe(&route, attack.victim, false)?;
            Ok((Kind::Blackhole, route, String::new()))
        };
        let filter = || -> Result<(Kind, Route, String), String> {
            let rule = rule::flowspec(&fp.flow).map_err(|e| e.to_string())?;
            let action = match self.cfg.rate_limit_bps {
                // traffic-rate-bytes takes bytes per second.
                Some(r) => Action::TrafficRateBytes {
                    id: 0,
                    rate: (r.0 / 8.0) as f32,
                },
                None => Action::DISCARD,
            };
            let route = Route::flowspec(rule, vec![action]).map_err(|e| e.to_string())?;
            Ok((Kind::Flowspec, route, String::new()))
        };
        let with = |r: Result<(Kind, Route, String), String>, why: String| {
            r.map(|(k, route, _)| (k, route, why))
        };
        match attack.action {
            GroupAction::Alert => Err("the host group's action is alert".into()),
            GroupAction::Blackhole => with(blackhole(), "host group action blackhole".into()),
            GroupAction::Flowspec | GroupAction::FlowspecThenBlackhole => {
                if too_big {
                    let why = format!("peak {:.0} bps above blackhole_above_bps", attack.peak_bps);
                    return with(blackhole(), why.clone()).or_else(|e| {
                        if precise {
                            with(filter(), format!("{why}, but {e}: filtering instead"))
                        } else {
                            Err(format!("{why}, but {e}"))
                        }
                    });
                }
                if precise {
                    return with(
                        filter(),
                        format!(
                            "match covers {:.0}% of the attack, {:.0}% of normal traffic",
                            fp.covers_attack * 100.0,
                            fp.hits_normal * 100.0
                        ),
                    );
                }
                let why = format!(
                    "match too coarse (covers {:.0}%, hits {:.0}% of normal)",
                    fp.covers_attack * 100.0,
                    fp.hits_normal * 100.0
                );
                with(blackhole(), why.clone()).map_err(|e| format!("{why}, and {e}"))
            }
        }
    }

    /// The single address a blackhole may be for.
    fn host(&self, attack: &Attack) -> Result<IpAddr, String> {
        let v = attack.victim;
        if attack.scope != Scope::Host || v.prefix_len() != v.max_prefix_len() {
            return Err(format!(
                "{v} is a block: blackholes are for single addresses"
            ));
        }
        Ok(v.addr())
    }

    /// The route-level safety rules (see the module doc).
    fn safe(&self, route: &Route, victim: IpNet, counting: bool) -> Result<(), String> {
        let inside = |net: &IpNet| {
            self.own_networks
                .iter()
                .any(|own| own.contains(net) || own == net)
        };
        if !inside(&victim) {
            return Err(format!("{victim} is outside the own networks"));
        }
        match route {
            Route::Blackhole { prefix } => {
                if !inside(prefix) {
                    return Err(format!("{prefix} is outside the own networks"));
                }
                if prefix.prefix_len() != prefix.max_prefix_len() {
                    return Err(format!("{prefix}: blackholes are for single addresses"));
                }
                if let Some(n) = self
                    .cfg
                    .never_blackhole
                    .iter()
                    .find(|n| n.contains(&prefix.addr()))
                {
                    return Err(format!("{prefix} is in never_blackhole ({n})"));
                }
            }
            Route::FlowSpec { rule, .. } => {
                let Some(dst) = rule.destination() else {
                    return Err("a flow spec rule without a destination".into());
                };
                let dst = dst.net();
                if !inside(&dst) {
                    return Err(format!("{dst} is outside the own networks"));
                }
                let min = match dst {
                    IpNet::V4(_) => self.cfg.min_prefix_v4,
                    IpNet::V6(_) => self.cfg.min_prefix_v6,
                };
                if dst.prefix_len() < min {
                    return Err(format!("{dst} is broader than /{min}"));
                }
            }
        }
        if counting && self.active.len() >= self.cfg.max_active {
            return Err(format!(
                "{} mitigations active, the maximum (max_active)",
                self.active.len()
            ));
        }
        Ok(())
    }

    fn within_rate(&mut self, now: u64) -> Result<(), String> {
        while self.recent.front().is_some_and(|&t| t + 60 <= now) {
            self.recent.pop_front();
        }
        if self.recent.len() >= self.cfg.max_new_per_minute {
            return Err(format!(
                "{} new mitigations in the last minute, the maximum (max_new_per_minute)",
                self.recent.len()
            ));
        }
        Ok(())
    }

    /// Mitigations a router holds now (other than the one being sent).
    fn held_by(&self, peer: &str) -> usize {
        self.active
            .values()
            .filter(|m| {
                m.peers
                    .iter()
                    .any(|(p, o)| p == peer && !o.contains("refused"))
            })
            .count()
    }

    /// Announces `m` (and its fallback): a blackhole to the routers that
    /// refused a filter, where a blackhole is allowed. Routers holding
    /// `max_per_peer` mitigations already are left out.
    fn send(&self, m: &mut Mitigation, a: &dyn Announcer) {
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
        if m.kind == Kind::Flowspec && !refused.is_empty() && m.fallback.is_none() {
            let hole = Route::blackhole(m.victim.addr());
            if m.victim.prefix_len() == m.victim.max_prefix_len()
                && self.safe(&hole, m.victim, false).is_ok()
            {
                m.fallback = Some(hole);
                m.fallback_peers = refused;
            }
        } else if m.kind == Kind::Flowspec && m.fallback.is_some() && !m.fallback_peers.is_empty() {
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
            out.push(json!({"event": "mitigation_quarantined", "peer": peer,
                "route": route, "router_reason": reason, "fallback": fallback, "mitigation": m}));
            self.active.insert(id, m);
            self.dirty = true;
        }
        if out.is_empty() {
            out.push(json!({"event": "route_quarantined", "peer": peer,
                "route": route, "router_reason": reason}));
        }
        out
    }

    fn updated(&mut self, attack: &Attack, now: u64, a: &dyn Announcer) -> Vec<Record> {
        let Some(id) = self
            .active
            .values()
            .find(|m| m.attack == Some(attack.id))
            .map(|m| m.id)
        else {
            // Started without a mitigation (refused, alert): try again.
            return self.started(attack, now, a);
        };
        let m = &self.active[&id];
        if m.kind != Kind::Flowspec || m.manual {
            return Vec::new();
        }
        let Ok((kind, route, reason)) = self.choose(attack) else {
            return Vec::new();
        };
        if route == m.route {
            return Vec::new();
        }
        if let Err(why) = self.safe(&route, attack.victim, false) {
            return vec![
                json!({"event": "mitigation_not_updated", "mitigation": id, "reason": why}),
            ];
        }
        let mut m = self.active.remove(&id).expect("present");
        let old = m.keys();
        // The new rules go out before the old ones are withdrawn: no gap.
        m.kind = kind;
        m.route = route;
        m.reason = reason;
        m.class = Some(attack.class.to_string());
        self.send(&mut m, a);
        if !m.dry_run {
            let new = m.keys();
            for key in old.iter().filter(|k| !new.contains(k)) {
                a.withdraw_key(key);
            }
        }
        let rec = json!({"event": "mitigation_updated", "mitigation": m});
        self.active.insert(id, m);
        self.dirty = true;
        vec![rec]
    }

    /// Escalations and withdrawals due at `now`.
    pub fn tick(&mut self, now: u64, a: &dyn Announcer) -> Vec<Record> {
        let mut out = Vec::new();
        let due: Vec<u64> = self
            .active
            .values()
            .filter(|m| m.escalate_at.is_some_and(|t| t <= now) && m.ended.is_none())
            .map(|m| m.id)
            .collect();
        for id in due {
            let mut m = self.active.remove(&id).expect("present");
            m.escalate_at = None;
            let hole = Route::blackhole(m.victim.addr());
            let allowed = m.victim.prefix_len() == m.victim.max_prefix_len()
                && self.safe(&hole, m.victim, false).is_ok();
            if allowed && m.fallback_peers.is_empty() && m.fallback.is_some() {
                // Already blackholed everywhere.
            } else if allowed {
                m.fallback = Some(hole);
                m.fallback_peers.clear();
                self.send(&mut m, a);
                out.push(json!({"event": "mitigation_escalated", "mitigation": m}));
            } else {
                out.push(
                    json!({"event": "mitigation_not_escalated", "mitigation": m.id,
                    "reason": format!("{} may not be blackholed", m.victim)}),
                );
            }
            self.active.insert(id, m);
            self.dirty = true;
        }
        let done: Vec<u64> = self
            .active
            .values()
            .filter(|m| {
                m.expires.is_some_and(|t| t <= now)
                    || (m.ended.is_some_and(|t| t <= now) && m.hold_until <= now)
            })
            .map(|m| m.id)
            .collect();
        for id in done {
            out.push(self.withdraw(id, a, "attack over and held long enough"));
        }
        out
    }

    fn withdraw(&mut self, id: u64, a: &dyn Announcer, why: &str) -> Record {
        let m = self.active.remove(&id).expect("present");
        let mut peers = 0;
        if !m.dry_run {
            for key in m.keys() {
                peers += a.withdraw_key(&key);
            }
        }
        self.dirty = true;
        json!({"event": "mitigation_withdrawn", "reason": why, "peers": peers, "mitigation": m})
    }

    /// A manual mitigation (`edge-sensor ban`).
    pub fn ban(
        &mut self,
        ip: IpAddr,
        flowspec: Option<&str>,
        blackhole: bool,
        duration_secs: Option<u64>,
        now: u64,
        a: &dyn Announcer,
    ) -> Result<Mitigation, String> {
        let victim = IpNet::from(ip);
        let (kind, route) = match (flowspec, blackhole) {
            (Some(_), true) => return Err("either a flow spec match or --blackhole".into()),
            (Some(text), false) => {
                let m = rule::parse_match(ip, text).map_err(|e| e.to_string())?;
                let rule = rule::flowspec(&m).map_err(|e| e.to_string())?;
                let action = match self.cfg.rate_limit_bps {
                    Some(r) => Action::TrafficRateBytes {
                        id: 0,
                        rate: (r.0 / 8.0) as f32,
                    },
                    None => Action::DISCARD,
                };
                let route = Route::flowspec(rule, vec![action]).map_err(|e| e.to_string())?;
                (Kind::Flowspec, route)
            }
            (None, _) => (Kind::Blackhole, Route::blackhole(ip)),
        };
        let duration = duration_secs.unwrap_or(self.cfg.manual_duration.as_secs());
        let m = Mitigation {
            id: self.next_id,
            victim,
            kind,
            route,
            fallback: None,
            fallback_peers: Vec::new(),
            attack: None,
            class: None,
            reason: "manual".into(),
            manual: true,
            created: now,
            hold_until: now,
            expires: Some(now + duration),
            ended: None,
            escalate_at: None,
            peers: Vec::new(),
            sent: Vec::new(),
            dry_run: self.cfg.dry_run,
        };
        let id = m.id;
        let records = self.admit(m, now, a);
        match self.active.get(&id) {
            Some(m) => Ok(m.clone()),
            None => Err(records
                .first()
                .and_then(|r| r["reason"].as_str())
                .unwrap_or("refused")
                .to_string()),
        }
    }

    /// Withdraws mitigation `target` (an id) or every one for an address.
    pub fn unban(&mut self, target: &str, a: &dyn Announcer) -> Result<Vec<Record>, String> {
        let ids: Vec<u64> = if let Ok(id) = target.parse::<u64>() {
            self.active
                .contains_key(&id)
                .then_some(vec![id])
                .unwrap_or_default()
        } else if let Ok(ip) = target.parse::<IpAddr>() {
            self.active
                .values()
                .filter(|m| m.victim.contains(&ip))
                .map(|m| m.id)
                .collect()
        } else {
            return Err(format!(
                "`{target}` is neither a mitigation id nor an address"
            ));
        };
        if ids.is_empty() {
            return Err(format!("no active mitigation for `{target}`"));
        }
        Ok(ids
            .into_iter()
            .map(|id| self.withdraw(id, a, "unbanned by the operator"))
            .collect())
    }

    /// Withdraws everything (`withdraw_on_exit`).
    pub fn withdraw_all(&mut self, a: &dyn Announcer) -> Vec<Record> {
        let ids: Vec<u64> = self.active.keys().copied().collect();
        ids.into_iter()
            .map(|id| self.withdraw(id, a, "withdraw_on_exit"))
            .collect()
    }
}

fn outcome_text(o: &Outcome) -> String {
    match o {
        Outcome::Accepted => "accepted".into(),
        Outcome::Unchanged => "unchanged".into(),
        Outcome::Refused(r) => format!("refused: {r}"),
    }
}

#[cfg(test)]
mod tests;
