//! A child process with a deadline, its stdout and stderr read line by line
//! as they come (one pipe for both, so the lines keep their order).

use std::{
    io::{BufRead, BufReader},
    os::unix::process::CommandExt,
    process::{Command, ExitStatus, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

/// What the line handler wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Continue,
    /// Kill the child now (e.g. a guest that reported a fatal error).
    Stop,
}

/// How the child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Exited(ExitStatus),
    /// Killed at the deadline.
    TimedOut,
    /// Killed because the line handler asked.
    Stopped,
}

/// After the child exits, how long its descendants may keep the pipe open
/// before they are killed (a test that leaves a daemon behind must not hang
/// the run).
const DRAIN: Duration = Duration::from_secs(2);

/// Runs `cmd` in a process group of its own until it exits or `limit`
/// passes, handing each output line to `on_line`. The whole group is killed
/// at the end, so nothing it started outlives it.
pub fn run(
    mut cmd: Command,
    limit: Duration,
    mut on_line: impl FnMut(&str) -> Next,
) -> std::io::Result<Ended> {
    let (reader, writer) = std::io::pipe()?;
    cmd.stdin(Stdio::null())
        .stdout(writer.try_clone()?)
        .stderr(writer)
        .process_group(0);
    let mut child = cmd.spawn()?;
    // The command holds the pipe's write end: without dropping it here the
    // reader would never see the end of the output.
    drop(cmd);
    let group = child.id() as i32;

    let (tx, rx) = mpsc::channel::<String>();
    // Not joined: a descendant in a group of its own may hold the pipe open.
    std::thread::spawn(move || {
        let mut reader = BufReader::new(reader);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    let line = line.trim_end_matches(['\n', '\r']);
                    if tx.send(line.to_owned()).is_err() {
                        break;
                    }
                }
            }
        }
    });

    let deadline = Instant::now() + limit;
    let mut exited: Option<(ExitStatus, Instant)> = None;
    let ended = loop {
        let now = Instant::now();
        if let Some((status, at)) = exited
            && now > at + DRAIN
        {
            break Ended::Exited(status);
        }
        if now >= deadline {
            break exited.map_or(Ended::TimedOut, |(s, _)| Ended::Exited(s));
        }
        match rx.recv_timeout(Duration::from_millis(100).min(deadline - now)) {
            Ok(line) => {
                if on_line(&line) == Next::Stop {
                    break Ended::Stopped;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                if let Some((status, _)) = exited {
                    break Ended::Exited(status);
                }
                // Output closed: only the exit status is left to wait for.
                match wait_until(&mut child, deadline)? {
                    Some(status) => break Ended::Exited(status),
                    None => break Ended::TimedOut,
                }
            }
        }
        if exited.is_none()
            && let Some(status) = child.try_wait()?
        {
            exited = Some((status, Instant::now()));
        }
    };
    // SAFETY: signalling the process group this function created.
    unsafe { libc::kill(-group, libc::SIGKILL) };
    let _ = child.wait();
    // Lines still queued are handed on; a killed group closes the pipe soon.
    for line in rx.try_iter() {
        on_line(&line);
    }
    Ok(ended)
}

fn wait_until(
    child: &mut std::process::Child,
    deadline: Instant,
) -> std::io::Result<Option<ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
