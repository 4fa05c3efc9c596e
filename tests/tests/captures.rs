//! Every shared capture (../shared/data/pcaps: real exporters and devices)
//! through both engines: the XDP program and the userspace decoder must
//! agree on every verdict and every counter; on sFlow captures both must
//! also agree with tshark's own decode.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    path::{Path, PathBuf},
};

use edge_sensor::{config::TelemetryConfig, pcap, telemetry::frame};
use edge_sensor_common::{SFLOW_PORT, TelemetryKind};
use edge_sensor_tests::{
    engines::{Both, as_truth},
    shared_captures, tshark,
};

fn all_captures(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read captures dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .extension()
                .is_some_and(|e| e == "pcap" || e == "pcapng")
            {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The UDP destination ports of a capture's datagrams: 6343 as sFlow, every
/// other one as NetFlow/IPFIX (the version word tells those apart).
fn telemetry_for(frames: &[Vec<u8>]) -> TelemetryConfig {
    let ports: BTreeSet<u16> = frames
        .iter()
        .filter_map(|f| frame::telemetry_datagram(f, |_| Some(TelemetryKind::Netflow)))
        .map(|d| d.port)
        .collect();
    TelemetryConfig {
        sflow_ports: ports.iter().copied().filter(|&p| p == SFLOW_PORT).collect(),
        ipfix_ports: vec![],
        netflow_ports: ports.iter().copied().filter(|&p| p != SFLOW_PORT).collect(),
        pass_telemetry: false,
        ..TelemetryConfig::default()
    }
}

#[test]
fn every_shared_capture_decodes_identically_in_both_engines() {
    let captures = all_captures(&shared_captures());
    assert!(
        captures.len() >= 20,
        "only {} captures found",
        captures.len()
    );
    let mut sflow = 0;
    let mut templated_in_kernel = BTreeMap::new();
    for path in &captures {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let frames = pcap::ethernet_frames(path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let telemetry = telemetry_for(&frames);
        let mut both = Both::with(&telemetry);
        let mut datagrams = 0;
        for (i, f) in frames.iter().enumerate() {
            if both.frame(&format!("{name} frame {}", i + 1), f).is_some() {
                datagrams += 1;
            }
        }
        assert!(datagrams > 0, "{name}: no telemetry datagrams");
        let report = both.reports(&name);
        if frames
            .iter()
            .filter_map(|f| frame::telemetry_datagram(f, |_| Some(TelemetryKind::Netflow)))
            .any(|d| matches!(d.payload.get(..2), Some([0, 9] | [0, 10])))
        {
            templated_in_kernel.insert(name.clone(), both.xdp.dropped);
        }
        let exported: u64 = report.exporters.values().map(|t| t.stats.datagrams).sum();
        assert_eq!(
            exported, datagrams,
            "{name}: every datagram is counted once"
        );

        if !telemetry.sflow_ports.is_empty() {
            sflow += 1;
            assert_eq!(
                as_truth(&report),
                tshark::sflow_truth(path, SFLOW_PORT),
                "{name}: sensor vs tshark"
            );
        }
    }
    assert!(sflow >= 4, "only {sflow} sFlow captures");
    // Once the templates are known, the kernel takes the data datagrams
    // itself (the differential above shows it counts them exactly).
    for (name, min) in [
        ("softflowd-1.1.0_v10.pcap", 5),
        ("softflowd-1.1.0_v9.pcap", 5),
        ("pmacct-1.7.7_nfprobe_v10.pcap", 5),
    ] {
        let taken = templated_in_kernel.get(name).copied().unwrap_or(0);
        assert!(
            taken >= min,
            "{name}: the kernel took {taken} datagrams: {templated_in_kernel:?}"
        );
    }
}

/// The pmacct 1.7.7 capture with an IPv6 agent starts with a corrupt
/// datagram (a sample of length 1): it is counted as such and passed on,
/// and every later datagram is decoded in full.
#[test]
fn the_malformed_first_datagram_does_not_spoil_the_rest() {
    let path = shared_captures().join("lab/pmacct-1.7.7_sfprobe_v5_ipv6-agent.pcap");
    let frames = pcap::ethernet_frames(&path).expect("read capture");
    let mut both = Both::new();
    let verdicts: Vec<_> = frames
        .iter()
        .filter_map(|f| both.frame("ipv6 agent", f))
        .collect();
    use edge_sensor::telemetry::Verdict::{Drop, Pass};
    assert_eq!(verdicts, vec![Pass, Drop, Drop, Drop, Drop]);
    let report = both.reports("ipv6 agent");
    let (id, t) = report.exporters.iter().next().expect("one exporter");
    assert_eq!(id.ip, "fd99::1".parse::<IpAddr>().unwrap());
    assert_eq!(
        t.stats.errors[edge_sensor_common::ParseError::BadSampleLength as usize],
        1
    );
    assert_eq!(t.stats.error_total(), 1);
    assert_eq!(as_truth(&report), tshark::sflow_truth(&path, SFLOW_PORT));
    let packets: u64 = as_truth(&report).values().map(|t| t.packets).sum();
    assert_eq!(
        packets, 20,
        "the 20 flow samples after the corrupt datagram"
    );
}
