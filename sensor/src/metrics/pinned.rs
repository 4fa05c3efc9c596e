//! Metrics read from the pinned maps, for `edge-sensor metrics` (a separate
//! exporter that works while the daemon is down): each poll reads every
//! counter map, the maps' fill levels and the programs using them.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::PathBuf,
    time::{Duration, Instant, SystemTime},
};

use aya::programs::loaded_programs;
use edge_sensor_common::{Class, DST_STATS, DstStats};

use super::Metrics;
use crate::{
    rates,
    xdp::{inspect, pins::PinError, read},
};

/// Reads the pins under `pin_dir` into a [`Metrics`].
pub struct PinnedPoller {
    pin_dir: PathBuf,
    /// Destinations exported with their rates.
    top: usize,
    /// The previous destination reading, for rates.
    previous: Option<(Instant, BTreeMap<IpAddr, DstStats>)>,
    /// This process holds BPF_ENABLE_STATS (which the sysctl does not show).
    pub stats_held: bool,
}

impl PinnedPoller {
    pub fn new(pin_dir: PathBuf, top: usize) -> Self {
        Self {
            pin_dir,
            top,
            previous: None,
            stats_held: false,
        }
    }

    /// One poll. Rates need two, so the first sets no destination rates.
    pub fn poll(&mut self, metrics: &Metrics) -> Result<(), PinError> {
        let started = Instant::now();
        let result = self.read(metrics);
        match &result {
            Ok(()) => {
                let now = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default();
                metrics.set_poll(started.elapsed(), now.as_secs_f64());
            }
            Err(_) => metrics.count_poll_error(),
        }
        result
    }

    fn read(&mut self, metrics: &Metrics) -> Result<(), PinError> {
        let dir = &self.pin_dir;
        let maps = inspect::list(dir)?;
        metrics.set_maps(&maps);

        metrics.set_exporters(&read::pinned_exporters(dir)?);

        metrics.set_global(&read::pinned_global(dir)?);

        let now = Instant::now();
        let destinations = read::pinned_destinations(dir)?;
        if let Some((then, before)) = &self.previous {
            let mut rows = rates::between(before, &destinations, now - *then);
            rows.sort_by(|a, b| {
                b.pps(Class::All)
                    .total_cmp(&a.pps(Class::All))
                    .then(a.ip.cmp(&b.ip))
            });
            rows.truncate(self.top);
            metrics.set_top_destinations(&rows, destinations.len());
        }
        self.previous = Some((now, destinations));

        let dst_id = maps.iter().find(|m| m.name == DST_STATS).map(|m| m.id);
        let (programs, runs, run_time) = dst_id.map_or((0, 0, Duration::ZERO), programs_using);
        metrics.set_programs(
            programs,
            runs,
            run_time,
            self.stats_held || bpf_stats_enabled(),
        );
        Ok(())
    }
}

/// Loaded programs that use map `map_id`: how many, their runs and run
/// time summed (the kernel counts only while `bpf_stats_enabled`).
pub(crate) fn programs_using(map_id: u32) -> (usize, u64, Duration) {
    let mut found = (0, 0, Duration::ZERO);
    for info in loaded_programs().filter_map(Result::ok) {
        let uses = info
            .map_ids()
            .ok()
            .flatten()
            .is_some_and(|ids| ids.contains(&map_id));
        if uses {
            found.0 += 1;
            found.1 += info.run_count();
            found.2 += info.run_time();
        }
    }
    found
}

pub(crate) fn bpf_stats_enabled() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").is_ok_and(|v| v.trim() == "1")
}
