//! A sampled packet header (sFlow raw header record, later IPFIX packet
//! sections): Ethernet, VLAN/QinQ, MPLS, IPv4, IPv6 with extension headers,
//! then the transport header. Only what the counters need is extracted.
//!
//! It is parsed in place in the datagram's buffer (`read::Data`): every
//! read is checked against the sampled length, of which at most
//! [`MAX_SAMPLED_HEADER`] bytes are looked at.

use edge_sensor_common::{
    MAX_IPV6_EXT_HEADERS, MAX_MPLS_LABELS, MAX_SAMPLED_HEADER, MAX_VLAN_TAGS,
};

use crate::{
    packet::Packet,
    read::{Addr, Data, fits},
    scratch,
};

use edge_sensor_common::proto::{
    ethertype::{IPV4 as ETH_P_IPV4, IPV6 as ETH_P_IPV6, MPLS_MC, MPLS_UC, QINQ, QINQ_OLD, VLAN},
    ipproto, sflow_header, tcp_flags,
};

/// The sampled header: `len` bytes at `start` of the datagram.
struct View<'a> {
    d: &'a Data,
    start: u32,
    len: u32,
}

impl View<'_> {
    /// Whether `n` bytes at `at` were sampled.
    #[inline(always)]
    fn has(&self, at: u32, n: u32) -> bool {
        fits(at, n, self.len)
    }

    #[inline(always)]
    fn u8(&self, at: u32) -> u8 {
        self.d.u8(self.start + at)
    }

    #[inline(always)]
    fn be16(&self, at: u32) -> u16 {
        self.d.be16(self.start + at)
    }

    #[inline(always)]
    fn addr16(&self, at: u32) -> Addr {
        self.d.addr16(self.start + at)
    }

    #[inline(always)]
    fn addr4_mapped(&self, at: u32) -> Addr {
        self.d.addr4_mapped(self.start + at)
    }
}

/// Parses the sampled header of an sFlow raw header record (see [`parse`])
/// into the sFlow walk's `raw` packet; `false` when it holds no IP
/// destination.
#[inline(always)]
pub fn parse_into_raw(start: u32, len: u32, protocol: u32) -> bool {
    edge_sensor_sampled(u64::from(start), u64::from(len), u64::from(protocol)) != 0
}

/// [`parse_into_raw`]'s work, as a global BPF function: every path through
/// VLAN tags, MPLS labels and IPv6 extension headers is verified here once,
/// instead of multiplying the paths of the sFlow walk that calls it.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn edge_sensor_sampled(start: u64, len: u64, protocol: u64) -> i64 {
    let Some(s) = scratch::get() else {
        return 0;
    };
    match parse(&s.data, start as u32, len as u32, protocol as u32) {
        Some(pkt) => {
            s.sflow.raw = pkt;
            1
        }
        None => 0,
    }
}

/// Parses the sampled header of sFlow `header_protocol` `protocol` that
/// occupies `len` bytes at `start` of the datagram (only the first
/// [`MAX_SAMPLED_HEADER`] are looked at); `None` when it holds no IP
/// destination.
#[inline(always)]
pub fn parse(d: &Data, start: u32, len: u32, protocol: u32) -> Option<Packet> {
    let len = if len > MAX_SAMPLED_HEADER as u32 {
        MAX_SAMPLED_HEADER as u32
    } else {
        len
    };
    let v = View { d, start, len };
    let (ethertype, ip_off) = match protocol {
        sflow_header::ETHERNET => link_layer_call(start, len)?,
        sflow_header::IPV4 => (ETH_P_IPV4, 0),
        sflow_header::IPV6 => (ETH_P_IPV6, 0),
        _ => return None,
    };
    match ethertype {
        ETH_P_IPV4 => ipv4(&v, ip_off),
        ETH_P_IPV6 => ipv6(&v, ip_off),
        _ => None,
    }
}

/// [`link_layer`] through [`edge_sensor_link_layer`].
#[inline(always)]
fn link_layer_call(start: u32, len: u32) -> Option<(u16, u32)> {
    let r = edge_sensor_link_layer(u64::from(start), u64::from(len));
    if r < 0 {
        return None;
    }
    Some(((r >> 32) as u16, r as u32))
}

/// The link layer of the sampled header of `len` bytes at `start`, as a
/// global BPF function: its paths (VLAN tags x MPLS labels) would otherwise
/// multiply those of the IP layers after it. `ethertype << 32 | offset`,
/// or -1 when there is no IP layer.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn edge_sensor_link_layer(start: u64, len: u64) -> i64 {
    let Some(s) = scratch::get() else {
        return -1;
    };
    let v = View {
        d: &s.data,
        start: start as u32,
        len: len as u32,
    };
    match link_layer(&v) {
        Some((ethertype, off)) => (i64::from(ethertype) << 32) | i64::from(off),
        None => -1,
    }
}

/// Ethernet, VLAN tags and MPLS labels: the network protocol and its offset.
#[inline(always)]
fn link_layer(v: &View) -> Option<(u16, u32)> {
    if !v.has(0, 14) {
        return None;
    }
    let mut ethertype = v.be16(12);
    let mut p = 14;
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != VLAN && ethertype != QINQ && ethertype != QINQ_OLD {
            break;
        }
        if !v.has(p, 4) {
            return None;
        }
        ethertype = v.be16(p + 2);
        p += 4;
    }
    if ethertype == MPLS_UC || ethertype == MPLS_MC {
        // RFC 3032: the label stack ends at the bottom-of-stack bit; the
        // payload's IP version nibble tells IPv4 from IPv6.
        let mut bottom = false;
        for _ in 0..MAX_MPLS_LABELS {
            if !v.has(p, 4) {
                return None;
            }
            let bos = v.u8(p + 2) & 1 != 0;
            p += 4;
            if bos {
                bottom = true;
                break;
            }
        }
        if !bottom || !v.has(p, 1) {
            return None;
        }
        ethertype = match v.u8(p) >> 4 {
            4 => ETH_P_IPV4,
            6 => ETH_P_IPV6,
            _ => return None,
        };
    }
    Some((ethertype, p))
}

#[inline(always)]
fn ipv4(v: &View, off: u32) -> Option<Packet> {
    if !v.has(off, 20) {
        return None;
    }
    let b0 = v.u8(off);
    let ihl = u32::from(b0 & 0x0f) * 4;
    if b0 >> 4 != 4 || ihl < 20 {
        return None;
    }
    let dst = v.addr4_mapped(off + 16);
    let frag = v.be16(off + 6);
    let offset = frag & 0x1fff;
    let more = frag & 0x2000 != 0;
    let proto = v.u8(off + 9);
    let syn = offset == 0 && proto == ipproto::TCP && tcp_syn(v, off + ihl);
    Some(Packet {
        dst,
        proto,
        syn,
        fragment: more || offset != 0,
    })
}

#[inline(always)]
fn ipv6(v: &View, off: u32) -> Option<Packet> {
    if !v.has(off, 40) || v.u8(off) >> 4 != 6 {
        return None;
    }
    let dst = v.addr16(off + 24);
    let mut next = v.u8(off + 6);
    let mut p = off + 40;
    let mut fragment = false;
    let mut first_fragment = true;
    // RFC 8200 §4: extension headers in a chain; walk a bounded number.
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        match next {
            // Hop-by-hop, routing, destination options: length in 8-octet
            // units, not counting the first 8.
            ipproto::HOP_BY_HOP | ipproto::ROUTING | ipproto::DEST_OPTS => {
                if !v.has(p, 2) {
                    break;
                }
                next = v.u8(p);
                p += (u32::from(v.u8(p + 1)) + 1) * 8;
            }
            // Fragment header (RFC 8200 §4.5), 8 octets.
            ipproto::FRAGMENT => {
                if !v.has(p, 8) {
                    break;
                }
                fragment = true;
                first_fragment = v.be16(p + 2) >> 3 == 0;
                next = v.u8(p);
                p += 8;
            }
            // Authentication header (RFC 4302): length in 4-octet units, minus 2.
            ipproto::AH => {
                if !v.has(p, 2) {
                    break;
                }
                next = v.u8(p);
                p += (u32::from(v.u8(p + 1)) + 2) * 4;
            }
            _ => break,
        }
    }
    let syn = first_fragment && next == ipproto::TCP && tcp_syn(v, p);
    Some(Packet {
        dst,
        proto: next,
        syn,
        fragment,
    })
}

/// Whether the TCP header at `off` (if sampled) is a SYN without ACK.
#[inline(always)]
fn tcp_syn(v: &View, off: u32) -> bool {
    v.has(off, 14) && tcp_flags::is_syn(v.u8(off + 13))
}

/// The sampled_ipv4 / sampled_ipv6 records give the same facts directly.
#[inline(always)]
pub fn from_ip_record(dst: Addr, proto: u32, flags: u32) -> Packet {
    // A protocol number past 255 is nonsense; 255 (reserved) counts as other.
    let proto = if proto > 255 { 255 } else { proto as u8 };
    Packet {
        dst,
        proto,
        syn: proto == ipproto::TCP && tcp_flags::is_syn(flags as u8),
        fragment: false,
    }
}
