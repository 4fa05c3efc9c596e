//! The userspace decoder of the telemetry formats.
//!
//! It counts exactly what the XDP program counts, with the same bounds and
//! the same error reasons (`common::parse`), in safe Rust. It runs in
//! production (the v9/IPFIX templates and options the kernel passes on,
//! every datagram of a template without a kernel plan, the samples of
//! watched destinations, and the whole stream when the kernel refuses the
//! program), serves as the `--engine user` path of `edge-sensor decode`,
//! and is the oracle the kernel parser is tested against, datagram by
//! datagram.
//!
//! Kernel and userspace twins carry matching names; the arithmetic they
//! must agree on lives once, in `common`:
//!
//! | what | kernel (`sensor-ebpf/src/`) | userspace (`telemetry/`) | shared (`common/src/`) |
//! |---|---|---|---|
//! | the frame: Ethernet, VLAN, IP, UDP | `frame.rs` | `frame.rs` | `proto.rs` |
//! | sFlow v5 datagrams, samples, records | `sflow.rs` | `sflow.rs` | `parse.rs` (bounds, errors) |
//! | a sampled packet header | `sampled.rs` | `sampled.rs` | `proto.rs` |
//! | NetFlow v5 | `netflow5.rs` | `netflow5.rs` | `parse.rs` |
//! | NetFlow v9 / IPFIX data records | `template.rs` (with plans) | `template/` (templates, plans) | `maps.rs` (`Plan`) |
//! | a sample into per-destination counters | `count.rs` | `sampled.rs` (`count`) | `count.rs` |
//! | exporter sequence numbers | `sequence.rs` | `mod.rs` (`sequence`) | `sequence.rs` |
//! | the watched-sample stream | `watch.rs` | `watch.rs` | `maps.rs` (`WatchSample`) |

pub mod frame;
pub mod netflow5;
pub mod sampled;
pub mod sampling;
pub mod sflow;
pub mod template;
pub mod watch;

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    net::IpAddr,
};

use edge_sensor_common::{
    AGENT_RESYNC, AgentState, ExporterKey, ExporterStats, FORMAT_IPFIX, FORMAT_NETFLOW5,
    FORMAT_NETFLOW9, FORMAT_SFLOW5, GlobalStats, MAX_DATAGRAM, ParseError, RateSource,
    SAMPLING_OVERRIDE, TelemetryKind, WatchStats,
};
use ipnet::IpNet;

use edge_sensor_common::proto::{ipproto, tcp_flags};
use sampling::SamplingRules;
use template::{FlowError, Session, TemplateCache};

use crate::{
    addr,
    counters::{ExporterId, Report},
    detect::Sample,
};
pub use frame::Datagram;

/// The well-known port of each telemetry protocol (sFlow 6343, IPFIX 4739,
/// NetFlow 2055): what a sensor listens on unless configured otherwise.
pub fn default_ports(kind: TelemetryKind) -> Vec<u16> {
    vec![match kind {
        TelemetryKind::Sflow => edge_sensor_common::SFLOW_PORT,
        TelemetryKind::Ipfix => edge_sensor_common::IPFIX_PORT,
        TelemetryKind::Netflow => edge_sensor_common::NETFLOW_PORT,
    }]
}

/// Every default port with what it carries.
pub fn default_port_table() -> Vec<(u16, TelemetryKind)> {
    [
        TelemetryKind::Sflow,
        TelemetryKind::Ipfix,
        TelemetryKind::Netflow,
    ]
    .into_iter()
    .flat_map(|kind| default_ports(kind).into_iter().map(move |p| (p, kind)))
    .collect()
}

/// Samples of watched destinations at most buffered between two reads: a
/// flood cannot grow them without bound (the rest are counted lost).
pub const MAX_PENDING_SAMPLES: usize = 200_000;

/// What the XDP program streams on `WATCH_SAMPLES`, done in userspace: the
/// destinations to watch, their samples until read, what was streamed and
/// lost.
#[derive(Debug, Clone, Default)]
struct Watch {
    destinations: HashSet<IpAddr>,
    samples: Vec<Sample>,
    stats: WatchStats,
}

impl Watch {
    /// Keeps a sample of `pkt` if its destination is watched.
    /// `sampled`: the sampled packets behind it, before scaling.
    fn offer(
        &mut self,
        pkt: &sampled::Packet,
        packet_len: u64,
        packets: u64,
        bytes: u64,
        sampled: u64,
    ) {
        if self.destinations.is_empty() {
            return;
        }
        let dst = addr::from_key(pkt.dst);
        if !self.destinations.contains(&dst) {
            return;
        }
        if self.samples.len() >= MAX_PENDING_SAMPLES {
            self.stats.lost += 1;
            return;
        }
        self.stats.streamed += 1;
        self.samples
            .push(watch::sample(dst, pkt, packet_len, packets, bytes, sampled));
    }
}

/// What happens to a frame: the XDP verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Left to the kernel stack.
    Pass,
    /// Consumed (fully counted) and dropped.
    Drop,
}

/// Decodes frames or datagrams into a [`Report`], as the XDP program would.
#[derive(Debug, Clone)]
pub struct UserDecoder {
    ports: HashMap<u16, TelemetryKind>,
    allow: Vec<IpNet>,
    pass_telemetry: bool,
    agents: HashMap<ExporterKey, AgentState>,
    templates: TemplateCache,
    /// Configured sampling rates (`exporters.sampling`).
    rules: SamplingRules,
    /// Check NetFlow v9 / IPFIX sequence numbers: off in the daemon, which
    /// sees only what the kernel passes on (the kernel checks them all).
    flow_sequences: bool,
    /// The samples of watched destinations (the userspace collector's
    /// `WATCH_SAMPLES`).
    watch: Watch,
    pub report: Report,
    pub global: GlobalStats,
}

impl UserDecoder {
    pub fn new(ports: &[(u16, TelemetryKind)], allow: &[IpNet], pass_telemetry: bool) -> Self {
        Self {
            ports: ports.iter().copied().collect(),
            allow: allow.to_vec(),
            pass_telemetry,
            agents: HashMap::new(),
            templates: TemplateCache::new(),
            rules: SamplingRules::default(),
            flow_sequences: true,
            watch: Watch::default(),
            report: Report::default(),
            global: GlobalStats::default(),
        }
    }

    /// A whole Ethernet frame, as the XDP program sees it.
    pub fn frame(&mut self, frame: &[u8]) -> Verdict {
        match frame::telemetry_datagram(frame, |port| self.ports.get(&port).copied()) {
            Some(d) => self.datagram(&d),
            None => Verdict::Pass,
        }
    }

    /// A telemetry datagram (from a frame, or from a socket).
    pub fn datagram(&mut self, d: &Datagram<'_>) -> Verdict {
        self.global.telemetry_datagrams += 1;
        if !self.allowed(d.src) {
            self.global.rejected_datagrams += 1;
            return Verdict::Pass;
        }
        let consumed = match d.kind {
            TelemetryKind::Sflow => self.sflow(d),
            TelemetryKind::Ipfix | TelemetryKind::Netflow => self.flow(d),
        };
        if consumed && !self.pass_telemetry {
            self.global.consumed_datagrams += 1;
            Verdict::Drop
        } else {
            self.global.passed_datagrams += 1;
            Verdict::Pass
        }
    }

    /// Applies the configured sampling rules, as the kernel does.
    pub fn with_sampling(mut self, rules: SamplingRules) -> Self {
        self.templates.set_sampling_rules(rules.clone());
        self.rules = rules;
        self
    }

    /// Replaces the sampling rules (SIGHUP).
    pub fn set_sampling(&mut self, rules: SamplingRules) {
        self.templates.set_sampling_rules(rules.clone());
        self.rules = rules;
    }

    /// The decoder of the daemon, behind the XDP program: it sees only the
    /// datagrams the kernel passed on, so it leaves sequence numbers to the
    /// kernel.
    pub fn behind_kernel(mut self) -> Self {
        self.flow_sequences = false;
        self
    }

    /// Replaces the telemetry ports (SIGHUP).
    pub fn set_ports(&mut self, ports: &[(u16, TelemetryKind)]) {
        self.ports = ports.iter().copied().collect();
    }

    /// Whether consumed datagrams go on to the stack too (SIGHUP).
    pub fn set_pass_telemetry(&mut self, pass: bool) {
        self.pass_telemetry = pass;
    }

    /// Replaces the exporter allow-list (SIGHUP).
    pub fn set_allow(&mut self, allow: &[IpNet]) {
        self.allow = allow.to_vec();
    }

    /// Makes the decoder keep samples of exactly these destinations, as
    /// the kernel does for those in `WATCHED`.
    pub fn set_watched(&mut self, watched: &BTreeSet<IpAddr>) {
        if watched.len() != self.watch.destinations.len()
            || !watched
                .iter()
                .all(|ip| self.watch.destinations.contains(ip))
        {
            self.watch.destinations = watched.iter().copied().collect();
        }
    }

    /// The samples of watched destinations kept since the last call.
    pub fn take_samples(&mut self) -> Vec<Sample> {
        std::mem::take(&mut self.watch.samples)
    }

    /// Samples kept and lost (the buffer was full), since the start.
    pub fn watch_stats(&self) -> WatchStats {
        self.watch.stats
    }

    /// The v9/IPFIX templates and sampling learnt so far.
    pub fn templates(&self) -> &TemplateCache {
        &self.templates
    }

    /// The templates, to expire them or to restore saved ones.
    pub fn templates_mut(&mut self) -> &mut TemplateCache {
        &mut self.templates
    }

    fn allowed(&self, src: IpAddr) -> bool {
        // The kernel matches IPv4 sources in their IPv4-mapped IPv6 form.
        self.allow.is_empty() || self.allow.iter().any(|net| net.contains(&src))
    }

    fn exporter(&mut self, id: ExporterId) -> &mut ExporterStats {
        let s = &mut self.report.exporters.entry(id).or_default().stats;
        s.last_seen_ns = monotonic_ns();
        s
    }

    /// Counts a datagram that could not be parsed under its source.
    fn unparsed(&mut self, d: &Datagram<'_>, error: Option<ParseError>) {
        let s = self.exporter(source_id(d));
        s.datagrams += 1;
        s.bytes += d.payload.len() as u64;
        if let Some(e) = error {
            s.errors[e as usize] += 1;
        }
    }

    /// NetFlow/IPFIX: version 5 parsed; v9 and IPFIX (templates) counted
    /// per source, for now.
    fn flow(&mut self, d: &Datagram<'_>) -> bool {
        let p = d.payload;
        if p.is_empty() {
            self.unparsed(d, Some(ParseError::TruncatedHeader));
            return false;
        }
        if p.len() > MAX_DATAGRAM {
            self.unparsed(d, Some(ParseError::DatagramTooLarge));
            return false;
        }
        let version = if p.len() < 2 {
            0
        } else {
            u16::from_be_bytes([p[0], p[1]])
        };
        if version == 9 || version == 10 {
            return self.templated(d);
        }
        if version != 5 {
            self.unparsed(d, None);
            return false;
        }
        let header = match netflow5::header(p) {
            Ok(h) => h,
            Err(e) => {
                self.unparsed(d, Some(e));
                return false;
            }
        };
        let id = ExporterId {
            ip: d.src,
            sub_agent: header.engine,
            port: d.port,
            kind: d.kind as u8,
        };
        let (gaps, resets) =
            self.sequence(id.to_key(), header.sequence, header.uptime_ms, header.count);
        let stated = (header.interval != 0).then_some((header.interval, RateSource::Header));
        let (rate, source) = self.rules.apply(d.src, stated);
        let destinations = &mut self.report.destinations;
        let watch = &mut self.watch;
        let walk = netflow5::walk(p, &header, rate, |pkt, packets, bytes| {
            sampled::count(
                destinations.entry(addr::from_key(pkt.dst)).or_default(),
                &pkt,
                packets,
                bytes,
            );
            watch.offer(
                &pkt,
                bytes.checked_div(packets).unwrap_or(0),
                packets,
                bytes,
                packets.checked_div(u64::from(rate)).unwrap_or(packets),
            );
        });
        let s = self.exporter(id);
        s.datagrams += 1;
        s.bytes += p.len() as u64;
        s.records += u64::from(walk.records);
        s.sampling_rate = rate;
        s.rate_source = source as u8;
        s.format = FORMAT_NETFLOW5;
        s.sequence_gaps += u64::from(gaps);
        s.sequence_resets += u64::from(resets);
        match walk.error {
            Some(e) => {
                s.errors[e as usize] += 1;
                !e.is_fatal()
            }
            None => true,
        }
    }

    /// NetFlow v9 / IPFIX: decoded with the templates learnt so far. Returns
    /// whether the kernel would have taken the datagram (then it counts it
    /// as the kernel does); the counters are the same either way.
    fn templated(&mut self, d: &Datagram<'_>) -> bool {
        let session = Session {
            ip: d.src,
            port: d.src_port,
        };
        let kernel_records = self.templates.kernel_records(session, d.payload);
        let kernel_takes = kernel_records.is_some();
        let mut flows = Vec::new();
        let result = self
            .templates
            .message(session, d.payload, |f| flows.push(f));
        for f in &flows {
            let pkt = sampled::Packet {
                dst: addr::to_key(f.dst),
                proto: f.protocol,
                syn: f.protocol == ipproto::TCP && tcp_flags::is_syn(f.tcp_flags as u8),
                fragment: f.fragment,
                src: f.src.map_or([0; 16], addr::to_key),
                src_port: f.src_port,
                dst_port: f.dst_port,
                tcp_flags: f.tcp_flags as u8,
                icmp_type: f.icmp_type,
                later_fragment: false,
                // A record's octets / packets is the mean IP length already.
                ip_len: 0,
            };
            let stats = self.report.destinations.entry(f.dst).or_default();
            sampled::count(stats, &pkt, f.packets, f.octets);
            let mean = f.octets.checked_div(f.packets).unwrap_or(0);
            let sampled = f
                .packets
                .checked_div(u64::from(f.rate))
                .unwrap_or(f.packets);
            self.watch.offer(&pkt, mean, f.packets, f.octets, sampled);
        }
        let summary = match result {
            Ok(summary) => summary,
            Err(e) => {
                self.unparsed(d, Some(flow_error(e)));
                return kernel_takes;
            }
        };
        let p = d.payload;
        let domain_at = if p[1] == 9 { 16 } else { 12 };
        let domain = u32::from_be_bytes([
            p[domain_at],
            p[domain_at + 1],
            p[domain_at + 2],
            p[domain_at + 3],
        ]);
        let id = ExporterId {
            ip: d.src,
            sub_agent: domain,
            port: d.port,
            kind: d.kind as u8,
        };
        // As the kernel does, which sees every datagram (see its `templated`).
        let (gaps, resets) = if !self.flow_sequences {
            (0, 0)
        } else if p[1] == 9 {
            let seq = u32::from_be_bytes([p[12], p[13], p[14], p[15]]);
            let uptime = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
            self.sequence(id.to_key(), seq, uptime, 1)
        } else {
            let seq = u32::from_be_bytes([p[8], p[9], p[10], p[11]]);
            match kernel_records {
                Some(records) => self.sequence(id.to_key(), seq, 0, records),
                None => {
                    self.resync(id.to_key(), seq);
                    (0, 0)
                }
            }
        };
        let s = self.exporter(id);
        s.sequence_gaps += u64::from(gaps);
        s.sequence_resets += u64::from(resets);
        s.datagrams += 1;
        s.bytes += p.len() as u64;
        s.records += flows.len() as u64;
        if let Some(f) = flows.last() {
            s.sampling_rate = f.rate;
            s.rate_source = f.rate_source as u8;
        }
        s.format = if p[1] == 9 {
            FORMAT_NETFLOW9
        } else {
            FORMAT_IPFIX
        };
        for e in summary.errors {
            s.errors[flow_error(e) as usize] += 1;
        }
        kernel_takes
    }

    fn sflow(&mut self, d: &Datagram<'_>) -> bool {
        let header = if d.payload.len() > MAX_DATAGRAM {
            Err(ParseError::DatagramTooLarge)
        } else {
            sflow::header(d.payload)
        };
        let header = match header {
            Ok(h) => h,
            Err(e) => {
                self.unparsed(d, Some(e));
                return false;
            }
        };
        let id = ExporterId {
            ip: header.agent,
            sub_agent: header.sub_agent,
            port: d.port,
            kind: d.kind as u8,
        };
        let (gaps, resets) = self.sequence(id.to_key(), header.sequence, header.uptime_ms, 1);
        let override_rate = self
            .rules
            .lookup(d.src)
            .filter(|r| r.mode == SAMPLING_OVERRIDE)
            .map(|r| r.rate);
        let destinations = &mut self.report.destinations;
        let watch = &mut self.watch;
        let walk = sflow::walk(d.payload, &header, override_rate, |pkt, packets, bytes| {
            let stats = destinations.entry(addr::from_key(pkt.dst)).or_default();
            sampled::count(stats, &pkt, packets, bytes);
            // One flow sample: one sampled packet.
            watch.offer(
                &pkt,
                bytes.checked_div(packets).unwrap_or(0),
                packets,
                bytes,
                1,
            );
        });
        if let Some(state) = self.agents.get_mut(&id.to_key()) {
            state.agent_drops = state.agent_drops.max(walk.max_drops);
            let drops = state.agent_drops;
            self.report.exporters.entry(id).or_default().agent_drops = drops;
        }
        let s = self.exporter(id);
        s.datagrams += 1;
        s.bytes += d.payload.len() as u64;
        s.samples += u64::from(walk.samples);
        s.records += u64::from(walk.records);
        s.sequence_gaps += u64::from(gaps);
        s.sequence_resets += u64::from(resets);
        s.format = FORMAT_SFLOW5;
        if walk.last_rate != 0 {
            s.sampling_rate = walk.last_rate;
            s.rate_source = if override_rate.is_some() {
                RateSource::ConfigOverride
            } else {
                RateSource::Sample
            } as u8;
        }
        for (total, &n) in s.errors.iter_mut().zip(walk.errors.iter()) {
            *total += u64::from(n);
        }
        !walk
            .errors
            .iter()
            .zip(ParseError::ALL)
            .any(|(&n, e)| n != 0 && e.is_fatal())
    }

    /// The kernel's `resync`: the next datagram sets a new baseline.
    fn resync(&mut self, key: ExporterKey, seq: u32) {
        self.agents
            .entry(key)
            .or_insert(AgentState {
                last_sequence: seq,
                agent_drops: 0,
                uptime_ms: 0,
                flags: 0,
            })
            .flags = AGENT_RESYNC;
    }

    /// Same rule as the kernel: gaps when the sequence jumps forward by less
    /// than 2^31, a reset when it goes backwards (or repeats). sFlow numbers
    /// datagrams (`advance` 1), NetFlow v5 flow records (`advance` = count).
    fn sequence(&mut self, key: ExporterKey, seq: u32, uptime_ms: u32, advance: u32) -> (u32, u32) {
        match self.agents.get_mut(&key) {
            Some(state) => state.observe(seq, uptime_ms, advance),
            None => {
                self.agents
                    .insert(key, AgentState::first(seq, uptime_ms, advance));
                (0, 0)
            }
        }
    }
}

pub use crate::counters::monotonic_ns;

/// A v9/IPFIX problem as a counted parse error.
fn flow_error(e: FlowError) -> ParseError {
    match e {
        FlowError::TruncatedHeader => ParseError::TruncatedHeader,
        FlowError::BadMessageLength => ParseError::BadMessageLength,
        FlowError::BadSetLength => ParseError::BadSetLength,
        FlowError::BadTemplateId => ParseError::BadTemplateId,
        FlowError::BadTemplate => ParseError::BadTemplate,
        FlowError::BadOptionsTemplate => ParseError::BadOptionsTemplate,
        FlowError::NoTemplate => ParseError::NoTemplate,
        FlowError::BadVariableLength => ParseError::BadVariableLength,
        FlowError::NoDestination => ParseError::NoDestination,
    }
}

/// The exporter of a datagram whose own header names no agent.
fn source_id(d: &Datagram<'_>) -> ExporterId {
    ExporterId {
        ip: d.src,
        sub_agent: 0,
        port: d.port,
        kind: d.kind as u8,
    }
}

#[cfg(test)]
mod tests {
    use edge_sensor_common::{WATCH_SNAP, WatchKind, WatchSample};

    use super::*;

    /// A sampled_header record: Ethernet + IPv4 + UDP 198.51.100.9:123 ->
    /// `dst`:5555, 400-byte frame.
    fn sflow_record(dst: [u8; 4]) -> Vec<u8> {
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x08, 0x00]);
        let mut ip = vec![0x45, 0, 1, 0x82, 0, 0, 0, 0, 64, 17, 0, 0];
        ip.extend_from_slice(&[198, 51, 100, 9]);
        ip.extend_from_slice(&dst);
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&123u16.to_be_bytes());
        frame.extend_from_slice(&5555u16.to_be_bytes());
        frame.extend_from_slice(&[0, 8, 0, 0]);
        let mut rec = Vec::new();
        rec.extend_from_slice(&1u32.to_be_bytes());
        rec.extend_from_slice(&((16 + frame.len()) as u32).to_be_bytes());
        rec.extend_from_slice(&1u32.to_be_bytes()); // Ethernet
        rec.extend_from_slice(&404u32.to_be_bytes()); // frame length
        rec.extend_from_slice(&4u32.to_be_bytes()); // stripped (FCS)
        rec.extend_from_slice(&(frame.len() as u32).to_be_bytes());
        rec.extend_from_slice(&frame);
        rec
    }

    /// An sFlow v5 datagram of one flow sample (rate 10) holding `record`.
    fn sflow_datagram(record: &[u8]) -> Vec<u8> {
        let mut d = Vec::new();
        for v in [5u32, 1] {
            d.extend_from_slice(&v.to_be_bytes());
        }
        d.extend_from_slice(&[192, 0, 2, 1]);
        for v in [0u32, 1, 1000, 1] {
            d.extend_from_slice(&v.to_be_bytes());
        }
        let mut sample = Vec::new();
        for v in [1u32, 1, 10, 100, 0, 1, 2, 1] {
            sample.extend_from_slice(&v.to_be_bytes());
        }
        sample.extend_from_slice(record);
        d.extend_from_slice(&1u32.to_be_bytes());
        d.extend_from_slice(&(sample.len() as u32).to_be_bytes());
        d.extend_from_slice(&sample);
        d
    }

    #[test]
    fn watched_destinations_get_the_samples_the_kernel_would_stream() {
        let victim: IpAddr = "203.0.113.5".parse().unwrap();
        let other: IpAddr = "203.0.113.6".parse().unwrap();
        let ports = [(6343, TelemetryKind::Sflow)];
        let mut decoder = UserDecoder::new(&ports, &[], false);
        fn datagram(payload: &[u8]) -> Datagram<'_> {
            Datagram {
                src: "192.0.2.1".parse().unwrap(),
                src_port: 40000,
                port: 6343,
                kind: TelemetryKind::Sflow,
                payload,
            }
        }
        let record = sflow_record([203, 0, 113, 5]);
        // Not watched yet: counted, no sample.
        decoder.datagram(&datagram(&sflow_datagram(&record)));
        assert!(decoder.take_samples().is_empty());
        decoder.set_watched(&BTreeSet::from([victim]));
        decoder.datagram(&datagram(&sflow_datagram(&record)));
        decoder.datagram(&datagram(&sflow_datagram(&sflow_record([203, 0, 113, 6]))));
        let samples = decoder.take_samples();
        assert_eq!(samples.len(), 1, "{samples:?}");
        // What the daemon decodes from the kernel's stream of the same record.
        let mut streamed: WatchSample = bytemuck::Zeroable::zeroed();
        streamed.kind = WatchKind::SflowRecord as u8;
        streamed.dst = addr::to_key(victim);
        streamed.packets = 10;
        streamed.bytes = 4000;
        streamed.len = record.len().min(WATCH_SNAP) as u32;
        streamed.snap[..record.len()].copy_from_slice(&record);
        let kernel = watch::decode(&streamed, &TemplateCache::new()).unwrap();
        assert_eq!(samples[0], kernel);
        // The IP total length (386), not the 400-byte frame it was counted as.
        assert_eq!((kernel.src_port, kernel.packet_len), (123, 386));
        assert_eq!(decoder.watch_stats().streamed, 1);
        assert!(!samples.iter().any(|s| s.dst == other));
        assert!(decoder.take_samples().is_empty());
    }
}
