//! The sensor's counters as the daemon sees them: per destination and per
//! exporter totals (per-CPU values summed). Both engines report into
//! [`Report`], the XDP program's maps read by [`crate::xdp::read`] and the
//! userspace decoder ([`crate::telemetry`]) directly, so they can be compared
//! field by field. Pure data: no map access here.

use std::{collections::BTreeMap, net::IpAddr};

use edge_sensor_common::{DstStats, ExporterKey, ExporterStats, TelemetryKind};

use crate::addr;

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
}
