//! Scenario tests: synthetic traffic fed to the detector poll by poll, as the
//! daemon feeds it (counters of every destination; samples, 1 in
//! [`SAMPLING`], only of the destinations the detector asked to watch), with
//! decisions asserted in poll intervals.
//!
//! Poll 0 sets the counters' base; the traffic of poll `i` is what arrived
//! in the interval before it. "Crossing poll" below is the first poll whose
//! interval carries a rate above the threshold.

use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use edge_sensor_common::{
    Class, DstStats,
    proto::{ipproto, tcp_flags},
};

use ipnet::IpNet;

use super::*;

/// One sample per this many packets, as a router at 1:1000 would export.
const SAMPLING: f64 = 1000.0;

const ACK: u8 = tcp_flags::ACK;
const SYN: u8 = tcp_flags::SYN;
const PSH: u8 = 0x08;
const FIN: u8 = 0x01;

#[derive(Clone, Copy, Debug)]
enum Port {
    Fixed(u16),
    /// Ephemeral, a different one per sample.
    Random,
}

#[derive(Clone, Copy, Debug)]
enum Src {
    /// A different Internet source per sample (spoofed or many clients).
    Random,
    Fixed(IpAddr),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Frag {
    No,
    First,
    Later,
}

/// Packets of one kind to one destination.
#[derive(Clone, Copy, Debug)]
struct Flow {
    dst: IpAddr,
    pps: f64,
    protocol: u8,
    sport: Port,
    dport: Port,
    flags: u8,
    frag: Frag,
    len: u16,
    src: Src,
}

fn flow(dst: &str, pps: f64, protocol: u8) -> Flow {
    Flow {
        dst: dst.parse().unwrap(),
        pps,
        protocol,
        sport: Port::Random,
        dport: Port::Random,
        flags: 0,
        frag: Frag::No,
        len: 60,
        src: Src::Random,
    }
}

impl Flow {
    fn sport(mut self, p: u16) -> Self {
        self.sport = Port::Fixed(p);
        self
    }
    fn dport(mut self, p: u16) -> Self {
        self.dport = Port::Fixed(p);
        self
    }
    fn flags(mut self, f: u8) -> Self {
        self.flags = f;
        self
    }
    fn len(mut self, l: u16) -> Self {
        self.len = l;
        self
    }
    fn frag(mut self, f: Frag) -> Self {
        self.frag = f;
        self
    }
    fn from(mut self, src: &str) -> Self {
        self.src = Src::Fixed(src.parse().unwrap());
        self
    }
    fn key(&self) -> String {
        format!(
            "{}/{}/{:?}/{:?}/{}/{:?}/{}",
            self.dst, self.protocol, self.sport, self.dport, self.flags, self.frag, self.len
        )
    }
}

/// Legitimate web traffic to `dst` (HTTPS mostly, some HTTP): the usual
/// flag and size mix of many clients.
fn web(dst: &str, pps: f64) -> Vec<Flow> {
    let tcp = |share: f64, dport: u16, flags: u8, len: u16| {
        flow(dst, pps * share, ipproto::TCP)
            .dport(dport)
            .flags(flags)
            .len(len)
    };
    vec![
        tcp(0.40, 443, ACK, 52),
        tcp(0.17, 443, PSH | ACK, 1500),
        tcp(0.10, 443, PSH | ACK, 576),
        tcp(0.10, 443, ACK, 1500),
        tcp(0.06, 443, SYN, 60),
        tcp(0.06, 443, FIN | ACK, 52),
        tcp(0.06, 80, ACK, 52),
        tcp(0.03, 80, PSH | ACK, 900),
        tcp(0.02, 80, SYN, 60),
    ]
}

/// `web_pps` of web traffic to `victim`, plus `flood` at the polls where
/// `during` holds: the traffic of most scenarios.
fn web_and_flood(
    victim: &str,
    web_pps: f64,
    during: impl Fn(u32) -> bool,
    flood: Vec<Flow>,
) -> impl Fn(u32) -> Vec<Flow> {
    move |p| {
        let mut f = web(victim, web_pps);
        if during(p) {
            f.extend_from_slice(&flood);
        }
        f
    }
}

struct Sim {
    det: Detector,
    dt: Duration,
    poll: u32,
    /// Exact packet and byte totals per destination and class.
    totals: BTreeMap<IpAddr, [[f64; 2]; Class::COUNT]>,
    /// Fractional samples carried to the next interval, per flow kind.
    carry: BTreeMap<String, f64>,
    rng: u64,
    log: Vec<(u32, Event)>,
    /// Counters handed to the detector are replaced by this for one poll
    /// (`Some(map)`) to emulate a map re-creation or eviction.
    override_counters: Option<BTreeMap<IpAddr, DstStats>>,
    /// The kernel streams samples of watched destinations (off: counters
    /// only, as before the sample stream is wired).
    sampling: bool,
    /// 1:N of the samples.
    rate: f64,
    /// The counters are what a collector counts from 1:`rate` samples (k
    /// samples: k * rate packets) instead of the exact totals; `Some(true)`
    /// draws k from a Poisson law, `Some(false)` carries fractions over
    /// (deterministic).
    sampled_counters: Option<bool>,
}

impl Sim {
    fn new(toml: &str) -> Self {
        let cfg = DetectConfig::from_toml(toml).unwrap_or_else(|e| panic!("{e}"));
        let dt = cfg.poll_interval;
        let mut det = Detector::new(cfg).unwrap();
        assert!(det.poll(Duration::ZERO, &BTreeMap::new(), &[]).is_empty());
        Self {
            det,
            dt,
            poll: 0,
            totals: BTreeMap::new(),
            carry: BTreeMap::new(),
            rng: 0x9e37_79b9_7f4a_7c15,
            log: Vec::new(),
            override_counters: None,
            sampling: true,
            rate: SAMPLING,
            sampled_counters: None,
        }
    }

    /// Another run of the same traffic: the draws start from `seed`.
    fn seeded(mut self, seed: u64) -> Self {
        self.rng = 0x9e37_79b9_7f4a_7c15 ^ seed.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        self
    }

    /// Counters and samples as a router sampling 1:`rate` gives them.
    fn sampled(mut self, rate: f64, poisson: bool) -> Self {
        self.rate = rate;
        self.sampled_counters = Some(poisson);
        self
    }

    fn uniform(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// A Poisson draw of mean `mean`: Knuth's product of uniforms below 30
    /// (bounded: 1000 factors are far past any plausible count), else the
    /// normal approximation.
    fn poisson(&mut self, mean: f64) -> u64 {
        if mean < 30.0 {
            let limit = (-mean).exp();
            let mut product = self.uniform();
            let mut k = 0;
            while product > limit && k < 1000 {
                product *= self.uniform();
                k += 1;
            }
            k
        } else {
            let (u, v) = (self.uniform(), self.uniform());
            let z = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
            (mean + mean.sqrt() * z).round().max(0.0) as u64
        }
    }

    fn next(&mut self) -> u64 {
        // splitmix64: deterministic and good enough for ports and addresses.
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn random_src(&mut self, v6: bool) -> IpAddr {
        let r = self.next();
        if v6 {
            // 2400::/6-ish global unicast, never 2001:db8::/32.
            let a = 0x2400 | (r as u16 & 0x03ff);
            format!(
                "{a:x}:{:x}:{:x}::{:x}",
                r >> 16 & 0xffff,
                r >> 32 & 0xffff,
                r >> 48
            )
            .parse()
            .unwrap()
        } else {
            // 1.0.0.0 - 126.255.255.255: never the own 198.18.0.0/15.
            let b = r.to_be_bytes();
            IpAddr::from([1 + b[0] % 126, b[1], b[2], b[3].max(1)])
        }
    }

    fn counters(&self) -> BTreeMap<IpAddr, DstStats> {
        self.totals
            .iter()
            .map(|(ip, t)| {
                let mut s = DstStats::default();
                for (i, [packets, bytes]) in t.iter().enumerate() {
                    s.packets[i] = *packets as u64;
                    s.bytes[i] = *bytes as u64;
                }
                (*ip, s)
            })
            .collect()
    }

    /// One poll interval of `flows`; returns the poll's events.
    fn step(&mut self, flows: &[Flow]) -> Vec<Event> {
        let secs = self.dt.as_secs_f64();
        let watched = self.det.watched().clone();
        let mut samples = Vec::new();
        for f in flows {
            let mut n = f.pps * secs;
            // Sampled counters: k samples, each counted as `rate` packets.
            let drawn = match self.sampled_counters {
                None => None,
                Some(true) => Some(self.poisson(n / self.rate)),
                Some(false) => {
                    let carry = self.carry.entry(f.key()).or_default();
                    *carry += n / self.rate;
                    let k = carry.floor();
                    *carry -= k;
                    Some(k as u64)
                }
            };
            if let Some(k) = drawn {
                n = k as f64 * self.rate;
            }
            let t = self.totals.entry(f.dst).or_insert([[0.0; 2]; Class::COUNT]);
            let mut classes = vec![Class::All, Class::of_protocol(f.protocol)];
            if f.protocol == ipproto::TCP && f.frag != Frag::Later && tcp_flags::is_syn(f.flags) {
                classes.push(Class::TcpSyn);
            }
            if f.frag != Frag::No {
                classes.push(Class::Fragment);
            }
            for c in classes {
                t[c as usize][0] += n;
                t[c as usize][1] += n * f64::from(f.len);
            }
            if !self.sampling || !watched.contains(&f.dst) {
                continue;
            }
            let k = match drawn {
                Some(k) => k,
                None => {
                    let carry = self.carry.entry(f.key()).or_default();
                    *carry += n / self.rate;
                    let k = carry.floor();
                    *carry -= k;
                    k as u64
                }
            };
            for _ in 0..k {
                samples.push(self.sample_of(f));
            }
        }
        self.poll += 1;
        let counters = self
            .override_counters
            .take()
            .unwrap_or_else(|| self.counters());
        let now = self.dt * self.poll;
        let events = self.det.poll(now, &counters, &samples);
        for e in &events {
            self.log.push((self.poll, e.clone()));
        }
        events
    }

    /// Runs `polls` polls, the traffic of each from `traffic(poll index)`.
    /// One sample of `f`, as the kernel streams it.
    fn sample_of(&mut self, f: &Flow) -> Sample {
        let ports = f.frag != Frag::Later && matches!(f.protocol, ipproto::TCP | ipproto::UDP);
        let mut port = |p: Port| match (ports, p) {
            (false, _) => 0,
            (true, Port::Fixed(p)) => p,
            (true, Port::Random) => 1024 + (self.next() % 64000) as u16,
        };
        let (src_port, dst_port) = (port(f.sport), port(f.dport));
        let src = match f.src {
            Src::Fixed(ip) => ip,
            Src::Random => self.random_src(f.dst.is_ipv6()),
        };
        Sample {
            dst: f.dst,
            src,
            protocol: f.protocol,
            src_port,
            dst_port,
            tcp_flags: if f.frag == Frag::Later { 0 } else { f.flags },
            icmp_type: None,
            fragment: f.frag != Frag::No,
            later_fragment: f.frag == Frag::Later,
            packet_len: f.len,
            packets: self.rate as u64,
            bytes: self.rate as u64 * u64::from(f.len),
            sampled: 1,
        }
    }

    /// As the daemon does `secs` after a poll that left a victim waiting
    /// for samples: the samples of the watched destinations in those
    /// seconds (whole ones) to [`Detector::between_polls`]. The next poll
    /// gets the samples of its whole interval again: evidence, not counts.
    fn between_polls(&mut self, secs: f64, flows: &[Flow]) -> Vec<Event> {
        let watched = self.det.watched().clone();
        let mut samples = Vec::new();
        for f in flows.iter().filter(|f| watched.contains(&f.dst)) {
            let mean = f.pps * secs / self.rate;
            // As many as a sampler gives: a Poisson draw where the poll's
            // are (whole ones would leave out every flow under one sample
            // per gap, and the evidence would be the big flows only).
            let k = match self.sampled_counters {
                Some(true) => self.poisson(mean),
                _ => mean as u64,
            };
            for _ in 0..k {
                samples.push(self.sample_of(f));
            }
        }
        let now = self.dt * self.poll + Duration::from_secs_f64(secs);
        let events = self.det.between_polls(now, &samples);
        for e in &events {
            self.log.push((self.poll, e.clone()));
        }
        events
    }

    fn run(&mut self, polls: u32, traffic: impl Fn(u32) -> Vec<Flow>) {
        for _ in 0..polls {
            let flows = traffic(self.poll + 1);
            self.step(&flows);
        }
    }

    /// The one attack started so far and its poll; fails with the story
    /// when there is none or more than one.
    fn only_start(&self) -> (u32, &Attack) {
        let started = self.started();
        assert_eq!(started.len(), 1, "{}", self.story());
        started[0]
    }
    fn started(&self) -> Vec<(u32, &Attack)> {
        self.of(|e| matches!(e, Event::AttackStarted(_)))
    }
    fn updated(&self) -> Vec<(u32, &Attack)> {
        self.of(|e| matches!(e, Event::AttackUpdated(_)))
    }
    fn ended(&self) -> Vec<(u32, &Attack)> {
        self.of(|e| matches!(e, Event::AttackEnded(_)))
    }
    fn of(&self, keep: impl Fn(&Event) -> bool) -> Vec<(u32, &Attack)> {
        self.log
            .iter()
            .filter(|(_, e)| keep(e))
            .map(|(p, e)| (*p, e.attack()))
            .collect()
    }

    /// The log, for assertion messages.
    fn story(&self) -> String {
        self.log
            .iter()
            .map(|(p, e)| {
                let a = e.attack();
                let kind = match e {
                    Event::AttackStarted(_) => "started",
                    Event::AttackUpdated(_) => "updated",
                    Event::AttackEnded(_) => "ended",
                };
                format!(
                    "poll {p}: {kind} #{} {} {} {} pps={:.0} trigger={}.{}; {}\n",
                    a.id,
                    a.victim,
                    a.class,
                    a.host_group,
                    a.pps,
                    a.trigger.class,
                    a.trigger.metric,
                    a.fingerprint
                )
            })
            .collect()
    }
}

/// The shared base: own networks, static thresholds, short hysteresis.
const BASE: &str = r#"
own_networks = ["198.18.0.0/15", "2001:db8::/32"]
poll_interval = "1s"
smoothing = "2s"
[thresholds]
all = { pps = 100000, bps = "2G" }
tcp_syn = { pps = 20000 }
udp = { pps = 50000 }
icmp = { pps = 10000 }
fragment = { pps = 10000 }
[release]
ratio = 0.7
min_duration = "10s"
hold = "5s"
"#;

fn with(extra: &str) -> String {
    format!("{BASE}{extra}")
}

/// [`BASE`] plus one host group `name` on `prefix` with `settings` (one
/// TOML line each).
fn with_group(name: &str, prefix: &str, settings: &[&str]) -> String {
    with(&format!(
        "\n[[host_groups]]\nname = \"{name}\"\nprefixes = [\"{prefix}\"]\n{}\n",
        settings.join("\n")
    ))
}

#[test]
fn networks_learnt_from_bgp_come_and_go_with_their_attacks() {
    // Own networks: 198.18.0.0/15 configured; 203.0.113.0/24 learnt (a
    // customer's route), in the `web` group.
    let victim = "203.0.113.10";
    let cfg = with_group("web", "198.18.9.0/24", &["action = \"blackhole\""]);
    let mut sim = Sim::new(&cfg);
    let syn = flow(victim, 200_000.0, ipproto::TCP)
        .dport(80)
        .flags(SYN)
        .len(60);
    let traffic = |p: u32| if p > 5 { vec![syn] } else { Vec::new() };
    sim.run(15, traffic);
    assert!(
        sim.started().is_empty(),
        "outside the own networks: {}",
        sim.story()
    );

    let learnt: IpNet = "203.0.113.0/24".parse().unwrap();
    assert!(
        sim.det
            .set_learnt_networks(&[(learnt, Some("web".into()))])
            .is_empty()
    );
    assert!(sim.det.own_networks().contains(&learnt));
    sim.run(5, traffic);
    let (_, a) = sim.only_start();
    let a = a.clone();
    assert_eq!(a.victim.network().to_string(), victim);
    assert_eq!(a.host_group, "web");
    assert_eq!(a.action, GroupAction::Blackhole);

    // The route is withdrawn: the attack ends at once, and nothing new
    // starts there.
    let ended = sim.det.set_learnt_networks(&[]);
    assert!(
        matches!(ended.as_slice(), [Event::AttackEnded(e)] if e.id == a.id),
        "{ended:?}"
    );
    assert!(!sim.det.own_networks().contains(&learnt));
    let before = sim.started().len();
    sim.run(10, traffic);
    assert_eq!(sim.started().len(), before, "{}", sim.story());
    assert!(sim.det.attacks().is_empty());
}

#[test]
fn syn_flood_is_named_and_fingerprinted_within_two_polls_and_released_once() {
    let victim = "198.18.1.10";
    let mut sim = Sim::new(BASE);
    let syn = flow(victim, 200_000.0, ipproto::TCP)
        .dport(80)
        .flags(SYN)
        .len(60);
    sim.run(
        90,
        web_and_flood(victim, 2000.0, |p| (21..=60).contains(&p), vec![syn]),
    );
    let story = sim.story();
    let (poll, a) = sim.only_start();
    // Crossing at poll 21; the victim was not sampled yet, so the start
    // waits one poll for the evidence.
    assert!((21..=22).contains(&poll), "{story}");
    assert_eq!(a.victim, "198.18.1.10/32".parse::<IpNet>().unwrap());
    assert_eq!(a.scope, Scope::Host);
    assert_eq!(a.class, AttackClass::TcpSynFlood, "{story}");
    assert_eq!(a.host_group, "default");
    assert_eq!(a.action, GroupAction::Flowspec);
    assert_eq!(a.trigger.class, TrafficClass::TcpSyn);
    let fp = &a.fingerprint;
    assert_eq!(fp.basis, Basis::Samples, "{story}");
    assert_eq!(fp.flow.protocols, vec![ipproto::TCP]);
    assert_eq!(
        fp.flow.tcp_flags,
        Some(TcpFlagsMatch {
            value: SYN,
            mask: 0xff
        })
    );
    assert_eq!(fp.flow.destination_ports, vec![80]);
    assert_eq!(
        fp.flow.packet_length,
        Some(LengthRange { min: 60, max: 60 })
    );
    assert_eq!(fp.flow.source, None, "spoofed sources are not concentrated");
    assert!(fp.flow.source_ports.is_empty());
    assert!(fp.covers_attack >= 0.95, "{fp}");
    // No normal samples (never watched before): the class bound, SYN share
    // of the normal web mix (8 %).
    assert_eq!(fp.normal_basis, NormalBasis::ClassShares);
    assert!(fp.hits_normal <= 0.1, "{fp}");
    assert!(
        sim.updated().is_empty(),
        "the match does not churn: {story}"
    );

    // Flood stops after poll 60: the smoothed SYN rate (time constant 2 s)
    // is still above 70 % of 20 kpps for 5 polls (200k * e^(-5/2) = 16k),
    // below from poll 66 (11k); last active 65, 5 s hold: ends at 70.
    let ended = sim.ended();
    assert_eq!(ended.len(), 1, "{story}");
    assert_eq!(ended[0].0, 70, "{story}");
    assert_eq!(ended[0].1.duration_s, f64::from(70 - poll));
    assert_eq!(ended[0].1.id, a.id);
    assert!(ended[0].1.peak_pps >= 190_000.0 && ended[0].1.peak_pps < 215_000.0);
    assert!(sim.det.attacks().is_empty());
    let text = ended[0].1.to_string();
    assert!(
        text.starts_with("#1 198.18.1.10/32 tcp_syn_flood (group default, action flowspec)"),
        "{text}"
    );

    // While it lasted the victim was sampled and its rates visible.
    let view = sim.det.destination(victim.parse().unwrap()).unwrap();
    assert_eq!(view.host_group, "default");
    assert_eq!(view.threshold_pps[&TrafficClass::TcpSyn], 20_000.0);
    assert!(view.pps[&TrafficClass::Tcp] > 1_500.0 && view.pps[&TrafficClass::Tcp] < 2_500.0);
}

#[test]
fn ntp_amplification_on_a_busy_dns_server_is_fingerprinted_at_the_crossing_poll() {
    let victim = "198.18.2.53";
    let mut sim = Sim::new(BASE);
    // A DNS server: 30 kpps of queries (60 % of the UDP threshold, so it is
    // sampled all along and its normal traffic is known) plus some web.
    let normal = |f: &mut Vec<Flow>| {
        f.push(flow(victim, 30_000.0, ipproto::UDP).dport(53).len(80));
        f.extend(web(victim, 1000.0));
    };
    sim.run(40, |p| {
        let mut f = Vec::new();
        normal(&mut f);
        if p >= 31 {
            f.push(flow(victim, 150_000.0, ipproto::UDP).sport(123).len(468));
        }
        f
    });
    let story = sim.story();
    let (poll, a) = sim.only_start();
    assert_eq!(
        poll, 31,
        "watched before: decided at the crossing poll\n{story}"
    );
    assert_eq!(
        a.class,
        AttackClass::UdpAmplification { port: 123 },
        "{story}"
    );
    let fp = &a.fingerprint;
    assert_eq!(fp.basis, Basis::Samples);
    assert_eq!(fp.flow.protocols, vec![ipproto::UDP]);
    assert_eq!(fp.flow.source_ports, vec![123]);
    assert!(fp.flow.destination_ports.is_empty(), "{fp}");
    assert_eq!(
        fp.flow.packet_length,
        Some(LengthRange { min: 468, max: 468 })
    );
    assert!(fp.covers_attack >= 0.9, "{fp}");
    assert_eq!(fp.normal_basis, NormalBasis::Samples, "{fp}");
    assert!(fp.hits_normal < 0.01, "{fp}");
    assert_eq!(
        fp.flow.to_string(),
        "dst 198.18.2.53/32 proto udp src-port 123 len 468"
    );
    // The DNS queries are not in the rule: the server keeps serving.
    assert!(sim.ended().is_empty());
}

#[test]
fn flash_crowd_is_broad_without_baseline_and_silent_with_it() {
    let victim = "198.18.4.80";
    let thresholds = "thresholds = { all = { pps = 50000 } }";
    // 20 kpps of web traffic with +-10 % wobble; from poll 400 a flash
    // crowd ramps to 4x over 30 s and stays for a minute.
    let traffic = |p: u32| {
        let wobble = 1.0 + 0.1 * ((f64::from(p) * 0.7).sin());
        let crowd = match p {
            0..400 => 1.0,
            400..430 => 1.0 + 3.0 * f64::from(p - 400) / 30.0,
            430..490 => 4.0,
            _ => 1.0,
        };
        web(victim, 20_000.0 * wobble * crowd)
    };

    let mut sim = Sim::new(&with_group("web", "198.18.4.0/24", &[thresholds]));
    sim.run(520, traffic);
    let story = sim.story();
    let (_, a) = sim.only_start();
    assert_eq!(a.host_group, "web");
    assert_eq!(a.class, AttackClass::TcpFlood, "not a SYN flood: {story}");
    let fp = &a.fingerprint;
    assert_eq!(fp.flow.protocols, vec![ipproto::TCP]);
    assert_eq!(fp.flow.tcp_flags, None, "flags are mixed: {fp}");
    assert_eq!(fp.flow.source, None);
    assert_eq!(fp.flow.destination_ports, vec![80, 443]);
    // It looks like normal traffic, and says so.
    assert_eq!(fp.normal_basis, NormalBasis::Samples, "{fp}");
    assert!(fp.hits_normal >= 0.8, "{fp}");

    let baseline = r#"baseline = { k = 4.0, window = "2m", floor = { all = { pps = 5000 } }, ceiling = { all = { pps = 500000 } } }"#;
    let mut sim = Sim::new(&with_group("web", "198.18.4.0/24", &[thresholds, baseline]));
    sim.run(450, traffic);
    // At the crowd's peak the host is far above its adaptive threshold
    // (learnt from 20 kpps +- 10 %) and sampled: only its shape, that of
    // its normal traffic, keeps it from being reported.
    let ip: IpAddr = victim.parse().unwrap();
    let h = &sim.det.hosts[&ip];
    let threshold = sim.det.host_thresholds(h)[0][0].unwrap();
    assert!(threshold < 30_000.0, "{threshold}");
    assert!(h.meter.signal(TrafficClass::All, Metric::Pps) > 2.0 * threshold);
    assert!(sim.det.watched().contains(&ip));
    sim.run(70, traffic);
    assert!(sim.log.is_empty(), "{}", sim.story());
    assert!(
        sim.det.stats().flash_crowd_polls > 10,
        "{:?}",
        sim.det.stats()
    );
}

#[test]
fn a_quiet_servers_flash_crowd_far_over_the_thresholds_is_told_by_its_profile() {
    // 1 kpps of web traffic, a twentieth of the watch level: only its
    // group's baseline has it sampled, and the crowd's likeness to those
    // samples is what keeps a 100x surge from being mitigated.
    let victim = "198.18.4.90";
    let thresholds = "thresholds = { all = { pps = 40000 } }";
    let baseline = r#"baseline = { k = 4.0, window = "2m", floor = { all = { pps = 5000 } }, ceiling = { all = { pps = 500000 } } }"#;
    let traffic = |p: u32| {
        let crowd = match p {
            0..300 => 1.0,
            300..330 => 1.0 + 99.0 * f64::from(p - 300) / 30.0,
            _ => 100.0,
        };
        web(victim, 1_000.0 * crowd)
    };
    let mut sim = Sim::new(&with_group("web", "198.18.4.0/24", &[thresholds, baseline]));
    sim.run(290, traffic);
    let ip: IpAddr = victim.parse().unwrap();
    assert!(sim.det.watched().contains(&ip), "not profiled");
    sim.run(90, traffic);
    assert!(sim.log.is_empty(), "{}", sim.story());
    assert!(
        sim.det.stats().flash_crowd_polls > 30,
        "{:?}",
        sim.det.stats()
    );

    // The same crowd on a host of a group without a baseline is over the
    // thresholds and mitigated: the profile is what tells it apart.
    let mut sim = Sim::new(&with_group("web", "198.18.4.0/24", &[thresholds]));
    sim.run(380, traffic);
    let (_, a) = sim.only_start();
    assert_eq!(a.victim.network(), ip);
}

#[test]
fn a_large_crowd_sampled_1_in_16384_is_told_from_its_few_samples() {
    // 2 kpps of web traffic, then clients ramp it to 300 kpps: over the
    // static pps threshold and, at 1500/576/52-byte packets, over 1 Gbps.
    // One sample in 16384 gives the crowd a few tens of samples, too few
    // for the narrowest length range to hit most normal samples; the crowd
    // is told by what its packets are, and its bytes by the bps floor.
    let victim = "198.18.4.92";
    let thresholds = r#"thresholds = { all = { pps = 100000, bps = "1G" } }"#;
    let baseline = r#"baseline = { k = 4.0, window = "5m", floor = { all = { pps = 20000, bps = "160M" }, tcp_syn = { pps = 5000 } }, ceiling = { all = { pps = 1000000, bps = "8G" } } }"#;
    let traffic = |p: u32| {
        let crowd = match p {
            0..1500 => 1.0,
            1500..1620 => 1.0 + 149.0 * f64::from(p - 1500) / 120.0,
            _ => 150.0,
        };
        web(victim, 2_000.0 * crowd)
    };
    let cfg = with_group("web", "198.18.4.0/24", &[thresholds, baseline]);
    let mut sim = Sim::new(&cfg).sampled(16384.0, true);
    sim.run(1740, traffic);
    assert!(sim.log.is_empty(), "{}", sim.story());
    assert!(
        sim.det.stats().flash_crowd_polls > 20,
        "{:?}",
        sim.det.stats()
    );

    // Without the baseline the same crowd is over the thresholds.
    let cfg = with_group("web", "198.18.4.0/24", &[thresholds]);
    let mut sim = Sim::new(&cfg).sampled(16384.0, true);
    sim.run(1740, traffic);
    let (poll, a) = sim.only_start();
    assert!(poll > 1500, "{}", sim.story());
    assert_eq!(a.victim.network(), victim.parse::<IpAddr>().unwrap());
}

/// The web group of the simulated day: static thresholds with a baseline
/// whose floors are just under a small crowd.
const WEB_THRESHOLDS: &str = r#"thresholds = { all = { pps = 100000, bps = "1G" } }"#;
const WEB_BASELINE: &str = r#"baseline = { k = 4.0, window = "5m", floor = { all = { pps = 20000, bps = "160M" }, tcp_syn = { pps = 5000 } }, ceiling = { all = { pps = 1000000, bps = "8G" } } }"#;

#[test]
fn small_crowds_sampled_sparsely_are_not_judged_on_what_a_few_samples_share() {
    // A 2 kpps server whose clients bring it to 25-45 kpps for ten
    // minutes: just over the 20 kpps floor, so each crossing rests on a
    // handful of samples at 1:4096 and 1:16384. Those few share a TCP flags
    // value, or a few client ports, by chance; a match narrowed on that
    // hits little of the normal traffic and made crowds look like attacks
    // (the simulated day's last false positives). Only narrowings the
    // samples make sure of count.
    let victim = "198.18.4.93";
    let cfg = with_group("web", "198.18.4.0/24", &[WEB_THRESHOLDS, WEB_BASELINE]);
    let mut crowds = 0;
    for rate in [4096.0, 16384.0] {
        for (seed, peak) in [(1u64, 25.0), (2, 35.0), (3, 45.0), (4, 25.0), (5, 35.0)] {
            let traffic = |p: u32| {
                let crowd = match p {
                    0..600 => 1.0,
                    600..720 => 1.0 + (peak - 1.0) * f64::from(p - 600) / 120.0,
                    720..1200 => peak,
                    _ => 1.0,
                };
                web(victim, 1_000.0 * crowd)
            };
            let mut sim = Sim::new(&cfg).sampled(rate, true).seeded(seed);
            sim.run(1300, traffic);
            assert!(
                sim.log.is_empty(),
                "1:{rate} seed {seed} peak {peak}: {}",
                sim.story()
            );
            crowds += sim.det.stats().flash_crowd_polls;
        }
    }
    // The crowds did cross: they were judged, and judged crowds.
    assert!(crowds > 0, "no crowd ever crossed a threshold");
}

#[test]
fn a_sub_ceiling_ack_flood_on_a_web_server_is_an_attack_at_1_in_16384() {
    // The other side of judging crowds on what the samples make sure of:
    // 80 kpps of bare ACKs to 443 (normal ACKs are half the server's
    // traffic, at other lengths) is under the ceiling, so only its shape
    // tells it from a crowd; its samples make its length sure, twice a
    // fingerprint window apart, within seconds of its confirmation.
    let victim = "198.18.4.94";
    let cfg = with_group("web", "198.18.4.0/24", &[WEB_THRESHOLDS, WEB_BASELINE]);
    let flood = vec![
        flow(victim, 80_000.0, ipproto::TCP)
            .dport(443)
            .flags(ACK)
            .len(40),
    ];
    let mut sim = Sim::new(&cfg).sampled(16384.0, true).seeded(7);
    sim.run(700, web_and_flood(victim, 2_000.0, |p| p >= 600, flood));
    let (poll, a) = sim.only_start();
    assert!((600..630).contains(&poll), "{}", sim.story());
    assert_eq!(a.victim.network(), victim.parse::<IpAddr>().unwrap());
    assert_eq!(
        a.fingerprint.flow.tcp_flags.map(|f| f.value),
        Some(ACK),
        "{}",
        sim.story()
    );
}

#[test]
fn a_quiet_server_sampled_1_in_16384_still_gets_a_normal_profile() {
    // 500 pps: one sample every 33 s, each a poll at 16 kpps, 33 times the
    // typical rate. Only the samples behind a rate make it a surge: none of
    // these is one, and they are what the server normally gets.
    let victim = "198.18.4.91";
    let baseline = r#"baseline = { k = 4.0, window = "2m", floor = { all = { pps = 5000 } } }"#;
    let cfg = with_group(
        "web",
        "198.18.4.0/24",
        &["thresholds = { all = { pps = 40000 } }", baseline],
    );
    let mut sim = Sim::new(&cfg).sampled(16384.0, true);
    sim.run(3000, |_| web(victim, 500.0));
    assert!(sim.log.is_empty(), "{}", sim.story());
    let n = sim.det.normal_samples(victim.parse().unwrap());
    // About 90 samples in all; surges would have kept every one out.
    assert!(n >= 40, "{n} normal samples; {:?}", sim.det.stats());
    // On the point estimate every sampled poll is a surge: no profile.
    let mut sim = Sim::new(&without_confidence(&cfg)).sampled(16384.0, true);
    sim.run(3000, |_| web(victim, 500.0));
    assert!(sim.det.normal_samples(victim.parse().unwrap()) <= 5);
}

#[test]
fn baseline_protects_a_busy_host_from_an_attack_below_the_static_threshold() {
    let victim = "198.18.4.81";
    let cfg = with_group(
        "web",
        "198.18.4.0/24",
        &[
            "thresholds = { all = { pps = 50000 } }",
            r#"baseline = { k = 4.0, window = "2m", floor = { all = { pps = 5000 } } }"#,
        ],
    );
    // Exact counters, the subject is the baseline: the point estimate
    // decides (at 1:1000 the 32 kpps against a ~27 kpps adaptive threshold
    // takes a few more polls to confirm).
    let mut sim = Sim::new(&without_confidence(&cfg));
    sim.run(300, |p| {
        let mut f = web(victim, 20_000.0 * (1.0 + 0.1 * (f64::from(p) * 0.7).sin()));
        if p > 250 {
            // 12 kpps of UDP: well under every static threshold.
            f.push(flow(victim, 12_000.0, ipproto::UDP).dport(27015).len(1200));
        }
        f
    });
    let story = sim.story();
    let (poll, a) = sim.only_start();
    assert!((251..=252).contains(&poll), "{story}");
    assert_eq!(a.trigger.class, TrafficClass::All);
    assert!(a.trigger.threshold < 30_000.0, "adaptive: {:?}", a.trigger);
    // UDP is only 37 % of the host's traffic, but all of the excess over
    // its normal traffic.
    assert_eq!(a.class, AttackClass::UdpFlood, "{story}");
    let fp = &a.fingerprint;
    assert_eq!(fp.flow.protocols, vec![ipproto::UDP], "{fp}");
    assert_eq!(fp.flow.destination_ports, vec![27015], "{fp}");
    assert!(fp.hits_normal < 0.01, "{fp}");
    assert!(fp.covers_attack >= 0.9, "{fp}");
}

#[test]
fn slow_ramp_fires_at_the_static_crossing_or_rides_the_baseline_to_its_ceiling() {
    let victim = "198.18.5.5";
    // UDP from 10 kpps, +2 kpps per poll: the raw rate reaches 100 kpps (the
    // UDP limit here) at poll 45.
    let ramp =
        |p: u32| vec![flow(victim, 10_000.0 + 2_000.0 * f64::from(p), ipproto::UDP).len(200)];
    let thresholds = "thresholds = { udp = { pps = 100000 }, all = { pps = 1000000 } }";
    // Exact counters, the subject is the ramp against static and adaptive
    // thresholds: the point estimate decides.
    let cfg = without_confidence(&with_group("ramp", "198.18.5.0/24", &[thresholds]));
    let mut sim = Sim::new(&cfg);
    sim.run(60, ramp);
    let story = sim.story();
    let (poll, a) = sim.only_start();
    assert!((45..=47).contains(&poll), "{story}");
    assert_eq!(a.class, AttackClass::UdpFlood);
    // At 1:1000 a 99.9 % bound over 100 kpps needs the ramp well past it:
    // about 4 sd of the ~110 samples a poll, some 10 polls later.
    let mut sim = Sim::new(&with_group("ramp", "198.18.5.0/24", &[thresholds]));
    sim.run(70, ramp);
    let (confirmed, _) = sim.only_start();
    assert!((50..=60).contains(&confirmed), "{}", sim.story());

    // With a baseline the threshold follows the ramp (mean + 3 sd stays
    // ahead of a linear ramp), until the ceiling: 300 kpps at poll 145.
    let baseline = r#"baseline = { k = 3.0, window = "20s", floor = { udp = { pps = 20000 } }, ceiling = { udp = { pps = 300000 } }, flash_crowd_similarity = 0.0 }"#;
    let cfg = without_confidence(&with_group(
        "ramp",
        "198.18.5.0/24",
        &[thresholds, baseline],
    ));
    let mut sim = Sim::new(&cfg);
    sim.run(160, ramp);
    let story = sim.story();
    let (poll, a) = sim.only_start();
    assert!((145..=147).contains(&poll), "{story}");
    assert_eq!(a.trigger.threshold, 300_000.0);
}

#[test]
fn carpet_bombing_a_24_is_one_aggregate_attack_on_the_block() {
    let cfg = with_group(
        "hosting",
        "198.18.3.0/24",
        &[
            r#"action = "flowspec_then_blackhole""#,
            "thresholds = { all = { pps = 20000 } }",
            "aggregate = { all = { pps = 300000 }, udp = { pps = 150000 } }",
        ],
    );
    let hosts: Vec<String> = (1..=254).map(|i| format!("198.18.3.{i}")).collect();
    let mut sim = Sim::new(&cfg);
    sim.run(30, |p| {
        let mut f = Vec::new();
        for (i, h) in hosts.iter().enumerate() {
            if i % 16 == 0 {
                f.extend(web(h, 500.0));
            }
            if p >= 11 {
                // 2 kpps of DNS responses to each host: 10 % of its own
                // threshold, 508 kpps on the /24.
                f.push(flow(h, 2_000.0, ipproto::UDP).sport(53).len(1200));
            }
        }
        f
    });
    let story = sim.story();
    let (poll, a) = sim.only_start();
    assert!((11..=12).contains(&poll), "{story}");
    assert_eq!(a.scope, Scope::Aggregate);
    assert_eq!(a.victim, "198.18.3.0/24".parse::<IpNet>().unwrap());
    assert_eq!(a.host_group, "hosting");
    assert_eq!(a.action, GroupAction::FlowspecThenBlackhole);
    assert_eq!(
        a.class,
        AttackClass::UdpAmplification { port: 53 },
        "{story}"
    );
    let fp = &a.fingerprint;
    assert_eq!(fp.flow.destination, a.victim);
    assert_eq!(fp.flow.protocols, vec![ipproto::UDP]);
    assert_eq!(fp.flow.source_ports, vec![53]);
    assert!(fp.covers_attack >= 0.9, "{fp}");
    assert!(fp.hits_normal <= 0.01, "no UDP before: {fp}");
    // Every host of the block is sampled during the attack.
    let watched = sim.det.watched();
    assert!(hosts.iter().all(|h| watched.contains(&h.parse().unwrap())));
}

#[test]
fn ipv6_udp_flood() {
    let victim = "2001:db8:1::10";
    let mut sim = Sim::new(BASE);
    let udp = flow(victim, 300_000.0, ipproto::UDP).len(512);
    sim.run(20, web_and_flood(victim, 500.0, |p| p >= 11, vec![udp]));
    let story = sim.story();
    let (poll, a) = sim.only_start();
    assert!((11..=12).contains(&poll), "{story}");
    assert_eq!(a.victim, "2001:db8:1::10/128".parse::<IpNet>().unwrap());
    assert_eq!(a.class, AttackClass::UdpFlood, "random ports: {story}");
    let fp = &a.fingerprint;
    assert_eq!(fp.flow.protocols, vec![ipproto::UDP]);
    assert!(fp.flow.source_ports.is_empty() && fp.flow.destination_ports.is_empty());
    assert_eq!(
        fp.flow.packet_length,
        Some(LengthRange { min: 512, max: 512 })
    );
    assert!(fp.covers_attack >= 0.95, "{fp}");
    assert!(a.pps > 250_000.0 && a.bps > 1e9, "{a:?}");
}

#[test]
fn a_counter_reset_mid_attack_gives_no_absurd_rate_and_no_flapping() {
    let victim: IpAddr = "198.18.1.10".parse().unwrap();
    let mut sim = Sim::new(BASE);
    let syn = flow("198.18.1.10", 200_000.0, ipproto::TCP)
        .dport(80)
        .flags(SYN);
    let flood = web_and_flood("198.18.1.10", 2000.0, |p| (11..=60).contains(&p), vec![syn]);
    sim.run(25, &flood);
    // The maps are re-created: every counter restarts from a small value.
    sim.totals.clear();
    sim.run(5, &flood);
    // The victim is evicted for one poll, then comes back from zero.
    let mut without = sim.counters();
    without.remove(&victim);
    sim.override_counters = Some(without);
    sim.step(&flood(sim.poll + 1));
    sim.totals.remove(&victim);
    for _ in 0..20 {
        sim.step(&flood(sim.poll + 1));
        for a in sim.det.attacks() {
            assert!(a.pps < 220_000.0 && a.peak_pps < 220_000.0, "{a:?}");
        }
    }
    let story = sim.story();
    assert_eq!(sim.started().len(), 1, "{story}");
    assert!(sim.ended().is_empty(), "{story}");
    // The reset is one gap; the eviction is silence, and the return from
    // zero a plain rate.
    assert_eq!(sim.det.stats().counter_gaps, 1, "{:?}", sim.det.stats());
    sim.run(20, &flood);
    assert_eq!(sim.started().len(), 1, "{}", sim.story());
    assert_eq!(sim.ended().len(), 1, "{}", sim.story());
}

#[test]
fn pulse_waves_are_one_attack_not_many() {
    let victim = "198.18.1.77";
    let mut sim = Sim::new(BASE);
    // 3 s on, 4 s off, for a minute.
    let memcached = flow(victim, 500_000.0, ipproto::UDP).sport(11211).len(1400);
    let pulse = |p: u32| (10..70).contains(&p) && p % 7 < 3;
    sim.run(80, web_and_flood(victim, 1000.0, pulse, vec![memcached]));
    let story = sim.story();
    assert_eq!(sim.started().len(), 1, "{story}");
    assert_eq!(
        sim.started()[0].1.class,
        AttackClass::UdpAmplification { port: 11211 }
    );
    // The smoothed UDP rate (time constant 2 s) swings between 54 kpps
    // before a pulse and 400 kpps after it: always above the release level
    // (35 kpps), so the pulses are one attack. After the last pulse (polls
    // 63-65) it is 243k, 147k, 89k, 54k, then 33k at poll 70: last active
    // 69, 5 s hold, ends at 74.
    assert_eq!(sim.ended().len(), 1, "{story}");
    assert_eq!(sim.ended()[0].0, 74, "{story}");
    assert_eq!(sim.started()[0].0, 15, "first pulse at 14, sampled from 15");
}

#[test]
fn destinations_outside_the_own_networks_never_make_an_event() {
    let mut sim = Sim::new(BASE);
    sim.run(30, |_| {
        vec![
            flow("192.0.2.10", 5_000_000.0, ipproto::UDP),
            flow("2001:db9::1", 5_000_000.0, ipproto::TCP).flags(SYN),
        ]
    });
    assert!(sim.log.is_empty(), "{}", sim.story());
    assert!(sim.det.watched().is_empty());
    assert!(sim.det.attacks().is_empty());
    assert_eq!(sim.det.stats().destinations, 0, "no state kept for them");
}

#[test]
fn decisions_stay_within_two_polls_at_100ms() {
    // The counters here are exact and the subject is the two-interval rule:
    // the point estimate decides. (At 1:1000, 12 kpps is 1.2 samples per
    // 100 ms: no 32 of them could confirm it.)
    let cfg =
        without_confidence(BASE).replace("poll_interval = \"1s\"", "poll_interval = \"100ms\"");
    let victim = "198.18.1.99";
    let mut sim = Sim::new(&cfg);
    // Just above the threshold: the smoothed rate would take several polls;
    // the two-interval rule decides at the second.
    let icmp = flow(victim, 12_000.0, ipproto::ICMP).len(84);
    sim.run(40, web_and_flood(victim, 1000.0, |p| p >= 21, vec![icmp]));
    let story = sim.story();
    let (poll, a) = sim.only_start();
    assert!((21..=22).contains(&poll), "{story}");
    assert_eq!(a.class, AttackClass::IcmpFlood);
    assert_eq!(a.fingerprint.flow.protocols, vec![ipproto::ICMP]);
}

#[test]
fn fragment_flood_is_ip_fragmentation_with_a_fragment_match() {
    let victim = "198.18.1.50";
    let mut sim = Sim::new(BASE);
    let fragments = vec![
        flow(victim, 20_000.0, ipproto::UDP)
            .dport(7777)
            .len(1500)
            .frag(Frag::First),
        flow(victim, 40_000.0, ipproto::UDP)
            .len(1500)
            .frag(Frag::Later),
    ];
    sim.run(20, web_and_flood(victim, 1000.0, |p| p >= 11, fragments));
    let story = sim.story();
    let (_, a) = sim.only_start();
    assert_eq!(a.class, AttackClass::IpFragmentation, "{story}");
    assert_eq!(
        a.fingerprint.flow.fragment,
        Some(FragmentMatch::Any),
        "{}",
        a.fingerprint
    );
    assert!(
        a.fingerprint.flow.destination_ports.is_empty(),
        "later fragments have no ports"
    );
}

#[test]
fn a_single_source_flood_names_its_source_and_events_serialize() {
    let victim = "198.18.1.60";
    let mut sim = Sim::new(BASE);
    let udp = flow(victim, 150_000.0, ipproto::UDP)
        .from("203.0.113.9")
        .len(1000);
    sim.run(15, web_and_flood(victim, 1000.0, |p| p >= 6, vec![udp]));
    let (_, a) = sim.only_start();
    assert_eq!(
        a.fingerprint.flow.source,
        Some("203.0.113.9/32".parse().unwrap())
    );
    let json = serde_json::to_string(&Event::AttackStarted(a.clone())).unwrap();
    assert!(json.contains(r#""event":"attack_started""#), "{json}");
    assert!(json.contains(r#""type":"udp_flood""#), "{json}");
    let back: Event = serde_json::from_str(&json).unwrap();
    assert_eq!(back.attack(), a);
}

#[test]
fn amplification_is_named_under_more_normal_udp_than_attack() {
    // A resolver with 100 kpps of queries (its group allows 200 kpps of
    // UDP) receives 120 kpps of NTP: the reflected traffic is only 55 % of
    // its UDP, but nearly all of the excess over normal.
    let victim = "198.18.6.53";
    let cfg = with_group(
        "resolvers",
        "198.18.6.0/24",
        &["thresholds = { udp = { pps = 200000 }, all = { pps = 1000000 } }"],
    );
    // On the point estimate (counters taken as exact): the smoothed rate
    // (147 kpps) is not over at 31, the two-interval rule decides at 32.
    let traffic = |p: u32| {
        let mut f = vec![flow(victim, 100_000.0, ipproto::UDP).dport(53).len(80)];
        if p >= 31 {
            f.push(flow(victim, 120_000.0, ipproto::UDP).sport(123).len(468));
        }
        f
    };
    let mut sim = Sim::new(&without_confidence(&cfg));
    sim.run(40, traffic);
    assert!((31..=32).contains(&sim.only_start().0), "{}", sim.story());
    let mut sim = Sim::new(&cfg);
    sim.run(40, |p| {
        let mut f = vec![flow(victim, 100_000.0, ipproto::UDP).dport(53).len(80)];
        if p >= 31 {
            f.push(flow(victim, 120_000.0, ipproto::UDP).sport(123).len(468));
        }
        f
    });
    let story = sim.story();
    let (poll, a) = sim.only_start();
    // Crossing at 31, 10 % over the UDP threshold: at 1:1000 that is 220
    // samples a second, and a 99.9 % bound above 200 kpps takes about 1100
    // of them: the first run of w intervals from 31 that confirms.
    let z = confidence::normal_quantile(0.999);
    let w = (1..=32)
        .find(|&w| confidence::rate_lower(220_000.0, 220.0 * f64::from(w), z) >= 200_000.0)
        .expect("confirmable");
    assert_eq!(poll, 30 + w, "{story}");
    assert!(w >= 4, "{w}");
    assert_eq!(
        a.class,
        AttackClass::UdpAmplification { port: 123 },
        "{story}"
    );
    assert_eq!(a.fingerprint.flow.source_ports, vec![123], "{story}");
    assert!(a.fingerprint.hits_normal < 0.01, "{story}");
    assert!(a.fingerprint.covers_attack >= 0.9, "{story}");
}

#[test]
fn garbage_counters_and_samples_never_panic_nor_leave_the_own_networks() {
    let mut sim = Sim::new(BASE);
    let own: Vec<IpNet> = vec![
        "198.18.0.0/15".parse().unwrap(),
        "2001:db8::/32".parse().unwrap(),
    ];
    let dsts: Vec<IpAddr> = [
        "198.18.0.1",
        "198.18.0.2",
        "198.19.255.255",
        "2001:db8::1",
        "192.0.2.1",
        "::ffff:198.18.0.1",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    let pick = [0, 1, u64::MAX, u64::MAX / 2, 1 << 40, 12345];
    let mut events = 0;
    for poll in 1..=300u32 {
        let mut counters = BTreeMap::new();
        for ip in &dsts {
            if sim.next().is_multiple_of(5) {
                continue;
            }
            let mut s = DstStats::default();
            for i in 0..Class::COUNT {
                let r = sim.next();
                s.packets[i] = if r.is_multiple_of(3) {
                    pick[(r >> 8) as usize % pick.len()]
                } else {
                    u64::from(poll) * (r >> 40)
                };
                s.bytes[i] = s.packets[i].wrapping_mul(r % 1600);
            }
            counters.insert(*ip, s);
        }
        let samples: Vec<Sample> = (0..(sim.next() % 50))
            .map(|_| {
                let r = sim.next();
                Sample {
                    dst: dsts[r as usize % dsts.len()],
                    src: dsts[(r >> 8) as usize % dsts.len()],
                    protocol: (r >> 16) as u8,
                    src_port: (r >> 24) as u16,
                    dst_port: (r >> 40) as u16,
                    tcp_flags: (r >> 56) as u8,
                    icmp_type: (r & 4 == 0).then_some((r >> 48) as u8),
                    fragment: r & 1 == 0,
                    later_fragment: r & 2 == 0,
                    packet_len: (r >> 3) as u16,
                    packets: pick[(r >> 5) as usize % pick.len()],
                    bytes: pick[(r >> 7) as usize % pick.len()],
                    sampled: 1 + (r >> 9) % 3,
                }
            })
            .collect();
        // Irregular clocks too: sometimes twice the same instant.
        let now = Duration::from_millis(u64::from(poll) * 1000 - (sim.next() % 2) * 1000);
        for e in sim.det.poll(now, &counters, &samples) {
            events += 1;
            let a = e.attack();
            assert!(own.iter().any(|n| n.contains(&a.victim)), "{a:?}");
            for v in [a.pps, a.bps, a.peak_pps, a.peak_bps] {
                assert!(v.is_finite() && (0.0..=1e14).contains(&v), "{a:?}");
            }
            let fp = &a.fingerprint;
            assert!((0.0..=1.0).contains(&fp.covers_attack), "{fp:?}");
            assert!((0.0..=1.0).contains(&fp.hits_normal), "{fp:?}");
        }
        assert!(
            sim.det
                .watched()
                .iter()
                .all(|ip| own.iter().any(|n| n.contains(ip)))
        );
    }
    // The garbage did cross thresholds: the checks above saw events.
    assert!(events > 0);
}

#[test]
fn a_vector_change_updates_the_attack_once() {
    let victim = "198.18.1.88";
    let mut sim = Sim::new(BASE);
    sim.run(50, |p| {
        let mut f = web(victim, 2000.0);
        match p {
            11..=25 => f.push(flow(victim, 200_000.0, ipproto::TCP).dport(443).flags(SYN)),
            26..=40 => f.push(flow(victim, 300_000.0, ipproto::UDP).sport(1900).len(320)),
            _ => {}
        }
        f
    });
    let story = sim.story();
    assert_eq!(sim.started().len(), 1, "{story}");
    assert_eq!(
        sim.started()[0].1.class,
        AttackClass::TcpSynFlood,
        "{story}"
    );
    let updated = sim.updated();
    assert_eq!(updated.len(), 1, "one revision, no churn: {story}");
    let (poll, a) = updated[0];
    assert!((26..=27).contains(&poll), "{story}");
    assert_eq!(a.class, AttackClass::UdpAmplification { port: 1900 });
    assert_eq!(a.fingerprint.flow.source_ports, vec![1900]);
    assert_eq!(a.id, sim.started()[0].1.id);
}

#[test]
fn without_samples_the_counters_still_decide_and_fingerprint() {
    let victim = "198.18.1.30";
    let mut sim = Sim::new(BASE);
    sim.sampling = false;
    let syn = flow(victim, 200_000.0, ipproto::TCP).dport(80).flags(SYN);
    sim.run(20, web_and_flood(victim, 2000.0, |p| p >= 11, vec![syn]));
    let story = sim.story();
    let (poll, a) = sim.only_start();
    assert!((11..=12).contains(&poll), "{story}");
    assert_eq!(a.class, AttackClass::TcpSynFlood);
    let fp = &a.fingerprint;
    assert_eq!(fp.basis, Basis::Counters);
    assert_eq!(fp.flow.protocols, vec![ipproto::TCP]);
    assert_eq!(
        fp.flow.tcp_flags,
        Some(TcpFlagsMatch {
            value: SYN,
            mask: SYN | ACK
        })
    );
    assert!(fp.covers_attack > 0.95, "SYN share of the traffic: {fp}");
    assert!(fp.hits_normal < 0.1, "SYN share before: {fp}");
    assert!(sim.updated().is_empty(), "{story}");
}

#[test]
fn the_watch_list_is_capped_victims_first_then_by_ratio() {
    let cfg = with("[watch]\nmax = 2\n");
    let mut sim = Sim::new(&cfg);
    // Five hosts at 55..95 % of the UDP threshold, one under attack.
    sim.run(10, |p| {
        let mut f: Vec<Flow> = (0..5)
            .map(|i| {
                flow(
                    &format!("198.18.7.{}", i + 1),
                    27_500.0 + 5_000.0 * f64::from(i),
                    ipproto::UDP,
                )
            })
            .collect();
        if p >= 5 {
            f.push(flow("198.18.7.100", 500_000.0, ipproto::UDP));
        }
        f
    });
    assert_eq!(sim.started().len(), 1, "{}", sim.story());
    let watched: Vec<String> = sim.det.watched().iter().map(|ip| ip.to_string()).collect();
    assert_eq!(watched, vec!["198.18.7.5", "198.18.7.100"]);
    assert_eq!(sim.det.stats().watched, 2);
}

#[test]
fn a_single_host_flood_is_not_also_an_attack_on_its_block() {
    let cfg = with_group(
        "hosting",
        "198.18.3.0/24",
        &[
            "thresholds = { all = { pps = 20000 } }",
            "aggregate = { all = { pps = 300000 } }",
        ],
    );
    let mut sim = Sim::new(&cfg);
    sim.run(30, |p| {
        let mut f: Vec<Flow> = (1..=20)
            .flat_map(|i| web(&format!("198.18.3.{i}"), 2000.0))
            .collect();
        if p >= 11 {
            f.push(
                flow("198.18.3.7", 800_000.0, ipproto::UDP)
                    .sport(53)
                    .len(1200),
            );
        }
        f
    });
    let (_, a) = sim.only_start();
    assert_eq!(a.scope, Scope::Host);
    assert_eq!(a.victim, "198.18.3.7/32".parse::<IpNet>().unwrap());
}

/// `cfg` with the confidence check off: the point estimate decides.
fn without_confidence(cfg: &str) -> String {
    cfg.replacen("poll_interval", "confidence = 0\npoll_interval", 1)
}

#[test]
fn three_samples_at_1_4096_are_not_an_attack() {
    let victim = "198.18.1.77";
    // A small host (200 pps of web) gets a burst: three ICMP samples in
    // each of two polls at 1:4096, 12 288 pps estimated against the
    // 10 kpps ICMP threshold. Six samples could as well be 1 kpps.
    let traffic = |p: u32| {
        let mut f = web(victim, 200.0);
        if (21..=22).contains(&p) {
            f.push(flow(victim, 3.0 * 4096.0, ipproto::ICMP).len(84));
        }
        f
    };
    let mut sim = Sim::new(BASE).sampled(4096.0, false);
    sim.run(40, traffic);
    assert!(sim.started().is_empty(), "{}", sim.story());
    // On the point estimate alone, the same six samples are an attack.
    let mut sim = Sim::new(&without_confidence(BASE)).sampled(4096.0, false);
    sim.run(40, traffic);
    let (poll, a) = sim.only_start();
    assert_eq!((poll, a.class), (22, AttackClass::IcmpFlood));
}

#[test]
fn a_1_mpps_flood_at_1_4096_starts_as_soon_as_its_samples_arrive() {
    let victim = "198.18.1.78";
    let flood = flow(victim, 1e6, ipproto::UDP).dport(80).len(512);
    for cfg in [BASE.to_string(), without_confidence(BASE)] {
        let mut sim = Sim::new(&cfg).sampled(4096.0, true);
        sim.run(30, web_and_flood(victim, 2000.0, |p| p >= 21, vec![flood]));
        let story = sim.story();
        let (poll, a) = sim.only_start();
        // Crossing at 21, not watched yet: one poll for the samples, and
        // 244 samples a poll confirm at once.
        assert_eq!(poll, 22, "{story}");
        assert_eq!(a.class, AttackClass::UdpFlood, "{story}");
        assert_eq!(a.fingerprint.flow.destination_ports, vec![80], "{story}");
    }
}

#[test]
fn a_flood_that_crossed_unwatched_starts_between_polls_once_its_samples_are_in() {
    let victim = "198.18.1.78";
    let flood = |pps: f64| flow(victim, pps, ipproto::UDP).dport(80).len(512);
    // As the daemon runs it: a quarter interval after a poll that left a
    // victim waiting for samples, the samples streamed since.
    let run = |cfg: &str, rate: f64, pps: f64| {
        let mut sim = Sim::new(cfg).sampled(rate, false);
        let traffic = web_and_flood(victim, 2000.0, |p| p >= 21, vec![flood(pps)]);
        for _ in 0..30 {
            sim.step(&traffic(sim.poll + 1));
            if sim.det.samples_awaited() {
                sim.between_polls(0.25, &traffic(sim.poll + 1));
            }
        }
        sim
    };
    // 1 Mpps at 1:1000 and at 1:4096: crossing at poll 21 unwatched, 250
    // and 61 samples in the next quarter second: started then, on poll
    // 21's rates, not at poll 22.
    for rate in [1000.0, 4096.0] {
        let sim = run(BASE, rate, 1e6);
        let story = sim.story();
        let (poll, a) = sim.only_start();
        assert_eq!(poll, 21, "1:{rate}: {story}");
        assert_eq!(a.started_s, 21.25, "{story}");
        assert_eq!(a.class, AttackClass::UdpFlood, "{story}");
        assert_eq!(a.fingerprint.flow.destination_ports, vec![80], "{story}");
        assert_eq!(a.fingerprint.basis, Basis::Samples, "{story}");
    }
    // 200 kpps at 1:16384 (the point estimate deciding): 12 samples a
    // second, 3 in the quarter, fewer than `min_samples`; the start waits
    // for the next poll, as it always did.
    let sim = run(&without_confidence(BASE), 16384.0, 200_000.0);
    let story = sim.story();
    let (poll, a) = sim.only_start();
    assert_eq!(poll, 22, "{story}");
    assert_eq!(a.started_s, 22.0, "{story}");
    assert_eq!(a.fingerprint.basis, Basis::Samples, "{story}");
}

#[test]
fn a_rate_just_over_its_threshold_at_1_16384_waits_for_the_samples_that_confirm_it() {
    let victim = "198.18.1.79";
    // 80 kpps of UDP against the 50 kpps threshold: 4.9 samples a second.
    let flood = flow(victim, 80_000.0, ipproto::UDP).dport(9).len(100);
    let traffic = web_and_flood(victim, 500.0, |p| p >= 21, vec![flood]);
    let mut sim = Sim::new(&without_confidence(BASE)).sampled(16384.0, false);
    sim.run(60, &traffic);
    assert_eq!(sim.only_start().0, 22, "{}", sim.story());

    // With 99.9 % confidence: the first run of w intervals whose samples
    // bound the rate above 50 kpps (the history starts at poll 22, the
    // first at the release level).
    let z = confidence::normal_quantile(0.999);
    let w = (1..=32)
        .find(|&w| {
            let k = 80_000.0 * f64::from(w) / 16384.0;
            confidence::rate_lower(80_000.0, k, z) >= 50_000.0
        })
        .expect("confirmable within 32 intervals");
    let expected = 21 + w;
    let mut sim = Sim::new(BASE).sampled(16384.0, false);
    sim.run(60, &traffic);
    let story = sim.story();
    let (poll, a) = sim.only_start();
    assert!(w >= 8, "{w}");
    assert!(
        (expected - 1..=expected + 1).contains(&poll),
        "expected poll {expected}\n{story}"
    );
    assert_eq!(a.class, AttackClass::UdpFlood, "{story}");
}

#[test]
fn sampling_noise_at_1_16384_is_not_an_attack() {
    let victim = "198.18.1.80";
    // 30 kpps of DNS answers (60 % of the UDP threshold): 1.8 samples a
    // second, so single polls often "measure" 65 or 82 kpps.
    let dns = |_: u32| vec![flow(victim, 30_000.0, ipproto::UDP).sport(53).len(120)];
    let mut sim = Sim::new(BASE).sampled(16384.0, true);
    sim.run(3000, dns);
    assert!(sim.started().is_empty(), "{}", sim.story());
    // On the point estimate, the noise is a string of attacks.
    let mut sim = Sim::new(&without_confidence(BASE)).sampled(16384.0, true);
    sim.run(3000, dns);
    assert!(sim.started().len() >= 3, "{}", sim.story());
}
