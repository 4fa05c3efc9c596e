//! Project tasks: `cargo xtask <task>`. See `cargo xtask --help`.

mod bench;
mod bench_timing;
mod deb;
mod ebpf;
mod kernels;
mod lab;
mod lint;
mod modules;
mod run;
mod test;
mod util;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "edge-sensor project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install every system package and tool the project needs (scripts/setup).
    Setup,
    /// Build the XDP object (target/ebpf/.../edge-sensor).
    BuildEbpf,
    /// Build the XDP object and the `edge-sensor` binary that embeds it.
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Build, load and attach to IFACE; runs in the foreground until Ctrl-C.
    BuildAndLoad {
        #[arg(long)]
        iface: String,
        /// native or skb; default: native, falling back to skb.
        #[arg(long)]
        mode: Option<String>,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        release: bool,
    },
    /// Format, module-graph and clippy checks (the XDP program's too); no
    /// root needed.
    Lint,
    /// Everything: format and lint checks, unit, verifier, XDP test-run and
    /// netns tests, then the kernel matrix (see `kernels`).
    Test {
        /// Only run tests whose name contains this (skips the kernel matrix).
        filter: Option<String>,
        /// Run the kernel-dependent tests on the host's kernel only, not on
        /// Debian's kernels under qemu (also: EDGE_SENSOR_KERNELS=host).
        #[arg(long)]
        host_only: bool,
    },
    /// The kernel-dependent tests on Debian's packaged kernels under qemu and
    /// on the host's kernel; a kernel x program table (target/kernels/).
    Kernels(kernels::KernelsArgs),
    /// Inside a test guest: runs the kernel-dependent tests (started by the
    /// guest's /init).
    #[command(hide = true)]
    KernelGuest {
        #[arg(long)]
        bin_dir: PathBuf,
    },
    /// Benchmarks, measured side by side in one run, reported as ratios.
    Bench(bench::BenchArgs),
    /// The Debian package target/deb/edge-sensor_<version>_amd64.deb,
    /// checked with lintian.
    Deb {
        /// Package the debug build (quick; what the install test does).
        #[arg(long)]
        debug: bool,
    },
    /// The module dependency graph of a crate and its cycles (default: the XDP program).
    Modules {
        #[arg(default_value = "sensor-ebpf/src")]
        src: String,
    },
    /// A self-contained lab: router and collector namespaces, a real sFlow
    /// exporter, the sensor on the collector's veth, live counters.
    Lab(lab::LabArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => util::setup(),
        Task::BuildEbpf => ebpf::build().map(|_| ()),
        Task::Build { release } => run::build(release).map(|_| ()),
        Task::BuildAndLoad {
            iface,
            mode,
            config,
            release,
        } => run::build_and_load(&iface, mode.as_deref(), config.as_deref(), release),
        Task::Lint => lint::lint(),
        Task::Test { filter, host_only } => test::test(filter.as_deref(), host_only),
        Task::Kernels(args) => kernels::kernels(args),
        Task::KernelGuest { bin_dir } => kernels::guest(&bin_dir),
        Task::Lab(args) => lab::lab(args),
        Task::Bench(args) => bench::bench(args),
        Task::Deb { debug } => deb::deb(debug).map(|_| ()),
        Task::Modules { src } => modules::print(&util::root(), &src),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
