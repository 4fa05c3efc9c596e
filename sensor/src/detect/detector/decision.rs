//! Thresholds and the decision: whether a victim's rates start, update or
//! end an attack, and how a running attack's match is revised.

use std::time::Duration;

use ipnet::IpNet;

use super::{Active, Detector, crowd::Verdict};
use crate::detect::{
    Attack, Basis, Event, Metric, Scope, TrafficClass, Trigger,
    config::LimitTable,
    meter::{Meter, Table},
};

impl Detector {
    /// Starts, updates or ends the attack on one victim; `between_polls`:
    /// only a start, on the last poll's rates (nothing measured since).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn decide(
        &mut self,
        victim: IpNet,
        scope: Scope,
        group: usize,
        signals: &Table,
        thresholds: &LimitTable,
        now: Duration,
        between_polls: bool,
        events: &mut Vec<Event>,
    ) {
        let ratio = self.cfg.release.ratio;
        let mut over = [[false; 2]; 7];
        let mut active = [[false; 2]; 7];
        let mut trigger: Option<Trigger> = None;
        for c in TrafficClass::ALL {
            for m in Metric::BOTH {
                let (i, j) = (c.index(), m.index());
                let Some(t) = thresholds[i][j] else { continue };
                let s = signals[i][j];
                over[i][j] = s >= t;
                active[i][j] = s >= ratio * t;
                if over[i][j] && trigger.is_none_or(|tr| s / t > tr.rate / tr.threshold) {
                    trigger = Some(Trigger {
                        class: c,
                        metric: m,
                        rate: s,
                        threshold: t,
                    });
                }
            }
        }
        let is_over = trigger.is_some();
        let is_active = active.iter().flatten().any(|&a| a);
        let pps = signals[TrafficClass::All.index()][Metric::Pps.index()];
        let bps = signals[TrafficClass::All.index()][Metric::Bps.index()];

        if let Some(mut a) = self.attacks.remove(&victim) {
            let rel = &self.cfg.release;
            if is_active {
                a.last_active = now;
            }
            a.attack.duration_s = (now - a.started).as_secs_f64();
            a.attack.pps = pps;
            a.attack.bps = bps;
            a.attack.peak_pps = a.attack.peak_pps.max(pps);
            a.attack.peak_bps = a.attack.peak_bps.max(bps);
            if !is_active && now - a.last_active >= rel.hold && now - a.started >= rel.min_duration
            {
                self.clear_recent(victim);
                self.stats.attacks_ended += 1;
                tracing::info!(id = a.attack.id, victim = %victim, duration_s = a.attack.duration_s, "attack ended");
                events.push(Event::AttackEnded(a.attack));
                return;
            }
            if let Some(tr) = trigger {
                a.attack.trigger = tr;
                self.revise(&mut a, victim, signals, thresholds, now, events);
            }
            self.attacks.insert(victim, a);
            return;
        }

        if !between_polls {
            let keep = is_active || self.pending.contains(&victim);
            self.remember(victim, keep, self.interval_secs);
        }
        let enough = || self.recent(victim).len() >= self.cfg.fingerprint.min_samples as usize;
        let ready = if is_over {
            match self.awaiting.get(&victim) {
                // The kernel was not sampling the victim when it crossed:
                // wait for its samples, at most one poll interval (half of
                // one: the caller's timer may tick a hair early).
                Some(&since) => {
                    enough() || !between_polls && now - since >= self.cfg.poll_interval / 2
                }
                None => self.pending.contains(&victim) || self.was_watched(victim) || enough(),
            }
        } else {
            self.pending.contains(&victim) && is_active
        };
        // Then only a crossing its samples make sure of ([`super::confirm`]).
        let start =
            ready && self.confirmed(victim, thresholds, if is_over { &over } else { &active });
        if !start {
            if between_polls {
                return;
            }
            if is_over {
                if !ready && !self.pending.contains(&victim) {
                    self.awaiting.insert(victim, now);
                }
                self.pending.insert(victim);
            } else {
                self.pending.remove(&victim);
                self.awaiting.remove(&victim);
            }
            return;
        }
        self.pending.remove(&victim);
        self.awaiting.remove(&victim);
        let crossed = if is_over { over } else { active };
        let trigger = trigger.unwrap_or_else(|| strongest(signals, thresholds, &active));
        let class = self.classify(victim, signals, &crossed, None);
        let quiet = self.quiet(victim);
        let fingerprint = self.fingerprint(victim, class, signals, &quiet, None);
        if scope == Scope::Host {
            match self.crowd_verdict(victim, &fingerprint, signals, &crossed, now) {
                Verdict::NotJudged | Verdict::Attack => {}
                Verdict::Crowd => {
                    self.stats.flash_crowd_polls += 1;
                    // Still pending: a crowd must not teach the host's
                    // typical rate (its background), or after a few minutes
                    // the crowd would be background and what is left to
                    // match a few clients' ports.
                    self.pending.insert(victim);
                    tracing::debug!(victim = %victim, fingerprint = %fingerprint, "surge shaped like normal traffic: flash crowd, not reported");
                    return;
                }
                Verdict::Unlike => {
                    self.pending.insert(victim);
                    tracing::debug!(victim = %victim, fingerprint = %fingerprint, "surge unlike normal traffic: starts if fresh samples say so again");
                    return;
                }
            }
        }
        self.unlike_since.remove(&victim);
        let g = &self.groups[group];
        let attack = Attack {
            id: self.next_id,
            victim,
            scope,
            class,
            host_group: g.name.clone(),
            action: g.action,
            started_s: now.as_secs_f64(),
            duration_s: 0.0,
            trigger,
            pps,
            bps,
            peak_pps: pps,
            peak_bps: bps,
            fingerprint,
        };
        self.next_id += 1;
        self.stats.attacks_started += 1;
        tracing::info!(
            id = attack.id,
            victim = %victim,
            class = %class,
            fingerprint = %attack.fingerprint,
            "attack started"
        );
        events.push(Event::AttackStarted(attack.clone()));
        self.attacks.insert(
            victim,
            Active {
                attack,
                started: now,
                last_active: now,
                candidate: None,
            },
        );
    }

    /// Revises a running attack's match and name from the latest poll's
    /// evidence (the victim is still over a threshold). A match that still
    /// covers the attack stays, so the rule the routers hold does not churn
    /// on noise; one that no longer does (a new vector) is replaced at
    /// once; a narrower one replaces it once the evidence has given it
    /// [`REVISE_AFTER`] polls in a row (after a vector change, the union of
    /// old and new is narrowed to the new).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn revise(
        &self,
        a: &mut Active,
        victim: IpNet,
        signals: &Table,
        thresholds: &LimitTable,
        now: Duration,
        events: &mut Vec<Event>,
    ) {
        let latest = Some(now);
        // Name it after what the last interval carried: smoothed rates of
        // a vector that stopped still cross for a few polls.
        let raw = self.raw(victim);
        let mut crossed = [[false; 2]; 7];
        for (i, row) in thresholds.iter().enumerate() {
            for (j, t) in row.iter().enumerate() {
                crossed[i][j] = t.is_some_and(|t| raw[i][j] >= t);
            }
        }
        if !crossed.iter().flatten().any(|&c| c) {
            // The last interval is below every threshold: the attack is
            // fading (or pausing) and its evidence is mostly normal traffic,
            // which must not become the rule.
            a.candidate = None;
            a.attack.fingerprint.covers_attack =
                self.covers_on_basis(victim, &a.attack.fingerprint, signals, None);
            return;
        }
        let class = self.classify(victim, signals, &crossed, latest);
        let quiet = self.quiet(victim);
        let fresh = self.fingerprint(victim, class, signals, &quiet, latest);
        let current = &a.attack.fingerprint;
        let covers = self.covers(victim, &current.flow, latest);
        let replace = match (current.basis, fresh.basis) {
            // Without samples now, a match learnt from samples stands.
            (Basis::Samples, Basis::Counters) => false,
            (Basis::Counters, Basis::Counters) => {
                fresh.flow != current.flow || class != a.attack.class
            }
            (Basis::Counters, Basis::Samples) => true,
            (Basis::Samples, Basis::Samples) => {
                if covers < 0.9 * self.cfg.fingerprint.coverage {
                    true
                } else if fresh.flow != current.flow {
                    let streak = match &a.candidate {
                        Some((flow, n)) if *flow == fresh.flow => n + 1,
                        _ => 1,
                    };
                    a.candidate = Some((fresh.flow.clone(), streak));
                    streak >= REVISE_AFTER
                } else {
                    a.candidate = None;
                    false
                }
            }
        };
        if replace {
            a.candidate = None;
            a.attack.class = class;
            a.attack.fingerprint = fresh;
            events.push(Event::AttackUpdated(a.attack.clone()));
        } else {
            let now_covers = match a.attack.fingerprint.basis {
                Basis::Samples => covers,
                Basis::Counters => {
                    self.covers_on_basis(victim, &a.attack.fingerprint, signals, latest)
                }
            };
            a.attack.fingerprint.covers_attack = now_covers;
        }
    }
}

/// Polls in a row the evidence must give a narrower match before it
/// replaces a running attack's match.
const REVISE_AFTER: u32 = 3;

/// Whether a compared rate reaches `ratio` times its threshold.
pub(super) fn reaches(m: &Meter, t: &LimitTable, ratio: f64) -> bool {
    TrafficClass::ALL.iter().any(|&c| {
        Metric::BOTH
            .iter()
            .any(|&x| t[c.index()][x.index()].is_some_and(|t| m.signal(c, x) >= ratio * t))
    })
}

/// Whether a rate of `t` reaches `ratio` of its threshold in `lim`.
pub(super) fn table_reaches(t: &Table, lim: &LimitTable, ratio: f64) -> bool {
    (0..7).any(|i| (0..2).any(|j| lim[i][j].is_some_and(|l| t[i][j] >= ratio * l)))
}

pub(super) fn below(signals: &Table, t: &LimitTable) -> bool {
    (0..7).all(|i| (0..2).all(|j| t[i][j].is_none_or(|t| signals[i][j] < t)))
}

/// The entry of `mask` with the highest ratio to its threshold.
fn strongest(signals: &Table, thresholds: &LimitTable, mask: &[[bool; 2]; 7]) -> Trigger {
    let mut best = Trigger {
        class: TrafficClass::All,
        metric: Metric::Pps,
        rate: 0.0,
        threshold: f64::INFINITY,
    };
    for c in TrafficClass::ALL {
        for m in Metric::BOTH {
            let (i, j) = (c.index(), m.index());
            if let (true, Some(t)) = (mask[i][j], thresholds[i][j])
                && signals[i][j] / t > best.rate / best.threshold
            {
                best = Trigger {
                    class: c,
                    metric: m,
                    rate: signals[i][j],
                    threshold: t,
                };
            }
        }
    }
    best
}
