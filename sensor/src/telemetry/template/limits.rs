//! Bounds on the template store. An allowed exporter (or anyone, without
//! an allow-list) may announce template ids without end, and a new source
//! port opens a fresh template space (RFC 7011 §8): without bounds the
//! store, the saved file and every plan sync grow with it.
//!
//! Limits apply per exporter address (all its ports and domains together)
//! and in total, on the count and on an estimate of the bytes held. Past a
//! limit the least recently announced template goes first: an exporter
//! that refreshes its templates keeps them, one that churns ids loses its
//! own oldest.

use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
};

use super::{Field, Template, TemplateCache, TemplateKey};

/// How many templates, and how many bytes of them, may be kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateLimits {
    pub per_exporter: usize,
    pub per_exporter_bytes: usize,
    pub total: usize,
    pub total_bytes: usize,
}

impl TemplateLimits {
    /// A router has tens of templates per observation domain; a few line
    /// cards make hundreds. The byte bounds keep the store, and the saved
    /// file (about six times larger as JSON), well under 64 MiB.
    pub const DEFAULT: Self = Self {
        per_exporter: 2048,
        per_exporter_bytes: 1 << 20,
        total: 16384,
        total_bytes: 4 << 20,
    };
}

impl Default for TemplateLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Exporters whose evictions are counted by name; beyond that (only
/// without an allow-list) they are counted in the total alone.
const MAX_COUNTED_EXPORTERS: usize = 4096;

/// Hash map and ordering entries per template, beside key and fields.
const ENTRY_OVERHEAD: usize = 160;

/// The estimated bytes one template holds.
pub fn template_cost(t: &Template) -> usize {
    std::mem::size_of::<TemplateKey>()
        + std::mem::size_of::<Template>()
        + t.fields.len() * std::mem::size_of::<Field>()
        + ENTRY_OVERHEAD
}

/// What the store holds, in announcement order.
#[derive(Debug, Clone, Default)]
pub(super) struct Usage {
    next: u64,
    /// Every template's announcement stamp and cost.
    entries: HashMap<TemplateKey, (u64, usize)>,
    order: BTreeSet<(u64, TemplateKey)>,
    exporters: HashMap<IpAddr, ExporterUsage>,
    bytes: usize,
    evicted: HashMap<IpAddr, u64>,
    evicted_total: u64,
    warned: bool,
}

#[derive(Debug, Clone, Default)]
struct ExporterUsage {
    bytes: usize,
    order: BTreeSet<(u64, TemplateKey)>,
}

impl TemplateCache {
    /// Replaces the limits; what is over them goes at once.
    pub fn set_limits(&mut self, limits: TemplateLimits) {
        self.limits = limits;
        let exporters: Vec<IpAddr> = self.usage.exporters.keys().copied().collect();
        for ip in exporters {
            self.enforce(ip);
        }
    }

    pub fn limits(&self) -> TemplateLimits {
        self.limits
    }

    /// Estimated bytes the templates hold.
    pub fn memory_bytes(&self) -> usize {
        self.usage.bytes
    }

    /// Templates evicted over a limit, per exporter address.
    pub fn evicted(&self) -> impl Iterator<Item = (IpAddr, u64)> + '_ {
        self.usage.evicted.iter().map(|(ip, n)| (*ip, *n))
    }

    pub fn evicted_total(&self) -> u64 {
        self.usage.evicted_total
    }

    /// Keeps `template` under `key` as the latest announced, evicting what
    /// is over the limits. Returns whether the store changed.
    pub(super) fn put(&mut self, key: TemplateKey, template: Template) -> bool {
        let cost = template_cost(&template);
        self.forget(&key);
        let u = &mut self.usage;
        u.next += 1;
        u.entries.insert(key, (u.next, cost));
        u.order.insert((u.next, key));
        let e = u.exporters.entry(key.exporter.ip).or_default();
        e.bytes += cost;
        e.order.insert((u.next, key));
        u.bytes += cost;
        let changed = self.templates.insert(key, template.clone()).as_ref() != Some(&template);
        let evicted = self.enforce(key.exporter.ip);
        changed || evicted > 0
    }

    /// Drops `key`'s template. Returns whether there was one.
    pub(super) fn remove_template(&mut self, key: &TemplateKey) -> bool {
        self.forget(key);
        self.seen.remove(key);
        self.templates.remove(key).is_some()
    }

    /// Takes `key` out of the accounting (not out of the maps).
    fn forget(&mut self, key: &TemplateKey) {
        let u = &mut self.usage;
        let Some((stamp, cost)) = u.entries.remove(key) else {
            return;
        };
        u.order.remove(&(stamp, *key));
        u.bytes -= cost;
        if let Some(e) = u.exporters.get_mut(&key.exporter.ip) {
            e.order.remove(&(stamp, *key));
            e.bytes -= cost;
            if e.order.is_empty() {
                u.exporters.remove(&key.exporter.ip);
            }
        }
    }

    /// Evicts, oldest first, `ip`'s templates over the per-exporter limits,
    /// then anyone's over the total ones. Returns how many went.
    fn enforce(&mut self, ip: IpAddr) -> usize {
        let mut gone = 0;
        loop {
            let l = self.limits;
            let u = &self.usage;
            let victim = match u.exporters.get(&ip) {
                Some(e) if e.order.len() > l.per_exporter || e.bytes > l.per_exporter_bytes => {
                    e.order.first().map(|(_, k)| *k)
                }
                _ if u.order.len() > l.total || u.bytes > l.total_bytes => {
                    u.order.first().map(|(_, k)| *k)
                }
                _ => None,
            };
            let Some(key) = victim else { break };
            self.remove_template(&key);
            self.count_eviction(key.exporter.ip);
            gone += 1;
        }
        if gone > 0 {
            self.generation += 1;
        }
        gone
    }

    fn count_eviction(&mut self, ip: IpAddr) {
        let u = &mut self.usage;
        u.evicted_total += 1;
        if u.evicted.len() < MAX_COUNTED_EXPORTERS || u.evicted.contains_key(&ip) {
            *u.evicted.entry(ip).or_default() += 1;
        }
        if !u.warned {
            u.warned = true;
            let l = self.limits;
            tracing::warn!(
                exporter = %ip,
                "template store full ({} per exporter / {} bytes, {} in all / {} bytes): the \
                 oldest templates are evicted (counted per exporter as templates_evicted; \
                 warned once)",
                l.per_exporter,
                l.per_exporter_bytes,
                l.total,
                l.total_bytes
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::{super::Session, *};

    fn key(ip: u8, port: u16, id: u16) -> TemplateKey {
        TemplateKey {
            exporter: Session {
                ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, ip)),
                port,
            },
            domain: 0,
            id,
        }
    }

    fn template(fields: usize) -> Template {
        Template {
            fields: vec![
                Field {
                    ie: 12,
                    enterprise: 0,
                    len: 4
                };
                fields
            ],
            options: false,
            scope_fields: 0,
        }
    }

    #[test]
    fn a_churning_exporter_loses_its_own_oldest_and_no_one_elses() {
        let mut c = TemplateCache::new();
        c.set_limits(TemplateLimits {
            per_exporter: 10,
            per_exporter_bytes: usize::MAX,
            total: 25,
            total_bytes: usize::MAX,
        });
        for id in 256..261 {
            c.put(key(1, 2055, id), template(2));
        }
        // A flood from another exporter, over fresh source ports too.
        for i in 0..10_000u32 {
            let port = 40000 + (i / 1000) as u16;
            c.put(key(2, port, 256 + (i % 1000) as u16), template(2));
        }
        assert_eq!(
            c.templates()
                .filter(|(k, _)| k.exporter.ip == key(2, 0, 0).exporter.ip)
                .count(),
            10
        );
        for id in 256..261 {
            assert!(
                c.template(&key(1, 2055, id)).is_some(),
                "legitimate {id} kept"
            );
        }
        let evicted: HashMap<_, _> = c.evicted().collect();
        assert_eq!(evicted.get(&key(2, 0, 0).exporter.ip), Some(&(10_000 - 10)));
        assert_eq!(evicted.get(&key(1, 0, 0).exporter.ip), None);
        // The newest ten of the flood are the ones left.
        for i in 9990..10_000u32 {
            let k = key(2, 40009, 256 + (i % 1000) as u16);
            assert!(c.template(&k).is_some(), "{k:?}");
        }
    }

    #[test]
    fn a_refresh_makes_a_template_the_newest() {
        let mut c = TemplateCache::new();
        c.set_limits(TemplateLimits {
            per_exporter: 3,
            per_exporter_bytes: usize::MAX,
            total: 100,
            total_bytes: usize::MAX,
        });
        for id in 256..259 {
            c.put(key(1, 1, id), template(1));
        }
        c.put(key(1, 1, 256), template(1)); // refreshed
        c.put(key(1, 1, 300), template(1)); // evicts 257, the oldest now
        assert!(c.template(&key(1, 1, 256)).is_some());
        assert!(c.template(&key(1, 1, 257)).is_none());
        assert_eq!(c.evicted_total(), 1);
    }

    #[test]
    fn bytes_are_bounded_and_accounted_exactly() {
        let mut c = TemplateCache::new();
        let big = template(1000);
        let cost = template_cost(&big);
        c.set_limits(TemplateLimits {
            per_exporter: 1000,
            per_exporter_bytes: 3 * cost,
            total: 1000,
            total_bytes: 5 * cost,
        });
        for id in 256..266 {
            c.put(key(1, 1, id), big.clone());
            c.put(key(2, 1, id), big.clone());
            c.put(key(3, 1, id), big.clone());
        }
        assert!(c.memory_bytes() <= 5 * cost, "{}", c.memory_bytes());
        assert_eq!(
            c.memory_bytes(),
            c.templates().map(|(_, t)| template_cost(t)).sum::<usize>()
        );
        // Everything withdrawn or expired: nothing left accounted.
        let keys: Vec<_> = c.templates().map(|(k, _)| *k).collect();
        for k in keys {
            assert!(c.remove_template(&k));
        }
        assert_eq!(c.memory_bytes(), 0);
    }

    #[test]
    fn lowering_the_limits_evicts_at_once() {
        let mut c = TemplateCache::new();
        for id in 256..356 {
            c.put(key(1, 1, id), template(1));
        }
        c.set_limits(TemplateLimits {
            per_exporter: 10,
            ..TemplateLimits::DEFAULT
        });
        assert_eq!(c.templates().count(), 10);
        assert_eq!(c.evicted_total(), 90);
    }
}
