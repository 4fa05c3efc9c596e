//! Path attributes of an UPDATE (RFC 4271 §4.3, §5) that we send: ORIGIN,
//! AS_PATH (4-octet per RFC 6793), NEXT_HOP, LOCAL_PREF, COMMUNITIES (RFC
//! 1997), EXTENDED_COMMUNITIES (RFC 4360), MP_REACH_NLRI / MP_UNREACH_NLRI
//! (RFC 4760) and AS4_PATH (RFC 6793 §3); any other is kept raw.

use std::{fmt, net::Ipv4Addr, str::FromStr};

use serde::{Deserialize, Serialize};

use super::capability::Family;

/// Attribute flags (RFC 4271 §4.3).
pub mod flags {
    pub const OPTIONAL: u8 = 0x80;
    pub const TRANSITIVE: u8 = 0x40;
    pub const PARTIAL: u8 = 0x20;
    pub const EXTENDED_LENGTH: u8 = 0x10;
}

/// Attribute type codes.
pub mod code {
    pub const ORIGIN: u8 = 1;
    pub const AS_PATH: u8 = 2;
    pub const NEXT_HOP: u8 = 3;
    pub const LOCAL_PREF: u8 = 5;
    pub const COMMUNITIES: u8 = 8;
    pub const MP_REACH_NLRI: u8 = 14;
    pub const MP_UNREACH_NLRI: u8 = 15;
    pub const EXTENDED_COMMUNITIES: u8 = 16;
    pub const AS4_PATH: u8 = 17;
}

/// The AS number put in 2-octet fields for a 4-octet AS (RFC 6793 §9).
pub const AS_TRANS: u16 = 23456;

/// A malformed attribute (RFC 7606 would treat most as withdraw; for our
/// own output any of these is a bug caught before sending).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttributeError {
    #[error("attribute list truncated")]
    Truncated,
    #[error("attribute {code}: bad length {len}")]
    BadLength { code: u8, len: usize },
    #[error("attribute {code}: {message}")]
    Malformed { code: u8, message: &'static str },
}

/// ORIGIN (RFC 4271 §5.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Igp = 0,
    Egp = 1,
    Incomplete = 2,
}

/// A standard community (RFC 1997), written `high:low`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Community(pub u32);

impl Community {
    /// BLACKHOLE 65535:666 (RFC 7999 §5).
    pub const BLACKHOLE: Community = Community(0xffff_029a);
    /// NO_EXPORT 65535:65281 (RFC 1997).
    pub const NO_EXPORT: Community = Community(0xffff_ff01);
    /// NO_ADVERTISE 65535:65282 (RFC 1997).
    pub const NO_ADVERTISE: Community = Community(0xffff_ff02);

    pub fn new(high: u16, low: u16) -> Self {
        Self(u32::from(high) << 16 | u32::from(low))
    }
}

impl fmt::Display for Community {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.0 >> 16, self.0 & 0xffff)
    }
}

impl FromStr for Community {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (high, low) = s
            .split_once(':')
            .ok_or_else(|| format!("community `{s}` is not of the form ASN:VALUE"))?;
        let parse = |p: &str| {
            p.trim()
                .parse::<u16>()
                .map_err(|_| format!("community `{s}`: `{p}` is not a number 0-65535"))
        };
        Ok(Self::new(parse(high)?, parse(low)?))
    }
}

impl Serialize for Community {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Community {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An extended community (RFC 4360): 8 octets, type first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExtendedCommunity(pub [u8; 8]);

/// One AS_PATH segment (RFC 4271 §4.3 b).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AsPathSegment {
    Set(Vec<u32>),
    Sequence(Vec<u32>),
}

/// A path attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathAttribute {
    Origin(Origin),
    /// With 4-octet AS numbers when `four_octet` (RFC 6793 §4.1), else 2.
    AsPath {
        segments: Vec<AsPathSegment>,
        four_octet: bool,
    },
    NextHop(Ipv4Addr),
    LocalPref(u32),
    Communities(Vec<Community>),
    ExtendedCommunities(Vec<ExtendedCommunity>),
    /// RFC 4760 §3; `next_hop` raw (empty for flow spec, RFC 8955 §4).
    MpReach {
        family: (u16, u8),
        next_hop: Vec<u8>,
        nlri: Vec<u8>,
    },
    /// RFC 4760 §4.
    MpUnreach {
        family: (u16, u8),
        nlri: Vec<u8>,
    },
    /// AS4_PATH (RFC 6793 §3), always 4-octet.
    As4Path(Vec<AsPathSegment>),
    Other {
        flags: u8,
        code: u8,
        value: Vec<u8>,
    },
}

impl PathAttribute {
    pub fn mp_reach(family: Family, next_hop: Vec<u8>, nlri: Vec<u8>) -> Self {
        Self::MpReach {
            family: family.codes(),
            next_hop,
            nlri,
        }
    }

    pub fn mp_unreach(family: Family, nlri: Vec<u8>) -> Self {
        Self::MpUnreach {
            family: family.codes(),
            nlri,
        }
    }

    pub fn code(&self) -> u8 {
        match self {
            Self::Origin(_) => code::ORIGIN,
            Self::AsPath { .. } => code::AS_PATH,
            Self::NextHop(_) => code::NEXT_HOP,
            Self::LocalPref(_) => code::LOCAL_PREF,
            Self::Communities(_) => code::COMMUNITIES,
            Self::ExtendedCommunities(_) => code::EXTENDED_COMMUNITIES,
            Self::MpReach { .. } => code::MP_REACH_NLRI,
            Self::MpUnreach { .. } => code::MP_UNREACH_NLRI,
            Self::As4Path(_) => code::AS4_PATH,
            Self::Other { code, .. } => *code,
        }
    }

    fn base_flags(&self) -> u8 {
        use flags::*;
        match self {
            Self::Origin(_) | Self::AsPath { .. } | Self::NextHop(_) | Self::LocalPref(_) => {
                TRANSITIVE
            }
            Self::Communities(_) | Self::ExtendedCommunities(_) | Self::As4Path(_) => {
                OPTIONAL | TRANSITIVE
            }
            Self::MpReach { .. } | Self::MpUnreach { .. } => OPTIONAL,
            Self::Other { flags, .. } => flags & !EXTENDED_LENGTH,
        }
    }

    fn value(&self) -> Vec<u8> {
        let mut v = Vec::new();
        match self {
            Self::Origin(o) => v.push(*o as u8),
            Self::AsPath {
                segments,
                four_octet,
            } => encode_segments(segments, *four_octet, &mut v),
            Self::As4Path(segments) => encode_segments(segments, true, &mut v),
            Self::NextHop(a) => v.extend_from_slice(&a.octets()),
            Self::LocalPref(p) => v.extend_from_slice(&p.to_be_bytes()),
            Self::Communities(cs) => cs
                .iter()
                .for_each(|c| v.extend_from_slice(&c.0.to_be_bytes())),
            Self::ExtendedCommunities(cs) => cs.iter().for_each(|c| v.extend_from_slice(&c.0)),
            Self::MpReach {
                family: (afi, safi),
                next_hop,
                nlri,
            } => {
                v.extend_from_slice(&afi.to_be_bytes());
                v.push(*safi);
                v.push(next_hop.len() as u8);
                v.extend_from_slice(next_hop);
                v.push(0); // reserved (RFC 4760 §3)
                v.extend_from_slice(nlri);
            }
            Self::MpUnreach {
                family: (afi, safi),
                nlri,
            } => {
                v.extend_from_slice(&afi.to_be_bytes());
                v.push(*safi);
                v.extend_from_slice(nlri);
            }
            Self::Other { value, .. } => v.extend_from_slice(value),
        }
        v
    }

    /// Appends flags, type, length (extended when over 255) and value.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let value = self.value();
        let mut fl = self.base_flags();
        if value.len() > 255 {
            fl |= flags::EXTENDED_LENGTH;
        }
        out.push(fl);
        out.push(self.code());
        if value.len() > 255 {
            out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        } else {
            out.push(value.len() as u8);
        }
        out.extend_from_slice(&value);
    }

    /// Decodes a whole path attribute list; AS_PATH is read with 4-octet
    /// AS numbers when `four_octet`.
    pub fn decode_all(mut bytes: &[u8], four_octet: bool) -> Result<Vec<Self>, AttributeError> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            if bytes.len() < 3 {
                return Err(AttributeError::Truncated);
            }
            let (fl, code) = (bytes[0], bytes[1]);
            let (len, header) = if fl & flags::EXTENDED_LENGTH != 0 {
                let b = bytes.get(2..4).ok_or(AttributeError::Truncated)?;
                (usize::from(u16::from_be_bytes([b[0], b[1]])), 4)
            } else {
                (usize::from(bytes[2]), 3)
            };
            let value = bytes
                .get(header..header + len)
                .ok_or(AttributeError::Truncated)?;
            out.push(Self::decode_one(fl, code, value, four_octet)?);
            bytes = &bytes[header + len..];
        }
        Ok(out)
    }

    pub(crate) fn decode_one(
        fl: u8,
        code: u8,
        v: &[u8],
        four_octet: bool,
    ) -> Result<Self, AttributeError> {
        let bad_len = || AttributeError::BadLength { code, len: v.len() };
        Ok(match code {
            code::ORIGIN => match v {
                [0] => Self::Origin(Origin::Igp),
                [1] => Self::Origin(Origin::Egp),
                [2] => Self::Origin(Origin::Incomplete),
                _ => return Err(bad_len()),
            },
            code::AS_PATH => Self::AsPath {
                segments: decode_segments(code, v, four_octet)?,
                four_octet,
            },
            code::AS4_PATH => Self::As4Path(decode_segments(code, v, true)?),
            code::NEXT_HOP => {
                let a: [u8; 4] = v.try_into().map_err(|_| bad_len())?;
                Self::NextHop(Ipv4Addr::from(a))
            }
            code::LOCAL_PREF => {
                let a: [u8; 4] = v.try_into().map_err(|_| bad_len())?;
                Self::LocalPref(u32::from_be_bytes(a))
            }
            code::COMMUNITIES => {
                if !v.len().is_multiple_of(4) {
                    return Err(bad_len());
                }
                Self::Communities(
                    v.chunks_exact(4)
                        .map(|c| Community(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                        .collect(),
                )
            }
            code::EXTENDED_COMMUNITIES => {
                if !v.len().is_multiple_of(8) {
                    return Err(bad_len());
                }
                Self::ExtendedCommunities(
                    v.chunks_exact(8)
                        .map(|c| ExtendedCommunity(c.try_into().expect("8 octets")))
                        .collect(),
                )
            }
            code::MP_REACH_NLRI => {
                if v.len() < 5 {
                    return Err(bad_len());
                }
                let family = (u16::from_be_bytes([v[0], v[1]]), v[2]);
                let nh_len = usize::from(v[3]);
                let next_hop = v.get(4..4 + nh_len).ok_or_else(bad_len)?.to_vec();
                let nlri = v.get(5 + nh_len..).ok_or_else(bad_len)?.to_vec();
                Self::MpReach {
                    family,
                    next_hop,
                    nlri,
                }
            }
            code::MP_UNREACH_NLRI => {
                if v.len() < 3 {
                    return Err(bad_len());
                }
                Self::MpUnreach {
                    family: (u16::from_be_bytes([v[0], v[1]]), v[2]),
                    nlri: v[3..].to_vec(),
                }
            }
            _ => Self::Other {
                flags: fl,
                code,
                value: v.to_vec(),
            },
        })
    }
}

fn encode_segments(segments: &[AsPathSegment], four_octet: bool, out: &mut Vec<u8>) {
    for seg in segments {
        let (kind, asns) = match seg {
            AsPathSegment::Set(a) => (1u8, a),
            AsPathSegment::Sequence(a) => (2u8, a),
        };
        out.push(kind);
        out.push(asns.len() as u8);
        for &asn in asns {
            if four_octet {
                out.extend_from_slice(&asn.to_be_bytes());
            } else {
                let two = u16::try_from(asn).unwrap_or(AS_TRANS);
                out.extend_from_slice(&two.to_be_bytes());
            }
        }
    }
}

fn decode_segments(
    code: u8,
    mut v: &[u8],
    four_octet: bool,
) -> Result<Vec<AsPathSegment>, AttributeError> {
    let size = if four_octet { 4 } else { 2 };
    let mut out = Vec::new();
    while !v.is_empty() {
        let malformed = |message| AttributeError::Malformed { code, message };
        if v.len() < 2 {
            return Err(malformed("segment header truncated"));
        }
        let (kind, count) = (v[0], usize::from(v[1]));
        let body = v
            .get(2..2 + count * size)
            .ok_or_else(|| malformed("segment truncated"))?;
        let asns = body
            .chunks_exact(size)
            .map(|c| c.iter().fold(0u32, |a, &b| a << 8 | u32::from(b)))
            .collect();
        out.push(match kind {
            1 => AsPathSegment::Set(asns),
            2 => AsPathSegment::Sequence(asns),
            _ => return Err(malformed("unknown segment type")),
        });
        v = &v[2 + count * size..];
    }
    Ok(out)
}

/// Encodes an IPv4 or IPv6 prefix as in RFC 4271 §4.3 / RFC 4760 §5:
/// length in bits, then the significant octets.
pub fn encode_prefix(net: &ipnet::IpNet, out: &mut Vec<u8>) {
    let len = net.prefix_len();
    out.push(len);
    let n = usize::from(len).div_ceil(8);
    match net.network() {
        std::net::IpAddr::V4(a) => out.extend_from_slice(&a.octets()[..n]),
        std::net::IpAddr::V6(a) => out.extend_from_slice(&a.octets()[..n]),
    }
}

/// Decodes a list of prefixes of one family (the inverse of
/// [`encode_prefix`]).
pub fn decode_prefixes(mut bytes: &[u8], ipv6: bool) -> Option<Vec<ipnet::IpNet>> {
    let mut out = Vec::new();
    let max = if ipv6 { 128 } else { 32 };
    while let Some(&len) = bytes.first() {
        if len > max {
            return None;
        }
        let n = usize::from(len).div_ceil(8);
        let raw = bytes.get(1..1 + n)?;
        let net = if ipv6 {
            let mut o = [0u8; 16];
            o[..n].copy_from_slice(raw);
            ipnet::IpNet::V6(ipnet::Ipv6Net::new(o.into(), len).ok()?)
        } else {
            let mut o = [0u8; 4];
            o[..n].copy_from_slice(raw);
            ipnet::IpNet::V4(ipnet::Ipv4Net::new(o.into(), len).ok()?)
        };
        out.push(net);
        bytes = &bytes[1 + n..];
    }
    Some(out)
}
