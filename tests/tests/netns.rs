//! The real program attached to a veth inside namespaces the test creates:
//! datagrams sent from a peer namespace are counted, a separate process reads
//! the pinned maps, and SIGINT detaches cleanly.

use std::{
    io::Read,
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use edge_sensor_tests::{
    PinDir,
    netns::{Link, NetNs},
    patience, require_root, sensor_bin,
};
use serde_json::Value;

/// A running `edge-sensor run`, killed on drop if the test did not stop it.
struct Running {
    child: Child,
    /// Its state directory and control socket: the test's own.
    dir: std::path::PathBuf,
}

impl Running {
    fn start(ns: &NetNs, args: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(edge_sensor_tests::unique_name("es-run-"));
        let child = ns
            .command(sensor_bin())
            .arg("run")
            .args(args)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--control-socket")
            .arg(dir.join("control.sock"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start edge-sensor");
        Self { child, dir }
    }

    /// Sends SIGINT and returns its exit status and log, within 10 s.
    fn interrupt(mut self) -> (std::process::ExitStatus, String) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let status = wait_bounded(&mut self.child, Duration::from_secs(10));
        let mut log = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut log)
            .unwrap();
        (status, log)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wait_bounded(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let limit = patience(limit);
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("edge-sensor did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `cond` every 50 ms for at most `limit`.
fn eventually(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let limit = patience(limit);
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn exporters_json(pin: &Path) -> Output {
    Command::new(sensor_bin())
        .args(["exporters", "--json", "--pin-path"])
        .arg(pin)
        .output()
        .expect("run edge-sensor exporters")
}

fn exporter_rows(pin: &Path) -> Vec<Value> {
    let out = exporters_json(pin);
    assert!(
        out.status.success(),
        "edge-sensor exporters: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).expect("exporters --json is JSON");
    doc["exporters"]
        .as_array()
        .expect("an exporters array")
        .clone()
}

fn row<'a>(rows: &'a [Value], ip: &str, port: u64) -> Option<&'a Value> {
    rows.iter()
        .find(|r| r["ip"] == ip && r["port"].as_u64() == Some(port))
}

#[test]
fn datagrams_from_a_peer_namespace_are_counted_and_read_by_another_process() {
    require_root();
    let link = Link::new();
    let pin = PinDir::new();
    let sensor = Running::start(
        &link.b,
        &[
            "--iface",
            &link.b_if,
            "--pin-path",
            pin.path().to_str().unwrap(),
        ],
    );
    eventually(
        Duration::from_secs(15),
        "the XDP program on the veth",
        || link.b.has_xdp(&link.b_if),
    );

    let (a6, b6) = link.v6_addrs();
    link.send_udp(SocketAddr::new(link.b_addr, 6343), 20, 100);
    link.send_udp(SocketAddr::new(b6, 4739), 7, 50);
    link.send_udp(SocketAddr::new(link.b_addr, 9999), 5, 10);

    let a4 = link.a_addr.to_string();
    let a6 = a6.to_string();
    eventually(Duration::from_secs(5), "all datagrams counted", || {
        let rows = exporter_rows(pin.path());
        row(&rows, &a4, 6343).is_some_and(|r| r["datagrams"] == 20)
            && row(&rows, &a6, 4739).is_some_and(|r| r["datagrams"] == 7)
    });
    let rows = exporter_rows(pin.path());
    let sflow = row(&rows, &a4, 6343).unwrap();
    assert_eq!(sflow["bytes"], 2000);
    assert_eq!(sflow["protocol"], "sflow");
    let ipfix = row(&rows, &a6, 4739).unwrap();
    assert_eq!(ipfix["bytes"], 350);
    assert_eq!(ipfix["protocol"], "ipfix");
    assert!(
        row(&rows, &a4, 9999).is_none(),
        "non-telemetry port counted: {rows:?}"
    );
    // Neighbour discovery and ICMP errors may add other traffic, never rows.
    assert_eq!(rows.len(), 2, "{rows:?}");

    let (status, log) = sensor.interrupt();
    assert!(
        status.success(),
        "edge-sensor run exited with {status}: {log}"
    );
    assert!(log.contains("attached in native mode"), "{log}");
    assert!(log.contains("detached"), "{log}");
    assert!(
        !link.b.has_xdp(&link.b_if),
        "XDP program left on {} after SIGINT",
        link.b_if
    );

    // The pinned counters outlive the daemon: the CLI still reads them.
    let rows = exporter_rows(pin.path());
    assert_eq!(row(&rows, &a4, 6343).unwrap()["datagrams"], 20);
}

#[test]
fn auto_mode_falls_back_to_skb_where_native_xdp_is_missing() {
    require_root();
    // Loopback has no native XDP support.
    let ns = NetNs::new("es-lo");
    let pin = PinDir::new();
    let sensor = Running::start(
        &ns,
        &["--iface", "lo", "--pin-path", pin.path().to_str().unwrap()],
    );
    eventually(Duration::from_secs(15), "the XDP program on lo", || {
        ns.has_xdp("lo")
    });
    assert!(
        ns.ip_output(&["-d", "link", "show", "dev", "lo"])
            .contains("xdpgeneric")
    );
    let (status, log) = sensor.interrupt();
    assert!(status.success(), "{log}");
    assert!(log.contains("falling back to skb mode"), "{log}");
    assert!(log.contains("attached in skb mode"), "{log}");
    assert!(!ns.has_xdp("lo"));
}

#[test]
fn explicit_native_mode_fails_clearly_where_native_xdp_is_missing() {
    require_root();
    let ns = NetNs::new("es-lo");
    let pin = PinDir::new();
    let mut out = ns
        .command(sensor_bin())
        // Without a fallback: by default the sensor would carry on with its
        // userspace collector (tests/tests/fast_path.rs).
        .args([
            "run",
            "--iface",
            "lo",
            "--mode",
            "native",
            "--fallback",
            "none",
        ])
        .arg("--pin-path")
        .arg(pin.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run edge-sensor");
    // Bounded: a sensor that carried on instead would never exit.
    let status = wait_bounded(&mut out, Duration::from_secs(60));
    let mut err = String::new();
    out.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(!status.success());
    assert!(err.contains("native mode") && err.contains("lo"), "{err}");
    assert!(!ns.has_xdp("lo"));
}

#[test]
fn unknown_interfaces_and_missing_pins_give_clear_errors() {
    require_root();
    let ns = NetNs::new("es-if");
    let pin = PinDir::new();
    let out = ns
        .command(sensor_bin())
        .args(["run", "--iface", "nosuchif0", "--pin-path"])
        .arg(pin.path())
        .output()
        .expect("run edge-sensor");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("nosuchif0") && err.contains("no such interface"),
        "{err}"
    );

    let out = exporters_json(Path::new("/sys/fs/bpf/edge-sensor-test-absent/v1"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("is the sensor loaded?"), "{err}");
}

#[test]
fn a_pin_left_with_another_layout_is_refused() {
    require_root();
    let pin = PinDir::new();
    std::fs::create_dir_all(pin.path()).unwrap();
    // A map with the right name but another value size, as an older or newer
    // binary would have left it.
    let status = Command::new("bpftool")
        .args(["map", "create"])
        .arg(pin.path().join("EXPORTER_STATS"))
        .args([
            "type",
            "lru_percpu_hash",
            "key",
            "20",
            "value",
            "8",
            "entries",
            "16",
            "name",
            "EXPORTER_STATS",
        ])
        .status()
        .expect("bpftool is needed: run scripts/setup");
    assert!(status.success(), "bpftool map create");

    let ns = NetNs::new("es-pin");
    let out = ns
        .command(sensor_bin())
        .args(["run", "--iface", "lo", "--pin-path"])
        .arg(pin.path())
        .output()
        .expect("run edge-sensor");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "loaded over a foreign pin");
    assert!(err.contains("another layout"), "{err}");
    assert!(!ns.has_xdp("lo"));

    let out = exporters_json(pin.path());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("another layout"));
}
