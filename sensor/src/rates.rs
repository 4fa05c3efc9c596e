//! Rates from two readings of the per-destination counters.
//!
//! Counters only grow, except when a destination is evicted from the LRU
//! map and comes back, or the maps are re-created: then a later reading is
//! smaller, and the rate for that interval is 0, never negative or absurd.

use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use edge_sensor_common::{Class, DstStats};
use serde::Serialize;

/// Rates of one destination, per class.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DstRates {
    pub ip: IpAddr,
    /// Packets per second, indexed by [`Class`].
    pub pps: [f64; Class::COUNT],
    /// Bits per second, indexed by [`Class`].
    pub bps: [f64; Class::COUNT],
}

impl DstRates {
    pub fn pps(&self, c: Class) -> f64 {
        self.pps[c as usize]
    }

    pub fn bps(&self, c: Class) -> f64 {
        self.bps[c as usize]
    }
}

/// Rates between readings `before` and `after`, `elapsed` apart. A
/// destination missing from `before` counts from zero (it appeared); one
/// missing from `after` has no rate.
pub fn between(
    before: &BTreeMap<IpAddr, DstStats>,
    after: &BTreeMap<IpAddr, DstStats>,
    elapsed: Duration,
) -> Vec<DstRates> {
    if elapsed.is_zero() {
        return Vec::new();
    }
    after
        .iter()
        .map(|(ip, now)| of(*ip, before.get(ip), now, elapsed))
        .collect()
}

/// One destination's rates from its counters `then` (`None`: it appeared,
/// count from zero) and `now`, `elapsed` (not zero) apart.
pub fn of(ip: IpAddr, then: Option<&DstStats>, now: &DstStats, elapsed: Duration) -> DstRates {
    let secs = elapsed.as_secs_f64();
    let zero = DstStats::default();
    let then = then.unwrap_or(&zero);
    let mut r = DstRates {
        ip,
        pps: [0.0; Class::COUNT],
        bps: [0.0; Class::COUNT],
    };
    for i in 0..Class::COUNT {
        // A counter that went down was reset: no rate this interval.
        let packets = now.packets[i].saturating_sub(then.packets[i]);
        let bytes = now.bytes[i].saturating_sub(then.bytes[i]);
        r.pps[i] = packets as f64 / secs;
        r.bps[i] = bytes as f64 * 8.0 / secs;
    }
    r
}

/// The `n` destinations with the highest packet rate (all classes) among
/// those offered, kept as they come: no list of every destination's rates.
#[derive(Debug, Clone)]
pub struct Top {
    n: usize,
    rates: Vec<DstRates>,
}

impl Top {
    pub fn new(n: usize) -> Self {
        Self {
            n,
            rates: Vec::with_capacity(n + 1),
        }
    }

    pub fn offer(&mut self, r: DstRates) {
        if self.n == 0 {
            return;
        }
        if self.rates.len() == self.n {
            let (min_at, min) = self
                .rates
                .iter()
                .enumerate()
                .min_by(|a, b| a.1.pps(Class::All).total_cmp(&b.1.pps(Class::All)))
                .map(|(i, m)| (i, m.pps(Class::All)))
                .expect("n > 0");
            if r.pps(Class::All) <= min {
                return;
            }
            self.rates.swap_remove(min_at);
        }
        self.rates.push(r);
    }

    /// The top destinations, highest rate first.
    pub fn into_sorted(mut self) -> Vec<DstRates> {
        self.rates
            .sort_by(|a, b| b.pps(Class::All).total_cmp(&a.pps(Class::All)));
        self.rates
    }
}

/// A rate with its unit in human form: `1.23 Mpps`, `456.7 kbps`, `12 pps`.
pub fn with_unit(v: f64, unit: &str) -> String {
    match v {
        v if v >= 1e9 => format!("{:.2} G{unit}", v / 1e9),
        v if v >= 1e6 => format!("{:.2} M{unit}", v / 1e6),
        v if v >= 1e3 => format!("{:.1} k{unit}", v / 1e3),
        v => format!("{v:.0} {unit}"),
    }
}

/// A rate in human units: 1.23 M, 456 k, 12.
pub fn human(v: f64) -> String {
    match v {
        v if v >= 1e9 => format!("{:.2} G", v / 1e9),
        v if v >= 1e6 => format!("{:.2} M", v / 1e6),
        v if v >= 1e3 => format!("{:.1} k", v / 1e3),
        v => format!("{v:.0}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(packets: u64, bytes: u64) -> DstStats {
        let mut s = DstStats::default();
        s.packets[Class::All as usize] = packets;
        s.bytes[Class::All as usize] = bytes;
        s.packets[Class::Udp as usize] = packets;
        s
    }

    #[test]
    fn rates_are_deltas_over_the_interval() {
        let a: IpAddr = "203.0.113.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        let before = BTreeMap::from([(a, stats(1000, 100_000))]);
        let after = BTreeMap::from([(a, stats(3000, 300_000)), (b, stats(50, 5000))]);
        let r = between(&before, &after, Duration::from_millis(500));
        assert_eq!(r.len(), 2);
        let ra = r.iter().find(|r| r.ip == a).unwrap();
        assert_eq!(ra.pps(Class::All), 4000.0);
        assert_eq!(ra.bps(Class::All), 3_200_000.0);
        assert_eq!(ra.pps(Class::Udp), 4000.0);
        let rb = r.iter().find(|r| r.ip == b).unwrap();
        assert_eq!(
            rb.pps(Class::All),
            100.0,
            "new destinations count from zero"
        );
    }

    #[test]
    fn reset_counters_never_give_negative_or_absurd_rates() {
        let a: IpAddr = "203.0.113.1".parse().unwrap();
        let before = BTreeMap::from([(a, stats(u64::MAX - 5, u64::MAX))]);
        let after = BTreeMap::from([(a, stats(10, 100))]);
        let r = between(&before, &after, Duration::from_secs(1));
        assert_eq!(r[0].pps(Class::All), 0.0);
        assert_eq!(r[0].bps(Class::All), 0.0);
        assert!(between(&before, &after, Duration::ZERO).is_empty());
    }

    #[test]
    fn top_keeps_the_highest_packet_rates_as_they_come() {
        let mut top = Top::new(3);
        for (n, pps) in [5.0, 1.0, 9.0, 7.0, 2.0, 9.5].into_iter().enumerate() {
            let mut r = of(
                IpAddr::from([198, 51, 100, n as u8]),
                None,
                &DstStats::default(),
                Duration::from_secs(1),
            );
            r.pps[Class::All as usize] = pps;
            top.offer(r);
        }
        let kept: Vec<f64> = top
            .into_sorted()
            .iter()
            .map(|r| r.pps(Class::All))
            .collect();
        assert_eq!(kept, [9.5, 9.0, 7.0]);
        let mut none = Top::new(0);
        none.offer(of(
            IpAddr::from([0; 4]),
            None,
            &stats(1, 1),
            Duration::from_secs(1),
        ));
        assert!(none.into_sorted().is_empty());
    }

    #[test]
    fn human_units() {
        assert_eq!(human(12.0), "12");
        assert_eq!(human(45_600.0), "45.6 k");
        assert_eq!(human(1_230_000.0), "1.23 M");
        assert_eq!(human(10.5e9), "10.50 G");
    }
}
