//! Both decoding engines side by side: the real XDP program (through
//! BPF_PROG_TEST_RUN, with its real maps) and the userspace reference
//! decoder, fed the same frames.

use std::{collections::BTreeMap, net::IpAddr};

use edge_sensor::{
    cli::rows::DestinationRow,
    config::TelemetryConfig,
    counters::{ExporterTotals, Report},
    decode::{Decoder, Engine},
    telemetry::Verdict,
    telemetry::sampling::SamplingRules,
};

/// The two engines, fed in lockstep.
pub struct Both {
    pub xdp: Decoder,
    pub user: Decoder,
}

impl Both {
    pub fn new() -> Self {
        Self::with(&TelemetryConfig::default())
    }

    /// Both engines listening on the ports of `telemetry`.
    pub fn with(telemetry: &TelemetryConfig) -> Self {
        Self::with_sampling(telemetry, SamplingRules::default())
    }

    /// Both engines applying configured sampling rules.
    pub fn with_sampling(telemetry: &TelemetryConfig, rules: SamplingRules) -> Self {
        crate::require_root();
        Self {
            xdp: Decoder::with_sampling(Engine::Xdp, telemetry, rules.clone())
                .unwrap_or_else(|e| panic!("load: {e:#}")),
            user: Decoder::with_sampling(Engine::User, telemetry, rules).expect("user decoder"),
        }
    }

    /// One frame through both; asserts they give the same verdict.
    pub fn frame(&mut self, what: &str, frame: &[u8]) -> Option<Verdict> {
        let x = self
            .xdp
            .frame(frame)
            .unwrap_or_else(|e| panic!("{what}: xdp: {e:#}"));
        let u = self
            .user
            .frame(frame)
            .unwrap_or_else(|e| panic!("{what}: user: {e:#}"));
        assert_eq!(x, u, "{what}: verdict xdp vs user");
        x
    }

    /// Both reports; asserts they are equal, field by field.
    pub fn reports(&self, what: &str) -> Report {
        let x = self.xdp.report().expect("xdp report");
        let u = self.user.report().expect("user report");
        assert_reports_equal(what, &x, &u);
        x
    }
}

impl Default for Both {
    fn default() -> Self {
        Self::new()
    }
}

/// Asserts two reports are equal, naming the first difference.
pub fn assert_reports_equal(what: &str, xdp: &Report, user: &Report) {
    for (ip, x) in &xdp.destinations {
        match user.destinations.get(ip) {
            Some(u) => assert_eq!(x, u, "{what}: destination {ip}: xdp vs user"),
            None => panic!("{what}: destination {ip} only in xdp: {x:?}"),
        }
    }
    for ip in user.destinations.keys() {
        assert!(
            xdp.destinations.contains_key(ip),
            "{what}: destination {ip} only in user"
        );
    }
    // When each side last saw an exporter is its own clock's business.
    let unseen = |t: &ExporterTotals| {
        let mut t = *t;
        t.stats.last_seen_ns = 0;
        t
    };
    for (id, x) in &xdp.exporters {
        match user.exporters.get(id) {
            Some(u) => assert_eq!(unseen(x), unseen(u), "{what}: exporter {id:?}: xdp vs user"),
            None => panic!("{what}: exporter {id:?} only in xdp: {x:?}"),
        }
    }
    for id in user.exporters.keys() {
        assert!(
            xdp.exporters.contains_key(id),
            "{what}: exporter {id:?} only in user"
        );
    }
}

/// Our per-destination counters in the oracle's terms.
pub fn as_truth(report: &Report) -> BTreeMap<IpAddr, crate::tshark::Totals> {
    report
        .destinations
        .iter()
        .map(|(ip, s)| {
            let r = DestinationRow::new(*ip, s);
            let totals = crate::tshark::Totals {
                packets: r.packets,
                bytes: r.bytes,
                tcp: r.tcp_packets,
                tcp_syn: r.tcp_syn_packets,
                udp: r.udp_packets,
                icmp: r.icmp_packets,
                fragments: r.fragment_packets,
                other: r.other_packets,
            };
            (*ip, totals)
        })
        .collect()
}
