//! Prefix components: IPv4 (RFC 8955 §4.2.2.1-2) and IPv6 with a bit
//! offset (RFC 8956 §3.1), and their precedence (RFC 8955 §5.1).

use std::{
    cmp::Ordering,
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use super::{FlowSpecError, IpFamily};

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

    pub(super) fn check(&self) -> Result<(), FlowSpecError> {
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

    pub(super) fn encode(&self, out: &mut Vec<u8>) {
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

    pub(super) fn decode(family: IpFamily, bytes: &[u8]) -> Result<(Self, usize), FlowSpecError> {
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
pub(super) fn prefix_precedence(a: &FlowPrefix, b: &FlowPrefix) -> Ordering {
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
