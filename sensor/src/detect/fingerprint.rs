//! Fingerprints: the narrowest Flow Spec-shaped match (RFC 8955 §4.2.2,
//! RFC 8956 §3) that still covers most of an attack, built from the packet
//! samples the kernel streams for watched destinations.
//!
//! The evidence is the samples that arrived while the destination was in a
//! surge (well above its typical rate, over a threshold, or under attack);
//! they mix the attack with the destination's normal traffic, whose share
//! (the background) the detector estimates and whose make-up the samples
//! taken at typical rates show. A match covers the attack by what it
//! matches of the evidence less the normal traffic it would match there.
//!
//! The match is grown greedily in Flow Spec component order (protocol,
//! ports, TCP flags, packet length, fragment, source prefix): each
//! component takes the fewest values, ranked by their share of the attack,
//! that keep the whole match covering the configured share. The share of
//! the normal traffic the match would also hit is measured on the normal
//! samples, or bounded from the class counters when there are none.
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
    /// ICMP or ICMPv6 message type (RFC 792, RFC 4443 §2.1), where known.
    #[serde(default)]
    pub icmp_type: Option<u8>,
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
    /// Sampled packets it carries before scaling: 1 for an sFlow flow
    /// sample, the record's packet count for a flow record. `packets /
    /// sampled` is the sampling rate, which tells the detector how many
    /// samples a counter's estimate rests on.
    pub sampled: u64,
}

impl Sample {
    fn weight(&self) -> f64 {
        self.packets.max(1) as f64
    }

    /// Ports and flags are readable: TCP or UDP, and not a later fragment.
    pub(crate) fn has_ports(&self) -> bool {
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
    /// ICMP types (any of); only packets with a known type match (RFC 8955
    /// §4.2.2.7).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub icmp_types: Vec<u8>,
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
            icmp_types: Vec::new(),
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
            && (self.icmp_types.is_empty()
                || s.icmp_type.is_some_and(|t| self.icmp_types.contains(&t)))
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
    /// Estimated share (by packets) of the attack traffic the match covers:
    /// what it matches of the evidence, less the normal traffic expected
    /// there (see [`Fit::covers`]).
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
        if !self.icmp_types.is_empty() {
            let types: Vec<u16> = self.icmp_types.iter().map(|&t| u16::from(t)).collect();
            write!(f, " icmp-type {}", join(&types))?;
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
            "{} (covers {:.0}% of the attack, hits {}{:.0}% of normal traffic; from {})",
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
    /// With the poll time they arrived at and whether the destination's
    /// rate was then well above its typical rate (a surge), oldest first.
    recent: VecDeque<(Duration, bool, Sample)>,
    /// Older samples that arrived at a typical rate, while the destination
    /// was not under attack.
    normal: VecDeque<Sample>,
}

impl SampleStore {
    pub fn push(&mut self, now: Duration, s: Sample, surge: bool, max: usize) {
        if self.recent.len() >= max {
            self.recent.pop_front();
        }
        self.recent.push_back((now, surge, s));
    }

    /// Moves samples older than `window` out of the recent set: into the
    /// normal profile if `normal` (the destination is not under attack) and
    /// they did not arrive in a surge, else away.
    pub fn age(&mut self, now: Duration, window: Duration, normal: bool, max: usize) {
        while let Some(&(t, surge, s)) = self.recent.front() {
            if t + window > now {
                break;
            }
            self.recent.pop_front();
            if normal && !surge {
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
        self.recent.iter().map(|(_, _, s)| s)
    }

    /// Recent samples that arrived in a surge, at or after `since`.
    pub fn surge(&self, since: Duration) -> impl Iterator<Item = &Sample> {
        self.recent
            .iter()
            .filter(move |(t, surge, _)| *surge && *t >= since)
            .map(|(_, _, s)| s)
    }

    pub fn normal(&self) -> impl Iterator<Item = &Sample> {
        self.normal.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.recent.is_empty() && self.normal.is_empty()
    }
}

/// Total weight (packets) of `samples`.
pub fn weight(samples: &[&Sample]) -> f64 {
    samples.iter().map(|s| s.weight()).sum()
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
            // A sum of nothing is -0.0; say 0.
            + 0.0
    })
}

/// How well a match fits an attack seen in `evidence`, a mixture of the
/// attack and of the destination's normal traffic (a `background` share of
/// it, whose make-up `normal` shows when known).
pub struct Fit<'a> {
    pub evidence: &'a [&'a Sample],
    /// Normal samples; `None`: unknown, assumed to look like the evidence
    /// (so nothing is credited to the background).
    pub normal: Option<&'a [&'a Sample]>,
    pub background: f64,
}

impl Fit<'_> {
    /// Estimated share of the attack traffic `m` covers: what it matches of
    /// the evidence, less the normal traffic it would match there.
    pub fn covers(&self, m: &FlowMatch) -> f64 {
        let Some(e) = share(m, self.evidence) else {
            return 0.0;
        };
        let n = self.normal.and_then(|n| share(m, n)).unwrap_or(e);
        let bg = self.background.clamp(0.0, 0.9);
        ((e - bg * n) / (1.0 - bg)).clamp(0.0, 1.0)
    }
}

/// The narrowest match that still covers `coverage` of the attack, grown
/// one Flow Spec component at a time.
pub fn learn(destination: IpNet, fit: &Fit<'_>, coverage: f64) -> FlowMatch {
    let ok = |m: &FlowMatch| fit.covers(m) >= coverage;
    let mut m = FlowMatch::any(destination);

    if let Some(next) = fewest(
        &m,
        fit,
        2,
        &ok,
        |s| Some(s.protocol),
        |m, v| m.protocols = v,
    ) {
        m = next;
    }
    let ported = !m.protocols.is_empty()
        && m.protocols
            .iter()
            .all(|&p| p == ipproto::TCP || p == ipproto::UDP);
    if ported {
        let sport = |s: &Sample| s.has_ports().then_some(s.src_port);
        if let Some(next) = fewest(&m, fit, 4, &ok, sport, |m, v| m.source_ports = v) {
            m = next;
        }
        let dport = |s: &Sample| s.has_ports().then_some(s.dst_port);
        if let Some(next) = fewest(&m, fit, 4, &ok, dport, |m, v| m.destination_ports = v) {
            m = next;
        }
    }
    if m.protocols == [ipproto::TCP] {
        // An exact flags value, else the kernel's notion of a SYN (SYN set,
        // ACK clear) whatever the other bits.
        let flags = |s: &Sample| s.has_ports().then_some(s.tcp_flags);
        let exact = fewest(&m, fit, 1, &ok, flags, |m, v| {
            m.tcp_flags = Some(TcpFlagsMatch {
                value: v[0],
                mask: 0xff,
            })
        });
        let syn = FlowMatch {
            tcp_flags: Some(TcpFlagsMatch {
                value: tcp_flags::SYN,
                mask: tcp_flags::SYN | tcp_flags::ACK,
            }),
            ..m.clone()
        };
        if let Some(next) = exact.or_else(|| ok(&syn).then_some(syn)) {
            m = next;
        }
    }
    let icmp = !m.protocols.is_empty()
        && m.protocols
            .iter()
            .all(|&p| p == ipproto::ICMP || p == ipproto::ICMPV6);
    if icmp {
        // Echo requests, not the host's own echo replies and errors.
        let kind = |s: &Sample| s.icmp_type;
        if let Some(next) = fewest(&m, fit, 2, &ok, kind, |m, v| m.icmp_types = v) {
            m = next;
        }
    }
    if let Some(next) = narrowest_length(&m, fit, &ok) {
        m = next;
    }
    let kinds = |s: &Sample| Some(s.fragment_kind());
    let frag = fewest(&m, fit, 2, &ok, kinds, |m, v| {
        m.fragment = match v.as_slice() {
            [FragmentMatch::First] => Some(FragmentMatch::First),
            [FragmentMatch::Later] => Some(FragmentMatch::Later),
            [FragmentMatch::First, FragmentMatch::Later] => Some(FragmentMatch::Any),
            // Unfragmented traffic: saying so adds nothing worth a component.
            _ => None,
        }
    });
    if let Some(next) = frag {
        m = next;
    }
    if let Some(next) = concentrated_source(&m, fit, &ok) {
        m = next;
    }
    m
}

/// Values of `key` in what `m` matches, by their share of the attack (their
/// share of the evidence less the background's expected share), largest
/// first, ties by value; values the attack does not carry are left out.
fn ranked<K: Ord + Copy>(
    m: &FlowMatch,
    fit: &Fit<'_>,
    key: impl Fn(&Sample) -> Option<K>,
) -> Vec<(K, f64)> {
    let mut score: BTreeMap<K, f64> = BTreeMap::new();
    let total = weight(fit.evidence);
    for s in fit.evidence.iter().filter(|s| m.matches(s)) {
        if let Some(k) = key(s) {
            *score.entry(k).or_default() += s.weight() / total;
        }
    }
    if let Some(normal) = fit.normal {
        let bg = fit.background.clamp(0.0, 0.9);
        let total = weight(normal);
        for s in normal.iter().filter(|s| m.matches(s)) {
            if let Some(k) = key(s)
                && let Some(v) = score.get_mut(&k)
            {
                *v -= bg * s.weight() / total;
            }
        }
    }
    let mut ranked: Vec<(K, f64)> = score.into_iter().filter(|(_, v)| *v > 0.0).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked
}

/// `m` narrowed to the fewest values of `key` (at most `max`, heaviest
/// first) that keep it `ok`.
fn fewest<K: Ord + Copy>(
    m: &FlowMatch,
    fit: &Fit<'_>,
    max: usize,
    ok: &impl Fn(&FlowMatch) -> bool,
    key: impl Fn(&Sample) -> Option<K>,
    set: impl Fn(&mut FlowMatch, Vec<K>),
) -> Option<FlowMatch> {
    let mut chosen = Vec::new();
    for (k, _) in ranked(m, fit, key).into_iter().take(max) {
        chosen.push(k);
        let mut values = chosen.clone();
        values.sort();
        let mut candidate = m.clone();
        set(&mut candidate, values);
        if candidate == *m {
            return None;
        }
        if ok(&candidate) {
            return Some(candidate);
        }
    }
    None
}

/// `m` with the narrowest packet-length interval that keeps it `ok`, if it
/// is narrow enough to tell the attack apart: at most half the spread of
/// the lengths seen (or a single length).
fn narrowest_length(
    m: &FlowMatch,
    fit: &Fit<'_>,
    ok: &impl Fn(&FlowMatch) -> bool,
) -> Option<FlowMatch> {
    let mut lens = ranked(m, fit, |s| Some(s.packet_len));
    lens.sort_by_key(|(len, _)| *len);
    let (first, last) = (lens.first()?.0, lens.last()?.0);
    let total: f64 = lens.iter().map(|(_, w)| w).sum();
    let spread = last - first;
    // Narrowest interval holding each share of the matched weight, from
    // the tightest; the first the fit accepts wins.
    for q in [0.9, 0.95, 0.99, 1.0] {
        let target = q * total;
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
        let Some(r) = best else { continue };
        if spread != 0 && r.max - r.min > spread / 2 {
            return None;
        }
        let candidate = FlowMatch {
            packet_length: Some(r),
            ..m.clone()
        };
        if ok(&candidate) {
            return Some(candidate);
        }
    }
    None
}

/// `m` with the most specific source prefix, from a few operational
/// lengths (host, /24, /16; IPv6 /128, /64, /48, /32), that keeps it `ok`.
fn concentrated_source(
    m: &FlowMatch,
    fit: &Fit<'_>,
    ok: &impl Fn(&FlowMatch) -> bool,
) -> Option<FlowMatch> {
    const V4: [u8; 3] = [32, 24, 16];
    const V6: [u8; 4] = [128, 64, 48, 32];
    for depth in 0..4 {
        let heaviest = ranked(m, fit, |s| {
            let len = match s.src {
                IpAddr::V4(_) => V4.get(depth),
                IpAddr::V6(_) => V6.get(depth),
            }?;
            IpNet::new(s.src, *len).ok().map(|n| n.trunc())
        });
        if let Some((net, _)) = heaviest.first() {
            let candidate = FlowMatch {
                source: Some(*net),
                ..m.clone()
            };
            if ok(&candidate) {
                return Some(candidate);
            }
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
            icmp_type: None,
            fragment: false,
            later_fragment: false,
            packet_len: len,
            packets: 1000,
            bytes: 1000 * u64::from(len),
            sampled: 1,
        }
    }

    fn plain<'a>(evidence: &'a [&'a Sample]) -> Fit<'a> {
        Fit {
            evidence,
            normal: None,
            background: 0.0,
        }
    }

    fn dst() -> IpNet {
        "198.18.1.10/32".parse().unwrap()
    }

    #[test]
    fn an_echo_flood_is_told_from_the_hosts_own_echo_replies_by_its_type() {
        let icmp = |src: &str, kind: u8| Sample {
            icmp_type: Some(kind),
            ..sample(src, ipproto::ICMP, 0, 0, 84)
        };
        // Echo requests from many sources; the host's normal ICMP is the
        // replies to its own pings, the same protocol and length.
        let attack: Vec<Sample> = (0..60u8)
            .map(|i| icmp(&format!("{}.{i}.0.7", 20 + u16::from(i) * 3), 8))
            .collect();
        let normal: Vec<Sample> = (0..20u8)
            .map(|i| icmp(&format!("198.51.100.{i}"), 0))
            .collect();
        let mut evidence: Vec<&Sample> = attack.iter().collect();
        evidence.extend(normal.iter().take(4));
        let normal_refs: Vec<&Sample> = normal.iter().collect();
        let fit = Fit {
            evidence: &evidence,
            normal: Some(&normal_refs),
            background: 4.0 / 64.0,
        };
        let m = learn(dst(), &fit, 0.9);
        assert_eq!(m.protocols, vec![ipproto::ICMP]);
        assert_eq!(m.icmp_types, vec![8]);
        assert_eq!(
            m.to_string(),
            "dst 198.18.1.10/32 proto icmp icmp-type 8 len 84"
        );
        assert_eq!(share(&m, &normal_refs), Some(0.0));
        // A type the exporter did not give never matches a type component.
        let unknown = Sample {
            icmp_type: None,
            ..attack[0]
        };
        assert!(!m.matches(&unknown));
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
        let m = learn(dst(), &plain(&refs), 0.9);
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
        let m = learn(dst(), &plain(&refs), 0.9);
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
        st.push(
            Duration::from_secs(1),
            sample("192.0.2.1", 6, 1, 2, 60),
            false,
            10,
        );
        st.push(
            Duration::from_secs(1),
            sample("192.0.2.9", 6, 1, 2, 60),
            true,
            10,
        );
        st.push(
            Duration::from_secs(2),
            sample("192.0.2.2", 6, 1, 2, 60),
            false,
            10,
        );
        assert_eq!(st.surge(Duration::ZERO).count(), 1);
        assert_eq!(st.surge(Duration::from_secs(2)).count(), 0);
        st.age(Duration::from_secs(3), w, true, 10);
        assert_eq!(
            (st.recent().count(), st.normal().count()),
            (1, 1),
            "surges are not normal"
        );
        st.age(Duration::from_secs(4), w, false, 10);
        assert_eq!((st.recent().count(), st.normal().count()), (0, 1));
    }
}
