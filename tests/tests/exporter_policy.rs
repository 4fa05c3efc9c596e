//! Which exporters are heard, and what happens to consumed datagrams: the
//! allow-list and `pass_telemetry`, in the XDP program and the userspace
//! decoder alike.

use aya::programs::{TestRun, TestRunOptions};
use edge_sensor::{
    config::TelemetryConfig,
    counters::Report,
    telemetry::{UserDecoder, Verdict},
    xdp::{LoadOptions, Sensor},
};
use edge_sensor_common::GlobalStats;
use edge_sensor_tests::{
    engines::assert_reports_equal,
    frame::*,
    require_root,
    sflow::{Datagram, Record, Sample},
};
use ipnet::IpNet;

fn datagram_from(src: [u8; 4]) -> Vec<u8> {
    let victim = ethernet(
        &[],
        ETH_P_IPV4,
        &ipv4(
            [192, 0, 2, 9],
            [203, 0, 113, 1],
            IPPROTO_UDP,
            &udp(1, 2, &[0; 30]),
        ),
    );
    let mut d = Datagram::new(
        1,
        vec![Sample::flow(100, vec![Record::ethernet(&victim, 128)])],
    );
    d.agent = src.into();
    let payload = d.encode();
    ethernet(
        &[],
        ETH_P_IPV4,
        &ipv4(
            src,
            [198, 18, 9, 2],
            IPPROTO_UDP,
            &udp(9999, 6343, &payload),
        ),
    )
}

fn datagram_from6(src: [u8; 16]) -> Vec<u8> {
    let payload = Datagram::new(1, vec![Sample::flow(1, vec![])]).encode();
    ethernet(
        &[],
        ETH_P_IPV6,
        &ipv6(
            src,
            [0x20, 1, 0xd, 0xb8, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            IPPROTO_UDP,
            &udp(9999, 6343, &payload),
        ),
    )
}

struct Engines {
    xdp: Sensor,
    user: UserDecoder,
}

impl Engines {
    fn new(allow: &[&str], pass_telemetry: bool) -> Self {
        require_root();
        let allow: Vec<IpNet> = allow.iter().map(|a| a.parse().unwrap()).collect();
        let mut opts = LoadOptions::unpinned(1 << 16);
        opts.allow = allow.clone();
        opts.pass_telemetry = pass_telemetry;
        let ports: Vec<_> = TelemetryConfig::default().ports().collect();
        Self {
            xdp: Sensor::load(&opts).unwrap_or_else(|e| panic!("load: {e:#?}")),
            user: UserDecoder::new(&ports, &allow, pass_telemetry),
        }
    }

    fn frame(&mut self, what: &str, frame: &[u8]) -> Verdict {
        let r = self
            .xdp
            .program()
            .test_run(TestRunOptions {
                data_in: Some(frame),
                ..Default::default()
            })
            .expect("test run");
        let xdp = if r.return_value == 1 {
            Verdict::Drop
        } else {
            Verdict::Pass
        };
        assert_eq!(xdp, self.user.frame(frame), "{what}: verdict xdp vs user");
        xdp
    }

    fn report(&self) -> (Report, GlobalStats) {
        let xdp = self.xdp.report().unwrap();
        assert_reports_equal("policy", &xdp, &self.user.report);
        let global = self.xdp.global_stats().unwrap();
        assert_eq!(global, self.user.global, "global counters xdp vs user");
        (xdp, global)
    }
}

#[test]
fn only_allowed_exporters_are_counted() {
    let mut e = Engines::new(&["198.18.9.0/24", "2001:db8:9::/48"], false);
    assert_eq!(
        e.frame("allowed IPv4", &datagram_from([198, 18, 9, 1])),
        Verdict::Drop
    );
    assert_eq!(
        e.frame("IPv4 outside the list", &datagram_from([198, 18, 10, 1])),
        Verdict::Pass
    );
    let allowed6 = [0x20, 1, 0xd, 0xb8, 0, 9, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
    let other6 = [0x20, 1, 0xd, 0xb8, 0, 10, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
    e.frame("allowed IPv6", &datagram_from6(allowed6));
    assert_eq!(
        e.frame("IPv6 outside the list", &datagram_from6(other6)),
        Verdict::Pass
    );

    let (report, global) = e.report();
    assert_eq!(global.telemetry_datagrams, 4);
    assert_eq!(global.rejected_datagrams, 2);
    let agents: Vec<String> = report
        .exporters
        .keys()
        .map(|id| id.ip.to_string())
        .collect();
    assert_eq!(
        agents,
        vec!["198.18.7.1", "198.18.9.1"],
        "the IPv6 datagram names agent 198.18.7.1"
    );
    assert_eq!(
        report.destinations.len(),
        1,
        "only the allowed exporter's sample counted"
    );
}

#[test]
fn an_empty_allow_list_accepts_any_exporter() {
    let mut e = Engines::new(&[], false);
    e.frame("any", &datagram_from([192, 0, 2, 200]));
    let (report, global) = e.report();
    assert_eq!(
        (global.rejected_datagrams, global.consumed_datagrams),
        (0, 1)
    );
    assert_eq!(report.destinations.len(), 1);
}

#[test]
fn pass_telemetry_counts_and_passes_consumed_datagrams() {
    let mut e = Engines::new(&[], true);
    assert_eq!(
        e.frame("consumed, but passed", &datagram_from([198, 18, 9, 1])),
        Verdict::Pass
    );
    let (report, global) = e.report();
    assert_eq!((global.consumed_datagrams, global.passed_datagrams), (0, 1));
    assert_eq!(report.destinations.len(), 1, "still counted");
}
