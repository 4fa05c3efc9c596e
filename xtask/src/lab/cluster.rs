//! `--sensors N` (N > 1): the sensors as a cluster (issue 17,
//! docs/cluster.md).
//!
//! ```text
//!                    ┌── 198.18.200.1/30 ──── .2  collector    s1 + NATS n1
//!   edge ─── router ─┼── 198.18.200.5/30 ──── .6  collector2   s2 + NATS n2
//!  (router's BGP)    └── 198.18.200.9/30 ──── .10 collector3   s3 + NATS n3
//!                     route reflector (gobgpd, AS 65001) in the router
//!                     namespace; N exporters on the edge-facing veth
//! ```
//!
//! Each collector namespace holds a sensor (XDP on its veth) and a node of
//! a JetStream cluster (replicas up to 3), the way an operator would run
//! one of each per site. The router namespace runs N exporters of the
//! chosen kind, each standing for one edge router: exporter `i` samples the
//! packets whose source address ends in a byte `i` modulo N (hping3's
//! random sources: a flood split N ways) and exports them to sensor `i`.
//! The sensors are route-reflector clients (iBGP) of a gobgpd in the router
//! namespace, which passes the rules on to the router's BGP (gobgpd or
//! BIRD in the edge namespace, eBGP as in the one-sensor lab).
//!
//! The thresholds are the one-sensor lab's: hping3 makes 3.5-5 kpps here,
//! so each of three shares stays under every threshold (at most ~85 % of
//! UDP's 2 kpps) while the sum is over it, and still is with one share gone
//! (the stopped owner's exporter sends on to it). The checks, in the timeline: every sensor clustered with N
//! members; the attack detected network-wide (`edge-sensor cluster`, with
//! the sensors' own local attacks counted); the rule on the router and
//! exactly one copy of it at the route reflector (every path it holds for
//! the victim, per sensor); the owner stopped (SIGTERM) 3 s after its rule
//! came: another sensor's copy, the times with no copy at the reflector and
//! no rule on the router; exactly one copy until the attack ends; the rule
//! withdrawn after it.

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
    Attack, CUSTOMERS, EDGE_ADDR, INTERRUPTED, Lab, LabArgs, ROUTER_ADDR, ROUTER_EDGE_ADDR, exited,
    in_ns, ip,
    peers::start_peer,
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
    if args.attack == Attack::Carpet {
        bail!(
            "--attack carpet with --sensors > 1: the cluster's summaries carry no per-block \
             aggregates yet (docs/cluster.md), so carpet bombing is detected per sensor only"
        );
    }
    Ok(())
}

/// Collector `i`'s link: the router's address and the collector's.
fn link(i: usize) -> (String, String) {
    (
        format!("198.18.200.{}", 4 * i + 1),
        format!("198.18.200.{}", 4 * i + 2),
    )
}

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

/// The collectors beyond the first: a namespace each, a veth to the
/// router, a /30 on it, the default route via the router.
fn more_topology(lab: &Lab) -> Result<()> {
    let n = &lab.names;
    for (k, c) in n.more.iter().enumerate() {
        let (router_addr, addr) = link(k + 1);
        ip(&["netns", "add", &c.ns])?;
        ip(&["-n", &c.ns, "link", "set", "lo", "up"])?;
        veth_pair((&c.router_end, &n.router), (&c.end, &c.ns))?;
        for (ns, dev, a) in [
            (&n.router, &c.router_end, &router_addr),
            (&c.ns, &c.end, &addr),
        ] {
            ip(&["-n", ns, "addr", "add", &format!("{a}/30"), "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        util::run(
            in_ns(&n.router, "sysctl")
                .args([
                    "-qw",
                    &format!("net.ipv4.conf.{}.rp_filter=0", c.router_end),
                ])
                .stdout(Stdio::null()),
        )?;
        ip(&["-n", &c.ns, "route", "add", "default", "via", &router_addr])?;
    }
    Ok(())
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

/// The route reflector's paths for `victim` (its /32 and Flow Spec rules
/// with it as destination), as the names of the sensors they came from.
fn copies_at_reflector(lab: &Lab, victim: &str, sensors: &[Sensor]) -> Vec<String> {
    let mut out = Vec::new();
    for (family, needle) in [
        ("ipv4", format!("{victim}/32")),
        ("ipv4-flowspec", format!("destination: {victim}/32")),
    ] {
        let text = in_ns(&lab.names.router, "gobgp")
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
                    .find(|&i| link(i).1 == from)
                    .map_or(from.to_string(), |i| sensors[i].name.clone());
                out.push(name);
            }
        }
    }
    out
}

fn start_nats(lab: &mut Lab, count: usize) -> Result<Vec<String>> {
    let routes: Vec<String> = (0..count).map(|i| format!("{}:6222", link(i).1)).collect();
    let mut servers = Vec::new();
    for i in 0..count {
        let addr = link(i).1;
        let ns = if i == 0 {
            lab.names.collector.clone()
        } else {
            lab.names.more[i - 1].ns.clone()
        };
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

fn start_reflector(lab: &mut Lab, count: usize) -> Result<()> {
    let clients: Vec<String> = (0..count).map(|i| link(i).1).collect();
    let clients: Vec<&str> = clients.iter().map(String::as_str).collect();
    let conf = lab.dir.join("reflector.toml");
    fs::write(
        &conf,
        edge_sensor_labconf::route_reflector_config(
            65001,
            ROUTER_ADDR,
            &[],
            &clients,
            Some((EDGE_ADDR, 65000)),
        ),
    )?;
    let log = fs::File::create(lab.dir.join("reflector.log"))?;
    let child = in_ns(&lab.names.router, "gobgpd")
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
    let (router_addr, addr) = link(i);
    let bgp = Bgp::new(&addr, 65001, &[CUSTOMERS]).peer(
        BgpPeer::new("reflector", &router_addr, &addr, 65001)
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
    out
}

/// The clustered lab, from the topology on (the caller built the first
/// collector's part and checked the tools).
pub(super) fn run(args: &LabArgs, lab: &mut Lab, bin: &Path, mut tl: Timeline) -> Result<()> {
    let n = args.sensors;
    more_topology(lab)?;
    let sensors = sensors(lab);
    let servers = start_nats(lab, n)?;
    start_reflector(lab, n)?;
    let peer = start_peer(lab, args.peer, ROUTER_EDGE_ADDR)?;
    for (i, s) in sensors.iter().enumerate() {
        start_sensor(lab, bin, s, i, &servers)?;
    }
    tl.note(
        "sensors",
        format!(
            "{n} sensors attached ({}), {n} NATS nodes beside them (JetStream, replicas {}), \
             route reflector gobgpd in {}",
            sensors
                .iter()
                .map(|s| format!("{} on {} in {}", s.name, s.iface, s.ns))
                .collect::<Vec<_>>()
                .join(", "),
            n.min(3),
            lab.names.router
        ),
        json!({"sensors": n, "replicas": n.min(3)}),
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

    for (i, s) in sensors.iter().enumerate() {
        let (agent, collector) = link(i);
        let share = Share {
            index: i,
            of: n,
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
            "{n} x {} exporting from {} (1:{} sampling), exporter i samples the sources ending in \
             i mod {n} for sensor i; normal traffic: ping {EDGE_ADDR} -> {}; peer: {} in {} via \
             the route reflector",
            args.exporter.name(),
            lab.names.router,
            args.sampling,
            super::VICTIM,
            args.peer.daemon(),
            lab.names.edge
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
    let mut last_view = Instant::now();
    let end = Instant::now() + Duration::from_secs(args.duration);
    while Instant::now() < end && !INTERRUPTED.load(Ordering::SeqCst) {
        let t = tl.start.elapsed();
        if !attacking && !ended && t >= attack_at {
            attacking = true;
            attack = Some(args.attack.start(lab, args.attack_for)?);
            tl.note(
                "attack_started",
                format!("attack {:?} -> {victim}, split {n} ways", args.attack),
                json!({"attack": format!("{:?}", args.attack), "target": victim}),
            );
        }
        if !ended && t >= attack_end {
            if let Some(a) = attack.take() {
                stop_attack(a);
            }
            attacking = false;
            ended = true;
            tl.note("attack_ended", "attack stopped".into(), json!({}));
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
        let copies = copies_at_reflector(lab, victim, &sensors);
        let rules = peer.rules(&lab.names.edge);
        if ruled_at.is_none() && !rules.is_empty() {
            ruled_at = Some(t);
            tl.note(
                "rule_on_peer",
                format!(
                    "on {}: {}; at the route reflector from {copies:?}",
                    args.peer.daemon(),
                    rules.join(" | ")
                ),
                json!({"rules": rules, "announced_by": copies}),
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
                no_rule.see(rules.is_empty() && !ended);
                let heirs: Vec<&String> =
                    copies.iter().filter(|c| **c != sensors[o].name).collect();
                if handed.is_none() && !heirs.is_empty() {
                    handed = Some(heirs[0].clone());
                    tl.note(
                        "handed_over",
                        format!(
                            "{} announces it {:.2} s after the stop; no copy at the route \
                             reflector for {:.2} s, no rule on {} for {:.2} s",
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
        if ruled_at.is_some() && ended && !withdrawn && rules.is_empty() && copies.is_empty() {
            withdrawn = true;
            tl.note(
                "withdrawn",
                format!(
                    "{} has no rule left, the route reflector no copy",
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
        "withdrawn_after_end_s": (|| Some(tl.time_of("withdrawn")? - tl.time_of("attack_ended")?))(),
        "owner": stopped.map(|(o, _)| sensors[o].name.clone()),
        "heir": handed,
        "handover_s": (|| Some(tl.time_of("handed_over")? - tl.time_of("owner_stopped")?))(),
        "no_copy_s": no_copy.longest().as_secs_f64(),
        "no_rule_s": no_rule.longest().as_secs_f64(),
        "most_copies_before": most_before,
        "most_copies_after": most_after,
        "most_local_attacks": local_attacks,
    });
    let f = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.2} s"));
    tl.summary_with(
        &s,
        format!(
            "summary ({n} sensors): network-wide detection {} and rule on the peer {} after the \
             attack started, {} cop{} at the route reflector; owner {} stopped, {} announced {} \
             later (no copy for {}, no rule on the router for {}), then at most {} cop{}; \
             withdrawn {} after the attack ended; at most {} local attack(s) per sensor",
            f(&s["detect_s"]),
            f(&s["rule_on_peer_s"]),
            most_before,
            if most_before == 1 { "y" } else { "ies" },
            s["owner"].as_str().unwrap_or("-"),
            s["heir"].as_str().unwrap_or("nobody"),
            f(&s["handover_s"]),
            f(&s["no_copy_s"]),
            f(&s["no_rule_s"]),
            most_after,
            if most_after == 1 { "y" } else { "ies" },
            f(&s["withdrawn_after_end_s"]),
            local_attacks,
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
