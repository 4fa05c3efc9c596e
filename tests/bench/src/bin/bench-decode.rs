//! `cargo xtask bench` (decode part): nanoseconds per datagram and per
//! sample of the XDP program (BPF_PROG_TEST_RUN with `repeat`, timed by the
//! kernel) against the userspace decoder, on the same datagrams,
//! in one run: sFlow per sample, NetFlow v9/IPFIX per record. Prints
//! Markdown; writes JSON to the path given as argument.

use std::{net::IpAddr, path::PathBuf, time::Instant};

use aya::programs::{TestRun, TestRunOptions};
use edge_sensor::{
    config::TelemetryConfig,
    decode::passed_to_daemon,
    pcap,
    telemetry::{UserDecoder, Verdict, frame, template::Session},
    xdp::{LoadOptions, Sensor},
};
use edge_sensor_common::TelemetryKind;
use edge_sensor_tests::{
    frame::*,
    sflow::{Datagram, Record, Sample},
};

/// Kernel-side repetitions per datagram (the kernel reports the mean).
const XDP_REPEAT: u32 = 20_000;
/// Userspace passes over the whole set.
const USER_PASSES: u32 = 2_000;
/// Rounds of both; the fastest counts.
const ROUNDS: u32 = 5;

/// What a set's datagrams carry: sFlow samples or v9/IPFIX records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Sample,
    Record,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Self::Sample => "sample",
            Self::Record => "record",
        }
    }
}

struct Set {
    name: String,
    unit: Unit,
    /// Frames that teach the decoders (v9/IPFIX templates and options),
    /// run once before timing.
    setup: Vec<Vec<u8>>,
    /// The frames timed: every one is taken and counted by the kernel.
    frames: Vec<Vec<u8>>,
}

/// A datagram as a busy switch sends it: 7 flow samples, each a 128-byte
/// Ethernet header plus an extended_switch record (about 1.4 kB).
fn realistic() -> Set {
    let mut frames = Vec::new();
    for seq in 0..16u32 {
        let samples = (0..7u8)
            .map(|i| {
                let mut tcp = vec![0u8; 20 + 1400];
                tcp[12] = 5 << 4;
                tcp[13] = if i % 2 == 0 { 0x02 } else { 0x10 };
                let pkt = ethernet(
                    &[(ETH_P_8021Q, 10)],
                    ETH_P_IPV4,
                    &ipv4(
                        [192, 0, 2, i],
                        [203, 0, 113, (seq % 8) as u8],
                        IPPROTO_TCP,
                        &tcp,
                    ),
                );
                Sample::flow(
                    1000,
                    vec![
                        Record::Other {
                            format: 1001,
                            body: vec![0; 16],
                        },
                        Record::ethernet(&pkt, 128),
                    ],
                )
            })
            .collect();
        let payload = Datagram::new(seq + 1, samples).encode();
        frames.push(ethernet(
            &[],
            ETH_P_IPV4,
            &ipv4(
                [198, 18, 7, 1],
                [198, 18, 7, 2],
                IPPROTO_UDP,
                &udp(50000, 6343, &payload),
            ),
        ));
    }
    Set {
        name: "synthetic switch, 7 samples x 128 B header".into(),
        unit: Unit::Sample,
        setup: Vec::new(),
        frames,
    }
}

fn telemetry_frames(path: &str, ports: &[(u16, TelemetryKind)]) -> Vec<Vec<u8>> {
    pcap::ethernet_frames(&edge_sensor_tests::shared_captures().join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .into_iter()
        .filter(|f| {
            frame::telemetry_datagram(f, |p| ports.iter().find(|(q, _)| *q == p).map(|(_, k)| *k))
                .is_some()
        })
        .collect()
}

fn capture(path: &str, ports: &[(u16, TelemetryKind)]) -> Set {
    let frames: Vec<_> = telemetry_frames(path, ports)
        .into_iter()
        .filter(|f| {
            frame::telemetry_datagram(f, |p| (p == 6343).then_some(TelemetryKind::Sflow)).is_some()
        })
        .collect();
    Set {
        name: path.into(),
        unit: Unit::Sample,
        setup: Vec::new(),
        frames,
    }
}

/// A v9/IPFIX capture: the whole capture teaches both decoders (templates,
/// options); the frames timed are the data datagrams the kernel then takes
/// (a plan for every set), as they arrive once the templates are known.
fn flow_capture(path: &str, ports: &[(u16, TelemetryKind)]) -> Set {
    let all = telemetry_frames(path, ports);
    let mut sensor = load(ports, None);
    let mut daemon = UserDecoder::new(ports, &[], false).behind_kernel();
    let mut taken = Vec::new();
    // Two passes: the first learns the templates (the daemon compiles the
    // plans from what the kernel passes on), the second finds the frames
    // the kernel takes with them.
    for pass in 0..2 {
        for f in &all {
            if xdp_once(&sensor, f) == XDP_DROP {
                if pass == 1 {
                    taken.push(f.clone());
                }
                continue;
            }
            let d = frame::telemetry_datagram(f, |p| {
                ports.iter().find(|(q, _)| *q == p).map(|(_, k)| *k)
            });
            if let Some(d) = d.filter(passed_to_daemon) {
                let before = daemon.templates().generation();
                daemon.datagram(&d);
                if daemon.templates().generation() != before {
                    sensor
                        .sync_template_plans(daemon.templates())
                        .expect("sync plans");
                }
            }
        }
    }
    Set {
        name: path.into(),
        unit: Unit::Record,
        setup: all,
        frames: taken,
    }
}

/// Records in a [`dense`] datagram: about what fills a 1500-byte MTU with
/// softflowd's 40-byte IPv4 records, as a busy router sends them.
const DENSE_RECORDS: usize = 32;

/// `set` with every timed datagram rebuilt to carry [`DENSE_RECORDS`]
/// records of its single data set (its own records, cycled): the cost of a
/// record with the datagram's fixed cost spread thin. Same exporter, ports
/// and template, so the same plans apply.
fn dense(set: &Set, ports: &[(u16, TelemetryKind)]) -> Set {
    let mut frames = Vec::new();
    let mut learn = UserDecoder::new(ports, &[], false);
    for f in &set.setup {
        learn.frame(f);
    }
    for f in &set.frames {
        let d =
            frame::telemetry_datagram(f, |p| ports.iter().find(|(q, _)| *q == p).map(|(_, k)| *k))
                .expect("a telemetry frame");
        let msg = d.payload;
        let v9 = msg[..2] == [0, 9];
        let start = if v9 { 20 } else { 16 };
        let set_len = usize::from(u16::from_be_bytes([msg[start + 2], msg[start + 3]]));
        let session = Session {
            ip: d.src,
            port: d.src_port,
        };
        let Some(n) = learn.templates().kernel_records(session, msg) else {
            continue;
        };
        let n = n as usize;
        // One set, no padding: the records are the set's body, evenly cut.
        if start + set_len != msg.len() || n == 0 || (set_len - 4) % n != 0 {
            continue;
        }
        let rl = (set_len - 4) / n;
        let body = &msg[start + 4..start + set_len];
        let mut out = msg[..start + 4].to_vec();
        for i in 0..DENSE_RECORDS {
            let r = i % n;
            out.extend_from_slice(&body[r * rl..(r + 1) * rl]);
        }
        let new_set = u16::try_from(4 + DENSE_RECORDS * rl).expect("set length");
        out[start + 2..start + 4].copy_from_slice(&new_set.to_be_bytes());
        if v9 {
            // v9's count: the records in the message (RFC 3954 §5.1).
            out[2..4].copy_from_slice(&(DENSE_RECORDS as u16).to_be_bytes());
        } else {
            let len = u16::try_from(out.len()).expect("message length");
            out[2..4].copy_from_slice(&len.to_be_bytes());
        }
        let dst = match d.src {
            IpAddr::V4(_) => IpAddr::from([198, 18, 7, 2]),
            IpAddr::V6(_) => IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 2]),
        };
        frames.push(udp_frame(d.src, dst, d.src_port, d.port, &out));
    }
    Set {
        name: format!("{}, {DENSE_RECORDS} records per datagram", set.name),
        unit: Unit::Record,
        setup: set.setup.clone(),
        frames,
    }
}

const XDP_DROP: u32 = 1;

fn load(ports: &[(u16, TelemetryKind)], object: Option<&[u8]>) -> Sensor {
    let mut opts = LoadOptions::unpinned(1 << 16);
    opts.ports = ports.to_vec();
    match object {
        None => Sensor::load(&opts),
        Some(o) => Sensor::load_object(&opts, o),
    }
    .unwrap_or_else(|e| panic!("load: {e:#?} (run as root)"))
}

/// Earlier builds of the program timed beside this one on the same
/// datagrams: `EDGE_SENSOR_BENCH_BEFORE=LABEL=OBJECT[,LABEL=OBJECT]`
/// (objects with the same map and table layouts, e.g. the per-CPU
/// destination counters of before issue 16).
fn before_objects() -> Vec<(String, Vec<u8>)> {
    std::env::var("EDGE_SENSOR_BENCH_BEFORE")
        .ok()
        .into_iter()
        .flat_map(|v| {
            v.split(',')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (label, path) = p.split_once('=').expect("LABEL=OBJECT");
                    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
                    (label.to_owned(), bytes)
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Kernel-timed nanoseconds of `f` through `sensor`, `XDP_REPEAT` runs.
fn xdp_timed(sensor: &Sensor, f: &[u8], strict: bool, set: &str) -> f64 {
    let r = sensor
        .program()
        .test_run(TestRunOptions {
            data_in: Some(f),
            repeat: XDP_REPEAT,
            ..Default::default()
        })
        .expect("test run");
    assert!(
        !strict || r.return_value == XDP_DROP,
        "{set}: the kernel did not take a timed datagram"
    );
    r.duration.as_nanos() as f64
}

fn xdp_once(sensor: &Sensor, f: &[u8]) -> u32 {
    sensor
        .program()
        .test_run(TestRunOptions {
            data_in: Some(f),
            ..Default::default()
        })
        .expect("test run")
        .return_value
}

struct Row {
    name: String,
    unit: Unit,
    datagrams: usize,
    /// Samples or records in one pass over the timed frames.
    items: u64,
    xdp_ns: f64,
    user_ns: f64,
    /// The earlier builds' ns per datagram, by label.
    before_ns: Vec<(String, f64)>,
}

fn main() {
    let out = std::env::args().nth(1).map(PathBuf::from);
    // The default ports, and those the pmacct captures were sent to (NetFlow
    // ports take v5, v9 and IPFIX alike).
    let mut ports: Vec<_> = TelemetryConfig::default().ports().collect();
    ports.extend([
        (2100, TelemetryKind::Netflow),
        (9991, TelemetryKind::Netflow),
    ]);
    let softflowd_v10 = flow_capture("lab/softflowd-1.1.0_v10.pcap", &ports);
    let softflowd_v9 = flow_capture("lab/softflowd-1.1.0_v9.pcap", &ports);
    let pmacct_v10 = flow_capture("lab/pmacct-1.7.7_nfprobe_v10.pcap", &ports);
    let sets = [
        realistic(),
        capture("lab/pmacct-1.7.7_sfprobe_v5_rate1.pcap", &ports),
        capture("lab/pmacct-1.7.7_sfprobe_v5_ipv6-agent.pcap", &ports),
        capture("public/pktvisor/sflow_keyed.pcap", &ports),
        dense(&softflowd_v10, &ports),
        dense(&softflowd_v9, &ports),
        dense(&pmacct_v10, &ports),
        softflowd_v10,
        pmacct_v10,
        flow_capture("lab/pmacct-1.7.7_nfprobe_ipfix_sampling10.pcap", &ports),
        softflowd_v9,
        flow_capture("lab/pmacct-1.7.7_nfprobe_v9.pcap", &ports),
        flow_capture(
            "public/pmacct-test-automation/100-IPFIXv10-CISCO.pcap",
            &ports,
        ),
    ];

    // `BENCH_DECODE_ONLY=SUBSTR` times only the sets whose name has it
    // (to profile one, e.g. under `perf record`).
    let only = std::env::var("BENCH_DECODE_ONLY").ok();
    let sets: Vec<_> = sets
        .into_iter()
        .filter(|s| only.as_ref().is_none_or(|o| s.name.contains(o.as_str())))
        .collect();
    let before = before_objects();
    let mut rows = Vec::new();
    // Captures whose data the kernel never takes (no plan: e.g. a template
    // with a variable-length field), named under the table.
    let mut untaken = Vec::new();
    for set in &sets {
        if set.frames.is_empty() {
            assert_eq!(set.unit, Unit::Record, "{}: no frame", set.name);
            untaken.push(set.name.clone());
            continue;
        }
        // The XDP program with the set's plans (learnt from its setup
        // frames, as the daemon would), and a userspace decoder that has
        // seen the same setup.
        let mut sensor = load(&ports, None);
        let mut daemon = UserDecoder::new(&ports, &[], false).behind_kernel();
        let mut user = UserDecoder::new(&ports, &[], false);
        for f in &set.setup {
            user.frame(f);
            if xdp_once(&sensor, f) != XDP_DROP {
                daemon.frame(f);
                sensor
                    .sync_template_plans(daemon.templates())
                    .expect("sync plans");
            }
        }
        // The earlier builds, taught the same setup.
        let mut earlier: Vec<(String, Sensor)> = before
            .iter()
            .map(|(label, object)| {
                let mut s = load(&ports, Some(object));
                let mut d = UserDecoder::new(&ports, &[], false).behind_kernel();
                for f in &set.setup {
                    if xdp_once(&s, f) != XDP_DROP {
                        d.frame(f);
                        s.sync_template_plans(d.templates()).expect("sync plans");
                    }
                }
                (label.clone(), s)
            })
            .collect();
        let mut before_total_ns = vec![f64::INFINITY; earlier.len()];
        // Samples or records per pass over the timed frames.
        let counted = |u: &UserDecoder| -> u64 {
            u.report
                .exporters
                .values()
                .map(|t| match set.unit {
                    Unit::Sample => t.stats.samples,
                    Unit::Record => t.stats.records,
                })
                .sum()
        };
        let mut probe = user.clone();
        let before = counted(&probe);
        // The sFlow sets are timed whole (some datagrams carry nothing to
        // count); a v9/IPFIX set only what the kernel takes.
        let strict = set.unit == Unit::Record;
        for f in &set.frames {
            let v = probe.frame(f);
            assert!(
                !strict || v == Verdict::Drop,
                "{}: the userspace decoder leaves a timed datagram uncounted",
                set.name
            );
        }
        let items = counted(&probe) - before;

        // The fastest of ROUNDS rounds, each engine in turn: on a shared
        // machine the mean of one round carries whatever else ran then.
        let mut xdp_total_ns = f64::INFINITY;
        let mut user_total_ns = f64::INFINITY;
        for _ in 0..ROUNDS {
            let mut round = 0f64;
            for f in &set.frames {
                let r = sensor
                    .program()
                    .test_run(TestRunOptions {
                        data_in: Some(f),
                        repeat: XDP_REPEAT,
                        ..Default::default()
                    })
                    .expect("test run");
                assert!(
                    !strict || r.return_value == XDP_DROP,
                    "{}: the kernel did not take a timed datagram",
                    set.name
                );
                round += r.duration.as_nanos() as f64;
            }
            xdp_total_ns = xdp_total_ns.min(round);
            for (i, (_, s)) in earlier.iter_mut().enumerate() {
                let round: f64 = set
                    .frames
                    .iter()
                    .map(|f| xdp_timed(s, f, strict, &set.name))
                    .sum();
                before_total_ns[i] = before_total_ns[i].min(round);
            }

            let start = Instant::now();
            for _ in 0..USER_PASSES {
                for f in &set.frames {
                    std::hint::black_box(user.frame(std::hint::black_box(f)));
                }
            }
            user_total_ns =
                user_total_ns.min(start.elapsed().as_nanos() as f64 / f64::from(USER_PASSES));
        }

        rows.push(Row {
            name: set.name.clone(),
            unit: set.unit,
            datagrams: set.frames.len(),
            items,
            xdp_ns: xdp_total_ns / set.frames.len() as f64,
            user_ns: user_total_ns / set.frames.len() as f64,
            before_ns: earlier
                .iter()
                .zip(&before_total_ns)
                .map(|((l, _), t)| (l.clone(), t / set.frames.len() as f64))
                .collect(),
        });
    }

    println!("## Decode cost: XDP program vs userspace decoder\n");
    println!(
        "XDP: BPF_PROG_TEST_RUN, {XDP_REPEAT} repeats per datagram (kernel-timed mean). Userspace: the userspace decoder, {USER_PASSES} passes, same frames, same process. Each the fastest of {ROUNDS} rounds, the engines in turn. Neither includes receive costs (driver, socket). v9/IPFIX: the datagrams the kernel takes once the capture's templates are known (plans compiled by the daemon's decoder), each datagram repeated as is (same sequence number).\n"
    );
    println!(
        "| datagrams | count | unit | units/datagram | XDP ns/datagram | user ns/datagram | XDP ns/unit | user ns/unit | user / XDP |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|");
    let mut json = Vec::new();
    for r in &rows {
        let per = r.items as f64 / r.datagrams as f64;
        let (xs, us) = if per > 0.0 {
            (r.xdp_ns / per, r.user_ns / per)
        } else {
            (f64::NAN, f64::NAN)
        };
        println!(
            "| {} | {} | {} | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} |",
            r.name,
            r.datagrams,
            r.unit.name(),
            per,
            r.xdp_ns,
            r.user_ns,
            xs,
            us,
            r.user_ns / r.xdp_ns
        );
        json.push(serde_json::json!({
            "set": r.name, "unit": r.unit.name(), "datagrams": r.datagrams,
            "units_per_datagram": per,
            "xdp_ns_per_datagram": r.xdp_ns, "user_ns_per_datagram": r.user_ns,
            "xdp_ns_per_unit": xs, "user_ns_per_unit": us,
            "user_over_xdp": r.user_ns / r.xdp_ns,
        }));
    }
    if !before.is_empty() {
        println!(
            "\nThe same datagrams through earlier builds of the program, in the same rounds (XDP ns per datagram; ratio = earlier / this build, above 1: this build is faster):\n"
        );
        let labels: Vec<&str> = before.iter().map(|(l, _)| l.as_str()).collect();
        println!(
            "| datagrams | this build | {} |",
            labels
                .iter()
                .map(|l| format!("{l} | ratio"))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        println!("|---|---:|{}", "---:|---:|".repeat(labels.len()));
        for (r, j) in rows.iter().zip(json.iter_mut()) {
            let cells: Vec<String> = r
                .before_ns
                .iter()
                .map(|(_, ns)| format!("{ns:.0} | {:.2}", ns / r.xdp_ns))
                .collect();
            println!("| {} | {:.0} | {} |", r.name, r.xdp_ns, cells.join(" | "));
            j["before_xdp_ns_per_datagram"] = serde_json::json!(
                r.before_ns
                    .iter()
                    .map(|(l, ns)| (l.clone(), *ns))
                    .collect::<std::collections::BTreeMap<_, _>>()
            );
        }
    }
    if !untaken.is_empty() {
        println!(
            "\nNot in the table, the kernel takes none of their data datagrams (left to the daemon): {}.",
            untaken.join(", ")
        );
    }
    if let Some(path) = out {
        std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).expect("write JSON");
        eprintln!("bench: wrote {}", path.display());
    }
}
