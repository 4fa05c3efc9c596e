//! `cargo xtask lint`: the checks a contributor runs before a commit, as a
//! normal user (no root, no network namespaces): formatting, the module
//! graphs, clippy on the userspace crates and on the XDP program. `cargo
//! xtask test` runs the same first.

use std::{path::Path, process::Command};

use anyhow::{Result, bail};

use crate::{
    ebpf, modules,
    util::{self, root},
};

/// Every check, on the XDP object built first (the userspace crates embed it).
pub fn lint() -> Result<()> {
    let object = ebpf::build_with(true)?;
    checks(&object)
}

/// The checks, with `object` the XDP program the userspace crates embed.
pub fn checks(object: &Path) -> Result<()> {
    step("format check");
    util::run(util::cargo().args(["fmt", "--all", "--", "--check"]))?;
    let ebpf_fmt = Command::new("rustfmt")
        .args(["--edition", "2024", "--check"])
        .arg(root().join("sensor-ebpf/src/main.rs"))
        .status()?;
    if !ebpf_fmt.success() {
        bail!("sensor-ebpf is not formatted: run `rustfmt --edition 2024 sensor-ebpf/src/main.rs`");
    }

    step("module cycles");
    // Data flows one way in both crates: datagram -> counters -> rates ->
    // decisions -> BGP; a cycle means a module reaches back up the stream.
    modules::check_acyclic(&root(), "sensor-ebpf/src")?;
    modules::check_acyclic(&root(), "sensor/src")?;

    step("clippy");
    let mut clippy = util::cargo();
    clippy
        .args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])
        .env("EDGE_SENSOR_EBPF_OBJECT", object);
    util::run(&mut clippy)?;

    step("clippy (XDP program)");
    ebpf::clippy()
}

pub fn step(name: &str) {
    eprintln!("xtask: == {name}");
}
