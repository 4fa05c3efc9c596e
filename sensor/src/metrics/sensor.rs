//! The sensor's own metrics: their names (the Grafana dashboard in
//! `contrib/grafana/edge-sensor.json` queries these) and setters from what
//! the pollers read.

use std::time::Duration;

use edge_sensor_common::{Class, GlobalStats, ParseError};

use super::{MetricType, Metrics};
use crate::{
    counters::{ExporterId, Report},
    rates::DstRates,
    xdp::inspect::MapStatus,
};

pub const EXPORTER_DATAGRAMS: &str = "edge_sensor_exporter_datagrams_total";
pub const EXPORTER_BYTES: &str = "edge_sensor_exporter_bytes_total";
pub const EXPORTER_SAMPLES: &str = "edge_sensor_exporter_samples_total";
pub const EXPORTER_RECORDS: &str = "edge_sensor_exporter_records_total";
pub const EXPORTER_SEQUENCE_GAPS: &str = "edge_sensor_exporter_sequence_gaps_total";
pub const EXPORTER_SEQUENCE_RESETS: &str = "edge_sensor_exporter_sequence_resets_total";
pub const EXPORTER_AGENT_DROPS: &str = "edge_sensor_exporter_agent_drops_total";
pub const EXPORTER_PARSE_ERRORS: &str = "edge_sensor_exporter_parse_errors_total";
pub const DESTINATION_PPS: &str = "edge_sensor_destination_pps";
pub const DESTINATION_BPS: &str = "edge_sensor_destination_bps";
pub const DESTINATIONS_TRACKED: &str = "edge_sensor_destinations_tracked";
pub const XDP_TELEMETRY_DATAGRAMS: &str = "edge_sensor_xdp_telemetry_datagrams_total";
pub const XDP_REJECTED_DATAGRAMS: &str = "edge_sensor_xdp_rejected_datagrams_total";
pub const XDP_CONSUMED_DATAGRAMS: &str = "edge_sensor_xdp_consumed_datagrams_total";
pub const XDP_PASSED_DATAGRAMS: &str = "edge_sensor_xdp_passed_datagrams_total";
pub const XDP_PROGRAMS: &str = "edge_sensor_xdp_programs";
pub const XDP_PROGRAM_RUNS: &str = "edge_sensor_xdp_program_runs_total";
pub const XDP_PROGRAM_RUN_SECONDS: &str = "edge_sensor_xdp_program_run_seconds_total";
pub const BPF_STATS_ENABLED: &str = "edge_sensor_bpf_stats_enabled";
pub const MAP_ENTRIES: &str = "edge_sensor_map_entries";
pub const MAP_MAX_ENTRIES: &str = "edge_sensor_map_max_entries";
pub const MAP_MEMORY_BYTES: &str = "edge_sensor_map_memory_bytes";
pub const POLL_DURATION: &str = "edge_sensor_poll_duration_seconds";
pub const POLL_ERRORS: &str = "edge_sensor_poll_errors_total";
pub const LAST_POLL: &str = "edge_sensor_last_poll_timestamp_seconds";

/// Every family above with its type and help.
const FAMILIES: &[(&str, MetricType, &str)] = &[
    (
        EXPORTER_DATAGRAMS,
        MetricType::Counter,
        "Telemetry datagrams received from the exporter.",
    ),
    (
        EXPORTER_BYTES,
        MetricType::Counter,
        "UDP payload bytes of the exporter's telemetry datagrams.",
    ),
    (
        EXPORTER_SAMPLES,
        MetricType::Counter,
        "Flow samples (sFlow) read from the exporter.",
    ),
    (
        EXPORTER_RECORDS,
        MetricType::Counter,
        "Flow records read from the exporter.",
    ),
    (
        EXPORTER_SEQUENCE_GAPS,
        MetricType::Counter,
        "Datagrams lost between received ones, from the exporter's sequence numbers.",
    ),
    (
        EXPORTER_SEQUENCE_RESETS,
        MetricType::Counter,
        "Sequence numbers that went backwards (exporter restart, reordering).",
    ),
    (
        EXPORTER_AGENT_DROPS,
        MetricType::Counter,
        "Samples the agent itself reported dropping (sFlow drops counter).",
    ),
    (
        EXPORTER_PARSE_ERRORS,
        MetricType::Counter,
        "Parse errors by reason.",
    ),
    (
        DESTINATION_PPS,
        MetricType::Gauge,
        "Estimated packets per second to one of the busiest destinations, by class.",
    ),
    (
        DESTINATION_BPS,
        MetricType::Gauge,
        "Estimated bits per second to one of the busiest destinations, by class.",
    ),
    (
        DESTINATIONS_TRACKED,
        MetricType::Gauge,
        "Destinations with counters in the maps.",
    ),
    (
        XDP_TELEMETRY_DATAGRAMS,
        MetricType::Counter,
        "Datagrams to a telemetry port seen by the XDP program.",
    ),
    (
        XDP_REJECTED_DATAGRAMS,
        MetricType::Counter,
        "Telemetry datagrams from outside the exporter allow-list (passed on).",
    ),
    (
        XDP_CONSUMED_DATAGRAMS,
        MetricType::Counter,
        "Telemetry datagrams fully parsed in the kernel and dropped.",
    ),
    (
        XDP_PASSED_DATAGRAMS,
        MetricType::Counter,
        "Telemetry datagrams passed on to the stack after parsing.",
    ),
    (
        XDP_PROGRAMS,
        MetricType::Gauge,
        "Loaded XDP programs using the pinned maps.",
    ),
    (
        XDP_PROGRAM_RUNS,
        MetricType::Counter,
        "Runs of those programs (counted only while kernel.bpf_stats_enabled is 1).",
    ),
    (
        XDP_PROGRAM_RUN_SECONDS,
        MetricType::Counter,
        "Time spent in those programs (counted only while kernel.bpf_stats_enabled is 1).",
    ),
    (
        BPF_STATS_ENABLED,
        MetricType::Gauge,
        "1 when the kernel counts BPF program runs (kernel.bpf_stats_enabled, or BPF_ENABLE_STATS held by this process).",
    ),
    (MAP_ENTRIES, MetricType::Gauge, "Entries in the pinned map."),
    (
        MAP_MAX_ENTRIES,
        MetricType::Gauge,
        "Capacity of the pinned map.",
    ),
    (
        MAP_MEMORY_BYTES,
        MetricType::Gauge,
        "Memory the kernel charges for the pinned map (memlock).",
    ),
    (
        POLL_DURATION,
        MetricType::Gauge,
        "Seconds the last poll of the maps took.",
    ),
    (
        POLL_ERRORS,
        MetricType::Counter,
        "Polls of the maps that failed.",
    ),
    (
        LAST_POLL,
        MetricType::Gauge,
        "Unix time of the last successful poll of the maps.",
    ),
];

impl Metrics {
    /// A registry with the sensor's families described.
    pub fn for_sensor() -> Self {
        let m = Self::new();
        for (name, kind, help) in FAMILIES {
            m.describe(name, *kind, help)
                .expect("the sensor's metric names are valid");
        }
        // A counter is there from the start, so rate() sees its first error.
        m.set(POLL_ERRORS, &[], 0.0);
        m
    }

    /// Per exporter counters (kernel and daemon halves merged).
    pub fn set_exporters(&self, report: &Report) {
        let labels = |id: &ExporterId| {
            vec![
                ("exporter", id.ip.to_string()),
                ("sub_agent", id.sub_agent.to_string()),
                ("port", id.port.to_string()),
                ("protocol", id.protocol().to_owned()),
            ]
        };
        let family = |name: &str, value: fn(&crate::counters::ExporterTotals) -> u64| {
            self.replace(
                name,
                report
                    .exporters
                    .iter()
                    .map(|(id, t)| (labels(id), value(t) as f64)),
            );
        };
        family(EXPORTER_DATAGRAMS, |t| t.stats.datagrams);
        family(EXPORTER_BYTES, |t| t.stats.bytes);
        family(EXPORTER_SAMPLES, |t| t.stats.samples);
        family(EXPORTER_RECORDS, |t| t.stats.records);
        family(EXPORTER_SEQUENCE_GAPS, |t| t.stats.sequence_gaps);
        family(EXPORTER_SEQUENCE_RESETS, |t| t.stats.sequence_resets);
        family(EXPORTER_AGENT_DROPS, |t| u64::from(t.agent_drops));
        self.replace(
            EXPORTER_PARSE_ERRORS,
            report.exporters.iter().flat_map(|(id, t)| {
                ParseError::ALL.iter().map(move |reason| {
                    let mut l = labels(id);
                    l.push(("reason", reason.name().to_owned()));
                    (l, t.stats.errors[*reason as usize] as f64)
                })
            }),
        );
    }

    /// Rates of the busiest destinations (already ranked and cut), and how
    /// many are tracked.
    pub fn set_top_destinations(&self, top: &[DstRates], tracked: usize) {
        let series = |rate: fn(&DstRates, Class) -> f64| {
            top.iter()
                .flat_map(move |r| {
                    Class::ALL.iter().map(move |c| {
                        (
                            vec![
                                ("destination", r.ip.to_string()),
                                ("class", c.name().to_owned()),
                            ],
                            rate(r, *c),
                        )
                    })
                })
                .collect::<Vec<_>>()
        };
        self.replace(DESTINATION_PPS, series(DstRates::pps));
        self.replace(DESTINATION_BPS, series(DstRates::bps));
        self.set(DESTINATIONS_TRACKED, &[], tracked as f64);
    }

    /// The program's whole-datagram counters (`GLOBAL_STATS`).
    pub fn set_global(&self, g: &GlobalStats) {
        self.set(XDP_TELEMETRY_DATAGRAMS, &[], g.telemetry_datagrams as f64);
        self.set(XDP_REJECTED_DATAGRAMS, &[], g.rejected_datagrams as f64);
        self.set(XDP_CONSUMED_DATAGRAMS, &[], g.consumed_datagrams as f64);
        self.set(XDP_PASSED_DATAGRAMS, &[], g.passed_datagrams as f64);
    }

    /// Loaded programs using the maps, their summed run counts and time,
    /// and whether the kernel counts runs at all.
    pub fn set_programs(
        &self,
        programs: usize,
        runs: u64,
        run_time: Duration,
        stats_enabled: bool,
    ) {
        self.set(XDP_PROGRAMS, &[], programs as f64);
        self.set(XDP_PROGRAM_RUNS, &[], runs as f64);
        self.set(XDP_PROGRAM_RUN_SECONDS, &[], run_time.as_secs_f64());
        self.set(BPF_STATS_ENABLED, &[], f64::from(u8::from(stats_enabled)));
    }

    /// Fill level and memory of each pinned map.
    pub fn set_maps(&self, maps: &[MapStatus]) {
        let per_map = |value: fn(&MapStatus) -> Option<u64>| {
            maps.iter()
                .filter_map(|m| value(m).map(|v| (vec![("map", m.name.clone())], v as f64)))
                .collect::<Vec<_>>()
        };
        self.replace(MAP_ENTRIES, per_map(|m| m.entries));
        self.replace(MAP_MAX_ENTRIES, per_map(|m| Some(u64::from(m.max_entries))));
        self.replace(MAP_MEMORY_BYTES, per_map(|m| m.memlock));
    }

    /// How long the last poll took, and when it ended (Unix time).
    pub fn set_poll(&self, took: Duration, at_unix: f64) {
        self.set(POLL_DURATION, &[], took.as_secs_f64());
        self.set(LAST_POLL, &[], at_unix);
    }

    /// One more failed poll.
    pub fn count_poll_error(&self) {
        let n = self.get(POLL_ERRORS, &[]).unwrap_or(0.0);
        self.set(POLL_ERRORS, &[], n + 1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::ExporterTotals;

    #[test]
    fn exporters_are_labelled_by_address_sub_agent_port_and_protocol() {
        let m = Metrics::for_sensor();
        let mut report = Report::default();
        let id = ExporterId {
            ip: "192.0.2.1".parse().unwrap(),
            sub_agent: 3,
            port: 6343,
            kind: edge_sensor_common::TelemetryKind::Sflow as u8,
        };
        let mut t = ExporterTotals::default();
        t.stats.datagrams = 10;
        t.stats.errors[ParseError::BadVersion as usize] = 2;
        report.exporters.insert(id, t);
        m.set_exporters(&report);
        let l = [
            ("exporter", "192.0.2.1"),
            ("sub_agent", "3"),
            ("port", "6343"),
            ("protocol", "sflow"),
        ];
        assert_eq!(m.get(EXPORTER_DATAGRAMS, &l), Some(10.0));
        let mut with_reason = l.to_vec();
        with_reason.push(("reason", ParseError::BadVersion.name()));
        assert_eq!(m.get(EXPORTER_PARSE_ERRORS, &with_reason), Some(2.0));
        // An exporter that is gone (LRU eviction) leaves no stale series.
        m.set_exporters(&Report::default());
        assert_eq!(m.get(EXPORTER_DATAGRAMS, &l), None);
    }

    #[test]
    fn every_family_is_described_once() {
        let mut names: Vec<_> = FAMILIES.iter().map(|f| f.0).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FAMILIES.len());
        let text = Metrics::for_sensor().render();
        assert_eq!(text.matches("# TYPE ").count(), FAMILIES.len());
    }
}
