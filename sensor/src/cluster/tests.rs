//! Against a real `nats-server -js` (scripts/setup installs it), started by
//! the test on a free port with a temporary store, killed on drop. Three
//! in-process sensors each see 40 % of a flood's threshold; the sum is over.

use std::{
    collections::BTreeMap,
    net::{IpAddr, TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use edge_sensor_common::Class;

use super::*;
use crate::detect::meter::{Table, ZERO};

struct NatsServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl NatsServer {
    /// A JetStream server on a free port; fails loudly without
    /// `nats-server` (scripts/setup installs it). `Option` for the callers'
    /// sake: always `Some`.
    fn start() -> Option<Self> {
        Self::start_with("")
    }

    /// With `config` as the server's configuration file (`-c`).
    fn start_with(config: &str) -> Option<Self> {
        assert!(
            Command::new("nats-server")
                .arg("--version")
                .output()
                .is_ok(),
            "nats-server is not installed: run scripts/setup (Debian package nats-server)"
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("nats.conf");
        std::fs::write(&conf, config).unwrap();
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(&conf)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server");
        let s = Self {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen in 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(s)
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cluster_cfg(url: &str, name: &str) -> ClusterConfig {
    ClusterConfig {
        servers: vec![url.to_string()],
        name: name.into(),
        fraction: 0.2,
        heartbeat: Duration::from_millis(200),
        member_ttl: Duration::from_millis(1000),
        credentials_file: None,
        tls_ca_file: None,
        tls_cert_file: None,
        tls_key_file: None,
        replicas: 1,
    }
}

/// Polls every 200 ms, 100 kpps per host.
const DETECT: &str = r#"own_networks = ["198.18.0.0/15"]
poll_interval = "200ms"
smoothing = "200ms"
[thresholds]
all = { pps = 100000 }
"#;

fn detect_cfg() -> DetectConfig {
    DetectConfig::from_toml(DETECT).unwrap()
}

const VICTIM: &str = "198.18.202.10";

fn share(pps: f64) -> Vec<(IpAddr, Table)> {
    let mut t = ZERO;
    t[0] = [pps, pps * 8.0 * 500.0];
    vec![(VICTIM.parse().unwrap(), t)]
}

async fn nodes(url: &str, names: &[&str]) -> Vec<Node> {
    let mut out = Vec::new();
    for n in names {
        out.push(
            Node::new(&cluster_cfg(url, n), detect_cfg(), Duration::from_secs(2))
                .await
                .unwrap(),
        );
    }
    out
}

/// Polls every node every 200 ms (each with 40 kpps of the victim's
/// traffic) until `done` or `limit`; returns the announce decisions by
/// node name.
async fn run(
    nodes: &mut [Node],
    t: &mut Duration,
    limit: Duration,
    mut done: impl FnMut(&[(String, Decision)]) -> bool,
) -> Vec<(String, Decision)> {
    let start = Instant::now();
    let mut decisions = Vec::new();
    while start.elapsed() < limit {
        *t += Duration::from_millis(200);
        for n in nodes.iter_mut() {
            let step = n.poll_rates(*t, share(40_000.0)).await;
            if std::env::var_os("CLUSTER_DEBUG").is_some() {
                eprintln!(
                    "{} {:?} {:?} members {:?} dst {} reading {:?} attacks {}",
                    n.name(),
                    t,
                    n.status,
                    step.members,
                    n.counters.destinations,
                    n.counters.reading().values().next().map(|s| s.packets[0]),
                    n.detector.attacks().len()
                );
            }
            for d in step.decisions {
                decisions.push((n.name().to_string(), d));
            }
        }
        if done(&decisions) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    decisions
}

/// Three nodes named `names` on `server`, polled with 40 % each of the
/// victim's threshold until one announces (at most 15 s): the victim,
/// its rendezvous owner's name, the nodes, their clock and what was
/// decided.
async fn split_flood(
    server: &NatsServer,
    names: [&str; 3],
) -> (IpNet, String, Vec<Node>, Duration, Vec<(String, Decision)>) {
    let victim: IpNet = format!("{VICTIM}/32").parse().unwrap();
    let expected = owner::owner(&victim, names).unwrap().to_string();
    let mut all = nodes(&server.url(), &names).await;
    let mut t = Duration::from_secs(1);
    let got = run(&mut all, &mut t, Duration::from_secs(15), |d| !d.is_empty()).await;
    (victim, expected, all, t, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_flood_is_detected_network_wide_and_announced_by_one_owner_then_taken_over() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let names = ["s1", "s2", "s3"];
    // No local detector would see it: 40 kpps each against 100 kpps.
    let started = Instant::now();
    let (victim, expected, mut all, mut t, got) = split_flood(&server, names).await;
    let detected_after = started.elapsed();
    assert_eq!(
        got,
        vec![(expected.clone(), Decision::Announce(victim))],
        "exactly one announce, by the rendezvous owner"
    );
    // A few more polls: every node sees it, still one owner, no more decisions.
    let more = run(&mut all, &mut t, Duration::from_secs(1), |_| false).await;
    assert!(more.is_empty(), "{more:?}");

    for n in &all {
        assert_eq!(n.status, Status::Clustered);
        assert_eq!(n.stats.members, 3);
        let a = n.detector.attacks();
        assert_eq!(a.len(), 1, "{}: every node sees the attack", n.name());
        assert!(a[0].pps > 100_000.0, "{}", a[0]);
    }
    // The owner dies without leaving: its heartbeats stop, its share too.
    let i = all.iter().position(|n| n.name() == expected).unwrap();
    drop(all.remove(i));
    let died = Instant::now();
    let rest: Vec<&str> = names.iter().copied().filter(|n| *n != expected).collect();
    let heir = owner::owner(&victim, rest.iter().copied())
        .unwrap()
        .to_string();
    // The remaining two still sum to 80 kpps, above the release level (70 %).
    let got = run(&mut all, &mut t, Duration::from_secs(10), |d| !d.is_empty()).await;
    let takeover = died.elapsed();
    assert_eq!(got, vec![(heir.clone(), Decision::Announce(victim))]);
    for n in &all {
        assert_eq!(n.stats.members, 2, "{}", n.name());
    }
    eprintln!(
        "split flood: announced {:.2} s after the first poll; owner {expected} killed, {heir} took over after {:.2} s (member_ttl 1 s)",
        detected_after.as_secs_f64(),
        takeover.as_secs_f64()
    );
    assert!(takeover < Duration::from_secs(3), "{takeover:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_reachable_server_a_step_fails_fast_and_says_local_only() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let url = server.url();
    drop(server);
    let mut n = nodes(&url, &["alone"]).await.pop().unwrap();
    let t0 = Instant::now();
    let step = n.poll_rates(Duration::from_secs(1), share(1.0)).await;
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "bounded: {:?}",
        t0.elapsed()
    );
    assert!(step.decisions.is_empty());
    assert!(matches!(n.status, Status::LocalOnly(_)), "{:?}", n.status);
    assert_eq!(n.stats.failed_steps, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_are_replicated_to_every_member_and_released() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let mut all = nodes(&server.url(), &["c1", "c2"]).await;
    // A step binds the buckets, once connected.
    for n in all.iter_mut() {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !n.client.connected() {
            assert!(Instant::now() < deadline, "not connected in 5 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        n.poll_rates(Duration::from_secs(1), share(1.0)).await;
        assert_eq!(n.status, Status::Clustered, "{:?}", n.status);
    }
    let v4: IpNet = "198.18.202.10/32".parse().unwrap();
    let v6: IpNet = "2001:db8::10/128".parse().unwrap();
    all[0].client.claim(v4, 1).await.unwrap();
    all[1].client.claim(v6, 2).await.unwrap();
    let seen = |n: &Node| n.client.claims();
    let deadline = Instant::now() + Duration::from_secs(5);
    while all.iter().any(|n| seen(n).len() < 2) {
        assert!(Instant::now() < deadline, "claims not seen in 5 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for n in &all {
        let c = seen(n);
        assert_eq!(c[&v4].sensor, "c1");
        assert_eq!(c[&v6].sensor, "c2");
    }
    // The owner takes over: the claim is replaced, not doubled.
    all[1].client.claim(v4, 3).await.unwrap();
    all[1].client.release(v6).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let c = seen(&all[0]);
        if c.len() == 1 && c[&v4].sensor == "c2" {
            break;
        }
        assert!(Instant::now() < deadline, "take-over not seen: {c:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(client::claim_key(&v6), "2001-db8--10_128");
}

/// A clean stop hands over before it goes: the leaver's membership delete
/// makes it no member at once (not after `member_ttl`, as a kill), the
/// heir announces at its next step, and `leave` returns once the heir has
/// claimed the victim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_leave_hands_the_victim_over_at_the_next_step_and_waits_for_the_claim() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let names = ["l1", "l2", "l3"];
    let (victim, expected, mut all, mut t, got) = split_flood(&server, names).await;
    assert_eq!(got, vec![(expected.clone(), Decision::Announce(victim))]);
    let i = all.iter().position(|n| n.name() == expected).unwrap();
    let leaver = all.remove(i);
    leaver.client.claim(victim, 1).await.unwrap();
    // Every node sees the claim before the leave.
    let deadline = Instant::now() + Duration::from_secs(5);
    while all.iter().any(|n| !n.client.claims().contains_key(&victim)) {
        assert!(Instant::now() < deadline, "claim not replicated in 5 s");
        let d = run(&mut all, &mut t, Duration::from_millis(200), |_| true).await;
        assert!(d.is_empty(), "no decision before the leave: {d:?}");
    }
    let left_at = Instant::now();
    let leaving = tokio::spawn(leaver.leave(Duration::from_secs(5)));
    let got = run(&mut all, &mut t, Duration::from_secs(5), |d| !d.is_empty()).await;
    let announced = left_at.elapsed();
    let rest: Vec<&str> = names.iter().copied().filter(|n| *n != expected).collect();
    let heir = owner::owner(&victim, rest.iter().copied()).unwrap();
    assert_eq!(got, vec![(heir.to_string(), Decision::Announce(victim))]);
    assert!(
        !leaving.is_finished(),
        "the leaver waits for the heir's claim"
    );
    let h = all.iter().position(|n| n.name() == heir).unwrap();
    all[h].client.claim(victim, 2).await.unwrap();
    let not_taken = tokio::time::timeout(Duration::from_secs(5), leaving)
        .await
        .expect("leave ends once the claim is there")
        .unwrap();
    let handed = left_at.elapsed();
    assert!(not_taken.is_empty(), "{not_taken:?}");
    for n in &all {
        assert_eq!(n.client.live_members().len(), 2, "{}", n.name());
    }
    eprintln!(
        "clean leave: heir {heir} announced {:.2} s after the leave, the leaver done {:.2} s after it (member_ttl 1 s)",
        announced.as_secs_f64(),
        handed.as_secs_f64()
    );
    // A kill takes member_ttl (1 s) and a step; the leave, a step or two.
    assert!(announced < Duration::from_millis(800), "{announced:?}");
}

/// As [`detect_cfg`], and 50 kpps per /24 of hosts summed.
fn carpet_cfg() -> DetectConfig {
    DetectConfig::from_toml(&format!("{DETECT}[aggregate]\nall = {{ pps = 50000 }}\n")).unwrap()
}

/// Cumulative counters of `hosts` destinations of 198.18.5.0/24 (from .1),
/// `pps` each, after `secs`.
fn carpet_counters(
    hosts: u32,
    pps: f64,
    secs: f64,
) -> BTreeMap<IpAddr, edge_sensor_common::DstStats> {
    (1..=hosts)
        .map(|i| {
            let mut s = edge_sensor_common::DstStats::default();
            // All of it UDP.
            for class in [Class::All, Class::Udp] {
                s.packets[class as usize] = (pps * secs) as u64;
                s.bytes[class as usize] = (pps * secs * 500.0) as u64;
            }
            (IpAddr::from([198, 18, 5, i as u8]), s)
        })
        .collect()
}

#[test]
fn block_rest_sums_the_hosts_left_out_of_the_summary_and_only_those() {
    let mut d = Detector::new(carpet_cfg()).unwrap();
    let near: IpAddr = "198.18.5.200".parse().unwrap();
    let reading = |secs: f64| {
        let mut c = carpet_counters(64, 300.0, secs);
        let mut s = edge_sensor_common::DstStats::default();
        s.packets[0] = (30_000.0 * secs) as u64; // 30 % of its own threshold
        s.bytes[0] = (30_000.0 * secs * 500.0) as u64;
        c.insert(near, s);
        c
    };
    for i in 1..=5u32 {
        let secs = f64::from(i) * 0.2;
        d.poll(Duration::from_secs_f64(1.0 + secs), &reading(secs), &[]);
    }
    let rates: Vec<IpAddr> = d.near_threshold(0.2).map(|(ip, _)| ip).collect();
    assert_eq!(rates, vec![near]);
    let rest = d.block_rest(0.2);
    assert_eq!(rest.len(), 1);
    let block: IpNet = "198.18.5.0/24".parse().unwrap();
    assert_eq!(rest[0].0, block);
    let pps = rest[0].1[0][0];
    assert!((pps - 64.0 * 300.0).abs() < 64.0, "{pps}");
    // At half: the 30 % host is no longer near, so it is in its block's sum.
    let half = d.block_rest(0.5);
    assert!((half[0].1[0][0] - 49_200.0).abs() < 100.0, "{half:?}");
    // Under the fraction of the block's threshold: not in the summary.
    assert!(d.block_rest(0.99).is_empty());
}

/// Carpet bombing of a /24 split over three sensors: each sees 40 % of
/// the block's threshold spread over 64 hosts, no host near its own; the
/// summaries' block sums add up network-wide to one aggregate attack,
/// announced by one owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carpet_bombing_split_over_three_sensors_is_one_network_wide_block_attack() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let names = ["k1", "k2", "k3"];
    let block: IpNet = "198.18.5.0/24".parse().unwrap();
    let expected = owner::owner(&block, names).unwrap().to_string();
    let mut all = Vec::new();
    for n in names {
        let node = Node::new(
            &cluster_cfg(&server.url(), n),
            carpet_cfg(),
            Duration::from_secs(2),
        )
        .await
        .unwrap();
        all.push((node, Detector::new(carpet_cfg()).unwrap()));
    }
    let started = Instant::now();
    let mut step = 0u32;
    // Polls every node until one decides (at most `limit`).
    async fn until_decided(
        all: &mut [(Node, Detector)],
        step: &mut u32,
        limit: Duration,
    ) -> Vec<(String, Decision)> {
        let started = Instant::now();
        let mut decisions = Vec::new();
        while decisions.is_empty() && started.elapsed() < limit {
            *step += 1;
            let secs = f64::from(*step) * 0.2;
            let now = Duration::from_secs(1) + Duration::from_secs_f64(secs);
            for (node, local) in all.iter_mut() {
                // 64 hosts x 312.5 pps = 20 kpps: 40 % of the block's 50 kpps.
                let events = local.poll(now, &carpet_counters(64, 312.5, secs), &[]);
                assert!(
                    events.is_empty(),
                    "{}: a local attack {events:?}",
                    node.name()
                );
                for d in node.poll(now, local).await.decisions {
                    decisions.push((node.name().to_string(), d));
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        decisions
    }
    let decisions = until_decided(&mut all, &mut step, Duration::from_secs(15)).await;
    assert_eq!(
        decisions,
        vec![(expected.clone(), Decision::Announce(block))]
    );
    for (node, local) in &all {
        assert!(local.attacks().is_empty());
        let a = node.detector.attacks();
        assert_eq!(a.len(), 1, "{}", node.name());
        assert_eq!(a[0].victim, block);
        assert_eq!(a[0].scope, crate::detect::Scope::Aggregate);
        assert!(a[0].pps > 50_000.0, "{}", a[0]);
        assert!(node.stats.summary_bytes_published > 0);
    }
    let announced = started.elapsed();
    // A while on: the running attack's match is revised every poll.
    let more = until_decided(&mut all, &mut step, Duration::from_millis(1500)).await;
    assert!(more.is_empty(), "{more:?}");
    // The owner leaves: the two left sum to 40 kpps, under the threshold
    // and over the release level, so the attack fades on; the heir takes
    // it over with a match that still covers it (from counters: the UDP
    // share of the block), not one a mitigator refuses as too coarse.
    let i = all.iter().position(|(n, _)| n.name() == expected).unwrap();
    let (owner, _) = all.remove(i);
    // No wait: nobody claims here (the test writes no claims).
    owner.leave(Duration::ZERO).await;
    let decisions = until_decided(&mut all, &mut step, Duration::from_secs(5)).await;
    let rest: Vec<&str> = all.iter().map(|(n, _)| n.name()).collect();
    let heir = owner::owner(&block, rest).unwrap().to_string();
    assert_eq!(decisions, vec![(heir.clone(), Decision::Announce(block))]);
    for (node, _) in &all {
        let a = node.detector.attacks();
        assert_eq!(a.len(), 1, "{}: the attack goes on", node.name());
        assert!(
            a[0].fingerprint.covers_attack >= 0.9,
            "{}: {}",
            node.name(),
            a[0].fingerprint
        );
    }
    eprintln!(
        "carpet split 3 ways: network-wide block attack announced {:.2} s after the first poll; the owner left, {heir} took it over",
        announced.as_secs_f64()
    );
}

/// A summary over the server's `max_payload` (64 kB here) travels in
/// parts and arrives whole: 10 000 destinations of one member in the
/// other's network-wide sum, every poll in 3 messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_summary_over_max_payload_travels_in_parts_and_arrives_whole() {
    let Some(server) = NatsServer::start_with("max_payload: 65536\n") else {
        return;
    };
    let mut all = nodes(&server.url(), &["p1", "p2"]).await;
    for n in &all {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !n.client.connected() {
            assert!(Instant::now() < deadline, "not connected in 5 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let many: Vec<(IpAddr, Table)> = (0..10_000u32)
        .map(|i| {
            let mut t = ZERO;
            t[0] = [40_000.0, 40_000.0 * 8.0 * 500.0];
            (IpAddr::from((0xc612_0000u32 + i).to_be_bytes()), t)
        })
        .collect();
    let mut t = Duration::from_secs(1);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        t += Duration::from_millis(200);
        all[0].poll_rates(t, many.clone()).await;
        all[1].poll_rates(t, Vec::new()).await;
        if all[1].counters.destinations == 10_000 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "p1's 10 000 never summed at p2: {} ({:?})",
            all[1].counters.destinations,
            all[1].status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let s = all[0].stats;
    assert_eq!(s.failed_steps, 0, "{s:?}");
    // 17 + 10 000 x 19 bytes: 3 parts of at most 63 kB.
    assert_eq!(
        s.summary_parts_published,
        3 * s.summaries_published,
        "{s:?}"
    );
    assert_eq!(s.summary_entries_left_out, 0);
    assert_eq!(all[0].status, Status::Clustered);
}

/// A detector rebuilt on reload numbers its attacks after its
/// predecessor's: the mitigator may still hold the old ones' rules, and
/// one id must never name two attacks.
#[test]
fn a_rebuilt_detector_goes_on_with_the_attack_ids() {
    let flood = |d: &mut Detector| {
        let mut first = None;
        for i in 1..=10u32 {
            let secs = f64::from(i) * 0.2;
            let events = d.poll(
                Duration::from_secs_f64(1.0 + secs),
                &carpet_counters(1, 200_000.0, secs),
                &[],
            );
            for e in events {
                if let crate::detect::Event::AttackStarted(a) = e {
                    first.get_or_insert(a.id);
                }
            }
        }
        first.expect("the flood is an attack")
    };
    let mut old = Detector::new(carpet_cfg()).unwrap();
    let old_id = flood(&mut old);
    let mut new = Detector::new(carpet_cfg()).unwrap();
    new.continue_ids(&old);
    assert!(flood(&mut new) > old_id);
}
