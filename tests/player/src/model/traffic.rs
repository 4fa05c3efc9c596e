//! The packets each kind of traffic is made of (a host's normal mix, a
//! flash crowd's requests, each attack vector's packets) and the addresses
//! of hosts and remote peers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::{
    Error,
    packet::{ICMP, ICMPV6, Packet, TCP, UDP},
    rng::Rng,
    scenario::{AttackSpec, Vector},
};

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A remote address for `key`, of the family of `like`: outside 0/8, 10/8,
/// 127/8 and multicast for IPv4; in 2000::/3 for IPv6.
pub fn remote_addr(key: u64, like: IpAddr) -> IpAddr {
    let x = splitmix(key);
    match like {
        IpAddr::V4(_) => {
            let mut first = 1 + ((x >> 56) % 223) as u8;
            if first == 10 || first == 127 {
                first += 1;
            }
            let b = (x as u32).to_be_bytes();
            IpAddr::V4(Ipv4Addr::new(first, b[1], b[2], b[3]))
        }
        IpAddr::V6(_) => {
            let y = splitmix(x);
            let hi = (0x2000u128 | u128::from((x >> 48) as u16 & 0x1fff)) << 112;
            let v = hi | (u128::from(x) << 64 >> 16) | u128::from(y);
            IpAddr::V6(Ipv6Addr::from(v))
        }
    }
}

/// Parses "addr/len" and returns the network address and prefix length.
pub(super) fn parse_prefix(p: &str) -> Result<(IpAddr, u32), Error> {
    let bad = || Error::Invalid(format!("hosts.prefix {p:?}: not an address/length"));
    let (a, l) = p.split_once('/').ok_or_else(bad)?;
    let addr: IpAddr = a.parse().map_err(|_| bad())?;
    let len: u32 = l.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(bad());
    }
    Ok((addr, len))
}

/// The host addresses of `prefix`: from the first after the network address.
pub(super) fn host_addrs(prefix: &str, count: u32) -> Result<Vec<IpAddr>, Error> {
    let (addr, len) = parse_prefix(prefix)?;
    let (base, bits) = match addr {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    };
    let size = if bits - len >= 127 {
        u128::MAX
    } else {
        1u128 << (bits - len)
    };
    if u128::from(count) + 2 > size {
        return Err(Error::Invalid(format!(
            "hosts.prefix {prefix} is too small for {count} hosts"
        )));
    }
    let mask = if len == 0 { 0 } else { !0u128 << (bits - len) }
        & if bits == 32 { 0xffff_ffff } else { !0 };
    let net = base & mask;
    Ok((0..u128::from(count))
        .map(|i| match addr {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from((net + 1 + i) as u32)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(net + 1 + i)),
        })
        .collect())
}

/// The normal traffic mix towards a host (inbound): downloads over TCP
/// (full segments and pure ACKs), some new connections, QUIC and DNS
/// answers, ICMP echo replies.
pub(super) fn normal_packet(rng: &mut Rng, src: IpAddr, dst: IpAddr) -> Packet {
    let v6 = dst.is_ipv6();
    let ephemeral = 32768 + rng.below(28232) as u16;
    let u = rng.f64();
    let (proto, src_port, dst_port, flags, ip_len) = if u < 0.80 {
        let v = rng.f64();
        let port = if rng.f64() < 0.8 { 443 } else { 80 };
        if v < 0.55 {
            (TCP, port, ephemeral, 0x10, 1500)
        } else if v < 0.80 {
            (TCP, port, ephemeral, 0x10, 52)
        } else if v < 0.97 {
            (TCP, port, ephemeral, 0x18, 100 + rng.below(1300) as u32)
        } else if v < 0.99 {
            // Incoming connections to the host's services.
            (TCP, ephemeral, port, 0x02, 60)
        } else {
            (TCP, port, ephemeral, 0x11, 52)
        }
    } else if u < 0.98 {
        let v = rng.f64();
        if v < 0.6 {
            (UDP, 443, ephemeral, 0, 1252 + rng.below(99) as u32)
        } else if v < 0.9 {
            (UDP, 53, ephemeral, 0, 80 + rng.below(433) as u32)
        } else {
            let port = 1024 + rng.below(64512) as u16;
            (UDP, port, ephemeral, 0, 100 + rng.below(1301) as u32)
        }
    } else if v6 {
        (ICMPV6, 0, 0, 129, 104)
    } else {
        (ICMP, 0, 0, 0, 84)
    };
    let ip_len = if v6 { ip_len + 20 } else { ip_len };
    Packet {
        src,
        dst,
        proto,
        src_port,
        dst_port,
        tcp_flags: flags,
        ip_len,
    }
}

/// A server's normal inbound traffic: clients' requests to its web ports,
/// 443 for 95 % of them (HTTPS), 80 for the rest.
pub(super) fn request_packet(rng: &mut Rng, src: IpAddr, dst: IpAddr) -> Packet {
    let port = if rng.f64() < 0.95 { 443 } else { 80 };
    crowd_packet(rng, src, dst, port)
}

/// A flash crowd client's packet to the server: handshakes, requests, ACKs.
pub(super) fn crowd_packet(rng: &mut Rng, src: IpAddr, dst: IpAddr, port: u16) -> Packet {
    let ephemeral = 32768 + rng.below(28232) as u16;
    let v = rng.f64();
    let (flags, len) = if v < 0.08 {
        (0x02, 60)
    } else if v < 0.58 {
        (0x10, 52)
    } else {
        (0x18, 300 + rng.below(601) as u32)
    };
    let extra = if dst.is_ipv6() { 20 } else { 0 };
    Packet {
        src,
        dst,
        proto: TCP,
        src_port: ephemeral,
        dst_port: port,
        tcp_flags: flags,
        ip_len: len + extra,
    }
}

pub(super) fn attack_packet(rng: &mut Rng, a: &AttackSpec, src: IpAddr) -> Packet {
    let random_port = |rng: &mut Rng| 1024 + rng.below(64512) as u16;
    let v6 = a.target.is_ipv6();
    let (proto, src_port, dst_port, flags) = match a.vector {
        Vector::UdpFlood => (
            UDP,
            random_port(rng),
            a.dst_port.unwrap_or_else(|| random_port(rng)),
            0,
        ),
        Vector::SynFlood => (TCP, random_port(rng), a.dst_port.unwrap_or(80), 0x02),
        Vector::AckFlood => (TCP, random_port(rng), a.dst_port.unwrap_or(443), 0x10),
        Vector::IcmpFlood if v6 => (ICMPV6, 0, 0, 128),
        Vector::IcmpFlood => (ICMP, 0, 0, 8),
        amp => (
            UDP,
            amp.reflector_port().unwrap_or(0),
            a.dst_port.unwrap_or_else(|| random_port(rng)),
            0,
        ),
    };
    Packet {
        src,
        dst: a.target,
        proto,
        src_port,
        dst_port,
        tcp_flags: flags,
        ip_len: a.packet_size(),
    }
}

/// The mean IP length of a packet generator, measured on a fixed stream
/// (for interface octet counters only).
pub(super) fn mean_len(mut f: impl FnMut(&mut Rng) -> Packet) -> f64 {
    let mut rng = Rng::new(0x5eed, 0);
    let n = 20_000;
    (0..n).map(|_| f64::from(f(&mut rng).ip_len)).sum::<f64>() / f64::from(n)
}
