//! The traffic model: hosts behind routers, their normal traffic, flash
//! crowds and attacks, turned tick by tick into exact packet counts and the
//! packets the routers' samplers pick. No sockets, no clock: time is the
//! tick counter.

use std::{collections::BTreeMap, net::IpAddr};

use serde::{Deserialize, Serialize};

mod traffic;

pub use traffic::remote_addr;
use traffic::{attack_packet, crowd_packet, host_addrs, mean_len, normal_packet, request_packet};

use crate::{
    Error,
    packet::Packet,
    rng::{Alias, Rng, zipf_weights},
    sampler::Sampler,
    scenario::{AttackSpec, FlashCrowdSpec, Scenario},
};

/// What generated a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Normal traffic to host number `.0`.
    Normal(u32),
    /// Flash crowd number `.0` (in the scenario's order).
    FlashCrowd(u32),
    /// Attack number `.0` (in the scenario's order).
    Attack(u32),
}

/// A sampled packet: one flow sample, standing for `rate` packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// When it was sampled, ns after the scenario's start.
    pub time_ns: u64,
    /// Router and interface (index into the router's `interfaces`).
    pub router: u32,
    pub iface: u32,
    pub origin: Origin,
    /// Which packet of its origin's stream it is (0 = the first that origin
    /// sent through this interface).
    pub index: u64,
    pub packet: Packet,
    /// The sampler's 1:N.
    pub rate: u32,
    /// The data source's sample pool when it was taken.
    pub pool: u64,
    /// The data source's drops so far (samples the agent could not export).
    pub drops: u64,
}

/// Exact totals of what was generated (every packet, sampled or not).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generated {
    pub packets: u64,
    /// Samples taken (exported or dropped) and samples dropped by the agent.
    pub samples: u64,
    pub dropped: u64,
}

/// Per interface (sFlow data source): what its counters say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceCounters {
    pub ifindex: u32,
    pub pool: u64,
    pub drops: u64,
    pub in_packets: u64,
    /// Estimated from each stream's mean packet size (only sampled
    /// packets get a size drawn).
    pub in_octets: u64,
}

/// What the model keeps per origin.
#[derive(Debug, Clone, Copy, Default)]
struct OriginState {
    generated: Generated,
    /// Packets sent so far: the next packet's index.
    sent: u64,
    first_ns: Option<u64>,
}

/// The index of origin `o`'s state with `hosts` hosts and `crowds` crowds.
fn slot(hosts: usize, crowds: usize, o: Origin) -> usize {
    match o {
        Origin::Normal(h) => h as usize,
        Origin::FlashCrowd(c) => hosts + c as usize,
        Origin::Attack(a) => hosts + crowds + a as usize,
    }
}

/// A host of the network.
#[derive(Debug, Clone)]
pub struct Host {
    pub addr: IpAddr,
    pub router: u32,
    pub iface: u32,
    /// Mean packets per second at diurnal factor 1.
    pub pps: f64,
    /// A server: its normal traffic is clients' requests
    /// ([`crate::scenario::HostsSpec::servers`]).
    pub server: bool,
}

/// A stream of packets through one interface with its own sampler.
#[derive(Debug, Clone)]
struct Stream {
    router: u32,
    iface: u32,
    sampler: Sampler,
    /// Skips, counts and attributes each from their own generator, so that
    /// the attributes drawn never shift which packets are sampled.
    skip_rng: Rng,
    count_rng: Rng,
    attr_rng: Rng,
    mean_ip_len: f64,
}

/// The traffic kinds, each with a packet mix.
#[derive(Debug, Clone)]
enum Kind {
    /// Normal traffic of the hosts on one interface.
    Normal {
        hosts: Vec<u32>,
    },
    Crowd(u32),
    Attack(u32),
}

#[derive(Debug, Clone)]
struct Component {
    kind: Kind,
    stream: Stream,
}

/// The model in motion.
#[derive(Debug, Clone)]
pub struct Model {
    scenario: Scenario,
    hosts: Vec<Host>,
    components: Vec<Component>,
    /// Normal sources (Zipf-weighted) and each crowd's and attack's.
    normal_sources: Alias,
    seed: u64,
    tick: u64,
    ticks: u64,
    /// Router index -> per interface counters.
    counters: Vec<Vec<SourceCounters>>,
    /// Per router: the current second and samples exported in it.
    budget: Vec<(u64, u32)>,
    /// Per origin (see [`Model::slot`]): totals, packets sent (the next
    /// packet's index) and the first packet's time. Vectors, not maps: the
    /// day-long runs touch every host every tick.
    origins: Vec<OriginState>,
    /// Per host: totals of everything sent to it.
    per_host: Vec<Generated>,
    /// Each host's burst factor and the burst period it was drawn for.
    burst: Vec<f64>,
    burst_period: Option<u64>,
    /// The host each flash crowd and attack targets.
    crowd_host: Vec<u32>,
    attack_host: Vec<u32>,
}

/// One tick's output.
#[derive(Debug, Clone, Default)]
pub struct Tick {
    pub start_ns: u64,
    pub end_ns: u64,
    /// Samples the agents export, in time order.
    pub samples: Vec<Sample>,
}

/// Stream ids for [`Rng::new`]: one range per use.
const STREAM_NORMAL: u64 = 1 << 32;
const STREAM_CROWD: u64 = 2 << 32;
const STREAM_ATTACK: u64 = 3 << 32;
const STREAM_HOSTS: u64 = 4 << 32;
const STREAM_BURST: u64 = 5 << 32;
const STREAM_SERVERS: u64 = 6 << 32;

impl Model {
    pub fn new(scenario: &Scenario) -> Result<Self, Error> {
        scenario.check()?;
        let s = scenario;
        let seed = s.seed;
        let addrs = host_addrs(&s.hosts.prefix, s.hosts.count)?;
        // Pareto(alpha, 1) weights by inversion, scaled to total_pps.
        let mut rng = Rng::new(seed, STREAM_HOSTS);
        let weights: Vec<f64> = (0..s.hosts.count)
            .map(|_| rng.f64_open0().powf(-1.0 / s.hosts.pareto_alpha))
            .collect();
        let total: f64 = weights.iter().sum();
        let nr = s.routers.len() as u32;
        let hosts: Vec<Host> = addrs
            .iter()
            .zip(&weights)
            .enumerate()
            .map(|(i, (&addr, w))| {
                let i = i as u32;
                let router = i % nr;
                let nif = s.routers[router as usize].interfaces.len() as u32;
                Host {
                    addr,
                    router,
                    iface: (i / nr) % nif,
                    pps: s.hosts.total_pps * w / total,
                    server: i < s.hosts.servers,
                }
            })
            .collect();
        let host_of = |ip: IpAddr, what: &str| -> Result<u32, Error> {
            hosts
                .iter()
                .position(|h| h.addr == ip)
                .map(|i| i as u32)
                .ok_or_else(|| {
                    Error::Invalid(format!("{what}: target {ip} is not one of the hosts"))
                })
        };
        let like = addrs[0];
        let normal_len = mean_len(|r| normal_packet(r, like, like));
        let request_len = mean_len(|r| request_packet(r, like, like));
        let stream = |router: u32, iface: u32, key: u64, mean_ip_len: f64| {
            let spec = &s.routers[router as usize];
            let mut skip_rng = Rng::new(seed, key);
            Stream {
                router,
                iface,
                sampler: Sampler::new(spec.sampling_rate, spec.skip, &mut skip_rng),
                skip_rng,
                count_rng: Rng::new(seed, key + 1),
                attr_rng: Rng::new(seed, key + 2),
                mean_ip_len,
            }
        };
        let mut components = Vec::new();
        for (r, spec) in s.routers.iter().enumerate() {
            for i in 0..spec.interfaces.len() {
                // Clients and servers apart: each stream's mean packet
                // length (for the interface counters) is its own mix's.
                for (server, base, len) in [
                    (false, STREAM_NORMAL, normal_len),
                    (true, STREAM_SERVERS, request_len),
                ] {
                    let on: Vec<u32> = hosts
                        .iter()
                        .enumerate()
                        .filter(|(_, h)| {
                            h.router == r as u32 && h.iface == i as u32 && h.server == server
                        })
                        .map(|(k, _)| k as u32)
                        .collect();
                    if on.is_empty() && server {
                        continue;
                    }
                    let key = base + ((r as u64) << 16 | i as u64) * 8;
                    components.push(Component {
                        kind: Kind::Normal { hosts: on },
                        stream: stream(r as u32, i as u32, key, len),
                    });
                }
            }
        }
        let (mut crowd_host, mut attack_host) = (Vec::new(), Vec::new());
        for (c, crowd) in s.flash_crowds.iter().enumerate() {
            let hi = host_of(crowd.target, &format!("flash crowd {}", crowd.id))?;
            crowd_host.push(hi);
            let h = &hosts[hi as usize];
            let port = crowd.dst_port;
            let len = mean_len(|r| crowd_packet(r, crowd.target, crowd.target, port));
            components.push(Component {
                kind: Kind::Crowd(c as u32),
                stream: stream(h.router, h.iface, STREAM_CROWD + c as u64 * 8, len),
            });
        }
        for (a, attack) in s.attacks.iter().enumerate() {
            let hi = host_of(attack.target, &format!("attack {}", attack.id))?;
            attack_host.push(hi);
            let h = &hosts[hi as usize];
            components.push(Component {
                kind: Kind::Attack(a as u32),
                stream: stream(
                    h.router,
                    h.iface,
                    STREAM_ATTACK + a as u64 * 8,
                    f64::from(attack.packet_size()),
                ),
            });
        }
        let counters = s
            .routers
            .iter()
            .map(|r| {
                r.interfaces
                    .iter()
                    .map(|&ifindex| SourceCounters {
                        ifindex,
                        ..SourceCounters::default()
                    })
                    .collect()
            })
            .collect();
        let ticks = ((s.duration_s * 1000.0) / s.tick_ms as f64).ceil() as u64;
        Ok(Self {
            normal_sources: Alias::new(&zipf_weights(
                s.hosts.sources.max(1) as usize,
                s.hosts.source_zipf,
            )),
            scenario: s.clone(),
            hosts,
            components,
            seed,
            tick: 0,
            ticks,
            counters,
            budget: vec![(0, 0); s.routers.len()],
            origins: vec![
                OriginState::default();
                s.hosts.count as usize + s.flash_crowds.len() + s.attacks.len()
            ],
            per_host: vec![Generated::default(); s.hosts.count as usize],
            burst: vec![1.0; s.hosts.count as usize],
            burst_period: None,
            crowd_host,
            attack_host,
        })
    }

    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    pub fn tick_ns(&self) -> u64 {
        self.scenario.tick_ms * 1_000_000
    }

    /// The diurnal rate factor at `t_ns`.
    pub fn diurnal(&self, t_ns: u64) -> f64 {
        let h = &self.scenario.hosts;
        let secs = self.scenario.start_unix_s as f64 + t_ns as f64 / 1e9;
        let hour = (secs / 3600.0).rem_euclid(24.0);
        1.0 + h.diurnal_amplitude
            * (std::f64::consts::TAU * (hour - h.diurnal_peak_hour) / 24.0).cos()
    }

    /// Draws the hosts' burst factors for the period holding `t_ns` (a
    /// stream per period, so any period can be recomputed alone).
    fn refresh_burst(&mut self, t_ns: u64) {
        let sigma = self.scenario.hosts.burstiness;
        if sigma == 0.0 {
            return;
        }
        let period = (t_ns as f64 / 1e9 / self.scenario.hosts.burst_period_s) as u64;
        if self.burst_period == Some(period) {
            return;
        }
        let mut rng = Rng::new(self.seed, STREAM_BURST + period);
        for f in &mut self.burst {
            // Log-normal with mean 1: exp(σZ - σ²/2).
            *f = (sigma * rng.normal() - sigma * sigma / 2.0).exp();
        }
        self.burst_period = Some(period);
    }

    /// The hosts' mean rate of normal traffic at `t_ns` (pps): diurnal
    /// factor and bursts included.
    pub fn normal_pps(&mut self, t_ns: u64) -> f64 {
        self.refresh_burst(t_ns);
        let d = self.diurnal(t_ns);
        self.hosts
            .iter()
            .zip(&self.burst)
            .map(|(h, b)| h.pps * b * d)
            .sum()
    }

    /// A flash crowd's rate at `t_s`: ramps at both ends.
    fn crowd_pps(c: &FlashCrowdSpec, t_s: f64) -> f64 {
        let (from, to) = (c.start_s, c.start_s + c.duration_s);
        if t_s < from || t_s >= to {
            return 0.0;
        }
        let edge = (t_s - from).min(to - t_s);
        let f = if c.ramp_s > 0.0 {
            (edge / c.ramp_s).min(1.0)
        } else {
            1.0
        };
        c.pps * f
    }

    /// An attack's rate at `t_s`: ramps up, stops at once.
    pub fn attack_pps(a: &AttackSpec, t_s: f64) -> f64 {
        if t_s < a.start_s || t_s >= a.start_s + a.duration_s {
            return 0.0;
        }
        let f = if a.ramp_s > 0.0 {
            ((t_s - a.start_s) / a.ramp_s).min(1.0)
        } else {
            1.0
        };
        a.peak_pps().unwrap_or(0.0) * f
    }

    /// The index of an origin's state: hosts, then crowds, then attacks.
    fn slot(&self, o: Origin) -> usize {
        slot(self.hosts.len(), self.crowd_host.len(), o)
    }

    fn origin_at(&self, i: usize) -> Origin {
        let (h, c) = (self.hosts.len(), self.crowd_host.len());
        if i < h {
            Origin::Normal(i as u32)
        } else if i < h + c {
            Origin::FlashCrowd((i - h) as u32)
        } else {
            Origin::Attack((i - h - c) as u32)
        }
    }

    /// Exact generated totals of every origin that sent something.
    pub fn generated(&self) -> BTreeMap<Origin, Generated> {
        self.origins
            .iter()
            .enumerate()
            .filter(|(_, o)| o.generated.packets != 0)
            .map(|(i, o)| (self.origin_at(i), o.generated))
            .collect()
    }

    /// Exact generated totals of one origin.
    pub fn generated_by(&self, o: Origin) -> Generated {
        self.origins[self.slot(o)].generated
    }

    /// Exact generated totals of every destination that got something.
    pub fn per_destination(&self) -> BTreeMap<IpAddr, Generated> {
        self.per_host
            .iter()
            .zip(&self.hosts)
            .filter(|(g, _)| g.packets != 0)
            .map(|(g, h)| (h.addr, *g))
            .collect()
    }

    /// When an origin's first packet was generated (ns; the start of its
    /// tick); `None` if it sent none yet.
    pub fn first_packet_ns(&self, o: Origin) -> Option<u64> {
        self.origins[self.slot(o)].first_ns
    }

    /// The interface counters of router `r`, as of the last tick.
    pub fn counters(&self, r: usize) -> &[SourceCounters] {
        &self.counters[r]
    }

    /// The host an origin sends to.
    fn dst_host(&self, o: Origin) -> usize {
        match o {
            Origin::Normal(h) => h as usize,
            Origin::FlashCrowd(c) => self.crowd_host[c as usize] as usize,
            Origin::Attack(a) => self.attack_host[a as usize] as usize,
        }
    }

    /// The destination address of an origin.
    pub fn destination(&self, o: Origin) -> IpAddr {
        match o {
            Origin::Normal(h) => self.hosts[h as usize].addr,
            Origin::FlashCrowd(c) => self.scenario.flash_crowds[c as usize].target,
            Origin::Attack(a) => self.scenario.attacks[a as usize].target,
        }
    }

    /// A name for an origin: "host:ADDR", or the crowd's or attack's id.
    pub fn origin_name(&self, o: Origin) -> String {
        match o {
            Origin::Normal(h) => format!("host:{}", self.hosts[h as usize].addr),
            Origin::FlashCrowd(c) => self.scenario.flash_crowds[c as usize].id.clone(),
            Origin::Attack(a) => self.scenario.attacks[a as usize].id.clone(),
        }
    }

    /// Simulated time reached: the end of the last tick played (ns).
    pub fn now_ns(&self) -> u64 {
        self.tick * self.tick_ns()
    }

    pub fn is_done(&self) -> bool {
        self.tick >= self.ticks
    }

    /// Advances one tick; `None` once the scenario is over.
    pub fn step(&mut self) -> Option<Tick> {
        if self.is_done() {
            return None;
        }
        let dt = self.tick_ns();
        let start = self.tick * dt;
        let end = start + dt;
        let mid_s = (start + dt / 2) as f64 / 1e9;
        let dt_s = dt as f64 / 1e9;
        let diurnal = self.diurnal(start + dt / 2);
        self.refresh_burst(start + dt / 2);
        let burst = &self.burst;
        let mut samples = Vec::new();
        let scenario = &self.scenario;
        let hosts = &self.hosts;
        let normal_sources = &self.normal_sources;
        let seed = self.seed;
        let (n_hosts, n_crowds) = (self.hosts.len(), self.crowd_host.len());
        let (crowd_host, attack_host) = (&self.crowd_host, &self.attack_host);
        let origins = &mut self.origins;
        let per_host = &mut self.per_host;
        // First every origin's packets this tick (in a fixed order), so
        // that each interface's pool can be spread over the whole tick.
        let mut all_counts: Vec<Vec<(Origin, u64)>> = Vec::with_capacity(self.components.len());
        let mut tick_totals: Vec<Vec<u64>> =
            self.counters.iter().map(|c| vec![0; c.len()]).collect();
        for comp in &mut self.components {
            let mut counts: Vec<(Origin, u64)> = Vec::new();
            let st = &mut comp.stream;
            match &comp.kind {
                Kind::Normal { hosts: on } => {
                    for &h in on {
                        let mean = hosts[h as usize].pps * burst[h as usize] * diurnal * dt_s;
                        let n = st.count_rng.poisson(mean);
                        if n > 0 {
                            counts.push((Origin::Normal(h), n));
                        }
                    }
                }
                Kind::Crowd(c) => {
                    let pps = Self::crowd_pps(&scenario.flash_crowds[*c as usize], mid_s);
                    counts.push((Origin::FlashCrowd(*c), st.count_rng.poisson(pps * dt_s)));
                }
                Kind::Attack(a) => {
                    let pps = Self::attack_pps(&scenario.attacks[*a as usize], mid_s);
                    counts.push((Origin::Attack(*a), st.count_rng.poisson(pps * dt_s)));
                }
            }
            tick_totals[st.router as usize][st.iface as usize] +=
                counts.iter().map(|c| c.1).sum::<u64>();
            all_counts.push(counts);
        }
        let pool_start: Vec<Vec<u64>> = self
            .counters
            .iter()
            .map(|r| r.iter().map(|c| c.pool).collect())
            .collect();
        for (comp, counts) in self.components.iter_mut().zip(all_counts) {
            let st = &mut comp.stream;
            let counters = &mut self.counters[st.router as usize][st.iface as usize];
            let rate = st.sampler.rate();
            let pool_before = pool_start[st.router as usize][st.iface as usize];
            let iface_total = tick_totals[st.router as usize][st.iface as usize];
            let tick_total: u64 = counts.iter().map(|c| c.1).sum();
            for (origin, n) in counts {
                if n == 0 {
                    continue;
                }
                let o = &mut origins[slot(n_hosts, n_crowds, origin)];
                o.first_ns.get_or_insert(start);
                let first_index = o.sent;
                o.sent += n;
                o.generated.packets += n;
                let (dst_host, dst) = match origin {
                    Origin::Normal(h) => (h, hosts[h as usize].addr),
                    Origin::FlashCrowd(c) => (
                        crowd_host[c as usize],
                        scenario.flash_crowds[c as usize].target,
                    ),
                    Origin::Attack(a) => {
                        (attack_host[a as usize], scenario.attacks[a as usize].target)
                    }
                };
                per_host[dst_host as usize].packets += n;
                let mut picked = Vec::new();
                st.sampler.offer(n, &mut st.skip_rng, |i| picked.push(i));
                for i in picked {
                    let r = &mut st.attr_rng;
                    let packet = match origin {
                        Origin::Normal(h) => {
                            let k = normal_sources.draw(r) as u64;
                            let src = remote_addr(seed ^ k.wrapping_mul(0x100_0000_01b3), dst);
                            if hosts[h as usize].server {
                                request_packet(r, src, dst)
                            } else {
                                normal_packet(r, src, dst)
                            }
                        }
                        Origin::FlashCrowd(c) => {
                            let spec = &scenario.flash_crowds[c as usize];
                            let k = r.below(u64::from(spec.sources));
                            let src =
                                remote_addr(seed ^ STREAM_CROWD ^ (u64::from(c) << 40) ^ k, dst);
                            crowd_packet(r, src, dst, spec.dst_port)
                        }
                        Origin::Attack(a) => {
                            let spec = &scenario.attacks[a as usize];
                            let k = r.below(u64::from(spec.sources));
                            let src =
                                remote_addr(seed ^ STREAM_ATTACK ^ (u64::from(a) << 40) ^ k, dst);
                            attack_packet(r, spec, src)
                        }
                    };
                    let time_ns = start + r.below(dt);
                    // The pool as it stood when this packet passed, with the
                    // tick's packets spread evenly over it.
                    let pool = pool_before
                        + ((time_ns - start) as f64 / dt as f64 * iface_total as f64) as u64
                        + 1;
                    samples.push(Sample {
                        time_ns,
                        router: st.router,
                        iface: st.iface,
                        origin,
                        index: first_index + i,
                        packet,
                        rate,
                        pool,
                        drops: 0,
                    });
                }
            }
            counters.pool += tick_total;
            counters.in_packets += tick_total;
            counters.in_octets += (tick_total as f64 * (st.mean_ip_len + 18.0)) as u64;
        }
        samples.sort_by_key(|s| (s.time_ns, s.router, s.iface, s.origin, s.index));
        // Every sample counts as taken; the agent's budget drops some.
        for s in &samples {
            let i = slot(n_hosts, n_crowds, s.origin);
            self.origins[i].generated.samples += 1;
            let h = self.dst_host(s.origin);
            self.per_host[h].samples += 1;
        }
        let mut kept = Vec::with_capacity(samples.len());
        for s in samples {
            let spec = &self.scenario.routers[s.router as usize];
            let limit = spec.max_samples_per_s;
            let second = s.time_ns / 1_000_000_000;
            let b = &mut self.budget[s.router as usize];
            if b.0 != second {
                *b = (second, 0);
            }
            if limit != 0 && b.1 >= limit {
                self.counters[s.router as usize][s.iface as usize].drops += 1;
                let i = slot(n_hosts, n_crowds, s.origin);
                self.origins[i].generated.dropped += 1;
                let h = self.dst_host(s.origin);
                self.per_host[h].dropped += 1;
                continue;
            }
            b.1 += 1;
            let mut s = s;
            s.drops = self.counters[s.router as usize][s.iface as usize].drops;
            kept.push(s);
        }
        self.tick += 1;
        Some(Tick {
            start_ns: start,
            end_ns: end,
            samples: kept,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Vector;

    #[test]
    fn burst_factors_have_mean_one_and_change_every_period() {
        let text = r#"
seed = 4
duration_s = 1.0
[[routers]]
name = "r"
agent = "192.0.2.1"
format = "sflow"
sampling_rate = 1000
[hosts]
count = 20000
prefix = "10.0.0.0/8"
total_pps = 1000
burstiness = 0.8
burst_period_s = 10.0
"#;
        let mut m = Model::new(&Scenario::from_toml(text).unwrap()).unwrap();
        m.refresh_burst(0);
        let first = m.burst.clone();
        let mean = first.iter().sum::<f64>() / first.len() as f64;
        // Var of the factor: exp(σ²) - 1 = 0.90; SE of the mean 0.0067.
        assert!((mean - 1.0).abs() < 0.03, "{mean}");
        let logs: Vec<f64> = first.iter().map(|f| f.ln()).collect();
        let lm = logs.iter().sum::<f64>() / logs.len() as f64;
        let sd = (logs.iter().map(|l| (l - lm).powi(2)).sum::<f64>() / logs.len() as f64).sqrt();
        assert!((sd - 0.8).abs() < 0.02, "{sd}");
        m.refresh_burst(9_999_999_999);
        assert_eq!(m.burst, first);
        m.refresh_burst(10_000_000_000);
        assert_ne!(m.burst, first);
        // The same period again gives the same factors.
        m.refresh_burst(0);
        assert_eq!(m.burst, first);
    }

    #[test]
    fn servers_receive_requests_and_clients_downloads() {
        let text = r#"
seed = 7
duration_s = 2.0
[[routers]]
name = "r"
agent = "192.0.2.1"
format = "sflow"
sampling_rate = 10
[hosts]
count = 40
servers = 10
prefix = "198.51.100.0/24"
total_pps = 200000
"#;
        let mut m = Model::new(&Scenario::from_toml(text).unwrap()).unwrap();
        assert_eq!(m.hosts().iter().filter(|h| h.server).count(), 10);
        assert!(m.hosts()[..10].iter().all(|h| h.server));
        let (mut to_servers, mut to_clients, mut client_requests) = (0, 0, 0);
        while let Some(t) = m.step() {
            for s in t.samples {
                let Origin::Normal(h) = s.origin else {
                    panic!("{:?}", s.origin)
                };
                let p = &s.packet;
                if h < 10 {
                    to_servers += 1;
                    // Requests: TCP to the web ports from ephemeral ports.
                    assert_eq!(p.proto, crate::packet::TCP, "{p:?}");
                    assert!([443, 80].contains(&p.dst_port), "{p:?}");
                    assert!(p.src_port >= 32768, "{p:?}");
                } else {
                    to_clients += 1;
                    // Mostly downloads: from the web ports, not to them.
                    client_requests += u32::from([443, 80].contains(&p.dst_port));
                }
            }
        }
        assert!(
            to_servers > 100 && to_clients > 100,
            "{to_servers} {to_clients}"
        );
        assert!(
            client_requests * 20 < to_clients,
            "{client_requests} of {to_clients}"
        );
    }

    #[test]
    fn host_addresses_start_after_the_network_address() {
        let v4 = host_addrs("198.51.100.0/24", 3).unwrap();
        assert_eq!(v4[0], "198.51.100.1".parse::<IpAddr>().unwrap());
        assert_eq!(v4[2], "198.51.100.3".parse::<IpAddr>().unwrap());
        let v6 = host_addrs("2001:db8:1::/48", 2).unwrap();
        assert_eq!(v6[1], "2001:db8:1::2".parse::<IpAddr>().unwrap());
        assert!(host_addrs("198.51.100.0/30", 3).is_err());
    }

    #[test]
    fn remote_addresses_avoid_private_and_loopback_first_octets() {
        for k in 0..10_000u64 {
            let IpAddr::V4(a) = remote_addr(k, "192.0.2.1".parse().unwrap()) else {
                panic!()
            };
            let f = a.octets()[0];
            assert!(f != 0 && f != 10 && f != 127 && f < 224, "{a}");
            let IpAddr::V6(b) = remote_addr(k, "2001:db8::1".parse().unwrap()) else {
                panic!()
            };
            assert_eq!(b.segments()[0] >> 13, 1, "{b}");
        }
    }

    #[test]
    fn generated_packets_of_vectors_fit_their_headers() {
        let mut rng = Rng::new(1, 0);
        for target in ["198.51.100.9", "2001:db8::9"] {
            let target: IpAddr = target.parse().unwrap();
            for vector in [
                Vector::UdpFlood,
                Vector::SynFlood,
                Vector::AckFlood,
                Vector::IcmpFlood,
                Vector::DnsAmplification,
                Vector::NtpAmplification,
                Vector::MemcachedAmplification,
                Vector::SsdpAmplification,
                Vector::CldapAmplification,
            ] {
                let a = AttackSpec {
                    id: "x".into(),
                    vector,
                    target,
                    start_s: 0.0,
                    duration_s: 1.0,
                    ramp_s: 0.0,
                    pps: Some(1.0),
                    bps: None,
                    packet_size: None,
                    sources: 1,
                    dst_port: None,
                };
                let src = remote_addr(1, target);
                let p = attack_packet(&mut rng, &a, src);
                assert!(p.fits(), "{vector:?} {p:?}");
            }
            for _ in 0..1000 {
                let src = remote_addr(rng.next_u64(), target);
                assert!(normal_packet(&mut rng, src, target).fits());
                assert!(crowd_packet(&mut rng, src, target, 443).fits());
            }
        }
    }
}
