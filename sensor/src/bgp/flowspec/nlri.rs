//! The flow specification NLRI (RFC 8955 §4): a rule's components in
//! canonical order, its encoding and strict decoding, and the order
//! between rules (RFC 8955 §5.1).

use std::{cmp::Ordering, fmt};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{Component, FlowPrefix, FlowSpecError, IpFamily, MAX_NLRI_LEN, prefix_precedence};

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
