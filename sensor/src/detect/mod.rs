//! The detection engine: per-destination counters in, attack decisions out.
//!
//! Each poll the caller hands [`Detector::poll`] its monotonic clock, the
//! cumulative per-destination counters it read from the maps and the packet
//! samples the kernel streamed for watched destinations since the last poll.
//! The detector
//! - turns counter deltas into rates per class (pps, bps), smoothed
//!   exponentially; resets and absurd deltas are gaps, never rates
//!   ([`meter`]);
//! - compares them with thresholds: global, per host group (most specific
//!   prefix wins), per class and metric, optionally adaptive per
//!   destination (`mean + k * stddev`, with a floor), and per block of a
//!   group's hosts summed (carpet bombing; hosts over their own thresholds
//!   are their own attacks and are left out of the sum);
//! - on a host with a learnt baseline, takes a crossing whose traffic is
//!   shaped like the host's normal traffic (the best match would hit most
//!   of it) for a flash crowd, and does not report it;
//! - starts an attack only on a crossing its samples make sure of: the
//!   counters are sampled estimates (at 1:N, k samples are k*N packets,
//!   give or take sqrt(k)*N), so the one-sided lower bound of the rate at
//!   `confidence` (default 99.9 %), from the samples behind it over the
//!   last 1 to 32 intervals, must reach the threshold ([`confidence`]);
//!   three samples at 1:4096 are not 12 kpps, a 1 Mpps flood confirms on
//!   its first interval;
//! - names the attack ([`classify`]) and learns the narrowest Flow
//!   Spec-shaped match that covers it ([`fingerprint`]), in the same poll;
//! - ends it with hysteresis (release ratio, hold time, minimum duration);
//! - says which destinations the kernel should sample ([`Detector::watched`]):
//!   those at a fraction of a threshold, so the evidence is there when the
//!   threshold is crossed.
//!
//! It is deterministic: no clock, no randomness, ordered maps; the same
//! inputs give the same events. Destinations outside `own_networks` are
//! never considered.
//!
//! A decision comes at most two polls after the first poll that measures a
//! rate above a threshold, once that rate is confirmed: the compared rate
//! is the greater of the smoothed rate and the lower of the last two
//! measured ones, a victim the kernel was not sampling yet waits for its
//! samples (at most one poll; the daemon hands them over a quarter
//! interval later, [`Detector::between_polls`], and a flood's are in by
//! then), and a rate close to its threshold under coarse
//! sampling waits for the samples that confirm it (at most 32 intervals
//! are pooled: a rate over the threshold by too little for that many
//! samples to tell is not reported).
//! Running attacks are revised from the latest poll's evidence: a new
//! vector replaces the match at once, a narrower match after three polls
//! in a row, and a fading attack keeps its match.
//!
//! # Use
//!
//! ```
//! use std::{collections::BTreeMap, time::Duration};
//! use edge_sensor::detect::{DetectConfig, Detector, Event};
//!
//! let cfg = DetectConfig::from_toml(r#"own_networks = ["198.18.0.0/15"]"#)?;
//! let mut detector = Detector::new(cfg)?;
//! // Each poll: the caller's monotonic clock, the counters of every
//! // destination (`counters::read_pinned_destinations`), and the samples
//! // the kernel streamed for `detector.watched()` since the last poll.
//! let counters = BTreeMap::new();
//! for tick in 0..3 {
//!     for event in detector.poll(Duration::from_secs(tick), &counters, &[]) {
//!         match event {
//!             Event::AttackStarted(a) | Event::AttackUpdated(a) => println!("mitigate {a}"),
//!             Event::AttackEnded(a) => println!("withdraw #{}", a.id),
//!         }
//!     }
//!     let _sample_these = detector.watched();
//! }
//! assert!(detector.attacks().is_empty());
//! # Ok::<(), edge_sensor::detect::DetectConfigError>(())
//! ```
//!
//! # Configuration
//!
//! ```toml
//! [detect]
//! own_networks = ["198.18.0.0/15", "2001:db8::/32"]
//! poll_interval = "1s"          # 100ms ..= 60s
//! smoothing = "2s"              # time constant of the rate smoothing
//! # An attack starts when the rate's lower bound at this confidence, from
//! # the number of samples behind it, reaches the threshold: one-sided
//! # Poisson bound N * k * (1 - 1/(9k) - z/(3 sqrt k))^3 / T for k samples
//! # at 1:N over T seconds (z = 3.09 at 0.999). 0: the point estimate.
//! confidence = 0.999
//! action = "flowspec"           # flowspec | blackhole | flowspec_then_blackhole | alert
//! amplification_ports = [19, 53, 123, 161, 389, 1900, 11211]
//!
//! # Per host, for destinations in no host group and as the groups' fallback.
//! # Rates are integers or strings with k/M/G/T (powers of 1000).
//! # This table replaces the defaults as a whole: a class left out has no
//! # threshold here.
//! [detect.thresholds]
//! all = { pps = 100000, bps = "1G" }
//! tcp_syn = { pps = 20000 }
//! udp = { pps = 50000, bps = "500M" }
//! icmp = { pps = 10000 }
//! fragment = { pps = 10000 }
//!
//! [detect.release]
//! ratio = 0.7                   # active while a rate is above 70 % of its threshold
//! min_duration = "60s"
//! hold = "30s"                  # below the release level this long to end
//!
//! [detect.fingerprint]
//! window = "5s"                 # recent samples: the attack's evidence
//! coverage = 0.9                # share of the attack the match must cover
//! min_samples = 5
//! dominant_share = 0.6
//!
//! [detect.watch]
//! fraction = 0.5                # sample destinations at half a threshold
//! hold = "10s"
//! max = 4096
//!
//! [[detect.host_groups]]
//! name = "web"
//! prefixes = ["198.18.1.0/24", "2001:db8:1::/48"]
//! action = "flowspec_then_blackhole"
//! thresholds = { tcp_syn = { pps = 5000 }, all = { pps = 200000 } }
//! # Sum of the group's hosts per /24 (IPv4) or /64 (IPv6) block.
//! aggregate = { all = { pps = 300000 }, udp = { pps = 100000 } }
//! aggregate_prefix_v4 = 24
//! aggregate_prefix_v6 = 64
//! # Adaptive per destination, for the classes and metrics with a floor.
//! # flash_crowd_similarity: a crossing of adaptive thresholds only whose
//! # best match (cut to what its samples make sure of) would hit this share
//! # of the host's normal traffic is a flash crowd (0: off); the group's hosts are
//! # then sampled all along (within watch.max) for that profile. Give bps a
//! # floor too, or a crowd of large packets crosses the static bps threshold.
//! baseline = { k = 4.0, window = "10m", floor = { all = { pps = 20000, bps = "160M" } }, ceiling = { all = { pps = 1000000, bps = "8G" } }, flash_crowd_similarity = 0.8 }
//!
//! [[detect.host_groups]]
//! name = "dns"
//! prefixes = ["198.18.2.53/32"]
//! thresholds = { udp = { pps = 400000 } }
//! action = "alert"
//! ```

pub mod chance;
pub mod classify;
pub mod confidence;
pub mod config;
mod detector;
mod events;
pub mod fingerprint;
pub mod meter;
#[cfg(test)]
mod scenarios;

pub use classify::AttackClass;
pub use config::{
    BaselineConfig, ClassLimits, DetectConfig, DetectConfigError, FingerprintConfig, GroupAction,
    HostGroupConfig, Limit, Metric, NetworksFromBgp, Rate, ReleaseConfig, TrafficClass,
    WatchConfig,
};
pub use detector::Detector;
pub use events::{Attack, DestinationView, DetectorStats, Event, Scope, Trigger};
pub use fingerprint::{
    Basis, Fingerprint, FlowMatch, FragmentMatch, LengthRange, NormalBasis, Sample, TcpFlagsMatch,
};

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        detect: DetectConfig,
    }

    fn module_doc_example() -> String {
        let src = include_str!("mod.rs");
        let start = src.find("//! ```toml\n").expect("example") + "//! ```toml\n".len();
        let end = start + src[start..].find("//! ```\n").expect("end of example");
        src[start..end]
            .lines()
            .map(|l| {
                l.strip_prefix("//! ")
                    .unwrap_or(l.strip_prefix("//!").unwrap_or(l))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_documented_example_parses_and_validates() {
        let text = module_doc_example();
        let file: File = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let c = file.detect;
        c.validate().unwrap();
        assert_eq!(c.poll_interval, Duration::from_secs(1));
        assert_eq!(c.thresholds.all.bps, Some(Rate(1e9)));
        assert_eq!(c.thresholds.udp.bps, Some(Rate(500e6)));
        assert_eq!(c.host_groups.len(), 2);
        let web = &c.host_groups[0];
        assert_eq!(web.action, Some(GroupAction::FlowspecThenBlackhole));
        assert_eq!(web.aggregate.udp.pps, Some(Rate(100_000.0)));
        let b = web.baseline.as_ref().unwrap();
        assert_eq!((b.k, b.window), (4.0, Duration::from_secs(600)));
        assert_eq!(b.ceiling.all.pps, Some(Rate(1e6)));
        assert_eq!(b.flash_crowd_similarity, 0.8);
        assert_eq!(c.host_groups[1].action, Some(GroupAction::Alert));
        let d = Detector::new(c).unwrap();
        // Most specific prefix wins; outside the own networks: nothing.
        assert_eq!(d.lookup("198.18.2.53".parse().unwrap()), Some((2, 32)));
        assert_eq!(d.lookup("198.18.2.54".parse().unwrap()), Some((0, 15)));
        assert_eq!(d.lookup("2001:db8:1::5".parse().unwrap()), Some((1, 48)));
        assert_eq!(d.lookup("192.0.2.1".parse().unwrap()), None);
    }

    #[test]
    fn defaults_need_only_the_own_networks() {
        let c = DetectConfig::from_toml("own_networks = [\"198.18.0.0/15\"]").unwrap();
        assert_eq!(c.release, ReleaseConfig::default());
        assert_eq!(c.amplification_ports, config::DEFAULT_AMPLIFICATION_PORTS);
        let e = DetectConfig::from_toml("").unwrap_err();
        assert!(e.to_string().contains("detect.own_networks"), "{e}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let own = "own_networks = [\"198.18.0.0/15\"]\n";
        let cases = [
            (
                "own_networks = [\"198.18.0.1/15\"]",
                "detect.own_networks[0]",
            ),
            ("poll_interval = \"50ms\"", "detect.poll_interval"),
            ("poll_interval = \"1 fortnight\"", "poll_interval"),
            ("thresholds = { udp = { pps = -5 } }", "pps"),
            ("thresholds = { udp = { pps = \"lots\" } }", "pps"),
            ("thresholds = { udpp = { pps = 5 } }", "udpp"),
            ("release = { ratio = 1.5 }", "detect.release.ratio"),
            (
                "fingerprint = { coverage = 0 }",
                "detect.fingerprint.coverage",
            ),
            (
                "fingerprint = { dominant_share = 0.4 }",
                "detect.fingerprint.dominant_share",
            ),
            ("amplification_ports = [0]", "detect.amplification_ports"),
            ("thresholds = {}", "detect.thresholds"),
            (
                "fingerprint = { min_samples = 0 }",
                "detect.fingerprint.min_samples",
            ),
            ("watch = { fraction = 0 }", "detect.watch.fraction"),
            ("release = { hold = \"-1s\" }", "hold"),
            ("aggregate_prefix_v4 = 33", "detect.aggregate_prefix_v4"),
            (
                "[[host_groups]]\nname = \"a\"\nprefixes = [\"10.0.0.0/8\"]",
                "detect.host_groups[0].prefixes[0]",
            ),
            (
                "[[host_groups]]\nname = \"default\"\nprefixes = [\"198.18.0.0/24\"]",
                "detect.host_groups[0].name",
            ),
            (
                "[[host_groups]]\nname = \"a\"\nprefixes = [\"198.18.0.0/24\"]\n[[host_groups]]\nname = \"b\"\nprefixes = [\"198.18.0.0/24\"]",
                "detect.host_groups[1].prefixes[0]",
            ),
            (
                "[[host_groups]]\nname = \"a\"\nprefixes = [\"198.18.0.0/24\"]\nbaseline = { k = 3.0, window = \"1m\", floor = {} }",
                "detect.host_groups[0].baseline.floor",
            ),
            (
                "baseline = { k = 3.0, window = \"1m\", floor = { all = { pps = 100 } }, ceiling = { all = { pps = 10 } } }",
                "detect.baseline.ceiling.all.pps",
            ),
        ];
        for (text, key) in cases {
            let doc = if text.starts_with("own_networks") {
                format!("{text}\n")
            } else {
                format!("{own}{text}\n")
            };
            let e = DetectConfig::from_toml(&doc).unwrap_err().to_string();
            assert!(e.contains(key), "{text:?}: error {e:?} does not name {key}");
        }
    }

    #[test]
    fn durations_and_rates_read_like_an_operator_writes_them() {
        assert_eq!(
            config::parse_duration("250ms"),
            Ok(Duration::from_millis(250))
        );
        assert_eq!(config::parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(
            config::parse_duration("1.5s"),
            Ok(Duration::from_millis(1500))
        );
        assert!(config::parse_duration("10").is_err());
        assert_eq!(config::parse_rate("1.5G"), Ok(1.5e9));
        assert_eq!(config::parse_rate("250k"), Ok(250e3));
        assert!(config::parse_rate("0").is_err());
    }
}
