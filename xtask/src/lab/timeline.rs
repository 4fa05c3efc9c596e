//! The lab's timeline: events as they happen (text, or JSON lines with
//! `--json`), and the summary at the end.

use std::time::Instant;

use serde_json::{Value, json};

/// The timeline, as text or JSON lines, with times since the lab started.
pub(super) struct Timeline {
    json: bool,
    pub(super) start: Instant,
    at: Vec<(String, f64)>,
}

impl Timeline {
    pub(super) fn new(json: bool) -> Self {
        Self {
            json,
            start: Instant::now(),
            at: Vec::new(),
        }
    }

    pub(super) fn note(&mut self, event: &str, text: String, data: Value) {
        let t = self.start.elapsed().as_secs_f64();
        self.note_at(t, event, text, data);
    }

    /// An event that happened at `t` (seconds of the timeline), noted now.
    pub(super) fn note_at(&mut self, t: f64, event: &str, text: String, mut data: Value) {
        self.at.push((event.to_string(), t));
        if self.json {
            data["event"] = json!(event);
            data["t"] = json!(t);
            println!("{data}");
        } else {
            println!("[{t:>7.2}s] {text}");
        }
    }

    /// When `event` was first noted, in seconds of the timeline.
    pub(super) fn time_of(&self, event: &str) -> Option<f64> {
        self.at.iter().find(|(x, _)| x == event).map(|(_, t)| *t)
    }

    /// A summary of the caller's own: `s` as JSON, or `text`.
    pub(super) fn summary_with(&self, s: &Value, text: String) {
        if self.json {
            println!("{s}");
        } else {
            println!("{text}");
        }
    }

    pub(super) fn summary(&self, attack: &str, complete: bool) {
        let at = |e: &str| self.at.iter().find(|(x, _)| x == e).map(|(_, t)| *t);
        let since = |e: &str| Some(at(e)? - at("attack_started")?);
        let after_end = (|| Some(at("withdrawn")? - at("attack_ended")?))();
        let s = json!({
            "event": "summary",
            "attack": attack,
            "complete": complete,
            "detect_s": since("detected"),
            "rule_on_peer_s": since("rule_on_peer"),
            "withdrawn_after_end_s": after_end,
            "fastnetmon_ban_s": since("fastnetmon_ban"),
        });
        if self.json {
            println!("{s}");
        } else {
            let f = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.2} s"));
            println!(
                "summary: detection {} and rule on the peer {} after the attack started; \
                 withdrawn {} after it ended",
                f(&s["detect_s"]),
                f(&s["rule_on_peer_s"]),
                f(&s["withdrawn_after_end_s"])
            );
            if !s["fastnetmon_ban_s"].is_null() {
                println!(
                    "         FastNetMon banned {} after the attack started",
                    f(&s["fastnetmon_ban_s"])
                );
            }
        }
    }
}
