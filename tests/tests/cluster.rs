//! Several sensors, one network-wide view (issue 17), end to end with real
//! parts: three `edge-sensor run` daemons (the userspace collector, each on
//! its own sFlow port), a real `nats-server -js`, and gobgpd as the route
//! reflector all three peer with, in one network namespace the test
//! creates. The test plays three exporters: real sFlow v5 datagrams sent
//! to loopback inside that namespace, each carrying 40 % of the victim's
//! threshold, so no sensor sees an attack alone.
//!
//! The harness is `edge_sensor_tests::cluster` (the benchmark's too).
//!
//! (a) The split flood is detected network-wide and exactly one copy of
//! the rule is on gobgpd, announced by the victim's rendezvous owner.
//! (b) The owner SIGKILLed mid-attack: gobgpd drops its routes with the
//! session, the next owner announces once the membership expires; the
//! time with zero copies is bounded, and exactly one copy remains after.
//! (e) The owner stopped cleanly (SIGTERM) mid-attack: it hands over
//! before it goes, so gobgpd never holds zero copies.
//! (f) A carpet bombing of a /24 split over the three sensors, no host
//! near its threshold anywhere: one network-wide rule for the block.
//! (g) SIGHUP with a new `[detect]` reaches the network-wide detector: a
//! change that keeps the attack keeps its rule (never zero copies), one
//! that puts the sum under the threshold ends it.

use std::time::{Duration, Instant};

use edge_sensor_tests::{cluster::*, sensor_bin};

#[test]
fn a_split_flood_is_mitigated_once_network_wide_and_taken_over_when_the_owner_dies() {
    // (a) Detected network-wide: one copy on the route reflector.
    let (mut c, owner, _exporters, started) = split_flood_ruled();
    let rule_after = started.elapsed();
    let (lo, hi) = copies_of_over(&c, VICTIM, Duration::from_secs(3));
    assert_eq!(
        (lo, hi),
        (1, 1),
        "exactly one copy of the rule:\n{}",
        c.logs()
    );
    for (i, name) in NAMES.iter().enumerate() {
        let announced = c.announced_by(i);
        assert_eq!(
            announced,
            usize::from(i == owner),
            "{name} announced {announced} times (owner {})",
            NAMES[owner]
        );
        // No sensor sees an attack of its own: 40 % each.
        let status = c.ask(i, &["status"]);
        assert_eq!(status["detection"]["attacks"], 0, "{name}: {status}");
    }
    let view = c.ask((owner + 1) % 3, &["cluster"]);
    let attacks = view["attacks"].as_array().unwrap();
    assert_eq!(attacks.len(), 1, "{view:#}");
    assert_eq!(attacks[0]["owner"], NAMES[owner], "{view:#}");
    assert_eq!(attacks[0]["announced_by"], NAMES[owner], "{view:#}");
    assert!(attacks[0]["pps"].as_f64().unwrap() > f64::from(THRESHOLD_PPS));
    assert_eq!(view["members"].as_array().unwrap().len(), 3, "{view:#}");
    // The human table too.
    let out =
        c.ns.command(sensor_bin())
            .args(["cluster", "--socket"])
            .arg(c.log_path(0).with_extension("sock"))
            .output()
            .expect("run edge-sensor cluster");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    assert!(
        table.contains("clustered")
            && table.contains("SUMMARY LAG")
            && table.contains(&format!("{VICTIM}/32")),
        "{table}"
    );
    eprintln!(
        "split flood ({} x {SHARE_PPS} pps against {THRESHOLD_PPS}): rule on gobgpd {:.2} s after the first datagram, owner {}",
        NAMES.len(),
        rule_after.as_secs_f64(),
        NAMES[owner]
    );

    // (b) The owner dies mid-attack.
    c.kill(owner);
    let killed = Instant::now();
    let mut zero_since: Option<Instant> = None;
    let mut longest_zero = Duration::ZERO;
    let mut back = None;
    while killed.elapsed() < FAILOVER_BOUND + Duration::from_secs(5) {
        let n = c.copies();
        match (n, zero_since) {
            (0, None) => zero_since = Some(Instant::now()),
            (0, Some(_)) => {}
            (_, Some(z)) => {
                longest_zero = longest_zero.max(z.elapsed());
                zero_since = None;
                back.get_or_insert(killed.elapsed());
            }
            (_, None) => {}
        }
        if back.is_some() && n > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some(z) = zero_since {
        longest_zero = longest_zero.max(z.elapsed());
    }
    let heir = heir_of(owner);
    assert!(
        back.is_some() && longest_zero <= FAILOVER_BOUND,
        "no copy for {longest_zero:?} (bound {FAILOVER_BOUND:?}) after {} died:\n{}",
        NAMES[owner],
        c.logs()
    );
    // Settled: exactly one copy, the heir's.
    let (lo, hi) = copies_of_over(&c, VICTIM, Duration::from_secs(3));
    assert_eq!(
        (lo, hi),
        (1, 1),
        "exactly one copy after failover:\n{}",
        c.logs()
    );
    assert_eq!(c.announced_by(heir), 1, "{} took over", NAMES[heir]);
    let view = c.ask(heir, &["cluster"]);
    assert_eq!(view["attacks"][0]["announced_by"], NAMES[heir], "{view:#}");
    eprintln!(
        "owner {} SIGKILLed: {} announced, zero copies on gobgpd for {:.2} s (member_ttl {:?})",
        NAMES[owner],
        NAMES[heir],
        longest_zero.as_secs_f64(),
        MEMBER_TTL
    );

    // The old owner restarts: back in the membership it owns the victim
    // again, restores its saved mitigation and the heir hands over (make
    // before break: two copies for a moment, never none).
    c.start_sensor(owner);
    let restarted = Instant::now();
    let mut two_since: Option<Instant> = None;
    let mut longest_two = Duration::ZERO;
    let mut fewest = usize::MAX;
    let retaken = wait(Duration::from_secs(20), || {
        let copies = c.copies_of(VICTIM);
        fewest = fewest.min(copies.len());
        match (copies.len() > 1, two_since) {
            (true, None) => two_since = Some(Instant::now()),
            (false, Some(t)) => {
                longest_two = longest_two.max(t.elapsed());
                two_since = None;
            }
            _ => {}
        }
        copies == [NAMES[owner]]
    });
    assert!(
        retaken,
        "{} did not take its victim back ({:?}):\n{}",
        NAMES[owner],
        c.copies_of(VICTIM),
        c.logs()
    );
    let retaken_after = restarted.elapsed();
    assert!(
        fewest >= 1,
        "no rule while the owner came back:\n{}",
        c.logs()
    );
    assert!(
        longest_two <= Duration::from_secs(3),
        "two copies for {longest_two:?}:\n{}",
        c.logs()
    );
    assert_eq!(
        copies_of_over(&c, VICTIM, Duration::from_secs(3)),
        (1, 1),
        "one copy after the owner came back:\n{}",
        c.logs()
    );
    eprintln!(
        "owner {} restarted: took its victim back {:.2} s later, two copies for {:.2} s",
        NAMES[owner],
        retaken_after.as_secs_f64(),
        longest_two.as_secs_f64()
    );

    let metrics = c.ns.run(|| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", 9810 + owner as u16)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    });
    assert!(
        metrics.contains("edge_sensor_cluster_clustered 1"),
        "{metrics}"
    );
    for line in [
        "edge_sensor_cluster_members 3",
        "edge_sensor_cluster_network_attacks{owner=\"self\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} not in {metrics}");
    }
}

/// (d) The whole cluster down: each sensor that sees an attack of its own
/// mitigates it; the cluster back: reconciled to the owner's one copy, no
/// duplicate and no orphaned claim; a sensor that died holding a local
/// mitigation during the outage does not restore it.
#[test]
fn with_the_cluster_down_each_sensor_mitigates_locally_then_reconciles_to_one_rule() {
    // A victim s1 owns: s1 sees the attack itself, so its local mitigation
    // and its network-wide one are the same victim's (adopted, resumed).
    let (victim_text, victim) = (20..60)
        .map(|i| {
            let text = format!("198.18.202.{i}");
            let net: ipnet::IpNet = format!("{text}/32").parse().unwrap();
            (text, net)
        })
        .find(|(_, net)| edge_sensor::cluster::owner::owner(net, NAMES) == Some("s1"))
        .expect("a victim s1 owns among 40");
    let local_victim = victim_text.as_str();
    let mut c = Cluster::start(1);
    wait_clustered(&c);
    let owner = edge_sensor::cluster::owner::owner(&victim, NAMES).unwrap();
    // s1 and s2 each see 120 % of the threshold: a local attack each.
    let share = THRESHOLD_PPS * 12 / 10;
    let _exporters = Exporters::start(
        c.ns,
        local_victim,
        [share, share, 0],
        Duration::from_secs(180),
    );
    let one = wait(Duration::from_secs(30), || {
        c.copies_of(local_victim) == vec![owner.to_string()]
    });
    assert!(
        one,
        "clustered: not the owner's one copy ({:?}):\n{}",
        c.copies_of(local_victim),
        c.logs()
    );
    assert_eq!(
        copies_of_over(&c, local_victim, Duration::from_secs(2)),
        (1, 1),
        "clustered: the local attacks are not announced as well:\n{}",
        c.logs()
    );

    // The cluster goes away.
    drop(c.nats[0].take());
    let outage = Instant::now();
    let mut fewest = usize::MAX;
    // Each mitigates its own attack; the router may hold one copy of two
    // equal rules: the route reflector shows each sensor the other's, and
    // a sensor holds back a rule another system has in force (issue 15).
    let local = wait(Duration::from_secs(20), || {
        fewest = fewest.min(c.copies_of(local_victim).len());
        [0, 1].iter().all(|&i| c.mitigating(i, local_victim))
    });
    assert!(
        local,
        "cluster down: s1 and s2 should each mitigate their own attack:\n{}",
        c.logs()
    );
    let (lo, _) = copies_of_over(&c, local_victim, Duration::from_secs(2));
    assert!(
        fewest.min(lo) >= 1,
        "no rule on the router during the outage:\n{}",
        c.logs()
    );
    for (i, name) in NAMES.iter().enumerate() {
        let s = c.ask(i, &["status"]);
        assert_eq!(s["cluster"]["state"], "local_only", "{name}: {s}");
    }
    eprintln!(
        "cluster down: s1 and s2 mitigate locally {:.2} s after the server died",
        outage.elapsed().as_secs_f64()
    );
    // s2 dies holding its local mitigation (saved in its state).
    c.kill(1);

    // Back: the owner's copy only, one claim, nothing orphaned.
    c.nats[0] = Some(start_nats(c.ns, c.dir.path(), 0, 1));
    let back = Instant::now();
    let reconciled = wait(Duration::from_secs(30), || {
        c.copies_of(local_victim) == vec![owner.to_string()]
            && c.ask(0, &["cluster"])["claims"]
                .as_array()
                .is_some_and(|cl| cl.len() == 1 && cl[0]["sensor"] == owner)
    });
    assert!(
        reconciled,
        "after the outage: not the owner's one copy ({:?}):\n{}",
        c.copies_of(local_victim),
        c.logs()
    );
    let settled = back.elapsed();
    // s2 restarts: s1 owns the victim and announces it, so s2 does not
    // restore its saved mitigation (nor mitigate its local attack).
    c.start_sensor(1);
    let events = c.dir.path().join("s2.events.jsonl");
    let skipped = wait(Duration::from_secs(15), || {
        std::fs::read_to_string(&events)
            .unwrap_or_default()
            .contains("\"mitigation_not_restored\"")
    });
    assert!(
        skipped,
        "s2 restored a mitigation s1 announces:\n{}",
        c.logs()
    );
    assert_eq!(
        copies_of_over(&c, local_victim, Duration::from_secs(3)),
        (1, 1),
        "after the outage and s2's restart: one copy:\n{}",
        c.logs()
    );
    for (i, name) in NAMES.iter().enumerate() {
        assert_eq!(
            c.mitigating(i, local_victim),
            *name == owner,
            "{name}: only the owner keeps a mitigation:\n{}",
            c.logs()
        );
    }
    let view = c.ask(0, &["cluster"]);
    let claims = view["claims"].as_array().unwrap();
    assert_eq!(claims.len(), 1, "{view:#}");
    assert_eq!(claims[0]["sensor"], owner, "{view:#}");
    eprintln!(
        "cluster back: one copy (owner {owner}) {:.2} s after the server restarted",
        settled.as_secs_f64()
    );
}

/// (c) A three-node JetStream cluster (replicas 3): one NATS node killed
/// mid-attack loses nothing the sensors need, and the router keeps exactly
/// one copy of the rule throughout.
#[test]
fn one_nats_node_killed_loses_nothing_and_never_duplicates_the_rule() {
    let mut c = Cluster::start(3);
    wait_clustered(&c);
    let owner = owner_of(&NAMES);
    let mut exporters = Exporters::start(c.ns, VICTIM, [SHARE_PPS; 3], Duration::from_secs(120));
    let ruled = wait(Duration::from_secs(30), || c.copies() > 0);
    assert!(ruled, "no rule on gobgpd in 30 s:\n{}", c.logs());
    assert_eq!(
        copies_of_over(&c, VICTIM, Duration::from_secs(2)),
        (1, 1),
        "one copy before:\n{}",
        c.logs()
    );
    drop(c.nats[0].take());
    let killed = Instant::now();
    let (lo, hi) = copies_of_over(&c, VICTIM, Duration::from_secs(10));
    assert_eq!(
        (lo, hi),
        (1, 1),
        "exactly one copy while a NATS node is gone:\n{}",
        c.logs()
    );
    assert_eq!(c.copies_of(VICTIM), [NAMES[owner]]);
    let whole = wait(Duration::from_secs(10), || {
        (0..NAMES.len()).all(|i| {
            let s = c.ask(i, &["status"]);
            s["cluster"]["state"] == "clustered" && s["cluster"]["members"] == 3
        })
    });
    assert!(
        whole,
        "the sensors did not all stay clustered:\n{}",
        c.logs()
    );
    let fallbacks: Vec<u64> = (0..NAMES.len())
        .map(|i| {
            c.ask(i, &["status"])["cluster"]["stats"]["fallbacks"]
                .as_u64()
                .unwrap_or(0)
        })
        .collect();
    let view = c.ask(owner, &["cluster"]);
    assert_eq!(view["attacks"][0]["announced_by"], NAMES[owner], "{view:#}");
    // The flood ends: the rule goes (release hold 2 s, min_hold 5 s; the hold a fallback gave is
    // back to min_hold once the cluster is).
    let sent = exporters.stop();
    assert!(sent > 0);
    let gone = wait(Duration::from_secs(30), || c.copies() == 0);
    assert!(gone, "the rule stayed after the flood:\n{}", c.logs());
    eprintln!(
        "NATS node n0 of 3 killed: one copy throughout {:.1} s; fallbacks to local-only per sensor {fallbacks:?}",
        killed.elapsed().as_secs_f64()
    );
}

/// The acceptance for the split flood: the rule on the router
/// within 1 s of what a single sensor seeing all the traffic achieves.
/// The same flood (12 kpps against 10 kpps) once to one sensor without
/// `[cluster]`, once split 3 x 4 kpps across the three clustered sensors.
#[test]
fn a_split_flood_is_ruled_within_a_second_of_one_sensor_seeing_it_all() {
    let rule_time = |c: &Cluster, shares: [u32; 3]| {
        let _exporters = Exporters::start(c.ns, VICTIM, shares, Duration::from_secs(60));
        let started = Instant::now();
        let ruled = wait(Duration::from_secs(30), || c.copies() > 0);
        assert!(ruled, "no rule in 30 s:\n{}", c.logs());
        started.elapsed()
    };
    let single = {
        let c = Cluster::start_with(0, 1);
        rule_time(&c, [3 * SHARE_PPS, 0, 0])
    };
    let split = {
        let c = Cluster::start(1);
        wait_clustered(&c);
        rule_time(&c, [SHARE_PPS; 3])
    };
    eprintln!(
        "rule on gobgpd after the first datagram: one sensor seeing all {:.2} s, split across three {:.2} s (+{:.2} s)",
        single.as_secs_f64(),
        split.as_secs_f64(),
        split.as_secs_f64() - single.as_secs_f64()
    );
    assert!(
        split <= single + Duration::from_secs(1),
        "split {split:?} against single {single:?}"
    );
}

/// (e) A clean stop hands over: the owner leaves the membership at once,
/// the heir announces at its next step, and the owner withdraws (its
/// session closes) only once the heir's claim is in the bucket. Sampled
/// every 50 ms, gobgpd never holds zero copies.
#[test]
fn the_owner_stopped_cleanly_hands_over_with_never_zero_copies() {
    let (mut c, owner, _exporters, _) = split_flood_ruled();
    let (lo, hi) = copies_of_over(&c, VICTIM, Duration::from_secs(2));
    assert_eq!((lo, hi), (1, 1), "one copy before the stop:\n{}", c.logs());
    let heir = heir_of(owner);

    let stopping = c.terminate(owner);
    let stopped = Instant::now();
    let mut fewest = usize::MAX;
    let mut heir_after = None;
    while stopped.elapsed() < Duration::from_secs(8) {
        let copies = c.copies_of(VICTIM);
        fewest = fewest.min(copies.len());
        if heir_after.is_none() && copies.iter().any(|s| s == NAMES[heir]) {
            heir_after = Some(stopped.elapsed());
        }
        if stopping.is_finished() && copies == [NAMES[heir]] {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let exit = stopping.join().expect("stop thread");
    let exited_after = stopped.elapsed();
    assert!(
        exit.is_some_and(|e| e.success()),
        "{} did not exit cleanly: {exit:?}\n{}",
        NAMES[owner],
        c.logs()
    );
    assert!(
        fewest >= 1,
        "gobgpd held no copy during the clean stop of {}:\n{}",
        NAMES[owner],
        c.logs()
    );
    let heir_after = heir_after.expect("the heir announced");
    let (lo, hi) = copies_of_over(&c, VICTIM, Duration::from_secs(3));
    assert_eq!((lo, hi), (1, 1), "one copy after:\n{}", c.logs());
    assert_eq!(c.copies_of(VICTIM), [NAMES[heir]]);
    // The heir's rule is as precise as the owner's was: Flow Spec, not a
    // blackhole (its match from counters still covers the attack).
    assert_eq!(c.flowspec_copies_of(VICTIM), [NAMES[heir]], "{}", c.logs());
    let log = std::fs::read_to_string(c.log_path(owner)).unwrap_or_default();
    assert!(
        log.contains("every rule announced here is announced by another sensor"),
        "the owner's log says it handed over:\n{log}"
    );
    eprintln!(
        "owner {} stopped cleanly: {} announced {:.2} s after the SIGTERM, the owner exited {:.2} s after it; fewest copies on gobgpd {fewest}",
        NAMES[owner],
        NAMES[heir],
        heir_after.as_secs_f64(),
        exited_after.as_secs_f64()
    );
}

/// (f) Carpet bombing split three ways: 64 hosts of 198.18.202.0/24,
/// 4 kpps per sensor against the block's 10 kpps (each host some 60 pps
/// per sensor against its own 10 kpps). No sensor has a local attack; the
/// summaries' block sums make one network-wide aggregate attack on the
/// /24, one rule on gobgpd, announced by the block's owner.
#[test]
fn a_carpet_bombing_split_over_three_sensors_is_one_network_wide_block_rule() {
    const BLOCK: &str = "198.18.202.0/24";
    let c = Cluster::start_tuned(1, 3, |config| {
        format!("{config}\n[detect.aggregate]\nall = {{ pps = {THRESHOLD_PPS} }}\n")
    });
    wait_clustered(&c);
    let owner = owner_of_net(&NAMES, BLOCK);
    let hosts: Vec<std::net::Ipv4Addr> = (1..=64).map(|i| [198, 18, 202, i].into()).collect();
    let _exporters = Exporters::start_spread(c.ns, hosts, [SHARE_PPS; 3], Duration::from_secs(120));
    let started = Instant::now();
    let ruled = wait(Duration::from_secs(30), || {
        !c.copies_of_net(BLOCK).is_empty()
    });
    assert!(ruled, "no rule for {BLOCK} in 30 s:\n{}", c.logs());
    let rule_after = started.elapsed();
    let mut fewest = usize::MAX;
    let mut most = 0;
    let sampled = Instant::now();
    while sampled.elapsed() < Duration::from_secs(3) {
        let n = c.copies_of_net(BLOCK).len();
        fewest = fewest.min(n);
        most = most.max(n);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!((fewest, most), (1, 1), "one copy:\n{}", c.logs());
    assert_eq!(c.copies_of_net(BLOCK), [NAMES[owner]]);
    for (i, name) in NAMES.iter().enumerate() {
        let status = c.ask(i, &["status"]);
        assert_eq!(status["detection"]["attacks"], 0, "{name}: {status}");
    }
    let view = c.ask((owner + 1) % 3, &["cluster"]);
    let attacks = view["attacks"].as_array().unwrap();
    assert_eq!(attacks.len(), 1, "{view:#}");
    assert_eq!(attacks[0]["victim"], BLOCK, "{view:#}");
    assert_eq!(attacks[0]["owner"], NAMES[owner], "{view:#}");
    eprintln!(
        "carpet over {BLOCK} split 3 x {SHARE_PPS} pps against {THRESHOLD_PPS} per block: rule on gobgpd {:.2} s after the first datagram, owner {}",
        rule_after.as_secs_f64(),
        NAMES[owner]
    );
}

/// (g) `[detect]` reloaded by SIGHUP applies network-wide too. First every
/// sensor's threshold 10 -> 9 kpps: the network-wide detector starts over
/// and the rule stays (held, then adopted: never zero copies). Then
/// 20 kpps, over the 12 kpps sum: the network-wide attack ends and the
/// rule is withdrawn.
#[test]
fn a_detect_reload_applies_network_wide_without_dropping_the_rule() {
    let (c, _, _exporters, _) = split_flood_ruled();
    // Past `min_hold` (5 s): a rule the reload ended would go at once.
    let (lo, _) = copies_of_over(&c, VICTIM, Duration::from_secs(6));
    assert_eq!(lo, 1, "{}", c.logs());
    let threshold = |pps: u32| {
        move |text: String| {
            text.replace(
                &format!("all = {{ pps = {THRESHOLD_PPS} }}"),
                &format!("all = {{ pps = {pps} }}"),
            )
        }
    };
    for (i, name) in NAMES.iter().enumerate() {
        let r = c.reload(i, threshold(9_000));
        assert_eq!(r["outcome"], "applied", "{name}: {r}");
    }
    let reloaded = Instant::now();
    let mut fewest = usize::MAX;
    while reloaded.elapsed() < Duration::from_secs(8) {
        fewest = fewest.min(c.copies());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(fewest >= 1, "the rule went after the reload:\n{}", c.logs());
    assert_eq!(c.copies(), 1, "{}", c.logs());
    for (i, name) in NAMES.iter().enumerate() {
        let log = std::fs::read_to_string(c.log_path(i)).unwrap_or_default();
        assert!(
            log.contains("network-wide detection reconfigured"),
            "{name}:\n{log}"
        );
    }
    for i in 0..NAMES.len() {
        c.reload(i, |t| {
            t.replace("all = { pps = 9000 }", "all = { pps = 20000 }")
        });
    }
    let raised = Instant::now();
    let gone = wait(Duration::from_secs(30), || c.copies() == 0);
    assert!(
        gone,
        "the rule stayed with the sum under the new threshold:\n{}",
        c.logs()
    );
    eprintln!(
        "[detect] reloaded: rule kept through a 10 -> 9 kpps reload (fewest copies {fewest}); withdrawn {:.2} s after 20 kpps",
        raised.elapsed().as_secs_f64()
    );
}
