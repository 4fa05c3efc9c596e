//! Checking the UPDATEs a peer sends us: RFC 7606 (revised UPDATE error
//! handling) with the Flow Spec NLRI rules of RFC 8955 §4.2 / §10 (and
//! RFC 8956 §3 for IPv6).
//!
//! [`check`] reads an [`Update`] whose framing [`Message::decode`] already
//! accepted (Withdrawn Routes Length and Total Path Attribute Length fit
//! the message, else NOTIFICATION 3/1: RFC 4271 §6.3, kept by RFC 7606
//! §4) and returns an [`UpdateVerdict`]: the parsed UPDATE, or the error
//! handling approach of RFC 7606 §2 that applies (the most severe one
//! when there are several, §3(h)), with every error found so the session
//! can count them per reason.
//!
//! ```text
//! attribute discard < treat-as-withdraw < AFI/SAFI disable < session reset
//! ```
//!
//! With Add-Path negotiated for receiving a family (RFC 7911 §3), each of
//! its NLRI starts with a 4-octet path identifier, read here into
//! [`PathNlri::path_id`]. The session counts the errors and stores the
//! result in the peer's Adj-RIB-In ([`crate::bgp::rib_in`]).
//!
//! This file has [`check`] and what it keeps while reading; the verdict
//! types are in `verdict.rs`, the path attribute checks in `attribute.rs`,
//! MP_REACH/MP_UNREACH and the Flow Spec NLRI in `mp.rs`.
//!
//! [`Message::decode`]: super::message::Message::decode

mod attribute;
mod mp;
mod verdict;

use std::collections::BTreeSet;

use crate::bgp::{
    attribute::PathAttribute,
    capability::Family,
    message::{Notification, Update, error_code},
};

use attribute::{check_attribute, split_attribute};
pub use verdict::{Approach, Nlri, PathNlri, Reason, ReceivedUpdate, UpdateError, UpdateVerdict};

/// Path attribute type codes we check on receipt (IANA "BGP Path
/// Attributes").
pub mod code {
    pub use super::super::attribute::code::*;
    pub const MULTI_EXIT_DISC: u8 = 4;
    pub const ATOMIC_AGGREGATE: u8 = 6;
    pub const AGGREGATOR: u8 = 7;
    pub const ORIGINATOR_ID: u8 = 9;
    pub const CLUSTER_LIST: u8 = 10;
    pub const AS4_AGGREGATOR: u8 = 18;
    pub const IPV6_EXTENDED_COMMUNITIES: u8 = 25;
    pub const LARGE_COMMUNITIES: u8 = 32;
}

/// UPDATE Message Error subcodes (RFC 4271 §4.5, §6.3).
pub mod update_subcode {
    pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
    pub const UNRECOGNIZED_WELL_KNOWN: u8 = 2;
    pub const OPTIONAL_ATTRIBUTE_ERROR: u8 = 9;
    pub const INVALID_NETWORK_FIELD: u8 = 10;
}

/// What the session knows when it reads an UPDATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiveContext {
    /// AS numbers in AS_PATH and AGGREGATOR are 4 octets (RFC 6793 §4.1).
    pub four_octet: bool,
    /// The peer is in our AS (LOCAL_PREF, ORIGINATOR_ID and CLUSTER_LIST
    /// are iBGP-only: RFC 7606 §7.5, §7.9, §7.10).
    pub ibgp: bool,
    /// The families both sides negotiated (RFC 4760 §8).
    pub families: Vec<Family>,
    /// The families whose NLRI carry a path identifier (RFC 7911 §4: we
    /// advertised receive and the peer send).
    pub add_path: Vec<Family>,
}

/// Builds the verdict as errors are found.
#[derive(Default)]
struct Findings {
    errors: Vec<UpdateError>,
    /// The (AFI, SAFI) of the first AFI/SAFI disable error.
    disable: Option<(u16, u8)>,
    /// The NOTIFICATION of the first session reset error.
    reset: Option<Notification>,
}

impl Findings {
    fn add(&mut self, reason: Reason, attribute: Option<u8>, approach: Approach) {
        tracing::debug!(?reason, ?attribute, %approach, "received UPDATE in error");
        self.errors.push(UpdateError {
            reason,
            attribute,
            approach,
        });
    }

    fn reset(&mut self, reason: Reason, attribute: Option<u8>, subcode: u8, data: Vec<u8>) {
        self.add(reason, attribute, Approach::SessionReset);
        self.reset.get_or_insert(Notification {
            code: error_code::UPDATE_MESSAGE,
            subcode,
            data,
        });
    }

    fn disable(&mut self, reason: Reason, attribute: u8, family: (u16, u8)) {
        self.add(reason, Some(attribute), Approach::AfiSafiDisable);
        self.disable.get_or_insert(family);
    }
}

/// One attribute as it is on the wire.
struct RawAttribute<'a> {
    flags: u8,
    code: u8,
    value: &'a [u8],
    /// Flags, type, length and value: the Data of a NOTIFICATION about it
    /// (RFC 4271 §6.3).
    whole: &'a [u8],
}

/// Checks a received UPDATE as RFC 7606 says; never panics, whatever the
/// octets.
pub fn check(update: &Update, ctx: &ReceiveContext) -> UpdateVerdict {
    let mut f = Findings::default();
    let mut parsed = ReceivedUpdate::default();

    // Withdrawn Routes and NLRI fields: IPv4 unicast prefixes (§5.3:
    // syntactically incorrect -> session reset).
    let v4_ids = ctx.add_path.contains(&Family::Ipv4Unicast);
    match mp::prefixes(&update.withdrawn, false, v4_ids) {
        Some(w) => parsed.withdrawn.extend(w),
        None => f.reset(
            Reason::MalformedWithdrawnField,
            None,
            update_subcode::INVALID_NETWORK_FIELD,
            Vec::new(),
        ),
    }
    match mp::prefixes(&update.nlri, false, v4_ids) {
        Some(n) => parsed.announced.extend(n),
        None => f.reset(
            Reason::MalformedNlriField,
            None,
            update_subcode::INVALID_NETWORK_FIELD,
            Vec::new(),
        ),
    }

    // The attribute list (§4: an overrun ends the walk; the NLRI field is
    // still found by the Total Path Attribute Length).
    let mut seen = BTreeSet::new();
    let mut mp_seen = false;
    let mut overrun = false;
    let mut rest = &update.path_attributes[..];
    let mut present = BTreeSet::new();
    while !rest.is_empty() {
        let Some((attr, used)) = split_attribute(rest) else {
            overrun = true;
            f.add(
                Reason::AttributeListOverrun,
                rest.get(1).copied(),
                Approach::TreatAsWithdraw,
            );
            break;
        };
        rest = &rest[used..];
        let code = attr.code;
        if !seen.insert(code) {
            if matches!(code, code::MP_REACH_NLRI | code::MP_UNREACH_NLRI) {
                f.reset(
                    Reason::DuplicateMpAttribute,
                    Some(code),
                    update_subcode::MALFORMED_ATTRIBUTE_LIST,
                    Vec::new(),
                );
            } else {
                f.add(
                    Reason::DuplicateAttribute,
                    Some(code),
                    Approach::AttributeDiscard,
                );
            }
            continue;
        }
        present.insert(code);
        mp_seen |= matches!(code, code::MP_REACH_NLRI | code::MP_UNREACH_NLRI);
        check_attribute(&attr, ctx, &mut f, &mut parsed);
    }

    // §5.1: MP_REACH/MP_UNREACH come first; if the walk stopped before
    // reaching one, and the session carries routes in them, the routes of
    // this UPDATE cannot be told and treat-as-withdraw cannot be applied.
    let mp_families = ctx.families.iter().any(|f| *f != Family::Ipv4Unicast);
    if overrun && !mp_seen && mp_families {
        f.reset(
            Reason::NlriNotLocated,
            None,
            update_subcode::MALFORMED_ATTRIBUTE_LIST,
            Vec::new(),
        );
    }

    // §3(d): ORIGIN and AS_PATH with any NLRI, NEXT_HOP with the NLRI
    // field (RFC 4760 §3: not needed for MP_REACH alone), LOCAL_PREF from
    // internal peers (RFC 4271 §5.1.5). Not checked when the walk stopped
    // early: the list is already in error.
    if !parsed.announced.is_empty() && !overrun {
        let mut needed = vec![code::ORIGIN, code::AS_PATH];
        if !update.nlri.is_empty() {
            needed.push(code::NEXT_HOP);
        }
        if ctx.ibgp {
            needed.push(code::LOCAL_PREF);
        }
        for c in needed {
            if !present.contains(&c) {
                f.add(Reason::MissingWellKnown, Some(c), Approach::TreatAsWithdraw);
            }
        }
    }

    // End-of-RIB (RFC 4724 §2).
    if f.errors.is_empty() && parsed.announced.is_empty() && parsed.withdrawn.is_empty() {
        match parsed.attributes.as_slice() {
            [] if update.path_attributes.is_empty()
                && update.withdrawn.is_empty()
                && update.nlri.is_empty() =>
            {
                parsed.end_of_rib = Some(Family::Ipv4Unicast.codes());
            }
            [PathAttribute::MpUnreach { family, nlri }] if nlri.is_empty() => {
                parsed.end_of_rib = Some(*family);
            }
            _ => {}
        }
    }

    if f.errors.is_empty() {
        UpdateVerdict::Ok(parsed)
    } else {
        verdict(f.errors, f.reset, f.disable, parsed)
    }
}

fn verdict(
    errors: Vec<UpdateError>,
    reset: Option<Notification>,
    disable: Option<(u16, u8)>,
    parsed: ReceivedUpdate,
) -> UpdateVerdict {
    let worst = errors
        .iter()
        .map(|e| e.approach)
        .max()
        .unwrap_or(Approach::AttributeDiscard);
    match (worst, reset, disable) {
        (Approach::SessionReset, Some(notification), _) => UpdateVerdict::SessionReset {
            notification,
            errors,
        },
        (Approach::AfiSafiDisable, _, Some((afi, safi))) => {
            UpdateVerdict::AfiSafiDisable { afi, safi, errors }
        }
        (Approach::AttributeDiscard, _, _) => UpdateVerdict::AttributeDiscard {
            update: parsed,
            errors,
        },
        _ => {
            let mut withdrawn = parsed.withdrawn;
            withdrawn.extend(parsed.announced);
            UpdateVerdict::TreatAsWithdraw { withdrawn, errors }
        }
    }
}
