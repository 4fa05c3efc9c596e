//! NetFlow v9 (RFC 3954) and IPFIX (RFC 7011): template-described flow
//! records, decoded in userspace; the kernel's twin (`sensor-ebpf/src/template.rs`)
//! decodes data sets with the plans compiled here.
//!
//! Both formats announce the layout of their data records in (options)
//! templates, scoped to (exporter, observation domain / source id, template
//! id), and then send records as raw bytes. This module keeps the templates,
//! learns sampling rates from options data, and turns data records into
//! [`Flow`]s already scaled by their sampling rate.
//!
//! It is the reference the kernel's template plans are tested against and
//! the path for data sets the kernel has no plan for.
//!
//! One file per concern:
//! - `record.rs`: template and options template records, and the split of
//!   a data record into its fields;
//! - `cache.rs`: the templates and sampling state of every exporter, fed
//!   message by message;
//! - `flow.rs`: data records to [`Flow`]s;
//! - `limits.rs`: bounds on the store (per exporter and in total), oldest
//!   evicted first;
//! - `persist.rs`: the saved form the daemon keeps across restarts;
//! - `plan.rs`: plans compiled for the kernel.

mod cache;
mod flow;
mod limits;
mod persist;
mod plan;
mod record;

pub use limits::{TemplateLimits, template_cost};
pub use persist::{SavedSampling, SavedTemplate, SavedTemplates};

use std::{collections::HashMap, net::IpAddr, time::SystemTime};

use serde::{Deserialize, Serialize};

use edge_sensor_common::RateSource;

use super::sampling::SamplingRules;

/// Information elements this decoder reads (IANA "IPFIX Information
/// Elements"; NetFlow v9 field types 1-127 share the numbers).
pub mod ie {
    pub const OCTET_DELTA_COUNT: u16 = 1;
    pub const PACKET_DELTA_COUNT: u16 = 2;
    pub const PROTOCOL_IDENTIFIER: u16 = 4;
    pub const TCP_CONTROL_BITS: u16 = 6;
    pub const SOURCE_TRANSPORT_PORT: u16 = 7;
    pub const SOURCE_IPV4_ADDRESS: u16 = 8;
    pub const DESTINATION_TRANSPORT_PORT: u16 = 11;
    pub const ICMP_TYPE_CODE_IPV4: u16 = 32;
    pub const ICMP_TYPE_CODE_IPV6: u16 = 139;
    pub const ICMP_TYPE_IPV4: u16 = 176;
    pub const ICMP_TYPE_IPV6: u16 = 178;
    pub const SOURCE_IPV6_ADDRESS: u16 = 27;
    pub const DESTINATION_IPV4_ADDRESS: u16 = 12;
    pub const DESTINATION_IPV6_ADDRESS: u16 = 28;
    pub const SAMPLING_INTERVAL: u16 = 34;
    pub const SAMPLER_ID: u16 = 48;
    pub const SAMPLER_RANDOM_INTERVAL: u16 = 50;
    pub const FRAGMENT_OFFSET: u16 = 88;
    pub const FRAGMENT_FLAGS: u16 = 197;
    pub const SELECTOR_ID: u16 = 302;
    pub const SAMPLING_PACKET_INTERVAL: u16 = 305;
    pub const SAMPLING_PACKET_SPACE: u16 = 306;
    pub const SAMPLING_SIZE: u16 = 309;
    pub const SAMPLING_POPULATION: u16 = 310;
    pub const IP_TOTAL_LENGTH: u16 = 224;
    pub const DATA_LINK_FRAME_SIZE: u16 = 312;
    pub const IP_HEADER_PACKET_SECTION: u16 = 313;
    pub const DATA_LINK_FRAME_SECTION: u16 = 315;
    pub const SECTION_EXPORTED_OCTETS: u16 = 410;
}

/// RFC 7011 §7: a field length of 65535 means "variable length".
const VARIABLE_LENGTH: u16 = 65535;

/// Why (part of) a v9/IPFIX message was not used. Counted per exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum FlowError {
    #[error("message shorter than its header")]
    TruncatedHeader,
    #[error("IPFIX message length disagrees with the datagram")]
    BadMessageLength,
    #[error("set length past the message or below its header")]
    BadSetLength,
    #[error("template id below 256")]
    BadTemplateId,
    #[error("template with no fields, or its fields run past the set")]
    BadTemplate,
    #[error("options template with no scope field (IPFIX) or scope past the set")]
    BadOptionsTemplate,
    #[error("data set for a template not (yet) known")]
    NoTemplate,
    #[error("variable-length field runs past the set")]
    BadVariableLength,
    #[error("data record without a destination address or packet count")]
    NoDestination,
}

/// Which message format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// NetFlow v9 (RFC 3954): 20-byte header, template set 0, options set 1.
    V9,
    /// IPFIX (RFC 7011): 16-byte header, template set 2, options set 3.
    Ipfix,
}

/// A field specifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    pub ie: u16,
    /// Private Enterprise Number; 0 for IANA elements.
    pub enterprise: u32,
    /// Length in the record; [`VARIABLE_LENGTH`] when it varies.
    pub len: u16,
}

/// A (data or options) template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    pub fields: Vec<Field>,
    /// An options template: its records describe the exporter, not flows.
    pub options: bool,
    /// How many of `fields`, from the first, are scope fields.
    pub scope_fields: usize,
}

impl Template {
    pub fn is_options(&self) -> bool {
        self.options
    }

    /// The record length, or `None` if a field is variable-length.
    pub fn fixed_len(&self) -> Option<usize> {
        self.fields.iter().try_fold(0usize, |n, f| {
            (f.len != VARIABLE_LENGTH).then_some(n + usize::from(f.len))
        })
    }
}

/// Where a message came from: a template's scope is the transport session
/// (RFC 7011 §8; for UDP, the exporter's address and source port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Session {
    pub ip: IpAddr,
    pub port: u16,
}

/// A template's scope: session, observation domain (or v9 source id), id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TemplateKey {
    pub exporter: Session,
    pub domain: u32,
    pub id: u16,
}

/// Sampling learned for one (exporter, domain).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sampling {
    /// Rate for records that name no sampler.
    pub default: Option<u32>,
    /// Rates by sampler or selector id.
    pub by_sampler: HashMap<u64, u32>,
}

/// One flow record, counters already scaled by its sampling rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub dst: IpAddr,
    pub packets: u64,
    pub octets: u64,
    pub protocol: u8,
    pub tcp_flags: u16,
    pub fragment: bool,
    /// The rate applied, and where it came from.
    pub rate: u32,
    pub rate_source: RateSource,
    /// What a fingerprint needs besides: source address and ports where
    /// the template has them (0 / `None` where not).
    pub src: Option<IpAddr>,
    pub src_port: u16,
    pub dst_port: u16,
    /// ICMP / ICMPv6 type, for those protocols: from icmpType* (176, 178),
    /// icmpTypeCode* (32, 139), the embedded packet, or the destination
    /// port as NetFlow exporters fill it ([`sampled::icmp_type_from_port`]).
    pub icmp_type: Option<u8>,
}

/// What one message held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub templates: u32,
    pub options_records: u32,
    pub flows: u32,
    /// Problems met, by kind (the message is still used as far as it can be).
    pub errors: Vec<FlowError>,
}

/// Templates and sampling state of every exporter.
#[derive(Debug, Clone, Default)]
pub struct TemplateCache {
    templates: HashMap<TemplateKey, Template>,
    sampling: HashMap<(Session, u32), Sampling>,
    /// When each template, and each scope's sampling, was last announced
    /// (RFC 7011 §8.4: templates over UDP live only as long as they are
    /// refreshed).
    seen: HashMap<TemplateKey, SystemTime>,
    sampling_seen: HashMap<(Session, u32), SystemTime>,
    /// Configured rates per exporter prefix.
    rules: SamplingRules,
    /// Moves whenever a template or a rate changes (not when an exporter
    /// resends the same ones), so the kernel's plans are rewritten only then.
    generation: u64,
    limits: TemplateLimits,
    /// What `templates` holds per exporter, in announcement order.
    usage: limits::Usage,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// An unsigned integer in reduced-size encoding (RFC 7011 §6.2): 1 to 8
/// big-endian bytes.
fn unsigned(bytes: &[u8]) -> Option<u64> {
    (1..=8)
        .contains(&bytes.len())
        .then(|| bytes.iter().fold(0u64, |v, &b| (v << 8) | u64::from(b)))
}

/// A record's fields with their bytes.
type Values<'a> = Vec<(Field, &'a [u8])>;

#[cfg(test)]
mod tests {
    use std::{net::Ipv4Addr, time::Duration};

    use super::*;

    const EXPORTER: Session = Session {
        ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        port: 50000,
    };

    /// An IPFIX message (domain 7) holding `sets` (id, body).
    fn ipfix(sets: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut m = vec![0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 7];
        for (id, body) in sets {
            m.extend(id.to_be_bytes());
            m.extend(((body.len() + 4) as u16).to_be_bytes());
            m.extend(body);
        }
        let len = (m.len() as u16).to_be_bytes();
        m[2..4].copy_from_slice(&len);
        m
    }

    fn v9(sets: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut m = vec![0, 9, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 3];
        for (id, body) in sets {
            m.extend(id.to_be_bytes());
            m.extend(((body.len() + 4) as u16).to_be_bytes());
            m.extend(body);
        }
        m
    }

    /// A template record: id, then (ie, len) pairs (PEN appended if ie has
    /// the enterprise bit).
    fn template(id: u16, fields: &[(u16, u16, Option<u32>)]) -> Vec<u8> {
        let mut t = id.to_be_bytes().to_vec();
        t.extend((fields.len() as u16).to_be_bytes());
        for &(ie, len, pen) in fields {
            t.extend(ie.to_be_bytes());
            t.extend(len.to_be_bytes());
            if let Some(pen) = pen {
                t.extend(pen.to_be_bytes());
            }
        }
        t
    }

    fn decode(cache: &mut TemplateCache, msg: &[u8]) -> (Summary, Vec<Flow>) {
        let mut flows = Vec::new();
        let summary = cache
            .message(EXPORTER, msg, |f| flows.push(f))
            .expect("message");
        (summary, flows)
    }

    /// An Ethernet + IPv4 + TCP frame (SYN, 198.51.100.9:40000 ->
    /// 203.0.113.5:443) of 54 bytes.
    fn syn_frame() -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend([0x08, 0x00]);
        f.extend([0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0]);
        f.extend([198, 51, 100, 9, 203, 0, 113, 5]);
        let mut tcp = [0u8; 20];
        tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&443u16.to_be_bytes());
        tcp[13] = 0x02;
        f.extend(tcp);
        f
    }

    /// A cache that learnt template 256 (destination, packets) of domain 7.
    fn learnt_template_256() -> (TemplateCache, TemplateKey) {
        let t = template(
            256,
            &[
                (ie::DESTINATION_IPV4_ADDRESS, 4, None),
                (ie::PACKET_DELTA_COUNT, 4, None),
            ],
        );
        let mut cache = TemplateCache::new();
        decode(&mut cache, &ipfix(&[(2, t)]));
        let key = TemplateKey {
            exporter: EXPORTER,
            domain: 7,
            id: 256,
        };
        (cache, key)
    }

    #[test]
    fn templates_are_saved_restored_and_expire() {
        let (mut cache, key) = learnt_template_256();
        let saved = cache.saved();
        let json = serde_json::to_string(&saved).unwrap();
        let saved: SavedTemplates = serde_json::from_str(&json).unwrap();
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        let restored = TemplateCache::restored(saved.clone(), now, hour, TemplateLimits::DEFAULT);
        assert_eq!(restored.template(&key), cache.template(&key));
        assert!(
            restored.generation() > 0,
            "a restored cache is synced to the kernel"
        );
        // Restored two hours later, the one-hour-old template is gone.
        let later = now + 2 * hour;
        let expired = TemplateCache::restored(saved, later, hour, TemplateLimits::DEFAULT);
        assert_eq!(expired.template(&key), None);
        // And in a running cache, expiry moves the generation.
        let g = cache.generation();
        assert_eq!(cache.expire(now, hour), 0);
        assert_eq!(cache.generation(), g);
        assert_eq!(cache.expire(later, hour), 1);
        assert!(cache.generation() > g);
        assert_eq!(cache.template(&key), None);
        // A hostile file cannot smuggle in a reserved id or an empty template.
        let bad: SavedTemplates =
            serde_json::from_str(&json.replace("\"id\":256", "\"id\":3")).unwrap();
        assert_eq!(
            TemplateCache::restored(bad, now, hour, TemplateLimits::DEFAULT)
                .templates()
                .count(),
            0
        );
    }

    #[test]
    fn packet_sections_are_parsed_like_sflow_raw_headers() {
        // Juniper inline monitoring: ingress/egress interface, direction,
        // dataLinkFrameSize 312, dataLinkFrameSection 315 (variable length).
        let t = template(
            400,
            &[
                (10, 4, None),
                (14, 4, None),
                (61, 1, None),
                (ie::DATA_LINK_FRAME_SIZE, 2, None),
                (ie::DATA_LINK_FRAME_SECTION, 65535, None),
            ],
        );
        let frame = syn_frame();
        let mut rec = vec![0, 0, 0, 1, 0, 0, 0, 2, 0];
        rec.extend(1500u16.to_be_bytes());
        rec.push(frame.len() as u8);
        rec.extend(&frame);
        let mut cache = TemplateCache::new();
        let (summary, flows) = decode(&mut cache, &ipfix(&[(2, t), (400, rec.clone())]));
        assert!(summary.errors.is_empty(), "{:?}", summary.errors);
        assert_eq!(flows.len(), 1);
        let f = flows[0];
        assert_eq!(f.dst, "203.0.113.5".parse::<IpAddr>().unwrap());
        assert_eq!(f.src, Some("198.51.100.9".parse().unwrap()));
        assert_eq!(
            (f.packets, f.octets),
            (1, 1500),
            "one packet of its frame size"
        );
        assert_eq!(
            (f.protocol, f.tcp_flags, f.src_port, f.dst_port),
            (6, 2, 40000, 443)
        );
        let key = TemplateKey {
            exporter: EXPORTER,
            domain: 7,
            id: 400,
        };
        assert_eq!(
            cache.record(&key, &rec),
            Some(f),
            "one record alone decodes the same"
        );
        assert_eq!(
            cache.template(&key).unwrap().plan(),
            None,
            "left to userspace"
        );

        // softflowd -v psamp: a fixed-length, zero-padded section whose
        // real length is sectionExportedOctets (410); no frame size, so the
        // section's length is the packet's.
        let t = template(
            3072,
            &[
                (ie::SECTION_EXPORTED_OCTETS, 2, None),
                (ie::DATA_LINK_FRAME_SECTION, 128, None),
            ],
        );
        let mut rec = (frame.len() as u16).to_be_bytes().to_vec();
        rec.extend(&frame);
        rec.resize(2 + 128, 0);
        let (_, flows) = decode(&mut cache, &ipfix(&[(2, t), (3072, rec)]));
        assert_eq!(flows.len(), 1);
        assert_eq!((flows[0].packets, flows[0].octets), (1, frame.len() as u64));
        assert_eq!(flows[0].dst_port, 443);

        // ipHeaderPacketSection (313) from the IP header, IPv6 UDP; the
        // fields in the record win over the section.
        let mut ip6 = vec![0x60, 0, 0, 0, 0, 16, 17, 64];
        ip6.extend([0x20, 0x01, 0x0d, 0xb8, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        ip6.extend([0x20, 0x01, 0x0d, 0xb8, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        ip6.extend([0, 53, 0x1f, 0x90, 0, 16, 0, 0]);
        let t = template(
            500,
            &[
                (ie::PACKET_DELTA_COUNT, 4, None),
                (ie::IP_HEADER_PACKET_SECTION, 65535, None),
            ],
        );
        let mut rec = 3u32.to_be_bytes().to_vec();
        rec.push(ip6.len() as u8);
        rec.extend(&ip6);
        let (_, flows) = decode(&mut cache, &ipfix(&[(2, t), (500, rec)]));
        assert_eq!(flows.len(), 1);
        assert_eq!(flows[0].dst, "2001:db8:9::2".parse::<IpAddr>().unwrap());
        assert_eq!((flows[0].packets, flows[0].protocol), (3, 17));
        assert_eq!((flows[0].src_port, flows[0].dst_port), (53, 8080));

        // A section that holds no IP packet gives no flow, counted.
        let t = template(600, &[(ie::DATA_LINK_FRAME_SECTION, 65535, None)]);
        let (summary, flows) = decode(&mut cache, &ipfix(&[(2, t), (600, vec![4, 1, 2, 3, 4])]));
        assert!(flows.is_empty());
        assert_eq!(summary.errors, vec![FlowError::NoDestination]);
    }

    #[test]
    fn an_icmp_records_type_from_its_own_field_or_the_destination_port() {
        // One template with icmpTypeCodeIPv4 (32), one with only the
        // destination port (type << 8 | code, as NetFlow exporters fill it).
        let with_field = template(
            256,
            &[
                (ie::DESTINATION_IPV4_ADDRESS, 4, None),
                (ie::PACKET_DELTA_COUNT, 4, None),
                (ie::PROTOCOL_IDENTIFIER, 1, None),
                (ie::ICMP_TYPE_CODE_IPV4, 2, None),
            ],
        );
        let in_port = template(
            257,
            &[
                (ie::DESTINATION_IPV4_ADDRESS, 4, None),
                (ie::PACKET_DELTA_COUNT, 4, None),
                (ie::PROTOCOL_IDENTIFIER, 1, None),
                (ie::DESTINATION_TRANSPORT_PORT, 2, None),
            ],
        );
        let record = |proto: u8, field: u16| {
            let mut r = vec![203, 0, 113, 7];
            r.extend(3u32.to_be_bytes());
            r.push(proto);
            r.extend(field.to_be_bytes());
            r
        };
        let mut templates = with_field;
        templates.extend(in_port);
        let msg = ipfix(&[
            (2, templates),
            (256, record(1, 8 << 8)),
            (257, record(1, 3 << 8 | 3)),
            // UDP to port 2048: a port, not a type.
            (257, record(17, 8 << 8)),
        ]);
        let (summary, flows) = decode(&mut TemplateCache::new(), &msg);
        assert!(summary.errors.is_empty(), "{summary:?}");
        let types: Vec<Option<u8>> = flows.iter().map(|f| f.icmp_type).collect();
        assert_eq!(types, vec![Some(8), Some(3), None]);
    }

    #[test]
    fn ipfix_with_reduced_size_counters_varlen_and_enterprise_fields() {
        let t = template(
            256,
            &[
                (ie::DESTINATION_IPV4_ADDRESS, 4, None),
                (ie::PACKET_DELTA_COUNT, 4, None), // reduced size
                (ie::OCTET_DELTA_COUNT, 8, None),
                (ie::PROTOCOL_IDENTIFIER, 1, None),
                (ie::TCP_CONTROL_BITS, 2, None),
                (0x8000 | 12, 4, Some(29305)), // reverse destination (RFC 5103): not ours
                (315, VARIABLE_LENGTH, None),  // dataLinkFrameSection
            ],
        );
        let mut rec = vec![203, 0, 113, 7];
        rec.extend(10u32.to_be_bytes());
        rec.extend(1500u64.to_be_bytes());
        rec.push(6);
        rec.extend(0x0002u16.to_be_bytes());
        rec.extend([1, 2, 3, 4]);
        rec.push(3);
        rec.extend([9, 9, 9]);
        let long = {
            let mut r = rec.clone();
            r.truncate(r.len() - 4);
            r.extend([255, 0, 3, 8, 8, 8]); // 3-byte length form
            r
        };
        let mut data = rec.clone();
        data.extend(long);
        data.extend([0, 0]); // padding
        let mut cache = TemplateCache::new();
        let (summary, flows) = decode(&mut cache, &ipfix(&[(2, t), (256, data)]));
        assert_eq!((summary.templates, summary.flows), (1, 2), "{summary:?}");
        assert!(summary.errors.is_empty(), "{summary:?}");
        assert_eq!(flows[0].dst, IpAddr::from([203, 0, 113, 7]));
        assert_eq!(
            (
                flows[0].packets,
                flows[0].octets,
                flows[0].protocol,
                flows[0].tcp_flags,
                flows[0].rate
            ),
            (10, 1500, 6, 2, 1)
        );
        assert_eq!(flows[1].packets, 10);
    }

    #[test]
    fn sampling_from_options_by_sampler_and_for_the_domain() {
        let data_t = template(
            300,
            &[
                (ie::DESTINATION_IPV6_ADDRESS, 16, None),
                (ie::PACKET_DELTA_COUNT, 8, None),
                (ie::SAMPLER_ID, 1, None),
            ],
        );
        // Options template 400: scope exportingProcessId (144), then samplerId + samplerRandomInterval.
        let mut opt_t = 400u16.to_be_bytes().to_vec();
        opt_t.extend([0, 3, 0, 1]);
        for (ie, len) in [
            (144u16, 4u16),
            (ie::SAMPLER_ID, 1),
            (ie::SAMPLER_RANDOM_INTERVAL, 4),
        ] {
            opt_t.extend(ie.to_be_bytes());
            opt_t.extend(len.to_be_bytes());
        }
        let mut opt_d = vec![0, 0, 0, 1, 5];
        opt_d.extend(1000u32.to_be_bytes());
        // Domain-wide packet interval/space (softflowd style): 1 in (1 + 99).
        let mut opt2_t = 401u16.to_be_bytes().to_vec();
        opt2_t.extend([0, 3, 0, 1]);
        for (ie, len) in [
            (143u16, 4u16),
            (ie::SAMPLING_PACKET_INTERVAL, 4),
            (ie::SAMPLING_PACKET_SPACE, 4),
        ] {
            opt2_t.extend(ie.to_be_bytes());
            opt2_t.extend(len.to_be_bytes());
        }
        let mut opt2_d = vec![0, 0, 0, 1];
        opt2_d.extend(1u32.to_be_bytes());
        opt2_d.extend(99u32.to_be_bytes());
        let dst = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let record = |sampler: u8| {
            let mut r = dst.to_vec();
            r.extend(3u64.to_be_bytes());
            r.push(sampler);
            r
        };
        let mut cache = TemplateCache::new();
        let msg = ipfix(&[
            (2, data_t),
            (3, opt_t),
            (3, opt2_t),
            (400, opt_d),
            (401, opt2_d),
            (300, [record(5), record(6)].concat()),
        ]);
        let (summary, flows) = decode(&mut cache, &msg);
        assert!(summary.errors.is_empty(), "{summary:?}");
        assert_eq!(summary.options_records, 2);
        assert_eq!(
            flows
                .iter()
                .map(|f| (f.rate, f.packets))
                .collect::<Vec<_>>(),
            vec![(1000, 3000), (100, 300)]
        );
        let s = cache.sampling(EXPORTER, 7).unwrap();
        assert_eq!((s.default, s.by_sampler.get(&5)), (Some(100), Some(&1000)));
    }

    #[test]
    fn v9_with_system_options_and_juniper_zero_length_scope() {
        let data_t = template(
            256,
            &[
                (ie::DESTINATION_IPV4_ADDRESS, 4, None),
                (ie::PACKET_DELTA_COUNT, 4, None),
                (ie::OCTET_DELTA_COUNT, 4, None),
            ],
        );
        // Options template 257: scope System with length 0, then 34 (4), 35 (1).
        let mut opt_t = vec![1, 1, 0, 4, 0, 8, 0, 1, 0, 0];
        opt_t.extend([0, 34, 0, 4, 0, 35, 0, 1]);
        let mut opt_d = 2000u32.to_be_bytes().to_vec();
        opt_d.extend([2, 0, 0, 0]); // algorithm + padding
        let mut rec = vec![198, 51, 100, 1];
        rec.extend(2u32.to_be_bytes());
        rec.extend(100u32.to_be_bytes());
        let mut cache = TemplateCache::new();
        let (summary, flows) = decode(
            &mut cache,
            &v9(&[(0, data_t), (1, opt_t), (257, opt_d), (256, rec)]),
        );
        assert!(summary.errors.is_empty(), "{summary:?}");
        assert_eq!((flows[0].packets, flows[0].octets), (4000, 200_000));
        assert!(
            cache
                .template(&TemplateKey {
                    exporter: EXPORTER,
                    domain: 3,
                    id: 257
                })
                .unwrap()
                .is_options()
        );
    }

    #[test]
    fn resent_templates_and_rates_do_not_change_the_generation() {
        let t = template(
            256,
            &[
                (ie::DESTINATION_IPV4_ADDRESS, 4, None),
                (ie::PACKET_DELTA_COUNT, 4, None),
            ],
        );
        let mut cache = TemplateCache::new();
        decode(&mut cache, &ipfix(&[(2, t.clone())]));
        let g = cache.generation();
        assert!(g > 0);
        decode(&mut cache, &ipfix(&[(2, t)]));
        assert_eq!(cache.generation(), g, "the same template again");
        let other = template(
            256,
            &[
                (ie::DESTINATION_IPV4_ADDRESS, 4, None),
                (ie::PACKET_DELTA_COUNT, 8, None),
            ],
        );
        decode(&mut cache, &ipfix(&[(2, other)]));
        assert!(cache.generation() > g, "a changed template");
    }

    #[test]
    fn data_before_its_template_is_counted_not_guessed() {
        let mut cache = TemplateCache::new();
        let (summary, flows) = decode(&mut cache, &ipfix(&[(256, vec![0; 12])]));
        assert!(flows.is_empty());
        assert_eq!(summary.errors, vec![FlowError::NoTemplate]);
    }

    #[test]
    fn templates_are_withdrawn_and_scoped_per_domain() {
        let (mut cache, key) = learnt_template_256();
        assert!(cache.template(&key).is_some());
        assert!(cache.template(&TemplateKey { domain: 8, ..key }).is_none());
        decode(&mut cache, &ipfix(&[(2, vec![1, 0, 0, 0])])); // field count 0: withdrawal
        assert!(cache.template(&key).is_none());
    }

    #[test]
    fn malformed_templates_and_sets_are_refused_with_a_reason() {
        let cases: Vec<(&str, Vec<u8>, FlowError)> = vec![
            (
                "template id below 256",
                ipfix(&[(2, template(255, &[(8, 4, None)]))]),
                FlowError::BadTemplateId,
            ),
            (
                "field count past the set",
                ipfix(&[(2, vec![1, 0, 0, 9, 0, 8, 0, 4])]),
                FlowError::BadTemplate,
            ),
            (
                "field of length 0",
                ipfix(&[(2, template(256, &[(8, 0, None)]))]),
                FlowError::BadTemplate,
            ),
            (
                "v9 template with no fields",
                v9(&[(0, vec![1, 0, 0, 0])]),
                FlowError::BadTemplate,
            ),
            (
                "options template without scope",
                ipfix(&[(3, vec![1, 0, 0, 1, 0, 0, 0, 34, 0, 4])]),
                FlowError::BadOptionsTemplate,
            ),
            (
                "set length past the message",
                {
                    let mut m = ipfix(&[(2, template(256, &[(8, 4, None)]))]);
                    m[18] = 0x0f;
                    m
                },
                FlowError::BadSetLength,
            ),
        ];
        for (name, msg, expected) in cases {
            let mut cache = TemplateCache::new();
            let mut flows = 0;
            let summary = cache.message(EXPORTER, &msg, |_| flows += 1).expect(name);
            assert_eq!(summary.errors, vec![expected], "{name}");
            assert_eq!(flows, 0, "{name}");
        }
        // Huge variable length: runs past the set.
        let t = template(
            256,
            &[
                (ie::DESTINATION_IPV4_ADDRESS, 4, None),
                (ie::PACKET_DELTA_COUNT, 4, None),
                (315, VARIABLE_LENGTH, None),
            ],
        );
        let mut rec = vec![203, 0, 113, 1, 0, 0, 0, 1];
        rec.extend([255, 0xff, 0xf0, 1, 2, 3]);
        let mut cache = TemplateCache::new();
        let (summary, flows) = decode(&mut cache, &ipfix(&[(2, t), (256, rec)]));
        assert_eq!(summary.errors, vec![FlowError::BadVariableLength]);
        assert!(flows.is_empty());
        // A length field lying about the whole message.
        let mut m = ipfix(&[]);
        m[3] = 200;
        assert_eq!(
            TemplateCache::new().message(EXPORTER, &m, |_| {}),
            Err(FlowError::BadMessageLength)
        );
    }
}
