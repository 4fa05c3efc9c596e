//! Flow Specification rules: the NLRI (RFC 8955 §4, IPv6 per RFC 8956 §3)
//! and the actions, which travel as extended communities (RFC 8955 §7).
//!
//! A [`FlowSpec`] is built from typed [`Component`]s, checked and put in
//! canonical order (strictly increasing type, RFC 8955 §4.2) by
//! [`FlowSpec::new`]; [`FlowSpec::encode_nlri`] writes it and
//! [`FlowSpec::decode_nlri`] reads it back strictly, so every rule we send
//! has been proven to round-trip first (a malformed flow spec NLRI makes
//! the router reset the session, RFC 8955 §10).

use std::{
    cmp::Ordering,
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use super::attribute::ExtendedCommunity;

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

/// The component types of RFC 8955 §4.2.2 and RFC 8956 §3 (IANA "Flow
/// Spec Component Types"), named as in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ComponentKind {
    DestinationPrefix = 1,
    SourcePrefix = 2,
    IpProtocol = 3,
    Port = 4,
    DestinationPort = 5,
    SourcePort = 6,
    IcmpType = 7,
    IcmpCode = 8,
    TcpFlags = 9,
    PacketLength = 10,
    Dscp = 11,
    Fragment = 12,
    FlowLabel = 13,
}

impl ComponentKind {
    pub const ALL: [ComponentKind; 13] = [
        Self::DestinationPrefix,
        Self::SourcePrefix,
        Self::IpProtocol,
        Self::Port,
        Self::DestinationPort,
        Self::SourcePort,
        Self::IcmpType,
        Self::IcmpCode,
        Self::TcpFlags,
        Self::PacketLength,
        Self::Dscp,
        Self::Fragment,
        Self::FlowLabel,
    ];

    /// The type octet on the wire.
    pub fn code(self) -> u8 {
        self as u8
    }

    fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code).wrapping_sub(1)).copied()
    }

    /// The largest value a numeric term of this component may carry.
    fn max_value(self) -> u64 {
        match self {
            Self::IpProtocol | Self::IcmpType | Self::IcmpCode => 0xff,
            Self::Port | Self::DestinationPort | Self::SourcePort | Self::PacketLength => 0xffff,
            Self::Dscp => 0x3f,
            Self::FlowLabel => 0x000f_ffff,
            Self::TcpFlags => 0xffff,
            // RFC 8955 §4.2.2.12: DF, IsF, FF, LF.
            Self::Fragment => 0x0f,
            Self::DestinationPrefix | Self::SourcePrefix => 0,
        }
    }

    /// Short name used in [`FlowSpec`]'s human form.
    fn short(self) -> &'static str {
        match self {
            Self::DestinationPrefix => "dst",
            Self::SourcePrefix => "src",
            Self::IpProtocol => "proto",
            Self::Port => "port",
            Self::DestinationPort => "dport",
            Self::SourcePort => "sport",
            Self::IcmpType => "icmp-type",
            Self::IcmpCode => "icmp-code",
            Self::TcpFlags => "tcp-flags",
            Self::PacketLength => "length",
            Self::Dscp => "dscp",
            Self::Fragment => "fragment",
            Self::FlowLabel => "flow-label",
        }
    }
}

impl fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&serde_name(self))
    }
}

/// The name serde gives a unit variant (its `rename_all` form), so the
/// text shown to operators is the one they write in the config.
fn serde_name(value: &impl Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

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
    fn bits(self) -> u8 {
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

    fn from_bits(bits: u8) -> Self {
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

    fn symbol(self) -> &'static str {
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

/// TCP flag bits for [`Component::TcpFlags`] (the TCP header's flags octet).
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

/// Fragment bits for [`Component::Fragment`] (RFC 8955 §4.2.2.12).
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

/// A prefix match: IPv4 (RFC 8955 §4.2.2.1) or IPv6 with a bit offset
/// (RFC 8956 §3.1: only bits `offset..len` are compared).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FlowPrefix {
    V4(Ipv4Net),
    V6 { prefix: Ipv6Net, offset: u8 },
}

impl FlowPrefix {
    /// A prefix without offset.
    pub fn new(net: IpNet) -> Self {
        match net {
            IpNet::V4(n) => Self::V4(n),
            IpNet::V6(n) => Self::V6 {
                prefix: n,
                offset: 0,
            },
        }
    }

    pub fn family(&self) -> IpFamily {
        match self {
            Self::V4(_) => IpFamily::Ipv4,
            Self::V6 { .. } => IpFamily::Ipv6,
        }
    }

    /// The prefix (bits before an IPv6 offset are zero).
    pub fn net(&self) -> IpNet {
        match *self {
            Self::V4(n) => IpNet::V4(n),
            Self::V6 { prefix, .. } => IpNet::V6(prefix),
        }
    }

    fn check(&self) -> Result<(), FlowSpecError> {
        let net = self.net();
        if net.addr() != net.network() {
            return Err(FlowSpecError::HostBits(net));
        }
        if let Self::V6 { prefix, offset } = *self {
            let len = prefix.prefix_len();
            // RFC 8956 §3.1: len = offset = 0 matches everything; otherwise
            // offset < len.
            if offset_ok(offset, len) {
                // The skipped bits carry nothing: they must be zero so the
                // rule round-trips.
                let skipped = u128::from(prefix.addr()) & mask128(offset);
                if skipped != 0 {
                    return Err(FlowSpecError::HostBits(net));
                }
            } else {
                return Err(FlowSpecError::BadOffset { offset, len });
            }
        }
        Ok(())
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Self::V4(n) => {
                let len = n.prefix_len();
                out.push(len);
                out.extend_from_slice(&n.addr().octets()[..usize::from(len).div_ceil(8)]);
            }
            Self::V6 { prefix, offset } => {
                let len = prefix.prefix_len();
                out.push(len);
                out.push(offset);
                // The pattern is bits offset..len, shifted to start at bit 0.
                let pattern = (u128::from(prefix.addr()) << offset).to_be_bytes();
                out.extend_from_slice(&pattern[..usize::from(len - offset).div_ceil(8)]);
            }
        }
    }

    fn decode(family: IpFamily, bytes: &[u8]) -> Result<(Self, usize), FlowSpecError> {
        let len = *bytes
            .first()
            .ok_or(FlowSpecError::Malformed("prefix length missing"))?;
        match family {
            IpFamily::Ipv4 => {
                if len > 32 {
                    return Err(FlowSpecError::Malformed("IPv4 prefix longer than 32"));
                }
                let n = usize::from(len).div_ceil(8);
                let raw = bytes
                    .get(1..1 + n)
                    .ok_or(FlowSpecError::Malformed("prefix truncated"))?;
                let mut octets = [0u8; 4];
                octets[..n].copy_from_slice(raw);
                let addr = u32::from_be_bytes(octets) & mask32(len);
                let net = Ipv4Net::new(Ipv4Addr::from(addr), len)
                    .map_err(|_| FlowSpecError::Malformed("prefix length"))?;
                Ok((Self::V4(net), 1 + n))
            }
            IpFamily::Ipv6 => {
                let offset = *bytes
                    .get(1)
                    .ok_or(FlowSpecError::Malformed("prefix offset missing"))?;
                if len > 128 || !offset_ok(offset, len) {
                    return Err(FlowSpecError::Malformed("IPv6 prefix length/offset"));
                }
                let n = usize::from(len - offset).div_ceil(8);
                let raw = bytes
                    .get(2..2 + n)
                    .ok_or(FlowSpecError::Malformed("prefix truncated"))?;
                let mut octets = [0u8; 16];
                octets[..n].copy_from_slice(raw);
                // Padding bits are ignored on decoding (RFC 8956 §3.1).
                let pattern = u128::from_be_bytes(octets) & mask128(len - offset);
                let addr = pattern.checked_shr(u32::from(offset)).unwrap_or(0);
                let prefix = Ipv6Net::new(Ipv6Addr::from(addr), len)
                    .map_err(|_| FlowSpecError::Malformed("prefix length"))?;
                Ok((Self::V6 { prefix, offset }, 2 + n))
            }
        }
    }
}

/// Prefix precedence (RFC 8955 §5.1; RFC 8956 §4 for offsets: the lower
/// offset first): over the common length the lower value wins, else the
/// longer prefix.
fn prefix_precedence(a: &FlowPrefix, b: &FlowPrefix) -> Ordering {
    let (oa, ob) = match (a, b) {
        (FlowPrefix::V6 { offset: x, .. }, FlowPrefix::V6 { offset: y, .. }) => (*x, *y),
        _ => (0, 0),
    };
    if oa != ob {
        return oa.cmp(&ob);
    }
    let (na, nb) = (a.net(), b.net());
    let common = na.prefix_len().min(nb.prefix_len());
    let bits = |n: IpNet| -> u128 {
        match n.network() {
            IpAddr::V4(x) => u128::from(u32::from(x)) << 96,
            IpAddr::V6(x) => u128::from(x),
        }
    };
    let mask = mask128(common);
    (bits(na) & mask)
        .cmp(&(bits(nb) & mask))
        .then_with(|| nb.prefix_len().cmp(&na.prefix_len()))
}

/// RFC 8956 §3.1: "If length = 0 and offset = 0, this component matches
/// every address; otherwise, length MUST be in the range offset < length".
fn offset_ok(offset: u8, len: u8) -> bool {
    (offset == 0 && len == 0) || (offset < len && len <= 128)
}

fn mask32(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn mask128(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

impl fmt::Display for FlowPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(n) => write!(f, "{n}"),
            Self::V6 { prefix, offset: 0 } => write!(f, "{prefix}"),
            Self::V6 { prefix, offset } => write!(f, "{prefix} offset {offset}"),
        }
    }
}

/// One component of a flow specification (RFC 8955 §4.2.2, RFC 8956 §3).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Component {
    DestinationPrefix(FlowPrefix),
    SourcePrefix(FlowPrefix),
    /// IPv4 protocol / IPv6 upper-layer protocol (next header).
    IpProtocol(Vec<NumericMatch>),
    /// Source or destination port.
    Port(Vec<NumericMatch>),
    DestinationPort(Vec<NumericMatch>),
    SourcePort(Vec<NumericMatch>),
    IcmpType(Vec<NumericMatch>),
    IcmpCode(Vec<NumericMatch>),
    TcpFlags(Vec<BitmaskMatch>),
    PacketLength(Vec<NumericMatch>),
    Dscp(Vec<NumericMatch>),
    Fragment(Vec<BitmaskMatch>),
    /// IPv6 only (RFC 8956 §3.7).
    FlowLabel(Vec<NumericMatch>),
}

impl Component {
    pub fn kind(&self) -> ComponentKind {
        match self {
            Self::DestinationPrefix(_) => ComponentKind::DestinationPrefix,
            Self::SourcePrefix(_) => ComponentKind::SourcePrefix,
            Self::IpProtocol(_) => ComponentKind::IpProtocol,
            Self::Port(_) => ComponentKind::Port,
            Self::DestinationPort(_) => ComponentKind::DestinationPort,
            Self::SourcePort(_) => ComponentKind::SourcePort,
            Self::IcmpType(_) => ComponentKind::IcmpType,
            Self::IcmpCode(_) => ComponentKind::IcmpCode,
            Self::TcpFlags(_) => ComponentKind::TcpFlags,
            Self::PacketLength(_) => ComponentKind::PacketLength,
            Self::Dscp(_) => ComponentKind::Dscp,
            Self::Fragment(_) => ComponentKind::Fragment,
            Self::FlowLabel(_) => ComponentKind::FlowLabel,
        }
    }

    fn numeric(&self) -> Option<&[NumericMatch]> {
        match self {
            Self::IpProtocol(m)
            | Self::Port(m)
            | Self::DestinationPort(m)
            | Self::SourcePort(m)
            | Self::IcmpType(m)
            | Self::IcmpCode(m)
            | Self::PacketLength(m)
            | Self::Dscp(m)
            | Self::FlowLabel(m) => Some(m),
            _ => None,
        }
    }

    fn bitmask(&self) -> Option<&[BitmaskMatch]> {
        match self {
            Self::TcpFlags(m) | Self::Fragment(m) => Some(m),
            _ => None,
        }
    }

    fn check(&self, family: IpFamily) -> Result<(), FlowSpecError> {
        let kind = self.kind();
        match self {
            Self::DestinationPrefix(p) | Self::SourcePrefix(p) => {
                if p.family() != family {
                    return Err(FlowSpecError::WrongFamily(kind));
                }
                return p.check();
            }
            Self::FlowLabel(_) if family == IpFamily::Ipv4 => {
                return Err(FlowSpecError::WrongFamily(kind));
            }
            _ => {}
        }
        let mut max = kind.max_value();
        if kind == ComponentKind::Fragment && family == IpFamily::Ipv6 {
            // RFC 8956 §3.6: no DF bit in IPv6.
            max &= !fragment::DF as u64;
        }
        let values: Vec<u64> = match (self.numeric(), self.bitmask()) {
            (Some(m), _) => m.iter().map(|t| t.value).collect(),
            (_, Some(m)) => m.iter().map(|t| u64::from(t.bits)).collect(),
            _ => Vec::new(),
        };
        if values.is_empty() {
            return Err(FlowSpecError::EmptyMatch(kind));
        }
        if let Some(&value) = values.iter().find(|&&v| v & !max != 0 || v > max) {
            return Err(FlowSpecError::ValueTooLarge { kind, value, max });
        }
        Ok(())
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.kind().code());
        match self {
            Self::DestinationPrefix(p) | Self::SourcePrefix(p) => p.encode(out),
            _ => {
                if let Some(terms) = self.numeric() {
                    for (i, t) in terms.iter().enumerate() {
                        let (len_code, bytes) = value_bytes(t.value);
                        let mut op = len_code << 4 | t.op.bits();
                        if i + 1 == terms.len() {
                            op |= 0x80;
                        }
                        if t.and && i > 0 {
                            op |= 0x40;
                        }
                        out.push(op);
                        out.extend_from_slice(&bytes);
                    }
                } else if let Some(terms) = self.bitmask() {
                    for (i, t) in terms.iter().enumerate() {
                        let (len_code, bytes) = value_bytes(u64::from(t.bits));
                        let mut op = len_code << 4;
                        if i + 1 == terms.len() {
                            op |= 0x80;
                        }
                        if t.and && i > 0 {
                            op |= 0x40;
                        }
                        if t.not {
                            op |= 0x02;
                        }
                        if t.all {
                            op |= 0x01;
                        }
                        out.push(op);
                        out.extend_from_slice(&bytes);
                    }
                }
            }
        }
    }

    fn decode(family: IpFamily, bytes: &[u8]) -> Result<(Self, usize), FlowSpecError> {
        let code = bytes[0];
        let kind = ComponentKind::from_code(code)
            .ok_or(FlowSpecError::Malformed("unknown component type"))?;
        let body = &bytes[1..];
        if let ComponentKind::DestinationPrefix | ComponentKind::SourcePrefix = kind {
            let (p, n) = FlowPrefix::decode(family, body)?;
            let c = if kind == ComponentKind::DestinationPrefix {
                Self::DestinationPrefix(p)
            } else {
                Self::SourcePrefix(p)
            };
            return Ok((c, 1 + n));
        }
        // Operator/value pairs up to the one with the end-of-list bit.
        let mut at = 0;
        let mut numeric = Vec::new();
        let mut bitmask = Vec::new();
        let is_bitmask = matches!(kind, ComponentKind::TcpFlags | ComponentKind::Fragment);
        loop {
            let op = *body
                .get(at)
                .ok_or(FlowSpecError::Malformed("operator list not terminated"))?;
            let size = 1usize << ((op >> 4) & 0x3);
            let raw = body
                .get(at + 1..at + 1 + size)
                .ok_or(FlowSpecError::Malformed("operator value truncated"))?;
            let value = raw.iter().fold(0u64, |v, &b| v << 8 | u64::from(b));
            let and = op & 0x40 != 0;
            let first = numeric.is_empty() && bitmask.is_empty();
            if first && and {
                return Err(FlowSpecError::Malformed("AND bit on the first term"));
            }
            if is_bitmask {
                if op & 0x0c != 0 {
                    return Err(FlowSpecError::Malformed("reserved bitmask operator bits"));
                }
                let bits = u16::try_from(value)
                    .map_err(|_| FlowSpecError::Malformed("bitmask wider than 2 octets"))?;
                bitmask.push(BitmaskMatch {
                    and,
                    not: op & 0x02 != 0,
                    all: op & 0x01 != 0,
                    bits,
                });
            } else {
                if op & 0x08 != 0 {
                    return Err(FlowSpecError::Malformed("reserved numeric operator bit"));
                }
                numeric.push(NumericMatch {
                    and,
                    op: NumericOp::from_bits(op),
                    value,
                });
            }
            at += 1 + size;
            if op & 0x80 != 0 {
                break;
            }
        }
        let c = match kind {
            ComponentKind::IpProtocol => Self::IpProtocol(numeric),
            ComponentKind::Port => Self::Port(numeric),
            ComponentKind::DestinationPort => Self::DestinationPort(numeric),
            ComponentKind::SourcePort => Self::SourcePort(numeric),
            ComponentKind::IcmpType => Self::IcmpType(numeric),
            ComponentKind::IcmpCode => Self::IcmpCode(numeric),
            ComponentKind::TcpFlags => Self::TcpFlags(bitmask),
            ComponentKind::PacketLength => Self::PacketLength(numeric),
            ComponentKind::Dscp => Self::Dscp(numeric),
            ComponentKind::Fragment => Self::Fragment(bitmask),
            ComponentKind::FlowLabel => Self::FlowLabel(numeric),
            ComponentKind::DestinationPrefix | ComponentKind::SourcePrefix => unreachable!(),
        };
        c.check(family)?;
        Ok((c, 1 + at))
    }
}

/// The shortest of the 1/2/4/8-octet encodings that holds `value`
/// (RFC 8955 §4.2.1.1 `len` field), as (len code, big-endian octets).
fn value_bytes(value: u64) -> (u8, Vec<u8>) {
    let be = value.to_be_bytes();
    if value <= 0xff {
        (0, be[7..].to_vec())
    } else if value <= 0xffff {
        (1, be[6..].to_vec())
    } else if value <= 0xffff_ffff {
        (2, be[4..].to_vec())
    } else {
        (3, be.to_vec())
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind().short())?;
        f.write_str(" ")?;
        match self {
            Self::DestinationPrefix(p) | Self::SourcePrefix(p) => write!(f, "{p}"),
            _ => {
                if let Some(terms) = self.numeric() {
                    for (i, t) in terms.iter().enumerate() {
                        if i > 0 {
                            f.write_str(if t.and { " && " } else { " || " })?;
                        }
                        match t.op {
                            NumericOp::True | NumericOp::False => f.write_str(t.op.symbol())?,
                            op => write!(f, "{}{}", op.symbol(), t.value)?,
                        }
                    }
                } else if let Some(terms) = self.bitmask() {
                    for (i, t) in terms.iter().enumerate() {
                        if i > 0 {
                            f.write_str(if t.and { " && " } else { " || " })?;
                        }
                        let not = if t.not { "!" } else { "" };
                        let how = if t.all { "all" } else { "any" };
                        write!(f, "{not}{how}(0x{:x})", t.bits)?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// A flow specification: its components in canonical order. Deserializing
/// goes through [`FlowSpec::new`], so a stored rule is checked again.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "FlowSpecFields")]
pub struct FlowSpec {
    family: IpFamily,
    components: Vec<Component>,
}

/// The serialized form of [`FlowSpec`], before its checks.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlowSpecFields {
    family: IpFamily,
    components: Vec<Component>,
}

impl TryFrom<FlowSpecFields> for FlowSpec {
    type Error = FlowSpecError;
    fn try_from(f: FlowSpecFields) -> Result<Self, FlowSpecError> {
        Self::new(f.family, f.components)
    }
}

impl FlowSpec {
    /// Checks the components and sorts them by type (RFC 8955 §4.2: "strict
    /// type ordering"); each type may appear once.
    pub fn new(family: IpFamily, mut components: Vec<Component>) -> Result<Self, FlowSpecError> {
        if components.is_empty() {
            return Err(FlowSpecError::Empty);
        }
        components.sort_by_key(Component::kind);
        for pair in components.windows(2) {
            if pair[0].kind() == pair[1].kind() {
                return Err(FlowSpecError::DuplicateComponent(pair[0].kind()));
            }
        }
        for c in &components {
            c.check(family)?;
        }
        let spec = Self { family, components };
        let len = spec.encoded_len();
        if len > MAX_NLRI_LEN {
            return Err(FlowSpecError::TooLong(len));
        }
        Ok(spec)
    }

    pub fn family(&self) -> IpFamily {
        self.family
    }

    pub fn components(&self) -> &[Component] {
        &self.components
    }

    /// The destination prefix, if the rule has one.
    pub fn destination(&self) -> Option<FlowPrefix> {
        self.components.iter().find_map(|c| match c {
            Component::DestinationPrefix(p) => Some(*p),
            _ => None,
        })
    }

    fn encoded_len(&self) -> usize {
        let mut body = Vec::new();
        for c in &self.components {
            c.encode(&mut body);
        }
        body.len()
    }

    /// The NLRI: a 1-octet length below 240, else 2 octets `0xfnnn`
    /// (RFC 8955 §4.1), then the components.
    pub fn encode_nlri(&self) -> Vec<u8> {
        let mut body = Vec::new();
        for c in &self.components {
            c.encode(&mut body);
        }
        let mut out = Vec::with_capacity(body.len() + 2);
        if body.len() < 240 {
            out.push(body.len() as u8);
        } else {
            out.extend_from_slice(&(0xf000 | body.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(&body);
        out
    }

    /// Reads one NLRI strictly (types in increasing order, no unknown types,
    /// values within range); returns it and the octets consumed.
    pub fn decode_nlri(family: IpFamily, bytes: &[u8]) -> Result<(Self, usize), FlowSpecError> {
        let first = *bytes.first().ok_or(FlowSpecError::Malformed("empty"))?;
        let (len, header) = if first >= 0xf0 {
            let second = *bytes
                .get(1)
                .ok_or(FlowSpecError::Malformed("length truncated"))?;
            (usize::from(first & 0x0f) << 8 | usize::from(second), 2)
        } else {
            (usize::from(first), 1)
        };
        let body = bytes
            .get(header..header + len)
            .ok_or(FlowSpecError::Malformed("NLRI shorter than its length"))?;
        let mut components = Vec::new();
        let mut at = 0;
        while at < body.len() {
            let (c, n) = Component::decode(family, &body[at..])?;
            if components
                .last()
                .is_some_and(|p: &Component| p.kind() >= c.kind())
            {
                return Err(FlowSpecError::Malformed("components out of order"));
            }
            components.push(c);
            at += n;
        }
        if at != body.len() {
            return Err(FlowSpecError::Malformed("component overruns the NLRI"));
        }
        if components.is_empty() {
            return Err(FlowSpecError::Empty);
        }
        Ok((Self { family, components }, header + len))
    }

    /// Which of two rules a router applies first (RFC 8955 §5.1, prefixes
    /// with offsets per RFC 8956 §4): `Less` when `self` has precedence.
    /// Components are compared from the lowest type up; a rule with a
    /// type the other lacks wins; prefixes: a lower value wins, else the
    /// more specific; other components: their encodings compared as
    /// strings, a lower one wins, else the longer.
    pub fn precedence(&self, other: &FlowSpec) -> Ordering {
        let mut a = self.components.iter();
        let mut b = other.components.iter();
        loop {
            let (ca, cb) = match (a.next(), b.next()) {
                (None, None) => return Ordering::Equal,
                (Some(_), None) => return Ordering::Less,
                (None, Some(_)) => return Ordering::Greater,
                (Some(ca), Some(cb)) => (ca, cb),
            };
            match ca.kind().cmp(&cb.kind()) {
                Ordering::Equal => {}
                // The rule with the lower type has precedence.
                unequal => return unequal,
            }
            let order = match (ca, cb) {
                (
                    Component::DestinationPrefix(pa) | Component::SourcePrefix(pa),
                    Component::DestinationPrefix(pb) | Component::SourcePrefix(pb),
                ) => prefix_precedence(pa, pb),
                _ => {
                    let (mut ea, mut eb) = (Vec::new(), Vec::new());
                    ca.encode(&mut ea);
                    cb.encode(&mut eb);
                    let common = ea.len().min(eb.len());
                    ea[..common]
                        .cmp(&eb[..common])
                        .then_with(|| eb.len().cmp(&ea.len()))
                }
            };
            if order != Ordering::Equal {
                return order;
            }
        }
    }

    /// Whether every address the rule can match lies within `nets` (a
    /// destination prefix, not offset, inside one of them).
    pub fn destination_within(&self, nets: &[IpNet]) -> bool {
        match self.destination() {
            Some(FlowPrefix::V6 { offset, .. }) if offset != 0 => false,
            Some(p) => nets.iter().any(|n| n.contains(&p.net())),
            None => false,
        }
    }
}

impl fmt::Display for FlowSpec {
    /// E.g. `flow4 { dst 192.0.2.1/32; proto ==17; sport ==53; length >=512 }`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.family {
            IpFamily::Ipv4 => "flow4",
            IpFamily::Ipv6 => "flow6",
        };
        write!(f, "{name} {{ ")?;
        for (i, c) in self.components.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{c}")?;
        }
        f.write_str(" }")
    }
}

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

/// The address family of an IP address, for callers building rules.
pub fn family_of(addr: IpAddr) -> IpFamily {
    match addr {
        IpAddr::V4(_) => IpFamily::Ipv4,
        IpAddr::V6(_) => IpFamily::Ipv6,
    }
}
