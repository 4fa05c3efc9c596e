//! Flap protection (issue 14) against a scripted misbehaving peer
//! ([`edge_sensor_tests::scripted`]) in a namespace of each test's own: a
//! router that resets the session over one rule, with NOTIFICATION 3/9 or
//! by dropping TCP, gets reset at most twice; every other route is back on
//! it within 5 s of the last reset, the rule is quarantined (kept across
//! restarts) and its mitigation falls back to a blackhole; a router that
//! resets every session is reconnected to fewer than 6 times a minute.

use std::time::{Duration, Instant};

use edge_sensor::{
    bgp::{BgpConfig, Outcome, RejectReason, Route, SessionState, Speaker},
    mitigate::{Mitigator, config::MitigationConfig},
};
use edge_sensor_tests::{
    bgp::{TempDir, discard_v4, in_namespace},
    netns::NetNs,
    require_root,
    scripted::{Script, ScriptedPeer},
};

/// The flow spec NLRI bytes of "destination 192.0.2.66/32, then a
/// protocol component": the rule the peer refuses.
const BAD: [u8; 7] = [0x01, 0x20, 192, 0, 2, 66, 0x03];
/// The RTBH NLRI of 192.0.2.66/32 (the fallback).
const HOLE: [u8; 5] = [0x20, 192, 0, 2, 66];

fn config() -> BgpConfig {
    BgpConfig::from_toml(
        r#"
router_id = "127.0.0.2"
local_asn = 65001
announce_within = ["192.0.2.0/24", "2001:db8::/32"]

[[peers]]
name = "scripted"
address = "127.0.0.1"
local_address = "127.0.0.2"
peer_asn = 65000
hold_time = 9
connect_retry = 1
connect_retry_max = 60
probation = 2
families = ["ipv4-unicast", "ipv6-unicast", "ipv4-flowspec", "ipv6-flowspec"]
next_hop_v4 = "192.0.2.254"
next_hop_v6 = "2001:db8::fe"
"#,
    )
    .expect("config")
}

/// Four discard rules and one blackhole: the routes that must survive.
fn good_routes() -> Vec<Route> {
    let mut r: Vec<Route> = (1..=4)
        .map(|i| discard_v4(&format!("192.0.2.{i}/32")))
        .collect();
    r.push(Route::blackhole("192.0.2.99".parse().unwrap()));
    r
}

/// The NLRI bytes each good route shows at the peer.
fn good_patterns() -> Vec<Vec<u8>> {
    let mut p: Vec<Vec<u8>> = (1..=4u8).map(|i| vec![0x01, 0x20, 192, 0, 2, i]).collect();
    p.push(vec![0x20, 192, 0, 2, 99]);
    p
}

fn all_good_present(peer: &ScriptedPeer) -> bool {
    let log = peer.log();
    good_patterns().iter().all(|p| log.holds(p))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Polls `cond` every 100 ms (without blocking the runtime) for at most
/// `timeout`; when it came true.
async fn until(timeout: Duration, mut cond: impl FnMut() -> bool) -> Option<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return Some(Instant::now());
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// After the refused rule is quarantined: at most 2 resets, every good
/// route on the peer within 5 s of the last one, no further reset; the
/// quarantine says why and refuses the rule again.
async fn check_quarantined(speaker: &Speaker, peer: &ScriptedPeer, bad: &Route, reason: &str) {
    let quarantined = until(Duration::from_secs(60), || {
        speaker.quarantine()["scripted"]
            .iter()
            .any(|q| &q.route == bad)
    })
    .await;
    assert!(
        quarantined.is_some(),
        "not quarantined: {:#?}\nresets {:?}",
        speaker.status(),
        peer.log().resets
    );
    let last_reset = peer.log().resets.last().expect("a reset").0;
    let back = until(Duration::from_secs(10), || all_good_present(peer))
        .await
        .expect("every other route back on the peer");
    let took = back.saturating_duration_since(last_reset);
    // The session stays up: no reset for three probation times.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let log = peer.log();
    let resets = log.resets.len();
    eprintln!(
        "resets {resets}, sessions {}, other routes back {took:?} after the last reset",
        log.established.len()
    );
    let t0 = log.history[0].0;
    let history: Vec<String> = log
        .history
        .iter()
        .map(|(t, w)| format!("{:?} {w}", t.duration_since(t0)))
        .collect();
    eprintln!("{history:#?}");
    assert!(
        resets <= 2,
        "{resets} resets: {:#?}\n{:#?}",
        history,
        speaker.quarantine()
    );
    assert!(took <= Duration::from_secs(5), "routes back after {took:?}");
    assert!(
        good_patterns().iter().all(|p| log.holds(p)),
        "{:?}",
        log.present
    );
    drop(log);
    let status = &speaker.status()[0];
    edge_sensor_tests::assert_json_schema(
        "bgp",
        &serde_json::json!({"configured": true, "peers": speaker.status()}),
    );
    assert_eq!(status.state, SessionState::Established, "{status:#?}");
    assert_eq!(status.flap.quarantined, 1, "{status:#?}");
    let q = &speaker.quarantine()["scripted"];
    assert!(q[0].reason.contains(reason), "{q:#?}");
    // Announced again: refused for this router, with its reason.
    let ann = speaker.announce(bad.clone()).unwrap();
    assert!(
        matches!(&ann.peers[0].1, Outcome::Refused(RejectReason::Quarantined { router_reason })
            if router_reason.contains(reason)),
        "{ann:#?}"
    );
}

#[test]
fn notification_on_one_rule_quarantines_it_and_its_mitigation_falls_back() {
    require_root();
    let ns = NetNs::new("esfq");
    in_namespace(&ns, async || {
        let peer = ScriptedPeer::start(Script::NotifyOn(BAD.to_vec())).await;
        let dir = TempDir::new("esfq");
        let mut speaker = Speaker::start(config()).unwrap();
        assert_eq!(speaker.load_quarantine(dir.path()).unwrap(), 0);
        for r in good_routes() {
            speaker.announce(r).unwrap();
        }
        // The bad rule as a mitigation, all in the first session's table:
        // the reset cannot name it, so every route is a suspect at first.
        let mut mitigator = Mitigator::new(
            MitigationConfig::default(),
            vec!["192.0.2.0/24".parse().unwrap()],
        );
        let m = mitigator
            .ban(
                "192.0.2.66".parse().unwrap(),
                Some("proto udp"),
                false,
                Some(3600),
                unix_now(),
                &speaker,
            )
            .unwrap();
        let bad = m.route.clone();
        // The daemon's loop: quarantined rules fall back.
        let mut records = Vec::new();
        let fell_back = until(Duration::from_secs(60), || {
            for ev in speaker.quarantine_events() {
                records.extend(mitigator.on_quarantine(&ev.peer, &ev.route, &ev.reason, &speaker));
            }
            !records.is_empty()
        })
        .await;
        assert!(fell_back.is_some(), "{:#?}", speaker.status());
        check_quarantined(&speaker, &peer, &bad, "3/9").await;

        let record = records[0].to_json();
        eprintln!("{record}");
        assert_eq!(record["event"], "mitigation_quarantined");
        assert!(record["router_reason"].as_str().unwrap().contains("3/9"));
        let m = mitigator.active().next().unwrap();
        assert_eq!(
            m.fallback,
            Some(Route::blackhole("192.0.2.66".parse().unwrap()))
        );
        assert!(
            peer.log().present.contains(HOLE.as_slice()),
            "blackhole at the peer"
        );

        // Kept across restarts.
        speaker.save_quarantine().unwrap();
        assert!(edge_sensor::bgp::flap::quarantine_file(dir.path()).exists());
        speaker.shutdown(false).await;
        drop(peer);
        let mut again = Speaker::start(config()).unwrap();
        assert_eq!(again.load_quarantine(dir.path()).unwrap(), 1);
        let ann = again.announce(bad.clone()).unwrap();
        assert!(
            matches!(
                ann.peers[0].1,
                Outcome::Refused(RejectReason::Quarantined { .. })
            ),
            "{ann:#?}"
        );
        // The operator clears it: taken again.
        assert_eq!(again.clear_quarantine("scripted").unwrap().len(), 1);
        again.save_quarantine().unwrap();
        let ann = again.announce(bad).unwrap();
        assert_eq!(ann.peers[0].1, Outcome::Accepted);
        assert!(again.clear_quarantine("nobody").is_err());
        again.shutdown(false).await;
    });
}

#[test]
fn silent_drop_on_one_rule_quarantines_it() {
    require_root();
    let ns = NetNs::new("esfd");
    in_namespace(&ns, async || {
        let peer = ScriptedPeer::start(Script::DropOn(BAD.to_vec())).await;
        let speaker = Speaker::start(config()).unwrap();
        for r in good_routes() {
            speaker.announce(r).unwrap();
        }
        assert!(
            until(Duration::from_secs(15), || all_good_present(&peer))
                .await
                .is_some()
        );
        // Proven (probation 2 s), then the new rule crashes the router.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let bad = Route::flowspec(
            edge_sensor_tests::bgp::rule(
                edge_sensor::bgp::IpFamily::Ipv4,
                vec![
                    edge_sensor_tests::bgp::dst("192.0.2.66/32"),
                    edge_sensor::bgp::Component::IpProtocol(vec![
                        edge_sensor::bgp::NumericMatch::eq(17),
                    ]),
                ],
            ),
            vec![edge_sensor::bgp::Action::RedirectAs4 {
                asn: 4_200_000_000,
                local: 9,
            }],
        )
        .unwrap();
        speaker.announce(bad.clone()).unwrap();
        check_quarantined(&speaker, &peer, &bad, "without NOTIFICATION").await;
        speaker.shutdown(false).await;
    });
}

#[test]
fn a_peer_that_always_resets_is_reconnected_to_under_6_times_a_minute() {
    require_root();
    let ns = NetNs::new("esfa");
    in_namespace(&ns, async || {
        let peer = ScriptedPeer::start(Script::AlwaysReset).await;
        let speaker = Speaker::start(config()).unwrap();
        until(Duration::from_secs(10), || {
            !peer.log().connections.is_empty()
        })
        .await
        .expect("a first connection");
        let first = peer.log().connections[0];
        tokio::time::sleep(Duration::from_secs(61).saturating_sub(first.elapsed())).await;
        let minute: Vec<Duration> = peer
            .log()
            .connections
            .iter()
            .map(|t| t.duration_since(first))
            .filter(|d| *d < Duration::from_secs(60))
            .collect();
        eprintln!(
            "connections in the first minute: {} at {minute:?}; status {:#?}",
            minute.len(),
            speaker.status()[0].flap
        );
        assert!(minute.len() < 6, "{minute:?}");
        assert!(minute.len() >= 3, "still trying: {minute:?}");
        speaker.shutdown(false).await;
    });
}
