//! The counters as the CLI and the web view print them (`decode --json`, `exporters`,
//! `collect`): one row per destination and per exporter, a stable JSON
//! schema (tests/schemas).

use std::{collections::BTreeMap, net::IpAddr};

use edge_sensor_common::{
    Class, DstStats, ExporterStats, FORMAT_IPFIX, FORMAT_NETFLOW5, ParseError, RateSource,
};
use serde::{Serialize, Serializer, ser::SerializeMap};

use super::{ExporterId, ExporterTotals, Report};

/// The report as the stable JSON of `edge-sensor decode --json`.
pub fn report_json(report: &Report) -> serde_json::Value {
    serde_json::json!({
        "destinations": report.destinations.iter().map(|(ip, s)| DestinationRow::new(*ip, s)).collect::<Vec<_>>(),
        "exporters": exporters_json(&report.exporters),
    })
}

/// The exporters' rows of [`report_json`] alone (the web view's: without
/// a row per destination, a million of them at 1M tracked).
pub fn exporters_json(exporters: &BTreeMap<ExporterId, ExporterTotals>) -> serde_json::Value {
    serde_json::json!(
        exporters
            .iter()
            .map(|(id, t)| ExporterRow::new(*id, t))
            .collect::<Vec<_>>()
    )
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
    /// NetFlow v9 / IPFIX templates of this exporter address evicted over
    /// the daemon's template limits; `null` when the daemon did not answer
    /// (the pinned maps do not hold it).
    pub templates_evicted: Option<u64>,
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
            last_seen_secs: (s.last_seen_ns != 0)
                .then(|| super::monotonic_ns().saturating_sub(s.last_seen_ns) as f64 / 1e9),
            errors: Errors(s.errors),
            templates_evicted: None,
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
