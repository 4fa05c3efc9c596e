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
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return Vec::new();
    }
    let zero = DstStats::default();
    after
        .iter()
        .map(|(ip, now)| {
            let then = before.get(ip).unwrap_or(&zero);
            let mut r = DstRates {
                ip: *ip,
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
        })
        .collect()
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
    fn human_units() {
        assert_eq!(human(12.0), "12");
        assert_eq!(human(45_600.0), "45.6 k");
        assert_eq!(human(1_230_000.0), "1.23 M");
        assert_eq!(human(10.5e9), "10.50 G");
    }
}
