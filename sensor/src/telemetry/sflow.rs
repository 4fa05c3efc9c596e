//! sFlow version 5 (sflow.org/sflow_version_5.txt), decoded as the XDP
//! program decodes it (`sensor-ebpf/src/sflow.rs`): same walk, same bounds
//! ([`MAX_SAMPLES`], [`MAX_RECORDS`]), same error reasons.
//!
//! All offsets are into the UDP payload; every read is bounds-checked
//! against the structure that contains it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use edge_sensor_common::{MAX_RECORDS, MAX_SAMPLES, MAX_SAMPLING_RATE, MAX_STRIPPED, ParseError};

use super::sampled::{self, Packet};

/// Datagram header (sFlow v5 §5.1 `sample_datagram_v5`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub agent: IpAddr,
    pub sub_agent: u32,
    pub sequence: u32,
    pub uptime_ms: u32,
    pub num_samples: u32,
    /// Offset of the first sample.
    pub samples_off: usize,
}

/// What walking a datagram's samples counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Walk {
    pub samples: u32,
    pub records: u32,
    pub max_drops: u32,
    pub errors: [u16; ParseError::COUNT],
    /// The rate applied to the last valid flow sample (0: none).
    pub last_rate: u32,
}

impl Walk {
    fn error(&mut self, e: ParseError) {
        let n = &mut self.errors[e as usize];
        *n = n.wrapping_add(1);
    }
}

/// `N` bytes at `off` if `off + N <= limit` (and the datagram holds them).
fn bytes<const N: usize>(d: &[u8], off: usize, limit: usize) -> Option<[u8; N]> {
    if off > limit || limit - off < N {
        return None;
    }
    d.get(off..off + N)?.try_into().ok()
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Reads the datagram header.
pub fn header(d: &[u8]) -> Result<Header, ParseError> {
    let end = d.len();
    let h = bytes::<8>(d, 0, end).ok_or(ParseError::TruncatedHeader)?;
    if be32(&h, 0) != 5 {
        return Err(ParseError::BadVersion);
    }
    let (agent, rest_off) = match be32(&h, 4) {
        1 => {
            let a = bytes::<4>(d, 8, end).ok_or(ParseError::TruncatedHeader)?;
            (IpAddr::V4(Ipv4Addr::from(a)), 12)
        }
        2 => {
            let a = bytes::<16>(d, 8, end).ok_or(ParseError::TruncatedHeader)?;
            (IpAddr::V6(Ipv6Addr::from(a)).to_canonical(), 24)
        }
        _ => return Err(ParseError::BadAgentAddress),
    };
    let r = bytes::<16>(d, rest_off, end).ok_or(ParseError::TruncatedHeader)?;
    Ok(Header {
        agent,
        sub_agent: be32(&r, 0),
        sequence: be32(&r, 4),
        uptime_ms: be32(&r, 8),
        num_samples: be32(&r, 12),
        samples_off: rest_off + 16,
    })
}

/// Walks the samples of datagram `d`; `on_packet(packet, packets, bytes)`
/// is called once per flow sample that describes an IP packet, scaled by
/// its sampling rate, or by `override_rate` when one is configured.
pub fn walk(
    d: &[u8],
    h: &Header,
    override_rate: Option<u32>,
    mut on_packet: impl FnMut(Packet, u64, u64),
) -> Walk {
    let mut w = Walk::default();
    let end = d.len();
    let mut off = h.samples_off;
    let mut stopped = false;
    for _ in 0..h.num_samples.min(MAX_SAMPLES) {
        let Some(sh) = bytes::<8>(d, off, end) else {
            w.error(ParseError::MissingSamples);
            stopped = true;
            break;
        };
        let format = be32(&sh, 0);
        let len = be32(&sh, 4) as usize;
        let body = off + 8;
        if len > end - body {
            w.error(ParseError::BadSampleLength);
            stopped = true;
            break;
        }
        let next = body + len;
        if (format == 1 || format == 3)
            && flow_sample(d, &mut w, format, body, next, override_rate, &mut on_packet).is_err()
        {
            w.error(ParseError::BadSampleLength);
            stopped = true;
            break;
        }
        off = next;
    }
    if !stopped {
        if h.num_samples > MAX_SAMPLES {
            w.error(ParseError::TooManySamples);
        } else if off < end {
            w.error(ParseError::TrailingBytes);
        }
    }
    w
}

/// What one flow sample's records describe.
#[derive(Default)]
struct Described {
    raw: Option<(Packet, u32)>,
    ip: Option<(Packet, u32)>,
}

fn flow_sample(
    d: &[u8],
    w: &mut Walk,
    format: u32,
    body: usize,
    end: usize,
    override_rate: Option<u32>,
    on_packet: &mut impl FnMut(Packet, u64, u64),
) -> Result<(), ()> {
    let (rate, drops, num_records, fixed) = if format == 1 {
        let f = bytes::<32>(d, body, end).ok_or(())?;
        (be32(&f, 8), be32(&f, 16), be32(&f, 28), 32)
    } else {
        let f = bytes::<44>(d, body, end).ok_or(())?;
        (be32(&f, 12), be32(&f, 20), be32(&f, 40), 44)
    };
    w.samples += 1;
    w.max_drops = w.max_drops.max(drops);
    if rate == 0 {
        w.error(ParseError::ZeroSamplingRate);
        return Ok(());
    }
    if rate > MAX_SAMPLING_RATE {
        w.error(ParseError::SamplingRateTooHigh);
        return Ok(());
    }
    let rate = override_rate.unwrap_or(rate);
    w.last_rate = rate;

    let mut described = Described::default();
    let mut off = body + fixed;
    for _ in 0..num_records.min(MAX_RECORDS) {
        let Some(rh) = bytes::<8>(d, off, end) else {
            w.error(ParseError::BadRecordLength);
            return Ok(());
        };
        let format = be32(&rh, 0);
        let len = be32(&rh, 4) as usize;
        let rbody = off + 8;
        if len > end - rbody {
            w.error(ParseError::BadRecordLength);
            return Ok(());
        }
        w.records += 1;
        let rend = rbody + len;
        let ok = match format {
            1 => raw_header(d, &mut described, rbody, rend),
            3 => sampled_ipv4(d, &mut described, rbody, rend),
            4 => sampled_ipv6(d, &mut described, rbody, rend),
            _ => true,
        };
        if !ok {
            w.error(ParseError::BadRecordLength);
            return Ok(());
        }
        off = rend;
    }
    if num_records > MAX_RECORDS {
        w.error(ParseError::TooManyRecords);
    }
    match described.raw.or(described.ip) {
        Some((pkt, len)) => on_packet(pkt, u64::from(rate), u64::from(len) * u64::from(rate)),
        None => w.error(ParseError::NoDestination),
    }
    Ok(())
}

/// sampled_header (format 1).
fn raw_header(d: &[u8], out: &mut Described, body: usize, end: usize) -> bool {
    let Some(f) = bytes::<16>(d, body, end) else {
        return false;
    };
    let header_len = be32(&f, 12) as usize;
    if header_len > end - (body + 16) {
        return false;
    }
    if out.raw.is_some() {
        return true;
    }
    let frame_len = be32(&f, 4);
    let stripped = be32(&f, 8);
    let header = &d[body + 16..body + 16 + header_len];
    if let Some(pkt) = sampled::parse(be32(&f, 0), header) {
        let len = if stripped <= MAX_STRIPPED && stripped < frame_len {
            frame_len - stripped
        } else {
            frame_len
        };
        out.raw = Some((pkt, len));
    }
    true
}

/// sampled_ipv4 (format 3).
fn sampled_ipv4(d: &[u8], out: &mut Described, body: usize, end: usize) -> bool {
    let Some(r) = bytes::<32>(d, body, end) else {
        return false;
    };
    if out.ip.is_none() {
        let mut dst = [0u8; 16];
        dst[10] = 0xff;
        dst[11] = 0xff;
        dst[12..].copy_from_slice(&r[12..16]);
        let mut pkt = sampled::from_ip_record(dst, be32(&r, 4), be32(&r, 24));
        // Not counted; for the fingerprint of a watched destination.
        pkt.src[10] = 0xff;
        pkt.src[11] = 0xff;
        pkt.src[12..].copy_from_slice(&r[8..12]);
        pkt.src_port = be32(&r, 16) as u16;
        pkt.dst_port = be32(&r, 20) as u16;
        out.ip = Some((pkt, be32(&r, 0)));
    }
    true
}

/// sampled_ipv6 (format 4).
fn sampled_ipv6(d: &[u8], out: &mut Described, body: usize, end: usize) -> bool {
    if end < body || end - body < 56 {
        return false;
    }
    if out.ip.is_some() {
        return true;
    }
    let (Some(a), Some(src), Some(dst), Some(ports), Some(flags)) = (
        bytes::<8>(d, body, end),
        bytes::<16>(d, body + 8, end),
        bytes::<16>(d, body + 24, end),
        bytes::<8>(d, body + 40, end),
        bytes::<4>(d, body + 48, end),
    ) else {
        return false;
    };
    let mut pkt = sampled::from_ip_record(dst, be32(&a, 4), be32(&flags, 0));
    // Not counted; for the fingerprint of a watched destination.
    pkt.src = src;
    pkt.src_port = be32(&ports, 0) as u16;
    pkt.dst_port = be32(&ports, 4) as u16;
    out.ip = Some((pkt, be32(&a, 0)));
    true
}
