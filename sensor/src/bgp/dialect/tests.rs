//! Each profile's table states the facts of its cited source; adaptation
//! cases.

use std::net::Ipv4Addr;

use super::{profile::RFC8955_COMPONENTS, *};
use crate::bgp::flowspec::{
    Action, ActionKind as A, Component, ComponentKind as K, FlowPrefix, NumericMatch, NumericOp,
};

fn v4_rule(extra: Vec<Component>) -> FlowSpec {
    let mut c = vec![Component::DestinationPrefix(FlowPrefix::new(
        "203.0.113.7/32".parse().unwrap(),
    ))];
    c.extend(extra);
    FlowSpec::new(IpFamily::Ipv4, c).unwrap()
}

fn v6_rule(extra: Vec<Component>) -> FlowSpec {
    let mut c = vec![Component::DestinationPrefix(FlowPrefix::new(
        "2001:db8::7/128".parse().unwrap(),
    ))];
    c.extend(extra);
    FlowSpec::new(IpFamily::Ipv6, c).unwrap()
}

fn udp() -> Component {
    Component::IpProtocol(vec![NumericMatch::eq(17)])
}

/// Allows every widening (a policy whose limits accept it).
struct Wide;
impl Widening for Wide {
    fn allow(&self, _: &FlowSpec, _: ComponentKind) -> Result<(), String> {
        Ok(())
    }
}

#[test]
fn every_profile_has_a_source_and_a_destination() {
    for p in Profile::ALL {
        let d = Dialect::profile(p);
        assert!(!d.source.is_empty(), "{p}");
        assert!(d.component(K::DestinationPrefix), "{p}");
        assert!(!d.actions.is_empty(), "{p}");
        assert!(d.ipv4, "{p}: every implementation documents IPv4");
        if d.action(A::Redirect) {
            assert!(!d.redirect.is_empty(), "{p}");
        }
        // The flow label is an IPv6 component only (RFC 8956 §3.7).
        if d.flow_label() {
            assert!(d.ipv6, "{p}");
        }
    }
}

#[test]
fn generic_is_everything_as_before() {
    let d = Dialect::profile(Profile::Generic);
    assert_eq!(d.components, ComponentKind::ALL.to_vec());
    assert_eq!(d.actions, ActionKind::ALL.to_vec());
    assert!(d.ipv4 && d.ipv6 && d.ipv6_offsets && d.flow_label());
    assert_eq!(d.redirect, RedirectEncoding::ALL.to_vec());
    assert_eq!(d.operators, Operators::All);
}

/// OcNOS-SP BGP Flowspec Commands: `address-family ipv4` only, action
/// `drop` only; the DDoS solution page's match fields (no ICMP).
#[test]
fn ocnos_table_is_its_documentation() {
    let d = Dialect::profile(Profile::Ocnos);
    assert!(d.source.contains("docs.ipinfusion.com"));
    assert!(d.ipv4);
    assert!(!d.ipv6, "only address-family ipv4 is documented");
    assert!(!d.ipv6_offsets && !d.flow_label());
    assert_eq!(d.actions, vec![A::Discard], "only `drop` is documented");
    assert!(d.redirect.is_empty());
    for k in [K::IcmpType, K::IcmpCode, K::FlowLabel] {
        assert!(!d.component(k), "{k}");
    }
    for k in [
        K::DestinationPrefix,
        K::SourcePrefix,
        K::IpProtocol,
        K::Port,
        K::DestinationPort,
        K::SourcePort,
        K::TcpFlags,
        K::PacketLength,
        K::Dscp,
        K::Fragment,
    ] {
        assert!(d.component(k), "{k}");
    }
}

/// Junos `flow` (IPv4) and `flow (IPv6)` statements: every component, the
/// flow label and prefix offsets in IPv6; discard, rate-limit, mark,
/// sample/next-term, routing-instance; no packet rate.
#[test]
fn junos_table_is_its_documentation() {
    let d = Dialect::profile(Profile::Junos);
    assert!(d.source.contains("juniper.net"));
    assert!(d.ipv4 && d.ipv6 && d.ipv6_offsets && d.flow_label());
    assert_eq!(d.components, ComponentKind::ALL.to_vec());
    assert_eq!(
        d.actions,
        vec![
            A::Discard,
            A::TrafficRateBytes,
            A::TrafficAction,
            A::Redirect,
            A::TrafficMarking
        ]
    );
    assert!(!d.action(A::TrafficRatePackets));
}

/// IOS XR: types 1-12, traffic-rate, redirect-vrf 0x8008, set dscp; no
/// sample, no packet rate.
#[test]
fn iosxr_table_is_its_documentation() {
    let d = Dialect::profile(Profile::Iosxr);
    assert!(d.source.contains("Cisco-Asr-9000"));
    assert_eq!(d.components, RFC8955_COMPONENTS.to_vec());
    assert!(d.action(A::TrafficMarking) && d.action(A::Redirect));
    assert_eq!(d.redirect, vec![RedirectEncoding::As2], "type 0x8008 only");
    assert!(!d.action(A::TrafficAction) && !d.action(A::TrafficRatePackets));
    assert!(!d.ipv6);
}

/// EOS 4.21.3F: RFC 5575 and RFC 7674 (IPv4, rate/drop, redirect).
#[test]
fn eos_table_is_its_documentation() {
    let d = Dialect::profile(Profile::Eos);
    assert!(d.source.contains("arista.com"));
    assert!(!d.ipv6);
    assert_eq!(
        d.actions,
        vec![A::Discard, A::TrafficRateBytes, A::Redirect]
    );
    assert_eq!(d.redirect, RedirectEncoding::ALL.to_vec(), "RFC 7674");
}

/// SR OS: IPv4 and IPv6; types 1-12 with single values for ICMP type and
/// code and DSCP, protocol single or "TCP or UDP", no DF/FF/LF fragment
/// matches; drop and rate.
#[test]
fn sros_table_is_its_documentation() {
    let d = Dialect::profile(Profile::Sros);
    assert!(d.source.contains("nokia.com"));
    assert!(d.ipv4 && d.ipv6);
    assert_eq!(d.components, RFC8955_COMPONENTS.to_vec());
    assert_eq!(
        d.single_value,
        vec![K::IpProtocol, K::IcmpType, K::IcmpCode, K::Dscp]
    );
    assert_eq!(d.fragment_bits, crate::bgp::flowspec::fragment::IS_F);
    assert!(!d.flow_label() && !d.ipv6_offsets);
    assert_eq!(d.actions, vec![A::Discard, A::TrafficRateBytes]);
}

#[test]
fn sros_single_values_and_fragment_bits() {
    use crate::bgp::{BitmaskMatch, flowspec::fragment};
    let d = Dialect::profile(Profile::Sros);
    let ok = v4_rule(vec![
        Component::IpProtocol(vec![NumericMatch::eq(6), NumericMatch::eq(17)]),
        Component::Dscp(vec![NumericMatch::eq(46)]),
        Component::Fragment(vec![BitmaskMatch::all(fragment::IS_F)]),
    ]);
    d.accepts(&ok, &[Action::DISCARD]).unwrap();
    for c in [
        Component::IpProtocol(vec![NumericMatch::eq(1), NumericMatch::eq(17)]),
        Component::Dscp(vec![NumericMatch::eq(10), NumericMatch::eq(46)]),
        Component::Fragment(vec![BitmaskMatch::all(fragment::FF)]),
    ] {
        let kind = c.kind();
        let rule = v4_rule(vec![c]);
        assert!(
            matches!(
                adapt(&rule, &[Action::DISCARD], &d, &NoWidening),
                Err(Refusal::Widening { component, .. }) if component == kind
            ),
            "{kind}"
        );
        let out = adapt(&rule, &[Action::DISCARD], &d, &Wide).unwrap();
        assert_eq!(out.rule.components().len(), 1, "{kind}");
    }
}

/// FRR: IPv4 and IPv6; redirect, rate-limit, marking; no flow label.
#[test]
fn frr_table_is_its_documentation() {
    let d = Dialect::profile(Profile::Frr);
    assert!(d.source.contains("frrouting.org"));
    assert!(d.ipv4 && d.ipv6 && !d.flow_label() && !d.ipv6_offsets);
    assert!(d.action(A::Redirect) && d.action(A::TrafficMarking));
    assert!(!d.action(A::TrafficRatePackets) && !d.action(A::TrafficAction));
}

/// BIRD 2: flow4/flow6 with every component, offsets and label; actions are
/// opaque extended communities.
#[test]
fn bird_table_is_its_documentation() {
    let d = Dialect::profile(Profile::Bird);
    assert!(d.source.contains("bird.network.cz"));
    assert_eq!(d.components, ComponentKind::ALL.to_vec());
    assert!(d.ipv6_offsets && d.flow_label());
    assert_eq!(d.actions, ActionKind::ALL.to_vec());
}

/// GoBGP flowspec.md: offsets, label, discard/rate/redirect/mark/action;
/// no packet rate.
#[test]
fn gobgp_table_is_its_documentation() {
    let d = Dialect::profile(Profile::Gobgp);
    assert!(d.source.contains("osrg/gobgp"));
    assert!(d.ipv6_offsets && d.flow_label());
    assert!(!d.action(A::TrafficRatePackets));
    for a in [
        A::Discard,
        A::TrafficRateBytes,
        A::TrafficAction,
        A::Redirect,
        A::TrafficMarking,
    ] {
        assert!(d.action(a), "{a}");
    }
}

// ---- adaptation -----------------------------------------------------------

#[test]
fn a_rule_a_dialect_takes_goes_out_unchanged() {
    let rule = v4_rule(vec![udp()]);
    for p in Profile::ALL {
        let d = Dialect::profile(p);
        let out = adapt(&rule, &[Action::DISCARD], &d, &NoWidening).unwrap();
        assert_eq!(out.rule, rule, "{p}");
        assert_eq!(out.actions, vec![Action::DISCARD], "{p}");
        assert!(out.changes.is_empty(), "{p}");
        d.accepts(&rule, &[Action::DISCARD]).unwrap();
    }
}

#[test]
fn ocnos_sends_only_documented_things() {
    let d = Dialect::profile(Profile::Ocnos);
    // IPv6: refused (RTBH takes over).
    let r6 = v6_rule(vec![udp()]);
    assert!(matches!(
        adapt(&r6, &[Action::DISCARD], &d, &Wide),
        Err(Refusal::Family { .. })
    ));
    // A policer: not documented, refused.
    let rate = Action::TrafficRateBytes { id: 0, rate: 1e6 };
    assert!(matches!(
        adapt(&v4_rule(vec![udp()]), &[rate], &d, &Wide),
        Err(Refusal::Action {
            action: A::TrafficRateBytes,
            ..
        })
    ));
    // Redirect, marking alone, sample: refused.
    for a in [
        Action::RedirectAs2 {
            asn: 65001,
            local: 1,
        },
        Action::TrafficMarking { dscp: 8 },
        Action::TrafficAction {
            sample: true,
            terminal: false,
        },
    ] {
        assert!(
            adapt(&v4_rule(vec![udp()]), &[a], &d, &Wide).is_err(),
            "{a}"
        );
    }
    // An ICMP type match: dropped only if the policy allows widening.
    let icmp = v4_rule(vec![
        Component::IpProtocol(vec![NumericMatch::eq(1)]),
        Component::IcmpType(vec![NumericMatch::eq(8)]),
    ]);
    assert!(matches!(
        adapt(&icmp, &[Action::DISCARD], &d, &NoWidening),
        Err(Refusal::Widening {
            component: K::IcmpType,
            ..
        })
    ));
    let out = adapt(&icmp, &[Action::DISCARD], &d, &Wide).unwrap();
    assert!(out.rule.components().iter().all(|c| d.component(c.kind())));
    assert_eq!(out.rule.destination(), icmp.destination());
    assert_eq!(
        out.changes,
        vec![Change::DroppedComponent {
            component: K::IcmpType
        }]
    );
    // Whatever goes out: only documented components and actions.
    let all = v4_rule(vec![
        udp(),
        Component::DestinationPort(vec![NumericMatch::eq(53)]),
        Component::PacketLength(NumericMatch::range(500, 600).to_vec()),
        Component::IcmpCode(vec![NumericMatch::eq(0)]),
    ]);
    let out = adapt(
        &all,
        &[Action::DISCARD, Action::TrafficMarking { dscp: 1 }],
        &d,
        &Wide,
    )
    .unwrap();
    assert!(out.rule.components().iter().all(|c| d.component(c.kind())));
    assert!(out.actions.iter().all(|a| d.action(a.kind())));
}

#[test]
fn ipv6_offsets_are_refused_or_dropped() {
    let mut d = Dialect::profile(Profile::Sros);
    let src = Component::SourcePrefix(FlowPrefix::V6 {
        prefix: "::1:0:0:0/80".parse().unwrap(),
        offset: 64,
    });
    let rule = v6_rule(vec![src]);
    // Source with an offset: not rewritable; dropping it widens.
    assert!(matches!(
        adapt(&rule, &[Action::DISCARD], &d, &NoWidening),
        Err(Refusal::Offset { offset: 64, .. })
    ));
    let out = adapt(&rule, &[Action::DISCARD], &d, &Wide).unwrap();
    assert_eq!(out.rule.components().len(), 1);
    // Destination with an offset: never touched, refused.
    let dst = FlowSpec::new(
        IpFamily::Ipv6,
        vec![Component::DestinationPrefix(FlowPrefix::V6 {
            prefix: "::7/128".parse().unwrap(),
            offset: 64,
        })],
    )
    .unwrap();
    assert!(matches!(
        adapt(&dst, &[Action::DISCARD], &d, &Wide),
        Err(Refusal::Offset { .. })
    ));
    d.ipv6_offsets = true;
    assert!(adapt(&dst, &[Action::DISCARD], &d, &NoWidening).is_ok());
}

#[test]
fn flow_label_needs_the_dialect() {
    let rule = v6_rule(vec![Component::FlowLabel(vec![NumericMatch::eq(0x12345)])]);
    let frr = Dialect::profile(Profile::Frr);
    assert!(matches!(
        adapt(&rule, &[Action::DISCARD], &frr, &NoWidening),
        Err(Refusal::Widening {
            component: K::FlowLabel,
            ..
        })
    ));
    let bird = Dialect::profile(Profile::Bird);
    assert!(
        adapt(&rule, &[Action::DISCARD], &bird, &NoWidening)
            .unwrap()
            .changes
            .is_empty()
    );
    let mut off = bird.clone();
    off.set_flow_label(false);
    assert!(!off.flow_label());
    assert!(adapt(&rule, &[Action::DISCARD], &off, &NoWidening).is_err());
}

#[test]
fn redirects_are_re_encoded_or_refused() {
    let rule = v4_rule(vec![udp()]);
    let mut d = Dialect::profile(Profile::Junos);
    d.redirect = vec![RedirectEncoding::As2];
    // 4-octet AS form with a 2-octet AS: the same target as 0x8008.
    let as4 = Action::RedirectAs4 {
        asn: 65001,
        local: 7,
    };
    let out = adapt(&rule, &[as4], &d, &NoWidening).unwrap();
    assert_eq!(
        out.actions,
        vec![Action::RedirectAs2 {
            asn: 65001,
            local: 7
        }]
    );
    // A 4-octet AS cannot be written as 2-octet.
    let big = Action::RedirectAs4 {
        asn: 4_200_000_000,
        local: 7,
    };
    assert!(matches!(
        adapt(&rule, &[big], &d, &NoWidening),
        Err(Refusal::Redirect {
            encoding: RedirectEncoding::As4,
            ..
        })
    ));
    // The IPv4 form has no AS equivalent.
    let ip = Action::RedirectIpv4 {
        addr: Ipv4Addr::new(192, 0, 2, 1),
        local: 7,
    };
    assert!(adapt(&rule, &[ip], &d, &NoWidening).is_err());
    d.redirect = vec![RedirectEncoding::As4];
    let as2 = Action::RedirectAs2 {
        asn: 65001,
        local: 70_000,
    };
    assert!(
        adapt(&rule, &[as2], &d, &NoWidening).is_err(),
        "local 70000 needs 4 octets"
    );
}

#[test]
fn packet_rates_become_byte_rates_only_when_exact() {
    let d = Dialect::profile(Profile::Frr);
    let pps = Action::TrafficRatePackets {
        id: 0,
        rate: 1000.0,
    };
    // No exact packet length: refused.
    assert!(matches!(
        adapt(&v4_rule(vec![udp()]), &[pps], &d, &NoWidening),
        Err(Refusal::Action {
            action: A::TrafficRatePackets,
            ..
        })
    ));
    // Every packet 512 octets: 1000 packets/s = 512000 bytes/s.
    let rule = v4_rule(vec![
        udp(),
        Component::PacketLength(vec![NumericMatch::eq(512)]),
    ]);
    let out = adapt(&rule, &[pps], &d, &NoWidening).unwrap();
    assert_eq!(
        out.actions,
        vec![Action::TrafficRateBytes {
            id: 0,
            rate: 512_000.0
        }]
    );
    // A packet rate of 0 is a discard.
    let zero = Action::TrafficRatePackets { id: 0, rate: 0.0 };
    let out = adapt(&v4_rule(vec![udp()]), &[zero], &d, &NoWidening).unwrap();
    assert_eq!(out.actions, vec![Action::DISCARD]);
}

#[test]
fn discard_is_rate_zero_for_policer_only_routers() {
    let mut d = Dialect::profile(Profile::Generic);
    d.actions = vec![A::TrafficRateBytes];
    let out = adapt(&v4_rule(vec![udp()]), &[Action::DISCARD], &d, &NoWidening).unwrap();
    assert!(out.changes.is_empty());
    d.actions = vec![A::TrafficRatePackets];
    let out = adapt(&v4_rule(vec![udp()]), &[Action::DISCARD], &d, &NoWidening).unwrap();
    assert_eq!(
        out.actions,
        vec![Action::TrafficRatePackets { id: 0, rate: 0.0 }]
    );
}

#[test]
fn operators_eq_only_expands_small_ranges() {
    let mut d = Dialect::profile(Profile::Generic);
    d.operators = Operators::Eq;
    let small = v4_rule(vec![Component::DestinationPort(
        NumericMatch::range(80, 83).to_vec(),
    )]);
    let out = adapt(&small, &[Action::DISCARD], &d, &NoWidening).unwrap();
    assert_eq!(
        out.rule.components()[1],
        Component::DestinationPort((80..=83).map(NumericMatch::eq).collect())
    );
    assert!(matches!(
        d.accepts(&small, &[Action::DISCARD]),
        Err(Refusal::NeedsAdapting { .. })
    ));
    let big = v4_rule(vec![Component::PacketLength(
        NumericMatch::range(500, 1500).to_vec(),
    )]);
    assert!(matches!(
        adapt(&big, &[Action::DISCARD], &d, &Wide),
        Err(Refusal::Operators { .. })
    ));
    d.operators = Operators::EqAndRanges;
    assert!(
        adapt(&big, &[Action::DISCARD], &d, &NoWidening)
            .unwrap()
            .changes
            .is_empty()
    );
    let ne = v4_rule(vec![Component::DestinationPort(vec![NumericMatch::or(
        NumericOp::Ne,
        53,
    )])]);
    assert!(adapt(&ne, &[Action::DISCARD], &d, &Wide).is_err());
}

#[test]
fn max_components_is_enforced() {
    let mut d = Dialect::profile(Profile::Generic);
    d.max_components = Some(1);
    assert!(matches!(
        adapt(&v4_rule(vec![udp()]), &[Action::DISCARD], &d, &NoWidening),
        Err(Refusal::TooManyComponents { max: 1, .. })
    ));
}

// ---- configuration --------------------------------------------------------

fn config(
    families: &str,
    flowspec: &str,
) -> Result<crate::bgp::BgpConfig, crate::bgp::BgpConfigError> {
    crate::bgp::BgpConfig::from_toml(&format!(
        r#"
router_id = "192.0.2.10"
local_asn = 65001
announce_within = ["192.0.2.0/24", "2001:db8::/32"]

[[peers]]
name = "edge1"
address = "198.51.100.1"
peer_asn = 65001
families = [{families}]
next_hop_v4 = "192.0.2.1"
next_hop_v6 = "100::1"

[peers.flowspec]
{flowspec}
"#
    ))
}

#[test]
fn no_dialect_is_generic_as_before() {
    let c = config(r#""ipv4-flowspec", "ipv6-flowspec""#, "").unwrap();
    assert_eq!(
        c.peers[0].flowspec.dialect(),
        Dialect::profile(Profile::Generic)
    );
}

#[test]
fn overrides_apply_on_top_of_the_profile() {
    let c = config(
        r#""ipv4-flowspec", "ipv4-unicast""#,
        r#"dialect = "ocnos"
actions = ["discard", "traffic-rate-bytes"]
operators = "eq-and-ranges"
max_components = 6"#,
    )
    .unwrap();
    let d = c.peers[0].flowspec.dialect();
    assert_eq!(d.profile, Profile::Ocnos);
    assert_eq!(d.actions, vec![A::Discard, A::TrafficRateBytes]);
    assert_eq!(d.operators, Operators::EqAndRanges);
    assert_eq!(d.max_components, Some(6));
    assert!(!d.ipv6, "the rest stays OcNOS");

    let c = config(
        r#""ipv4-flowspec", "ipv6-flowspec""#,
        r#"dialect = "bird"
ipv6_offsets = false
flow_label = false
redirect = ["as2", "ipv4"]
components = ["destination-prefix", "ip-protocol", "flow-label"]"#,
    )
    .unwrap();
    let d = c.peers[0].flowspec.dialect();
    assert!(!d.ipv6_offsets);
    assert!(!d.flow_label(), "flow_label wins over components");
    assert_eq!(d.components, vec![K::DestinationPrefix, K::IpProtocol]);
    assert_eq!(
        d.redirect,
        vec![RedirectEncoding::As2, RedirectEncoding::Ipv4]
    );
}

#[test]
fn config_refuses_unknown_profiles_keys_and_contradictions() {
    let e = config(r#""ipv4-flowspec""#, r#"dialect = "cisco""#).unwrap_err();
    assert!(
        e.message.contains("cisco") && e.message.contains("iosxr"),
        "{e}"
    );
    let e = config(r#""ipv4-flowspec""#, "ipv6_offset = false").unwrap_err();
    assert!(e.message.contains("ipv6_offset"), "{e}");
    let e = config(r#""ipv4-flowspec""#, r#"redirect = ["as8"]"#).unwrap_err();
    assert!(e.message.contains("as8"), "{e}");
    // OcNOS documents no IPv6 flow spec.
    let e = config(
        r#""ipv4-flowspec", "ipv6-flowspec""#,
        r#"dialect = "ocnos""#,
    )
    .unwrap_err();
    assert_eq!(e.key, "bgp.peers[edge1].families");
    assert!(
        e.message.contains("ocnos") && e.message.contains("flowspec.ipv6"),
        "{e}"
    );
    // ... unless the operator says so.
    config(
        r#""ipv4-flowspec", "ipv6-flowspec""#,
        "dialect = \"ocnos\"\nipv6 = true",
    )
    .unwrap();
    let e = config(
        r#""ipv4-flowspec""#,
        "actions = [\"redirect\"]\nredirect = []",
    )
    .unwrap_err();
    assert_eq!(e.key, "bgp.peers[edge1].flowspec.redirect");
    let e = config(r#""ipv4-flowspec""#, r#"components = ["ip-protocol"]"#).unwrap_err();
    assert_eq!(e.key, "bgp.peers[edge1].flowspec.components");
    let e = config(r#""ipv4-flowspec""#, "actions = []").unwrap_err();
    assert_eq!(e.key, "bgp.peers[edge1].flowspec.actions");
}
