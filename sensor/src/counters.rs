//! The sensor's counters as userspace sees them: per destination and per
//! exporter totals (per-CPU values summed), read from the BPF maps or
//! produced by the userspace decoder. Both engines report into [`Report`], so
//! they can be compared field by field.

use std::{collections::BTreeMap, net::IpAddr, path::Path};

use aya::maps::{HashMap, Map, MapData, MapError, PerCpuArray, PerCpuHashMap};
use edge_sensor_common::{
    AGENT_STATE, AgentState, Class, DST_STATS, DstKey, DstStats, EXPORTER_STATS, ExporterKey,
    ExporterStats, FORMAT_IPFIX, FORMAT_NETFLOW5, GlobalStats, ParseError, RateSource,
    TelemetryKind, USER_DST_STATS, USER_EXPORTER_STATS,
};
use serde::{Serialize, Serializer, ser::SerializeMap};

use crate::{
    addr,
    xdp::pins::{self, PinError},
};

/// Every destination's counters (per-CPU values summed).
pub fn destinations_from_map(map: &Map) -> Result<BTreeMap<IpAddr, DstStats>, MapError> {
    let dst: PerCpuHashMap<&MapData, DstKey, DstStats> = PerCpuHashMap::try_from(map)?;
    let mut out = BTreeMap::new();
    for entry in dst.iter() {
        let (key, per_cpu) = entry?;
        let mut total = DstStats::default();
        per_cpu.iter().for_each(|v| total.accumulate(v));
        out.insert(addr::from_key(key.addr), total);
    }
    Ok(out)
}

/// The program's whole-datagram counters (`GLOBAL_STATS`), CPUs summed.
pub fn read_global(map: &Map) -> Result<GlobalStats, MapError> {
    let array: PerCpuArray<&MapData, GlobalStats> = PerCpuArray::try_from(map)?;
    let mut total = GlobalStats::default();
    array.get(&0, 0)?.iter().for_each(|v| total.accumulate(v));
    Ok(total)
}

/// One exporter: agent address (or source address), sub-agent, our port
/// and what it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExporterId {
    pub ip: IpAddr,
    pub sub_agent: u32,
    pub port: u16,
    pub kind: u8,
}

impl ExporterId {
    pub fn from_key(key: &ExporterKey) -> Self {
        Self {
            ip: addr::from_key(key.addr),
            sub_agent: key.sub_agent,
            port: key.port,
            kind: key.kind,
        }
    }

    pub fn to_key(self) -> ExporterKey {
        ExporterKey {
            addr: addr::to_key(self.ip),
            sub_agent: self.sub_agent,
            port: self.port,
            kind: self.kind,
            _pad: 0,
        }
    }

    pub fn protocol(self) -> &'static str {
        TelemetryKind::from_u8(self.kind).map_or("unknown", TelemetryKind::name)
    }
}

/// Counters of one exporter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExporterTotals {
    pub stats: ExporterStats,
    /// Highest cumulative drop counter the agent reported.
    pub agent_drops: u32,
}

/// Everything counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub destinations: BTreeMap<IpAddr, DstStats>,
    pub exporters: BTreeMap<ExporterId, ExporterTotals>,
}

impl Report {
    /// Reads the three counter maps of a loaded or pinned program.
    pub fn from_maps(dst: &Map, exporters: &Map, agents: &Map) -> Result<Self, MapError> {
        let mut report = Self::exporters_from_maps(exporters, agents)?;
        report.destinations = destinations_from_map(dst)?;
        Ok(report)
    }

    /// Reads only the exporter maps (no destinations).
    pub fn exporters_from_maps(exporters: &Map, agents: &Map) -> Result<Self, MapError> {
        let mut report = Self::default();
        let exp: PerCpuHashMap<&MapData, ExporterKey, ExporterStats> =
            PerCpuHashMap::try_from(exporters)?;
        for entry in exp.iter() {
            let (key, per_cpu) = entry?;
            let mut total = ExporterStats::default();
            per_cpu.iter().for_each(|v| total.accumulate(v));
            let totals = report
                .exporters
                .entry(ExporterId::from_key(&key))
                .or_default();
            totals.stats = total;
        }
        let agents: HashMap<&MapData, ExporterKey, AgentState> = HashMap::try_from(agents)?;
        for entry in agents.iter() {
            let (key, state) = entry?;
            if let Some(totals) = report.exporters.get_mut(&ExporterId::from_key(&key)) {
                totals.agent_drops = state.agent_drops;
            }
        }
        Ok(report)
    }

    /// Reads the maps pinned under `pin_dir` (works while the daemon is down).
    pub fn read_pinned(pin_dir: &Path) -> Result<Self, PinError> {
        let (exp, agents) = (open(pin_dir, EXPORTER_STATS)?, open(pin_dir, AGENT_STATE)?);
        let dst = open(pin_dir, DST_STATS)?;
        let map_err = |source| PinError::Map {
            path: pin_dir.to_owned(),
            source,
        };
        let mut report = Self::from_maps(&dst, &exp, &agents).map_err(map_err)?;
        report.merge(&Self::read_pinned_user(pin_dir)?);
        Ok(report)
    }

    /// What the daemon decoded in userspace (`USER_*` maps), if pinned.
    pub fn read_pinned_user(pin_dir: &Path) -> Result<Self, PinError> {
        let mut report = Self::default();
        let map_err = |source| PinError::Map {
            path: pin_dir.to_owned(),
            source,
        };
        if let Some(map) = open_if_pinned(pin_dir, USER_DST_STATS)? {
            report.destinations = user_destinations(&map).map_err(map_err)?;
        }
        if let Some(map) = open_if_pinned(pin_dir, USER_EXPORTER_STATS)? {
            let hash: HashMap<&MapData, ExporterKey, ExporterStats> =
                HashMap::try_from(&map).map_err(map_err)?;
            for entry in hash.iter() {
                let (key, stats) = entry.map_err(map_err)?;
                report
                    .exporters
                    .entry(ExporterId::from_key(&key))
                    .or_default()
                    .stats = stats;
            }
        }
        Ok(report)
    }

    /// Reads only the pinned exporter maps.
    pub fn read_pinned_exporters(pin_dir: &Path) -> Result<Self, PinError> {
        let (exp, agents) = (open(pin_dir, EXPORTER_STATS)?, open(pin_dir, AGENT_STATE)?);
        let mut report =
            Self::exporters_from_maps(&exp, &agents).map_err(|source| PinError::Map {
                path: pin_dir.to_owned(),
                source,
            })?;
        let mut user = Self::read_pinned_user(pin_dir)?;
        user.destinations.clear();
        report.merge(&user);
        Ok(report)
    }

    /// Adds `other`'s counts to this report's (kernel and userspace halves).
    pub fn merge(&mut self, other: &Report) {
        for (ip, s) in &other.destinations {
            self.destinations.entry(*ip).or_default().accumulate(s);
        }
        for (id, t) in &other.exporters {
            let mine = self.exporters.entry(*id).or_default();
            mine.stats.accumulate(&t.stats);
            mine.agent_drops = mine.agent_drops.max(t.agent_drops);
        }
    }

    /// The report as the stable JSON of `edge-sensor decode --json`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "destinations": self.destinations.iter().map(|(ip, s)| DestinationRow::new(*ip, s)).collect::<Vec<_>>(),
            "exporters": self.exporters.iter().map(|(id, t)| ExporterRow::new(*id, t)).collect::<Vec<_>>(),
        })
    }
}

fn open(pin_dir: &Path, name: &str) -> Result<Map, PinError> {
    pins::spec(name).expect("a pinned map").open(pin_dir)
}

/// `None` when the map is not pinned (a sensor from before it existed).
fn open_if_pinned(pin_dir: &Path, name: &str) -> Result<Option<Map>, PinError> {
    match open(pin_dir, name) {
        Ok(map) => Ok(Some(map)),
        Err(PinError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The daemon's per-destination counters (`USER_DST_STATS`, not per CPU).
pub fn user_destinations(map: &Map) -> Result<BTreeMap<IpAddr, DstStats>, MapError> {
    let hash: HashMap<&MapData, DstKey, DstStats> = HashMap::try_from(map)?;
    hash.iter()
        .map(|e| e.map(|(k, v)| (addr::from_key(k.addr), v)))
        .collect()
}

/// Every destination's counters under `pin_dir`: the kernel's and the
/// daemon's, added.
pub fn read_pinned_destinations(pin_dir: &Path) -> Result<BTreeMap<IpAddr, DstStats>, PinError> {
    let map_err = |source| PinError::Map {
        path: pin_dir.to_owned(),
        source,
    };
    let mut all = destinations_from_map(&open(pin_dir, DST_STATS)?).map_err(map_err)?;
    if let Some(map) = open_if_pinned(pin_dir, USER_DST_STATS)? {
        for (ip, s) in user_destinations(&map).map_err(map_err)? {
            all.entry(ip).or_default().accumulate(&s);
        }
    }
    Ok(all)
}

/// A destination as printed.
#[derive(Debug, Clone, Serialize)]
pub struct DestinationRow {
    pub ip: IpAddr,
    pub packets: u64,
    pub bytes: u64,
    pub tcp_packets: u64,
    pub tcp_syn_packets: u64,
    pub udp_packets: u64,
    pub icmp_packets: u64,
    pub fragment_packets: u64,
    pub other_packets: u64,
}

impl DestinationRow {
    pub fn new(ip: IpAddr, s: &DstStats) -> Self {
        let p = |c: Class| s.packets[c as usize];
        Self {
            ip,
            packets: p(Class::All),
            bytes: s.bytes[Class::All as usize],
            tcp_packets: p(Class::Tcp),
            tcp_syn_packets: p(Class::TcpSyn),
            udp_packets: p(Class::Udp),
            icmp_packets: p(Class::Icmp),
            fragment_packets: p(Class::Fragment),
            other_packets: p(Class::Other),
        }
    }
}

/// An exporter as printed.
#[derive(Debug, Clone, Serialize)]
pub struct ExporterRow {
    pub ip: IpAddr,
    pub sub_agent: u32,
    pub port: u16,
    pub protocol: &'static str,
    pub datagrams: u64,
    pub bytes: u64,
    pub samples: u64,
    pub records: u64,
    pub sequence_gaps: u64,
    pub sequence_resets: u64,
    /// Share of what the exporter sent that never arrived, in percent, from
    /// the sequence numbers (sFlow and NetFlow v9 number datagrams, NetFlow
    /// v5 and IPFIX number flow records).
    pub loss_percent: f64,
    pub agent_drops: u32,
    /// The sampling rate applied to the exporter's last sample or record
    /// (1: unsampled), and where it came from (`RateSource::name`).
    pub sampling_rate: u32,
    pub sampling_source: &'static str,
    /// Seconds since the last datagram was counted; `null` if never.
    pub last_seen_secs: Option<f64>,
    /// Datagrams and flow samples (sFlow) or records (flows) per second,
    /// from two reads (`exporters --interval`); `null` from one read.
    pub datagrams_per_s: Option<f64>,
    pub samples_per_s: Option<f64>,
    pub errors: Errors,
}

impl ExporterRow {
    pub fn new(id: ExporterId, t: &ExporterTotals) -> Self {
        let s = &t.stats;
        Self {
            ip: id.ip,
            sub_agent: id.sub_agent,
            port: id.port,
            protocol: id.protocol(),
            datagrams: s.datagrams,
            bytes: s.bytes,
            samples: s.samples,
            records: s.records,
            sequence_gaps: s.sequence_gaps,
            sequence_resets: s.sequence_resets,
            loss_percent: loss_percent(s),
            agent_drops: t.agent_drops,
            sampling_rate: s.sampling_rate,
            sampling_source: RateSource::from_u8(s.rate_source).name(),
            last_seen_secs: (s.last_seen_ns != 0).then(|| {
                crate::telemetry::monotonic_ns().saturating_sub(s.last_seen_ns) as f64 / 1e9
            }),
            errors: Errors(s.errors),
            datagrams_per_s: None,
            samples_per_s: None,
        }
    }
}

/// Lost / (received + lost), in the unit the protocol numbers.
fn loss_percent(s: &ExporterStats) -> f64 {
    let received = match s.format {
        FORMAT_IPFIX | FORMAT_NETFLOW5 => s.records,
        _ => s.datagrams,
    };
    let total = received.saturating_add(s.sequence_gaps);
    if total == 0 {
        0.0
    } else {
        100.0 * s.sequence_gaps as f64 / total as f64
    }
}

/// Parse errors by reason, serialized as `{"reason": count, ...}` (every
/// reason, so the schema does not depend on the traffic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errors(pub [u64; ParseError::COUNT]);

impl Errors {
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

impl Serialize for Errors {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(ParseError::COUNT))?;
        for reason in ParseError::ALL {
            map.serialize_entry(reason.name(), &self.0[reason as usize])?;
        }
        map.end()
    }
}
