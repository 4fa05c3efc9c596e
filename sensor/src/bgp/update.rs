//! Composes the UPDATE that announces or withdraws one route on one
//! session (RFC 4271 §5, RFC 4760, RFC 8955 §4, RFC 7999), and proves it
//! by decoding it back before it may be sent.
//!
//! Attributes: MP_REACH/MP_UNREACH first (RFC 7606 §5.1); ORIGIN IGP;
//! AS_PATH our AS on eBGP, empty on iBGP with LOCAL_PREF (§5.1.2, §5.1.5;
//! an empty AS_PATH also lets RFC 9117 validation accept our flow routes);
//! NEXT_HOP only for classic IPv4 NLRI (RFC 4760 §3).

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::{
    attribute::{
        AS_TRANS, AsPathSegment, Community, ExtendedCommunity, Origin, PathAttribute,
        decode_prefixes, encode_prefix,
    },
    capability::Family,
    flowspec::{Action, FlowSpec},
    message::{MAX_MESSAGE_LEN, Message, Update},
    route::{Route, RouteError, RouteKey},
    rtbh,
};

/// What shapes the UPDATEs of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionParams {
    pub local_asn: u32,
    pub ibgp: bool,
    /// The peer takes 4-octet AS numbers (RFC 6793).
    pub four_octet: bool,
    pub local_pref: u32,
    pub next_hop_v4: Option<Ipv4Addr>,
    pub next_hop_v6: Option<Ipv6Addr>,
    pub communities: Vec<Community>,
    pub blackhole_communities: Vec<Community>,
    pub no_export: bool,
    /// Families whose NLRI carry a path identifier (Add-Path negotiated
    /// for sending, RFC 7911 §3).
    pub add_path: Vec<Family>,
}

/// The path identifier of our routes where Add-Path is in force: the
/// sensor has one path per route (RFC 7911 §3 leaves the value to the
/// sender).
pub const PATH_ID: u32 = 1;

impl SessionParams {
    /// The path identifier that prefixes `family`'s NLRI, if any.
    fn path_id(&self, family: Family) -> Option<u32> {
        self.add_path.contains(&family).then_some(PATH_ID)
    }
}

/// `nlri` after the path identifier, when there is one (RFC 7911 §3).
fn with_path_id(id: Option<u32>, nlri: Vec<u8>) -> Vec<u8> {
    match id {
        None => nlri,
        Some(id) => {
            let mut out = id.to_be_bytes().to_vec();
            out.extend_from_slice(&nlri);
            out
        }
    }
}

/// `nlri` without its path identifier (`None` when too short for one).
fn strip_path_id(id: Option<u32>, nlri: &[u8]) -> Option<&[u8]> {
    match id {
        None => Some(nlri),
        Some(id) => nlri.strip_prefix(&id.to_be_bytes()[..]),
    }
}

fn common_attributes(p: &SessionParams) -> Vec<PathAttribute> {
    let mut attrs = vec![PathAttribute::Origin(Origin::Igp)];
    let path = if p.ibgp {
        Vec::new()
    } else {
        vec![AsPathSegment::Sequence(vec![p.local_asn])]
    };
    let needs_as4 = !p.four_octet && p.local_asn > u32::from(u16::MAX) && !p.ibgp;
    attrs.push(PathAttribute::AsPath {
        segments: path.clone(),
        four_octet: p.four_octet,
    });
    if p.ibgp {
        attrs.push(PathAttribute::LocalPref(p.local_pref));
    }
    if needs_as4 {
        // The 2-octet AS_PATH says AS_TRANS; the real AS rides in AS4_PATH
        // (RFC 6793 §4.2.2).
        attrs.push(PathAttribute::As4Path(path));
    }
    attrs
}

/// The UPDATE announcing `route`.
pub fn announce(route: &Route, p: &SessionParams) -> Result<Update, RouteError> {
    let mut attrs = Vec::new();
    let mut nlri = Vec::new();
    match route {
        Route::FlowSpec { rule, actions } => {
            let family = route.family();
            // No next hop for flow spec (RFC 8955 §4: length 0).
            attrs.push(PathAttribute::mp_reach(
                family,
                Vec::new(),
                with_path_id(p.path_id(family), rule.encode_nlri()),
            ));
            attrs.extend(common_attributes(p));
            if !p.communities.is_empty() {
                attrs.push(PathAttribute::Communities(p.communities.clone()));
            }
            let ecs: Vec<ExtendedCommunity> = actions.iter().map(Action::to_community).collect();
            attrs.push(PathAttribute::ExtendedCommunities(ecs));
        }
        Route::Blackhole { prefix } => {
            let mut comms = rtbh::communities(p.no_export, &p.blackhole_communities);
            for c in &p.communities {
                if !comms.contains(c) {
                    comms.push(*c);
                }
            }
            match prefix {
                IpNet::V4(_) => {
                    let nh = p.next_hop_v4.ok_or_else(|| {
                        RouteError::EncodingCheck("no IPv4 next hop configured".into())
                    })?;
                    if rtbh::is_martian(nh.into()) {
                        return Err(RouteError::EncodingCheck(format!("martian next hop {nh}")));
                    }
                    attrs.extend(common_attributes(p));
                    attrs.insert(2, PathAttribute::NextHop(nh));
                    let mut encoded = Vec::new();
                    encode_prefix(prefix, &mut encoded);
                    nlri = with_path_id(p.path_id(Family::Ipv4Unicast), encoded);
                }
                IpNet::V6(_) => {
                    let nh = p.next_hop_v6.ok_or_else(|| {
                        RouteError::EncodingCheck("no IPv6 next hop configured".into())
                    })?;
                    if rtbh::is_martian(nh.into()) {
                        return Err(RouteError::EncodingCheck(format!("martian next hop {nh}")));
                    }
                    let mut encoded = Vec::new();
                    encode_prefix(prefix, &mut encoded);
                    attrs.push(PathAttribute::mp_reach(
                        Family::Ipv6Unicast,
                        nh.octets().to_vec(),
                        with_path_id(p.path_id(Family::Ipv6Unicast), encoded),
                    ));
                    attrs.extend(common_attributes(p));
                }
            }
            attrs.push(PathAttribute::Communities(comms));
        }
    }
    let update = Update::new(Vec::new(), &attrs, nlri);
    verify_announce(&update, route, p)?;
    Ok(update)
}

/// The UPDATE withdrawing the route with `key` on a session without
/// Add-Path.
pub fn withdraw(key: &RouteKey) -> Update {
    withdraw_with(key, None)
}

/// The UPDATE withdrawing the route with `key` on a session with `p`
/// (with our path identifier where Add-Path is in force, RFC 7911 §3).
pub fn withdraw_for(key: &RouteKey, p: &SessionParams) -> Update {
    withdraw_with(key, p.path_id(key.family()))
}

fn withdraw_with(key: &RouteKey, id: Option<u32>) -> Update {
    match key {
        RouteKey::FlowSpec { nlri, .. } => Update::new(
            Vec::new(),
            &[PathAttribute::mp_unreach(
                key.family(),
                with_path_id(id, nlri.clone()),
            )],
            Vec::new(),
        ),
        RouteKey::Blackhole(prefix @ IpNet::V4(_)) => {
            let mut w = Vec::new();
            encode_prefix(prefix, &mut w);
            Update::new(with_path_id(id, w), &[], Vec::new())
        }
        RouteKey::Blackhole(prefix @ IpNet::V6(_)) => {
            let mut n = Vec::new();
            encode_prefix(prefix, &mut n);
            Update::new(
                Vec::new(),
                &[PathAttribute::mp_unreach(
                    Family::Ipv6Unicast,
                    with_path_id(id, n),
                )],
                Vec::new(),
            )
        }
    }
}

/// Decodes `update` as the peer will and checks it says exactly `route`:
/// the message fits, the framing and every attribute parse, the NLRI
/// decodes back to the same rule or prefix, the actions to the same
/// actions, and the mandatory attributes are there.
pub fn verify_announce(
    update: &Update,
    route: &Route,
    p: &SessionParams,
) -> Result<(), RouteError> {
    let bad = |m: String| RouteError::EncodingCheck(m);
    let wire = Message::Update(update.clone()).encode();
    if wire.len() > MAX_MESSAGE_LEN {
        return Err(bad(format!(
            "UPDATE of {} octets exceeds {MAX_MESSAGE_LEN}",
            wire.len()
        )));
    }
    let Message::Update(back) = Message::decode(&wire).map_err(|e| bad(e.to_string()))? else {
        return Err(bad("did not decode as an UPDATE".into()));
    };
    let attrs = back
        .attributes(p.four_octet)
        .map_err(|e| bad(e.to_string()))?;
    let has = |code: u8| attrs.iter().any(|a| a.code() == code);
    use super::attribute::code;
    if !has(code::ORIGIN) || !has(code::AS_PATH) || (p.ibgp && !has(code::LOCAL_PREF)) {
        return Err(bad("a mandatory attribute is missing".into()));
    }
    match route {
        Route::FlowSpec { rule, actions } => {
            let (afi, safi) = route.family().codes();
            let Some(PathAttribute::MpReach {
                family,
                next_hop,
                nlri,
            }) = attrs.iter().find(|a| a.code() == code::MP_REACH_NLRI)
            else {
                return Err(bad("no MP_REACH_NLRI".into()));
            };
            if *family != (afi, safi) || !next_hop.is_empty() {
                return Err(bad("MP_REACH_NLRI family or next hop".into()));
            }
            let nlri = strip_path_id(p.path_id(route.family()), nlri)
                .ok_or_else(|| bad("no path identifier".into()))?;
            let (decoded, used) =
                FlowSpec::decode_nlri(rule.family(), nlri).map_err(|e| bad(e.to_string()))?;
            if used != nlri.len() || decoded != *rule {
                return Err(bad(format!("NLRI decodes to {decoded}, not {rule}")));
            }
            let Some(PathAttribute::ExtendedCommunities(ecs)) = attrs
                .iter()
                .find(|a| a.code() == code::EXTENDED_COMMUNITIES)
            else {
                return Err(bad("no EXTENDED_COMMUNITIES".into()));
            };
            let back: Result<Vec<Action>, _> =
                ecs.iter().map(|c| Action::from_community(*c)).collect();
            let back = back.map_err(|e| bad(e.to_string()))?;
            if back.len() != actions.len()
                || back
                    .iter()
                    .zip(actions)
                    .any(|(a, b)| a.to_community() != b.to_community())
            {
                return Err(bad("actions do not round-trip".into()));
            }
        }
        Route::Blackhole { prefix } => {
            let got = match prefix {
                IpNet::V4(_) => {
                    if !has(code::NEXT_HOP) {
                        return Err(bad("no NEXT_HOP".into()));
                    }
                    strip_path_id(p.path_id(Family::Ipv4Unicast), &back.nlri)
                        .and_then(|n| decode_prefixes(n, false))
                }
                IpNet::V6(_) => attrs.iter().find_map(|a| match a {
                    PathAttribute::MpReach {
                        family: (2, 1),
                        next_hop,
                        nlri,
                    } if next_hop.len() == 16 => {
                        strip_path_id(p.path_id(Family::Ipv6Unicast), nlri)
                            .and_then(|n| decode_prefixes(n, true))
                    }
                    _ => None,
                }),
            };
            if got.as_deref() != Some(std::slice::from_ref(prefix)) {
                return Err(bad(format!("NLRI decodes to {got:?}, not {prefix}")));
            }
            let blackholed = attrs.iter().any(|a| {
                matches!(a, PathAttribute::Communities(cs) if cs.contains(&Community::BLACKHOLE))
            });
            if !blackholed {
                return Err(bad("no BLACKHOLE community".into()));
            }
        }
    }
    Ok(())
}

/// The 2-octet My AS of OPEN (RFC 6793 §4.1).
pub fn open_my_as(asn: u32) -> u16 {
    u16::try_from(asn).unwrap_or(AS_TRANS)
}
