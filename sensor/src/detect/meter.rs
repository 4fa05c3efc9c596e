//! Rates of one destination (or block) from its cumulative counters, smoothed,
//! and the adaptive baseline learnt from them.
//!
//! A counter that went down (the map was re-created, the entry evicted and
//! re-inserted between two polls) or a delta that no link could carry makes
//! the interval a gap: the rates keep their previous values instead of
//! dropping to zero or jumping to something absurd, so a reset in the middle
//! of an attack neither ends it nor starts a new one.

use edge_sensor_common::{Class, DstStats};

use super::config::{Metric, TrafficClass};

/// A value per class and metric: `table[class][metric]`.
pub type Table = [[f64; 2]; Class::COUNT];

pub const ZERO: Table = [[0.0; 2]; Class::COUNT];

/// More than this per destination is a broken counter, not traffic (the
/// largest attacks reported are a few Gpps and tens of Tbps, summed over
/// many destinations).
const MAX_PLAUSIBLE_PPS: f64 = 1e11;
const MAX_PLAUSIBLE_BPS: f64 = 1e14;

/// What one poll told about a meter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// A rate was measured.
    Measured,
    /// The counters cannot give a rate for this interval (reset, absurd
    /// delta, or the first reading); the previous rates stand.
    Gap,
}

/// Per-poll and smoothed rates.
#[derive(Debug, Clone)]
pub struct Meter {
    /// Counters at the last poll; `None` when the destination was absent,
    /// so the next reading counts from zero.
    last: Option<DstStats>,
    /// Rates of the last measured interval and of the one before.
    raw: Table,
    prev_raw: Table,
    smoothed: Table,
}

impl Meter {
    /// A meter whose first reading is `base` (no rate yet) or, with `None`,
    /// one that counts the next reading from zero (a destination that
    /// appeared since the last poll).
    pub fn new(base: Option<&DstStats>) -> Self {
        Self {
            last: base.copied(),
            raw: ZERO,
            prev_raw: ZERO,
            smoothed: ZERO,
        }
    }

    /// Takes the counters read now (`None`: the destination is absent from
    /// the map), `secs` after the previous poll; `alpha` is the smoothing
    /// weight of the new rate.
    #[allow(clippy::needless_range_loop)] // parallel tables, one index
    pub fn observe(&mut self, now: Option<&DstStats>, secs: f64, alpha: f64) -> Reading {
        let Some(now) = now else {
            // Absent: evicted from the LRU map, so idle. Count it as silence
            // and take the next appearance from zero.
            self.last = None;
            self.push(ZERO, alpha);
            return Reading::Measured;
        };
        let then = self.last.replace(*now).unwrap_or_default();
        if secs <= 0.0 {
            return Reading::Gap;
        }
        let mut rate = ZERO;
        for i in 0..Class::COUNT {
            let (Some(packets), Some(bytes)) = (
                now.packets[i].checked_sub(then.packets[i]),
                now.bytes[i].checked_sub(then.bytes[i]),
            ) else {
                return Reading::Gap;
            };
            rate[i] = [packets as f64 / secs, bytes as f64 * 8.0 / secs];
            if rate[i][0] > MAX_PLAUSIBLE_PPS || rate[i][1] > MAX_PLAUSIBLE_BPS {
                return Reading::Gap;
            }
        }
        self.push(rate, alpha);
        Reading::Measured
    }

    /// Takes a measured rate directly (used for blocks, whose rate is the sum
    /// of their hosts').
    pub fn push(&mut self, rate: Table, alpha: f64) {
        self.prev_raw = self.raw;
        self.raw = rate;
        for (s, r) in self.smoothed.iter_mut().zip(rate.iter()) {
            for m in 0..2 {
                s[m] += alpha * (r[m] - s[m]);
            }
        }
    }

    /// The rate of the last measured interval.
    pub fn raw(&self) -> &Table {
        &self.raw
    }

    /// Every class's and metric's smoothed rate.
    pub fn smoothed_table(&self) -> &Table {
        &self.smoothed
    }

    pub fn smoothed(&self, c: TrafficClass, m: Metric) -> f64 {
        self.smoothed[c.index()][m.index()]
    }

    /// The rate compared with thresholds: the greater of the smoothed rate
    /// and the lower of the last two measured ones. A step above a
    /// threshold is seen after two polls at most, however slow the
    /// smoothing; a single noisy interval is not enough unless it is large
    /// enough to lift the smoothed rate on its own.
    pub fn signal(&self, c: TrafficClass, m: Metric) -> f64 {
        let (i, j) = (c.index(), m.index());
        self.smoothed[i][j].max(self.raw[i][j].min(self.prev_raw[i][j]))
    }

    /// [`Self::signal`] of every class and metric.
    pub fn signals(&self) -> Table {
        let mut t = ZERO;
        for c in TrafficClass::ALL {
            for m in Metric::BOTH {
                t[c.index()][m.index()] = self.signal(c, m);
            }
        }
        t
    }
}

/// Exponentially weighted mean and variance of each class and metric.
#[derive(Debug, Clone, Default)]
pub struct Baseline {
    mean: Table,
    var: Table,
    seen: [[bool; 2]; Class::COUNT],
    /// Time learnt so far (only intervals that were taken in).
    learnt_secs: f64,
}

impl Baseline {
    /// Takes in `rate` for the entries `take` allows, `alpha` being the
    /// weight of one interval of `secs`.
    #[allow(clippy::needless_range_loop)] // parallel tables, one index
    pub fn learn(
        &mut self,
        rate: &Table,
        take: impl Fn(usize, usize) -> bool,
        alpha: f64,
        secs: f64,
    ) {
        for i in 0..Class::COUNT {
            for m in 0..2 {
                if !take(i, m) {
                    continue;
                }
                let x = rate[i][m];
                if !self.seen[i][m] {
                    self.seen[i][m] = true;
                    self.mean[i][m] = x;
                    continue;
                }
                // West's incremental form of the exponentially weighted
                // variance.
                let diff = x - self.mean[i][m];
                let incr = alpha * diff;
                self.mean[i][m] += incr;
                self.var[i][m] = (1.0 - alpha) * (self.var[i][m] + diff * incr);
            }
        }
        self.learnt_secs += secs;
    }

    pub fn learnt_secs(&self) -> f64 {
        self.learnt_secs
    }

    pub fn mean(&self, i: usize, m: usize) -> f64 {
        self.mean[i][m]
    }

    /// `mean + k * stddev`.
    pub fn upper(&self, i: usize, m: usize, k: f64) -> f64 {
        self.mean[i][m] + k * self.var[i][m].max(0.0).sqrt()
    }
}

/// Weight of a new value in an exponential average of time constant `tau`
/// after `secs`: 1 - e^(-secs/tau); 1 without smoothing.
pub fn alpha(secs: f64, tau: f64) -> f64 {
    if tau <= 0.0 {
        1.0
    } else {
        1.0 - (-secs / tau).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(all: u64, udp: u64, bytes: u64) -> DstStats {
        let mut s = DstStats::default();
        s.packets[Class::All as usize] = all;
        s.packets[Class::Udp as usize] = udp;
        s.bytes[Class::All as usize] = bytes;
        s
    }

    #[test]
    fn deltas_become_rates_and_resets_are_gaps() {
        let mut m = Meter::new(Some(&stats(1000, 500, 100_000)));
        assert_eq!(
            m.observe(Some(&stats(3000, 1500, 300_000)), 2.0, 1.0),
            Reading::Measured
        );
        assert_eq!(m.raw()[Class::All as usize], [1000.0, 800_000.0]);
        assert_eq!(m.raw()[Class::Udp as usize][0], 500.0);
        // Map re-created: the counters start again from a small value.
        assert_eq!(m.observe(Some(&stats(10, 5, 1000)), 1.0, 1.0), Reading::Gap);
        assert_eq!(
            m.raw()[Class::All as usize][0],
            1000.0,
            "previous rate stands"
        );
        // The next interval counts from the new base.
        m.observe(Some(&stats(1010, 505, 101_000)), 1.0, 1.0);
        assert_eq!(m.raw()[Class::All as usize][0], 1000.0);
    }

    #[test]
    fn absurd_deltas_are_gaps() {
        let mut m = Meter::new(Some(&stats(0, 0, 0)));
        assert_eq!(
            m.observe(Some(&stats(u64::MAX / 2, 0, 0)), 1.0, 1.0),
            Reading::Gap
        );
        assert_eq!(m.signal(TrafficClass::All, Metric::Pps), 0.0);
    }

    #[test]
    fn absent_destinations_are_silent_and_come_back_from_zero() {
        let mut m = Meter::new(Some(&stats(100, 0, 0)));
        m.observe(None, 1.0, 1.0);
        assert_eq!(m.raw()[0][0], 0.0);
        m.observe(Some(&stats(50, 0, 0)), 1.0, 1.0);
        assert_eq!(m.raw()[0][0], 50.0);
    }

    #[test]
    fn signal_needs_two_intervals_or_a_large_smoothed_rate() {
        let mut m = Meter::new(Some(&DstStats::default()));
        let a = alpha(1.0, 4.0);
        m.observe(Some(&stats(1000, 0, 0)), 1.0, a);
        let s1 = m.signal(TrafficClass::All, Metric::Pps);
        assert!((s1 - 1000.0 * a).abs() < 1e-9, "{s1}");
        m.observe(Some(&stats(2000, 0, 0)), 1.0, a);
        assert_eq!(m.signal(TrafficClass::All, Metric::Pps), 1000.0);
    }

    #[test]
    fn baseline_learns_mean_and_spread() {
        let mut b = Baseline::default();
        let mut t = ZERO;
        for i in 0..2000 {
            t[0][0] = if i % 2 == 0 { 900.0 } else { 1100.0 };
            b.learn(&t, |i, m| i == 0 && m == 0, alpha(1.0, 100.0), 1.0);
        }
        assert!((b.mean(0, 0) - 1000.0).abs() < 10.0, "{}", b.mean(0, 0));
        let upper = b.upper(0, 0, 2.0);
        assert!((1180.0..1220.0).contains(&upper), "{upper}");
        assert_eq!(b.learnt_secs(), 2000.0);
    }
}
