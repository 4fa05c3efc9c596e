//! Baseline tracking, once a poll: the counters become each destination's
//! rates, its typical rate and surges, what its baseline learns, and the
//! adaptive thresholds it gives; blocks sum their hosts for the aggregate
//! thresholds.

use std::{collections::BTreeMap, time::Duration};

use ipnet::IpNet;

use super::{Block, Detector, Group, confirm::sampling_rate_in, decision::below, host_net};
use crate::counters::CounterReading;
use crate::detect::{
    Metric, Sample, TrafficClass,
    confidence::rate_lower,
    config::LimitTable,
    meter::{self, Baseline, Meter, Reading, Table, ZERO},
};

impl Detector {
    pub(super) fn measure_hosts(
        &mut self,
        counters: &(impl CounterReading + ?Sized),
        secs: f64,
        alpha: f64,
    ) {
        // Both are ordered by address: walk them side by side.
        let mut appeared = Vec::new();
        let mut gaps = 0;
        let mut hosts = self.hosts.iter_mut().peekable();
        for (ip, stats) in counters.in_order() {
            while let Some((_, h)) = hosts.next_if(|(known, _)| **known < ip) {
                h.seen = false;
                h.reading = h.meter.observe(None, secs, alpha);
            }
            match hosts.next_if(|(known, _)| **known == ip) {
                Some((_, h)) => {
                    h.seen = true;
                    h.reading = h.meter.observe(Some(stats), secs, alpha);
                    gaps += u64::from(h.reading == Reading::Gap);
                }
                None => appeared.push((ip, stats)),
            }
        }
        for (_, h) in hosts {
            h.seen = false;
            h.reading = h.meter.observe(None, secs, alpha);
        }
        for (ip, stats) in appeared {
            // Appeared since the last poll: its counters began then.
            if let Some(mut h) = self.new_host(ip, None) {
                h.reading = h.meter.observe(Some(stats), secs, alpha);
                gaps += u64::from(h.reading == Reading::Gap);
                self.hosts.insert(ip, h);
            }
        }
        self.stats.counter_gaps += gaps;
    }

    pub(super) fn take_samples(&mut self, now: Duration, samples: &[Sample]) {
        let f = &self.cfg.fingerprint;
        let max = f.max_samples as usize;
        for s in samples {
            // The counters key IPv4 as IPv4; a caller may hand over mapped
            // addresses.
            let s = Sample {
                dst: s.dst.to_canonical(),
                src: s.src.to_canonical(),
                ..*s
            };
            // Only destinations with state (inside the own networks).
            if let Some(h) = self.hosts.get(&s.dst) {
                self.samples
                    .entry(s.dst)
                    .or_default()
                    .push(now, s, h.surge, max);
                self.stats.samples_taken += 1;
            } else {
                self.stats.samples_ignored += 1;
            }
        }
        for (ip, store) in self.samples.iter_mut() {
            let under_attack = self.attacks.contains_key(&host_net(*ip))
                || self
                    .hosts
                    .get(ip)
                    .and_then(|h| h.block)
                    .is_some_and(|b| self.attacks.contains_key(&b));
            store.age(now, f.window, !under_attack, max);
        }
    }

    /// Per host, once a poll: follows the typical rate and flags surges,
    /// teaches the baseline what is normal, and sets the thresholds.
    pub(super) fn follow_hosts(&mut self, secs: f64) {
        let typical_alpha = meter::alpha(secs, TYPICAL_WINDOW.as_secs_f64());
        let z = self.confidence_z();
        let smoothing = self.cfg.smoothing.as_secs_f64();
        let Self {
            hosts,
            groups,
            attacks,
            pending,
            samples,
            coarsest_rate,
            ..
        } = self;
        for (ip, h) in hosts.iter_mut() {
            let g = &groups[h.group];
            if h.reading == Reading::Measured {
                let net = host_net(*ip);
                let calm = !attacks.contains_key(&net)
                    && !pending.contains(&net)
                    && !h.block.is_some_and(|b| attacks.contains_key(&b));
                let raw = *h.meter.raw();
                let thr = *h.thresholds(groups);
                // Sampled 1:N, a quiet host's rate is 0 most polls and N
                // per second on a poll with one sample: what the samples
                // behind a rate make sure of is its lower confidence bound
                // (at `detect.confidence`; the rate itself with the check
                // off). A flood is sure on its first poll, a crowd's ramp
                // after a few samples, one sample of a quiet host never.
                let mut rate_1_in = None;
                let mut sure = |rate: f64, secs_behind: f64| match z {
                    Some(z) if rate > 0.0 => {
                        let n = *rate_1_in
                            .get_or_insert_with(|| sampling_rate_in(samples, *coarsest_rate, net));
                        rate_lower(rate, rate * secs_behind / n, z)
                    }
                    _ => rate,
                };
                let smoothed = h.meter.smoothed(TrafficClass::All, Metric::Pps);
                // Over a threshold: the rates, scaled down to what their
                // samples make sure of.
                let mut sure_over = |t: &Table, secs_behind: f64| {
                    !below(t, &thr) && {
                        let all = t[0][0].max(f64::MIN_POSITIVE);
                        let f = sure(t[0][0], secs_behind) / all;
                        !below(&t.map(|r| r.map(|x| x * f)), &thr)
                    }
                };
                let over = if z.is_some() {
                    sure_over(h.meter.smoothed_table(), smoothing) || sure_over(&raw, secs)
                } else {
                    !below(&h.meter.signals(), &thr) || !below(&raw, &thr)
                };
                let sure = || sure(raw[0][0], secs).max(sure(smoothed, smoothing));
                h.surge = track_typical(&mut h.typical, raw[0][0], sure, calm, typical_alpha)
                    || over
                    || !calm;
                if let (Some(bc), Some(a)) = (&g.baseline, h.adaptive.as_mut()) {
                    if calm {
                        // Rates at or above the threshold are not normal:
                        // they must not teach the baseline that an attack is.
                        let alpha = meter::alpha(secs, bc.window.as_secs_f64());
                        a.baseline.learn(
                            &raw,
                            |i, m| thr[i][m].is_none_or(|t| raw[i][m] < t),
                            alpha,
                            secs,
                        );
                    }
                    a.thresholds = thresholds_of(g, &a.baseline);
                }
            }
        }
    }

    pub(super) fn measure_blocks(&mut self, alpha: f64, secs: f64) {
        for b in self.blocks.values_mut() {
            b.sum = ZERO;
            b.hosts = 0;
        }
        for (ip, h) in &self.hosts {
            let Some(net) = h.block else { continue };
            // A host over its own thresholds is its own attack: summing it
            // would also make its block a victim, and the block's rule (or
            // blackhole) would take its neighbours down with it.
            let own = host_net(*ip);
            if self.attacks.contains_key(&own)
                || self.pending.contains(&own)
                || !below(&h.meter.signals(), h.thresholds(&self.groups))
            {
                continue;
            }
            let group = h.group;
            add_to_block(&mut self.blocks, net, group, h.meter.raw());
        }
        for (net, sum) in &self.outside_blocks {
            let Some((group, _)) = self.lookup(net.network()) else {
                continue;
            };
            if self.groups[group].aggregate.is_none() {
                continue;
            }
            // The hosts summed elsewhere count as one.
            add_to_block(&mut self.blocks, *net, group, sum);
        }
        let attacks = &self.attacks;
        self.blocks
            .retain(|net, b| b.hosts > 0 || attacks.contains_key(net));
        let typical_alpha = meter::alpha(secs, TYPICAL_WINDOW.as_secs_f64());
        for (net, b) in self.blocks.iter_mut() {
            let sum = b.sum;
            b.meter.push(sum, alpha);
            let calm = !self.attacks.contains_key(net) && !self.pending.contains(net);
            let over = self.groups[b.group]
                .aggregate
                .is_some_and(|t| !below(&b.meter.signals(), &t) || !below(&sum, &t));
            b.surge = track_typical(&mut b.typical, sum[0][0], || sum[0][0], calm, typical_alpha)
                || over
                || !calm;
        }
    }
}

/// Adds one contributor's rates to this poll's sum of block `net` (made,
/// in `group`, if new).
fn add_to_block(blocks: &mut BTreeMap<IpNet, Block>, net: IpNet, group: usize, rates: &Table) {
    let b = blocks.entry(net).or_insert_with(|| Block {
        group,
        meter: Meter::new(None),
        quiet: ZERO,
        typical: Some((0.0, 1)),
        surge: false,
        sum: ZERO,
        hosts: 0,
    });
    b.hosts += 1;
    for (s, r) in b.sum.iter_mut().zip(rates) {
        s[0] += r[0];
        s[1] += r[1];
    }
}

/// Time constant of a destination's typical rate.
const TYPICAL_WINDOW: Duration = Duration::from_secs(300);
/// A rate above this multiple of the typical one is a surge: its samples are
/// evidence, not normal traffic.
const SURGE_FACTOR: f64 = 2.0;

/// Flags `rate` as a surge against `typical` when `sure` (the rate's lower
/// confidence bound, or the rate itself) exceeds it by [`SURGE_FACTOR`],
/// then learns `rate` if `calm`. Until the average has seen a window's
/// worth of intervals it is the plain mean of those it has (a new
/// destination's history is its idle past, one interval of zero).
fn track_typical(
    typical: &mut Option<(f64, u32)>,
    rate: f64,
    sure: impl FnOnce() -> f64,
    calm: bool,
    alpha: f64,
) -> bool {
    // A destination without history was idle: its first traffic is a
    // surge, not its normal mix (a flood starting from nothing must not be
    // learnt as what the destination normally gets).
    let limit = SURGE_FACTOR * typical.map_or(0.0, |(t, _)| t);
    let surge = rate > limit && sure() > limit;
    if calm {
        *typical = Some(match *typical {
            Some((t, n)) => {
                let a = alpha.max(1.0 / f64::from(n + 1));
                (t + a * (rate - t), n.saturating_add(1))
            }
            None => (rate, 1),
        });
    }
    surge
}

/// A host's thresholds: its group's static ones, or adaptive where the
/// group has a baseline with a floor for that class and metric (static
/// while the baseline is still learning, where there is one).
pub(super) fn thresholds_of(g: &Group, b: &Baseline) -> LimitTable {
    let mut t = g.thresholds;
    if let Some(bc) = &g.baseline {
        let learnt = b.learnt_secs() >= bc.window.as_secs_f64();
        for c in TrafficClass::ALL {
            for m in Metric::BOTH {
                let (i, j) = (c.index(), m.index());
                let Some(floor) = bc.floor.limit(c).get(m) else {
                    continue;
                };
                if learnt || t[i][j].is_none() {
                    let ceiling = bc.ceiling.limit(c).get(m).unwrap_or(f64::INFINITY);
                    t[i][j] = Some(b.upper(i, j, bc.k).max(floor).min(ceiling));
                }
            }
        }
    }
    t
}

#[cfg(test)]
mod typical_tests {
    use super::track_typical;

    #[test]
    fn a_destination_s_first_traffic_is_a_surge_then_its_typical_rate() {
        let mut typical = None;
        // First interval: no history (idle), so any traffic is a surge.
        assert!(track_typical(&mut typical, 3_000.0, || 3_000.0, true, 0.1));
        assert_eq!(typical, Some((3_000.0, 1)));
        // Steady afterwards: not a surge; doubling is.
        assert!(!track_typical(&mut typical, 3_100.0, || 3_100.0, true, 0.1));
        assert!(track_typical(&mut typical, 9_000.0, || 9_000.0, true, 0.1));
        // Idle stays idle.
        let mut idle = None;
        assert!(!track_typical(&mut idle, 0.0, || 0.0, true, 0.1));
    }
}
