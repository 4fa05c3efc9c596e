//! The match terms of a component: numeric operators (RFC 8955 §4.2.1.1)
//! and bitmask operators (RFC 8955 §4.2.1.2), with the TCP flag and
//! fragment bits they test.

use serde::{Deserialize, Serialize};

/// The lt/gt/eq bits of a numeric operator (RFC 8955 §4.2.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NumericOp {
    /// Never matches (all three bits clear).
    False,
    Eq,
    Gt,
    Ge,
    Lt,
    Le,
    Ne,
    /// Always matches (all three bits set).
    True,
}

impl NumericOp {
    pub(super) fn bits(self) -> u8 {
        match self {
            Self::False => 0b000,
            Self::Eq => 0b001,
            Self::Gt => 0b010,
            Self::Ge => 0b011,
            Self::Lt => 0b100,
            Self::Le => 0b101,
            Self::Ne => 0b110,
            Self::True => 0b111,
        }
    }

    pub(super) fn from_bits(bits: u8) -> Self {
        match bits & 0b111 {
            0b000 => Self::False,
            0b001 => Self::Eq,
            0b010 => Self::Gt,
            0b011 => Self::Ge,
            0b100 => Self::Lt,
            0b101 => Self::Le,
            0b110 => Self::Ne,
            _ => Self::True,
        }
    }

    pub(super) fn symbol(self) -> &'static str {
        match self {
            Self::False => "false",
            Self::Eq => "==",
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Ne => "!=",
            Self::True => "true",
        }
    }
}

/// One `{operator, value}` term of a numeric component (RFC 8955 §4.2.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NumericMatch {
    /// AND with the previous term (else OR); ignored on the first term.
    #[serde(default)]
    pub and: bool,
    pub op: NumericOp,
    pub value: u64,
}

impl NumericMatch {
    /// `== value`, ORed with what precedes.
    pub fn eq(value: u64) -> Self {
        Self {
            and: false,
            op: NumericOp::Eq,
            value,
        }
    }

    /// `op value`, ORed with what precedes.
    pub fn or(op: NumericOp, value: u64) -> Self {
        Self {
            and: false,
            op,
            value,
        }
    }

    /// `op value`, ANDed with what precedes.
    pub fn and(op: NumericOp, value: u64) -> Self {
        Self {
            and: true,
            op,
            value,
        }
    }

    /// An inclusive range `lo..=hi` (two ANDed terms).
    pub fn range(lo: u64, hi: u64) -> [Self; 2] {
        [Self::or(NumericOp::Ge, lo), Self::and(NumericOp::Le, hi)]
    }
}

/// One `{operator, bitmask}` term of a bitmask component (RFC 8955 §4.2.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BitmaskMatch {
    /// AND with the previous term (else OR); ignored on the first term.
    #[serde(default)]
    pub and: bool,
    /// Negate the result.
    #[serde(default)]
    pub not: bool,
    /// `m` bit: all the bits must be set (else any of them).
    #[serde(default)]
    pub all: bool,
    pub bits: u16,
}

impl BitmaskMatch {
    /// Matches when every bit in `bits` is set.
    pub fn all(bits: u16) -> Self {
        Self {
            and: false,
            not: false,
            all: true,
            bits,
        }
    }

    /// Matches when any bit in `bits` is set.
    pub fn any(bits: u16) -> Self {
        Self {
            and: false,
            not: false,
            all: false,
            bits,
        }
    }
}

/// TCP flag bits for [`Component::TcpFlags`](super::Component::TcpFlags) (the TCP header's flags octet).
pub mod tcp_flags {
    pub const FIN: u16 = 0x01;
    pub const SYN: u16 = 0x02;
    pub const RST: u16 = 0x04;
    pub const PSH: u16 = 0x08;
    pub const ACK: u16 = 0x10;
    pub const URG: u16 = 0x20;
    pub const ECE: u16 = 0x40;
    pub const CWR: u16 = 0x80;
}

/// Fragment bits for [`Component::Fragment`](super::Component::Fragment) (RFC 8955 §4.2.2.12).
pub mod fragment {
    /// Don't Fragment (IPv4 only, RFC 8956 §3.6).
    pub const DF: u16 = 0x01;
    /// Is a fragment (other than the first).
    pub const IS_F: u16 = 0x02;
    /// First fragment.
    pub const FF: u16 = 0x04;
    /// Last fragment.
    pub const LF: u16 = 0x08;
}
