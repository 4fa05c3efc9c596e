//! Building the XDP object for bpfel-unknown-none.
//!
//! Two toolchains can do it, detected in this order:
//! * Debian's rustc-web (`/usr/bin/rustc`, `/usr/bin/cargo`) with the
//!   precompiled `core` for bpfel-unknown-none (libstd-rust-web-dev-bpf);
//!   its unstable features need `RUSTC_BOOTSTRAP=1`. bpf-linker must be built
//!   against the same LLVM major as this rustc (scripts/setup does that).
//! * rustup nightly with the rust-src component (`-Z build-std=core`).
//!
//! `EDGE_SENSOR_EBPF_TOOLCHAIN=debian|nightly` forces one. When neither is
//! present, scripts/setup installs the Debian one.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::util::{self, root};

const TARGET: &str = "bpfel-unknown-none";
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const DEBIAN_CLIPPY: &str = "/usr/bin/cargo-clippy";
const DEBIAN_BPF_CORE: &str = "/usr/lib/rustlib/bpfel-unknown-none/lib";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Toolchain {
    /// Debian's rustc; LLVM major version it was built with.
    Debian {
        llvm_major: u32,
    },
    RustupNightly,
}

/// Where the built object lands.
pub fn object_path() -> PathBuf {
    root()
        .join("target/ebpf")
        .join(TARGET)
        .join("release/edge-sensor")
}

fn debian() -> Option<Toolchain> {
    if !(Path::new(DEBIAN_RUSTC).exists()
        && Path::new(DEBIAN_CARGO).exists()
        && Path::new(DEBIAN_BPF_CORE).exists())
    {
        return None;
    }
    let out = Command::new(DEBIAN_RUSTC).arg("-vV").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let llvm_major = text
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))?
        .split('.')
        .next()?
        .parse()
        .ok()?;
    Some(Toolchain::Debian { llvm_major })
}

fn nightly_with_rust_src() -> Option<Toolchain> {
    let out = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    sysroot
        .join("lib/rustlib/src/rust/library/core")
        .exists()
        .then_some(Toolchain::RustupNightly)
}

fn have_bpf_linker() -> bool {
    Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn detect() -> Result<Option<Toolchain>> {
    let found = match std::env::var("EDGE_SENSOR_EBPF_TOOLCHAIN").as_deref() {
        Ok("debian") => debian(),
        Ok("nightly") => nightly_with_rust_src(),
        Ok(other) => bail!("EDGE_SENSOR_EBPF_TOOLCHAIN={other}: expected debian or nightly"),
        Err(_) => debian().or_else(nightly_with_rust_src),
    };
    Ok(found.filter(|_| have_bpf_linker()))
}

fn toolchain() -> Result<Toolchain> {
    if let Some(t) = detect()? {
        return Ok(t);
    }
    eprintln!("xtask: no eBPF toolchain found; running scripts/setup");
    util::setup()?;
    detect()?.context(
        "no eBPF toolchain after scripts/setup: need Debian's rustc-web + libstd-rust-web-dev-bpf \
         (or rustup nightly with rust-src) and bpf-linker on PATH",
    )
}

/// Builds the XDP object; returns its path.
pub fn build() -> Result<PathBuf> {
    build_with(false)
}

/// Builds the XDP object, with warnings as errors if `deny_warnings`.
pub fn build_with(deny_warnings: bool) -> Result<PathBuf> {
    let tc = toolchain()?;
    let mut cmd = cargo(tc, "build")?;
    // BTF is load-bearing: subprograms and bpf_loop callbacks need func_info.
    cmd.env(
        "CARGO_ENCODED_RUSTFLAGS",
        if deny_warnings {
            "-Cdebuginfo=2\x1f-Clink-arg=--btf\x1f-Dwarnings"
        } else {
            "-Cdebuginfo=2\x1f-Clink-arg=--btf"
        },
    );
    util::run(&mut cmd).context("building the XDP program (sensor-ebpf)")?;
    let object = object_path();
    if !object.exists() {
        bail!(
            "the eBPF build succeeded but {} is missing",
            object.display()
        );
    }
    Ok(object)
}

/// Clippy on the XDP program, for its target, warnings denied. Debian's
/// clippy (rust-web-clippy) matches Debian's rustc; rustup's would not, so
/// its `cargo-clippy` is called by path (cargo would find rustup's first).
pub fn clippy() -> Result<()> {
    let tc = toolchain()?;
    let mut cmd = cargo(tc, "clippy")?;
    cmd.args(["--", "-D", "warnings"]);
    util::run(&mut cmd).context("clippy on the XDP program (sensor-ebpf)")
}

/// `cargo <subcommand>` of the eBPF toolchain in sensor-ebpf, for its
/// target, with the environment a userspace build may have set removed.
fn cargo(tc: Toolchain, subcommand: &str) -> Result<Command> {
    let root = root();
    let mut cmd;
    match tc {
        Toolchain::Debian { llvm_major } => {
            if subcommand == "clippy" {
                if !Path::new(DEBIAN_CLIPPY).exists() {
                    util::setup()?;
                }
                cmd = Command::new(DEBIAN_CLIPPY);
                cmd.env("CARGO", DEBIAN_CARGO);
            } else {
                cmd = Command::new(DEBIAN_CARGO);
            }
            let path = std::env::var_os("PATH").unwrap_or_default();
            let mut paths = vec![PathBuf::from(format!("/usr/lib/llvm-{llvm_major}/bin"))];
            paths.extend(std::env::split_paths(&path));
            cmd.env("PATH", std::env::join_paths(paths)?)
                .env("RUSTC", DEBIAN_RUSTC)
                .env("RUSTC_BOOTSTRAP", "1");
        }
        Toolchain::RustupNightly => {
            cmd = Command::new("rustup");
            cmd.args(["run", "nightly", "cargo"]).env_remove("RUSTC");
        }
    }
    cmd.current_dir(root.join("sensor-ebpf"))
        .args([subcommand, "--release", "--locked", "--target", TARGET])
        .arg("--target-dir")
        .arg(root.join("target/ebpf"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET");
    if tc == Toolchain::RustupNightly {
        cmd.args(["-Z", "build-std=core"]);
    }
    Ok(cmd)
}
