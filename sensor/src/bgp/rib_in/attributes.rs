//! The path attributes of received routes, in the compact form the
//! Adj-RIB-In keeps, and the interner that shares them: the routes of one
//! UPDATE (and every UPDATE with the same attributes) point to one
//! [`Attributes`] value, so a full table costs one attribute set per
//! distinct path rather than per prefix.
//!
//! What is kept (RFC 4271 §5.1, RFC 1997, RFC 4360, RFC 8092, RFC 4456):
//! the attributes RFC 7606 passed; MP_REACH/MP_UNREACH are reduced to their
//! next hop (the NLRI are the table's keys). Attributes the speaker does
//! not type are kept raw, so nothing a peer sent is lost.

use std::{
    collections::HashSet,
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
};

use serde::Serialize;

use crate::bgp::{
    attribute::{AsPathSegment, Community, ExtendedCommunity, Origin, PathAttribute},
    receive::code,
};

/// A large community (RFC 8092 §3), written `global:local1:local2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LargeCommunity(pub [u32; 3]);

impl fmt::Display for LargeCommunity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.0[0], self.0[1], self.0[2])
    }
}

impl Serialize for LargeCommunity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One AS_PATH segment (RFC 4271 §4.3 b; confederation segments RFC 5065
/// §3).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case", tag = "type", content = "asns")]
pub enum Segment {
    Set(Box<[u32]>),
    Sequence(Box<[u32]>),
    ConfedSequence(Box<[u32]>),
    ConfedSet(Box<[u32]>),
}

/// An attribute kept as received (flags, type code, value).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct RawAttribute {
    pub flags: u8,
    pub code: u8,
    #[serde(serialize_with = "hex")]
    pub value: Box<[u8]>,
}

fn hex<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&v.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// The path attributes of a received route, shared between the routes that
/// carry the same ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Attributes {
    /// ORIGIN (RFC 4271 §5.1.1): `igp`, `egp`, `incomplete`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<&'static str>,
    /// AS_PATH (with 4-octet AS numbers where negotiated, RFC 6793).
    pub as_path: Box<[Segment]>,
    /// NEXT_HOP, or the next hop of MP_REACH_NLRI (the global address when
    /// it carries a link-local one too, RFC 2545 §3); none for Flow Spec
    /// (RFC 8955 §4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_hop: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub med: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_pref: Option<u32>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub communities: Box<[Community]>,
    #[serde(skip_serializing_if = "<[_]>::is_empty", serialize_with = "ext_hex")]
    pub extended_communities: Box<[ExtendedCommunity]>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub large_communities: Box<[LargeCommunity]>,
    /// ORIGINATOR_ID (RFC 4456 §8), from a route reflector.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub originator_id: Option<Ipv4Addr>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub atomic_aggregate: bool,
    /// Every other attribute, raw (AGGREGATOR, CLUSTER_LIST, AS4_PATH, ...).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub other: Box<[RawAttribute]>,
}

fn ext_hex<S: serde::Serializer>(v: &[ExtendedCommunity], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(
        v.iter()
            .map(|c| c.0.iter().map(|b| format!("{b:02x}")).collect::<String>()),
    )
}

impl Attributes {
    /// The attributes of an UPDATE as [`crate::bgp::receive::check`] kept
    /// them; `four_octet` as negotiated (RFC 6793 §4.1).
    pub fn from_received(attrs: &[PathAttribute], four_octet: bool) -> Self {
        let mut a = Attributes::default();
        let mut other = Vec::new();
        for attr in attrs {
            match attr {
                PathAttribute::Origin(o) => {
                    a.origin = Some(match o {
                        Origin::Igp => "igp",
                        Origin::Egp => "egp",
                        Origin::Incomplete => "incomplete",
                    })
                }
                PathAttribute::AsPath { segments, .. } => {
                    a.as_path = segments
                        .iter()
                        .map(|s| match s {
                            AsPathSegment::Set(v) => Segment::Set(v.clone().into()),
                            AsPathSegment::Sequence(v) => Segment::Sequence(v.clone().into()),
                        })
                        .collect();
                }
                PathAttribute::NextHop(n) => a.next_hop = Some(IpAddr::V4(*n)),
                PathAttribute::LocalPref(p) => a.local_pref = Some(*p),
                PathAttribute::Communities(c) => a.communities = c.clone().into(),
                PathAttribute::ExtendedCommunities(c) => {
                    a.extended_communities = c.clone().into();
                }
                PathAttribute::MpReach { next_hop, .. } => {
                    a.next_hop = match next_hop.len() {
                        4 => <[u8; 4]>::try_from(&next_hop[..])
                            .ok()
                            .map(|o| IpAddr::V4(Ipv4Addr::from(o))),
                        16 | 32 => <[u8; 16]>::try_from(&next_hop[..16])
                            .ok()
                            .map(|o| IpAddr::V6(Ipv6Addr::from(o))),
                        _ => None,
                    };
                }
                PathAttribute::MpUnreach { .. } => {}
                PathAttribute::Other { flags, code, value } => match (*code, value.as_slice()) {
                    (code::MULTI_EXIT_DISC, &[a0, a1, a2, a3]) => {
                        a.med = Some(u32::from_be_bytes([a0, a1, a2, a3]));
                    }
                    (code::ORIGINATOR_ID, &[a0, a1, a2, a3]) => {
                        a.originator_id = Some(Ipv4Addr::new(a0, a1, a2, a3));
                    }
                    (code::ATOMIC_AGGREGATE, []) => a.atomic_aggregate = true,
                    (code::LARGE_COMMUNITIES, v) if v.len().is_multiple_of(12) => {
                        a.large_communities = v
                            .chunks_exact(12)
                            .map(|c| {
                                let w = |i: usize| {
                                    u32::from_be_bytes([c[i], c[i + 1], c[i + 2], c[i + 3]])
                                };
                                LargeCommunity([w(0), w(4), w(8)])
                            })
                            .collect();
                    }
                    (code::AS_PATH, v) => a.as_path = confed_path(v, four_octet),
                    _ => other.push(RawAttribute {
                        flags: *flags,
                        code: *code,
                        value: value.clone().into(),
                    }),
                },
                PathAttribute::As4Path(segments) => other.push(RawAttribute {
                    flags: 0xc0,
                    code: code::AS4_PATH,
                    value: {
                        let mut v = Vec::new();
                        PathAttribute::As4Path(segments.clone()).encode(&mut v);
                        v[3..].into()
                    },
                }),
            }
        }
        a.other = other.into();
        a
    }

    /// The AS numbers of the path in order (sets flattened).
    pub fn asns(&self) -> impl Iterator<Item = u32> + '_ {
        self.as_path.iter().flat_map(|s| match s {
            Segment::Set(v)
            | Segment::Sequence(v)
            | Segment::ConfedSequence(v)
            | Segment::ConfedSet(v) => v.iter().copied(),
        })
    }

    /// The left-most AS of the path outside a confederation (RFC 8955 §6:
    /// the neighbouring AS of an eBGP route).
    pub fn first_as(&self) -> Option<u32> {
        self.as_path.iter().find_map(|s| match s {
            Segment::Sequence(v) => v.first().copied(),
            _ => None,
        })
    }

    /// Whether the AS_PATH is empty or holds confederation segments only
    /// (RFC 9117 §4.1, rule b.2).
    pub fn as_path_internal(&self) -> bool {
        self.as_path
            .iter()
            .all(|s| matches!(s, Segment::ConfedSequence(_) | Segment::ConfedSet(_)))
    }
}

/// An AS_PATH with confederation segments (RFC 5065 §3), which
/// [`PathAttribute`] keeps raw; RFC 7606 already checked its framing.
fn confed_path(mut v: &[u8], four_octet: bool) -> Box<[Segment]> {
    let size = if four_octet { 4 } else { 2 };
    let mut out = Vec::new();
    while let [kind, count, rest @ ..] = v {
        let n = usize::from(*count) * size;
        let Some(body) = rest.get(..n) else { break };
        let asns: Box<[u32]> = body
            .chunks_exact(size)
            .map(|c| c.iter().fold(0u32, |a, &b| a << 8 | u32::from(b)))
            .collect();
        out.push(match kind {
            1 => Segment::Set(asns),
            2 => Segment::Sequence(asns),
            3 => Segment::ConfedSequence(asns),
            _ => Segment::ConfedSet(asns),
        });
        v = &rest[n..];
    }
    out.into()
}

/// Shares equal attribute sets: every route holds an `Arc` to the one copy.
#[derive(Debug, Default)]
pub struct Interner {
    set: HashSet<Arc<Attributes>>,
    /// Interned since the last collection.
    since_collect: usize,
}

impl Interner {
    /// The shared copy of `attrs`.
    pub fn intern(&mut self, attrs: Attributes) -> Arc<Attributes> {
        self.since_collect += 1;
        if let Some(a) = self.set.get(&attrs) {
            return a.clone();
        }
        let a = Arc::new(attrs);
        self.set.insert(a.clone());
        a
    }

    /// Forgets the sets no route holds any more (the interner's own
    /// reference is the last one).
    pub fn collect(&mut self) {
        self.set.retain(|a| Arc::strong_count(a) > 1);
        self.since_collect = 0;
    }

    /// Collects once as many sets were interned as are held (at least
    /// 4096): amortised constant time per UPDATE.
    pub fn collect_if_due(&mut self) {
        if self.since_collect >= self.set.len().max(4096) {
            self.collect();
        }
    }

    /// How many distinct attribute sets are held.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    pub fn clear(&mut self) {
        self.set.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_attributes_are_shared_and_collected() {
        let mut i = Interner::default();
        let attrs = |lp| Attributes {
            local_pref: Some(lp),
            as_path: vec![Segment::Sequence(vec![65001, 65002].into())].into(),
            ..Attributes::default()
        };
        let a = i.intern(attrs(100));
        let b = i.intern(attrs(100));
        let c = i.intern(attrs(200));
        assert!(Arc::ptr_eq(&a, &b), "one copy for equal sets");
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(i.len(), 2);
        drop((a, b));
        i.collect();
        assert_eq!(i.len(), 1, "the unused set is forgotten");
        assert_eq!(c.first_as(), Some(65001));
    }

    #[test]
    fn received_attributes_are_typed() {
        let attrs = vec![
            PathAttribute::Origin(Origin::Igp),
            PathAttribute::AsPath {
                segments: vec![AsPathSegment::Sequence(vec![65010, 4_200_000_000])],
                four_octet: true,
            },
            PathAttribute::mp_reach(
                crate::bgp::Family::Ipv6Unicast,
                "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets().to_vec(),
                Vec::new(),
            ),
            PathAttribute::Other {
                flags: 0x80,
                code: code::MULTI_EXIT_DISC,
                value: vec![0, 0, 0, 7],
            },
            PathAttribute::Other {
                flags: 0xc0,
                code: code::LARGE_COMMUNITIES,
                value: [1u32, 2, 3].iter().flat_map(|x| x.to_be_bytes()).collect(),
            },
            PathAttribute::Communities(vec![Community::new(65000, 666)]),
        ];
        let a = Attributes::from_received(&attrs, true);
        assert_eq!(a.origin, Some("igp"));
        assert_eq!(a.asns().collect::<Vec<_>>(), vec![65010, 4_200_000_000]);
        assert_eq!(a.next_hop, Some("2001:db8::1".parse().unwrap()));
        assert_eq!(a.med, Some(7));
        assert_eq!(a.large_communities[0].to_string(), "1:2:3");
        assert_eq!(&*a.communities, &[Community::new(65000, 666)]);
        // A confederation path is internal (RFC 9117 §4.1 b.2).
        let confed = Attributes::from_received(
            &[PathAttribute::Other {
                flags: 0x40,
                code: code::AS_PATH,
                value: vec![3, 1, 0, 0, 0xfd, 0xe9],
            }],
            true,
        );
        assert_eq!(
            &*confed.as_path,
            &[Segment::ConfedSequence(vec![65001].into())]
        );
        assert!(confed.as_path_internal());
        assert!(!a.as_path_internal());
    }
}
