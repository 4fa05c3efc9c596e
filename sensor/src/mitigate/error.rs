//! Why a mitigation was not made, or an operator's request not carried out.
//! The texts are what the event log and `edge-sensor ban` print.

use ipnet::IpNet;

use super::rule::MatchError;
use crate::bgp::{FlowSpecError, RouteError};

/// A route the policy or the safety rules (see the module doc) refuse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    #[error("{0} is outside the own networks")]
    OutsideOwnNetworks(IpNet),
    #[error("{0} is a block: blackholes are for single addresses")]
    BlockVictim(IpNet),
    #[error("{0}: blackholes are for single addresses")]
    BlackholeNotHost(IpNet),
    #[error("{prefix} is in never_blackhole ({listed})")]
    NeverBlackhole { prefix: IpNet, listed: IpNet },
    #[error("a flow spec rule without a destination")]
    NoDestination,
    #[error("{destination} is broader than /{min}")]
    TooBroad { destination: IpNet, min: u8 },
    #[error("{0} mitigations active, the maximum (max_active)")]
    MaxActive(usize),
    #[error("{0} new mitigations in the last minute, the maximum (max_new_per_minute)")]
    MaxNewPerMinute(usize),
    #[error("the host group's action is alert")]
    AlertOnly,
    #[error(transparent)]
    Rule(#[from] FlowSpecError),
    #[error(transparent)]
    Route(#[from] RouteError),
    /// Too big to filter, and the blackhole is refused (and no precise
    /// filter to fall back on).
    #[error("peak {peak_bps:.0} bps above blackhole_above_bps, but {source}")]
    TooBigNoBlackhole {
        peak_bps: f64,
        source: Box<PolicyError>,
    },
    /// The match is too coarse for a filter, and the blackhole is refused.
    #[error(
        "match too coarse (covers {:.0}%, hits {:.0}% of normal), and {source}",
        covers * 100.0,
        hits * 100.0
    )]
    CoarseNoBlackhole {
        covers: f64,
        hits: f64,
        source: Box<PolicyError>,
    },
}

/// `edge-sensor ban` not carried out.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BanError {
    #[error("either a flow spec match or --blackhole")]
    MatchAndBlackhole,
    #[error("duration {0} s is above the longest ban, {max} s (a year)", max = super::MAX_DURATION_SECS)]
    Duration(u64),
    #[error(transparent)]
    Match(#[from] MatchError),
    #[error(transparent)]
    Refused(#[from] PolicyError),
}

/// `edge-sensor unban` not carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnbanError {
    #[error("`{0}` is neither a mitigation id nor an address")]
    NotATarget(String),
    #[error("no active mitigation for `{0}`")]
    NoneActive(String),
}
