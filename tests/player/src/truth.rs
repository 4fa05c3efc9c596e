//! The truth of a play: what every datagram's samples stand for, what the
//! sensor must count from them, and when each attack started; as an API and
//! as a JSON-lines file.
//!
//! The file: a first line `{"type":"scenario",...}` (the routers, the
//! attacks and flash crowds with their start times), one line
//! `{"type":"datagram",...}` per datagram with its samples, and a last line
//! `{"type":"summary",...}` with the exact packets generated per origin.

use std::{collections::BTreeMap, io::Write, net::IpAddr};

use serde::Serialize;
use serde_json::json;

use crate::{
    Datagram,
    model::{Model, Origin, Sample},
    packet::{ICMP, ICMPV6, TCP, UDP},
    scenario::Format,
};

/// What a collector counts for one destination from the samples it got,
/// each scaled by its rate: the sensor's `DstStats` classes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Expected {
    pub samples: u64,
    pub packets: u64,
    /// sFlow: Ethernet frame bytes without FCS (`frame_length - stripped`);
    /// IPFIX: octetDeltaCount, the IP length.
    pub bytes: u64,
    pub tcp_packets: u64,
    pub tcp_syn_packets: u64,
    pub udp_packets: u64,
    pub icmp_packets: u64,
    pub other_packets: u64,
}

impl Expected {
    /// Adds one record (an sFlow flow sample, or an IPFIX data record of
    /// one or more samples of a flow) as `format` reports it.
    pub fn add(&mut self, record: &[Sample], format: Format) {
        let Some(first) = record.first() else {
            return;
        };
        let r = u64::from(first.rate);
        let k = record.len() as u64;
        let p = &first.packet;
        self.samples += k;
        let packets = k * r;
        self.packets += packets;
        self.bytes += record
            .iter()
            .map(|s| {
                u64::from(match format {
                    Format::Sflow => s.packet.frame_len(),
                    Format::Ipfix => s.packet.ip_len,
                })
            })
            .sum::<u64>()
            * r;
        match p.proto {
            TCP => {
                self.tcp_packets += packets;
                // SYN without ACK, as the sensor's SYN class; a record's
                // flags are those of its samples OR-ed.
                let flags = record.iter().fold(0, |f, s| f | s.packet.tcp_flags);
                if flags & 0x12 == 0x02 {
                    self.tcp_syn_packets += packets;
                }
            }
            UDP => self.udp_packets += packets,
            ICMP | ICMPV6 => self.icmp_packets += packets,
            _ => self.other_packets += packets,
        }
    }
}

/// The records of a datagram, each as its samples: one sample each for
/// sFlow, the flows of the cache for IPFIX.
pub fn records(d: &Datagram) -> Vec<&[Sample]> {
    if d.truth.records.is_empty() {
        return d.truth.samples.chunks(1).collect();
    }
    let mut out = Vec::with_capacity(d.truth.records.len());
    let mut at = 0;
    for &n in &d.truth.records {
        out.push(&d.truth.samples[at..at + n as usize]);
        at += n as usize;
    }
    out
}

/// Expected counts per destination over `datagrams`.
pub fn expected<'a>(
    datagrams: impl IntoIterator<Item = &'a Datagram>,
) -> BTreeMap<IpAddr, Expected> {
    let mut out: BTreeMap<IpAddr, Expected> = BTreeMap::new();
    for d in datagrams {
        for r in records(d) {
            out.entry(r[0].packet.dst).or_default().add(r, d.format);
        }
    }
    out
}

/// When an attack started, as the scenario says and as it happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttackStart {
    pub id: String,
    pub target: IpAddr,
    pub vector: crate::scenario::Vector,
    /// The scenario's start.
    pub start_ns: u64,
    /// The tick of its first packet (None: it sent none).
    pub first_packet_ns: Option<u64>,
}

/// The attacks and their starts, from a model that has run.
pub fn attack_starts(model: &Model) -> Vec<AttackStart> {
    model
        .scenario()
        .attacks
        .iter()
        .enumerate()
        .map(|(i, a)| AttackStart {
            id: a.id.clone(),
            target: a.target,
            vector: a.vector,
            start_ns: (a.start_s * 1e9) as u64,
            first_packet_ns: model.first_packet_ns(Origin::Attack(i as u32)),
        })
        .collect()
}

/// Writes the JSON-lines truth file.
pub struct TruthWriter<W: Write> {
    out: W,
}

impl<W: Write> TruthWriter<W> {
    /// Writes the scenario line.
    pub fn new(mut out: W, model: &Model) -> std::io::Result<Self> {
        let s = model.scenario();
        let line = json!({
            "type": "scenario",
            "seed": s.seed,
            "duration_s": s.duration_s,
            "start_unix_s": s.start_unix_s,
            "routers": s.routers.iter().map(|r| json!({
                "name": r.name, "agent": r.agent, "format": r.format,
                "sampling_rate": r.sampling_rate, "interfaces": r.interfaces,
                "sub_agent": r.sub_agent,
            })).collect::<Vec<_>>(),
            "hosts": s.hosts.count,
            "attacks": s.attacks.iter().map(|a| json!({
                "id": a.id, "vector": a.vector, "target": a.target,
                "start_ns": (a.start_s * 1e9) as u64,
                "duration_ns": (a.duration_s * 1e9) as u64,
                "pps": a.peak_pps().ok(), "packet_size": a.packet_size(),
            })).collect::<Vec<_>>(),
            "flash_crowds": s.flash_crowds.iter().map(|c| json!({
                "id": c.id, "target": c.target,
                "start_ns": (c.start_s * 1e9) as u64,
                "duration_ns": (c.duration_s * 1e9) as u64, "pps": c.pps,
            })).collect::<Vec<_>>(),
        });
        writeln!(out, "{line}")?;
        Ok(Self { out })
    }

    /// One datagram's line.
    pub fn datagram(&mut self, model: &Model, d: &Datagram) -> std::io::Result<()> {
        let samples: Vec<_> = d
            .truth
            .samples
            .iter()
            .map(|s| {
                json!({
                    "time_ns": s.time_ns,
                    "origin": model.origin_name(s.origin),
                    "kind": match s.origin {
                        Origin::Normal(_) => "normal",
                        Origin::FlashCrowd(_) => "flash_crowd",
                        Origin::Attack(_) => "attack",
                    },
                    "index": s.index,
                    "iface": model.scenario().routers[s.router as usize].interfaces[s.iface as usize],
                    "src": s.packet.src, "dst": s.packet.dst, "proto": s.packet.proto,
                    "src_port": s.packet.src_port, "dst_port": s.packet.dst_port,
                    "tcp_flags": s.packet.tcp_flags, "ip_len": s.packet.ip_len,
                    "frame_len": s.packet.frame_len(), "rate": s.rate,
                })
            })
            .collect();
        let line = json!({
            "type": "datagram",
            "time_ns": d.time_ns,
            "router": model.scenario().routers[d.router as usize].name,
            "format": d.format,
            "sequence": d.truth.sequence,
            "bytes": d.payload.len(),
            "templates": d.truth.templates,
            "counter_samples": d.truth.counters.len(),
            "samples": samples,
            "records": d.truth.records,
        });
        writeln!(self.out, "{line}")
    }

    /// The summary line: exact packets generated, samples taken and dropped,
    /// per origin (normal traffic summed), and the attacks' starts.
    pub fn finish(mut self, model: &Model) -> std::io::Result<W> {
        let mut by: BTreeMap<String, crate::model::Generated> = BTreeMap::new();
        for (o, g) in &model.generated() {
            let key = match o {
                Origin::Normal(_) => "normal".to_string(),
                other => model.origin_name(*other),
            };
            let e = by.entry(key).or_default();
            e.packets += g.packets;
            e.samples += g.samples;
            e.dropped += g.dropped;
        }
        let line = json!({
            "type": "summary",
            "generated": by,
            "attacks": attack_starts(model),
        });
        writeln!(self.out, "{line}")?;
        self.out.flush()?;
        Ok(self.out)
    }
}
