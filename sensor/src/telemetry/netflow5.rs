//! NetFlow v5, decoded as the XDP program decodes it
//! (`sensor-ebpf/src/netflow5.rs`): a 24-byte header and `count` fixed
//! 48-byte records, each scaled by the header's sampling interval.

use edge_sensor_common::{
    MAX_NETFLOW5_RECORDS, NETFLOW5_HEADER, NETFLOW5_RECORD, ParseError, proto::ipproto,
};

use super::sampled::{self, Packet};

/// The header fields that matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub count: u32,
    pub sequence: u32,
    pub uptime_ms: u32,
    /// engine_type << 8 | engine_id.
    pub engine: u32,
    /// Sampling interval; 0: unsampled or unknown.
    pub interval: u32,
}

fn be16(d: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([d[at], d[at + 1]])
}

fn be32(d: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
}

/// Reads the header of a datagram whose version word is 5.
pub fn header(d: &[u8]) -> Result<Header, ParseError> {
    if d.len() < NETFLOW5_HEADER as usize {
        return Err(ParseError::TruncatedHeader);
    }
    let interval = u32::from(be16(d, 22) & 0x3fff);
    Ok(Header {
        count: u32::from(be16(d, 2)),
        uptime_ms: be32(d, 4),
        sequence: be32(d, 16),
        engine: u32::from(be16(d, 20)),
        interval,
    })
}

/// What walking the records counted.
#[derive(Debug, Default)]
pub struct Walk {
    pub records: u32,
    pub error: Option<ParseError>,
}

/// Walks the records; `on_flow(packet, packets, bytes)` gets each one,
/// already scaled by `rate` (the header's interval or a configured one).
pub fn walk(d: &[u8], h: &Header, rate: u32, mut on_flow: impl FnMut(Packet, u64, u64)) -> Walk {
    let end = d.len() as u32;
    let present = (end - NETFLOW5_HEADER) / NETFLOW5_RECORD;
    let n = h.count.min(MAX_NETFLOW5_RECORDS).min(present);
    let rate = u64::from(rate);
    for i in 0..n {
        let r = (NETFLOW5_HEADER + i * NETFLOW5_RECORD) as usize;
        let dst: [u8; 4] = d[r + 4..r + 8].try_into().expect("4 bytes");
        let mut pkt = sampled::from_ip_record(
            std::net::Ipv4Addr::from(dst).to_ipv6_mapped().octets(),
            u32::from(d[r + 38]),
            u32::from(d[r + 37]),
        );
        // Not counted; for the fingerprint of a watched destination.
        let src: [u8; 4] = d[r..r + 4].try_into().expect("4 bytes");
        pkt.src = std::net::Ipv4Addr::from(src).to_ipv6_mapped().octets();
        if matches!(d[r + 38], ipproto::TCP | ipproto::UDP) {
            pkt.src_port = u16::from_be_bytes([d[r + 32], d[r + 33]]);
            pkt.dst_port = u16::from_be_bytes([d[r + 34], d[r + 35]]);
        }
        pkt.icmp_type =
            sampled::icmp_type_from_port(d[r + 38], u16::from_be_bytes([d[r + 34], d[r + 35]]));
        on_flow(
            pkt,
            u64::from(be32(d, r + 16)) * rate,
            u64::from(be32(d, r + 20)) * rate,
        );
    }
    let error = if h.count > MAX_NETFLOW5_RECORDS {
        Some(ParseError::TooManySamples)
    } else if h.count > present {
        Some(ParseError::MissingSamples)
    } else if end > NETFLOW5_HEADER + h.count * NETFLOW5_RECORD {
        Some(ParseError::TrailingBytes)
    } else {
        None
    };
    Walk { records: n, error }
}
