//! MP_REACH_NLRI and MP_UNREACH_NLRI (RFC 4760 §3, §4; RFC 7606 §7.11,
//! §7.12) and the Flow Spec NLRI they carry (RFC 8955 §4.2, §10; RFC 8956
//! §3 for IPv6).

use super::{
    Findings, RawAttribute, ReceiveContext, code, update_subcode,
    verdict::{Approach, Nlri, PathNlri, Reason, ReceivedUpdate},
};
use crate::bgp::{
    attribute::{PathAttribute, decode_prefixes},
    capability::Family,
    flowspec::{FlowSpec, IpFamily},
};

/// The Flow Spec IP family of (AFI, SAFI), if it is Flow Spec.
pub(super) fn flowspec_family(afi: u16, safi: u8) -> Option<IpFamily> {
    match Family::from_codes(afi, safi)? {
        Family::Ipv4FlowSpec => Some(IpFamily::Ipv4),
        Family::Ipv6FlowSpec => Some(IpFamily::Ipv6),
        _ => None,
    }
}

/// Reads a 4-octet path identifier (RFC 7911 §3) off the front of `b`.
fn path_id(b: &mut &[u8]) -> Option<u32> {
    let (id, rest) = b.split_first_chunk::<4>()?;
    *b = rest;
    Some(u32::from_be_bytes(*id))
}

/// Unicast prefixes (RFC 4271 §4.3, RFC 4760 §5), each after a path
/// identifier when `add_path` (RFC 7911 §3); `None` when they are not
/// syntactically correct.
pub(super) fn prefixes(mut b: &[u8], ipv6: bool, add_path: bool) -> Option<Vec<PathNlri>> {
    if !add_path {
        return Some(
            decode_prefixes(b, ipv6)?
                .into_iter()
                .map(|p| Nlri::Prefix(p).into())
                .collect(),
        );
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let id = path_id(&mut b)?;
        let len = *b.first()?;
        let n = 1 + usize::from(len).div_ceil(8);
        let one = b.get(..n)?;
        let mut p = decode_prefixes(one, ipv6)?;
        out.push(PathNlri {
            path_id: id,
            nlri: Nlri::Prefix(p.pop()?),
        });
        b = &b[n..];
    }
    Some(out)
}

/// Parses the NLRI of MP_REACH/MP_UNREACH for (AFI, SAFI): `Err` when
/// they are not syntactically correct (§5.3), malformed Flow Spec rules
/// that still frame are returned raw with `true` (RFC 8955 §4.2). With
/// `add_path`, each NLRI follows its path identifier (RFC 7911 §3).
pub(super) fn mp_nlri(
    afi: u16,
    safi: u8,
    mut b: &[u8],
    add_path: bool,
) -> Result<(Vec<PathNlri>, bool), ()> {
    if let Some(family) = flowspec_family(afi, safi) {
        let mut out = Vec::new();
        let mut malformed = false;
        while !b.is_empty() {
            let id = if add_path {
                path_id(&mut b).ok_or(())?
            } else {
                0
            };
            let &first = b.first().ok_or(())?;
            // RFC 8955 §4.1: 1 octet below 240, else 0xfnnn.
            let (len, header) = if first >= 0xf0 {
                let second = *b.get(1).ok_or(())?;
                (usize::from(first & 0x0f) << 8 | usize::from(second), 2)
            } else {
                (usize::from(first), 1)
            };
            let whole = b.get(..header + len).ok_or(())?;
            match FlowSpec::decode_nlri(family, whole) {
                Ok((rule, used)) if used == whole.len() => out.push(PathNlri {
                    path_id: id,
                    nlri: Nlri::FlowSpec(rule),
                }),
                _ => {
                    malformed = true;
                    out.push(PathNlri {
                        path_id: id,
                        nlri: Nlri::Raw {
                            afi,
                            safi,
                            bytes: whole.to_vec(),
                        },
                    });
                }
            }
            b = &b[header + len..];
        }
        return Ok((out, malformed));
    }
    match Family::from_codes(afi, safi) {
        Some(Family::Ipv4Unicast) => prefixes(b, false, add_path).ok_or(()),
        Some(Family::Ipv6Unicast) => prefixes(b, true, add_path).ok_or(()),
        // Only negotiated families get here, all of them handled above.
        _ => Err(()),
    }
    .map(|p| (p, false))
}

/// The AFI/SAFI of an MP_REACH/MP_UNREACH attribute `a`, if it can be read
/// and was negotiated. Too short for them: only a reset is left (RFC 4760
/// §7: 3/9). Not negotiated: its routes are ignored (treat-as-withdraw).
pub(super) fn mp_family(
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
pub(super) fn mp_reach(
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
    let add_path = family.is_some_and(|f| ctx.add_path.contains(&f));
    if let Some(routes) = nlri_routes((afi, safi), nlri, add_path, c, f) {
        parsed.announced.extend(routes);
        parsed.attributes.push(PathAttribute::MpReach {
            family: (afi, safi),
            next_hop,
            nlri: nlri.to_vec(),
        });
    }
}

/// MP_UNREACH_NLRI (RFC 4760 §4, RFC 7606 §7.12).
pub(super) fn mp_unreach(
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
    let add_path = Family::from_codes(afi, safi).is_some_and(|f| ctx.add_path.contains(&f));
    // A malformed withdrawal is still a withdrawal.
    if let Some(routes) = nlri_routes((afi, safi), nlri, add_path, c, f) {
        parsed.withdrawn.extend(routes);
        parsed.attributes.push(PathAttribute::MpUnreach {
            family: (afi, safi),
            nlri: nlri.to_vec(),
        });
    }
}

/// The routes of an MP attribute's NLRI (attribute `code`), for MP_REACH
/// and MP_UNREACH alike: an NLRI that cannot be walked disables the family
/// (RFC 7606 §7.11); a malformed Flow Spec rule in it is treated as
/// withdrawn (RFC 8955 §10), the rest are returned.
fn nlri_routes(
    (afi, safi): (u16, u8),
    nlri: &[u8],
    add_path: bool,
    code: u8,
    f: &mut Findings,
) -> Option<Vec<PathNlri>> {
    match mp_nlri(afi, safi, nlri, add_path) {
        Err(()) => {
            f.disable(Reason::MalformedMpNlri, code, (afi, safi));
            None
        }
        Ok((routes, malformed)) => {
            if malformed {
                f.add(
                    Reason::MalformedFlowSpec,
                    Some(code),
                    Approach::TreatAsWithdraw,
                );
            }
            Some(routes)
        }
    }
}
