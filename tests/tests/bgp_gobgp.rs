//! The BGP speaker against a real gobgpd (3.x), each test in a network
//! namespace of its own: Flow Spec IPv4/IPv6 with each action, RTBH v4/v6,
//! withdraw, a reset by the peer, a peer restart, hold timer expiry when
//! the peer freezes (SIGSTOP), route refresh, shutdown, TCP-MD5, graceful
//! restart and passive mode. What arrived is read back with `gobgp -j`.

use std::time::Duration;

use edge_sensor::bgp::{Route, SessionState, Speaker};
use edge_sensor_tests::{
    bgp::{
        self, Gobgpd, PeerKind, Table, WAIT, discard_v4, each_action, established, gobgpd_config,
        in_namespace, rule_with_many_components, rules_with_each_action, wait_for, wait_until,
        wrong_md5_key_never_establishes,
    },
    netns::NetNs,
    require_root, require_tool,
};
use serde_json::{Value, json};

/// gobgpd as the speaker's peer; its session may take up to [`WAIT`] to
/// come up.
const GOBGP: PeerKind = PeerKind {
    name: "gobgp",
    establish_within: WAIT,
};

fn setup() -> NetNs {
    require_root();
    require_tool("gobgpd");
    require_tool("gobgp");
    NetNs::new("esgb")
}

/// gobgpd with a passive neighbor 127.0.0.2 of AS `peer_as`.
fn passive_gobgpd(ns: &NetNs, peer_as: u32) -> Gobgpd<'_> {
    Gobgpd::start(
        ns,
        &gobgpd_config(
            peer_as,
            "[neighbors.transport.config]\n    passive-mode = true",
        ),
    )
}

/// The path attribute of `type` of the one path gobgp holds for `key`.
fn attr(rib: &serde_json::Map<String, Value>, key: &str, r#type: u8) -> Option<Value> {
    let paths = rib
        .get(key)
        .unwrap_or_else(|| panic!("{key} not in {rib:#?}"));
    paths[0]["attrs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["type"] == r#type)
        .cloned()
}

/// The extended communities of the one path gobgp holds for `key`.
fn extcomms(rib: &serde_json::Map<String, Value>, key: &str) -> Value {
    attr(rib, key, 16)
        .map(|a| a["value"].clone())
        .unwrap_or(Value::Null)
}

/// gobgp's text for the NLRI of a rule of `rules_with_each_action`.
fn key(table: Table, n: u8) -> String {
    match table {
        Table::Flow4 => format!("[destination: 192.0.2.{n}/32]"),
        _ => format!("[destination: 2001:db8::{n}/128/0]"),
    }
}

/// The JSON gobgp gives the extended community of each action, in the
/// order of `each_action`.
fn extcomm_of_each_action() -> [Value; 8] {
    let expected = [
        json!([{"type":128,"subtype":6,"as":0,"rate":0}]),
        json!([{"type":128,"subtype":6,"as":65001,"rate":125000}]),
        // gobgp 3.10 has no decoder for traffic-rate-packets (0x800c).
        json!(null),
        json!([{"type":128,"subtype":7,"terminal":true,"sample":true}]),
        json!([{"type":128,"subtype":8,"value":"65000:100"}]),
        json!([{"type":129,"subtype":8,"value":"192.0.2.1:7"}]),
        // gobgp writes a 4-octet AS in asdot: 64086 * 65536 + 59904.
        json!([{"type":130,"subtype":8,"value":"64086.59904:9"}]),
        json!([{"type":128,"subtype":9,"value":46}]),
    ];
    assert_eq!(expected.len(), each_action().len());
    expected
}

#[test]
fn flowspec_each_action_arrives_and_is_withdrawn() {
    let ns = setup();
    let gobgp = passive_gobgpd(&ns, 65001);
    GOBGP.session(&ns, &gobgp, 65001, "", async |speaker| {
        let rules = rules_with_each_action(extcomm_of_each_action());
        for (route, ..) in &rules {
            let a = speaker.announce(route.clone()).unwrap();
            assert!(a.accepted_by_all(), "{route}: {a:?}");
        }
        // A rule with many components and both operator kinds.
        let many = rule_with_many_components();
        assert!(speaker.announce(many.clone()).unwrap().accepted_by_all());
        let many_key = "[destination: 192.0.2.0/24][source: 198.51.100.0/24][protocol: ==tcp][destination-port: >=1024&<=2047][tcp-flags: =S][packet-length: >=512][dscp: ==46]";

        let arrived = wait_for(WAIT, || {
            let v4 = gobgp.rib("ipv4-flowspec");
            let v6 = gobgp.rib("ipv6-flowspec");
            (v4.len() == 9 && v6.len() == 8).then_some((v4, v6))
        });
        let (v4, v6) = arrived.unwrap_or_else(|| {
            panic!(
                "gobgp did not get all rules: {}\n{}\n{:#?}",
                gobgp.cli(&["global", "rib", "-a", "ipv4-flowspec"]),
                gobgp.cli(&["global", "rib", "-a", "ipv6-flowspec"]),
                speaker.status()
            )
        });
        for (route, table, n, ec) in &rules {
            let rib = if *table == Table::Flow4 { &v4 } else { &v6 };
            let got = extcomms(rib, &key(*table, *n));
            if ec.is_null() {
                // gobgp 3.10 has no decoder for traffic-rate-packets
                // (0x800c): it must still hold the route with one
                // extended community.
                assert_eq!(got.as_array().map(Vec::len), Some(1), "{route}: {got}");
            } else {
                assert_eq!(&got, ec, "{route}");
            }
        }
        assert_eq!(
            extcomms(&v4, many_key),
            json!([{"type":128,"subtype":6,"as":0,"rate":0}])
        );
        // eBGP: AS_PATH is our AS.
        let as_path = attr(&v4, many_key, 2).expect("AS_PATH");
        assert_eq!(as_path["as_paths"][0]["asns"], json!([65001]), "{as_path}");

        for (route, ..) in &rules {
            assert_eq!(speaker.withdraw(route), 1);
        }
        speaker.withdraw(&many);
        let gone = wait_for(WAIT, || {
            (gobgp.rib("ipv4-flowspec").is_empty() && gobgp.rib("ipv6-flowspec").is_empty())
                .then_some(())
        });
        assert!(
            gone.is_some(),
            "{}",
            gobgp.cli(&["global", "rib", "-a", "ipv4-flowspec"])
        );
        let s = &speaker.status()[0];
        assert_eq!(s.adj_rib_out, 0);
        assert!(
            s.routes_announced >= 17 && s.routes_withdrawn >= 17,
            "{s:?}"
        );
    });
    // gobgpd logs the RFC 9003 text of our Cease.
    gobgp.assert_logged("edge-sensor test shutdown");
}

#[test]
fn rtbh_v4_v6_with_communities_and_next_hops() {
    let ns = setup();
    let gobgp = passive_gobgpd(&ns, 65001);
    GOBGP.session(
        &ns,
        &gobgp,
        65001,
        r#"blackhole_communities = ["65001:666"]"#,
        async |speaker| {
            let v4 = Route::blackhole("192.0.2.66".parse().unwrap());
            let v6 = Route::blackhole("2001:db8::66".parse().unwrap());
            assert!(speaker.announce(v4.clone()).unwrap().accepted_by_all());
            assert!(speaker.announce(v6.clone()).unwrap().accepted_by_all());
            let got = wait_for(WAIT, || {
                let a = gobgp.rib("ipv4");
                let b = gobgp.rib("ipv6");
                (a.contains_key("192.0.2.66/32") && b.contains_key("2001:db8::66/128"))
                    .then_some((a, b))
            });
            let (a, b) = got.unwrap_or_else(|| panic!("{:#?}", speaker.status()));
            for (rib, key, nh) in [
                (&a, "192.0.2.66/32", "192.0.2.254"),
                (&b, "2001:db8::66/128", "2001:db8::fe"),
            ] {
                let attrs = rib[key][0]["attrs"].as_array().unwrap().clone();
                let communities = attrs.iter().find(|x| x["type"] == 8).expect("COMMUNITIES");
                // 65535:666 BLACKHOLE, 65535:65281 NO_EXPORT, 65001:666.
                assert_eq!(
                    communities["communities"],
                    json!([0xffff_029a_u32, 0xffff_ff01_u32, (65001u32 << 16) | 666]),
                    "{key}: {communities}"
                );
                let text = serde_json::to_string(&attrs).unwrap();
                assert!(text.contains(nh), "{key}: next hop {nh} not in {text}");
            }
            speaker.withdraw(&v4);
            speaker.withdraw(&v6);
            let gone = wait_for(WAIT, || {
                (gobgp.rib("ipv4").is_empty() && gobgp.rib("ipv6").is_empty()).then_some(())
            });
            assert!(gone.is_some());
        },
    );
}

/// gobgp `neighbor reset` (Cease / Administrative Reset): the speaker sees
/// the NOTIFICATION, reconnects (gobgpd holds the neighbor idle for 30 s
/// after a reset), and sends its whole Adj-RIB-Out again.
#[test]
fn peer_reset_reconnect_and_reannounce() {
    let ns = setup();
    let gobgp = passive_gobgpd(&ns, 65001);
    GOBGP.session(&ns, &gobgp, 65001, "", async |speaker| {
        let route = discard_v4("192.0.2.1/32");
        let rtbh = Route::blackhole("2001:db8::1".parse().unwrap());
        speaker.announce(route.clone()).unwrap();
        speaker.announce(rtbh.clone()).unwrap();
        let there = || {
            (gobgp
                .rib("ipv4-flowspec")
                .contains_key("[destination: 192.0.2.1/32]")
                && gobgp.rib("ipv6").contains_key("2001:db8::1/128"))
            .then_some(())
        };
        assert!(wait_for(WAIT, there).is_some());

        gobgp.cli(&["neighbor", "127.0.0.2", "reset"]);
        let reset_seen = wait_for(WAIT, || {
            let s = &speaker.status()[0];
            s.last_notification_received
                .as_deref()
                .filter(|n| n.starts_with("6/4"))
                .map(str::to_owned)
        });
        assert!(reset_seen.is_some(), "{:#?}", speaker.status());
        // The session's history has its end, with the reason.
        let history = speaker.status()[0].history.clone();
        assert!(
            history.iter().any(|t| t.from == SessionState::Established
                && t.to == SessionState::Idle
                && t.reason
                    .as_deref()
                    .is_some_and(|r| r.contains("NOTIFICATION 6/4"))),
            "{history:#?}"
        );
        let again = wait_for(Duration::from_secs(40), || {
            (speaker.status()[0].established_count >= 2 && established(speaker)).then_some(())
        });
        assert!(again.is_some(), "{:#?}\n{}", speaker.status(), gobgp.log());
        // The history ends with the return to Established.
        let history = speaker.status()[0].history.clone();
        assert!(history.len() <= 20, "{history:#?}");
        assert_eq!(
            history.last().map(|t| t.to),
            Some(SessionState::Established),
            "{history:#?}"
        );
        assert!(
            wait_for(WAIT, there).is_some(),
            "not re-announced: {:#?}",
            speaker.status()
        );

        assert!(established(speaker));
    });
}

/// gobgpd stops (SIGTERM: Cease) and starts again with an empty RIB: the
/// speaker reconnects and the router gets every mitigation back.
#[test]
fn peer_restart_gets_every_route_back() {
    let ns = setup();
    let mut gobgp = passive_gobgpd(&ns, 65001);
    bgp::peer_restart_gets_every_route_back(
        &ns,
        &mut gobgp,
        GOBGP.speaker_config(65001, ""),
        Table::Flow4,
        GOBGP.establish_within,
    );
}

/// gobgpd frozen (SIGSTOP): no KEEPALIVE arrives, our hold timer (9 s)
/// expires, we send NOTIFICATION 4/0 and reconnect once it thaws.
#[test]
fn hold_timer_expires_when_the_peer_freezes() {
    let ns = setup();
    let gobgp = passive_gobgpd(&ns, 65001);
    bgp::hold_timer_expires_when_the_peer_freezes(
        &ns,
        &gobgp,
        GOBGP.speaker_config(65001, ""),
        GOBGP.establish_within,
    );
}

/// iBGP: empty AS_PATH and LOCAL_PREF; the negotiated capabilities show in
/// the status.
#[test]
fn ibgp_session_sends_local_pref_and_empty_as_path() {
    let ns = setup();
    let gobgp = passive_gobgpd(&ns, 65000);
    GOBGP.session(&ns, &gobgp, 65000, "local_pref = 200", async |speaker| {
        let st = speaker.status()[0].clone();
        let n = st.negotiated.expect("negotiated");
        assert!(n.four_octet_as && n.route_refresh);
        assert_eq!(n.families.len(), 4, "{n:?}");
        assert_eq!(n.peer_asn, 65000);
        let json = serde_json::to_value(speaker.status()).unwrap();
        assert_eq!(json[0]["state"], "established");

        speaker.announce(discard_v4("192.0.2.8/32")).unwrap();
        let rib = wait_for(WAIT, || {
            Some(gobgp.rib("ipv4-flowspec")).filter(|r| r.len() == 1)
        })
        .unwrap();
        let key = "[destination: 192.0.2.8/32]";
        let local_pref = attr(&rib, key, 5).expect("LOCAL_PREF");
        assert_eq!(local_pref["value"], 200);
        let as_path = attr(&rib, key, 2).expect("AS_PATH");
        assert!(
            as_path["as_paths"].as_array().is_none_or(Vec::is_empty),
            "{as_path}"
        );
    });
}

/// TCP-MD5 (RFC 2385): with the right key the session comes up; with a
/// wrong one it never does.
#[test]
fn tcp_md5_protects_the_session() {
    let ns = setup();
    let gobgp = Gobgpd::start(
        &ns,
        &gobgpd_config(
            65001,
            "[neighbors.transport.config]\n    passive-mode = true",
        )
        .replace(
            "    peer-as = 65001\n",
            "    peer-as = 65001\n    auth-password = \"s3cret-key\"\n",
        ),
    );
    in_namespace(&ns, async || {
        wrong_md5_key_never_establishes(GOBGP.name, || gobgp.session_state(), 6).await;

        let right =
            Speaker::start(GOBGP.speaker_config(65001, r#"md5_password = "s3cret-key""#)).unwrap();
        GOBGP.wait_established(&right, 1, &gobgp);
        assert_eq!(gobgp.session_state(), 6);
        right.shutdown(true).await;
    });
}

/// Graceful restart (RFC 4724): shutting down without withdrawing closes
/// without NOTIFICATION and gobgpd keeps our rules (stale) meanwhile; the
/// next speaker re-announces what is still wanted, and its End-of-RIB makes
/// gobgpd drop the rest.
#[test]
fn graceful_restart_keeps_rules_until_the_next_end_of_rib() {
    let ns = setup();
    let gobgp = Gobgpd::start(
        &ns,
        &gobgpd_config(
            65001,
            "[neighbors.transport.config]\n    passive-mode = true\n  [neighbors.graceful-restart.config]\n    enabled = true\n    restart-time = 60",
        )
        .replace(
            "    afi-safi-name = \"ipv4-flowspec\"\n",
            "    afi-safi-name = \"ipv4-flowspec\"\n  [neighbors.afi-safis.mp-graceful-restart.config]\n    enabled = true\n",
        ),
    );
    let kept = discard_v4("192.0.2.9/32");
    let ended = discard_v4("192.0.2.10/32");
    in_namespace(&ns, async || {
        let speaker = Speaker::start(GOBGP.speaker_config(65001, "graceful_restart = 60")).unwrap();
        GOBGP.wait_established(&speaker, 1, &gobgp);
        assert!(
            speaker.status()[0]
                .negotiated
                .as_ref()
                .unwrap()
                .graceful_restart
        );
        speaker.announce(kept.clone()).unwrap();
        speaker.announce(ended.clone()).unwrap();
        assert!(wait_until(WAIT, || gobgp.rib("ipv4-flowspec").len() == 2));
        speaker.shutdown(false).await;
    });
    // The session is down, both rules still there, marked stale.
    let stale = wait_for(WAIT, || {
        (gobgp.session_state() != 6).then(|| gobgp.rib("ipv4-flowspec"))
    })
    .expect("session went down");
    for key in [
        "[destination: 192.0.2.9/32]",
        "[destination: 192.0.2.10/32]",
    ] {
        assert_eq!(stale[key][0]["stale"], true, "{key}: {stale:?}");
    }
    assert!(!gobgp.log().contains("edge-sensor test shutdown"));

    // A new speaker (as after a sensor restart) wants only the first rule.
    in_namespace(&ns, async || {
        let speaker = Speaker::start(GOBGP.speaker_config(65001, "graceful_restart = 60")).unwrap();
        speaker.announce(kept.clone()).unwrap();
        GOBGP.wait_established(&speaker, 1, &gobgp);
        let after = wait_for(WAIT, || {
            let rib = gobgp.rib("ipv4-flowspec");
            (rib.len() == 1).then_some(rib)
        })
        .unwrap_or_else(|| panic!("{}", gobgp.cli(&["global", "rib", "-a", "ipv4-flowspec"])));
        assert_eq!(after["[destination: 192.0.2.9/32]"][0]["stale"], false);
        speaker.shutdown(true).await;
    });
}

/// Passive mode: the speaker listens on 127.0.0.2:179 and gobgpd dials.
#[test]
fn passive_speaker_accepts_the_routers_connection() {
    let ns = setup();
    let gobgp = Gobgpd::start(
        &ns,
        &gobgpd_config(
            65001,
            "[neighbors.transport.config]\n    passive-mode = false\n    local-address = \"127.0.0.1\"",
        ),
    );
    in_namespace(&ns, async || {
        let speaker =
            Speaker::start(GOBGP.speaker_config(65001, "passive = true\nport = 179")).unwrap();
        let ok = wait_for(Duration::from_secs(40), || {
            established(&speaker).then_some(())
        });
        assert!(ok.is_some(), "{:#?}\n{}", speaker.status(), gobgp.log());
        speaker
            .announce(Route::blackhole("192.0.2.5".parse().unwrap()))
            .unwrap();
        assert!(wait_until(WAIT, || gobgp
            .rib("ipv4")
            .contains_key("192.0.2.5/32")));
        speaker.shutdown(true).await;
    });
}

/// A session over IPv6 transport (with TCP-MD5 keyed by an IPv6 address)
/// carries IPv4 and IPv6 routes alike.
#[test]
fn ipv6_transport_with_md5() {
    let ns = setup();
    for addr in ["2001:db8:ff::1/128", "2001:db8:ff::2/128"] {
        ns.ip(&["-6", "addr", "add", addr, "dev", "lo", "nodad"]);
    }
    let config = gobgpd_config(
        65001,
        "[neighbors.transport.config]\n    passive-mode = true",
    )
    .replace(
        "local-address-list = [\"127.0.0.1\"]",
        "local-address-list = [\"127.0.0.1\", \"2001:db8:ff::1\"]",
    )
    .replace(
        "    neighbor-address = \"127.0.0.2\"\n",
        "    neighbor-address = \"2001:db8:ff::2\"\n    auth-password = \"v6-key\"\n",
    );
    let gobgp = Gobgpd::start(&ns, &config);
    let mut speaker_cfg = GOBGP.speaker_config(65001, r#"md5_password = "v6-key""#);
    speaker_cfg.peers[0].address = "2001:db8:ff::1".parse().unwrap();
    speaker_cfg.peers[0].local_address = Some("2001:db8:ff::2".parse().unwrap());
    bgp::with_session(
        &ns,
        &gobgp,
        speaker_cfg,
        GOBGP.establish_within,
        async |speaker| {
            speaker.announce(discard_v4("192.0.2.77/32")).unwrap();
            speaker
                .announce(Route::blackhole("2001:db8::77".parse().unwrap()))
                .unwrap();
            let both = wait_for(WAIT, || {
                (gobgp
                    .rib("ipv4-flowspec")
                    .contains_key("[destination: 192.0.2.77/32]")
                    && gobgp.rib("ipv6").contains_key("2001:db8::77/128"))
                .then_some(())
            });
            assert!(both.is_some(), "{:#?}", speaker.status());
        },
    );
}
