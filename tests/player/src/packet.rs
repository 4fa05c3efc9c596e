//! A generated packet and the bytes a router would sample of it: Ethernet,
//! IPv4 or IPv6, then TCP, UDP or ICMP headers consistent with the vector,
//! the payload as zeros.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;
pub const ICMPV6: u8 = 58;

/// The smallest Ethernet frame without its FCS: shorter ones are padded.
pub const MIN_FRAME: u32 = 60;

/// One packet on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Packet {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub src_port: u16,
    pub dst_port: u16,
    /// TCP flags; for ICMP the type.
    pub tcp_flags: u8,
    /// IP total length (header included).
    pub ip_len: u32,
}

impl Packet {
    /// The Ethernet frame's length without FCS (what sFlow's
    /// `frame_length - stripped` states).
    pub fn frame_len(&self) -> u32 {
        (14 + self.ip_len).max(MIN_FRAME)
    }

    fn ip_header_len(&self) -> u32 {
        if self.dst.is_ipv4() { 20 } else { 40 }
    }

    /// The transport header length this packet has room for.
    fn transport_len(&self) -> u32 {
        match self.proto {
            TCP => 20,
            UDP | ICMP | ICMPV6 => 8,
            _ => 0,
        }
    }

    /// The first `snap` bytes of the Ethernet frame (without FCS).
    pub fn frame_head(&self, snap: usize) -> Vec<u8> {
        let mut f = Vec::with_capacity(snap.min(self.frame_len() as usize));
        // Locally administered MACs: router port and next hop.
        f.extend_from_slice(&[0x02, 0x00, 0x5e, 0x00, 0x00, 0x02]);
        f.extend_from_slice(&[0x02, 0x00, 0x5e, 0x00, 0x00, 0x01]);
        let payload_len = self.ip_len - self.ip_header_len();
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                f.extend_from_slice(&0x0800u16.to_be_bytes());
                let start = f.len();
                f.extend_from_slice(&[0x45, 0]);
                f.extend_from_slice(&(self.ip_len as u16).to_be_bytes());
                f.extend_from_slice(&[0, 0, 0x40, 0]); // id 0, DF
                f.extend_from_slice(&[57, self.proto, 0, 0]);
                f.extend_from_slice(&s.octets());
                f.extend_from_slice(&d.octets());
                let sum = checksum(&f[start..start + 20]);
                f[start + 10..start + 12].copy_from_slice(&sum.to_be_bytes());
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                f.extend_from_slice(&0x86ddu16.to_be_bytes());
                f.extend_from_slice(&[0x60, 0, 0, 0]);
                f.extend_from_slice(&(payload_len as u16).to_be_bytes());
                f.extend_from_slice(&[self.proto, 57]);
                f.extend_from_slice(&s.octets());
                f.extend_from_slice(&d.octets());
            }
            // The model never mixes families (checked where packets are made).
            _ => unreachable!("source and destination of one family"),
        }
        match self.proto {
            TCP => {
                f.extend_from_slice(&self.src_port.to_be_bytes());
                f.extend_from_slice(&self.dst_port.to_be_bytes());
                f.extend_from_slice(&0x1000_0000u32.to_be_bytes()); // seq
                let ack = if self.tcp_flags & 0x10 != 0 {
                    0x2000_0000u32
                } else {
                    0
                };
                f.extend_from_slice(&ack.to_be_bytes());
                f.extend_from_slice(&[0x50, self.tcp_flags]);
                f.extend_from_slice(&64240u16.to_be_bytes());
                f.extend_from_slice(&[0, 0, 0, 0]); // checksum (payload unsampled), urgent
            }
            UDP => {
                f.extend_from_slice(&self.src_port.to_be_bytes());
                f.extend_from_slice(&self.dst_port.to_be_bytes());
                f.extend_from_slice(&(payload_len as u16).to_be_bytes());
                f.extend_from_slice(&[0, 0]);
            }
            ICMP | ICMPV6 => {
                f.extend_from_slice(&[self.tcp_flags, 0, 0, 0, 0, 1, 0, 1]);
            }
            _ => {}
        }
        let full = self.frame_len() as usize;
        let want = snap.min(full);
        f.truncate(want);
        f.resize(want, 0);
        f
    }

    /// Whether the packet is big enough for its headers.
    pub fn fits(&self) -> bool {
        self.ip_len >= self.ip_header_len() + self.transport_len()
    }
}

/// The Internet checksum (RFC 1071).
pub fn checksum(bytes: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in bytes.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_syn_is_padded_to_the_minimum_frame_and_its_ip_checksum_verifies() {
        let p = Packet {
            src: "203.0.113.1".parse().unwrap(),
            dst: "198.51.100.7".parse().unwrap(),
            proto: TCP,
            src_port: 40000,
            dst_port: 80,
            tcp_flags: 0x02,
            ip_len: 40,
        };
        assert_eq!(p.frame_len(), 60);
        let h = p.frame_head(128);
        assert_eq!(h.len(), 60);
        assert_eq!(checksum(&h[14..34]), 0);
        assert_eq!(h[14 + 20 + 13], 0x02);
    }

    #[test]
    fn an_ipv6_udp_header_states_its_payload_length() {
        let p = Packet {
            src: "2001:db8::1".parse().unwrap(),
            dst: "2001:db8:1::9".parse().unwrap(),
            proto: UDP,
            src_port: 123,
            dst_port: 4444,
            tcp_flags: 0,
            ip_len: 468,
        };
        let h = p.frame_head(128);
        assert_eq!(h.len(), 128);
        assert_eq!(u16::from_be_bytes([h[18], h[19]]), 428);
        assert_eq!(u16::from_be_bytes([h[58], h[59]]), 428);
    }
}
