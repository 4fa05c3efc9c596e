//! The Adj-RIB-In fed with real UPDATEs through the RFC 7606 check.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use ipnet::IpNet;

use super::*;
use crate::bgp::{
    attribute::{AsPathSegment, Community, Origin, PathAttribute, encode_prefix},
    flowspec::{Action, Component, FlowPrefix, FlowSpec, IpFamily, NumericMatch},
    message::Update,
    receive::{ReceiveContext, check},
    rib_in::{
        flow::Validation,
        query::{Compiled, MatchMode, RibAnswer, RibQuery},
    },
    route::Route,
    update::{SessionParams, announce},
};

const DISCARD: Action = Action::TrafficRateBytes { id: 0, rate: 0.0 };

const PEER: PeerInfo = PeerInfo {
    ibgp: true,
    peer_asn: 65000,
    four_octet: true,
};

fn ctx(add_path: &[Family]) -> ReceiveContext {
    ReceiveContext {
        four_octet: true,
        ibgp: true,
        families: Family::ALL.to_vec(),
        add_path: add_path.to_vec(),
    }
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn base(lp: u32, comms: &[Community]) -> Vec<PathAttribute> {
    let mut a = vec![
        PathAttribute::Origin(Origin::Igp),
        PathAttribute::AsPath {
            segments: vec![AsPathSegment::Sequence(vec![65100, 65200])],
            four_octet: true,
        },
        PathAttribute::NextHop(Ipv4Addr::new(192, 0, 2, 1)),
        PathAttribute::LocalPref(lp),
    ];
    if !comms.is_empty() {
        a.push(PathAttribute::Communities(comms.to_vec()));
    }
    a
}

fn prefixes(list: &[&str], ids: Option<&[u32]>) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, p) in list.iter().enumerate() {
        if let Some(ids) = ids {
            out.extend_from_slice(&ids[i].to_be_bytes());
        }
        encode_prefix(&net(p), &mut out);
    }
    out
}

fn feed(rib: &mut AdjRibIn, u: &Update, add_path: &[Family]) {
    rib.apply(&check(u, &ctx(add_path)), PEER);
}

fn ask(rib: &AdjRibIn, q: RibQuery) -> RibAnswer {
    let mut out = RibAnswer::default();
    Compiled::new(&q).unwrap().run("r1", rib, &mut out);
    out
}

fn listed(a: &RibAnswer) -> Vec<String> {
    a.routes
        .iter()
        .map(|r| format!("{}#{}", r.prefix, r.path_id))
        .collect()
}

fn flow_rule(dest: &str) -> FlowSpec {
    FlowSpec::new(
        IpFamily::Ipv4,
        vec![
            Component::DestinationPrefix(FlowPrefix::new(net(dest))),
            Component::IpProtocol(vec![NumericMatch::eq(17)]),
        ],
    )
    .unwrap()
}

fn params() -> SessionParams {
    SessionParams {
        local_asn: 65000,
        ibgp: true,
        four_octet: true,
        local_pref: 100,
        next_hop_v4: None,
        next_hop_v6: None,
        communities: Vec::new(),
        blackhole_communities: Vec::new(),
        no_export: false,
        add_path: Vec::new(),
    }
}

#[test]
fn announcements_withdrawals_and_shared_attributes() {
    let mut rib = AdjRibIn::default();
    let c = Community::new(65000, 42);
    feed(
        &mut rib,
        &Update::new(
            Vec::new(),
            &base(100, &[c]),
            prefixes(&["10.0.0.0/8", "10.1.0.0/16", "192.0.2.0/24"], None),
        ),
        &[],
    );
    // IPv6 in MP_REACH_NLRI with a global next hop.
    let mut v6 = base(100, &[]);
    v6.remove(2);
    v6.insert(
        0,
        PathAttribute::mp_reach(
            Family::Ipv6Unicast,
            "2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
                .to_vec(),
            prefixes(&["2001:db8:100::/40"], None),
        ),
    );
    feed(&mut rib, &Update::new(Vec::new(), &v6, Vec::new()), &[]);
    let s = rib.status();
    assert_eq!((s.prefixes, s.paths, s.attribute_sets), (4, 4, 2));

    let all = ask(&rib, RibQuery::default());
    assert_eq!(
        listed(&all),
        [
            "10.0.0.0/8#0",
            "10.1.0.0/16#0",
            "192.0.2.0/24#0",
            "2001:db8:100::/40#0"
        ]
    );
    assert_eq!(all.routes[0].attributes.local_pref, Some(100));
    assert_eq!(
        all.routes[3].attributes.next_hop,
        Some("2001:db8::1".parse().unwrap())
    );
    let longest = ask(
        &rib,
        RibQuery {
            prefix: Some(net("10.1.2.3/32")),
            ..RibQuery::default()
        },
    );
    assert_eq!(listed(&longest), ["10.1.0.0/16#0"]);
    let more = ask(
        &rib,
        RibQuery {
            prefix: Some(net("10.0.0.0/8")),
            mode: MatchMode::MoreSpecific,
            ..RibQuery::default()
        },
    );
    assert_eq!(listed(&more), ["10.0.0.0/8#0", "10.1.0.0/16#0"]);
    let by_comm = ask(
        &rib,
        RibQuery {
            community: Some("65000:42".into()),
            ..RibQuery::default()
        },
    );
    assert_eq!(by_comm.routes.len(), 3, "the IPv6 route has no community");
    let limited = ask(
        &rib,
        RibQuery {
            limit: Some(2),
            ..RibQuery::default()
        },
    );
    assert!(limited.truncated && limited.routes.len() == 2);

    // Withdrawn Routes field and MP_UNREACH_NLRI.
    feed(
        &mut rib,
        &Update::new(prefixes(&["10.1.0.0/16"], None), &[], Vec::new()),
        &[],
    );
    feed(
        &mut rib,
        &Update::new(
            Vec::new(),
            &[PathAttribute::mp_unreach(
                Family::Ipv6Unicast,
                prefixes(&["2001:db8:100::/40"], None),
            )],
            Vec::new(),
        ),
        &[],
    );
    assert_eq!(
        listed(&ask(&rib, RibQuery::default())),
        ["10.0.0.0/8#0", "192.0.2.0/24#0"]
    );
    rib.interner.collect();
    assert_eq!(
        rib.status().attribute_sets,
        1,
        "the IPv6 set went with its route"
    );

    // Treat-as-withdraw (RFC 7606 §7.4: a MED of 3 octets) removes the
    // route the UPDATE names.
    let mut bad = base(100, &[]);
    bad.push(PathAttribute::Other {
        flags: 0x80,
        code: 4,
        value: vec![0, 0, 1],
    });
    feed(
        &mut rib,
        &Update::new(Vec::new(), &bad, prefixes(&["192.0.2.0/24"], None)),
        &[],
    );
    assert_eq!(listed(&ask(&rib, RibQuery::default())), ["10.0.0.0/8#0"]);
    assert_eq!(rib.status().withdrawn, 3);
}

#[test]
fn flowspec_rules_are_stored_with_actions_and_validation() {
    let mut rib = AdjRibIn::default();
    let route = Route::FlowSpec {
        rule: flow_rule("198.18.0.1/32"),
        actions: vec![DISCARD],
    };
    // Exactly the UPDATE the sensor sends (iBGP, empty AS_PATH).
    feed(&mut rib, &announce(&route, &params()).unwrap(), &[]);
    let no_dest = Route::FlowSpec {
        rule: FlowSpec::new(
            IpFamily::Ipv4,
            vec![Component::IpProtocol(vec![NumericMatch::eq(6)])],
        )
        .unwrap(),
        actions: vec![DISCARD],
    };
    feed(&mut rib, &announce(&no_dest, &params()).unwrap(), &[]);
    let a = ask(
        &rib,
        RibQuery {
            flowspec_only: true,
            ..RibQuery::default()
        },
    );
    assert!(a.routes.is_empty());
    assert_eq!(
        a.flowspec.len(),
        2,
        "the invalid rule is stored, not dropped"
    );
    let valid = a
        .flowspec
        .iter()
        .find(|r| r.destination == Some(net("198.18.0.1/32")))
        .unwrap();
    assert_eq!(valid.validation, Validation::Valid);
    assert_eq!(valid.actions.len(), 1);
    assert_eq!(valid.actions[0].to_community(), DISCARD.to_community());
    let invalid = a.flowspec.iter().find(|r| r.destination.is_none()).unwrap();
    assert!(matches!(invalid.validation, Validation::Invalid { .. }));
    // Rules covering an address.
    let covering = ask(
        &rib,
        RibQuery {
            prefix: Some(net("198.18.0.1/32")),
            ..RibQuery::default()
        },
    );
    assert_eq!(covering.flowspec.len(), 1);
    // Withdrawn by NLRI.
    feed(&mut rib, &crate::bgp::update::withdraw(&route.key()), &[]);
    assert_eq!(rib.status().flowspec_rules, 1);
}

#[test]
fn add_path_stores_each_path_by_identifier() {
    let mut rib = AdjRibIn::default();
    let v4 = [Family::Ipv4Unicast];
    feed(
        &mut rib,
        &Update::new(
            Vec::new(),
            &base(100, &[]),
            prefixes(&["10.0.0.0/8", "10.0.0.0/8"], Some(&[1, 2])),
        ),
        &v4,
    );
    feed(
        &mut rib,
        &Update::new(
            Vec::new(),
            &base(200, &[]),
            prefixes(&["10.0.0.0/8"], Some(&[2])),
        ),
        &v4,
    );
    let a = ask(&rib, RibQuery::default());
    assert_eq!(listed(&a), ["10.0.0.0/8#1", "10.0.0.0/8#2"]);
    assert_eq!(
        a.routes[1].attributes.local_pref,
        Some(200),
        "path 2 replaced"
    );
    let s = rib.status();
    assert_eq!((s.prefixes, s.paths), (1, 2));
    feed(
        &mut rib,
        &Update::new(prefixes(&["10.0.0.0/8"], Some(&[1])), &[], Vec::new()),
        &v4,
    );
    assert_eq!(listed(&ask(&rib, RibQuery::default())), ["10.0.0.0/8#2"]);
}

#[test]
fn graceful_restart_keeps_stale_routes_until_end_of_rib() {
    let mut rib = AdjRibIn::default();
    let t0 = Instant::now();
    feed(
        &mut rib,
        &Update::new(
            Vec::new(),
            &base(100, &[]),
            prefixes(&["10.0.0.0/8", "11.0.0.0/8"], None),
        ),
        &[],
    );
    rib.session_down(Some(Duration::from_secs(120)), t0);
    assert_eq!(rib.status().stale, 2);
    rib.expire(t0 + Duration::from_secs(60));
    assert_eq!(rib.status().paths, 2, "kept for the restart time");
    rib.session_up(&[Family::Ipv4Unicast], t0 + Duration::from_secs(61));
    // The restarted peer sends one of them again, then End-of-RIB.
    feed(
        &mut rib,
        &Update::new(Vec::new(), &base(100, &[]), prefixes(&["10.0.0.0/8"], None)),
        &[],
    );
    assert_eq!(rib.status().stale, 1);
    feed(&mut rib, &Update::end_of_rib(Family::Ipv4Unicast), &[]);
    let s = rib.status();
    assert_eq!((s.paths, s.stale, s.stale_removed), (1, 0, 1));
    assert_eq!(s.end_of_rib, vec![Family::Ipv4Unicast]);

    // Restart time over without the peer: the stale routes go.
    rib.session_down(Some(Duration::from_secs(120)), t0);
    rib.expire(t0 + Duration::from_secs(121));
    assert_eq!(rib.status().paths, 0);

    // Without graceful restart (or after a NOTIFICATION) all go at once.
    feed(
        &mut rib,
        &Update::new(Vec::new(), &base(100, &[]), prefixes(&["10.0.0.0/8"], None)),
        &[],
    );
    rib.session_down(None, t0);
    assert_eq!(rib.status().paths, 0);

    // A family the peer no longer preserves loses its stale routes on
    // Established (RFC 4724 §4.2).
    feed(
        &mut rib,
        &Update::new(Vec::new(), &base(100, &[]), prefixes(&["10.0.0.0/8"], None)),
        &[],
    );
    rib.session_down(Some(Duration::from_secs(120)), t0);
    rib.session_up(&[], t0);
    assert_eq!(rib.status().paths, 0);
}

#[test]
fn afi_safi_disable_empties_and_ignores_the_family() {
    let mut rib = AdjRibIn::default();
    let route = Route::FlowSpec {
        rule: flow_rule("198.18.0.1/32"),
        actions: vec![DISCARD],
    };
    feed(&mut rib, &announce(&route, &params()).unwrap(), &[]);
    // MP_REACH_NLRI whose Flow Spec NLRI length runs past it: RFC 7606
    // §7.11 AFI/SAFI disable.
    let broken = Update::new(
        Vec::new(),
        &[PathAttribute::mp_reach(
            Family::Ipv4FlowSpec,
            Vec::new(),
            vec![20, 1],
        )],
        Vec::new(),
    );
    let v = check(&broken, &ctx(&[]));
    assert!(matches!(v, UpdateVerdict::AfiSafiDisable { .. }), "{v:?}");
    rib.apply(&v, PEER);
    assert_eq!(rib.status().flowspec_rules, 0);
    feed(&mut rib, &announce(&route, &params()).unwrap(), &[]);
    assert_eq!(
        rib.status().flowspec_rules,
        0,
        "ignored until the session ends"
    );
    rib.session_down(None, Instant::now());
    rib.session_up(&[], Instant::now());
    feed(&mut rib, &announce(&route, &params()).unwrap(), &[]);
    assert_eq!(rib.status().flowspec_rules, 1);
}

#[test]
fn hostile_updates_never_panic() {
    // A deterministic stream of random UPDATE bodies, with and without
    // path identifiers: whatever the verdict, applying it must not panic.
    let mut rib = AdjRibIn::default();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..3000 {
        let len = (next() % 64) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let (a, b) = bytes.split_at(len / 2);
        let u = Update::new(a.to_vec(), &[], b.to_vec());
        let add = if i % 2 == 0 {
            vec![Family::Ipv4Unicast]
        } else {
            vec![]
        };
        rib.apply(&check(&u, &ctx(&add)), PEER);
        let attrs = Update {
            withdrawn: Vec::new(),
            path_attributes: bytes.clone(),
            nlri: Vec::new(),
        };
        rib.apply(&check(&attrs, &ctx(&Family::ALL)), PEER);
    }
    let _ = rib.status();
}
