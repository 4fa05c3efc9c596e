//! The measurements: scenarios written for them, replayed, and judged
//! against the player's truth.

use std::{collections::BTreeSet, net::IpAddr};

use edge_sensor::detect::{Attack, AttackClass, DetectConfig, FlowMatch};
use edge_sensor_player::{Format, Origin, Scenario, scenario::Vector};

use crate::{
    Error,
    replay::{self, Replay},
};

/// The thresholds of every experiment, also the web group's.
const THRESHOLDS: &str = r#"{ all = { pps = 100000, bps = "1G" }, tcp_syn = { pps = 20000 }, udp = { pps = 50000 }, icmp = { pps = 10000 }, fragment = { pps = 10000 } }"#;

/// The `[detect]` keys of every experiment: the documented defaults plus a
/// UDP threshold; `confidence` as given (0: off).
fn detect_keys(confidence: f64) -> String {
    format!(
        r#"
own_networks = ["198.18.0.0/15"]
poll_interval = "1s"
confidence = {confidence}
thresholds = {THRESHOLDS}
"#
    )
}

/// The detector's configuration in every experiment ([`detect_keys`]).
pub fn detect_config(confidence: f64) -> Result<DetectConfig, Error> {
    Ok(DetectConfig::from_toml(&detect_keys(confidence))?)
}

/// The first hosts are web servers ([`hosts`]' `servers`): host
/// addresses 198.18.0.1 to .127, the block an operator would put in a host
/// group of its own.
pub const SERVERS: u32 = 127;
pub const SERVERS_BLOCK: &str = "198.18.0.0/25";

/// [`detect_config`] plus the web servers' host group as an operator runs
/// one: the same static thresholds, and (with `baseline`) an adaptive
/// threshold learnt per server over 10 minutes that tells a flash crowd
/// (more of the server's usual requests) from an attack.
pub fn web_detect_config(confidence: f64, baseline: bool) -> Result<DetectConfig, Error> {
    let baseline = if baseline {
        r#"baseline = { k = 4.0, window = "10m", floor = { all = { pps = 20000, bps = "160M" }, tcp_syn = { pps = 5000 } }, ceiling = { all = { pps = 1000000, bps = "8G" } }, flash_crowd_similarity = 0.8 }"#
    } else {
        ""
    };
    Ok(DetectConfig::from_toml(&format!(
        r#"{}
[[host_groups]]
name = "web"
prefixes = ["{SERVERS_BLOCK}"]
thresholds = {THRESHOLDS}
{baseline}
"#,
        detect_keys(confidence)
    ))?)
}

/// Routers: an sFlow one and an IPFIX one (1 s flow cache) sampling 1:`rate`;
/// hosts alternate between them.
fn routers(rate: u32) -> String {
    format!(
        r#"
[[routers]]
name = "sflow"
agent = "192.0.2.1"
format = "sflow"
sampling_rate = {rate}
interfaces = [1, 2]

[[routers]]
name = "ipfix"
agent = "192.0.2.2"
format = "ipfix"
sampling_rate = {rate}
sub_agent = 1
flow_timeout_ms = 1000
"#
    )
}

/// `count` hosts, the first `servers` of them web servers.
fn hosts(count: u32, total_pps: f64, servers: u32) -> String {
    format!(
        r#"
[hosts]
count = {count}
servers = {}
prefix = "198.18.0.0/16"
total_pps = {total_pps}
burstiness = 0.3
burst_period_s = 60.0
"#,
        servers.min(count)
    )
}

/// The address of host `i` in [`hosts`]' prefix.
pub fn host_addr(i: u32) -> IpAddr {
    IpAddr::from(std::net::Ipv4Addr::from(
        u32::from_be_bytes([198, 18, 0, 0]) + 1 + i,
    ))
}

/// The share of the largest host in the normal traffic of `count` hosts
/// (the model's Pareto weights for `seed`).
fn largest_share(seed: u64, count: u32) -> Result<(u32, f64), Error> {
    let s = Scenario::from_toml(&format!(
        "seed = {seed}\nduration_s = 1.0\n{}{}",
        routers(1000),
        hosts(count, 1e6, 0)
    ))?;
    let model = edge_sensor_player::Model::new(&s)?;
    let (i, h) = model
        .hosts()
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.pps.total_cmp(&b.1.pps))
        .expect("hosts");
    Ok((i as u32, h.pps / 1e6))
}

/// A day (or `hours`) of normal traffic with flash crowds, at one rate.
#[derive(Debug, Clone)]
pub struct NormalRun {
    pub rate: u32,
    pub hosts: u32,
    pub hours: f64,
    pub total_pps: f64,
    /// The largest host's mean rate (diurnal factor 1).
    pub largest_pps: f64,
    pub flash_crowds: usize,
    /// Of them, crowds on web servers peaking above the static thresholds.
    pub large_crowds: usize,
    /// Attacks started with the confidence check and without it.
    pub with_confidence: Vec<Attack>,
    pub without_confidence: Vec<Attack>,
    /// Attacks started on the large crowds' servers when the web group has
    /// no baseline: the crowds are over the thresholds, and only telling
    /// them from attacks keeps them unmitigated.
    pub crowds_without_baseline: Vec<Attack>,
    pub flash_crowd_polls: u64,
    pub samples: u64,
}

/// Normal traffic of `hosts` hosts for `hours` (the first [`SERVERS`] of
/// them web servers), the largest host at a mean of `largest_pps` (so with
/// the diurnal peak and its bursts it comes near the 100 kpps threshold),
/// and a flash crowd every half hour, lasting 10 minutes with 2-minute
/// ramps: in turn a small one (10 to 50 kpps, ten times and more its
/// host's rate) on any host, and a large one (150 to 300 kpps, over the
/// 100 kpps and, by its SYNs, the 20 kpps SYN thresholds) on one of the
/// busiest web servers. Sampled 1:`rate`.
pub fn normal_traffic(
    rate: u32,
    hosts_count: u32,
    hours: f64,
    largest_pps: f64,
    seed: u64,
) -> Result<NormalRun, Error> {
    let (_, share) = largest_share(seed, hosts_count)?;
    let total_pps = (largest_pps / share).round();
    let duration = hours * 3600.0;
    let crowds = (duration / 1800.0).floor().max(1.0) as u32;
    let head = format!(
        "seed = {seed}\nduration_s = {duration}\n{}{}",
        routers(rate),
        hosts(hosts_count, total_pps, SERVERS)
    );
    // The busiest servers, from the model's weights.
    let model = edge_sensor_player::Model::new(&Scenario::from_toml(&head)?)?;
    let mut servers: Vec<(f64, IpAddr)> = model
        .hosts()
        .iter()
        .filter(|h| h.server)
        .map(|h| (h.pps, h.addr))
        .collect();
    servers.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut text = head;
    let mut large = Vec::new();
    for c in 0..crowds {
        // Small ones first: a server's baseline needs its 10 minutes.
        let (target, peak) = if c % 2 == 0 || servers.is_empty() {
            let host = (c * 7919 + 13) % hosts_count;
            (host_addr(host), 10_000.0 + 10_000.0 * f64::from(c / 2 % 5))
        } else {
            let (_, addr) = servers[(c as usize / 2) % servers.len().min(8)];
            large.push(addr);
            (addr, 150_000.0 + 50_000.0 * f64::from(c / 2 % 4))
        };
        let start = 60.0 + f64::from(c) * duration / f64::from(crowds);
        text.push_str(&format!(
            r#"
[[flash_crowds]]
id = "crowd{c}"
target = "{target}"
start_s = {start}
duration_s = 600.0
ramp_s = 120.0
pps = {peak}
sources = 20000
dst_port = 443
"#
        ));
    }
    let scenario = Scenario::from_toml(&text)?;
    let r = replay::replay(
        &scenario,
        &[
            web_detect_config(0.999, true)?,
            web_detect_config(0.0, true)?,
            web_detect_config(0.999, false)?,
        ],
        &BTreeSet::new(),
    )?;
    let started = |i: usize| r.decisions[i].started().map(|(_, a)| a.clone());
    Ok(NormalRun {
        rate,
        hosts: hosts_count,
        hours,
        total_pps,
        largest_pps,
        flash_crowds: scenario.flash_crowds.len(),
        large_crowds: large.len(),
        with_confidence: started(0).collect(),
        without_confidence: started(1).collect(),
        crowds_without_baseline: started(2)
            .filter(|a| large.contains(&a.victim.network()))
            .collect(),
        flash_crowd_polls: r.decisions[0].stats.flash_crowd_polls,
        samples: r.samples,
    })
}

/// One attack of the set and what became of it.
#[derive(Debug, Clone)]
pub struct AttackResult {
    pub id: String,
    pub vector: Vector,
    pub victim: IpAddr,
    pub router: Format,
    pub expected: AttackClass,
    /// The first attack started on the victim after the attack began.
    pub detected: Option<DetectedAttack>,
}

#[derive(Debug, Clone)]
pub struct DetectedAttack {
    pub class: AttackClass,
    pub after_s: f64,
    /// The first rule and the last (after revisions).
    pub first: FlowMatch,
    pub last: FlowMatch,
    /// Shares of the attack's packets each rule matches, and of the
    /// victim's normal packets (the truth's samples, as the decoder reads
    /// them).
    pub first_coverage: f64,
    pub last_coverage: f64,
    pub first_normal_hit: f64,
    pub last_normal_hit: f64,
    pub attack_samples: usize,
    pub normal_samples: usize,
}

impl AttackResult {
    pub fn right(&self) -> bool {
        self.detected
            .as_ref()
            .is_some_and(|d| d.class == self.expected)
    }
}

/// The mean normal rate of the attack set's largest host.
pub const SET_LARGEST_PPS: f64 = 10_000.0;

/// The attack set at one rate.
#[derive(Debug, Clone)]
pub struct AttackSet {
    pub rate: u32,
    pub attacks: Vec<AttackResult>,
    /// Attacks started on other destinations than the victims.
    pub others: Vec<Attack>,
}

/// The class the detector should name a vector.
pub fn expected_class(v: Vector) -> AttackClass {
    match v {
        Vector::UdpFlood => AttackClass::UdpFlood,
        Vector::SynFlood => AttackClass::TcpSynFlood,
        Vector::AckFlood => AttackClass::TcpFlood,
        Vector::IcmpFlood => AttackClass::IcmpFlood,
        amp => AttackClass::UdpAmplification {
            port: amp.reflector_port().unwrap_or(0),
        },
    }
}

/// Every vector the player has, each on one of the busiest hosts (their
/// normal traffic is best known), one after the other: 60 s each, 30 s
/// apart, after 120 s of normal traffic. Floods at `flood_pps`,
/// amplification at `amp_bps`.
pub fn attack_set(
    rate: u32,
    hosts_count: u32,
    flood_pps: f64,
    amp_bps: f64,
    seed: u64,
) -> Result<AttackSet, Error> {
    let vectors = [
        ("udp", "udp_flood", Vector::UdpFlood),
        ("syn", "syn_flood", Vector::SynFlood),
        ("ack", "ack_flood", Vector::AckFlood),
        ("icmp", "icmp_flood", Vector::IcmpFlood),
        ("dns", "dns_amplification", Vector::DnsAmplification),
        ("ntp", "ntp_amplification", Vector::NtpAmplification),
        (
            "memcached",
            "memcached_amplification",
            Vector::MemcachedAmplification,
        ),
        ("ssdp", "ssdp_amplification", Vector::SsdpAmplification),
        ("cldap", "cldap_amplification", Vector::CldapAmplification),
    ];
    // The largest host at a mean of `SET_LARGEST_PPS`, well under the
    // thresholds with its peaks: the attacks, not the normal traffic, cross.
    let (_, share) = largest_share(seed, hosts_count)?;
    let total_pps = (SET_LARGEST_PPS / share).round();
    // Busiest hosts: from the model's weights.
    let probe = Scenario::from_toml(&format!(
        "seed = {seed}\nduration_s = 1.0\n{}{}",
        routers(rate),
        hosts(hosts_count, total_pps, 0)
    ))?;
    let model = edge_sensor_player::Model::new(&probe)?;
    let mut by_rate: Vec<(usize, f64)> = model
        .hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| (i, h.pps))
        .collect();
    by_rate.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let duration = 120.0 + 90.0 * vectors.len() as f64 + 30.0;
    let mut text = format!(
        "seed = {seed}\nduration_s = {duration}\n{}{}",
        routers(rate),
        hosts(hosts_count, total_pps, 0)
    );
    let mut plan = Vec::new();
    for (n, (id, name, vector)) in vectors.iter().enumerate() {
        let host = by_rate[n].0;
        let victim = model.hosts()[host].addr;
        let start = 120.5 + 90.0 * n as f64;
        let size = if vector.reflector_port().is_some() {
            format!("bps = {amp_bps}\nsources = 2000")
        } else {
            format!("pps = {flood_pps}\nsources = 50000")
        };
        text.push_str(&format!(
            r#"
[[attacks]]
id = "{id}"
vector = "{name}"
target = "{victim}"
start_s = {start}
duration_s = 60.0
ramp_s = 1.0
{size}
"#
        ));
        let router = probe.routers[model.hosts()[host].router as usize].format;
        plan.push((id.to_string(), *vector, victim, router));
    }
    let scenario = Scenario::from_toml(&text)?;
    let keep: BTreeSet<IpAddr> = plan.iter().map(|p| p.2).collect();
    let r = replay::replay(&scenario, &[detect_config(0.999)?], &keep)?;
    let d = &r.decisions[0];
    let mut attacks = Vec::new();
    for (n, (id, vector, victim, router)) in plan.into_iter().enumerate() {
        let begun = r.attack_starts[n].unwrap_or(f64::INFINITY);
        let detected = d
            .started()
            .find(|(t, a)| a.victim.network() == victim && *t >= begun)
            .map(|(t, a)| {
                // The last rule announced for this attack (updates by id).
                let last = d
                    .events
                    .iter()
                    .filter_map(|(_, e)| match e {
                        edge_sensor::detect::Event::AttackUpdated(u) if u.id == a.id => {
                            Some(u.fingerprint.flow.clone())
                        }
                        _ => None,
                    })
                    .next_back()
                    .unwrap_or_else(|| a.fingerprint.flow.clone());
                judge(&r, n as u32, victim, a, t - begun, last)
            });
        attacks.push(AttackResult {
            id,
            vector,
            victim,
            router,
            expected: expected_class(vector),
            detected,
        });
    }
    let others = d
        .started()
        .filter(|(_, a)| !keep.contains(&a.victim.network()))
        .map(|(_, a)| a.clone())
        .collect();
    Ok(AttackSet {
        rate,
        attacks,
        others,
    })
}

/// Coverage and normal hit of an attack's rules on the truth.
fn judge(
    r: &Replay,
    attack: u32,
    victim: IpAddr,
    a: &Attack,
    after_s: f64,
    last: FlowMatch,
) -> DetectedAttack {
    let truth = r.truth.get(&victim).map_or(&[][..], |v| v.as_slice());
    // The sample as the decoder reads it: the IP length, from the sampled
    // header's IP header (sFlow) or the record (IPFIX).
    let seen = |s: &edge_sensor_player::Sample| replay::as_sample(&s.packet);
    let attack_packets: Vec<_> = truth
        .iter()
        .filter(|s| s.origin == Origin::Attack(attack))
        .map(seen)
        .collect();
    let normal_packets: Vec<_> = truth
        .iter()
        .filter(|s| matches!(s.origin, Origin::Normal(_)))
        .map(seen)
        .collect();
    let share = |m: &FlowMatch, v: &[edge_sensor::detect::Sample]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().filter(|s| m.matches(s)).count() as f64 / v.len() as f64
        }
    };
    let first = a.fingerprint.flow.clone();
    DetectedAttack {
        class: a.class,
        after_s,
        first_coverage: share(&first, &attack_packets),
        last_coverage: share(&last, &attack_packets),
        first_normal_hit: share(&first, &normal_packets),
        last_normal_hit: share(&last, &normal_packets),
        attack_samples: attack_packets.len(),
        normal_samples: normal_packets.len(),
        first,
        last,
    }
}

/// Time to detect one size of attack at one rate, over seeds.
#[derive(Debug, Clone)]
pub struct SizePoint {
    pub rate: u32,
    pub pps: f64,
    /// Seconds from the first attack packet to the start, per seed (`None`:
    /// not detected within the attack).
    pub times: Vec<Option<f64>>,
}

impl SizePoint {
    pub fn all_detected(&self) -> bool {
        self.times.iter().all(Option::is_some)
    }
    pub fn median(&self) -> Option<f64> {
        let mut t: Vec<f64> = self.times.iter().flatten().copied().collect();
        t.sort_by(f64::total_cmp);
        (!t.is_empty()).then(|| t[t.len() / 2])
    }
    pub fn max(&self) -> Option<f64> {
        self.times.iter().flatten().copied().reduce(f64::max)
    }
}

/// UDP floods of each of `sizes` pps, each on its own host at the same
/// time (a mid-poll start, 30.5 s, lasting 60 s), on `hosts_count` hosts of
/// light normal traffic, one run per seed.
pub fn time_to_detect(
    rate: u32,
    sizes: &[f64],
    hosts_count: u32,
    seeds: &[u64],
) -> Result<Vec<SizePoint>, Error> {
    let mut points: Vec<SizePoint> = sizes
        .iter()
        .map(|&pps| SizePoint {
            rate,
            pps,
            times: Vec::new(),
        })
        .collect();
    for &seed in seeds {
        let mut text = format!(
            "seed = {seed}\nduration_s = 92.0\n{}{}",
            routers(rate),
            hosts(hosts_count, 20_000.0, 0)
        );
        let mut victims = Vec::new();
        for (n, pps) in sizes.iter().enumerate() {
            // Every other host from the second: one victim per router
            // alternately, none the same.
            let victim = host_addr(1 + 2 * n as u32 + (seed as u32 % 2));
            victims.push(victim);
            text.push_str(&format!(
                r#"
[[attacks]]
id = "udp{n}"
vector = "udp_flood"
target = "{victim}"
start_s = 30.5
duration_s = 60.0
pps = {pps}
sources = 10000
"#
            ));
        }
        let scenario = Scenario::from_toml(&text)?;
        let r = replay::replay(&scenario, &[detect_config(0.999)?], &BTreeSet::new())?;
        for (n, victim) in victims.iter().enumerate() {
            let begun = r.attack_starts[n].unwrap_or(f64::INFINITY);
            let t = r.decisions[0]
                .started()
                .find(|(t, a)| a.victim.network() == *victim && *t >= begun)
                .map(|(t, _)| t - begun);
            points[n].times.push(t);
        }
    }
    Ok(points)
}
