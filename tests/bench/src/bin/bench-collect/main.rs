//! `cargo xtask bench` (collector part): the kernel XDP path, the userspace
//! path of the same binary (`edge-sensor collect --user`) and FastNetMon
//! Community, side by side in one run on this machine, fed by the replay
//! generator (real sFlow and IPFIX captures) from a sender namespace over a
//! veth to the collector namespace.
//!
//! For each candidate and protocol: counter accuracy against the truth at a
//! low rate, then a bounded rate search for the highest rate sustained with
//! < 0.1 % loss, and the CPU seconds per million samples there. Then memory
//! at 10k / 100k / 1M tracked destinations. Writes report.json, report.md
//! and report.svg into the directory given as argument.
//!
//! Two generators: the accuracy checks and the memory fill write whole
//! frames to the sender's veth with AF_PACKET (`replay`, paced, the truth
//! from the decoder over the same stream); the rate search has the kernel
//! itself transmit the frames (`livegen`: BPF_PROG_TEST_RUN with live
//! frames on an XDP_TX program), so that the generator outruns the
//! collector and the capacity is measured rather than extrapolated.
//! The machine is split in two: CPU 0 sends, CPU 1 collects (the candidate's
//! process and the veth's receive NAPI thread, which also runs XDP), so every
//! candidate gets one whole core and the generator another. Then the XDP
//! path again on a veth with 2 RX queues (the program on both CPUs, a
//! generator thread on each, since veth picks the queue by the sending CPU).

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use edge_sensor::counters::Report;
use edge_sensor_bench::{
    self as bench, Candidate, IPFIX_PORT, Kind, SFLOW_PORT, StartOptions,
    livegen::{Frames, LiveGen},
};
use edge_sensor_common::TelemetryKind;
use edge_sensor_tests::{
    netns::Link,
    replay::{self, Sent, Spread, Via, Workload},
    require_root, require_tool, shared_captures,
};
use serde_json::{Value, json};

mod formula;
mod machine;
mod render;
mod send;
use formula::map_formula;
use machine::{enable_bpf_stats, load_average, machine};
use render::{markdown, svg};

/// Seconds of sending per rate step (a failed step is tried twice).
const STEP: Duration = Duration::from_secs(2);
/// Loss allowed for a rate to count as sustained.
const MAX_LOSS: f64 = 0.001;
/// First offered rate and the cap of the doubling ladder (datagrams/s).
const FIRST_RATE: f64 = 10_000.0;
const MAX_RATE: f64 = 2_560_000.0;
/// Bisections between the last sustained and the first failed rate.
const REFINE: usize = 3;
/// Copies of a frame per live-frames call. A call costs about 25 ms of
/// set-up and tear-down on this kernel (its page pool), serialised
/// machine-wide, and then sends 8-9 M frames per second of its CPU, far
/// beyond the veth's 256-frame ring: it cannot be paced below a 0.1 %
/// loss, so it serves the overload step, in calls long enough (half a
/// second of CPU) that the collector stays overloaded between them. With
/// one frame per call, that step's samples go to few destinations.
const LIVE_COPIES: u32 = 4 << 20;
/// Frames the live generator cycles through, at most.
const LIVE_FRAMES_MAX: usize = 16_384;
/// The overload step's offered rate: as fast as the live generator goes.
const FLAT_OUT: f64 = f64::INFINITY;
/// The generator counts as saturated below this share of the offered rate.
const SATURATED: f64 = 0.95;
/// Destinations the throughput workload spreads its samples over.
const THROUGHPUT_DESTINATIONS: u32 = 4096;
/// Datagrams per second that fill the memory phase's destinations.
const FILL_RATE: f64 = 25_000.0;
/// Tracked-destination counts of the memory phase.
const MEMORY_SIZES: [u32; 3] = [10_000, 100_000, 1_000_000];

const SENDER_CPU: usize = 0;
const COLLECTOR_CPU: usize = 1;

/// One protocol's traffic for a link: the replayed stream (paced search)
/// and the same datagrams as frames for the live generator (overload).
struct Offer<'a> {
    workload: &'a Workload,
    port: u16,
    frames: Frames,
}

/// What a step sent, whichever generator.
struct Offered {
    datagrams: u64,
    samples: u64,
    elapsed: Duration,
    generator_cpu_s: Option<f64>,
}

struct Bench {
    link: Link,
    /// The same, with 2 RX queues (the scaling step).
    link2: Link,
    live: LiveGen,
    /// Frames written straight to the sender's veth (see [`replay::Via`]).
    via: Via,
    via2: Via,
    work: PathBuf,
    bin: PathBuf,
    sflow: Workload,
    ipfix: Workload,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = match args.as_slice() {
        // report.md and report.svg again from report.json.
        [flag, dir] if flag == "--render" => {
            let dir = PathBuf::from(dir);
            let report: Value = serde_json::from_slice(
                &std::fs::read(dir.join("report.json")).expect("report.json"),
            )
            .expect("report.json is JSON");
            std::fs::write(dir.join("report.md"), markdown(&report)).unwrap();
            std::fs::write(dir.join("report.svg"), svg(&report)).unwrap();
            return;
        }
        [dir] if !dir.starts_with('-') => PathBuf::from(dir),
        _ => {
            eprintln!("usage: bench-collect OUT_DIR | bench-collect --render DIR");
            std::process::exit(2);
        }
    };
    require_root();
    for tool in ["bpftool", "ethtool", "setpriv", "fastnetmon"] {
        require_tool(tool);
    }
    std::fs::create_dir_all(&out).unwrap();
    let started = Instant::now();
    let _stats = enable_bpf_stats();
    let captures = shared_captures();
    let sflow_capture = "lab/pmacct-1.7.7_sfprobe_v5_rate1.pcap";
    let ipfix_capture = "lab/softflowd-1.1.0_v10.pcap";
    let link = Link::new();
    let link2 = Link::with_queues(2);
    let via = replay::raw_via(&link);
    let via2 = replay::raw_via(&link2);
    let bench = Bench {
        via2,
        link,
        link2,
        live: LiveGen::load().unwrap_or_else(|e| panic!("loading the live-frames generator: {e}")),
        via,
        work: std::env::temp_dir().join(format!("es-bench-{}", std::process::id())),
        bin: edge_sensor_tests::sensor_bin(),
        sflow: Workload::from_captures(&[&captures.join(sflow_capture)], TelemetryKind::Sflow)
            .spread(Spread {
                base: "10.0.0.0".parse().unwrap(),
                count: THROUGHPUT_DESTINATIONS,
            }),
        ipfix: Workload::from_captures(&[&captures.join(ipfix_capture)], TelemetryKind::Ipfix),
    };
    std::fs::create_dir_all(&bench.work).unwrap();
    bench.prepare_link(&bench.link);
    bench.prepare_link(&bench.link2);

    // `BENCH_COLLECT_ONLY=KEY[,KEY]` runs only those candidates (e.g. `xdp`,
    // while working on one); `cargo xtask bench` runs them all.
    let only = std::env::var("BENCH_COLLECT_ONLY").ok();
    let wanted = |k: Kind| {
        only.as_ref()
            .is_none_or(|o| o.split(',').any(|x| x == k.key()))
    };
    let mut candidates = Vec::new();
    let load_before = load_average();
    for kind in [Kind::Xdp, Kind::User, Kind::UserTuned, Kind::FastNetMon] {
        if !wanted(kind) {
            continue;
        }
        eprintln!("bench: {}", kind.name());
        candidates.push(bench.candidate(kind));
    }
    let scaling = if wanted(Kind::Xdp) {
        eprintln!("bench: {}, 2 RX queues", Kind::Xdp.name());
        bench.two_queues()
    } else {
        Value::Null
    };
    // The rate phase's results, kept should the memory phase fail.
    std::fs::write(
        out.join("rates.json"),
        serde_json::to_string_pretty(&json!({"candidates": candidates, "two_queues": scaling}))
            .unwrap(),
    )
    .unwrap();
    let mut memory = Vec::new();
    // The userspace path with the bigger buffer, so that no fill datagram
    // is lost (the buffer is kernel memory, not the process's).
    // `BENCH_COLLECT_MEMORY=0` leaves the memory phase out (while working
    // on the rate search).
    let memory_phase = std::env::var("BENCH_COLLECT_MEMORY").map_or(true, |v| v != "0");
    for kind in [Kind::Xdp, Kind::UserTuned, Kind::FastNetMon] {
        if !wanted(kind) || !memory_phase {
            continue;
        }
        for n in MEMORY_SIZES {
            eprintln!("bench: memory, {} at {n} destinations", kind.name());
            memory.push(bench.memory(kind, n));
        }
    }
    let report = json!({
        "machine": machine(),
        "setup": {
            "sender_cpu": SENDER_CPU, "collector_cpu": COLLECTOR_CPU,
            "step_seconds": STEP.as_secs_f64(), "max_loss": MAX_LOSS,
            "sflow_capture": sflow_capture, "ipfix_capture": ipfix_capture,
            "sflow_datagrams_per_cycle": bench.sflow.cycle_len(),
            "sflow_samples_per_datagram": bench.sflow.expected_samples(1000 * bench.sflow.cycle_len() as u64) as f64 / (1000 * bench.sflow.cycle_len()) as f64,
            "ipfix_records_per_datagram": bench.ipfix.expected_samples(1000 * bench.ipfix.cycle_len() as u64) as f64 / (1000 * bench.ipfix.cycle_len()) as f64,
            "throughput_destinations": THROUGHPUT_DESTINATIONS,
            "live_copies": LIVE_COPIES,
        },
        "candidates": candidates,
        "two_queues": scaling,
        "memory": memory,
        "map_formula": map_formula(&memory),
        "duration_s": started.elapsed().as_secs_f64(),
        "load_average": {"before": load_before, "after": load_average()},
    });
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(&report).unwrap(),
    )
    .unwrap();
    let md = markdown(&report);
    std::fs::write(out.join("report.md"), &md).unwrap();
    std::fs::write(out.join("report.svg"), svg(&report)).unwrap();
    print!("{md}");
    let _ = std::fs::remove_dir_all(&bench.work);
}

impl Bench {
    /// The collector's receive path on the collector's CPU: threaded NAPI
    /// on its veth, GRO on (so the veth has a NAPI even without XDP), and
    /// TSO off on the sender's veth (else veth hands the frames to the
    /// receiver's backlog on the *sender's* CPU instead of its NAPI).
    fn prepare_link(&self, link: &Link) {
        let (a, b) = (&link.a, &link.b);
        for (ns, script) in [
            (
                &b.name,
                format!(
                    "ethtool -K {0} gro on && echo 1 > /sys/class/net/{0}/threaded",
                    link.b_if
                ),
            ),
            (&a.name, format!("ethtool -K {} tso off", link.a_if)),
        ] {
            let out = std::process::Command::new("ip")
                .args(["netns", "exec", ns, "sh", "-c", &script])
                .output()
                .expect("ip netns exec");
            assert!(
                out.status.success(),
                "{script}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    fn start(&self, kind: Kind, opts: &StartOptions) -> Candidate {
        self.start_on(&self.link, kind, opts)
    }

    fn start_on(&self, link: &Link, kind: Kind, opts: &StartOptions) -> Candidate {
        let c = Candidate::start(kind, &link.b, &link.b_if, &self.work, &self.bin, opts);
        bench::pin_process(c.pid(), COLLECTOR_CPU);
        // One NAPI thread per RX queue, the first on the collector's CPU.
        let mut napi = bench::napi_threads(&link.b_if);
        napi.sort_unstable();
        for (i, pid) in napi.into_iter().enumerate() {
            bench::pin_pid(pid, (COLLECTOR_CPU + i) % 2);
        }
        c
    }

    fn send(&self, workload: &Workload, port: u16, rate: f64, limit: Option<u64>) -> Sent {
        let dst = SocketAddr::new(self.link.b_addr, port);
        let duration = if limit.is_some() {
            Duration::from_secs(120)
        } else {
            STEP
        };
        self.link.a.run(|| {
            bench::pin_thread(SENDER_CPU);
            replay::send_via(&self.via, workload, dst, rate, duration, limit).expect("replay")
        })
    }

    /// Accuracy at a low rate, then the rate search, for both protocols.
    fn throughput_options() -> StartOptions {
        StartOptions {
            destinations: 65_536,
            networks: vec![
                format!("10.0.0.0/{}", 32 - THROUGHPUT_DESTINATIONS.trailing_zeros()),
                "10.99.0.0/24".into(),
            ],
            summary_only: false,
        }
    }

    fn candidate(&self, kind: Kind) -> Value {
        let cand = self.start(kind, &Self::throughput_options());
        let accuracy = self.accuracy(&cand);
        let sflow = self.search(
            &cand,
            &self.link,
            &self.offer(&self.link, &self.sflow, SFLOW_PORT),
            1,
        );
        let ipfix = self.search(
            &cand,
            &self.link,
            &self.offer(&self.link, &self.ipfix, IPFIX_PORT),
            1,
        );
        let log = cand.log_tail();
        cand.stop();
        json!({
            "key": kind.key(), "name": kind.name(),
            "accuracy": accuracy, "sflow": sflow, "ipfix": ipfix,
            "log_tail": log,
        })
    }

    /// The XDP path on the veth with 2 RX queues: the program runs on both
    /// CPUs, fed by a generator thread on each. Both cores are shared by
    /// a generator and a receive path, so this shows the scaling of the
    /// shared counters (atomic adds on one value per destination, the LRU
    /// hash's locks) under two CPUs at once, not two free collector cores.
    fn two_queues(&self) -> Value {
        let cand = self.start_on(&self.link2, Kind::Xdp, &Self::throughput_options());
        let napi = bench::napi_threads(&self.link2.b_if).len();
        let sflow = self.search(
            &cand,
            &self.link2,
            &self.offer(&self.link2, &self.sflow, SFLOW_PORT),
            2,
        );
        let ipfix = self.search(
            &cand,
            &self.link2,
            &self.offer(&self.link2, &self.ipfix, IPFIX_PORT),
            2,
        );
        cand.stop();
        json!({"queues": 2, "napi_threads": napi, "sflow": sflow, "ipfix": ipfix})
    }

    /// A fixed number of datagrams of each protocol at a low rate; the
    /// candidate's per-destination totals against the truth.
    fn accuracy(&self, cand: &Candidate) -> Value {
        let (before, _) = cand.snapshot(false);
        let s = self.send(&self.sflow, SFLOW_PORT, 5_000.0, Some(10_000));
        let i = self.send(&self.ipfix, IPFIX_PORT, 5_000.0, Some(3_000));
        std::thread::sleep(settle(cand.kind));
        let (after, rows) = cand.snapshot(true);
        let mut truth = Report::default();
        let sflow_truth = self.sflow.truth(s.datagrams, s.src, SFLOW_PORT);
        let ipfix_truth = self.ipfix.truth(i.datagrams, i.src, IPFIX_PORT);
        truth.merge(&sflow_truth.report);
        truth.merge(&ipfix_truth.report);
        let truth_samples = replay::samples_of(&sflow_truth) + replay::samples_of(&ipfix_truth);
        let sent = s.datagrams + i.datagrams;
        let datagrams = after.datagrams.zip(before.datagrams).map(|(a, b)| a - b);
        let samples = after.samples - before.samples;
        let mut out = json!({
            "sent_datagrams": sent,
            "truth_samples": truth_samples,
            "truth_destinations": truth.destinations.len(),
            "samples": samples,
            "samples_exact": samples == truth_samples,
        });
        if cand.kind == Kind::FastNetMon {
            out["ipfix_sent_datagrams"] = json!(i.datagrams);
            out["ipfix_datagrams"] = json!(datagrams);
            out["per_destination"] = json!(
                "not exposed: FastNetMon Community publishes per-host speeds (top N, \
                 smoothed) in its CLI stats file, not per-host totals; compared here: \
                 its count of processed samples/flows"
            );
        } else {
            out["datagrams"] = json!(datagrams);
            out["per_destination"] = compare_rows(
                &edge_sensor::cli::rows::report_json(&truth)["destinations"],
                rows.as_ref().unwrap(),
            );
        }
        out
    }

    fn search(&self, cand: &Candidate, link: &Link, offer: &Offer, queues: usize) -> Value {
        let mut steps = Vec::new();
        let mut best: Option<Value> = None;
        let mut bad: Option<f64> = None;
        let mut rate = FIRST_RATE;
        while rate <= MAX_RATE {
            let step = self.step(cand, link, offer, queues, rate);
            eprintln!("bench:   {} {}", cand.kind.key(), step);
            steps.push(step.clone());
            if !step["sustained"].as_bool().unwrap() {
                bad = Some(rate);
                break;
            }
            // A generator short of its rate on a shared machine may still
            // go faster at the next step; one that sends less than half of
            // it has reached its limit.
            let saturated = step["generator_saturated"].as_bool().unwrap()
                && step["sent_rate"].as_f64().unwrap_or(0.0) < 0.5 * rate;
            // An overloaded generator may send less at a higher offered
            // rate: the best step is the fastest one actually sent.
            if best
                .as_ref()
                .is_none_or(|b| b["sent_rate"].as_f64() < step["sent_rate"].as_f64())
            {
                best = Some(step);
            }
            if saturated {
                break;
            }
            rate *= 2.0;
        }
        if let Some(mut high) = bad {
            let mut low = best
                .as_ref()
                .map_or(FIRST_RATE / 2.0, |b| b["offered_rate"].as_f64().unwrap());
            for _ in 0..REFINE {
                let mid = (low + high) / 2.0;
                let step = self.step(cand, link, offer, queues, mid);
                eprintln!("bench:   {} {}", cand.kind.key(), step);
                steps.push(step.clone());
                if step["sustained"].as_bool().unwrap() {
                    low = mid;
                    let better = best.as_ref().is_none_or(|b| {
                        b["sent_rate"].as_f64().unwrap() < step["sent_rate"].as_f64().unwrap()
                    });
                    if better {
                        best = Some(step);
                    }
                } else {
                    high = mid;
                }
            }
        }
        // No rate failed on the way up: the generator's limit (or the
        // ladder's cap) ended the search, not the candidate.
        let limited_by_generator = best.is_some() && bad.is_none();
        let total = |k: &str| {
            steps
                .iter()
                .map(|s| s[k].as_u64().unwrap_or(0))
                .sum::<u64>()
        };
        let generator_max = steps
            .iter()
            .map(|s| s["sent_rate"].as_f64().unwrap_or(0.0))
            .fold(0.0, f64::max);
        // Overload: the live generator offers more than the collector can
        // take; what the collector then counts per second is its
        // capacity with its core saturated, and the sent rate is the
        // generator's own.
        let flat_out = self.try_rate(cand, link, offer, queues, FLAT_OUT, true);
        eprintln!("bench:   {} overload {}", cand.kind.key(), flat_out);
        json!({
            "generator_flat_out": flat_out,
            "xdp_passed_datagrams_total": total("xdp_passed_datagrams"),
            "udp_delivered_total": total("udp_in_datagrams"),
            "generator_max_rate": generator_max,
            "max_sustained_rate": best.as_ref().map(|b| b["sent_rate"].clone()),
            "cpu_s_per_million_samples": best.as_ref().map(|b| b["cpu_s_per_million_samples"].clone()),
            "collector_cpu_s_per_million_samples": best.as_ref().map(|b| b["collector_cpu_s_per_million_samples"].clone()),
            "limited_by_generator": limited_by_generator,
            "best": best,
            "steps": steps,
        })
    }

    /// One rate, tried twice when the first try loses: a single scheduling
    /// hiccup of a shared machine should not decide the result.
    fn step(
        &self,
        cand: &Candidate,
        link: &Link,
        offer: &Offer,
        queues: usize,
        rate: f64,
    ) -> Value {
        let first = self.try_rate(cand, link, offer, queues, rate, false);
        if first["sustained"].as_bool().unwrap_or(false) {
            return first;
        }
        let mut second = self.try_rate(cand, link, offer, queues, rate, false);
        second["first_try_loss"] = first["loss"].clone();
        second
    }

    fn try_rate(
        &self,
        cand: &Candidate,
        link: &Link,
        offer: &Offer,
        queues: usize,
        rate: f64,
        live: bool,
    ) -> Value {
        let (before, _) = cand.snapshot(false);
        let udp_before = bench::udp_counters(&link.b.path());
        let softirq_before = bench::softirq_s();
        let napi_before = bench::napi_cpu_s(&link.b_if);
        let load = load_average();
        let sent = if live {
            let l = self.send_live(link, &offer.frames, rate, queues);
            Offered {
                datagrams: l.datagrams,
                samples: l.samples,
                elapsed: l.elapsed,
                generator_cpu_s: Some(l.cpu_s),
            }
        } else {
            self.send_replay(link, offer, rate, queues)
        };
        let sent_rate = sent.datagrams as f64 / sent.elapsed.as_secs_f64();
        std::thread::sleep(settle(cand.kind));
        let (after, _) = cand.snapshot(false);
        let udp_after = bench::udp_counters(&link.b.path());
        let udp = |k: &str| udp_after.get(k).unwrap_or(&0) - udp_before.get(k).unwrap_or(&0);
        let expected = sent.samples;
        let samples = after.samples - before.samples;
        let datagrams = after.datagrams.zip(before.datagrams).map(|(a, b)| a - b);
        // FastNetMon 1.2.4 has no sFlow datagram counter, its
        // `ipfix_total_packets` stays 0 and `netflow_ipfix_total_packets`
        // counts 2 per datagram: the samples and records it processed
        // (exact at low rate) stand in.
        let accounted = match datagrams {
            Some(d) if cand.kind != Kind::FastNetMon => d as f64 / sent.datagrams as f64,
            _ => samples as f64 / expected as f64,
        };
        let loss = (1.0 - accounted).max(0.0);
        let cpu = after.cpu_s - before.cpu_s;
        let napi = bench::napi_cpu_s(&link.b_if) - napi_before;
        // Everything the collector's core did: the receive path (NAPI
        // thread, where XDP runs; the program's own time is inside it) and
        // the candidate's process.
        let prog = after.prog_run_s.unwrap_or(0.0) - before.prog_run_s.unwrap_or(0.0);
        let collector = cpu - prog + napi;
        let mut step = json!({
            "offered_rate": rate,
            "sent": sent.datagrams,
            "sent_rate": sent_rate,
            "generator": if live { "live frames" } else { "AF_PACKET" },
            "generator_saturated": sent_rate < SATURATED * rate,
            "generator_cpu_s": sent.generator_cpu_s,
            "accounted_rate": accounted * sent_rate,
            "queues": queues,
            "load_average": load,
            "accounted_datagrams": datagrams,
            "samples": samples,
            "expected_samples": expected,
            "loss": loss,
            "sustained": loss < MAX_LOSS,
            "cpu_s": cpu,
            "cpu_s_per_million_samples": cpu / (expected as f64 / 1e6),
            "napi_cpu_s": napi,
            "collector_cpu_s": collector,
            "collector_cpu_s_per_million_samples": collector / (expected as f64 / 1e6),
            "collector_core_busy": collector / sent.elapsed.as_secs_f64(),
            "softirq_s_machine": bench::softirq_s() - softirq_before,
            "udp_in_datagrams": udp("InDatagrams"),
            "udp_rcvbuf_errors": udp("RcvbufErrors"),
            "udp_no_ports": udp("NoPorts"),
        });
        if let (Some(a), Some(b)) = (after.prog_run_s, before.prog_run_s) {
            step["xdp_prog_run_s"] = json!(a - b);
        }
        if let (Some(a), Some(b)) = (after.passed, before.passed) {
            step["xdp_passed_datagrams"] = json!(a - b);
        }
        step
    }

    /// Memory with `n` tracked destinations: sized for `n`, then filled by
    /// datagrams whose samples go to `n` distinct destinations.
    fn memory(&self, kind: Kind, n: u32) -> Value {
        let opts = StartOptions {
            destinations: n,
            networks: cidrs_covering(n),
            summary_only: true,
        };
        let cand = self.start(kind, &opts);
        let rss_empty = cand.rss_kib();
        let workload = self.sflow.clone().spread(Spread {
            base: "10.0.0.0".parse().unwrap(),
            count: n,
        });
        let datagrams = workload.datagrams_for_destinations(u64::from(n));
        let sent = self.send(&workload, SFLOW_PORT, FILL_RATE, Some(datagrams));
        std::thread::sleep(settle(kind) + Duration::from_millis(500));
        let mut out = json!({
            "key": kind.key(), "destinations": n,
            "sent_datagrams": sent.datagrams,
            "rss_kib_empty": rss_empty,
            "rss_kib_filled": cand.rss_kib(),
        });
        match kind {
            Kind::Xdp => {
                let (dst, total, max) = cand.xdp_map_memory();
                let tracked = edge_sensor::xdp::read::pinned_destinations(cand.pin().unwrap())
                    .map(|d| d.len())
                    .unwrap_or(0);
                out["dst_map_bytes"] = json!(dst);
                out["all_maps_bytes"] = json!(total);
                out["dst_map_max_entries"] = json!(max);
                out["maps"] = json!(cand.xdp_maps());
                out["tracked"] = json!(tracked);
            }
            Kind::User | Kind::UserTuned => {
                let path = self.work.join(kind.key()).join("report.json");
                let _ = cand.snapshot(false);
                let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
                out["tracked"] = v["destination_count"].clone();
            }
            Kind::FastNetMon => {
                let m = cand.prometheus().unwrap_or_default();
                out["monitored_hosts"] = json!(
                    m.get("fastnetmon_total_number_of_hosts")
                        .copied()
                        .unwrap_or(0.0)
                );
                out["samples_processed"] = json!(
                    m.get("fastnetmon_total_simple_packets_processed")
                        .copied()
                        .unwrap_or(0.0)
                );
            }
        }
        cand.stop();
        out
    }
}

/// How long after sending the candidate's counters are complete: the XDP
/// daemon publishes what it decoded itself once a second.
fn settle(kind: Kind) -> Duration {
    match kind {
        Kind::Xdp => Duration::from_millis(1300),
        _ => Duration::from_millis(400),
    }
}

/// Aligned IPv4 prefixes from 10.0.0.0 covering exactly `n` addresses.
fn cidrs_covering(n: u32) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = u32::from(std::net::Ipv4Addr::new(10, 0, 0, 0));
    let mut left = n;
    while left > 0 {
        let size_bits = 31 - left.leading_zeros();
        let align_bits = at.trailing_zeros().min(32);
        let bits = size_bits.min(align_bits);
        out.push(format!("{}/{}", std::net::Ipv4Addr::from(at), 32 - bits));
        at += 1 << bits;
        left -= 1 << bits;
    }
    out
}

/// Per-destination rows of a candidate against the truth's.
fn compare_rows(truth: &Value, got: &Value) -> Value {
    let index = |v: &Value| -> BTreeMap<String, Value> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|r| (r["ip"].as_str().unwrap_or("").to_owned(), r.clone()))
            .collect()
    };
    let (t, g) = (index(truth), index(got));
    let equal = t.iter().filter(|(ip, r)| g.get(*ip) == Some(r)).count();
    let missing = t.keys().filter(|ip| !g.contains_key(*ip)).count();
    let extra = g.keys().filter(|ip| !t.contains_key(*ip)).count();
    let first_difference = t
        .iter()
        .find(|(ip, r)| g.get(*ip).is_some_and(|x| x != *r))
        .map(|(ip, r)| json!({"ip": ip, "truth": r, "got": g[ip]}));
    json!({
        "destinations": t.len(), "equal": equal, "different": t.len() - equal - missing,
        "missing": missing, "extra": extra, "exact": equal == t.len() && extra == 0,
        "first_difference": first_difference,
    })
}
