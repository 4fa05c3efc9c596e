//! What the speaker announces: a Flow Spec rule with its actions, or a
//! remotely triggered blackhole (RTBH) host route. Each has a stable
//! [`RouteKey`] (what the router indexes it by), so announcing the same
//! key again replaces the route and withdrawing needs only the key.

use std::{fmt, net::IpAddr};

use ipnet::IpNet;
use serde::{Serialize, Serializer};

use super::{
    capability::Family,
    flowspec::{Action, ActionError, FlowSpec, FlowSpecError, IpFamily},
};

/// A route the speaker can announce (serializable, e.g. to persist the
/// active mitigations; a deserialized rule is checked again).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum Route {
    /// A Flow Spec rule (RFC 8955/8956) and what the router does with
    /// matching traffic.
    FlowSpec {
        rule: FlowSpec,
        actions: Vec<Action>,
    },
    /// A /32 or /128 tagged BLACKHOLE (RFC 7999).
    Blackhole { prefix: IpNet },
}

/// The identity of a route at the router: the flow spec NLRI, or the
/// blackholed prefix.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteKey {
    FlowSpec { family: IpFamily, nlri: Vec<u8> },
    Blackhole(IpNet),
}

impl RouteKey {
    pub fn family(&self) -> Family {
        match self {
            Self::FlowSpec {
                family: IpFamily::Ipv4,
                ..
            } => Family::Ipv4FlowSpec,
            Self::FlowSpec {
                family: IpFamily::Ipv6,
                ..
            } => Family::Ipv6FlowSpec,
            Self::Blackhole(IpNet::V4(_)) => Family::Ipv4Unicast,
            Self::Blackhole(IpNet::V6(_)) => Family::Ipv6Unicast,
        }
    }
}

impl fmt::Display for RouteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FlowSpec { family, nlri } => match FlowSpec::decode_nlri(*family, nlri) {
                Ok((rule, _)) => write!(f, "{rule}"),
                Err(_) => write!(f, "flow spec {nlri:02x?}"),
            },
            Self::Blackhole(p) => write!(f, "blackhole {p}"),
        }
    }
}

impl Serialize for RouteKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A route that must never be sent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RouteError {
    #[error(transparent)]
    FlowSpec(#[from] FlowSpecError),
    #[error(transparent)]
    Action(#[from] ActionError),
    #[error("a flow spec route needs at least one action")]
    NoAction,
    #[error("the rule has no destination prefix; refusing a rule that could match any network")]
    NoDestination,
    #[error("{0} is outside the networks the speaker may announce for (announce_within)")]
    OutsideNetworks(String),
    #[error("a blackhole must be a host route (/32 or /128), not {0}")]
    BlackholeNotHost(IpNet),
    #[error("blackhole {0} has bits set past its length")]
    BlackholeHostBits(IpNet),
    #[error("the UPDATE for this route did not decode back to it: {0}")]
    EncodingCheck(String),
}

impl Route {
    /// A flow spec route; the actions are checked (valid, one per kind).
    pub fn flowspec(rule: FlowSpec, actions: Vec<Action>) -> Result<Self, RouteError> {
        if actions.is_empty() {
            return Err(RouteError::NoAction);
        }
        Action::check_set(&actions)?;
        Ok(Self::FlowSpec { rule, actions })
    }

    /// A blackhole for one address.
    pub fn blackhole(addr: IpAddr) -> Self {
        Self::Blackhole {
            prefix: IpNet::from(addr),
        }
    }

    pub fn key(&self) -> RouteKey {
        match self {
            Self::FlowSpec { rule, .. } => RouteKey::FlowSpec {
                family: rule.family(),
                nlri: rule.encode_nlri(),
            },
            Self::Blackhole { prefix } => RouteKey::Blackhole(*prefix),
        }
    }

    pub fn family(&self) -> Family {
        self.key().family()
    }

    /// Route-level checks, independent of any peer: well formed, and inside
    /// the operator's own networks (`announce_within`).
    pub fn check(&self, announce_within: &[IpNet]) -> Result<(), RouteError> {
        match self {
            Self::FlowSpec { rule, actions } => {
                if actions.is_empty() {
                    return Err(RouteError::NoAction);
                }
                Action::check_set(actions)?;
                let Some(dst) = rule.destination() else {
                    return Err(RouteError::NoDestination);
                };
                if !rule.destination_within(announce_within) {
                    return Err(RouteError::OutsideNetworks(dst.to_string()));
                }
            }
            Self::Blackhole { prefix } => {
                if prefix.prefix_len() != prefix.max_prefix_len() {
                    return Err(RouteError::BlackholeNotHost(*prefix));
                }
                if prefix.addr() != prefix.network() {
                    return Err(RouteError::BlackholeHostBits(*prefix));
                }
                if !announce_within.iter().any(|n| n.contains(prefix)) {
                    return Err(RouteError::OutsideNetworks(prefix.to_string()));
                }
            }
        }
        Ok(())
    }
}

impl fmt::Display for Route {
    /// E.g. `flow4 { dst 192.0.2.1/32; proto ==17 } then discard`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FlowSpec { rule, actions } => {
                write!(f, "{rule} then ")?;
                for (i, a) in actions.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{a}")?;
                }
                Ok(())
            }
            Self::Blackhole { prefix } => write!(f, "blackhole {prefix}"),
        }
    }
}
