//! The samples the kernel streams for watched destinations
//! (`common::WatchSample`), decoded again in userspace for fingerprints.
//!
//! The kernel ships the bytes it counted a sample from (an sFlow flow record,
//! a v9/IPFIX data record, a NetFlow v5 record) with the packets and bytes it
//! counted; here the userspace decoders read what a Flow Spec match needs:
//! source, protocol, ports, TCP flags, fragment bits, packet length.

use std::net::IpAddr;

use edge_sensor_common::{WATCH_SNAP, WatchKind, WatchSample, proto::ipproto};

use super::{
    sampled::{self, Packet},
    template::{Session, TemplateCache, TemplateKey},
};
use crate::{addr, detect::Sample};

/// Why a streamed sample could not be decoded (counted, not fatal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    #[error("unknown sample kind {0}")]
    Kind(u8),
    #[error("sample shorter than its record")]
    Truncated,
    #[error("flow record of a template the daemon does not know")]
    NoTemplate,
    #[error("record without an IP packet")]
    NoPacket,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn addr16(b: &[u8], at: usize) -> Option<[u8; 16]> {
    b.get(at..at + 16)?.try_into().ok()
}

fn mapped4(b: &[u8], at: usize) -> Option<[u8; 16]> {
    let v4: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(addr::to_key(IpAddr::from(v4)))
}

/// Decodes one streamed sample; v9/IPFIX records need the daemon's
/// templates.
pub fn decode(s: &WatchSample, templates: &TemplateCache) -> Result<Sample, WatchError> {
    let snap = &s.snap[..(s.len as usize).min(WATCH_SNAP)];
    // Sampled packets behind it: one per sFlow flow sample, a record's
    // (unscaled) packet count for flow records.
    let (pkt, packet_len, sampled) = match WatchKind::from_u8(s.kind) {
        Some(WatchKind::SflowRecord) => {
            let (pkt, len) = sflow_record(snap)?;
            (pkt, len, 1)
        }
        Some(WatchKind::NetFlow5) => {
            let (pkt, len) = netflow5_record(snap)?;
            (
                pkt,
                len,
                u64::from(be32(snap, 16).ok_or(WatchError::Truncated)?),
            )
        }
        Some(WatchKind::Ipfix | WatchKind::NetFlow9) => {
            let key = TemplateKey {
                exporter: Session {
                    ip: addr::from_key(s.exporter),
                    port: s.src_port,
                },
                domain: s.domain,
                id: s.template,
            };
            if templates.template(&key).is_none() {
                return Err(WatchError::NoTemplate);
            }
            let f = templates.record(&key, snap).ok_or(WatchError::Truncated)?;
            let pkt = Packet {
                dst: addr::to_key(f.dst),
                src: f.src.map_or([0; 16], addr::to_key),
                proto: f.protocol,
                src_port: f.src_port,
                dst_port: f.dst_port,
                tcp_flags: f.tcp_flags as u8,
                icmp_type: f.icmp_type,
                fragment: f.fragment,
                ..Packet::default()
            };
            // Unscaled octets / packets: the flow's mean packet length.
            (
                pkt,
                f.octets.checked_div(f.packets).unwrap_or(0),
                f.packets
                    .checked_div(u64::from(f.rate))
                    .unwrap_or(f.packets),
            )
        }
        None => return Err(WatchError::Kind(s.kind)),
    };
    Ok(sample(
        addr::from_key(s.dst),
        &pkt,
        packet_len,
        s.packets,
        s.bytes,
        sampled,
    ))
}

/// The fingerprint's view of a counted packet or record for `dst`: what the
/// kernel's stream gives after [`decode`], and what the userspace collector
/// takes straight from its decoder. `packet_len` is the length as counted
/// (an sFlow sample's frame, a record's mean octets); where the sampled
/// header stated the IP length, that is the packet's length instead, since
/// the rule's packet-length match is on it. `sampled`: the sampled packets
/// behind it ([`Sample::sampled`]).
pub fn sample(
    dst: IpAddr,
    pkt: &Packet,
    packet_len: u64,
    packets: u64,
    bytes: u64,
    sampled: u64,
) -> Sample {
    let src = if pkt.src == [0; 16] {
        match dst {
            IpAddr::V4(_) => IpAddr::from([0u8; 4]),
            IpAddr::V6(_) => IpAddr::from([0u8; 16]),
        }
    } else {
        addr::from_key(pkt.src)
    };
    Sample {
        dst,
        src,
        protocol: pkt.proto,
        src_port: pkt.src_port,
        dst_port: pkt.dst_port,
        tcp_flags: pkt.tcp_flags,
        icmp_type: pkt.icmp_type,
        fragment: pkt.fragment,
        later_fragment: pkt.later_fragment,
        packet_len: match pkt.ip_len {
            0 => u16::try_from(packet_len).unwrap_or(u16::MAX),
            ip_len => ip_len,
        },
        packets,
        bytes,
        sampled,
    }
}

/// An sFlow flow record from its `data_format` (sFlow v5 §5.2).
fn sflow_record(r: &[u8]) -> Result<(Packet, u64), WatchError> {
    let format = be32(r, 0).ok_or(WatchError::Truncated)?;
    let len = be32(r, 4).ok_or(WatchError::Truncated)? as usize;
    let body = r.get(8..).ok_or(WatchError::Truncated)?;
    // A record longer than the snapshot still has its header in it.
    let body = &body[..len.min(body.len())];
    match format {
        // sampled_header: protocol, frame_length, stripped, header_length, header.
        1 => {
            let protocol = be32(body, 0).ok_or(WatchError::Truncated)?;
            let frame = u64::from(be32(body, 4).ok_or(WatchError::Truncated)?);
            let stripped = u64::from(be32(body, 8).ok_or(WatchError::Truncated)?);
            let header_len = be32(body, 12).ok_or(WatchError::Truncated)? as usize;
            let header = body.get(16..).ok_or(WatchError::Truncated)?;
            let header = &header[..header_len.min(header.len())];
            let pkt = sampled::parse(protocol, header).ok_or(WatchError::NoPacket)?;
            // As counted: a `stripped` above the limit is not believed.
            let len = if stripped <= u64::from(edge_sensor_common::MAX_STRIPPED) && stripped < frame
            {
                frame - stripped
            } else {
                frame
            };
            Ok((pkt, len))
        }
        // sampled_ipv4: length, protocol, src, dst, src_port, dst_port, tcp_flags, tos.
        3 => {
            let length = be32(body, 0).ok_or(WatchError::Truncated)?;
            let proto = be32(body, 4).ok_or(WatchError::Truncated)?;
            let flags = be32(body, 24).ok_or(WatchError::Truncated)?;
            let mut pkt = sampled::from_ip_record(
                mapped4(body, 12).ok_or(WatchError::Truncated)?,
                proto,
                flags,
            );
            pkt.src = mapped4(body, 8).ok_or(WatchError::Truncated)?;
            pkt.src_port = be32(body, 16).ok_or(WatchError::Truncated)? as u16;
            pkt.dst_port = be32(body, 20).ok_or(WatchError::Truncated)? as u16;
            Ok((pkt, u64::from(length)))
        }
        // sampled_ipv6: length, protocol, src, dst, src_port, dst_port, tcp_flags, priority.
        4 => {
            let length = be32(body, 0).ok_or(WatchError::Truncated)?;
            let proto = be32(body, 4).ok_or(WatchError::Truncated)?;
            let flags = be32(body, 48).ok_or(WatchError::Truncated)?;
            let mut pkt = sampled::from_ip_record(
                addr16(body, 24).ok_or(WatchError::Truncated)?,
                proto,
                flags,
            );
            pkt.src = addr16(body, 8).ok_or(WatchError::Truncated)?;
            pkt.src_port = be32(body, 40).ok_or(WatchError::Truncated)? as u16;
            pkt.dst_port = be32(body, 44).ok_or(WatchError::Truncated)? as u16;
            Ok((pkt, u64::from(length)))
        }
        _ => Err(WatchError::NoPacket),
    }
}

/// A NetFlow v5 record: srcaddr 0, dstaddr 4, dPkts 16, dOctets 20,
/// srcport 32, dstport 34, tcp_flags 37, prot 38.
fn netflow5_record(r: &[u8]) -> Result<(Packet, u64), WatchError> {
    let t = WatchError::Truncated;
    let proto = *r.get(38).ok_or(t)?;
    let flags = *r.get(37).ok_or(t)?;
    let mut pkt =
        sampled::from_ip_record(mapped4(r, 4).ok_or(t)?, u32::from(proto), u32::from(flags));
    pkt.src = mapped4(r, 0).ok_or(t)?;
    if matches!(proto, ipproto::TCP | ipproto::UDP) {
        pkt.src_port = be16(r, 32).ok_or(t)?;
        pkt.dst_port = be16(r, 34).ok_or(t)?;
    }
    pkt.icmp_type = sampled::icmp_type_from_port(proto, be16(r, 34).ok_or(t)?);
    let packets = u64::from(be32(r, 16).ok_or(t)?);
    let octets = u64::from(be32(r, 20).ok_or(t)?);
    Ok((pkt, octets.checked_div(packets).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(kind: WatchKind, dst: IpAddr, snap: &[u8]) -> WatchSample {
        let mut s: WatchSample = bytemuck::Zeroable::zeroed();
        s.kind = kind as u8;
        s.dst = addr::to_key(dst);
        s.packets = 1000;
        s.bytes = 60_000;
        s.len = snap.len() as u32;
        s.snap[..snap.len()].copy_from_slice(snap);
        s
    }

    #[test]
    fn sflow_raw_header_gives_ports_flags_and_length() {
        // Ethernet + IPv4 (TCP SYN 198.51.100.9:40000 -> 203.0.113.5:443).
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x08, 0x00]);
        let mut ip = vec![0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0];
        ip.extend_from_slice(&[198, 51, 100, 9, 203, 0, 113, 5]);
        frame.extend_from_slice(&ip);
        let mut tcp = vec![0u8; 20];
        tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&443u16.to_be_bytes());
        tcp[13] = 0x02;
        frame.extend_from_slice(&tcp);
        let mut rec = Vec::new();
        rec.extend_from_slice(&1u32.to_be_bytes());
        rec.extend_from_slice(&((16 + frame.len()) as u32).to_be_bytes());
        rec.extend_from_slice(&1u32.to_be_bytes()); // Ethernet
        rec.extend_from_slice(&64u32.to_be_bytes()); // frame length
        rec.extend_from_slice(&4u32.to_be_bytes()); // stripped (FCS)
        rec.extend_from_slice(&(frame.len() as u32).to_be_bytes());
        rec.extend_from_slice(&frame);
        let dst: IpAddr = "203.0.113.5".parse().unwrap();
        let p = decode(
            &sample(WatchKind::SflowRecord, dst, &rec),
            &TemplateCache::new(),
        )
        .unwrap();
        assert_eq!(p.src, "198.51.100.9".parse::<IpAddr>().unwrap());
        assert_eq!((p.protocol, p.src_port, p.dst_port), (6, 40000, 443));
        assert_eq!(p.tcp_flags, 0x02);
        // The IP length the header states (40), not the 60-byte frame
        // (64 less the FCS): a rule's packet-length match is on IP length.
        assert_eq!(p.packet_len, 40);
        assert_eq!((p.packets, p.bytes), (1000, 60_000));
        assert_eq!(p.sampled, 1, "one flow sample, one sampled packet");
        assert!(!p.fragment);
    }

    #[test]
    fn sflow_raw_header_and_netflow5_give_the_icmp_type() {
        // Ethernet + IPv4 + ICMP echo request (type 8, code 0).
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x08, 0x00]);
        let mut ip = vec![0x45, 0, 0, 84, 0, 0, 0, 0, 64, 1, 0, 0];
        ip.extend_from_slice(&[198, 51, 100, 9, 203, 0, 113, 5]);
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&[8, 0, 0, 0, 0, 1, 0, 1]);
        let mut rec = Vec::new();
        rec.extend_from_slice(&1u32.to_be_bytes());
        rec.extend_from_slice(&((16 + frame.len()) as u32).to_be_bytes());
        rec.extend_from_slice(&1u32.to_be_bytes());
        rec.extend_from_slice(&102u32.to_be_bytes());
        rec.extend_from_slice(&4u32.to_be_bytes());
        rec.extend_from_slice(&(frame.len() as u32).to_be_bytes());
        rec.extend_from_slice(&frame);
        let dst: IpAddr = "203.0.113.5".parse().unwrap();
        let cache = TemplateCache::new();
        let p = decode(&sample(WatchKind::SflowRecord, dst, &rec), &cache).unwrap();
        assert_eq!((p.protocol, p.icmp_type, p.packet_len), (1, Some(8), 84));
        assert_eq!((p.src_port, p.dst_port), (0, 0));

        // NetFlow v5: `type << 8 | code` in the destination port.
        let mut r = [0u8; 48];
        r[4..8].copy_from_slice(&[203, 0, 113, 5]);
        r[16..20].copy_from_slice(&10u32.to_be_bytes());
        r[20..24].copy_from_slice(&840u32.to_be_bytes());
        r[34..36].copy_from_slice(&0x0b00u16.to_be_bytes()); // time exceeded
        r[38] = 1;
        let p = decode(&sample(WatchKind::NetFlow5, dst, &r), &cache).unwrap();
        assert_eq!(p.icmp_type, Some(11));
        r[38] = 17;
        let p = decode(&sample(WatchKind::NetFlow5, dst, &r), &cache).unwrap();
        assert_eq!(p.icmp_type, None);
    }

    #[test]
    fn netflow5_record_and_bad_samples() {
        let mut r = [0u8; 48];
        r[0..4].copy_from_slice(&[192, 0, 2, 1]);
        r[4..8].copy_from_slice(&[203, 0, 113, 7]);
        r[16..20].copy_from_slice(&10u32.to_be_bytes());
        r[20..24].copy_from_slice(&4680u32.to_be_bytes());
        r[32..34].copy_from_slice(&123u16.to_be_bytes());
        r[34..36].copy_from_slice(&5555u16.to_be_bytes());
        r[38] = 17;
        let dst: IpAddr = "203.0.113.7".parse().unwrap();
        let cache = TemplateCache::new();
        let p = decode(&sample(WatchKind::NetFlow5, dst, &r), &cache).unwrap();
        assert_eq!(
            (p.protocol, p.src_port, p.dst_port, p.packet_len),
            (17, 123, 5555, 468)
        );
        // The record's own packet count: the samples behind it.
        assert_eq!(p.sampled, 10);
        assert_eq!(
            decode(&sample(WatchKind::NetFlow5, dst, &r[..30]), &cache),
            Err(WatchError::Truncated)
        );
        let mut bad = sample(WatchKind::NetFlow5, dst, &r);
        bad.kind = 99;
        assert_eq!(decode(&bad, &cache), Err(WatchError::Kind(99)));
        assert_eq!(
            decode(&sample(WatchKind::Ipfix, dst, &r), &cache),
            Err(WatchError::NoTemplate)
        );
        // A lying length never reads past the snapshot.
        let mut lying = sample(
            WatchKind::SflowRecord,
            dst,
            &[0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff],
        );
        lying.len = 4000;
        assert!(decode(&lying, &cache).is_err());
    }
}
