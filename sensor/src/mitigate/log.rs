//! The event log: each attack and mitigation event as one JSON line
//! (`mitigation.event_log`), through `tracing`, and to the optional notify
//! program (`mitigation.notify`), which gets the line on stdin.

use std::{
    fs::{File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime},
};

use serde_json::Value;

/// Where events go.
pub struct EventLog {
    file: Option<(PathBuf, File)>,
    notify: Option<PathBuf>,
}

impl EventLog {
    /// Opens (appends to) `path`, creating its directory.
    pub fn open(path: Option<&Path>, notify: Option<&Path>) -> std::io::Result<Self> {
        let file = match path {
            Some(p) => {
                if let Some(dir) = p.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let f = OpenOptions::new().create(true).append(true).open(p)?;
                Some((p.to_owned(), f))
            }
            None => None,
        };
        Ok(Self {
            file,
            notify: notify.map(Path::to_owned),
        })
    }

    /// Records one event (`event` serializes to an object with an
    /// `"event"` name: a mitigation [`super::Record`] or the daemon's own).
    pub fn record(&mut self, event: impl serde::Serialize) {
        let Ok(mut event) = serde_json::to_value(event) else {
            tracing::error!("an event that does not serialize");
            return;
        };
        let unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        if let Value::Object(map) = &mut event {
            map.insert("time".into(), Value::from(unix));
        }
        let line = event.to_string();
        let name = event["event"].as_str().unwrap_or("event");
        match name {
            "mitigation_refused" | "mitigation_dropped" | "mitigation_not_escalated" => {
                tracing::warn!(target: "edge_sensor::events", "{line}")
            }
            _ => tracing::info!(target: "edge_sensor::events", "{line}"),
        }
        if let Some((path, file)) = &mut self.file
            && let Err(e) = writeln!(file, "{line}")
        {
            tracing::error!("event log {}: {e}", path.display());
        }
        if let Some(program) = &self.notify {
            notify(program, line);
        }
    }
}

/// Runs the notify program with `line` on stdin, in a thread of its own:
/// the daemon never waits on it; one that runs past 10 s is killed.
fn notify(program: &Path, line: String) {
    let program = program.to_owned();
    std::thread::spawn(move || {
        let child = Command::new(&program)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("notify program {}: {e}", program.display());
                return;
            }
        };
        if let Some(mut stdin) = child.stdin.take() {
            let _ = writeln!(stdin, "{line}");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return,
                Ok(Some(status)) => {
                    tracing::warn!("notify program {} exited with {status}", program.display());
                    return;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    tracing::warn!("notify program {} killed after 10 s", program.display());
                    return;
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_appended_as_json_lines_and_handed_to_the_hook() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("logs/events.jsonl");
        let seen = dir.path().join("hook.out");
        let hook = dir.path().join("hook.sh");
        std::fs::write(&hook, format!("#!/bin/sh\ncat >> {}\n", seen.display())).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut events = EventLog::open(Some(&log), Some(&hook)).unwrap();
        events.record(serde_json::json!({"event": "attack_started", "attack": {"id": 1}}));
        events.record(serde_json::json!({"event": "attack_ended", "attack": {"id": 1}}));
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["event"], "attack_ended");
        assert!(lines[0]["time"].as_f64().unwrap() > 1.7e9);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got = std::fs::read_to_string(&seen).unwrap_or_default();
            if got.lines().count() == 2 {
                assert!(got.contains("attack_started"));
                break;
            }
            assert!(Instant::now() < deadline, "hook saw: {got:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
