//! Remotely triggered blackholing (RFC 7999, RFC 5635): the communities a
//! blackhole route carries and the next hops it may use.
//!
//! A martian next hop is refused outright: FRR 8.4 answers an MP_REACH
//! with a loopback next hop by resetting the session, which would drop
//! every mitigation on it (docs/bgp.md §4.1).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::attribute::Community;

/// The communities on a blackhole route: BLACKHOLE (RFC 7999 §5), then
/// NO_EXPORT when asked (RFC 7999 §3.2 recommends it), then the operator's.
pub fn communities(no_export: bool, extra: &[Community]) -> Vec<Community> {
    let mut out = vec![Community::BLACKHOLE];
    if no_export {
        out.push(Community::NO_EXPORT);
    }
    for c in extra {
        if !out.contains(c) {
            out.push(*c);
        }
    }
    out
}

/// Whether `addr` can never be a usable next hop: unspecified, loopback,
/// multicast, broadcast, link-local, "this network" (0/8), reserved
/// (240/4), IPv4-mapped and unique-local-less oddities. Documentation and
/// discard ranges (192.0.2.0/24, 100::/64) are fine: routers map the
/// BLACKHOLE community to their own discard route anyway.
pub fn is_martian(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => is_martian_v4(a),
        IpAddr::V6(a) => is_martian_v6(a),
    }
}

fn is_martian_v4(a: Ipv4Addr) -> bool {
    let o = a.octets();
    a.is_unspecified()
        || a.is_loopback()
        || a.is_multicast()
        || a.is_broadcast()
        || a.is_link_local()
        || o[0] == 0
        || o[0] >= 240
}

fn is_martian_v6(a: Ipv6Addr) -> bool {
    let s = a.segments();
    a.is_unspecified()
        || a.is_loopback()
        || a.is_multicast()
        || (s[0] & 0xffc0) == 0xfe80
        || a.to_ipv4_mapped().is_some()
}
