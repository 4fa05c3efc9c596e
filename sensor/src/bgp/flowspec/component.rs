//! Flow spec components (RFC 8955 §4.2.2, RFC 8956 §3): their types and
//! the encoding of one component's match terms.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{
    BitmaskMatch, FlowPrefix, FlowSpecError, IpFamily, NumericMatch, NumericOp, fragment,
    serde_name,
};

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

    pub(super) fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code).wrapping_sub(1)).copied()
    }

    /// The largest value a numeric term of this component may carry.
    pub(super) fn max_value(self) -> u64 {
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

    /// Short name used in [`FlowSpec`](super::FlowSpec)'s human form.
    pub(super) fn short(self) -> &'static str {
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

    pub(super) fn numeric(&self) -> Option<&[NumericMatch]> {
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

    pub(super) fn bitmask(&self) -> Option<&[BitmaskMatch]> {
        match self {
            Self::TcpFlags(m) | Self::Fragment(m) => Some(m),
            _ => None,
        }
    }

    pub(super) fn check(&self, family: IpFamily) -> Result<(), FlowSpecError> {
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

    pub(super) fn encode(&self, out: &mut Vec<u8>) {
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

    pub(super) fn decode(family: IpFamily, bytes: &[u8]) -> Result<(Self, usize), FlowSpecError> {
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
