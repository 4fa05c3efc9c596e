//! Network namespaces and veth pairs the tests create, removed on drop.
//!
//! The sensor is started with `nsenter --net=...` rather than `ip netns exec`:
//! the latter also remounts /sys, which hides the bpffs at /sys/fs/bpf where
//! the sensor pins its maps.

use std::{
    fs::File,
    net::{IpAddr, SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    path::PathBuf,
    process::{Command, Stdio},
};

use crate::unique_name;

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("the `ip` command (iproute2) is needed: run scripts/setup");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace named by the test, deleted on drop.
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    pub fn new(prefix: &str) -> Self {
        let name = unique_name(prefix);
        ip(&["netns", "add", &name]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        Self { name }
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// `ip -n NAME args...`, asserting success.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// The output of `ip -n NAME args...`.
    pub fn ip_output(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .output()
            .expect("run ip");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A command run in this namespace (network only; mounts are shared).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.path().display()))
            .arg(program)
            .stdin(Stdio::null());
        cmd
    }

    /// Starts `program args...` here in a process group of its own (so
    /// stopping it stops whatever it forks), output discarded; killed with
    /// its group when the guard goes.
    pub fn spawn<S: AsRef<std::ffi::OsStr>>(
        &self,
        program: &str,
        args: impl IntoIterator<Item = S>,
    ) -> crate::Guarded {
        use std::os::unix::process::CommandExt;
        self.command(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map(crate::Guarded)
            .unwrap_or_else(|e| panic!("start {program}: {e}"))
    }

    /// tcpdump on `iface` here, writing the UDP datagrams to `port` into
    /// `file` (unbuffered, whole packets).
    pub fn capture(&self, iface: &str, file: &std::path::Path, port: u16) -> crate::Guarded {
        let file = file.to_str().expect("a UTF-8 capture path");
        let port = port.to_string();
        self.spawn(
            "tcpdump",
            [
                "-i", iface, "-U", "-s", "0", "-w", file, "udp", "dst", "port", &port,
            ],
        )
    }

    /// pmacct's `pmacctd` here with `config` (written to `dir`), started
    /// and given two seconds to open its capture.
    pub fn start_pmacctd(&self, dir: &std::path::Path, config: &str) -> crate::Guarded {
        let conf = dir.join("pmacctd.conf");
        std::fs::write(&conf, config).expect("write pmacctd.conf");
        let probe = self.spawn("pmacctd", [std::ffi::OsStr::new("-f"), conf.as_os_str()]);
        std::thread::sleep(std::time::Duration::from_secs(2));
        probe
    }

    /// Runs `f` on a thread inside this namespace (sockets it opens live there).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let file = File::open(self.path()).expect("open the namespace");
        std::thread::scope(|s| {
            s.spawn(move || {
                // SAFETY: a valid netns fd; setns changes only this thread.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .expect("thread in namespace panicked")
        })
    }

    /// Whether an XDP program is attached to `iface` in this namespace.
    pub fn has_xdp(&self, iface: &str) -> bool {
        let out = self.ip_output(&["-d", "link", "show", "dev", iface]);
        out.contains("prog/xdp")
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Two namespaces joined by a veth pair, with addresses: `a` (the sender,
/// e.g. a router) and `b` (the collector). Removed on drop.
pub struct Link {
    pub a: NetNs,
    pub b: NetNs,
    pub a_if: String,
    pub b_if: String,
    pub a_addr: IpAddr,
    pub b_addr: IpAddr,
}

impl Link {
    /// `a` gets 198.18.X.1/24, `b` 198.18.X.2/24 (RFC 2544 benchmarking
    /// range, only ever inside these namespaces), plus 2001:db8:X::1/2/64.
    pub fn new() -> Self {
        Self::with_queues(1)
    }

    /// [`Link::new`] with `queues` RX and TX queues on each end (veth
    /// picks the receiver's queue by the sending CPU).
    pub fn with_queues(queues: u32) -> Self {
        let a = NetNs::new("es-a");
        let b = NetNs::new("es-b");
        let a_if = unique_name("esva");
        let b_if = unique_name("esvb");
        let q = queues.max(1).to_string();
        ip(&[
            "link",
            "add",
            &a_if,
            "netns",
            &a.name,
            "numrxqueues",
            &q,
            "numtxqueues",
            &q,
            "type",
            "veth",
            "peer",
            "name",
            &b_if,
            "netns",
            &b.name,
            "numrxqueues",
            &q,
            "numtxqueues",
            &q,
        ]);
        let x = std::process::id() % 250;
        a.ip(&["addr", "add", &format!("198.18.{x}.1/24"), "dev", &a_if]);
        b.ip(&["addr", "add", &format!("198.18.{x}.2/24"), "dev", &b_if]);
        a.ip(&[
            "addr",
            "add",
            &format!("2001:db8:{x:x}::1/64"),
            "dev",
            &a_if,
            "nodad",
        ]);
        b.ip(&[
            "addr",
            "add",
            &format!("2001:db8:{x:x}::2/64"),
            "dev",
            &b_if,
            "nodad",
        ]);
        a.ip(&["link", "set", &a_if, "up"]);
        b.ip(&["link", "set", &b_if, "up"]);
        Self {
            a_addr: format!("198.18.{x}.1").parse().unwrap(),
            b_addr: format!("198.18.{x}.2").parse().unwrap(),
            a,
            b,
            a_if,
            b_if,
        }
    }

    /// The IPv6 addresses of `a` and `b`.
    pub fn v6_addrs(&self) -> (IpAddr, IpAddr) {
        let x = std::process::id() % 250;
        (
            format!("2001:db8:{x:x}::1").parse().unwrap(),
            format!("2001:db8:{x:x}::2").parse().unwrap(),
        )
    }

    /// Sends `count` UDP datagrams of `len` payload bytes from `a` to `dst`.
    pub fn send_udp(&self, dst: SocketAddr, count: usize, len: usize) {
        self.a.run(move || {
            let bind: SocketAddr = if dst.is_ipv4() {
                "0.0.0.0:0".parse().unwrap()
            } else {
                "[::]:0".parse().unwrap()
            };
            let sock = UdpSocket::bind(bind).expect("bind a UDP socket");
            let payload = vec![0xa5u8; len];
            for _ in 0..count {
                sock.send_to(&payload, dst).expect("send a datagram");
            }
        });
    }
}

impl Default for Link {
    fn default() -> Self {
        Self::new()
    }
}

/// `edge-sensor run` attached to `iface` in `ns`, pinning under `pin`, its
/// log written to `log`, its state kept in `log` with the extension `state`
/// and its control socket at `log` with the extension `sock`; returns once
/// the program is on the interface (panics after 15 s).
pub fn start_sensor(
    ns: &NetNs,
    iface: &str,
    pin: &std::path::Path,
    log: &std::path::Path,
) -> crate::Guarded {
    start_sensor_with(ns, iface, pin, log, &[])
}

/// [`start_sensor`] with more arguments (e.g. `--config FILE`); the log is
/// appended to, so a restarted sensor keeps the first one's lines.
pub fn start_sensor_with(
    ns: &NetNs,
    iface: &str,
    pin: &std::path::Path,
    log: &std::path::Path,
    extra: &[&std::ffi::OsStr],
) -> crate::Guarded {
    let mut sensor = spawn_sensor(ns, iface, pin, log, extra);
    wait_started(&mut sensor, log, 15, "attach", || ns.has_xdp(iface));
    sensor
}

/// Waits (bounded: `secs`, stretched under emulation) until `ready`,
/// failing with the sensor's log when it does not get there or exits.
fn wait_started(
    sensor: &mut crate::Guarded,
    log: &std::path::Path,
    secs: u64,
    what: &str,
    ready: impl Fn() -> bool,
) {
    let deadline =
        std::time::Instant::now() + crate::patience(std::time::Duration::from_secs(secs));
    while !ready() {
        let exited = sensor.0.try_wait().ok().flatten();
        assert!(
            std::time::Instant::now() < deadline && exited.is_none(),
            "edge-sensor did not {what} ({exited:?}): {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// [`start_sensor_with`] for a sensor without XDP (the userspace collector:
/// `--mode userspace`, or the fallback): returns once its control socket is
/// there, which it opens after the collector's sockets (panics after 60 s,
/// time enough for a verifier to refuse a large program, or if it exits).
pub fn start_sensor_userspace(
    ns: &NetNs,
    iface: &str,
    pin: &std::path::Path,
    log: &std::path::Path,
    extra: &[&std::ffi::OsStr],
) -> crate::Guarded {
    // A socket left by a killed predecessor is not this one's.
    let _ = std::fs::remove_file(log.with_extension("sock"));
    let mut sensor = spawn_sensor(ns, iface, pin, log, extra);
    wait_started(&mut sensor, log, 60, "start", || {
        log.with_extension("sock").exists()
    });
    sensor
}

fn spawn_sensor(
    ns: &NetNs,
    iface: &str,
    pin: &std::path::Path,
    log: &std::path::Path,
    extra: &[&std::ffi::OsStr],
) -> crate::Guarded {
    use std::os::unix::process::CommandExt;
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open the sensor log");
    let child = ns
        .command(crate::sensor_bin())
        .args(["run", "--iface", iface, "--pin-path"])
        .arg(pin)
        .args(extra)
        // Beside the log: each test's own, never the machine's /var/lib.
        .arg("--state-dir")
        .arg(log.with_extension("state"))
        .arg("--control-socket")
        .arg(log.with_extension("sock"))
        .stdout(Stdio::null())
        .stderr(log_file)
        .process_group(0)
        .spawn()
        .expect("start edge-sensor");
    crate::Guarded(child)
}
