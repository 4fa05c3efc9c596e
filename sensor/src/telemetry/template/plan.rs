//! Plans for the kernel: the layout of a template's data records as the
//! kernel's twin (`sensor-ebpf/src/template.rs`) reads them, and which
//! messages the kernel would take whole.

use edge_sensor_common::{FieldLoc, Plan};

use super::{Session, Template, TemplateCache, TemplateKey, be16, be32, ie};

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
