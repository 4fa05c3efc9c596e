//! `cargo xtask bench`: the benchmarks, measured side by side in one run
//! (target/bench/report.{md,json,svg}, decode.{md,json}). Not a test:
//! nothing here passes or fails on speed.
//!
//! 1. Collectors (`bench-collect`): the XDP path, the userspace path of the
//!    same binary and FastNetMon Community, fed real captures by the replay
//!    generator over a veth: sustained rate, CPU per sample, counter
//!    accuracy, memory by tracked destinations.
//! 2. Decode cost (`bench-decode`): the XDP program (BPF_PROG_TEST_RUN) and
//!    the userspace decoder on the same datagrams, receive costs excluded.
//! 3. Time to detection and to the rule on the router, beside FastNetMon's
//!    ban, in the lab (`bench_timing`).
//! 4. Detection under sampling noise (`edge-sensor-detection-report`, run
//!    last): a simulated day of normal traffic with flash crowds on 10,000
//!    hosts, the attack set and time to detect against attack size, at
//!    1:1000, 1:4096 and 1:16384 (target/bench/detection/).
//! 5. Full table (`bench-rib`): a BIRD 2 feeder sends ~1M IPv4 + ~250k
//!    IPv6 prefixes with two paths each (Add-Path) to the daemon and to a
//!    BIRD 2 receiver in turn: time to the full table, CPU, peak and steady
//!    RSS, bytes per path, longest-match queries per second
//!    (target/bench/rib.{md,json}). `cargo xtask bench --only rib
//!    [--quick]` runs it alone (`--quick`: a tenth of the table).
//! 6. Several sensors (`bench-cluster`, issue 17): time to the rule for a
//!    flood split over 1, 2, 3 clustered sensors against one sensor seeing
//!    it all, the failover gap (owner SIGKILLed), and the summary traffic
//!    on NATS per sensor by destinations in the summary and tracked (to
//!    1M tracked, with the daemon's RSS, CPU and poll time; about 7
//!    minutes on 2 CPUs; target/bench/cluster.{md,json}). `cargo xtask
//!    bench --only cluster [--quick]` runs it alone (`--quick`: one
//!    repetition, small N, no 1M).

use std::{fs, path::Path, process::Command};

use anyhow::{Context, Result, bail};

use crate::{
    ebpf, run,
    util::{self, root},
};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Only this item: `rib` (the full-table benchmark) or `cluster`
    /// (several sensors).
    #[arg(long, value_parser = ["rib", "cluster"])]
    only: Option<String>,
    /// The full-table benchmark on a tenth of the table (100k IPv4 + 25k
    /// IPv6 prefixes); the cluster benchmark with one repetition and small N.
    #[arg(long)]
    quick: bool,
}

pub fn bench(args: BenchArgs) -> Result<()> {
    util::setup()?;
    if !util::is_root() {
        bail!("the benchmarks load XDP programs and create network namespaces: run as root");
    }
    let object = ebpf::build()?;
    let sensor = run::build(true)?;
    let dir = run::target_dir().join("bench");
    fs::create_dir_all(&dir)?;
    if args.only.as_deref() == Some("rib") {
        rib(&object, &sensor, &dir, args.quick)?;
        eprintln!("bench: report in {}", shown(&dir.join("rib.md")));
        return Ok(());
    }
    if args.only.as_deref() == Some("cluster") {
        cluster(&object, &sensor, &dir, args.quick)?;
        eprintln!("bench: report in {}", shown(&dir.join("cluster.md")));
        return Ok(());
    }

    let collect = bench_bin("bench-collect", &object)
        .arg(&dir)
        .env("EDGE_SENSOR_BIN", &sensor)
        .status()
        .context("running bench-collect")?;
    if !collect.success() {
        bail!("bench-collect failed ({collect})");
    }

    let out = bench_bin("bench-decode", &object)
        .arg(dir.join("decode.json"))
        .output()
        .context("running bench-decode")?;
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        bail!("bench-decode failed");
    }
    let decode = String::from_utf8_lossy(&out.stdout);
    print!("{decode}");
    fs::write(dir.join("decode.md"), decode.as_bytes())?;
    // Item 3: time to detection and to the rule on the router, beside
    // FastNetMon's ban, in the lab.
    let player = crate::lab::build_player()?;
    let timing = crate::bench_timing::timing(&sensor, &player, &dir)?;
    print!("{timing}");
    let report = dir.join("report.md");
    let mut md = fs::read_to_string(&report).context("bench-collect wrote no report.md")?;
    md.push('\n');
    md.push_str(&decode);
    md.push_str("\n## Time to detection and to the rule on the router\n\n");
    md.push_str(&timing);
    cluster(&object, &sensor, &dir, args.quick)?;
    md.push('\n');
    md.push_str(
        &fs::read_to_string(dir.join("cluster.md")).context("bench-cluster wrote no cluster.md")?,
    );
    rib(&object, &sensor, &dir, args.quick)?;
    let rib_md = fs::read_to_string(dir.join("rib.md")).context("bench-rib wrote no rib.md")?;
    // Last: the simulated day is the longest item and the only one whose
    // figures do not depend on the machine's load (a simulated clock).
    md.push_str(&detection(&dir)?);
    md.push('\n');
    md.push_str(&rib_md);
    fs::write(&report, md)?;
    eprintln!("bench: report in {}", shown(&report));
    Ok(())
}

/// Item 5: the full table into the daemon and into BIRD 2
/// (`dir/rib.{md,json}`).
fn rib(object: &Path, sensor: &Path, dir: &Path, quick: bool) -> Result<()> {
    eprintln!("xtask: bench: a full table into edge-sensor and BIRD 2 (bench-rib)");
    let mut cmd = bench_bin("bench-rib", object);
    cmd.arg(dir).env("EDGE_SENSOR_BIN", sensor);
    if quick {
        cmd.arg("--quick");
    }
    let status = cmd.status().context("running bench-rib")?;
    if !status.success() {
        bail!("bench-rib failed ({status})");
    }
    Ok(())
}

/// Item 6: several sensors on NATS JetStream (`dir/cluster.{md,json}`).
fn cluster(object: &Path, sensor: &Path, dir: &Path, quick: bool) -> Result<()> {
    eprintln!("xtask: bench: several sensors on NATS JetStream (bench-cluster)");
    let mut cmd = bench_bin("bench-cluster", object);
    cmd.arg(dir).env("EDGE_SENSOR_BIN", sensor);
    if quick {
        cmd.arg("--quick");
    }
    let status = cmd.status().context("running bench-cluster")?;
    if !status.success() {
        bail!("bench-cluster failed ({status})");
    }
    Ok(())
}

/// Item 4: the detection report into `dir/detection`; returns it as a
/// section of the bench report (headings one level down, plots by path).
fn detection(dir: &Path) -> Result<String> {
    let out = dir.join("detection");
    eprintln!(
        "xtask: bench: detection under sampling noise (a simulated day; about 20 minutes on 2 CPUs)"
    );
    let status = util::cargo()
        .args([
            "run",
            "--quiet",
            "--release",
            "--package",
            "edge-sensor-detection",
            "--bin",
            "edge-sensor-detection-report",
            "--",
            "--out",
        ])
        .arg(&out)
        .status()
        .context("running edge-sensor-detection-report")?;
    if !status.success() {
        bail!("edge-sensor-detection-report failed ({status})");
    }
    let text = fs::read_to_string(out.join("detection.md"))
        .context("the detection report wrote no detection.md")?;
    let mut md = String::from("\n");
    for line in text.lines() {
        let line = line.replace("](time-to-detect.svg)", "](detection/time-to-detect.svg)");
        if line.starts_with('#') {
            md.push('#');
        }
        md.push_str(&line);
        md.push('\n');
    }
    Ok(md)
}

/// `cargo run --release` of one of the benchmark binaries.
fn bench_bin(name: &str, object: &Path) -> Command {
    let mut cmd = util::cargo();
    cmd.args([
        "run",
        "--quiet",
        "--release",
        "--package",
        "edge-sensor-bench",
        "--bin",
        name,
        "--",
    ])
    .env("EDGE_SENSOR_EBPF_OBJECT", object);
    cmd
}

fn shown(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}
