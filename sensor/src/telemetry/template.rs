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

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, SystemTime},
};

use serde::{Deserialize, Serialize};

use edge_sensor_common::{FieldLoc, Plan, RateSource, proto::sflow_header};

use super::{sampled, sampling::SamplingRules};

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
/// IPFIX fragmentFlags (IE 197): IANA numbers its bits from the most
/// significant (bit 0 reserved 0x80, bit 1 DF 0x40, bit 2 MF 0x20), as in
/// the IPv4 flags field.
const MORE_FRAGMENTS: u64 = 0x20;

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

impl TemplateCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Changes whenever a template or a learnt rate changes.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn template(&self, key: &TemplateKey) -> Option<&Template> {
        self.templates.get(key)
    }

    pub fn templates(&self) -> impl Iterator<Item = (&TemplateKey, &Template)> {
        self.templates.iter()
    }

    pub fn sampling(&self, exporter: Session, domain: u32) -> Option<&Sampling> {
        self.sampling.get(&(exporter, domain))
    }

    /// Decodes one message from `exporter`; `on_flow` gets each data record.
    pub fn message(
        &mut self,
        exporter: Session,
        msg: &[u8],
        mut on_flow: impl FnMut(Flow),
    ) -> Result<Summary, FlowError> {
        let version = match be16(msg, 0) {
            Some(9) => Version::V9,
            Some(10) => Version::Ipfix,
            _ => return Err(FlowError::TruncatedHeader),
        };
        let (header_len, domain, end) = match version {
            Version::V9 => (
                20,
                be32(msg, 16).ok_or(FlowError::TruncatedHeader)?,
                msg.len(),
            ),
            Version::Ipfix => {
                let len = usize::from(be16(msg, 2).ok_or(FlowError::TruncatedHeader)?);
                let domain = be32(msg, 12).ok_or(FlowError::TruncatedHeader)?;
                if len < 16 || len > msg.len() {
                    return Err(FlowError::BadMessageLength);
                }
                (16, domain, len)
            }
        };
        let mut summary = Summary::default();
        let mut off = header_len;
        // Sets until the message ends; v9 may pad the datagram after them.
        while off + 4 <= end {
            let set_id = be16(msg, off).ok_or(FlowError::BadSetLength)?;
            let set_len = usize::from(be16(msg, off + 2).ok_or(FlowError::BadSetLength)?);
            if set_len < 4 || off + set_len > end {
                summary.errors.push(FlowError::BadSetLength);
                break;
            }
            let body = &msg[off + 4..off + set_len];
            match (version, set_id) {
                (Version::V9, 0) | (Version::Ipfix, 2) => {
                    self.templates_set(exporter, domain, version, body, false, &mut summary)
                }
                (Version::V9, 1) | (Version::Ipfix, 3) => {
                    self.templates_set(exporter, domain, version, body, true, &mut summary)
                }
                (_, id) if id >= 256 => {
                    let key = TemplateKey {
                        exporter,
                        domain,
                        id,
                    };
                    self.data_set(key, body, &mut summary, &mut on_flow)
                }
                _ => {} // reserved set ids: skipped by length
            }
            off += set_len;
        }
        Ok(summary)
    }

    fn templates_set(
        &mut self,
        exporter: Session,
        domain: u32,
        version: Version,
        body: &[u8],
        options: bool,
        summary: &mut Summary,
    ) {
        let mut p = 0;
        // Records until fewer bytes remain than a template header (padding).
        while p + 4 <= body.len() {
            let parsed = match (version, options) {
                (_, false) => self::data_template(body, p, version),
                (Version::V9, true) => v9_options_template(body, p),
                (Version::Ipfix, true) => ipfix_options_template(body, p),
            };
            match parsed {
                Ok((id, template, next)) => {
                    p = next;
                    if id < 256 {
                        summary.errors.push(FlowError::BadTemplateId);
                        continue;
                    }
                    let key = TemplateKey {
                        exporter,
                        domain,
                        id,
                    };
                    let changed = if template.fields.is_empty() {
                        // IPFIX template withdrawal (RFC 7011 §8.1).
                        self.seen.remove(&key);
                        self.templates.remove(&key).is_some()
                    } else {
                        self.seen.insert(key, SystemTime::now());
                        self.templates.insert(key, template.clone()).as_ref() != Some(&template)
                    };
                    if changed {
                        self.generation += 1;
                    }
                    summary.templates += 1;
                }
                Err(e) => {
                    summary.errors.push(e);
                    return;
                }
            }
        }
    }

    fn data_set(
        &mut self,
        key: TemplateKey,
        body: &[u8],
        summary: &mut Summary,
        on_flow: &mut impl FnMut(Flow),
    ) {
        let Some(template) = self.templates.get(&key).cloned() else {
            summary.errors.push(FlowError::NoTemplate);
            return;
        };
        let min_len: usize = template
            .fields
            .iter()
            .map(|f| {
                if f.len == VARIABLE_LENGTH {
                    1
                } else {
                    usize::from(f.len)
                }
            })
            .sum();
        let mut p = 0;
        // Records until what is left is shorter than a record (padding).
        while min_len > 0 && p + min_len <= body.len() {
            let (values, next) = match split_record(&template, body, p) {
                Ok(v) => v,
                Err(e) => {
                    summary.errors.push(e);
                    return;
                }
            };
            p = next;
            if template.is_options() {
                summary.options_records += 1;
                self.learn_sampling(key.exporter, key.domain, &values);
            } else {
                match self.flow(key.exporter, key.domain, &values) {
                    Some(flow) => {
                        summary.flows += 1;
                        on_flow(flow);
                    }
                    None => summary.errors.push(FlowError::NoDestination),
                }
            }
        }
    }

    /// Decodes one data record of the template `key` (the bytes the kernel
    /// streams for a watched destination); `None` if the template is unknown
    /// or an options template, or the record does not fit it.
    pub fn record(&self, key: &TemplateKey, record: &[u8]) -> Option<Flow> {
        let template = self.templates.get(key)?;
        if template.is_options() {
            return None;
        }
        let (values, _) = split_record(template, record, 0).ok()?;
        self.flow(key.exporter, key.domain, &values)
    }

    /// Options data: sampling intervals, per sampler/selector or for the domain.
    fn learn_sampling(&mut self, exporter: Session, domain: u32, values: &[(Field, &[u8])]) {
        let get = |ie: u16| {
            values
                .iter()
                .find(|(f, _)| f.enterprise == 0 && f.ie == ie)
                .and_then(|(_, v)| unsigned(v))
        };
        let Some(rate) = rate_of(&get) else {
            return;
        };
        self.sampling_seen
            .insert((exporter, domain), SystemTime::now());
        let state = self.sampling.entry((exporter, domain)).or_default();
        let before = match get(ie::SAMPLER_ID).or_else(|| get(ie::SELECTOR_ID)) {
            Some(id) => state.by_sampler.insert(id, rate),
            None => state.default.replace(rate),
        };
        if before != Some(rate) {
            self.generation += 1;
        }
    }

    /// Sets the configured sampling rules.
    pub fn set_sampling_rules(&mut self, rules: SamplingRules) {
        if rules != self.rules {
            self.rules = rules;
            self.generation += 1;
        }
    }

    /// Forgets templates and sampling not announced for `lifetime` before
    /// `now` (RFC 7011 §8.4, RFC 3954 §9: an exporter refreshes them; one
    /// that stopped, or restarted with other ids, leaves stale ones).
    /// Returns how many templates went.
    pub fn expire(&mut self, now: SystemTime, lifetime: Duration) -> usize {
        let stale = |t: &SystemTime| now.duration_since(*t).is_ok_and(|age| age > lifetime);
        let gone: Vec<TemplateKey> = self
            .seen
            .iter()
            .filter(|(_, t)| stale(t))
            .map(|(k, _)| *k)
            .collect();
        for key in &gone {
            self.seen.remove(key);
            self.templates.remove(key);
        }
        let gone_rates: Vec<(Session, u32)> = self
            .sampling_seen
            .iter()
            .filter(|(_, t)| stale(t))
            .map(|(k, _)| *k)
            .collect();
        for key in &gone_rates {
            self.sampling_seen.remove(key);
            self.sampling.remove(key);
        }
        if !gone.is_empty() || !gone_rates.is_empty() {
            self.generation += 1;
        }
        gone.len()
    }

    /// Everything learnt, with when it was last announced: what the daemon
    /// persists so a restart does not wait for the exporters' next refresh.
    pub fn saved(&self) -> SavedTemplates {
        let unix = |t: &SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        };
        SavedTemplates {
            templates: self
                .templates
                .iter()
                .map(|(key, template)| SavedTemplate {
                    key: *key,
                    template: template.clone(),
                    seen: self.seen.get(key).map_or(0, unix),
                })
                .collect(),
            sampling: self
                .sampling
                .iter()
                .map(|((session, domain), sampling)| SavedSampling {
                    session: *session,
                    domain: *domain,
                    default: sampling.default,
                    by_sampler: sampling.by_sampler.iter().map(|(k, v)| (*k, *v)).collect(),
                    seen: self.sampling_seen.get(&(*session, *domain)).map_or(0, unix),
                })
                .collect(),
        }
    }

    /// A cache holding what `saved` holds, but for what has expired by `now`.
    pub fn restored(saved: SavedTemplates, now: SystemTime, lifetime: Duration) -> Self {
        let at = |secs: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        let mut cache = Self::new();
        for t in saved.templates {
            if t.template.fields.is_empty() || t.key.id < 256 {
                continue;
            }
            cache.seen.insert(t.key, at(t.seen));
            cache.templates.insert(t.key, t.template);
        }
        for s in saved.sampling {
            let key = (s.session, s.domain);
            cache.sampling_seen.insert(key, at(s.seen));
            cache.sampling.insert(
                key,
                Sampling {
                    default: s.default.filter(|&r| r >= 1),
                    by_sampler: s.by_sampler.into_iter().filter(|&(_, r)| r >= 1).collect(),
                },
            );
        }
        cache.expire(now, lifetime);
        cache.generation += 1;
        cache
    }

    fn flow(&self, exporter: Session, domain: u32, values: &[(Field, &[u8])]) -> Option<Flow> {
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
        Some(Flow {
            dst,
            packets: edge_sensor_common::count::scale(packets, rate),
            octets: edge_sensor_common::count::scale(octets, rate),
            protocol: field_or_section(ie::PROTOCOL_IDENTIFIER, |p| u64::from(p.proto)) as u8,
            tcp_flags: field_or_section(ie::TCP_CONTROL_BITS, |p| u64::from(p.tcp_flags)) as u16,
            fragment,
            rate,
            rate_source,
            src,
            src_port: field_or_section(ie::SOURCE_TRANSPORT_PORT, |p| u64::from(p.src_port)) as u16,
            dst_port: field_or_section(ie::DESTINATION_TRANSPORT_PORT, |p| u64::from(p.dst_port))
                as u16,
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

/// What [`TemplateCache::saved`] gives: a stable, documented JSON form.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedTemplates {
    pub templates: Vec<SavedTemplate>,
    pub sampling: Vec<SavedSampling>,
}

/// A template and when it was last announced (Unix seconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedTemplate {
    pub key: TemplateKey,
    pub template: Template,
    pub seen: u64,
}

/// One scope's sampling rates and when they were last announced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedSampling {
    pub session: Session,
    pub domain: u32,
    pub default: Option<u32>,
    pub by_sampler: Vec<(u64, u32)>,
    pub seen: u64,
}

/// A record's fields with their bytes.
type Values<'a> = Vec<(Field, &'a [u8])>;

/// The fields of the record of `template` at `p` of `body`, and where the
/// next record starts.
fn split_record<'a>(
    template: &Template,
    body: &'a [u8],
    p: usize,
) -> Result<(Values<'a>, usize), FlowError> {
    let mut values: Vec<(Field, &[u8])> = Vec::with_capacity(template.fields.len());
    let mut q = p;
    for f in &template.fields {
        let len = if f.len == VARIABLE_LENGTH {
            // RFC 7011 §7: 1 byte, or 255 then 2 bytes.
            match body.get(q) {
                Some(255) => {
                    let l = be16(body, q + 1).ok_or(FlowError::BadVariableLength)?;
                    q += 3;
                    usize::from(l)
                }
                Some(&l) => {
                    q += 1;
                    usize::from(l)
                }
                None => return Err(FlowError::BadVariableLength),
            }
        } else {
            usize::from(f.len)
        };
        let v = body.get(q..q + len).ok_or(FlowError::BadVariableLength)?;
        values.push((*f, v));
        q += len;
    }
    Ok((values, q))
}

/// A sampling rate from whichever fields state one (telemetry.md §2.7):
/// samplingInterval (34); samplerRandomInterval (50); packet interval and
/// space (305, 306: one in (interval + space) / interval); size and
/// population (309, 310: one in population / size). `None` if none does.
fn rate_of(get: &impl Fn(u16) -> Option<u64>) -> Option<u32> {
    let clamp = |r: u64| u32::try_from(r).ok().filter(|&r| r >= 1);
    if let Some(r) = get(ie::SAMPLING_INTERVAL).and_then(clamp) {
        return Some(r);
    }
    if let Some(r) = get(ie::SAMPLER_RANDOM_INTERVAL).and_then(clamp) {
        return Some(r);
    }
    if let (Some(i), Some(s)) = (
        get(ie::SAMPLING_PACKET_INTERVAL),
        get(ie::SAMPLING_PACKET_SPACE),
    ) && i > 0
    {
        return clamp((i + s) / i);
    }
    if let (Some(size), Some(pop)) = (get(ie::SAMPLING_SIZE), get(ie::SAMPLING_POPULATION))
        && size > 0
    {
        return clamp(pop / size);
    }
    None
}

/// A data template at `p`: id, template, offset after it.
fn data_template(
    b: &[u8],
    p: usize,
    version: Version,
) -> Result<(u16, Template, usize), FlowError> {
    let id = be16(b, p).ok_or(FlowError::BadTemplate)?;
    let count = usize::from(be16(b, p + 2).ok_or(FlowError::BadTemplate)?);
    let (fields, next) = fields(b, p + 4, count, version == Version::Ipfix)?;
    if fields.is_empty() && version == Version::V9 {
        return Err(FlowError::BadTemplate);
    }
    Ok((
        id,
        Template {
            fields,
            options: false,
            scope_fields: 0,
        },
        next,
    ))
}

/// `count` field specifiers from `p`; IPFIX ones may carry a PEN. A field
/// of length 0 is refused, except in a v9 options scope (`zero_ok`), where
/// it takes no bytes and is dropped.
fn fields(b: &[u8], p: usize, count: usize, ipfix: bool) -> Result<(Vec<Field>, usize), FlowError> {
    fields_with(b, p, count, ipfix, false)
}

fn fields_with(
    b: &[u8],
    mut p: usize,
    count: usize,
    ipfix: bool,
    zero_ok: bool,
) -> Result<(Vec<Field>, usize), FlowError> {
    let mut fields = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let raw = be16(b, p).ok_or(FlowError::BadTemplate)?;
        let len = be16(b, p + 2).ok_or(FlowError::BadTemplate)?;
        p += 4;
        let (ie, enterprise) = if ipfix && raw & 0x8000 != 0 {
            let pen = be32(b, p).ok_or(FlowError::BadTemplate)?;
            p += 4;
            (raw & 0x7fff, pen)
        } else {
            (raw, 0)
        };
        if len == 0 {
            if zero_ok {
                continue;
            }
            return Err(FlowError::BadTemplate);
        }
        fields.push(Field {
            ie,
            enterprise,
            len,
        });
    }
    Ok((fields, p))
}

/// NetFlow v9 options template (RFC 3954 §6.1): id, scope length and
/// option length in bytes, then (type, length) pairs.
fn v9_options_template(b: &[u8], p: usize) -> Result<(u16, Template, usize), FlowError> {
    let id = be16(b, p).ok_or(FlowError::BadOptionsTemplate)?;
    let scope_len = usize::from(be16(b, p + 2).ok_or(FlowError::BadOptionsTemplate)?);
    let option_len = usize::from(be16(b, p + 4).ok_or(FlowError::BadOptionsTemplate)?);
    if scope_len % 4 != 0 || option_len % 4 != 0 {
        return Err(FlowError::BadOptionsTemplate);
    }
    let (scope, q) = fields_with(b, p + 6, scope_len / 4, false, true)
        .map_err(|_| FlowError::BadOptionsTemplate)?;
    let (opts, next) =
        fields(b, q, option_len / 4, false).map_err(|_| FlowError::BadOptionsTemplate)?;
    // Juniper sends a System scope of length 0 (telemetry.md §2.6); a field
    // of length 0 takes no bytes in the records, so it is simply absent.
    let scope_fields = scope.len();
    let mut all = scope;
    all.extend(opts);
    if all.is_empty() {
        return Err(FlowError::BadOptionsTemplate);
    }
    Ok((
        id,
        Template {
            fields: all,
            options: true,
            scope_fields,
        },
        next,
    ))
}

/// IPFIX options template (RFC 7011 §3.4.2.2): id, field count, scope
/// field count (at least 1), then the specifiers, scope first.
fn ipfix_options_template(b: &[u8], p: usize) -> Result<(u16, Template, usize), FlowError> {
    let id = be16(b, p).ok_or(FlowError::BadOptionsTemplate)?;
    let count = usize::from(be16(b, p + 2).ok_or(FlowError::BadOptionsTemplate)?);
    if count == 0 {
        // Withdrawal of an options template.
        let withdrawn = Template {
            fields: vec![],
            options: true,
            scope_fields: 0,
        };
        return Ok((id, withdrawn, p + 4));
    }
    let scope = usize::from(be16(b, p + 4).ok_or(FlowError::BadOptionsTemplate)?);
    if scope == 0 || scope > count {
        return Err(FlowError::BadOptionsTemplate);
    }
    let (fields, next) =
        fields(b, p + 6, count, true).map_err(|_| FlowError::BadOptionsTemplate)?;
    Ok((
        id,
        Template {
            fields,
            options: true,
            scope_fields: scope,
        },
        next,
    ))
}

// ------------ Plans for the kernel ------------------------------------------

impl Template {
    /// The kernel's decode plan for this template, if the kernel can decode
    /// its records exactly as [`TemplateCache`] does: a data template with
    /// fixed-length fields, an IPv4 (4-byte) or IPv6 (16-byte) destination
    /// and a 1-8 byte packet count, and no record-borne sampling beyond
    /// samplingInterval/samplerRandomInterval.
    pub fn plan(&self) -> Option<Plan> {
        if self.options {
            return None;
        }
        let record_len = u16::try_from(self.fixed_len()?).ok()?;
        // Each IE's first IANA field, as `TemplateCache::flow` finds it.
        let mut offsets = Vec::with_capacity(self.fields.len());
        let mut off = 0u16;
        for f in &self.fields {
            offsets.push(off);
            off += f.len;
        }
        let first = |id: u16| {
            self.fields
                .iter()
                .zip(&offsets)
                .find(|(f, _)| f.enterprise == 0 && f.ie == id)
                .map(|(f, &off)| (off, f.len))
        };
        // A counter is read as 1 to 8 bytes; any other length reads as absent.
        let counter = |id: u16| match first(id) {
            Some((off, len @ 1..=8)) => FieldLoc {
                off,
                len: len as u8,
                _pad: 0,
            },
            _ => FieldLoc::default(),
        };
        let exact = |id: u16, want: u16| match first(id) {
            Some((off, len)) if len == want => FieldLoc {
                off,
                len: len as u8,
                _pad: 0,
            },
            _ => FieldLoc::default(),
        };
        let both = |a: u16, b: u16| first(a).is_some() && first(b).is_some();
        // Packet sections (313/315) are parsed by the userspace decoder,
        // which reads the embedded packet for what the fields leave out.
        if both(ie::SAMPLING_PACKET_INTERVAL, ie::SAMPLING_PACKET_SPACE)
            || both(ie::SAMPLING_SIZE, ie::SAMPLING_POPULATION)
            || first(ie::IP_HEADER_PACKET_SECTION).is_some()
            || first(ie::DATA_LINK_FRAME_SECTION).is_some()
        {
            return None;
        }
        let plan = Plan {
            record_len,
            _pad: 0,
            dst_v4: exact(ie::DESTINATION_IPV4_ADDRESS, 4),
            dst_v6: exact(ie::DESTINATION_IPV6_ADDRESS, 16),
            packets: counter(ie::PACKET_DELTA_COUNT),
            octets: counter(ie::OCTET_DELTA_COUNT),
            protocol: counter(ie::PROTOCOL_IDENTIFIER),
            tcp_flags: counter(ie::TCP_CONTROL_BITS),
            fragment_offset: counter(ie::FRAGMENT_OFFSET),
            fragment_flags: counter(ie::FRAGMENT_FLAGS),
            sampler: match counter(ie::SAMPLER_ID) {
                loc if loc.len != 0 => loc,
                _ => counter(ie::SELECTOR_ID),
            },
            sampling_interval: counter(ie::SAMPLING_INTERVAL),
            sampler_random_interval: counter(ie::SAMPLER_RANDOM_INTERVAL),
        };
        let has_dst = plan.dst_v4.len != 0 || plan.dst_v6.len != 0;
        (record_len > 0 && has_dst && plan.packets.len != 0).then_some(plan)
    }
}

impl TemplateCache {
    /// Every template's plan (None where the kernel cannot decode it).
    pub fn plans(&self) -> impl Iterator<Item = (&TemplateKey, Option<Plan>)> {
        self.templates.iter().map(|(k, t)| (k, t.plan()))
    }

    /// Every learnt sampling rate: (session, domain, sampler or None, rate).
    pub fn rates(&self) -> impl Iterator<Item = (Session, u32, Option<u64>, u32)> + '_ {
        self.sampling.iter().flat_map(|((session, domain), s)| {
            s.default
                .map(|r| (*session, *domain, None, r))
                .into_iter()
                .chain(
                    s.by_sampler
                        .iter()
                        .map(|(id, r)| (*session, *domain, Some(*id), *r)),
                )
        })
    }

    /// Whether the kernel would take this whole message (every set a data
    /// set with a plan, sets and records within its bounds): the rule of
    /// `sensor-ebpf/src/template.rs`, applied to the templates known now.
    pub fn kernel_takes(&self, exporter: Session, msg: &[u8]) -> bool {
        self.kernel_records(exporter, msg).is_some()
    }

    /// The data records the kernel would count in `msg`, if it takes it.
    pub fn kernel_records(&self, exporter: Session, msg: &[u8]) -> Option<u32> {
        use edge_sensor_common::{MAX_FLOW_RECORDS, MAX_FLOW_SETS};
        let (start, domain, end) = match be16(msg, 0) {
            Some(9) if msg.len() >= 20 => (20, be32(msg, 16), msg.len()),
            Some(10) if msg.len() >= 16 => {
                let len = usize::from(be16(msg, 2).unwrap_or(0));
                if len < 16 || len > msg.len() {
                    return None;
                }
                (16, be32(msg, 12), len)
            }
            _ => return None,
        };
        let domain = domain?;
        let (mut off, mut sets, mut records) = (start, 0u32, 0u32);
        while off + 4 <= end {
            sets += 1;
            let (Some(id), Some(len)) = (be16(msg, off), be16(msg, off + 2)) else {
                return None;
            };
            let len = usize::from(len);
            if sets > MAX_FLOW_SETS || len < 4 || len > end - off || id < 256 {
                return None;
            }
            let key = TemplateKey {
                exporter,
                domain,
                id,
            };
            let plan = self.templates.get(&key).and_then(Template::plan)?;
            records += ((len - 4) / usize::from(plan.record_len)) as u32;
            if records > MAX_FLOW_RECORDS {
                return None;
            }
            off += len;
        }
        Some(records)
    }
}

#[cfg(test)]
mod tests {
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
        let restored = TemplateCache::restored(saved.clone(), now, hour);
        assert_eq!(restored.template(&key), cache.template(&key));
        assert!(
            restored.generation() > 0,
            "a restored cache is synced to the kernel"
        );
        // Restored two hours later, the one-hour-old template is gone.
        let later = now + 2 * hour;
        let expired = TemplateCache::restored(saved, later, hour);
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
            TemplateCache::restored(bad, now, hour).templates().count(),
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
