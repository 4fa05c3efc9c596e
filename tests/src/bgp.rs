//! Real BGP peers for the speaker's interop tests: gobgpd and BIRD 2, each
//! run in a network namespace of the test's own (so every test has its own
//! loopback, ports 179/50051 and no clash with parallel tests), asked what
//! they hold through their own CLIs (`gobgp -j`, `birdc`).
//!
//! What both interop suites share lives here too: the speaker's config,
//! rule builders, the table of every action, and whole scenarios (peer
//! restart, hold timer expiry) run against either peer through [`Peer`].
//!
//! The daemon listens on 127.0.0.1:179 (passive: it never dials out unless
//! a test says so); the speaker connects from 127.0.0.2.

use std::{
    ops::{Deref, DerefMut},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use edge_sensor::bgp::{
    Action, BgpConfig, BitmaskMatch, Component, FlowPrefix, FlowSpec, IpFamily, NumericMatch,
    NumericOp, Route, SessionState, Speaker, flowspec::tcp_flags,
};

use edge_sensor_labconf::{Bgp, BgpPeer};

use crate::{Guarded, netns::NetNs, unique_name};

/// A directory of the test's own under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        let dir = std::env::temp_dir().join(unique_name(prefix));
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `f` every 200 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs `f` on a thread inside `ns` with a tokio runtime whose threads are
/// there too (threads inherit the namespace of the thread that creates
/// them), so every socket the speaker opens lives in the namespace.
pub fn in_namespace<T: Send>(ns: &NetNs, f: impl AsyncFnOnce() -> T + Send) -> T {
    ns.run(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("build a tokio runtime")
            .block_on(f())
    })
}

/// Polls `cond` like [`wait_for`]; whether it came true within `timeout`.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    wait_for(timeout, || cond().then_some(())).is_some()
}

fn run(ns: &NetNs, program: &str, args: &[&str]) -> Output {
    ns.command(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

/// `program args...` in `ns`, asserting success; stdout.
fn run_ok(ns: &NetNs, program: &str, args: &[&str]) -> String {
    let out = run(ns, program, args);
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A peer daemon in a namespace: its temp dir, the process of the current
/// run and one log file a run (`NAME.N.log`), so a restart keeps the
/// earlier runs' logs. gobgpd and BIRD differ only in how they are
/// started and asked whether they are up.
pub struct Daemon<'a> {
    ns: &'a NetNs,
    pub dir: TempDir,
    name: &'static str,
    /// The command of one run, given this daemon and the run's log file.
    command: fn(&Daemon, std::fs::File) -> Command,
    /// Whether the daemon answers on its control channel yet.
    answers: fn(&Daemon) -> bool,
    child: Option<Guarded>,
    runs: u32,
}

impl<'a> Daemon<'a> {
    /// Writes `config` to `DIR/config_file` and returns the daemon, not
    /// started yet.
    fn new(
        ns: &'a NetNs,
        name: &'static str,
        config_file: &str,
        config: &str,
        command: fn(&Daemon, std::fs::File) -> Command,
        answers: fn(&Daemon) -> bool,
    ) -> Self {
        let dir = TempDir::new(&format!("es{}", &name[..2]));
        std::fs::write(dir.path().join(config_file), config).unwrap();
        Self {
            ns,
            dir,
            name,
            command,
            answers,
            child: None,
            runs: 0,
        }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Starts one run and waits (at most 10 s) until the daemon answers.
    fn spawn(&mut self) {
        self.runs += 1;
        let log =
            std::fs::File::create(self.path(&format!("{}.{}.log", self.name, self.runs))).unwrap();
        let child = (self.command)(self, log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.name));
        self.child = Some(Guarded(child));
        let up = wait_until(Duration::from_secs(10), || (self.answers)(self));
        assert!(up, "{} did not come up: {}", self.name, self.log());
    }

    /// Stops the daemon with `signal` (SIGTERM: it sends Cease first).
    pub fn stop(&mut self, signal: i32) {
        if let Some(d) = self.child.take() {
            d.stop(signal);
        }
    }

    /// Stops and starts the daemon again with the same configuration.
    pub fn restart(&mut self) {
        self.stop(libc::SIGTERM);
        self.spawn();
    }

    /// Sends `signal` to the daemon's process group (SIGSTOP freezes it).
    pub fn signal(&self, signal: i32) {
        let d = self
            .child
            .as_ref()
            .unwrap_or_else(|| panic!("{} running", self.name));
        // SAFETY: signalling our own child's process group.
        unsafe { libc::kill(-(d.0.id() as i32), signal) };
    }

    /// Every log line so far, all runs.
    pub fn log(&self) -> String {
        (1..=self.runs)
            .map(|i| std::fs::read_to_string(self.path(&format!("{}.{i}.log", self.name))))
            .map(Result::unwrap_or_default)
            .collect()
    }

    /// Waits until the log (all runs) contains `text`; fails with the log.
    pub fn assert_logged(&self, text: &str) {
        let logged = wait_until(WAIT, || self.log().contains(text));
        assert!(
            logged,
            "{text:?} not in the {} log:\n{}",
            self.name,
            self.log()
        );
    }
}

/// The four tables a peer keeps what the speaker sends in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    Ipv4,
    Ipv6,
    Flow4,
    Flow6,
}

/// What the shared interop scenarios need of a peer: the daemon (start,
/// stop, signals, log) and how many routes it holds in a table.
pub trait Peer<'a>: DerefMut<Target = Daemon<'a>> {
    /// How many routes the peer holds in `table` now.
    fn routes_in(&self, table: Table) -> usize;
}

/// gobgpd in a namespace.
pub struct Gobgpd<'a>(Daemon<'a>);

/// The daemon's `[bgp]` section with gobgpd (as [`gobgpd_config`] starts
/// it: AS 65000 on 127.0.0.1) as its one peer, announcing within `own`;
/// `extra` lines go at the end of the peer's table.
pub fn sensor_bgp_section(own: &str, extra: &str) -> String {
    Bgp::new("127.0.0.2", 65001, &[own])
        .peer(BgpPeer::new("gobgp", "127.0.0.1", "127.0.0.2", 65000).extra(extra))
        .section()
}

/// The gobgpd configuration of a passive neighbor 127.0.0.2 (`peer_as`),
/// every family the speaker sends, plus `extra` TOML in the neighbor.
pub fn gobgpd_config(peer_as: u32, extra: &str) -> String {
    let families = [
        "ipv4-unicast",
        "ipv6-unicast",
        "ipv4-flowspec",
        "ipv6-flowspec",
    ]
    .iter()
    .map(|f| {
        format!(
            "[[neighbors.afi-safis]]\n  [neighbors.afi-safis.config]\n    afi-safi-name = \"{f}\"\n"
        )
    })
    .collect::<String>();
    format!(
        r#"[global.config]
  as = 65000
  router-id = "127.0.0.1"
  port = 179
  local-address-list = ["127.0.0.1"]

[[neighbors]]
  [neighbors.config]
    neighbor-address = "127.0.0.2"
    peer-as = {peer_as}
  [neighbors.timers.config]
    connect-retry = 1
  {extra}
{families}"#
    )
}

impl<'a> Gobgpd<'a> {
    /// Starts gobgpd with `config` and waits (at most 10 s) for its API.
    pub fn start(ns: &'a NetNs, config: &str) -> Self {
        let mut daemon = Daemon::new(
            ns,
            "gobgpd",
            "gobgpd.toml",
            config,
            |d, log| {
                let mut cmd = d.ns.command("gobgpd");
                cmd.arg("-f")
                    .arg(d.path("gobgpd.toml"))
                    .args(["--api-hosts", "127.0.0.1:50051", "--pprof-disable"])
                    .stdout(log.try_clone().unwrap())
                    .stderr(log);
                cmd
            },
            |d| run(d.ns, "gobgp", &["neighbor"]).status.success(),
        );
        daemon.spawn();
        Self(daemon)
    }

    /// `gobgp args...`, asserting success; stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        run_ok(self.ns, "gobgp", args)
    }

    /// The global RIB of `family` (`ipv4-flowspec`, `ipv4`, ...) as JSON:
    /// a map from gobgp's text form of the NLRI to its paths.
    pub fn rib(&self, family: &str) -> serde_json::Map<String, serde_json::Value> {
        let text = self.cli(&["-j", "global", "rib", "-a", family]);
        let text = text.trim();
        if text.is_empty() || text.contains("Network not in table") {
            return serde_json::Map::new();
        }
        match serde_json::from_str(text) {
            Ok(serde_json::Value::Object(m)) => m,
            other => panic!("gobgp rib -a {family}: unexpected output {text:?} ({other:?})"),
        }
    }

    /// The session state gobgpd reports for 127.0.0.2 (6 = established).
    pub fn session_state(&self) -> i64 {
        let text = self.cli(&["-j", "neighbor", "127.0.0.2"]);
        let v: serde_json::Value = serde_json::from_str(&text).expect("neighbor JSON");
        v["state"]["session_state"].as_i64().unwrap_or(0)
    }
}

impl<'a> Deref for Gobgpd<'a> {
    type Target = Daemon<'a>;
    fn deref(&self) -> &Daemon<'a> {
        &self.0
    }
}

impl<'a> DerefMut for Gobgpd<'a> {
    fn deref_mut(&mut self) -> &mut Daemon<'a> {
        &mut self.0
    }
}

impl<'a> Peer<'a> for Gobgpd<'a> {
    fn routes_in(&self, table: Table) -> usize {
        self.rib(match table {
            Table::Ipv4 => "ipv4",
            Table::Ipv6 => "ipv6",
            Table::Flow4 => "ipv4-flowspec",
            Table::Flow6 => "ipv6-flowspec",
        })
        .len()
    }
}

/// BIRD 2 in a namespace.
pub struct Bird<'a>(Daemon<'a>);

/// A BIRD configuration with a passive protocol `sensor` for neighbor
/// 127.0.0.2 (`peer_as`), the four channels into their own tables, plus
/// `extra` lines inside the protocol.
pub fn bird_config(peer_as: u32, extra: &str) -> String {
    format!(
        r#"log stderr all;
router id 127.0.0.1;
ipv4 table master4;
ipv6 table master6;
flow4 table flowtab4;
flow6 table flowtab6;
protocol device {{ }}
protocol bgp sensor {{
  local 127.0.0.1 port 179 as 65000;
  neighbor 127.0.0.2 as {peer_as};
  passive on;
  multihop;
  hold time 240;
  error wait time 1, 2;
  connect retry time 1;
  ipv4 {{ import all; export none; }};
  ipv6 {{ import all; export none; }};
  flow4 {{ table flowtab4; import all; export none; }};
  flow6 {{ table flowtab6; import all; export none; }};
  {extra}
}}
"#
    )
}

impl<'a> Bird<'a> {
    /// Checks `config` (`bird -p`), starts BIRD, waits (at most 10 s) for
    /// its control socket.
    pub fn start(ns: &'a NetNs, config: &str) -> Self {
        let mut daemon = Daemon::new(
            ns,
            "bird",
            "bird.conf",
            config,
            |d, log| {
                let mut cmd = d.ns.command("bird");
                cmd.arg("-f")
                    .arg("-c")
                    .arg(d.path("bird.conf"))
                    .args(["-s", &bird_socket(d)])
                    .arg("-P")
                    .arg(d.path("bird.pid"))
                    .stdout(Stdio::null())
                    .stderr(log);
                cmd
            },
            |d| {
                run(d.ns, "birdc", &["-s", &bird_socket(d), "show", "status"])
                    .status
                    .success()
            },
        );
        let conf = daemon.path("bird.conf");
        run_ok(ns, "bird", &["-p", "-c", conf.to_str().unwrap()]);
        daemon.spawn();
        Self(daemon)
    }

    /// `birdc -s SOCKET args...`, asserting success; stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let socket = bird_socket(self);
        let mut all = vec!["-s", socket.as_str()];
        all.extend_from_slice(args);
        run_ok(self.ns, "birdc", &all)
    }

    /// `show route table TABLE all`, split into one block per route (the
    /// first line names the network, the rest are its attributes).
    pub fn routes(&self, table: &str) -> Vec<String> {
        let text = self.cli(&["show", "route", "table", table, "all"]);
        let mut blocks: Vec<String> = Vec::new();
        for line in text.lines() {
            if line.starts_with("BIRD ") || line.starts_with("Table ") || line.trim().is_empty() {
                continue;
            }
            if !line.starts_with(char::is_whitespace) {
                blocks.push(String::new());
            }
            if let Some(b) = blocks.last_mut() {
                b.push_str(line.trim());
                b.push('\n');
            }
        }
        blocks
    }

    /// The state of protocol `sensor` ("Established", "Active", ...).
    pub fn session_state(&self) -> String {
        let text = self.cli(&["show", "protocols", "sensor"]);
        text.lines()
            .find(|l| l.starts_with("sensor"))
            .and_then(|l| l.split_whitespace().last())
            .unwrap_or("")
            .to_string()
    }
}

fn bird_socket(d: &Daemon) -> String {
    d.path("bird.ctl").display().to_string()
}

impl<'a> Deref for Bird<'a> {
    type Target = Daemon<'a>;
    fn deref(&self) -> &Daemon<'a> {
        &self.0
    }
}

impl<'a> DerefMut for Bird<'a> {
    fn deref_mut(&mut self) -> &mut Daemon<'a> {
        &mut self.0
    }
}

impl<'a> Peer<'a> for Bird<'a> {
    fn routes_in(&self, table: Table) -> usize {
        self.routes(match table {
            Table::Ipv4 => "master4",
            Table::Ipv6 => "master6",
            Table::Flow4 => "flowtab4",
            Table::Flow6 => "flowtab6",
        })
        .len()
    }
}

/// How long a route or a withdrawal may take to show at the peer.
pub const WAIT: Duration = Duration::from_secs(15);

/// The speaker's config: AS `local_asn` from 127.0.0.2 to the peer
/// `peer_name` (AS 65000) on 127.0.0.1, hold time 9 s, reconnect after
/// 1 s, every family, plus `extra` lines in the peer.
pub fn speaker_config(peer_name: &str, local_asn: u32, extra: &str) -> BgpConfig {
    let table = Bgp::new("127.0.0.2", local_asn, &["192.0.2.0/24", "2001:db8::/32"])
        .shutdown_message("edge-sensor test shutdown")
        .peer(
            BgpPeer::new(peer_name, "127.0.0.1", "127.0.0.2", 65000)
                .families(&[
                    "ipv4-unicast",
                    "ipv6-unicast",
                    "ipv4-flowspec",
                    "ipv6-flowspec",
                ])
                .next_hop_v6("2001:db8::fe")
                .extra(extra),
        )
        .table();
    BgpConfig::from_toml(&table).expect("speaker config")
}

/// Whether the speaker's (only) session is established.
pub fn established(speaker: &Speaker) -> bool {
    speaker.status()[0].state == SessionState::Established
}

/// Waits (at most `timeout`) until the session is established for the
/// `count`th time; fails with the status and the peer's log.
pub fn wait_established(speaker: &Speaker, count: u64, timeout: Duration, peer: &Daemon) {
    let ok = wait_until(timeout, || {
        established(speaker) && speaker.status()[0].established_count >= count
    });
    assert!(
        ok,
        "session not established: {:#?}\n{}",
        speaker.status(),
        peer.log()
    );
}

/// A destination prefix component.
pub fn dst(s: &str) -> Component {
    Component::DestinationPrefix(FlowPrefix::new(s.parse().unwrap()))
}

/// The flow spec of `family` on `components` (RFC 8955 §4).
pub fn rule(family: IpFamily, components: Vec<Component>) -> FlowSpec {
    FlowSpec::new(family, components).unwrap()
}

/// A discard rule for `family` on `components`.
pub fn discard(family: IpFamily, components: Vec<Component>) -> Route {
    Route::flowspec(rule(family, components), vec![Action::DISCARD]).unwrap()
}

/// A discard rule for the IPv4 destination `prefix` alone.
pub fn discard_v4(prefix: &str) -> Route {
    discard(IpFamily::Ipv4, vec![dst(prefix)])
}

/// A discard rule with many components and both operator kinds.
pub fn rule_with_many_components() -> Route {
    discard(
        IpFamily::Ipv4,
        vec![
            dst("192.0.2.0/24"),
            Component::SourcePrefix(FlowPrefix::new("198.51.100.0/24".parse().unwrap())),
            Component::IpProtocol(vec![NumericMatch::eq(6)]),
            Component::DestinationPort({
                let [a, b] = NumericMatch::range(1024, 2047);
                vec![a, b]
            }),
            Component::TcpFlags(vec![BitmaskMatch::all(tcp_flags::SYN)]),
            Component::PacketLength(vec![NumericMatch::or(NumericOp::Ge, 512)]),
            Component::Dscp(vec![NumericMatch::eq(46)]),
        ],
    )
}

/// Every action the speaker sends (RFC 8955 §7), one of each kind.
pub fn each_action() -> [Action; 8] {
    [
        Action::DISCARD,
        Action::TrafficRateBytes {
            id: 65001,
            rate: 125000.0,
        },
        Action::TrafficRatePackets {
            id: 0,
            rate: 1000.0,
        },
        Action::TrafficAction {
            sample: true,
            terminal: true,
        },
        Action::RedirectAs2 {
            asn: 65000,
            local: 100,
        },
        Action::RedirectIpv4 {
            addr: std::net::Ipv4Addr::new(192, 0, 2, 1),
            local: 7,
        },
        Action::RedirectAs4 {
            asn: 4_200_000_000,
            local: 9,
        },
        Action::TrafficMarking { dscp: 46 },
    ]
}

/// One rule per action of [`each_action`], IPv4 (192.0.2.N/32) and IPv6
/// (2001:db8::N/128) with N from 10, each with the table it lands in, N and
/// what the peer should show for its action (`expected`, in the order of
/// [`each_action`]).
pub fn rules_with_each_action<E: Clone>(expected: [E; 8]) -> Vec<(Route, Table, u8, E)> {
    let mut out = Vec::new();
    for (i, (action, want)) in each_action().into_iter().zip(expected).enumerate() {
        let n = 10 + i as u8;
        for (family, table, prefix) in [
            (IpFamily::Ipv4, Table::Flow4, format!("192.0.2.{n}/32")),
            (IpFamily::Ipv6, Table::Flow6, format!("2001:db8::{n}/128")),
        ] {
            let route = Route::flowspec(rule(family, vec![dst(&prefix)]), vec![action]).unwrap();
            out.push((route, table, n, want.clone()));
        }
    }
    out
}

/// A speaker with a wrong TCP-MD5 key (RFC 2385): after 4 s it is still
/// not established, nor is the peer's session (`peer_state()` is not
/// `established_state`).
pub async fn wrong_md5_key_never_establishes<S: PartialEq + std::fmt::Debug>(
    peer_name: &str,
    peer_state: impl Fn() -> S,
    established_state: S,
) {
    let wrong = Speaker::start(speaker_config(
        peer_name,
        65001,
        r#"md5_password = "wrong-key""#,
    ))
    .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!established(&wrong), "{:#?}", wrong.status());
    assert_ne!(peer_state(), established_state);
    wrong.shutdown(false).await;
}

/// The peer stops (SIGTERM) and starts again with empty tables: the
/// speaker (`config`) reconnects and the peer gets every route back: five
/// discard rules in the family of `flow` and one RTBH route.
pub fn peer_restart_gets_every_route_back<'a>(
    ns: &NetNs,
    peer: &mut (impl Peer<'a> + Send),
    config: BgpConfig,
    flow: Table,
    establish_within: Duration,
) {
    in_namespace(ns, async move || {
        let speaker = Speaker::start(config).unwrap();
        wait_established(&speaker, 1, establish_within, peer);
        for i in 1..=5u8 {
            let (family, prefix) = match flow {
                Table::Flow6 => (IpFamily::Ipv6, format!("2001:db8::{i}/128")),
                _ => (IpFamily::Ipv4, format!("192.0.2.{i}/32")),
            };
            let udp = Component::IpProtocol(vec![NumericMatch::eq(17)]);
            speaker
                .announce(discard(family, vec![dst(&prefix), udp]))
                .unwrap();
        }
        speaker
            .announce(Route::blackhole("192.0.2.99".parse().unwrap()))
            .unwrap();
        fn all<'a>(p: &impl Peer<'a>, flow: Table) -> bool {
            p.routes_in(flow) == 5 && p.routes_in(Table::Ipv4) == 1
        }
        assert!(wait_until(WAIT, || all(&*peer, flow)));

        peer.restart();
        wait_established(&speaker, 2, establish_within, peer);
        assert!(
            wait_until(WAIT, || all(&*peer, flow)),
            "not all routes back after the restart: {:#?}",
            speaker.status()
        );
        speaker.shutdown(true).await;
    });
}

/// The peer frozen (SIGSTOP): no KEEPALIVE arrives, our hold timer (9 s)
/// expires, we send NOTIFICATION 4/0, and after it thaws the session and
/// the rule return.
pub fn hold_timer_expires_when_the_peer_freezes<'a>(
    ns: &NetNs,
    peer: &(impl Peer<'a> + Sync),
    config: BgpConfig,
    establish_within: Duration,
) {
    in_namespace(ns, async || {
        let speaker = Speaker::start(config).unwrap();
        wait_established(&speaker, 1, establish_within, peer);
        assert_eq!(
            speaker.status()[0].negotiated.as_ref().unwrap().hold_time,
            9
        );
        speaker.announce(discard_v4("192.0.2.7/32")).unwrap();
        assert!(wait_until(WAIT, || peer.routes_in(Table::Flow4) == 1));

        peer.signal(libc::SIGSTOP);
        let frozen_at = Instant::now();
        let expired = wait_for(Duration::from_secs(20), || {
            speaker.status()[0]
                .last_notification_sent
                .as_deref()
                .filter(|n| n.starts_with("4/0"))
                .map(|_| frozen_at.elapsed())
        });
        peer.signal(libc::SIGCONT);
        let took =
            expired.unwrap_or_else(|| panic!("hold timer did not expire: {:#?}", speaker.status()));
        // Keepalives every 3 s were the last sign of life: expiry within
        // 9 s of the last one, so 6-10 s after the freeze.
        assert!(
            took >= Duration::from_secs(5) && took <= Duration::from_secs(11),
            "{took:?}"
        );

        wait_established(&speaker, 2, establish_within, peer);
        let back = wait_until(Duration::from_secs(20), || {
            peer.routes_in(Table::Flow4) == 1
        });
        assert!(back, "{:#?}", speaker.status());
        speaker.shutdown(true).await;
    });
}

/// Runs `body` in `ns` with a speaker (`config`) whose session to `peer`
/// is up, then shuts the speaker down (withdrawing, with a Cease).
pub fn with_session<T: Send>(
    ns: &NetNs,
    peer: &Daemon,
    config: BgpConfig,
    establish_within: Duration,
    body: impl AsyncFnOnce(&Speaker) -> T + Send,
) -> T {
    in_namespace(ns, async move || {
        let speaker = Speaker::start(config).unwrap();
        wait_established(&speaker, 1, establish_within, peer);
        let out = body(&speaker).await;
        speaker.shutdown(true).await;
        out
    })
}

/// How the tests of one kind of peer reach it: the peer's name in the
/// speaker's config and how long its session may take to come up.
pub struct PeerKind {
    pub name: &'static str,
    pub establish_within: Duration,
}

impl PeerKind {
    /// [`speaker_config`] towards this peer.
    pub fn speaker_config(&self, local_asn: u32, extra: &str) -> BgpConfig {
        speaker_config(self.name, local_asn, extra)
    }

    /// [`wait_established`] within this peer's time.
    pub fn wait_established(&self, speaker: &Speaker, count: u64, peer: &Daemon) {
        wait_established(speaker, count, self.establish_within, peer);
    }

    /// [`with_session`] for a speaker of AS `local_asn` with `extra` lines
    /// in the peer.
    pub fn session<T: Send>(
        &self,
        ns: &NetNs,
        peer: &Daemon,
        local_asn: u32,
        extra: &str,
        body: impl AsyncFnOnce(&Speaker) -> T + Send,
    ) -> T {
        let config = self.speaker_config(local_asn, extra);
        with_session(ns, peer, config, self.establish_within, body)
    }
}
