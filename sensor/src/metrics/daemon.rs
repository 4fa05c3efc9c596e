//! The daemon's metrics beside the counters' ([`super::sensor`]): attacks,
//! mitigations, BGP peers, the watch stream and the fast path. Only
//! `edge-sensor run` sets them (the pinned-map exporter cannot know them).
//! The daemon's poll sets the values (`daemon::metrics`).

use super::{MetricType, Metrics};

pub const ATTACKS_ACTIVE: &str = "edge_sensor_attacks_active";
pub const MITIGATIONS_ACTIVE: &str = "edge_sensor_mitigations_active";
pub const MITIGATION: &str = "edge_sensor_mitigation";
pub const BGP_PEER_ESTABLISHED: &str = "edge_sensor_bgp_peer_established";
pub const BGP_PEER_ROUTES: &str = "edge_sensor_bgp_peer_routes";
pub const BGP_PEER_FLAP_RESETS: &str = "edge_sensor_bgp_peer_flap_resets";
pub const BGP_ROUTE_QUARANTINED: &str = "edge_sensor_bgp_route_quarantined";
pub const BGP_UPDATE_ERRORS: &str = "edge_sensor_bgp_update_errors_total";
pub const BGP_PEER_RECEIVED: &str = "edge_sensor_bgp_peer_received";
pub const BGP_UPDATES_RECEIVED: &str = "edge_sensor_bgp_updates_received_total";
pub const WATCH_SAMPLES: &str = "edge_sensor_watch_samples_total";
pub const FAST_PATH: &str = "edge_sensor_fast_path";
pub const STATE_PERSISTED: &str = "edge_sensor_state_persisted";
pub const STATE_SAVE_FAILURES: &str = "edge_sensor_state_save_failures_total";
pub const TEMPLATES: &str = "edge_sensor_templates";
pub const TEMPLATE_MEMORY: &str = "edge_sensor_template_memory_bytes";
pub const TEMPLATES_EVICTED: &str = "edge_sensor_templates_evicted_total";
pub const CLUSTER_CLUSTERED: &str = "edge_sensor_cluster_clustered";
pub const CLUSTER_MEMBERS: &str = "edge_sensor_cluster_members";
pub const CLUSTER_STEPS: &str = "edge_sensor_cluster_steps_total";
pub const CLUSTER_FALLBACKS: &str = "edge_sensor_cluster_fallbacks_total";
pub const CLUSTER_SUMMARY_BYTES: &str = "edge_sensor_cluster_summary_bytes_total";
pub const CLUSTER_SUMMARY_MESSAGES: &str = "edge_sensor_cluster_summary_messages_total";
pub const CLUSTER_SUMMARY_LEFT_OUT: &str = "edge_sensor_cluster_summary_entries_left_out_total";
pub const CLUSTER_NETWORK_DESTINATIONS: &str = "edge_sensor_cluster_network_destinations";
pub const CLUSTER_NETWORK_ATTACKS: &str = "edge_sensor_cluster_network_attacks";
pub const CLUSTER_CLAIM_WRITES: &str = "edge_sensor_cluster_claim_writes_total";
pub const CLUSTER_HANDOVERS: &str = "edge_sensor_cluster_handovers_total";
pub const CLUSTER_MEMBER_SUMMARY_AGE: &str = "edge_sensor_cluster_member_summary_age_seconds";

/// Every family above with its type and help.
const FAMILIES: &[(&str, MetricType, &str)] = &[
    (ATTACKS_ACTIVE, MetricType::Gauge, "Attacks in progress."),
    (
        MITIGATIONS_ACTIVE,
        MetricType::Gauge,
        "Active mitigations, by kind.",
    ),
    (
        MITIGATION,
        MetricType::Gauge,
        "One series per active mitigation (value: seconds since it was created).",
    ),
    (
        BGP_PEER_ESTABLISHED,
        MetricType::Gauge,
        "1 while the BGP session to the peer is established.",
    ),
    (
        BGP_PEER_ROUTES,
        MetricType::Gauge,
        "Routes in the peer's Adj-RIB-Out.",
    ),
    (
        BGP_PEER_FLAP_RESETS,
        MetricType::Gauge,
        "Sessions the peer ended with an UPDATE error NOTIFICATION or a dropped connection.",
    ),
    (
        BGP_ROUTE_QUARANTINED,
        MetricType::Gauge,
        "One series per route quarantined for a peer, with the router's reason (value: \
         unix time of the quarantine).",
    ),
    (
        BGP_UPDATE_ERRORS,
        MetricType::Counter,
        "Errors in UPDATEs received from the peer, by reason (RFC 7606).",
    ),
    (
        BGP_PEER_RECEIVED,
        MetricType::Gauge,
        "The peer's Adj-RIB-In: unicast prefixes, paths (Add-Path), Flow Spec rules, stale \
         paths (graceful restart).",
    ),
    (
        BGP_UPDATES_RECEIVED,
        MetricType::Counter,
        "UPDATE messages received from the peer.",
    ),
    (
        WATCH_SAMPLES,
        MetricType::Counter,
        "Samples of watched destinations the kernel (or the userspace collector) streamed, \
         and lost.",
    ),
    (
        FAST_PATH,
        MetricType::Gauge,
        "The path counting the telemetry: 1 for the one in use (xdp, or userspace: the \
         collector after a fallback or by xdp.mode = userspace), 0 for the other.",
    ),
    (
        STATE_PERSISTED,
        MetricType::Gauge,
        "1 while the state file (mitigations, templates, quarantine) holds what is active; \
         0 while its saves fail (a restart would lose what changed).",
    ),
    (
        STATE_SAVE_FAILURES,
        MetricType::Counter,
        "State file saves that failed (full or read-only disk, ...), per file.",
    ),
    (
        TEMPLATES,
        MetricType::Gauge,
        "NetFlow v9 / IPFIX templates held.",
    ),
    (
        TEMPLATE_MEMORY,
        MetricType::Gauge,
        "Estimated bytes the NetFlow v9 / IPFIX templates hold.",
    ),
    (
        TEMPLATES_EVICTED,
        MetricType::Counter,
        "Templates evicted over the template limits (telemetry.max_templates*), per exporter.",
    ),
    (
        CLUSTER_CLUSTERED,
        MetricType::Gauge,
        "[cluster]: 1 while the network-wide view is in use, 0 while the sensor runs \
         local-only (the cluster unreachable).",
    ),
    (
        CLUSTER_MEMBERS,
        MetricType::Gauge,
        "[cluster]: live members (this sensor included).",
    ),
    (
        CLUSTER_STEPS,
        MetricType::Counter,
        "[cluster]: network-wide steps, by result (ok, failed), and polls skipped while the \
         node was still busy (skipped).",
    ),
    (
        CLUSTER_FALLBACKS,
        MetricType::Counter,
        "[cluster]: times the sensor fell back to local-only.",
    ),
    (
        CLUSTER_SUMMARY_BYTES,
        MetricType::Counter,
        "[cluster]: summary bytes published.",
    ),
    (
        CLUSTER_SUMMARY_MESSAGES,
        MetricType::Counter,
        "[cluster]: NATS messages the summaries took (more than one a poll past max_payload).",
    ),
    (
        CLUSTER_SUMMARY_LEFT_OUT,
        MetricType::Counter,
        "[cluster]: summary entries left out past 255 parts (the lightest).",
    ),
    (
        CLUSTER_NETWORK_DESTINATIONS,
        MetricType::Gauge,
        "[cluster]: destinations in the network-wide sum.",
    ),
    (
        CLUSTER_NETWORK_ATTACKS,
        MetricType::Gauge,
        "[cluster]: network-wide attacks in progress, by whether this sensor owns them.",
    ),
    (
        CLUSTER_CLAIM_WRITES,
        MetricType::Counter,
        "[cluster]: writes to the replicated mitigation state, by result (ok, failed).",
    ),
    (
        CLUSTER_HANDOVERS,
        MetricType::Counter,
        "[cluster]: rules withdrawn at once because another sensor announces them.",
    ),
    (
        CLUSTER_MEMBER_SUMMARY_AGE,
        MetricType::Gauge,
        "[cluster]: per member, seconds since its summary last changed (the lag).",
    ),
];

impl Metrics {
    /// The registry of `edge-sensor run`: the counters' families and the
    /// daemon's.
    pub fn for_daemon() -> Self {
        let m = Self::for_sensor();
        for (name, kind, help) in FAMILIES {
            m.describe(name, *kind, help)
                .expect("the daemon's metric names are valid");
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_daemon_family_is_described_once_with_the_sensors() {
        let m = Metrics::for_daemon();
        let text = m.render();
        for (name, kind, _) in FAMILIES {
            let type_line = format!("# TYPE {name} {}", kind.name());
            assert_eq!(text.matches(&type_line).count(), 1, "{type_line}");
        }
        assert!(text.contains("# TYPE edge_sensor_poll_errors_total counter"));
    }
}
