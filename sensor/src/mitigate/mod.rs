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
//!
//! The rooms: [`announcer`] (where routes go), [`mitigation`] (what one
//! mitigation is), `safety` (the route-level rules and limits), `send`
//! (per-router announcement with dialects and fallbacks), [`record`] (the
//! event log's records), [`error`]; the policy's lifecycle is here.

pub mod announcer;
pub mod config;
pub mod error;
pub mod log;
pub mod mitigation;
pub mod record;
pub mod rule;
mod safety;
mod send;

use std::{
    collections::{BTreeMap, VecDeque},
    net::IpAddr,
};

use ipnet::IpNet;

pub use announcer::Announcer;
pub use config::MitigationConfig;
pub use error::{BanError, PolicyError, UnbanError};
pub use mitigation::{Mitigation, MitigationKind, SentRule};
pub use record::Record;

use crate::{
    bgp::{Action, Route},
    detect::{Attack, Event, GroupAction},
};

/// A restored mitigation whose attack is not seen again is withdrawn no
/// sooner than this after the restart (the detector needs a few polls).
pub const RESTORE_GRACE_SECS: u64 = 60;

/// The longest any mitigation duration may be (a ban, a hold): a year.
/// Longer is a typo, and near the integer maximum it would wrap.
pub const MAX_DURATION_SECS: u64 = 366 * 86400;

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
                out.push(Record::MitigationExpired { mitigation: m });
                continue;
            }
            if let Err(why) = self.safe(&m.route, m.victim, false) {
                out.push(Record::MitigationDropped {
                    reason: why.to_string(),
                    mitigation: m,
                });
                continue;
            }
            if !m.manual {
                m.attack = None;
                m.ended = Some(m.ended.unwrap_or(now));
                m.hold_until = m.hold_until.max(now + RESTORE_GRACE_SECS);
            }
            m.dry_run = self.cfg.dry_run;
            self.send(&mut m, a);
            out.push(Record::MitigationRestored {
                mitigation: m.clone(),
            });
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
                self.attack_ended(attack.id, now);
                Vec::new()
            }
        }
    }

    /// Attack `id` is over: its mitigation is withdrawn once held long
    /// enough (or adopted by a new attack on its victim before that).
    pub fn attack_ended(&mut self, id: u64, now: u64) {
        for m in self.active.values_mut() {
            if m.attack == Some(id) {
                m.ended = Some(now);
                m.escalate_at = None;
                self.dirty = true;
            }
        }
    }

    /// Attack `id` is no longer followed here though it may go on (the
    /// cluster moved it to another sensor or another view): ended, but held
    /// `hold_secs` from now (at least `min_hold`), so the rule stays until
    /// whoever takes over has announced its own (then [`Self::hand_over`]
    /// or [`Self::resume_attack`]) rather than for what is left of its hold.
    pub fn attack_handed_off(&mut self, id: u64, now: u64, hold_secs: u64) {
        let hold = now + hold_secs.max(self.cfg.min_hold.as_secs());
        for m in self.active.values_mut() {
            if m.attack == Some(id) {
                m.ended = Some(now);
                m.escalate_at = None;
                m.hold_until = m.hold_until.max(hold);
                self.dirty = true;
            }
        }
    }

    /// Attack `id`, ended here for a while (the cluster switched which
    /// detector the mitigator follows), is followed again: its mitigation,
    /// if still held, is no longer ended, and the hold the hand-off gave it
    /// shrinks back to `min_hold` from `now`. Returns whether there was one.
    pub fn resume_attack(&mut self, id: u64, now: u64) -> bool {
        let mut found = false;
        let hold = now + self.cfg.min_hold.as_secs();
        for m in self.active.values_mut() {
            if m.attack == Some(id) {
                m.ended = None;
                m.hold_until = m.hold_until.min(hold);
                self.dirty = true;
                found = true;
            }
        }
        found
    }

    /// Another sensor of the cluster now announces `victim`'s rule:
    /// this sensor's automatic mitigations of it are withdrawn at once,
    /// whatever their hold (two copies on the routers otherwise).
    pub fn hand_over(&mut self, victim: IpNet, a: &dyn Announcer) -> Vec<Record> {
        let ids: Vec<u64> = self
            .active
            .values()
            .filter(|m| !m.manual && m.victim == victim)
            .map(|m| m.id)
            .collect();
        ids.into_iter()
            .map(|id| self.withdraw(id, a, "announced by another sensor of the cluster"))
            .collect()
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
            return vec![Record::MitigationAdopted {
                attack: attack.id,
                mitigation: m.id,
            }];
        }
        if attack.action == GroupAction::Alert {
            return vec![Record::AlertOnly {
                attack: attack.id,
                victim: attack.victim,
            }];
        }
        let (kind, route, reason) = match self.choose(attack) {
            Ok(choice) => choice,
            Err(why) => {
                return vec![Record::refused(Some(attack.id), attack.victim, &why)];
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
            escalate_at: (kind == MitigationKind::Flowspec
                && attack.action == GroupAction::FlowspecThenBlackhole)
                .then(|| now + self.cfg.escalate_after.as_secs()),
            peers: Vec::new(),
            sent: Vec::new(),
            dry_run: self.cfg.dry_run,
        };
        let (attack, victim) = (m.attack, m.victim);
        match self.admit(m, now, a) {
            Ok(record) => vec![record],
            Err(why) => vec![Record::refused(attack, victim, &why)],
        }
    }

    /// Safety checks and limits, then the announcement.
    fn admit(
        &mut self,
        mut m: Mitigation,
        now: u64,
        a: &dyn Announcer,
    ) -> Result<Record, PolicyError> {
        self.safe(&m.route, m.victim, true)?;
        self.within_rate(now)?;
        self.next_id += 1;
        self.recent.push_back(now);
        self.send(&mut m, a);
        let rec = Record::MitigationAnnounced {
            mitigation: m.clone(),
        };
        self.active.insert(m.id, m);
        self.dirty = true;
        Ok(rec)
    }

    /// The kind and route for an attack, per its group's action and the
    /// policy; `Err` when no safe mitigation fits.
    fn choose(&self, attack: &Attack) -> Result<(MitigationKind, Route, String), PolicyError> {
        let fp = &attack.fingerprint;
        let too_big = self
            .cfg
            .blackhole_above_bps
            .is_some_and(|r| attack.peak_bps > r.0);
        let precise =
            fp.covers_attack >= self.cfg.min_coverage && fp.hits_normal <= self.cfg.max_normal_hit;
        let blackhole = || -> Result<(MitigationKind, Route, String), PolicyError> {
            let ip = self.host(attack)?;
            let route = Route::blackhole(ip);
            self.safe(&route, attack.victim, false)?;
            Ok((MitigationKind::Blackhole, route, String::new()))
        };
        let filter = || -> Result<(MitigationKind, Route, String), PolicyError> {
            let rule = rule::flowspec(&fp.flow)?;
            let action = match self.cfg.rate_limit_bps {
                // traffic-rate-bytes takes bytes per second.
                Some(r) => Action::TrafficRateBytes {
                    id: 0,
                    rate: (r.0 / 8.0) as f32,
                },
                None => Action::DISCARD,
            };
            let route = Route::flowspec(rule, vec![action])?;
            Ok((MitigationKind::Flowspec, route, String::new()))
        };
        let with = |r: Result<(MitigationKind, Route, String), PolicyError>, why: String| {
            r.map(|(k, route, _)| (k, route, why))
        };
        match attack.action {
            GroupAction::Alert => Err(PolicyError::AlertOnly),
            GroupAction::Blackhole => with(blackhole(), "host group action blackhole".into()),
            GroupAction::Flowspec | GroupAction::FlowspecThenBlackhole => {
                if too_big {
                    let why = format!("peak {:.0} bps above blackhole_above_bps", attack.peak_bps);
                    return with(blackhole(), why.clone()).or_else(|e| {
                        if precise {
                            with(filter(), format!("{why}, but {e}: filtering instead"))
                        } else {
                            Err(PolicyError::TooBigNoBlackhole {
                                peak_bps: attack.peak_bps,
                                source: Box::new(e),
                            })
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
                with(blackhole(), why).map_err(|e| PolicyError::CoarseNoBlackhole {
                    covers: fp.covers_attack,
                    hits: fp.hits_normal,
                    source: Box::new(e),
                })
            }
        }
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
        if m.kind != MitigationKind::Flowspec || m.manual {
            return Vec::new();
        }
        let Ok((kind, route, reason)) = self.choose(attack) else {
            return Vec::new();
        };
        if route == m.route {
            return Vec::new();
        }
        if let Err(why) = self.safe(&route, attack.victim, false) {
            return vec![Record::MitigationNotUpdated {
                mitigation: id,
                reason: why.to_string(),
            }];
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
        let rec = Record::MitigationUpdated {
            mitigation: m.clone(),
        };
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
                out.push(Record::MitigationEscalated {
                    mitigation: m.clone(),
                });
            } else {
                out.push(Record::MitigationNotEscalated {
                    mitigation: m.id,
                    reason: format!("{} may not be blackholed", m.victim),
                });
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

    fn withdraw(&mut self, id: u64, a: &dyn Announcer, why: &'static str) -> Record {
        let m = self.active.remove(&id).expect("present");
        let mut peers = 0;
        if !m.dry_run {
            for key in m.keys() {
                peers += a.withdraw_key(&key);
            }
        }
        self.dirty = true;
        Record::MitigationWithdrawn {
            reason: why,
            peers,
            mitigation: m,
        }
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
    ) -> Result<Mitigation, BanError> {
        let victim = IpNet::from(ip);
        let (kind, route) = match (flowspec, blackhole) {
            (Some(_), true) => return Err(BanError::MatchAndBlackhole),
            (Some(text), false) => {
                let m = rule::parse_match(ip, text)?;
                let rule = rule::flowspec(&m).map_err(PolicyError::from)?;
                let action = match self.cfg.rate_limit_bps {
                    Some(r) => Action::TrafficRateBytes {
                        id: 0,
                        rate: (r.0 / 8.0) as f32,
                    },
                    None => Action::DISCARD,
                };
                let route = Route::flowspec(rule, vec![action]).map_err(PolicyError::from)?;
                (MitigationKind::Flowspec, route)
            }
            (None, _) => (MitigationKind::Blackhole, Route::blackhole(ip)),
        };
        let duration = duration_secs.unwrap_or(self.cfg.manual_duration.as_secs());
        // Bounded so the expiry cannot wrap to before the start.
        if duration > MAX_DURATION_SECS {
            return Err(BanError::Duration(duration));
        }
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
        self.admit(m, now, a)?;
        Ok(self.active[&id].clone())
    }

    /// Withdraws mitigation `target` (an id) or every one for an address.
    pub fn unban(&mut self, target: &str, a: &dyn Announcer) -> Result<Vec<Record>, UnbanError> {
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
            return Err(UnbanError::NotATarget(target.to_owned()));
        };
        if ids.is_empty() {
            return Err(UnbanError::NoneActive(target.to_owned()));
        }
        Ok(ids
            .into_iter()
            .map(|id| self.withdraw(id, a, "unbanned by the operator"))
            .collect())
    }

    /// The own networks changed (learnt from BGP): mitigations whose
    /// victim is no longer inside one are withdrawn at once, whatever their
    /// hold: nothing stays announced outside the operator's networks.
    pub fn set_own_networks(&mut self, own: Vec<IpNet>, a: &dyn Announcer) -> Vec<Record> {
        self.own_networks = own;
        let outside: Vec<u64> = self
            .active
            .values()
            .filter(|m| {
                !self.own_networks.iter().any(|n| {
                    n.contains(&m.victim.network()) && n.prefix_len() <= m.victim.prefix_len()
                })
            })
            .map(|m| m.id)
            .collect();
        outside
            .into_iter()
            .map(|id| self.withdraw(id, a, "outside the own networks"))
            .collect()
    }

    /// Withdraws everything (`withdraw_on_exit`).
    pub fn withdraw_all(&mut self, a: &dyn Announcer) -> Vec<Record> {
        let ids: Vec<u64> = self.active.keys().copied().collect();
        ids.into_iter()
            .map(|id| self.withdraw(id, a, "withdraw_on_exit"))
            .collect()
    }
}

impl Record {
    fn refused(attack: Option<u64>, victim: IpNet, why: &PolicyError) -> Self {
        Self::MitigationRefused {
            attack,
            victim,
            reason: why.to_string(),
            manual: false,
        }
    }
}

#[cfg(test)]
mod tests;
