//! `cargo xtask test`: everything CI runs, the kernel matrix last.

use std::process::Command;

use anyhow::{Result, bail};

use crate::{
    ebpf, kernels, modules, run,
    util::{self, root},
};

pub fn test(filter: Option<&str>, host_only: bool) -> Result<()> {
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
    let host_tests = util::run(&mut cmd);
    if filter.is_some() {
        return host_tests;
    }

    // Run even when the host's tests failed: the matrix tells on which
    // kernels the program loads, which is what a failure here often needs.
    step("kernel matrix");
    let matrix = kernels::for_test(&object, host_only);
    match (host_tests, matrix) {
        (Ok(()), matrix) => matrix,
        (Err(host), Ok(())) => Err(host),
        (Err(host), Err(matrix)) => Err(anyhow::anyhow!(
            "{host:#}; and the kernel matrix: {matrix:#}"
        )),
    }
}

fn step(name: &str) {
    eprintln!("xtask: == {name}");
}
