//! Every shared NetFlow v5 / v9 / IPFIX capture through our decoders (the
//! v5 parser the kernel mirrors, and the v9/IPFIX template decoder) must
//! give, per destination, exactly what tshark's own decode gives
//! (`tshark_flow`, an independent oracle). The oracle does not apply
//! sampling, so our totals are compared before scaling.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    path::{Path, PathBuf},
};

use edge_sensor::{
    pcap,
    telemetry::{
        frame, netflow5,
        template::{Session, TemplateCache},
    },
};
use edge_sensor_common::{SFLOW_PORT, TelemetryKind, proto::tcp_flags};
use edge_sensor_tests::{shared_captures, tshark::Totals, tshark_flow};

fn flow_captures() -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![shared_captures()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "pcap")
                && !["sflow", "sfprobe"]
                    .iter()
                    .any(|s| path.to_string_lossy().contains(s))
            {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn add(totals: &mut Totals, packets: u64, bytes: u64, proto: u8, flags: u8, fragment: bool) {
    totals.packets = totals.packets.saturating_add(packets);
    totals.bytes = totals.bytes.saturating_add(bytes);
    match proto {
        6 => {
            totals.tcp += packets;
            if tcp_flags::is_syn(flags) {
                totals.tcp_syn += packets;
            }
        }
        17 => totals.udp += packets,
        1 | 58 => totals.icmp += packets,
        _ => totals.other += packets,
    }
    if fragment {
        totals.fragments += packets;
    }
}

/// Our unscaled per-destination totals, and the UDP ports the capture uses.
fn ours(path: &Path) -> (BTreeMap<IpAddr, Totals>, Vec<u16>) {
    let frames = pcap::ethernet_frames(path).expect("read capture");
    let mut cache = TemplateCache::new();
    let mut totals: BTreeMap<IpAddr, Totals> = BTreeMap::new();
    let mut ports = BTreeSet::new();
    for f in &frames {
        let Some(d) =
            frame::telemetry_datagram(f, |p| (p != SFLOW_PORT).then_some(TelemetryKind::Netflow))
        else {
            continue;
        };
        ports.insert(d.port);
        match d.payload.get(..2) {
            Some([0, 5]) => {
                let h = netflow5::header(d.payload).expect("v5 header");
                // Unscaled: tshark's truth is the records' own counts.
                let rate = 1;
                netflow5::walk(d.payload, &h, 1, |pkt, packets, bytes| {
                    let ip = edge_sensor::addr::from_key(pkt.dst);
                    add(
                        totals.entry(ip).or_default(),
                        packets / rate,
                        bytes / rate,
                        pkt.proto,
                        if pkt.syn { 0x02 } else { 0 },
                        false,
                    );
                });
            }
            _ => {
                let session = Session {
                    ip: d.src,
                    port: d.src_port,
                };
                cache
                    .message(session, d.payload, |flow| {
                        let rate = u64::from(flow.rate);
                        add(
                            totals.entry(flow.dst).or_default(),
                            flow.packets / rate,
                            flow.octets / rate,
                            flow.protocol,
                            flow.tcp_flags as u8,
                            flow.fragment,
                        );
                    })
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
        }
    }
    (totals, ports.into_iter().collect())
}

#[test]
fn every_flow_capture_matches_tshark() {
    let captures = flow_captures();
    assert!(
        captures.len() >= 20,
        "only {} flow captures",
        captures.len()
    );
    for path in &captures {
        let name = path.file_name().unwrap().to_string_lossy();
        let (ours, ports) = ours(path);
        assert!(!ports.is_empty(), "{name}: no flow datagrams");
        let truth = tshark_flow::flow_truth(path, &ports);
        assert_eq!(ours, truth, "{name}: ours vs tshark");
    }
}
