//! Router dialects: what one router's Flow Spec implementation takes, and
//! [`adapt()`], which turns a rule into the best rule that router accepts, or
//! refuses it with a reason (the caller then falls back, e.g. to RTBH).
//!
//! A [`Dialect`] says which families (RFC 8955 IPv4, RFC 8956 IPv6), which
//! components (RFC 8955 §4.2.2, RFC 8956 §3), which numeric operators
//! (RFC 8955 §4.2.1.1), whether IPv6 prefix offsets (RFC 8956 §3.1) and the
//! flow label (RFC 8956 §3.7), which actions (RFC 8955 §7) and which redirect
//! encodings (RFC 8955 §7.4: 0x8008 2-octet AS, 0x8108 IPv4, 0x8208 4-octet
//! AS) a router takes. Built-in [`Profile`]s come from each vendor's public
//! documentation (the page is cited on the profile); where that page says
//! nothing about a feature the profile leaves it off, so we never send what a
//! router was not documented to take. Per-peer overrides in
//! `[bgp.peers.flowspec]` change single features on top of a profile.
//!
//! Adaptation never widens a rule past the victim: the destination prefix
//! is never dropped or changed. Dropping any other component widens the
//! rule (it then matches more of the victim's traffic); that is left to the
//! caller's [`Widening`] judge, which knows the policy's coverage and
//! normal-traffic limits; without one, such a rule is refused.
//!
//! This file holds what a dialect is and why a rule is refused;
//! `profile.rs` has the built-in tables, `adapt.rs` the adaptation of a
//! rule, with `operators.rs` (numeric terms) and `action.rs` (actions)
//! beside it.

mod action;
mod adapt;
mod operators;
mod profile;

use std::fmt;

use serde::{Deserialize, Serialize};

use super::flowspec::{Action, ActionKind, ComponentKind, FlowSpec, IpFamily};

pub use adapt::{Adapted, Change, NoWidening, Widening, adapt};

/// The built-in profiles, named as in the config (`flowspec.dialect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// Everything we can encode (the behaviour before dialects existed).
    #[default]
    Generic,
    /// IP Infusion OcNOS.
    Ocnos,
    /// Juniper Junos OS.
    Junos,
    /// Cisco IOS XR.
    Iosxr,
    /// Arista EOS.
    Eos,
    /// Nokia SR OS.
    Sros,
    /// FRRouting bgpd.
    Frr,
    /// BIRD 2.
    Bird,
    /// GoBGP.
    Gobgp,
}

impl Profile {
    pub const ALL: [Profile; 9] = [
        Self::Generic,
        Self::Ocnos,
        Self::Junos,
        Self::Iosxr,
        Self::Eos,
        Self::Sros,
        Self::Frr,
        Self::Bird,
        Self::Gobgp,
    ];
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&serde_name(self))
    }
}

/// The extended community a redirect travels in (RFC 8955 §7.4, which
/// took over RFC 7674's encodings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RedirectEncoding {
    /// 0x8008: 2-octet AS, 4-octet local administrator.
    As2,
    /// 0x8108: IPv4 address, 2-octet local administrator.
    Ipv4,
    /// 0x8208: 4-octet AS, 2-octet local administrator.
    As4,
}

impl RedirectEncoding {
    pub const ALL: [RedirectEncoding; 3] = [Self::As2, Self::Ipv4, Self::As4];

    pub(super) fn of(action: &Action) -> Option<Self> {
        match action {
            Action::RedirectAs2 { .. } => Some(Self::As2),
            Action::RedirectIpv4 { .. } => Some(Self::Ipv4),
            Action::RedirectAs4 { .. } => Some(Self::As4),
            _ => None,
        }
    }
}

impl fmt::Display for RedirectEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&serde_name(self))
    }
}

/// Which numeric operators (RFC 8955 §4.2.1.1) a router takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operators {
    /// Any combination of lt/gt/eq bits, AND and OR.
    #[default]
    All,
    /// `==` values and inclusive ranges (`>=`/`>` AND `<=`/`<`), ORed.
    EqAndRanges,
    /// Only `==` values, ORed (a small range is expanded into values).
    Eq,
}

/// Ranges up to this many values are rewritten as `==` lists for routers
/// that take only `==`; longer ones are refused.
pub const MAX_EXPANDED_VALUES: u64 = 16;

/// What one router's Flow Spec implementation takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dialect {
    pub profile: Profile,
    /// IPv4 Flow Spec (RFC 8955).
    pub ipv4: bool,
    /// IPv6 Flow Spec (RFC 8956).
    pub ipv6: bool,
    /// Components taken; `flow-label` is in it exactly when the flow label
    /// (RFC 8956 §3.7) is.
    pub components: Vec<ComponentKind>,
    pub operators: Operators,
    /// Components matched on a single `==` value only (for `ip-protocol`,
    /// also the pair tcp, udp); a longer list is a component the router
    /// cannot match.
    pub single_value: Vec<ComponentKind>,
    /// The fragment bits (RFC 8955 §4.2.2.12: DF 0x01, IsF 0x02, FF 0x04,
    /// LF 0x08) the router can match.
    pub fragment_bits: u16,
    /// IPv6 prefix offsets other than 0 (RFC 8956 §3.1).
    pub ipv6_offsets: bool,
    /// Actions taken; `discard` is traffic-rate-bytes 0 (RFC 8955 §7.1).
    pub actions: Vec<ActionKind>,
    /// Redirect encodings taken (with `redirect` in `actions`).
    pub redirect: Vec<RedirectEncoding>,
    /// The most components in one rule, where documented.
    pub max_components: Option<usize>,
    /// Where the profile's facts come from.
    pub source: &'static str,
}

/// DF, IsF, FF and LF.
pub const ALL_FRAGMENT_BITS: u16 = 0x0f;

impl Dialect {
    /// Whether the router takes rules of `family`.
    pub fn family(&self, family: IpFamily) -> bool {
        match family {
            IpFamily::Ipv4 => self.ipv4,
            IpFamily::Ipv6 => self.ipv6,
        }
    }

    pub fn component(&self, kind: ComponentKind) -> bool {
        self.components.contains(&kind)
    }

    pub fn flow_label(&self) -> bool {
        self.component(ComponentKind::FlowLabel)
    }

    /// Turns the flow label on or off (it is kept in `components`).
    pub fn set_flow_label(&mut self, on: bool) {
        self.components.retain(|&k| k != ComponentKind::FlowLabel);
        if on {
            self.components.push(ComponentKind::FlowLabel);
        }
    }

    pub fn action(&self, kind: ActionKind) -> bool {
        self.actions.contains(&kind)
    }

    /// Whether `rule` with `actions` goes out exactly as it is.
    pub fn accepts(&self, rule: &FlowSpec, actions: &[Action]) -> Result<(), Refusal> {
        let adapted = adapt(rule, actions, self, &NoWidening)?;
        if adapted.changes.is_empty() {
            Ok(())
        } else {
            Err(Refusal::NeedsAdapting {
                changes: adapted.changes.iter().map(ToString::to_string).collect(),
            })
        }
    }
}

/// Why a router cannot be given a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "kebab-case", tag = "refusal")]
pub enum Refusal {
    #[error("the {profile} dialect has no {} flow spec", family_name(*family))]
    Family { profile: Profile, family: IpFamily },
    #[error("the {profile} dialect does not take a {component} component")]
    Destination {
        profile: Profile,
        component: ComponentKind,
    },
    #[error(
        "the {profile} dialect does not take IPv6 prefix offsets ({component} offset {offset})"
    )]
    Offset {
        profile: Profile,
        component: ComponentKind,
        offset: u8,
    },
    #[error(
        "dropping {component} (the {profile} dialect does not take it) would widen the rule: {why}"
    )]
    Widening {
        profile: Profile,
        component: ComponentKind,
        why: String,
    },
    #[error("the {profile} dialect does not take the operators of this {component} match")]
    Operators {
        profile: Profile,
        component: ComponentKind,
    },
    #[error("the {profile} dialect takes at most {max} components")]
    TooManyComponents { profile: Profile, max: usize },
    #[error("the {profile} dialect does not take action {action}, and no equivalent is accepted")]
    Action {
        profile: Profile,
        action: ActionKind,
    },
    #[error(
        "the {profile} dialect does not take redirect {encoding}, and {target} has no accepted encoding"
    )]
    Redirect {
        profile: Profile,
        encoding: RedirectEncoding,
        target: String,
    },
    #[error("the rule would have to be adapted for this router: {}", changes.join("; "))]
    NeedsAdapting { changes: Vec<String> },
    #[error("the adapted rule is not valid: {message}")]
    Invalid { message: String },
}

fn family_name(family: IpFamily) -> &'static str {
    match family {
        IpFamily::Ipv4 => "IPv4",
        IpFamily::Ipv6 => "IPv6",
    }
}

/// The name serde gives a unit variant (as written in the config).
fn serde_name(value: &impl Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
