//! An IPFIX exporter (RFC 7011) of sampled packets: one data record per
//! sampled packet (packetDeltaCount 1: "every sampled packet is a flow", as
//! Juniper inline monitoring and pmacct without a cache send), or, with
//! `flow_timeout_ms`, a flow cache aggregating the samples of a 5-tuple
//! until its active timeout (packetDeltaCount = samples, TCP flags OR-ed,
//! as routers with sampled NetFlow/IPFIX caches do); the sampling
//! rate in options data (RFC 7011 §4.1 options, the IEs of RFC 5101/7012:
//! samplingInterval 34 or samplerRandomInterval 50), templates and options
//! resent every `template_refresh_s` in a message of their own (so data
//! messages hold data sets only), and the message sequence number counting
//! every data record sent before it, options data included (§3.1).

use std::{collections::HashMap, net::IpAddr};

use crate::{
    Datagram, DatagramTruth,
    model::Sample,
    packet::{ICMP, ICMPV6},
    scenario::{Format, IpfixSampling, RouterSpec},
};

/// Template ids.
pub const TEMPLATE_V4: u16 = 256;
pub const TEMPLATE_V6: u16 = 257;
pub const TEMPLATE_OPTIONS: u16 = 258;
/// The samplerId data records and options carry in
/// [`IpfixSampling::SamplerRandomInterval`] mode.
pub const SAMPLER_ID: u8 = 1;

fn be16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}
fn be32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}
fn be64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// (IE, length) of the data templates.
fn data_fields(v6: bool, sampler: bool) -> Vec<(u16, u16)> {
    let mut f = if v6 {
        vec![(27, 16), (28, 16)]
    } else {
        vec![(8, 4), (12, 4)]
    };
    f.extend_from_slice(&[
        (7, 2),   // sourceTransportPort
        (11, 2),  // destinationTransportPort
        (4, 1),   // protocolIdentifier
        (6, 2),   // tcpControlBits (2 bytes, as Cisco IOS XR)
        (2, 8),   // packetDeltaCount
        (1, 8),   // octetDeltaCount
        (10, 4),  // ingressInterface
        (152, 8), // flowStartMilliseconds
        (153, 8), // flowEndMilliseconds
    ]);
    if sampler {
        f.push((48, 1)); // samplerId
    }
    f
}

fn record_len(v6: bool, sampler: bool) -> usize {
    data_fields(v6, sampler)
        .iter()
        .map(|f| usize::from(f.1))
        .sum()
}

/// One router's IPFIX exporting process (one observation domain).
#[derive(Debug, Clone)]
pub struct Exporter {
    router: u32,
    domain: u32,
    rate: u32,
    mode: IpfixSampling,
    max_payload: usize,
    flush_ns: u64,
    refresh_ns: u64,
    start_unix_s: u64,
    ifindex: Vec<u32>,
    /// Data records sent so far (the next message's sequence number).
    records: u32,
    next_templates_ns: u64,
    /// Active timeout of the flow cache (0: no cache, a record per sample).
    timeout_ns: u64,
    /// Flows being aggregated, by key, with their expiry order.
    cache: HashMap<FlowKey, Record>,
    pending: Vec<Record>,
    oldest_ns: Option<u64>,
}

/// What a flow cache aggregates by: interface and 5-tuple (ICMP: type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FlowKey {
    iface: u32,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    src_port: u16,
    dst_port: u16,
}

impl FlowKey {
    fn of(s: &Sample) -> Self {
        let (src_port, dst_port, _) = ports_and_flags(&s.packet);
        Self {
            iface: s.iface,
            src: s.packet.src,
            dst: s.packet.dst,
            proto: s.packet.proto,
            src_port,
            dst_port,
        }
    }
}

/// One data record: the samples it aggregates (one without a flow cache).
#[derive(Debug, Clone)]
struct Record {
    samples: Vec<Sample>,
    /// When the cache exports it (first sample + active timeout).
    expires_ns: u64,
}

/// Ports and flags as the record carries them: ICMP type and code in the
/// destination port, as exporters do; TCP flags for TCP only.
fn ports_and_flags(p: &crate::packet::Packet) -> (u16, u16, u16) {
    if p.proto == ICMP || p.proto == ICMPV6 {
        (0, u16::from(p.tcp_flags) << 8, 0)
    } else if p.proto == crate::packet::TCP {
        (p.src_port, p.dst_port, u16::from(p.tcp_flags))
    } else {
        (p.src_port, p.dst_port, 0)
    }
}

impl Exporter {
    pub fn new(router: u32, spec: &RouterSpec, start_unix_s: u64) -> Self {
        Self {
            router,
            domain: spec.sub_agent,
            rate: spec.sampling_rate,
            mode: spec.ipfix_sampling,
            max_payload: spec.mtu - 28,
            flush_ns: spec.flush_ms * 1_000_000,
            refresh_ns: spec.template_refresh_s.max(1) * 1_000_000_000,
            start_unix_s,
            ifindex: spec.interfaces.clone(),
            records: 0,
            next_templates_ns: 0,
            timeout_ns: spec.flow_timeout_ms * 1_000_000,
            cache: HashMap::new(),
            pending: Vec::new(),
            oldest_ns: None,
        }
    }

    fn sampler(&self) -> bool {
        self.mode == IpfixSampling::SamplerRandomInterval
    }

    fn header(&self, out: &mut Vec<u8>, time_ns: u64) {
        be16(out, 10);
        be16(out, 0); // length, set at the end
        be32(out, (self.start_unix_s + time_ns / 1_000_000_000) as u32);
        be32(out, self.records);
        be32(out, self.domain);
    }

    /// The templates, the options template and the options data.
    fn templates(&mut self, time_ns: u64, out: &mut Vec<Datagram>) {
        let mut m = Vec::new();
        self.header(&mut m, time_ns);
        // Template set: both data templates.
        let mut set = Vec::new();
        for (id, v6) in [(TEMPLATE_V4, false), (TEMPLATE_V6, true)] {
            let fields = data_fields(v6, self.sampler());
            be16(&mut set, id);
            be16(&mut set, fields.len() as u16);
            for (ie, len) in fields {
                be16(&mut set, ie);
                be16(&mut set, len);
            }
        }
        be16(&mut m, 2);
        be16(&mut m, (set.len() + 4) as u16);
        m.extend_from_slice(&set);
        // Options template set: scope, then the sampling fields.
        let (scope, fields): ((u16, u16), Vec<(u16, u16)>) = match self.mode {
            IpfixSampling::SamplingInterval => ((149, 4), vec![(34, 4), (35, 1)]),
            IpfixSampling::SamplerRandomInterval => ((48, 1), vec![(49, 1), (50, 4)]),
        };
        let mut set = Vec::new();
        be16(&mut set, TEMPLATE_OPTIONS);
        be16(&mut set, (fields.len() + 1) as u16);
        be16(&mut set, 1);
        for (ie, len) in std::iter::once(scope).chain(fields) {
            be16(&mut set, ie);
            be16(&mut set, len);
        }
        be16(&mut m, 3);
        be16(&mut m, (set.len() + 4) as u16);
        m.extend_from_slice(&set);
        // Options data: the sampling rate.
        let mut rec = Vec::new();
        match self.mode {
            IpfixSampling::SamplingInterval => {
                be32(&mut rec, self.domain);
                be32(&mut rec, self.rate);
                rec.push(2); // random n-out-of-N
            }
            IpfixSampling::SamplerRandomInterval => {
                rec.push(SAMPLER_ID);
                rec.push(2); // random
                be32(&mut rec, self.rate);
            }
        }
        be16(&mut m, TEMPLATE_OPTIONS);
        be16(&mut m, (rec.len() + 4) as u16);
        m.extend_from_slice(&rec);
        let len = m.len() as u16;
        m[2..4].copy_from_slice(&len.to_be_bytes());
        let truth = DatagramTruth {
            sequence: self.records,
            templates: true,
            ..DatagramTruth::default()
        };
        self.records = self.records.wrapping_add(1);
        out.push(Datagram {
            time_ns,
            router: self.router,
            format: Format::Ipfix,
            payload: m,
            truth,
        });
    }

    fn message_len(&self, extra: Option<bool>) -> usize {
        let (mut v4, mut v6) = (0usize, 0usize);
        for r in &self.pending {
            if r.samples[0].packet.dst.is_ipv6() {
                v6 += 1
            } else {
                v4 += 1
            }
        }
        match extra {
            Some(true) => v6 += 1,
            Some(false) => v4 += 1,
            None => {}
        }
        let sets = usize::from(v4 > 0) + usize::from(v6 > 0);
        16 + 4 * sets
            + v4 * record_len(false, self.sampler())
            + v6 * record_len(true, self.sampler())
    }

    /// Flows past their active timeout, templates when due, then a timed
    /// flush.
    pub fn due(&mut self, now_ns: u64, out: &mut Vec<Datagram>) {
        if !self.cache.is_empty() {
            let mut expired: Vec<Record> = Vec::new();
            self.cache.retain(|_, r| {
                if r.expires_ns <= now_ns {
                    expired.push(r.clone());
                    false
                } else {
                    true
                }
            });
            // In the order they expired (then by first sample, for ties).
            expired.sort_by_key(|r| (r.expires_ns, r.samples[0].time_ns, r.samples[0].index));
            for r in expired {
                self.export(r, out);
            }
        }
        if let Some(oldest) = self.oldest_ns
            && oldest + self.flush_ns <= now_ns
        {
            self.flush(oldest + self.flush_ns, out);
        }
        if now_ns >= self.next_templates_ns {
            // Data already pending goes first: it was described by the
            // templates sent before.
            self.flush(now_ns, out);
            self.templates(now_ns, out);
            self.next_templates_ns = now_ns + self.refresh_ns;
        }
    }

    pub fn sample(&mut self, s: &Sample, out: &mut Vec<Datagram>) {
        self.due(s.time_ns, out);
        if self.timeout_ns == 0 {
            self.export(
                Record {
                    samples: vec![*s],
                    expires_ns: s.time_ns,
                },
                out,
            );
            return;
        }
        let expires_ns = s.time_ns + self.timeout_ns;
        self.cache
            .entry(FlowKey::of(s))
            .or_insert_with(|| Record {
                samples: Vec::new(),
                expires_ns,
            })
            .samples
            .push(*s);
    }

    /// Queues a record for the next message, sending the pending ones
    /// first if it would not fit.
    fn export(&mut self, r: Record, out: &mut Vec<Datagram>) {
        let at = r.expires_ns;
        if self.message_len(Some(r.samples[0].packet.dst.is_ipv6())) > self.max_payload {
            self.flush(at, out);
        }
        self.pending.push(r);
        self.oldest_ns.get_or_insert(at);
    }

    pub fn advance(&mut self, now_ns: u64, out: &mut Vec<Datagram>) {
        self.due(now_ns, out);
    }

    /// The end: every cached flow, then what is pending.
    pub fn finish(&mut self, now_ns: u64, out: &mut Vec<Datagram>) {
        let mut rest: Vec<Record> = self.cache.drain().map(|(_, r)| r).collect();
        rest.sort_by_key(|r| (r.expires_ns, r.samples[0].time_ns, r.samples[0].index));
        for mut r in rest {
            r.expires_ns = r.expires_ns.min(now_ns);
            self.export(r, out);
        }
        self.flush(now_ns, out);
    }

    fn flush(&mut self, time_ns: u64, out: &mut Vec<Datagram>) {
        if self.pending.is_empty() {
            return;
        }
        let mut m = Vec::with_capacity(self.message_len(None));
        self.header(&mut m, time_ns);
        let sampler = self.sampler();
        // Records grouped in one set per template, in export order within
        // it; the truth lists them as they appear.
        let (mut order, mut sizes) = (Vec::new(), Vec::new());
        for (id, v6) in [(TEMPLATE_V4, false), (TEMPLATE_V6, true)] {
            let records: Vec<&Record> = self
                .pending
                .iter()
                .filter(|r| r.samples[0].packet.dst.is_ipv6() == v6)
                .collect();
            if records.is_empty() {
                continue;
            }
            be16(&mut m, id);
            be16(&mut m, (4 + records.len() * record_len(v6, sampler)) as u16);
            for r in records {
                self.record(&mut m, r);
                order.extend_from_slice(&r.samples);
                sizes.push(r.samples.len() as u32);
            }
        }
        let len = m.len() as u16;
        m[2..4].copy_from_slice(&len.to_be_bytes());
        debug_assert!(m.len() <= self.max_payload);
        let truth = DatagramTruth {
            sequence: self.records,
            samples: order,
            records: sizes,
            ..DatagramTruth::default()
        };
        self.records = self.records.wrapping_add(self.pending.len() as u32);
        self.pending.clear();
        self.oldest_ns = None;
        out.push(Datagram {
            time_ns,
            router: self.router,
            format: Format::Ipfix,
            payload: m,
            truth,
        });
    }

    /// One data record: the flow's key from its first sample, the samples'
    /// count, octets and OR-ed TCP flags, first and last times.
    fn record(&self, m: &mut Vec<u8>, r: &Record) {
        let first = &r.samples[0];
        let p = &first.packet;
        match (p.src, p.dst) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                m.extend_from_slice(&a.octets());
                m.extend_from_slice(&b.octets());
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                m.extend_from_slice(&a.octets());
                m.extend_from_slice(&b.octets());
            }
            _ => unreachable!("one family per packet"),
        }
        let (sport, dport, _) = ports_and_flags(p);
        let flags = r
            .samples
            .iter()
            .fold(0u16, |f, s| f | ports_and_flags(&s.packet).2);
        let octets: u64 = r.samples.iter().map(|s| u64::from(s.packet.ip_len)).sum();
        be16(m, sport);
        be16(m, dport);
        m.push(p.proto);
        be16(m, flags);
        be64(m, r.samples.len() as u64);
        be64(m, octets);
        be32(m, self.ifindex[first.iface as usize]);
        let ms = |s: &Sample| self.start_unix_s * 1000 + s.time_ns / 1_000_000;
        be64(m, ms(first));
        be64(m, ms(r.samples.last().unwrap_or(first)));
        if self.sampler() {
            m.push(SAMPLER_ID);
        }
    }
}
