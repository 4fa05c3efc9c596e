//! Capabilities advertised in OPEN (RFC 5492) and what two speakers
//! negotiated from them: multiprotocol families (RFC 4760 §8), route
//! refresh (RFC 2918), graceful restart (RFC 4724 §3, N bit RFC 8538),
//! 4-octet AS numbers (RFC 6793) and Add-Path (RFC 7911 §4).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The address families this speaker can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// AFI 1 / SAFI 1: RTBH for IPv4.
    Ipv4Unicast,
    /// AFI 2 / SAFI 1: RTBH for IPv6.
    Ipv6Unicast,
    /// AFI 1 / SAFI 133 (RFC 8955).
    #[serde(rename = "ipv4-flowspec")]
    Ipv4FlowSpec,
    /// AFI 2 / SAFI 133 (RFC 8956).
    #[serde(rename = "ipv6-flowspec")]
    Ipv6FlowSpec,
}

impl Family {
    pub const ALL: [Family; 4] = [
        Self::Ipv4Unicast,
        Self::Ipv6Unicast,
        Self::Ipv4FlowSpec,
        Self::Ipv6FlowSpec,
    ];

    /// (AFI, SAFI).
    pub fn codes(self) -> (u16, u8) {
        match self {
            Self::Ipv4Unicast => (1, 1),
            Self::Ipv6Unicast => (2, 1),
            Self::Ipv4FlowSpec => (1, 133),
            Self::Ipv6FlowSpec => (2, 133),
        }
    }

    pub fn from_codes(afi: u16, safi: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.codes() == (afi, safi))
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ipv4Unicast => "ipv4-unicast",
            Self::Ipv6Unicast => "ipv6-unicast",
            Self::Ipv4FlowSpec => "ipv4-flowspec",
            Self::Ipv6FlowSpec => "ipv6-flowspec",
        })
    }
}

/// Capability codes (IANA "Capability Codes").
pub mod code {
    pub const MULTIPROTOCOL: u8 = 1;
    pub const ROUTE_REFRESH: u8 = 2;
    pub const GRACEFUL_RESTART: u8 = 64;
    pub const FOUR_OCTET_AS: u8 = 65;
    pub const ADD_PATH: u8 = 69;
}

/// The Send/Receive field of the Add-Path capability (RFC 7911 §4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AddPathMode {
    /// No Add-Path (the default): one path per prefix each way.
    #[default]
    Off,
    /// Receive several paths per prefix from the peer (1).
    Receive,
    /// Send path identifiers (2).
    Send,
    /// Both (3).
    Both,
}

impl AddPathMode {
    /// The wire value (RFC 7911 §4); `None` for off.
    pub fn bits(self) -> Option<u8> {
        match self {
            Self::Off => None,
            Self::Receive => Some(1),
            Self::Send => Some(2),
            Self::Both => Some(3),
        }
    }
}

/// One capability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// RFC 4760 §8.
    MultiProtocol {
        afi: u16,
        safi: u8,
    },
    /// RFC 2918.
    RouteRefresh,
    /// RFC 4724 §3 (and the N bit of RFC 8538 §2).
    GracefulRestart {
        restart_state: bool,
        notification: bool,
        restart_time: u16,
        /// (AFI, SAFI, forwarding state preserved).
        families: Vec<(u16, u8, bool)>,
    },
    /// RFC 6793.
    FourOctetAs(u32),
    /// RFC 7911 §4: (AFI, SAFI, Send/Receive: 1 receive, 2 send, 3 both).
    AddPath(Vec<(u16, u8, u8)>),
    Other {
        code: u8,
        value: Vec<u8>,
    },
}

/// A capability whose value does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("capability {code}: malformed value of {len} octets")]
pub struct CapabilityError {
    pub code: u8,
    pub len: usize,
}

impl Capability {
    pub fn family(family: Family) -> Self {
        let (afi, safi) = family.codes();
        Self::MultiProtocol { afi, safi }
    }

    /// Appends code, length, value.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut v = Vec::new();
        let c = match self {
            Self::MultiProtocol { afi, safi } => {
                v.extend_from_slice(&afi.to_be_bytes());
                v.push(0);
                v.push(*safi);
                code::MULTIPROTOCOL
            }
            Self::RouteRefresh => code::ROUTE_REFRESH,
            Self::GracefulRestart {
                restart_state,
                notification,
                restart_time,
                families,
            } => {
                let flags = u16::from(*restart_state) << 15 | u16::from(*notification) << 14;
                v.extend_from_slice(&(flags | (restart_time & 0x0fff)).to_be_bytes());
                for (afi, safi, fwd) in families {
                    v.extend_from_slice(&afi.to_be_bytes());
                    v.push(*safi);
                    v.push(if *fwd { 0x80 } else { 0 });
                }
                code::GRACEFUL_RESTART
            }
            Self::FourOctetAs(asn) => {
                v.extend_from_slice(&asn.to_be_bytes());
                code::FOUR_OCTET_AS
            }
            Self::AddPath(families) => {
                for (afi, safi, sr) in families {
                    v.extend_from_slice(&afi.to_be_bytes());
                    v.push(*safi);
                    v.push(*sr);
                }
                code::ADD_PATH
            }
            Self::Other { code, value } => {
                v.extend_from_slice(value);
                *code
            }
        };
        out.push(c);
        out.push(v.len() as u8);
        out.extend_from_slice(&v);
    }

    /// Decodes one capability value.
    pub fn decode(c: u8, v: &[u8]) -> Result<Self, CapabilityError> {
        let err = || CapabilityError {
            code: c,
            len: v.len(),
        };
        Ok(match c {
            code::MULTIPROTOCOL => {
                let [a0, a1, _, safi]: [u8; 4] = v.try_into().map_err(|_| err())?;
                Self::MultiProtocol {
                    afi: u16::from_be_bytes([a0, a1]),
                    safi,
                }
            }
            code::ROUTE_REFRESH if v.is_empty() => Self::RouteRefresh,
            code::ROUTE_REFRESH => return Err(err()),
            code::GRACEFUL_RESTART => {
                if v.len() < 2 || !(v.len() - 2).is_multiple_of(4) {
                    return Err(err());
                }
                let word = u16::from_be_bytes([v[0], v[1]]);
                Self::GracefulRestart {
                    restart_state: word & 0x8000 != 0,
                    notification: word & 0x4000 != 0,
                    restart_time: word & 0x0fff,
                    families: v[2..]
                        .chunks_exact(4)
                        .map(|f| (u16::from_be_bytes([f[0], f[1]]), f[2], f[3] & 0x80 != 0))
                        .collect(),
                }
            }
            code::FOUR_OCTET_AS => {
                let a: [u8; 4] = v.try_into().map_err(|_| err())?;
                Self::FourOctetAs(u32::from_be_bytes(a))
            }
            code::ADD_PATH => {
                if v.is_empty() || !v.len().is_multiple_of(4) {
                    return Err(err());
                }
                Self::AddPath(
                    v.chunks_exact(4)
                        .map(|f| (u16::from_be_bytes([f[0], f[1]]), f[2], f[3]))
                        .collect(),
                )
            }
            _ => Self::Other {
                code: c,
                value: v.to_vec(),
            },
        })
    }

    /// Decodes the capabilities in one Capabilities optional parameter.
    pub fn decode_list(mut v: &[u8]) -> Result<Vec<Self>, CapabilityError> {
        let mut out = Vec::new();
        while !v.is_empty() {
            if v.len() < 2 {
                return Err(CapabilityError { code: v[0], len: 0 });
            }
            let (c, len) = (v[0], usize::from(v[1]));
            let value = v.get(2..2 + len).ok_or(CapabilityError { code: c, len })?;
            out.push(Self::decode(c, value)?);
            v = &v[2 + len..];
        }
        Ok(out)
    }
}

/// What a session runs with after both OPENs (RFC 4271 §4.2, RFC 5492).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Negotiated {
    /// Families both sides advertised (IPv4 unicast is implied when the
    /// peer sends no multiprotocol capability at all, RFC 4760 §8).
    pub families: Vec<Family>,
    pub four_octet_as: bool,
    pub route_refresh: bool,
    /// Both sides advertised graceful restart.
    pub graceful_restart: bool,
    /// The peer's restart time, when it advertised graceful restart.
    pub peer_restart_time: Option<u16>,
    /// Families whose NLRI the peer sends with path identifiers: we
    /// advertised receive, the peer send (RFC 7911 §4).
    pub add_path_receive: Vec<Family>,
    /// Families whose NLRI we send with a path identifier: we advertised
    /// send, the peer receive.
    pub add_path_send: Vec<Family>,
    /// min(ours, theirs) seconds; 0 = no keepalives, no hold timer.
    pub hold_time: u16,
    pub peer_asn: u32,
    pub peer_id: std::net::Ipv4Addr,
}

impl Negotiated {
    /// Intersects our capabilities with the peer's.
    pub fn from_opens(
        ours: &[Capability],
        theirs: &[Capability],
        our_hold: u16,
        their_hold: u16,
        peer_asn: u32,
        peer_id: std::net::Ipv4Addr,
    ) -> Self {
        let families_of = |caps: &[Capability]| -> Vec<Family> {
            caps.iter()
                .filter_map(|c| match c {
                    Capability::MultiProtocol { afi, safi } => Family::from_codes(*afi, *safi),
                    _ => None,
                })
                .collect()
        };
        let mine = families_of(ours);
        let mut peer = families_of(theirs);
        let peer_sent_mp = theirs
            .iter()
            .any(|c| matches!(c, Capability::MultiProtocol { .. }));
        if !peer_sent_mp {
            peer.push(Family::Ipv4Unicast);
        }
        let families: Vec<Family> = Family::ALL
            .into_iter()
            .filter(|f| {
                (mine.contains(f) || *f == Family::Ipv4Unicast && mine.is_empty())
                    && peer.contains(f)
            })
            .collect();
        // RFC 7911 §4: a family is in the capability at most once; any
        // other Send/Receive value than 1-3 is ignored.
        let add_path_of = |caps: &[Capability], bit: u8| -> Vec<Family> {
            caps.iter()
                .filter_map(|c| match c {
                    Capability::AddPath(list) => Some(list),
                    _ => None,
                })
                .flatten()
                .filter(|(_, _, sr)| matches!(sr, 1..=3) && sr & bit != 0)
                .filter_map(|(afi, safi, _)| Family::from_codes(*afi, *safi))
                .collect()
        };
        let both = |mine: Vec<Family>, theirs: Vec<Family>| -> Vec<Family> {
            Family::ALL
                .into_iter()
                .filter(|f| families.contains(f) && mine.contains(f) && theirs.contains(f))
                .collect()
        };
        let add_path_receive = both(add_path_of(ours, 1), add_path_of(theirs, 2));
        let add_path_send = both(add_path_of(ours, 2), add_path_of(theirs, 1));
        let has = |caps: &[Capability], p: fn(&Capability) -> bool| caps.iter().any(p);
        let gr = |c: &Capability| matches!(c, Capability::GracefulRestart { .. });
        Self {
            families,
            four_octet_as: has(ours, |c| matches!(c, Capability::FourOctetAs(_)))
                && has(theirs, |c| matches!(c, Capability::FourOctetAs(_))),
            route_refresh: has(theirs, |c| matches!(c, Capability::RouteRefresh)),
            graceful_restart: has(ours, gr) && has(theirs, gr),
            peer_restart_time: theirs.iter().find_map(|c| match c {
                Capability::GracefulRestart { restart_time, .. } => Some(*restart_time),
                _ => None,
            }),
            add_path_receive,
            add_path_send,
            hold_time: our_hold.min(their_hold),
            peer_asn,
            peer_id,
        }
    }
}
