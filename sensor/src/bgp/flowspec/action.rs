//! Flow spec actions (RFC 8955 §7): traffic-rate, traffic-action,
//! redirect and traffic-marking, each carried as one extended community.

use std::{fmt, net::Ipv4Addr};

use serde::{Deserialize, Serialize};

use super::serde_name;
use crate::bgp::attribute::ExtendedCommunity;

/// Flow spec actions (RFC 8955 §7, RFC 8956 §6 for the IPv6 redirect
/// which we do not send), each one extended community.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "action")]
pub enum Action {
    /// traffic-rate-bytes 0x8006 (§7.1): police to `rate` bytes/s; 0 discards.
    TrafficRateBytes { id: u16, rate: f32 },
    /// traffic-rate-packets 0x800c (§7.2): police to `rate` packets/s.
    TrafficRatePackets { id: u16, rate: f32 },
    /// traffic-action 0x8007 (§7.3): S (sample) and T (terminal) bits.
    TrafficAction { sample: bool, terminal: bool },
    /// rt-redirect AS-2octet 0x8008 (§7.4).
    RedirectAs2 { asn: u16, local: u32 },
    /// rt-redirect IPv4 0x8108 (§7.4).
    RedirectIpv4 { addr: Ipv4Addr, local: u16 },
    /// rt-redirect AS-4octet 0x8208 (§7.4).
    RedirectAs4 { asn: u32, local: u16 },
    /// traffic-marking 0x8009 (§7.5): set DSCP.
    TrafficMarking { dscp: u8 },
}

/// The kinds of [`Action`], named as in the config file; `discard` is
/// traffic-rate-bytes with rate 0, listed apart because routers (OcNOS)
/// often take `drop` but no policer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionKind {
    Discard,
    TrafficRateBytes,
    TrafficRatePackets,
    TrafficAction,
    Redirect,
    TrafficMarking,
}

impl ActionKind {
    pub const ALL: [ActionKind; 6] = [
        Self::Discard,
        Self::TrafficRateBytes,
        Self::TrafficRatePackets,
        Self::TrafficAction,
        Self::Redirect,
        Self::TrafficMarking,
    ];
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&serde_name(self))
    }
}

/// An action that cannot be sent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ActionError {
    #[error("rate {0} is not a finite non-negative number")]
    BadRate(f32),
    #[error("DSCP {0} is larger than 63")]
    BadDscp(u8),
    #[error("two actions of kind {0}")]
    Duplicate(&'static str),
    #[error("extended community {0:02x?} is not a flow spec action")]
    NotAnAction([u8; 8]),
}

impl Action {
    /// Drop everything the rule matches (traffic-rate-bytes 0).
    pub const DISCARD: Action = Action::TrafficRateBytes { id: 0, rate: 0.0 };

    pub fn kind(&self) -> ActionKind {
        match self {
            Self::TrafficRateBytes { rate, .. } if *rate == 0.0 => ActionKind::Discard,
            Self::TrafficRateBytes { .. } => ActionKind::TrafficRateBytes,
            Self::TrafficRatePackets { .. } => ActionKind::TrafficRatePackets,
            Self::TrafficAction { .. } => ActionKind::TrafficAction,
            Self::RedirectAs2 { .. } | Self::RedirectIpv4 { .. } | Self::RedirectAs4 { .. } => {
                ActionKind::Redirect
            }
            Self::TrafficMarking { .. } => ActionKind::TrafficMarking,
        }
    }

    /// The extended community type/subtype: at most one action per value
    /// goes in a route (RFC 8955 §7: the same type twice is ambiguous).
    fn slot(&self) -> &'static str {
        match self {
            Self::TrafficRateBytes { .. } => "traffic-rate-bytes",
            Self::TrafficRatePackets { .. } => "traffic-rate-packets",
            Self::TrafficAction { .. } => "traffic-action",
            Self::RedirectAs2 { .. } | Self::RedirectIpv4 { .. } | Self::RedirectAs4 { .. } => {
                "redirect"
            }
            Self::TrafficMarking { .. } => "traffic-marking",
        }
    }

    pub fn check(&self) -> Result<(), ActionError> {
        match *self {
            Self::TrafficRateBytes { rate, .. } | Self::TrafficRatePackets { rate, .. }
                if !(rate.is_finite() && rate >= 0.0) =>
            {
                Err(ActionError::BadRate(rate))
            }
            Self::TrafficMarking { dscp } if dscp > 63 => Err(ActionError::BadDscp(dscp)),
            _ => Ok(()),
        }
    }

    /// Checks a set of actions: each valid, at most one per kind.
    pub fn check_set(actions: &[Action]) -> Result<(), ActionError> {
        for (i, a) in actions.iter().enumerate() {
            a.check()?;
            if actions[..i].iter().any(|b| b.slot() == a.slot()) {
                return Err(ActionError::Duplicate(a.slot()));
            }
        }
        Ok(())
    }

    /// The extended community carrying this action (RFC 8955 §7).
    pub fn to_community(&self) -> ExtendedCommunity {
        let mut b = [0u8; 8];
        match *self {
            Self::TrafficRateBytes { id, rate } | Self::TrafficRatePackets { id, rate } => {
                b[0] = 0x80;
                b[1] = if matches!(self, Self::TrafficRateBytes { .. }) {
                    0x06
                } else {
                    0x0c
                };
                b[2..4].copy_from_slice(&id.to_be_bytes());
                b[4..8].copy_from_slice(&rate.to_be_bytes());
            }
            Self::TrafficAction { sample, terminal } => {
                b[0] = 0x80;
                b[1] = 0x07;
                b[7] = u8::from(sample) << 1 | u8::from(terminal);
            }
            Self::RedirectAs2 { asn, local } => {
                b[0] = 0x80;
                b[1] = 0x08;
                b[2..4].copy_from_slice(&asn.to_be_bytes());
                b[4..8].copy_from_slice(&local.to_be_bytes());
            }
            Self::RedirectIpv4 { addr, local } => {
                b[0] = 0x81;
                b[1] = 0x08;
                b[2..6].copy_from_slice(&addr.octets());
                b[6..8].copy_from_slice(&local.to_be_bytes());
            }
            Self::RedirectAs4 { asn, local } => {
                b[0] = 0x82;
                b[1] = 0x08;
                b[2..6].copy_from_slice(&asn.to_be_bytes());
                b[6..8].copy_from_slice(&local.to_be_bytes());
            }
            Self::TrafficMarking { dscp } => {
                b[0] = 0x80;
                b[1] = 0x09;
                b[7] = dscp & 0x3f;
            }
        }
        ExtendedCommunity(b)
    }

    /// Reads an action back from its extended community.
    pub fn from_community(c: ExtendedCommunity) -> Result<Self, ActionError> {
        let b = c.0;
        let u16_at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Ok(match (b[0], b[1]) {
            (0x80, 0x06) => Self::TrafficRateBytes {
                id: u16_at(2),
                rate: f32::from_bits(u32_at(4)),
            },
            (0x80, 0x0c) => Self::TrafficRatePackets {
                id: u16_at(2),
                rate: f32::from_bits(u32_at(4)),
            },
            (0x80, 0x07) => Self::TrafficAction {
                sample: b[7] & 0x02 != 0,
                terminal: b[7] & 0x01 != 0,
            },
            (0x80, 0x08) => Self::RedirectAs2 {
                asn: u16_at(2),
                local: u32_at(4),
            },
            (0x81, 0x08) => Self::RedirectIpv4 {
                addr: Ipv4Addr::from(u32_at(2)),
                local: u16_at(6),
            },
            (0x82, 0x08) => Self::RedirectAs4 {
                asn: u32_at(2),
                local: u16_at(6),
            },
            (0x80, 0x09) => Self::TrafficMarking { dscp: b[7] & 0x3f },
            _ => return Err(ActionError::NotAnAction(b)),
        })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TrafficRateBytes { rate: 0.0, .. } => f.write_str("discard"),
            Self::TrafficRateBytes { rate, .. } => write!(f, "rate {rate} bytes/s"),
            Self::TrafficRatePackets { rate, .. } => write!(f, "rate {rate} packets/s"),
            Self::TrafficAction { sample, terminal } => {
                write!(f, "action sample={sample} terminal={terminal}")
            }
            Self::RedirectAs2 { asn, local } => write!(f, "redirect {asn}:{local}"),
            Self::RedirectIpv4 { addr, local } => write!(f, "redirect {addr}:{local}"),
            Self::RedirectAs4 { asn, local } => write!(f, "redirect {asn}:{local}"),
            Self::TrafficMarking { dscp } => write!(f, "mark dscp {dscp}"),
        }
    }
}
