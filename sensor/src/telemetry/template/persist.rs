//! The saved form of the cache: what the daemon persists so that a
//! restart does not wait for the exporters' next template refresh.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::{Sampling, Session, Template, TemplateCache, TemplateKey, TemplateLimits};

impl TemplateCache {
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

    /// A cache holding what `saved` holds, but for what has expired by `now`
    /// and what is over `limits` (a file saved before the limits, or under
    /// larger ones).
    pub fn restored(
        saved: SavedTemplates,
        now: SystemTime,
        lifetime: Duration,
        limits: TemplateLimits,
    ) -> Self {
        let at = |secs: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        let mut cache = Self::new();
        cache.set_limits(limits);
        let mut saved = saved;
        // Oldest first, so what the limits evict is what was announced longest ago.
        saved.templates.sort_by_key(|t| t.seen);
        for t in saved.templates {
            if t.template.fields.is_empty() || t.key.id < 256 {
                continue;
            }
            cache.seen.insert(t.key, at(t.seen));
            cache.put(t.key, t.template);
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
