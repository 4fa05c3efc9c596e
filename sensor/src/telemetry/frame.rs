//! Frame parsing as the XDP program does it (`sensor-ebpf/src/frame.rs`):
//! Ethernet with up to two VLAN tags, IPv4 (no fragments) or IPv6 (UDP as
//! the first next header), UDP to a telemetry port, the whole datagram
//! present.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use edge_sensor_common::{
    TelemetryKind,
    proto::{
        ethertype::{
            IPV4 as ETH_P_IPV4, IPV6 as ETH_P_IPV6, QINQ as ETH_P_8021AD, VLAN as ETH_P_8021Q,
        },
        ipproto::UDP as IPPROTO_UDP,
    },
};

/// A telemetry datagram.
#[derive(Debug, Clone, Copy)]
pub struct Datagram<'a> {
    pub src: IpAddr,
    /// The exporter's UDP source port.
    pub src_port: u16,
    /// Our UDP port it was sent to.
    pub port: u16,
    pub kind: TelemetryKind,
    pub payload: &'a [u8],
}

const MAX_VLAN_DEPTH: usize = 2;

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// The telemetry datagram `frame` carries, if any; `kind_of` maps a UDP
/// destination port to what it carries.
pub fn telemetry_datagram(
    frame: &[u8],
    kind_of: impl Fn(u16) -> Option<TelemetryKind>,
) -> Option<Datagram<'_>> {
    let mut off = 14;
    let mut ethertype = be16(frame, 12)?;
    for _ in 0..MAX_VLAN_DEPTH {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        ethertype = be16(frame, off + 2)?;
        off += 4;
    }
    let (src, udp_off) = match ethertype {
        ETH_P_IPV4 => {
            let ip = frame.get(off..off + 20)?;
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            if ip[0] >> 4 != 4 || ihl < 20 || ip[9] != IPPROTO_UDP {
                return None;
            }
            if u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
                return None;
            }
            let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
            (IpAddr::V4(src), off + ihl)
        }
        ETH_P_IPV6 => {
            let ip = frame.get(off..off + 40)?;
            if ip[0] >> 4 != 6 || ip[6] != IPPROTO_UDP {
                return None;
            }
            let src: [u8; 16] = ip[8..24].try_into().ok()?;
            (IpAddr::V6(Ipv6Addr::from(src)).to_canonical(), off + 40)
        }
        _ => return None,
    };
    let udp = frame.get(udp_off..udp_off + 8)?;
    let port = u16::from_be_bytes([udp[2], udp[3]]);
    let kind = kind_of(port)?;
    let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    if udp_len < 8 {
        return None;
    }
    let payload = frame.get(udp_off + 8..udp_off + udp_len)?;
    Some(Datagram {
        src,
        src_port: u16::from_be_bytes([udp[0], udp[1]]),
        port,
        kind,
        payload,
    })
}
