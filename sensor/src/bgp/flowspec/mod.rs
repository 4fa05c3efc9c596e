//! Flow Specification rules: the NLRI (RFC 8955 §4, IPv6 per RFC 8956 §3)
//! and the actions, which travel as extended communities (RFC 8955 §7).
//!
//! A [`FlowSpec`] is built from typed [`Component`]s, checked and put in
//! canonical order (strictly increasing type, RFC 8955 §4.2) by
//! [`FlowSpec::new`]; [`FlowSpec::encode_nlri`] writes it and
//! [`FlowSpec::decode_nlri`] reads it back strictly, so every rule we send
//! has been proven to round-trip first (a malformed flow spec NLRI makes
//! the router reset the session, RFC 8955 §10).
//!
//! One file per concern:
//! - `component.rs`: the component types and one component's encoding;
//! - `operator.rs`: numeric and bitmask match terms (RFC 8955 §4.2.1);
//! - `prefix.rs`: prefix components, IPv6 offsets (RFC 8956 §3.1);
//! - `nlri.rs`: the rule as a whole, its NLRI and precedence;
//! - `action.rs`: the actions, as extended communities (RFC 8955 §7).

mod action;
mod component;
mod nlri;
mod operator;
mod prefix;

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use action::{Action, ActionError, ActionKind};
pub use component::{Component, ComponentKind};
pub use nlri::FlowSpec;
pub use operator::{BitmaskMatch, NumericMatch, NumericOp, fragment, tcp_flags};
pub use prefix::FlowPrefix;

use prefix::prefix_precedence;

/// The longest NLRI a length field can carry (RFC 8955 §4.1: 0xfnnn).
pub const MAX_NLRI_LEN: usize = 0x0fff;

/// A rule that cannot be encoded (or bytes that do not decode).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowSpecError {
    #[error("a flow spec needs at least one component")]
    Empty,
    #[error("component {0} appears more than once")]
    DuplicateComponent(ComponentKind),
    #[error("component {0} has no match terms")]
    EmptyMatch(ComponentKind),
    #[error("component {kind}: value {value} is larger than {max}")]
    ValueTooLarge {
        kind: ComponentKind,
        value: u64,
        max: u64,
    },
    #[error("component {0} does not exist for this address family")]
    WrongFamily(ComponentKind),
    #[error("prefix {0} has bits set past its length")]
    HostBits(IpNet),
    #[error("IPv6 prefix offset {offset} must be below the prefix length {len} (RFC 8956 §3.1)")]
    BadOffset { offset: u8, len: u8 },
    #[error("the encoded NLRI is {0} octets; at most {MAX_NLRI_LEN} fit")]
    TooLong(usize),
    #[error("malformed NLRI: {0}")]
    Malformed(&'static str),
}

/// IPv4 (RFC 8955) or IPv6 (RFC 8956) flow specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpFamily {
    Ipv4,
    Ipv6,
}

/// The name serde gives a unit variant (its `rename_all` form), so the
/// text shown to operators is the one they write in the config.
fn serde_name(value: &impl Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The address family of an IP address, for callers building rules.
pub fn family_of(addr: IpAddr) -> IpFamily {
    match addr {
        IpAddr::V4(_) => IpFamily::Ipv4,
        IpAddr::V6(_) => IpFamily::Ipv6,
    }
}
