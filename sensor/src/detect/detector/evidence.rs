//! Evidence: the samples and counters of a victim, and the class and
//! fingerprint drawn from them.

use std::{collections::BTreeSet, net::IpAddr, time::Duration};

use edge_sensor_common::proto::{ipproto, tcp_flags};
use ipnet::IpNet;

use super::{Detector, is_host};
use crate::detect::{
    AttackClass, Basis, Fingerprint, FlowMatch, FragmentMatch, Metric, NormalBasis, Sample,
    TcpFlagsMatch, TrafficClass,
    classify::{self, Evidence},
    fingerprint,
    meter::{Table, ZERO},
};

impl Detector {
    pub(super) fn classify(
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

    pub(super) fn fingerprint(
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

    /// How much of the victim's traffic `fp`'s match covers now, on the
    /// basis it was learnt on: the samples' evidence, or, for a match from
    /// counters (no samples: a network-wide view, a victim not sampled),
    /// the class mix of `rates`. Measured on samples that are not there, a
    /// counters match covered 0 % from its second poll on, and a sensor
    /// taking such an attack over (the cluster's heir) refused its rule as
    /// too coarse.
    pub(super) fn covers_on_basis(
        &self,
        victim: IpNet,
        fp: &Fingerprint,
        rates: &Table,
        latest: Option<Duration>,
    ) -> f64 {
        match fp.basis {
            Basis::Counters => class_share(&fp.flow, rates).map_or(0.0, |(s, _)| s),
            Basis::Samples => self.covers(victim, &fp.flow, latest),
        }
    }

    /// [`fingerprint::Fit::covers`] of `flow` on the victim's current
    /// evidence.
    pub(super) fn covers(&self, victim: IpNet, flow: &FlowMatch, latest: Option<Duration>) -> f64 {
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
    pub(super) fn evidence(&self, victim: IpNet, latest: Option<Duration>) -> Vec<&Sample> {
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
    pub(super) fn raw(&self, victim: IpNet) -> Table {
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
    pub(super) fn background(&self, victim: IpNet) -> f64 {
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
    pub(super) fn excess(&self, victim: IpNet, signals: &Table) -> Table {
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
    pub(super) fn hosts_of(&self, victim: IpNet) -> impl Iterator<Item = IpAddr> + '_ {
        self.samples
            .range(victim.network()..=victim.broadcast())
            .map(|(ip, _)| *ip)
    }

    pub(super) fn recent(&self, victim: IpNet) -> Vec<&Sample> {
        thin(
            self.samples
                .range(victim.network()..=victim.broadcast())
                .flat_map(|(_, s)| s.recent())
                .collect(),
        )
    }

    pub(super) fn normal(&self, victim: IpNet) -> Vec<&Sample> {
        thin(
            self.samples
                .range(victim.network()..=victim.broadcast())
                .flat_map(|(_, s)| s.normal())
                .collect(),
        )
    }

    pub(super) fn clear_recent(&mut self, victim: IpNet) {
        let ips: Vec<IpAddr> = self.hosts_of(victim).collect();
        for ip in ips {
            if let Some(s) = self.samples.get_mut(&ip) {
                s.clear_recent();
            }
        }
    }

    pub(super) fn quiet(&self, victim: IpNet) -> Table {
        if is_host(victim) {
            self.hosts.get(&victim.network()).map_or(ZERO, |h| h.quiet)
        } else {
            self.blocks.get(&victim).map_or(ZERO, |b| b.quiet)
        }
    }

    pub(super) fn was_watched(&self, victim: IpNet) -> bool {
        self.watched
            .range(victim.network()..=victim.broadcast())
            .next()
            .is_some()
    }
}

/// How far above its typical rate a destination's normal traffic is assumed
/// to go when estimating the background of an attack (normal wobble).
const BACKGROUND_SLACK: f64 = 1.25;

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
