//! Configured sampling rates (`exporters.sampling`) in both engines: an
//! override replaces what the telemetry says, a default fills in where it
//! says nothing, and each exporter's row tells which rate applied and why.

use std::net::IpAddr;

use edge_sensor::{
    cli::rows::ExporterRow,
    config::TelemetryConfig,
    counters::{ExporterId, Report},
    telemetry::sampling::SamplingRules,
};
use edge_sensor_common::{
    IPFIX_PORT, NETFLOW_PORT, SAMPLING_DEFAULT, SAMPLING_OVERRIDE, SFLOW_PORT, SamplingRule,
    TelemetryKind,
};
use edge_sensor_tests::{
    engines::Both,
    frame::*,
    sflow::{Datagram, Record, Sample},
};

/// Exporters with an override, with a default (the rest of their /24), with none.
const OVERRIDDEN: [u8; 4] = [192, 0, 2, 9];
const DEFAULTED: [u8; 4] = [192, 0, 2, 10];
const PLAIN: [u8; 4] = [198, 51, 100, 11];
const VICTIM: [u8; 4] = [203, 0, 113, 5];

fn rules() -> SamplingRules {
    SamplingRules::new([
        (
            "192.0.2.9/32".parse().unwrap(),
            SamplingRule {
                rate: 4000,
                mode: SAMPLING_OVERRIDE,
            },
        ),
        (
            "192.0.2.0/24".parse().unwrap(),
            SamplingRule {
                rate: 100,
                mode: SAMPLING_DEFAULT,
            },
        ),
    ])
}

fn from(src: [u8; 4], port: u16, payload: &[u8]) -> Vec<u8> {
    ethernet(
        &[],
        ETH_P_IPV4,
        &ipv4(src, [192, 0, 2, 2], 17, &udp(40000, port, payload)),
    )
}

fn sflow(src: [u8; 4], rate: u32) -> Vec<u8> {
    let frame = ethernet(
        &[],
        ETH_P_IPV4,
        &ipv4([198, 51, 100, 1], VICTIM, 17, &udp(1, 2, &[0; 50])),
    );
    let mut d = Datagram::new(
        1,
        vec![Sample::flow(rate, vec![Record::ethernet(&frame, 128)])],
    );
    d.agent = IpAddr::from(src);
    from(src, SFLOW_PORT, &d.encode())
}

/// One NetFlow v5 record of 2 packets, header interval `interval`.
fn netflow5(src: [u8; 4], interval: u16) -> Vec<u8> {
    let mut v5 = vec![0, 5, 0, 1];
    v5.extend([0u8; 18]);
    v5.extend(interval.to_be_bytes());
    let mut r = [0u8; 48];
    r[4..8].copy_from_slice(&VICTIM);
    r[16..20].copy_from_slice(&2u32.to_be_bytes());
    r[20..24].copy_from_slice(&200u32.to_be_bytes());
    r[38] = 17;
    v5.extend(r);
    from(src, NETFLOW_PORT, &v5)
}

/// IPFIX template 256 (destination, packets, samplingInterval) and one
/// record of 3 packets at `interval`.
fn ipfix(src: [u8; 4], interval: u32) -> Vec<u8> {
    let mut m = vec![0, 10, 0, 0, 0x65, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    m.extend([
        0, 2, 0, 20, 1, 0, 0, 3, 0, 12, 0, 4, 0, 2, 0, 4, 0, 34, 0, 4,
    ]);
    m.extend([1, 0, 0, 16]);
    m.extend(VICTIM);
    m.extend(3u32.to_be_bytes());
    m.extend(interval.to_be_bytes());
    let len = (m.len() as u16).to_be_bytes();
    m[2..4].copy_from_slice(&len);
    from(src, IPFIX_PORT, &m)
}

fn row(
    report: &Report,
    ip: [u8; 4],
    sub_agent: u32,
    port: u16,
    kind: TelemetryKind,
) -> ExporterRow {
    let id = ExporterId {
        ip: IpAddr::from(ip),
        sub_agent,
        port,
        kind: kind as u8,
    };
    let t = report
        .exporters
        .get(&id)
        .unwrap_or_else(|| panic!("no row {id:?}: {report:#?}"));
    ExporterRow::new(id, t)
}

fn victim_packets(report: &Report) -> u64 {
    report.destinations[&IpAddr::from(VICTIM)].packets[0]
}

#[test]
fn overrides_and_defaults_apply_in_both_engines_and_show_their_source() {
    let mut both = Both::with_sampling(&TelemetryConfig::default(), rules());
    let mut expect = 0;
    let mut step = |both: &mut Both, what: &str, frame: Vec<u8>, packets: u64| {
        both.frame(what, &frame);
        expect += packets;
        assert_eq!(victim_packets(&both.reports(what)), expect, "{what}");
    };

    // sFlow: the sample's own rate, unless overridden.
    step(&mut both, "sflow plain", sflow(PLAIN, 512), 512);
    step(&mut both, "sflow defaulted", sflow(DEFAULTED, 512), 512);
    step(&mut both, "sflow overridden", sflow(OVERRIDDEN, 512), 4000);
    let r = both.reports("sflow rows");
    let sf = |ip| row(&r, ip, 3, SFLOW_PORT, TelemetryKind::Sflow);
    assert_eq!(
        (sf(PLAIN).sampling_rate, sf(PLAIN).sampling_source),
        (512, "sflow-sample")
    );
    assert_eq!(
        sf(DEFAULTED).sampling_source,
        "sflow-sample",
        "a default never replaces a stated rate"
    );
    assert_eq!(
        (sf(OVERRIDDEN).sampling_rate, sf(OVERRIDDEN).sampling_source),
        (4000, "config-override")
    );

    // NetFlow v5: interval 0 means unstated.
    step(&mut both, "v5 plain, interval 0", netflow5(PLAIN, 0), 2);
    step(
        &mut both,
        "v5 defaulted, interval 0",
        netflow5(DEFAULTED, 0),
        200,
    );
    step(
        &mut both,
        "v5 defaulted, interval 10",
        netflow5(DEFAULTED, 10),
        20,
    );
    step(&mut both, "v5 overridden", netflow5(OVERRIDDEN, 10), 8000);
    let r = both.reports("v5 rows");
    let nf = |ip| row(&r, ip, 0, NETFLOW_PORT, TelemetryKind::Netflow);
    assert_eq!(
        (nf(PLAIN).sampling_rate, nf(PLAIN).sampling_source),
        (1, "unsampled")
    );
    assert_eq!(
        (nf(DEFAULTED).sampling_rate, nf(DEFAULTED).sampling_source),
        (10, "netflow5-header")
    );
    assert_eq!(nf(OVERRIDDEN).sampling_source, "config-override");

    // IPFIX: a record field states the rate.
    step(&mut both, "ipfix defaulted", ipfix(DEFAULTED, 50), 150);
    step(&mut both, "ipfix overridden", ipfix(OVERRIDDEN, 50), 12000);
    let r = both.reports("ipfix rows");
    let fx = |ip| row(&r, ip, 1, IPFIX_PORT, TelemetryKind::Ipfix);
    assert_eq!(
        (fx(DEFAULTED).sampling_rate, fx(DEFAULTED).sampling_source),
        (50, "record-field")
    );
    assert_eq!(
        (fx(OVERRIDDEN).sampling_rate, fx(OVERRIDDEN).sampling_source),
        (4000, "config-override")
    );
    assert!(fx(DEFAULTED).last_seen_secs.is_some_and(|s| s < 60.0));
}

/// An IPFIX message (domain 7) from `PLAIN` with `sets`.
fn ipfix_message(seq: u32, sets: &[Vec<u8>]) -> Vec<u8> {
    let mut m = vec![0, 10, 0, 0, 0x65, 0, 0, 0];
    m.extend(seq.to_be_bytes());
    m.extend(7u32.to_be_bytes());
    for s in sets {
        m.extend(s);
    }
    let len = (m.len() as u16).to_be_bytes();
    m[2..4].copy_from_slice(&len);
    from(PLAIN, IPFIX_PORT, &m)
}

fn ipfix_set(id: u16, body: &[u8]) -> Vec<u8> {
    let mut s = id.to_be_bytes().to_vec();
    s.extend((body.len() as u16 + 4).to_be_bytes());
    s.extend(body);
    s
}

/// Records of one datagram naming several samplers, in turn: each gets its
/// own sampler's rate (options data), one with no known rate is unsampled.
/// The kernel looks each sampler's rate up once per datagram, so a sampler
/// that comes back after another must still get its own rate.
#[test]
fn records_of_one_datagram_get_each_their_samplers_rate() {
    let mut both = Both::new();
    // Template 300: destinationIPv4Address, packetDeltaCount (4), samplerId (1).
    let template = ipfix_set(2, &[1, 44, 0, 3, 0, 12, 0, 4, 0, 2, 0, 4, 0, 48, 0, 1]);
    // Options template 400, scope meteringProcessId: samplerId, samplerRandomInterval.
    let options = ipfix_set(
        3,
        &[1, 144, 0, 3, 0, 1, 0, 144, 0, 4, 0, 48, 0, 1, 0, 50, 0, 4],
    );
    let mut rates = Vec::new();
    for (sampler, rate) in [(1u8, 10u32), (2, 100)] {
        rates.extend([0, 0, 0, 1, sampler]);
        rates.extend(rate.to_be_bytes());
    }
    let rates = ipfix_set(400, &rates);
    let first = ipfix_message(1, &[template, options, rates]);
    both.frame("templates and options", &first);

    let dst = |i: u8| [203, 0, 113, 100 + i];
    let mut records = Vec::new();
    // (destination, packets, sampler): samplers 1, 2, 3 (no rate), 1, 2.
    for (d, packets, sampler) in [(0, 1u32, 1u8), (1, 1, 2), (2, 5, 3), (0, 2, 1), (1, 1, 2)] {
        records.extend(dst(d));
        records.extend(packets.to_be_bytes());
        records.push(sampler);
    }
    let data = ipfix_message(2, &[ipfix_set(300, &records)]);
    assert_eq!(
        both.frame("data", &data),
        Some(edge_sensor::telemetry::Verdict::Drop),
        "the kernel takes the data datagram (a plan for its set)"
    );
    let report = both.reports("samplers");
    let packets = |i: u8| report.destinations[&IpAddr::from(dst(i))].packets[0];
    assert_eq!(packets(0), (1 + 2) * 10, "sampler 1: 1:10");
    assert_eq!(packets(1), (1 + 1) * 100, "sampler 2: 1:100");
    assert_eq!(packets(2), 5, "sampler 3: no rate known, unsampled");
}
