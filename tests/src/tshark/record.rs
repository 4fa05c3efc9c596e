//! The packet a sample describes: a raw packet header record (format 1,
//! with the TCP flags quirk), or a sampled IPv4/IPv6 record (3/4).

use std::net::IpAddr;

use super::{Json, parse_num};

/// The packet a sample describes.
pub(super) struct Packet {
    pub(super) dst: IpAddr,
    pub(super) length: u64,
    pub(super) protocol: u64,
    pub(super) syn: bool,
    pub(super) fragment: bool,
}

/// The packet of a raw packet header record, if its header protocol is
/// Ethernet, IPv4 or IPv6 and tshark found an IP destination in it.
pub(super) fn raw_header(record: &Json) -> Option<Packet> {
    // The IP layer an IPv4 or IPv6 header must start with (tshark's `ip`
    // dissector hands a version-6 packet to `ipv6`).
    let first = match record.num("sflow_245.header_protocol")? {
        1 => None,
        11 => Some("ip"),
        12 => Some("ipv6"),
        _ => return None,
    };
    let frame_length = record.num("sflow_245.header.frame_length")?;
    let stripped = record.num("sflow_245.header.payload_stripped")?;
    let length = if stripped <= 64 && stripped < frame_length {
        frame_length - stripped
    } else {
        frame_length
    };
    // The sampled bytes end here; tshark dissects up to 3 padding bytes more.
    let end = record.span("sflow_245.header")?.0
        + record.num("sflow_245.header.sampled_header_length")?;
    let layers: Vec<(&str, &Json)> = record
        .get("sflow_245.header_tree")?
        .entries()
        .iter()
        .filter(|(k, _)| !k.ends_with("_raw"))
        .map(|(k, v)| (k.as_ref(), v))
        .collect();
    let at = layers
        .iter()
        .position(|(k, _)| !matches!(*k, "eth" | "vlan" | "ieee8021ad" | "mpls"))?;
    let (kind, ip) = layers[at];
    if first.is_some_and(|f| f != kind || at != 0) {
        return None;
    }
    let next_layer = layers.get(at + 1).map(|(k, v)| (*k, *v));
    let (dst, protocol, fragment): (IpAddr, u64, bool) = match kind {
        "ip" => {
            let dst = ip.within("ip.dst", end)?.parse().ok()?;
            let mf = ip.get("ip.flags_tree").and_then(|f| f.num("ip.flags.mf")) == Some(1);
            let offset = ip.num("ip.frag_offset").unwrap_or(0);
            (IpAddr::V4(dst), ip.num("ip.proto")?, mf || offset != 0)
        }
        "ipv6" => {
            let dst = ip.within("ipv6.dst", end)?.parse().ok()?;
            let (protocol, fragment) = ipv6_protocol(ip, end)?;
            (IpAddr::V6(dst), protocol, fragment)
        }
        _ => return None,
    };
    let syn = protocol == 6
        && matches!(next_layer, Some(("tcp", tcp)) if tcp.span("tcp.flags").is_some_and(|(p, l)| p + l <= end)
        && tcp.get("tcp.flags_tree").is_some_and(|f| {
            f.num("tcp.flags.syn") == Some(1) && f.num("tcp.flags.ack") == Some(0)
        }));
    Some(Packet {
        dst,
        length,
        protocol,
        syn,
        fragment,
    })
}

/// The final next header of an IPv6 header tshark dissected, following the
/// extension headers within the sampled bytes, and whether a fragment header
/// is announced.
pub(super) fn ipv6_protocol(ip: &Json, end: u64) -> Option<(u64, bool)> {
    let mut protocol = ip.num("ipv6.nxt")?;
    let mut fragment = false;
    let mut headers = ip.entries().iter().filter_map(|(k, v)| {
        let field = match k.as_ref() {
            "ipv6.hopopts" => "ipv6.hopopts.nxt",
            "ipv6.routing" => "ipv6.routing.nxt",
            "ipv6.fraghdr" => "ipv6.fraghdr.nxt",
            "ipv6.dstopts" => "ipv6.dstopts.nxt",
            "ah" => "ah.next_header",
            _ => return None,
        };
        Some((field, v))
    });
    loop {
        let expected = match protocol {
            0 => "ipv6.hopopts.nxt",
            43 => "ipv6.routing.nxt",
            44 => "ipv6.fraghdr.nxt",
            60 => "ipv6.dstopts.nxt",
            51 => "ah.next_header",
            _ => break,
        };
        fragment |= protocol == 44;
        match headers.next() {
            Some((field, header)) if field == expected => {
                match header.within(field, end).and_then(parse_num) {
                    Some(n) => protocol = n,
                    None => break,
                }
            }
            _ => break,
        }
    }
    Some((protocol, fragment))
}

/// The packet of a sampled IPv4 (3) or IPv6 (4) record. tshark reads the
/// TCP flags from the first byte of the 32-bit `tcp_flags` word instead of
/// the last: the word is read here from the frame's bytes (`frame_raw`), at
/// the end of the destination port tshark shows.
pub(super) fn sampled_ip(record: &Json, frame_hex: &str) -> Option<Packet> {
    let dst = match record.num("sflow_245.flow_record_format")? {
        3 => IpAddr::V4(record.str("sflow_245.ipv4_dst")?.parse().ok()?),
        _ => IpAddr::V6(record.str("sflow_245.ipv6_dst")?.parse().ok()?),
    };
    let protocol = record.num("sflow.ip_protocol")?;
    let flags_at = usize::try_from(record.span_end("sflow.ip.destination_port")?).ok()?;
    let (_, end) = record.extent("sflow_5.flow_data_length")?;
    if flags_at as u64 + 4 > end {
        return None;
    }
    let flags = frame_hex
        .get(2 * flags_at..2 * flags_at + 8)
        .and_then(|h| u32::from_str_radix(h, 16).ok())?;
    Some(Packet {
        dst,
        length: record.num("sflow_245.ip.length")?,
        protocol,
        syn: protocol == 6 && flags & 0x02 != 0 && flags & 0x10 == 0,
        fragment: false,
    })
}
