//! Confirmation: a crossing starts an attack only once the samples behind
//! the rate make it sure (see [`crate::detect::confidence`]).
//!
//! Each victim near a threshold (at its release level, pending or attacked)
//! keeps its last [`MAX_WINDOW`] measured intervals. A crossing is confirmed
//! when, for some trailing run of 1 ..= [`MAX_WINDOW`] of them, the lower
//! confidence bound of a crossed class's rate reaches its threshold: a
//! flood confirms on its first interval, a rate just over the threshold
//! once enough samples have piled up, noise never (at the configured
//! confidence, per test).
//!
//! The counters hold scaled estimates; the number of samples behind them is
//! `packets / N`, `N` the sampling rate read off the victim's own samples
//! (`packets / sampled` summed over those held), else the coarsest rate seen
//! in any sample, else 1 (no sample ever seen: unsampled counters).

use std::{
    collections::{BTreeMap, VecDeque},
    net::IpAddr,
};

use ipnet::IpNet;

use super::{Detector, is_host};
use crate::detect::{
    Metric, Sample, TrafficClass,
    confidence::{normal_quantile, rate_lower},
    config::LimitTable,
    meter::{Reading, Table},
};

/// Most intervals a confirmation looks back over (and keeps per victim).
pub(super) const MAX_WINDOW: usize = 32;

/// A victim's recent intervals, newest last: (seconds, rates).
#[derive(Debug, Clone, Default)]
pub(super) struct History {
    intervals: VecDeque<(f64, Table)>,
    /// The poll (`stats.polls`) it was last kept at.
    kept_at: u64,
}

/// The lower bound of a crossing (logged while it is not confirmed).
#[derive(Debug, Clone, Copy, PartialEq)]
#[allow(dead_code)] // read through Debug, in the log
pub(super) struct Confirmation {
    class: TrafficClass,
    metric: Metric,
    /// Lower confidence bound of the rate over `intervals` intervals.
    lower: f64,
    threshold: f64,
    /// Samples behind it (effective: the class's packets over the rate).
    samples: f64,
    intervals: usize,
}

impl Detector {
    /// The normal quantile of `detect.confidence`; `None` when it is off.
    pub(super) fn confidence_z(&self) -> Option<f64> {
        (self.cfg.confidence > 0.0).then(|| normal_quantile(self.cfg.confidence))
    }

    /// Notes the sampling rate of every sample handed over (the fallback of
    /// victims without samples of their own).
    pub(super) fn note_rates(&mut self, samples: &[Sample]) {
        for s in samples {
            if s.sampled > 0 && s.packets > 0 {
                let rate = s.packets as f64 / s.sampled as f64;
                self.coarsest_rate = self.coarsest_rate.max(rate);
            }
        }
    }

    /// Keeps the victim's latest interval if `keep` (and its rate was
    /// measured), else forgets its history.
    pub(super) fn remember(&mut self, victim: IpNet, keep: bool, secs: f64) {
        let measured = if is_host(victim) {
            self.hosts
                .get(&victim.network())
                .is_some_and(|h| h.reading == Reading::Measured)
        } else {
            true
        };
        if !keep {
            self.histories.remove(&victim);
            return;
        }
        let raw = self.raw(victim);
        let poll = self.stats.polls;
        let h = self.histories.entry(victim).or_default();
        h.kept_at = poll;
        if !measured {
            // A counter gap: its rates are the previous ones again, and
            // counting them twice would double their samples.
            return;
        }
        if h.intervals.len() >= MAX_WINDOW {
            h.intervals.pop_front();
        }
        h.intervals.push_back((secs, raw));
    }

    /// Drops the histories of victims not decided this poll.
    pub(super) fn forget_histories(&mut self) {
        let poll = self.stats.polls;
        self.histories.retain(|_, h| h.kept_at == poll);
    }

    /// The sampling rate behind a victim's counters (see the module doc).
    pub(super) fn sampling_rate(&self, victim: IpNet) -> f64 {
        sampling_rate_in(&self.samples, self.coarsest_rate, victim)
    }

    /// The strongest confirmation of the entries of `mask`: the one whose
    /// lower bound is highest relative to its threshold; `None` without
    /// history or thresholds.
    pub(super) fn confirmation(
        &self,
        victim: IpNet,
        thresholds: &LimitTable,
        mask: &[[bool; 2]; 7],
        z: f64,
    ) -> Option<Confirmation> {
        let h = self.histories.get(&victim)?;
        let rate = self.sampling_rate(victim);
        let mut best: Option<Confirmation> = None;
        for c in TrafficClass::ALL {
            for m in Metric::BOTH {
                let (i, j) = (c.index(), m.index());
                let (true, Some(t)) = (mask[i][j], thresholds[i][j]) else {
                    continue;
                };
                // Trailing runs, newest first: 1, 2, ... intervals.
                let (mut secs, mut packets, mut amount) = (0.0, 0.0, 0.0);
                for (w, (dt, raw)) in h.intervals.iter().rev().enumerate() {
                    secs += dt;
                    packets += raw[i][Metric::Pps.index()] * dt;
                    amount += raw[i][j] * dt;
                    if secs <= 0.0 {
                        continue;
                    }
                    let samples = packets / rate;
                    let lower = rate_lower(amount / secs, samples, z);
                    if best.is_none_or(|b| lower / t > b.lower / b.threshold) {
                        best = Some(Confirmation {
                            class: c,
                            metric: m,
                            lower,
                            threshold: t,
                            samples,
                            intervals: w + 1,
                        });
                    }
                }
            }
        }
        best
    }

    /// Whether a crossing of the entries of `mask` is confirmed at the
    /// configured confidence (always, with the check off).
    pub(super) fn confirmed(
        &self,
        victim: IpNet,
        thresholds: &LimitTable,
        mask: &[[bool; 2]; 7],
    ) -> bool {
        let Some(z) = self.confidence_z() else {
            return true;
        };
        match self.confirmation(victim, thresholds, mask, z) {
            Some(c) if c.lower >= c.threshold => true,
            c => {
                tracing::debug!(victim = %victim, confirmation = ?c, "crossing not confirmed yet");
                false
            }
        }
    }
}

/// [`Detector::sampling_rate`] over the detector's sample stores, for
/// callers holding other parts of it.
pub(super) fn sampling_rate_in(
    samples: &BTreeMap<IpAddr, crate::detect::fingerprint::SampleStore>,
    coarsest_rate: f64,
    victim: IpNet,
) -> f64 {
    let (mut packets, mut sampled) = (0u128, 0u128);
    for (_, store) in samples.range(victim.network()..=victim.broadcast()) {
        for s in store.recent().chain(store.normal()) {
            packets += u128::from(s.packets);
            sampled += u128::from(s.sampled);
        }
    }
    if sampled > 0 && packets > 0 {
        (packets as f64 / sampled as f64).max(1.0)
    } else {
        coarsest_rate.max(1.0)
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, net::IpAddr, time::Duration};

    use edge_sensor_common::DstStats;

    use super::*;
    use crate::detect::DetectConfig;

    fn sample(dst: IpAddr, packets: u64, sampled: u64) -> Sample {
        Sample {
            dst,
            src: "192.0.2.9".parse().unwrap(),
            protocol: 17,
            src_port: 53,
            dst_port: 4000,
            tcp_flags: 0,
            icmp_type: None,
            fragment: false,
            later_fragment: false,
            packet_len: 100,
            packets,
            bytes: packets * 100,
            sampled,
        }
    }

    #[test]
    fn the_sampling_rate_is_read_off_the_samples_flow_records_included() {
        let cfg = DetectConfig::from_toml("own_networks = [\"198.18.0.0/15\"]").unwrap();
        let mut d = Detector::new(cfg).unwrap();
        let (a, b): (IpAddr, IpAddr) =
            ("198.18.0.1".parse().unwrap(), "198.18.0.2".parse().unwrap());
        let counters = BTreeMap::from([(a, DstStats::default()), (b, DstStats::default())]);
        d.poll(Duration::ZERO, &counters, &[]);
        // No sample yet: unsampled (1).
        assert_eq!(d.sampling_rate(IpNet::from(a)), 1.0);
        // `a`: two sFlow samples at 1:4096 and a flow record of 10 sampled
        // packets at the same rate; `b`: records at 1:1000.
        let samples = [
            sample(a, 4096, 1),
            sample(a, 4096, 1),
            sample(a, 40960, 10),
            sample(b, 3000, 3),
        ];
        d.poll(Duration::from_secs(1), &counters, &samples);
        assert_eq!(d.sampling_rate(IpNet::from(a)), 4096.0);
        assert_eq!(d.sampling_rate(IpNet::from(b)), 1000.0);
        // A victim without samples of its own: the coarsest rate seen.
        let c: IpAddr = "198.18.0.3".parse().unwrap();
        assert_eq!(d.sampling_rate(IpNet::from(c)), 4096.0);
    }
}
