//! Fingerprints: the narrowest Flow Spec-shaped match (RFC 8955 §4.2.2,
//! RFC 8956 §3) that still covers most of an attack, built from the packet
//! samples the kernel streams for watched destinations.
//!
//! The match is grown greedily in Flow Spec component order (protocol,
//! ports, TCP flags, packet length, fragment, source prefix): a component is
//! added only with the fewest values that keep the whole match covering the
//! configured share of the recent traffic. The share of the destination's
//! normal traffic the match would also hit is measured on the samples seen
//! before the attack, or bounded from the class counters when there are none.
//!
//! Nothing here knows BGP encodings; the mitigation side converts.

use std::{
    collections::{BTreeMap, VecDeque},
    fmt,
    net::IpAddr,
    time::Duration,
};

use edge_sensor_common::proto::{ipproto, tcp_flags};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::config::FingerprintConfig;

/// One sampled packet (or flow record) to a watched destination, as the
/// caller converts it from the kernel's sample stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// Destination address (the victim candidate).
    pub dst: IpAddr,
    /// Source address.
    pub src: IpAddr,
    /// IP protocol (IPv6: the upper-layer protocol after extension headers).
    pub protocol: u8,
    /// Transport ports; 0 when unknown (later fragments, non-TCP/UDP).
    pub src_port: u16,
    pub dst_port: u16,
    /// TCP flags byte (RFC 9293 §3.1); 0 for other protocols.
    pub tcp_flags: u8,
    /// Any fragment, first or later.
    pub fragment: bool,
    /// A fragment with offset != 0: its ports and flags are unknown.
    pub later_fragment: bool,
    /// Bytes of one packet on the wire (IP total length).
    pub packet_len: u16,
    /// Packets this sample stands for, already scaled by sampling.
    pub packets: u64,
    /// Bytes this sample stands for, scaled.
    pub bytes: u64,
}

impl Sample {
    fn weight(&self) -> f64 {
        self.packets.max(1) as f64
    }

    /// Ports and flags are readable: TCP or UDP, and not a later fragment.
    fn has_ports(&self) -> bool {
        !self.later_fragment && matches!(self.protocol, ipproto::TCP | ipproto::UDP)
    }

    fn fragment_kind(&self) -> FragmentMatch {
        match (self.fragment, self.later_fragment) {
            (false, _) => FragmentMatch::NotFragment,
            (true, false) => FragmentMatch::First,
            (true, true) => FragmentMatch::Later,
        }
    }
}

/// The fragment component (RFC 8955 §4.2.2.12 bits IsF, FF).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FragmentMatch {
    /// Not a fragment (`!IsF`).
    NotFragment,
    /// Any fragment (`IsF`).
    Any,
    /// First fragment (`FF`).
    First,
    /// Later fragments (`IsF && !FF`): they carry no ports.
    Later,
}

impl FragmentMatch {
    fn matches(self, s: &Sample) -> bool {
        match self {
            Self::Any => s.fragment,
            other => s.fragment_kind() == other,
        }
    }
}

/// TCP flags component: `flags & mask == value` (RFC 8955 §4.2.2.9 bitmask
/// operators).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpFlagsMatch {
    pub value: u8,
    pub mask: u8,
}

/// Packet length component, inclusive (RFC 8955 §4.2.2.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LengthRange {
    pub min: u16,
    pub max: u16,
}

/// A Flow Spec-shaped match. Empty lists and `None` match anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowMatch {
    /// Destination prefix: the victim host (/32, /128) or block.
    pub destination: IpNet,
    /// Source prefix, when the attack comes from one.
    pub source: Option<IpNet>,
    /// IP protocols (any of).
    pub protocols: Vec<u8>,
    /// Source ports (any of); only packets with readable ports match.
    pub source_ports: Vec<u16>,
    pub destination_ports: Vec<u16>,
    pub tcp_flags: Option<TcpFlagsMatch>,
    pub packet_length: Option<LengthRange>,
    pub fragment: Option<FragmentMatch>,
}

impl FlowMatch {
    /// Everything to `destination`.
    pub fn any(destination: IpNet) -> Self {
        Self {
            destination,
            source: None,
            protocols: Vec::new(),
            source_ports: Vec::new(),
            destination_ports: Vec::new(),
            tcp_flags: None,
            packet_length: None,
            fragment: None,
        }
    }

    /// Whether a router applying this match would take the sampled packet.
    /// Port and flag components never match a packet whose ports are
    /// unknown (RFC 8955 §4.2.2.5: later fragments have none).
    pub fn matches(&self, s: &Sample) -> bool {
        self.destination.contains(&s.dst)
            && self.source.is_none_or(|p| p.contains(&s.src))
            && (self.protocols.is_empty() || self.protocols.contains(&s.protocol))
            && (self.source_ports.is_empty()
                || (s.has_ports() && self.source_ports.contains(&s.src_port)))
            && (self.destination_ports.is_empty()
                || (s.has_ports() && self.destination_ports.contains(&s.dst_port)))
            && self.tcp_flags.is_none_or(|f| {
                s.has_ports() && s.protocol == ipproto::TCP && s.tcp_flags & f.mask == f.value
            })
            && self
                .packet_length
                .is_none_or(|r| (r.min..=r.max).contains(&s.packet_len))
            && self.fragment.is_none_or(|f| f.matches(s))
    }
}

/// Where the match was learnt from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// The packet samples of the last fingerprint window.
    Samples,
    /// Too few samples: from the class counters (protocol, SYN, fragments).
    Counters,
}

/// How `hits_normal` was estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormalBasis {
    /// Measured on samples of the destination's traffic before the attack.
    Samples,
    /// An upper bound from the pre-attack class counters (the match's
    /// protocol, SYN and fragment parts only).
    ClassShares,
    /// No traffic was seen before the attack.
    NoTraffic,
}

/// A match for an attack, with how well it fits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    #[serde(rename = "match")]
    pub flow: FlowMatch,
    /// Share (by packets) of the destination's recent traffic the match
    /// covers: the attack and whatever legitimate traffic is mixed in.
    pub covers_attack: f64,
    /// Share (by packets) of the destination's normal traffic the match
    /// would also hit.
    pub hits_normal: f64,
    pub basis: Basis,
    pub normal_basis: NormalBasis,
    /// Recent samples the match was learnt from.
    pub samples: u32,
}

impl fmt::Display for FlowMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dst {}", self.destination)?;
        if let Some(src) = self.source {
            write!(f, " src {src}")?;
        }
        if !self.protocols.is_empty() {
            let names: Vec<String> = self.protocols.iter().map(|&p| protocol_name(p)).collect();
            write!(f, " proto {}", names.join(","))?;
        }
        if !self.source_ports.is_empty() {
            write!(f, " src-port {}", join(&self.source_ports))?;
        }
        if !self.destination_ports.is_empty() {
            write!(f, " dst-port {}", join(&self.destination_ports))?;
        }
        if let Some(t) = self.tcp_flags {
            if t.mask == 0xff {
                write!(f, " tcp-flags ={}", flag_letters(t.value))?;
            } else {
                write!(
                    f,
                    " tcp-flags {}/{}",
                    flag_letters(t.value),
                    flag_letters(t.mask)
                )?;
            }
        }
        if let Some(r) = self.packet_length {
            if r.min == r.max {
                write!(f, " len {}", r.min)?;
            } else {
                write!(f, " len {}-{}", r.min, r.max)?;
            }
        }
        if let Some(frag) = self.fragment {
            f.write_str(match frag {
                FragmentMatch::NotFragment => " not-fragment",
                FragmentMatch::Any => " fragment",
                FragmentMatch::First => " first-fragment",
                FragmentMatch::Later => " later-fragment",
            })?;
        }
        Ok(())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (covers {:.0}% of recent traffic, hits {}{:.0}% of normal; from {})",
            self.flow,
            self.covers_attack * 100.0,
            if self.normal_basis == NormalBasis::ClassShares {
                "at most "
            } else {
                ""
            },
            self.hits_normal * 100.0,
            match self.basis {
                Basis::Samples => format!("{} samples", self.samples),
                Basis::Counters => "counters".to_string(),
            }
        )
    }
}

fn join(ports: &[u16]) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn protocol_name(p: u8) -> String {
    match p {
        ipproto::TCP => "tcp".into(),
        ipproto::UDP => "udp".into(),
        ipproto::ICMP => "icmp".into(),
        ipproto::ICMPV6 => "icmpv6".into(),
        other => other.to_string(),
    }
}

fn flag_letters(v: u8) -> String {
    // RFC 9293 §3.1 order, high bit first: CWR ECE URG ACK PSH RST SYN FIN.
    let letters = [
        (0x80, 'C'),
        (0x40, 'E'),
        (0x20, 'U'),
        (0x10, 'A'),
        (0x08, 'P'),
        (0x04, 'R'),
        (0x02, 'S'),
        (0x01, 'F'),
    ];
    letters
        .iter()
        .filter(|(bit, _)| v & bit != 0)
        .map(|(_, l)| *l)
        .collect()
}

/// Recent and normal samples of one destination.
#[derive(Debug, Clone, Default)]
pub struct SampleStore {
    /// With the poll time they arrived at, oldest first.
    recent: VecDeque<(Duration, Sample)>,
    /// Older samples taken while the destination was not under attack.
    normal: VecDeque<Sample>,
}

impl SampleStore {
    pub fn push(&mut self, now: Duration, s: Sample, max: usize) {
        if self.recent.len() >= max {
            self.recent.pop_front();
        }
        self.recent.push_back((now, s));
    }

    /// Moves samples older than `window` out of the recent set: into the
    /// normal profile if `normal` (the destination is not under attack),
    /// else away.
    pub fn age(&mut self, now: Duration, window: Duration, normal: bool, max: usize) {
        while let Some(&(t, s)) = self.recent.front() {
            if t + window > now {
                break;
            }
            self.recent.pop_front();
            if normal {
                if self.normal.len() >= max {
                    self.normal.pop_front();
                }
                self.normal.push_back(s);
            }
        }
    }

    /// Forgets the recent samples (they were attack traffic).
    pub fn clear_recent(&mut self) {
        self.recent.clear();
    }

    pub fn recent(&self) -> impl Iterator<Item = &Sample> {
        self.recent.iter().map(|(_, s)| s)
    }

    pub fn normal(&self) -> impl Iterator<Item = &Sample> {
        self.normal.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.recent.is_empty() && self.normal.is_empty()
    }
}

/// Weighted share of `samples` that `m` matches; `None` without samples.
pub fn share(m: &FlowMatch, samples: &[&Sample]) -> Option<f64> {
    let total: f64 = samples.iter().map(|s| s.weight()).sum();
    (total > 0.0).then(|| {
        samples
            .iter()
            .filter(|s| m.matches(s))
            .map(|s| s.weight())
            .sum::<f64>()
            / total
    })
}

/// The narrowest match covering `cfg.coverage` of `recent` (which must not
/// be empty).
pub fn learn(destination: IpNet, recent: &[&Sample], cfg: &FingerprintConfig) -> FlowMatch {
    let total: f64 = recent.iter().map(|s| s.weight()).sum();
    let target = cfg.coverage * total;
    let mut m = FlowMatch::any(destination);
    let mut kept: Vec<&Sample> = recent.to_vec();

    if let Some(protocols) = fewest(&kept, 2, target, |s| Some(s.protocol)) {
        kept.retain(|s| protocols.contains(&s.protocol));
        m.protocols = protocols;
    }
    let ported = !m.protocols.is_empty()
        && m.protocols
            .iter()
            .all(|&p| p == ipproto::TCP || p == ipproto::UDP);
    if ported {
        if let Some(ports) = fewest(&kept, 4, target, |s| s.has_ports().then_some(s.src_port)) {
            kept.retain(|s| s.has_ports() && ports.contains(&s.src_port));
            m.source_ports = ports;
        }
        if let Some(ports) = fewest(&kept, 4, target, |s| s.has_ports().then_some(s.dst_port)) {
            kept.retain(|s| s.has_ports() && ports.contains(&s.dst_port));
            m.destination_ports = ports;
        }
    }
    if m.protocols == [ipproto::TCP] {
        // An exact flags value, else the kernel's notion of a SYN (SYN set,
        // ACK clear) whatever the other bits.
        let exact = fewest(&kept, 1, target, |s| s.has_ports().then_some(s.tcp_flags));
        let flags = match exact {
            Some(v) => Some(TcpFlagsMatch {
                value: v[0],
                mask: 0xff,
            }),
            None => {
                let syn = TcpFlagsMatch {
                    value: tcp_flags::SYN,
                    mask: tcp_flags::SYN | tcp_flags::ACK,
                };
                let w: f64 = kept
                    .iter()
                    .filter(|s| s.has_ports() && s.tcp_flags & syn.mask == syn.value)
                    .map(|s| s.weight())
                    .sum();
                (w >= target).then_some(syn)
            }
        };
        if let Some(f) = flags {
            kept.retain(|s| s.has_ports() && s.tcp_flags & f.mask == f.value);
            m.tcp_flags = Some(f);
        }
    }
    if let Some(range) = narrowest_length(&kept, target) {
        kept.retain(|s| (range.min..=range.max).contains(&s.packet_len));
        m.packet_length = Some(range);
    }
    if let Some(kinds) = fewest(&kept, 2, target, |s| Some(s.fragment_kind())) {
        let frag = match kinds.as_slice() {
            [FragmentMatch::First] => Some(FragmentMatch::First),
            [FragmentMatch::Later] => Some(FragmentMatch::Later),
            [a, b] if !kinds.contains(&FragmentMatch::NotFragment) && a != b => {
                Some(FragmentMatch::Any)
            }
            // Unfragmented traffic: saying so adds nothing worth a component.
            _ => None,
        };
        if let Some(f) = frag {
            kept.retain(|s| f.matches(s));
            m.fragment = Some(f);
        }
    }
    if let Some(source) = concentrated_source(&kept, target) {
        m.source = Some(source);
    }
    m
}

/// The fewest values of `key` (at most `max`) whose samples weigh at least
/// `target`; heaviest first, ties by value, returned sorted.
fn fewest<K: Ord + Copy>(
    samples: &[&Sample],
    max: usize,
    target: f64,
    key: impl Fn(&Sample) -> Option<K>,
) -> Option<Vec<K>> {
    let mut weights: BTreeMap<K, f64> = BTreeMap::new();
    for s in samples {
        if let Some(k) = key(s) {
            *weights.entry(k).or_default() += s.weight();
        }
    }
    let mut ranked: Vec<(K, f64)> = weights.into_iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut sum = 0.0;
    let mut chosen = Vec::new();
    for (k, w) in ranked.into_iter().take(max) {
        sum += w;
        chosen.push(k);
        if sum >= target {
            chosen.sort();
            return Some(chosen);
        }
    }
    None
}

/// The narrowest length interval weighing at least `target`, if it is
/// narrow enough to tell the attack apart: at most half the spread of the
/// lengths seen (or a single length).
fn narrowest_length(samples: &[&Sample], target: f64) -> Option<LengthRange> {
    let mut by_len: BTreeMap<u16, f64> = BTreeMap::new();
    for s in samples {
        *by_len.entry(s.packet_len).or_default() += s.weight();
    }
    let lens: Vec<(u16, f64)> = by_len.into_iter().collect();
    let (first, last) = (lens.first()?.0, lens.last()?.0);
    let mut best: Option<LengthRange> = None;
    let (mut lo, mut sum) = (0, 0.0);
    for hi in 0..lens.len() {
        sum += lens[hi].1;
        while lo < hi && sum - lens[lo].1 >= target {
            sum -= lens[lo].1;
            lo += 1;
        }
        if sum >= target {
            let r = LengthRange {
                min: lens[lo].0,
                max: lens[hi].0,
            };
            if best.is_none_or(|b| r.max - r.min < b.max - b.min) {
                best = Some(r);
            }
        }
    }
    let best = best?;
    let spread = last - first;
    (spread == 0 || (best.max - best.min) <= spread / 2).then_some(best)
}

/// The most specific source prefix holding `target` of the weight, from a
/// few operational lengths (host, /24, /16; IPv6 /128, /64, /48, /32).
fn concentrated_source(samples: &[&Sample], target: f64) -> Option<IpNet> {
    const V4: [u8; 3] = [32, 24, 16];
    const V6: [u8; 4] = [128, 64, 48, 32];
    for depth in 0..4 {
        let mut weights: BTreeMap<IpNet, f64> = BTreeMap::new();
        for s in samples {
            let len = match s.src {
                IpAddr::V4(_) => V4.get(depth),
                IpAddr::V6(_) => V6.get(depth),
            };
            if let Some(&len) = len
                && let Ok(net) = IpNet::new(s.src, len)
            {
                *weights.entry(net.trunc()).or_default() += s.weight();
            }
        }
        if let Some((net, _)) = weights
            .into_iter()
            .filter(|(_, w)| *w >= target)
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
        {
            return Some(net);
        }
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample(src: &str, protocol: u8, sport: u16, dport: u16, len: u16) -> Sample {
        Sample {
            dst: "198.18.1.10".parse().unwrap(),
            src: src.parse().unwrap(),
            protocol,
            src_port: sport,
            dst_port: dport,
            tcp_flags: 0,
            fragment: false,
            later_fragment: false,
            packet_len: len,
            packets: 1000,
            bytes: 1000 * u64::from(len),
        }
    }

    fn dst() -> IpNet {
        "198.18.1.10/32".parse().unwrap()
    }

    #[test]
    fn amplification_gets_protocol_source_port_and_length() {
        let mut v = Vec::new();
        for i in 0..40u16 {
            v.push(sample(
                &format!("{}.{}.0.{}", 20 + i * 5, i % 7, i),
                17,
                123,
                1024 + i * 37,
                468,
            ));
        }
        v.push(sample("192.0.2.1", 6, 51000, 443, 60));
        let refs: Vec<&Sample> = v.iter().collect();
        let m = learn(dst(), &refs, &FingerprintConfig::default());
        assert_eq!(m.protocols, vec![17]);
        assert_eq!(m.source_ports, vec![123]);
        assert!(m.destination_ports.is_empty(), "{m}");
        assert_eq!(m.packet_length, Some(LengthRange { min: 468, max: 468 }));
        assert_eq!(m.source, None, "reflectors are many");
        assert_eq!(
            m.to_string(),
            "dst 198.18.1.10/32 proto udp src-port 123 len 468"
        );
        let cover = share(&m, &refs).unwrap();
        assert!((cover - 40.0 / 41.0).abs() < 1e-9);
    }

    #[test]
    fn a_single_source_is_named() {
        let v: Vec<Sample> = (0..20)
            .map(|i| sample("192.0.2.77", 17, 40000 + i, 80 + i, 100 + i * 50))
            .collect();
        let refs: Vec<&Sample> = v.iter().collect();
        let m = learn(dst(), &refs, &FingerprintConfig::default());
        assert_eq!(m.source, Some("192.0.2.77/32".parse().unwrap()));
        assert!(m.source_ports.is_empty() && m.destination_ports.is_empty());
    }

    #[test]
    fn later_fragments_never_match_ports() {
        let mut s = sample("192.0.2.1", 17, 53, 4000, 1500);
        let m = FlowMatch {
            source_ports: vec![53],
            ..FlowMatch::any(dst())
        };
        assert!(m.matches(&s));
        s.fragment = true;
        s.later_fragment = true;
        assert!(!m.matches(&s));
        assert!(
            FlowMatch {
                fragment: Some(FragmentMatch::Later),
                ..FlowMatch::any(dst())
            }
            .matches(&s)
        );
    }

    #[test]
    fn aged_samples_become_normal_only_outside_attacks() {
        let mut st = SampleStore::default();
        let w = Duration::from_secs(2);
        st.push(Duration::from_secs(1), sample("192.0.2.1", 6, 1, 2, 60), 10);
        st.push(Duration::from_secs(2), sample("192.0.2.2", 6, 1, 2, 60), 10);
        st.age(Duration::from_secs(3), w, true, 10);
        assert_eq!((st.recent().count(), st.normal().count()), (1, 1));
        st.age(Duration::from_secs(4), w, false, 10);
        assert_eq!((st.recent().count(), st.normal().count()), (0, 1));
    }
}
