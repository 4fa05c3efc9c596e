//! `cargo xtask bench`: the benchmarks, measured side by side in one run and
//! reported as ratios (target/bench/*.md, *.json). Not a test: nothing here
//! passes or fails on speed.

use std::fs;

use anyhow::{Context, Result, bail};

use crate::{
    ebpf, run,
    util::{self, root},
};

pub fn bench() -> Result<()> {
    util::setup()?;
    if !util::is_root() {
        bail!("the benchmarks run the XDP program (BPF_PROG_TEST_RUN): run as root");
    }
    let object = ebpf::build()?;
    run::build(true)?;
    let dir = run::target_dir().join("bench");
    fs::create_dir_all(&dir)?;
    let json = dir.join("decode.json");
    let out = util::cargo()
        .args([
            "run",
            "--quiet",
            "--release",
            "--package",
            "edge-sensor-tests",
            "--bin",
            "bench-decode",
            "--",
        ])
        .arg(&json)
        .env("EDGE_SENSOR_EBPF_OBJECT", &object)
        .output()
        .context("running bench-decode")?;
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        bail!("bench-decode failed");
    }
    let markdown = String::from_utf8_lossy(&out.stdout);
    print!("{markdown}");
    fs::write(dir.join("decode.md"), markdown.as_bytes())?;
    eprintln!(
        "bench: report in {}",
        dir.join("decode.md")
            .strip_prefix(root())
            .unwrap_or(&dir)
            .display()
    );
    Ok(())
}
