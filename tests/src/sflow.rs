//! Building sFlow v5 datagrams (sflow.org/sflow_version_5.txt, XDR: every
//! field a big-endian 32-bit word, opaque data padded to 4 bytes) for test
//! fixtures.

use std::net::IpAddr;

/// A datagram.
#[derive(Debug, Clone)]
pub struct Datagram {
    pub agent: IpAddr,
    pub sub_agent: u32,
    pub sequence: u32,
    pub uptime_ms: u32,
    pub samples: Vec<Sample>,
}

/// A sample.
#[derive(Debug, Clone)]
pub enum Sample {
    /// flow_sample (1) or flow_sample_expanded (3).
    Flow {
        expanded: bool,
        rate: u32,
        drops: u32,
        records: Vec<Record>,
    },
    /// Any other sample: its data format word and raw body.
    Other { format: u32, body: Vec<u8> },
}

/// A flow record.
#[derive(Debug, Clone)]
pub enum Record {
    /// sampled_header (1).
    Header {
        protocol: u32,
        frame_length: u32,
        stripped: u32,
        header: Vec<u8>,
    },
    /// sampled_ipv4 (3).
    Ipv4 {
        length: u32,
        protocol: u32,
        dst: [u8; 4],
        tcp_flags: u32,
    },
    /// sampled_ipv6 (4).
    Ipv6 {
        length: u32,
        protocol: u32,
        dst: [u8; 16],
        tcp_flags: u32,
    },
    /// Any other record: its data format word and raw body.
    Other { format: u32, body: Vec<u8> },
}

fn word(out: &mut Vec<u8>, w: u32) {
    out.extend_from_slice(&w.to_be_bytes());
}

/// `bytes` padded with zeros to a multiple of 4 (XDR opaque).
fn padded(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(bytes);
    out.resize(out.len() + (4 - bytes.len() % 4) % 4, 0);
}

impl Record {
    /// A raw Ethernet header record for `frame` (its first `snap` bytes),
    /// as pmacct sends it: frame_length with a 4-byte FCS, stripped 4.
    pub fn ethernet(frame: &[u8], snap: usize) -> Self {
        let header = frame[..frame.len().min(snap)].to_vec();
        Record::Header {
            protocol: 1,
            frame_length: frame.len() as u32 + 4,
            stripped: 4,
            header,
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut body = Vec::new();
        let format = match self {
            Record::Header {
                protocol,
                frame_length,
                stripped,
                header,
            } => {
                word(&mut body, *protocol);
                word(&mut body, *frame_length);
                word(&mut body, *stripped);
                word(&mut body, header.len() as u32);
                padded(&mut body, header);
                1
            }
            Record::Ipv4 {
                length,
                protocol,
                dst,
                tcp_flags,
            } => {
                word(&mut body, *length);
                word(&mut body, *protocol);
                body.extend_from_slice(&[192, 0, 2, 1]);
                body.extend_from_slice(dst);
                word(&mut body, 1234);
                word(&mut body, 80);
                word(&mut body, *tcp_flags);
                word(&mut body, 0);
                3
            }
            Record::Ipv6 {
                length,
                protocol,
                dst,
                tcp_flags,
            } => {
                word(&mut body, *length);
                word(&mut body, *protocol);
                body.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]);
                body.extend_from_slice(dst);
                word(&mut body, 1234);
                word(&mut body, 80);
                word(&mut body, *tcp_flags);
                word(&mut body, 0);
                4
            }
            Record::Other { format, body: b } => {
                body.extend_from_slice(b);
                *format
            }
        };
        word(out, format);
        word(out, body.len() as u32);
        out.extend_from_slice(&body);
    }
}

impl Sample {
    /// A compact flow sample with these records.
    pub fn flow(rate: u32, records: Vec<Record>) -> Self {
        Sample::Flow {
            expanded: false,
            rate,
            drops: 0,
            records,
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut body = Vec::new();
        let format = match self {
            Sample::Flow {
                expanded,
                rate,
                drops,
                records,
            } => {
                word(&mut body, 1); // sequence
                if *expanded {
                    word(&mut body, 0); // source_id type
                    word(&mut body, 7); // source_id index
                } else {
                    word(&mut body, 7);
                }
                word(&mut body, *rate);
                word(&mut body, 1000); // sample_pool
                word(&mut body, *drops);
                if *expanded {
                    for v in [0, 1, 0, 2] {
                        word(&mut body, v); // input/output format and value
                    }
                } else {
                    word(&mut body, 1);
                    word(&mut body, 2);
                }
                word(&mut body, records.len() as u32);
                for r in records {
                    r.encode(&mut body);
                }
                if *expanded { 3 } else { 1 }
            }
            Sample::Other { format, body: b } => {
                body.extend_from_slice(b);
                *format
            }
        };
        word(out, format);
        word(out, body.len() as u32);
        out.extend_from_slice(&body);
    }
}

impl Datagram {
    /// A datagram from IPv4 agent 198.18.7.1, sub-agent 3.
    pub fn new(sequence: u32, samples: Vec<Sample>) -> Self {
        Self {
            agent: IpAddr::from([198, 18, 7, 1]),
            sub_agent: 3,
            sequence,
            uptime_ms: 123_456,
            samples,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        word(&mut out, 5);
        match self.agent {
            IpAddr::V4(v4) => {
                word(&mut out, 1);
                out.extend_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                word(&mut out, 2);
                out.extend_from_slice(&v6.octets());
            }
        }
        word(&mut out, self.sub_agent);
        word(&mut out, self.sequence);
        word(&mut out, self.uptime_ms);
        word(&mut out, self.samples.len() as u32);
        for s in &self.samples {
            s.encode(&mut out);
        }
        out
    }
}

/// Offset of the first sample in a datagram from an IPv4 agent.
pub const V4_SAMPLES_OFF: usize = 28;
