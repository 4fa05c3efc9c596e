//! `cargo xtask test`: everything CI runs, the kernel matrix last.

use std::process::Command;

use anyhow::{Result, bail};

use crate::{
    ebpf, kernels,
    lint::{self, step},
    run, util,
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

    lint::checks(&object)?;

    step("build");
    let bin = run::build(false)?;
    // The player e2e test plays a 1 Mpps flood in real time: release.
    let player = crate::lab::build_player()?;

    step("tests");
    let mut cmd = util::cargo();
    cmd.args(["test", "--workspace", "--no-fail-fast"])
        .env("EDGE_SENSOR_BIN", &bin)
        .env("EDGE_SENSOR_PLAYER_BIN", &player)
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
