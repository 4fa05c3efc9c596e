//! What an operator needs from a verifier log, in four lines.
//!
//! A refused program comes with up to megabytes of log, of which only the
//! tail matters: the verifier's reason (the last message before its
//! statistics), the statistics line (`processed N insns (limit ..) ..`), and
//! the instruction it stopped at, with the source line the compiler's line
//! info attached to it. Kernel log format: kernel/bpf/verifier.c and log.c.

use std::fmt;

/// The useful lines of a verifier log (each `None` where the log lacks it,
/// e.g. when it was truncated).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// The verifier's reason, e.g. `BPF program is too large. Processed
    /// 1000001 insn` or `math between pkt pointer and register with
    /// unbounded min value is not allowed`.
    pub reason: Option<String>,
    /// `processed N insns (limit 1000000) max_states_per_insn ..`.
    pub stats: Option<String>,
    /// The last instruction the log shows, `5738: (0f) r5 += r1` (its
    /// register state annotation cut off).
    pub stopped_at: Option<String>,
    /// The source line of that instruction, `sampled.rs:201 p += ..`.
    pub source: Option<String>,
}

/// An instruction line: `N: (op) ...` (not a state line `N: R1=...`).
fn instruction(line: &str) -> Option<&str> {
    let (index, rest) = line.split_once(": (")?;
    if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let op = rest.get(..3)?;
    if !(op.as_bytes()[..2].iter().all(u8::is_ascii_hexdigit) && op.ends_with(')')) {
        return None;
    }
    // `; R1=..` after the instruction is the state it produced: noise here.
    let text = match line.find("  ;") {
        Some(at) => &line[..at],
        None => line,
    };
    Some(text.trim_end())
}

/// Lines the verifier prints after its reason that are not the reason.
fn bookkeeping(line: &str) -> bool {
    line.is_empty()
        || line.starts_with("verification time ")
        || line.starts_with("stack depth ")
        || line.starts_with("processed ")
        || line.starts_with("from ")
        || line.starts_with("; ")
        || line.starts_with("mark_precise:")
        || line.starts_with("last_idx ")
        || line.starts_with("func#")
        || line.starts_with("frame")
        || line.starts_with('-')
        || instruction(line).is_some()
        || state_line(line)
}

/// `N: R1=... R10=fp0` or `N: frame1: ...`: register state, not a message.
fn state_line(line: &str) -> bool {
    line.split_once(": ").is_some_and(|(index, rest)| {
        !index.is_empty()
            && index.bytes().all(|b| b.is_ascii_digit())
            && (rest.starts_with('R') || rest.starts_with("frame"))
    })
}

/// `; p += 1; @ sampled.rs:201` as `sampled.rs:201 p += 1;`.
fn source_line(line: &str) -> Option<String> {
    let text = line.strip_prefix("; ")?;
    Some(match text.rsplit_once(" @ ") {
        Some((code, place)) => format!("{place} {}", code.trim()),
        None => text.trim().to_owned(),
    })
}

/// Summarises `log` (the whole log, or the tail aya kept).
pub fn summarize(log: &str) -> Summary {
    let lines: Vec<&str> = log.lines().map(str::trim_end).collect();
    let stats_at = lines
        .iter()
        .rposition(|l| l.starts_with("processed ") && l.contains(" insns (limit "));
    let before = &lines[..stats_at.unwrap_or(lines.len())];
    let reason = before
        .iter()
        .rev()
        .find(|l| !bookkeeping(l.trim()))
        .map(|l| l.trim().to_owned());
    let stop = before.iter().rposition(|l| instruction(l).is_some());
    let source = stop.and_then(|at| {
        before[..at]
            .iter()
            .rev()
            // The line info belongs to the instructions after it, up to the
            // next one: stop looking at the previous jump target (`from`).
            .take_while(|l| !l.starts_with("from "))
            .find_map(|l| source_line(l))
    });
    Summary {
        reason,
        stats: stats_at.map(|at| lines[at].trim().to_owned()),
        stopped_at: stop
            .and_then(|at| instruction(before[at]))
            .map(str::to_owned),
        source,
    }
}

impl Summary {
    /// `processed N insns`: the instructions the verifier processed.
    pub fn processed_insns(&self) -> Option<u64> {
        self.stat("processed")
    }

    /// `total_states N`.
    pub fn total_states(&self) -> Option<u64> {
        self.stat("total_states")
    }

    /// `peak_states N`.
    pub fn peak_states(&self) -> Option<u64> {
        self.stat("peak_states")
    }

    /// The number after `key` in the statistics line.
    fn stat(&self, key: &str) -> Option<u64> {
        let mut words = self.stats.as_deref()?.split_whitespace();
        words.find(|w| *w == key)?;
        words.next()?.parse().ok()
    }
}

/// `stack depth 104+56+0+...`: the stack bytes of each function of the
/// program, in program order (empty when the log lacks the line).
pub fn stack_depths(log: &str) -> Vec<u64> {
    log.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("stack depth "))
        .map(|d| d.split('+').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_default()
}

impl fmt::Display for Summary {
    /// One line per known part: for the error block of `edge-sensor run`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let or = |v: &Option<String>| v.clone().unwrap_or_else(|| "(not in the log)".into());
        writeln!(f, "  reason:     {}", or(&self.reason))?;
        writeln!(f, "  stats:      {}", or(&self.stats))?;
        write!(f, "  stopped at: {}", or(&self.stopped_at))?;
        if let Some(source) = &self.source {
            write!(f, "\n  source:     {source}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_too_large_for_the_instruction_limit() {
        // The tail of a real log (kernel 6.18, this project's program).
        let s = summarize(include_str!("testdata/too_large.log"));
        assert_eq!(
            s.reason.as_deref(),
            Some("BPF program is too large. Processed 1000001 insn")
        );
        assert_eq!(
            s.stats.as_deref(),
            Some(
                "processed 1000001 insns (limit 1000000) max_states_per_insn 16 \
                 total_states 48584 peak_states 108178 mark_read 0"
            )
        );
        assert_eq!(s.stopped_at.as_deref(), Some("5738: (0f) r5 += r1"));
        assert_eq!(
            s.source.as_deref(),
            Some("sampled.rs:201 p += (u32::from(v.u8(p + 1)) + 2) * 4;")
        );
    }

    #[test]
    fn unbounded_packet_arithmetic() {
        let log = "\
; let off = usize::from(len); @ sflow.rs:88
211: (bf) r2 = r7                     ; R2_w=pkt(r=42) R7=pkt(r=42)
212: (0f) r2 += r1
math between pkt pointer and register with unbounded min value is not allowed
verification time 812 usec
stack depth 64
processed 5120 insns (limit 1000000) max_states_per_insn 4 total_states 311 peak_states 311 mark_read 57
";
        let s = summarize(log);
        assert_eq!(
            s.reason.as_deref(),
            Some("math between pkt pointer and register with unbounded min value is not allowed")
        );
        assert_eq!(s.stopped_at.as_deref(), Some("212: (0f) r2 += r1"));
        assert_eq!(
            s.source.as_deref(),
            Some("sflow.rs:88 let off = usize::from(len);")
        );
        assert!(s.stats.unwrap().starts_with("processed 5120 insns"));
        // Without the statistics (level 1 only), the reason is still the last message.
        let s = summarize(&log.replace("processed 5120", "x").replace(
            "x insns (limit 1000000) max_states_per_insn 4 total_states 311 peak_states 311 mark_read 57\n",
            "",
        ));
        assert!(s.reason.unwrap().starts_with("math between pkt pointer"));
        assert_eq!(s.stats, None);
    }

    #[test]
    fn a_bad_access_after_a_jump_and_state_lines() {
        let log = "\
from 40 to 52: R0=scalar() R6=ctx() R10=fp0
52: R0=scalar() R6=ctx() R10=fp0
52: (61) r1 = *(u32 *)(r0 +0)
R0 invalid mem access 'scalar'
processed 77 insns (limit 1000000) max_states_per_insn 0 total_states 5 peak_states 5 mark_read 2
";
        let s = summarize(log);
        assert_eq!(s.reason.as_deref(), Some("R0 invalid mem access 'scalar'"));
        assert_eq!(
            s.stopped_at.as_deref(),
            Some("52: (61) r1 = *(u32 *)(r0 +0)")
        );
        assert_eq!(s.source, None);
        let shown = s.to_string();
        assert!(shown.contains("stopped at: 52: (61)"), "{shown}");
        assert!(!shown.contains("source:"), "{shown}");
    }

    #[test]
    fn an_empty_or_truncated_log_says_so() {
        assert_eq!(summarize(""), Summary::default());
        assert!(summarize("").to_string().contains("(not in the log)"));
    }

    #[test]
    fn statistics_and_stack_depths_as_numbers() {
        let log = "stack depth 104+56+0+40\nprocessed 18666 insns (limit 1000000) max_states_per_insn 8 total_states 819 peak_states 717 mark_read 15\n";
        let s = summarize(log);
        assert_eq!(s.processed_insns(), Some(18_666));
        assert_eq!(s.total_states(), Some(819));
        assert_eq!(s.peak_states(), Some(717));
        assert_eq!(stack_depths(log), vec![104, 56, 0, 40]);
        assert_eq!(summarize("").processed_insns(), None);
        assert!(stack_depths("").is_empty());
    }
}
