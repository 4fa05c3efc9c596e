//! `cargo xtask kernels`: the tests that depend on the kernel (verifier
//! budget, XDP test runs, the captures differential, attach to a veth) on
//! Debian's packaged kernels booted under qemu, and natively on the host's
//! own; a kernel x program table at the end (also target/kernels/report.md
//! and report.json). Fails when any kernel fails.
//!
//! Kernels are fetched with apt through a private configuration (see
//! `archive`) and cached outside the clone (`~/.cache/edge-sensor/kernels`,
//! or `EDGE_SENSOR_KERNEL_CACHE`), so a fresh clone reuses them.

mod archive;
mod bounded;
mod image;
mod initramfs;
mod matrix;
mod qemu;
mod report;
mod suite;

use std::{
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use self::{
    archive::Archive,
    bounded::Ended,
    image::Kernel,
    matrix::{Spec, Version},
    qemu::Accel,
    report::{KernelLabel, KernelRun, RunEnd},
    suite::{Payload, STEPS},
};
use crate::{ebpf, run, util};

#[derive(clap::Args)]
pub struct KernelsArgs {
    /// Only this machine's own kernel, natively: quick local iteration.
    #[arg(long)]
    host_only: bool,
    /// A kernel to run instead of the default matrix: `host`, `newest`, a
    /// series (`6.18`), a version (`6.18.15`), optionally `+deb13`.
    /// Repeatable.
    #[arg(long = "kernel", value_name = "VER", num_args = 1..)]
    kernels: Vec<String>,
    #[command(flatten)]
    options: Options,
}

#[derive(clap::Args, Clone, Copy)]
pub struct Options {
    /// Guests booted at once, one CPU each.
    #[arg(long, default_value_t = 2)]
    jobs: usize,
    /// The whole matrix's time limit in minutes: kernels not started by then
    /// are reported as not run, a guest still running is stopped.
    #[arg(long, default_value_t = 40)]
    budget_minutes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            jobs: 2,
            budget_minutes: 40,
        }
    }
}

/// Time for a guest to boot and power off, beyond its tests' own limits.
const BOOT_ALLOWANCE: Duration = Duration::from_secs(3 * 60);

pub fn kernels(args: KernelsArgs) -> Result<()> {
    util::setup()?;
    if !util::is_root() {
        bail!("the kernel tests load BPF programs and boot guests: run as root");
    }
    let object = ebpf::build_with(true)?;
    let specs = if args.host_only {
        vec![Spec::Host]
    } else {
        matrix::specs(&args.kernels).map_err(anyhow::Error::msg)?
    };
    run_matrix(&object, &specs, args.options)
}

/// The matrix as `cargo xtask test` runs it: all kernels, or those of
/// `EDGE_SENSOR_KERNELS` (`host` for the host's only), or the host's only
/// with `host_only`.
pub fn for_test(object: &Path, host_only: bool) -> Result<()> {
    let wanted = std::env::var("EDGE_SENSOR_KERNELS").unwrap_or_default();
    let specs = if host_only {
        vec![Spec::Host]
    } else if wanted.is_empty() || wanted == "all" {
        matrix::specs(&[])
            .map_err(anyhow::Error::msg)
            .context("the default matrix")?
    } else {
        matrix::specs(&[wanted])
            .map_err(anyhow::Error::msg)
            .context("EDGE_SENSOR_KERNELS")?
    };
    run_matrix(object, &specs, Options::default())
}

/// `xtask kernel-guest`: the runner inside a guest.
pub fn guest(bin_dir: &Path) -> Result<()> {
    suite::guest(bin_dir)
}

fn run_matrix(object: &Path, specs: &[Spec], options: Options) -> Result<()> {
    let started = Instant::now();
    let out = run::target_dir().join("kernels");
    std::fs::create_dir_all(&out)?;
    let payload = Payload::build(object)?;
    let mut runs = Vec::new();
    let mut how = Vec::new();
    if specs.contains(&Spec::Host) {
        runs.push(host_run(&payload, &out)?);
    }
    let guests: Vec<&Spec> = specs.iter().filter(|s| **s != Spec::Host).collect();
    if !guests.is_empty() {
        let (guest_runs, accel) = guest_runs(&payload, &guests, &out, options, started)?;
        runs.extend(guest_runs);
        how.push(format!(
            "guests under {}, {} at a time",
            accel.map_or("-".into(), |a| a.to_string().to_uppercase()),
            options.jobs
        ));
    }
    runs.sort_by_key(|r| Version::parse(&r.kernel.version));

    let total = started.elapsed().as_secs_f64();
    let made = format!(
        "Made by `cargo xtask kernels` on {} at commit {} ({}; {total:.0} s in all).",
        command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        command_output("git", &["rev-parse", "--short", "HEAD"]),
        if how.is_empty() {
            "host only".into()
        } else {
            how.join(", ")
        },
    );
    eprintln!("\nxtask: == kernel matrix\n{}", report::text(&runs));
    eprintln!("{made}");
    std::fs::write(out.join("report.md"), report::markdown(&runs, &made))?;
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(&report::json(&runs, &made))? + "\n",
    )?;
    let failed: Vec<String> = runs
        .iter()
        .filter(|r| !r.passed())
        .map(|r| r.kernel.version.clone())
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} of {} kernels failed: {} (target/kernels/report.md)",
            failed.len(),
            runs.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

/// The tests natively, on the machine's own kernel.
fn host_run(payload: &Payload, out: &Path) -> Result<KernelRun> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")?
        .trim()
        .to_owned();
    let label = KernelLabel {
        version: release
            .split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .next()
            .unwrap_or(&release)
            .to_owned(),
        release: release.clone(),
        origin: "host".into(),
    };
    eprintln!("xtask: kernels: {} (host): running natively", label.version);
    let log = out.join("host.log");
    let started = Instant::now();
    {
        let mut file = std::fs::File::create(&log)?;
        suite::run_steps(payload, &mut file)?;
    }
    let transcript = std::fs::read_to_string(&log)?;
    let run = KernelRun::from_transcript(
        label,
        "native",
        started.elapsed().as_secs_f64(),
        true,
        &transcript,
        Some(log),
    );
    progress(&run);
    Ok(run)
}

fn progress(run: &KernelRun) {
    eprintln!(
        "xtask: kernels: {} ({}): {} in {:.0} s",
        run.kernel.version,
        run.kernel.origin,
        if run.passed() { "passed" } else { "FAILED" },
        run.seconds
    );
}

/// The kernel cache: `EDGE_SENSOR_KERNEL_CACHE`, else under the user's
/// cache directory, outside any clone.
fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("EDGE_SENSOR_KERNEL_CACHE") {
        return Ok(dir.into());
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .context("neither HOME nor XDG_CACHE_HOME is set: where should kernels be cached?")?;
    Ok(base.join("edge-sensor/kernels"))
}

/// Fetches (or finds cached) the kernels of `specs`, builds the initramfs
/// and boots them, `options.jobs` at a time.
fn guest_runs(
    payload: &Payload,
    specs: &[&Spec],
    out: &Path,
    options: Options,
    started: Instant,
) -> Result<(Vec<KernelRun>, Option<Accel>)> {
    let cache = cache_dir()?;
    std::fs::create_dir_all(&cache)?;
    // Without the archive, the cache stands in (a run without network).
    let archive = Archive::open(&cache).and_then(|a| Ok((a.images()?, a)));
    if let Err(e) = &archive {
        eprintln!("xtask: kernels: warning: {e}; using the cached kernels");
    }
    let mut runs = Vec::new();
    let mut kernels: Vec<Kernel> = Vec::new();
    let mut add = |kernel: Kernel| {
        if !kernels.iter().any(|k| k.release == kernel.release) {
            kernels.push(kernel);
        }
    };
    for spec in specs {
        let unnamed = |why: String| {
            KernelRun::not_run(
                KernelLabel {
                    version: spec.to_string(),
                    release: "-".into(),
                    origin: "-".into(),
                },
                why,
            )
        };
        let cached = || Kernel::newest_cached(&cache, spec);
        let (images, archive) = match &archive {
            Ok(found) => found,
            Err(e) => {
                match cached() {
                    Some(kernel) => add(kernel),
                    None => runs.push(unnamed(format!("nothing cached, and {e}"))),
                }
                continue;
            }
        };
        let Some(image) = spec.pick(images) else {
            runs.push(unnamed(format!(
                "the archive offers no cloud image of {spec} with all its packages"
            )));
            continue;
        };
        match (Kernel::ensure(&cache, archive, image), cached()) {
            (Ok(kernel), _) => add(kernel),
            (Err(e), Some(kernel)) => {
                eprintln!(
                    "xtask: kernels: warning: {}: {e:#}; running the cached {} instead",
                    image.package, kernel.release
                );
                add(kernel);
            }
            (Err(e), None) => runs.push(unnamed(format!("{e:#}"))),
        }
    }
    if kernels.is_empty() {
        return Ok((runs, None));
    }

    let initrd = out.join("initramfs.cpio");
    initramfs::build(payload, &kernels, &out.join("stage"), &initrd)
        .context("building the guests' initramfs")?;
    let accel = qemu::choose_accel(&kernels[0].vmlinuz, &initrd, &cache);

    // Newest first: newer kernels verify the program, so they run the
    // longest tests; the short refusals fill in beside them.
    kernels.sort_by_key(|k| std::cmp::Reverse(Version::parse(&k.version)));
    let per_kernel = BOOT_ALLOWANCE + STEPS.iter().map(|s| s.timeout).sum::<Duration>();
    let deadline = started + Duration::from_secs(options.budget_minutes * 60);
    let queue = Mutex::new(kernels.into_iter());
    let done = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..options.jobs.max(1) {
            s.spawn(|| {
                loop {
                    let Some(kernel) = queue.lock().unwrap().next() else {
                        break;
                    };
                    let run = boot_one(&kernel, &initrd, accel, per_kernel, deadline, out);
                    progress(&run);
                    done.lock().unwrap().push(run);
                }
            });
        }
    });
    runs.extend(done.into_inner().unwrap());
    Ok((runs, Some(accel)))
}

fn boot_one(
    kernel: &Kernel,
    initrd: &Path,
    accel: Accel,
    per_kernel: Duration,
    deadline: Instant,
    out: &Path,
) -> KernelRun {
    let label = KernelLabel {
        version: kernel.version.clone(),
        release: kernel.release.clone(),
        origin: kernel.origin.clone(),
    };
    let left = deadline.saturating_duration_since(Instant::now());
    if left < Duration::from_secs(60) {
        return KernelRun::not_run(label, "the matrix's time budget was spent".into());
    }
    eprintln!(
        "xtask: kernels: {} ({}): booting under {accel}",
        kernel.version, kernel.origin
    );
    let log = out.join(format!("{}.log", kernel.release));
    match qemu::boot(&kernel.vmlinuz, initrd, accel, per_kernel.min(left), &log) {
        Ok(boot) => {
            let mut run = KernelRun::from_transcript(
                label,
                &accel.to_string(),
                boot.seconds,
                !matches!(boot.ended, Ended::TimedOut),
                &boot.transcript,
                Some(log),
            );
            if let Some(booted) = run.booted.as_ref().filter(|b| **b != kernel.release) {
                run.end = RunEnd::Broken(format!("the guest ran {booted}, not {}", kernel.release));
            }
            run
        }
        Err(e) => KernelRun::not_run(label, format!("{e:#}")),
    }
}

/// The first line `program args` prints, or `?`.
fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .current_dir(util::root())
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}
