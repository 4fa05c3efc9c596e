//! Data records to [`Flow`]s: the fields the detector needs, read from the
//! record or, where it carries a packet section (RFC 7133), from the
//! embedded packet, scaled by the sampling rate in force.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use edge_sensor_common::{RateSource, proto::sflow_header};

use super::{Field, Flow, Session, TemplateCache, cache::rate_of, ie, unsigned};
use crate::telemetry::sampled;

/// IPFIX fragmentFlags (IE 197): IANA numbers its bits from the most
/// significant (bit 0 reserved 0x80, bit 1 DF 0x40, bit 2 MF 0x20), as in
/// the IPv4 flags field.
const MORE_FRAGMENTS: u64 = 0x20;

impl TemplateCache {
    pub(super) fn flow(
        &self,
        exporter: Session,
        domain: u32,
        values: &[(Field, &[u8])],
    ) -> Option<Flow> {
        let field = |ie: u16| {
            values
                .iter()
                .find(|(f, _)| f.enterprise == 0 && f.ie == ie)
                .map(|(_, v)| *v)
        };
        let get = |ie: u16| field(ie).and_then(unsigned);
        // A packet section (RFC 7133 / PSAMP, RFC 5477): the sampled packet
        // itself, parsed like an sFlow raw header; every record is one
        // sampled packet unless it says otherwise. Fields win over it.
        let section = embedded_packet(&field, &get);
        let from_section = |f: fn(&sampled::Packet) -> u64| section.as_ref().map(f);
        // Dual-stack templates (Cisco's 313) carry both; the unused one is
        // all zeros. IPv4 wins unless it is 0.0.0.0 and IPv6 is set.
        let v4 = field(ie::DESTINATION_IPV4_ADDRESS)
            .and_then(|v| <[u8; 4]>::try_from(v).ok())
            .map(Ipv4Addr::from);
        let v6 = field(ie::DESTINATION_IPV6_ADDRESS)
            .and_then(|v| <[u8; 16]>::try_from(v).ok())
            .map(Ipv6Addr::from);
        let dst = match (v4, v6) {
            (Some(v4), Some(v6)) if v4.is_unspecified() && !v6.is_unspecified() => IpAddr::V6(v6),
            (Some(v4), _) => IpAddr::V4(v4),
            (None, Some(v6)) => IpAddr::V6(v6),
            (None, None) => crate::addr::from_key(section.as_ref()?.dst),
        };
        let src4 = field(ie::SOURCE_IPV4_ADDRESS)
            .and_then(|v| <[u8; 4]>::try_from(v).ok())
            .map(Ipv4Addr::from);
        let src6 = field(ie::SOURCE_IPV6_ADDRESS)
            .and_then(|v| <[u8; 16]>::try_from(v).ok())
            .map(Ipv6Addr::from);
        let src = match (dst, src4, src6) {
            (IpAddr::V4(_), Some(s), _) => Some(IpAddr::V4(s)),
            (IpAddr::V6(_), _, Some(s)) => Some(IpAddr::V6(s)),
            _ => section.as_ref().map(|p| crate::addr::from_key(p.src)),
        };
        let packets = match get(ie::PACKET_DELTA_COUNT) {
            Some(p) => p,
            None if section.is_some() => 1,
            None => return None,
        };
        let octets = get(ie::OCTET_DELTA_COUNT)
            .or_else(|| section.as_ref().and_then(|_| section_octets(&field, &get)))
            .unwrap_or(0);
        // A configured override; else the record's own rate, then its
        // sampler's, then the domain's; else a configured default, else 1.
        let sampling = self.sampling.get(&(exporter, domain));
        let stated = rate_of(&get)
            .map(|r| (r, RateSource::Record))
            .or_else(|| {
                let id = get(ie::SAMPLER_ID).or_else(|| get(ie::SELECTOR_ID))?;
                let r = sampling?.by_sampler.get(&id).copied()?;
                Some((r, RateSource::Options))
            })
            .or_else(|| Some((sampling?.default?, RateSource::Options)));
        let (rate, rate_source) = self.rules.apply(exporter.ip, stated);
        let fragment = get(ie::FRAGMENT_OFFSET).is_some_and(|o| o != 0)
            || get(ie::FRAGMENT_FLAGS).is_some_and(|f| f & MORE_FRAGMENTS != 0)
            || from_section(|p| u64::from(p.fragment)) == Some(1);
        let field_or_section = |ie: u16, f: fn(&sampled::Packet) -> u64| {
            get(ie).or_else(|| from_section(f)).unwrap_or(0)
        };
        let protocol = field_or_section(ie::PROTOCOL_IDENTIFIER, |p| u64::from(p.proto)) as u8;
        let dst_port =
            field_or_section(ie::DESTINATION_TRANSPORT_PORT, |p| u64::from(p.dst_port)) as u16;
        let icmp_type = match protocol {
            edge_sensor_common::proto::ipproto::ICMP
            | edge_sensor_common::proto::ipproto::ICMPV6 => get(ie::ICMP_TYPE_IPV4)
                .or_else(|| get(ie::ICMP_TYPE_IPV6))
                .map(|t| t as u8)
                .or_else(|| {
                    get(ie::ICMP_TYPE_CODE_IPV4)
                        .or_else(|| get(ie::ICMP_TYPE_CODE_IPV6))
                        .map(|tc| (tc >> 8) as u8)
                })
                .or_else(|| section.as_ref().and_then(|p| p.icmp_type))
                .or_else(|| sampled::icmp_type_from_port(protocol, dst_port)),
            _ => None,
        };
        Some(Flow {
            dst,
            packets: edge_sensor_common::count::scale(packets, rate),
            octets: edge_sensor_common::count::scale(octets, rate),
            protocol,
            tcp_flags: field_or_section(ie::TCP_CONTROL_BITS, |p| u64::from(p.tcp_flags)) as u16,
            fragment,
            rate,
            rate_source,
            src,
            src_port: field_or_section(ie::SOURCE_TRANSPORT_PORT, |p| u64::from(p.src_port)) as u16,
            dst_port,
            icmp_type,
        })
    }
}

/// The packet in a record's dataLinkFrameSection (315: from the Ethernet
/// header) or ipHeaderPacketSection (313: from the IP header), cut to
/// sectionExportedOctets (410) where a fixed-length field is zero-padded.
fn embedded_packet<'a>(
    field: &impl Fn(u16) -> Option<&'a [u8]>,
    get: &impl Fn(u16) -> Option<u64>,
) -> Option<sampled::Packet> {
    let (protocol, bytes) = if let Some(b) = field(ie::DATA_LINK_FRAME_SECTION) {
        (sflow_header::ETHERNET, b)
    } else {
        let b = field(ie::IP_HEADER_PACKET_SECTION)?;
        let protocol = match b.first()? >> 4 {
            4 => sflow_header::IPV4,
            6 => sflow_header::IPV6,
            _ => return None,
        };
        (protocol, b)
    };
    let len = get(ie::SECTION_EXPORTED_OCTETS).map_or(bytes.len(), |n| bytes.len().min(n as usize));
    sampled::parse(protocol, &bytes[..len])
}

/// The octets of a record describing one sampled packet: its frame or IP
/// length as exported (312, 224), else what the section holds.
fn section_octets<'a>(
    field: &impl Fn(u16) -> Option<&'a [u8]>,
    get: &impl Fn(u16) -> Option<u64>,
) -> Option<u64> {
    get(ie::DATA_LINK_FRAME_SIZE)
        .or_else(|| get(ie::IP_TOTAL_LENGTH))
        .or_else(|| get(ie::SECTION_EXPORTED_OCTETS))
        .or_else(|| {
            field(ie::DATA_LINK_FRAME_SECTION)
                .or_else(|| field(ie::IP_HEADER_PACKET_SECTION))
                .map(|b| b.len() as u64)
        })
}
