//! `edge-sensor top --watch` in a real terminal (a tmux pane), against pinned
//! maps the real XDP program fills meanwhile: the table is redrawn in place
//! (one title and one header on screen, nothing scrolled off), its values
//! follow the traffic, and colour is used on the terminal unless NO_COLOR.

use std::{
    process::{Command, Output},
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use edge_sensor_tests::{
    filled::{Filled, syn_datagram},
    require_root, require_tool, sensor_bin, unique_name,
};

/// A tmux server on a socket of the test's own, killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Self {
        require_tool("tmux");
        Self {
            socket: unique_name("es-tmux-"),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("run tmux")
    }

    /// Starts `command` in a detached 150x30 session named `name`.
    fn start(&self, name: &str, command: &str) {
        self.start_sized(name, command, (150, 30));
    }

    /// Starts `command` in a detached session of `size` (columns, rows).
    fn start_sized(&self, name: &str, command: &str, size: (u16, u16)) {
        let (x, y) = (size.0.to_string(), size.1.to_string());
        let out = self.run(&["new-session", "-d", "-s", name, "-x", &x, "-y", &y, command]);
        assert!(
            out.status.success(),
            "tmux: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Keep the pane after the command exits, to read its last words.
        self.run(&["set-option", "-t", name, "remain-on-exit", "on"]);
    }

    /// The visible screen (with `-e`, its colour escapes too).
    fn capture(&self, name: &str, escapes: bool) -> String {
        let mut args = vec!["capture-pane", "-p", "-t", name];
        if escapes {
            args.push("-e");
        }
        String::from_utf8_lossy(&self.run(&args).stdout).into_owned()
    }

    fn format(&self, name: &str, format: &str) -> String {
        let out = self.run(&["display-message", "-p", "-t", name, format]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Captures until `done` holds (at most `limit`).
    fn wait_for(&self, name: &str, limit: Duration, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let screen = self.capture(name, false);
            if done(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out; the pane shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // Our own server only (its own socket), and the socket file it leaves.
        let socket = self.run(&["display-message", "-p", "#{socket_path}"]);
        let _ = self.run(&["kill-server"]);
        let path = String::from_utf8_lossy(&socket.stdout).trim().to_owned();
        if path.ends_with(&self.socket) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The PPS column of the row of `ip`.
fn pps(screen: &str, ip: &str) -> Option<String> {
    let row = screen.lines().find(|l| l.starts_with(&format!("{ip} ")))?;
    // "1.23 M" is two words: the column is 10 wide after the 40-wide address.
    Some(row.get(40..51)?.trim().to_owned())
}

/// What a frame must look like: the title, the header, rows, the footer,
/// and nothing else (no remains of an earlier frame).
fn assert_one_clean_frame(screen: &str) {
    let lines: Vec<&str> = screen.lines().collect();
    assert!(lines[0].starts_with("edge-sensor top - "), "{screen}");
    assert!(lines[1].starts_with("DESTINATION "), "{screen}");
    assert_eq!(screen.matches("DESTINATION").count(), 1, "{screen}");
    assert_eq!(screen.matches("edge-sensor top").count(), 1, "{screen}");
    let footer = lines
        .iter()
        .position(|l| l.ends_with("destinations tracked"))
        .unwrap_or_else(|| panic!("no footer:\n{screen}"));
    for row in &lines[2..footer] {
        assert!(
            row.starts_with("203.0.113.") && row.split_whitespace().count() >= 8,
            "not a table row: {row:?}\n{screen}"
        );
    }
    assert!(
        lines[footer + 1..].iter().all(|l| l.trim().is_empty()),
        "garbage under the table:\n{screen}"
    );
}

#[test]
fn top_watch_redraws_in_place_as_the_traffic_changes() {
    require_root();
    let tmux = Tmux::new();
    let f = Filled::new();
    let big = syn_datagram([203, 0, 113, 10], 4);
    let small = syn_datagram([203, 0, 113, 20], 1);
    let top = format!(
        "{} top --watch --interval 0.5 --pin-path {}",
        sensor_bin().display(),
        f.path().display()
    );
    let command = format!("env -u NO_COLOR TERM=xterm {top}");
    let plain = format!("env NO_COLOR=1 TERM=xterm {top}");

    // Phase 1: only .10, one datagram per round; phase 2: .20 too, and .10
    // at three datagrams per round.
    let phase = AtomicUsize::new(1);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let deadline = Instant::now() + Duration::from_secs(40);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                if phase.load(Ordering::Relaxed) == 1 {
                    f.send(&big);
                } else {
                    for frame in [&big, &big, &big, &small] {
                        f.send(frame);
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            tmux.start("top", &command);
            let first = tmux.wait_for("top", Duration::from_secs(10), |s| {
                pps(s, "203.0.113.10").is_some_and(|p| p != "0")
            });
            assert_one_clean_frame(&first);
            assert!(pps(&first, "203.0.113.20").is_none(), "{first}");

            phase.store(2, Ordering::Relaxed);
            let second = tmux.wait_for("top", Duration::from_secs(10), |s| {
                pps(s, "203.0.113.20").is_some_and(|p| p != "0")
            });
            assert_one_clean_frame(&second);
            // Redrawn, not appended: new values and a new time in the same place.
            assert_ne!(pps(&first, "203.0.113.10"), pps(&second, "203.0.113.10"));
            assert_eq!(
                second
                    .lines()
                    .nth(2)
                    .map(|l| l.starts_with("203.0.113.10 ")),
                Some(true),
                "the busier first:\n{second}"
            );
            assert_eq!(
                tmux.format("top", "#{history_size}"),
                "0",
                "nothing scrolled off the screen"
            );
            assert_eq!(
                tmux.format("top", "#{pane_dead}"),
                "0",
                "top --watch keeps running"
            );
            // On the terminal the header is in reverse video...
            let escaped = tmux.capture("top", true);
            let header = escaped.lines().nth(1).unwrap_or_default();
            assert!(
                header.starts_with("\x1b[7m") || header.starts_with("\x1b[0;7m"),
                "{escaped:?}"
            );

            // ...and never with NO_COLOR.
            tmux.start("plain", &plain);
            tmux.wait_for("plain", Duration::from_secs(10), |s| {
                pps(s, "203.0.113.20").is_some()
            });
            let escaped = tmux.capture("plain", true);
            assert!(!escaped.contains('\x1b'), "{escaped:?}");
        }));
        stop.store(true, Ordering::Relaxed);
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    });
}

#[test]
fn top_watch_fits_a_small_terminal() {
    require_root();
    let tmux = Tmux::new();
    let f = Filled::new();
    let frames: Vec<Vec<u8>> = (1..=12)
        .map(|i| syn_datagram([203, 0, 113, i], 1))
        .collect();
    let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    let command = format!(
        "env NO_COLOR=1 TERM=xterm {} top --watch --interval 0.3 --pin-path {}",
        sensor_bin().display(),
        f.path().display()
    );
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            f.stream(
                &refs,
                &stop,
                Duration::from_millis(2),
                Duration::from_secs(30),
            )
        });
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // 8 rows: title, header, 5 destinations, footer; 60 columns.
            tmux.start_sized("small", &command, (60, 8));
            let screen = tmux.wait_for("small", Duration::from_secs(10), |s| {
                s.contains("12 destinations tracked")
            });
            // A few more frames, then nothing may have scrolled.
            std::thread::sleep(Duration::from_millis(1200));
            let screen_later = tmux.capture("small", false);
            for screen in [&screen, &screen_later] {
                let lines: Vec<&str> = screen.lines().collect();
                assert_eq!(lines.len(), 8, "{screen}");
                assert!(lines[0].starts_with("edge-sensor top - "), "{screen}");
                assert!(lines[1].starts_with("DESTINATION"), "{screen}");
                assert!(
                    lines[2..7].iter().all(|l| l.starts_with("203.0.113.")),
                    "{screen}"
                );
                assert_eq!(lines[7], "12 destinations tracked", "{screen}");
                assert!(lines.iter().all(|l| l.chars().count() <= 60), "{screen}");
            }
            assert_eq!(tmux.format("small", "#{history_size}"), "0");
        }));
        stop.store(true, Ordering::Relaxed);
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    });
}
