//! The cluster harness (issue 17): three `edge-sensor run` daemons (the
//! userspace collector, each on its own sFlow port), a real `nats-server
//! -js` (one, or a three-node JetStream cluster) and gobgpd as the route
//! reflector all three peer with, in one network namespace; exporters
//! playing real sFlow v5 datagrams to loopback inside it. Shared by the
//! end-to-end tests (tests/tests/cluster.rs) and the cluster benchmark
//! (tests/bench, `cargo xtask bench --only cluster`).

use std::{
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    Guarded, PinDir,
    bgp::{Gobgpd, TempDir},
    labconf,
    netns::{NetNs, start_sensor_userspace},
    require_root, require_tool, sensor_bin,
    sflow::{Datagram, Record, Sample},
};

pub const VICTIM: &str = "198.18.202.10";
pub const NAMES: [&str; 3] = ["s1", "s2", "s3"];
/// The threshold (all traffic) in every sensor, and each exporter's share.
pub const THRESHOLD_PPS: u32 = 10_000;
pub const SHARE_PPS: u32 = 4_000;
pub const SAMPLING: u32 = 100;
pub const NATS_PORT: u16 = 4222;
/// `cluster.member_ttl` in these tests: the failover's main term.
pub const MEMBER_TTL: Duration = Duration::from_secs(1);
/// The longest the router may hold no copy of the rule after the owner
/// dies: the membership expiring (`member_ttl`), a node step and a poll
/// (500 ms each), the BGP UPDATE; the issue's acceptance is 5 s.
pub const FAILOVER_BOUND: Duration = Duration::from_secs(5);

/// The namespace with nats-server, gobgpd and three sensors.
pub struct Cluster {
    pub ns: &'static NetNs,
    pub dir: TempDir,
    /// The NATS servers (one, or a three-node JetStream cluster).
    pub nats: Vec<Option<Guarded>>,
    pub gobgp: Gobgpd<'static>,
    pub sensors: Vec<Option<Guarded>>,
    pub pins: Vec<PinDir>,
}

pub fn gobgpd_config() -> String {
    let clients: Vec<String> = (0..NAMES.len())
        .map(|i| format!("127.0.0.{}", i + 2))
        .collect();
    let clients: Vec<&str> = clients.iter().map(String::as_str).collect();
    labconf::route_reflector_config(65001, "127.0.0.1", &["127.0.0.1"], &clients, None)
}

/// Sensor `i`'s configuration; `nats_nodes` 0: no `[cluster]`.
pub fn sensor_config(i: usize, dir: &std::path::Path, nats_nodes: usize) -> String {
    let name = NAMES[i];
    let servers: Vec<String> = (0..nats_nodes)
        .map(|n| format!("nats://127.0.0.1:{}", NATS_PORT + n as u16))
        .collect();
    let addr = format!("127.0.0.{}", i + 2);
    format!(
        r#"
[daemon]
metrics_listen = "127.0.0.1:{metrics}"

[telemetry]
sflow_ports = [{port}]
ipfix_ports = [{ipfix}]
netflow_ports = [{netflow}]

[detect]
own_networks = ["198.18.0.0/15"]
poll_interval = "500ms"
smoothing = "1s"
[detect.thresholds]
all = {{ pps = {THRESHOLD_PPS} }}
[detect.release]
ratio = 0.5
min_duration = "2s"
hold = "2s"

[mitigation]
min_hold = "5s"
event_log = "{events}"

{bgp}
{cluster}"#,
        metrics = 9810 + i,
        port = sflow_port(i),
        ipfix = 14739 + i,
        netflow = 12055 + i,
        bgp = labconf::Bgp::new(&addr, 65001, &["198.18.0.0/15"])
            .peer(
                labconf::BgpPeer::new("rr", "127.0.0.1", &addr, 65001)
                    .extra("[bgp.peers.flowspec]\ndialect = \"gobgp\"")
            )
            .section(),
        events = dir.join(format!("{name}.events.jsonl")).display(),
        cluster = if nats_nodes == 0 {
            String::new()
        } else {
            labconf::cluster_section(
                &servers,
                name,
                nats_nodes,
                "200ms",
                &format!("{}ms", MEMBER_TTL.as_millis()),
            )
        },
    )
}

pub fn sflow_port(i: usize) -> u16 {
    16343 + i as u16
}

/// Leaked on purpose: the namespace outlives the daemons borrowing it
/// (they are dropped first, [`Cluster`]'s fields in order), and it is
/// deleted on drop of the leak's owner... which never comes; so the test
/// deletes it itself in [`Drop for Cluster`].
pub fn namespace() -> &'static NetNs {
    Box::leak(Box::new(NetNs::new("es-cl")))
}

impl Cluster {
    /// `nats_nodes`: 1, or 3 for a JetStream cluster (replicas 3).
    pub fn start(nats_nodes: usize) -> Self {
        Self::start_with(nats_nodes, NAMES.len())
    }

    /// `sensors` of the three (the first ones); `nats_nodes` 0: no NATS
    /// and sensors without `[cluster]`.
    pub fn start_with(nats_nodes: usize, sensors: usize) -> Self {
        Self::start_tuned(nats_nodes, sensors, |config| config)
    }

    /// As [`Cluster::start_with`], every sensor's configuration passed
    /// through `tune` (the benchmark's own networks and map sizes).
    pub fn start_tuned(nats_nodes: usize, sensors: usize, tune: impl Fn(String) -> String) -> Self {
        require_root();
        for tool in ["nats-server", "gobgpd", "gobgp"] {
            require_tool(tool);
        }
        let ns = namespace();
        let dir = TempDir::new("es-cl");
        let mut nats = Vec::new();
        for n in 0..nats_nodes {
            nats.push(Some(start_nats(ns, dir.path(), n, nats_nodes)));
        }
        let gobgp = Gobgpd::start(ns, &gobgpd_config());
        let mut c = Self {
            ns,
            dir,
            nats,
            gobgp,
            sensors: Vec::new(),
            pins: Vec::new(),
        };
        for (i, name) in NAMES.iter().enumerate().take(sensors) {
            let config = c.dir.path().join(format!("{name}.toml"));
            std::fs::write(&config, tune(sensor_config(i, c.dir.path(), nats_nodes))).unwrap();
            c.pins.push(PinDir::new());
            c.sensors.push(None);
            c.start_sensor(i);
        }
        c
    }

    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("{}.log", NAMES[i]))
    }

    pub fn start_sensor(&mut self, i: usize) {
        let config = self.dir.path().join(format!("{}.toml", NAMES[i]));
        let args = [
            "--config".as_ref(),
            config.as_os_str(),
            "--mode".as_ref(),
            "userspace".as_ref(),
        ];
        self.sensors[i] = Some(start_sensor_userspace(
            self.ns,
            "lo",
            self.pins[i].path(),
            &self.log_path(i),
            &args,
        ));
    }

    /// SIGTERM to sensor `i`, waited for on a thread of its own (a clean
    /// stop hands its rules over before it exits): joins with its exit.
    pub fn terminate(
        &mut self,
        i: usize,
    ) -> std::thread::JoinHandle<Option<std::process::ExitStatus>> {
        let s = self.sensors[i].take().expect("sensor running");
        std::thread::spawn(move || s.stop(libc::SIGTERM))
    }

    /// Rewrites sensor `i`'s configuration through `edit` and sends it
    /// SIGHUP; returns once its `status` shows the reload's outcome.
    pub fn reload(&self, i: usize, edit: impl Fn(String) -> String) -> Value {
        let path = self.dir.path().join(format!("{}.toml", NAMES[i]));
        let text = std::fs::read_to_string(&path).expect("sensor config");
        std::fs::write(&path, edit(text)).unwrap();
        let before = self.ask(i, &["status"])["last_reload"]["count"]
            .as_u64()
            .unwrap_or(0);
        let pid = self.sensors[i].as_ref().expect("sensor running").0.id() as i32;
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, libc::SIGHUP) };
        let mut last = Value::Null;
        let reloaded = wait(Duration::from_secs(10), || {
            last = self.ask(i, &["status"])["last_reload"].clone();
            last["count"].as_u64().unwrap_or(0) > before
        });
        assert!(reloaded, "{} did not reload: {last}", NAMES[i]);
        last
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(s) = self.sensors[i].take() {
            s.stop(libc::SIGKILL);
        }
    }

    pub fn logs(&self) -> String {
        (0..self.sensors.len())
            .map(|i| {
                format!(
                    "--- {}:\n{}",
                    NAMES[i],
                    std::fs::read_to_string(self.log_path(i)).unwrap_or_default()
                )
            })
            .collect()
    }

    /// `edge-sensor ARGS --json` against sensor `i`'s control socket.
    pub fn ask(&self, i: usize, args: &[&str]) -> Value {
        let out = self
            .ns
            .command(sensor_bin())
            .args(args)
            .args(["--json", "--socket"])
            .arg(self.log_path(i).with_extension("sock"))
            .output()
            .expect("run edge-sensor");
        assert!(
            out.status.success(),
            "{args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        serde_json::from_slice(&out.stdout).expect("JSON")
    }

    /// Copies of [`VICTIM`]'s rule on gobgpd.
    pub fn copies(&self) -> usize {
        self.copies_of(VICTIM).len()
    }

    /// Copies of `victim`'s rule on gobgpd: paths for its /32 (blackhole)
    /// and Flow Spec rules with it as destination, from every neighbor;
    /// the sensor (by name) each came from.
    pub fn copies_of(&self, victim: &str) -> Vec<String> {
        self.copies_of_net(&format!("{victim}/32"))
    }

    /// Copies of the rule for the prefix `net` (`198.18.202.0/24`): paths
    /// for it and Flow Spec rules with it as destination.
    pub fn copies_of_net(&self, net: &str) -> Vec<String> {
        self.copies_in(net, &["ipv4", "ipv4-flowspec"])
    }

    /// Flow Spec copies only of `victim`'s rule (not blackholes).
    pub fn flowspec_copies_of(&self, victim: &str) -> Vec<String> {
        self.copies_in(&format!("{victim}/32"), &["ipv4-flowspec"])
    }

    fn copies_in(&self, net: &str, families: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        for family in families {
            let needle = if *family == "ipv4" {
                net.to_string()
            } else {
                format!("destination: {net}")
            };
            for (nlri, paths) in self.gobgp.rib(family) {
                if nlri == needle || (*family != "ipv4" && nlri.contains(&needle)) {
                    for p in paths.as_array().into_iter().flatten() {
                        let from = p["neighbor-ip"].as_str().unwrap_or("?");
                        let sensor = from
                            .strip_prefix("127.0.0.")
                            .and_then(|n| n.parse::<usize>().ok())
                            .and_then(|n| NAMES.get(n.wrapping_sub(2)))
                            .map_or(from.to_string(), |s| s.to_string());
                        out.push(sensor);
                    }
                }
            }
        }
        out
    }

    /// Whether sensor `i` has an active automatic mitigation of `victim`
    /// (announced, or held back because the same rule is in force).
    pub fn mitigating(&self, i: usize, victim: &str) -> bool {
        let m = self.ask(i, &["mitigations"]);
        crate::assert_json_schema("mitigations", &m);
        m["mitigations"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|m| m["victim"] == format!("{victim}/32") && m["manual"] == false)
    }

    /// `mitigation_announced` records in sensor `i`'s event log.
    pub fn announced_by(&self, i: usize) -> usize {
        let path = self.dir.path().join(format!("{}.events.jsonl", NAMES[i]));
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"mitigation_announced\""))
            .count()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for s in self.sensors.iter_mut() {
            drop(s.take());
        }
        self.gobgp.stop(libc::SIGTERM);
        self.nats.clear();
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.ns.name])
            .status();
    }
}

/// NATS server `n` of `count` in `ns` (JetStream, its store in `dir`),
/// listening on 127.0.0.1:4222+n once this returns, its monitoring
/// (`/varz`) on 127.0.0.1:8222+n; with `count` > 1 a member of a
/// JetStream cluster with the others (routes on 6222+n).
pub fn start_nats(ns: &NetNs, dir: &std::path::Path, n: usize, count: usize) -> Guarded {
    let port = NATS_PORT + n as u16;
    let store = dir.join(format!("nats{n}"));
    std::fs::create_dir_all(&store).unwrap();
    let config = dir.join(format!("nats{n}.conf"));
    let cluster = (count > 1).then(|| labconf::NatsCluster {
        name: "es-cl".into(),
        listen: format!("127.0.0.1:{}", 6222 + n),
        routes: (0..count)
            .map(|r| format!("127.0.0.1:{}", 6222 + r))
            .collect(),
    });
    std::fs::write(
        &config,
        labconf::nats_config(
            &format!("n{n}"),
            &format!("127.0.0.1:{port}"),
            store.to_str().expect("a UTF-8 temp dir"),
            cluster.as_ref(),
        ) + &format!("http: \"127.0.0.1:{}\"\n", 8222 + n),
    )
    .unwrap();
    let server = ns.spawn(
        "nats-server",
        [std::ffi::OsStr::new("-c"), config.as_os_str()],
    );
    let up = wait(Duration::from_secs(10), || {
        ns.run(|| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok())
    });
    assert!(up, "nats-server n{n} did not listen in 10 s");
    server
}

/// Polls `f` every 100 ms until true or `limit`.
pub fn wait(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Three exporters in the namespace: every 100 ms a datagram to each
/// sensor with its share (`shares[i]` pps) of `victim`'s traffic (sampled
/// 1:100, 500-byte UDP), until stopped or `limit` (bounded either way).
pub struct Exporters {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Exporters {
    pub fn start(ns: &NetNs, victim: &str, shares: [u32; 3], limit: Duration) -> Self {
        Self::start_spread(ns, vec![victim.parse().unwrap()], shares, limit)
    }

    /// As [`Exporters::start`], each share spread evenly over `victims`
    /// (a carpet bombing: the samples go to them in turn).
    pub fn start_spread(
        ns: &NetNs,
        victims: Vec<std::net::Ipv4Addr>,
        shares: [u32; 3],
        limit: Duration,
    ) -> Self {
        assert!(!victims.is_empty());
        let stop = Arc::new(AtomicBool::new(false));
        let file = std::fs::File::open(ns.path()).expect("open the namespace");
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            // SAFETY: a valid netns fd; setns changes only this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
            let mut next = victims.iter().cycle();
            let start = Instant::now();
            let mut seq = 0u32;
            let mut sent = 0u64;
            while !flag.load(Ordering::Relaxed) && start.elapsed() < limit {
                seq += 1;
                for (i, share) in shares.iter().enumerate() {
                    let samples = (0..share / SAMPLING / 10)
                        .map(|_| {
                            Sample::flow(
                                SAMPLING,
                                vec![Record::Ipv4 {
                                    length: 500,
                                    protocol: 17,
                                    dst: next.next().expect("cycle").octets(),
                                    tcp_flags: 0,
                                }],
                            )
                        })
                        .collect();
                    let mut d = Datagram::new(seq, samples);
                    d.agent = std::net::IpAddr::from([198, 18, 7, 1 + i as u8]);
                    let to = SocketAddr::from(([127, 0, 0, 1], sflow_port(i)));
                    sock.send_to(&d.encode(), to).expect("send sFlow");
                    sent += 1;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            sent
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    pub fn stop(&mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map_or(0, |t| t.join().expect("exporter thread"))
    }
}

impl Drop for Exporters {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The owner of the victim among `members` (the sensors' own function).
pub fn owner_of(members: &[&str]) -> usize {
    owner_of_net(members, &format!("{VICTIM}/32"))
}

/// The index of the victim's owner once sensor `gone` is no member.
pub fn heir_of(gone: usize) -> usize {
    let survivors: Vec<&str> = NAMES
        .iter()
        .copied()
        .filter(|n| *n != NAMES[gone])
        .collect();
    owner_of(&survivors)
}

/// The index in [`NAMES`] of the rendezvous owner of the prefix `net`.
pub fn owner_of_net(members: &[&str], net: &str) -> usize {
    let victim: ipnet::IpNet = net.parse().unwrap();
    let name = edge_sensor::cluster::owner::owner(&victim, members.iter().copied()).unwrap();
    NAMES.iter().position(|n| *n == name).unwrap()
}

/// The three sensors clustered on one NATS server, the split flood on
/// ([`SHARE_PPS`] to each, at most 120 s) and its rule on gobgpd (within
/// 30 s, or a panic with the logs): the cluster, the owner's index, the
/// exporters (the flood stops when they drop) and when they started.
pub fn split_flood_ruled() -> (Cluster, usize, Exporters, Instant) {
    let c = Cluster::start(1);
    wait_clustered(&c);
    let owner = owner_of(&NAMES);
    let exporters = Exporters::start(c.ns, VICTIM, [SHARE_PPS; 3], Duration::from_secs(120));
    let started = Instant::now();
    let ruled = wait(Duration::from_secs(30), || c.copies() > 0);
    assert!(ruled, "no rule on gobgpd in 30 s:\n{}", c.logs());
    (c, owner, exporters, started)
}

/// Waits until every sensor started reports them all as live members.
pub fn wait_clustered(c: &Cluster) {
    let n = c.sensors.len();
    let ok = wait(Duration::from_secs(30), || {
        (0..n).all(|i| {
            let s = c.ask(i, &["status"]);
            s["cluster"]["state"] == "clustered" && s["cluster"]["members"] == n
        })
    });
    assert!(ok, "the {n} sensors did not form a cluster:\n{}", c.logs());
    for i in 0..n {
        crate::assert_json_schema("status", &c.ask(i, &["status"]));
    }
}

/// Samples the copies of `victim`'s rule on gobgpd every 100 ms for
/// `span`; returns the smallest and largest count seen.
pub fn copies_of_over(c: &Cluster, victim: &str, span: Duration) -> (usize, usize) {
    let end = Instant::now() + span;
    let (mut lo, mut hi) = (usize::MAX, 0);
    while Instant::now() < end {
        let n = c.copies_of(victim).len();
        lo = lo.min(n);
        hi = hi.max(n);
        std::thread::sleep(Duration::from_millis(100));
    }
    (lo, hi)
}
