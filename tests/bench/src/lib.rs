//! The candidates of the collector benchmark (`cargo xtask bench`), each run
//! in the collector namespace and read the same way: what it accounted for,
//! the CPU it used, its memory.
//!
//! * [`Candidate::Xdp`]: `edge-sensor run` attached natively to the
//!   collector's veth; counts from the pinned maps; CPU = the program's run
//!   time (BPF run-time statistics) plus the daemon's process time.
//! * [`Candidate::User`]: `edge-sensor collect --user` (sockets, recvmmsg,
//!   the userspace decoder); its own report (SIGUSR1); CPU from /proc.
//! * [`Candidate::FastNetMon`]: Debian's `/usr/sbin/fastnetmon` (Community),
//!   sFlow and NetFlow/IPFIX collectors, unprivileged (`nobody`), its own
//!   config, log and stats files in a temp dir; counters from its Prometheus
//!   endpoint; CPU from /proc.

pub mod livegen;
pub mod mapmem;

use std::{
    collections::BTreeMap,
    fs,
    io::{Read, Write},
    net::{Ipv4Addr, TcpStream},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use edge_sensor_common::{DST_STATS, GLOBAL_STATS, GlobalStats};

use edge_sensor_tests::{Guarded, netns::NetNs};

/// UDP ports every candidate listens on.
pub const SFLOW_PORT: u16 = 6343;
pub const IPFIX_PORT: u16 = 4739;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Xdp,
    /// The system's default socket receive buffer, as FastNetMon gets.
    User,
    /// A 4 MiB receive buffer (`--rcvbuf`), as an operator would tune it.
    UserTuned,
    FastNetMon,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Xdp => "edge-sensor XDP",
            Self::User => "edge-sensor userspace (recvmmsg)",
            Self::UserTuned => "edge-sensor userspace, 4 MiB rcvbuf",
            Self::FastNetMon => "FastNetMon Community",
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Self::Xdp => "xdp",
            Self::User => "user",
            Self::UserTuned => "user-4m",
            Self::FastNetMon => "fastnetmon",
        }
    }
}

/// What a candidate has accounted for so far (cumulative).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Telemetry datagrams the candidate counted (XDP: every exporter's
    /// datagrams, kernel and daemon; user: datagrams decoded; FastNetMon:
    /// its `ipfix_total_packets`, kept for the record: it stays 0 in 1.2.4,
    /// which has no sFlow datagram counter either).
    pub datagrams: Option<u64>,
    /// sFlow flow samples / IPFIX flow records (FastNetMon: "simple
    /// packets" processed, one per sample or flow record).
    pub samples: u64,
    /// CPU seconds used so far (process user + system; XDP adds the
    /// program's run time).
    pub cpu_s: f64,
    /// XDP only: the program's own run time and run count.
    pub prog_run_s: Option<f64>,
    /// XDP only: datagrams the program passed to the stack after parsing.
    pub passed: Option<u64>,
}

/// How a candidate is started.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// XDP: the destination map's size (`xdp.destinations`).
    pub destinations: u32,
    /// FastNetMon: its monitored prefixes (`networks_list`).
    pub networks: Vec<String>,
    /// Userspace: leave per-destination rows out of the reports.
    pub summary_only: bool,
}

/// Candidates run in process groups of their own (so they can be stopped
/// whole), which a Ctrl-C at the terminal does not reach: they die with
/// the benchmark instead.
trait DieWithParent {
    fn die_with_parent(&mut self) -> &mut Self;
}

impl DieWithParent for Command {
    fn die_with_parent(&mut self) -> &mut Self {
        // SAFETY: prctl is async-signal-safe; nothing else runs in the child.
        unsafe {
            self.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
        }
    }
}

/// A running candidate.
pub struct Candidate {
    pub kind: Kind,
    process: Option<Guarded>,
    pid: u32,
    dir: PathBuf,
    pin: Option<PathBuf>,
    iface: String,
    ns_path: PathBuf,
    prometheus_port: u16,
}

impl Candidate {
    /// Starts `kind` in `ns` (collector side, `iface` its veth), in its
    /// own directory under `work`; `bin` is the `edge-sensor` binary.
    pub fn start(
        kind: Kind,
        ns: &NetNs,
        iface: &str,
        work: &Path,
        bin: &Path,
        opts: &StartOptions,
    ) -> Self {
        let destinations = opts.destinations;
        let dir = work.join(kind.key());
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let log = fs::File::create(dir.join("stderr.log")).unwrap();
        let mut cand = Self {
            kind,
            process: None,
            pid: 0,
            dir: dir.clone(),
            pin: None,
            iface: iface.to_owned(),
            ns_path: ns.path(),
            prometheus_port: 19209,
        };
        let child = match kind {
            Kind::Xdp => {
                let pin = PathBuf::from("/sys/fs/bpf")
                    .join(edge_sensor_tests::unique_name("esb"))
                    .join("v1");
                let config = dir.join("sensor.toml");
                fs::write(
                    &config,
                    format!(
                        "[xdp]\ndestinations = {destinations}\n\n[telemetry]\n\
                         sflow_ports = [{SFLOW_PORT}]\nipfix_ports = [{IPFIX_PORT}]\n\
                         netflow_ports = []\n"
                    ),
                )
                .unwrap();
                let child = ns
                    .command(bin)
                    .args(["run", "--iface", iface, "--mode", "native", "--config"])
                    .arg(&config)
                    .arg("--pin-path")
                    .arg(&pin)
                    .arg("--state-dir")
                    .arg(dir.join("state"))
                    .stdout(Stdio::null())
                    .stderr(log)
                    .process_group(0)
                    .die_with_parent()
                    .spawn()
                    .expect("start edge-sensor run");
                cand.pin = Some(pin);
                child
            }
            Kind::User | Kind::UserTuned => ns
                .command(bin)
                .args(["collect", "--user", "--port"])
                .arg(format!("sflow/{SFLOW_PORT}"))
                .arg("--port")
                .arg(format!("ipfix/{IPFIX_PORT}"))
                .arg("--json-report")
                .arg(dir.join("report.json"))
                .args(opts.summary_only.then_some("--summary-only"))
                .args((kind == Kind::UserTuned).then_some("--rcvbuf=4194304"))
                .stdout(Stdio::null())
                .stderr(log)
                .process_group(0)
                .die_with_parent()
                .spawn()
                .expect("start edge-sensor collect"),
            Kind::FastNetMon => {
                write_fastnetmon_config(&dir, &opts.networks, cand.prometheus_port);
                // World-writable: FastNetMon runs as nobody and writes its
                // log and stats files here.
                fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))
                    .unwrap();
                ns.command("setpriv")
                    // Again after the change of user, which clears it.
                    .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
                    .arg("--pdeathsig=KILL")
                    .arg("/usr/sbin/fastnetmon")
                    .arg("--configuration_file")
                    .arg(dir.join("fastnetmon.conf"))
                    .arg("--log_file")
                    .arg(dir.join("fastnetmon.log"))
                    .arg("--disable_pid_logic")
                    .stdout(Stdio::null())
                    .stderr(log)
                    .process_group(0)
                    .die_with_parent()
                    .spawn()
                    .expect("start fastnetmon")
            }
        };
        cand.pid = child.id();
        cand.process = Some(Guarded(child));
        cand.wait_ready();
        cand
    }

    /// Until the candidate listens (bounded: 120 s, FastNetMon zeroes its
    /// per-host counters for every monitored address first).
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let ready = match self.kind {
                Kind::Xdp => {
                    let out = ip_in(&self.ns_path, &["-d", "link", "show", "dev", &self.iface]);
                    let out = String::from_utf8_lossy(&out.stdout).contains("prog/xdp");
                    // The daemon's socket for IPFIX templates too.
                    out && self.udp_listening(IPFIX_PORT)
                }
                Kind::User | Kind::UserTuned => {
                    self.udp_listening(SFLOW_PORT) && self.udp_listening(IPFIX_PORT)
                }
                Kind::FastNetMon => {
                    self.udp_listening(SFLOW_PORT)
                        && self.udp_listening(IPFIX_PORT)
                        && self.prometheus().is_some()
                }
            };
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not start: {}",
                self.kind.name(),
                self.log_tail()
            );
            assert!(
                fs::metadata(format!("/proc/{}", self.pid)).is_ok(),
                "{} exited: {}",
                self.kind.name(),
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn pin(&self) -> Option<&Path> {
        self.pin.as_deref()
    }

    /// The last lines of the candidate's logs.
    pub fn log_tail(&self) -> String {
        let mut out = String::new();
        for name in ["stderr.log", "fastnetmon.log"] {
            if let Ok(text) = fs::read_to_string(self.dir.join(name)) {
                let lines: Vec<_> = text.lines().collect();
                out.push_str(&lines[lines.len().saturating_sub(15)..].join("\n"));
                out.push('\n');
            }
        }
        out
    }

    fn udp_listening(&self, port: u16) -> bool {
        let text = read_in_ns(&self.ns_path, "/proc/net/udp")
            + &read_in_ns(&self.ns_path, "/proc/net/udp6");
        let hex = format!(":{port:04X} ");
        text.lines().skip(1).any(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|local| format!("{local} ").contains(&hex))
        })
    }

    /// What it accounted for so far, and (if wanted and exposed) its
    /// per-destination rows (the JSON of `Report::to_json`).
    pub fn snapshot(&self, want_destinations: bool) -> (Snapshot, Option<serde_json::Value>) {
        let process_cpu = proc_cpu_s(self.pid);
        match self.kind {
            Kind::Xdp => {
                let pin = self.pin.as_ref().unwrap();
                let report = if want_destinations {
                    edge_sensor::xdp::read::pinned_report(pin).expect("read the pinned maps")
                } else {
                    edge_sensor::xdp::read::pinned_exporters(pin).expect("read the pinned maps")
                };
                let global = read_global(pin);
                let (run_ns, _) = xdp_prog_stats(&self.ns_path, &self.iface);
                let prog_s = run_ns as f64 / 1e9;
                let snap = Snapshot {
                    datagrams: Some(report.exporters.values().map(|t| t.stats.datagrams).sum()),
                    samples: report
                        .exporters
                        .iter()
                        .map(|(id, t)| {
                            if id.protocol() == "sflow" {
                                t.stats.samples
                            } else {
                                t.stats.records
                            }
                        })
                        .sum(),
                    cpu_s: process_cpu + prog_s,
                    prog_run_s: Some(prog_s),
                    passed: Some(global.passed_datagrams),
                };
                (
                    snap,
                    want_destinations.then(|| {
                        edge_sensor::cli::rows::report_json(&report)["destinations"].clone()
                    }),
                )
            }
            Kind::User | Kind::UserTuned => {
                let path = self.dir.join("report.json");
                let before = fs::metadata(&path).and_then(|m| m.modified()).ok();
                // SAFETY: signalling our own child.
                unsafe { libc::kill(self.pid as i32, libc::SIGUSR1) };
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    let now = fs::metadata(&path).and_then(|m| m.modified()).ok();
                    if now.is_some() && now != before {
                        break;
                    }
                    assert!(Instant::now() < deadline, "no report from collect --user");
                    std::thread::sleep(Duration::from_millis(20));
                }
                let v: serde_json::Value =
                    serde_json::from_slice(&fs::read(&path).unwrap()).expect("collect's report");
                let records: u64 = v["report"]["exporters"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter(|e| e["protocol"] != "sflow")
                            .map(|e| e["records"].as_u64().unwrap_or(0))
                            .sum()
                    })
                    .unwrap_or(0);
                let snap = Snapshot {
                    datagrams: v["datagrams"].as_u64(),
                    samples: v["samples"].as_u64().unwrap_or(0) + records,
                    cpu_s: process_cpu,
                    prog_run_s: None,
                    passed: None,
                };
                let rows = want_destinations.then(|| v["report"]["destinations"].clone());
                (snap, rows)
            }
            Kind::FastNetMon => {
                let m = self.prometheus().expect("FastNetMon's Prometheus endpoint");
                let get = |k: &str| m.get(k).copied().unwrap_or(0.0) as u64;
                let snap = Snapshot {
                    datagrams: Some(get("fastnetmon_ipfix_total_packets")),
                    samples: get("fastnetmon_total_simple_packets_processed"),
                    cpu_s: process_cpu,
                    prog_run_s: None,
                    passed: None,
                };
                (snap, None)
            }
        }
    }

    /// FastNetMon's Prometheus metrics (name -> value; labelled ones with
    /// their labels), read from inside the namespace.
    pub fn prometheus(&self) -> Option<BTreeMap<String, f64>> {
        let port = self.prometheus_port;
        let text = in_ns(&self.ns_path, move || {
            let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
                .ok()?;
            let mut body = String::new();
            s.read_to_string(&mut body).ok()?;
            Some(body)
        })?;
        let metrics: BTreeMap<String, f64> = text
            .lines()
            .filter(|l| l.starts_with("fastnetmon_"))
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_owned(), v.parse().ok()?))
            })
            .collect();
        (!metrics.is_empty()).then_some(metrics)
    }

    /// Resident memory (VmRSS) of the candidate's process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid, "VmRSS:")
    }

    /// XDP: the locked memory of the destination map and of every map of
    /// the program (bytes, `bpftool`).
    pub fn xdp_map_memory(&self) -> (u64, u64, u32) {
        let pin = self.pin.as_ref().expect("an XDP candidate");
        let v = bpftool_json(&[
            "map",
            "show",
            "pinned",
            &pin.join(DST_STATS).to_string_lossy(),
        ]);
        let dst = v["bytes_memlock"].as_u64().unwrap_or(0);
        let max = v["max_entries"].as_u64().unwrap_or(0) as u32;
        let (_, _, prog) = xdp_prog(&self.ns_path, &self.iface);
        let p = bpftool_json(&["prog", "show", "id", &prog.to_string()]);
        let total = p["map_ids"]
            .as_array()
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| id.as_u64())
                    .map(|id| {
                        bpftool_json(&["map", "show", "id", &id.to_string()])["bytes_memlock"]
                            .as_u64()
                            .unwrap_or(0)
                    })
                    .sum()
            })
            .unwrap_or(0);
        (dst, total, max)
    }

    /// XDP: every map of the program as bpftool shows it (name, type,
    /// bytes_key, bytes_value, max_entries, bytes_memlock).
    pub fn xdp_maps(&self) -> Vec<serde_json::Value> {
        let (_, _, prog) = xdp_prog(&self.ns_path, &self.iface);
        let p = bpftool_json(&["prog", "show", "id", &prog.to_string()]);
        p["map_ids"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|id| id.as_u64())
            .map(|id| {
                let m = bpftool_json(&["map", "show", "id", &id.to_string()]);
                serde_json::json!({
                    "name": m["name"], "type": m["type"], "key": m["bytes_key"],
                    "value": m["bytes_value"], "max_entries": m["max_entries"],
                    "memlock": m["bytes_memlock"],
                })
            })
            .collect()
    }

    /// Stops the candidate (SIGTERM, then the whole group is killed).
    pub fn stop(mut self) {
        if let Some(p) = self.process.take() {
            p.stop(libc::SIGTERM);
        }
        if let Some(pin) = &self.pin
            && let Some(parent) = pin.parent()
        {
            let _ = fs::remove_dir_all(parent);
        }
    }
}

impl Drop for Candidate {
    fn drop(&mut self) {
        if let Some(pin) = &self.pin
            && let Some(parent) = pin.parent()
        {
            drop(self.process.take());
            let _ = fs::remove_dir_all(parent);
        }
    }
}

fn write_fastnetmon_config(dir: &Path, networks: &[String], prometheus_port: u16) {
    let d = dir.display();
    fs::write(dir.join("networks_list"), networks.join("\n") + "\n").unwrap();
    fs::write(dir.join("networks_whitelist"), "").unwrap();
    // Counting only: no bans, no BGP, no connection tracking, no exports.
    let conf = format!(
        "logging_level = info\nlogging_local_syslog_logging = off\n\
         logging_remote_syslog_logging = off\ndisable_usage_report = on\n\
         enable_ban = off\nenable_ban_ipv6 = off\n\
         process_incoming_traffic = on\nprocess_outgoing_traffic = on\n\
         networks_list_path = {d}/networks_list\nwhite_list_path = {d}/networks_whitelist\n\
         enable_connection_tracking = off\nban_for_pps = off\nban_for_bandwidth = off\n\
         ban_for_flows = off\nmirror_afpacket = off\nmirror_afxdp = off\npcap = off\n\
         netflow = on\nnetflow_port = {IPFIX_PORT}\nnetflow_host = 0.0.0.0\n\
         netflow_sampling_ratio = 1\n\
         sflow = on\nsflow_port = {SFLOW_PORT}\nsflow_host = 0.0.0.0\n\
         average_calculation_time = 5\nspeed_calculation_delay = 1\n\
         exabgp = off\ngobgp = off\ninfluxdb = off\ngraphite = off\n\
         monitor_local_ip_addresses = off\n\
         cli_stats_file_path = {d}/fastnetmon.dat\n\
         cli_stats_ipv6_file_path = {d}/fastnetmon_ipv6.dat\n\
         enable_api = off\nprometheus = on\nprometheus_port = {prometheus_port}\n\
         prometheus_host = 127.0.0.1\nsort_parameter = packets\nmax_ips_in_list = 7\n\
         notify_script_path = {d}/no-notify-script\n"
    );
    fs::write(dir.join("fastnetmon.conf"), conf).unwrap();
}

/// Runs `f` on a thread inside the namespace at `ns_path`.
fn in_ns<T: Send>(ns_path: &Path, f: impl FnOnce() -> T + Send) -> T {
    let file = fs::File::open(ns_path).expect("open the namespace");
    std::thread::scope(|s| {
        s.spawn(move || {
            use std::os::fd::AsRawFd;
            // SAFETY: a valid netns fd; setns changes only this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("thread in namespace panicked")
    })
}

/// A /proc/net file as the namespace sees it (`thread-self`: the thread
/// that entered it, not the process).
pub fn read_in_ns(ns_path: &Path, file: &str) -> String {
    let rel = file.trim_start_matches("/proc/");
    let path = format!("/proc/thread-self/{rel}");
    in_ns(ns_path, move || {
        fs::read_to_string(path).unwrap_or_default()
    })
}

/// The namespace's UDP counters (`/proc/net/snmp`, `Udp:` lines).
pub fn udp_counters(ns_path: &Path) -> BTreeMap<String, u64> {
    let text = read_in_ns(ns_path, "/proc/net/snmp");
    let lines: Vec<_> = text.lines().filter(|l| l.starts_with("Udp:")).collect();
    if lines.len() < 2 {
        return BTreeMap::new();
    }
    lines[0]
        .split_whitespace()
        .skip(1)
        .zip(lines[1].split_whitespace().skip(1))
        .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
        .collect()
}

/// `ip -n NS args...`.
fn ip_in(ns_path: &Path, args: &[&str]) -> std::process::Output {
    let name = ns_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Command::new("ip")
        .args(["-n", &name])
        .args(args)
        .output()
        .expect("ip (iproute2)")
}

/// The XDP program on `iface`: (run_time_ns, run_cnt, id).
fn xdp_prog(ns_path: &Path, iface: &str) -> (u64, u64, u64) {
    let out = ip_in(ns_path, &["-j", "-d", "link", "show", "dev", iface]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let id = v[0]["xdp"]["prog"]["id"]
        .as_u64()
        .or_else(|| v[0]["xdp"]["attached"][0]["prog"]["id"].as_u64())
        .unwrap_or_else(|| panic!("no XDP program on {iface}: {v}"));
    let p = bpftool_json(&["prog", "show", "id", &id.to_string()]);
    (
        p["run_time_ns"].as_u64().unwrap_or(0),
        p["run_cnt"].as_u64().unwrap_or(0),
        id,
    )
}

fn xdp_prog_stats(ns_path: &Path, iface: &str) -> (u64, u64) {
    let (ns, cnt, _) = xdp_prog(ns_path, iface);
    (ns, cnt)
}

fn bpftool_json(args: &[&str]) -> serde_json::Value {
    let out = Command::new("bpftool")
        .arg("-j")
        .args(args)
        .output()
        .expect("bpftool (scripts/setup installs it)");
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

fn read_global(pin: &Path) -> GlobalStats {
    let map = edge_sensor::xdp::pins::spec(GLOBAL_STATS)
        .expect("GLOBAL_STATS is pinned")
        .open(pin)
        .expect("open GLOBAL_STATS");
    edge_sensor::xdp::read::global(&map).expect("read GLOBAL_STATS")
}

/// user + system CPU seconds of a process (all its threads).
pub fn proc_cpu_s(pid: u32) -> f64 {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces), 1-based 14/15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) as f64 / hz
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// Softirq CPU seconds of the whole machine so far (/proc/stat).
pub fn softirq_s() -> f64 {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu = stat.lines().next().unwrap_or("");
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    cpu.split_whitespace()
        .nth(7)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0) as f64
        / hz
}

/// The nice value of every part of the measurement (sender, candidate,
/// NAPI thread), so that other work on a shared machine disturbs it less.
pub const NICE: i32 = -5;

/// Pins the calling thread to `cpu`.
pub fn pin_thread(cpu: usize) {
    set_affinity(0, cpu);
    set_nice(0, NICE);
}

/// Pins every thread of process `pid` to `cpu`.
pub fn pin_process(pid: u32, cpu: usize) {
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Some(tid) = t.file_name().to_str().and_then(|s| s.parse().ok()) {
                set_affinity(tid, cpu);
                set_nice(tid, NICE);
            }
        }
    }
}

/// Pins the threaded-NAPI kernel threads of `iface` (`napi/IFACE-N`).
pub fn pin_napi_threads(iface: &str, cpu: usize) {
    for pid in napi_threads(iface) {
        set_affinity(pid as i32, cpu);
        set_nice(pid as i32, NICE);
    }
}

/// Pins one thread (or process) `pid` to `cpu`.
pub fn pin_pid(pid: u32, cpu: usize) {
    set_affinity(pid as i32, cpu);
    set_nice(pid as i32, NICE);
}

/// The threaded-NAPI kernel threads of `iface`: where the veth's receive
/// path runs (XDP, or the IP/UDP stack up to the socket).
pub fn napi_threads(iface: &str) -> Vec<u32> {
    // Thread names are cut at 15 bytes.
    let full = format!("napi/{iface}-");
    let prefix = &full[..full.len().min(15)];
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|p| p.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim().starts_with(prefix))
        })
        .collect()
}

/// CPU seconds of the receive path of `iface` so far (its NAPI threads).
pub fn napi_cpu_s(iface: &str) -> f64 {
    napi_threads(iface).into_iter().map(proc_cpu_s).sum()
}

/// Gives the thread `tid` (0: the caller) the nice value `nice`: every
/// part of the measurement gets the same, above other users' work.
pub fn set_nice(tid: i32, nice: i32) {
    // SAFETY: setpriority has no memory preconditions.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) };
}

fn set_affinity(tid: i32, cpu: usize) {
    // SAFETY: cpu_set_t is plain old data; CPU_SET writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(tid, size_of::<libc::cpu_set_t>(), &set);
    }
}
