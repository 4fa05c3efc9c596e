//! The policy against a recording announcer: which route for which attack,
//! the safety rules, fallbacks, escalation, hold and withdrawal, restore.

use std::{cell::RefCell, net::IpAddr, time::Duration};

use super::*;
use crate::{
    bgp::{Announcement, Dialect, Outcome, Profile, RejectReason, RouteError, RouteKey},
    detect::{
        AttackClass, Scope, Trigger,
        config::{Metric, Rate, TrafficClass},
        fingerprint::{Basis, Fingerprint, FlowMatch, NormalBasis},
    },
};

/// Two routers; `edge2` takes no flow spec. Records what it was given.
#[derive(Default)]
struct Routers {
    held: RefCell<Vec<(String, Route)>>,
    /// Routes a router's session quarantined (refused from then on).
    quarantined: RefCell<Vec<(String, Route)>>,
}

impl Routers {
    fn holds(&self, peer: &str) -> Vec<Route> {
        self.held
            .borrow()
            .iter()
            .filter(|(p, _)| p == peer)
            .map(|(_, r)| r.clone())
            .collect()
    }
}

impl Announcer for Routers {
    fn announce(&self, route: Route) -> Result<Announcement, RouteError> {
        self.announce_to(&["edge1", "edge2"], route)
    }
    fn announce_to(&self, peers: &[&str], route: Route) -> Result<Announcement, RouteError> {
        let mut out = Vec::new();
        for &p in peers {
            let refuse = p == "edge2" && matches!(route, Route::FlowSpec { .. });
            if self
                .quarantined
                .borrow()
                .contains(&(p.to_string(), route.clone()))
            {
                out.push((
                    p.to_string(),
                    Outcome::Refused(RejectReason::Quarantined {
                        router_reason: "3/9".into(),
                    }),
                ));
            } else if refuse {
                out.push((
                    p.to_string(),
                    Outcome::Refused(RejectReason::FamilyNotConfigured {
                        family: route.family(),
                    }),
                ));
            } else {
                let mut held = self.held.borrow_mut();
                held.retain(|(q, r)| !(q == p && r.key() == route.key()));
                held.push((p.to_string(), route.clone()));
                out.push((p.to_string(), Outcome::Accepted));
            }
        }
        Ok(Announcement {
            key: route.key(),
            peers: out,
        })
    }
    fn peers(&self) -> Vec<String> {
        vec!["edge1".into(), "edge2".into()]
    }
    fn withdraw_key(&self, key: &RouteKey) -> usize {
        let mut held = self.held.borrow_mut();
        let before = held.len();
        held.retain(|(_, r)| r.key() != *key);
        before - held.len()
    }
}

fn own() -> Vec<IpNet> {
    vec![
        "203.0.113.0/24".parse().unwrap(),
        "2001:db8::/32".parse().unwrap(),
    ]
}

fn attack(id: u64, victim: &str, action: GroupAction, covers: f64) -> Attack {
    let victim: IpNet = victim.parse().unwrap();
    let mut flow = FlowMatch::any(victim);
    flow.protocols = vec![17];
    flow.source_ports = vec![123];
    Attack {
        id,
        victim,
        scope: if victim.prefix_len() == victim.max_prefix_len() {
            Scope::Host
        } else {
            Scope::Aggregate
        },
        class: AttackClass::UdpAmplification { port: 123 },
        host_group: "default".into(),
        action,
        started_s: 0.0,
        duration_s: 0.0,
        trigger: Trigger {
            class: TrafficClass::Udp,
            metric: Metric::Pps,
            rate: 2e5,
            threshold: 1e5,
        },
        pps: 2e5,
        bps: 1e9,
        peak_pps: 2e5,
        peak_bps: 1e9,
        fingerprint: Fingerprint {
            flow,
            covers_attack: covers,
            hits_normal: 0.0,
            basis: Basis::Samples,
            normal_basis: NormalBasis::Samples,
            samples: 100,
        },
    }
}

fn mitigator(cfg: MitigationConfig) -> Mitigator {
    Mitigator::new(cfg, own())
}

fn events(records: &[Record]) -> Vec<&str> {
    records.iter().map(Record::name).collect()
}

#[test]
fn a_precise_match_becomes_a_filter_and_refusing_routers_get_a_blackhole() {
    let r = Routers::default();
    let mut m = mitigator(MitigationConfig::default());
    let a = attack(1, "203.0.113.5/32", GroupAction::Flowspec, 0.97);
    let out = m.on_event(&Event::AttackStarted(a.clone()), 1000, &r);
    assert_eq!(events(&out), ["mitigation_announced"]);
    let edge1 = r.holds("edge1");
    assert_eq!(edge1.len(), 1);
    assert!(matches!(edge1[0], Route::FlowSpec { .. }), "{edge1:?}");
    assert_eq!(
        r.holds("edge2"),
        [Route::blackhole("203.0.113.5".parse().unwrap())],
        "the router without flow spec gets the blackhole"
    );
    // Ended early: held until min_hold, then withdrawn everywhere.
    m.on_event(&Event::AttackEnded(a), 1010, &r);
    assert!(m.tick(1100, &r).is_empty());
    assert_eq!(events(&m.tick(1300, &r)), ["mitigation_withdrawn"]);
    assert!(r.held.borrow().is_empty());
    assert!(m.take_changed().is_some_and(|s| s.is_empty()));
}

#[test]
fn coarse_matches_big_attacks_and_blackhole_groups_get_blackholes_where_allowed() {
    let r = Routers::default();
    let cfg = MitigationConfig {
        blackhole_above_bps: Some(Rate(5e9)),
        never_blackhole: vec!["203.0.113.53/32".parse().unwrap()],
        ..MitigationConfig::default()
    };
    let mut m = mitigator(cfg);
    // Coarse match: blackhole.
    m.on_event(
        &Event::AttackStarted(attack(1, "203.0.113.5/32", GroupAction::Flowspec, 0.3)),
        0,
        &r,
    );
    assert_eq!(m.active().next().unwrap().kind, MitigationKind::Blackhole);
    // Too big: blackhole even with a precise match.
    let mut big = attack(2, "203.0.113.6/32", GroupAction::Flowspec, 0.99);
    big.peak_bps = 9e9;
    let out = m.on_event(&Event::AttackStarted(big), 0, &r);
    assert_eq!(events(&out), ["mitigation_announced"], "{out:?}");
    assert_eq!(m.active().nth(1).unwrap().kind, MitigationKind::Blackhole);
    // Too big but never_blackhole: the precise filter instead.
    let mut dns = attack(3, "203.0.113.53/32", GroupAction::Flowspec, 0.99);
    dns.peak_bps = 9e9;
    m.on_event(&Event::AttackStarted(dns), 0, &r);
    assert_eq!(m.active().nth(2).unwrap().kind, MitigationKind::Flowspec);
    assert!(
        !r.holds("edge2")
            .contains(&Route::blackhole("203.0.113.53".parse().unwrap())),
        "never_blackhole holds for the fallback too"
    );
    // Coarse and never_blackhole: nothing safe, refused and logged.
    let out = m.on_event(
        &Event::AttackStarted(attack(4, "203.0.113.53/32", GroupAction::Blackhole, 0.99)),
        0,
        &r,
    );
    assert_eq!(events(&out), ["mitigation_refused"]);
    // Alert only.
    let out = m.on_event(
        &Event::AttackStarted(attack(5, "203.0.113.7/32", GroupAction::Alert, 0.99)),
        0,
        &r,
    );
    assert_eq!(events(&out), ["alert_only"]);
    assert_eq!(m.active().count(), 3);
}

#[test]
fn nothing_outside_the_own_networks_nothing_too_broad_and_limits_hold() {
    let r = Routers::default();
    let cfg = MitigationConfig {
        max_active: 2,
        max_new_per_minute: 100,
        ..MitigationConfig::default()
    };
    let mut m = mitigator(cfg);
    let out = m.on_event(
        &Event::AttackStarted(attack(1, "198.51.100.5/32", GroupAction::Blackhole, 1.0)),
        0,
        &r,
    );
    assert_eq!(events(&out), ["mitigation_refused"]);
    assert!(
        out[0].to_json()["reason"]
            .as_str()
            .unwrap()
            .contains("outside the own networks")
    );
    // A block attack: a /24 filter is allowed (min_prefix_v4 24), a /16 is not.
    m.on_event(
        &Event::AttackStarted(attack(2, "203.0.113.0/24", GroupAction::Flowspec, 0.95)),
        0,
        &r,
    );
    assert_eq!(m.active().count(), 1);
    let mut wide = mitigator(MitigationConfig {
        min_prefix_v4: 28,
        ..MitigationConfig::default()
    });
    let out = wide.on_event(
        &Event::AttackStarted(attack(3, "203.0.113.0/24", GroupAction::Flowspec, 0.95)),
        0,
        &r,
    );
    assert!(
        out[0].to_json()["reason"]
            .as_str()
            .unwrap()
            .contains("broader than /28"),
        "{out:?}"
    );
    // A block is never blackholed.
    let out = m.on_event(
        &Event::AttackStarted(attack(4, "203.0.113.0/24", GroupAction::Blackhole, 0.95)),
        0,
        &r,
    );
    assert!(
        out[0].to_json()["reason"]
            .as_str()
            .unwrap()
            .contains("single addresses"),
        "{out:?}"
    );
    // max_active.
    m.on_event(
        &Event::AttackStarted(attack(5, "203.0.113.9/32", GroupAction::Flowspec, 0.95)),
        0,
        &r,
    );
    let out = m.on_event(
        &Event::AttackStarted(attack(6, "203.0.113.10/32", GroupAction::Flowspec, 0.95)),
        0,
        &r,
    );
    assert!(
        out[0].to_json()["reason"]
            .as_str()
            .unwrap()
            .contains("max_active"),
        "{out:?}"
    );
    // Rate limit of new announcements, per minute.
    let mut slow = mitigator(MitigationConfig {
        max_new_per_minute: 2,
        ..MitigationConfig::default()
    });
    for (i, t) in [(1, 0), (2, 10), (3, 20)] {
        let ip = format!("203.0.113.{}/32", 100 + i);
        let out = slow.on_event(
            &Event::AttackStarted(attack(i, &ip, GroupAction::Flowspec, 0.95)),
            t,
            &r,
        );
        assert_eq!(
            events(&out)[0],
            if i < 3 {
                "mitigation_announced"
            } else {
                "mitigation_refused"
            }
        );
    }
    let out = slow.on_event(
        &Event::AttackStarted(attack(4, "203.0.113.120/32", GroupAction::Flowspec, 0.95)),
        61,
        &r,
    );
    assert_eq!(events(&out), ["mitigation_announced"], "a minute later");
}

#[test]
fn escalation_updates_and_dry_run() {
    let r = Routers::default();
    let mut m = mitigator(MitigationConfig {
        escalate_after: Duration::from_secs(60),
        ..MitigationConfig::default()
    });
    let a = attack(
        1,
        "2001:db8::5/128",
        GroupAction::FlowspecThenBlackhole,
        0.95,
    );
    m.on_event(&Event::AttackStarted(a.clone()), 0, &r);
    assert!(m.tick(30, &r).is_empty());
    assert_eq!(events(&m.tick(60, &r)), ["mitigation_escalated"]);
    assert!(
        r.holds("edge1")
            .contains(&Route::blackhole("2001:db8::5".parse().unwrap()))
    );
    // A new vector: the rule is replaced, the new one first.
    let mut b = a.clone();
    b.fingerprint.flow.source_ports = vec![1900];
    let out = m.on_event(&Event::AttackUpdated(b), 70, &r);
    assert_eq!(events(&out), ["mitigation_updated"]);
    let flows: Vec<String> = r
        .holds("edge1")
        .iter()
        .filter(|r| matches!(r, Route::FlowSpec { .. }))
        .map(|r| r.to_string())
        .collect();
    assert_eq!(flows.len(), 1, "{flows:?}");
    assert!(flows[0].contains("1900"), "{flows:?}");

    let quiet = Routers::default();
    let mut dry = mitigator(MitigationConfig {
        dry_run: true,
        ..MitigationConfig::default()
    });
    let out = dry.on_event(&Event::AttackStarted(a), 0, &quiet);
    assert_eq!(events(&out), ["mitigation_announced"]);
    assert!(quiet.held.borrow().is_empty(), "dry run announces nothing");
}

#[test]
fn restored_mitigations_are_announced_adopted_or_withdrawn_later() {
    let r = Routers::default();
    let mut m = mitigator(MitigationConfig::default());
    m.on_event(
        &Event::AttackStarted(attack(7, "203.0.113.5/32", GroupAction::Flowspec, 0.95)),
        1000,
        &r,
    );
    m.on_event(
        &Event::AttackStarted(attack(8, "203.0.113.6/32", GroupAction::Flowspec, 0.95)),
        1000,
        &r,
    );
    let saved = m.take_changed().unwrap();
    // Saved as JSON, loaded by a new process.
    let saved: Vec<Mitigation> =
        serde_json::from_str(&serde_json::to_string(&saved).unwrap()).unwrap();
    let r2 = Routers::default();
    let mut m2 = mitigator(MitigationConfig::default());
    let out = m2.restore(saved, 1100, &r2);
    assert_eq!(events(&out), ["mitigation_restored", "mitigation_restored"]);
    assert_eq!(
        r2.holds("edge1").len(),
        2,
        "announced again after the restart"
    );
    // The detector sees the first attack again (a new id after a restart).
    let out = m2.on_event(
        &Event::AttackStarted(attack(1, "203.0.113.5/32", GroupAction::Flowspec, 0.95)),
        1105,
        &r2,
    );
    assert_eq!(events(&out), ["mitigation_adopted"]);
    // The second is not seen again: withdrawn once its hold (from its
    // creation, 1000 + 300) is over.
    assert!(m2.tick(1299, &r2).is_empty());
    let out = m2.tick(1300, &r2);
    assert_eq!(events(&out), ["mitigation_withdrawn"]);
    assert_eq!(out[0].to_json()["mitigation"]["victim"], "203.0.113.6/32");
    assert_eq!(r2.holds("edge1").len(), 1);
    // A later restore with other own networks drops what is now outside.
    let saved = m2.take_changed().unwrap();
    let mut m3 = Mitigator::new(
        MitigationConfig::default(),
        vec!["2001:db8::/32".parse().unwrap()],
    );
    let out = m3.restore(saved, 1200, &Routers::default());
    assert_eq!(events(&out), ["mitigation_dropped"]);
}

#[test]
fn manual_bans_and_unbans() {
    let r = Routers::default();
    let mut m = mitigator(MitigationConfig::default());
    let ip: IpAddr = "203.0.113.9".parse().unwrap();
    let ban = m
        .ban(ip, Some("proto udp src-port 53"), false, Some(600), 0, &r)
        .unwrap();
    assert_eq!(
        (ban.kind, ban.expires),
        (MitigationKind::Flowspec, Some(600))
    );
    let hole = m.ban(ip, None, true, None, 0, &r).unwrap();
    assert_eq!(hole.kind, MitigationKind::Blackhole);
    assert!(
        m.ban("198.51.100.1".parse().unwrap(), None, true, None, 0, &r)
            .unwrap_err()
            == BanError::Refused(PolicyError::OutsideOwnNetworks(
                "198.51.100.1/32".parse().unwrap()
            ))
    );
    assert!(matches!(
        m.ban(ip, Some("proto tcp dst-port x"), false, None, 0, &r),
        Err(BanError::Match(_))
    ));
    assert_eq!(
        m.ban(ip, Some("proto udp"), true, None, 0, &r).unwrap_err(),
        BanError::MatchAndBlackhole
    );
    // A duration at the integer maximum is refused, not wrapped to an
    // expiry before its start (issue 19 item 6); a year is the bound.
    let now = 1_700_000_000;
    assert_eq!(
        m.ban(ip, None, true, Some(u64::MAX), now, &r).unwrap_err(),
        BanError::Duration(u64::MAX)
    );
    assert!(
        m.ban(ip, None, true, Some(super::MAX_DURATION_SECS + 1), now, &r)
            .is_err()
    );
    let year = m
        .ban(ip, None, true, Some(super::MAX_DURATION_SECS), now, &r)
        .unwrap();
    assert_eq!(year.expires, Some(now + super::MAX_DURATION_SECS));
    m.unban(&year.id.to_string(), &r).unwrap();
    let out = m.unban(&ban.id.to_string(), &r).unwrap();
    assert_eq!(events(&out), ["mitigation_withdrawn"]);
    assert_eq!(
        m.unban("203.0.113.200", &r).unwrap_err(),
        UnbanError::NoneActive("203.0.113.200".into())
    );
    assert_eq!(
        m.unban("edge1", &r).unwrap_err().to_string(),
        "`edge1` is neither a mitigation id nor an address"
    );
    // The blackhole expires on its own after manual_duration.
    assert_eq!(events(&m.tick(3600, &r)), ["mitigation_withdrawn"]);
    assert!(r.held.borrow().is_empty());
}

#[test]
fn a_router_at_its_cap_is_left_out_the_others_still_protect() {
    let r = Routers::default();
    let mut m = mitigator(MitigationConfig {
        max_per_peer: 2,
        ..MitigationConfig::default()
    });
    for i in 1..=3u64 {
        let ip = format!("203.0.113.{}/32", 10 + i);
        m.on_event(
            &Event::AttackStarted(attack(i, &ip, GroupAction::Blackhole, 1.0)),
            0,
            &r,
        );
    }
    assert_eq!(r.holds("edge1").len(), 2, "edge1 capped at 2");
    assert_eq!(r.holds("edge2").len(), 2, "edge2 capped at 2");
    let third = m.active().nth(2).unwrap();
    assert!(
        third.peers.iter().all(|(_, o)| o.contains("max_per_peer")),
        "{:?}",
        third.peers
    );
}

#[test]
fn a_quarantined_filter_falls_back_to_a_blackhole_on_that_router() {
    let r = Routers::default();
    let mut m = mitigator(MitigationConfig::default());
    let a = attack(1, "203.0.113.5/32", GroupAction::Flowspec, 0.97);
    m.on_event(&Event::AttackStarted(a), 1000, &r);
    let filter = r.holds("edge1")[0].clone();
    let hole = Route::blackhole("203.0.113.5".parse().unwrap());
    // edge1's session quarantined the filter: the speaker took it out.
    r.withdraw_key(&filter.key());
    r.quarantined
        .borrow_mut()
        .push(("edge1".into(), filter.clone()));
    let out = m.on_quarantine("edge1", &filter, "NOTIFICATION 3/9", &r);
    assert_eq!(events(&out), ["mitigation_quarantined"]);
    assert_eq!(out[0].to_json()["router_reason"], "NOTIFICATION 3/9");
    assert_eq!(out[0].to_json()["fallback"], "blackhole 203.0.113.5/32");
    assert_eq!(r.holds("edge1"), std::slice::from_ref(&hole));
    assert_eq!(r.holds("edge2"), [hole]);
    let active = m.active().next().unwrap();
    assert_eq!(active.fallback_peers, ["edge2", "edge1"]);
    assert!(m.take_changed().is_some());
    // A quarantined route no mitigation uses: reported all the same.
    let other = Route::blackhole("203.0.113.9".parse().unwrap());
    assert_eq!(
        events(&m.on_quarantine("edge1", &other, "dropped", &r)),
        ["route_quarantined"]
    );
}

/// `edge1` speaks `dialect`; `edge2` is generic. Records what each got.
struct Dialects {
    routers: Routers,
    dialect: Dialect,
}

impl Announcer for Dialects {
    fn announce(&self, route: Route) -> Result<Announcement, RouteError> {
        self.announce_to(&["edge1", "edge2"], route)
    }
    fn announce_to(&self, peers: &[&str], route: Route) -> Result<Announcement, RouteError> {
        let mut out = Vec::new();
        for &p in peers {
            let mut held = self.routers.held.borrow_mut();
            held.retain(|(q, r)| !(q == p && r.key() == route.key()));
            held.push((p.to_string(), route.clone()));
            out.push((p.to_string(), Outcome::Accepted));
        }
        Ok(Announcement {
            key: route.key(),
            peers: out,
        })
    }
    fn peers(&self) -> Vec<String> {
        vec!["edge1".into(), "edge2".into()]
    }
    fn dialects(&self) -> Vec<(String, Dialect)> {
        vec![
            ("edge1".into(), self.dialect.clone()),
            ("edge2".into(), Dialect::profile(Profile::Generic)),
        ]
    }
    fn withdraw_key(&self, key: &RouteKey) -> usize {
        self.routers.withdraw_key(key)
    }
}

#[test]
fn ocnos_gets_only_what_it_documents_and_the_blackhole_otherwise() {
    let r = Dialects {
        routers: Routers::default(),
        dialect: Dialect::profile(Profile::Ocnos),
    };
    // IPv4 discard: OcNOS takes it as it is.
    let mut m = mitigator(MitigationConfig::default());
    m.on_event(
        &Event::AttackStarted(attack(1, "203.0.113.5/32", GroupAction::Flowspec, 0.97)),
        0,
        &r,
    );
    let mit = m.active().next().unwrap().clone();
    assert_eq!(r.routers.holds("edge1"), std::slice::from_ref(&mit.route));
    assert!(
        mit.sent
            .iter()
            .all(|s| s.refused.is_none() && s.changes.is_empty())
    );
    // IPv6: no IPv6 flow spec on OcNOS; the blackhole there, the rule on edge2.
    m.on_event(
        &Event::AttackStarted(attack(2, "2001:db8::5/128", GroupAction::Flowspec, 0.97)),
        0,
        &r,
    );
    let mit = m.active().nth(1).unwrap().clone();
    let hole = Route::blackhole("2001:db8::5".parse().unwrap());
    assert!(r.routers.holds("edge1").contains(&hole));
    assert!(r.routers.holds("edge2").contains(&mit.route));
    let edge1 = mit.sent.iter().find(|s| s.peer == "edge1").unwrap();
    assert!(edge1.route.is_none());
    assert!(
        edge1.refused.as_deref().unwrap().contains("IPv6"),
        "{edge1:?}"
    );
    assert_eq!(mit.fallback_peers, ["edge1"]);
    // A policer: not documented for OcNOS, refused there.
    let mut m = mitigator(MitigationConfig {
        rate_limit_bps: Some(Rate(8e6)),
        ..MitigationConfig::default()
    });
    m.on_event(
        &Event::AttackStarted(attack(3, "203.0.113.6/32", GroupAction::Flowspec, 0.97)),
        0,
        &r,
    );
    let mit = m.active().next().unwrap();
    assert_eq!(mit.fallback_peers, ["edge1"]);
}

#[test]
fn a_component_a_router_lacks_is_dropped_only_when_the_policy_allows_widening() {
    let mut d = Dialect::profile(Profile::Generic);
    d.components
        .retain(|&k| k != crate::bgp::ComponentKind::SourcePort);
    let r = Dialects {
        routers: Routers::default(),
        dialect: d,
    };
    // Default max_normal_hit: the wider rule's normal hit is unknown.
    let mut m = mitigator(MitigationConfig::default());
    m.on_event(
        &Event::AttackStarted(attack(1, "203.0.113.5/32", GroupAction::Flowspec, 0.97)),
        0,
        &r,
    );
    let mit = m.active().next().unwrap().clone();
    assert_eq!(mit.fallback_peers, ["edge1"]);
    let why = mit.sent[0].refused.clone().unwrap();
    assert!(
        why.contains("source-port") && why.contains("max_normal_hit"),
        "{why}"
    );
    m.unban("203.0.113.5", &r).unwrap();
    assert!(r.routers.held.borrow().is_empty(), "every rule withdrawn");
    // An operator who accepts any normal hit: the wider rule goes out.
    let mut m = mitigator(MitigationConfig {
        max_normal_hit: 1.0,
        ..MitigationConfig::default()
    });
    m.on_event(
        &Event::AttackStarted(attack(2, "203.0.113.5/32", GroupAction::Flowspec, 0.97)),
        0,
        &r,
    );
    let mit = m.active().next().unwrap().clone();
    assert!(mit.fallback.is_none());
    let sent = &mit.sent[0];
    assert_eq!(sent.changes, ["dropped source-port"]);
    let Some(Route::FlowSpec { rule, .. }) = &sent.route else {
        panic!("{sent:?}")
    };
    assert!(
        rule.components()
            .iter()
            .all(|c| c.kind() != crate::bgp::ComponentKind::SourcePort)
    );
    assert_eq!(r.routers.holds("edge1"), [sent.route.clone().unwrap()]);
    assert_eq!(r.routers.holds("edge2"), std::slice::from_ref(&mit.route));
    // Withdrawn: both the adapted and the original rule.
    m.unban("203.0.113.5", &r).unwrap();
    assert!(r.routers.held.borrow().is_empty());
}

/// The cluster's switches between the local and the network-wide view
/// (`daemon::cluster`): an attack ended by a switch resumes on the way
/// back without a second mitigation, one ended elsewhere is adopted by the
/// other view's attack on the victim, and a hand-over withdraws at once.
#[test]
fn switching_views_resumes_or_adopts_and_a_hand_over_withdraws_at_once() {
    let r = Routers::default();
    let mut m = mitigator(MitigationConfig {
        min_hold: Duration::from_secs(10),
        ..MitigationConfig::default()
    });
    let local = attack(1, "203.0.113.5/32", GroupAction::Flowspec, 0.97);
    m.on_event(&Event::AttackStarted(local.clone()), 1000, &r);
    assert!(!m.resume_attack(99, 1000), "no mitigation of attack 99");
    // To the network view: the local attack ends (held); the network
    // attack on the same victim adopts its mitigation, no new route.
    m.attack_ended(1, 1001);
    let network = attack(1 << 52, "203.0.113.5/32", GroupAction::Flowspec, 0.97);
    let out = m.on_event(&Event::AttackStarted(network.clone()), 1001, &r);
    assert_eq!(events(&out), ["mitigation_adopted"]);
    assert_eq!(m.active().count(), 1);
    // Back and forth: handed off long after its hold (an outage), kept
    // for the grace asked, resumed, still one mitigation.
    m.attack_handed_off(network.id, 5000, 60);
    assert!(m.tick(5030, &r).is_empty(), "held 60 s from the hand-off");
    assert!(m.resume_attack(network.id, 5030));
    assert!(
        m.active().all(|x| x.hold_until == 5030 + 10),
        "back to min_hold from the resume"
    );
    assert_eq!(m.active().count(), 1);
    assert!(m.active().all(|x| x.ended.is_none()));
    // Another sensor announces it: withdrawn now, whatever the hold.
    let out = m.hand_over("203.0.113.5/32".parse().unwrap(), &r);
    assert_eq!(events(&out), ["mitigation_withdrawn"]);
    assert_eq!(m.active().count(), 0);
    assert!(r.held.borrow().is_empty());
    // A manual ban is never handed over.
    m.ban("203.0.113.6".parse().unwrap(), None, true, None, 1003, &r)
        .unwrap();
    assert!(
        m.hand_over("203.0.113.6/32".parse().unwrap(), &r)
            .is_empty()
    );
    assert_eq!(m.active().count(), 1);
}
