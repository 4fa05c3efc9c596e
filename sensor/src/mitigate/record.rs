//! What the mitigator did, one record per event: written to the event log
//! as one JSON object with an `"event"` name (the names and fields are the
//! log's format, relied on by operators' tooling: keep them stable).

use ipnet::IpNet;
use serde::Serialize;

use super::Mitigation;
use crate::bgp::Route;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Record {
    /// A saved mitigation whose time ran out while the sensor was down.
    MitigationExpired {
        mitigation: Mitigation,
    },
    /// A saved mitigation that no longer passes the safety rules.
    MitigationDropped {
        reason: String,
        mitigation: Mitigation,
    },
    MitigationRestored {
        mitigation: Mitigation,
    },
    /// A held mitigation covers a new attack on the same victim.
    MitigationAdopted {
        attack: u64,
        mitigation: u64,
    },
    /// The victim's host group only alerts.
    AlertOnly {
        attack: u64,
        victim: IpNet,
    },
    MitigationRefused {
        #[serde(skip_serializing_if = "Option::is_none")]
        attack: Option<u64>,
        victim: IpNet,
        reason: String,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        manual: bool,
    },
    MitigationAnnounced {
        mitigation: Mitigation,
    },
    /// A router reset its session over a mitigation's rule.
    MitigationQuarantined {
        peer: String,
        route: Route,
        router_reason: String,
        fallback: Option<String>,
        mitigation: Mitigation,
    },
    /// The same, for a route no mitigation uses (any more).
    RouteQuarantined {
        peer: String,
        route: Route,
        router_reason: String,
    },
    MitigationNotUpdated {
        mitigation: u64,
        reason: String,
    },
    MitigationUpdated {
        mitigation: Mitigation,
    },
    MitigationEscalated {
        mitigation: Mitigation,
    },
    MitigationNotEscalated {
        mitigation: u64,
        reason: String,
    },
    MitigationWithdrawn {
        reason: &'static str,
        peers: usize,
        mitigation: Mitigation,
    },
}

impl Record {
    /// The record as the event log writes it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("records serialize")
    }

    /// The `"event"` name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::MitigationExpired { .. } => "mitigation_expired",
            Self::MitigationDropped { .. } => "mitigation_dropped",
            Self::MitigationRestored { .. } => "mitigation_restored",
            Self::MitigationAdopted { .. } => "mitigation_adopted",
            Self::AlertOnly { .. } => "alert_only",
            Self::MitigationRefused { .. } => "mitigation_refused",
            Self::MitigationAnnounced { .. } => "mitigation_announced",
            Self::MitigationQuarantined { .. } => "mitigation_quarantined",
            Self::RouteQuarantined { .. } => "route_quarantined",
            Self::MitigationNotUpdated { .. } => "mitigation_not_updated",
            Self::MitigationUpdated { .. } => "mitigation_updated",
            Self::MitigationEscalated { .. } => "mitigation_escalated",
            Self::MitigationNotEscalated { .. } => "mitigation_not_escalated",
            Self::MitigationWithdrawn { .. } => "mitigation_withdrawn",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_name_is_the_serialized_tag() {
        let r = Record::AlertOnly {
            attack: 7,
            victim: "203.0.113.5/32".parse().unwrap(),
        };
        let json = r.to_json();
        assert_eq!(json["event"], r.name());
        assert_eq!(json["attack"], 7);
        let refused = Record::MitigationRefused {
            attack: None,
            victim: "203.0.113.5/32".parse().unwrap(),
            reason: "x".into(),
            manual: true,
        }
        .to_json();
        assert_eq!(refused["event"], "mitigation_refused");
        assert!(refused.get("attack").is_none());
        assert_eq!(refused["manual"], true);
    }
}
