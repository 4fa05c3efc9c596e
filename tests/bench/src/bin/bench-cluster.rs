//! `bench-cluster OUT_DIR [--quick]`: several sensors on NATS JetStream
//! (issue 17, docs/cluster.md), measured with the end-to-end tests' harness
//! (`edge_sensor_tests::cluster`: real `edge-sensor run` daemons with the
//! userspace collector, a real nats-server, gobgpd as the route reflector,
//! sFlow v5 datagrams to loopback in one namespace). Writes
//! OUT_DIR/cluster.{md,json}.
//!
//! 1. Time to the rule on gobgpd after the first datagram: a 12 kpps flood
//!    against a 10 kpps threshold seen whole by one sensor without
//!    `[cluster]`, and split evenly over 1, 2 and 3 clustered sensors.
//! 2. Failover: the owner SIGKILLed mid-attack, the time gobgpd holds no
//!    copy of the rule, and the copies once it settled.
//! 3. Summary traffic on NATS per sensor (the sensor's own count of
//!    summary bytes, and nats-server's `/varz` for every message and byte
//!    in and out) with N destinations within the summary's fraction of a
//!    threshold, and with 60,000 tracked destinations below it (the
//!    userspace collector's limit; see `main`).
//!
//! Not a test: nothing passes or fails on speed; the figures are what this
//! machine measured. `--quick`: one repetition, small N.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use edge_sensor_tests::{
    cluster::*,
    netns::NetNs,
    sflow::{Datagram, Record, Sample},
};
use serde_json::{Value, json};

/// The summaries' header (magic, version, seq, count).
const HEADER_BYTES: f64 = 15.0;
/// Destinations within the fraction: 1:1000 samples every 250 ms, 4 kpps
/// each against the 10 kpps threshold (40 %; the fraction is 20 %).
const NEAR_RATE: u32 = 1000;
const NEAR_TICK: Duration = Duration::from_millis(250);
/// Samples per datagram (loopback: no MTU to respect).
const PER_DATAGRAM: usize = 40;
/// The measuring window of the summary runs.
const WINDOW: Duration = Duration::from_secs(10);

fn main() {
    let mut out = None;
    let mut quick = false;
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--quick" => quick = true,
            _ if out.is_none() => out = Some(PathBuf::from(a)),
            _ => panic!("usage: bench-cluster OUT_DIR [--quick]"),
        }
    }
    let out = out.unwrap_or_else(|| PathBuf::from("target/bench"));
    std::fs::create_dir_all(&out).expect("create the output directory");
    let reps = if quick { 1 } else { 3 };

    eprintln!("bench-cluster: time to the rule, {reps} repetition(s) each");
    let mut rule = Vec::new();
    for (label, nats, sensors) in [
        ("one sensor seeing it all, no [cluster]", 0, 1),
        ("clustered, 1 sensor", 1, 1),
        ("clustered, split over 2", 1, 2),
        ("clustered, split over 3", 1, 3),
    ] {
        let runs: Vec<(f64, usize)> = (0..reps)
            .map(|_| {
                let r = time_to_rule(nats, sensors);
                eprintln!("  {label}: {:.2} s, at most {} cop(ies)", r.0, r.1);
                r
            })
            .collect();
        rule.push(
            json!({"case": label, "sensors": sensors, "clustered": nats > 0,
            "rule_s": runs.iter().map(|r| r.0).collect::<Vec<_>>(),
            "most_copies": runs.iter().map(|r| r.1).max()}),
        );
    }

    eprintln!("bench-cluster: failover, {reps} repetition(s)");
    let failover: Vec<Value> = (0..reps)
        .map(|_| {
            let f = failover_once();
            eprintln!("  {f}");
            f
        })
        .collect();

    let mut sizes: Vec<(usize, usize)> = vec![(0, 0), (100, 0), (1000, 0)];
    if !quick {
        // Tracked below the fraction: at most what the userspace
        // collector publishes (`MAX_USER_DESTINATIONS`, 65536). Past it the
        // daemon logs a warning per destination per poll (1M: ~935k lines a
        // poll, the control socket stops answering): a finding, not a
        // figure. Idle destinations are in no summary, so the traffic does
        // not depend on them; this row checks that.
        sizes.extend([(10_000, 0), (30_000, 0), (100, 60_000)]);
    }
    eprintln!("bench-cluster: summary traffic at {sizes:?} (near, idle) destinations");
    let summary: Vec<Value> = sizes
        .iter()
        .map(|&(near, idle)| {
            let s = summary_traffic(near, idle);
            eprintln!("  {s}");
            s
        })
        .collect();

    let per_members: Vec<(usize, usize)> = if quick {
        vec![(2, 100)]
    } else {
        vec![(2, 1000), (3, 1000), (3, 10_000)]
    };
    eprintln!("bench-cluster: summary traffic by members at {per_members:?} (members, near each)");
    let by_members: Vec<Value> = per_members
        .iter()
        .map(|&(m, near)| {
            let s = summary_traffic_with(near, 0, m);
            eprintln!("  {s}");
            s
        })
        .collect();

    let report = json!({"rule": rule, "failover": failover, "summary": summary,
        "summary_by_members": by_members,
        "config": {"threshold_pps": THRESHOLD_PPS, "flood_pps": 3 * SHARE_PPS,
            "sampling": SAMPLING, "poll_interval_s": 0.5, "heartbeat_s": 0.2,
            "member_ttl_s": MEMBER_TTL.as_secs_f64()}});
    let md = markdown(&report);
    print!("{md}");
    std::fs::write(out.join("cluster.md"), &md).expect("write cluster.md");
    std::fs::write(
        out.join("cluster.json"),
        serde_json::to_string_pretty(&report).unwrap(),
    )
    .expect("write cluster.json");
}

/// Seconds from the first datagram to the first copy on gobgpd, and the
/// most copies seen in the 2 s after.
fn time_to_rule(nats: usize, sensors: usize) -> (f64, usize) {
    let c = Cluster::start_with(nats, sensors);
    if nats > 0 {
        wait_clustered(&c);
    }
    let mut shares = [0u32; 3];
    for s in shares.iter_mut().take(sensors) {
        *s = 3 * SHARE_PPS / sensors as u32;
    }
    let _exporters = Exporters::start(c.ns, VICTIM, shares, Duration::from_secs(60));
    let started = Instant::now();
    let ruled = wait(Duration::from_secs(30), || c.copies() > 0);
    assert!(ruled, "no rule in 30 s:\n{}", c.logs());
    let after = started.elapsed().as_secs_f64();
    let (_, most) = copies_of_over(&c, VICTIM, Duration::from_secs(2));
    (after, most)
}

/// The owner SIGKILLed 2 s after its rule came: how long gobgpd held no
/// copy, when the heir's came, and the copies over the 3 s after.
fn failover_once() -> Value {
    let mut c = Cluster::start(1);
    wait_clustered(&c);
    let owner = owner_of(&NAMES);
    let _exporters = Exporters::start(c.ns, VICTIM, [SHARE_PPS; 3], Duration::from_secs(90));
    assert!(
        wait(Duration::from_secs(30), || c.copies() > 0),
        "no rule:\n{}",
        c.logs()
    );
    std::thread::sleep(Duration::from_secs(2));
    c.kill(owner);
    let killed = Instant::now();
    let mut zero_since: Option<Instant> = None;
    let mut longest = Duration::ZERO;
    let mut back = None;
    while killed.elapsed() < Duration::from_secs(20) {
        let n = c.copies();
        match (n, zero_since) {
            (0, None) => zero_since = Some(Instant::now()),
            (0, Some(_)) => {}
            (_, Some(z)) => {
                longest = longest.max(z.elapsed());
                zero_since = None;
                back = Some(killed.elapsed());
            }
            (_, None) => {}
        }
        if back.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let settled = copies_of_over(&c, VICTIM, Duration::from_secs(3));
    json!({"owner": NAMES[owner], "no_copy_s": longest.as_secs_f64(),
        "back_after_kill_s": back.map(|b| b.as_secs_f64()),
        "copies_after": [settled.0, settled.1]})
}

/// One sensor (a cluster of one: what it publishes and reads per poll
/// does not depend on the others' count but for the reads, which scale
/// with the members), fed `near` destinations within the fraction and
/// `idle` ones sampled once (tracked, far below it); its summary bytes
/// and nats-server's traffic over [`WINDOW`].
fn summary_traffic(near: usize, idle: usize) -> Value {
    summary_traffic_with(near, idle, 1)
}

/// As [`summary_traffic`] with `members` clustered sensors, each fed
/// `near` destinations of its own (10.i.0.0 and up): sensor 0's summary
/// figures, nats-server's traffic in all.
fn summary_traffic_with(near: usize, idle: usize, members: usize) -> Value {
    // 10.0.0.0/8 for the destinations: the harness's 198.18.0.0/15 has
    // too few for a million; room in the counters for them all.
    let c = Cluster::start_tuned(1, members, |config| {
        config.replace(
            "own_networks = [\"198.18.0.0/15\"]",
            "own_networks = [\"198.18.0.0/15\", \"10.0.0.0/8\"]",
        ) + "\n[xdp]\ndestinations = 2097152\n"
    });
    wait_clustered(&c);
    let sprays: Vec<Spray> = (0..members)
        .map(|i| Spray::start(c.ns, i, near, if i == 0 { idle } else { 0 }))
        .collect();
    let spray = &sprays[0];
    // Everything tracked and every near destination in the summary (or
    // what the sensor reaches in 120 s, reported as it is).
    let ready = wait(Duration::from_secs(120), || {
        let s = c.ask(0, &["status"]);
        let in_summary = s["cluster"]["stats"]["network_destinations"]
            .as_u64()
            .unwrap_or(0) as usize;
        spray.idle_sent() >= idle as u64
            && in_summary * 100 >= near * members * 95
            && tracked(&c) >= (near + idle) * 95 / 100
    });
    std::thread::sleep(Duration::from_secs(2));
    let (s0, v0, t0) = (c.ask(0, &["status"]), varz(c.ns), Instant::now());
    std::thread::sleep(WINDOW);
    let (s1, v1, t1) = (c.ask(0, &["status"]), varz(c.ns), Instant::now());
    let secs = (t1 - t0).as_secs_f64();
    let stat = |s: &Value, k: &str| s["cluster"]["stats"][k].as_f64().unwrap_or(0.0);
    let d = |k: &str| stat(&s1, k) - stat(&s0, k);
    let dv = |k: &str| v1[k].as_f64().unwrap_or(0.0) - v0[k].as_f64().unwrap_or(0.0);
    let steps = d("steps");
    let per_summary = d("summary_bytes_published") / steps.max(1.0);
    let entries = stat(&s1, "network_destinations");
    let result = json!({
        "members": members, "near": near, "idle": idle, "ready": ready,
        "tracked": tracked(&c),
        "entries": entries,
        "steps_per_s": steps / secs,
        "skipped_polls": d("skipped_polls"),
        "failed_steps": d("failed_steps"),
        "summary_bytes": per_summary,
        "bytes_per_entry": if entries > 0.0 { Some((per_summary - HEADER_BYTES) / entries) } else { None },
        "summary_bytes_per_s": d("summary_bytes_published") / secs,
        "nats_in_msgs_per_s": dv("in_msgs") / secs,
        "nats_in_bytes_per_s": dv("in_bytes") / secs,
        "nats_out_msgs_per_s": dv("out_msgs") / secs,
        "nats_out_bytes_per_s": dv("out_bytes") / secs,
        "sent_samples_per_s": sprays.iter().map(Spray::rate).sum::<f64>(),
    });
    drop(sprays);
    result
}

/// Destinations the sensor tracks (`/api/v1/view`'s `tracked`).
fn tracked(c: &Cluster) -> usize {
    http_json(c.ns, 9810, "/api/v1/view")["tracked"]
        .as_u64()
        .unwrap_or(0) as usize
}

/// nats-server n0's `/varz`.
fn varz(ns: &NetNs) -> Value {
    http_json(ns, 8222, "/varz")
}

fn http_json(ns: &NetNs, port: u16, path: &str) -> Value {
    let text = ns.run(|| {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return String::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        );
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    });
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    // Chunked or not: the JSON object is from the first '{' to the last '}'.
    match (body.find('{'), body.rfind('}')) {
        (Some(a), Some(b)) if b > a => serde_json::from_str(&body[a..=b]).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// The summary runs' exporter: first `idle` destinations (10.128.0.0 and
/// up) one 1:1 sample each, then every [`NEAR_TICK`] one 1:[`NEAR_RATE`]
/// sample for each of `near` destinations (10.0.0.0 and up), to sensor 0,
/// until dropped (bounded: 10 minutes at most).
struct Spray {
    stop: Arc<AtomicBool>,
    idle_sent: Arc<AtomicU64>,
    samples: Arc<AtomicU64>,
    started: Instant,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Spray {
    /// To sensor `sensor`, its near destinations in 10.`sensor`.0.0/16.
    fn start(ns: &NetNs, sensor: usize, near: usize, idle: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let idle_sent = Arc::new(AtomicU64::new(0));
        let samples = Arc::new(AtomicU64::new(0));
        let file = std::fs::File::open(ns.path()).expect("open the namespace");
        let (flag, idle_count, sent) = (stop.clone(), idle_sent.clone(), samples.clone());
        let thread = std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            // SAFETY: a valid netns fd; setns changes only this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
            let to = SocketAddr::from(([127, 0, 0, 1], sflow_port(sensor)));
            let mut seq = 0u32;
            let mut send = |dsts: &mut dyn Iterator<Item = u32>, rate: u32| {
                loop {
                    let batch: Vec<Sample> = dsts
                        .take(PER_DATAGRAM)
                        .map(|d| {
                            Sample::flow(
                                rate,
                                vec![Record::Ipv4 {
                                    length: 500,
                                    protocol: 17,
                                    dst: Ipv4Addr::from(d).octets(),
                                    tcp_flags: 0,
                                }],
                            )
                        })
                        .collect();
                    if batch.is_empty() {
                        return;
                    }
                    seq += 1;
                    let n = batch.len() as u64;
                    let _ = sock.send_to(&Datagram::new(seq, batch).encode(), to);
                    sent.fetch_add(n, Ordering::Relaxed);
                }
            };
            let limit = Instant::now() + Duration::from_secs(600);
            let idle_base = u32::from(Ipv4Addr::new(10, 128, 0, 0));
            // The idle ones in slices of 10k, 50 ms apart: 200k samples/s
            // at most, so the collector keeps up.
            let mut done = 0usize;
            while done < idle && !flag.load(Ordering::Relaxed) && Instant::now() < limit {
                let upto = (done + 10_000).min(idle);
                send(&mut (done as u32..upto as u32).map(|i| idle_base + i), 1);
                done = upto;
                idle_count.store(done as u64, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
            let near_base = u32::from(Ipv4Addr::new(10, sensor as u8, 0, 0));
            let mut next = Instant::now();
            while !flag.load(Ordering::Relaxed) && Instant::now() < limit {
                send(&mut (0..near as u32).map(|i| near_base + i), NEAR_RATE);
                next += NEAR_TICK;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        });
        Self {
            stop,
            idle_sent,
            samples,
            started: Instant::now(),
            thread: Some(thread),
        }
    }

    fn idle_sent(&self) -> u64 {
        self.idle_sent.load(Ordering::Relaxed)
    }

    /// Samples sent per second since the start.
    fn rate(&self) -> f64 {
        self.samples.load(Ordering::Relaxed) as f64 / self.started.elapsed().as_secs_f64()
    }
}

impl Drop for Spray {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn markdown(r: &Value) -> String {
    let f = |v: &Value| v.as_f64().map_or("-".into(), |x| format!("{x:.2}"));
    let mut md = String::from("## Several sensors (issue 17)\n\n");
    let c = &r["config"];
    md += &format!(
        "The e2e harness (tests/src/cluster.rs): userspace collectors, sFlow 1:{} to loopback, \
         threshold {} pps, polls {} s, heartbeat {} s, `member_ttl` {} s, one nats-server, \
         gobgpd as the route reflector; times polled every ~100-150 ms (gobgp CLI).\n\n",
        c["sampling"],
        c["threshold_pps"],
        c["poll_interval_s"],
        c["heartbeat_s"],
        c["member_ttl_s"]
    );
    md += &format!(
        "### Time to the rule on gobgpd after the first datagram ({} pps flood)\n\n\
         | case | runs (s) | most copies |\n|---|---|---|\n",
        c["flood_pps"]
    );
    for row in r["rule"].as_array().into_iter().flatten() {
        let runs: Vec<String> = row["rule_s"]
            .as_array()
            .into_iter()
            .flatten()
            .map(f)
            .collect();
        md += &format!(
            "| {} | {} | {} |\n",
            row["case"].as_str().unwrap_or("?"),
            runs.join(", "),
            row["most_copies"]
        );
    }
    md += "\n### Failover: the owner SIGKILLed mid-attack\n\n\
           | owner | no copy on gobgpd (s) | heir's copy after the kill (s) | copies after (min, max over 3 s) |\n|---|---|---|---|\n";
    for row in r["failover"].as_array().into_iter().flatten() {
        md += &format!(
            "| {} | {} | {} | {} |\n",
            row["owner"].as_str().unwrap_or("?"),
            f(&row["no_copy_s"]),
            f(&row["back_after_kill_s"]),
            row["copies_after"]
        );
    }
    md += "\n### Summary traffic per sensor\n\n\
           One clustered sensor; `near`: destinations at 40 % of the threshold (in the summary), \
           `idle`: tracked destinations sampled once (not in it). NATS: nats-server's `/varz` \
           over 10 s (the sensor's publishes, heartbeats, key-value and JetStream traffic in; \
           what it reads back out).\n\n\
           | near | idle | tracked | entries | steps/s | summary (B) | B/entry | summary B/s | NATS in msg/s | NATS in B/s | NATS out msg/s | NATS out B/s | skipped polls |\n\
           |---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    for row in r["summary"].as_array().into_iter().flatten() {
        md += &format!(
            "| {} | {} | {} | {} | {} | {:.0} | {} | {:.0} | {} | {:.0} | {} | {:.0} | {} |\n",
            row["near"],
            row["idle"],
            row["tracked"],
            row["entries"],
            f(&row["steps_per_s"]),
            row["summary_bytes"].as_f64().unwrap_or(0.0),
            f(&row["bytes_per_entry"]),
            row["summary_bytes_per_s"].as_f64().unwrap_or(0.0),
            f(&row["nats_in_msgs_per_s"]),
            row["nats_in_bytes_per_s"].as_f64().unwrap_or(0.0),
            f(&row["nats_out_msgs_per_s"]),
            row["nats_out_bytes_per_s"].as_f64().unwrap_or(0.0),
            row["skipped_polls"]
        );
    }
    md += "\n### Summary traffic by members\n\n\
           Each of the clustered sensors fed `near` destinations of its own at 40 % of the \
           threshold; sensor s1's summary, nats-server's traffic in all (per member: divided \
           by the members).\n\n\
           | members | near each | entries in the network view | summary (B) | NATS in B/s | NATS out B/s | out B/s per member | out per member / published |\n\
           |---|---|---|---|---|---|---|---|\n";
    for row in r["summary_by_members"].as_array().into_iter().flatten() {
        let m = row["members"].as_f64().unwrap_or(1.0);
        let out = row["nats_out_bytes_per_s"].as_f64().unwrap_or(0.0);
        let published = row["summary_bytes_per_s"].as_f64().unwrap_or(0.0);
        md += &format!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} |\n",
            row["members"],
            row["near"],
            row["entries"],
            row["summary_bytes"].as_f64().unwrap_or(0.0),
            row["nats_in_bytes_per_s"].as_f64().unwrap_or(0.0),
            out,
            out / m,
            if published > 0.0 {
                out / m / published
            } else {
                0.0
            },
        );
    }
    md
}
