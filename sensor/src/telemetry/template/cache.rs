//! The cache: every exporter's templates and sampling state, fed one
//! message at a time (RFC 7011 §3, RFC 3954 §4: sets of templates,
//! options templates and data), and expired when not refreshed
//! (RFC 7011 §8.4, RFC 3954 §9).

use std::time::{Duration, SystemTime};

use super::{
    Field, Flow, FlowError, Sampling, Session, Summary, Template, TemplateCache, TemplateKey,
    VARIABLE_LENGTH, Version, be16, be32, ie,
    record::{data_template, ipfix_options_template, split_record, v9_options_template},
    unsigned,
};
use crate::telemetry::sampling::SamplingRules;

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
                        self.remove_template(&key)
                    } else {
                        self.seen.insert(key, SystemTime::now());
                        self.put(key, template)
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
            self.remove_template(key);
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
}

/// A sampling rate from whichever fields state one (telemetry.md §2.7):
/// samplingInterval (34); samplerRandomInterval (50); packet interval and
/// space (305, 306: one in (interval + space) / interval); size and
/// population (309, 310: one in population / size). `None` if none does.
pub(super) fn rate_of(get: &impl Fn(u16) -> Option<u64>) -> Option<u32> {
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
