//! Tests of the checks of received UPDATEs (receive.rs): one case per
//! RFC 7606 / RFC 8955 rule, each asserting the verdict; property tests
//! feeding random and mutated UPDATEs (mutations of our own encoder's
//! output) through the function the session uses; and the session itself
//! against a scripted peer on loopback.

use std::net::Ipv4Addr;

use ipnet::IpNet;

use super::{
    attribute::flags::{EXTENDED_LENGTH, OPTIONAL as O, PARTIAL, TRANSITIVE as T},
    capability::Family,
    flowspec::{Action, Component, FlowPrefix, FlowSpec, IpFamily, NumericMatch},
    message::{Message, Update},
    receive::{Approach, Nlri, Reason, ReceiveContext, ReceivedUpdate, UpdateVerdict, check, code},
    route::Route,
    update::{self, SessionParams},
};

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ebgp() -> ReceiveContext {
    ReceiveContext {
        four_octet: true,
        ibgp: false,
        families: Family::ALL.to_vec(),
        add_path: Vec::new(),
    }
}

fn ibgp() -> ReceiveContext {
    ReceiveContext {
        ibgp: true,
        ..ebgp()
    }
}

fn params(ibgp: bool) -> SessionParams {
    SessionParams {
        local_asn: if ibgp { 65000 } else { 65001 },
        ibgp,
        four_octet: true,
        local_pref: 100,
        next_hop_v4: Some(Ipv4Addr::new(192, 0, 2, 254)),
        next_hop_v6: Some("100::1".parse().unwrap()),
        communities: Vec::new(),
        blackhole_communities: Vec::new(),
        no_export: true,
        add_path: Vec::new(),
    }
}

/// One attribute: flags, type, length (extended if flagged), value.
fn attr(flags: u8, code: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![flags, code];
    if flags & EXTENDED_LENGTH != 0 {
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    } else {
        out.push(value.len() as u8);
    }
    out.extend_from_slice(value);
    out
}

fn origin() -> Vec<u8> {
    attr(T, code::ORIGIN, &[0])
}

/// AS_SEQUENCE [65000], 4-octet.
fn as_path() -> Vec<u8> {
    attr(T, code::AS_PATH, &[2, 1, 0, 0, 0xfd, 0xe8])
}

fn next_hop() -> Vec<u8> {
    attr(T, code::NEXT_HOP, &[192, 0, 2, 1])
}

fn local_pref() -> Vec<u8> {
    attr(T, code::LOCAL_PREF, &[0, 0, 0, 100])
}

/// 192.0.2.0/24.
fn nlri_v4() -> Vec<u8> {
    vec![24, 192, 0, 2]
}

fn flow_rule() -> FlowSpec {
    FlowSpec::new(
        IpFamily::Ipv4,
        vec![
            Component::DestinationPrefix(FlowPrefix::new(net("192.0.2.1/32"))),
            Component::IpProtocol(vec![NumericMatch::eq(17)]),
        ],
    )
    .unwrap()
}

/// MP_REACH for IPv4 Flow Spec with `nlri`, next hop length 0.
fn mp_reach_flow(nlri: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 1, 133, 0, 0];
    v.extend_from_slice(nlri);
    attr(O, code::MP_REACH_NLRI, &v)
}

fn update(withdrawn: Vec<u8>, attrs: &[Vec<u8>], nlri: Vec<u8>) -> Update {
    Update {
        withdrawn,
        path_attributes: attrs.concat(),
        nlri,
    }
}

/// A valid eBGP IPv4 unicast UPDATE with `extra` attributes after the
/// mandatory ones.
fn unicast_with(extra: &[Vec<u8>]) -> Update {
    let mut attrs = vec![origin(), as_path(), next_hop()];
    attrs.extend_from_slice(extra);
    update(Vec::new(), &attrs, nlri_v4())
}

/// A valid Flow Spec UPDATE (MP_REACH first) with `extra` attributes.
fn flow_with(extra: &[Vec<u8>]) -> Update {
    let mut attrs = vec![
        mp_reach_flow(&flow_rule().encode_nlri()),
        origin(),
        as_path(),
    ];
    attrs.extend_from_slice(extra);
    update(Vec::new(), &attrs, Vec::new())
}

/// What a case expects.
#[derive(Debug)]
enum Want {
    Ok,
    Discard(Reason),
    Withdraw(Reason),
    Disable(Reason, (u16, u8)),
    Reset(Reason, (u8, u8)),
}

fn assert_verdict(name: &str, v: &UpdateVerdict, want: &Want) {
    let has = |r: &Reason| v.errors().iter().any(|e| e.reason == *r);
    let ok = match (want, v) {
        (Want::Ok, UpdateVerdict::Ok(_)) => true,
        (Want::Discard(r), UpdateVerdict::AttributeDiscard { .. }) => has(r),
        (Want::Withdraw(r), UpdateVerdict::TreatAsWithdraw { .. }) => has(r),
        (Want::Disable(r, fam), UpdateVerdict::AfiSafiDisable { afi, safi, .. }) => {
            has(r) && (*afi, *safi) == *fam
        }
        (Want::Reset(r, cs), UpdateVerdict::SessionReset { notification, .. }) => {
            has(r) && (notification.code, notification.subcode) == *cs
        }
        _ => false,
    };
    assert!(ok, "{name}: want {want:?}, got {v:#?}");
    well_formed(v).unwrap_or_else(|e| panic!("{name}: {e}"));
}

/// The invariants every verdict keeps (RFC 7606 §3(h): the approach is
/// the most severe of the errors found).
fn well_formed(v: &UpdateVerdict) -> Result<(), String> {
    let worst = v.errors().iter().map(|e| e.approach).max();
    if worst != v.approach() {
        return Err(format!(
            "approach {:?} is not the worst of {:?}",
            v.approach(),
            v.errors()
        ));
    }
    if let UpdateVerdict::SessionReset { notification, .. } = v
        && (notification.code != 3 || !matches!(notification.subcode, 1 | 2 | 9 | 10))
    {
        return Err(format!("reset with NOTIFICATION {notification}"));
    }
    Ok(())
}

/// RFC 7606 §3, §4, §5 and §7, RFC 4271 §6.3, RFC 8955 §4.2/§10 and
/// RFC 8956 §3: one case each.
#[test]
fn rfc7606_cases() {
    use Reason::*;
    let flow = flow_rule().encode_nlri();
    let mut bad_order = flow.clone();
    // Components 1 and 3 swapped in place: 3 before 1 (RFC 8955 §4.2).
    {
        let (len, body) = (bad_order[0], bad_order[1..].to_vec());
        let dst_len = 1 + 1 + 4; // type, prefix length, 4 octets
        let mut swapped = body[dst_len..].to_vec();
        swapped.extend_from_slice(&body[..dst_len]);
        bad_order = vec![len];
        bad_order.extend(swapped);
    }
    let unknown_component = vec![3, 14, 0x81, 1];
    let v6_flow = FlowSpec::new(
        IpFamily::Ipv6,
        vec![Component::DestinationPrefix(FlowPrefix::new(net(
            "2001:db8::1/128",
        )))],
    )
    .unwrap()
    .encode_nlri();
    let mut v6_bad_offset = v6_flow.clone();
    v6_bad_offset[3] = 200; // offset past the prefix length (RFC 8956 §3.1)
    let mp = |afi: u16, safi: u8, nh: &[u8], nlri: &[u8]| {
        let mut v = afi.to_be_bytes().to_vec();
        v.push(safi);
        v.push(nh.len() as u8);
        v.extend_from_slice(nh);
        v.push(0);
        v.extend_from_slice(nlri);
        attr(O, code::MP_REACH_NLRI, &v)
    };
    let unreach = |afi: u16, safi: u8, nlri: &[u8]| {
        let mut v = afi.to_be_bytes().to_vec();
        v.push(safi);
        v.extend_from_slice(nlri);
        attr(O, code::MP_UNREACH_NLRI, &v)
    };
    let v4_only = ReceiveContext {
        families: vec![Family::Ipv4Unicast],
        ..ebgp()
    };
    let no_flow = ReceiveContext {
        families: vec![Family::Ipv4Unicast],
        ..ebgp()
    };

    #[rustfmt::skip]
    let cases: Vec<(&str, Update, ReceiveContext, Want)> = vec![
        // ---- well formed ----
        ("unicast", unicast_with(&[]), ebgp(), Want::Ok),
        ("flow spec", flow_with(&[]), ebgp(), Want::Ok),
        ("empty UPDATE (End-of-RIB)", Update::default(), ebgp(), Want::Ok),
        ("withdrawal only, no attributes", update(nlri_v4(), &[], Vec::new()), ebgp(), Want::Ok),
        ("MED well formed", unicast_with(&[attr(O, code::MULTI_EXIT_DISC, &[0, 0, 0, 5])]), ebgp(), Want::Ok),
        ("AS_CONFED_SEQUENCE in AS_PATH (RFC 5065)", update(Vec::new(), &[origin(), attr(T, code::AS_PATH, &[3, 1, 0, 0, 0, 1]), next_hop()], nlri_v4()), ebgp(), Want::Ok),
        ("unknown optional transitive kept", unicast_with(&[attr(O | T, 99, &[1, 2])]), ebgp(), Want::Ok),
        ("unknown optional non-transitive ignored", unicast_with(&[attr(O, 98, &[1])]), ebgp(), Want::Ok),
        ("extended length on a short attribute", unicast_with(&[attr(O | T | EXTENDED_LENGTH, code::COMMUNITIES, &[0xff, 0xff, 2, 0x9a])]), ebgp(), Want::Ok),
        ("partial bit on a known optional transitive", unicast_with(&[attr(O | T | PARTIAL, code::COMMUNITIES, &[0, 1, 0, 1])]), ebgp(), Want::Ok),
        // ---- §4 attribute length fields ----
        ("§4 attribute overruns the list after MP_REACH", update(Vec::new(), &[mp_reach_flow(&flow), vec![0x40, 1, 9, 0]], Vec::new()), ebgp(), Want::Withdraw(AttributeListOverrun)),
        ("§4 fewer than 3 octets left after MP_REACH", update(Vec::new(), &[mp_reach_flow(&flow), origin(), vec![0x40, 2]], Vec::new()), ebgp(), Want::Withdraw(AttributeListOverrun)),
        ("§4 overrun, IPv4 unicast only session", update(Vec::new(), &[origin(), vec![0x40, 2, 200, 2]], nlri_v4()), v4_only.clone(), Want::Withdraw(AttributeListOverrun)),
        ("§4/§5.1 overrun before any MP attribute: NLRI unknown", update(Vec::new(), &[origin(), vec![0x40, 2, 200, 2]], Vec::new()), ebgp(), Want::Reset(NlriNotLocated, (3, 1))),
        ("§4 extended length overruns", update(Vec::new(), &[mp_reach_flow(&flow), vec![0x50, 8, 0x01, 0x00, 1, 2]], Vec::new()), ebgp(), Want::Withdraw(AttributeListOverrun)),
        // ---- §3(c) flags ----
        ("§3(c) ORIGIN flagged optional", update(Vec::new(), &[attr(O | T, code::ORIGIN, &[0]), as_path(), next_hop()], nlri_v4()), ebgp(), Want::Withdraw(AttributeFlags)),
        ("§3(c) COMMUNITIES flagged non-transitive", unicast_with(&[attr(O, code::COMMUNITIES, &[0, 1, 0, 1])]), ebgp(), Want::Withdraw(AttributeFlags)),
        ("§3(c) MP_REACH flagged transitive", update(Vec::new(), &[attr(O | T, code::MP_REACH_NLRI, &mp_reach_flow(&flow)[3..]), origin(), as_path()], Vec::new()), ebgp(), Want::Withdraw(AttributeFlags)),
        // ---- §3(d) missing well-known ----
        ("§3(d) ORIGIN missing", update(Vec::new(), &[as_path(), next_hop()], nlri_v4()), ebgp(), Want::Withdraw(MissingWellKnown)),
        ("§3(d) AS_PATH missing (MP_REACH)", update(Vec::new(), &[mp_reach_flow(&flow), origin()], Vec::new()), ebgp(), Want::Withdraw(MissingWellKnown)),
        ("§3(d) NEXT_HOP missing with the NLRI field", update(Vec::new(), &[origin(), as_path()], nlri_v4()), ebgp(), Want::Withdraw(MissingWellKnown)),
        ("§3(d) LOCAL_PREF missing from an internal peer", unicast_with(&[]), ibgp(), Want::Withdraw(MissingWellKnown)),
        ("§3(d) no NEXT_HOP needed with MP_REACH only", flow_with(&[]), ebgp(), Want::Ok),
        // ---- §3(g) duplicates ----
        ("§3(g) MP_REACH twice", update(Vec::new(), &[mp_reach_flow(&flow), mp_reach_flow(&flow), origin(), as_path()], Vec::new()), ebgp(), Want::Reset(DuplicateMpAttribute, (3, 1))),
        ("§3(g) MP_UNREACH twice", update(Vec::new(), &[unreach(1, 133, &flow), unreach(1, 133, &flow)], Vec::new()), ebgp(), Want::Reset(DuplicateMpAttribute, (3, 1))),
        ("§3(g) COMMUNITIES twice: later ones discarded", unicast_with(&[attr(O | T, code::COMMUNITIES, &[0, 1, 0, 1]), attr(O | T, code::COMMUNITIES, &[0, 1, 0, 2])]), ebgp(), Want::Discard(DuplicateAttribute)),
        // ---- §3(h) the most severe wins ----
        ("§3(h) discard + treat-as-withdraw", unicast_with(&[attr(O | T, code::COMMUNITIES, &[0, 1, 0, 1]), attr(O | T, code::COMMUNITIES, &[0, 1, 0, 2]), attr(O, code::MULTI_EXIT_DISC, &[1])]), ebgp(), Want::Withdraw(MalformedMed)),
        ("§3(h) treat-as-withdraw + reset", update(Vec::new(), &[mp_reach_flow(&flow), mp_reach_flow(&flow), attr(T, code::ORIGIN, &[7]), as_path()], Vec::new()), ebgp(), Want::Reset(DuplicateMpAttribute, (3, 1))),
        // ---- RFC 4271 §6.3 unrecognized well-known ----
        ("unrecognized well-known attribute", unicast_with(&[attr(T, 99, &[1])]), ebgp(), Want::Reset(UnrecognizedWellKnown, (3, 2))),
        // ---- §5.3 NLRI fields ----
        ("§5.3 NLRI field prefix length 33", update(Vec::new(), &[origin(), as_path(), next_hop()], vec![33, 1, 2, 3, 4, 5]), ebgp(), Want::Reset(MalformedNlriField, (3, 10))),
        ("§5.3 NLRI field ends inside a prefix", update(Vec::new(), &[origin(), as_path(), next_hop()], vec![24, 192, 0]), ebgp(), Want::Reset(MalformedNlriField, (3, 10))),
        ("§5.3 withdrawn routes field ends inside a prefix", update(vec![32, 1], &[], Vec::new()), ebgp(), Want::Reset(MalformedWithdrawnField, (3, 10))),
        // ---- §7.1-§7.15 per attribute ----
        ("§7.1 ORIGIN value 3", update(Vec::new(), &[attr(T, code::ORIGIN, &[3]), as_path(), next_hop()], nlri_v4()), ebgp(), Want::Withdraw(MalformedOrigin)),
        ("§7.1 ORIGIN length 2", update(Vec::new(), &[attr(T, code::ORIGIN, &[0, 0]), as_path(), next_hop()], nlri_v4()), ebgp(), Want::Withdraw(MalformedOrigin)),
        ("§7.2 AS_PATH unknown segment type", update(Vec::new(), &[origin(), attr(T, code::AS_PATH, &[5, 1, 0, 0, 0, 1]), next_hop()], nlri_v4()), ebgp(), Want::Withdraw(MalformedAsPath)),
        ("§7.2 AS_PATH segment overruns", update(Vec::new(), &[origin(), attr(T, code::AS_PATH, &[2, 2, 0, 0, 0, 1]), next_hop()], nlri_v4()), ebgp(), Want::Withdraw(MalformedAsPath)),
        ("§7.2 AS_PATH one octet left", update(Vec::new(), &[origin(), attr(T, code::AS_PATH, &[2, 1, 0, 0, 0, 1, 2]), next_hop()], nlri_v4()), ebgp(), Want::Withdraw(MalformedAsPath)),
        ("§7.2 AS_PATH zero-length segment", update(Vec::new(), &[origin(), attr(T, code::AS_PATH, &[2, 0]), next_hop()], nlri_v4()), ebgp(), Want::Withdraw(MalformedAsPath)),
        ("§7.2 AS_PATH read as 2-octet on a 2-octet session", update(Vec::new(), &[origin(), attr(T, code::AS_PATH, &[2, 1, 0xfd, 0xe8]), next_hop()], nlri_v4()), ReceiveContext {four_octet: false,..ebgp()}, Want::Ok),
        ("§7.3 NEXT_HOP length 5", update(Vec::new(), &[origin(), as_path(), attr(T, code::NEXT_HOP, &[1, 2, 3, 4, 5])], nlri_v4()), ebgp(), Want::Withdraw(MalformedNextHop)),
        ("§7.4 MED length 3", unicast_with(&[attr(O, code::MULTI_EXIT_DISC, &[0, 0, 5])]), ebgp(), Want::Withdraw(MalformedMed)),
        ("§7.5 LOCAL_PREF from an external peer", unicast_with(&[local_pref()]), ebgp(), Want::Discard(IbgpAttributeFromEbgp)),
        ("§7.5 LOCAL_PREF length 3 (iBGP)", unicast_with(&[attr(T, code::LOCAL_PREF, &[0, 0, 100])]), ibgp(), Want::Withdraw(MalformedLocalPref)),
        ("§7.5 LOCAL_PREF well formed (iBGP)", unicast_with(&[local_pref()]), ibgp(), Want::Ok),
        ("§7.6 ATOMIC_AGGREGATE length 1", unicast_with(&[attr(T, code::ATOMIC_AGGREGATE, &[0])]), ebgp(), Want::Discard(MalformedAtomicAggregate)),
        ("§7.7 AGGREGATOR of 6 octets on a 4-octet session", unicast_with(&[attr(O | T, code::AGGREGATOR, &[0xfd, 0xe8, 192, 0, 2, 1])]), ebgp(), Want::Discard(MalformedAggregator)),
        ("§7.7 AGGREGATOR of 8 octets", unicast_with(&[attr(O | T, code::AGGREGATOR, &[0, 0, 0xfd, 0xe8, 192, 0, 2, 1])]), ebgp(), Want::Ok),
        ("§7.8 COMMUNITIES length 3", unicast_with(&[attr(O | T, code::COMMUNITIES, &[0, 1, 0])]), ebgp(), Want::Withdraw(MalformedCommunities)),
        ("§7.8 COMMUNITIES length 0", unicast_with(&[attr(O | T, code::COMMUNITIES, &[])]), ebgp(), Want::Withdraw(MalformedCommunities)),
        ("§7.9 ORIGINATOR_ID from an external peer", unicast_with(&[attr(O, code::ORIGINATOR_ID, &[1, 2, 3, 4])]), ebgp(), Want::Discard(IbgpAttributeFromEbgp)),
        ("§7.9 ORIGINATOR_ID length 3 (iBGP)", unicast_with(&[local_pref(), attr(O, code::ORIGINATOR_ID, &[1, 2, 3])]), ibgp(), Want::Withdraw(MalformedOriginatorId)),
        ("§7.10 CLUSTER_LIST length 6 (iBGP)", unicast_with(&[local_pref(), attr(O, code::CLUSTER_LIST, &[1, 2, 3, 4, 5, 6])]), ibgp(), Want::Withdraw(MalformedClusterList)),
        ("§7.10 CLUSTER_LIST from an external peer", unicast_with(&[attr(O, code::CLUSTER_LIST, &[1, 2, 3, 4])]), ebgp(), Want::Discard(IbgpAttributeFromEbgp)),
        ("§7.11 MP_REACH of 2 octets", update(Vec::new(), &[attr(O, code::MP_REACH_NLRI, &[0, 1]), origin(), as_path()], Vec::new()), ebgp(), Want::Reset(MalformedMpReach, (3, 9))),
        ("§7.11 MP_REACH IPv4 unicast next hop of 5 octets", update(Vec::new(), &[mp(1, 1, &[1, 2, 3, 4, 5], &nlri_v4()), origin(), as_path()], Vec::new()), ebgp(), Want::Disable(MalformedMpReach, (1, 1))),
        ("§7.11 MP_REACH next hop runs past the attribute", update(Vec::new(), &[attr(O, code::MP_REACH_NLRI, &[0, 2, 1, 16, 0, 0]), origin(), as_path()], Vec::new()), ebgp(), Want::Disable(MalformedMpReach, (2, 1))),
        ("§7.11/§5.3 MP_REACH IPv6 prefix length 129", update(Vec::new(), &[mp(2, 1, &[0; 16], &[129, 0]), origin(), as_path()], Vec::new()), ebgp(), Want::Disable(MalformedMpNlri, (2, 1))),
        ("§7.11 MP_REACH Flow Spec length runs past the attribute", update(Vec::new(), &[mp_reach_flow(&[0x20, 1, 24, 192]), origin(), as_path()], Vec::new()), ebgp(), Want::Disable(MalformedMpNlri, (1, 133))),
        ("§7.11 MP_REACH Flow Spec 2-octet length truncated", update(Vec::new(), &[mp_reach_flow(&[0xf0]), origin(), as_path()], Vec::new()), ebgp(), Want::Disable(MalformedMpNlri, (1, 133))),
        ("§7.12 MP_UNREACH of 2 octets", update(Vec::new(), &[attr(O, code::MP_UNREACH_NLRI, &[0, 1])], Vec::new()), ebgp(), Want::Reset(MalformedMpUnreach, (3, 9))),
        ("§7.12/§5.3 MP_UNREACH IPv4 prefix runs past", update(Vec::new(), &[unreach(1, 1, &[32, 1, 2])], Vec::new()), ebgp(), Want::Disable(MalformedMpNlri, (1, 1))),
        ("MP_REACH of a family not negotiated", flow_with(&[]), no_flow, Want::Withdraw(FamilyNotNegotiated)),
        ("§7.14 EXTENDED_COMMUNITIES length 7", flow_with(&[attr(O | T, code::EXTENDED_COMMUNITIES, &[0x80, 6, 0, 0, 0, 0, 0])]), ebgp(), Want::Withdraw(MalformedExtendedCommunities)),
        ("§7.15 IPv6 extended communities length 19", unicast_with(&[attr(O | T, code::IPV6_EXTENDED_COMMUNITIES, &[0; 19])]), ebgp(), Want::Withdraw(MalformedIpv6ExtendedCommunities)),
        ("RFC 8092 §6 LARGE_COMMUNITY length 11", unicast_with(&[attr(O | T, code::LARGE_COMMUNITIES, &[0; 11])]), ebgp(), Want::Withdraw(MalformedLargeCommunities)),
        ("RFC 6793 §6 AS4_PATH malformed", unicast_with(&[attr(O | T, code::AS4_PATH, &[2, 3, 0, 0])]), ebgp(), Want::Discard(MalformedAs4Path)),
        ("RFC 6793 §6 AS4_AGGREGATOR length 6", unicast_with(&[attr(O | T, code::AS4_AGGREGATOR, &[0; 6])]), ebgp(), Want::Discard(MalformedAs4Aggregator)),
        // ---- RFC 8955 §4.2 / §10, RFC 8956 §3 ----
        ("RFC 8955 §4.2 components out of order", update(Vec::new(), &[mp_reach_flow(&bad_order), origin(), as_path()], Vec::new()), ebgp(), Want::Withdraw(MalformedFlowSpec)),
        ("RFC 8955 §4.2 unknown component type", update(Vec::new(), &[mp_reach_flow(&unknown_component), origin(), as_path()], Vec::new()), ebgp(), Want::Withdraw(MalformedFlowSpec)),
        ("RFC 8955 §4.1 zero-length NLRI", update(Vec::new(), &[mp_reach_flow(&[0]), origin(), as_path()], Vec::new()), ebgp(), Want::Withdraw(MalformedFlowSpec)),
        ("RFC 8955 malformed rule in MP_UNREACH", update(Vec::new(), &[unreach(1, 133, &bad_order)], Vec::new()), ebgp(), Want::Withdraw(MalformedFlowSpec)),
        ("RFC 8956 §3 IPv6 rule well formed", update(Vec::new(), &[mp(2, 133, &[], &v6_flow), origin(), as_path()], Vec::new()), ebgp(), Want::Ok),
        ("RFC 8956 §3.1 IPv6 offset past the length", update(Vec::new(), &[mp(2, 133, &[], &v6_bad_offset), origin(), as_path()], Vec::new()), ebgp(), Want::Withdraw(MalformedFlowSpec)),
    ];
    let n = cases.len();
    for (name, u, ctx, want) in cases {
        let v = check(&u, &ctx);
        assert_verdict(name, &v, &want);
        // What the session reads off the wire gives the same verdict.
        let wire = Message::Update(u).encode();
        let Ok(Message::Update(back)) = Message::decode(&wire) else {
            panic!("{name}: does not frame")
        };
        assert_eq!(check(&back, &ctx), v, "{name}");
    }
    assert!(n >= 60, "{n} cases");
}

/// RFC 4271 §6.3 (kept by RFC 7606 §4): Withdrawn Routes Length or Total
/// Path Attribute Length past the message is a reset with 3/1, found
/// while framing, before [`check`].
#[test]
fn lengths_past_the_message_reset_with_malformed_attribute_list() {
    let mut wire = Message::Update(unicast_with(&[])).encode();
    wire[19..21].copy_from_slice(&500u16.to_be_bytes());
    let e = Message::decode(&wire).unwrap_err();
    assert_eq!((e.code, e.subcode), (3, 1));
    let mut wire = Message::Update(unicast_with(&[])).encode();
    wire[21..23].copy_from_slice(&500u16.to_be_bytes());
    let e = Message::decode(&wire).unwrap_err();
    assert_eq!((e.code, e.subcode), (3, 1));
}

/// What the verdicts carry: the routes of a treat-as-withdraw, the
/// attribute data of a NOTIFICATION, the parsed UPDATE, End-of-RIB.
#[test]
fn verdict_contents() {
    // Our own encoder's UPDATEs parse back to the routes they carry.
    let rule = flow_rule();
    let route = Route::flowspec(rule.clone(), vec![Action::DISCARD]).unwrap();
    let u = update::announce(&route, &params(true)).unwrap();
    let UpdateVerdict::Ok(p) = check(&u, &ibgp()) else {
        panic!("our UPDATE in error")
    };
    assert_eq!(p.announced, vec![Nlri::FlowSpec(rule.clone())]);
    let mp_reach = p
        .attributes
        .iter()
        .filter(|a| a.code() == code::MP_REACH_NLRI);
    assert_eq!(mp_reach.count(), 1);
    assert!(
        p.attributes
            .iter()
            .any(|a| a.code() == code::EXTENDED_COMMUNITIES)
    );
    let UpdateVerdict::Ok(w) = check(&update::withdraw(&route.key()), &ebgp()) else {
        panic!()
    };
    assert_eq!(w.withdrawn, vec![Nlri::FlowSpec(rule)]);
    let rtbh = Route::blackhole("192.0.2.7".parse().unwrap());
    let UpdateVerdict::Ok(r) = check(&update::announce(&rtbh, &params(false)).unwrap(), &ebgp())
    else {
        panic!()
    };
    assert_eq!(r.announced, vec![Nlri::Prefix(net("192.0.2.7/32"))]);

    // Treat-as-withdraw lists every route, withdrawn and announced.
    let mut u = unicast_with(&[attr(O, code::MULTI_EXIT_DISC, &[1])]);
    u.withdrawn = vec![8, 10];
    let UpdateVerdict::TreatAsWithdraw { withdrawn, errors } = check(&u, &ebgp()) else {
        panic!()
    };
    assert_eq!(
        withdrawn,
        vec![
            Nlri::Prefix(net("10.0.0.0/8")),
            Nlri::Prefix(net("192.0.2.0/24"))
        ]
    );
    assert_eq!(errors[0].attribute, Some(code::MULTI_EXIT_DISC));
    assert_eq!(errors[0].approach, Approach::TreatAsWithdraw);

    // A malformed Flow Spec rule is withdrawn raw, the good one parsed.
    let good = flow_rule().encode_nlri();
    let bad = vec![3, 14, 0x81, 1];
    let u = update(
        Vec::new(),
        &[
            mp_reach_flow(&[good.clone(), bad.clone()].concat()),
            origin(),
            as_path(),
        ],
        Vec::new(),
    );
    let UpdateVerdict::TreatAsWithdraw { withdrawn, .. } = check(&u, &ebgp()) else {
        panic!()
    };
    assert_eq!(
        withdrawn,
        vec![
            Nlri::FlowSpec(flow_rule()),
            Nlri::Raw {
                afi: 1,
                safi: 133,
                bytes: bad
            }
        ]
    );

    // The unrecognized well-known attribute goes back as the Data.
    let UpdateVerdict::SessionReset { notification, .. } =
        check(&unicast_with(&[attr(T, 99, &[7])]), &ebgp())
    else {
        panic!()
    };
    assert_eq!(notification.data, vec![T, 99, 1, 7]);

    // Discard keeps the rest of the UPDATE, without the attribute.
    let UpdateVerdict::AttributeDiscard { update: p, .. } = check(
        &unicast_with(&[attr(T, code::ATOMIC_AGGREGATE, &[1])]),
        &ebgp(),
    ) else {
        panic!()
    };
    assert_eq!(p.announced, vec![Nlri::Prefix(net("192.0.2.0/24"))]);
    assert!(
        p.attributes
            .iter()
            .all(|a| a.code() != code::ATOMIC_AGGREGATE)
    );

    // An unknown optional transitive attribute is kept with Partial set.
    let UpdateVerdict::Ok(p) = check(&unicast_with(&[attr(O | T, 99, &[1])]), &ebgp()) else {
        panic!()
    };
    assert!(p.attributes.iter().any(|a| matches!(a,
        super::attribute::PathAttribute::Other { flags, code: 99, .. } if flags & PARTIAL != 0)));

    // Only an ignored attribute is no End-of-RIB.
    let UpdateVerdict::Ok(p) = check(
        &update(Vec::new(), &[attr(O, 98, &[1])], Vec::new()),
        &ebgp(),
    ) else {
        panic!()
    };
    assert_eq!(p.end_of_rib, None);

    // End-of-RIB markers (RFC 4724 §2).
    for family in Family::ALL {
        let UpdateVerdict::Ok(ReceivedUpdate { end_of_rib, .. }) =
            check(&Update::end_of_rib(family), &ebgp())
        else {
            panic!()
        };
        assert_eq!(end_of_rib, Some(family.codes()));
    }
}

// ---- Random and mutated UPDATEs -------------------------------------------

/// Valid UPDATEs from our own encoder (and a few hand-built ones with
/// attributes we never send), the seeds of the mutations.
pub(super) fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    SEEDS.get_or_init(build_seeds)
}

fn build_seeds() -> Vec<Vec<u8>> {
    let v6 = FlowSpec::new(
        IpFamily::Ipv6,
        vec![
            Component::DestinationPrefix(FlowPrefix::new(net("2001:db8::/64"))),
            Component::DestinationPort(vec![NumericMatch::eq(443)]),
        ],
    )
    .unwrap();
    let routes = [
        Route::flowspec(flow_rule(), vec![Action::DISCARD]).unwrap(),
        Route::flowspec(v6, vec![Action::DISCARD]).unwrap(),
        Route::blackhole("192.0.2.9".parse().unwrap()),
        Route::blackhole("2001:db8::9".parse().unwrap()),
    ];
    let mut out = Vec::new();
    for r in &routes {
        for ibgp in [false, true] {
            out.push(Message::Update(update::announce(r, &params(ibgp)).unwrap()).encode());
        }
        out.push(Message::Update(update::withdraw(&r.key())).encode());
    }
    for f in Family::ALL {
        out.push(Message::Update(Update::end_of_rib(f)).encode());
    }
    out.push(
        Message::Update(unicast_with(&[
            attr(O, code::MULTI_EXIT_DISC, &[0, 0, 0, 5]),
            attr(T, code::ATOMIC_AGGREGATE, &[]),
            attr(O | T, code::AGGREGATOR, &[0, 0, 0xfd, 0xe8, 192, 0, 2, 1]),
            attr(O | T, code::COMMUNITIES, &[0xff, 0xff, 2, 0x9a]),
            attr(O | T, code::LARGE_COMMUNITIES, &[0; 12]),
            attr(O | T, 99, &[1, 2, 3]),
        ]))
        .encode(),
    );
    out
}

/// The session's path for one frame: decode, then check; framing errors
/// are a reset (their NOTIFICATION comes from [`Message::decode`]).
pub(super) fn receive_frame(frame: &[u8], ctx: &ReceiveContext) -> Option<UpdateVerdict> {
    match Message::decode(frame) {
        Ok(Message::Update(u)) => Some(check(&u, ctx)),
        _ => None,
    }
}

/// One mutation of an encoded UPDATE.
#[derive(Debug, Clone)]
pub(super) enum Mutation {
    /// XOR a byte (the body only: the header stays framable).
    Flip(usize, u8),
    Set(usize, u8),
    Truncate(usize),
    Insert(usize, u8),
    Remove(usize),
    /// Add to a length field: withdrawn length, total attribute length,
    /// or the length octet of the attribute at `.0` (as an offset into
    /// the attribute list).
    Length(u8, usize, i8),
    /// Flip attribute flag bits of the attribute starting near `.0`.
    Flags(usize, u8),
}

/// Applies `ms` to `frame`; the header length is fixed up afterwards
/// when `fix_len` (so that most mutants get past the framing).
pub(super) fn mutate(frame: &[u8], ms: &[Mutation], fix_len: bool) -> Vec<u8> {
    let mut f = frame.to_vec();
    for m in ms {
        let body = f.len().saturating_sub(19).max(1);
        match *m {
            Mutation::Flip(i, x) => {
                let at = 19 + i % body;
                if let Some(b) = f.get_mut(at) {
                    *b ^= x;
                }
            }
            Mutation::Set(i, x) => {
                let at = 19 + i % body;
                if let Some(b) = f.get_mut(at) {
                    *b = x;
                }
            }
            Mutation::Truncate(i) => f.truncate(19 + i % body),
            Mutation::Insert(i, x) => {
                let at = (19 + i % body).min(f.len());
                f.insert(at, x);
            }
            Mutation::Remove(i) => {
                let at = 19 + i % body;
                if at < f.len() {
                    f.remove(at);
                }
            }
            Mutation::Length(which, i, d) => {
                let at = match which % 3 {
                    0 => 20,
                    1 => {
                        let wl = f
                            .get(19..21)
                            .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
                        22 + wl
                    }
                    _ => {
                        let wl = f
                            .get(19..21)
                            .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
                        // An attribute's length octet: 3rd octet from
                        // some attribute start, approximated by offset.
                        23 + wl + i % body + 2
                    }
                };
                if let Some(b) = f.get_mut(at) {
                    *b = b.wrapping_add(d as u8);
                }
            }
            Mutation::Flags(i, bits) => {
                let wl = f
                    .get(19..21)
                    .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
                let at = 23 + wl + i % body;
                if let Some(b) = f.get_mut(at) {
                    *b ^= bits & 0xf0;
                }
            }
        }
    }
    if fix_len && f.len() >= 19 {
        let len = f.len().min(usize::from(u16::MAX)) as u16;
        f[16..18].copy_from_slice(&len.to_be_bytes());
    }
    f
}

mod props {
    use proptest::prelude::*;

    use super::*;

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            4 => (any::<usize>(), 1u8..).prop_map(|(i, x)| Mutation::Flip(i, x)),
            2 => (any::<usize>(), any::<u8>()).prop_map(|(i, x)| Mutation::Set(i, x)),
            1 => any::<usize>().prop_map(Mutation::Truncate),
            1 => (any::<usize>(), any::<u8>()).prop_map(|(i, x)| Mutation::Insert(i, x)),
            1 => any::<usize>().prop_map(Mutation::Remove),
            3 => (any::<u8>(), any::<usize>(), any::<i8>()).prop_map(|(w, i, d)| Mutation::Length(w, i, d)),
            2 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flags(i, b)),
        ]
    }

    fn context() -> impl Strategy<Value = ReceiveContext> {
        (
            any::<bool>(),
            any::<bool>(),
            prop::sample::subsequence(Family::ALL.to_vec(), 0..=4),
        )
            .prop_map(|(four_octet, ibgp, families)| ReceiveContext {
                four_octet,
                ibgp,
                add_path: families.iter().copied().step_by(2).collect(),
                families,
            })
    }

    fn check_frame(frame: &[u8], ctx: &ReceiveContext) -> Result<(), TestCaseError> {
        if let Some(v) = receive_frame(frame, ctx) {
            prop_assert!(well_formed(&v).is_ok(), "{:?}", well_formed(&v));
            prop_assert_eq!(v.errors().is_empty(), matches!(v, UpdateVerdict::Ok(_)));
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 60_000,
            failure_persistence: None,
            .. ProptestConfig::default()
        })]

        /// Mutants of valid UPDATEs (bytes flipped, set, cut, inserted,
        /// removed; lengths and flags changed) never panic the check and
        /// always get a well-formed verdict.
        #[test]
        fn mutated_updates(
            seed in any::<prop::sample::Index>(),
            ms in prop::collection::vec(mutation(), 1..5),
            fix_len in prop::bool::weighted(0.9),
            ctx in context(),
        ) {
            let seeds = seeds();
            let frame = mutate(&seeds[seed.index(seeds.len())], &ms, fix_len);
            check_frame(&frame, &ctx)?;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 30_000,
            failure_persistence: None,
            .. ProptestConfig::default()
        })]

        /// Random UPDATE bodies behind a valid header.
        #[test]
        fn random_update_frames(body in prop::collection::vec(any::<u8>(), 4..120), ctx in context()) {
            let mut frame = vec![0xff; 16];
            frame.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
            frame.push(2);
            frame.extend_from_slice(&body);
            check_frame(&frame, &ctx)?;
        }

        /// Random fields that frame: the attribute list and NLRI are
        /// arbitrary, with attribute-shaped prefixes (flags, a known or
        /// random type, a length close to the rest) to get deep.
        #[test]
        fn random_attribute_lists(
            withdrawn in prop::collection::vec(any::<u8>(), 0..8),
            attrs in prop::collection::vec(
                (any::<u8>(), prop_oneof![0u8..=20, Just(25u8), Just(32u8), any::<u8>()],
                 prop::collection::vec(any::<u8>(), 0..24)),
                0..6),
            nlri in prop::collection::vec(any::<u8>(), 0..8),
            ctx in context(),
        ) {
            let list: Vec<Vec<u8>> = attrs.iter().map(|(f, c, v)| attr(*f, *c, v)).collect();
            let u = update(withdrawn, &list, nlri);
            let v = check(&u, &ctx);
            prop_assert!(well_formed(&v).is_ok(), "{:?}", well_formed(&v));
        }
    }
}

// ---- The session against a scripted peer --------------------------------

mod session {
    use std::time::Duration;

    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::{TcpListener, TcpStream},
    };

    use super::*;
    use crate::bgp::{PeerStatus, SessionState, Speaker, capability::Capability, message::Open};

    const TIMEOUT: Duration = Duration::from_secs(10);
    const FAMILIES: [Family; 3] = [
        Family::Ipv4Unicast,
        Family::Ipv4FlowSpec,
        Family::Ipv6FlowSpec,
    ];

    /// A speaker whose one peer is our listener; a long hold time, so the
    /// session outlives the slow rounds of mutants.
    async fn speaker_and_peer() -> (Speaker, TcpListener) {
        crate::bgp::tests::scripted::speaker_and_peer_holding(30).await
    }

    /// The next message that is not a KEEPALIVE.
    async fn read(stream: &mut TcpStream) -> Message {
        loop {
            let mut header = [0u8; 19];
            tokio::time::timeout(TIMEOUT, stream.read_exact(&mut header))
                .await
                .expect("a message")
                .unwrap();
            let len = usize::from(u16::from_be_bytes([header[16], header[17]]));
            let mut frame = header.to_vec();
            frame.resize(len, 0);
            stream.read_exact(&mut frame[19..]).await.unwrap();
            let m = Message::decode(&frame).unwrap();
            if m != Message::Keepalive {
                return m;
            }
        }
    }

    async fn establish(listener: &TcpListener) -> TcpStream {
        let (mut s, _) = tokio::time::timeout(TIMEOUT, listener.accept())
            .await
            .unwrap()
            .unwrap();
        let mut header = [0u8; 19];
        s.read_exact(&mut header).await.unwrap();
        let len = usize::from(u16::from_be_bytes([header[16], header[17]]));
        let mut rest = vec![0; len - 19];
        s.read_exact(&mut rest).await.unwrap();
        let mut capabilities: Vec<Capability> =
            FAMILIES.iter().map(|f| Capability::family(*f)).collect();
        capabilities.push(Capability::FourOctetAs(65000));
        let open = Message::Open(Open {
            version: 4,
            my_as: 65000,
            hold_time: 30,
            bgp_id: Ipv4Addr::new(198, 51, 100, 1),
            capabilities,
        });
        s.write_all(&open.encode()).await.unwrap();
        s.write_all(&Message::Keepalive.encode()).await.unwrap();
        // Our End-of-RIB per family.
        for _ in FAMILIES {
            assert!(matches!(read(&mut s).await, Message::Update(_)));
        }
        s
    }

    async fn wait_status(speaker: &Speaker, f: impl Fn(&PeerStatus) -> bool) -> PeerStatus {
        for _ in 0..200 {
            let st = speaker.status().remove(0);
            if f(&st) {
                return st;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("status never matched: {:#?}", speaker.status());
    }

    fn ctx() -> ReceiveContext {
        ReceiveContext {
            four_octet: true,
            ibgp: false,
            add_path: Vec::new(),
            families: Family::ALL
                .into_iter()
                .filter(|f| FAMILIES.contains(f))
                .collect(),
        }
    }

    /// Treat-as-withdraw, attribute discard and AFI/SAFI disable only
    /// count (per reason) and the session stays up; a duplicate
    /// MP_REACH_NLRI resets it with 3/1 (RFC 7606 §3(g)).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn errors_are_counted_and_reset_sends_the_notification() {
        let (speaker, listener) = speaker_and_peer().await;
        let mut s = establish(&listener).await;
        let flow = flow_rule().encode_nlri();
        let sent = [
            unicast_with(&[]),
            unicast_with(&[attr(O, code::MULTI_EXIT_DISC, &[1])]),
            unicast_with(&[
                attr(O | T, code::COMMUNITIES, &[0, 1, 0, 1]),
                attr(O | T, code::COMMUNITIES, &[0, 1, 0, 2]),
            ]),
            update(
                Vec::new(),
                &[mp_reach_flow(&[0x20, 1]), origin(), as_path()],
                Vec::new(),
            ),
            flow_with(&[]),
        ];
        for u in &sent {
            s.write_all(&Message::Update(u.clone()).encode())
                .await
                .unwrap();
        }
        let st = wait_status(&speaker, |p| p.updates_received == sent.len() as u64).await;
        assert_eq!(st.state, SessionState::Established);
        let errs: Vec<(&str, u64)> = st
            .update_errors
            .iter()
            .map(|(r, n)| (r.name(), *n))
            .collect();
        assert_eq!(
            errs,
            [
                ("duplicate-attribute", 1),
                ("malformed-med", 1),
                ("malformed-mp-nlri", 1)
            ]
        );
        assert_eq!(st.afi_safi_disabled, ["ipv4-flowspec"]);
        assert!(st.last_update_error.is_some());
        let json = serde_json::to_value(&st).unwrap();
        assert_eq!(json["update_errors"]["malformed-med"], 1);

        let dup = update(
            Vec::new(),
            &[
                mp_reach_flow(&flow),
                mp_reach_flow(&flow),
                origin(),
                as_path(),
            ],
            Vec::new(),
        );
        s.write_all(&Message::Update(dup).encode()).await.unwrap();
        let Message::Notification(n) = read(&mut s).await else {
            panic!("no NOTIFICATION")
        };
        assert_eq!((n.code, n.subcode), (3, 1));
        let st = wait_status(&speaker, |p| p.state != SessionState::Established).await;
        assert_eq!(st.update_errors[&Reason::DuplicateMpAttribute], 1);
        assert!(st.last_notification_sent.unwrap().starts_with("3/1"));
        speaker.shutdown(false).await;
    }

    /// A stream of mutated UPDATEs through the real session: the speaker
    /// answers exactly as [`check`] predicts: it keeps the session up
    /// (counting every UPDATE) until the first mutant that calls for a
    /// reset, which gets its NOTIFICATION; then it reconnects, and the
    /// next stream goes on (several rounds).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mutated_updates_through_the_session() {
        let (speaker, listener) = speaker_and_peer().await;
        let ctx = ctx();
        let seeds = seeds();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut total = 0;
        let mut resets = 0;
        let mut received_before = 0;
        for _round in 0..3 {
            let mut s = establish(&listener).await;
            let mut sent_ok = 0u64;
            let mut reset = None;
            let mut last = Vec::new();
            // 1000 mutants the check keeps the session up for, then the
            // first one it resets for.
            while reset.is_none() {
                let seed = &seeds[next() as usize % seeds.len()];
                let ms: Vec<Mutation> = (0..1 + next() % 3)
                    .map(|_| {
                        let (i, x) = (next() as usize, next() as u8);
                        match next() % 6 {
                            0 => Mutation::Flip(i, x | 1),
                            1 => Mutation::Set(i, x),
                            2 => Mutation::Truncate(i),
                            3 => Mutation::Remove(i),
                            4 => Mutation::Length(x, i, (x % 7) as i8 - 3),
                            _ => Mutation::Flags(i, x),
                        }
                    })
                    .collect();
                let frame = mutate(seed, &ms, true);
                let expect = match Message::decode(&frame) {
                    Err(e) => Some((e.code, e.subcode)),
                    Ok(Message::Update(u)) => match check(&u, &ctx) {
                        UpdateVerdict::SessionReset { notification, .. } => {
                            Some((notification.code, notification.subcode))
                        }
                        _ => None,
                    },
                    Ok(other) => panic!("mutant decodes as {other:?}"),
                };
                if expect.is_some() && sent_ok < 1000 {
                    continue;
                }
                total += 1;
                s.write_all(&frame).await.unwrap();
                last = frame;
                match expect {
                    Some(cs) => reset = Some(cs),
                    None => sent_ok += 1,
                }
            }
            let cs = reset.expect("a resetting mutant");
            let Message::Notification(n) = read(&mut s).await else {
                panic!("no NOTIFICATION")
            };
            assert_eq!((n.code, n.subcode), cs);
            resets += 1;
            let want = received_before + sent_ok;
            let st = wait_status(&speaker, |p| p.state != SessionState::Established).await;
            // The resetting UPDATE is counted too, unless its
            // header was in error (code 1: not read as an UPDATE).
            let counted = u64::from(cs.0 == 3);
            assert_eq!(st.updates_received, want + counted);
            if cs.0 == 3 && Message::decode(&last).is_err() {
                assert!(st.update_errors.contains_key(&Reason::UpdateLengths));
            }
            received_before = st.updates_received;
        }
        eprintln!("{total} mutants through the session, {resets} resets");
        assert!(
            total > 3000 && resets == 3,
            "{total} mutants, {resets} resets"
        );
        speaker.shutdown(false).await;
    }
}

/// The mutants are not all rejected at the door: a fixed stream of them
/// reaches every approach of RFC 7606 §2 (and plain Ok), so the property
/// tests exercise the whole check.
#[test]
fn mutants_reach_every_approach() {
    let ctx = ReceiveContext {
        ibgp: false,
        ..ebgp()
    };
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut tally = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..20_000 {
        let seed = &seeds()[next() as usize % seeds().len()];
        let (i, x) = (next() as usize, next() as u8);
        let m = match next() % 4 {
            0 => Mutation::Flip(i, x | 1),
            1 => Mutation::Length(x, i, (x % 7) as i8 - 3),
            2 => Mutation::Flags(i, x),
            _ => Mutation::Truncate(i),
        };
        let key = match receive_frame(&mutate(seed, &[m], true), &ctx) {
            None => "framing".to_owned(),
            Some(v) => format!("{:?}", v.approach()),
        };
        *tally.entry(key).or_default() += 1;
    }
    eprintln!("{tally:?}");
    for k in [
        "framing",
        "None",
        "Some(AttributeDiscard)",
        "Some(TreatAsWithdraw)",
        "Some(AfiSafiDisable)",
        "Some(SessionReset)",
    ] {
        assert!(tally.get(k).is_some_and(|n| *n >= 20), "{k}: {tally:?}");
    }
}
