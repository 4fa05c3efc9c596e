//! The scenario file (TOML): the network, its normal traffic, flash crowds
//! and attacks. Every key is documented in `scenarios/example.toml`; unknown
//! keys are errors.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::{Error, sampler::SkipKind};

/// A whole scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// The seed of every random draw: one seed, one stream of datagrams.
    pub seed: u64,
    /// Simulated seconds played.
    pub duration_s: f64,
    /// The generator's step: packet counts are drawn per tick and samples
    /// spread uniformly inside it.
    #[serde(default = "default_tick_ms")]
    pub tick_ms: u64,
    /// The simulated wall clock at time 0 (UNIX seconds): the diurnal phase
    /// and the IPFIX export times follow it.
    #[serde(default = "default_start_unix_s")]
    pub start_unix_s: u64,
    pub routers: Vec<RouterSpec>,
    pub hosts: HostsSpec,
    #[serde(default)]
    pub flash_crowds: Vec<FlashCrowdSpec>,
    #[serde(default)]
    pub attacks: Vec<AttackSpec>,
}

fn default_tick_ms() -> u64 {
    10
}
fn default_start_unix_s() -> u64 {
    // 2026-12-05 00:00:00 UTC.
    1_796_428_800
}

/// The export format of a router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Sflow,
    Ipfix,
}

/// How an IPFIX exporter states its sampling (telemetry.md §2.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum IpfixSampling {
    /// Options data scoped to the observation domain: samplingInterval (34)
    /// and samplingAlgorithm (35) = 2 (random), as Juniper sends.
    #[default]
    SamplingInterval,
    /// Options data scoped to samplerId (48): samplerMode (49) = 2 and
    /// samplerRandomInterval (50); data records carry samplerId (pmacct,
    /// Cisco IOS XR v9 style).
    SamplerRandomInterval,
}

/// A router: one exporter.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterSpec {
    pub name: String,
    /// sFlow agent address (in the datagram header); for IPFIX only a name.
    pub agent: IpAddr,
    pub format: Format,
    /// 1:N.
    pub sampling_rate: u32,
    #[serde(default)]
    pub skip: SkipKind,
    /// ifIndex of the interfaces where inbound traffic enters; each is a
    /// data source with its own sampler and counters. Hosts are spread over
    /// them.
    #[serde(default = "default_interfaces")]
    pub interfaces: Vec<u32>,
    /// sFlow sub_agent_id, or the IPFIX observation domain id.
    #[serde(default)]
    pub sub_agent: u32,
    /// Path MTU towards the collector: datagrams are filled up to
    /// `mtu - 28` bytes of UDP payload (IPv4 transport).
    #[serde(default = "default_mtu")]
    pub mtu: usize,
    /// sFlow: bytes of each sampled packet header (max-header-size).
    #[serde(default = "default_header_bytes")]
    pub header_bytes: usize,
    /// A partly filled datagram is sent when its oldest sample is this old.
    #[serde(default = "default_flush_ms")]
    pub flush_ms: u64,
    /// sFlow: counter samples per interface every so many seconds (0: none).
    #[serde(default = "default_counter_interval_s")]
    pub counter_interval_s: u64,
    /// sFlow: expanded flow samples (format 3) instead of compact (1).
    #[serde(default)]
    pub expanded: bool,
    /// IPFIX: templates and options data sent again every so many seconds.
    #[serde(default = "default_template_refresh_s")]
    pub template_refresh_s: u64,
    #[serde(default)]
    pub ipfix_sampling: IpfixSampling,
    /// IPFIX: a flow cache aggregating samples by interface and 5-tuple,
    /// exported this long after a flow's first sample (0: one record per
    /// sample).
    #[serde(default)]
    pub flow_timeout_ms: u64,
    /// The agent exports at most this many samples a second; the rest are
    /// counted as drops (0: no limit).
    #[serde(default)]
    pub max_samples_per_s: u32,
}

fn default_interfaces() -> Vec<u32> {
    vec![1]
}
fn default_mtu() -> usize {
    1500
}
fn default_header_bytes() -> usize {
    128
}
fn default_flush_ms() -> u64 {
    250
}
fn default_counter_interval_s() -> u64 {
    20
}
fn default_template_refresh_s() -> u64 {
    30
}

/// The operator's hosts and their normal (inbound) traffic.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostsSpec {
    pub count: u32,
    /// The customer block, "198.51.100.0/22" or "2001:db8:1::/48"; hosts are
    /// its addresses from the first after the network address.
    pub prefix: String,
    /// Aggregate inbound packets per second of all hosts at the diurnal mean.
    pub total_pps: f64,
    /// Host weights are Pareto(alpha) with minimum 1: a few hosts carry most
    /// of the traffic (alpha 1.2: the top 1 % carry about half).
    #[serde(default = "default_pareto_alpha")]
    pub pareto_alpha: f64,
    /// Rate factor `1 + A cos(2π (hour - peak) / 24)`, A in [0, 1).
    #[serde(default = "default_diurnal_amplitude")]
    pub diurnal_amplitude: f64,
    #[serde(default = "default_peak_hour")]
    pub diurnal_peak_hour: f64,
    /// Distinct remote sources of normal traffic, chosen Zipf(s).
    #[serde(default = "default_sources")]
    pub sources: u32,
    #[serde(default = "default_zipf")]
    pub source_zipf: f64,
    /// Each host's rate is also multiplied by its own log-normal factor of
    /// mean 1 and this log standard deviation, drawn afresh every
    /// `burst_period_s` (a download, a backup, a busy hour): 0 turns it off.
    #[serde(default)]
    pub burstiness: f64,
    #[serde(default = "default_burst_period_s")]
    pub burst_period_s: f64,
    /// The first `servers` hosts serve the world (web servers): their
    /// normal inbound traffic is clients' requests to ports 443 and 80
    /// (handshakes, requests, ACKs), the shape a flash crowd has; the
    /// others are clients receiving downloads, QUIC, DNS answers.
    #[serde(default)]
    pub servers: u32,
}

fn default_burst_period_s() -> f64 {
    60.0
}

fn default_pareto_alpha() -> f64 {
    1.2
}
fn default_diurnal_amplitude() -> f64 {
    0.4
}
fn default_peak_hour() -> f64 {
    21.0
}
fn default_sources() -> u32 {
    50_000
}
fn default_zipf() -> f64 {
    1.0
}

/// Many legitimate clients of one host at once (a launch, breaking news):
/// TCP to one port, ramping up, holding, ramping down.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlashCrowdSpec {
    pub id: String,
    /// One of the hosts.
    pub target: IpAddr,
    pub start_s: f64,
    pub duration_s: f64,
    /// Linear ramp at both ends.
    #[serde(default)]
    pub ramp_s: f64,
    /// Packets per second at the plateau.
    pub pps: f64,
    #[serde(default = "default_crowd_sources")]
    pub sources: u32,
    #[serde(default = "default_crowd_port")]
    pub dst_port: u16,
}

fn default_crowd_sources() -> u32 {
    20_000
}
fn default_crowd_port() -> u16 {
    443
}

/// An attack vector: protocol, ports, flags and default packet size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Vector {
    UdpFlood,
    SynFlood,
    AckFlood,
    IcmpFlood,
    DnsAmplification,
    NtpAmplification,
    MemcachedAmplification,
    SsdpAmplification,
    CldapAmplification,
}

impl Vector {
    /// Default IP packet length (bytes, IP header included).
    pub fn default_size(self) -> u32 {
        match self {
            Vector::UdpFlood => 512,
            Vector::SynFlood | Vector::AckFlood => 40,
            Vector::IcmpFlood => 84,
            Vector::DnsAmplification => 1200,
            // monlist: 440 bytes of NTP payload.
            Vector::NtpAmplification => 468,
            Vector::MemcachedAmplification => 1428,
            Vector::SsdpAmplification => 320,
            Vector::CldapAmplification => 1400,
        }
    }

    /// The reflector's service port of an amplification.
    pub fn reflector_port(self) -> Option<u16> {
        match self {
            Vector::DnsAmplification => Some(53),
            Vector::NtpAmplification => Some(123),
            Vector::MemcachedAmplification => Some(11211),
            Vector::SsdpAmplification => Some(1900),
            Vector::CldapAmplification => Some(389),
            _ => None,
        }
    }
}

/// An attack on one host.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttackSpec {
    pub id: String,
    pub vector: Vector,
    /// One of the hosts.
    pub target: IpAddr,
    pub start_s: f64,
    pub duration_s: f64,
    /// Linear ramp from 0 at the start (it stops at once).
    #[serde(default)]
    pub ramp_s: f64,
    /// Packets per second at full strength; or give `bps`.
    #[serde(default)]
    pub pps: Option<f64>,
    /// Bits per second at full strength, at the IP layer (packet_size × 8 × pps).
    #[serde(default)]
    pub bps: Option<f64>,
    /// IP packet length; the vector's default if absent.
    #[serde(default)]
    pub packet_size: Option<u32>,
    /// Distinct sources (spoofed addresses, or reflectors).
    #[serde(default = "default_attack_sources")]
    pub sources: u32,
    /// Fixed destination port (floods); random if absent.
    #[serde(default)]
    pub dst_port: Option<u16>,
}

fn default_attack_sources() -> u32 {
    1000
}

impl AttackSpec {
    pub fn packet_size(&self) -> u32 {
        // An IPv6 header is 20 bytes longer than an IPv4 one.
        let v6 = if self.target.is_ipv6() { 20 } else { 0 };
        self.packet_size.unwrap_or(self.vector.default_size() + v6)
    }

    /// Packets per second at full strength.
    pub fn peak_pps(&self) -> Result<f64, Error> {
        match (self.pps, self.bps) {
            (Some(p), None) => Ok(p),
            (None, Some(b)) => Ok(b / (8.0 * f64::from(self.packet_size()))),
            _ => Err(Error::Invalid(format!(
                "attack {}: give exactly one of pps and bps",
                self.id
            ))),
        }
    }
}

impl Scenario {
    /// Parses and checks a scenario.
    pub fn from_toml(text: &str) -> Result<Self, Error> {
        let s: Scenario = toml::from_str(text)?;
        s.check()?;
        Ok(s)
    }

    pub fn from_file(path: &std::path::Path) -> Result<Self, Error> {
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::Io(path.display().to_string(), e))?;
        Self::from_toml(&text)
    }

    /// Consistency checks the types cannot express.
    pub fn check(&self) -> Result<(), Error> {
        let bad = |m: String| Err(Error::Invalid(m));
        if !(self.duration_s > 0.0 && self.duration_s.is_finite()) {
            return bad("duration_s must be positive".into());
        }
        if self.tick_ms == 0 || self.tick_ms > 1000 {
            return bad("tick_ms must be in 1..=1000".into());
        }
        if self.routers.is_empty() {
            return bad("at least one router".into());
        }
        for r in &self.routers {
            if r.sampling_rate == 0 || r.interfaces.is_empty() {
                return bad(format!(
                    "router {}: sampling_rate >= 1 and one interface at least",
                    r.name
                ));
            }
            if !(576..=9216).contains(&r.mtu) {
                return bad(format!("router {}: mtu in 576..=9216", r.name));
            }
            if !(16..=256).contains(&r.header_bytes) {
                return bad(format!("router {}: header_bytes in 16..=256", r.name));
            }
        }
        if self.hosts.count == 0 || self.hosts.total_pps < 0.0 {
            return bad("hosts: count >= 1 and total_pps >= 0".into());
        }
        if !(0.0..1.0).contains(&self.hosts.diurnal_amplitude) || self.hosts.pareto_alpha <= 0.0 {
            return bad("hosts: diurnal_amplitude in [0, 1), pareto_alpha > 0".into());
        }
        if self.hosts.servers > self.hosts.count {
            return bad("hosts: servers <= count".into());
        }
        if !(0.0..=3.0).contains(&self.hosts.burstiness) || self.hosts.burst_period_s <= 0.0 {
            return bad("hosts: burstiness in [0, 3], burst_period_s > 0".into());
        }
        for a in &self.attacks {
            a.peak_pps()?;
            let min = match a.target {
                IpAddr::V4(_) => 28,
                IpAddr::V6(_) => 48,
            };
            if a.packet_size() < min + 12 || a.packet_size() > 9000 {
                return bad(format!("attack {}: packet_size out of range", a.id));
            }
            if a.sources == 0 {
                return bad(format!("attack {}: sources >= 1", a.id));
            }
        }
        for c in &self.flash_crowds {
            if c.sources == 0 || c.pps < 0.0 {
                return bad(format!("flash crowd {}: sources >= 1, pps >= 0", c.id));
            }
        }
        Ok(())
    }
}
