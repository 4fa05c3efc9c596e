//! An sFlow v5 agent (sflow.org/sflow_version_5.txt): flow samples with an
//! extended_switch (1001) and a raw Ethernet header (1) record, as routers
//! send them (telemetry.md §1.5), packed into datagrams up to the MTU, with
//! a datagram sequence number per agent, a flow and a counter sample
//! sequence per data source, and generic interface counters (0:1) every
//! `counter_interval_s`.

use std::net::IpAddr;

use crate::{
    Datagram, DatagramTruth,
    model::{Sample, SourceCounters},
    scenario::{Format, RouterSpec},
};

fn word(out: &mut Vec<u8>, w: u32) {
    out.extend_from_slice(&w.to_be_bytes());
}

fn hyper(out: &mut Vec<u8>, w: u64) {
    out.extend_from_slice(&w.to_be_bytes());
}

/// One router's sFlow agent.
#[derive(Debug, Clone)]
pub struct Agent {
    router: u32,
    agent: IpAddr,
    sub_agent: u32,
    max_payload: usize,
    header_bytes: usize,
    flush_ns: u64,
    counter_ns: u64,
    expanded: bool,
    ifindex: Vec<u32>,
    /// Next datagram sequence number.
    sequence: u32,
    /// Next flow / counter sample sequence number per interface.
    flow_seq: Vec<u32>,
    counter_seq: Vec<u32>,
    /// Encoded samples waiting for a datagram.
    pending: Vec<u8>,
    pending_count: u32,
    truth: DatagramTruth,
    oldest_ns: Option<u64>,
    next_counters_ns: u64,
}

/// The agent's uptime at scenario time 0: routers have been up an hour.
const BOOT_MS: u64 = 3_600_000;

impl Agent {
    pub fn new(router: u32, spec: &RouterSpec) -> Self {
        let n = spec.interfaces.len();
        Self {
            router,
            agent: spec.agent,
            sub_agent: spec.sub_agent,
            // IPv4 (20) and UDP (8) headers within the MTU.
            max_payload: spec.mtu - 28,
            header_bytes: spec.header_bytes,
            flush_ns: spec.flush_ms * 1_000_000,
            counter_ns: spec.counter_interval_s * 1_000_000_000,
            expanded: spec.expanded,
            ifindex: spec.interfaces.clone(),
            sequence: 1,
            flow_seq: vec![1; n],
            counter_seq: vec![1; n],
            pending: Vec::new(),
            pending_count: 0,
            truth: DatagramTruth::default(),
            oldest_ns: None,
            // Desynchronised routers: each starts its counters at its own
            // offset within the interval.
            next_counters_ns: if spec.counter_interval_s == 0 {
                u64::MAX
            } else {
                (u64::from(router) * 1_700_000_000) % (spec.counter_interval_s * 1_000_000_000)
            },
        }
    }

    fn header_len(&self) -> usize {
        if self.agent.is_ipv4() { 28 } else { 40 }
    }

    /// Sends what is pending if its oldest sample has waited `flush_ms` by
    /// `now_ns`.
    pub fn due(&mut self, now_ns: u64, out: &mut Vec<Datagram>) {
        if let Some(oldest) = self.oldest_ns
            && oldest + self.flush_ns <= now_ns
        {
            self.flush(oldest + self.flush_ns, out);
        }
    }

    /// Adds a flow sample.
    pub fn sample(&mut self, s: &Sample, out: &mut Vec<Datagram>) {
        self.due(s.time_ns, out);
        let ifindex = self.ifindex[s.iface as usize];
        let seq = &mut self.flow_seq[s.iface as usize];
        let bytes = flow_sample(s, *seq, self.header_bytes, self.expanded, ifindex);
        *seq = seq.wrapping_add(1);
        self.append(bytes, s.time_ns, out);
        self.truth.samples.push(*s);
    }

    fn append(&mut self, bytes: Vec<u8>, now_ns: u64, out: &mut Vec<Datagram>) {
        if self.header_len() + self.pending.len() + bytes.len() > self.max_payload {
            self.flush(now_ns, out);
        }
        self.pending.extend_from_slice(&bytes);
        self.pending_count += 1;
        self.oldest_ns.get_or_insert(now_ns);
    }

    /// The end of a tick: counter samples when due, then a timed flush.
    pub fn advance(&mut self, now_ns: u64, counters: &[SourceCounters], out: &mut Vec<Datagram>) {
        self.due(now_ns, out);
        if now_ns >= self.next_counters_ns {
            for (i, c) in counters.iter().enumerate() {
                let seq = &mut self.counter_seq[i];
                let bytes = counter_sample(c, *seq);
                *seq = seq.wrapping_add(1);
                self.append(bytes, now_ns, out);
                self.truth.counters.push(*c);
            }
            self.next_counters_ns += self.counter_ns;
        }
    }

    /// Sends whatever is pending (the end of the scenario).
    pub fn finish(&mut self, now_ns: u64, out: &mut Vec<Datagram>) {
        self.flush(now_ns, out);
    }

    fn flush(&mut self, time_ns: u64, out: &mut Vec<Datagram>) {
        if self.pending_count == 0 {
            return;
        }
        let mut d = Vec::with_capacity(self.header_len() + self.pending.len());
        word(&mut d, 5);
        match self.agent {
            IpAddr::V4(a) => {
                word(&mut d, 1);
                d.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                word(&mut d, 2);
                d.extend_from_slice(&a.octets());
            }
        }
        word(&mut d, self.sub_agent);
        word(&mut d, self.sequence);
        word(&mut d, (BOOT_MS + time_ns / 1_000_000) as u32);
        word(&mut d, self.pending_count);
        d.extend_from_slice(&self.pending);
        let mut truth = std::mem::take(&mut self.truth);
        truth.sequence = self.sequence;
        self.sequence = self.sequence.wrapping_add(1);
        self.pending.clear();
        self.pending_count = 0;
        self.oldest_ns = None;
        out.push(Datagram {
            time_ns,
            router: self.router,
            format: Format::Sflow,
            payload: d,
            truth,
        });
    }
}

/// A flow sample (format 1, or expanded 3) of `s`.
fn flow_sample(s: &Sample, seq: u32, header_bytes: usize, expanded: bool, ifindex: u32) -> Vec<u8> {
    let head = s.packet.frame_head(header_bytes);
    let mut records = Vec::new();
    // extended_switch (1001): untagged.
    word(&mut records, 1001);
    word(&mut records, 16);
    for v in [0u32, 0, 0, 0] {
        word(&mut records, v);
    }
    // sampled_header (1), Ethernet, with the FCS counted and stripped.
    word(&mut records, 1);
    let padded = head.len().div_ceil(4) * 4;
    word(&mut records, (16 + padded) as u32);
    word(&mut records, 1);
    word(&mut records, s.packet.frame_len() + 4);
    word(&mut records, 4);
    word(&mut records, head.len() as u32);
    records.extend_from_slice(&head);
    records.resize(records.len() + padded - head.len(), 0);

    let mut body = Vec::with_capacity(48 + records.len());
    word(&mut body, seq);
    if expanded {
        word(&mut body, 0);
        word(&mut body, ifindex);
    } else {
        word(&mut body, ifindex & 0x00ff_ffff);
    }
    word(&mut body, s.rate);
    word(&mut body, s.pool as u32);
    word(&mut body, s.drops as u32);
    if expanded {
        for v in [0, ifindex, 0, 0] {
            word(&mut body, v);
        }
    } else {
        word(&mut body, ifindex & 0x3fff_ffff);
        word(&mut body, 0); // output unknown
    }
    word(&mut body, 2);
    body.extend_from_slice(&records);

    let mut out = Vec::with_capacity(8 + body.len());
    word(&mut out, if expanded { 3 } else { 1 });
    word(&mut out, body.len() as u32);
    out.extend_from_slice(&body);
    out
}

/// A counters sample (format 2) with one generic interface record (0:1).
fn counter_sample(c: &SourceCounters, seq: u32) -> Vec<u8> {
    let mut r = Vec::with_capacity(88);
    word(&mut r, c.ifindex);
    word(&mut r, 6); // ethernetCsmacd
    hyper(&mut r, 100_000_000_000); // 100G
    word(&mut r, 1); // full duplex
    word(&mut r, 3); // admin and oper up
    hyper(&mut r, c.in_octets);
    word(&mut r, c.in_packets as u32);
    for _ in 0..5 {
        word(&mut r, 0); // in multicast, broadcast, discards, errors, unknown protos
    }
    hyper(&mut r, 0); // out octets: this model sends nothing out
    for _ in 0..5 {
        word(&mut r, 0);
    }
    word(&mut r, 0); // promiscuous
    debug_assert_eq!(r.len(), 88);
    let mut body = Vec::new();
    word(&mut body, seq);
    word(&mut body, c.ifindex & 0x00ff_ffff);
    word(&mut body, 1);
    word(&mut body, 1);
    word(&mut body, 88);
    body.extend_from_slice(&r);
    let mut out = Vec::new();
    word(&mut out, 2);
    word(&mut out, body.len() as u32);
    out.extend_from_slice(&body);
    out
}
