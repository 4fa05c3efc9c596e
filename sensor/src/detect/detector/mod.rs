//! The engine: per-destination state, decisions, and what to sample next.
//! See the module documentation of [`super`].
//!
//! This file holds the state and the poll that drives it, one step per file:
//! - [`baseline`]: counters to rates, typical rates and surges, baselines
//!   and adaptive thresholds;
//! - [`decision`]: thresholds to attacks started, updated, revised, ended;
//! - [`confirm`]: whether a crossing is sure, given the samples behind it;
//! - [`crowd`]: whether a host's surge is a flash crowd, not an attack;
//! - [`evidence`]: the samples and counters behind a class and fingerprint;
//! - [`watch`]: after the decisions, what to sample next and what to forget.

mod baseline;
mod confirm;
mod crowd;
mod decision;
mod evidence;
mod watch;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::Duration,
};

use ipnet::IpNet;

use crate::counters::CounterReading;

use super::{
    Attack, DestinationView, DetectConfig, DetectConfigError, DetectorStats, Event, FlowMatch,
    Metric, Sample, Scope, TrafficClass,
    config::{BaselineConfig, DEFAULT_GROUP, GroupAction, LimitTable},
    fingerprint::SampleStore,
    meter::{self, Baseline, Meter, Reading, Table, ZERO},
};
use baseline::thresholds_of;
use decision::{reaches, table_reaches};

/// A host group with the global settings folded in.
#[derive(Debug, Clone)]
struct Group {
    name: String,
    action: GroupAction,
    thresholds: LimitTable,
    aggregate: Option<LimitTable>,
    block_v4: u8,
    block_v6: u8,
    baseline: Option<BaselineConfig>,
}

/// One destination inside the own networks, while it is in the counters
/// (or something still needs it).
#[derive(Debug, Clone)]
pub(super) struct Host {
    group: usize,
    /// The aggregate block it is summed into, if its group has aggregates.
    block: Option<IpNet>,
    pub(super) meter: Meter,
    /// Only for hosts whose group has a baseline (boxed: most have none).
    adaptive: Option<Box<Adaptive>>,
    /// Rates of the last interval without anomaly: the normal class mix.
    quiet: Table,
    /// Long-run average of the whole-traffic pps, and how many intervals
    /// it has seen; `None` until measured.
    typical: Option<(f64, u32)>,
    /// The last measured interval was an anomaly: well above `typical`,
    /// over a threshold, or under attack. Its samples are evidence, not
    /// normal traffic.
    surge: bool,
    watch_until: Option<Duration>,
    seen: bool,
    reading: Reading,
}

/// A host's baseline and the thresholds it gives.
#[derive(Debug, Clone)]
struct Adaptive {
    baseline: Baseline,
    thresholds: LimitTable,
}

impl Host {
    /// The thresholds in force: adaptive, or the group's static ones.
    fn thresholds<'a>(&'a self, groups: &'a [Group]) -> &'a LimitTable {
        self.adaptive
            .as_ref()
            .map_or(&groups[self.group].thresholds, |a| &a.thresholds)
    }
}

/// A block of a group's hosts, summed for aggregate thresholds.
#[derive(Debug, Clone)]
struct Block {
    group: usize,
    meter: Meter,
    quiet: Table,
    typical: Option<(f64, u32)>,
    surge: bool,
    /// This poll's sum of its hosts' rates, and how many were summed.
    sum: Table,
    hosts: u32,
}

/// An attack in progress.
#[derive(Debug, Clone)]
struct Active {
    attack: Attack,
    started: Duration,
    last_active: Duration,
    /// A narrower match the latest evidence keeps giving, and for how many
    /// polls in a row.
    candidate: Option<(FlowMatch, u32)>,
}

/// The detection engine. See the module documentation.
#[derive(Debug)]
pub struct Detector {
    cfg: DetectConfig,
    groups: Vec<Group>,
    /// Host group prefixes, most specific first, with their group index
    /// (the configured ones and those learnt from BGP).
    group_prefixes: Vec<(IpNet, usize)>,
    /// The own networks, most specific first: configured and learnt.
    own: Vec<IpNet>,
    /// Own networks learnt from BGP routes ([`Self::set_learnt_networks`]),
    /// with their host group.
    learnt: Vec<(IpNet, usize)>,
    last_poll: Option<Duration>,
    pub(super) hosts: BTreeMap<IpAddr, Host>,
    blocks: BTreeMap<IpNet, Block>,
    /// Block sums measured elsewhere, added to this detector's own
    /// ([`Self::set_outside_blocks`]): the network-wide view's.
    outside_blocks: BTreeMap<IpNet, Table>,
    samples: BTreeMap<IpAddr, SampleStore>,
    attacks: BTreeMap<IpNet, Active>,
    /// Victims over a threshold whose start waits for samples (one poll)
    /// or for confirmation.
    pending: BTreeSet<IpNet>,
    /// Pending victims that crossed while the kernel was not sampling
    /// them, and when: their start waits for their samples, at most one
    /// poll interval ([`Detector::samples_awaited`]).
    awaiting: BTreeMap<IpNet, Duration>,
    /// Pending hosts whose surge a crowd test found unlike their normal
    /// traffic, and when: it starts once fresh samples say so again
    /// ([`crowd`]).
    unlike_since: BTreeMap<IpNet, Duration>,
    /// Recent intervals of victims near a threshold ([`confirm`]).
    histories: BTreeMap<IpNet, confirm::History>,
    /// The coarsest sampling rate of any sample seen ([`confirm`]).
    coarsest_rate: f64,
    /// Seconds of the current poll's interval.
    interval_secs: f64,
    watched: BTreeSet<IpAddr>,
    next_id: u64,
    stats: DetectorStats,
}

impl Detector {
    /// A detector for a validated configuration.
    pub fn new(cfg: DetectConfig) -> Result<Self, DetectConfigError> {
        cfg.validate()?;
        let global_thresholds = cfg.thresholds.over(&[[None; 2]; 7]);
        let global_aggregate = cfg.aggregate.over(&[[None; 2]; 7]);
        let present = |t: &LimitTable| t.iter().flatten().any(Option::is_some);
        let mut groups = vec![Group {
            name: DEFAULT_GROUP.to_string(),
            action: cfg.action,
            thresholds: global_thresholds,
            aggregate: present(&global_aggregate).then_some(global_aggregate),
            block_v4: cfg.aggregate_prefix_v4,
            block_v6: cfg.aggregate_prefix_v6,
            baseline: cfg.baseline.clone(),
        }];
        for g in &cfg.host_groups {
            let aggregate = g.aggregate.over(&global_aggregate);
            groups.push(Group {
                name: g.name.clone(),
                action: g.action.unwrap_or(cfg.action),
                thresholds: g.thresholds.over(&global_thresholds),
                aggregate: present(&aggregate).then_some(aggregate),
                block_v4: g.aggregate_prefix_v4.unwrap_or(cfg.aggregate_prefix_v4),
                block_v6: g.aggregate_prefix_v6.unwrap_or(cfg.aggregate_prefix_v6),
                baseline: if g.no_baseline {
                    None
                } else {
                    g.baseline.clone().or_else(|| cfg.baseline.clone())
                },
            });
        }
        let mut det = Self {
            cfg,
            groups,
            group_prefixes: Vec::new(),
            own: Vec::new(),
            learnt: Vec::new(),
            last_poll: None,
            hosts: BTreeMap::new(),
            blocks: BTreeMap::new(),
            outside_blocks: BTreeMap::new(),
            samples: BTreeMap::new(),
            attacks: BTreeMap::new(),
            pending: BTreeSet::new(),
            awaiting: BTreeMap::new(),
            unlike_since: BTreeMap::new(),
            histories: BTreeMap::new(),
            coarsest_rate: 1.0,
            interval_secs: 0.0,
            watched: BTreeSet::new(),
            next_id: 1,
            stats: DetectorStats::default(),
        };
        det.index_networks();
        Ok(det)
    }

    /// Rebuilds the own networks and the group prefixes, most specific
    /// first, from the configuration and the learnt networks.
    fn index_networks(&mut self) {
        let mut group_prefixes: Vec<(IpNet, usize)> = self
            .cfg
            .host_groups
            .iter()
            .enumerate()
            .flat_map(|(g, h)| h.prefixes.iter().map(move |p| (*p, g + 1)))
            .chain(self.learnt.iter().filter(|(_, g)| *g != 0).copied())
            .collect();
        group_prefixes.sort_by(|a, b| b.0.prefix_len().cmp(&a.0.prefix_len()).then(a.0.cmp(&b.0)));
        group_prefixes.dedup_by_key(|(n, _)| *n);
        let mut own: Vec<IpNet> = self.cfg.own_networks.clone();
        own.extend(self.learnt.iter().map(|(n, _)| *n));
        own.sort_by(|a, b| b.prefix_len().cmp(&a.prefix_len()).then(a.cmp(b)));
        own.dedup();
        self.group_prefixes = group_prefixes;
        self.own = own;
    }

    /// The own networks learnt from BGP routes, with the name of their
    /// host group (`None`: the default group), replacing the previous set
    /// (`detect.networks_from_bgp`; the caller keeps them within its
    /// ceiling). Destinations no longer inside any own network are
    /// forgotten and their attacks end at once (returned): nothing is
    /// mitigated outside the operator's networks. Unknown group names fall
    /// back to the default group.
    pub fn set_learnt_networks(&mut self, learnt: &[(IpNet, Option<String>)]) -> Vec<Event> {
        let group_of = |name: &Option<String>| {
            name.as_ref()
                .and_then(|n| self.groups.iter().position(|g| &g.name == n))
                .unwrap_or(0)
        };
        let mut next: Vec<(IpNet, usize)> = learnt
            .iter()
            .map(|(n, g)| (n.trunc(), group_of(g)))
            .collect();
        next.sort();
        next.dedup();
        if next == self.learnt {
            return Vec::new();
        }
        self.learnt = next;
        self.index_networks();
        // Hosts whose group changed start afresh; those outside go.
        let regroup: Vec<IpAddr> = self
            .hosts
            .iter()
            .filter(|(ip, h)| self.lookup(**ip).is_none_or(|(g, _)| g != h.group))
            .map(|(ip, _)| *ip)
            .collect();
        for ip in &regroup {
            self.hosts.remove(ip);
            self.samples.remove(ip);
            self.pending.remove(&host_net(*ip));
            self.histories.remove(&host_net(*ip));
        }
        let outside: Vec<IpNet> = self
            .attacks
            .keys()
            .filter(|v| self.lookup(v.network()).is_none())
            .copied()
            .collect();
        let mut events = Vec::new();
        for victim in outside {
            if let Some(a) = self.attacks.remove(&victim) {
                self.stats.attacks_ended += 1;
                tracing::info!(id = a.attack.id, victim = %victim, "attack ended: no longer inside the own networks");
                events.push(Event::AttackEnded(a.attack));
            }
        }
        self.blocks
            .retain(|net, _| self.own.iter().any(|o| o.contains(&net.network())));
        events
    }

    /// The own networks now: configured and learnt, most specific first.
    pub fn own_networks(&self) -> &[IpNet] {
        &self.own
    }

    pub fn config(&self) -> &DetectConfig {
        &self.cfg
    }

    /// The host group (index) of `ip` and the length of the prefix that
    /// matched; `None` outside the own networks.
    pub(super) fn lookup(&self, ip: IpAddr) -> Option<(usize, u8)> {
        let own = self.own.iter().find(|n| n.contains(&ip))?;
        Some(
            self.group_prefixes
                .iter()
                .find(|(n, _)| n.contains(&ip))
                .map(|(n, g)| (*g, n.prefix_len()))
                .unwrap_or((0, own.prefix_len())),
        )
    }

    fn new_host(&self, ip: IpAddr, base: Option<&edge_sensor_common::DstStats>) -> Option<Host> {
        let (group, matched) = self.lookup(ip)?;
        let g = &self.groups[group];
        let block = g.aggregate.map(|_| {
            let len = match ip {
                IpAddr::V4(_) => g.block_v4,
                IpAddr::V6(_) => g.block_v6,
            };
            IpNet::new(ip, len.max(matched))
                .map(|n| n.trunc())
                .unwrap_or_else(|_| host_net(ip))
        });
        let adaptive = g.baseline.as_ref().map(|_| {
            let baseline = Baseline::default();
            Box::new(Adaptive {
                thresholds: thresholds_of(g, &baseline),
                baseline,
            })
        });
        Some(Host {
            group,
            block,
            meter: Meter::new(base),
            adaptive,
            quiet: ZERO,
            // Present at the first poll: history unknown, learnt from the
            // first rate. Appeared later: it was idle (absent from the map).
            typical: if base.is_some() { None } else { Some((0.0, 1)) },
            surge: false,
            watch_until: None,
            seen: true,
            reading: Reading::Gap,
        })
    }

    /// Destinations the kernel should stream samples of: victims, and those
    /// at `watch.fraction` of a threshold (or in such a block), for
    /// `watch.hold` after; at most `watch.max`.
    pub fn watched(&self) -> &BTreeSet<IpAddr> {
        &self.watched
    }

    /// Whether the last poll left a victim over a threshold waiting for
    /// the samples of its fingerprint (the kernel was not sampling it):
    /// [`Self::between_polls`] soon after, once [`Self::watched`] has
    /// streamed them, starts the attack without waiting a whole interval.
    /// Without it the victim waits one poll, as before.
    pub fn samples_awaited(&self) -> bool {
        self.last_poll
            .is_some_and(|last| self.awaiting.values().any(|&since| since == last))
    }

    /// Between two polls: the samples streamed since the last poll (handed
    /// over here instead of to the next poll), and the start of any victim
    /// the last poll left waiting for them ([`Self::samples_awaited`]) that
    /// now has `fingerprint.min_samples`, on the last poll's rates and
    /// confirmation. Counters and rates are only measured by polls; a
    /// victim with too few samples still waits for the next poll.
    pub fn between_polls(&mut self, now: Duration, samples: &[Sample]) -> Vec<Event> {
        let mut events = Vec::new();
        let Some(last) = self.last_poll else {
            return events;
        };
        if now <= last {
            return events;
        }
        self.note_rates(samples);
        self.take_samples(now, samples);
        let due: Vec<IpNet> = self
            .awaiting
            .iter()
            .filter(|&(v, &since)| since == last && !self.attacks.contains_key(v))
            .map(|(v, _)| *v)
            .collect();
        for victim in due {
            let (signals, thresholds, group, scope) = if is_host(victim) {
                let Some(h) = self.hosts.get(&victim.network()) else {
                    continue;
                };
                (
                    h.meter.signals(),
                    *h.thresholds(&self.groups),
                    h.group,
                    Scope::Host,
                )
            } else {
                let Some(b) = self.blocks.get(&victim) else {
                    continue;
                };
                let Some(t) = self.groups[b.group].aggregate else {
                    continue;
                };
                (b.meter.signals(), t, b.group, Scope::Aggregate)
            };
            self.decide(
                victim,
                scope,
                group,
                &signals,
                &thresholds,
                now,
                true,
                &mut events,
            );
        }
        events
    }

    /// The detector's counters.
    pub fn stats(&self) -> DetectorStats {
        DetectorStats {
            destinations: self.hosts.len() as u64,
            blocks: self.blocks.len() as u64,
            watched: self.watched.len() as u64,
            attacks: self.attacks.len() as u64,
            ..self.stats
        }
    }

    /// The attacks in progress, by victim.
    pub fn attacks(&self) -> Vec<Attack> {
        self.attacks.values().map(|a| a.attack.clone()).collect()
    }

    /// What the detector knows of `ip`; `None` outside the own networks or
    /// when it is not in the counters.
    pub fn destination(&self, ip: IpAddr) -> Option<DestinationView> {
        let h = self.hosts.get(&ip.to_canonical())?;
        let t = self.host_thresholds(h);
        let by_class = |f: &dyn Fn(TrafficClass) -> Option<f64>| {
            TrafficClass::ALL
                .iter()
                .filter_map(|&c| f(c).map(|v| (c, v)))
                .collect::<BTreeMap<_, _>>()
        };
        Some(DestinationView {
            ip,
            host_group: self.groups[h.group].name.clone(),
            pps: by_class(&|c| Some(h.meter.smoothed(c, Metric::Pps))),
            bps: by_class(&|c| Some(h.meter.smoothed(c, Metric::Bps))),
            compared_pps: by_class(&|c| Some(h.meter.signal(c, Metric::Pps))),
            compared_bps: by_class(&|c| Some(h.meter.signal(c, Metric::Bps))),
            threshold_pps: by_class(&|c| t[c.index()][Metric::Pps.index()]),
            threshold_bps: by_class(&|c| t[c.index()][Metric::Bps.index()]),
            typical_pps: h.typical.map(|(t, _)| t),
            watched: self.watched.contains(&ip),
        })
    }

    /// Takes one poll: `now` on the caller's monotonic clock, every
    /// destination's cumulative counters, and the samples of watched
    /// destinations since the last poll. The first poll only sets the
    /// baseline of the counters.
    pub fn poll(
        &mut self,
        now: Duration,
        counters: &(impl CounterReading + ?Sized),
        samples: &[Sample],
    ) -> Vec<Event> {
        self.stats.polls += 1;
        let Some(prev) = self.last_poll else {
            for (ip, stats) in counters.in_order() {
                if let Some(h) = self.new_host(ip, Some(stats)) {
                    self.hosts.insert(ip, h);
                }
            }
            self.last_poll = Some(now);
            return Vec::new();
        };
        if now <= prev {
            self.stats.clock_stalls += 1;
            tracing::warn!(
                ?now,
                ?prev,
                "detector poll with a clock that did not advance; ignored"
            );
            return Vec::new();
        }
        self.last_poll = Some(now);
        let secs = (now - prev).as_secs_f64();
        self.interval_secs = secs;
        let alpha = meter::alpha(secs, self.cfg.smoothing.as_secs_f64());

        self.measure_hosts(counters, secs, alpha);
        self.follow_hosts(secs);
        self.note_rates(samples);
        self.take_samples(now, samples);
        self.measure_blocks(alpha, secs);

        let mut events = Vec::new();
        // Only victims, pending ones and hosts above a release level can
        // start, change or end anything.
        let ratio = self.cfg.release.ratio;
        let candidates: Vec<IpAddr> = self
            .hosts
            .iter()
            .filter(|(ip, h)| {
                let net = host_net(**ip);
                self.attacks.contains_key(&net)
                    || self.pending.contains(&net)
                    || reaches(&h.meter, h.thresholds(&self.groups), ratio)
            })
            .map(|(ip, _)| *ip)
            .collect();
        for ip in candidates {
            let h = &self.hosts[&ip];
            let thresholds = *h.thresholds(&self.groups);
            let signals = h.meter.signals();
            let group = h.group;
            self.decide(
                host_net(ip),
                Scope::Host,
                group,
                &signals,
                &thresholds,
                now,
                false,
                &mut events,
            );
        }
        let blocks: Vec<IpNet> = self.blocks.keys().copied().collect();
        for net in blocks {
            let b = &self.blocks[&net];
            let Some(thresholds) = self.groups[b.group].aggregate else {
                continue;
            };
            let signals = b.meter.signals();
            let group = b.group;
            self.decide(
                net,
                Scope::Aggregate,
                group,
                &signals,
                &thresholds,
                now,
                false,
                &mut events,
            );
        }
        let pending = &self.pending;
        self.awaiting.retain(|v, _| pending.contains(v));
        self.unlike_since.retain(|v, _| pending.contains(v));
        self.settle(now);
        self.forget_idle(now);
        self.forget_histories();
        events
    }

    /// Destinations whose compared rate reaches `fraction` of a threshold
    /// in force, with the rates of their last measured interval: what a
    /// cluster summary carries ([`crate::cluster`]).
    pub fn near_threshold(&self, fraction: f64) -> impl Iterator<Item = (IpAddr, Table)> + '_ {
        self.hosts
            .iter()
            .filter(move |(_, h)| reaches(&h.meter, h.thresholds(&self.groups), fraction))
            .map(|(ip, h)| (*ip, *h.meter.raw()))
    }

    /// Per aggregate block, the summed last-interval rates of its hosts
    /// that [`Self::near_threshold`] leaves out (below `fraction` of their
    /// own thresholds), for the blocks where that sum reaches `fraction` of
    /// the block's aggregate thresholds. With the near hosts this is the
    /// whole of what the block received here, split so that nothing is
    /// counted twice: a cluster summary carries both, and the network-wide
    /// view sums the near hosts itself ([`Self::set_outside_blocks`]).
    /// Carpet bombing split over several sensors shows up here and nowhere
    /// else: no host of it comes near its own threshold.
    pub fn block_rest(&self, fraction: f64) -> Vec<(IpNet, Table)> {
        let mut rest: BTreeMap<IpNet, (usize, Table)> = BTreeMap::new();
        for h in self.hosts.values() {
            let Some(net) = h.block else { continue };
            if reaches(&h.meter, h.thresholds(&self.groups), fraction) {
                continue;
            }
            let (_, sum) = rest.entry(net).or_insert((h.group, ZERO));
            for (s, r) in sum.iter_mut().zip(h.meter.raw()) {
                s[0] += r[0];
                s[1] += r[1];
            }
        }
        rest.into_iter()
            .filter(|(_, (group, sum))| {
                self.groups[*group]
                    .aggregate
                    .is_some_and(|t| table_reaches(sum, &t, fraction))
            })
            .map(|(net, (_, sum))| (net, sum))
            .collect()
    }

    /// Replacing `old` (a reload): attack ids go on from where `old`'s
    /// stopped, so an id never names two attacks in the mitigator (which
    /// may still hold `old`'s attacks' rules).
    pub fn continue_ids(&mut self, old: &Detector) {
        self.next_id = self.next_id.max(old.next_id);
    }

    /// Block sums measured elsewhere (every cluster member's
    /// [`Self::block_rest`], summed), added to the block sums of this
    /// detector's own hosts from the next poll on, until replaced. Blocks
    /// outside the own networks or in a group without aggregate
    /// thresholds are ignored.
    pub fn set_outside_blocks(&mut self, blocks: BTreeMap<IpNet, Table>) {
        self.outside_blocks = blocks;
    }

    /// A host's thresholds in force (see [`baseline::thresholds_of`]).
    /// Samples in a host's normal profile.
    #[cfg(test)]
    pub(super) fn normal_samples(&self, ip: IpAddr) -> usize {
        self.samples.get(&ip).map_or(0, |s| s.normal().count())
    }

    pub(super) fn host_thresholds(&self, h: &Host) -> LimitTable {
        *h.thresholds(&self.groups)
    }
}

fn host_net(ip: IpAddr) -> IpNet {
    IpNet::from(ip)
}

fn is_host(net: IpNet) -> bool {
    net.prefix_len() == net.max_prefix_len()
}
