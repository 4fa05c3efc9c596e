//! `cargo xtask test`: everything CI runs.

use std::process::Command;

use anyhow::{Result, bail};

use crate::{
    ebpf, modules, run,
    util::{self, root},
};

pub fn test(filter: Option<&str>) -> Result<()> {
    util::setup()?;
    if !util::is_root() {
        bail!(
            "the tests load BPF programs and create network namespaces: run as root \
             (e.g. `sudo -E cargo xtask test`)"
        );
    }
    let object = ebpf::build_with(true)?;
    let with_object = |cmd: &mut Command| {
        cmd.env("EDGE_SENSOR_EBPF_OBJECT", &object);
    };

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
    // The XDP program's modules form no cycle; the daemon's are next
    // (issue: "a codebase a newcomer can carry on").
    modules::check_acyclic(&root(), "sensor-ebpf/src")?;

    step("clippy");
    let mut clippy = util::cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    with_object(&mut clippy);
    util::run(&mut clippy)?;

    step("build");
    let bin = run::build(false)?;

    step("tests");
    let mut cmd = util::cargo();
    cmd.args(["test", "--workspace", "--no-fail-fast"])
        .env("EDGE_SENSOR_BIN", &bin)
        // The lab suite drives this very xtask (`xtask lab`).
        .env("EDGE_SENSOR_XTASK_BIN", std::env::current_exe()?);
    with_object(&mut cmd);
    if let Some(filter) = filter {
        cmd.args(["--", filter]);
    }
    util::run(&mut cmd)
}

fn step(name: &str) {
    eprintln!("xtask: == {name}");
}
