//! The receive side against real peers (issue 15): gobgpd and BIRD 2 send
//! the speaker IPv4/IPv6 unicast routes and Flow Spec rules, with and
//! without Add-Path (RFC 7911); the speaker's Adj-RIB-In
//! ([`Speaker::rib`], what `edge-sensor rib --json` prints) must hold
//! exactly what the peer's own CLI says it sent (`gobgp -j neighbor ...
//! adj-out`, `birdc show route export`); our own routes still reach them
//! with Add-Path negotiated for sending. And a Flow Spec rule another
//! system already announces is not announced again (gobgpd's adj-in).

use std::collections::BTreeSet;

use edge_sensor::bgp::{
    Action, Component, Family, FlowPrefix, FlowSpec, IpFamily, NumericMatch, Outcome, RibAnswer,
    RibQuery, Route, Speaker, rib_in::flow::Validation,
};
use edge_sensor_tests::{
    bgp::{Bird, Gobgpd, PeerKind, WAIT, wait_for, wait_until},
    netns::NetNs,
    require_root, require_tool,
};
use serde_json::Value;

const GOBGP: PeerKind = PeerKind {
    name: "gobgp",
    establish_within: WAIT,
};

const BIRD: PeerKind = PeerKind {
    name: "bird",
    establish_within: WAIT,
};

/// One path as both sides can state it: prefix, path identifier (when
/// compared), next hop, AS numbers, MED, communities, large communities.
type PathView = (
    String,
    Option<u32>,
    String,
    Vec<u32>,
    Option<u32>,
    Vec<String>,
    Vec<String>,
);

fn all(speaker: &Speaker) -> RibAnswer {
    speaker
        .rib(&RibQuery {
            limit: Some(0),
            ..RibQuery::default()
        })
        .unwrap()
}

fn our_paths(a: &RibAnswer, family: Family, ids: bool) -> BTreeSet<PathView> {
    a.routes
        .iter()
        .filter(|r| r.family == family)
        .map(|r| {
            let at = &r.attributes;
            (
                r.prefix.to_string(),
                ids.then_some(r.path_id),
                at.next_hop.map(|n| n.to_string()).unwrap_or_default(),
                at.asns().collect(),
                at.med,
                at.communities.iter().map(|c| c.to_string()).collect(),
                at.large_communities.iter().map(|c| c.to_string()).collect(),
            )
        })
        .collect()
}

// ---- gobgpd ----

/// gobgpd (AS 65000) with a passive neighbor 127.0.0.2 of AS 65001, the
/// four families, Add-Path send on the families in `add_path`.
fn gobgpd<'a>(ns: &'a NetNs, add_path: &[&str]) -> Gobgpd<'a> {
    let families: String = ["ipv4-unicast", "ipv6-unicast", "ipv4-flowspec", "ipv6-flowspec"]
        .iter()
        .map(|f| {
            let ap = if add_path.contains(f) {
                "  [neighbors.afi-safis.add-paths.config]\n    send-max = 8\n    receive = true\n"
            } else {
                ""
            };
            format!("[[neighbors.afi-safis]]\n  [neighbors.afi-safis.config]\n    afi-safi-name = \"{f}\"\n{ap}")
        })
        .collect();
    Gobgpd::start(
        ns,
        &format!(
            r#"[global.config]
  as = 65000
  router-id = "127.0.0.1"
  port = 179
  local-address-list = ["127.0.0.1"]

[[neighbors]]
  [neighbors.config]
    neighbor-address = "127.0.0.2"
    peer-as = 65001
  [neighbors.timers.config]
    connect-retry = 1
  [neighbors.transport.config]
    passive-mode = true
{families}"#
        ),
    )
}

fn gobgp_setup() -> NetNs {
    require_root();
    require_tool("gobgpd");
    require_tool("gobgp");
    NetNs::new("esri")
}

/// What gobgpd says it sent us in `family` (`gobgp -j neighbor 127.0.0.2
/// adj-out -a FAMILY`): prefix -> paths.
fn adj_out(g: &Gobgpd, family: &str) -> Vec<Value> {
    let text = g.cli(&["-j", "neighbor", "127.0.0.2", "adj-out", "-a", family]);
    let text = text.trim();
    if text.is_empty() || text == "null" || text.contains("Network not in table") {
        return Vec::new();
    }
    let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    match v {
        Value::Object(m) => m
            .into_values()
            .flat_map(|p| p.as_array().cloned().unwrap_or_default())
            .collect(),
        Value::Array(a) => a,
        other => panic!("adj-out: {other}"),
    }
}

fn gobgp_attr(path: &Value, t: u64) -> Option<&Value> {
    path["attrs"].as_array()?.iter().find(|a| a["type"] == t)
}

fn gobgp_paths(paths: &[Value], ids: bool) -> BTreeSet<PathView> {
    paths
        .iter()
        .map(|p| {
            let next_hop = gobgp_attr(p, 3)
                .or_else(|| gobgp_attr(p, 14))
                .and_then(|a| a["nexthop"].as_str())
                .unwrap_or_default()
                .to_string();
            let asns = gobgp_attr(p, 2)
                .and_then(|a| a["as_paths"].as_array())
                .into_iter()
                .flatten()
                .flat_map(|s| s["asns"].as_array().cloned().unwrap_or_default())
                .filter_map(|a| a.as_u64().map(|a| a as u32))
                .collect();
            let med = gobgp_attr(p, 4)
                .and_then(|a| a["metric"].as_u64())
                .map(|m| m as u32);
            let comms = gobgp_attr(p, 8)
                .and_then(|a| a["communities"].as_array())
                .into_iter()
                .flatten()
                .filter_map(Value::as_u64)
                .map(|c| format!("{}:{}", c >> 16, c & 0xffff))
                .collect();
            let large = gobgp_attr(p, 32)
                .and_then(|a| a["value"].as_array())
                .into_iter()
                .flatten()
                .map(|l| format!("{}:{}:{}", l["ASN"], l["LocalData1"], l["LocalData2"]))
                .collect();
            (
                p["nlri"]["prefix"].as_str().unwrap_or_default().to_string(),
                ids.then(|| p["id"].as_u64().unwrap_or(0) as u32),
                next_hop,
                asns,
                med,
                comms,
                large,
            )
        })
        .collect()
}

/// The Flow Spec NLRI body gobgp describes (prefix and numeric
/// components, RFC 8955 §4.2), hex.
fn gobgp_flow_nlri(path: &Value) -> String {
    let mut out = Vec::new();
    for c in path["nlri"]["value"].as_array().into_iter().flatten() {
        let t = c["type"].as_u64().unwrap() as u8;
        out.push(t);
        if t == 1 || t == 2 {
            let net: ipnet::IpNet = c["value"]["prefix"].as_str().unwrap().parse().unwrap();
            out.push(net.prefix_len());
            let n = usize::from(net.prefix_len()).div_ceil(8);
            match net.network() {
                std::net::IpAddr::V4(a) => out.extend_from_slice(&a.octets()[..n]),
                std::net::IpAddr::V6(a) => out.extend_from_slice(&a.octets()[..n]),
            }
        } else {
            for term in c["value"].as_array().into_iter().flatten() {
                let op = term["op"].as_u64().unwrap() as u8;
                out.push(op);
                let len = 1usize << ((op >> 4) & 3);
                let v = term["value"].as_u64().unwrap();
                out.extend_from_slice(&v.to_be_bytes()[8 - len..]);
            }
        }
    }
    out.iter().map(|b| format!("{b:02x}")).collect()
}

/// gobgp's text of a traffic-rate extended community, as ours.
fn gobgp_actions(path: &Value) -> Vec<(u64, u64)> {
    gobgp_attr(path, 16)
        .and_then(|a| a["value"].as_array())
        .into_iter()
        .flatten()
        .filter(|e| e["type"] == 128 && e["subtype"] == 6)
        .map(|e| {
            (
                e["as"].as_u64().unwrap_or(0),
                e["rate"].as_f64().unwrap_or(-1.0) as u64,
            )
        })
        .collect()
}

fn our_actions(actions: &[Action]) -> Vec<(u64, u64)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::TrafficRateBytes { id, rate } => Some((u64::from(*id), *rate as u64)),
            _ => None,
        })
        .collect()
}

fn gobgp_adds(g: &Gobgpd) {
    for args in [
        &[
            "global",
            "rib",
            "add",
            "-a",
            "ipv4",
            "10.20.0.0/16",
            "nexthop",
            "127.0.0.9",
            "identifier",
            "1",
            "community",
            "65000:100",
            "med",
            "20",
        ][..],
        &[
            "global",
            "rib",
            "add",
            "-a",
            "ipv4",
            "10.20.0.0/16",
            "nexthop",
            "127.0.0.8",
            "identifier",
            "2",
            "community",
            "65000:200",
        ],
        &[
            "global",
            "rib",
            "add",
            "-a",
            "ipv4",
            "10.21.0.0/24",
            "nexthop",
            "127.0.0.9",
            "large-community",
            "65000:1:2",
        ],
        &[
            "global",
            "rib",
            "add",
            "-a",
            "ipv6",
            "2001:db8:10::/48",
            "nexthop",
            "2001:db8::9",
            "community",
            "65000:300",
        ],
        &[
            "global",
            "rib",
            "add",
            "-a",
            "ipv4-flowspec",
            "match",
            "destination",
            "198.18.0.1/32",
            "protocol",
            "udp",
            "destination-port",
            "==53",
            "then",
            "discard",
        ],
        &[
            "global",
            "rib",
            "add",
            "-a",
            "ipv4-flowspec",
            "match",
            "destination",
            "198.18.0.0/24",
            "protocol",
            "tcp",
            "then",
            "rate-limit",
            "1000",
        ],
    ] {
        g.cli(args);
    }
}

/// Add-Path on the unicast families. gobgpd 3.10 then puts a second, zero
/// path identifier inside the destination prefix component of its IPv4
/// Flow Spec NLRI (its prefix component follows the IPv4 unicast Add-Path
/// setting; seen on the wire: `00000001 10 01 00000000 20 c6120001 ...`),
/// which is malformed (RFC 8955 §4.2): with Add-Path, gobgpd's rules are
/// treated as withdrawn (`gobgp_flowspec_add_path_is_malformed_and_withdrawn`)
/// and the Flow Spec comparison with Add-Path is BIRD's.
const UNICAST: [&str; 2] = ["ipv4-unicast", "ipv6-unicast"];

/// gobgpd sends; our Adj-RIB-In must equal its adj-out, path for path.
fn gobgp_sends(add_path: bool) {
    let ns = gobgp_setup();
    let g = gobgpd(&ns, if add_path { &UNICAST } else { &[] });
    gobgp_adds(&g);
    let extra = if add_path { "add_path = \"both\"" } else { "" };
    GOBGP.session(&ns, &g, 65001, extra, async |speaker| {
        // Without Add-Path gobgpd sends its best path of 10.20.0.0/16
        // only; with it, both.
        let v4_paths = if add_path { 3 } else { 2 };
        let flows = if add_path { 0 } else { 2 };
        let got = wait_for(WAIT, || {
            let a = all(speaker);
            let v4 = a
                .routes
                .iter()
                .filter(|r| r.family == Family::Ipv4Unicast)
                .count();
            (v4 == v4_paths && a.routes.len() == v4_paths + 1 && a.flowspec.len() == flows)
                .then_some(a)
        })
        .unwrap_or_else(|| {
            panic!(
                "not all routes arrived: {:#?}\n{:#?}",
                all(speaker),
                speaker.status()
            )
        });
        let st = &speaker.status()[0];
        let n = st.negotiated.as_ref().unwrap();
        if add_path {
            assert_eq!(
                n.add_path_receive,
                [Family::Ipv4Unicast, Family::Ipv6Unicast],
                "{n:?}"
            );
            // gobgpd receives paths too (`receive = true`).
            assert_eq!(n.add_path_send, n.add_path_receive, "{n:?}");
        } else {
            assert!(n.add_path_receive.is_empty() && n.add_path_send.is_empty());
        }
        for (family, name) in [(Family::Ipv4Unicast, "ipv4"), (Family::Ipv6Unicast, "ipv6")] {
            let sent = adj_out(&g, name);
            assert_eq!(
                our_paths(&got, family, false),
                gobgp_paths(&sent, false),
                "{family}: ours vs gobgp adj-out {sent:#?}"
            );
            // gobgp -j has no path identifier: its text table has them in
            // an ID column once Add-Path is on.
            let text = g.cli(&["neighbor", "127.0.0.2", "adj-out", "-a", name]);
            let theirs: BTreeSet<(String, u32, String)> = text
                .lines()
                .skip(1)
                .filter_map(|l| {
                    let w: Vec<&str> = l.split_whitespace().collect();
                    let ip_at = w.iter().position(|x| x.contains('/'))?;
                    let id = if ip_at > 0 && add_path {
                        w[ip_at - 1].parse().ok()?
                    } else {
                        0
                    };
                    Some((w[ip_at].to_string(), id, w[ip_at + 1].to_string()))
                })
                .collect();
            let ours: BTreeSet<(String, u32, String)> = got
                .routes
                .iter()
                .filter(|r| r.family == family)
                .map(|r| {
                    let nh = r
                        .attributes
                        .next_hop
                        .map(|n| n.to_string())
                        .unwrap_or_default();
                    (r.prefix.to_string(), r.path_id, nh)
                })
                .collect();
            assert_eq!(ours, theirs, "{family}: ours vs gobgp adj-out\n{text}");
        }
        let sent = adj_out(&g, "ipv4-flowspec");
        assert_eq!(sent.len(), 2);
        for p in sent.iter().filter(|_| !add_path) {
            let nlri = gobgp_flow_nlri(p);
            let ours = got
                .flowspec
                .iter()
                .find(|r| r.nlri.ends_with(&nlri) && r.nlri.len() <= nlri.len() + 4)
                .unwrap_or_else(|| panic!("gobgp sent {nlri}, we hold {:#?}", got.flowspec));
            assert_eq!(
                our_actions(&ours.actions),
                gobgp_actions(p),
                "{}",
                ours.rule
            );
            if add_path {
                assert_eq!(Some(u64::from(ours.path_id)), p["id"].as_u64(), "{p}");
            }
            // eBGP from AS 65000, left-most: RFC 9117 §4.2 holds; b.1/c
            // need a best path the sensor does not compute.
            assert!(
                matches!(ours.validation, Validation::Unvalidated { .. }),
                "{:?}",
                ours.validation
            );
        }
        assert_eq!(st.rib_in.flowspec_rules, flows);
        assert_eq!(st.rib_in.prefixes, 3, "{:?}", st.rib_in);

        // A withdrawal at gobgpd leaves the Adj-RIB-In.
        // Our own announcements go out with and without Add-Path (with
        // our path identifier where negotiated for sending). Unicast only:
        // gobgpd 3.10 with Add-Path on IPv4 unicast also misreads a
        // well-formed Flow Spec NLRI (its `gobgp global rib -a
        // ipv4-flowspec` then crashes); BIRD takes ours with Add-Path.
        let rtbh = Route::blackhole("192.0.2.50".parse().unwrap());
        assert!(speaker.announce(rtbh.clone()).unwrap().accepted_by_all());
        assert!(
            wait_until(WAIT, || g.rib("ipv4").contains_key("192.0.2.50/32")),
            "gobgpd did not take our route: {}",
            g.cli(&["global", "rib", "-a", "ipv4"]),
        );
        speaker.withdraw(&rtbh);
        assert!(wait_until(WAIT, || !g
            .rib("ipv4")
            .contains_key("192.0.2.50/32")));
        g.cli(&["global", "rib", "del", "-a", "ipv4", "10.21.0.0/24"]);
        assert!(wait_until(WAIT, || !all(speaker)
            .routes
            .iter()
            .any(|r| r.prefix.to_string() == "10.21.0.0/24")));
    });
}

#[test]
fn gobgp_unicast_and_flowspec_arrive_as_sent() {
    gobgp_sends(false);
}

#[test]
fn gobgp_with_add_path_arrives_by_path_identifier() {
    gobgp_sends(true);
}

fn rule_192() -> Route {
    Route::flowspec(
        FlowSpec::new(
            IpFamily::Ipv4,
            vec![
                Component::DestinationPrefix(FlowPrefix::new("192.0.2.80/32".parse().unwrap())),
                Component::IpProtocol(vec![NumericMatch::eq(17)]),
            ],
        )
        .unwrap(),
        vec![Action::DISCARD],
    )
    .unwrap()
}

#[test]
fn a_rule_gobgp_already_announces_is_not_announced_again() {
    let ns = gobgp_setup();
    let g = gobgpd(&ns, &[]);
    let add = [
        "global",
        "rib",
        "add",
        "-a",
        "ipv4-flowspec",
        "match",
        "destination",
        "192.0.2.80/32",
        "protocol",
        "udp",
        "then",
        "discard",
    ];
    g.cli(&add);
    GOBGP.session(&ns, &g, 65001, "", async |speaker| {
        assert!(
            wait_until(WAIT, || all(speaker).flowspec.len() == 1),
            "{:#?}",
            all(speaker)
        );
        let covering = speaker.foreign_rules_covering("192.0.2.80".parse().unwrap());
        assert_eq!(covering.len(), 1, "{covering:?}");
        let a = speaker.announce(rule_192()).unwrap();
        assert!(
            matches!(&a.peers[0].1, Outcome::InForceElsewhere { from } if from == "gobgp"),
            "{a:?}"
        );
        let adj_in = || {
            g.cli(&[
                "-j",
                "neighbor",
                "127.0.0.2",
                "adj-in",
                "-a",
                "ipv4-flowspec",
            ])
        };
        std::thread::sleep(std::time::Duration::from_secs(2));
        let text = adj_in();
        assert!(
            !text.contains("192.0.2.80"),
            "gobgpd got our duplicate: {text}"
        );
        // gobgpd withdraws its rule: ours goes out (the daemon's loop calls
        // resume_suppressed every tick).
        let mut del = add.to_vec();
        del[2] = "del";
        g.cli(&del);
        assert!(wait_until(WAIT, || all(speaker).flowspec.is_empty()));
        let released = speaker.resume_suppressed();
        assert_eq!(released.len(), 1, "{released:?}");
        assert!(
            wait_until(WAIT, || adj_in().contains("192.0.2.80")),
            "gobgpd never got our rule: {}",
            adj_in()
        );
    });
}

/// gobgpd's Flow Spec with Add-Path (see [`UNICAST`]) is malformed: each
/// rule is treated as withdrawn and counted (RFC 7606 §2, RFC 8955 §4.2),
/// the session stays up and the unicast routes still arrive.
#[test]
fn gobgp_flowspec_add_path_is_malformed_and_withdrawn() {
    let ns = gobgp_setup();
    let g = gobgpd(&ns, &["ipv4-unicast"]);
    gobgp_adds(&g);
    GOBGP.session(&ns, &g, 65001, "add_path = \"receive\"", async |speaker| {
        let errors = wait_for(WAIT, || {
            let st = speaker.status().remove(0);
            let n = st
                .update_errors
                .iter()
                .find(|(r, _)| r.name() == "malformed-flowspec")
                .map(|(_, n)| *n)
                .unwrap_or(0);
            (n >= 2).then_some(st)
        })
        .unwrap_or_else(|| panic!("{:#?}", speaker.status()));
        assert_eq!(errors.established_count, 1, "no reset: {errors:#?}");
        assert_eq!(errors.state, edge_sensor::bgp::SessionState::Established);
        let a = all(speaker);
        assert!(a.flowspec.is_empty(), "{a:#?}");
        assert!(wait_until(WAIT, || all(speaker).routes.len() == 4));
        assert_eq!(
            adj_out(&g, "ipv4-flowspec").len(),
            2,
            "gobgpd believes it sent them"
        );
    });
}

// ---- BIRD 2 ----

fn bird_setup() -> NetNs {
    require_root();
    require_tool("bird");
    require_tool("birdc");
    NetNs::new("esrb")
}

/// BIRD (AS 65000) exporting static routes and Flow Spec rules to the
/// speaker (AS 65001, 127.0.0.2), with `add paths tx` when `add_path`.
/// 10.30.0.0/16 is in two static protocols: two paths with Add-Path.
fn bird_config(add_path: bool) -> String {
    let ap = if add_path { "add paths on;" } else { "" };
    format!(
        r#"log stderr all;
router id 127.0.0.1;
ipv4 table master4;
ipv6 table master6;
flow4 table flowtab4;
flow6 table flowtab6;
protocol device {{ }}
protocol static st4a {{ ipv4; route 10.30.0.0/16 blackhole; route 10.31.0.0/24 blackhole; }}
protocol static st4b {{ ipv4 {{ preference 90; }}; route 10.30.0.0/16 blackhole; }}
protocol static st6 {{ ipv6; route 2001:db8:30::/48 blackhole; }}
protocol static stf4 {{ flow4 {{ table flowtab4; }}; route flow4 {{ dst 198.18.0.1/32; proto = 17; dport = 53; }}; }}
protocol bgp sensor {{
  local 127.0.0.1 port 179 as 65000;
  neighbor 127.0.0.2 as 65001;
  passive on;
  multihop;
  hold time 240;
  error wait time 1, 2;
  connect retry time 1;
  ipv4 {{ import all; export filter {{ bgp_community.add((65000, 400)); bgp_med = 30; accept; }}; {ap} }};
  ipv6 {{ import none; next hop address 2001:db8::1; export filter {{ bgp_large_community.add((65000, 7, 8)); accept; }}; {ap} }};
  flow4 {{ table flowtab4; import all; export filter {{ bgp_ext_community.add((generic, 0x80060000, 0)); accept; }}; {ap} }};
  flow6 {{ table flowtab6; import none; export none; }};
}}
"#
    )
}

/// `birdc show route export sensor.CHANNEL all`: per route its network
/// and its BGP attributes, as BIRD states what it sends.
fn bird_export(b: &Bird, channel: &str) -> Vec<(String, String)> {
    let text = b.cli(&[
        "show",
        "route",
        "export",
        &format!("sensor.{channel}"),
        "all",
    ]);
    let mut out: Vec<(String, String)> = Vec::new();
    let mut last_net = String::new();
    for line in text.lines() {
        if line.starts_with("BIRD ") || line.starts_with("Table ") || line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(char::is_whitespace) {
            // A network, or a whole flow (`flow4 { dst ...; }`).
            let first = match line.rfind('}') {
                Some(end) if line.starts_with("flow") => line[..=end].to_string(),
                _ => line
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            };
            last_net = first.clone();
            out.push((first, String::new()));
        } else if line.trim_start().starts_with("unreachable")
            || line.trim_start().starts_with("blackhole")
        {
            // A second route of the same network.
            out.push((last_net.clone(), String::new()));
        } else if let Some(r) = out.last_mut() {
            r.1.push_str(line.trim());
            r.1.push('\n');
        }
    }
    out
}

fn bird_sends(add_path: bool) {
    let ns = bird_setup();
    let b = Bird::start(&ns, &bird_config(add_path));
    let extra = if add_path { "add_path = \"both\"" } else { "" };
    BIRD.session(&ns, &b, 65001, extra, async |speaker| {
        let v4_paths = if add_path { 3 } else { 2 };
        let got = wait_for(WAIT, || {
            let a = all(speaker);
            let v4 = a
                .routes
                .iter()
                .filter(|r| r.family == Family::Ipv4Unicast)
                .count();
            (v4 == v4_paths && a.routes.len() == v4_paths + 1 && a.flowspec.len() == 1).then_some(a)
        })
        .unwrap_or_else(|| {
            panic!(
                "not all routes arrived: {:#?}\n{:#?}\n{}",
                all(speaker),
                speaker.status(),
                b.cli(&["show", "route", "export", "sensor.ipv4", "all"])
            )
        });
        let v4 = bird_export(&b, "ipv4");
        let v6 = bird_export(&b, "ipv6");
        let f4 = bird_export(&b, "flow4");
        // Exactly the networks (and as many paths) BIRD says it exports.
        let nets = |rows: &[(String, String)]| rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>();
        let mut ours4: Vec<String> = got
            .routes
            .iter()
            .filter(|r| r.family == Family::Ipv4Unicast)
            .map(|r| r.prefix.to_string())
            .collect();
        let mut theirs4 = nets(&v4);
        ours4.sort();
        theirs4.sort();
        assert_eq!(ours4, theirs4, "ipv4: ours vs birdc {v4:#?}");
        let ours6: Vec<String> = got
            .routes
            .iter()
            .filter(|r| r.family == Family::Ipv6Unicast)
            .map(|r| r.prefix.to_string())
            .collect();
        assert_eq!(ours6, nets(&v6), "ipv6: {v6:#?}");
        for r in &got.routes {
            let at = &r.attributes;
            // eBGP: BIRD's AS first, next hop BIRD's address.
            assert_eq!(at.asns().collect::<Vec<_>>(), vec![65000], "{r:?}");
            if r.family == Family::Ipv4Unicast {
                assert_eq!(
                    at.communities
                        .iter()
                        .map(|c| c.to_string())
                        .collect::<Vec<_>>(),
                    ["65000:400"]
                );
                assert_eq!(at.med, Some(30));
                assert_eq!(at.next_hop, Some("127.0.0.1".parse().unwrap()));
                let bird = v4.iter().find(|(n, _)| *n == r.prefix.to_string()).unwrap();
                assert!(
                    bird.1.contains("(65000,400)") || bird.1.contains("65000,400"),
                    "{bird:?}"
                );
            } else {
                assert_eq!(
                    at.large_communities
                        .iter()
                        .map(|c| c.to_string())
                        .collect::<Vec<_>>(),
                    ["65000:7:8"]
                );
            }
        }
        if add_path {
            let ids: BTreeSet<u32> = got
                .routes
                .iter()
                .filter(|r| r.prefix.to_string() == "10.30.0.0/16")
                .map(|r| r.path_id)
                .collect();
            assert_eq!(ids.len(), 2, "two paths by identifier: {got:#?}");
        } else {
            assert!(got.routes.iter().all(|r| r.path_id == 0));
        }
        assert_eq!(f4.len(), 1, "{f4:#?}");
        let flow = &got.flowspec[0];
        assert_eq!(flow.destination, Some("198.18.0.1/32".parse().unwrap()));
        // BIRD's text of what it sent: the same components and action.
        let (bird_flow, bird_attrs) = &f4[0];
        assert!(
            bird_flow.contains("dst 198.18.0.1/32")
                && bird_flow.contains("proto 17")
                && bird_flow.contains("dport 53"),
            "{bird_flow}"
        );
        assert!(
            bird_attrs.contains("(generic, 0x80060000, 0x0)"),
            "{bird_attrs}"
        );
        assert_eq!(our_actions(&flow.actions), vec![(0, 0)], "discard");
        // BIRD sends Flow Spec with Add-Path well formed.
        assert_eq!(flow.path_id != 0, add_path, "{flow:?}");
        assert!(
            flow.rule.contains("proto ==17") && flow.rule.contains("==53"),
            "{}",
            flow.rule
        );
        assert!(matches!(flow.validation, Validation::Unvalidated { .. }));
        let n = speaker.status()[0].negotiated.clone().unwrap();
        if add_path {
            assert_eq!(
                n.add_path_send,
                [
                    Family::Ipv4Unicast,
                    Family::Ipv6Unicast,
                    Family::Ipv4FlowSpec
                ],
                "{n:?}"
            );
        } else {
            assert!(n.add_path_send.is_empty(), "{n:?}");
        }
        // Our own announcements arrive, with our path identifier where
        // Add-Path is negotiated for sending.
        let rtbh = Route::blackhole("192.0.2.50".parse().unwrap());
        assert!(speaker.announce(rtbh.clone()).unwrap().accepted_by_all());
        assert!(speaker.announce(rule_192()).unwrap().accepted_by_all());
        let arrived = wait_until(WAIT, || {
            b.routes("master4")
                .iter()
                .any(|r| r.starts_with("192.0.2.50/32"))
                && b.routes("flowtab4")
                    .iter()
                    .any(|r| r.contains("192.0.2.80/32"))
        });
        assert!(
            arrived,
            "BIRD did not take our routes: {:?}\n{:?}",
            b.routes("master4"),
            b.routes("flowtab4")
        );
        speaker.withdraw(&rtbh);
        assert!(wait_until(WAIT, || !b
            .routes("master4")
            .iter()
            .any(|r| r.starts_with("192.0.2.50/32"))));
    });
}

#[test]
fn bird_unicast_and_flowspec_arrive_as_sent() {
    bird_sends(false);
}

#[test]
fn bird_with_add_path_arrives_by_path_identifier() {
    bird_sends(true);
}
