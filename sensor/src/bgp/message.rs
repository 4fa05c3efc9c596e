//! BGP messages on the wire (RFC 4271 §4): the header, OPEN, UPDATE,
//! NOTIFICATION, KEEPALIVE and ROUTE-REFRESH (RFC 2918). Decoding checks
//! what RFC 4271 §6.1-6.2 asks and reports errors as the NOTIFICATION
//! code/subcode to send back.

use std::{fmt, net::Ipv4Addr};

use super::{
    attribute::{AttributeError, PathAttribute},
    capability::{Capability, Family},
};

pub const MARKER: [u8; 16] = [0xff; 16];
pub const HEADER_LEN: usize = 19;
/// RFC 4271 §4.1 (we never negotiate RFC 8654 extended messages).
pub const MAX_MESSAGE_LEN: usize = 4096;

/// Message types (RFC 4271 §4.1, RFC 2918 §3).
pub mod kind {
    pub const OPEN: u8 = 1;
    pub const UPDATE: u8 = 2;
    pub const NOTIFICATION: u8 = 3;
    pub const KEEPALIVE: u8 = 4;
    pub const ROUTE_REFRESH: u8 = 5;
}

/// A received message that breaks the protocol: the NOTIFICATION to send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (NOTIFICATION {code}/{subcode})")]
pub struct MessageError {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
    pub message: String,
}

impl MessageError {
    fn new(code: u8, subcode: u8, data: Vec<u8>, message: impl Into<String>) -> Self {
        Self {
            code,
            subcode,
            data,
            message: message.into(),
        }
    }

    pub fn notification(&self) -> Notification {
        Notification {
            code: self.code,
            subcode: self.subcode,
            data: self.data.clone(),
        }
    }
}

/// OPEN (RFC 4271 §4.2) with capabilities in optional parameter 2
/// (RFC 5492 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub version: u8,
    /// 2-octet My Autonomous System (AS_TRANS when the AS is 4-octet).
    pub my_as: u16,
    pub hold_time: u16,
    pub bgp_id: Ipv4Addr,
    pub capabilities: Vec<Capability>,
}

impl Open {
    /// The sender's AS: its 4-octet capability, else the 2-octet field.
    pub fn asn(&self) -> u32 {
        self.capabilities
            .iter()
            .find_map(|c| match c {
                Capability::FourOctetAs(a) => Some(*a),
                _ => None,
            })
            .unwrap_or(u32::from(self.my_as))
    }

    fn encode_body(&self, out: &mut Vec<u8>) {
        out.push(self.version);
        out.extend_from_slice(&self.my_as.to_be_bytes());
        out.extend_from_slice(&self.hold_time.to_be_bytes());
        out.extend_from_slice(&self.bgp_id.octets());
        let mut caps = Vec::new();
        for c in &self.capabilities {
            c.encode(&mut caps);
        }
        if caps.is_empty() {
            out.push(0);
        } else {
            // One Capabilities parameter holding them all (RFC 5492 §4).
            out.push(caps.len() as u8 + 2);
            out.push(2);
            out.push(caps.len() as u8);
            out.extend_from_slice(&caps);
        }
    }

    fn decode_body(b: &[u8]) -> Result<Self, MessageError> {
        let open_err = |sub, data, msg: &str| MessageError::new(2, sub, data, msg);
        if b.len() < 10 {
            return Err(MessageError::new(1, 2, Vec::new(), "OPEN too short"));
        }
        let version = b[0];
        if version != 4 {
            return Err(open_err(1, vec![0, 4], "unsupported BGP version"));
        }
        let my_as = u16::from_be_bytes([b[1], b[2]]);
        let hold_time = u16::from_be_bytes([b[3], b[4]]);
        let bgp_id = Ipv4Addr::new(b[5], b[6], b[7], b[8]);
        let opt_len = usize::from(b[9]);
        let mut params = &b[10..];
        if params.len() != opt_len {
            return Err(open_err(
                0,
                Vec::new(),
                "optional parameters length mismatch",
            ));
        }
        // RFC 9072 extended optional parameters: 0xff non-ext type.
        let extended = opt_len > 0 && params[0] == 0xff;
        if extended {
            if params.len() < 3 {
                return Err(open_err(0, Vec::new(), "extended parameters truncated"));
            }
            params = &params[3..];
        }
        let mut capabilities = Vec::new();
        while !params.is_empty() {
            let (ptype, plen, hdr) = if extended {
                if params.len() < 3 {
                    return Err(open_err(0, Vec::new(), "optional parameter truncated"));
                }
                (
                    params[0],
                    usize::from(u16::from_be_bytes([params[1], params[2]])),
                    3,
                )
            } else {
                if params.len() < 2 {
                    return Err(open_err(0, Vec::new(), "optional parameter truncated"));
                }
                (params[0], usize::from(params[1]), 2)
            };
            let value = params
                .get(hdr..hdr + plen)
                .ok_or_else(|| open_err(0, Vec::new(), "optional parameter truncated"))?;
            if ptype != 2 {
                return Err(open_err(4, Vec::new(), "unsupported optional parameter"));
            }
            capabilities.extend(
                Capability::decode_list(value)
                    .map_err(|e| open_err(0, Vec::new(), &e.to_string()))?,
            );
            params = &params[hdr + plen..];
        }
        Ok(Self {
            version,
            my_as,
            hold_time,
            bgp_id,
            capabilities,
        })
    }
}

/// UPDATE (RFC 4271 §4.3). The path attributes stay raw until asked for,
/// because how AS_PATH reads depends on the session (RFC 6793).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Update {
    /// Withdrawn IPv4 unicast prefixes, encoded.
    pub withdrawn: Vec<u8>,
    pub path_attributes: Vec<u8>,
    /// IPv4 unicast NLRI, encoded.
    pub nlri: Vec<u8>,
}

impl Update {
    pub fn new(withdrawn: Vec<u8>, attributes: &[PathAttribute], nlri: Vec<u8>) -> Self {
        let mut path_attributes = Vec::new();
        for a in attributes {
            a.encode(&mut path_attributes);
        }
        Self {
            withdrawn,
            path_attributes,
            nlri,
        }
    }

    /// End-of-RIB for a family (RFC 4724 §2): an empty UPDATE for IPv4
    /// unicast, else an MP_UNREACH_NLRI with no NLRI.
    pub fn end_of_rib(family: Family) -> Self {
        match family {
            Family::Ipv4Unicast => Self::default(),
            f => Self::new(
                Vec::new(),
                &[PathAttribute::mp_unreach(f, Vec::new())],
                Vec::new(),
            ),
        }
    }

    pub fn attributes(&self, four_octet: bool) -> Result<Vec<PathAttribute>, AttributeError> {
        PathAttribute::decode_all(&self.path_attributes, four_octet)
    }

    fn encode_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.withdrawn.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.withdrawn);
        out.extend_from_slice(&(self.path_attributes.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.path_attributes);
        out.extend_from_slice(&self.nlri);
    }

    fn decode_body(b: &[u8]) -> Result<Self, MessageError> {
        let malformed = || MessageError::new(3, 1, Vec::new(), "malformed attribute list");
        let wlen = usize::from(u16::from_be_bytes([b[0], b[1]]));
        let withdrawn = b.get(2..2 + wlen).ok_or_else(malformed)?.to_vec();
        let rest = &b[2 + wlen..];
        if rest.len() < 2 {
            return Err(malformed());
        }
        let alen = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let path_attributes = rest.get(2..2 + alen).ok_or_else(malformed)?.to_vec();
        let nlri = rest[2 + alen..].to_vec();
        Ok(Self {
            withdrawn,
            path_attributes,
            nlri,
        })
    }
}

/// NOTIFICATION (RFC 4271 §4.5).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

/// NOTIFICATION codes (RFC 4271 §4.5, RFC 7313 §5).
pub mod error_code {
    pub const MESSAGE_HEADER: u8 = 1;
    pub const OPEN_MESSAGE: u8 = 2;
    pub const UPDATE_MESSAGE: u8 = 3;
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    pub const FSM: u8 = 5;
    pub const CEASE: u8 = 6;
    pub const ROUTE_REFRESH: u8 = 7;
}

/// Cease subcodes (RFC 4486 §4, RFC 8538 §5).
pub mod cease {
    pub const MAX_PREFIXES: u8 = 1;
    pub const ADMINISTRATIVE_SHUTDOWN: u8 = 2;
    pub const PEER_DECONFIGURED: u8 = 3;
    pub const ADMINISTRATIVE_RESET: u8 = 4;
    pub const CONNECTION_REJECTED: u8 = 5;
    pub const OTHER_CONFIGURATION_CHANGE: u8 = 6;
    pub const COLLISION_RESOLUTION: u8 = 7;
    pub const OUT_OF_RESOURCES: u8 = 8;
    pub const HARD_RESET: u8 = 9;
}

impl Notification {
    pub fn new(code: u8, subcode: u8) -> Self {
        Self {
            code,
            subcode,
            data: Vec::new(),
        }
    }

    /// Cease / Administrative Shutdown with a shutdown communication
    /// (RFC 9003 §2: length octet, then at most 255 octets of UTF-8, cut at
    /// a character boundary).
    pub fn shutdown(text: &str) -> Self {
        Self::cease_with_text(cease::ADMINISTRATIVE_SHUTDOWN, text)
    }

    /// Cease with the given subcode (2 or 4 carry text per RFC 9003).
    pub fn cease_with_text(subcode: u8, text: &str) -> Self {
        let mut end = text.len().min(255);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let mut data = vec![end as u8];
        data.extend_from_slice(&text.as_bytes()[..end]);
        Self {
            code: error_code::CEASE,
            subcode,
            data,
        }
    }

    /// The RFC 9003 shutdown communication of a Cease 2 or 4, if any.
    pub fn communication(&self) -> Option<String> {
        let text_subcode = matches!(
            self.subcode,
            cease::ADMINISTRATIVE_SHUTDOWN | cease::ADMINISTRATIVE_RESET
        );
        if self.code != error_code::CEASE || !text_subcode {
            return None;
        }
        let (&len, rest) = self.data.split_first()?;
        let text = rest.get(..usize::from(len))?;
        std::str::from_utf8(text).ok().map(str::to_owned)
    }

    fn names(&self) -> (&'static str, &'static str) {
        let code = match self.code {
            1 => "Message Header Error",
            2 => "OPEN Message Error",
            3 => "UPDATE Message Error",
            4 => "Hold Timer Expired",
            5 => "Finite State Machine Error",
            6 => "Cease",
            7 => "ROUTE-REFRESH Message Error",
            _ => "unknown",
        };
        let sub = match (self.code, self.subcode) {
            (_, 0) => "",
            (1, 1) => "Connection Not Synchronized",
            (1, 2) => "Bad Message Length",
            (1, 3) => "Bad Message Type",
            (2, 1) => "Unsupported Version Number",
            (2, 2) => "Bad Peer AS",
            (2, 3) => "Bad BGP Identifier",
            (2, 4) => "Unsupported Optional Parameter",
            (2, 6) => "Unacceptable Hold Time",
            (2, 7) => "Unsupported Capability",
            (2, 11) => "Role Mismatch",
            (3, 1) => "Malformed Attribute List",
            (3, 2) => "Unrecognized Well-known Attribute",
            (3, 3) => "Missing Well-known Attribute",
            (3, 4) => "Attribute Flags Error",
            (3, 5) => "Attribute Length Error",
            (3, 6) => "Invalid ORIGIN Attribute",
            (3, 8) => "Invalid NEXT_HOP Attribute",
            (3, 9) => "Optional Attribute Error",
            (3, 10) => "Invalid Network Field",
            (3, 11) => "Malformed AS_PATH",
            (5, 1) => "Unexpected Message in OpenSent",
            (5, 2) => "Unexpected Message in OpenConfirm",
            (5, 3) => "Unexpected Message in Established",
            (6, 1) => "Maximum Number of Prefixes Reached",
            (6, 2) => "Administrative Shutdown",
            (6, 3) => "Peer De-configured",
            (6, 4) => "Administrative Reset",
            (6, 5) => "Connection Rejected",
            (6, 6) => "Other Configuration Change",
            (6, 7) => "Connection Collision Resolution",
            (6, 8) => "Out of Resources",
            (6, 9) => "Hard Reset",
            (7, 1) => "Invalid Message Length",
            _ => "unknown subcode",
        };
        (code, sub)
    }
}

impl fmt::Display for Notification {
    /// E.g. `6/2 Cease, Administrative Shutdown: "maintenance"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (code, sub) = self.names();
        write!(f, "{}/{} {code}", self.code, self.subcode)?;
        if !sub.is_empty() {
            write!(f, ", {sub}")?;
        }
        if let Some(text) = self.communication() {
            write!(f, ": {text:?}")?;
        }
        Ok(())
    }
}

/// ROUTE-REFRESH (RFC 2918 §3; the subtype octet per RFC 7313 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRefresh {
    pub afi: u16,
    pub subtype: u8,
    pub safi: u8,
}

/// A BGP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Open(Open),
    Update(Update),
    Notification(Notification),
    Keepalive,
    RouteRefresh(RouteRefresh),
}

impl Message {
    pub fn kind(&self) -> u8 {
        match self {
            Self::Open(_) => kind::OPEN,
            Self::Update(_) => kind::UPDATE,
            Self::Notification(_) => kind::NOTIFICATION,
            Self::Keepalive => kind::KEEPALIVE,
            Self::RouteRefresh(_) => kind::ROUTE_REFRESH,
        }
    }

    /// The whole message: marker, length, type, body. Panics never; a body
    /// over 4096 octets is the caller's bug, caught by [`Message::check_len`].
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&MARKER);
        out.extend_from_slice(&[0, 0]);
        out.push(self.kind());
        match self {
            Self::Open(o) => o.encode_body(&mut out),
            Self::Update(u) => u.encode_body(&mut out),
            Self::Notification(n) => {
                out.push(n.code);
                out.push(n.subcode);
                out.extend_from_slice(&n.data);
            }
            Self::Keepalive => {}
            Self::RouteRefresh(r) => {
                out.extend_from_slice(&r.afi.to_be_bytes());
                out.push(r.subtype);
                out.push(r.safi);
            }
        }
        let len = out.len().min(usize::from(u16::MAX)) as u16;
        out[16..18].copy_from_slice(&len.to_be_bytes());
        out
    }

    /// Whether the encoded message fits the 4096-octet limit.
    pub fn check_len(&self) -> Result<usize, usize> {
        let n = self.encode().len();
        if n <= MAX_MESSAGE_LEN { Ok(n) } else { Err(n) }
    }

    /// The length of the first message in `buf` once the whole of it is
    /// there (`None`: read more). Checks the marker and length (§6.1).
    pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, MessageError> {
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        if buf[..16] != MARKER {
            return Err(MessageError::new(
                1,
                1,
                Vec::new(),
                "marker is not all ones",
            ));
        }
        let len = usize::from(u16::from_be_bytes([buf[16], buf[17]]));
        let min = match buf[18] {
            kind::OPEN => 29,
            kind::UPDATE => 23,
            kind::NOTIFICATION => 21,
            kind::KEEPALIVE => 19,
            kind::ROUTE_REFRESH => 23,
            t => {
                return Err(MessageError::new(
                    1,
                    3,
                    vec![t],
                    format!("unknown message type {t}"),
                ));
            }
        };
        let exact = matches!(buf[18], kind::KEEPALIVE | kind::ROUTE_REFRESH);
        if len < min || len > MAX_MESSAGE_LEN || (exact && len != min) {
            return Err(MessageError::new(
                1,
                2,
                buf[16..18].to_vec(),
                format!("bad message length {len}"),
            ));
        }
        Ok((buf.len() >= len).then_some(len))
    }

    /// Decodes one whole message (as delimited by [`Message::frame_len`]).
    pub fn decode(frame: &[u8]) -> Result<Self, MessageError> {
        match Self::frame_len(frame)? {
            Some(len) if len == frame.len() => {}
            _ => return Err(MessageError::new(1, 2, Vec::new(), "frame length mismatch")),
        }
        let body = &frame[HEADER_LEN..];
        Ok(match frame[18] {
            kind::OPEN => Self::Open(Open::decode_body(body)?),
            kind::UPDATE => Self::Update(Update::decode_body(body)?),
            kind::NOTIFICATION => Self::Notification(Notification {
                code: body[0],
                subcode: body[1],
                data: body[2..].to_vec(),
            }),
            kind::KEEPALIVE => Self::Keepalive,
            _ => Self::RouteRefresh(RouteRefresh {
                afi: u16::from_be_bytes([body[0], body[1]]),
                subtype: body[2],
                safi: body[3],
            }),
        })
    }
}
