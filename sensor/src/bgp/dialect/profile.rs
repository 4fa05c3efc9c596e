//! The built-in dialects: each [`Profile`]'s table, from its vendor's
//! public documentation (cited on each arm). A feature the source does not
//! document is off.

use super::{ALL_FRAGMENT_BITS, Dialect, Operators, Profile, RedirectEncoding};
use crate::bgp::flowspec::{ActionKind, ComponentKind};

use ComponentKind as C;

/// RFC 8955 §4.2.2 types 1-12: what an IPv4 implementation of the base
/// specification knows.
pub(super) const RFC8955_COMPONENTS: [ComponentKind; 12] = [
    C::DestinationPrefix,
    C::SourcePrefix,
    C::IpProtocol,
    C::Port,
    C::DestinationPort,
    C::SourcePort,
    C::IcmpType,
    C::IcmpCode,
    C::TcpFlags,
    C::PacketLength,
    C::Dscp,
    C::Fragment,
];

impl Dialect {
    /// The built-in table for `profile`. Each arm cites its source; a
    /// feature the source does not document is off.
    pub fn profile(profile: Profile) -> Self {
        use ActionKind as A;
        use RedirectEncoding as R;
        let base = |ipv4, ipv6, components: &[ComponentKind], actions: &[ActionKind]| Dialect {
            profile,
            ipv4,
            ipv6,
            components: components.to_vec(),
            operators: Operators::All,
            single_value: Vec::new(),
            fragment_bits: ALL_FRAGMENT_BITS,
            ipv6_offsets: false,
            actions: actions.to_vec(),
            redirect: Vec::new(),
            max_components: None,
            source: "",
        };
        match profile {
            Profile::Generic => Dialect {
                ipv6_offsets: true,
                redirect: R::ALL.to_vec(),
                source: "everything edge-sensor encodes (RFC 8955, RFC 8956)",
                ..base(true, true, &ComponentKind::ALL, &ActionKind::ALL)
            },
            // OcNOS-SP BGP Flowspec Commands (OcNOS 6.3.0+): only
            // `address-family ipv4` exists under flowspec, and the only
            // policy-map action is `drop`. The match fields are those IP
            // Infusion lists for its flowspec DDoS solution: source and
            // destination IP, protocol, port, packet length, TCP flags, DSCP,
            // fragment (no ICMP type/code). The same page mentions
            // rate-limit and redirect, but no command reference documents
            // them or their encoding, so they are off (add them with
            // `flowspec.actions` once checked on the device).
            // https://docs.ipinfusion.com/service-provider/OcNOS-SP/BGP-CR/BGP_Flow_spec.html
            // https://www.ipinfusion.com/solutions/ddos-protection/
            Profile::Ocnos => Dialect {
                source: "https://docs.ipinfusion.com/service-provider/OcNOS-SP/BGP-CR/BGP_Flow_spec.html",
                ..base(
                    true,
                    false,
                    &[
                        C::DestinationPrefix,
                        C::SourcePrefix,
                        C::IpProtocol,
                        C::Port,
                        C::DestinationPort,
                        C::SourcePort,
                        C::TcpFlags,
                        C::PacketLength,
                        C::Dscp,
                        C::Fragment,
                    ],
                    &[A::Discard],
                )
            },
            // Junos `routing-options flow` (IPv4) and `rib inet6.0 flow`
            // (IPv6, `family inet6 flow`): match destination and source (IPv6
            // with `prefix-offset`), protocol, port, destination-port,
            // source-port, icmp-type/icmp6-type, icmp-code/icmp6-code,
            // tcp-flags, packet-length, dscp, fragment, and (IPv6)
            // flow-label; then discard, rate-limit, mark, sample and
            // next-term (traffic-action), routing-instance <route target>
            // (redirect; Junos route targets take all three RFC 4360 /
            // RFC 5668 forms), redirect IP. No packet rate.
            // https://www.juniper.net/documentation/us/en/software/junos/cli-reference/topics/ref/statement/flow-edit-routing-options.html
            // https://www.juniper.net/documentation/us/en/software/junos/cli-reference/topics/ref/statement/flow-ipv6-edit-routing-options.html
            Profile::Junos => Dialect {
                ipv6_offsets: true,
                redirect: R::ALL.to_vec(),
                source: "https://www.juniper.net/documentation/us/en/software/junos/cli-reference/topics/ref/statement/flow-ipv6-edit-routing-options.html",
                ..base(
                    true,
                    true,
                    &ComponentKind::ALL,
                    &[
                        A::Discard,
                        A::TrafficRateBytes,
                        A::TrafficAction,
                        A::Redirect,
                        A::TrafficMarking,
                    ],
                )
            },
            // Cisco ASR 9000 (IOS XR) Routing Configuration Guide 5.3.x,
            // "Implementing BGP Flowspec": Supported Matching Criteria are
            // IPv4 types 1-12; Traffic Filtering Actions are traffic-rate
            // 0x8006 (police, drop at 0), redirect-vrf 0x8008 ("the same
            // encoding as the Route Target extended community [RFC4360]",
            // type 0x8008 only: 2-octet AS), traffic-marking 0x8009 (set
            // dscp) and redirect IP next hop 0x0800; "multiple action
            // combinations can be specified without restrictions". No
            // traffic-action, no packet rate; IPv6 is not in that table.
            // https://www.manualslib.com/manual/1311082/Cisco-Asr-9000-Series.html?page=240
            // (also the NCS 6000 6.4.x guide: https://www.easymanua.ls/cisco/ncs-6000-series/manual?p=128)
            Profile::Iosxr => Dialect {
                redirect: vec![R::As2],
                source: "https://www.manualslib.com/manual/1311082/Cisco-Asr-9000-Series.html?page=240",
                ..base(
                    true,
                    false,
                    &RFC8955_COMPONENTS,
                    &[
                        A::Discard,
                        A::TrafficRateBytes,
                        A::Redirect,
                        A::TrafficMarking,
                    ],
                )
            },
            // Arista TOI "BGP Flowspec" (EOS 4.21.3F): "support for BGP
            // Flowspec, as defined in RFC5575 and RFC7674 ... to filter or
            // redirect DDoS traffic": IPv4, the RFC 5575 components, drop
            // and rate (traffic-rate) and the RFC 7674 redirect encodings.
            // Marking and traffic-action are not named: off.
            // https://www.arista.com/en/support/toi/tag/flowspec
            Profile::Eos => Dialect {
                redirect: R::ALL.to_vec(),
                source: "https://www.arista.com/en/support/toi/tag/flowspec",
                ..base(
                    true,
                    false,
                    &RFC8955_COMPONENTS,
                    &[A::Discard, A::TrafficRateBytes, A::Redirect],
                )
            },
            // Nokia SR OS Unicast Routing Protocols Guide, "BGP FlowSpec":
            // "FlowSpec is supported for both IPv4 and IPv6" (flow-ipv4,
            // flow-ipv6). Subcomponent table (IPv4): types 1-12, with IP
            // Protocol "no support for multiple values other than TCP or
            // UDP", ICMP Type, ICMP Code and DSCP "only a single value",
            // Fragment "no support for matching DF bit, first-fragment or
            // last-fragment". The flow routes become filter entries
            // ("Using flow routes to create dynamic filter entries"); the
            // pages read name no action list beyond that, so only drop and
            // rate-limit (traffic-rate); no redirect, marking, offsets or
            // flow label.
            // https://infocenter.nokia.com/public/7750SR225R1A/topic/com.nokia.Unicast_Guide/bgp_flowspec-ai9exj5yj3.html
            // https://infocenter.nokia.com/public/7750SR222R1A/topic/com.nokia.Unicast_Guide/using_flow_rout-d497e10999.html
            Profile::Sros => Dialect {
                single_value: vec![C::IpProtocol, C::IcmpType, C::IcmpCode, C::Dscp],
                fragment_bits: crate::bgp::flowspec::fragment::IS_F,
                source: "https://infocenter.nokia.com/public/7750SR225R1A/topic/com.nokia.Unicast_Guide/bgp_flowspec-ai9exj5yj3.html",
                ..base(
                    true,
                    true,
                    &RFC8955_COMPONENTS,
                    &[A::Discard, A::TrafficRateBytes],
                )
            },
            // FRR user guide, "Flowspec" (doc/user/flowspec.rst): IPv4, and
            // IPv6 with "the same set of combinations as defined for IPv4"
            // (so no flow label, no offsets); actions redirect VRF (route
            // target, and an IPv6 RT per RFC 5701), redirect IP, rate-limit
            // and DSCP marking through policy routing. No packet rate, no
            // sample.
            // https://docs.frrouting.org/en/latest/flowspec.html
            Profile::Frr => Dialect {
                redirect: R::ALL.to_vec(),
                source: "https://docs.frrouting.org/en/latest/flowspec.html",
                ..base(
                    true,
                    true,
                    &RFC8955_COMPONENTS,
                    &[
                        A::Discard,
                        A::TrafficRateBytes,
                        A::Redirect,
                        A::TrafficMarking,
                    ],
                )
            },
            // BIRD 2 user guide, "Flowspec network type": flow4 and flow6
            // with dst/src (flow6: with `offset`), proto/next header, port,
            // dport, sport, icmp type/code, tcp flags, length, dscp,
            // fragment, and `label` (flow6). BIRD carries the actions as
            // extended communities without interpreting them, so all pass.
            // https://bird.network.cz/?get_doc&v=20&f=bird-3.html#flowspec-network-type
            Profile::Bird => Dialect {
                ipv6_offsets: true,
                redirect: R::ALL.to_vec(),
                source: "https://bird.network.cz/?get_doc&v=20&f=bird-3.html#flowspec-network-type",
                ..base(true, true, &ComponentKind::ALL, &ActionKind::ALL)
            },
            // GoBGP docs/sources/flowspec.md: ipv4-flowspec and
            // ipv6-flowspec; match destination/source <PREFIX> [<OFFSET>],
            // protocol, fragment, tcp-flags, port, destination-port,
            // source-port, icmp-type, icmp-code, packet-length, dscp, label;
            // then accept, discard, rate <RATE>, redirect <RT> (RFC 7674),
            // mark <DSCP>, action {sample|terminal|sample-terminal}. No
            // packet rate.
            // https://github.com/osrg/gobgp/blob/master/docs/sources/flowspec.md
            Profile::Gobgp => Dialect {
                ipv6_offsets: true,
                redirect: R::ALL.to_vec(),
                source: "https://github.com/osrg/gobgp/blob/master/docs/sources/flowspec.md",
                ..base(
                    true,
                    true,
                    &ComponentKind::ALL,
                    &[
                        A::Discard,
                        A::TrafficRateBytes,
                        A::TrafficAction,
                        A::Redirect,
                        A::TrafficMarking,
                    ],
                )
            },
        }
    }
}
