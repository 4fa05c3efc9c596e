//! The sampled packet header, as the XDP program reads it
//! (`sensor-ebpf/src/sampled.rs`), and how one sample is counted.

use edge_sensor_common::{DstStats, MAX_IPV6_EXT_HEADERS, MAX_MPLS_LABELS, MAX_VLAN_TAGS};

use edge_sensor_common::proto::{
    ethertype::{IPV4 as ETH_P_IPV4, IPV6 as ETH_P_IPV6, MPLS_MC, MPLS_UC, QINQ, QINQ_OLD, VLAN},
    ipproto, sflow_header, tcp_flags,
};

/// What a sampled packet says about itself: what the counters need (as
/// the kernel reads it), and what a fingerprint needs besides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Packet {
    /// Destination, IPv4 mapped into IPv6.
    pub dst: [u8; 16],
    pub proto: u8,
    pub syn: bool,
    pub fragment: bool,
    /// Source, IPv4 mapped into IPv6 (all zeros where unknown).
    pub src: [u8; 16],
    /// TCP/UDP/SCTP ports; 0 where unknown (later fragments, other protocols).
    pub src_port: u16,
    pub dst_port: u16,
    /// TCP flags (0 for other protocols).
    pub tcp_flags: u8,
    /// ICMP / ICMPv6 message type, where the header or record gives it.
    pub icmp_type: Option<u8>,
    /// A fragment other than the first: no transport header.
    pub later_fragment: bool,
    /// The IP packet's length as its header states it (IPv4 total length,
    /// IPv6 40 + payload length); 0 where no IP header was read (flow
    /// records). A Flow Spec packet-length match is on this length (RFC
    /// 8955 §4.2.2.10), not on the frame an sFlow sample describes, which
    /// carries the link-layer header (and often the FCS) too.
    pub ip_len: u16,
}

fn bytes<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    b.get(off..off.checked_add(N)?)?.try_into().ok()
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Parses a sampled header (`header` holds exactly the sampled bytes) of
/// sFlow `header_protocol` `protocol`; `None` without an IP destination.
pub fn parse(protocol: u32, header: &[u8]) -> Option<Packet> {
    let (ethertype, ip_off) = match protocol {
        sflow_header::ETHERNET => link_layer(header)?,
        sflow_header::IPV4 => (ETH_P_IPV4, 0),
        sflow_header::IPV6 => (ETH_P_IPV6, 0),
        _ => return None,
    };
    match ethertype {
        ETH_P_IPV4 => ipv4(header, ip_off),
        ETH_P_IPV6 => ipv6(header, ip_off),
        _ => None,
    }
}

fn link_layer(h: &[u8]) -> Option<(u16, usize)> {
    let eth = bytes::<14>(h, 0)?;
    let mut ethertype = be16(&eth, 12);
    let mut p = 14;
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != VLAN && ethertype != QINQ && ethertype != QINQ_OLD {
            break;
        }
        let tag = bytes::<4>(h, p)?;
        ethertype = be16(&tag, 2);
        p += 4;
    }
    if ethertype == MPLS_UC || ethertype == MPLS_MC {
        let mut bottom = false;
        for _ in 0..MAX_MPLS_LABELS {
            let label = bytes::<4>(h, p)?;
            p += 4;
            if label[2] & 1 != 0 {
                bottom = true;
                break;
            }
        }
        if !bottom {
            return None;
        }
        ethertype = match bytes::<1>(h, p)?[0] >> 4 {
            4 => ETH_P_IPV4,
            6 => ETH_P_IPV6,
            _ => return None,
        };
    }
    Some((ethertype, p))
}

fn ipv4(h: &[u8], off: usize) -> Option<Packet> {
    let ip = bytes::<20>(h, off)?;
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if ip[0] >> 4 != 4 || ihl < 20 {
        return None;
    }
    let mapped = |a: &[u8]| {
        let mut m = [0u8; 16];
        m[10] = 0xff;
        m[11] = 0xff;
        m[12..].copy_from_slice(a);
        m
    };
    let frag = be16(&ip, 6);
    let offset = frag & 0x1fff;
    let more = frag & 0x2000 != 0;
    let proto = ip[9];
    let mut pkt = Packet {
        dst: mapped(&ip[16..20]),
        src: mapped(&ip[12..16]),
        proto,
        fragment: more || offset != 0,
        later_fragment: offset != 0,
        ip_len: be16(&ip, 2),
        ..Packet::default()
    };
    if offset == 0 {
        transport(&mut pkt, h, off + ihl);
    }
    Some(pkt)
}

fn ipv6(h: &[u8], off: usize) -> Option<Packet> {
    let ip = bytes::<40>(h, off)?;
    if ip[0] >> 4 != 6 {
        return None;
    }
    let dst: [u8; 16] = ip[24..40].try_into().ok()?;
    let mut next = ip[6];
    let mut p = off + 40;
    let mut fragment = false;
    let mut first_fragment = true;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        match next {
            ipproto::HOP_BY_HOP | ipproto::ROUTING | ipproto::DEST_OPTS => {
                let Some(e) = bytes::<2>(h, p) else { break };
                next = e[0];
                p += (usize::from(e[1]) + 1) * 8;
            }
            ipproto::FRAGMENT => {
                let Some(e) = bytes::<8>(h, p) else { break };
                fragment = true;
                first_fragment = be16(&e, 2) >> 3 == 0;
                next = e[0];
                p += 8;
            }
            ipproto::AH => {
                let Some(e) = bytes::<2>(h, p) else { break };
                next = e[0];
                p += (usize::from(e[1]) + 2) * 4;
            }
            _ => break,
        }
    }
    let mut pkt = Packet {
        dst,
        src: ip[8..24].try_into().ok()?,
        proto: next,
        fragment,
        later_fragment: !first_fragment,
        // A jumbogram (payload length 0) states no length: left unknown.
        ip_len: match be16(&ip, 4) {
            0 => 0,
            payload => payload.saturating_add(40),
        },
        ..Packet::default()
    };
    if first_fragment {
        transport(&mut pkt, h, p);
    }
    Some(pkt)
}

/// Ports and TCP flags from the transport header at `off`, as far as it
/// was sampled. SYN is counted as the kernel does: SYN without ACK.
fn transport(pkt: &mut Packet, h: &[u8], off: usize) {
    match pkt.proto {
        ipproto::TCP | ipproto::UDP | ipproto::SCTP | ipproto::UDPLITE => {
            if let Some(ports) = bytes::<4>(h, off) {
                pkt.src_port = be16(&ports, 0);
                pkt.dst_port = be16(&ports, 2);
            }
        }
        ipproto::ICMP | ipproto::ICMPV6 => pkt.icmp_type = h.get(off).copied(),
        _ => {}
    }
    if pkt.proto == ipproto::TCP
        && let Some(tcp) = bytes::<14>(h, off)
    {
        pkt.tcp_flags = tcp[13];
        pkt.syn = tcp_flags::is_syn(tcp[13]);
    }
}

/// A sampled_ipv4 / sampled_ipv6 record's facts.
pub fn from_ip_record(dst: [u8; 16], proto: u32, flags: u32) -> Packet {
    let proto = u8::try_from(proto).unwrap_or(255);
    Packet {
        dst,
        proto,
        syn: proto == ipproto::TCP && tcp_flags::is_syn(flags as u8),
        tcp_flags: if proto == ipproto::TCP {
            flags as u8
        } else {
            0
        },
        ..Packet::default()
    }
}

/// The ICMP type of a flow record of protocol `proto` without a type field
/// of its own: NetFlow v5 and many v9/IPFIX exporters (Cisco, softflowd)
/// put `type << 8 | code` in the destination port.
pub fn icmp_type_from_port(proto: u8, dst_port: u16) -> Option<u8> {
    matches!(proto, ipproto::ICMP | ipproto::ICMPV6).then_some((dst_port >> 8) as u8)
}

/// Adds `packets` and `bytes` (already scaled by the sampling rate) of
/// packets like `pkt` (the kernel's `count::sample`, through the same
/// `DstStats::add_sample`).
pub fn count(stats: &mut DstStats, pkt: &Packet, packets: u64, bytes: u64) {
    stats.add_sample(pkt.proto, pkt.syn, pkt.fragment, packets, bytes);
}
