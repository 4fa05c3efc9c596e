//! Per exporter counters, read from the `EXPORTER_STATS` map (per-CPU values
//! summed).

use std::{net::IpAddr, path::Path};

use aya::maps::{Map, MapData, MapError, PerCpuHashMap};
use edge_sensor_common::{EXPORTER_STATS, ExporterKey, ExporterStats, TelemetryKind};
use serde::Serialize;

use crate::{
    addr,
    xdp::pins::{self, PinError},
};

/// One exporter's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExporterRow {
    /// Source address of its datagrams.
    pub ip: IpAddr,
    /// Our UDP port it sends to.
    pub port: u16,
    /// What that port carries ("sflow", "ipfix", "netflow"), or "unknown".
    pub protocol: &'static str,
    pub datagrams: u64,
    pub bytes: u64,
}

/// Sums the per-CPU values of every exporter in `map`, sorted by address.
pub fn read(map: &Map) -> Result<Vec<ExporterRow>, MapError> {
    let map: PerCpuHashMap<&MapData, ExporterKey, ExporterStats> = PerCpuHashMap::try_from(map)?;
    let mut rows = Vec::new();
    for entry in map.iter() {
        let (key, per_cpu) = entry?;
        let mut total = ExporterStats::default();
        per_cpu.iter().for_each(|v| total.accumulate(v));
        rows.push(ExporterRow {
            ip: addr::from_key(key.addr),
            port: key.port,
            protocol: TelemetryKind::from_u8(key.kind).map_or("unknown", TelemetryKind::name),
            datagrams: total.datagrams,
            bytes: total.bytes,
        });
    }
    rows.sort_by_key(|r| (r.ip, r.port));
    Ok(rows)
}

/// Reads the map pinned under `pin_dir` (works while the daemon is down).
pub fn read_pinned(pin_dir: &Path) -> Result<Vec<ExporterRow>, PinError> {
    let spec = pins::spec(EXPORTER_STATS).expect("EXPORTER_STATS is a pinned map");
    let map = spec.open(pin_dir)?;
    read(&map).map_err(|source| PinError::Map {
        path: pin_dir.join(EXPORTER_STATS),
        source,
    })
}
