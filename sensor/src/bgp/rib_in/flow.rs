//! Received Flow Spec rules (RFC 8955 §4, RFC 8956 §3) of one family from
//! one peer, with their actions (RFC 8955 §7) and what validation could
//! say about them (RFC 8955 §6 as revised by RFC 9117).
//!
//! Rules are keyed by their canonical NLRI encoding (decoded strictly and
//! encoded again, so two encodings of one rule are one key) and the path
//! identifier (RFC 7911 §3; 0 without Add-Path).
//!
//! ## Validation, and what a sensor can and cannot check
//!
//! RFC 8955 §6 makes a rule feasible when (a) it has a destination prefix,
//! (b) its originator is the originator of the best-match unicast route
//! for that prefix, and (c) no more-specific unicast route came from
//! another neighbouring AS than that best match. RFC 9117 §4.1 adds (b.2):
//! an AS_PATH that is empty or holds only confederation segments (a rule
//! from inside our AS or confederation, e.g. a controller or another
//! sensor) satisfies (b); and §4.2 requires the neighbouring AS to be the
//! left-most AS of a rule received over eBGP.
//!
//! The sensor keeps Adj-RIBs-In but selects no best paths (it forwards
//! nothing), so:
//! - checked: (a), (b.2), and the eBGP left-most AS of §4.2;
//! - not checked: (b.1) and (c), which need the Loc-RIB's best unicast
//!   path. A rule that depends on them is stored as
//!   [`Validation::Unvalidated`], with the covering unicast prefix this
//!   peer sent if any, never dropped;
//! - a rule that fails a checked rule is stored as [`Validation::Invalid`]
//!   with the rule it failed (the router would not install it; the
//!   operator should see it anyway).

use std::{collections::BTreeMap, sync::Arc};

use ipnet::IpNet;
use serde::Serialize;

use super::{attributes::Attributes, table::Change};
use crate::bgp::flowspec::{Action, FlowSpec};

/// What validation says about a received rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum Validation {
    /// Rules (a) and (b.2) hold: a destination prefix, and an AS_PATH from
    /// inside our AS (RFC 9117 §4.1). Rule (c) needs a Loc-RIB and is not
    /// checked.
    Valid,
    /// Rule (a) and RFC 9117 §4.2 hold, but the rule comes from another AS
    /// and (b.1)/(c) need the best unicast path, which the sensor does not
    /// select. `covering`: the longest unicast prefix this peer sent that
    /// covers the destination (a hint, not the best path).
    Unvalidated {
        reason: &'static str,
        covering: Option<IpNet>,
    },
    /// A rule the router must not install.
    Invalid { reason: InvalidReason },
}

/// Why a received rule is infeasible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "kebab-case", tag = "rule")]
pub enum InvalidReason {
    /// RFC 8955 §6 (a).
    #[error("no destination prefix component (RFC 8955 §6 a)")]
    NoDestination,
    /// RFC 9117 §4.2: over eBGP the neighbouring AS must be left-most.
    #[error(
        "received over eBGP from AS {neighbor} but the left-most AS is {leftmost:?} (RFC 9117 §4.2)"
    )]
    NeighborNotLeftmost {
        neighbor: u32,
        leftmost: Option<u32>,
    },
}

/// Who sent a rule, for validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sender {
    pub ibgp: bool,
    pub peer_asn: u32,
}

/// Validates `rule` received from `sender` with `attrs`; `covering` finds
/// the longest unicast prefix the same peer sent for an address.
pub fn validate(
    rule: &FlowSpec,
    attrs: &Attributes,
    sender: Sender,
    covering: impl Fn(IpNet) -> Option<IpNet>,
) -> Validation {
    let Some(dest) = rule.destination() else {
        return Validation::Invalid {
            reason: InvalidReason::NoDestination,
        };
    };
    if !sender.ibgp && attrs.first_as() != Some(sender.peer_asn) {
        return Validation::Invalid {
            reason: InvalidReason::NeighborNotLeftmost {
                neighbor: sender.peer_asn,
                leftmost: attrs.first_as(),
            },
        };
    }
    if attrs.as_path_internal() {
        return Validation::Valid;
    }
    Validation::Unvalidated {
        reason: "rules b.1 and c need the best unicast path, which the sensor does not select",
        covering: covering(dest.net()),
    }
}

/// One received rule.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowRoute {
    pub rule: FlowSpec,
    /// The traffic actions among its extended communities (RFC 8955 §7);
    /// the others stay in `attrs`.
    pub actions: Vec<Action>,
    pub attrs: Arc<Attributes>,
    pub validation: Validation,
    /// Kept from a session that ended with graceful restart (RFC 4724 §4.2).
    pub stale: bool,
    pub since: u64,
}

impl FlowRoute {
    /// The actions among `attrs`' extended communities.
    pub fn actions_of(attrs: &Attributes) -> Vec<Action> {
        attrs
            .extended_communities
            .iter()
            .filter_map(|c| Action::from_community(*c).ok())
            .collect()
    }

    /// Whether `other` is the same rule with the same actions (what a
    /// duplicate is).
    pub fn same_as(&self, rule: &FlowSpec, actions: &[Action]) -> bool {
        self.rule == *rule
            && self.actions.len() == actions.len()
            && self
                .actions
                .iter()
                .zip(actions)
                .all(|(a, b)| a.to_community() == b.to_community())
    }
}

/// The rules of one Flow Spec family.
#[derive(Debug, Default)]
pub struct FlowTable {
    rules: BTreeMap<(Vec<u8>, u32), FlowRoute>,
}

impl FlowTable {
    pub fn insert(&mut self, path_id: u32, route: FlowRoute) -> Change {
        let key = (route.rule.encode_nlri(), path_id);
        match self.rules.insert(key.clone(), route.clone()) {
            None => Change::Added,
            Some(old) if old.attrs == route.attrs && !old.stale => {
                if let Some(r) = self.rules.get_mut(&key) {
                    r.since = old.since;
                }
                Change::Unchanged
            }
            Some(_) => Change::Replaced,
        }
    }

    pub fn remove(&mut self, rule: &FlowSpec, path_id: u32) -> bool {
        self.rules.remove(&(rule.encode_nlri(), path_id)).is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, &FlowRoute)> {
        self.rules.iter().map(|((_, id), r)| (*id, r))
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn mark_stale(&mut self) {
        self.rules.values_mut().for_each(|r| r.stale = true);
    }

    pub fn sweep_stale(&mut self) -> usize {
        let before = self.rules.len();
        self.rules.retain(|_, r| !r.stale);
        before - self.rules.len()
    }

    pub fn clear(&mut self) {
        self.rules.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::{
        attribute::Community,
        flowspec::{Component, FlowPrefix, IpFamily, NumericMatch},
        rib_in::attributes::Segment,
    };

    fn rule(dest: Option<&str>) -> FlowSpec {
        let mut c = vec![Component::IpProtocol(vec![NumericMatch::eq(17)])];
        if let Some(d) = dest {
            c.push(Component::DestinationPrefix(FlowPrefix::new(
                d.parse().unwrap(),
            )));
        }
        FlowSpec::new(IpFamily::Ipv4, c).unwrap()
    }

    fn path(asns: &[u32]) -> Attributes {
        Attributes {
            as_path: if asns.is_empty() {
                Box::default()
            } else {
                vec![Segment::Sequence(asns.into())].into()
            },
            communities: vec![Community::new(1, 2)].into(),
            ..Attributes::default()
        }
    }

    const IBGP: Sender = Sender {
        ibgp: true,
        peer_asn: 65000,
    };
    const EBGP: Sender = Sender {
        ibgp: false,
        peer_asn: 65010,
    };

    #[test]
    fn validation_states_what_it_checked() {
        let none = |_| None;
        // RFC 9117 b.2: empty AS_PATH from inside the AS.
        assert_eq!(
            validate(&rule(Some("198.18.0.1/32")), &path(&[]), IBGP, none),
            Validation::Valid
        );
        // (a): no destination, stored as invalid.
        assert_eq!(
            validate(&rule(None), &path(&[]), IBGP, none),
            Validation::Invalid {
                reason: InvalidReason::NoDestination
            }
        );
        // §4.2: eBGP with another AS left-most.
        assert!(matches!(
            validate(&rule(Some("198.18.0.1/32")), &path(&[65011]), EBGP, none),
            Validation::Invalid {
                reason: InvalidReason::NeighborNotLeftmost {
                    neighbor: 65010,
                    leftmost: Some(65011)
                }
            }
        ));
        // eBGP, well formed: b.1/c cannot be checked here.
        let covering = |_| Some("198.18.0.0/15".parse().unwrap());
        assert_eq!(
            validate(
                &rule(Some("198.18.0.1/32")),
                &path(&[65010]),
                EBGP,
                covering
            ),
            Validation::Unvalidated {
                reason: "rules b.1 and c need the best unicast path, which the sensor does not select",
                covering: Some("198.18.0.0/15".parse().unwrap()),
            }
        );
    }

    #[test]
    fn rules_are_keyed_by_nlri_and_path_id() {
        let mut t = FlowTable::default();
        let route = |lp| FlowRoute {
            rule: rule(Some("198.18.0.1/32")),
            actions: Vec::new(),
            attrs: Arc::new(Attributes {
                local_pref: Some(lp),
                ..Attributes::default()
            }),
            validation: Validation::Valid,
            stale: false,
            since: 0,
        };
        assert_eq!(t.insert(0, route(100)), Change::Added);
        assert_eq!(t.insert(0, route(100)), Change::Unchanged);
        assert_eq!(t.insert(1, route(100)), Change::Added);
        assert_eq!(t.insert(0, route(200)), Change::Replaced);
        assert_eq!(t.len(), 2);
        t.mark_stale();
        t.insert(1, route(100));
        assert_eq!(t.sweep_stale(), 1);
        assert!(t.remove(&rule(Some("198.18.0.1/32")), 1));
        assert!(t.is_empty());
    }
}
