//! `bench-rib OUT_DIR [--quick | --v4 N --v6 N] [--queries N]`: a full
//! table ingested by the edge-sensor daemon and by BIRD 2, side by side in
//! one run, from the same feeder (issue 15). Writes `OUT_DIR/rib.{md,json}`.
//!
//! One network namespace. The feeder is a BIRD 2 (127.0.0.1) holding the
//! synthetic table (`table.rs`: ~1M IPv4 and ~250k IPv6 prefixes, two paths
//! each) in static protocols, exported with Add-Path by one initially
//! disabled BGP protocol per receiver (which listens: passive). Each receiver in turn,
//! alone on the machine besides the feeder: it starts and idles (its
//! baseline RSS), the feeder's protocol for it is enabled (t = 0), and the
//! receiver is polled every 50 ms over its control socket until it holds
//! every path (and, for edge-sensor, both End-of-RIB markers): time to
//! Established and to the full table, its CPU seconds meanwhile, peak RSS
//! (VmHWM) and steady RSS (VmRSS 5 s after), bytes per path ((steady -
//! baseline) / paths). Then longest-match queries for the same random
//! addresses through each one's control socket from this process (one
//! connection per query for edge-sensor, whose socket answers one request
//! per connection; one persistent connection for BIRD), their answers
//! compared. Receivers: `edge-sensor run --mode userspace` on `lo` (the
//! BGP speaker is the same in XDP mode) with one peer, add_path =
//! "receive"; BIRD 2 with `add paths rx`, `import all` into its plain
//! tables. Nothing here passes or fails on speed.

mod table;

use std::{
    io::{BufRead, BufReader, Write},
    net::IpAddr,
    os::unix::{net::UnixStream, process::CommandExt},
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use edge_sensor::{
    bgp::{MatchMode, RibQuery},
    control::{self, Request, Response},
};
use edge_sensor_bench::proc_cpu_s;
use edge_sensor_tests::{Guarded, netns::NetNs, unique_name};
use serde_json::{Value, json};

const POLL: Duration = Duration::from_millis(50);

struct Args {
    out: PathBuf,
    v4: usize,
    v6: usize,
    queries: usize,
}

fn args() -> Args {
    let mut it = std::env::args().skip(1);
    let mut out = None;
    let (mut v4, mut v6, mut queries) = (1_000_000, 250_000, 20_000);
    let num = |v: Option<String>| -> usize {
        v.and_then(|v| v.replace('_', "").parse().ok())
            .expect("a number")
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => (v4, v6, queries) = (100_000, 25_000, 5_000),
            "--v4" => v4 = num(it.next()),
            "--v6" => v6 = num(it.next()),
            "--queries" => queries = num(it.next()),
            _ if out.is_none() => out = Some(PathBuf::from(a)),
            _ => panic!("usage: bench-rib OUT_DIR [--quick | --v4 N --v6 N] [--queries N]"),
        }
    }
    Args {
        out: out.unwrap_or_else(|| PathBuf::from("target/bench")),
        v4,
        v6,
        queries,
    }
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(POLL);
    }
}

// ---- BIRD's control socket (birdc's protocol, spoken directly) ----

struct BirdCtl {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl BirdCtl {
    fn connect(path: &Path) -> Option<Self> {
        let s = UnixStream::connect(path).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(120))).ok()?;
        let mut ctl = Self {
            reader: BufReader::new(s.try_clone().ok()?),
            writer: s,
        };
        ctl.reply(); // 0001 BIRD x.y ready.
        Some(ctl)
    }

    /// The reply's lines as `NNNN text`: on the wire each is `NNNN-text`,
    /// `NNNN text` (the last) or ` text` (continuing the previous code).
    fn reply(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        let mut code = String::from("0000");
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).unwrap_or(0) == 0 {
                return lines;
            }
            let line = line.trim_end_matches('\n');
            let b = line.as_bytes();
            if b.len() >= 5 && b[..4].iter().all(u8::is_ascii_digit) {
                let last = b[4] == b' ';
                code = line[..4].to_string();
                lines.push(format!("{code} {}", &line[5..]));
                if last {
                    return lines;
                }
            } else {
                lines.push(format!("{code} {}", line.strip_prefix(' ').unwrap_or(line)));
            }
        }
    }

    fn ask(&mut self, command: &str) -> Vec<String> {
        self.writer
            .write_all(format!("{command}\n").as_bytes())
            .expect("write to BIRD's socket");
        self.reply()
    }
}

/// A BIRD in the namespace, with its control socket.
struct Bird {
    child: Guarded,
    ctl: PathBuf,
}

fn start_bird(ns: &NetNs, dir: &Path, name: &str, config: &str) -> Bird {
    let conf = dir.join(format!("{name}.conf"));
    std::fs::write(&conf, config).unwrap();
    let ctl = dir.join(format!("{name}.ctl"));
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    let child = ns
        .command("bird")
        .arg("-f")
        .arg("-c")
        .arg(&conf)
        .arg("-s")
        .arg(&ctl)
        .stdout(Stdio::null())
        .stderr(log)
        .process_group(0)
        .spawn()
        .map(Guarded)
        .expect("start bird");
    let bird = Bird { child, ctl };
    wait_for(
        &format!("BIRD {name} to answer"),
        Duration::from_secs(600),
        || BirdCtl::connect(&bird.ctl),
    );
    bird
}

impl Bird {
    fn pid(&self) -> u32 {
        self.child.0.id()
    }

    fn ctl(&self) -> BirdCtl {
        BirdCtl::connect(&self.ctl).expect("BIRD's control socket")
    }
}

/// Routes imported by BGP protocol `proto` (both channels), and whether it
/// is Established (`show protocols all`).
fn bird_imported(ctl: &mut BirdCtl, proto: &str) -> (u64, bool) {
    let lines = ctl.ask(&format!("show protocols all {proto}"));
    let established = lines.iter().any(|l| l.contains("Established"));
    let imported = lines
        .iter()
        .filter_map(|l| {
            let l = l.trim_start_matches(|c: char| c.is_ascii_digit()).trim();
            let rest = l.strip_prefix("Routes:")?;
            rest.split(',')
                .find(|p| p.contains("imported"))?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    (imported, established)
}

/// Routes in the feeder's tables (`show route count`).
fn bird_route_count(ctl: &mut BirdCtl) -> u64 {
    ctl.ask("show route count")
        .iter()
        .filter_map(|l| {
            // "0014 2500000 of 2500000 routes for 1250000 networks in table master4"
            let l = l.get(5..)?;
            if !l.contains(" in table ") {
                return None;
            }
            l.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
}

// ---- edge-sensor's control socket ----

fn ask(socket: &Path, request: &Request) -> Option<Value> {
    match control::request(socket, request, Duration::from_secs(60)).ok()? {
        Response::Ok { body } => Some(body),
        Response::Error { message } => panic!("edge-sensor refused: {message}"),
    }
}

/// (paths, established, End-of-RIB families) of the peer `feeder`.
fn sensor_rib(socket: &Path) -> Option<(u64, bool, usize)> {
    let body = ask(socket, &Request::Bgp)?;
    let peer = &body["peers"][0];
    Some((
        peer["rib_in"]["paths"].as_u64().unwrap_or(0),
        peer["state"]
            .as_str()
            .unwrap_or("")
            .eq_ignore_ascii_case("established"),
        peer["rib_in"]["end_of_rib"].as_array().map_or(0, Vec::len),
    ))
}

fn sensor_config(dir: &Path) -> PathBuf {
    let path = dir.join("sensor.toml");
    std::fs::write(
        &path,
        r#"[bgp]
router_id = "127.0.0.2"
local_asn = 65001
announce_within = ["192.0.2.0/24", "2001:db8::/32"]
[[bgp.peers]]
name = "feeder"
address = "127.0.0.1"
local_address = "127.0.0.2"
peer_asn = 65000
passive = true
hold_time = 240
families = ["ipv4-unicast", "ipv6-unicast"]
add_path = "receive"
next_hop_v4 = "192.0.2.254"
next_hop_v6 = "2001:db8::fe"
"#,
    )
    .unwrap();
    path
}

// ---- one receiver's run ----

#[derive(Default)]
struct Ingest {
    baseline_kib: u64,
    established_s: f64,
    full_s: f64,
    cpu_s: f64,
    peak_kib: u64,
    steady_kib: u64,
    paths: u64,
}

impl Ingest {
    fn bytes_per_path(&self) -> f64 {
        (self.steady_kib.saturating_sub(self.baseline_kib) * 1024) as f64 / self.paths.max(1) as f64
    }

    fn json(&self) -> Value {
        json!({
            "baseline_rss_kib": self.baseline_kib,
            "established_s": self.established_s,
            "full_table_s": self.full_s,
            "ingest_s": self.full_s - self.established_s,
            "cpu_s": self.cpu_s,
            "peak_rss_kib": self.peak_kib,
            "steady_rss_kib": self.steady_kib,
            "paths": self.paths,
            "bytes_per_path": self.bytes_per_path(),
        })
    }
}

/// Enables the feeder's protocol `proto` and polls `state` (paths,
/// established, done) until done.
fn ingest(
    feeder: &mut BirdCtl,
    proto: &str,
    pid: u32,
    expected: u64,
    mut state: impl FnMut() -> (u64, bool, bool),
) -> Ingest {
    std::thread::sleep(Duration::from_secs(2));
    let mut r = Ingest {
        baseline_kib: status_kib(pid, "VmRSS:"),
        paths: expected,
        ..Ingest::default()
    };
    let cpu0 = proc_cpu_s(pid);
    let t0 = Instant::now();
    let reply = feeder.ask(&format!("enable {proto}"));
    eprintln!("bench-rib: enable {proto}: {}", reply.join(" | "));
    let mut last = (0, Instant::now());
    loop {
        let (paths, est, done) = state();
        if est && r.established_s == 0.0 {
            r.established_s = t0.elapsed().as_secs_f64();
        }
        if done {
            r.full_s = t0.elapsed().as_secs_f64();
            break;
        }
        if paths != last.0 {
            last = (paths, Instant::now());
        }
        assert!(
            last.1.elapsed() < Duration::from_secs(120),
            "{proto}: stuck at {paths} of {expected} paths"
        );
        std::thread::sleep(POLL);
    }
    r.cpu_s = proc_cpu_s(pid) - cpu0;
    std::thread::sleep(Duration::from_secs(5));
    r.peak_kib = status_kib(pid, "VmHWM:");
    r.steady_kib = status_kib(pid, "VmRSS:");
    eprintln!(
        "bench-rib: {proto}: established {:.2} s, full table {:.2} s, {:.1} CPU-s, RSS {} -> {} KiB (peak {})",
        r.established_s, r.full_s, r.cpu_s, r.baseline_kib, r.steady_kib, r.peak_kib
    );
    r
}

struct Queries {
    per_s: f64,
    n: usize,
    /// The longest prefix matched, per query (None: no route).
    answers: Vec<Option<String>>,
    /// Paths in the answers.
    paths: usize,
}

fn sensor_queries(socket: &Path, addrs: &[IpAddr]) -> Queries {
    let t = Instant::now();
    let mut answers = Vec::with_capacity(addrs.len());
    let mut paths = 0;
    for a in addrs {
        let q = RibQuery {
            prefix: Some((*a).into()),
            mode: MatchMode::Longest,
            ..RibQuery::default()
        };
        let body = ask(socket, &Request::Rib { query: q }).expect("an answer");
        let routes = body["routes"].as_array().cloned().unwrap_or_default();
        paths += routes.len();
        answers.push(
            routes
                .first()
                .and_then(|r| r["prefix"].as_str().map(str::to_owned)),
        );
    }
    Queries {
        per_s: addrs.len() as f64 / t.elapsed().as_secs_f64(),
        n: addrs.len(),
        answers,
        paths,
    }
}

fn bird_queries(ctl: &mut BirdCtl, addrs: &[IpAddr]) -> Queries {
    let t = Instant::now();
    let mut answers = Vec::with_capacity(addrs.len());
    let mut paths = 0;
    for a in addrs {
        let lines = ctl.ask(&format!("show route for {a}"));
        if answers.is_empty() {
            eprintln!("bench-rib: BIRD: show route for {a}: {lines:?}");
        }
        // "1007 1.2.3.0/24 unreachable [feeder ...] * (100) [AS64512i]", then
        // one "1007  unreachable [...]" (or " ..." continuation) per further path.
        let mut first = None;
        for l in &lines {
            let Some(body) = l.strip_prefix("1007 ") else {
                continue;
            };
            if body.starts_with("Table") {
                continue;
            }
            paths += 1;
            if first.is_none() && !body.starts_with(' ') {
                first = body.split_whitespace().next().map(str::to_owned);
            }
        }
        answers.push(first);
    }
    Queries {
        per_s: addrs.len() as f64 / t.elapsed().as_secs_f64(),
        n: addrs.len(),
        answers,
        paths,
    }
}

fn main() {
    let args = args();
    edge_sensor_tests::require_root();
    edge_sensor_tests::require_tool("bird");
    let sensor_bin = edge_sensor_tests::sensor_bin();
    std::fs::create_dir_all(&args.out).unwrap();
    let load_before = load_average();
    let started = Instant::now();

    let t = Instant::now();
    let table = table::generate(args.v4, args.v6, 0x5eed_0015);
    let expected = 2 * table.routes.len() as u64;
    let config = table::feeder_config(
        &table,
        &[
            ("to_es", "127.0.0.2", 65001),
            ("to_bird", "127.0.0.3", 65002),
        ],
    );
    eprintln!(
        "bench-rib: {} IPv4 + {} IPv6 prefixes, {} paths, {} attribute sets; feeder config {} MB ({:.1} s)",
        table.v4,
        table.v6,
        expected,
        table.sets.len(),
        config.len() >> 20,
        t.elapsed().as_secs_f64()
    );
    let addrs = table::query_addresses(&table, args.queries, 0x0a11_0015);

    let ns = NetNs::new("esrib");
    ns.ip(&["addr", "add", "127.0.0.2/8", "dev", "lo"]);
    ns.ip(&["addr", "add", "127.0.0.3/8", "dev", "lo"]);
    let dir = std::env::temp_dir().join(unique_name("esrib"));
    std::fs::create_dir_all(&dir).unwrap();

    let t = Instant::now();
    let feeder = start_bird(&ns, &dir, "feeder", &config);
    drop(config);
    let mut fctl = feeder.ctl();
    wait_for("the feeder's table", Duration::from_secs(600), || {
        (bird_route_count(&mut fctl) >= expected).then_some(())
    });
    let feeder_load_s = t.elapsed().as_secs_f64();
    let feeder_rss = status_kib(feeder.pid(), "VmRSS:");
    eprintln!("bench-rib: feeder loaded in {feeder_load_s:.1} s, RSS {feeder_rss} KiB");

    // ---- edge-sensor ----
    let socket = dir.join("sensor.sock");
    let log = std::fs::File::create(dir.join("sensor.log")).unwrap();
    let sensor = ns
        .command(&sensor_bin)
        .args(["run", "--iface", "lo", "--mode", "userspace", "--config"])
        .arg(sensor_config(&dir))
        .arg("--pin-path")
        .arg(dir.join("pin"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--control-socket")
        .arg(&socket)
        .stdout(Stdio::null())
        .stderr(log)
        .process_group(0)
        .spawn()
        .map(Guarded)
        .expect("start edge-sensor");
    wait_for(
        "edge-sensor's control socket",
        Duration::from_secs(60),
        || sensor_rib(&socket),
    );
    let pid = sensor.0.id();
    let ours = ingest(&mut fctl, "to_es", pid, expected, || {
        let (paths, est, eor) = sensor_rib(&socket).unwrap_or_default();
        (paths, est, paths >= expected && eor == 2)
    });
    let (_, _, eor) = sensor_rib(&socket).unwrap_or_default();
    let load_ours = load_average();
    let ours_q = sensor_queries(&socket, &addrs);
    eprintln!("bench-rib: edge-sensor: {:.0} queries/s", ours_q.per_s);
    sensor.stop(libc::SIGTERM);
    fctl.ask("disable to_es");

    // ---- BIRD ----
    let receiver = start_bird(&ns, &dir, "receiver", &table::receiver_config());
    let mut rctl = receiver.ctl();
    let bird = ingest(&mut fctl, "to_bird", receiver.pid(), expected, || {
        let (paths, est) = bird_imported(&mut rctl, "feeder");
        (paths, est, paths >= expected)
    });
    let load_bird = load_average();
    let bird_q = bird_queries(&mut rctl, &addrs);
    eprintln!("bench-rib: BIRD: {:.0} queries/s", bird_q.per_s);
    let receiver_version = rctl.ask("show status").first().cloned().unwrap_or_default();
    drop(receiver);
    drop(feeder);
    let _ = std::fs::remove_dir_all(&dir);

    let agree = ours_q
        .answers
        .iter()
        .zip(&bird_q.answers)
        .filter(|(a, b)| a == b)
        .count();
    let hits = ours_q.answers.iter().filter(|a| a.is_some()).count();

    let machine = json!({
        "cpu": std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default().lines()
            .find(|l| l.starts_with("model name")).and_then(|l| l.split_once(':'))
            .map(|(_, m)| m.trim().to_owned()).unwrap_or_default(),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "bird": receiver_version,
        "load_average": {"before": load_before, "after_edge_sensor": load_ours, "after_bird": load_bird, "end": load_average()},
    });
    let report = json!({
        "table": {"ipv4_prefixes": table.v4, "ipv6_prefixes": table.v6, "paths": expected,
                  "attribute_sets": table.sets.len(), "feeder_load_s": feeder_load_s,
                  "feeder_rss_kib": feeder_rss},
        "edge_sensor": {"ingest": ours.json(), "end_of_rib_families": eor,
                        "queries": {"n": ours_q.n, "per_s": ours_q.per_s, "paths": ours_q.paths}},
        "bird": {"ingest": bird.json(),
                 "queries": {"n": bird_q.n, "per_s": bird_q.per_s, "paths": bird_q.paths}},
        "queries_same_answer": agree,
        "queries_matched": hits,
        "machine": machine,
        "elapsed_s": started.elapsed().as_secs_f64(),
    });
    std::fs::write(
        args.out.join("rib.json"),
        serde_json::to_string_pretty(&report).unwrap(),
    )
    .unwrap();
    let md = markdown(&report);
    print!("{md}");
    std::fs::write(args.out.join("rib.md"), md).unwrap();
}

fn markdown(r: &Value) -> String {
    use std::fmt::Write as _;
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    let (o, b) = (&r["edge_sensor"], &r["bird"]);
    let mib = |v: &Value| f(v) / 1024.0;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## Full table: edge-sensor vs BIRD 2\n\n{} IPv4 + {} IPv6 prefixes, two paths each with Add-Path: {} paths, {} attribute sets; fed by a BIRD 2 feeder over loopback, each receiver alone in turn. Load average before {}, after ours {}, after BIRD's {}.\n",
        r["table"]["ipv4_prefixes"],
        r["table"]["ipv6_prefixes"],
        r["table"]["paths"],
        r["table"]["attribute_sets"],
        r["machine"]["load_average"]["before"]
            .as_str()
            .unwrap_or(""),
        r["machine"]["load_average"]["after_edge_sensor"]
            .as_str()
            .unwrap_or(""),
        r["machine"]["load_average"]["after_bird"]
            .as_str()
            .unwrap_or(""),
    );
    md.push_str("| | edge-sensor | BIRD 2 | ratio (ours / BIRD) |\n|---|---:|---:|---:|\n");
    let mut row = |name: &str, a: f64, bb: f64, unit: &str| {
        let _ = writeln!(
            md,
            "| {name} | {a:.2}{unit} | {bb:.2}{unit} | {:.2} |",
            a / bb
        );
    };
    row(
        "Established to full table, s",
        f(&o["ingest"]["ingest_s"]),
        f(&b["ingest"]["ingest_s"]),
        "",
    );
    row(
        "CPU while ingesting, s",
        f(&o["ingest"]["cpu_s"]),
        f(&b["ingest"]["cpu_s"]),
        "",
    );
    row(
        "peak RSS (VmHWM), MiB",
        mib(&o["ingest"]["peak_rss_kib"]),
        mib(&b["ingest"]["peak_rss_kib"]),
        "",
    );
    row(
        "steady RSS, MiB",
        mib(&o["ingest"]["steady_rss_kib"]),
        mib(&b["ingest"]["steady_rss_kib"]),
        "",
    );
    row(
        "RSS before the session, MiB",
        mib(&o["ingest"]["baseline_rss_kib"]),
        mib(&b["ingest"]["baseline_rss_kib"]),
        "",
    );
    row(
        "bytes per path ((steady - before) / paths)",
        f(&o["ingest"]["bytes_per_path"]),
        f(&b["ingest"]["bytes_per_path"]),
        "",
    );
    row(
        "longest-match queries/s over the control socket",
        f(&o["queries"]["per_s"]),
        f(&b["queries"]["per_s"]),
        "",
    );
    let _ = writeln!(
        md,
        "\n{} random addresses (four in five inside a table prefix, one in five any IPv4 address); {} matched a route; both answered the same longest prefix for {} of them.",
        o["queries"]["n"], r["queries_matched"], r["queries_same_answer"]
    );
    md
}
