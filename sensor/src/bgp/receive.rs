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
//! We keep no Adj-RIB-In yet: the session only counts; the parsed result
//! is what a later receive side will store.
//!
//! [`Message::decode`]: super::message::Message::decode

use std::{collections::BTreeSet, fmt};

use ipnet::IpNet;
use serde::Serialize;

use super::{
    attribute::{PathAttribute, decode_prefixes, flags},
    capability::Family,
    flowspec::{FlowSpec, IpFamily},
    message::{Notification, Update, error_code},
};

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
}

/// The error-handling approaches of RFC 7606 §2, least severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Approach {
    /// Drop the attribute, keep processing the UPDATE.
    AttributeDiscard,
    /// Handle every route in the UPDATE as withdrawn.
    TreatAsWithdraw,
    /// Ignore the AFI/SAFI for the rest of the session (RFC 4760 §7).
    AfiSafiDisable,
    /// NOTIFICATION and close.
    SessionReset,
}

impl fmt::Display for Approach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AttributeDiscard => "attribute discard",
            Self::TreatAsWithdraw => "treat-as-withdraw",
            Self::AfiSafiDisable => "AFI/SAFI disable",
            Self::SessionReset => "session reset",
        })
    }
}

/// Why a received UPDATE is in error; the counter names of
/// `edge-sensor bgp` and `edge_sensor_bgp_update_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, thiserror::Error)]
pub enum Reason {
    /// Withdrawn Routes Length or Total Path Attribute Length past the
    /// message: found while framing ([`Message::decode`], NOTIFICATION
    /// 3/1, RFC 4271 §6.3 kept by RFC 7606 §4), counted by the session.
    #[error("withdrawn routes or path attribute length past the message")]
    UpdateLengths,
    /// An attribute runs past the path attribute list, or fewer octets
    /// than an attribute header remain (RFC 7606 §4).
    #[error("attribute length overruns the attribute list")]
    AttributeListOverrun,
    /// Optional or Transitive bit wrong for a known attribute (§3(c)).
    #[error("attribute flags conflict with the type")]
    AttributeFlags,
    /// MP_REACH_NLRI or MP_UNREACH_NLRI more than once (§3(g)).
    #[error("MP_REACH_NLRI or MP_UNREACH_NLRI appears more than once")]
    DuplicateMpAttribute,
    /// Any other attribute more than once: all but the first dropped (§3(g)).
    #[error("attribute appears more than once")]
    DuplicateAttribute,
    /// A well-known mandatory attribute missing while NLRI are present
    /// (§3(d)).
    #[error("well-known mandatory attribute missing")]
    MissingWellKnown,
    /// A type code we do not know flagged well-known (RFC 4271 §6.3).
    #[error("unrecognized well-known attribute")]
    UnrecognizedWellKnown,
    #[error("malformed ORIGIN")]
    MalformedOrigin,
    #[error("malformed AS_PATH")]
    MalformedAsPath,
    #[error("malformed NEXT_HOP")]
    MalformedNextHop,
    #[error("malformed MULTI_EXIT_DISC")]
    MalformedMed,
    #[error("malformed LOCAL_PREF")]
    MalformedLocalPref,
    #[error("malformed ATOMIC_AGGREGATE")]
    MalformedAtomicAggregate,
    #[error("malformed AGGREGATOR")]
    MalformedAggregator,
    #[error("malformed COMMUNITIES")]
    MalformedCommunities,
    #[error("malformed ORIGINATOR_ID")]
    MalformedOriginatorId,
    #[error("malformed CLUSTER_LIST")]
    MalformedClusterList,
    #[error("malformed EXTENDED_COMMUNITIES")]
    MalformedExtendedCommunities,
    #[error("malformed AS4_PATH")]
    MalformedAs4Path,
    #[error("malformed AS4_AGGREGATOR")]
    MalformedAs4Aggregator,
    #[error("malformed IPv6 Address Specific Extended Community")]
    MalformedIpv6ExtendedCommunities,
    #[error("malformed LARGE_COMMUNITY")]
    MalformedLargeCommunities,
    /// LOCAL_PREF, ORIGINATOR_ID or CLUSTER_LIST from an external peer
    /// (§7.5, §7.9, §7.10).
    #[error("iBGP-only attribute from an external peer")]
    IbgpAttributeFromEbgp,
    /// MP_REACH_NLRI too short, or its next hop length does not fit the
    /// AFI/SAFI or the attribute (§7.11).
    #[error("malformed MP_REACH_NLRI")]
    MalformedMpReach,
    /// MP_UNREACH_NLRI too short (§7.12).
    #[error("malformed MP_UNREACH_NLRI")]
    MalformedMpUnreach,
    /// NLRI in MP_REACH_NLRI / MP_UNREACH_NLRI not syntactically correct
    /// (§5.3, §7.11, §7.12), including Flow Spec NLRI whose length octets
    /// run past the attribute (RFC 8955 §4.1).
    #[error("malformed NLRI in MP_REACH_NLRI or MP_UNREACH_NLRI")]
    MalformedMpNlri,
    /// The NLRI field is not syntactically correct (§5.3).
    #[error("malformed NLRI field")]
    MalformedNlriField,
    /// The Withdrawn Routes field is not syntactically correct (§5.3).
    #[error("malformed withdrawn routes field")]
    MalformedWithdrawnField,
    /// A Flow Spec NLRI that frames but does not parse: unknown component
    /// type, components out of order, bad operator or prefix (RFC 8955
    /// §4.2, §10; RFC 8956 §3).
    #[error("malformed Flow Spec NLRI")]
    MalformedFlowSpec,
    /// MP_REACH/MP_UNREACH for a family the session did not negotiate.
    #[error("NLRI of a family not negotiated")]
    FamilyNotNegotiated,
    /// An attribute error before MP_REACH/MP_UNREACH could be located, so
    /// the routes of the UPDATE are unknown (§5.1, §4).
    #[error("NLRI cannot be located")]
    NlriNotLocated,
}

impl Reason {
    /// The kebab-case name (as serialized).
    pub fn name(self) -> &'static str {
        match self {
            Self::UpdateLengths => "update-lengths",
            Self::AttributeListOverrun => "attribute-list-overrun",
            Self::AttributeFlags => "attribute-flags",
            Self::DuplicateMpAttribute => "duplicate-mp-attribute",
            Self::DuplicateAttribute => "duplicate-attribute",
            Self::MissingWellKnown => "missing-well-known",
            Self::UnrecognizedWellKnown => "unrecognized-well-known",
            Self::MalformedOrigin => "malformed-origin",
            Self::MalformedAsPath => "malformed-as-path",
            Self::MalformedNextHop => "malformed-next-hop",
            Self::MalformedMed => "malformed-med",
            Self::MalformedLocalPref => "malformed-local-pref",
            Self::MalformedAtomicAggregate => "malformed-atomic-aggregate",
            Self::MalformedAggregator => "malformed-aggregator",
            Self::MalformedCommunities => "malformed-communities",
            Self::MalformedOriginatorId => "malformed-originator-id",
            Self::MalformedClusterList => "malformed-cluster-list",
            Self::MalformedExtendedCommunities => "malformed-extended-communities",
            Self::MalformedAs4Path => "malformed-as4-path",
            Self::MalformedAs4Aggregator => "malformed-as4-aggregator",
            Self::MalformedIpv6ExtendedCommunities => "malformed-ipv6-extended-communities",
            Self::MalformedLargeCommunities => "malformed-large-communities",
            Self::IbgpAttributeFromEbgp => "ibgp-attribute-from-ebgp",
            Self::MalformedMpReach => "malformed-mp-reach",
            Self::MalformedMpUnreach => "malformed-mp-unreach",
            Self::MalformedMpNlri => "malformed-mp-nlri",
            Self::MalformedNlriField => "malformed-nlri-field",
            Self::MalformedWithdrawnField => "malformed-withdrawn-field",
            Self::MalformedFlowSpec => "malformed-flowspec",
            Self::FamilyNotNegotiated => "family-not-negotiated",
            Self::NlriNotLocated => "nlri-not-located",
        }
    }
}

impl Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// One error in a received UPDATE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpdateError {
    pub reason: Reason,
    /// The attribute type code, if the error is in one.
    pub attribute: Option<u8>,
    pub approach: Approach,
}

impl fmt::Display for UpdateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.reason)?;
        if let Some(c) = self.attribute {
            write!(f, " (attribute {c})")?;
        }
        write!(f, ": {}", self.approach)
    }
}

/// One received NLRI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Nlri {
    /// IPv4 or IPv6 unicast (RFC 4271 §4.3, RFC 4760 §5).
    Prefix(IpNet),
    /// A Flow Spec rule (RFC 8955 §4, RFC 8956 §3).
    FlowSpec(FlowSpec),
    /// NLRI we did not (or could not) parse: an unknown family, or a
    /// malformed Flow Spec NLRI with its length octets.
    Raw { afi: u16, safi: u8, bytes: Vec<u8> },
}

/// A received UPDATE, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReceivedUpdate {
    /// Withdrawn Routes field and MP_UNREACH_NLRI.
    pub withdrawn: Vec<Nlri>,
    /// NLRI field and MP_REACH_NLRI.
    pub announced: Vec<Nlri>,
    /// The well-formed attributes we kept, in order received (MP_REACH and
    /// MP_UNREACH included, their NLRI raw).
    pub attributes: Vec<PathAttribute>,
    /// End-of-RIB marker (RFC 4724 §2) for this (AFI, SAFI).
    pub end_of_rib: Option<(u16, u8)>,
}

/// What to do with a received UPDATE (RFC 7606 §2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateVerdict {
    /// No error.
    Ok(ReceivedUpdate),
    /// Use `update` without the discarded attributes.
    AttributeDiscard {
        update: ReceivedUpdate,
        errors: Vec<UpdateError>,
    },
    /// Every route of the UPDATE is withdrawn: `withdrawn` lists them all.
    TreatAsWithdraw {
        withdrawn: Vec<Nlri>,
        errors: Vec<UpdateError>,
    },
    /// Ignore (AFI, SAFI) for the rest of the session (RFC 4760 §7).
    AfiSafiDisable {
        afi: u16,
        safi: u8,
        errors: Vec<UpdateError>,
    },
    /// Send `notification` and close.
    SessionReset {
        notification: Notification,
        errors: Vec<UpdateError>,
    },
}

impl UpdateVerdict {
    /// Every error found (empty for [`UpdateVerdict::Ok`]).
    pub fn errors(&self) -> &[UpdateError] {
        match self {
            Self::Ok(_) => &[],
            Self::AttributeDiscard { errors, .. }
            | Self::TreatAsWithdraw { errors, .. }
            | Self::AfiSafiDisable { errors, .. }
            | Self::SessionReset { errors, .. } => errors,
        }
    }

    /// The approach taken, `None` when there was no error.
    pub fn approach(&self) -> Option<Approach> {
        match self {
            Self::Ok(_) => None,
            Self::AttributeDiscard { .. } => Some(Approach::AttributeDiscard),
            Self::TreatAsWithdraw { .. } => Some(Approach::TreatAsWithdraw),
            Self::AfiSafiDisable { .. } => Some(Approach::AfiSafiDisable),
            Self::SessionReset { .. } => Some(Approach::SessionReset),
        }
    }
}

/// The expected (Optional, Transitive) bits of the attributes whose
/// flags we check (RFC 4271 §5, RFC 4760 §3-4, RFC 1997, RFC 4360,
/// RFC 4456 §8, RFC 6793 §3, RFC 5701, RFC 8092).
fn expected_flags(code: u8) -> Option<u8> {
    use flags::{OPTIONAL as O, TRANSITIVE as T};
    Some(match code {
        code::ORIGIN
        | code::AS_PATH
        | code::NEXT_HOP
        | code::LOCAL_PREF
        | code::ATOMIC_AGGREGATE => T,
        code::MULTI_EXIT_DISC
        | code::ORIGINATOR_ID
        | code::CLUSTER_LIST
        | code::MP_REACH_NLRI
        | code::MP_UNREACH_NLRI => O,
        code::AGGREGATOR
        | code::COMMUNITIES
        | code::EXTENDED_COMMUNITIES
        | code::AS4_PATH
        | code::AS4_AGGREGATOR
        | code::IPV6_EXTENDED_COMMUNITIES
        | code::LARGE_COMMUNITIES => O | T,
        _ => return None,
    })
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
    match decode_prefixes(&update.withdrawn, false) {
        Some(w) => parsed.withdrawn.extend(w.into_iter().map(Nlri::Prefix)),
        None => f.reset(
            Reason::MalformedWithdrawnField,
            None,
            update_subcode::INVALID_NETWORK_FIELD,
            Vec::new(),
        ),
    }
    match decode_prefixes(&update.nlri, false) {
        Some(n) => parsed.announced.extend(n.into_iter().map(Nlri::Prefix)),
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

/// The next attribute and the octets it takes, or `None` when its header
/// or value runs past `b` (§4).
fn split_attribute(b: &[u8]) -> Option<(RawAttribute<'_>, usize)> {
    let (&fl, &code) = (b.first()?, b.get(1)?);
    let (len, header) = if fl & flags::EXTENDED_LENGTH != 0 {
        let l = b.get(2..4)?;
        (usize::from(u16::from_be_bytes([l[0], l[1]])), 4)
    } else {
        (usize::from(*b.get(2)?), 3)
    };
    let end = header + len;
    let value = b.get(header..end)?;
    Some((
        RawAttribute {
            flags: fl,
            code,
            value,
            whole: &b[..end],
        },
        end,
    ))
}

/// Checks one attribute (the first of its type) per RFC 7606 §3(c) and
/// §7; keeps it in `parsed` unless it is discarded.
fn check_attribute(
    a: &RawAttribute<'_>,
    ctx: &ReceiveContext,
    f: &mut Findings,
    parsed: &mut ReceivedUpdate,
) {
    use Approach::{AttributeDiscard as Discard, TreatAsWithdraw as Withdraw};
    let (c, v) = (a.code, a.value);
    let Some(expected) = expected_flags(c) else {
        if a.flags & flags::OPTIONAL == 0 {
            // RFC 4271 §6.3, not revised by RFC 7606.
            f.reset(
                Reason::UnrecognizedWellKnown,
                Some(c),
                update_subcode::UNRECOGNIZED_WELL_KNOWN,
                a.whole.to_vec(),
            );
            return;
        }
        // RFC 4271 §5: an unrecognized optional non-transitive attribute
        // is ignored; a transitive one is kept, with the Partial bit set
        // should it ever be passed on.
        if a.flags & flags::TRANSITIVE != 0 {
            parsed.attributes.push(PathAttribute::Other {
                flags: (a.flags | flags::PARTIAL) & !flags::EXTENDED_LENGTH,
                code: c,
                value: v.to_vec(),
            });
        }
        return;
    };
    // §3(c): Optional or Transitive bit in conflict -> treat-as-withdraw.
    // MP_REACH/MP_UNREACH are still parsed, to know the routes.
    let mask = flags::OPTIONAL | flags::TRANSITIVE;
    if a.flags & mask != expected {
        f.add(Reason::AttributeFlags, Some(c), Withdraw);
        if !matches!(c, code::MP_REACH_NLRI | code::MP_UNREACH_NLRI) {
            return;
        }
    }
    let ebgp = !ctx.ibgp;
    let error: Option<(Reason, Approach)> = match c {
        // §7.1: length 1, value 0-2.
        code::ORIGIN => (!matches!(v, [0..=2])).then_some((Reason::MalformedOrigin, Withdraw)),
        // §7.2.
        code::AS_PATH => {
            (!as_path_ok(v, ctx.four_octet, true)).then_some((Reason::MalformedAsPath, Withdraw))
        }
        // §7.3.
        code::NEXT_HOP => (v.len() != 4).then_some((Reason::MalformedNextHop, Withdraw)),
        // §7.4.
        code::MULTI_EXIT_DISC => (v.len() != 4).then_some((Reason::MalformedMed, Withdraw)),
        // §7.5: from an external peer discarded; else length 4.
        code::LOCAL_PREF if ebgp => Some((Reason::IbgpAttributeFromEbgp, Discard)),
        code::LOCAL_PREF => (v.len() != 4).then_some((Reason::MalformedLocalPref, Withdraw)),
        // §7.6.
        code::ATOMIC_AGGREGATE => {
            (!v.is_empty()).then_some((Reason::MalformedAtomicAggregate, Discard))
        }
        // §7.7: 6 octets, or 8 with 4-octet AS numbers.
        code::AGGREGATOR => (v.len() != if ctx.four_octet { 8 } else { 6 })
            .then_some((Reason::MalformedAggregator, Discard)),
        // §7.8: a non-zero multiple of 4.
        code::COMMUNITIES => (v.is_empty() || !v.len().is_multiple_of(4))
            .then_some((Reason::MalformedCommunities, Withdraw)),
        // §7.9.
        code::ORIGINATOR_ID if ebgp => Some((Reason::IbgpAttributeFromEbgp, Discard)),
        code::ORIGINATOR_ID => (v.len() != 4).then_some((Reason::MalformedOriginatorId, Withdraw)),
        // §7.10: a non-zero multiple of 4.
        code::CLUSTER_LIST if ebgp => Some((Reason::IbgpAttributeFromEbgp, Discard)),
        code::CLUSTER_LIST => (v.is_empty() || !v.len().is_multiple_of(4))
            .then_some((Reason::MalformedClusterList, Withdraw)),
        // §7.14 (RFC 8955 §10: a malformed action counts here too; the
        // actions are read by the later receive side).
        code::EXTENDED_COMMUNITIES => (v.is_empty() || !v.len().is_multiple_of(8))
            .then_some((Reason::MalformedExtendedCommunities, Withdraw)),
        // RFC 6793 §6: a malformed AS4_PATH or AS4_AGGREGATOR is discarded.
        code::AS4_PATH => {
            (!as_path_ok(v, true, false)).then_some((Reason::MalformedAs4Path, Discard))
        }
        code::AS4_AGGREGATOR => (v.len() != 8).then_some((Reason::MalformedAs4Aggregator, Discard)),
        // §7.15 (RFC 5701): a non-zero multiple of 20.
        code::IPV6_EXTENDED_COMMUNITIES => (v.is_empty() || !v.len().is_multiple_of(20))
            .then_some((Reason::MalformedIpv6ExtendedCommunities, Withdraw)),
        // RFC 8092 §6: a non-zero multiple of 12.
        code::LARGE_COMMUNITIES => (v.is_empty() || !v.len().is_multiple_of(12))
            .then_some((Reason::MalformedLargeCommunities, Withdraw)),
        // §7.11, §7.12: parsed, checked and kept there.
        code::MP_REACH_NLRI => return mp_reach(a, ctx, f, parsed),
        code::MP_UNREACH_NLRI => return mp_unreach(a, ctx, f, parsed),
        _ => None,
    };
    match error {
        Some((reason, approach)) => f.add(reason, Some(c), approach),
        None => {
            if let Ok(attr) = PathAttribute::decode_one(a.flags, c, v, ctx.four_octet) {
                parsed.attributes.push(attr);
            } else {
                // Valid per RFC 7606 but outside what PathAttribute types
                // (e.g. AS_CONFED segments): kept raw.
                parsed.attributes.push(PathAttribute::Other {
                    flags: a.flags & !flags::EXTENDED_LENGTH,
                    code: c,
                    value: v.to_vec(),
                });
            }
        }
    }
}

/// Whether an AS_PATH (or AS4_PATH) value is well formed (RFC 7606 §7.2):
/// every segment of a known type (RFC 4271 §4.3; AS_CONFED_* of RFC 5065
/// §3 only in AS_PATH), non-empty, and none runs past the attribute.
fn as_path_ok(mut v: &[u8], four_octet: bool, confed: bool) -> bool {
    let size = if four_octet { 4 } else { 2 };
    while !v.is_empty() {
        let [kind, count, ..] = *v else {
            return false;
        };
        let known = matches!(kind, 1 | 2) || (confed && matches!(kind, 3 | 4));
        let n = 2 + usize::from(count) * size;
        if !known || count == 0 || v.len() < n {
            return false;
        }
        v = &v[n..];
    }
    true
}

/// The Flow Spec IP family of (AFI, SAFI), if it is Flow Spec.
fn flowspec_family(afi: u16, safi: u8) -> Option<IpFamily> {
    match Family::from_codes(afi, safi)? {
        Family::Ipv4FlowSpec => Some(IpFamily::Ipv4),
        Family::Ipv6FlowSpec => Some(IpFamily::Ipv6),
        _ => None,
    }
}

/// Parses the NLRI of MP_REACH/MP_UNREACH for (AFI, SAFI): `Err` when
/// they are not syntactically correct (§5.3), malformed Flow Spec rules
/// that still frame are returned raw with `true` (RFC 8955 §4.2).
fn mp_nlri(afi: u16, safi: u8, mut b: &[u8]) -> Result<(Vec<Nlri>, bool), ()> {
    if let Some(family) = flowspec_family(afi, safi) {
        let mut out = Vec::new();
        let mut malformed = false;
        while let Some(&first) = b.first() {
            // RFC 8955 §4.1: 1 octet below 240, else 0xfnnn.
            let (len, header) = if first >= 0xf0 {
                let second = *b.get(1).ok_or(())?;
                (usize::from(first & 0x0f) << 8 | usize::from(second), 2)
            } else {
                (usize::from(first), 1)
            };
            let whole = b.get(..header + len).ok_or(())?;
            match FlowSpec::decode_nlri(family, whole) {
                Ok((rule, used)) if used == whole.len() => out.push(Nlri::FlowSpec(rule)),
                _ => {
                    malformed = true;
                    out.push(Nlri::Raw {
                        afi,
                        safi,
                        bytes: whole.to_vec(),
                    });
                }
            }
            b = &b[header + len..];
        }
        return Ok((out, malformed));
    }
    match Family::from_codes(afi, safi) {
        Some(Family::Ipv4Unicast) => decode_prefixes(b, false).ok_or(()),
        Some(Family::Ipv6Unicast) => decode_prefixes(b, true).ok_or(()),
        // Only negotiated families get here, all of them handled above.
        _ => Err(()),
    }
    .map(|p| (p.into_iter().map(Nlri::Prefix).collect(), false))
}

/// The AFI/SAFI of an MP_REACH/MP_UNREACH attribute `a`, if it can be read
/// and was negotiated. Too short for them: only a reset is left (RFC 4760
/// §7: 3/9). Not negotiated: its routes are ignored (treat-as-withdraw).
fn mp_family(
    a: &RawAttribute<'_>,
    ctx: &ReceiveContext,
    f: &mut Findings,
    malformed: Reason,
) -> Option<(u16, u8)> {
    let v = a.value;
    if v.len() < 3 {
        f.reset(
            malformed,
            Some(a.code),
            update_subcode::OPTIONAL_ATTRIBUTE_ERROR,
            a.whole.to_vec(),
        );
        return None;
    }
    let (afi, safi) = (u16::from_be_bytes([v[0], v[1]]), v[2]);
    let family = Family::from_codes(afi, safi);
    if family.is_none_or(|fam| !ctx.families.contains(&fam)) {
        f.add(
            Reason::FamilyNotNegotiated,
            Some(a.code),
            Approach::TreatAsWithdraw,
        );
        return None;
    }
    Some((afi, safi))
}

/// MP_REACH_NLRI (RFC 4760 §3, RFC 7606 §7.11).
fn mp_reach(
    a: &RawAttribute<'_>,
    ctx: &ReceiveContext,
    f: &mut Findings,
    parsed: &mut ReceivedUpdate,
) {
    let v = a.value;
    let c = code::MP_REACH_NLRI;
    let Some((afi, safi)) = mp_family(a, ctx, f, Reason::MalformedMpReach) else {
        return;
    };
    let family = Family::from_codes(afi, safi);
    let nh_len = usize::from(*v.get(3).unwrap_or(&0));
    // The next hop must fit before the reserved octet, and have a length
    // that fits the family; a Flow Spec next hop is ignored whatever its
    // length (RFC 8955 §4: 0 expected).
    let nh_ok = v.len() >= 5 + nh_len
        && match family {
            Some(Family::Ipv4Unicast) => nh_len == 4,
            Some(Family::Ipv6Unicast) => nh_len == 16 || nh_len == 32,
            _ => true,
        };
    if !nh_ok {
        f.disable(Reason::MalformedMpReach, c, (afi, safi));
        return;
    }
    let next_hop = v[4..4 + nh_len].to_vec();
    let nlri = &v[5 + nh_len..];
    match mp_nlri(afi, safi, nlri) {
        Err(()) => f.disable(Reason::MalformedMpNlri, c, (afi, safi)),
        Ok((routes, malformed)) => {
            if malformed {
                f.add(
                    Reason::MalformedFlowSpec,
                    Some(c),
                    Approach::TreatAsWithdraw,
                );
            }
            parsed.announced.extend(routes);
            parsed.attributes.push(PathAttribute::MpReach {
                family: (afi, safi),
                next_hop,
                nlri: nlri.to_vec(),
            });
        }
    }
}

/// MP_UNREACH_NLRI (RFC 4760 §4, RFC 7606 §7.12).
fn mp_unreach(
    a: &RawAttribute<'_>,
    ctx: &ReceiveContext,
    f: &mut Findings,
    parsed: &mut ReceivedUpdate,
) {
    let v = a.value;
    let c = code::MP_UNREACH_NLRI;
    let Some((afi, safi)) = mp_family(a, ctx, f, Reason::MalformedMpUnreach) else {
        return;
    };
    let nlri = &v[3..];
    match mp_nlri(afi, safi, nlri) {
        Err(()) => f.disable(Reason::MalformedMpNlri, c, (afi, safi)),
        Ok((routes, malformed)) => {
            if malformed {
                // A malformed withdrawal is still a withdrawal.
                f.add(
                    Reason::MalformedFlowSpec,
                    Some(c),
                    Approach::TreatAsWithdraw,
                );
            }
            parsed.withdrawn.extend(routes);
            parsed.attributes.push(PathAttribute::MpUnreach {
                family: (afi, safi),
                nlri: nlri.to_vec(),
            });
        }
    }
}
