//! The fault suite (issue 19): what a first week in production throws at
//! the daemon, each case asserting that no mitigation is lost or
//! duplicated.
//!
//! - the state directory full (a small tmpfs), then read-only, mid-attack:
//!   the bans go on, the replies, `status` and the metrics say "not
//!   persisted", the state catches up when the disk does, and a crash
//!   after that restores exactly what is active;
//! - corrupted state files: the daemon starts without them and rewrites
//!   them whole;
//! - a template flood from an allowed exporter: memory bounded (RSS under
//!   64 MiB above idle with the defaults), a legitimate exporter's stream
//!   counted exactly, `status` and SIGTERM prompt;
//! - control-socket abuse: invalid UTF-8, an over-long line, hundreds of
//!   idle clients, nonsense requests, a file in the socket's place, a
//!   second daemon on the same state directory;
//! - SIGHUP with every key it can apply, then one it cannot.
//!
//! Mitigations here are manual bans (no BGP peer: decided and logged
//! only), the daemon's own record of what is active either way.

use std::{
    collections::BTreeMap,
    ffi::OsStr,
    io::{BufRead, BufReader, Read, Write},
    net::{IpAddr, SocketAddr, UdpSocket},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use edge_sensor::{
    control::{self, Request, Response},
    xdp::read,
};
use edge_sensor_tests::{
    Guarded, PinDir,
    netns::{Link, start_sensor_with},
    require_root, sensor_bin, unique_name,
};
use serde_json::Value;

const METRICS: &str = "127.0.0.1:9810";

/// One daemon under test: its directory (config, log, state, socket).
struct Fixture {
    link: Link,
    pin: PinDir,
    dir: PathBuf,
    sensor: Option<Guarded>,
}

impl Fixture {
    fn new(prefix: &str) -> Self {
        require_root();
        let link = Link::new();
        let dir = std::env::temp_dir().join(unique_name(prefix));
        std::fs::create_dir_all(&dir).expect("test dir");
        Self {
            link,
            pin: PinDir::new(),
            dir,
            sensor: None,
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.join("sensor.log")
    }
    fn state(&self) -> PathBuf {
        self.dir.join("sensor.state")
    }
    fn socket(&self) -> PathBuf {
        self.dir.join("sensor.sock")
    }
    fn config(&self) -> PathBuf {
        self.dir.join("sensor.toml")
    }
    fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    /// The own networks: the collector's /24 (the bans' victims live there).
    fn own(&self) -> String {
        let IpAddr::V4(b) = self.link.b_addr else {
            unreachable!()
        };
        let [x, y, z, _] = b.octets();
        format!("{x}.{y}.{z}.0/24")
    }

    fn victim(&self, host: u8) -> String {
        let IpAddr::V4(b) = self.link.b_addr else {
            unreachable!()
        };
        let [x, y, z, _] = b.octets();
        format!("{x}.{y}.{z}.{host}")
    }

    /// A configuration with `extra` TOML appended (sections of its own).
    fn write_config(&self, telemetry: &str, extra: &str) {
        let text = format!(
            "[daemon]\nmetrics_listen = \"{METRICS}\"\n\n[telemetry]\n{telemetry}\n\n\
             [exporters]\nallow = [\"{own}\"]\n\n[detect]\nown_networks = [\"{own}\"]\n\n{extra}\n",
            own = self.own()
        );
        std::fs::write(self.config(), text).expect("write the config");
    }

    fn start(&mut self) {
        let config = self.config();
        let args = [OsStr::new("--config"), config.as_os_str()];
        // A socket left by a killed predecessor.
        let _ = std::fs::remove_file(self.socket());
        self.sensor = Some(start_sensor_with(
            &self.link.b,
            &self.link.b_if,
            self.pin.path(),
            &self.log(),
            &args,
        ));
        self.wait("the control socket", || {
            control::request(&self.socket(), &Request::Status, Duration::from_secs(2)).is_ok()
        });
    }

    fn pid(&self) -> u32 {
        self.sensor.as_ref().expect("running").0.id()
    }

    /// SIGKILL: a crash, nothing saved at exit.
    fn crash(&mut self) {
        if let Some(s) = self.sensor.take() {
            s.stop(libc::SIGKILL);
        }
    }

    fn ask(&self, request: &Request) -> Response {
        control::request(&self.socket(), request, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{request:?}: {e}\n{}", self.log_text()))
    }

    fn ok(&self, request: &Request) -> Value {
        match self.ask(request) {
            Response::Ok { body } => body,
            Response::Error { message } => {
                panic!("{request:?} refused: {message}\n{}", self.log_text())
            }
        }
    }

    fn status(&self) -> Value {
        let s = self.ok(&Request::Status);
        edge_sensor_tests::assert_json_schema("status", &s);
        s
    }

    fn ban(&self, host: u8) -> Value {
        self.ok(&Request::Ban {
            ip: self.victim(host),
            flowspec: None,
            blackhole: true,
            duration_secs: Some(3600),
        })
    }

    /// The victims of the active mitigations, with how often each is there.
    fn active(&self) -> BTreeMap<String, usize> {
        let body = self.ok(&Request::Mitigations);
        let mut out = BTreeMap::new();
        for m in body["mitigations"].as_array().expect("mitigations") {
            *out.entry(m["victim"].as_str().expect("victim").to_string())
                .or_default() += 1;
        }
        out
    }

    /// Asserts the active mitigations are exactly `hosts`, once each.
    fn assert_active(&self, hosts: &[u8], when: &str) {
        let want: BTreeMap<String, usize> = hosts
            .iter()
            .map(|h| (format!("{}/32", self.victim(*h)), 1))
            .collect();
        assert_eq!(self.active(), want, "{when}: active mitigations");
    }

    /// The mitigations file on disk: victims with their counts.
    fn saved(&self) -> BTreeMap<String, usize> {
        let text = std::fs::read_to_string(self.state().join("mitigations.json"))
            .expect("mitigations.json");
        let list: Vec<Value> = serde_json::from_str(&text).expect("mitigations.json is JSON");
        let mut out = BTreeMap::new();
        for m in list {
            *out.entry(m["victim"].as_str().expect("victim").to_string())
                .or_default() += 1;
        }
        out
    }

    fn metrics(&self) -> String {
        self.link.b.run(|| {
            let mut s = std::net::TcpStream::connect(METRICS).expect("metrics endpoint");
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut text = String::new();
            let _ = s.read_to_string(&mut text);
            text
        })
    }

    /// Waits (at most 15 s) until `done`.
    fn wait(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + edge_sensor_tests::patience(Duration::from_secs(15));
        while !done() {
            assert!(
                Instant::now() < deadline,
                "{what}: timed out; sensor log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.crash();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A tmpfs mounted at a path of the test's, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Self {
        std::fs::create_dir_all(path).expect("mount point");
        mount(&[
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0700"),
            "tmpfs",
            path.to_str().unwrap(),
        ]);
        Self(path.to_owned())
    }

    fn remount(&self, how: &str) {
        mount(&["-o", &format!("remount,{how}"), self.0.to_str().unwrap()]);
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount(args: &[&str]) {
    let out = Command::new("mount")
        .args(args)
        .output()
        .expect("run mount");
    assert!(
        out.status.success(),
        "mount {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes zeros into `path` until the file system is full (bounded).
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).expect("filler");
    let chunk = vec![0u8; 4096];
    for _ in 0..(64 << 20) / 4096 {
        if f.write_all(&chunk).and_then(|()| f.sync_all()).is_err() {
            return;
        }
    }
    panic!("{} never filled up", path.display());
}

fn persisted(status: &Value) -> bool {
    status["state"]["persisted"]
        .as_bool()
        .expect("status.state.persisted")
}

#[test]
fn state_dir_full_then_read_only_mid_attack_loses_no_mitigation() {
    let mut f = Fixture::new("es-flt-");
    let tmpfs = Tmpfs::mount(&f.state(), "256k");
    f.write_config("", "");
    f.start();

    let a = f.ban(10);
    assert_eq!(a["persisted"], true, "{a}");
    assert!(persisted(&f.status()));

    // Full: the ban is in force, and the answer says it is not on disk.
    fill(&f.state().join("filler"));
    let b = f.ban(11);
    assert_eq!(b["persisted"], false, "{b}");
    let warning = b["warning"].as_str().expect("a warning");
    assert!(warning.contains("active, not persisted"), "{warning}");
    let status = f.status();
    assert!(!persisted(&status), "{status}");
    assert_eq!(status["state"]["files"]["mitigations"]["persisted"], false);
    // The metrics follow at the next poll.
    f.wait("the metrics to say so", || {
        let m = f.metrics();
        m.contains("edge_sensor_state_persisted{file=\"mitigations\"} 0")
            && !m.contains("edge_sensor_state_save_failures_total{file=\"mitigations\"} 0")
    });
    f.assert_active(&[10, 11], "disk full");

    // Space again: the state catches up without a new change.
    std::fs::remove_file(f.state().join("filler")).expect("free the space");
    f.wait("the save after the disk freed up", || {
        persisted(&f.status())
    });
    assert_eq!(
        f.saved(),
        BTreeMap::from([
            (format!("{}/32", f.victim(10)), 1),
            (format!("{}/32", f.victim(11)), 1)
        ])
    );

    // Read-only: a ban and an unban, both in force, neither on disk.
    tmpfs.remount("ro");
    let c = f.ban(12);
    assert_eq!(c["persisted"], false, "{c}");
    let unban = f.ok(&Request::Unban {
        target: f.victim(10),
    });
    assert_eq!(unban["withdrawn"], 1, "{unban}");
    assert_eq!(unban["persisted"], false, "{unban}");
    assert!(!persisted(&f.status()));
    f.assert_active(&[11, 12], "read-only");

    tmpfs.remount("rw");
    f.wait("the save after the remount", || persisted(&f.status()));

    // A crash now restores exactly what was active.
    f.crash();
    f.start();
    f.assert_active(&[11, 12], "after the crash");
    assert!(persisted(&f.status()));
    f.crash();
    drop(tmpfs);
}

#[test]
fn corrupted_state_files_are_set_aside_and_rewritten() {
    let mut f = Fixture::new("es-flc-");
    std::fs::create_dir_all(f.state()).unwrap();
    std::fs::write(f.state().join("mitigations.json"), b"[{\"id\": 1, \"vic").unwrap();
    std::fs::write(
        f.state().join("templates.json"),
        b"\xff\xfe not even UTF-8 \x00\x01",
    )
    .unwrap();
    std::fs::write(f.state().join("lock"), b"garbage, not a pid").unwrap();
    f.write_config("", "");
    f.start();
    let log = f.log_text();
    assert!(
        log.contains("starting without the saved mitigations"),
        "{log}"
    );
    assert!(log.contains("starting without saved templates"), "{log}");
    f.assert_active(&[], "after corrupted state");

    let a = f.ban(20);
    assert_eq!(a["persisted"], true, "{a}");
    assert_eq!(
        f.saved(),
        BTreeMap::from([(format!("{}/32", f.victim(20)), 1)])
    );
    f.crash();
    f.start();
    f.assert_active(&[20], "after a crash");
}

/// An IPFIX message of `sets` (id, body) from observation domain `domain`.
fn ipfix(sequence: u32, domain: u32, sets: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut m = vec![0, 10, 0, 0, 0x65, 0, 0, 0];
    m.extend(sequence.to_be_bytes());
    m.extend(domain.to_be_bytes());
    for (id, body) in sets {
        m.extend(id.to_be_bytes());
        m.extend(((body.len() + 4) as u16).to_be_bytes());
        m.extend(body);
    }
    let len = (m.len() as u16).to_be_bytes();
    m[2..4].copy_from_slice(&len);
    m
}

/// Template 300 (destinationIPv4Address, packetDeltaCount, octetDeltaCount,
/// protocolIdentifier): the legitimate exporter's.
fn legit_template() -> Vec<u8> {
    let mut t = vec![0x01, 0x2c, 0, 4];
    for (ie, len) in [(12u16, 4u16), (2, 4), (1, 4), (4, 1)] {
        t.extend(ie.to_be_bytes());
        t.extend(len.to_be_bytes());
    }
    ipfix(0, 42, &[(2, t)])
}

/// Two records of template 300 to `victim`: 10 + 20 packets.
fn legit_data(sequence: u32, victim: [u8; 4]) -> Vec<u8> {
    let mut body = Vec::new();
    for packets in [10u32, 20] {
        body.extend(victim);
        body.extend(packets.to_be_bytes());
        body.extend((packets * 100).to_be_bytes());
        body.push(17);
    }
    ipfix(sequence, 42, &[(300, body)])
}

/// A flood datagram under the MTU: ten templates of 30 fields, ids from
/// `first` (1,260 bytes), or, with `big`, one of 350 fields (1,424 bytes:
/// what a byte bound is for).
fn flood_templates(first: u16, big: bool) -> Vec<u8> {
    let (count, fields) = if big { (1u16, 350u16) } else { (10, 30) };
    let mut body = Vec::new();
    for i in 0..count {
        body.extend((256 + (first.wrapping_add(i) % 65000)).to_be_bytes());
        body.extend(fields.to_be_bytes());
        for field in 0..fields {
            body.extend((100 + field).to_be_bytes());
            body.extend(4u16.to_be_bytes());
        }
    }
    ipfix(0, 7, &[(2, body)])
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_template_flood_from_an_allowed_exporter_stays_bounded() {
    let mut f = Fixture::new("es-flf-");
    // The flood's own address beside the legitimate exporter's, both allowed.
    let IpAddr::V4(a) = f.link.a_addr else {
        unreachable!()
    };
    let [x, y, z, _] = a.octets();
    let flooder: IpAddr = [x, y, z, 3].into();
    f.link
        .a
        .ip(&["addr", "add", &format!("{flooder}/24"), "dev", &f.link.a_if]);
    f.write_config("", "");
    f.start();
    let victim = {
        let IpAddr::V4(b) = f.link.b_addr else {
            unreachable!()
        };
        let [x, y, z, _] = b.octets();
        [x, y, z, 50]
    };
    let to = SocketAddr::new(f.link.b_addr, 4739);
    let consumed = |pin: &Path| {
        let map = aya::maps::Map::from_map_data(
            aya::maps::MapData::from_pin(pin.join("GLOBAL_STATS")).expect("pin"),
        )
        .expect("GLOBAL_STATS");
        read::global(&map).expect("read").consumed_datagrams
    };
    let victim_packets = |pin: &Path| {
        read::pinned_report(pin)
            .expect("read pins")
            .destinations
            .get(&IpAddr::from(victim))
            .map_or(0, |s| s.packets[0])
    };

    // The legitimate exporter's plan reaches the kernel first.
    let a_addr = f.link.a_addr;
    let legit = f.link.a.run(move || {
        let s = UdpSocket::bind((a_addr, 40123)).expect("legit socket");
        s.send_to(&legit_template(), to).expect("send");
        s
    });
    let pin = f.pin.path().to_owned();
    f.wait("the plan for template 300", || {
        f.link
            .a
            .run(|| legit.send_to(&legit_data(0, victim), to).expect("send"));
        std::thread::sleep(Duration::from_millis(200));
        consumed(&pin) >= 1
    });
    std::thread::sleep(Duration::from_secs(2));
    let baseline = victim_packets(&pin);
    let pid = f.pid();
    let idle = rss_kib(pid);

    // 40 s of churn: fresh ids over 64 source ports, small and large
    // templates, interleaved with the legitimate stream (its template
    // refreshed now and then).
    let (sent_legit, peak) = f.link.a.run(|| {
        let ports: Vec<UdpSocket> = (0..64)
            .map(|i| UdpSocket::bind((flooder, 41000 + i)).expect("flood socket"))
            .collect();
        let start = Instant::now();
        let (mut n, mut legit_n, mut peak) = (0u32, 0u64, idle);
        while start.elapsed() < Duration::from_secs(40) && n < 800_000 {
            for _ in 0..50 {
                let sock = &ports[n as usize % ports.len()];
                let flood = flood_templates(n.wrapping_mul(10) as u16, n % 2 == 1);
                let _ = sock.send_to(&flood, to);
                n += 1;
            }
            legit
                .send_to(&legit_data(legit_n as u32 + 1, victim), to)
                .expect("send");
            legit_n += 1;
            if legit_n % 200 == 0 {
                legit.send_to(&legit_template(), to).expect("send");
            }
            if legit_n % 20 == 0 {
                peak = peak.max(rss_kib(pid));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        (legit_n, peak)
    });
    // The daemon works off its backlog; memory stays bounded meanwhile.
    let mut peak = peak;
    for _ in 0..30 {
        peak = peak.max(rss_kib(pid));
        std::thread::sleep(Duration::from_millis(100));
    }
    let grown_mib = peak.saturating_sub(idle) as f64 / 1024.0;
    eprintln!(
        "template flood: RSS idle {} KiB, peak {} KiB (+{grown_mib:.1} MiB); {sent_legit} \
         legitimate datagrams",
        idle, peak
    );
    assert!(
        grown_mib < 64.0,
        "RSS grew {grown_mib:.1} MiB over idle ({idle} KiB) during the flood"
    );

    // The saved file (rewritten every few seconds while templates change)
    // is bounded too: it is what a restart reads back.
    std::thread::sleep(Duration::from_secs(6));
    let saved = std::fs::metadata(f.state().join("templates.json"))
        .map(|m| m.len())
        .unwrap_or(0);
    eprintln!("template flood: templates.json {saved} bytes while running");
    assert!(saved < 16 << 20, "templates.json is {saved} bytes");

    let asked = Instant::now();
    let status = f.status();
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(2), "status took {took:?}");
    let t = &status["templates"];
    let limit = t["limits"]["total"].as_u64().unwrap();
    assert!(t["count"].as_u64().unwrap() <= limit, "{t}");
    assert!(
        t["memory_bytes"].as_u64().unwrap() <= t["limits"]["total_bytes"].as_u64().unwrap(),
        "{t}"
    );
    let evicted = &t["templates_evicted"];
    assert!(
        evicted[flooder.to_string()].as_u64().unwrap_or(0) > 0,
        "{t}"
    );
    assert!(
        evicted[a_addr.to_string()].is_null(),
        "legitimate evicted: {t}"
    );
    let m = f.metrics();
    assert!(
        m.contains(&format!(
            "edge_sensor_templates_evicted_total{{exporter=\"{flooder}\"}}"
        )),
        "no eviction metric"
    );
    assert!(
        m.contains("edge_sensor_template_memory_bytes "),
        "no memory metric"
    );
    assert!(
        f.log_text().matches("template store full").count() == 1,
        "warned once"
    );
    // The exporters view shows the evictions per exporter.
    let out = Command::new(sensor_bin())
        .args(["exporters", "--json", "--interval", "0", "--pin-path"])
        .arg(f.pin.path())
        .arg("--socket")
        .arg(f.socket())
        .output()
        .expect("edge-sensor exporters");
    let view: Value = serde_json::from_slice(&out.stdout).expect("exporters JSON");
    edge_sensor_tests::assert_json_schema("exporters", &view);
    let rows = view["exporters"].as_array().expect("rows");
    let of = |ip: IpAddr| {
        rows.iter()
            .filter(|r| r["ip"] == ip.to_string().as_str())
            .map(|r| r["templates_evicted"].as_u64().expect("answered"))
            .collect::<Vec<_>>()
    };
    let flood_rows = of(flooder);
    assert!(
        !flood_rows.is_empty() && flood_rows.iter().all(|n| *n > 0),
        "{view}"
    );
    assert!(of(a_addr).iter().all(|n| *n == 0), "{view}");

    // Every legitimate record counted, exactly once.
    f.wait("the legitimate stream counted", || {
        victim_packets(&pin) >= baseline + 30 * sent_legit
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(victim_packets(&pin), baseline + 30 * sent_legit);

    // SIGTERM is prompt, and the saved file bounded.
    let stopping = Instant::now();
    let status = f.sensor.take().unwrap().stop(libc::SIGTERM);
    let took = stopping.elapsed();
    assert!(
        status.is_some() && took < Duration::from_secs(5),
        "SIGTERM took {took:?}"
    );
    let saved = std::fs::metadata(f.state().join("templates.json"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(saved < 16 << 20, "templates.json is {saved} bytes");
}

/// One raw line on the control socket and the answer (empty: none).
fn raw(socket: &Path, line: &[u8]) -> String {
    let mut s = UnixStream::connect(socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(line);
    let mut answer = String::new();
    let _ = BufReader::new(s).read_line(&mut answer);
    answer
}

#[test]
fn control_socket_abuse_gets_answers_and_changes_nothing() {
    let mut f = Fixture::new("es-fls-");
    // A file in the socket's place is refused and left alone.
    std::fs::write(f.socket(), b"precious").unwrap();
    f.write_config("", "");
    let config = f.config();
    f.sensor = Some(start_sensor_with(
        &f.link.b,
        &f.link.b_if,
        f.pin.path(),
        &f.log(),
        &[OsStr::new("--config"), config.as_os_str()],
    ));
    f.wait("the refusal in the log", || {
        f.log_text().contains("not a socket")
    });
    assert_eq!(std::fs::read(f.socket()).unwrap(), b"precious");
    f.crash();
    std::fs::remove_file(f.socket()).unwrap();
    f.start();

    let sock = f.socket();
    f.ban(30);
    let utf8 = raw(&sock, b"{\"request\":\"sta\xfftus\"}\n");
    assert!(utf8.contains("not UTF-8"), "invalid UTF-8: {utf8:?}");
    let long = raw(&sock, &vec![b'x'; 70 * 1024]);
    assert!(long.contains("longer than"), "over-long: {long:?}");
    let unknown = raw(&sock, b"{\"request\":\"nuke\"}\n");
    assert!(unknown.contains("bad request"), "{unknown:?}");
    let forever = raw(
        &sock,
        format!(
            "{{\"request\":\"ban\",\"ip\":\"{}\",\"flowspec\":null,\"blackhole\":true,\
             \"duration_secs\":{}}}\n",
            f.victim(31),
            u64::MAX
        )
        .as_bytes(),
    );
    assert!(
        forever.contains("\"error\"") && forever.contains("duration"),
        "{forever:?}"
    );

    // Hundreds of clients that never send: status still prompt.
    let idle: Vec<UnixStream> = (0..300)
        .map(|_| UnixStream::connect(&sock).expect("connect"))
        .collect();
    let asked = Instant::now();
    f.status();
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    drop(idle);
    f.assert_active(&[30], "after the abuse");

    // 2,000 clients each leaving half a request: the memory they took is
    // given back once they are gone.
    let before = rss_kib(f.pid());
    let half: Vec<UnixStream> = (0..2000)
        .map(|_| {
            let mut s = UnixStream::connect(&sock).expect("connect");
            let _ = s.write_all(&[b' '; 32 * 1024]);
            s
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let during = rss_kib(f.pid());
    drop(half);
    f.status();
    // Bounded: the daemon's clean-up runs within a poll or two.
    let mut after = rss_kib(f.pid());
    for _ in 0..50 {
        if after <= before + 16 * 1024 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        after = rss_kib(f.pid());
    }
    eprintln!(
        "control socket: RSS {before} KiB idle, {during} KiB with 2,000 clients, {after} KiB after"
    );
    assert!(
        after <= before + 16 * 1024,
        "memory not given back: {before} KiB before, {during} KiB during, {after} KiB after"
    );
    f.assert_active(&[30], "after 2,000 clients");

    // A second daemon on the same state directory refuses, naming the first.
    let first = f.pid();
    let other_pin = PinDir::new();
    let out = f
        .link
        .b
        .command(sensor_bin())
        .args(["run", "--iface", &f.link.b_if, "--pin-path"])
        .arg(other_pin.path())
        .arg("--config")
        .arg(f.config())
        .arg("--state-dir")
        .arg(f.state())
        .arg("--control-socket")
        .arg(f.dir.join("second.sock"))
        .arg("--metrics-listen")
        .arg("")
        .output()
        .expect("run a second daemon");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the second daemon ran: {stderr}");
    assert!(stderr.contains(&format!("PID {first}")), "{stderr}");
    f.assert_active(&[30], "after the second daemon");
}

/// An sFlow datagram to `port` from the exporter; the kernel's count of
/// telemetry datagrams (seen, rejected) after it.
fn sflow_to(f: &Fixture, port: u16) -> (u64, u64) {
    use edge_sensor_tests::sflow::{Datagram, Sample};
    let payload = Datagram::new(1, vec![Sample::flow(1, vec![])]).encode();
    let to = SocketAddr::new(f.link.b_addr, port);
    f.link.a.run(move || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
        s.send_to(&payload, to).expect("send");
    });
    std::thread::sleep(Duration::from_millis(300));
    let map = aya::maps::Map::from_map_data(
        aya::maps::MapData::from_pin(f.pin.path().join("GLOBAL_STATS")).expect("pin"),
    )
    .expect("GLOBAL_STATS");
    let g = read::global(&map).expect("read");
    (g.telemetry_datagrams, g.rejected_datagrams)
}

/// Sends SIGHUP and returns the daemon's account of that reload, which
/// must have `outcome`.
fn hup(f: &Fixture, outcome: &str) -> Value {
    let before = f.status()["last_reload"]["count"].as_u64().unwrap_or(0);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(f.pid() as i32, libc::SIGHUP) };
    let mut last = Value::Null;
    f.wait("the reload", || {
        last = f.status()["last_reload"].clone();
        last["count"].as_u64() == Some(before + 1)
    });
    assert_eq!(last["outcome"], outcome, "{last}");
    last
}

#[test]
fn sighup_applies_every_changeable_key_or_refuses_naming_the_key() {
    let mut f = Fixture::new("es-flh-");
    f.write_config("", "");
    f.start();
    f.ban(40);
    let (seen, _) = sflow_to(&f, 16343);
    assert_eq!(
        sflow_to(&f, 16343).0,
        seen,
        "16343 is not a telemetry port yet"
    );

    // Every key SIGHUP applies, changed at once.
    let own = f.own();
    let IpAddr::V4(a) = f.link.a_addr else {
        unreachable!()
    };
    let [x, y, z, _] = a.octets();
    std::fs::write(
        f.config(),
        format!(
            "[daemon]\nmetrics_listen = \"{METRICS}\"\n\n\
             [telemetry]\nsflow_ports = [16343]\nipfix_ports = [14739]\nnetflow_ports = [12055]\n\
             pass_telemetry = true\ntemplate_lifetime = 600\nmax_templates_per_exporter = 100\n\
             max_template_bytes_per_exporter = 100000\nmax_templates = 1000\n\
             max_template_bytes = 1000000\n\n\
             [exporters]\nallow = [\"{x}.{y}.{z}.99/32\"]\n\
             [[exporters.sampling]]\nprefix = \"{x}.{y}.{z}.0/24\"\nrate = 100\nmode = \"default\"\n\n\
             [detect]\nown_networks = [\"{own}\"]\npoll_interval = \"2s\"\n\
             [detect.thresholds]\nall = {{ pps = 5000 }}\n\n\
             [mitigation]\nmin_hold = \"1m\"\nmanual_duration = \"7m\"\nmax_active = 50\n"
        ),
    )
    .unwrap();
    let reload = hup(&f, "applied");
    assert_eq!(reload["detail"], Value::Array(vec![]), "{reload}");
    assert_eq!(f.log_text().matches("configuration reloaded").count(), 1);
    // The kernel took the new port and the new allow-list: the exporter
    // (not .99) is now seen on 16343 and rejected there.
    let (seen2, rejected2) = sflow_to(&f, 16343);
    assert_eq!(seen2, seen + 1, "the kernel counts on the new port");
    let (seen3, rejected3) = sflow_to(&f, 16343);
    assert_eq!(
        (seen3, rejected3),
        (seen2 + 1, rejected2 + 1),
        "outside the new allow-list"
    );
    assert_eq!(
        sflow_to(&f, 6343).0,
        seen3,
        "6343 no longer a telemetry port"
    );
    let t = &f.status()["templates"]["limits"];
    assert_eq!(t["per_exporter"], 100, "{t}");
    assert_eq!(t["total_bytes"], 1_000_000, "{t}");
    // The new mitigation settings apply to the next ban.
    let ban = f.ok(&Request::Ban {
        ip: f.victim(41),
        flowspec: None,
        blackhole: true,
        duration_secs: None,
    });
    let m = &ban["mitigation"];
    assert_eq!(
        m["expires"].as_u64().unwrap() - m["created"].as_u64().unwrap(),
        420,
        "manual_duration 7m: {m}"
    );
    f.assert_active(&[40, 41], "after the reload");

    // A key only a restart applies: refused, named, nothing changed.
    // (The state directory and the socket come from the command line here,
    // which overrides the file: the metrics address is the key to change.)
    let text = std::fs::read_to_string(f.config())
        .unwrap()
        .replace(METRICS, "127.0.0.1:9811");
    std::fs::write(f.config(), text.replace("16343", "26343")).unwrap();
    let reload = hup(&f, "refused");
    assert!(
        reload["detail"]
            .to_string()
            .contains("daemon.metrics_listen"),
        "{reload}"
    );
    assert!(f.log_text().contains("`daemon.metrics_listen` changed"));
    assert_eq!(f.log_text().matches("configuration reloaded").count(), 1);
    let (seen4, _) = sflow_to(&f, 16343);
    assert_eq!(seen4, seen3 + 1, "the running ports stay");
    f.assert_active(&[40, 41], "after the refused reload");
}
