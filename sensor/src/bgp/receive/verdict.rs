//! What a check returns: the error handling approaches of RFC 7606 §2,
//! the reasons errors are counted under, and the verdict on an UPDATE
//! (the parsed UPDATE, or the most severe approach, §3(h)).

use std::fmt;

use ipnet::IpNet;
use serde::Serialize;

use crate::bgp::{attribute::PathAttribute, flowspec::FlowSpec, message::Notification};

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
    ///
    /// [`Message::decode`]: crate::bgp::message::Message::decode
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

/// One received NLRI with its path identifier (RFC 7911 §3: present on
/// the wire when Add-Path was negotiated for receiving the family; 0
/// otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathNlri {
    pub path_id: u32,
    pub nlri: Nlri,
}

impl From<Nlri> for PathNlri {
    fn from(nlri: Nlri) -> Self {
        Self { path_id: 0, nlri }
    }
}

impl PartialEq<Nlri> for PathNlri {
    fn eq(&self, other: &Nlri) -> bool {
        self.nlri == *other
    }
}

/// A received UPDATE, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReceivedUpdate {
    /// Withdrawn Routes field and MP_UNREACH_NLRI.
    pub withdrawn: Vec<PathNlri>,
    /// NLRI field and MP_REACH_NLRI.
    pub announced: Vec<PathNlri>,
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
        withdrawn: Vec<PathNlri>,
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
