//! `build` and `build-and-load`.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::{
    ebpf,
    util::{self, root},
};

/// Builds the XDP object and the `edge-sensor` binary embedding it; returns
/// the binary's path.
pub fn build(release: bool) -> Result<PathBuf> {
    let object = ebpf::build()?;
    let mut cmd = util::cargo();
    cmd.args(["build", "--package", "edge-sensor", "--bin", "edge-sensor"])
        .env("EDGE_SENSOR_EBPF_OBJECT", &object);
    if release {
        cmd.arg("--release");
    }
    util::run(&mut cmd)?;
    let profile = if release { "release" } else { "debug" };
    Ok(target_dir().join(profile).join("edge-sensor"))
}

/// The userspace target directory (honours CARGO_TARGET_DIR).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

pub fn build_and_load(
    iface: &str,
    mode: Option<&str>,
    config: Option<&Path>,
    release: bool,
) -> Result<()> {
    let bin = build(release)?;
    let mut cmd = if util::is_root() {
        Command::new(&bin)
    } else {
        // Loading XDP needs CAP_BPF + CAP_NET_ADMIN.
        let mut sudo = Command::new("sudo");
        sudo.arg("-E").arg(&bin);
        sudo
    };
    cmd.args(["run", "--iface", iface]);
    if let Some(mode) = mode {
        cmd.args(["--mode", mode]);
    }
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", util::describe(&cmd)))?;
    // Ctrl-C reaches the sensor too (same process group); it detaches and
    // exits. This process only waits for it.
    // SAFETY: SIG_IGN is a valid disposition; set after the child started so
    // the child keeps the default one.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    let status = child.wait()?;
    if !status.success() {
        bail!("edge-sensor exited with {status}");
    }
    Ok(())
}
