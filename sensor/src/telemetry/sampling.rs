//! Configured sampling rates per exporter prefix (`exporters.sampling`),
//! the userspace twin of the kernel's `SAMPLING_RULES` longest-prefix match.
//!
//! Exporters that state their rate wrongly or not at all are common (v9
//! without options templates, NetFlow v5 with interval 0, an sFlow agent
//! reporting its configured rather than its effective rate): an `override`
//! replaces what the telemetry says, a `default` fills in where it says
//! nothing. Which rule applied shows in `edge-sensor exporters`.

use std::net::IpAddr;

use edge_sensor_common::{RateSource, SAMPLING_DEFAULT, SAMPLING_OVERRIDE, SamplingRule};
use ipnet::IpNet;

/// The rules, by prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SamplingRules(Vec<(IpNet, SamplingRule)>);

impl SamplingRules {
    pub fn new(rules: impl IntoIterator<Item = (IpNet, SamplingRule)>) -> Self {
        Self(rules.into_iter().collect())
    }

    pub fn iter(&self) -> impl Iterator<Item = &(IpNet, SamplingRule)> {
        self.0.iter()
    }

    /// The rule of the longest prefix holding `ip` (IPv4 also matches as
    /// IPv4-mapped IPv6, as the kernel's trie does).
    pub fn lookup(&self, ip: IpAddr) -> Option<SamplingRule> {
        let ip = ip.to_canonical();
        self.0
            .iter()
            .filter(|(net, _)| net.contains(&ip))
            .max_by_key(|(net, _)| net.prefix_len())
            .map(|(_, rule)| *rule)
    }

    /// The rate for `ip`'s samples, given what the telemetry says (`stated`,
    /// with its source), as the kernel decides it.
    pub fn apply(&self, ip: IpAddr, stated: Option<(u32, RateSource)>) -> (u32, RateSource) {
        let rule = self.lookup(ip);
        match (rule, stated) {
            (Some(r), _) if r.mode == SAMPLING_OVERRIDE => (r.rate, RateSource::ConfigOverride),
            (_, Some(s)) => s,
            (Some(r), None) if r.mode == SAMPLING_DEFAULT => (r.rate, RateSource::ConfigDefault),
            _ => (1, RateSource::Unsampled),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_and_modes() {
        let rules = SamplingRules::new([
            (
                "192.0.2.0/24".parse().unwrap(),
                SamplingRule {
                    rate: 100,
                    mode: SAMPLING_DEFAULT,
                },
            ),
            (
                "192.0.2.7/32".parse().unwrap(),
                SamplingRule {
                    rate: 4000,
                    mode: SAMPLING_OVERRIDE,
                },
            ),
        ]);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.7".parse().unwrap();
        let c: IpAddr = "198.51.100.1".parse().unwrap();
        let sample = Some((512, RateSource::Sample));
        assert_eq!(rules.apply(a, sample), (512, RateSource::Sample));
        assert_eq!(rules.apply(a, None), (100, RateSource::ConfigDefault));
        assert_eq!(rules.apply(b, sample), (4000, RateSource::ConfigOverride));
        assert_eq!(rules.apply(c, None), (1, RateSource::Unsampled));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(rules.lookup(mapped).unwrap().rate, 4000);
    }
}
