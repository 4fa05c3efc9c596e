//! The program's maps. Names, capacities and layouts come from `common`.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    macros::map,
    maps::{HashMap, LruPerCpuHashMap},
};
use edge_sensor_common::{
    ExporterKey, ExporterStats, MAX_EXPORTERS, MAX_TELEMETRY_PORTS, PortConfig,
};

/// Per exporter counters (`common::EXPORTER_STATS`), pinned by userspace.
#[map]
pub static EXPORTER_STATS: LruPerCpuHashMap<ExporterKey, ExporterStats> =
    LruPerCpuHashMap::with_max_entries(MAX_EXPORTERS, 0);

/// UDP port (host order) -> what it carries (`common::TELEMETRY_PORTS`).
#[map]
pub static TELEMETRY_PORTS: HashMap<u16, PortConfig> =
    HashMap::with_max_entries(MAX_TELEMETRY_PORTS, 0);

/// The [`edge_sensor_common::TelemetryKind`] (as `u8`) of a configured
/// telemetry port, `None` for any other port.
#[inline(always)]
pub fn telemetry_kind(port: u16) -> Option<u8> {
    TELEMETRY_PORTS
        .get_ptr(&port)
        .map(|cfg| unsafe { (*cfg).kind })
}

/// The exporter's counters on this CPU, created zeroed on first use.
#[inline(always)]
pub fn exporter_stats(key: &ExporterKey) -> Option<*mut ExporterStats> {
    if let Some(p) = EXPORTER_STATS.get_ptr_mut(key) {
        return Some(p);
    }
    // NOEXIST: another CPU may have created it meanwhile; then we use that one.
    let _ = EXPORTER_STATS.insert(key, ExporterStats::default(), u64::from(BPF_NOEXIST));
    EXPORTER_STATS.get_ptr_mut(key)
}
