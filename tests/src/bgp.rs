//! Real BGP peers for the speaker's interop tests: gobgpd and BIRD 2, each
//! run in a network namespace of the test's own (so every test has its own
//! loopback, ports 179/50051 and no clash with parallel tests), asked what
//! they hold through their own CLIs (`gobgp -j`, `birdc`).
//!
//! The daemon listens on 127.0.0.1:179 (passive: it never dials out unless
//! a test says so); the speaker connects from 127.0.0.2.

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Output, Stdio},
    time::{Duration, Instant},
};

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

fn run(ns: &NetNs, program: &str, args: &[&str]) -> Output {
    ns.command(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

/// gobgpd in a namespace.
pub struct Gobgpd<'a> {
    ns: &'a NetNs,
    pub dir: TempDir,
    daemon: Option<Guarded>,
    runs: u32,
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
        let dir = TempDir::new("esgo");
        std::fs::write(dir.path().join("gobgpd.toml"), config).unwrap();
        let mut me = Self {
            ns,
            dir,
            daemon: None,
            runs: 0,
        };
        me.spawn();
        me
    }

    fn spawn(&mut self) {
        self.runs += 1;
        let log = std::fs::File::create(self.dir.path().join(format!("gobgpd.{}.log", self.runs)))
            .unwrap();
        let conf = self.dir.path().join("gobgpd.toml");
        let child = self
            .ns
            .command("gobgpd")
            .arg("-f")
            .arg(&conf)
            .args(["--api-hosts", "127.0.0.1:50051", "--pprof-disable"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start gobgpd");
        self.daemon = Some(Guarded(child));
        let up = wait_for(Duration::from_secs(10), || {
            run(self.ns, "gobgp", &["neighbor"])
                .status
                .success()
                .then_some(())
        });
        assert!(up.is_some(), "gobgpd did not come up: {}", self.log());
    }

    /// Stops gobgpd with `signal` (SIGTERM: it sends Cease first).
    pub fn stop(&mut self, signal: i32) {
        if let Some(d) = self.daemon.take() {
            d.stop(signal);
        }
    }

    /// Stops and starts gobgpd again with the same configuration.
    pub fn restart(&mut self) {
        self.stop(libc::SIGTERM);
        self.spawn();
    }

    /// Sends `signal` to the daemon's process group (SIGSTOP freezes it).
    pub fn signal(&self, signal: i32) {
        let d = self.daemon.as_ref().expect("gobgpd running");
        // SAFETY: signalling our own child's process group.
        unsafe { libc::kill(-(d.0.id() as i32), signal) };
    }

    /// Every log line so far, all runs.
    pub fn log(&self) -> String {
        (1..=self.runs)
            .map(|i| {
                std::fs::read_to_string(self.dir.path().join(format!("gobgpd.{i}.log")))
                    .unwrap_or_default()
            })
            .collect()
    }

    /// `gobgp args...`, asserting success; stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = run(self.ns, "gobgp", args);
        assert!(
            out.status.success(),
            "gobgp {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
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

/// BIRD 2 in a namespace.
pub struct Bird<'a> {
    ns: &'a NetNs,
    pub dir: TempDir,
    daemon: Option<Guarded>,
    runs: u32,
}

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
        let dir = TempDir::new("esbd");
        let conf = dir.path().join("bird.conf");
        std::fs::write(&conf, config).unwrap();
        let check = run(ns, "bird", &["-p", "-c", conf.to_str().unwrap()]);
        assert!(
            check.status.success(),
            "bird -p: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let mut me = Self {
            ns,
            dir,
            daemon: None,
            runs: 0,
        };
        me.spawn();
        me
    }

    fn socket(&self) -> String {
        self.dir.path().join("bird.ctl").display().to_string()
    }

    fn spawn(&mut self) {
        self.runs += 1;
        let log =
            std::fs::File::create(self.dir.path().join(format!("bird.{}.log", self.runs))).unwrap();
        let conf = self.dir.path().join("bird.conf");
        let child = self
            .ns
            .command("bird")
            .arg("-f")
            .arg("-c")
            .arg(&conf)
            .args(["-s", &self.socket()])
            .arg("-P")
            .arg(self.dir.path().join("bird.pid"))
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start bird");
        self.daemon = Some(Guarded(child));
        let up = wait_for(Duration::from_secs(10), || {
            run(self.ns, "birdc", &["-s", &self.socket(), "show", "status"])
                .status
                .success()
                .then_some(())
        });
        assert!(up.is_some(), "bird did not come up: {}", self.log());
    }

    pub fn stop(&mut self, signal: i32) {
        if let Some(d) = self.daemon.take() {
            d.stop(signal);
        }
    }

    pub fn restart(&mut self) {
        self.stop(libc::SIGTERM);
        self.spawn();
    }

    pub fn signal(&self, signal: i32) {
        let d = self.daemon.as_ref().expect("bird running");
        // SAFETY: signalling our own child's process group.
        unsafe { libc::kill(-(d.0.id() as i32), signal) };
    }

    pub fn log(&self) -> String {
        (1..=self.runs)
            .map(|i| {
                std::fs::read_to_string(self.dir.path().join(format!("bird.{i}.log")))
                    .unwrap_or_default()
            })
            .collect()
    }

    /// `birdc -s SOCKET args...`, asserting success; stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let socket = self.socket();
        let mut all = vec!["-s", socket.as_str()];
        all.extend_from_slice(args);
        let out = run(self.ns, "birdc", &all);
        assert!(
            out.status.success(),
            "birdc {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
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
