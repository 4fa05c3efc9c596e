//! Frame parsing: Ethernet (up to two VLAN tags), IPv4/IPv6, UDP.
//!
//! Every read goes through [`ptr_at`], which proves to the verifier that the
//! bytes lie inside the frame. A frame that ends early is simply not telemetry.

use aya_ebpf::programs::XdpContext;

use edge_sensor_common::proto::{
    ethertype::{
        IPV4 as ETH_P_IPV4, IPV6 as ETH_P_IPV6, QINQ as ETH_P_8021AD, VLAN as ETH_P_8021Q,
    },
    ipproto::UDP as IPPROTO_UDP,
};

use crate::{maps, read};

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
/// VLAN tags we look through; a telemetry collector's port carries one or two.
const MAX_VLAN_DEPTH: usize = 2;
const IPV6_HLEN: usize = 40;
const UDP_HLEN: usize = 8;

/// A UDP datagram to one of our telemetry ports.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Datagram {
    /// Source address (IPv4 mapped into IPv6).
    pub src: read::Addr,
    /// Source port (the exporter's), host byte order.
    pub src_port: u16,
    /// Destination port, host byte order.
    pub dst_port: u16,
    /// UDP payload length (from the UDP header, checked against the frame).
    pub payload_len: u16,
    /// What the port carries: a `TelemetryKind` as `u8`.
    pub kind: u8,
    pub _pad: u8,
    /// Offset of the UDP payload from the start of the frame.
    pub payload_off: u32,
}

/// A pointer to a `T` at `off` bytes into the frame, if the frame holds it all.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, off: usize) -> Option<*const T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + off) as *const T)
}

#[inline(always)]
fn be16_at(ctx: &XdpContext, off: usize) -> Option<u16> {
    let p = ptr_at::<[u8; 2]>(ctx, off)?;
    Some(u16::from_be_bytes(unsafe { *p }))
}

/// The telemetry datagram this frame carries, or `None` for anything else:
/// other traffic, IP fragments, IPv6 with extension headers before UDP, and
/// frames shorter than their headers or than the UDP length claims.
#[inline(always)]
pub fn telemetry_datagram(ctx: &XdpContext) -> Option<Datagram> {
    let mut off = ETH_HLEN;
    let mut ethertype = be16_at(ctx, 12)?;
    for _ in 0..MAX_VLAN_DEPTH {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        ethertype = be16_at(ctx, off + 2)?;
        off += VLAN_HLEN;
    }

    let src;
    let udp_off;
    match ethertype {
        ETH_P_IPV4 => {
            let ip = ptr_at::<[u8; 20]>(ctx, off)?;
            let ip = unsafe { &*ip };
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            if ip[0] >> 4 != 4 || ihl < 20 || ip[9] != IPPROTO_UDP {
                return None;
            }
            // A fragment (MF set or non-zero offset) is not a whole datagram.
            if u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
                return None;
            }
            src = read::mapped_v4([ip[12], ip[13], ip[14], ip[15]]);
            udp_off = off + ihl;
        }
        ETH_P_IPV6 => {
            let ip = ptr_at::<[u8; IPV6_HLEN]>(ctx, off)?;
            let ip = unsafe { &*ip };
            if ip[0] >> 4 != 6 || ip[6] != IPPROTO_UDP {
                return None;
            }
            let a = ptr_at::<[u64; 2]>(ctx, off + 8)?;
            // SAFETY: in bounds (checked); read_unaligned: packet data has no alignment.
            src = unsafe { a.read_unaligned() };
            udp_off = off + IPV6_HLEN;
        }
        _ => return None,
    }

    let udp = ptr_at::<[u8; UDP_HLEN]>(ctx, udp_off)?;
    let udp = unsafe { &*udp };
    let dst_port = u16::from_be_bytes([udp[2], udp[3]]);
    let kind = maps::telemetry_kind(dst_port)?;
    let udp_len = read::bounded16(u16::from_be_bytes([udp[4], udp[5]]));
    if usize::from(udp_len) < UDP_HLEN {
        return None;
    }
    let payload_off = udp_off + UDP_HLEN;
    // The frame must hold the whole datagram the UDP header announces.
    if ctx.data() + udp_off + usize::from(udp_len) > ctx.data_end() {
        return None;
    }
    Some(Datagram {
        src,
        src_port: u16::from_be_bytes([udp[0], udp[1]]),
        dst_port,
        payload_len: udp_len - UDP_HLEN as u16,
        kind,
        _pad: 0,
        payload_off: payload_off as u32,
    })
}
