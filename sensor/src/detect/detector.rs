//! The engine: per-destination state, decisions, and what to sample next.
//! See the module documentation of [`super`].

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::Duration,
};

use edge_sensor_common::proto::{ipproto, tcp_flags};
use ipnet::IpNet;

use super::{
    Attack, AttackClass, Basis, DestinationView, DetectConfig, DetectConfigError, DetectorStats,
    Event, Fingerprint, FlowMatch, FragmentMatch, Metric, NormalBasis, Sample, Scope,
    TcpFlagsMatch, TrafficClass, Trigger,
    classify::{self, Evidence},
    config::{Action, BaselineConfig, DEFAULT_GROUP, LimitTable},
    fingerprint::{self, SampleStore},
    meter::{self, Baseline, Meter, Reading, Table, ZERO},
};

/// A host group with the global settings folded in.
#[derive(Debug, Clone)]
struct Group {
    name: String,
    action: Action,
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
    /// Host group prefixes, most specific first, with their group index.
    group_prefixes: Vec<(IpNet, usize)>,
    own: Vec<IpNet>,
    last_poll: Option<Duration>,
    pub(super) hosts: BTreeMap<IpAddr, Host>,
    blocks: BTreeMap<IpNet, Block>,
    samples: BTreeMap<IpAddr, SampleStore>,
    attacks: BTreeMap<IpNet, Active>,
    /// Victims over a threshold whose start waits one poll for samples.
    pending: BTreeSet<IpNet>,
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
        let mut group_prefixes = Vec::new();
        for g in &cfg.host_groups {
            let aggregate = g.aggregate.over(&global_aggregate);
            for p in &g.prefixes {
                group_prefixes.push((*p, groups.len()));
            }
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
        group_prefixes.sort_by(|a, b| b.0.prefix_len().cmp(&a.0.prefix_len()).then(a.0.cmp(&b.0)));
        let mut own = cfg.own_networks.clone();
        own.sort_by(|a, b| b.prefix_len().cmp(&a.prefix_len()).then(a.cmp(b)));
        Ok(Self {
            cfg,
            groups,
            group_prefixes,
            own,
            last_poll: None,
            hosts: BTreeMap::new(),
            blocks: BTreeMap::new(),
            samples: BTreeMap::new(),
            attacks: BTreeMap::new(),
            pending: BTreeSet::new(),
            watched: BTreeSet::new(),
            next_id: 1,
            stats: DetectorStats::default(),
        })
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
        counters: &BTreeMap<IpAddr, edge_sensor_common::DstStats>,
        samples: &[Sample],
    ) -> Vec<Event> {
        self.stats.polls += 1;
        let Some(prev) = self.last_poll else {
            for (ip, stats) in counters {
                if let Some(h) = self.new_host(*ip, Some(stats)) {
                    self.hosts.insert(*ip, h);
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
        let alpha = meter::alpha(secs, self.cfg.smoothing.as_secs_f64());

        self.measure_hosts(counters, secs, alpha);
        self.follow_hosts(secs);
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
                &mut events,
            );
        }
        self.settle(now);
        self.forget_idle(now);
        events
    }

    fn measure_hosts(
        &mut self,
        counters: &BTreeMap<IpAddr, edge_sensor_common::DstStats>,
        secs: f64,
        alpha: f64,
    ) {
        // Both maps are ordered by address: walk them side by side.
        let mut appeared = Vec::new();
        let mut gaps = 0;
        let mut hosts = self.hosts.iter_mut().peekable();
        for (ip, stats) in counters {
            while let Some((_, h)) = hosts.next_if(|(known, _)| *known < ip) {
                h.seen = false;
                h.reading = h.meter.observe(None, secs, alpha);
            }
            match hosts.next_if(|(known, _)| *known == ip) {
                Some((_, h)) => {
                    h.seen = true;
                    h.reading = h.meter.observe(Some(stats), secs, alpha);
                    gaps += u64::from(h.reading == Reading::Gap);
                }
                None => appeared.push((*ip, stats)),
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

    fn take_samples(&mut self, now: Duration, samples: &[Sample]) {
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

    /// A host's thresholds in force (see [`thresholds_of`]).
    pub(super) fn host_thresholds(&self, h: &Host) -> LimitTable {
        *h.thresholds(&self.groups)
    }

    /// Per host, once a poll: follows the typical rate and flags surges,
    /// teaches the baseline what is normal, and sets the thresholds.
    fn follow_hosts(&mut self, secs: f64) {
        let typical_alpha = meter::alpha(secs, TYPICAL_WINDOW.as_secs_f64());
        let Self {
            hosts,
            groups,
            attacks,
            pending,
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
                let over = !below(&h.meter.signals(), &thr) || !below(&raw, &thr);
                h.surge =
                    track_typical(&mut h.typical, raw[0][0], calm, typical_alpha) || over || !calm;
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

    fn measure_blocks(&mut self, alpha: f64, secs: f64) {
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
            let b = self.blocks.entry(net).or_insert_with(|| Block {
                group: h.group,
                meter: Meter::new(None),
                quiet: ZERO,
                typical: Some((0.0, 1)),
                surge: false,
                sum: ZERO,
                hosts: 0,
            });
            b.hosts += 1;
            for (s, r) in b.sum.iter_mut().zip(h.meter.raw()) {
                s[0] += r[0];
                s[1] += r[1];
            }
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
            b.surge =
                track_typical(&mut b.typical, sum[0][0], calm, typical_alpha) || over || !calm;
        }
    }

    /// Starts, updates or ends the attack on one victim.
    #[allow(clippy::too_many_arguments)]
    fn decide(
        &mut self,
        victim: IpNet,
        scope: Scope,
        group: usize,
        signals: &Table,
        thresholds: &LimitTable,
        now: Duration,
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

        let start = if is_over {
            // Wait one poll for samples if the kernel was not sampling the
            // victim yet; the decision stays within two polls.
            self.pending.contains(&victim)
                || self.was_watched(victim)
                || self.recent(victim).len() >= self.cfg.fingerprint.min_samples as usize
        } else {
            self.pending.contains(&victim) && is_active
        };
        if !start {
            if is_over {
                self.pending.insert(victim);
            } else {
                self.pending.remove(&victim);
            }
            return;
        }
        self.pending.remove(&victim);
        let crossed = if is_over { over } else { active };
        let trigger = trigger.unwrap_or_else(|| strongest(signals, thresholds, &active));
        let class = self.classify(victim, signals, &crossed, None);
        let quiet = self.quiet(victim);
        let fingerprint = self.fingerprint(victim, class, signals, &quiet, None);
        if scope == Scope::Host && self.flash_crowd(victim, &fingerprint, signals, &crossed) {
            self.stats.flash_crowd_polls += 1;
            tracing::debug!(victim = %victim, fingerprint = %fingerprint, "surge shaped like normal traffic: flash crowd, not reported");
            return;
        }
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
    fn revise(
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
                self.covers(victim, &a.attack.fingerprint.flow, None);
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
            a.attack.fingerprint.covers_attack = covers;
        }
    }

    /// Whether a host's crossing is a flash crowd: its group has a learnt
    /// baseline, every crossed threshold is adaptive and below its ceiling,
    /// and the best match for the surge would hit most of the host's
    /// measured normal traffic.
    fn flash_crowd(
        &self,
        victim: IpNet,
        fp: &Fingerprint,
        signals: &Table,
        crossed: &[[bool; 2]; 7],
    ) -> bool {
        let Some(h) = self.hosts.get(&victim.network()) else {
            return false;
        };
        let (Some(bc), Some(a)) = (&self.groups[h.group].baseline, &h.adaptive) else {
            return false;
        };
        if bc.flash_crowd_similarity <= 0.0
            || a.baseline.learnt_secs() < bc.window.as_secs_f64()
            || fp.normal_basis != NormalBasis::Samples
            || fp.hits_normal < bc.flash_crowd_similarity
        {
            return false;
        }
        TrafficClass::ALL.iter().all(|&c| {
            Metric::BOTH.iter().all(|&m| {
                let (i, j) = (c.index(), m.index());
                !crossed[i][j]
                    || (bc.floor.limit(c).get(m).is_some()
                        && bc
                            .ceiling
                            .limit(c)
                            .get(m)
                            .is_none_or(|ceil| signals[i][j] < ceil))
            })
        })
    }

    fn classify(
        &self,
        victim: IpNet,
        signals: &Table,
        crossed: &[[bool; 2]; 7],
        latest: Option<Duration>,
    ) -> AttackClass {
        let evidence = self.evidence(victim, latest);
        let normal = self.normal(victim);
        let known_normal = normal.len() >= self.cfg.fingerprint.min_samples as usize;
        let excess = self.excess(victim, signals);
        classify::classify(&Evidence {
            crossed: *crossed,
            signals: &excess,
            samples: &evidence,
            normal: known_normal.then_some(normal.as_slice()),
            background: self.background(victim),
            min_samples: self.cfg.fingerprint.min_samples as usize,
            dominant_share: self.cfg.fingerprint.dominant_share,
            amplification_ports: &self.cfg.amplification_ports,
        })
    }

    fn fingerprint(
        &self,
        victim: IpNet,
        class: AttackClass,
        signals: &Table,
        quiet: &Table,
        latest: Option<Duration>,
    ) -> Fingerprint {
        let f = &self.cfg.fingerprint;
        let evidence = self.evidence(victim, latest);
        let normal = self.normal(victim);
        let known_normal = normal.len() >= f.min_samples as usize;
        let hits = |flow: &FlowMatch| {
            if known_normal {
                (
                    fingerprint::share(flow, &normal).unwrap_or(0.0),
                    NormalBasis::Samples,
                )
            } else {
                class_share(flow, quiet).unwrap_or((0.0, NormalBasis::NoTraffic))
            }
        };
        if evidence.len() >= f.min_samples as usize {
            let fit = fingerprint::Fit {
                evidence: &evidence,
                normal: known_normal.then_some(normal.as_slice()),
                background: self.background(victim),
            };
            let flow = fingerprint::learn(victim, &fit, f.coverage);
            let (hits_normal, normal_basis) = hits(&flow);
            Fingerprint {
                covers_attack: fit.covers(&flow),
                flow,
                hits_normal,
                basis: Basis::Samples,
                normal_basis,
                samples: evidence.len() as u32,
            }
        } else {
            let flow = match_of_class(victim, class);
            let covers_attack = class_share(&flow, signals).map_or(0.0, |(s, _)| s);
            let (hits_normal, normal_basis) = hits(&flow);
            Fingerprint {
                flow,
                covers_attack,
                hits_normal,
                basis: Basis::Counters,
                normal_basis,
                samples: evidence.len() as u32,
            }
        }
    }

    /// [`fingerprint::Fit::covers`] of `flow` on the victim's current
    /// evidence.
    fn covers(&self, victim: IpNet, flow: &FlowMatch, latest: Option<Duration>) -> f64 {
        let evidence = self.evidence(victim, latest);
        let normal = self.normal(victim);
        let known_normal = normal.len() >= self.cfg.fingerprint.min_samples as usize;
        fingerprint::Fit {
            evidence: &evidence,
            normal: known_normal.then_some(normal.as_slice()),
            background: self.background(victim),
        }
        .covers(flow)
    }

    /// The samples that show the attack: those of the poll at `latest`
    /// when given and enough; else those that arrived in a surge within
    /// the window; else all recent ones (an attack older than the history).
    fn evidence(&self, victim: IpNet, latest: Option<Duration>) -> Vec<&Sample> {
        let min = self.cfg.fingerprint.min_samples as usize;
        let stores = || self.samples.range(victim.network()..=victim.broadcast());
        if let Some(t) = latest {
            let fresh = thin(stores().flat_map(|(_, s)| s.surge(t)).collect());
            if fresh.len() >= min {
                return fresh;
            }
        }
        let surge = thin(
            stores()
                .flat_map(|(_, s)| s.surge(Duration::ZERO))
                .collect(),
        );
        if surge.len() >= min {
            surge
        } else {
            self.recent(victim)
        }
    }

    /// The victim's rates of the last measured interval.
    fn raw(&self, victim: IpNet) -> Table {
        if is_host(victim) {
            self.hosts
                .get(&victim.network())
                .map_or(ZERO, |h| *h.meter.raw())
        } else {
            self.blocks.get(&victim).map_or(ZERO, |b| *b.meter.raw())
        }
    }

    /// Estimated share of the victim's current traffic that is its normal
    /// traffic: the typical rate (at most [`BACKGROUND_SLACK`] times it),
    /// bounded by what each class now carries given the normal class mix
    /// (an attack adds to classes; normal UDP cannot exceed the UDP seen).
    fn background(&self, victim: IpNet) -> f64 {
        let (typical, meter, quiet) = if is_host(victim) {
            match self.hosts.get(&victim.network()) {
                Some(h) => (h.typical, &h.meter, &h.quiet),
                None => return 0.0,
            }
        } else {
            match self.blocks.get(&victim) {
                Some(b) => (b.typical, &b.meter, &b.quiet),
                None => return 0.0,
            }
        };
        let now = meter.raw()[0][0];
        let Some((typical, _)) = typical else {
            return 0.0;
        };
        if now <= 0.0 {
            return 0.0;
        }
        let mut normal = BACKGROUND_SLACK * typical;
        let quiet_all = quiet[0][0];
        if quiet_all > 0.0 {
            for c in [
                TrafficClass::Tcp,
                TrafficClass::TcpSyn,
                TrafficClass::Udp,
                TrafficClass::Icmp,
                TrafficClass::Fragment,
                TrafficClass::Other,
            ] {
                let q = quiet[c.index()][0] / quiet_all;
                if q >= 0.05 {
                    normal = normal.min(meter.raw()[c.index()][0] / q);
                }
            }
        }
        (normal / now).clamp(0.0, 0.9)
    }

    /// The victim's rates less its estimated normal traffic, spread over
    /// the classes as normally: what the attack itself carries.
    fn excess(&self, victim: IpNet, signals: &Table) -> Table {
        let bg = self.background(victim);
        let quiet = self.quiet(victim);
        let mut t = *signals;
        for m in 0..2 {
            let all = signals[0][m];
            let quiet_all = quiet[0][m];
            for (c, row) in t.iter_mut().enumerate() {
                let q = if quiet_all > 0.0 {
                    quiet[c][m] / quiet_all
                } else {
                    0.0
                };
                row[m] = (row[m] - bg * all * q).max(0.0);
            }
        }
        t
    }

    /// The hosts of a victim (the host itself, or a block's).
    fn hosts_of(&self, victim: IpNet) -> impl Iterator<Item = IpAddr> + '_ {
        self.samples
            .range(victim.network()..=victim.broadcast())
            .map(|(ip, _)| *ip)
    }

    fn recent(&self, victim: IpNet) -> Vec<&Sample> {
        thin(
            self.samples
                .range(victim.network()..=victim.broadcast())
                .flat_map(|(_, s)| s.recent())
                .collect(),
        )
    }

    fn normal(&self, victim: IpNet) -> Vec<&Sample> {
        thin(
            self.samples
                .range(victim.network()..=victim.broadcast())
                .flat_map(|(_, s)| s.normal())
                .collect(),
        )
    }

    fn clear_recent(&mut self, victim: IpNet) {
        let ips: Vec<IpAddr> = self.hosts_of(victim).collect();
        for ip in ips {
            if let Some(s) = self.samples.get_mut(&ip) {
                s.clear_recent();
            }
        }
    }

    fn quiet(&self, victim: IpNet) -> Table {
        if is_host(victim) {
            self.hosts.get(&victim.network()).map_or(ZERO, |h| h.quiet)
        } else {
            self.blocks.get(&victim).map_or(ZERO, |b| b.quiet)
        }
    }

    fn was_watched(&self, victim: IpNet) -> bool {
        self.watched
            .range(victim.network()..=victim.broadcast())
            .next()
            .is_some()
    }

    /// After the decisions: remembers the normal class mix of intervals
    /// without anomaly (for `hits_normal` without normal samples, and the
    /// background), and chooses the destinations to sample.
    fn settle(&mut self, now: Duration) {
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
            if r >= fraction || victim || in_hot_block.is_some() {
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
    fn forget_idle(&mut self, now: Duration) {
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

/// Time constant of a destination's typical rate.
const TYPICAL_WINDOW: Duration = Duration::from_secs(300);
/// A rate above this multiple of the typical one is a surge: its samples are
/// evidence, not normal traffic.
const SURGE_FACTOR: f64 = 2.0;
/// Polls in a row the evidence must give a narrower match before it
/// replaces a running attack's match.
const REVISE_AFTER: u32 = 3;
/// How far above its typical rate a destination's normal traffic is assumed
/// to go when estimating the background of an attack (normal wobble).
const BACKGROUND_SLACK: f64 = 1.25;

/// Flags `rate` as a surge against `typical`, then learns it if `calm`.
/// Until the average has seen a window's worth of intervals it is the plain
/// mean of those it has (a new destination's history is its idle past, one
/// interval of zero).
fn track_typical(typical: &mut Option<(f64, u32)>, rate: f64, calm: bool, alpha: f64) -> bool {
    // A destination without history was idle: its first traffic is a
    // surge, not its normal mix (a flood starting from nothing must not be
    // learnt as what the destination normally gets).
    let surge = rate > SURGE_FACTOR * typical.map_or(0.0, |(t, _)| t);
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

/// Most samples a fingerprint looks at; a block's hosts together may hold
/// many more, and shares need only a few thousand.
const MAX_EVIDENCE: usize = 16384;

/// Every k-th sample when there are more than [`MAX_EVIDENCE`]
/// (deterministic, keeps the mix).
fn thin(v: Vec<&Sample>) -> Vec<&Sample> {
    if v.len() <= MAX_EVIDENCE {
        return v;
    }
    let step = v.len().div_ceil(MAX_EVIDENCE);
    v.into_iter().step_by(step).collect()
}

fn host_net(ip: IpAddr) -> IpNet {
    IpNet::from(ip)
}

fn is_host(net: IpNet) -> bool {
    net.prefix_len() == net.max_prefix_len()
}

/// A host's thresholds: its group's static ones, or adaptive where the
/// group has a baseline with a floor for that class and metric (static
/// while the baseline is still learning, where there is one).
fn thresholds_of(g: &Group, b: &Baseline) -> LimitTable {
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

/// Whether a compared rate reaches `ratio` times its threshold.
fn reaches(m: &Meter, t: &LimitTable, ratio: f64) -> bool {
    TrafficClass::ALL.iter().any(|&c| {
        Metric::BOTH
            .iter()
            .any(|&x| t[c.index()][x.index()].is_some_and(|t| m.signal(c, x) >= ratio * t))
    })
}

fn below(signals: &Table, t: &LimitTable) -> bool {
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

/// The match a class implies when there are no samples to learn from.
fn match_of_class(victim: IpNet, class: AttackClass) -> FlowMatch {
    let mut m = FlowMatch::any(victim);
    match class {
        AttackClass::TcpSynFlood => {
            m.protocols = vec![ipproto::TCP];
            m.tcp_flags = Some(TcpFlagsMatch {
                value: tcp_flags::SYN,
                mask: tcp_flags::SYN | tcp_flags::ACK,
            });
        }
        AttackClass::TcpFlood => m.protocols = vec![ipproto::TCP],
        AttackClass::UdpFlood => m.protocols = vec![ipproto::UDP],
        AttackClass::UdpAmplification { port } => {
            m.protocols = vec![ipproto::UDP];
            m.source_ports = vec![port];
        }
        AttackClass::IcmpFlood => {
            m.protocols = vec![match victim {
                IpNet::V4(_) => ipproto::ICMP,
                IpNet::V6(_) => ipproto::ICMPV6,
            }]
        }
        AttackClass::IpFragmentation => m.fragment = Some(FragmentMatch::Any),
        AttackClass::IpFlood => {}
    }
    m
}

/// Share of the traffic in `rates` a match can hit, from the class counters:
/// exact for protocol, SYN and fragment parts, an upper bound when the match
/// has more. `None` without traffic.
fn class_share(m: &FlowMatch, rates: &Table) -> Option<(f64, NormalBasis)> {
    let pps = |c: TrafficClass| rates[c.index()][Metric::Pps.index()];
    let all = pps(TrafficClass::All);
    if all <= 0.0 {
        return None;
    }
    let syn = m.tcp_flags.is_some_and(|f| {
        f.value & tcp_flags::SYN != 0
            && f.value & tcp_flags::ACK == 0
            && f.mask & tcp_flags::ACK != 0
    });
    let mut share = if m.protocols.is_empty() {
        all
    } else {
        let mut classes = BTreeSet::new();
        for &p in &m.protocols {
            classes.insert(match edge_sensor_common::Class::of_protocol(p) {
                edge_sensor_common::Class::Tcp if syn => TrafficClass::TcpSyn,
                edge_sensor_common::Class::Tcp => TrafficClass::Tcp,
                edge_sensor_common::Class::Udp => TrafficClass::Udp,
                edge_sensor_common::Class::Icmp => TrafficClass::Icmp,
                _ => TrafficClass::Other,
            });
        }
        classes.into_iter().map(pps).sum()
    };
    if m.fragment.is_some_and(|f| f != FragmentMatch::NotFragment) {
        share = share.min(pps(TrafficClass::Fragment));
    }
    Some(((share / all).clamp(0.0, 1.0), NormalBasis::ClassShares))
}

#[cfg(test)]
mod typical_tests {
    use super::track_typical;

    #[test]
    fn a_destination_s_first_traffic_is_a_surge_then_its_typical_rate() {
        let mut typical = None;
        // First interval: no history (idle), so any traffic is a surge.
        assert!(track_typical(&mut typical, 3_000.0, true, 0.1));
        assert_eq!(typical, Some((3_000.0, 1)));
        // Steady afterwards: not a surge; doubling is.
        assert!(!track_typical(&mut typical, 3_100.0, true, 0.1));
        assert!(track_typical(&mut typical, 9_000.0, true, 0.1));
        // Idle stays idle.
        let mut idle = None;
        assert!(!track_typical(&mut idle, 0.0, true, 0.1));
    }
}
