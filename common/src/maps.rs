//! BPF map names, sizes and the layouts of their keys and values.

use core::mem::size_of;

use crate::{Class, ParseError};

/// Per destination counters: `LRU_HASH<DstKey, DstStats>`, one value shared
/// by all CPUs (the program adds atomically), pinned.
pub const DST_STATS: &str = "DST_STATS";
/// Per exporter counters: `LRU_PERCPU_HASH<ExporterKey, ExporterStats>`, pinned.
pub const EXPORTER_STATS: &str = "EXPORTER_STATS";
/// Per exporter sequence state: `LRU_HASH<ExporterKey, AgentState>`, pinned.
pub const AGENT_STATE: &str = "AGENT_STATE";
/// Counters of the program as a whole: `PERCPU_ARRAY<GlobalStats>` (1 entry), pinned.
pub const GLOBAL_STATS: &str = "GLOBAL_STATS";
/// Telemetry ports: `ARRAY<PortConfig>` indexed by UDP port (host order),
/// [`TELEMETRY_PORT_SLOTS`] entries, kind 0 for a port that carries none;
/// written by userspace. An array, not a hash: the program looks the port
/// of every UDP frame up, and an array lookup is a bounds check and an
/// add that the verifier inlines, where a hash lookup hashes the key.
pub const TELEMETRY_PORTS: &str = "TELEMETRY_PORTS";
/// Entries of [`TELEMETRY_PORTS`]: one per UDP port (256 KiB of values).
pub const TELEMETRY_PORT_SLOTS: u32 = 1 << 16;
/// Exporters allowed to send telemetry: `LPM_TRIE<[u8; 16], u8>` keyed by
/// prefix length (of the IPv6 or IPv4-mapped form: an IPv4 /24 is 96 + 24) and
/// address; written by userspace.
pub const EXPORTER_ALLOW: &str = "EXPORTER_ALLOW";
/// Configured sampling rates by exporter prefix: `LPM_TRIE<[u8; 16],
/// SamplingRule>` keyed like [`EXPORTER_ALLOW`], written by userspace.
pub const SAMPLING_RULES: &str = "SAMPLING_RULES";
/// Capacity of [`SAMPLING_RULES`].
pub const MAX_SAMPLING_RULES: u32 = 1024;
/// Runtime settings: `ARRAY<Settings>` (1 entry), written by userspace.
pub const SETTINGS: &str = "SETTINGS";
/// Per destination counters of what the daemon decoded in userspace (v9/IPFIX
/// datagrams the kernel passed on): `HASH<DstKey, DstStats>`, pinned, written
/// only by the daemon. Readers add it to [`DST_STATS`]; kept apart so the
/// daemon never read-modify-writes values the kernel is updating.
pub const USER_DST_STATS: &str = "USER_DST_STATS";
/// Per exporter counters of the daemon's userspace decoding:
/// `HASH<ExporterKey, ExporterStats>`, pinned.
pub const USER_EXPORTER_STATS: &str = "USER_EXPORTER_STATS";
/// Capacity of [`USER_DST_STATS`].
pub const MAX_USER_DESTINATIONS: u32 = 65536;

/// Decode plans of NetFlow v9 / IPFIX data templates: `HASH<PlanKey, Plan>`,
/// compiled and written by userspace.
pub const FLOW_PLANS: &str = "FLOW_PLANS";
/// Sampling rates learnt from options data: `HASH<RateKey, u32>`, written by
/// userspace.
pub const FLOW_RATES: &str = "FLOW_RATES";
/// Capacity of [`FLOW_PLANS`] and [`FLOW_RATES`].
pub const MAX_FLOW_PLANS: u32 = 16384;
/// Flow records the kernel decodes in one datagram; a datagram with more is
/// left to userspace whole.
pub const MAX_FLOW_RECORDS: u32 = 2048;
/// Sets the kernel walks in one v9/IPFIX datagram.
pub const MAX_FLOW_SETS: u32 = 64;
/// [`RateKey::sampler`] of the rate that applies to records naming no sampler.
pub const DOMAIN_RATE: u64 = u64::MAX;

/// Destinations whose sampled packets the kernel streams to userspace for
/// fingerprinting: `HASH<DstKey, u8>`, written by userspace (detection).
pub const WATCHED: &str = "WATCHED";
/// The stream of [`WatchSample`]s: `RINGBUF`, read by the daemon.
pub const WATCH_SAMPLES: &str = "WATCH_SAMPLES";
/// Samples streamed and lost to a full ring: `PERCPU_ARRAY<WatchStats>` (1 entry).
pub const WATCH_STATS: &str = "WATCH_STATS";
/// Capacity of [`WATCHED`]: destinations near or over a threshold at once.
pub const MAX_WATCHED: u32 = 4096;
/// Size of [`WATCH_SAMPLES`] (a power of two): 4 MiB, about 12 000 samples,
/// several seconds of a large attack at 1:1000 sampling.
pub const WATCH_RING_BYTES: u32 = 1 << 22;
/// Bytes of the sampled header or flow record a [`WatchSample`] carries.
pub const WATCH_SNAP: usize = 192;

/// Default capacity of [`DST_STATS`]; the config sets it (`xdp.destinations`).
pub const DEFAULT_MAX_DESTINATIONS: u32 = 1 << 20;
/// Capacity of [`EXPORTER_STATS`] and [`AGENT_STATE`]: exporters are routers
/// (times sub-agents), a few thousand at most.
pub const MAX_EXPORTERS: u32 = 4096;
/// Telemetry ports a configuration may name.
pub const MAX_TELEMETRY_PORTS: u32 = 64;
/// Capacity of [`EXPORTER_ALLOW`].
pub const MAX_ALLOW_PREFIXES: u32 = 1024;

/// A destination address: IPv6, or IPv4 mapped into IPv6 (`::ffff:a.b.c.d`,
/// RFC 4291 §2.5.5.2), so one key type holds both families. 8-aligned so the
/// kernel copies it with two 64-bit moves instead of a byte loop.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct DstKey {
    /// Network byte order.
    pub addr: [u8; 16],
}
const _: () = assert!(size_of::<DstKey>() == 16);

/// Estimated traffic to one destination: sampled packets scaled by their
/// sampling rate. Indexed by [`Class`]; `Class::All` holds the totals.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct DstStats {
    pub packets: [u64; Class::COUNT],
    pub bytes: [u64; Class::COUNT],
}
const _: () = assert!(size_of::<DstStats>() == 112);

impl DstStats {
    /// Adds `other` (used to sum per-CPU values); wraps rather than panics.
    pub fn accumulate(&mut self, other: &Self) {
        for i in 0..Class::COUNT {
            self.packets[i] = self.packets[i].wrapping_add(other.packets[i]);
            self.bytes[i] = self.bytes[i].wrapping_add(other.bytes[i]);
        }
    }
}

/// One exporter: for sFlow the agent address and sub-agent id from the
/// datagram header; for datagrams whose header cannot be read, the UDP source
/// address with sub-agent 0. 8-aligned, like [`DstKey`].
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct ExporterKey {
    /// Agent (or source) address, network byte order, IPv4 mapped into IPv6.
    pub addr: [u8; 16],
    /// Part of the map ABI: the sFlow sub-agent id, the NetFlow v5
    /// engine (`engine_type << 8 | engine_id`), the v9 source id or the
    /// IPFIX observation domain; 0 for a datagram that could not be parsed.
    pub sub_agent: u32,
    /// Destination UDP port the datagram was sent to (host byte order).
    pub port: u16,
    /// The port's [`crate::TelemetryKind`] as `u8`.
    pub kind: u8,
    /// Explicit padding; always zero.
    pub _pad: u8,
}
const _: () = assert!(size_of::<ExporterKey>() == 24);

/// Counters of one exporter. Per CPU in the kernel; userspace sums the CPUs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct ExporterStats {
    /// Telemetry datagrams received.
    pub datagrams: u64,
    /// UDP payload bytes of those datagrams.
    pub bytes: u64,
    /// Flow samples (sFlow) read.
    pub samples: u64,
    /// Flow records read (inside flow samples).
    pub records: u64,
    /// Datagrams lost between two received ones, from the sequence numbers.
    pub sequence_gaps: u64,
    /// Sequence numbers that went backwards (agent restart, reordering).
    pub sequence_resets: u64,
    /// Parse errors by reason ([`ParseError`] as index).
    pub errors: [u64; ParseError::COUNT],
    /// When the last datagram was counted (CLOCK_MONOTONIC ns). The kernel
    /// stamps CLOCK_MONOTONIC_COARSE (`bpf_ktime_get_coarse_ns`: the same
    /// clock as of the last tick, 1 to 4 ms behind); the daemon's
    /// userspace decoder reads CLOCK_MONOTONIC.
    pub last_seen_ns: u64,
    /// The sampling rate applied to the last sample or record counted
    /// (1 when unsampled or unknown), and where it came from.
    pub sampling_rate: u32,
    /// A [`RateSource`] as `u8`.
    pub rate_source: u8,
    /// The format of the last datagram counted: [`FORMAT_SFLOW5`],
    /// [`FORMAT_NETFLOW5`], [`FORMAT_NETFLOW9`], [`FORMAT_IPFIX`] (0: none
    /// parsed). NetFlow v5 and v9 share a port, and number different things.
    pub format: u8,
    /// Explicit padding; always zero.
    pub _pad: [u8; 2],
}

/// [`ExporterStats::format`] values.
pub const FORMAT_SFLOW5: u8 = 1;
pub const FORMAT_NETFLOW5: u8 = 2;
pub const FORMAT_NETFLOW9: u8 = 3;
pub const FORMAT_IPFIX: u8 = 4;
const _: () = assert!(size_of::<ExporterStats>() == 64 + 8 * ParseError::COUNT);

/// Where the sampling rate applied to an exporter's samples came from.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateSource {
    /// Nothing counted yet.
    Unknown = 0,
    /// The sFlow flow sample's `sampling_rate`.
    Sample = 1,
    /// The NetFlow v5 header's sampling interval.
    Header = 2,
    /// A field in the IPFIX / v9 data record (samplingInterval, ...).
    Record = 3,
    /// IPFIX / v9 options data (per sampler or selector, or for the domain).
    Options = 4,
    /// None stated: counted unsampled (1:1).
    Unsampled = 5,
    /// The configuration's override for this exporter (`mode = "override"`).
    ConfigOverride = 6,
    /// The configuration's rate for exporters that state none (`mode = "default"`).
    ConfigDefault = 7,
}

impl RateSource {
    pub const ALL: [Self; 8] = [
        Self::Unknown,
        Self::Sample,
        Self::Header,
        Self::Record,
        Self::Options,
        Self::Unsampled,
        Self::ConfigOverride,
        Self::ConfigDefault,
    ];

    pub fn from_u8(v: u8) -> Self {
        Self::ALL
            .get(usize::from(v))
            .copied()
            .unwrap_or(Self::Unknown)
    }

    /// A stable name, for JSON and tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Sample => "sflow-sample",
            Self::Header => "netflow5-header",
            Self::Record => "record-field",
            Self::Options => "options-template",
            Self::Unsampled => "unsampled",
            Self::ConfigOverride => "config-override",
            Self::ConfigDefault => "config-default",
        }
    }
}

/// A configured sampling rate for the exporters of a prefix
/// ([`SAMPLING_RULES`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct SamplingRule {
    pub rate: u32,
    /// [`SAMPLING_OVERRIDE`] or [`SAMPLING_DEFAULT`].
    pub mode: u32,
}
const _: () = assert!(size_of::<SamplingRule>() == 8);

/// [`SamplingRule::mode`]: the rule's rate replaces whatever the telemetry says.
pub const SAMPLING_OVERRIDE: u32 = 1;
/// [`SamplingRule::mode`]: the rule's rate applies where the telemetry states none.
pub const SAMPLING_DEFAULT: u32 = 2;

impl ExporterStats {
    /// Adds `other` field by field (used to sum per-CPU values); wraps rather
    /// than panics on overflow.
    pub fn accumulate(&mut self, other: &Self) {
        self.datagrams = self.datagrams.wrapping_add(other.datagrams);
        self.bytes = self.bytes.wrapping_add(other.bytes);
        self.samples = self.samples.wrapping_add(other.samples);
        self.records = self.records.wrapping_add(other.records);
        self.sequence_gaps = self.sequence_gaps.wrapping_add(other.sequence_gaps);
        self.sequence_resets = self.sequence_resets.wrapping_add(other.sequence_resets);
        for i in 0..ParseError::COUNT {
            self.errors[i] = self.errors[i].wrapping_add(other.errors[i]);
        }
        // The rate and format of whichever CPU (or side: kernel, daemon)
        // counted last, as far as the stamps tell (the kernel's are to the
        // tick); a side that counted no sample yet has no rate to offer.
        let later = other.last_seen_ns > self.last_seen_ns;
        if other.sampling_rate != 0 && (later || self.sampling_rate == 0) {
            self.sampling_rate = other.sampling_rate;
            self.rate_source = other.rate_source;
        }
        if later {
            self.last_seen_ns = other.last_seen_ns;
            self.format = other.format;
        }
    }

    /// All parse errors, whatever the reason.
    pub fn error_total(&self) -> u64 {
        self.errors.iter().fold(0, |a, &e| a.wrapping_add(e))
    }
}

/// State of one exporter shared by all CPUs (not per CPU: the sequence check
/// needs the last number whichever CPU saw it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct AgentState {
    /// Sequence number of the last datagram.
    pub last_sequence: u32,
    /// Highest cumulative `drops` counter any of the agent's flow samples
    /// reported (samples the agent lost for lack of resources).
    pub agent_drops: u32,
    /// Uptime (ms) the agent reported in its last datagram.
    pub uptime_ms: u32,
    /// [`AGENT_RESYNC`]: the next datagram sets the sequence baseline
    /// without counting a gap (the last one's record count was unknown).
    pub flags: u32,
}

/// [`AgentState::flags`]: the sequence must be resynchronised.
pub const AGENT_RESYNC: u32 = 1;
const _: () = assert!(size_of::<AgentState>() == 16);

/// Counters of the program as a whole.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct GlobalStats {
    /// Datagrams to a telemetry port.
    pub telemetry_datagrams: u64,
    /// Of those, from a source outside the exporter allow-list (passed on).
    pub rejected_datagrams: u64,
    /// Datagrams fully consumed in the kernel and dropped (XDP_DROP).
    pub consumed_datagrams: u64,
    /// Datagrams passed on to the stack after parsing (errors, or
    /// `pass_telemetry`).
    pub passed_datagrams: u64,
}
const _: () = assert!(size_of::<GlobalStats>() == 32);

impl GlobalStats {
    /// Adds `other` field by field (used to sum per-CPU values).
    pub fn accumulate(&mut self, other: &Self) {
        self.telemetry_datagrams = self
            .telemetry_datagrams
            .wrapping_add(other.telemetry_datagrams);
        self.rejected_datagrams = self
            .rejected_datagrams
            .wrapping_add(other.rejected_datagrams);
        self.consumed_datagrams = self
            .consumed_datagrams
            .wrapping_add(other.consumed_datagrams);
        self.passed_datagrams = self.passed_datagrams.wrapping_add(other.passed_datagrams);
    }
}

/// What a telemetry port carries.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct PortConfig {
    /// A [`crate::TelemetryKind`] as `u8`.
    pub kind: u8,
    /// Explicit padding; always zero.
    pub _pad: [u8; 3],
}
const _: () = assert!(size_of::<PortConfig>() == 4);

/// Which template a plan is for: the exporter's transport session (address
/// and UDP source port, RFC 7011 §8), observation domain / source id, id.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct PlanKey {
    pub addr: [u8; 16],
    pub domain: u32,
    pub template: u16,
    pub src_port: u16,
}
const _: () = assert!(size_of::<PlanKey>() == 24);

/// Where a field sits in a data record; `len` 0: the template lacks it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct FieldLoc {
    pub off: u16,
    pub len: u8,
    pub _pad: u8,
}

/// How to decode the records of one fixed-length data template. Only
/// templates with a destination and a packet count, without variable-length
/// fields and without record-borne sampling other than samplingInterval or
/// samplerRandomInterval get a plan; the rest are decoded in userspace.
/// 8-aligned (no padding: the size is a multiple of 8) so the kernel copies
/// it in 6 words rather than 24 half-words.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct Plan {
    pub record_len: u16,
    pub _pad: u16,
    pub dst_v4: FieldLoc,
    pub dst_v6: FieldLoc,
    pub packets: FieldLoc,
    pub octets: FieldLoc,
    pub protocol: FieldLoc,
    pub tcp_flags: FieldLoc,
    pub fragment_offset: FieldLoc,
    pub fragment_flags: FieldLoc,
    /// samplerId (48), or selectorId (302) when there is no samplerId.
    pub sampler: FieldLoc,
    /// samplingInterval (34) and samplerRandomInterval (50) in the record.
    pub sampling_interval: FieldLoc,
    pub sampler_random_interval: FieldLoc,
}
const _: () = assert!(size_of::<Plan>() == 48);

/// A sampling rate's scope: the session and domain, and the sampler or
/// selector id ([`DOMAIN_RATE`] for records that name none).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct RateKey {
    pub addr: [u8; 16],
    pub domain: u32,
    pub src_port: u16,
    pub _pad: u16,
    pub sampler: u64,
}
const _: () = assert!(size_of::<RateKey>() == 32);

/// Runtime settings written by userspace.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct Settings {
    /// 1: accept every exporter (no allow-list configured).
    pub allow_any_exporter: u8,
    /// 1: pass consumed telemetry on to the stack instead of dropping it.
    pub pass_telemetry: u8,
    /// 1: [`WATCHED`] has entries, so samples' destinations are looked up in it.
    pub watching: u8,
    /// 1: [`SAMPLING_RULES`] has entries, so each datagram's exporter is
    /// looked up in it (0: no rule applies, no lookup).
    pub sampling_rules: u8,
    /// Bumped after every change to [`FLOW_PLANS`] or [`FLOW_RATES`], never
    /// back to 0 (0: nothing was written to them yet): while it stays the
    /// same, a CPU may reuse what it looked up in them for an earlier
    /// datagram.
    pub plans_generation: u32,
}
const _: () = assert!(size_of::<Settings>() == 8);

/// What the bytes of a [`WatchSample`] are.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchKind {
    /// An sFlow flow record (sFlow v5 §5.2), from its `data_format`: a
    /// `sampled_header`, `sampled_ipv4` or `sampled_ipv6`.
    SflowRecord = 1,
    /// An IPFIX data record of the template `template`.
    Ipfix = 2,
    /// A NetFlow v9 data record of the template `template`.
    NetFlow9 = 3,
    /// A NetFlow v5 flow record (48 bytes).
    NetFlow5 = 4,
}

impl WatchKind {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::SflowRecord,
            2 => Self::Ipfix,
            3 => Self::NetFlow9,
            4 => Self::NetFlow5,
            _ => return None,
        })
    }
}

/// One sampled packet (or flow record) of a watched destination, as the
/// kernel counted it: the raw bytes it was counted from plus what userspace
/// needs to decode them again. The kernel does not parse more than it counts;
/// the daemon's userspace decoder reads ports, flags and lengths from `snap`.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct WatchSample {
    /// The destination it was counted for (IPv4 mapped into IPv6).
    pub dst: [u8; 16],
    /// The exporter's address: with `domain`, `template` and `src_port`
    /// the scope of a flow record's template.
    pub exporter: [u8; 16],
    /// Packets and bytes counted for it (scaled by the sampling rate).
    pub packets: u64,
    pub bytes: u64,
    /// Observation domain / source id (flow records).
    pub domain: u32,
    /// Bytes at the start of `snap` that hold data.
    pub len: u32,
    pub template: u16,
    /// The exporter's UDP source port.
    pub src_port: u16,
    /// A [`WatchKind`] as `u8`.
    pub kind: u8,
    /// Explicit padding; always zero.
    pub _pad: [u8; 3],
    pub snap: [u8; WATCH_SNAP],
}
const _: () = assert!(size_of::<WatchSample>() == 64 + WATCH_SNAP);

/// Counters of the watch stream.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct WatchStats {
    /// Samples put on the ring.
    pub streamed: u64,
    /// Samples lost because the ring was full (the daemon fell behind).
    pub lost: u64,
}
const _: () = assert!(size_of::<WatchStats>() == 16);

#[cfg(feature = "user")]
mod user {
    // SAFETY: every type is #[repr(C)], Copy, and has no implicit padding
    // (bytemuck's derive checks that), so every bit pattern is valid.
    unsafe impl aya::Pod for super::DstKey {}
    unsafe impl aya::Pod for super::DstStats {}
    unsafe impl aya::Pod for super::ExporterKey {}
    unsafe impl aya::Pod for super::ExporterStats {}
    unsafe impl aya::Pod for super::AgentState {}
    unsafe impl aya::Pod for super::GlobalStats {}
    unsafe impl aya::Pod for super::PortConfig {}
    unsafe impl aya::Pod for super::Settings {}
    unsafe impl aya::Pod for super::PlanKey {}
    unsafe impl aya::Pod for super::Plan {}
    unsafe impl aya::Pod for super::RateKey {}
    unsafe impl aya::Pod for super::WatchStats {}
    unsafe impl aya::Pod for super::SamplingRule {}
}
