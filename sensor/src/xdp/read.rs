//! Reading the counter maps into the [`Report`] data model: the maps of a
//! loaded program (through [`super::Sensor`]) or the ones pinned under the
//! pin directory (the CLI and metrics, also while the daemon is down).
//! Per-CPU values (exporters, global counters) are summed here, so nothing
//! above this module sees CPUs.

use std::{cell::Cell, collections::BTreeMap, net::IpAddr, path::Path};

use aya::maps::{HashMap, Map, MapData, MapError, PerCpuArray, PerCpuHashMap};
use edge_sensor_common::{
    AGENT_STATE, AgentState, DST_STATS, DstKey, DstStats, EXPORTER_STATS, ExporterKey,
    ExporterStats, GlobalStats, USER_DST_STATS, USER_EXPORTER_STATS,
};

use super::pins::{self, PinError};
use crate::{
    addr,
    counters::{Destinations, ExporterId, Report},
};

/// Every destination's counters (`DST_STATS`: one value shared by the
/// CPUs, the kernel adds atomically; or `USER_DST_STATS`).
pub fn destinations(map: &Map) -> Result<BTreeMap<IpAddr, DstStats>, MapError> {
    let hash: HashMap<&MapData, DstKey, DstStats> = HashMap::try_from(map)?;
    hash.iter()
        .map(|e| e.map(|(k, v)| (addr::from_key(k.addr), v)))
        .collect()
}

/// Takes a new reading of `DST_STATS` (`dst`) into the daemon's `table`,
/// each destination with what the daemon decoded itself (`user`) added;
/// `each` as in [`Destinations::update`]. No copy of the map is made: the
/// table is updated in place as the map is walked.
pub fn update_destinations(
    dst: &Map,
    user: &BTreeMap<IpAddr, DstStats>,
    table: &mut Destinations,
    each: impl FnMut(IpAddr, Option<&DstStats>, &DstStats),
) -> Result<(), MapError> {
    let hash: HashMap<&MapData, DstKey, DstStats> = HashMap::try_from(dst)?;
    let user: Vec<(&IpAddr, &DstStats)> = user.iter().collect();
    // Cells: the kernel walk marks what it merged, and the walk of the
    // daemon-only destinations after it (chained, so lazily) reads it.
    let merged: Vec<Cell<bool>> = vec![Cell::new(false); user.len()];
    let kernel = hash.iter().map(|entry| {
        let (key, mut stats) = entry?;
        let ip = addr::from_key(key.addr);
        if let Ok(i) = user.binary_search_by(|(u, _)| (*u).cmp(&ip)) {
            stats.accumulate(user[i].1);
            merged[i].set(true);
        }
        Ok((ip, stats))
    });
    let only_user = user
        .iter()
        .zip(&merged)
        .filter(|(_, merged)| !merged.get())
        .map(|((ip, s), _)| Ok((**ip, **s)));
    table.update(kernel.chain(only_user), each)
}

/// The program's whole-datagram counters (`GLOBAL_STATS`), CPUs summed.
pub fn global(map: &Map) -> Result<GlobalStats, MapError> {
    let array: PerCpuArray<&MapData, GlobalStats> = PerCpuArray::try_from(map)?;
    let mut total = GlobalStats::default();
    array.get(&0, 0)?.iter().for_each(|v| total.accumulate(v));
    Ok(total)
}

/// The three counter maps of a loaded or pinned program.
pub fn report(dst: &Map, exporters: &Map, agents: &Map) -> Result<Report, MapError> {
    let mut report = exporters_report(exporters, agents)?;
    report.destinations = destinations(dst)?;
    Ok(report)
}

/// Only the exporter maps (no destinations).
pub fn exporters_report(exporters: &Map, agents: &Map) -> Result<Report, MapError> {
    let mut report = Report::default();
    let exp: PerCpuHashMap<&MapData, ExporterKey, ExporterStats> =
        PerCpuHashMap::try_from(exporters)?;
    for entry in exp.iter() {
        let (key, per_cpu) = entry?;
        let mut total = ExporterStats::default();
        per_cpu.iter().for_each(|v| total.accumulate(v));
        report
            .exporters
            .entry(ExporterId::from_key(&key))
            .or_default()
            .stats = total;
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

/// Everything pinned under `pin_dir`: the kernel's counters and what the
/// daemon decoded itself, added.
pub fn pinned_report(pin_dir: &Path) -> Result<Report, PinError> {
    let (exp, agents) = (open(pin_dir, EXPORTER_STATS)?, open(pin_dir, AGENT_STATE)?);
    let dst = open(pin_dir, DST_STATS)?;
    let mut report = report(&dst, &exp, &agents).map_err(map_error(pin_dir))?;
    report.merge(&pinned_user_report(pin_dir)?);
    Ok(report)
}

/// What the daemon decoded in userspace (`USER_*` maps), if pinned.
pub fn pinned_user_report(pin_dir: &Path) -> Result<Report, PinError> {
    let mut report = Report::default();
    if let Some(map) = open_if_pinned(pin_dir, USER_DST_STATS)? {
        report.destinations = destinations(&map).map_err(map_error(pin_dir))?;
    }
    if let Some(map) = open_if_pinned(pin_dir, USER_EXPORTER_STATS)? {
        let hash: HashMap<&MapData, ExporterKey, ExporterStats> =
            HashMap::try_from(&map).map_err(map_error(pin_dir))?;
        for entry in hash.iter() {
            let (key, stats) = entry.map_err(map_error(pin_dir))?;
            report
                .exporters
                .entry(ExporterId::from_key(&key))
                .or_default()
                .stats = stats;
        }
    }
    Ok(report)
}

/// Only the pinned exporter maps, the kernel's and the daemon's.
pub fn pinned_exporters(pin_dir: &Path) -> Result<Report, PinError> {
    let (exp, agents) = (open(pin_dir, EXPORTER_STATS)?, open(pin_dir, AGENT_STATE)?);
    let mut report = exporters_report(&exp, &agents).map_err(map_error(pin_dir))?;
    let mut user = pinned_user_report(pin_dir)?;
    user.destinations.clear();
    report.merge(&user);
    Ok(report)
}

/// Every destination's counters under `pin_dir`: the kernel's and the
/// daemon's, added.
pub fn pinned_destinations(pin_dir: &Path) -> Result<BTreeMap<IpAddr, DstStats>, PinError> {
    let mut all = destinations(&open(pin_dir, DST_STATS)?).map_err(map_error(pin_dir))?;
    if let Some(map) = open_if_pinned(pin_dir, USER_DST_STATS)? {
        for (ip, s) in destinations(&map).map_err(map_error(pin_dir))? {
            all.entry(ip).or_default().accumulate(&s);
        }
    }
    Ok(all)
}

/// The pinned `GLOBAL_STATS`.
pub fn pinned_global(pin_dir: &Path) -> Result<GlobalStats, PinError> {
    global(&open(pin_dir, edge_sensor_common::GLOBAL_STATS)?).map_err(map_error(pin_dir))
}

fn map_error(pin_dir: &Path) -> impl Fn(MapError) -> PinError + '_ {
    move |source| PinError::Map {
        path: pin_dir.to_owned(),
        source,
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
