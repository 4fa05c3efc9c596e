//! Reading a kernel's transcript back (the verifier's `VERIFIER` lines,
//! libtest's summaries, the runner's markers) and the kernel x program
//! table: on the terminal, as markdown and as JSON.

use std::{fmt::Write as _, path::PathBuf};

use serde_json::{Value, json};

use super::suite::{Marker, STEPS, StepExit};

/// What the verifier test says of one program: a line
/// `VERIFIER prog=<name> insns=<n> states=<s> result=<ok|refused|over-budget>`
/// (`-` for numbers the kernel did not give).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramVerdict {
    pub name: String,
    pub insns: Option<u64>,
    pub states: Option<u64>,
    pub result: VerifierResult,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifierResult {
    Ok,
    Refused,
    OverBudget,
}

impl VerifierResult {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Refused => "refused",
            Self::OverBudget => "over-budget",
        }
    }
}

impl ProgramVerdict {
    /// The verdict on `line`, if it carries one (libtest may print a test's
    /// name before it on the same line).
    pub fn parse_line(line: &str) -> Option<Self> {
        const TAG: &str = "VERIFIER prog=";
        let rest = &line[line.find(TAG)? + TAG.len() - "prog=".len()..];
        let (mut name, mut insns, mut states, mut result) = (None, None, None, None);
        for field in rest.split_whitespace() {
            let (key, value) = field.split_once('=')?;
            let number = || (value != "-").then(|| value.parse().ok()).flatten();
            match key {
                "prog" => name = Some(value.to_owned()),
                "insns" => insns = Some(number()),
                "states" => states = Some(number()),
                "result" => {
                    result = Some(match value {
                        "ok" => VerifierResult::Ok,
                        "refused" => VerifierResult::Refused,
                        "over-budget" => VerifierResult::OverBudget,
                        _ => return None,
                    })
                }
                _ => {}
            }
        }
        Some(Self {
            name: name?,
            insns: insns?,
            states: states?,
            result: result?,
        })
    }

    /// Whether the kernel loaded every program (over its budget or not), so
    /// that the tests which load them are worth running.
    pub fn all_loaded(verdicts: &[Self]) -> bool {
        !verdicts.is_empty() && verdicts.iter().all(|v| v.result != VerifierResult::Refused)
    }
}

/// Which kernel a row is about.
#[derive(Debug, Clone)]
pub struct KernelLabel {
    /// Upstream version, e.g. 6.1.176.
    pub version: String,
    /// `uname -r`, e.g. 6.1.0-50-cloud-amd64.
    pub release: String,
    /// Where it comes from: a Debian suite, or "host".
    pub origin: String,
}

/// How a kernel's run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEnd {
    /// The runner printed its last marker.
    Finished,
    /// Killed at the deadline.
    TimedOut,
    /// Ended before the runner finished (panic, crash, no boot).
    Broken(String),
    /// Never started.
    NotRun(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum StepStatus {
    Passed,
    Failed(StepExit),
    Skipped(String),
    /// Begun, never ended: the guest died or was killed meanwhile.
    Unfinished,
    NotReached,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepOutcome {
    pub target: String,
    pub status: StepStatus,
    pub passed: u32,
    pub failed: u32,
    /// Names of the failed tests.
    pub failures: Vec<String>,
    /// `test: first line of its panic message`, for each panic.
    pub panics: Vec<String>,
    pub secs: Option<f64>,
}

impl StepOutcome {
    fn new(target: &str) -> Self {
        Self {
            target: target.to_owned(),
            status: StepStatus::NotReached,
            passed: 0,
            failed: 0,
            failures: Vec::new(),
            panics: Vec::new(),
            secs: None,
        }
    }
}

/// One kernel's results.
#[derive(Debug, Clone)]
pub struct KernelRun {
    pub kernel: KernelLabel,
    /// kvm, tcg or native.
    pub how: String,
    pub seconds: f64,
    pub end: RunEnd,
    pub programs: Vec<ProgramVerdict>,
    pub steps: Vec<StepOutcome>,
    pub log: Option<PathBuf>,
    /// The release the runner said it ran on.
    pub booted: Option<String>,
}

/// What a transcript says.
#[derive(Debug, Default)]
pub struct Transcript {
    pub release: Option<String>,
    pub programs: Vec<ProgramVerdict>,
    pub steps: Vec<StepOutcome>,
    pub done: bool,
    pub modules_failed: Vec<String>,
}

impl Transcript {
    pub fn parse(text: &str) -> Self {
        let mut t = Self {
            steps: STEPS.iter().map(|s| StepOutcome::new(s.target)).collect(),
            ..Self::default()
        };
        let mut current: Option<usize> = None;
        let mut in_failure_list = false;
        // The test whose panic message comes on the next line.
        let mut panicked: Option<String> = None;
        for line in text.lines() {
            if let Some(marker) = Marker::find(line) {
                in_failure_list = false;
                panicked = None;
                match marker {
                    Marker::Kernel(r) => t.release = Some(r),
                    Marker::Begin(target) => {
                        current = t.steps.iter().position(|s| s.target == target);
                        if let Some(i) = current {
                            t.steps[i].status = StepStatus::Unfinished;
                        }
                    }
                    Marker::End { target, exit, secs } => {
                        if let Some(step) = t.steps.iter_mut().find(|s| s.target == target) {
                            step.secs = Some(secs);
                            step.status = if exit == StepExit::Code(0) && step.failed == 0 {
                                StepStatus::Passed
                            } else {
                                StepStatus::Failed(exit)
                            };
                        }
                        current = None;
                    }
                    Marker::Skip { target, reason } => {
                        if let Some(step) = t.steps.iter_mut().find(|s| s.target == target) {
                            step.status = StepStatus::Skipped(reason);
                        }
                    }
                    Marker::Done => t.done = true,
                    Marker::ModuleFailed(m) => t.modules_failed.push(m),
                    Marker::ProbeOk => {}
                }
                continue;
            }
            let Some(i) = current else { continue };
            if let Some(v) = ProgramVerdict::parse_line(line) {
                t.programs.push(v);
            }
            let step = &mut t.steps[i];
            if let Some(test) = panicked.take() {
                let message: String = line.trim().chars().take(200).collect();
                step.panics.push(format!("{test}: {message}"));
            }
            // `thread 'NAME' (ID) panicked at FILE:LINE:COL:`
            if let Some((_, rest)) = line.split_once("thread '")
                && let Some((test, after)) = rest.split_once('\'')
                && after.contains(" panicked at ")
            {
                panicked = Some(test.to_owned());
            }
            if let Some((passed, failed)) = libtest_summary(line) {
                step.passed += passed;
                step.failed += failed;
            }
            // libtest lists the failed tests' names, indented, under a
            // `failures:` line, up to a blank one.
            if line == "failures:" {
                in_failure_list = true;
            } else if line.trim().is_empty() {
                in_failure_list = false;
            } else if in_failure_list
                && let Some(name) = line.strip_prefix("    ")
                && !name.contains(' ')
                && !step.failures.iter().any(|f| f == name)
            {
                step.failures.push(name.to_owned());
            }
        }
        t
    }
}

/// `test result: ok. 3 passed; 0 failed; ...` -> (3, 0).
fn libtest_summary(line: &str) -> Option<(u32, u32)> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let count = |what: &str| {
        rest.split(';').find_map(|part| {
            part.trim()
                .strip_suffix(what)?
                .trim()
                .rsplit(' ')
                .next()?
                .parse()
                .ok()
        })
    };
    Some((count(" passed")?, count(" failed")?))
}

impl KernelRun {
    /// A run from its transcript and how it ended.
    pub fn from_transcript(
        kernel: KernelLabel,
        how: &str,
        seconds: f64,
        ended_in_time: bool,
        transcript: &str,
        log: Option<PathBuf>,
    ) -> Self {
        let t = Transcript::parse(transcript);
        let end = if t.done {
            RunEnd::Finished
        } else if !ended_in_time {
            RunEnd::TimedOut
        } else if t.release.is_none() {
            RunEnd::Broken("the guest never started the tests (see its log)".into())
        } else {
            RunEnd::Broken("the runner stopped before the end (see its log)".into())
        };
        let mut steps = t.steps;
        if !t.modules_failed.is_empty() {
            // The netns tests need veth: say why they will fail.
            for step in &mut steps {
                if step.status != StepStatus::Passed {
                    step.failures.push(format!(
                        "modules not loaded: {}",
                        t.modules_failed.join(", ")
                    ));
                }
            }
        }
        Self {
            kernel,
            how: how.to_owned(),
            seconds,
            end,
            programs: t.programs,
            steps,
            log,
            booted: t.release,
        }
    }

    pub fn not_run(kernel: KernelLabel, why: String) -> Self {
        Self {
            kernel,
            how: "-".into(),
            seconds: 0.0,
            end: RunEnd::NotRun(why),
            programs: Vec::new(),
            steps: STEPS.iter().map(|s| StepOutcome::new(s.target)).collect(),
            log: None,
            booted: None,
        }
    }

    pub fn passed(&self) -> bool {
        self.end == RunEnd::Finished
            && !self.programs.is_empty()
            && self.programs.iter().all(|p| p.result == VerifierResult::Ok)
            && self.steps.iter().all(|s| s.status == StepStatus::Passed)
    }

    /// Why the run failed, in a few words (empty when it passed).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        match &self.end {
            RunEnd::Finished => {}
            RunEnd::TimedOut => out.push(format!("timed out after {:.0} s", self.seconds)),
            RunEnd::Broken(why) | RunEnd::NotRun(why) => out.push(why.clone()),
        }
        if !matches!(self.end, RunEnd::NotRun(_))
            && self.programs.is_empty()
            && self.steps[0].status != StepStatus::NotReached
        {
            out.push("the verifier test printed no VERIFIER line".into());
        }
        for p in &self.programs {
            if p.result != VerifierResult::Ok {
                out.push(format!("{}: {}", p.name, p.result.as_str()));
            }
        }
        for s in &self.steps {
            if s.status == StepStatus::Passed {
                continue;
            }
            if !s.panics.is_empty() {
                out.push(format!("{}: {}", s.target, s.panics.join("; ")));
            } else if !s.failures.is_empty() {
                out.push(format!("{}: {}", s.target, s.failures.join(", ")));
            }
        }
        out
    }
}

fn step_cell(s: &StepOutcome) -> String {
    let total = s.passed + s.failed;
    match &s.status {
        StepStatus::Passed => format!("ok {}/{total}", s.passed),
        StepStatus::Failed(StepExit::TimedOut) => "timeout".into(),
        StepStatus::Failed(StepExit::Signal(sig)) => format!("killed (signal {sig})"),
        StepStatus::Failed(_) if total > 0 => format!("FAILED {}/{total}", s.passed),
        StepStatus::Failed(exit) => format!("FAILED (exit {exit})"),
        StepStatus::Skipped(_) => "skipped".into(),
        StepStatus::Unfinished => "unfinished".into(),
        StepStatus::NotReached => "-".into(),
    }
}

fn number(n: Option<u64>) -> String {
    n.map_or_else(|| "-".into(), |n| n.to_string())
}

fn verdict_cell(run: &KernelRun, p: Option<&ProgramVerdict>) -> String {
    match (p, &run.end) {
        (Some(p), _) => p.result.as_str().into(),
        (None, RunEnd::NotRun(_)) => "not run".into(),
        (None, RunEnd::TimedOut) => "timeout".into(),
        (None, _) if run.steps[0].status == StepStatus::NotReached => "no boot".into(),
        (None, _) => "no VERIFIER line".into(),
    }
}

/// The table's rows: one per kernel and program (a kernel without verdicts
/// gets one row all the same), as cells.
fn rows(runs: &[KernelRun]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for run in runs {
        let programs: Vec<Option<&ProgramVerdict>> = if run.programs.is_empty() {
            vec![None]
        } else {
            run.programs.iter().map(Some).collect()
        };
        for (i, p) in programs.into_iter().enumerate() {
            let first = i == 0;
            let mut row = vec![
                if first {
                    run.kernel.version.clone()
                } else {
                    String::new()
                },
                if first {
                    run.kernel.origin.clone()
                } else {
                    String::new()
                },
                p.map_or_else(|| "-".into(), |p| p.name.clone()),
                number(p.and_then(|p| p.insns)),
                number(p.and_then(|p| p.states)),
                verdict_cell(run, p),
            ];
            for s in &run.steps[1..] {
                row.push(if first { step_cell(s) } else { String::new() });
            }
            row.push(if first {
                format!("{:.0} s {}", run.seconds, run.how)
            } else {
                String::new()
            });
            row.push(if !first {
                String::new()
            } else if run.passed() {
                "PASS".into()
            } else {
                "FAIL".into()
            });
            out.push(row);
        }
    }
    out
}

fn header() -> Vec<String> {
    let mut h: Vec<String> = ["kernel", "from", "program", "insns", "states", "verifier"]
        .map(String::from)
        .to_vec();
    h.extend(STEPS[1..].iter().map(|s| s.target.to_owned()));
    h.push("time".into());
    h.push("verdict".into());
    h
}

/// The table for a terminal, then each failing kernel's reasons.
pub fn text(runs: &[KernelRun]) -> String {
    let mut table = vec![header()];
    table.extend(rows(runs));
    let widths: Vec<usize> = (0..table[0].len())
        .map(|c| {
            table
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in &table {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    for run in runs.iter().filter(|r| !r.passed()) {
        let _ = writeln!(
            out,
            "{} ({}): {}{}",
            run.kernel.version,
            run.kernel.release,
            run.problems().join("; "),
            run.log
                .as_ref()
                .map(|l| format!(" [log: {}]", l.display()))
                .unwrap_or_default()
        );
    }
    out
}

/// The table as markdown, with a line on how it was made.
pub fn markdown(runs: &[KernelRun], made: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{made}\n");
    let h = header();
    let _ = writeln!(out, "| {} |", h.join(" | "));
    let _ = writeln!(out, "|{}", " --- |".repeat(h.len()));
    for row in rows(runs) {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    let failing: Vec<_> = runs.iter().filter(|r| !r.passed()).collect();
    if !failing.is_empty() {
        out.push('\n');
        for run in failing {
            let _ = writeln!(
                out,
                "- {} (`{}`): {}",
                run.kernel.version,
                run.kernel.release,
                run.problems().join("; ")
            );
        }
    }
    out
}

pub fn json(runs: &[KernelRun], made: &str) -> Value {
    let kernels: Vec<Value> = runs
        .iter()
        .map(|r| {
            let end = match &r.end {
                RunEnd::Finished => json!({"state": "finished"}),
                RunEnd::TimedOut => json!({"state": "timeout"}),
                RunEnd::Broken(why) => json!({"state": "broken", "why": why}),
                RunEnd::NotRun(why) => json!({"state": "not-run", "why": why}),
            };
            json!({
                "version": r.kernel.version,
                "release": r.kernel.release,
                "origin": r.kernel.origin,
                "how": r.how,
                "seconds": (r.seconds * 10.0).round() / 10.0,
                "end": end,
                "passed": r.passed(),
                "programs": r.programs.iter().map(|p| json!({
                    "name": p.name,
                    "insns": p.insns,
                    "states": p.states,
                    "result": p.result.as_str(),
                })).collect::<Vec<_>>(),
                "tests": r.steps.iter().map(|s| {
                    let (status, detail) = match &s.status {
                        StepStatus::Passed => ("passed", Value::Null),
                        StepStatus::Failed(StepExit::TimedOut) => ("timeout", Value::Null),
                        StepStatus::Failed(exit) => ("failed", json!(exit.to_string())),
                        StepStatus::Skipped(why) => ("skipped", json!(why)),
                        StepStatus::Unfinished => ("unfinished", Value::Null),
                        StepStatus::NotReached => ("not-reached", Value::Null),
                    };
                    json!({
                        "binary": s.target,
                        "status": status,
                        "detail": detail,
                        "passed": s.passed,
                        "failed": s.failed,
                        "failures": s.failures,
                        "panics": s.panics,
                        "seconds": s.secs.map(|x| (x * 10.0).round() / 10.0),
                    })
                }).collect::<Vec<_>>(),
                "problems": r.problems(),
            })
        })
        .collect();
    json!({ "made": made, "kernels": kernels })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_lines_are_read_with_or_without_numbers() {
        let ok = ProgramVerdict::parse_line(
            "test every_program ... VERIFIER prog=edge_sensor insns=120345 states=4567 result=ok",
        )
        .unwrap();
        assert_eq!(ok.name, "edge_sensor");
        assert_eq!((ok.insns, ok.states), (Some(120_345), Some(4567)));
        assert_eq!(ok.result, VerifierResult::Ok);
        let refused =
            ProgramVerdict::parse_line("VERIFIER prog=x insns=- states=- result=refused").unwrap();
        assert_eq!((refused.insns, refused.states), (None, None));
        assert!(!ProgramVerdict::all_loaded(&[ok.clone(), refused]));
        assert!(ProgramVerdict::all_loaded(&[ok]));
        assert!(!ProgramVerdict::all_loaded(&[]));
        assert_eq!(
            ProgramVerdict::parse_line("verifier: x: 12 instructions"),
            None
        );
        assert_eq!(
            ProgramVerdict::parse_line("VERIFIER prog=x insns=1 states=2 result=maybe"),
            None
        );
    }

    #[test]
    fn a_transcript_gives_verdicts_counts_and_failures() {
        let text = "\
[    1.2] random kernel line
@@edge-sensor kernel 6.1.0-50-cloud-amd64
@@edge-sensor begin verifier
test every_program ... VERIFIER prog=edge_sensor insns=900 states=80 result=over-budget

thread 'every_program' (93) panicked at tests/tests/verifier.rs:31:21:
edge_sensor: over the budget
FAILED

failures:
    every_program

test result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.00s
@@edge-sensor end verifier exit=101 secs=3.5
@@edge-sensor begin xdp_test_run
test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 9.00s
@@edge-sensor end xdp_test_run exit=0 secs=9.1
@@edge-sensor skip captures the XDP program did not load on this kernel
@@edge-sensor begin netns
";
        let t = Transcript::parse(text);
        assert_eq!(t.release.as_deref(), Some("6.1.0-50-cloud-amd64"));
        assert_eq!(t.programs.len(), 1);
        assert_eq!(t.programs[0].result, VerifierResult::OverBudget);
        assert_eq!(t.steps[0].status, StepStatus::Failed(StepExit::Code(101)));
        assert_eq!(t.steps[0].failures, vec!["every_program"]);
        assert_eq!(
            t.steps[0].panics,
            vec!["every_program: edge_sensor: over the budget"]
        );
        assert_eq!((t.steps[1].passed, t.steps[1].failed), (3, 0));
        assert_eq!(t.steps[1].status, StepStatus::Passed);
        assert!(matches!(t.steps[2].status, StepStatus::Skipped(_)));
        assert_eq!(t.steps[3].status, StepStatus::Unfinished);
        assert!(!t.done);
    }

    #[test]
    fn markers_survive_a_round_trip() {
        for m in [
            Marker::Kernel("7.3.4+deb13-cloud-amd64".into()),
            Marker::Begin("captures".into()),
            Marker::End {
                target: "netns".into(),
                exit: StepExit::Signal(9),
                secs: 12.5,
            },
            Marker::End {
                target: "netns".into(),
                exit: StepExit::TimedOut,
                secs: 1.0,
            },
            Marker::Skip {
                target: "netns".into(),
                reason: "why not".into(),
            },
            Marker::Done,
            Marker::ModuleFailed("veth".into()),
        ] {
            assert_eq!(Marker::find(&format!("[ 3.1] {m}")), Some(m));
        }
    }
}
