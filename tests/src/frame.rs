//! Crafted Ethernet frames for XDP test runs.

use std::net::IpAddr;

pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// An Ethernet header with `ethertype`, after the given VLAN tags (outer first,
/// each as (TPID, VID)), followed by `body`.
pub fn ethernet(vlans: &[(u16, u16)], ethertype: u16, body: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01];
    for &(tpid, vid) in vlans {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(body);
    f
}

/// An IPv4 header (no options, valid checksum) followed by `body`.
pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, body: &[u8]) -> Vec<u8> {
    ipv4_with(src, dst, proto, 0, body)
}

/// Like [`ipv4`], with the flags/fragment-offset field set to `frag`.
pub fn ipv4_with(src: [u8; 4], dst: [u8; 4], proto: u8, frag: u16, body: &[u8]) -> Vec<u8> {
    let total = u16::try_from(20 + body.len()).expect("fits an IPv4 packet");
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0, 1]);
    h.extend_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    let sum = checksum(&h);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h.extend_from_slice(body);
    h
}

/// An IPv6 header followed by `body`.
pub fn ipv6(src: [u8; 16], dst: [u8; 16], next: u8, body: &[u8]) -> Vec<u8> {
    let len = u16::try_from(body.len()).expect("fits an IPv6 payload");
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&[next, 64]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(body);
    h
}

/// A UDP header (checksum 0: optional over IPv4, and XDP does not check it)
/// followed by `payload`.
pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(8 + payload.len()).expect("fits a UDP datagram");
    let mut h = Vec::with_capacity(len as usize);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(payload);
    h
}

/// Ethernet + IPv4/IPv6 + UDP from `src` to `dst`.
pub fn udp_frame(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let l4 = udp(sport, dport, payload);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ethernet(
            &[],
            ETH_P_IPV4,
            &ipv4(s.octets(), d.octets(), IPPROTO_UDP, &l4),
        ),
        (IpAddr::V6(s), IpAddr::V6(d)) => ethernet(
            &[],
            ETH_P_IPV6,
            &ipv6(s.octets(), d.octets(), IPPROTO_UDP, &l4),
        ),
        _ => panic!("mixed address families"),
    }
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
