//! After the decisions: the normal class mix of quiet intervals, the
//! destinations to sample next, and the state nothing needs any more.

use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use ipnet::IpNet;

use super::{Detector, host_net};
use crate::detect::{
    Metric, TrafficClass,
    config::LimitTable,
    meter::{Meter, Reading},
};

impl Detector {
    /// After the decisions: remembers the normal class mix of intervals
    /// without anomaly (for `hits_normal` without normal samples, and the
    /// background), and chooses the destinations to sample.
    pub(super) fn settle(&mut self, now: Duration) {
        let fraction = self.cfg.watch.fraction;
        let until = now + self.cfg.watch.hold;
        // Highest ratio to a threshold, measured or compared rate.
        let ratio = |m: &Meter, t: &LimitTable| {
            let mut r: f64 = 0.0;
            for c in TrafficClass::ALL {
                for x in Metric::BOTH {
                    let (i, j) = (c.index(), x.index());
                    if let Some(t) = t[i][j] {
                        r = r.max(m.signal(c, x).max(m.raw()[i][j]) / t);
                    }
                }
            }
            r
        };
        let Self {
            hosts,
            blocks,
            groups,
            attacks,
            pending,
            ..
        } = self;
        // Blocks near an aggregate threshold (or attacked): their hosts are
        // sampled, with the block's ratio, or first if attacked.
        let mut hot_blocks: BTreeMap<IpNet, (bool, f64)> = BTreeMap::new();
        for (net, b) in blocks.iter_mut() {
            let victim = attacks.contains_key(net) || pending.contains(net);
            if !victim && !b.surge {
                b.quiet = *b.meter.raw();
            }
            if let Some(t) = &groups[b.group].aggregate {
                let r = ratio(&b.meter, t);
                if r >= fraction || victim {
                    hot_blocks.insert(*net, (victim, r));
                }
            }
        }
        let mut priority: Vec<(IpAddr, f64)> = Vec::new();
        for (ip, h) in hosts.iter_mut() {
            let net = host_net(*ip);
            let victim = attacks.contains_key(&net) || pending.contains(&net);
            if !victim && !h.surge && h.reading == Reading::Measured {
                h.quiet = *h.meter.raw();
            }
            let r = ratio(&h.meter, h.thresholds(groups));
            let in_hot_block = h.block.and_then(|b| hot_blocks.get(&b).copied());
            // A flash crowd is told by its likeness to the host's normal
            // traffic, measured on samples: hosts of a group that tells
            // crowds apart are sampled all along, not only near a
            // threshold (last in priority, within `watch.max`).
            let profiled = groups[h.group]
                .baseline
                .as_ref()
                .is_some_and(|b| b.flash_crowd_similarity > 0.0);
            if r >= fraction || victim || in_hot_block.is_some() || profiled {
                h.watch_until = Some(until);
            }
            if h.watch_until.is_some_and(|u| u >= now) {
                let p = if victim || in_hot_block.is_some_and(|(v, _)| v) {
                    f64::INFINITY
                } else {
                    r.max(in_hot_block.map_or(0.0, |(_, r)| r))
                };
                priority.push((*ip, p));
            } else {
                h.watch_until = None;
            }
        }
        priority.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        self.watched = priority
            .into_iter()
            .take(self.cfg.watch.max as usize)
            .map(|(ip, _)| ip)
            .collect();
    }

    /// Drops the state of destinations gone from the map that nothing needs.
    pub(super) fn forget_idle(&mut self, now: Duration) {
        let attacks = &self.attacks;
        let pending = &self.pending;
        self.hosts.retain(|ip, h| {
            let net = host_net(*ip);
            h.seen
                || h.watch_until.is_some_and(|u| u >= now)
                || attacks.contains_key(&net)
                || pending.contains(&net)
                || h.block.is_some_and(|b| attacks.contains_key(&b))
        });
        let hosts = &self.hosts;
        self.samples
            .retain(|ip, s| hosts.contains_key(ip) && !s.is_empty());
    }
}
