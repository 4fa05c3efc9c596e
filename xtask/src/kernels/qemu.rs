//! Booting a kernel with the initramfs under qemu, its serial console read
//! as the transcript; KVM when it works here, TCG otherwise.

use std::{
    fmt,
    fs::File,
    io::Write,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

use super::{
    bounded::{self, Ended, Next},
    suite::Marker,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Kvm => "kvm",
            Self::Tcg => "tcg",
        })
    }
}

/// Guest memory: the program keeps a 1M-entry per-CPU LRU map.
const MEMORY: &str = "3G";

/// A working KVM boots the probe guest in a few seconds; a broken one may
/// hang silently.
const PROBE_LIMIT: Duration = Duration::from_secs(30);

/// How much longer the tests wait for things under TCG (see
/// `edge_sensor_tests::patience`): verifying takes about 12 times longer
/// there than natively, but the waits cover more than verifying.
const TCG_PATIENCE: u32 = 4;

/// Lines on qemu's output that mean KVM cannot run this guest here (nested
/// KVM on some hosts dies on the first `lock cmpxchg16b`).
const KVM_BROKEN: &[&str] = &[
    "KVM internal error",
    "emulation failure",
    "kvm run failed",
    "failed to initialize kvm",
    "Could not access KVM kernel module",
];

/// How a boot went.
pub struct Boot {
    pub transcript: String,
    pub ended: Ended,
    pub seconds: f64,
}

fn command(kernel: &Path, initrd: &Path, accel: Accel, probe: bool) -> Command {
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-nodefaults", "-no-user-config", "-display", "none"])
        .args(["-serial", "stdio", "-no-reboot"])
        .args(["-m", MEMORY, "-smp", "1"]);
    match accel {
        Accel::Kvm => cmd.args(["-accel", "kvm", "-cpu", "host"]),
        Accel::Tcg => cmd.args(["-accel", "tcg", "-cpu", "max"]),
    };
    // Unknown `KEY=value` words reach /init's environment, and so the tests.
    let mut append = String::from("console=ttyS0 loglevel=4 panic=-1");
    if accel == Accel::Tcg {
        // Emulated, a program takes several times longer to verify: the
        // tests' waits for a daemon to attach are stretched to match.
        append.push_str(&format!(" EDGE_SENSOR_TEST_PATIENCE={TCG_PATIENCE}"));
    }
    if probe {
        append.push_str(" ES_PROBE=1");
    }
    cmd.arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(append);
    cmd
}

/// Boots `kernel` and lets the guest run the tests, for at most `limit`;
/// the console goes to `log` as well.
pub fn boot(
    kernel: &Path,
    initrd: &Path,
    accel: Accel,
    limit: Duration,
    log: &Path,
) -> Result<Boot> {
    let mut log_file = File::create(log).with_context(|| format!("{}", log.display()))?;
    let mut transcript = String::new();
    let started = Instant::now();
    let ended = bounded::run(command(kernel, initrd, accel, false), limit, |line| {
        let _ = writeln!(log_file, "{line}");
        transcript.push_str(line);
        transcript.push('\n');
        Next::Continue
    })
    .context("running qemu-system-x86_64")?;
    Ok(Boot {
        transcript,
        ended,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// KVM if /dev/kvm is there and a probe guest boots with it, else TCG.
/// `EDGE_SENSOR_ACCEL=kvm|tcg` skips the probe. A failed probe is
/// remembered in `cache` for the host's kernel release, so that later runs
/// on this machine do not wait for it again.
pub fn choose_accel(kernel: &Path, initrd: &Path, cache: &Path) -> Accel {
    match std::env::var("EDGE_SENSOR_ACCEL").as_deref() {
        Ok("kvm") => return Accel::Kvm,
        Ok("tcg") => return Accel::Tcg,
        _ => {}
    }
    let usable = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if !usable {
        eprintln!("xtask: kernels: no usable /dev/kvm: guests run under TCG (slower)");
        return Accel::Tcg;
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let memo = cache.join(format!("kvm-broken-on-{}", host.trim()));
    if let Ok(why) = std::fs::read_to_string(&memo) {
        eprintln!(
            "xtask: kernels: KVM did not work on this host's kernel when probed ({}; remove {} \
             to probe again): guests run under TCG (slower)",
            why.trim(),
            memo.display()
        );
        return Accel::Tcg;
    }
    let mut booted = false;
    let mut broken = None;
    let started = Instant::now();
    let probe = bounded::run(
        command(kernel, initrd, Accel::Kvm, true),
        PROBE_LIMIT,
        |line| {
            if Marker::find(line) == Some(Marker::ProbeOk) {
                booted = true;
            } else if let Some(b) = KVM_BROKEN.iter().find(|b| line.contains(*b)) {
                broken = Some(*b);
                return Next::Stop;
            }
            Next::Continue
        },
    );
    if booted {
        eprintln!(
            "xtask: kernels: KVM works here ({:.0} s probe boot)",
            started.elapsed().as_secs_f64()
        );
        return Accel::Kvm;
    }
    // Only KVM's own failures are remembered, not a qemu that did not start.
    let remember = broken.is_some() || matches!(probe, Ok(Ended::TimedOut));
    let why = match (broken, probe) {
        (Some(b), _) => format!("qemu said \"{b}\""),
        (None, Ok(Ended::TimedOut)) => format!(
            "the probe guest did not boot within {} s",
            PROBE_LIMIT.as_secs()
        ),
        (None, Ok(ended)) => format!("the probe guest ended without booting ({ended:?})"),
        (None, Err(e)) => format!("qemu did not start: {e}"),
    };
    eprintln!(
        "xtask: kernels: KVM does not work here ({why}, {:.0} s probe): guests run under TCG \
         (slower)",
        started.elapsed().as_secs_f64()
    );
    if remember && let Err(e) = std::fs::write(&memo, &why) {
        eprintln!("xtask: kernels: warning: {}: {e}", memo.display());
    }
    Accel::Tcg
}
