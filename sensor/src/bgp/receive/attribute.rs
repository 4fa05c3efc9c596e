//! Path attribute checks (RFC 7606 §3, §7): the attribute header and its
//! flags, each attribute's length and value, and AS_PATH (§7.2).

use super::{
    Findings, RawAttribute, ReceiveContext, code,
    mp::{mp_reach, mp_unreach},
    update_subcode,
    verdict::{Approach, Reason, ReceivedUpdate},
};
use crate::bgp::attribute::{PathAttribute, flags};

/// The expected (Optional, Transitive) bits of the attributes whose
/// flags we check (RFC 4271 §5, RFC 4760 §3-4, RFC 1997, RFC 4360,
/// RFC 4456 §8, RFC 6793 §3, RFC 5701, RFC 8092).
pub(super) fn expected_flags(code: u8) -> Option<u8> {
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

/// The next attribute and the octets it takes, or `None` when its header
/// or value runs past `b` (§4).
pub(super) fn split_attribute(b: &[u8]) -> Option<(RawAttribute<'_>, usize)> {
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
pub(super) fn check_attribute(
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
pub(super) fn as_path_ok(mut v: &[u8], four_octet: bool, confed: bool) -> bool {
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
