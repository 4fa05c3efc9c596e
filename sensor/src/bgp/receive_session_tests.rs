//! The receive side over a real session with a scripted peer: Add-Path
//! (RFC 7911) negotiation and path identifiers both ways, the Adj-RIB-In
//! (End-of-RIB, withdrawals, route refresh on demand, graceful restart),
//! and duplicate Flow Spec suppression.

use std::{net::Ipv4Addr, time::Duration};

use tokio::net::{TcpListener, TcpStream};

use super::{
    Family, Route, SessionState, Speaker,
    attribute::{AsPathSegment, Origin, PathAttribute, encode_prefix},
    capability::{AddPathMode, Capability, Negotiated},
    flowspec::{Action, Component, FlowPrefix, FlowSpec, IpFamily},
    message::{Message, Open, RouteRefresh, Update},
    rib_in::query::RibQuery,
    tests::scripted::{accept, read, send},
    update::{self, SessionParams},
};

async fn speaker(add_path: &str, graceful_restart: bool) -> (Speaker, TcpListener) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let gr = if graceful_restart {
        "graceful_restart = 120"
    } else {
        ""
    };
    let config = super::BgpConfig::from_toml(&format!(
        r#"
router_id = "192.0.2.10"
local_asn = 65000
announce_within = ["192.0.2.0/24"]
[[peers]]
name = "scripted"
address = "127.0.0.1"
port = {port}
peer_asn = 65000
hold_time = 30
connect_retry = 1
connect_retry_max = 1
families = ["ipv4-unicast", "ipv4-flowspec"]
next_hop_v4 = "192.0.2.254"
add_path = "{add_path}"
{gr}
"#
    ))
    .unwrap();
    (Speaker::start(config).unwrap(), listener)
}

fn peer_open(add_path: Option<u8>, graceful_restart: bool) -> Message {
    let families = [Family::Ipv4Unicast, Family::Ipv4FlowSpec];
    let mut capabilities: Vec<Capability> =
        families.iter().map(|f| Capability::family(*f)).collect();
    capabilities.push(Capability::FourOctetAs(65000));
    capabilities.push(Capability::RouteRefresh);
    if let Some(bits) = add_path {
        capabilities.push(Capability::AddPath(vec![(1, 1, bits), (1, 133, bits)]));
    }
    if graceful_restart {
        capabilities.push(Capability::GracefulRestart {
            restart_state: false,
            notification: false,
            restart_time: 120,
            families: vec![(1, 1, true), (1, 133, true)],
        });
    }
    Message::Open(Open {
        version: 4,
        my_as: 65000,
        hold_time: 30,
        bgp_id: Ipv4Addr::new(198, 51, 100, 1),
        capabilities,
    })
}

async fn establish(listener: &TcpListener, open: Message) -> (TcpStream, Open) {
    let mut s = accept(listener).await;
    let Message::Open(ours) = read(&mut s).await else {
        panic!("first message is not an OPEN")
    };
    send(&mut s, &open).await;
    send(&mut s, &Message::Keepalive).await;
    assert_eq!(read(&mut s).await, Message::Keepalive);
    (s, ours)
}

fn params(add_path: &[Family]) -> SessionParams {
    SessionParams {
        local_asn: 65000,
        ibgp: true,
        four_octet: true,
        local_pref: 100,
        next_hop_v4: Some(Ipv4Addr::new(192, 0, 2, 254)),
        next_hop_v6: None,
        communities: Vec::new(),
        blackhole_communities: Vec::new(),
        no_export: true,
        add_path: add_path.to_vec(),
    }
}

fn attrs() -> Vec<PathAttribute> {
    vec![
        PathAttribute::Origin(Origin::Igp),
        PathAttribute::AsPath {
            segments: vec![AsPathSegment::Sequence(vec![65100])],
            four_octet: true,
        },
        PathAttribute::NextHop(Ipv4Addr::new(198, 51, 100, 1)),
        PathAttribute::LocalPref(100),
    ]
}

/// `prefix` after path identifier `id`.
fn with_id(id: u32, prefix: &str) -> Vec<u8> {
    let mut out = id.to_be_bytes().to_vec();
    encode_prefix(&prefix.parse().unwrap(), &mut out);
    out
}

async fn until<T>(mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..100 {
        if let Some(t) = f() {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition not reached in 5 s")
}

fn flow() -> FlowSpec {
    FlowSpec::new(
        IpFamily::Ipv4,
        vec![Component::DestinationPrefix(FlowPrefix::new(
            "192.0.2.80/32".parse().unwrap(),
        ))],
    )
    .unwrap()
}

#[test]
fn capability_round_trips_and_negotiates_per_direction() {
    let cap = Capability::AddPath(vec![(1, 1, 3), (2, 1, 1)]);
    let mut b = Vec::new();
    cap.encode(&mut b);
    assert_eq!(b, [69, 8, 0, 1, 1, 3, 0, 2, 1, 1]);
    assert_eq!(Capability::decode_list(&b).unwrap(), vec![cap]);
    assert!(
        Capability::decode(69, &[0, 1, 1]).is_err(),
        "not a multiple of 4"
    );

    let fams = |f: &[Family]| f.iter().map(|f| Capability::family(*f)).collect::<Vec<_>>();
    let mut ours = fams(&[Family::Ipv4Unicast, Family::Ipv6Unicast]);
    ours.push(Capability::AddPath(vec![(1, 1, 3), (2, 1, 3)]));
    let mut theirs = fams(&[Family::Ipv4Unicast, Family::Ipv6Unicast]);
    // The peer sends IPv4 paths and receives IPv6 ones; 7 is no value.
    theirs.push(Capability::AddPath(vec![(1, 1, 2), (2, 1, 1), (1, 133, 7)]));
    let n = Negotiated::from_opens(&ours, &theirs, 90, 90, 65000, Ipv4Addr::LOCALHOST);
    assert_eq!(n.add_path_receive, vec![Family::Ipv4Unicast]);
    assert_eq!(n.add_path_send, vec![Family::Ipv6Unicast]);
    // Off on our side: nothing either way.
    let plain = fams(&[Family::Ipv4Unicast, Family::Ipv6Unicast]);
    let n = Negotiated::from_opens(&plain, &theirs, 90, 90, 65000, Ipv4Addr::LOCALHOST);
    assert!(n.add_path_receive.is_empty() && n.add_path_send.is_empty());
    assert_eq!(AddPathMode::default(), AddPathMode::Off);
}

#[test]
fn our_updates_carry_the_path_identifier_where_negotiated() {
    let rtbh = Route::blackhole("192.0.2.50".parse().unwrap());
    let rule = Route::flowspec(flow(), vec![Action::DISCARD]).unwrap();
    let all = [Family::Ipv4Unicast, Family::Ipv4FlowSpec];
    let with = update::announce(&rtbh, &params(&all)).unwrap();
    let without = update::announce(&rtbh, &params(&[])).unwrap();
    assert_eq!(with.nlri[..4], update::PATH_ID.to_be_bytes());
    assert_eq!(with.nlri[4..], without.nlri[..]);
    // The receive side reads them back with the identifier.
    let ctx = |add_path: &[Family]| super::receive::ReceiveContext {
        four_octet: true,
        ibgp: true,
        families: all.to_vec(),
        add_path: add_path.to_vec(),
    };
    for r in [&rtbh, &rule] {
        let u = update::announce(r, &params(&all)).unwrap();
        let super::receive::UpdateVerdict::Ok(p) = super::receive::check(&u, &ctx(&all)) else {
            panic!("our Add-Path UPDATE does not check")
        };
        assert_eq!(p.announced.len(), 1);
        assert_eq!(p.announced[0].path_id, update::PATH_ID);
        let w = update::withdraw_for(&r.key(), &params(&all));
        let super::receive::UpdateVerdict::Ok(p) = super::receive::check(&w, &ctx(&all)) else {
            panic!("our Add-Path withdrawal does not check")
        };
        assert_eq!(p.withdrawn[0].path_id, update::PATH_ID);
        // Without Add-Path the same bytes are not what a peer expects.
        assert_ne!(w, update::withdraw(&r.key()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_path_session_stores_paths_by_identifier() {
    let (speaker, listener) = speaker("both", false).await;
    let rtbh = Route::blackhole("192.0.2.50".parse().unwrap());
    assert!(speaker.announce(rtbh.clone()).unwrap().accepted_by_all());
    let (mut s, ours) = establish(&listener, peer_open(Some(3), false)).await;
    assert!(
        ours.capabilities
            .contains(&Capability::AddPath(vec![(1, 1, 3), (1, 133, 3)])),
        "{:?}",
        ours.capabilities
    );
    // Our route goes out with its path identifier (RFC 7911 §3).
    let all = [Family::Ipv4Unicast, Family::Ipv4FlowSpec];
    assert_eq!(
        read(&mut s).await,
        Message::Update(update::announce(&rtbh, &params(&all)).unwrap())
    );
    assert_eq!(
        read(&mut s).await,
        Message::Update(Update::end_of_rib(Family::Ipv4Unicast))
    );
    assert_eq!(
        read(&mut s).await,
        Message::Update(Update::end_of_rib(Family::Ipv4FlowSpec))
    );
    // Two paths for one prefix, and a Flow Spec rule with identifier 5.
    let mut two = with_id(1, "10.0.0.0/8");
    two.extend(with_id(2, "10.0.0.0/8"));
    send(
        &mut s,
        &Message::Update(Update::new(Vec::new(), &attrs(), two)),
    )
    .await;
    let mut nlri = 5u32.to_be_bytes().to_vec();
    nlri.extend(flow().encode_nlri());
    let mut fattrs = vec![PathAttribute::mp_reach(
        Family::Ipv4FlowSpec,
        Vec::new(),
        nlri,
    )];
    fattrs.extend(attrs().into_iter().filter(|a| a.code() != 3));
    fattrs.push(PathAttribute::ExtendedCommunities(vec![
        Action::DISCARD.to_community(),
    ]));
    send(
        &mut s,
        &Message::Update(Update::new(Vec::new(), &fattrs, Vec::new())),
    )
    .await;
    send(
        &mut s,
        &Message::Update(Update::end_of_rib(Family::Ipv4Unicast)),
    )
    .await;
    let answer = until(|| {
        let a = speaker.rib(&RibQuery::default()).unwrap();
        (a.routes.len() == 2 && a.flowspec.len() == 1).then_some(a)
    })
    .await;
    let ids: Vec<u32> = answer.routes.iter().map(|r| r.path_id).collect();
    assert_eq!(ids, [1, 2]);
    assert_eq!(answer.flowspec[0].path_id, 5);
    assert_eq!(
        answer.flowspec[0].destination,
        Some("192.0.2.80/32".parse().unwrap())
    );
    let st = until(|| {
        let st = speaker.status().remove(0);
        (st.rib_in.end_of_rib == [Family::Ipv4Unicast]).then_some(st)
    })
    .await;
    assert_eq!(
        (
            st.rib_in.prefixes,
            st.rib_in.paths,
            st.rib_in.flowspec_rules
        ),
        (1, 2, 1)
    );
    assert_eq!(st.rib_in.attribute_sets, 2);
    let n = st.negotiated.unwrap();
    assert_eq!(n.add_path_receive, all);
    assert_eq!(n.add_path_send, all);

    // Withdrawing path 1 leaves path 2.
    send(
        &mut s,
        &Message::Update(Update::new(with_id(1, "10.0.0.0/8"), &[], Vec::new())),
    )
    .await;
    until(|| {
        let a = speaker.rib(&RibQuery::default()).unwrap();
        (a.routes.len() == 1 && a.routes[0].path_id == 2).then_some(())
    })
    .await;

    // Our withdrawal carries the identifier too.
    speaker.withdraw(&rtbh);
    assert_eq!(
        read(&mut s).await,
        Message::Update(update::withdraw_for(&rtbh.key(), &params(&all)))
    );

    // Route refresh on demand (RFC 2918).
    assert_eq!(
        speaker.route_refresh("scripted", &[Family::Ipv4FlowSpec]),
        Ok(vec![Family::Ipv4FlowSpec])
    );
    assert_eq!(
        read(&mut s).await,
        Message::RouteRefresh(RouteRefresh {
            afi: 1,
            subtype: 0,
            safi: 133
        })
    );
    assert!(speaker.route_refresh("nobody", &[]).is_err());

    // The session drops without graceful restart: everything goes.
    drop(s);
    until(|| {
        let a = speaker.rib(&RibQuery::default()).unwrap();
        (a.routes.is_empty() && a.flowspec.is_empty()).then_some(())
    })
    .await;
    speaker.shutdown(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_add_path_our_updates_are_unchanged_and_graceful_restart_keeps_stale_routes() {
    // We offer Add-Path, the peer does not: plain NLRI both ways.
    let (speaker, listener) = speaker("both", true).await;
    let rule = Route::flowspec(flow(), vec![Action::DISCARD]).unwrap();
    assert!(speaker.announce(rule.clone()).unwrap().accepted_by_all());
    let (mut s, _) = establish(&listener, peer_open(None, true)).await;
    assert_eq!(
        read(&mut s).await,
        Message::Update(update::announce(&rule, &params(&[])).unwrap())
    );
    let mut two = Vec::new();
    encode_prefix(&"10.0.0.0/8".parse().unwrap(), &mut two);
    encode_prefix(&"11.0.0.0/8".parse().unwrap(), &mut two);
    send(
        &mut s,
        &Message::Update(Update::new(Vec::new(), &attrs(), two)),
    )
    .await;
    until(|| (speaker.rib(&RibQuery::default()).unwrap().routes.len() == 2).then_some(())).await;

    // The peer restarts: TCP closes without a NOTIFICATION (RFC 4724 §4.2).
    drop(s);
    let st = until(|| {
        let st = speaker.status().remove(0);
        (st.state != SessionState::Established && st.rib_in.stale == 2).then_some(st)
    })
    .await;
    assert_eq!(st.rib_in.paths, 2, "kept stale for the restart time");
    // Back: it sends one of the two again, then End-of-RIB.
    let (mut s, _) = establish(&listener, peer_open(None, true)).await;
    let mut one = Vec::new();
    encode_prefix(&"10.0.0.0/8".parse().unwrap(), &mut one);
    send(
        &mut s,
        &Message::Update(Update::new(Vec::new(), &attrs(), one)),
    )
    .await;
    send(
        &mut s,
        &Message::Update(Update::end_of_rib(Family::Ipv4Unicast)),
    )
    .await;
    let a = until(|| {
        let a = speaker.rib(&RibQuery::default()).unwrap();
        (a.routes.len() == 1 && !a.routes[0].stale).then_some(a)
    })
    .await;
    assert_eq!(a.routes[0].prefix, "10.0.0.0/8".parse().unwrap());
    assert_eq!(speaker.status()[0].rib_in.stale_removed, 1);
    speaker.shutdown(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_in_force_from_another_system_is_not_announced_until_it_goes() {
    let (speaker, listener) = speaker("off", false).await;
    let (mut s, _) = establish(&listener, peer_open(None, false)).await;
    for f in [Family::Ipv4Unicast, Family::Ipv4FlowSpec] {
        assert_eq!(read(&mut s).await, Message::Update(Update::end_of_rib(f)));
    }
    // Another system's rule, as the router passes it on (iBGP, empty
    // AS_PATH, ORIGINATOR_ID of the other system).
    let rule = Route::flowspec(flow(), vec![Action::DISCARD]).unwrap();
    let foreign = |originator: Ipv4Addr| {
        let mut u = update::announce(&rule, &params(&[])).unwrap();
        PathAttribute::Other {
            flags: 0x80,
            code: 9,
            value: originator.octets().to_vec(),
        }
        .encode(&mut u.path_attributes);
        u
    };
    send(
        &mut s,
        &Message::Update(foreign(Ipv4Addr::new(198, 51, 100, 9))),
    )
    .await;
    until(|| (speaker.rib(&RibQuery::default()).unwrap().flowspec.len() == 1).then_some(())).await;
    let covering = speaker.foreign_rules_covering("192.0.2.80".parse().unwrap());
    assert_eq!(covering.len(), 1);
    assert_eq!(covering[0].peer, "scripted");

    // The same rule with the same actions: not announced.
    let a = speaker.announce(rule.clone()).unwrap();
    assert_eq!(
        a.peers,
        vec![(
            "scripted".to_string(),
            super::Outcome::InForceElsewhere {
                from: "scripted".into()
            }
        )]
    );
    assert!(speaker.routes("scripted").unwrap().is_empty());
    // Other actions are another rule: announced.
    let rate = Route::flowspec(
        flow(),
        vec![Action::TrafficRateBytes {
            id: 0,
            rate: 1000.0,
        }],
    )
    .unwrap();
    assert!(matches!(
        speaker.announce(rate.clone()).unwrap().peers[0].1,
        super::Outcome::Accepted
    ));
    assert_eq!(
        read(&mut s).await,
        Message::Update(update::announce(&rate, &params(&[])).unwrap())
    );
    // Withdrawing by key (the NLRI) forgets the held-back rule too.
    speaker.withdraw(&rate);
    read(&mut s).await;
    assert!(matches!(
        speaker.announce(rule.clone()).unwrap().peers[0].1,
        super::Outcome::InForceElsewhere { .. }
    ));
    assert!(speaker.resume_suppressed().is_empty(), "still in force");

    // The other system withdraws it: ours goes out.
    send(&mut s, &Message::Update(update::withdraw(&rule.key()))).await;
    until(|| {
        speaker
            .rib(&RibQuery::default())
            .unwrap()
            .flowspec
            .is_empty()
            .then_some(())
    })
    .await;
    let released = speaker.resume_suppressed();
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].peers[0].1, super::Outcome::Accepted);
    assert_eq!(
        read(&mut s).await,
        Message::Update(update::announce(&rule, &params(&[])).unwrap())
    );
    // Our own rule reflected back (ORIGINATOR_ID = our router id) is not
    // another system's.
    send(
        &mut s,
        &Message::Update(foreign(Ipv4Addr::new(192, 0, 2, 10))),
    )
    .await;
    until(|| (speaker.rib(&RibQuery::default()).unwrap().flowspec.len() == 1).then_some(())).await;
    assert!(
        speaker
            .foreign_rules_covering("192.0.2.80".parse().unwrap())
            .is_empty()
    );
    speaker.shutdown(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_add_path_nlri_disables_the_family_without_a_reset() {
    let (speaker, listener) = speaker("both", false).await;
    let (mut s, _) = establish(&listener, peer_open(Some(3), false)).await;
    for f in [Family::Ipv4Unicast, Family::Ipv4FlowSpec] {
        assert_eq!(read(&mut s).await, Message::Update(Update::end_of_rib(f)));
    }
    // Flow Spec NLRI whose path identifier is cut short (RFC 7911 §3):
    // not syntactically correct, RFC 7606 §7.11 AFI/SAFI disable.
    let mut fattrs = vec![PathAttribute::mp_reach(
        Family::Ipv4FlowSpec,
        Vec::new(),
        vec![0, 0, 5],
    )];
    fattrs.extend(attrs().into_iter().filter(|a| a.code() != 3));
    send(
        &mut s,
        &Message::Update(Update::new(Vec::new(), &fattrs, Vec::new())),
    )
    .await;
    // The session stays up and unicast still works.
    send(
        &mut s,
        &Message::Update(Update::new(Vec::new(), &attrs(), with_id(9, "10.0.0.0/8"))),
    )
    .await;
    let st = until(|| {
        let st = speaker.status().remove(0);
        (st.rib_in.paths == 1).then_some(st)
    })
    .await;
    assert_eq!(st.state, SessionState::Established);
    assert_eq!(st.established_count, 1);
    assert_eq!(st.afi_safi_disabled, vec!["ipv4-flowspec".to_string()]);
    assert!(st.last_notification_sent.is_none(), "{st:?}");
    assert_eq!(
        speaker.rib(&RibQuery::default()).unwrap().routes[0].path_id,
        9
    );
    speaker.shutdown(true).await;
}
