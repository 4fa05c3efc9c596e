//! The `[detect]` section: thresholds, host groups, baselines, hysteresis and
//! fingerprinting knobs, their defaults and their validation.
//!
//! Every error names the key it is about (`detect.host_groups[1].prefixes[0]`),
//! and unknown keys are refused, as in [`crate::config`]: a typo in a
//! threshold must not silently fall back to a default.

use std::{collections::BTreeSet, fmt, time::Duration};

use edge_sensor_common::Class;
use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize};

/// A `[detect]` section that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DetectConfigError {
    #[error("detect config: {0}")]
    Parse(String),
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> DetectConfigError {
    DetectConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// Shortest poll interval: below it the sampled counts per interval are too
/// few to mean anything and the map walk dominates.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Longest poll interval accepted.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(60);

/// Source ports of UDP services abused for reflection/amplification
/// (US-CERT TA14-017A and later additions). 443 (QUIC) is deliberately
/// absent: legitimate QUIC responses come from it.
pub const DEFAULT_AMPLIFICATION_PORTS: [u16; 20] = [
    17, 19, 53, 69, 111, 123, 137, 161, 389, 427, 520, 1900, 3283, 3702, 5351, 5353, 5683, 10001,
    11211, 37810,
];

/// The usual name of an amplification source port, for humans.
pub fn amplification_service(port: u16) -> Option<&'static str> {
    Some(match port {
        17 => "qotd",
        19 => "chargen",
        53 => "dns",
        69 => "tftp",
        111 => "portmap",
        123 => "ntp",
        137 => "netbios",
        161 => "snmp",
        389 => "cldap",
        427 => "slp",
        520 => "rip",
        1900 => "ssdp",
        3283 => "ard",
        3702 => "ws-discovery",
        5351 => "nat-pmp",
        5353 => "mdns",
        5683 => "coap",
        10001 => "ubiquiti",
        11211 => "memcached",
        37810 => "dvr-dhcpdiscover",
        _ => return None,
    })
}

/// What the mitigation side should do for a host group's attacks. Opaque to
/// the detector: it only carries it in its events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupAction {
    /// Announce the fingerprint as a Flow Spec discard rule (RFC 8955/8956).
    #[default]
    Flowspec,
    /// Announce the victim for remotely triggered blackholing (RFC 7999).
    Blackhole,
    /// Flow Spec first; blackhole if the rule does not remove the traffic.
    FlowspecThenBlackhole,
    /// Report only.
    Alert,
}

impl fmt::Display for GroupAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Flowspec => "flowspec",
            Self::Blackhole => "blackhole",
            Self::FlowspecThenBlackhole => "flowspec_then_blackhole",
            Self::Alert => "alert",
        })
    }
}

/// The traffic classes the kernel counts, by their config name; mirrors
/// [`Class`] (which has no serde, being `no_std` kernel code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrafficClass {
    All,
    Tcp,
    TcpSyn,
    Udp,
    Icmp,
    Fragment,
    Other,
}

impl TrafficClass {
    pub const ALL: [TrafficClass; Class::COUNT] = [
        Self::All,
        Self::Tcp,
        Self::TcpSyn,
        Self::Udp,
        Self::Icmp,
        Self::Fragment,
        Self::Other,
    ];

    /// The kernel class, for indexing counters.
    pub const fn class(self) -> Class {
        match self {
            Self::All => Class::All,
            Self::Tcp => Class::Tcp,
            Self::TcpSyn => Class::TcpSyn,
            Self::Udp => Class::Udp,
            Self::Icmp => Class::Icmp,
            Self::Fragment => Class::Fragment,
            Self::Other => Class::Other,
        }
    }

    pub const fn index(self) -> usize {
        self.class() as usize
    }

    pub const fn name(self) -> &'static str {
        self.class().name()
    }
}

impl fmt::Display for TrafficClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Packets or bits per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Pps,
    Bps,
}

impl Metric {
    pub const BOTH: [Metric; 2] = [Metric::Pps, Metric::Bps];

    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pps => "pps",
            Self::Bps => "bps",
        })
    }
}

/// The highest rate a threshold or limit may state (1 Pbps; no link
/// carries that many packets per second either).
pub const MAX_RATE: f64 = 1e15;

/// A rate in packets or bits per second. In the file: an integer, or a
/// string with an SI suffix (`"500k"`, `"1.5G"`; powers of 1000).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
pub struct Rate(pub f64);

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Float(f64),
            Text(String),
        }
        let v = match Raw::deserialize(d)? {
            Raw::Int(v) => v as f64,
            Raw::Float(v) => v,
            Raw::Text(s) => parse_rate(&s).map_err(serde::de::Error::custom)?,
        };
        if !v.is_finite() || v <= 0.0 {
            return Err(serde::de::Error::custom(format!(
                "rate {v} must be a positive number"
            )));
        }
        // Above any link's packets or bits per second: a threshold there
        // is never reached, so it silently turns detection off.
        if v > MAX_RATE {
            return Err(serde::de::Error::custom(format!(
                "rate {v} is above {MAX_RATE:e}, beyond any link: it could never be reached"
            )));
        }
        Ok(Rate(v))
    }
}

/// `"250k"` -> 250000; `"1.5G"` -> 1.5e9.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1e3),
        Some((i, 'M')) => (&s[..i], 1e6),
        Some((i, 'G')) => (&s[..i], 1e9),
        Some((i, 'T')) => (&s[..i], 1e12),
        _ => (s, 1.0),
    };
    num.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0)
        .map(|v| v * mult)
        .ok_or_else(|| format!("{s:?} is not a rate (e.g. 20000, \"500k\", \"1.5G\")"))
}

/// `"250ms"`, `"2s"`, `"10m"`, `"1h"` -> a [`Duration`].
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let secs = match unit.trim() {
        "ms" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => f64::NAN,
    };
    num.parse::<f64>()
        .ok()
        .map(|v| v * secs)
        .filter(|v| v.is_finite() && *v >= 0.0 && *v < 1e9)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{s:?} is not a duration (e.g. \"250ms\", \"2s\", \"10m\", \"1h\")"))
}

pub(crate) fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

/// Limits of one class: packets and/or bits per second. Absent means "no
/// limit here" (or, in a host group, "as the global one").
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limit {
    pub pps: Option<Rate>,
    pub bps: Option<Rate>,
}

impl Limit {
    pub fn get(&self, m: Metric) -> Option<f64> {
        match m {
            Metric::Pps => self.pps,
            Metric::Bps => self.bps,
        }
        .map(|r| r.0)
    }
}

/// Limits per traffic class (keys as in [`TrafficClass`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassLimits {
    pub all: Limit,
    pub tcp: Limit,
    pub tcp_syn: Limit,
    pub udp: Limit,
    pub icmp: Limit,
    pub fragment: Limit,
    pub other: Limit,
}

/// A resolved table: `table[class][metric]`.
pub type LimitTable = [[Option<f64>; 2]; Class::COUNT];

impl ClassLimits {
    pub fn limit(&self, c: TrafficClass) -> &Limit {
        match c {
            TrafficClass::All => &self.all,
            TrafficClass::Tcp => &self.tcp,
            TrafficClass::TcpSyn => &self.tcp_syn,
            TrafficClass::Udp => &self.udp,
            TrafficClass::Icmp => &self.icmp,
            TrafficClass::Fragment => &self.fragment,
            TrafficClass::Other => &self.other,
        }
    }

    /// As a table, each entry taken from `self` or else from `fallback`.
    pub fn over(&self, fallback: &LimitTable) -> LimitTable {
        let mut t = *fallback;
        for c in TrafficClass::ALL {
            for m in Metric::BOTH {
                if let Some(v) = self.limit(c).get(m) {
                    t[c.index()][m.index()] = Some(v);
                }
            }
        }
        t
    }

    pub fn is_empty(&self) -> bool {
        self.over(&[[None; 2]; Class::COUNT])
            .iter()
            .all(|r| r.iter().all(Option::is_none))
    }
}

/// Adaptive threshold per destination: `clamp(mean + k * stddev, floor,
/// ceiling)` of each class and metric that has a floor, the mean and
/// variance being exponentially weighted over `window`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineConfig {
    /// Standard deviations above the mean.
    pub k: f64,
    /// Time constant of the mean and variance; also the learning time
    /// during which the static thresholds apply.
    #[serde(deserialize_with = "de_duration")]
    pub window: Duration,
    /// Lowest adaptive threshold per class and metric; only the classes and
    /// metrics listed here get an adaptive threshold.
    pub floor: ClassLimits,
    /// Highest adaptive threshold (a rate that is an attack whatever the
    /// history); absent: unbounded.
    #[serde(default)]
    pub ceiling: ClassLimits,
    /// A crossing of adaptive thresholds only (each below its ceiling) whose
    /// best match, cut to the components its samples make sure of (see
    /// `detect::chance`), would hit at least this
    /// share of the destination's normal traffic, measured on samples, is the
    /// normal traffic with more of it:
    /// a flash crowd, not reported (a filter could not separate it, and
    /// blackholing it would finish the attacker's job). 0 turns this off.
    #[serde(default = "default_flash_crowd_similarity")]
    pub flash_crowd_similarity: f64,
}

fn default_flash_crowd_similarity() -> f64 {
    0.8
}

/// When an attack is over.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReleaseConfig {
    /// The attack stays active while a rate is above `ratio` times its
    /// threshold (hysteresis below the trigger).
    pub ratio: f64,
    /// Shortest attack, so a rule is not withdrawn while the attacker pauses.
    #[serde(deserialize_with = "de_duration")]
    pub min_duration: Duration,
    /// How long every rate must stay below the release level.
    #[serde(deserialize_with = "de_duration")]
    pub hold: Duration,
}

impl Default for ReleaseConfig {
    fn default() -> Self {
        Self {
            ratio: 0.7,
            min_duration: Duration::from_secs(60),
            hold: Duration::from_secs(30),
        }
    }
}

/// How fingerprints are built from the sample stream.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FingerprintConfig {
    /// Samples younger than this are "recent" (the attack's evidence when
    /// they arrived in a surge); older ones that arrived at a typical rate,
    /// outside attacks, become the destination's normal profile.
    #[serde(deserialize_with = "de_duration")]
    pub window: Duration,
    /// Share of the attack the match must keep covering (estimated with the
    /// normal traffic mixed in taken out): a component is narrowed only
    /// while the whole match still covers this much.
    pub coverage: f64,
    /// Fewer recent samples than this and the fingerprint is built from the
    /// class counters alone.
    pub min_samples: u32,
    /// Samples kept per destination, recent and normal each.
    pub max_samples: u32,
    /// Share of a class in the traffic above which the attack is named after
    /// it (e.g. 0.6: 60 % UDP is a UDP flood; below, an IP flood); also the
    /// share of one source port above which UDP is amplification.
    pub dominant_share: f64,
}

impl Default for FingerprintConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(5),
            coverage: 0.9,
            min_samples: 5,
            max_samples: 4096,
            dominant_share: 0.6,
        }
    }
}

/// Which destinations the kernel should stream samples of.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatchConfig {
    /// Watch a destination once one of its rates reaches this fraction of
    /// its threshold, so the evidence is there when the threshold is crossed.
    pub fraction: f64,
    /// Keep watching this long after it dropped below.
    #[serde(deserialize_with = "de_duration")]
    pub hold: Duration,
    /// Most destinations watched at once (victims first, then by ratio).
    pub max: u32,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            fraction: 0.5,
            hold: Duration::from_secs(10),
            max: 4096,
        }
    }
}

/// Thresholds and action of a set of prefixes inside the own networks.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostGroupConfig {
    pub name: String,
    /// IPv4 and IPv6 prefixes; a destination belongs to the group with the
    /// most specific prefix covering it.
    pub prefixes: Vec<IpNet>,
    /// Per host; each class and metric given here overrides the global one.
    #[serde(default)]
    pub thresholds: ClassLimits,
    /// Per block (see `aggregate_prefix_v4/v6`) of the group's hosts summed:
    /// carpet bombing spreads an attack so no host crosses its own threshold.
    /// Overrides the global ones per class and metric.
    #[serde(default)]
    pub aggregate: ClassLimits,
    pub aggregate_prefix_v4: Option<u8>,
    pub aggregate_prefix_v6: Option<u8>,
    /// Defaults to the global action.
    pub action: Option<GroupAction>,
    /// Replaces the global baseline for this group.
    pub baseline: Option<BaselineConfig>,
    /// Turns off a global baseline for this group.
    #[serde(default)]
    pub no_baseline: bool,
}

/// The whole `[detect]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    /// The operator's networks. Destinations outside are never considered;
    /// at least one is required.
    pub own_networks: Vec<IpNet>,
    /// Accept 0.0.0.0/0 or ::/0 in `own_networks` (every address would be
    /// "ours": a sensor that may blackhole anything).
    pub allow_default_route: bool,
    /// How often the caller polls (the detector takes its clock from the
    /// caller; this sets the expectation and the validation bounds).
    #[serde(deserialize_with = "de_duration")]
    pub poll_interval: Duration,
    /// Time constant of the exponential smoothing of rates; zero: none.
    #[serde(deserialize_with = "de_duration")]
    pub smoothing: Duration,
    /// Confidence that a rate is over its threshold before an attack
    /// starts: the one-sided lower bound of the rate at this confidence,
    /// from the number of samples behind it, must reach the threshold (see
    /// [`super::confidence`]). In (0.5, 0.999999]; 0 turns the check off
    /// (the point estimate decides, as with unsampled counters).
    pub confidence: f64,
    /// Per host, for destinations in no host group (and the fallback of
    /// host groups). Given in the file, it replaces the defaults as a whole
    /// (defaults: all 100 kpps / 1 Gbps, tcp_syn 20 kpps, icmp 10 kpps,
    /// fragment 10 kpps).
    pub thresholds: ClassLimits,
    /// Per block, for destinations in no host group (and the fallback).
    pub aggregate: ClassLimits,
    /// Block length of aggregate thresholds, IPv4 (default 24).
    pub aggregate_prefix_v4: u8,
    /// Block length of aggregate thresholds, IPv6 (default 64).
    pub aggregate_prefix_v6: u8,
    /// Action for destinations in no host group (and the fallback).
    pub action: GroupAction,
    pub baseline: Option<BaselineConfig>,
    pub release: ReleaseConfig,
    pub fingerprint: FingerprintConfig,
    pub watch: WatchConfig,
    /// UDP source ports that make a UDP flood an amplification attack.
    pub amplification_ports: Vec<u16>,
    pub host_groups: Vec<HostGroupConfig>,
    /// Own networks learnt from a BGP peer's routes that carry a community
    /// (`[[detect.networks_from_bgp]]`), live as the routes come and go,
    /// within `bgp.announce_within`.
    pub networks_from_bgp: Vec<NetworksFromBgp>,
}

/// Routes of `peer` in `family` tagged `community` are own networks, in
/// `host_group` (default: none, the default group). Operators already tag
/// their customers' prefixes; the sensor then follows them without a
/// configuration change.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworksFromBgp {
    /// A `[[bgp.peers]]` name.
    pub peer: String,
    /// `ipv4-unicast` or `ipv6-unicast`.
    #[serde(default = "default_unicast_family")]
    pub family: String,
    /// `ASN:VALUE` (RFC 1997) or `GLOBAL:LOCAL1:LOCAL2` (RFC 8092).
    pub community: String,
    pub host_group: Option<String>,
}

fn default_unicast_family() -> String {
    "ipv4-unicast".into()
}

impl Default for DetectConfig {
    fn default() -> Self {
        let pps = |v: f64| Limit {
            pps: Some(Rate(v)),
            bps: None,
        };
        Self {
            own_networks: Vec::new(),
            allow_default_route: false,
            poll_interval: Duration::from_secs(1),
            smoothing: Duration::from_secs(2),
            confidence: DEFAULT_CONFIDENCE,
            // Conservative: FastNetMon ships 20 kpps / 1 Gbps for everything;
            // here the whole-host limit is higher and the classes that are
            // rarely legitimate at volume have their own.
            thresholds: ClassLimits {
                all: Limit {
                    pps: Some(Rate(100_000.0)),
                    bps: Some(Rate(1e9)),
                },
                tcp_syn: pps(20_000.0),
                icmp: pps(10_000.0),
                fragment: pps(10_000.0),
                ..ClassLimits::default()
            },
            aggregate: ClassLimits::default(),
            aggregate_prefix_v4: 24,
            aggregate_prefix_v6: 64,
            action: GroupAction::Flowspec,
            baseline: None,
            release: ReleaseConfig::default(),
            fingerprint: FingerprintConfig::default(),
            watch: WatchConfig::default(),
            amplification_ports: DEFAULT_AMPLIFICATION_PORTS.to_vec(),
            host_groups: Vec::new(),
            networks_from_bgp: Vec::new(),
        }
    }
}

/// Default of `detect.confidence`: a crossing is announced when the rate
/// is over the threshold with 99.9 % confidence.
pub const DEFAULT_CONFIDENCE: f64 = 0.999;

/// Name of the implicit group of destinations in no host group.
pub const DEFAULT_GROUP: &str = "default";

impl DetectConfig {
    /// Parses and validates a TOML document holding the section's contents
    /// (keys at top level, as under `[detect]`).
    pub fn from_toml(text: &str) -> Result<Self, DetectConfigError> {
        let c: Self = toml::from_str(text).map_err(|e| DetectConfigError::Parse(e.to_string()))?;
        c.validate()?;
        Ok(c)
    }

    /// Checks what the types alone cannot.
    pub fn validate(&self) -> Result<(), DetectConfigError> {
        if self.own_networks.is_empty() && self.networks_from_bgp.is_empty() {
            return Err(invalid(
                "detect.own_networks",
                "empty: the detector only decides for destinations inside the operator's networks",
            ));
        }
        for (i, net) in self.own_networks.iter().enumerate() {
            check_prefix(&format!("detect.own_networks[{i}]"), net)?;
            if net.prefix_len() == 0 && !self.allow_default_route {
                return Err(invalid(
                    format!("detect.own_networks[{i}]"),
                    format!(
                        "{net} makes every address an own network (set \
                         detect.allow_default_route = true if that is meant)"
                    ),
                ));
            }
        }
        if !(MIN_POLL_INTERVAL..=MAX_POLL_INTERVAL).contains(&self.poll_interval) {
            return Err(invalid(
                "detect.poll_interval",
                format!(
                    "{:?} is outside {MIN_POLL_INTERVAL:?} ..= {MAX_POLL_INTERVAL:?}",
                    self.poll_interval
                ),
            ));
        }
        if self.smoothing > Duration::from_secs(3600) {
            return Err(invalid("detect.smoothing", "at most 1h"));
        }
        if !(self.confidence == 0.0 || (self.confidence > 0.5 && self.confidence <= 0.999_999)) {
            return Err(invalid(
                "detect.confidence",
                "must be in (0.5, 0.999999], or 0 to decide on the point estimate",
            ));
        }
        check_block("detect.aggregate_prefix_v4", self.aggregate_prefix_v4, 32)?;
        check_block("detect.aggregate_prefix_v6", self.aggregate_prefix_v6, 128)?;
        if let Some(b) = &self.baseline {
            check_baseline("detect.baseline", b)?;
        }
        let r = &self.release;
        if !(r.ratio > 0.0 && r.ratio <= 1.0) {
            return Err(invalid("detect.release.ratio", "must be in (0, 1]"));
        }
        let f = &self.fingerprint;
        if !(f.coverage > 0.0 && f.coverage <= 1.0) {
            return Err(invalid("detect.fingerprint.coverage", "must be in (0, 1]"));
        }
        if !(f.dominant_share > 0.5 && f.dominant_share <= 1.0) {
            return Err(invalid(
                "detect.fingerprint.dominant_share",
                "must be in (0.5, 1]: a share at or below one half names no single class",
            ));
        }
        if f.window < self.poll_interval {
            return Err(invalid(
                "detect.fingerprint.window",
                "must be at least one poll interval",
            ));
        }
        if f.min_samples == 0 {
            return Err(invalid(
                "detect.fingerprint.min_samples",
                "must be at least 1",
            ));
        }
        if !(1..=1 << 20).contains(&f.max_samples) {
            return Err(invalid(
                "detect.fingerprint.max_samples",
                "must be in 1 ..= 1048576",
            ));
        }
        if !(self.watch.fraction > 0.0 && self.watch.fraction <= 1.0) {
            return Err(invalid("detect.watch.fraction", "must be in (0, 1]"));
        }
        if self.amplification_ports.contains(&0) {
            return Err(invalid(
                "detect.amplification_ports",
                "port 0 is not a service",
            ));
        }

        let mut names = BTreeSet::from([DEFAULT_GROUP]);
        let mut prefixes: BTreeSet<IpNet> = BTreeSet::new();
        for (g, group) in self.host_groups.iter().enumerate() {
            let key = format!("detect.host_groups[{g}]");
            if group.name.is_empty()
                || !group
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(invalid(
                    format!("{key}.name"),
                    format!("{:?}: use letters, digits, '-' and '_'", group.name),
                ));
            }
            if !names.insert(&group.name) {
                return Err(invalid(
                    format!("{key}.name"),
                    format!("{:?} is used twice (or is reserved)", group.name),
                ));
            }
            if group.prefixes.is_empty() {
                return Err(invalid(format!("{key}.prefixes"), "empty"));
            }
            for (i, net) in group.prefixes.iter().enumerate() {
                let pkey = format!("{key}.prefixes[{i}]");
                check_prefix(&pkey, net)?;
                if !self.own_networks.iter().any(|own| own.contains(net)) {
                    return Err(invalid(
                        pkey,
                        format!("{net} is not inside detect.own_networks"),
                    ));
                }
                if !prefixes.insert(*net) {
                    return Err(invalid(pkey, format!("{net} is in two host groups")));
                }
            }
            if let Some(v) = group.aggregate_prefix_v4 {
                check_block(&format!("{key}.aggregate_prefix_v4"), v, 32)?;
            }
            if let Some(v) = group.aggregate_prefix_v6 {
                check_block(&format!("{key}.aggregate_prefix_v6"), v, 128)?;
            }
            if let Some(b) = &group.baseline {
                check_baseline(&format!("{key}.baseline"), b)?;
            }
            if group.no_baseline && group.baseline.is_some() {
                return Err(invalid(
                    format!("{key}.no_baseline"),
                    "set together with a baseline",
                ));
            }
        }
        let anything = !self.thresholds.is_empty()
            || !self.aggregate.is_empty()
            || self.baseline.is_some()
            || self.host_groups.iter().any(|g| {
                !g.thresholds.is_empty() || !g.aggregate.is_empty() || g.baseline.is_some()
            });
        if !anything {
            return Err(invalid(
                "detect.thresholds",
                "no threshold, aggregate or baseline anywhere: nothing could ever be detected",
            ));
        }
        for (i, n) in self.networks_from_bgp.iter().enumerate() {
            let key = format!("detect.networks_from_bgp[{i}]");
            if !matches!(n.family.as_str(), "ipv4-unicast" | "ipv6-unicast") {
                return Err(invalid(
                    format!("{key}.family"),
                    format!("{:?}: ipv4-unicast or ipv6-unicast", n.family),
                ));
            }
            let parts: Vec<&str> = n.community.split(':').collect();
            let ok = match parts.as_slice() {
                [a, b] => a.parse::<u16>().is_ok() && b.parse::<u16>().is_ok(),
                [a, b, c] => [a, b, c].iter().all(|p| p.parse::<u32>().is_ok()),
                _ => false,
            };
            if !ok {
                return Err(invalid(
                    format!("{key}.community"),
                    format!(
                        "{:?} is neither ASN:VALUE (RFC 1997) nor GLOBAL:LOCAL1:LOCAL2 (RFC 8092)",
                        n.community
                    ),
                ));
            }
            if let Some(g) = &n.host_group
                && !self.host_groups.iter().any(|h| &h.name == g)
            {
                return Err(invalid(
                    format!("{key}.host_group"),
                    format!("{g:?} is not one of detect.host_groups"),
                ));
            }
        }
        Ok(())
    }
}

fn check_prefix(key: &str, net: &IpNet) -> Result<(), DetectConfigError> {
    if net.trunc() != *net {
        return Err(invalid(
            key,
            format!("{net} has host bits set (did you mean {}?)", net.trunc()),
        ));
    }
    Ok(())
}

fn check_block(key: &str, len: u8, max: u8) -> Result<(), DetectConfigError> {
    if len == 0 || len > max {
        return Err(invalid(key, format!("{len} is outside 1 ..= {max}")));
    }
    Ok(())
}

fn check_baseline(key: &str, b: &BaselineConfig) -> Result<(), DetectConfigError> {
    if !(b.k.is_finite() && b.k >= 0.0) {
        return Err(invalid(format!("{key}.k"), "must be a number >= 0"));
    }
    if b.window < Duration::from_secs(1) {
        return Err(invalid(format!("{key}.window"), "must be at least 1s"));
    }
    if !(0.0..=1.0).contains(&b.flash_crowd_similarity) {
        return Err(invalid(
            format!("{key}.flash_crowd_similarity"),
            "must be in [0, 1] (0: off)",
        ));
    }
    if b.floor.is_empty() {
        return Err(invalid(
            format!("{key}.floor"),
            "empty: list the classes that get an adaptive threshold with their floor",
        ));
    }
    for c in TrafficClass::ALL {
        for m in Metric::BOTH {
            if let (Some(floor), Some(ceiling)) =
                (b.floor.limit(c).get(m), b.ceiling.limit(c).get(m))
                && ceiling < floor
            {
                return Err(invalid(
                    format!("{key}.ceiling.{c}.{m}"),
                    format!("{ceiling} is below the floor {floor}"),
                ));
            }
        }
    }
    Ok(())
}
