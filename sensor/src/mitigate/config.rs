//! The `[mitigation]` section: policy and safety limits.

use std::{path::PathBuf, time::Duration};

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

use crate::detect::config::{Rate, parse_duration};

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

/// Policy and limits of the mitigation daemon.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MitigationConfig {
    /// Decide and log, announce nothing.
    pub dry_run: bool,
    /// On SIGTERM, withdraw every mitigation (default: keep them; routers
    /// that negotiated graceful restart hold them while the sensor restarts).
    pub withdraw_on_exit: bool,
    /// Addresses never blackholed (RTBH), whatever the attack: name
    /// servers, peering LANs, the routers themselves. Flow Spec filters,
    /// which drop only the attack's match, remain possible.
    pub never_blackhole: Vec<IpNet>,
    /// At most this many mitigations at once; further ones are refused
    /// and logged.
    pub max_active: usize,
    /// At most this many mitigations on any one router (a router's TCAM is
    /// the scarce resource; its flow spec `max_rules` also applies).
    pub max_per_peer: usize,
    /// At most this many new announcements per minute (a detector gone
    /// wrong must not flood the routers).
    pub max_new_per_minute: usize,
    /// Flow Spec rules broader than this (destination prefix length) are
    /// refused; blackholes are only ever for a single address.
    pub min_prefix_v4: u8,
    pub min_prefix_v6: u8,
    /// A fingerprint is used as a Flow Spec filter only if it covers at
    /// least this share of the attack's traffic...
    pub min_coverage: f64,
    /// ... and would hit at most this share of the victim's normal traffic.
    pub max_normal_hit: f64,
    /// Attacks above this many bits/s go straight to a blackhole (a filter
    /// at the edge does not help when the links are already full).
    pub blackhole_above_bps: Option<Rate>,
    /// `flowspec_then_blackhole`: blackhole an attack that is still on
    /// this long after its filter went out.
    #[serde(deserialize_with = "de_duration")]
    pub escalate_after: Duration,
    /// A mitigation stays at least this long, however short the attack.
    #[serde(deserialize_with = "de_duration")]
    pub min_hold: Duration,
    /// Police the match to this rate (traffic-rate-bytes) instead of
    /// dropping it.
    pub rate_limit_bps: Option<Rate>,
    /// Manual bans without `--for` last this long.
    #[serde(deserialize_with = "de_duration")]
    pub manual_duration: Duration,
    /// Structured event log (JSON lines), appended to.
    pub event_log: Option<PathBuf>,
    /// Program run for each event with the event's JSON on stdin (killed
    /// after 10 s; its exit status is logged, never waited on by the loop).
    pub notify: Option<PathBuf>,
}

impl Default for MitigationConfig {
    fn default() -> Self {
        Self {
            dry_run: false,
            withdraw_on_exit: false,
            never_blackhole: Vec::new(),
            max_active: 500,
            max_per_peer: 200,
            max_new_per_minute: 60,
            min_prefix_v4: 24,
            min_prefix_v6: 64,
            min_coverage: 0.8,
            max_normal_hit: 0.1,
            blackhole_above_bps: None,
            escalate_after: Duration::from_secs(120),
            min_hold: Duration::from_secs(300),
            rate_limit_bps: None,
            manual_duration: Duration::from_secs(3600),
            event_log: None,
            notify: None,
        }
    }
}

impl MitigationConfig {
    /// Checks what the types alone cannot; the error names the key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |k: &str, m: String| Err((format!("mitigation.{k}"), m));
        if self.max_active == 0 {
            return bad("max_active", "0 would refuse every mitigation".into());
        }
        if self.max_per_peer == 0 {
            return bad("max_per_peer", "0 would refuse every mitigation".into());
        }
        if self.max_new_per_minute == 0 {
            return bad(
                "max_new_per_minute",
                "0 would refuse every mitigation".into(),
            );
        }
        // 0 would let a mitigation cover the whole address family.
        if self.min_prefix_v4 == 0 {
            return bad(
                "min_prefix_v4",
                "0 would allow a rule for 0.0.0.0/0, all of IPv4 (at least 1; 24 is usual)".into(),
            );
        }
        if self.min_prefix_v6 == 0 {
            return bad(
                "min_prefix_v6",
                "0 would allow a rule for ::/0, all of IPv6 (at least 1; 64 is usual)".into(),
            );
        }
        for (k, d) in [
            ("escalate_after", self.escalate_after),
            ("min_hold", self.min_hold),
            ("manual_duration", self.manual_duration),
        ] {
            if d.as_secs() > super::MAX_DURATION_SECS {
                return bad(
                    k,
                    format!(
                        "{} s is above {} s (a year)",
                        d.as_secs(),
                        super::MAX_DURATION_SECS
                    ),
                );
            }
        }
        if self.min_prefix_v4 > 32 {
            return bad("min_prefix_v4", format!("{} > 32", self.min_prefix_v4));
        }
        if self.min_prefix_v6 > 128 {
            return bad("min_prefix_v6", format!("{} > 128", self.min_prefix_v6));
        }
        for (k, v) in [
            ("min_coverage", self.min_coverage),
            ("max_normal_hit", self.max_normal_hit),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return bad(k, format!("{v} is outside 0 ..= 1"));
            }
        }
        if let Some(r) = self.rate_limit_bps
            && !(r.0 > 0.0 && r.0.is_finite())
        {
            return bad(
                "rate_limit_bps",
                "must be above 0 (leave it out to drop)".into(),
            );
        }
        for (i, net) in self.never_blackhole.iter().enumerate() {
            if net.trunc() != *net {
                return bad(
                    &format!("never_blackhole[{i}]"),
                    format!("{net} has host bits set"),
                );
            }
        }
        if self.manual_duration.is_zero() {
            return bad("manual_duration", "must be above 0".into());
        }
        Ok(())
    }
}
