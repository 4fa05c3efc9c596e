//! One mitigation: what `edge-sensor mitigations` shows and the state file
//! holds.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::bgp::{Profile, Route, RouteKey};

/// What a mitigation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MitigationKind {
    Flowspec,
    Blackhole,
}

/// One active mitigation (what `edge-sensor mitigations` shows, and what
/// the state file holds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mitigation {
    pub id: u64,
    pub victim: IpNet,
    pub kind: MitigationKind,
    pub route: Route,
    /// A blackhole added for routers that refused the filter, or on
    /// escalation, and the peers it went to (empty: all).
    pub fallback: Option<Route>,
    pub fallback_peers: Vec<String>,
    /// The detector's attack id (`None`: manual, or restored and not seen
    /// again yet).
    pub attack: Option<u64>,
    pub class: Option<String>,
    pub reason: String,
    pub manual: bool,
    /// Unix seconds.
    pub created: u64,
    /// Not withdrawn before this.
    pub hold_until: u64,
    /// Manual bans: withdrawn at this time.
    pub expires: Option<u64>,
    /// When its attack ended (then it is withdrawn once held long enough).
    pub ended: Option<u64>,
    /// `flowspec_then_blackhole`: the blackhole follows at this time if the
    /// attack is still on.
    pub escalate_at: Option<u64>,
    /// Per peer: what it did with the route.
    pub peers: Vec<(String, String)>,
    /// Flow spec mitigations: per router, the rule actually sent (adapted
    /// to its dialect) or why none was.
    #[serde(default)]
    pub sent: Vec<SentRule>,
    pub dry_run: bool,
}

/// What one router was given for a flow spec mitigation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentRule {
    pub peer: String,
    /// Its dialect's profile.
    pub dialect: Profile,
    /// The rule sent (`None`: refused, see `refused`).
    pub route: Option<Route>,
    /// How it differs from the mitigation's rule (empty: the same).
    pub changes: Vec<String>,
    /// Why this router got no rule (it gets the blackhole fallback where
    /// one is allowed).
    pub refused: Option<String>,
}

impl Mitigation {
    pub(super) fn keys(&self) -> Vec<RouteKey> {
        let mut keys = vec![self.route.key()];
        for r in self.sent.iter().filter_map(|s| s.route.as_ref()) {
            if !keys.contains(&r.key()) {
                keys.push(r.key());
            }
        }
        if let Some(f) = &self.fallback {
            keys.push(f.key());
        }
        keys
    }
}
