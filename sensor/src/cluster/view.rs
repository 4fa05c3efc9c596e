//! The network-wide counters: the latest summary of every live member,
//! summed per destination and integrated over the poll interval into
//! cumulative counters, so a second [`crate::detect::Detector`] reads them
//! like the kernel's (a [`CounterReading`]) and keeps its own smoothing,
//! thresholds, hysteresis and confirmation.
//!
//! The members' block sums (the hosts of an aggregate block left out of
//! their summaries, [`Summary::blocks`]) are summed too, as rates: the
//! detector adds them to the blocks of the hosts it sees
//! ([`crate::detect::Detector::set_outside_blocks`]).
//!
//! A destination in no summary leaves the reading (the detector takes an
//! absent destination as silent); when it comes back its counters restart
//! from zero, which the detector's meter expects of a re-inserted entry.

use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use edge_sensor_common::{Class, DstStats};
use ipnet::IpNet;

use super::Summary;
use crate::{
    counters::CounterReading,
    detect::meter::{Table, ZERO},
};

/// Network-wide cumulative counters.
#[derive(Debug, Default)]
pub struct NetworkCounters {
    /// Packets and bytes since each destination appeared, fractional.
    totals: BTreeMap<IpAddr, [[f64; 2]; Class::COUNT]>,
    reading: BTreeMap<IpAddr, DstStats>,
    /// The members' block sums of the last sum.
    blocks: BTreeMap<IpNet, Table>,
    last: Option<Duration>,
    /// Destinations in the last sum, and the sum of their pps (`all`).
    pub destinations: usize,
}

impl NetworkCounters {
    /// Sums `summaries` (the latest of each live member) into the rates of
    /// the interval ending `now` and adds them to the counters.
    pub fn advance<'a>(&mut self, now: Duration, summaries: impl IntoIterator<Item = &'a Summary>) {
        let secs = self
            .last
            .map_or(0.0, |l| now.saturating_sub(l).as_secs_f64());
        self.last = Some(now);
        fn add(acc: &mut Table, t: &Table) {
            for (a, r) in acc.iter_mut().zip(t) {
                a[0] += r[0];
                a[1] += r[1];
            }
        }
        let mut sum: BTreeMap<IpAddr, Table> = BTreeMap::new();
        self.blocks.clear();
        for s in summaries {
            for (ip, t) in &s.rates {
                add(sum.entry(*ip).or_insert(ZERO), t);
            }
            for (net, t) in &s.blocks {
                add(self.blocks.entry(*net).or_insert(ZERO), t);
            }
        }
        self.totals.retain(|ip, _| sum.contains_key(ip));
        for (ip, rate) in &sum {
            let tot = self.totals.entry(*ip).or_default();
            for (c, r) in tot.iter_mut().zip(rate) {
                c[0] += r[0] * secs;
                c[1] += r[1] / 8.0 * secs;
            }
        }
        self.destinations = sum.len();
        self.reading = self
            .totals
            .iter()
            .map(|(ip, tot)| {
                let mut s = DstStats::default();
                for (i, c) in tot.iter().enumerate() {
                    s.packets[i] = c[0] as u64;
                    s.bytes[i] = c[1] as u64;
                }
                (*ip, s)
            })
            .collect();
    }

    pub fn reading(&self) -> &BTreeMap<IpAddr, DstStats> {
        &self.reading
    }

    /// The members' block sums, as rates.
    pub fn blocks(&self) -> &BTreeMap<IpNet, Table> {
        &self.blocks
    }
}

impl CounterReading for NetworkCounters {
    fn in_order(&self) -> impl Iterator<Item = (IpAddr, &DstStats)> {
        self.reading.in_order()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(ip: &str, pps: f64) -> Summary {
        let mut t = ZERO;
        t[0] = [pps, pps * 8.0 * 100.0];
        Summary {
            seq: 0,
            rates: vec![(ip.parse().unwrap(), t)],
            blocks: vec![("198.18.1.0/24".parse().unwrap(), t)],
        }
    }

    #[test]
    fn rates_of_all_members_sum_into_counters_over_the_interval() {
        let mut v = NetworkCounters::default();
        let a = summary("198.18.0.1", 40_000.0);
        let b = summary("198.18.0.1", 30_000.0);
        let c = summary("198.18.0.2", 5.0);
        v.advance(Duration::from_secs(1), [&a, &b, &c]);
        let ip: IpAddr = "198.18.0.1".parse().unwrap();
        assert_eq!(v.reading()[&ip].packets[0], 0);
        v.advance(Duration::from_millis(1500), [&a, &b, &c]);
        assert_eq!(v.reading()[&ip].packets[0], 35_000);
        assert_eq!(v.reading()[&ip].bytes[0], 3_500_000);
        let block: IpNet = "198.18.1.0/24".parse().unwrap();
        assert_eq!(v.blocks()[&block][0][0], 70_005.0);
        // A member gone: its share stops; a destination in no summary leaves.
        v.advance(Duration::from_millis(2500), [&a]);
        assert_eq!(v.reading()[&ip].packets[0], 75_000);
        assert_eq!(v.destinations, 1);
        assert!(!v.reading().contains_key(&"198.18.0.2".parse().unwrap()));
    }
}
