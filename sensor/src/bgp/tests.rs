//! Unit tests of the bgp module: golden bytes from the RFCs, round trips
//! through our decoder and through routecore's parser (an independent
//! implementation), validation, and session behaviour against a scripted
//! peer on loopback for the faults a real daemon cannot produce.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::{
    attribute::{Community, PathAttribute},
    capability::{Capability, Family},
    flowspec::{
        Action, BitmaskMatch, Component, FlowPrefix, FlowSpec, FlowSpecError, IpFamily,
        NumericMatch, NumericOp, fragment, tcp_flags,
    },
    message::{Message, Notification, Open, Update},
    route::{Route, RouteError},
    update::{self, SessionParams},
};

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn dst(s: &str) -> Component {
    Component::DestinationPrefix(FlowPrefix::new(net(s)))
}

fn src(s: &str) -> Component {
    Component::SourcePrefix(FlowPrefix::new(net(s)))
}

fn v6_offset(s: &str, offset: u8) -> FlowPrefix {
    let IpNet::V6(prefix) = net(s) else { panic!() };
    FlowPrefix::V6 { prefix, offset }
}

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

fn ebgp() -> SessionParams {
    SessionParams {
        local_asn: 65001,
        ibgp: false,
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

fn ibgp() -> SessionParams {
    SessionParams {
        local_asn: 65000,
        ibgp: true,
        ..ebgp()
    }
}

/// Encodes, checks against the golden bytes, decodes back.
fn golden(family: IpFamily, components: Vec<Component>, bytes: &str) -> FlowSpec {
    let rule = FlowSpec::new(family, components).unwrap();
    let want = hex(bytes);
    assert_eq!(rule.encode_nlri(), want, "encoding of {rule}");
    let (back, used) = FlowSpec::decode_nlri(family, &want).unwrap();
    assert_eq!(used, want.len());
    assert_eq!(back, rule);
    rule
}

// ---- RFC 8955 §4.2.3 and RFC 8956 §3.8 examples -------------------------

/// RFC 8955 §4.2.3 example 1: "packets to 192.0.2.0/24 and TCP port 25".
#[test]
fn rfc8955_example_1() {
    golden(
        IpFamily::Ipv4,
        vec![
            dst("192.0.2.0/24"),
            Component::IpProtocol(vec![NumericMatch::eq(6)]),
            Component::Port(vec![NumericMatch::eq(25)]),
        ],
        "0b 01 18 c0 00 02 03 81 06 04 81 19",
    );
}

/// Example 2: "to 192.0.2.0/24 from 203.0.113.0/24 and port {[137, 139]
/// or 8080}".
#[test]
fn rfc8955_example_2() {
    let [lo, hi] = NumericMatch::range(137, 139);
    golden(
        IpFamily::Ipv4,
        vec![
            dst("192.0.2.0/24"),
            src("203.0.113.0/24"),
            Component::Port(vec![lo, hi, NumericMatch::eq(8080)]),
        ],
        "12 01 18 c0 00 02 02 18 cb 00 71 04 03 89 45 8b 91 1f 90",
    );
}

/// Example 3: "to 192.0.2.1/32 and fragment {DF or FF}".
#[test]
fn rfc8955_example_3() {
    golden(
        IpFamily::Ipv4,
        vec![
            dst("192.0.2.1/32"),
            Component::Fragment(vec![BitmaskMatch::any(fragment::DF | fragment::FF)]),
        ],
        "09 01 20 c0 00 02 01 0c 80 05",
    );
}

/// RFC 8956 §3.8.1: "from ::1234:5678:9a00:0/64-104 to 2001:db8::/32 and
/// upper-layer protocol tcp".
#[test]
fn rfc8956_example_1() {
    golden(
        IpFamily::Ipv6,
        vec![
            dst("2001:db8::/32"),
            Component::SourcePrefix(v6_offset("::1234:5678:9a00:0/104", 64)),
            Component::IpProtocol(vec![NumericMatch::eq(6)]),
        ],
        "12 01 20 00 20 01 0d b8 02 68 40 12 34 56 78 9a 03 81 06",
    );
}

/// RFC 8956 §3.8.2: the offset is not a multiple of 8 (65), so the
/// pattern is bit-shifted.
#[test]
fn rfc8956_example_2() {
    golden(
        IpFamily::Ipv6,
        vec![
            dst("2001:db8::/32"),
            Component::SourcePrefix(v6_offset("::1234:5678:9a00:0/104", 65)),
        ],
        "0f 01 20 00 20 01 0d b8 02 68 41 24 68 ac f1 34",
    );
}

/// BIRD's test vector for its offset fix (commit 072821e5):
/// `::1:1234:5678:9800:0/60-104` is `68 3c 11 23 45 67 89 80`.
#[test]
fn ipv6_offset_not_byte_aligned() {
    let p = v6_offset("::1:1234:5678:9800:0/104", 60);
    golden(
        IpFamily::Ipv6,
        vec![Component::DestinationPrefix(p)],
        "09 01 68 3c 11 23 45 67 89 80",
    );
}

/// Operators from docs/bgp.md §2.2 (parsed by gobgpd and BIRD,
/// ExaBGP and FRR): packet length >= 512, port range 1024-2047, TCP SYN.
#[test]
fn operator_encodings() {
    golden(
        IpFamily::Ipv4,
        vec![
            dst("192.0.2.1/32"),
            Component::DestinationPort({
                let [lo, hi] = NumericMatch::range(1024, 2047);
                vec![lo, hi]
            }),
            Component::TcpFlags(vec![BitmaskMatch::all(tcp_flags::SYN)]),
            Component::PacketLength(vec![NumericMatch::or(NumericOp::Ge, 512)]),
        ],
        "14 01 20 c0 00 02 01 05 13 04 00 d5 07 ff 09 81 02 0a 93 02 00",
    );
}

/// Every component type 1-13, with 1-, 2- and 4-octet values, NOT and
/// AND on bitmasks, a 2-octet TCP flags mask and the flow label.
#[test]
fn every_component_round_trips() {
    let all = |family, d: &str, s: &str| {
        let mut c = vec![
            dst(d),
            src(s),
            Component::IpProtocol(vec![NumericMatch::eq(17), NumericMatch::eq(6)]),
            Component::Port(vec![NumericMatch::or(NumericOp::Ne, 0)]),
            Component::DestinationPort(vec![NumericMatch::eq(53)]),
            Component::SourcePort(vec![NumericMatch::or(NumericOp::Gt, 1023)]),
            Component::IcmpType(vec![NumericMatch::eq(8)]),
            Component::IcmpCode(vec![NumericMatch::eq(0)]),
            Component::TcpFlags(vec![
                BitmaskMatch::all(tcp_flags::SYN),
                BitmaskMatch {
                    and: true,
                    not: true,
                    all: false,
                    bits: tcp_flags::ACK | 0x100,
                },
            ]),
            Component::PacketLength(vec![
                NumericMatch::or(NumericOp::Lt, 64),
                NumericMatch::or(NumericOp::Gt, 1400),
            ]),
            Component::Dscp(vec![NumericMatch::eq(46)]),
            Component::Fragment(vec![BitmaskMatch::any(fragment::IS_F | fragment::LF)]),
        ];
        if family == IpFamily::Ipv6 {
            c.push(Component::FlowLabel(vec![NumericMatch::eq(0xabcde)]));
        }
        c
    };
    for (family, d, s) in [
        (IpFamily::Ipv4, "192.0.2.0/25", "0.0.0.0/0"),
        (IpFamily::Ipv6, "2001:db8:1::/48", "2001:db8:ffff::1/128"),
    ] {
        // Given in reverse: FlowSpec::new sorts them (canonical order).
        let mut comps = all(family, d, s);
        comps.reverse();
        let rule = FlowSpec::new(family, comps).unwrap();
        let kinds: Vec<u8> = rule.components().iter().map(|c| c.kind().code()).collect();
        let mut sorted = kinds.clone();
        sorted.sort();
        assert_eq!(kinds, sorted);
        let bytes = rule.encode_nlri();
        let (back, used) = FlowSpec::decode_nlri(family, &bytes).unwrap();
        assert_eq!((back, used), (rule.clone(), bytes.len()));
        assert!(rule.to_string().starts_with(match family {
            IpFamily::Ipv4 => "flow4 { dst 192.0.2.0/25; src 0.0.0.0/0; proto ==17 || ==6;",
            IpFamily::Ipv6 => "flow6 { dst 2001:db8:1::/48; src 2001:db8:ffff::1/128;",
        }));
    }
}

#[test]
fn two_octet_length_above_239() {
    // 80 ports OR-ed: 80 * 3 + 6 octets > 239.
    let ports = (1000..1080).map(NumericMatch::eq).collect();
    let rule = FlowSpec::new(
        IpFamily::Ipv4,
        vec![dst("192.0.2.1/32"), Component::DestinationPort(ports)],
    )
    .unwrap();
    let bytes = rule.encode_nlri();
    let body = bytes.len() - 2;
    assert!(body >= 240);
    assert_eq!(bytes[0], 0xf0 | (body >> 8) as u8);
    assert_eq!(bytes[1], body as u8);
    assert_eq!(
        FlowSpec::decode_nlri(IpFamily::Ipv4, &bytes).unwrap().0,
        rule
    );
}

#[test]
fn invalid_rules_are_refused() {
    let v4 = |c: Vec<Component>| FlowSpec::new(IpFamily::Ipv4, c).unwrap_err();
    let v6 = |c: Vec<Component>| FlowSpec::new(IpFamily::Ipv6, c).unwrap_err();
    assert_eq!(v4(vec![]), FlowSpecError::Empty);
    assert!(matches!(
        v4(vec![dst("192.0.2.0/24"), dst("192.0.2.0/25")]),
        FlowSpecError::DuplicateComponent(_)
    ));
    assert!(matches!(
        v4(vec![dst("192.0.2.1/24")]),
        FlowSpecError::HostBits(_)
    ));
    assert!(matches!(
        v4(vec![dst("2001:db8::/32")]),
        FlowSpecError::WrongFamily(_)
    ));
    assert!(matches!(
        v4(vec![
            dst("192.0.2.0/24"),
            Component::FlowLabel(vec![NumericMatch::eq(1)])
        ]),
        FlowSpecError::WrongFamily(_)
    ));
    assert!(matches!(
        v4(vec![
            dst("192.0.2.0/24"),
            Component::IpProtocol(vec![NumericMatch::eq(256)])
        ]),
        FlowSpecError::ValueTooLarge { .. }
    ));
    assert!(matches!(
        v4(vec![
            dst("192.0.2.0/24"),
            Component::Dscp(vec![NumericMatch::eq(64)])
        ]),
        FlowSpecError::ValueTooLarge { .. }
    ));
    assert!(matches!(
        v4(vec![dst("192.0.2.0/24"), Component::Port(vec![])]),
        FlowSpecError::EmptyMatch(_)
    ));
    // No DF in IPv6 (RFC 8956 §3.6).
    assert!(matches!(
        v6(vec![
            dst("2001:db8::/32"),
            Component::Fragment(vec![BitmaskMatch::any(fragment::DF)])
        ]),
        FlowSpecError::ValueTooLarge { .. }
    ));
    // offset must be below the length.
    assert!(matches!(
        v6(vec![Component::DestinationPrefix(v6_offset(
            "2001:db8::/32",
            32
        ))]),
        FlowSpecError::BadOffset { .. }
    ));
    // Too long for the 0xfnnn length field.
    let many = (0..2000).map(NumericMatch::eq).collect();
    assert!(matches!(
        v4(vec![dst("192.0.2.0/24"), Component::Port(many)]),
        FlowSpecError::TooLong(_)
    ));
}

#[test]
fn malformed_nlri_is_rejected_by_the_decoder() {
    let bad = |s: &str| FlowSpec::decode_nlri(IpFamily::Ipv4, &hex(s)).unwrap_err();
    // Types out of order (3 before 1).
    assert!(matches!(
        bad("09 03 81 06 01 20 c0 00 02 01"),
        FlowSpecError::Malformed(_)
    ));
    // Length larger than the data.
    assert!(matches!(
        bad("0c 01 20 c0 00 02 01"),
        FlowSpecError::Malformed(_)
    ));
    // Operator list without end bit.
    assert!(matches!(
        bad("08 01 20 c0 00 02 01 03 01"),
        FlowSpecError::Malformed(_)
    ));
    // Unknown type 14 for IPv4 decoding... and 99 for any.
    assert!(matches!(bad("03 63 81 01"), FlowSpecError::Malformed(_)));
    // Prefix length 33.
    assert!(matches!(
        bad("06 01 21 c0 00 02 01"),
        FlowSpecError::Malformed(_)
    ));
    // AND bit on the first term.
    assert!(matches!(
        bad("09 01 20 c0 00 02 01 03 c1 06"),
        FlowSpecError::Malformed(_)
    ));
}

/// RFC 8955 §5.1 ordering: which of two rules the router applies first.
#[test]
fn rule_precedence() {
    use std::cmp::Ordering::{Greater, Less};
    let r = |c: Vec<Component>| FlowSpec::new(IpFamily::Ipv4, c).unwrap();
    let proto = |p| Component::IpProtocol(vec![NumericMatch::eq(p)]);
    // More specific destination first.
    assert_eq!(
        r(vec![dst("192.0.2.0/24")]).precedence(&r(vec![dst("192.0.2.0/25")])),
        Greater
    );
    // Lower destination first.
    assert_eq!(
        r(vec![dst("192.0.2.0/24")]).precedence(&r(vec![dst("198.51.100.0/24")])),
        Less
    );
    // The rule that has a type the other lacks.
    assert_eq!(
        r(vec![dst("192.0.2.0/24"), proto(6)]).precedence(&r(vec![dst("192.0.2.0/24")])),
        Less
    );
    // Lower type first: protocol (3) before destination port (5).
    let dport = Component::DestinationPort(vec![NumericMatch::eq(80)]);
    assert_eq!(
        r(vec![dst("192.0.2.0/24"), dport]).precedence(&r(vec![dst("192.0.2.0/24"), proto(17)])),
        Greater
    );
    // Same type: encodings compared as strings (81 06 < 81 11).
    assert_eq!(
        r(vec![dst("192.0.2.0/24"), proto(6)]).precedence(&r(vec![dst("192.0.2.0/24"), proto(17)])),
        Less
    );
    // 01 50 ... (not last term) sorts before 81 50.
    let one = Component::Port(vec![NumericMatch::eq(80)]);
    let two = Component::Port(vec![NumericMatch::eq(80), NumericMatch::eq(443)]);
    assert_eq!(
        r(vec![dst("192.0.2.0/24"), one]).precedence(&r(vec![dst("192.0.2.0/24"), two])),
        Greater
    );
    let a = r(vec![dst("192.0.2.0/24"), proto(6)]);
    assert_eq!(a.precedence(&a.clone()), std::cmp::Ordering::Equal);
}

#[test]
fn routes_serialize_and_deserialize_through_the_checks() {
    for route in [
        route_v4(),
        Route::blackhole("2001:db8::5".parse().unwrap()),
        Route::flowspec(
            FlowSpec::new(
                IpFamily::Ipv6,
                vec![
                    Component::DestinationPrefix(v6_offset("::1234:5678:9a00:0/104", 65)),
                    Component::FlowLabel(vec![NumericMatch::eq(7)]),
                ],
            )
            .unwrap(),
            vec![
                Action::TrafficMarking { dscp: 10 },
                Action::TrafficAction {
                    sample: true,
                    terminal: false,
                },
            ],
        )
        .unwrap(),
    ] {
        let json = serde_json::to_string(&route).unwrap();
        let back: Route = serde_json::from_str(&json).unwrap();
        assert_eq!(back, route, "{json}");
    }
    // A stored rule that breaks the rules is refused on load.
    let dup = r#"{"type":"flow-spec","rule":{"family":"ipv4","components":[
        {"destination-prefix":"192.0.2.0/24"},{"destination-prefix":"192.0.2.0/25"}]},
        "actions":[{"action":"traffic-rate-bytes","id":0,"rate":0.0}]}"#;
    let err = serde_json::from_str::<Route>(dup).unwrap_err();
    assert!(err.to_string().contains("more than once"), "{err}");
}

// ---- Actions ------------------------------------------------------------

#[test]
fn action_communities_match_rfc8955_section_7() {
    let cases = [
        (Action::DISCARD, "80 06 00 00 00 00 00 00"),
        (
            // 1000.0f32 = 0x447a0000
            Action::TrafficRateBytes {
                id: 65001,
                rate: 1000.0,
            },
            "80 06 fd e9 44 7a 00 00",
        ),
        (
            Action::TrafficRatePackets { id: 0, rate: 1.0 },
            "80 0c 00 00 3f 80 00 00",
        ),
        (
            Action::TrafficAction {
                sample: true,
                terminal: true,
            },
            "80 07 00 00 00 00 00 03",
        ),
        (
            Action::TrafficAction {
                sample: true,
                terminal: false,
            },
            "80 07 00 00 00 00 00 02",
        ),
        (
            Action::RedirectAs2 {
                asn: 65000,
                local: 100,
            },
            "80 08 fd e8 00 00 00 64",
        ),
        (
            Action::RedirectIpv4 {
                addr: Ipv4Addr::new(192, 0, 2, 1),
                local: 7,
            },
            "81 08 c0 00 02 01 00 07",
        ),
        (
            Action::RedirectAs4 {
                asn: 4_200_000_000,
                local: 9,
            },
            "82 08 fa 56 ea 00 00 09",
        ),
        (
            Action::TrafficMarking { dscp: 46 },
            "80 09 00 00 00 00 00 2e",
        ),
    ];
    for (action, bytes) in cases {
        let c = action.to_community();
        assert_eq!(c.0.to_vec(), hex(bytes), "{action}");
        assert_eq!(Action::from_community(c).unwrap(), action);
    }
    assert!(Action::TrafficMarking { dscp: 64 }.check().is_err());
    assert!(
        Action::TrafficRateBytes {
            id: 0,
            rate: f32::NAN
        }
        .check()
        .is_err()
    );
    assert!(
        Action::check_set(&[
            Action::DISCARD,
            Action::TrafficRateBytes { id: 0, rate: 5.0 }
        ])
        .is_err()
    );
}

// ---- Messages -----------------------------------------------------------

fn route_v4() -> Route {
    Route::flowspec(
        FlowSpec::new(
            IpFamily::Ipv4,
            vec![
                dst("192.0.2.1/32"),
                Component::IpProtocol(vec![NumericMatch::eq(17)]),
                Component::SourcePort(vec![NumericMatch::eq(53)]),
            ],
        )
        .unwrap(),
        vec![Action::DISCARD],
    )
    .unwrap()
}

/// The full iBGP UPDATE for a flow spec rule, byte for byte: MP_REACH
/// first with a 0-length next hop, ORIGIN IGP, empty AS_PATH, LOCAL_PREF,
/// the discard community. The NLRI bytes are those docs/bgp.md §1.1 saw
/// accepted by gobgpd, BIRD, ExaBGP and FRR.
#[test]
fn flowspec_update_golden() {
    let u = update::announce(&route_v4(), &ibgp()).unwrap();
    let wire = Message::Update(u).encode();
    let want = hex("ff ff ff ff ff ff ff ff ff ff ff ff ff ff ff ff 00 45 02 \
         00 00 00 2e \
         80 0e 12 00 01 85 00 00 0c 01 20 c0 00 02 01 03 81 11 06 81 35 \
         40 01 01 00 \
         40 02 00 \
         40 05 04 00 00 00 64 \
         c0 10 08 80 06 00 00 00 00 00 00");
    assert_eq!(wire, want);
    let w = Message::Update(update::withdraw(&route_v4().key())).encode();
    assert_eq!(
        w[19..],
        hex("00 00 00 13 80 0f 10 00 01 85 0c 01 20 c0 00 02 01 03 81 11 06 81 35")[..]
    );
}

#[test]
fn ebgp_as_path_and_as4_path() {
    let u = update::announce(&route_v4(), &ebgp()).unwrap();
    let attrs = u.attributes(true).unwrap();
    assert!(attrs.contains(&PathAttribute::AsPath {
        segments: vec![super::attribute::AsPathSegment::Sequence(vec![65001])],
        four_octet: true
    }));
    assert!(
        !attrs
            .iter()
            .any(|a| matches!(a, PathAttribute::LocalPref(_)))
    );
    // A 4-octet AS to a 2-octet peer: AS_TRANS in AS_PATH, the AS in AS4_PATH.
    let p = SessionParams {
        local_asn: 4_200_000_001,
        four_octet: false,
        ..ebgp()
    };
    let u = update::announce(&route_v4(), &p).unwrap();
    let attrs = u.attributes(false).unwrap();
    assert!(attrs.contains(&PathAttribute::AsPath {
        segments: vec![super::attribute::AsPathSegment::Sequence(vec![23456])],
        four_octet: false
    }));
    assert!(attrs.contains(&PathAttribute::As4Path(vec![
        super::attribute::AsPathSegment::Sequence(vec![4_200_000_001])
    ])));
}

#[test]
fn blackhole_updates() {
    let mut p = ebgp();
    p.blackhole_communities = vec![Community::new(65001, 666)];
    let v4 = Route::blackhole("192.0.2.9".parse().unwrap());
    let u = update::announce(&v4, &p).unwrap();
    assert_eq!(u.nlri, hex("20 c0 00 02 09"));
    let attrs = u.attributes(true).unwrap();
    assert!(attrs.contains(&PathAttribute::NextHop(Ipv4Addr::new(192, 0, 2, 254))));
    assert!(attrs.contains(&PathAttribute::Communities(vec![
        Community::BLACKHOLE,
        Community::NO_EXPORT,
        Community::new(65001, 666)
    ])));
    let w = update::withdraw(&v4.key());
    assert_eq!(w.withdrawn, hex("20 c0 00 02 09"));

    let v6 = Route::blackhole("2001:db8::9".parse().unwrap());
    let u = update::announce(&v6, &p).unwrap();
    assert!(u.nlri.is_empty());
    let attrs = u.attributes(true).unwrap();
    let PathAttribute::MpReach {
        family,
        next_hop,
        nlri,
    } = &attrs[0]
    else {
        panic!("MP_REACH first: {attrs:?}")
    };
    assert_eq!(*family, (2, 1));
    assert_eq!(next_hop[..], "100::1".parse::<Ipv6Addr>().unwrap().octets());
    assert_eq!(nlri[0], 128);

    // A martian next hop is never sent.
    p.next_hop_v4 = Some(Ipv4Addr::LOCALHOST);
    assert!(matches!(
        update::announce(&v4, &p),
        Err(RouteError::EncodingCheck(_))
    ));
}

#[test]
fn route_checks() {
    let ours = [net("192.0.2.0/24"), net("2001:db8::/32")];
    assert!(route_v4().check(&ours).is_ok());
    assert!(matches!(
        route_v4().check(&[net("198.51.100.0/24")]),
        Err(RouteError::OutsideNetworks(_))
    ));
    let no_dst = Route::flowspec(
        FlowSpec::new(
            IpFamily::Ipv4,
            vec![Component::IpProtocol(vec![NumericMatch::eq(17)])],
        )
        .unwrap(),
        vec![Action::DISCARD],
    )
    .unwrap();
    assert_eq!(no_dst.check(&ours), Err(RouteError::NoDestination));
    let wide = Route::Blackhole {
        prefix: net("192.0.2.0/24"),
    };
    assert!(matches!(
        wide.check(&ours),
        Err(RouteError::BlackholeNotHost(_))
    ));
    assert!(
        Route::blackhole("203.0.113.1".parse().unwrap())
            .check(&ours)
            .is_err()
    );
    assert!(
        Route::flowspec(
            FlowSpec::new(IpFamily::Ipv4, vec![dst("192.0.2.0/24")]).unwrap(),
            vec![]
        )
        .is_err()
    );
    assert_eq!(
        route_v4().to_string(),
        "flow4 { dst 192.0.2.1/32; proto ==17; sport ==53 } then discard"
    );
}

#[test]
fn open_round_trip_and_errors() {
    let open = Open {
        version: 4,
        my_as: 23456,
        hold_time: 90,
        bgp_id: Ipv4Addr::new(192, 0, 2, 10),
        capabilities: vec![
            Capability::family(Family::Ipv4Unicast),
            Capability::family(Family::Ipv6Unicast),
            Capability::family(Family::Ipv4FlowSpec),
            Capability::family(Family::Ipv6FlowSpec),
            Capability::RouteRefresh,
            Capability::FourOctetAs(4_200_000_000),
            Capability::GracefulRestart {
                restart_state: false,
                notification: false,
                restart_time: 120,
                families: vec![(1, 133, false)],
            },
        ],
    };
    let wire = Message::Open(open.clone()).encode();
    let back = Message::decode(&wire).unwrap();
    assert_eq!(back, Message::Open(open.clone()));
    let Message::Open(o) = back else { panic!() };
    assert_eq!(o.asn(), 4_200_000_000);

    // routecore reads the same OPEN.
    let rc = routecore::bgp::message::Message::from_octets(wire.as_slice(), None).unwrap();
    let routecore::bgp::message::Message::Open(rc) = rc else {
        panic!("routecore: not an OPEN")
    };
    assert_eq!(rc.holdtime(), 90);
    assert!(rc.four_octet_capable());
    assert_eq!(rc.my_asn().into_u32(), 4_200_000_000);
    assert_eq!(rc.multiprotocol_ids().count(), 4);

    // Version 3 -> 2/1; hold time errors are checked by the session.
    let mut v3 = wire.clone();
    v3[19] = 3;
    let e = Message::decode(&v3).unwrap_err();
    assert_eq!((e.code, e.subcode, e.data.clone()), (2, 1, vec![0, 4]));
    // Unknown optional parameter type 1 (authentication) -> 2/4.
    let mut p1 = wire.clone();
    p1[29] = 1;
    assert_eq!(Message::decode(&p1).unwrap_err().subcode, 4);
}

#[test]
fn header_errors_map_to_notifications() {
    let ka = Message::Keepalive.encode();
    assert_eq!(ka.len(), 19);
    let mut bad_marker = ka.clone();
    bad_marker[3] = 0;
    assert_eq!(
        Message::frame_len(&bad_marker).map_err(|e| (e.code, e.subcode)),
        Err((1, 1))
    );
    let mut bad_len = ka.clone();
    bad_len[17] = 20;
    assert_eq!(
        Message::frame_len(&bad_len).map_err(|e| (e.code, e.subcode)),
        Err((1, 2))
    );
    let mut bad_type = ka.clone();
    bad_type[18] = 9;
    let e = Message::frame_len(&bad_type).unwrap_err();
    assert_eq!((e.code, e.subcode, e.data), (1, 3, vec![9]));
    assert_eq!(Message::frame_len(&ka[..10]), Ok(None));
    // An UPDATE whose attribute length overruns -> 3/1.
    let mut u = Message::Update(Update::default()).encode();
    u[22] = 9;
    assert_eq!(Message::decode(&u).unwrap_err().subcode, 1);
}

#[test]
fn notification_shutdown_text() {
    let n = Notification::shutdown("maintenance window");
    assert_eq!((n.code, n.subcode), (6, 2));
    assert_eq!(n.data[0] as usize, "maintenance window".len());
    assert_eq!(n.communication().as_deref(), Some("maintenance window"));
    assert_eq!(
        n.to_string(),
        "6/2 Cease, Administrative Shutdown: \"maintenance window\""
    );
    // Over 255 octets: cut at a character boundary.
    let long = "é".repeat(200);
    let n = Notification::shutdown(&long);
    assert_eq!(n.data[0], 254);
    assert!(n.communication().is_some());
    let wire = Message::Notification(n.clone()).encode();
    assert_eq!(Message::decode(&wire).unwrap(), Message::Notification(n));
    assert_eq!(
        Notification::new(4, 0).to_string(),
        "4/0 Hold Timer Expired"
    );
}

#[test]
fn end_of_rib_markers() {
    assert_eq!(
        Message::Update(Update::end_of_rib(Family::Ipv4Unicast))
            .encode()
            .len(),
        23
    );
    let eor = Message::Update(Update::end_of_rib(Family::Ipv6FlowSpec)).encode();
    assert_eq!(eor[19..], hex("00 00 00 06 80 0f 03 00 02 85")[..]);
    let cfg = routecore::bgp::message::SessionConfig::modern();
    for f in Family::ALL {
        let wire = Message::Update(Update::end_of_rib(f)).encode();
        let rc =
            routecore::bgp::message::UpdateMessage::from_octets(wire.as_slice(), &cfg).unwrap();
        let (afi, safi) = f.codes();
        let got = rc.is_eor().unwrap().expect("routecore sees an End-of-RIB");
        assert_eq!(got, routecore::bgp::types::AfiSafiType::from((afi, safi)));
    }
}

// ---- routecore round trip -------------------------------------------------

/// What routecore reads in an UPDATE: flow spec NLRI (raw, without the
/// length), extended communities, standard communities, unicast prefixes.
type RoutecoreView = (Vec<Vec<u8>>, Vec<[u8; 8]>, Vec<[u8; 4]>, Vec<String>);

fn routecore_view(update: &Update) -> RoutecoreView {
    use routecore::bgp::{
        message::{SessionConfig, UpdateMessage},
        nlri::{afisafi::Nlri, flowspec::FlowSpecNlri},
    };
    let wire = Message::Update(update.clone()).encode();
    let cfg = SessionConfig::modern();
    let rc =
        UpdateMessage::from_octets(wire.as_slice(), &cfg).expect("routecore parses the UPDATE");
    let mut flows = Vec::new();
    let mut unicast = Vec::new();
    for n in rc.announcements_vec().expect("routecore parses every NLRI") {
        match n {
            Nlri::Ipv4FlowSpec(f) => flows.push(FlowSpecNlri::from(f).raw().to_vec()),
            Nlri::Ipv6FlowSpec(f) => flows.push(FlowSpecNlri::from(f).raw().to_vec()),
            Nlri::Ipv4Unicast(p) => unicast.push(p.to_string()),
            Nlri::Ipv6Unicast(p) => unicast.push(p.to_string()),
            other => panic!("unexpected NLRI {other:?}"),
        }
    }
    let ecs = rc
        .ext_communities()
        .unwrap()
        .map(|i| i.map(|c| c.to_raw()).collect())
        .unwrap_or_default();
    let cs = rc
        .communities()
        .unwrap()
        .map(|i| i.map(|c| c.to_raw()).collect())
        .unwrap_or_default();
    assert!(rc.origin().unwrap().is_some());
    (flows, ecs, cs, unicast)
}

#[test]
fn routecore_parses_our_flowspec_and_rtbh() {
    let actions = [
        Action::DISCARD,
        Action::TrafficRateBytes {
            id: 1,
            rate: 12_500_000.0,
        },
        Action::TrafficRatePackets {
            id: 0,
            rate: 1000.0,
        },
        Action::TrafficAction {
            sample: true,
            terminal: false,
        },
        Action::RedirectAs2 {
            asn: 65000,
            local: 1,
        },
        Action::RedirectAs4 {
            asn: 4_200_000_000,
            local: 1,
        },
        Action::RedirectIpv4 {
            addr: Ipv4Addr::new(192, 0, 2, 1),
            local: 1,
        },
        Action::TrafficMarking { dscp: 8 },
    ];
    for action in actions {
        for (family, d) in [
            (IpFamily::Ipv4, "192.0.2.0/28"),
            (IpFamily::Ipv6, "2001:db8::/64"),
        ] {
            let rule = FlowSpec::new(
                family,
                vec![
                    dst(d),
                    Component::IpProtocol(vec![NumericMatch::eq(6)]),
                    Component::TcpFlags(vec![BitmaskMatch::all(tcp_flags::SYN)]),
                    Component::PacketLength(vec![NumericMatch::or(NumericOp::Ge, 1000)]),
                ],
            )
            .unwrap();
            let route = Route::flowspec(rule.clone(), vec![action]).unwrap();
            for p in [ebgp(), ibgp()] {
                let u = update::announce(&route, &p).unwrap();
                let (flows, ecs, _, _) = routecore_view(&u);
                assert_eq!(flows, vec![rule.encode_nlri()[1..].to_vec()], "{route}");
                assert_eq!(ecs, vec![action.to_community().0]);
            }
        }
    }
    for addr in ["192.0.2.7", "2001:db8::7"] {
        let route = Route::blackhole(addr.parse().unwrap());
        let u = update::announce(&route, &ebgp()).unwrap();
        let (flows, _, cs, unicast) = routecore_view(&u);
        assert!(flows.is_empty());
        assert_eq!(
            unicast,
            vec![route.key().to_string().replace("blackhole ", "")]
        );
        assert!(cs.contains(&0xffff_029a_u32.to_be_bytes()));
        assert!(cs.contains(&0xffff_ff01_u32.to_be_bytes()));
    }
}

#[test]
fn routecore_parses_our_withdrawals() {
    use routecore::bgp::message::{SessionConfig, UpdateMessage};
    let cfg = SessionConfig::modern();
    for route in [
        route_v4(),
        Route::blackhole("192.0.2.7".parse().unwrap()),
        Route::blackhole("2001:db8::7".parse().unwrap()),
    ] {
        let wire = Message::Update(update::withdraw(&route.key())).encode();
        let rc = UpdateMessage::from_octets(wire.as_slice(), &cfg).unwrap();
        assert_eq!(rc.withdrawals_vec().unwrap().len(), 1, "{route}");
        assert_eq!(rc.announcements_vec().unwrap().len(), 0);
    }
}

// ---- Property: random rules round-trip through both decoders ------------

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn numeric(max: u64) -> impl Strategy<Value = Vec<NumericMatch>> {
        prop::collection::vec(
            (any::<bool>(), 0u8..8, 0..=max).prop_map(|(and, op, value)| NumericMatch {
                and,
                op: [
                    NumericOp::False,
                    NumericOp::Eq,
                    NumericOp::Gt,
                    NumericOp::Ge,
                    NumericOp::Lt,
                    NumericOp::Le,
                    NumericOp::Ne,
                    NumericOp::True,
                ][op as usize],
                value,
            }),
            1..4,
        )
        .prop_map(|mut v| {
            // The AND bit of the first term carries nothing: canonical is 0.
            v[0].and = false;
            v
        })
    }

    fn bitmask(max: u16) -> impl Strategy<Value = Vec<BitmaskMatch>> {
        prop::collection::vec(
            (any::<bool>(), any::<bool>(), any::<bool>(), 0..=max).prop_map(
                |(and, not, all, bits)| BitmaskMatch {
                    and,
                    not,
                    all,
                    bits,
                },
            ),
            1..3,
        )
        .prop_map(|mut v| {
            v[0].and = false;
            v
        })
    }

    fn v4_rule() -> impl Strategy<Value = FlowSpec> {
        (
            any::<u32>(),
            0u8..=32,
            prop::option::of(numeric(255)),
            prop::option::of(numeric(65535)),
            prop::option::of(bitmask(0xfff)),
            prop::option::of(numeric(63)),
            prop::option::of(bitmask(0x0f)),
        )
            .prop_map(|(addr, len, proto, port, flags, dscp, frag)| {
                let p = ipnet::Ipv4Net::new(addr.into(), len).unwrap().trunc();
                let mut c = vec![Component::DestinationPrefix(FlowPrefix::V4(p))];
                c.extend(proto.map(Component::IpProtocol));
                c.extend(port.map(Component::DestinationPort));
                c.extend(flags.map(Component::TcpFlags));
                c.extend(dscp.map(Component::Dscp));
                c.extend(frag.map(Component::Fragment));
                FlowSpec::new(IpFamily::Ipv4, c).unwrap()
            })
    }

    fn v6_rule() -> impl Strategy<Value = FlowSpec> {
        (
            any::<u128>(),
            1u8..=128,
            0u8..128,
            prop::option::of(numeric(0xfffff)),
        )
            .prop_map(|(addr, len, off, label)| {
                let offset = off % len;
                let masked = addr & (u128::MAX >> offset);
                let p = ipnet::Ipv6Net::new(masked.into(), len).unwrap().trunc();
                let mut c = vec![Component::DestinationPrefix(FlowPrefix::V6 {
                    prefix: p,
                    offset,
                })];
                c.extend(label.map(Component::FlowLabel));
                FlowSpec::new(IpFamily::Ipv6, c).unwrap()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn v4_rules_round_trip(rule in v4_rule()) {
            let bytes = rule.encode_nlri();
            let (back, used) = FlowSpec::decode_nlri(IpFamily::Ipv4, &bytes).unwrap();
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(&back, &rule);
            let route = Route::flowspec(rule.clone(), vec![Action::DISCARD]).unwrap();
            let u = update::announce(&route, &ebgp()).unwrap();
            let (flows, _, _, _) = routecore_view(&u);
            let header = if bytes[0] >= 0xf0 { 2 } else { 1 };
            prop_assert_eq!(flows, vec![bytes[header..].to_vec()]);
        }

        #[test]
        fn v6_rules_round_trip(rule in v6_rule()) {
            let bytes = rule.encode_nlri();
            let (back, used) = FlowSpec::decode_nlri(IpFamily::Ipv6, &bytes).unwrap();
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(back, rule);
        }

        /// Any body behind a valid header never panics the decoder; what
        /// decodes re-encodes to the same bytes.
        #[test]
        fn message_bodies_never_panic(kind in 1u8..=5, body in prop::collection::vec(any::<u8>(), 0..80)) {
            let mut frame = vec![0xff; 16];
            frame.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
            frame.push(kind);
            frame.extend_from_slice(&body);
            if let Ok(m) = Message::decode(&frame) {
                if !matches!(m, Message::Open(_)) {
                    prop_assert_eq!(m.encode(), frame);
                }
                if let Message::Update(u) = m {
                    let _ = u.attributes(true);
                    let _ = u.attributes(false);
                }
            }
        }

        /// Arbitrary bytes never panic the decoder, and whatever decodes
        /// re-encodes to the same bytes (so the decoder is as strict as
        /// the encoder is canonical) unless it used a non-minimal value
        /// length or padding.
        #[test]
        fn decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..40)) {
            for family in [IpFamily::Ipv4, IpFamily::Ipv6] {
                let _ = FlowSpec::decode_nlri(family, &bytes);
            }
            let _ = Message::decode(&bytes);
            let _ = PathAttribute::decode_all(&bytes, true);
        }
    }
}

// ---- Config -------------------------------------------------------------

const EXAMPLE: &str = r#"
router_id = "192.0.2.10"
local_asn = 65001
announce_within = ["192.0.2.0/24", "2001:db8::/32"]

[[peers]]
name = "edge1"
address = "198.51.100.1"
peer_asn = 65000
families = ["ipv4-flowspec", "ipv4-unicast", "ipv6-unicast"]
next_hop_v4 = "192.0.2.1"
next_hop_v6 = "100::1"
communities = ["65001:100"]
md5_password = "secret"
graceful_restart = 120

[peers.flowspec]
components = ["destination-prefix", "ip-protocol", "destination-port", "packet-length"]
actions = ["discard", "traffic-rate-bytes"]
max_rules = 500
"#;

#[test]
fn speaker_outside_a_runtime_is_an_error() {
    let c = super::BgpConfig::from_toml(EXAMPLE).unwrap();
    assert!(matches!(
        super::Speaker::start(c),
        Err(super::StartError::NoRuntime)
    ));
}

#[test]
fn config_example_parses() {
    let c = super::BgpConfig::from_toml(EXAMPLE).unwrap();
    let p = &c.peers[0];
    assert_eq!(p.port, 179);
    assert_eq!(p.hold_time, 90);
    assert_eq!(p.flowspec.max_rules, 500);
    assert_eq!(p.communities, vec![Community::new(65001, 100)]);
    assert!(p.no_export);
}

/// The example in `config.rs`'s documentation is a working config.
#[test]
fn config_doc_example_parses() {
    let source = include_str!("config.rs");
    let mut inside = false;
    let mut text = String::new();
    for line in source.lines().filter_map(|l| l.strip_prefix("//!")) {
        let line = line.strip_prefix(' ').unwrap_or(line);
        match line {
            "```toml" => inside = true,
            "```" => inside = false,
            "[bgp]" => {}
            l if inside => {
                text.push_str(&l.replace("[bgp.peers", "[peers"));
                text.push('\n');
            }
            _ => {}
        }
    }
    let c = super::BgpConfig::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(c.peers[0].flowspec.dialect().actions.len(), 2);
    assert_eq!(c.peers[0].graceful_restart, Some(120));
}

#[test]
fn config_errors_name_the_key() {
    let err = |from: &str, to: &str| {
        let text = EXAMPLE.replacen(from, to, 1);
        super::BgpConfig::from_toml(&text).unwrap_err()
    };
    assert_eq!(
        err("next_hop_v4 = \"192.0.2.1\"", "next_hop_v4 = \"127.0.0.1\"").key,
        "bgp.peers[edge1].next_hop_v4"
    );
    assert_eq!(
        err("next_hop_v6 = \"100::1\"\n", "").key,
        "bgp.peers[edge1].next_hop_v6"
    );
    assert_eq!(
        err("peer_asn = 65000", "peer_asn = 65000\nhold_time = 2").key,
        "bgp.peers[edge1].hold_time"
    );
    assert_eq!(
        err(
            "announce_within = [\"192.0.2.0/24\", \"2001:db8::/32\"]",
            "announce_within = []"
        )
        .key,
        "bgp.announce_within"
    );
    assert_eq!(
        err("peer_asn = 65000", "peer_asn = 23456").key,
        "bgp.peers[edge1].peer_asn"
    );
    let unknown = err("peer_asn = 65000", "peer_asn = 65000\nholdtime = 9");
    assert!(unknown.message.contains("holdtime"), "{unknown}");
    let bad_comm = err("65001:100", "65001:70000");
    assert!(bad_comm.message.contains("65001:70000"), "{bad_comm}");
    assert_eq!(
        err("\"destination-prefix\", ", "").key,
        "bgp.peers[edge1].flowspec.components"
    );
}

// ---- Speaker: per-peer capability checks (no session needed) -------------

#[test]
fn speaker_is_send_and_sync() {
    fn shareable<T: Send + Sync>() {}
    shareable::<super::Speaker>();
}

/// Two routers, one without flow spec: the rule goes to one, and the
/// caller's RTBH fallback to the other only.
#[tokio::test]
async fn fallback_to_rtbh_for_the_refusing_peer() {
    let mut c = speaker_config(9);
    let mut other = c.peers[0].clone();
    other.name = "rtbh-only".into();
    other.port = 10;
    other.families = vec![Family::Ipv4Unicast];
    c.peers.push(other);
    let speaker = super::Speaker::start(c).unwrap();
    let rule = FlowSpec::new(IpFamily::Ipv4, vec![dst("192.0.2.3/32")]).unwrap();
    let a = speaker
        .announce(Route::flowspec(rule, vec![Action::DISCARD]).unwrap())
        .unwrap();
    let refused: Vec<&str> = a.refused().into_iter().map(|(p, _)| p).collect();
    assert_eq!(refused, ["rtbh-only"]);
    let b = speaker
        .announce_to(&refused, Route::blackhole("192.0.2.3".parse().unwrap()))
        .unwrap();
    assert_eq!(
        b.peers,
        vec![("rtbh-only".to_string(), super::Outcome::Accepted)]
    );
    let st = speaker.status();
    assert_eq!((st[0].flowspec_rules, st[0].adj_rib_out), (1, 1));
    assert_eq!((st[1].flowspec_rules, st[1].adj_rib_out), (0, 1));
    speaker.shutdown(false).await;
}

fn speaker_config(port: u16) -> super::BgpConfig {
    let mut c = super::BgpConfig::from_toml(EXAMPLE).unwrap();
    // A loopback port nobody listens on: the session just retries.
    c.peers[0].address = IpAddr::V4(Ipv4Addr::LOCALHOST);
    c.peers[0].port = port;
    c.peers[0].md5_password = None;
    c
}

#[tokio::test]
async fn speaker_refuses_what_the_router_cannot_take() {
    let speaker = super::Speaker::start(speaker_config(9)).unwrap();
    assert_eq!(speaker.status()[0].advertised, 0);
    // A component the router lacks -> refused with the reason (caller falls
    // back to RTBH, which is accepted).
    let with_sport = route_v4();
    let a = speaker.announce(with_sport).unwrap();
    assert!(matches!(
        a.refused()[0].1,
        super::RejectReason::ComponentNotSupported {
            component: super::ComponentKind::SourcePort
        }
    ));
    let rtbh = Route::blackhole("192.0.2.1".parse().unwrap());
    assert!(speaker.announce(rtbh.clone()).unwrap().accepted_by_all());
    assert_eq!(
        speaker.announce(rtbh.clone()).unwrap().peers[0].1,
        super::Outcome::Unchanged
    );
    // An action it lacks.
    let rule = FlowSpec::new(IpFamily::Ipv4, vec![dst("192.0.2.2/32")]).unwrap();
    let marked = Route::flowspec(rule.clone(), vec![Action::TrafficMarking { dscp: 0 }]).unwrap();
    assert!(matches!(
        speaker.announce(marked).unwrap().refused()[0].1,
        super::RejectReason::ActionNotSupported { .. }
    ));
    // A family it lacks.
    let v6 = Route::flowspec(
        FlowSpec::new(IpFamily::Ipv6, vec![dst("2001:db8::1/128")]).unwrap(),
        vec![Action::DISCARD],
    )
    .unwrap();
    assert!(matches!(
        speaker.announce(v6).unwrap().refused()[0].1,
        super::RejectReason::FamilyNotConfigured { .. }
    ));
    // Outside our networks: an error for every peer.
    assert!(matches!(
        speaker.announce(Route::blackhole("203.0.113.1".parse().unwrap())),
        Err(RouteError::OutsideNetworks(_))
    ));
    // Discard is traffic-rate-bytes 0: accepted.
    let drop = Route::flowspec(rule, vec![Action::DISCARD]).unwrap();
    assert!(speaker.announce(drop.clone()).unwrap().accepted_by_all());
    let st = &speaker.status()[0];
    assert_eq!((st.adj_rib_out, st.flowspec_rules), (2, 1));
    assert_eq!(speaker.withdraw(&drop), 1);
    assert_eq!(speaker.withdraw(&drop), 0);
    assert_eq!(speaker.status()[0].adj_rib_out, 1);
    speaker.shutdown(true).await;
}

#[tokio::test]
async fn speaker_enforces_max_rules() {
    let mut c = speaker_config(9);
    c.peers[0].flowspec.max_rules = 2;
    let speaker = super::Speaker::start(c).unwrap();
    let rule = |i: u8| {
        Route::flowspec(
            FlowSpec::new(IpFamily::Ipv4, vec![dst(&format!("192.0.2.{i}/32"))]).unwrap(),
            vec![Action::DISCARD],
        )
        .unwrap()
    };
    assert!(speaker.announce(rule(1)).unwrap().accepted_by_all());
    assert!(speaker.announce(rule(2)).unwrap().accepted_by_all());
    assert!(matches!(
        speaker.announce(rule(3)).unwrap().refused()[0].1,
        super::RejectReason::MaxRules { max: 2 }
    ));
    // Replacing an existing rule's actions is not a new rule.
    let replaced = Route::flowspec(
        FlowSpec::new(IpFamily::Ipv4, vec![dst("192.0.2.1/32")]).unwrap(),
        vec![Action::TrafficRateBytes { id: 0, rate: 100.0 }],
    )
    .unwrap();
    assert_eq!(
        speaker.announce(replaced).unwrap().peers[0].1,
        super::Outcome::Accepted
    );
    speaker.shutdown(false).await;
}

// ---- Session against a scripted peer: faults real daemons don't make ----

pub(super) mod scripted {
    use std::time::Duration;

    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::{TcpListener, TcpStream},
    };

    use super::*;
    use crate::bgp::{SessionState, Speaker};

    const T: Duration = Duration::from_secs(10);

    /// A speaker whose one peer is our listener on 127.0.0.1.
    async fn speaker_and_peer() -> (Speaker, TcpListener) {
        speaker_and_peer_holding(9).await
    }

    /// [`speaker_and_peer`] with the hold time `hold_time`.
    pub(in crate::bgp) async fn speaker_and_peer_holding(hold_time: u16) -> (Speaker, TcpListener) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let config = super::super::BgpConfig::from_toml(&format!(
            r#"
router_id = "192.0.2.10"
local_asn = 65001
announce_within = ["192.0.2.0/24", "2001:db8::/32"]
[[peers]]
name = "scripted"
address = "127.0.0.1"
port = {port}
peer_asn = 65000
hold_time = {hold_time}
connect_retry = 1
connect_retry_max = 1
families = ["ipv4-flowspec", "ipv4-unicast", "ipv6-flowspec"]
next_hop_v4 = "192.0.2.254"
"#
        ))
        .unwrap();
        (Speaker::start(config).unwrap(), listener)
    }

    pub(in crate::bgp) async fn accept(listener: &TcpListener) -> TcpStream {
        tokio::time::timeout(T, listener.accept())
            .await
            .expect("the speaker connects")
            .unwrap()
            .0
    }

    pub(in crate::bgp) async fn read(stream: &mut TcpStream) -> Message {
        let mut header = [0u8; 19];
        tokio::time::timeout(T, stream.read_exact(&mut header))
            .await
            .expect("a message")
            .unwrap();
        let len = usize::from(u16::from_be_bytes([header[16], header[17]]));
        let mut frame = header.to_vec();
        frame.resize(len, 0);
        stream.read_exact(&mut frame[19..]).await.unwrap();
        Message::decode(&frame).unwrap()
    }

    pub(in crate::bgp) async fn send(stream: &mut TcpStream, m: &Message) {
        stream.write_all(&m.encode()).await.unwrap();
    }

    fn peer_open(asn: u16, hold: u16, families: &[Family]) -> Message {
        let mut capabilities: Vec<Capability> =
            families.iter().map(|f| Capability::family(*f)).collect();
        capabilities.push(Capability::FourOctetAs(u32::from(asn)));
        capabilities.push(Capability::RouteRefresh);
        Message::Open(Open {
            version: 4,
            my_as: asn,
            hold_time: hold,
            bgp_id: Ipv4Addr::new(198, 51, 100, 1),
            capabilities,
        })
    }

    /// Reads our OPEN, answers `open`; returns our OPEN.
    async fn exchange_opens(stream: &mut TcpStream, open: Message) -> Open {
        let Message::Open(ours) = read(stream).await else {
            panic!("first message is not an OPEN")
        };
        send(stream, &open).await;
        ours
    }

    /// Full handshake; returns the stream in Established.
    async fn establish(listener: &TcpListener, families: &[Family]) -> (TcpStream, Open) {
        let mut s = accept(listener).await;
        let ours = exchange_opens(&mut s, peer_open(65000, 30, families)).await;
        send(&mut s, &Message::Keepalive).await;
        assert_eq!(read(&mut s).await, Message::Keepalive);
        (s, ours)
    }

    async fn wait_status(speaker: &Speaker, f: impl Fn(&super::super::PeerStatus) -> bool) -> bool {
        for _ in 0..100 {
            if f(&speaker.status()[0]) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_initial_table_and_end_of_rib() {
        let (speaker, listener) = speaker_and_peer().await;
        let flow = route_v4();
        let rtbh = Route::blackhole("192.0.2.50".parse().unwrap());
        let v6 = Route::flowspec(
            FlowSpec::new(IpFamily::Ipv6, vec![dst("2001:db8::1/128")]).unwrap(),
            vec![Action::DISCARD],
        )
        .unwrap();
        for r in [&flow, &rtbh, &v6] {
            assert!(speaker.announce(r.clone()).unwrap().accepted_by_all());
        }
        // The peer offers no IPv6 flow spec.
        let (mut s, ours) =
            establish(&listener, &[Family::Ipv4FlowSpec, Family::Ipv4Unicast]).await;
        assert_eq!((ours.version, ours.my_as, ours.hold_time), (4, 65001, 9));
        assert_eq!(ours.bgp_id, Ipv4Addr::new(192, 0, 2, 10));
        for c in [
            Capability::family(Family::Ipv4FlowSpec),
            Capability::family(Family::Ipv4Unicast),
            Capability::family(Family::Ipv6FlowSpec),
            Capability::RouteRefresh,
            Capability::FourOctetAs(65001),
        ] {
            assert!(
                ours.capabilities.contains(&c),
                "{c:?} not in {:?}",
                ours.capabilities
            );
        }
        // The whole Adj-RIB-Out, in family order, then End-of-RIB for each
        // family both sides have.
        let p = ebgp();
        let want = [
            update::announce(&flow, &p).unwrap(),
            update::announce(&rtbh, &p).unwrap(),
            Update::end_of_rib(Family::Ipv4FlowSpec),
            Update::end_of_rib(Family::Ipv4Unicast),
        ];
        for w in want {
            assert_eq!(read(&mut s).await, Message::Update(w));
        }
        assert!(wait_status(&speaker, |st| st.state == SessionState::Established).await);
        let st = &speaker.status()[0];
        let n = st.negotiated.as_ref().unwrap();
        assert_eq!(n.families, vec![Family::Ipv4Unicast, Family::Ipv4FlowSpec]);
        assert_eq!(n.hold_time, 9);
        assert_eq!((st.unsent_routes, st.advertised), (1, 2));
        // Announcing a family the session lacks is refused now.
        let v6b = Route::flowspec(
            FlowSpec::new(IpFamily::Ipv6, vec![dst("2001:db8::2/128")]).unwrap(),
            vec![Action::DISCARD],
        )
        .unwrap();
        assert!(matches!(
            speaker.announce(v6b).unwrap().refused()[0].1,
            super::super::RejectReason::FamilyNotNegotiated { .. }
        ));
        // A withdrawal goes out at once.
        speaker.withdraw(&flow);
        assert_eq!(
            read(&mut s).await,
            Message::Update(update::withdraw(&flow.key()))
        );
        // A ROUTE-REFRESH for IPv4 unicast re-sends that family.
        send(
            &mut s,
            &Message::RouteRefresh(super::super::message::RouteRefresh {
                afi: 1,
                subtype: 0,
                safi: 1,
            }),
        )
        .await;
        assert_eq!(
            read(&mut s).await,
            Message::Update(update::announce(&rtbh, &p).unwrap())
        );
        speaker.shutdown(true).await;
        // Withdraw all, then Cease with the shutdown text.
        assert_eq!(
            read(&mut s).await,
            Message::Update(update::withdraw(&rtbh.key()))
        );
        let Message::Notification(n) = read(&mut s).await else {
            panic!("no NOTIFICATION")
        };
        assert_eq!(n.communication().as_deref(), Some("edge-sensor shutdown"));
    }

    async fn refused_open(open: Message, want: (u8, u8)) {
        let (speaker, listener) = speaker_and_peer().await;
        let mut s = accept(&listener).await;
        exchange_opens(&mut s, open).await;
        let Message::Notification(n) = read(&mut s).await else {
            panic!("no NOTIFICATION")
        };
        assert_eq!((n.code, n.subcode), want, "{n}");
        let prefix = format!("{}/{}", want.0, want.1);
        assert!(
            wait_status(&speaker, |st| st
                .last_notification_sent
                .as_deref()
                .is_some_and(|t| t.starts_with(&prefix)))
            .await
        );
        // And it tries again.
        let _again = accept(&listener).await;
        speaker.shutdown(false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wrong_peer_as_is_refused_with_bad_peer_as() {
        refused_open(peer_open(65099, 30, &[Family::Ipv4FlowSpec]), (2, 2)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hold_time_two_is_refused() {
        refused_open(peer_open(65000, 2, &[Family::Ipv4FlowSpec]), (2, 6)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_marker_gets_header_error() {
        let (speaker, listener) = speaker_and_peer().await;
        let (mut s, _) = establish(&listener, &[Family::Ipv4FlowSpec]).await;
        let _eor = read(&mut s).await;
        let mut ka = Message::Keepalive.encode();
        ka[0] = 0;
        s.write_all(&ka).await.unwrap();
        let Message::Notification(n) = read(&mut s).await else {
            panic!("no NOTIFICATION")
        };
        assert_eq!((n.code, n.subcode), (1, 1));
        speaker.shutdown(false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_in_established_is_an_fsm_error() {
        let (speaker, listener) = speaker_and_peer().await;
        let (mut s, _) = establish(&listener, &[Family::Ipv4FlowSpec]).await;
        let _eor = read(&mut s).await;
        send(&mut s, &peer_open(65000, 30, &[Family::Ipv4FlowSpec])).await;
        let Message::Notification(n) = read(&mut s).await else {
            panic!("no NOTIFICATION")
        };
        assert_eq!((n.code, n.subcode), (5, 3));
        speaker.shutdown(false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn peer_shutdown_text_is_recorded_and_we_reconnect() {
        let (speaker, listener) = speaker_and_peer().await;
        let (mut s, _) = establish(&listener, &[Family::Ipv4FlowSpec]).await;
        let _eor = read(&mut s).await;
        send(
            &mut s,
            &Message::Notification(Notification::shutdown("router maintenance")),
        )
        .await;
        drop(s);
        assert!(
            wait_status(&speaker, |st| st.last_notification_received.as_deref()
                == Some(
                    "6/2 Cease, Administrative Shutdown: \"router maintenance\""
                ))
            .await
        );
        let (_s2, _) = establish(&listener, &[Family::Ipv4FlowSpec]).await;
        assert!(wait_status(&speaker, |st| st.established_count == 2).await);
        speaker.shutdown(false).await;
    }

    /// NOTIFICATION 2/7 naming a capability (here IPv6 flow spec): the
    /// next OPEN leaves it out (RFC 5492 §5) and the session comes up.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unsupported_capability_is_left_out_next_time() {
        let (speaker, listener) = speaker_and_peer().await;
        let mut s = accept(&listener).await;
        let Message::Open(first) = read(&mut s).await else {
            panic!("no OPEN")
        };
        let v6fs = Capability::family(Family::Ipv6FlowSpec);
        assert!(first.capabilities.contains(&v6fs));
        let mut data = Vec::new();
        v6fs.encode(&mut data);
        let mut n = Notification::new(2, 7);
        n.data = data;
        send(&mut s, &Message::Notification(n)).await;
        drop(s);
        let (_s, second) = establish(&listener, &[Family::Ipv4FlowSpec]).await;
        assert!(
            !second.capabilities.contains(&v6fs),
            "{:?}",
            second.capabilities
        );
        assert!(
            second
                .capabilities
                .contains(&Capability::family(Family::Ipv4FlowSpec))
        );
        speaker.shutdown(false).await;
    }

    /// Connect retry backs off: 1 s, then 2 s (the configured maximum),
    /// each with jitter in [0.75, 1).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reconnects_back_off() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut config = super::super::BgpConfig::from_toml(&format!(
            r#"
router_id = "192.0.2.10"
local_asn = 65001
announce_within = ["192.0.2.0/24"]
[[peers]]
name = "closing"
address = "127.0.0.1"
port = {port}
peer_asn = 65000
families = ["ipv4-flowspec"]
connect_retry = 1
connect_retry_max = 2
"#
        ))
        .unwrap();
        config.peers[0].hold_time = 9;
        let speaker = Speaker::start(config).unwrap();
        let mut at = Vec::new();
        for _ in 0..4 {
            // Accept and close at once: the session fails before OPEN.
            drop(accept(&listener).await);
            at.push(std::time::Instant::now());
        }
        let gaps: Vec<f64> = at.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
        assert!((0.7..1.3).contains(&gaps[0]), "{gaps:?}");
        assert!((1.45..2.3).contains(&gaps[1]), "{gaps:?}");
        assert!((1.45..2.3).contains(&gaps[2]), "{gaps:?}");
        assert!(speaker.status()[0].last_error.is_some());
        speaker.shutdown(false).await;
    }

    /// An UPDATE whose attribute length overruns gets 3/1; the speaker
    /// never panics on what the peer sends.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn malformed_update_gets_update_error() {
        let (speaker, listener) = speaker_and_peer().await;
        let (mut s, _) = establish(&listener, &[Family::Ipv4FlowSpec]).await;
        let _eor = read(&mut s).await;
        let mut u = Message::Update(Update::default()).encode();
        u[22] = 200;
        s.write_all(&u).await.unwrap();
        let Message::Notification(n) = read(&mut s).await else {
            panic!("no NOTIFICATION")
        };
        assert_eq!((n.code, n.subcode), (3, 1));
        speaker.shutdown(false).await;
    }
}
