//! `--sensors N` (N > 1): the sensors as a cluster (issue 17,
//! docs/cluster.md), behind N routers.
//!
//! ```text
//!                             ┌─ router  ── collector  (s1, XDP on -cr)
//!   inet ── edge ── ECMP ─────┼─ router2 ── collector2 (s2, XDP on -c2)
//!  (hping3,  (forwards)       └─ router3 ── collector3 (s3, XDP on -c3)
//!   ping)
//!   lan (bridge 198.18.203.0/24): rr .1 (gobgpd, route reflector),
//!   routers .11-.13 (their BGP: gobgpd or BIRD), sensors .21-.23,
//!   nats1-3 .31-.33 (a JetStream cluster)
//! ```
//!
//! Every box is a namespace of its own. The traffic (hping3's flood and the
//! normal ping) starts in the inet; the edge forwards it to the customer
//! block over one ECMP route with a next hop in each router, hashed on the
//! packets' addresses, so hping3's random sources spread about evenly over
//! the routers. (Splitting where hping3 runs is not possible with routing
//! alone: the kernel routes a raw socket's packet before it reads the
//! source hping3 wrote into it; the lab has no nftables, iptables or
//! VRFs to mark it instead.) Each router hosts the customer block (as the
//! one-sensor lab's does) and runs an exporter of the chosen kind on its
//! veth to the edge: it samples what the edge sends it and exports it to
//! its own site's collector, as agent 198.18.200.(4i+1).
//!
//! Each collector holds a sensor (XDP on its veth to its router); the
//! management LAN joins the sensors, the NATS nodes (their cluster routes
//! too), the route reflector and the routers' BGP speakers. The sensors
//! are route-reflector clients (iBGP, AS 65001) of the gobgpd in the rr
//! namespace, which passes the rules on to each router's BGP speaker
//! (gobgpd or BIRD in the router's namespace, AS 65000, eBGP).
//!
//! The thresholds are the one-sensor lab's: hping3 makes 3.5-5 kpps here,
//! so each of three shares stays under every threshold (at most ~85 % of
//! UDP's 2 kpps) while the sum is over it, and still is with one share gone
//! (the stopped owner's exporter sends on to it). The checks, in the
//! timeline: every sensor clustered with N members; the attack detected
//! network-wide (`edge-sensor cluster`, with the sensors' own local attacks
//! counted); the rule on every router and exactly one copy of it at the
//! route reflector (every path it holds for the victim, per sensor); the
//! owner stopped (SIGTERM) 3 s after its rule came: another sensor's copy,
//! the times with no copy at the reflector and with no rule on some
//! router; exactly one copy until the attack ends; the rule withdrawn from
//! every router after it. The packets each router received during the
//! attack are counted on its veth to the edge (the split).

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use edge_sensor_labconf::{Bgp, BgpPeer, NatsCluster, cluster_section, nats_config};
use serde_json::{Value, json};

use super::{
    CUSTOMERS, ClusterNames, EDGE_ADDR, INTERRUPTED, Lab, LabArgs, Peer, ROUTER_EDGE_ADDR, exited,
    in_ns, ip,
    peers::start_peer_in,
    sensor::{HPING3_THRESHOLDS, config_with, wait_for_xdp_on},
    stop_attack,
    timeline::Timeline,
    topology::veth_pair,
    traffic::{Share, start_exporter_share, start_normal_traffic},
};
use crate::util;

/// `--sensors` at most: one digit in the veth names.
pub(super) const MAX_SENSORS: usize = 9;
/// The membership's timing: a stopped sensor leaves at once; a dead one is
/// noticed after `member_ttl`.
const HEARTBEAT: &str = "500ms";
const MEMBER_TTL: &str = "2s";
/// How long the owner's rule stays before the lab stops the owner.
const STOP_OWNER_AFTER: Duration = Duration::from_secs(3);

/// What `--sensors` > 1 cannot run (yet), said before anything starts.
pub(super) fn refuse(args: &LabArgs) -> Result<()> {
    if args.exporter.is_player() {
        bail!(
            "--sensors > 1 runs pmacct or softflowd exporters (one per sensor, each a share of the \
             traffic); the player sends one router's stream to one collector"
        );
    }
    if args.fastnetmon {
        bail!("--fastnetmon compares with one sensor: use --sensors 1");
    }
    Ok(())
}

/// Site `i`'s (0-based) router <-> collector link: the router's address
/// and the collector's (a /30 each; site 0's is the one-sensor lab's).
fn link(i: usize) -> (String, String) {
    (
        format!("198.18.200.{}", 4 * i + 1),
        format!("198.18.200.{}", 4 * i + 2),
    )
}

/// Router `i`'s link to the edge: the router's address and the edge's
/// (router 0's is the one-sensor lab's /24, the others a /30 each).
fn uplink(i: usize) -> (String, String) {
    match i {
        0 => (ROUTER_EDGE_ADDR.into(), EDGE_ADDR.into()),
        _ => (
            format!("198.18.204.{}", 4 * (i - 1) + 1),
            format!("198.18.204.{}", 4 * (i - 1) + 2),
        ),
    }
}

/// The inet behind the edge: the edge's address on their link, the
/// inet's, and the link's prefix.
const EDGE_INET_ADDR: &str = "198.18.205.1";
const INET_ADDR: &str = "198.18.205.2";
const INET_NET: &str = "198.18.205.0/30";

/// The management LAN (a bridge in the lan namespace), a /24: the route
/// reflector, router `i`'s BGP speaker, sensor `i`, NATS node `i`.
const LAN_BITS: u8 = 24;
const RR_ADDR: &str = "198.18.203.1";
fn router_lan(i: usize) -> String {
    format!("198.18.203.{}", 11 + i)
}
fn sensor_lan(i: usize) -> String {
    format!("198.18.203.{}", 21 + i)
}
fn nats_lan(i: usize) -> String {
    format!("198.18.203.{}", 31 + i)
}
/// Every LAN member's end of its veth to the bridge, in its own namespace.
const LAN_END: &str = "lan0";

/// One sensor of the cluster and where it lives.
struct Sensor {
    name: String,
    ns: String,
    iface: String,
    pins: String,
    socket: PathBuf,
    log: PathBuf,
    /// The name of its process in [`Lab::children`].
    child: &'static str,
}

fn sensors(lab: &Lab) -> Vec<Sensor> {
    let n = &lab.names;
    let mut out = vec![(n.collector.clone(), n.cr.clone(), n.pins.clone())];
    out.extend(
        n.more
            .iter()
            .map(|c| (c.ns.clone(), c.end.clone(), c.pins.clone())),
    );
    out.into_iter()
        .enumerate()
        .map(|(i, (ns, iface, pins))| {
            let name = format!("s{}", i + 1);
            Sensor {
                socket: lab.dir.join(format!("{name}.sock")),
                log: lab.dir.join(format!("{name}.log")),
                // A handful per lab, for its lifetime.
                child: Box::leak(format!("edge-sensor {name}").into_boxed_str()),
                name,
                ns,
                iface,
                pins,
            }
        })
        .collect()
}

/// One router: its namespace and its veth to the edge (where its exporter
/// samples what the edge sends it).
struct Router {
    ns: String,
    uplink: String,
}

fn routers(lab: &Lab) -> Vec<Router> {
    let n = &lab.names;
    let mut out = vec![Router {
        ns: n.router.clone(),
        uplink: n.re.clone(),
    }];
    out.extend(n.more.iter().map(|s| Router {
        ns: s.router.clone(),
        uplink: s.uplink.clone(),
    }));
    out
}

fn cluster_names(lab: &Lab) -> &ClusterNames {
    lab.names
        .cluster
        .as_ref()
        .expect("--sensors > 1 has the cluster's names")
}

fn sysctl(ns: &str, key: &str, value: &str) -> Result<()> {
    util::run(
        in_ns(ns, "sysctl")
            .args(["-qw", &format!("{key}={value}")])
            .stdout(Stdio::null()),
    )
}

fn addr_up(ns: &str, dev: &str, addr: &str, bits: u8) -> Result<()> {
    ip(&[
        "-n",
        ns,
        "addr",
        "add",
        &format!("{addr}/{bits}"),
        "dev",
        dev,
    ])?;
    ip(&["-n", ns, "link", "set", dev, "up"])
}

/// Everything beyond the one-sensor lab's three namespaces (see the
/// module's diagram): sites 2..N (a router and a collector each, the router
/// on a veth of its own to the edge), the inet behind the edge with the
/// edge spreading the customers' traffic over the routers (ECMP), the
/// management LAN with the route reflector and the NATS nodes.
fn more_topology(lab: &Lab) -> Result<()> {
    let n = &lab.names;
    let c = cluster_names(lab);
    for ns in n.namespaces().into_iter().skip(3) {
        ip(&["netns", "add", ns])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
    }
    for (k, site) in n.more.iter().enumerate() {
        let i = k + 1;
        let (router_addr, addr) = link(i);
        veth_pair((&site.router_end, &site.router), (&site.end, &site.ns))?;
        addr_up(&site.router, &site.router_end, &router_addr, 30)?;
        addr_up(&site.ns, &site.end, &addr, 30)?;
        ip(&[
            "-n",
            &site.ns,
            "route",
            "add",
            "default",
            "via",
            &router_addr,
        ])?;
        let (up_router, up_edge) = uplink(i);
        veth_pair((&site.uplink, &site.router), (&site.edge_end, &n.edge))?;
        addr_up(&site.router, &site.uplink, &up_router, 30)?;
        addr_up(&n.edge, &site.edge_end, &up_edge, 30)?;
        // As the first router: it hosts the customer block (AnyIP), and the
        // attack's sources are random, so no reverse-path filter.
        sysctl(&site.router, "net.ipv4.ip_forward", "1")?;
        for dev in ["all", "default", &site.uplink, &site.router_end] {
            sysctl(&site.router, &format!("net.ipv4.conf.{dev}.rp_filter"), "0")?;
        }
        ip(&[
            "-n",
            &site.router,
            "route",
            "add",
            "local",
            CUSTOMERS,
            "dev",
            "lo",
        ])?;
    }
    // The inet: the traffic's sources, behind the edge.
    veth_pair((&c.inet_end, &c.inet), (&c.edge_inet, &n.edge))?;
    addr_up(&c.inet, &c.inet_end, INET_ADDR, 30)?;
    addr_up(&n.edge, &c.edge_inet, EDGE_INET_ADDR, 30)?;
    ip(&[
        "-n",
        &c.inet,
        "route",
        "add",
        "default",
        "via",
        EDGE_INET_ADDR,
    ])?;
    // The edge forwards the inet's packets to the customers over all the
    // routers: one ECMP route, hashed on the source and destination
    // addresses (policy 0, the default), so hping3's random sources spread
    // about evenly. (A source-based rule where hping3 runs could not do
    // it: the kernel routes a raw socket's packets before it looks at the
    // source hping3 writes into them.)
    sysctl(&n.edge, "net.ipv4.ip_forward", "1")?;
    sysctl(&n.edge, "net.ipv4.fib_multipath_hash_policy", "0")?;
    for dev in ["all", "default", c.edge_inet.as_str()] {
        sysctl(&n.edge, &format!("net.ipv4.conf.{dev}.rp_filter"), "0")?;
    }
    let mut ecmp = vec![
        "-n".to_string(),
        n.edge.clone(),
        "route".into(),
        "add".into(),
        CUSTOMERS.into(),
    ];
    for (i, r) in routers(lab).iter().enumerate() {
        let (up_router, up_edge) = uplink(i);
        let edge_end = if i == 0 {
            &n.er
        } else {
            &n.more[i - 1].edge_end
        };
        ecmp.extend([
            "nexthop".into(),
            "via".into(),
            up_router,
            "dev".into(),
            edge_end.clone(),
        ]);
        // The way back to the inet (ping's replies).
        ip(&["-n", &r.ns, "route", "add", INET_NET, "via", &up_edge])?;
    }
    ip(&ecmp.iter().map(String::as_str).collect::<Vec<_>>())?;
    // The management LAN: a bridge with a port for every member.
    ip(&["-n", &c.lan, "link", "add", "br0", "type", "bridge"])?;
    ip(&["-n", &c.lan, "link", "set", "br0", "up"])?;
    let mut members = vec![("rr".to_string(), c.rr.clone(), RR_ADDR.to_string())];
    for (i, r) in routers(lab).iter().enumerate() {
        members.push((format!("r{}", i + 1), r.ns.clone(), router_lan(i)));
    }
    for (i, s) in sensors(lab).iter().enumerate() {
        members.push((format!("c{}", i + 1), s.ns.clone(), sensor_lan(i)));
    }
    for (i, ns) in c.nats.iter().enumerate() {
        members.push((format!("n{}", i + 1), ns.clone(), nats_lan(i)));
    }
    for (port, ns, addr) in &members {
        veth_pair((port, &c.lan), (LAN_END, ns))?;
        ip(&["-n", &c.lan, "link", "set", port, "master", "br0"])?;
        ip(&["-n", &c.lan, "link", "set", port, "up"])?;
        addr_up(ns, LAN_END, addr, LAN_BITS)?;
    }
    Ok(())
}

/// The packets each router's edge-facing veth has received so far.
fn received(routers: &[Router]) -> Vec<u64> {
    routers
        .iter()
        .map(|r| {
            let out = Command::new("ip")
                .args(["-j", "-s", "-n", &r.ns, "link", "show", "dev", &r.uplink])
                .output()
                .map(|o| o.stdout)
                .unwrap_or_default();
            serde_json::from_slice::<Value>(&out)
                .ok()
                .and_then(|v| {
                    v[0]["stats64"]["rx"]["packets"]
                        .as_u64()
                        .or_else(|| v[0]["stats"]["rx"]["packets"].as_u64())
                })
                .unwrap_or(0)
        })
        .collect()
}

/// `edge-sensor ARGS --json` on a sensor's control socket.
fn ask(bin: &Path, s: &Sensor, args: &[&str]) -> Option<Value> {
    let out = Command::new(bin)
        .args(args)
        .args(["--json", "--socket"])
        .arg(&s.socket)
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

/// The route reflector's paths for `victim` (an address: its /32; or a
/// prefix, the carpet's block) and Flow Spec rules with it as
/// destination, as the names of the sensors they came from.
fn copies_at_reflector(rr: &str, victim: &str, sensors: &[Sensor]) -> Vec<String> {
    let net = if victim.contains('/') {
        victim.to_string()
    } else {
        format!("{victim}/32")
    };
    let mut out = Vec::new();
    for (family, needle) in [
        ("ipv4", net.clone()),
        ("ipv4-flowspec", format!("destination: {net}")),
    ] {
        let text = in_ns(rr, "gobgp")
            .args(["-j", "global", "rib", "-a", family])
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default();
        let Ok(Value::Object(rib)) = serde_json::from_slice::<Value>(&text) else {
            continue;
        };
        for (nlri, paths) in rib {
            if nlri != needle && !(family != "ipv4" && nlri.contains(&needle)) {
                continue;
            }
            for p in paths.as_array().into_iter().flatten() {
                let from = p["neighbor-ip"].as_str().unwrap_or("?");
                let name = (0..sensors.len())
                    .find(|&i| sensor_lan(i) == from)
                    .map_or(from.to_string(), |i| sensors[i].name.clone());
                out.push(name);
            }
        }
    }
    out
}

/// The copies at the reflector and each router's rules, asked all at once
/// (a CLI call each; one after the other they would coarsen the times).
fn look(
    rr: &str,
    peer: Peer,
    victim: &str,
    sensors: &[Sensor],
    routers: &[Router],
) -> (Vec<String>, Vec<Vec<String>>) {
    std::thread::scope(|scope| {
        let at_routers: Vec<_> = routers
            .iter()
            .map(|r| scope.spawn(move || peer.rules(&r.ns)))
            .collect();
        let copies = copies_at_reflector(rr, victim, sensors);
        let rules = at_routers
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect();
        (copies, rules)
    })
}

fn start_nats(lab: &mut Lab, count: usize) -> Result<Vec<String>> {
    let routes: Vec<String> = (0..count)
        .map(|i| format!("{}:6222", nats_lan(i)))
        .collect();
    let mut servers = Vec::new();
    for i in 0..count {
        let addr = nats_lan(i);
        let ns = cluster_names(lab).nats[i].clone();
        let store = lab.dir.join(format!("nats{}", i + 1));
        fs::create_dir_all(&store)?;
        let conf = lab.dir.join(format!("nats{}.conf", i + 1));
        let cluster = NatsCluster {
            name: "es-lab".into(),
            listen: format!("{addr}:6222"),
            routes: routes.clone(),
        };
        fs::write(
            &conf,
            nats_config(
                &format!("n{}", i + 1),
                &format!("{addr}:4222"),
                store.to_str().context("a UTF-8 lab directory")?,
                Some(&cluster),
            ),
        )?;
        let log = fs::File::create(lab.dir.join(format!("nats{}.log", i + 1)))?;
        let child = in_ns(&ns, "nats-server")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting nats-server")?;
        lab.children.push(("nats-server", child));
        servers.push(format!("nats://{addr}:4222"));
    }
    Ok(servers)
}

/// The route reflector in its namespace on the LAN: the sensors its
/// clients, every router's BGP speaker an eBGP neighbor.
fn start_reflector(lab: &mut Lab, count: usize) -> Result<()> {
    let clients: Vec<String> = (0..count).map(sensor_lan).collect();
    let clients: Vec<&str> = clients.iter().map(String::as_str).collect();
    let routers: Vec<String> = (0..count).map(router_lan).collect();
    let upstreams: Vec<(&str, u32)> = routers.iter().map(|r| (r.as_str(), 65000)).collect();
    let conf = lab.dir.join("reflector.toml");
    fs::write(
        &conf,
        edge_sensor_labconf::route_reflector_config_to(
            65001,
            RR_ADDR,
            &[RR_ADDR],
            &clients,
            &upstreams,
        ),
    )?;
    let log = fs::File::create(lab.dir.join("reflector.log"))?;
    let child = in_ns(&cluster_names(lab).rr.clone(), "gobgpd")
        .arg("-f")
        .arg(&conf)
        .args(["--api-hosts", "127.0.0.1:50051", "--pprof-disable"])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting the route reflector (gobgpd)")?;
    lab.children.push(("route-reflector", child));
    Ok(())
}

fn start_sensor(lab: &mut Lab, bin: &Path, s: &Sensor, i: usize, servers: &[String]) -> Result<()> {
    let addr = sensor_lan(i);
    let bgp = Bgp::new(&addr, 65001, &[CUSTOMERS]).peer(
        BgpPeer::new("reflector", RR_ADDR, &addr, 65001)
            .extra("[bgp.peers.flowspec]\ndialect = \"gobgp\""),
    );
    let config = lab.dir.join(format!("{}.toml", s.name));
    fs::write(
        &config,
        format!(
            "{}\n{}",
            config_with(
                "[telemetry]\npass_telemetry = false\n",
                HPING3_THRESHOLDS,
                &lab.dir.join(format!("{}.events.jsonl", s.name)),
                &bgp.section(),
            ),
            cluster_section(
                servers,
                &s.name,
                servers.len().min(3),
                HEARTBEAT,
                MEMBER_TTL
            )
        ),
    )?;
    let log = fs::File::create(&s.log)?;
    let child = in_ns(&s.ns, bin.to_str().context("binary path")?)
        .args(["run", "--iface", &s.iface, "--pin-path", &s.pins])
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(lab.dir.join(format!("state-{}", s.name)))
        .arg("--control-socket")
        .arg(&s.socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting edge-sensor")?;
    lab.children.push((s.child, child));
    wait_for_xdp_on(lab, &s.ns, &s.iface, &s.log)
}

/// Stops sensor `s` (SIGTERM to its group, SIGKILL after 10 s) and takes
/// it out of the lab's children.
fn stop_sensor(lab: &mut Lab, s: &Sensor) {
    let Some(at) = lab.children.iter().position(|(n, _)| *n == s.child) else {
        return;
    };
    let (_, mut child) = lab.children.remove(at);
    let group = -(child.id() as i32);
    // SAFETY: signalling our own child's process group.
    unsafe { libc::kill(group, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: as above.
    unsafe { libc::kill(group, libc::SIGKILL) };
    let _ = child.wait();
}

fn logs(lab: &Lab, sensors: &[Sensor]) -> String {
    let mut out = String::new();
    for s in sensors {
        out += &format!(
            "--- {}:\n{}",
            s.name,
            fs::read_to_string(&s.log).unwrap_or_default()
        );
    }
    out += &format!(
        "--- route reflector:\n{}",
        fs::read_to_string(lab.dir.join("reflector.log")).unwrap_or_default()
    );
    for i in 1..=sensors.len() {
        out += &format!(
            "--- router {i}'s BGP:\n{}",
            fs::read_to_string(lab.dir.join(format!("peer-{i}.log"))).unwrap_or_default()
        );
    }
    out
}

/// The clustered lab, from the topology on (the caller built the first
/// collector's part and checked the tools).
pub(super) fn run(args: &LabArgs, lab: &mut Lab, bin: &Path, mut tl: Timeline) -> Result<()> {
    let n = args.sensors;
    more_topology(lab)?;
    let sensors = sensors(lab);
    let routers = routers(lab);
    let (rr, nats) = {
        let c = cluster_names(lab);
        (c.rr.clone(), c.nats.clone())
    };
    let servers = start_nats(lab, n)?;
    start_reflector(lab, n)?;
    let peer = args.peer;
    for (i, r) in routers.iter().enumerate() {
        start_peer_in(
            lab,
            peer,
            &r.ns,
            &router_lan(i),
            RR_ADDR,
            &format!("-{}", i + 1),
        )?;
    }
    for (i, s) in sensors.iter().enumerate() {
        start_sensor(lab, bin, s, i, &servers)?;
    }
    tl.note(
        "sensors",
        format!(
            "{n} sensors attached ({}); {n} NATS nodes ({}; JetStream, replicas {}); route \
             reflector gobgpd in {rr}; {} in each of {}",
            sensors
                .iter()
                .map(|s| format!("{} on {} in {}", s.name, s.iface, s.ns))
                .collect::<Vec<_>>()
                .join(", "),
            nats.join(", "),
            n.min(3),
            peer.daemon(),
            routers
                .iter()
                .map(|r| r.ns.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        ),
        json!({"sensors": n, "replicas": n.min(3), "routers": routers.iter().map(|r| &r.ns).collect::<Vec<_>>(),
            "nats": nats, "route_reflector": rr}),
    );

    // Every sensor clustered with every member: a JetStream cluster elects
    // its leaders first.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let states: Vec<Value> = sensors
            .iter()
            .map(|s| ask(bin, s, &["status"]).map_or(Value::Null, |v| v["cluster"].clone()))
            .collect();
        if states
            .iter()
            .all(|c| c["state"] == "clustered" && c["members"] == n)
        {
            break;
        }
        if let Some((name, status)) = exited(lab) {
            bail!("{name} exited early ({status}):\n{}", logs(lab, &sensors));
        }
        if Instant::now() > deadline || INTERRUPTED.load(Ordering::SeqCst) {
            bail!(
                "the sensors did not form a cluster of {n} in 60 s: {states:?}\n{}",
                logs(lab, &sensors)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    tl.note(
        "clustered",
        format!("every sensor clustered, {n} members"),
        json!({"members": n}),
    );

    for (i, (s, r)) in sensors.iter().zip(&routers).enumerate() {
        let (agent, collector) = link(i);
        let share = Share {
            index: i,
            ns: r.ns.clone(),
            iface: r.uplink.clone(),
            agent,
            collector,
        };
        let exporter = start_exporter_share(lab, args.exporter, args.sampling, Some(&share))
            .with_context(|| format!("the exporter for {}", s.name))?;
        lab.children.push(("exporter", exporter));
    }
    let traffic = start_normal_traffic(lab, args.duration)?;
    lab.children.push(("traffic", traffic));
    tl.note(
        "ready",
        format!(
            "{} exporting from each of the {n} routers (1:{} sampling) what the edge sends it, \
             router i to sensor i; the edge spreads the inet's traffic over the routers (ECMP \
             on the addresses); normal traffic: ping {INET_ADDR} -> {}",
            args.exporter.name(),
            args.sampling,
            super::VICTIM,
        ),
        json!({"exporter": args.exporter.name(), "sampling": args.sampling, "sensors": n}),
    );

    let victim = args.attack.target();
    let attack_at = Duration::from_secs(args.attack_at);
    let attack_end = attack_at + Duration::from_secs(args.attack_for);
    let mut attack: Option<Child> = None;
    let (mut attacking, mut ended) = (false, false);
    let mut detected = false;
    let mut owner: Option<String> = None;
    let mut ruled_at: Option<Duration> = None;
    let mut stopped: Option<(usize, Instant)> = None;
    let mut handed: Option<String> = None;
    let mut withdrawn = false;
    // The most copies at the reflector while the owner ran, and after the
    // handover (both while attacking); the longest time without a copy at
    // the reflector, and without a rule on the router, after the stop.
    let (mut most_before, mut most_after) = (0usize, 0usize);
    let (mut no_copy, mut no_rule) = (Gap::default(), Gap::default());
    let mut local_attacks = 0u64;
    // The routers' received packets when the attack started, and the
    // share each got.
    let mut rx_at_start: Vec<u64> = Vec::new();
    let mut split: Vec<u64> = Vec::new();
    // The most rules any router held at once while attacking.
    let mut most_rules = 0usize;
    // When the first router had the rule (`ruled_at`: every router).
    let mut first_rule_at: Option<Duration> = None;
    let mut last_view = Instant::now();
    let end = Instant::now() + Duration::from_secs(args.duration);
    while Instant::now() < end && !INTERRUPTED.load(Ordering::SeqCst) {
        let t = tl.start.elapsed();
        if !attacking && !ended && t >= attack_at {
            attacking = true;
            rx_at_start = received(&routers);
            attack = Some(args.attack.start(lab, args.attack_for)?);
            tl.note(
                "attack_started",
                format!(
                    "attack {:?} -> {victim} from {INET_ADDR}'s side, over {n} routers",
                    args.attack
                ),
                json!({"attack": format!("{:?}", args.attack), "target": victim}),
            );
        }
        if !ended && t >= attack_end {
            if let Some(a) = attack.take() {
                stop_attack(a);
            }
            attacking = false;
            ended = true;
            split = received(&routers)
                .iter()
                .zip(&rx_at_start)
                .map(|(now, then)| now.saturating_sub(*then))
                .collect();
            let total: u64 = split.iter().sum();
            tl.note(
                "attack_ended",
                format!(
                    "attack stopped; packets each router received meanwhile: {}",
                    split
                        .iter()
                        .zip(&routers)
                        .map(|(p, r)| format!(
                            "{} {p} ({:.0} %)",
                            r.ns,
                            100.0 * *p as f64 / total.max(1) as f64
                        ))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                json!({"received": split}),
            );
        }
        let live: Vec<usize> = (0..n)
            .filter(|&i| stopped.is_none_or(|(o, _)| o != i))
            .collect();
        if attacking && !detected {
            let views: Vec<Value> = live
                .iter()
                .filter_map(|&i| ask(bin, &sensors[i], &["cluster"]))
                .collect();
            if let Some(a) = views
                .iter()
                .find_map(|v| v["attacks"].as_array().and_then(|l| l.first()).cloned())
            {
                detected = true;
                owner = a["owner"].as_str().map(str::to_string);
                let local: Vec<u64> = live
                    .iter()
                    .map(|&i| {
                        ask(bin, &sensors[i], &["status"])
                            .and_then(|s| s["detection"]["attacks"].as_u64())
                            .unwrap_or(0)
                    })
                    .collect();
                tl.note(
                    "detected",
                    format!(
                        "detected network-wide: {} on {} at {:.0} pps, owner {}; local attacks \
                         per sensor {local:?}",
                        a["class"].as_str().unwrap_or("?"),
                        a["victim"].as_str().unwrap_or("?"),
                        a["pps"].as_f64().unwrap_or(0.0),
                        owner.as_deref().unwrap_or("?")
                    ),
                    json!({"class": a["class"], "victim": a["victim"], "pps": a["pps"],
                        "owner": owner, "local_attacks": local}),
                );
            }
        }
        if attacking && detected {
            for &i in &live {
                let l = ask(bin, &sensors[i], &["status"])
                    .and_then(|s| s["detection"]["attacks"].as_u64())
                    .unwrap_or(0);
                local_attacks = local_attacks.max(l);
            }
        }
        let (copies, at_routers) = look(&rr, peer, victim, &sensors, &routers);
        // "On the router": on every router; "no rule": some router has none.
        let on_all = at_routers.iter().all(|r| !r.is_empty());
        let on_none = at_routers.iter().all(Vec::is_empty);
        if attacking {
            most_rules = most_rules.max(at_routers.iter().map(Vec::len).max().unwrap_or(0));
        }
        if first_rule_at.is_none() && !on_none {
            first_rule_at = Some(t);
        }
        if ruled_at.is_none() && on_all {
            ruled_at = Some(t);
            let rules = at_routers[0].clone();
            tl.note(
                "rule_on_peer",
                format!(
                    "on {} in all {n} routers: {}; at the route reflector from {copies:?}",
                    args.peer.daemon(),
                    at_routers
                        .iter()
                        .map(|r| r.join(" | "))
                        .collect::<Vec<_>>()
                        .join(" / ")
                ),
                json!({"rules": rules, "per_router": at_routers, "announced_by": copies}),
            );
        }
        match stopped {
            None if attacking => {
                most_before = most_before.max(copies.len());
                if let Some(r) = ruled_at
                    && t >= r + STOP_OWNER_AFTER
                {
                    // The announcer at the reflector, or the view's owner.
                    let who = match copies.as_slice() {
                        [one] => Some(one.clone()),
                        _ => owner.clone(),
                    };
                    let Some(i) = who
                        .as_ref()
                        .and_then(|w| sensors.iter().position(|s| &s.name == w))
                    else {
                        bail!(
                            "no owner to stop (copies {copies:?}, owner {owner:?}):\n{}",
                            logs(lab, &sensors)
                        );
                    };
                    stop_sensor(lab, &sensors[i]);
                    stopped = Some((i, Instant::now()));
                    tl.note(
                        "owner_stopped",
                        format!("stopped the owner {} (SIGTERM)", sensors[i].name),
                        json!({"owner": sensors[i].name}),
                    );
                }
            }
            Some((o, at)) => {
                // Until the attack ends: then the rule goes, as it should.
                no_copy.see(copies.is_empty() && !ended);
                no_rule.see(!on_all && !ended);
                let heirs: Vec<&String> =
                    copies.iter().filter(|c| **c != sensors[o].name).collect();
                if handed.is_none() && !heirs.is_empty() {
                    handed = Some(heirs[0].clone());
                    tl.note(
                        "handed_over",
                        format!(
                            "{} announces it {:.2} s after the stop; no copy at the route \
                             reflector for {:.2} s, no rule on some router's {} for {:.2} s",
                            heirs[0],
                            at.elapsed().as_secs_f64(),
                            no_copy.longest().as_secs_f64(),
                            args.peer.daemon(),
                            no_rule.longest().as_secs_f64()
                        ),
                        json!({"heir": heirs[0], "after_s": at.elapsed().as_secs_f64(),
                            "no_copy_s": no_copy.longest().as_secs_f64(),
                            "no_rule_s": no_rule.longest().as_secs_f64()}),
                    );
                }
                if handed.is_some() && attacking {
                    most_after = most_after.max(copies.len());
                }
            }
            None => {}
        }
        if ruled_at.is_some() && ended && !withdrawn && on_none && copies.is_empty() {
            withdrawn = true;
            tl.note(
                "withdrawn",
                format!(
                    "no router's {} has a rule left, the route reflector no copy",
                    args.peer.daemon()
                ),
                json!({}),
            );
            break;
        }
        if ended && !withdrawn && t > attack_end + Duration::from_secs(40) {
            break;
        }
        if !args.json && last_view.elapsed() >= Duration::from_secs(5) {
            last_view = Instant::now();
            if let Some(&i) = live.first() {
                let out = Command::new(bin)
                    .args(["cluster", "--socket"])
                    .arg(&sensors[i].socket)
                    .output()?;
                print!("{}", String::from_utf8_lossy(&out.stdout));
            }
        }
        if let Some((name, status)) = exited(lab) {
            bail!("{name} exited early ({status}):\n{}", logs(lab, &sensors));
        }
        std::thread::sleep(Duration::from_millis(if attacking { 50 } else { 200 }));
    }
    if let Some(a) = attack.take() {
        stop_attack(a);
    }
    no_copy.end();
    no_rule.end();
    let complete = detected
        && ruled_at.is_some()
        && most_before == 1
        && handed.is_some()
        && most_after == 1
        && withdrawn;
    let since = |e: &str| Some(tl.time_of(e)? - tl.time_of("attack_started")?);
    let s = json!({
        "event": "summary",
        "attack": format!("{:?}", args.attack),
        "sensors": n,
        "complete": complete,
        "detect_s": since("detected"),
        "rule_on_peer_s": since("rule_on_peer"),
        "rule_on_first_router_s": (|| Some(first_rule_at?.as_secs_f64() - tl.time_of("attack_started")?))(),
        "withdrawn_after_end_s": (|| Some(tl.time_of("withdrawn")? - tl.time_of("attack_ended")?))(),
        "owner": stopped.map(|(o, _)| sensors[o].name.clone()),
        "heir": handed,
        "handover_s": (|| Some(tl.time_of("handed_over")? - tl.time_of("owner_stopped")?))(),
        "no_copy_s": no_copy.longest().as_secs_f64(),
        "no_rule_s": no_rule.longest().as_secs_f64(),
        "most_copies_before": most_before,
        "most_copies_after": most_after,
        "most_local_attacks": local_attacks,
        "most_rules_per_router": most_rules,
        "received_per_router": split,
    });
    let f = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.2} s"));
    tl.summary_with(
        &s,
        format!(
            "summary ({n} sensors, {n} routers): network-wide detection {}, the rule on the \
             first router {} and on every router {} after the attack started, {} cop{} at the route reflector, at most {} \
             rule(s) per router; owner {} stopped, {} announced {} later (no copy for {}, no \
             rule on some router for {}), then at most {} cop{}; withdrawn {} after the attack \
             ended; at most {} local attack(s) per sensor; the flood's packets per router {:?}",
            f(&s["detect_s"]),
            f(&s["rule_on_first_router_s"]),
            f(&s["rule_on_peer_s"]),
            most_before,
            if most_before == 1 { "y" } else { "ies" },
            most_rules,
            s["owner"].as_str().unwrap_or("-"),
            s["heir"].as_str().unwrap_or("nobody"),
            f(&s["handover_s"]),
            f(&s["no_copy_s"]),
            f(&s["no_rule_s"]),
            most_after,
            if most_after == 1 { "y" } else { "ies" },
            f(&s["withdrawn_after_end_s"]),
            local_attacks,
            split,
        ),
    );
    if INTERRUPTED.load(Ordering::SeqCst) {
        eprintln!("lab: interrupted; cleaning up");
    } else if !complete {
        eprintln!(
            "lab: the cluster's loop did not complete; logs:\n{}",
            logs(lab, &sensors)
        );
    }
    Ok(())
}

/// The longest run of `true` seen by [`Gap::see`].
#[derive(Default)]
struct Gap {
    since: Option<Instant>,
    longest: Duration,
}

impl Gap {
    fn see(&mut self, empty: bool) {
        match (empty, self.since) {
            (true, None) => self.since = Some(Instant::now()),
            (false, Some(t)) => {
                self.longest = self.longest.max(t.elapsed());
                self.since = None;
            }
            _ => {}
        }
    }

    fn end(&mut self) {
        self.see(false);
    }

    fn longest(&self) -> Duration {
        self.since
            .map_or(self.longest, |t| self.longest.max(t.elapsed()))
    }
}
