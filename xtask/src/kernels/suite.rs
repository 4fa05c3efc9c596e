//! The tests every kernel runs, built once on the host, and the runner that
//! runs them: inside each guest (`xtask kernel-guest`, started by the
//! guest's /init) and natively for the host's own kernel. The runner prints
//! a transcript: the tests' output between marker lines that `report` reads
//! back from the serial console or the host's log.

use std::{
    collections::BTreeMap,
    fmt,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use super::{
    bounded::{self, Ended, Next},
    report::ProgramVerdict,
};
use crate::{run, util};

/// One test binary of tests/tests and how it is run.
pub struct Step {
    /// The test target: tests/tests/<target>.rs.
    pub target: &'static str,
    /// Whether its tests load the XDP program: pointless where the verifier
    /// refused it, and slow (a refusal at the 1M-instruction limit takes
    /// minutes under TCG).
    pub loads_program: bool,
    /// Generous: most of it is the verifier, about 12 s per load under TCG
    /// for a program of 250k processed instructions, 150 s for one that
    /// hits the 1M limit.
    pub timeout: Duration,
}

/// In order: the verifier first, as it decides whether the rest can run.
pub const STEPS: &[Step] = &[
    Step {
        target: "verifier",
        loads_program: false,
        timeout: Duration::from_secs(8 * 60),
    },
    Step {
        target: "xdp_test_run",
        loads_program: true,
        timeout: Duration::from_secs(8 * 60),
    },
    // The differential over every shared capture loads the program once per
    // capture (about 30 times) and asks tshark for the sFlow ones.
    Step {
        target: "captures",
        loads_program: true,
        timeout: Duration::from_secs(15 * 60),
    },
    // Attach to a veth, live datagrams read back from the pins; skb
    // fallback on lo; pin layout checks.
    Step {
        target: "netns",
        loads_program: true,
        timeout: Duration::from_secs(6 * 60),
    },
];

/// The programs the tests exec (found on the host's PATH, copied into the
/// guest with their libraries).
pub const TOOLS: &[&str] = &["ip", "nsenter", "bpftool", "tshark"];

/// Data that a tool needs beside its binary and libraries.
pub const TOOL_DATA: &[&str] = &[
    "/usr/share/wireshark",
    "/usr/lib/x86_64-linux-gnu/wireshark",
];

/// The built test binaries (target -> executable) and the sensor binary.
pub struct Payload {
    pub tests: BTreeMap<String, PathBuf>,
    pub sensor: PathBuf,
}

impl Payload {
    /// Builds the test binaries of [`STEPS`] and the `edge-sensor` binary
    /// against the XDP object `object`.
    pub fn build(object: &Path) -> Result<Self> {
        let mut cmd = util::cargo();
        cmd.args([
            "test",
            "--no-run",
            "--message-format=json-render-diagnostics",
            "--package",
            "edge-sensor-tests",
        ]);
        for step in STEPS {
            cmd.args(["--test", step.target]);
        }
        cmd.env("EDGE_SENSOR_EBPF_OBJECT", object)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let out = cmd
            .output()
            .with_context(|| format!("cannot start {}", util::describe(&cmd)))?;
        if !out.status.success() {
            bail!("building the test binaries failed ({})", out.status);
        }
        let mut tests = BTreeMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let is_test = msg["reason"] == "compiler-artifact"
                && msg["profile"]["test"] == true
                && msg["target"]["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "test"));
            if let (true, Some(name), Some(exe)) = (
                is_test,
                msg["target"]["name"].as_str(),
                msg["executable"].as_str(),
            ) {
                tests.insert(name.to_owned(), PathBuf::from(exe));
            }
        }
        for step in STEPS {
            if !tests.contains_key(step.target) {
                bail!("cargo built no test binary for {}", step.target);
            }
        }
        Ok(Self {
            tests,
            sensor: run::build(false)?,
        })
    }

    /// The payload as laid out in a guest: every binary in `dir`, named
    /// after its target.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            tests: STEPS
                .iter()
                .map(|s| (s.target.to_owned(), dir.join(s.target)))
                .collect(),
            sensor: dir.join(SENSOR_NAME),
        }
    }
}

/// The sensor binary's name in a guest's binary directory.
pub const SENSOR_NAME: &str = "edge-sensor";

/// A marker line of the transcript.
#[derive(Debug, Clone, PartialEq)]
pub enum Marker {
    /// The runner started, on this kernel release.
    Kernel(String),
    Begin(String),
    End {
        target: String,
        exit: StepExit,
        secs: f64,
    },
    Skip {
        target: String,
        reason: String,
    },
    /// The runner finished.
    Done,
    /// Printed by the guest's /init: the accelerator probe booted.
    ProbeOk,
    /// Printed by the guest's /init: `insmod NAME` failed.
    ModuleFailed(String),
}

/// How a test binary ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StepExit {
    Code(i32),
    Signal(i32),
    TimedOut,
}

const MARK: &str = "@@edge-sensor ";

impl fmt::Display for StepExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Code(c) => write!(f, "{c}"),
            Self::Signal(s) => write!(f, "signal-{s}"),
            Self::TimedOut => f.write_str("timeout"),
        }
    }
}

impl StepExit {
    fn parse(s: &str) -> Option<Self> {
        if s == "timeout" {
            return Some(Self::TimedOut);
        }
        if let Some(sig) = s.strip_prefix("signal-") {
            return sig.parse().ok().map(Self::Signal);
        }
        s.parse().ok().map(Self::Code)
    }
}

impl fmt::Display for Marker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MARK)?;
        match self {
            Self::Kernel(release) => write!(f, "kernel {release}"),
            Self::Begin(target) => write!(f, "begin {target}"),
            Self::End { target, exit, secs } => {
                write!(f, "end {target} exit={exit} secs={secs:.1}")
            }
            Self::Skip { target, reason } => write!(f, "skip {target} {reason}"),
            Self::Done => f.write_str("done"),
            Self::ProbeOk => f.write_str("probe-ok"),
            Self::ModuleFailed(name) => write!(f, "module-failed {name}"),
        }
    }
}

impl Marker {
    /// The marker in `line`, if any; kernel messages on the serial console
    /// may precede it on the same line.
    pub fn find(line: &str) -> Option<Self> {
        let rest = &line[line.find(MARK)? + MARK.len()..];
        let (word, rest) = rest.split_once(' ').unwrap_or((rest, ""));
        Some(match word {
            "kernel" => Self::Kernel(rest.trim().to_owned()),
            "begin" => Self::Begin(rest.trim().to_owned()),
            "end" => {
                let mut parts = rest.split_whitespace();
                let target = parts.next()?.to_owned();
                let mut exit = None;
                let mut secs = None;
                for part in parts {
                    match part.split_once('=') {
                        Some(("exit", v)) => exit = StepExit::parse(v),
                        Some(("secs", v)) => secs = v.parse().ok(),
                        _ => {}
                    }
                }
                Self::End {
                    target,
                    exit: exit?,
                    secs: secs?,
                }
            }
            "skip" => {
                let (target, reason) = rest.split_once(' ').unwrap_or((rest, ""));
                Self::Skip {
                    target: target.to_owned(),
                    reason: reason.trim().to_owned(),
                }
            }
            "done" => Self::Done,
            "probe-ok" => Self::ProbeOk,
            "module-failed" => Self::ModuleFailed(rest.trim().to_owned()),
            _ => return None,
        })
    }
}

/// Runs every step with `payload`, writing the transcript to `out`.
pub fn run_steps(payload: &Payload, out: &mut dyn Write) -> Result<()> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .context("reading the kernel release")?;
    say(out, &Marker::Kernel(release.trim().to_owned()))?;
    let mut program_loads = true;
    for step in STEPS {
        if step.loads_program && !program_loads {
            say(
                out,
                &Marker::Skip {
                    target: step.target.to_owned(),
                    reason: "the XDP program did not load on this kernel".to_owned(),
                },
            )?;
            continue;
        }
        let bin = &payload.tests[step.target];
        let mut cmd = Command::new(bin);
        cmd.args(["--test-threads=1", "--nocapture"])
            .env("EDGE_SENSOR_BIN", &payload.sensor)
            // Short panics: the transcript goes through a serial console.
            .env("RUST_BACKTRACE", "0");
        say(out, &Marker::Begin(step.target.to_owned()))?;
        let started = Instant::now();
        let mut verdicts = Vec::new();
        let ended = bounded::run(cmd, step.timeout, |line| {
            if let Some(v) = ProgramVerdict::parse_line(line) {
                verdicts.push(v);
            }
            // A lost line is not worth aborting the run for.
            let _ = writeln!(out, "{line}").and_then(|()| out.flush());
            Next::Continue
        })
        .with_context(|| format!("running {}", bin.display()))?;
        let exit = match ended {
            Ended::Exited(status) => match (status.code(), status_signal(&status)) {
                (Some(code), _) => StepExit::Code(code),
                (None, Some(sig)) => StepExit::Signal(sig),
                (None, None) => StepExit::Code(-1),
            },
            Ended::TimedOut | Ended::Stopped => StepExit::TimedOut,
        };
        say(
            out,
            &Marker::End {
                target: step.target.to_owned(),
                exit,
                secs: started.elapsed().as_secs_f64(),
            },
        )?;
        if step.target == "verifier" {
            program_loads = ProgramVerdict::all_loaded(&verdicts);
        }
    }
    say(out, &Marker::Done)
}

fn say(out: &mut dyn Write, line: &dyn fmt::Display) -> Result<()> {
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

fn status_signal(status: &std::process::ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.signal()
}

/// `xtask kernel-guest`: the runner inside a guest, binaries in `bin_dir`,
/// transcript on stdout (the serial console).
pub fn guest(bin_dir: &Path) -> Result<()> {
    let payload = Payload::in_dir(bin_dir);
    run_steps(&payload, &mut std::io::stdout().lock())
}
