//! The running daemon's control socket: a Unix stream socket, root-only
//! (directory 0700, socket 0600), one JSON request per line, one JSON
//! response per line. The CLI asks it for what only the daemon knows
//! (attacks, mitigations, BGP sessions) and for manual bans.
//!
//! The server does not own state: each request goes, with a reply channel,
//! to the daemon's main loop, so the socket never races the loop that owns
//! mitigations and sessions.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::{fs::PermissionsExt, net::UnixStream},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt},
    net::UnixListener,
    sync::{mpsc, oneshot},
};

/// Where the daemon listens unless configured otherwise.
pub const DEFAULT_SOCKET: &str = "/run/edge-sensor/control.sock";

/// The longest request line accepted (a ban with a long Flow Spec match is
/// well under 1 KiB).
const MAX_REQUEST: usize = 64 * 1024;

/// What a client may ask.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Status,
    Attacks,
    Mitigations,
    Bgp,
    /// The routes quarantined per peer (flap protection).
    BgpQuarantine,
    /// Clears a peer's quarantine: its routes may be sent to it again.
    ClearQuarantine {
        peer: String,
    },
    /// Received routes (the Adj-RIBs-In) matching `query`; for Flow Spec
    /// queries, our own rules beside them.
    Rib {
        query: crate::bgp::RibQuery,
    },
    /// Asks a peer to send its routes again (ROUTE-REFRESH, RFC 2918), for
    /// `families` or every negotiated one.
    RibRefresh {
        peer: String,
        families: Vec<crate::bgp::Family>,
    },
    /// A manual mitigation for `ip`: a Flow Spec filter (`flowspec`, in
    /// the `ban` command's match syntax) or a blackhole; for `duration`
    /// seconds, or until unbanned.
    Ban {
        ip: String,
        flowspec: Option<String>,
        blackhole: bool,
        duration_secs: Option<u64>,
    },
    /// Withdraws the mitigation with this id, or every one for this address.
    Unban {
        target: String,
    },
    /// Everything the web view shows, in one answer: the top destinations
    /// of the last poll, attacks, mitigations with the rules as sent, BGP
    /// sessions, exporters with their loss.
    View,
    /// `[cluster]`: members and their lag, the network-wide attacks with
    /// their owner and the sensor announcing each.
    Cluster,
}

/// The answer: a JSON document, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Response {
    Ok { body: serde_json::Value },
    Error { message: String },
}

/// A request waiting for the main loop's answer.
pub type Pending = (Request, oneshot::Sender<Response>);

/// The control socket could not be set up or used.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control socket {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no daemon answers on {path} (is `edge-sensor run` running? needs root to connect): {source}"
    )]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "control socket {path}: a file that is not a socket is in the way (not removed: \
         move it, or set daemon.control_socket elsewhere)"
    )]
    NotASocket { path: PathBuf },
    #[error("control socket {path}: another daemon answers on it")]
    InUse { path: PathBuf },
    #[error("control socket {path}: bad answer: {message}")]
    Protocol { path: PathBuf, message: String },
}

/// Binds the socket at `path` (replacing a stale one), root-only.
///
/// The parent directory is created (0700) only if missing: an existing one
/// belongs to someone else (a shared /run or /tmp) and keeps its mode. A
/// file at `path` that is not a socket is refused, never deleted.
pub fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    use std::os::unix::fs::{DirBuilderExt, FileTypeExt};
    let io = |source| ControlError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        // `mode` applies to the directories this call creates, and only to them.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(ControlError::NotASocket {
                path: path.to_owned(),
            });
        }
        // A socket left by a daemon that died: nobody answers on it.
        Ok(_) if UnixStream::connect(path).is_err() => std::fs::remove_file(path).map_err(io)?,
        Ok(_) => {
            return Err(ControlError::InUse {
                path: path.to_owned(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let listener = UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    Ok(listener)
}

/// Clients connected now, and the most since the last trim.
static CLIENTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static PEAK: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
/// A burst of more clients than this is followed by a trim.
const TRIM_AFTER: usize = 64;

/// One connected client; the last one out after a burst hands the memory
/// the burst took back to the system. Every client may hold a 64 KiB
/// line: thousands of them take tens of MiB that glibc's allocator would
/// otherwise keep for good (issue 19: 2,000 clients, 19 -> 98 MB, never
/// given back). Serving them all at once keeps `status` prompt under abuse;
/// trimming afterwards keeps the daemon's footprint.
struct Client;

impl Client {
    fn new() -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        let now = CLIENTS.fetch_add(1, Relaxed) + 1;
        PEAK.fetch_max(now, Relaxed);
        Self
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering::Relaxed;
        if CLIENTS.fetch_sub(1, Relaxed) == 1 && PEAK.swap(0, Relaxed) > TRIM_AFTER {
            trim();
        }
    }
}

/// Returns the allocator's free memory to the system (glibc's
/// `malloc_trim`; no allocator crate does this for the system allocator).
fn trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks glibc's own heap; any thread may call it.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Serves clients until the receiver of `requests` is gone.
pub async fn serve(listener: UnixListener, requests: mpsc::Sender<Pending>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let requests = requests.clone();
        let client = Client::new();
        tokio::spawn(async move {
            let _client = client;
            let (read, mut write) = stream.into_split();
            let mut lines = tokio::io::BufReader::new(read.take(MAX_REQUEST as u64 + 1));
            // Bytes, not a String: invalid UTF-8 gets an answer, not a hang-up.
            let mut raw = Vec::new();
            let read =
                tokio::time::timeout(Duration::from_secs(10), lines.read_until(b'\n', &mut raw));
            let response = match read.await {
                Ok(Ok(_)) if raw.len() > MAX_REQUEST => Response::Error {
                    message: format!("request longer than {MAX_REQUEST} bytes"),
                },
                Ok(Ok(_)) if std::str::from_utf8(&raw).is_err() => Response::Error {
                    message: "bad request: not UTF-8".into(),
                },
                Ok(Ok(_)) => match serde_json::from_slice::<Request>(raw.trim_ascii()) {
                    Ok(request) => {
                        let (tx, rx) = oneshot::channel();
                        if requests.send((request, tx)).await.is_err() {
                            return;
                        }
                        rx.await.unwrap_or(Response::Error {
                            message: "the daemon is shutting down".into(),
                        })
                    }
                    Err(e) => Response::Error {
                        message: format!("bad request: {e}"),
                    },
                },
                _ => return,
            };
            let mut out = serde_json::to_vec(&response).unwrap_or_default();
            out.push(b'\n');
            let _ = write.write_all(&out).await;
        });
    }
}

/// Asks the daemon listening on `path`; blocks at most `timeout`.
pub fn request(
    path: &Path,
    request: &Request,
    timeout: Duration,
) -> Result<Response, ControlError> {
    let connect = |source| ControlError::Connect {
        path: path.to_owned(),
        source,
    };
    let io = |source| ControlError::Io {
        path: path.to_owned(),
        source,
    };
    let mut stream = UnixStream::connect(path).map_err(connect)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut line = serde_json::to_vec(request).map_err(|e| ControlError::Protocol {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    line.push(b'\n');
    stream.write_all(&line).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).map_err(io)?;
    serde_json::from_str(answer.trim()).map_err(|e| ControlError::Protocol {
        path: path.to_owned(),
        message: format!("{e}: {answer:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_reach_the_loop_and_answers_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/control.sock");
        let listener = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "root-only socket");
        let (tx, mut rx) = mpsc::channel::<Pending>(4);
        tokio::spawn(serve(listener, tx));
        tokio::spawn(async move {
            while let Some((req, reply)) = rx.recv().await {
                let body = serde_json::to_value(&req).unwrap();
                let _ = reply.send(Response::Ok { body });
            }
        });
        let p = path.clone();
        let ban = Request::Ban {
            ip: "203.0.113.5".into(),
            flowspec: Some("proto udp src-port 123".into()),
            blackhole: false,
            duration_secs: Some(600),
        };
        let sent = ban.clone();
        let answer =
            tokio::task::spawn_blocking(move || request(&p, &sent, Duration::from_secs(5)))
                .await
                .unwrap()
                .unwrap();
        assert_eq!(
            answer,
            Response::Ok {
                body: serde_json::to_value(&ban).unwrap()
            }
        );
        // Garbage gets an error, not a hang or a crash.
        let p = path.clone();
        let answer = tokio::task::spawn_blocking(move || {
            let mut s = UnixStream::connect(&p).unwrap();
            s.write_all(b"{\"request\":\"nuke\"}\n").unwrap();
            let mut line = String::new();
            BufReader::new(s).read_line(&mut line).unwrap();
            line
        })
        .await
        .unwrap();
        assert!(answer.contains("bad request"), "{answer}");
        // Invalid UTF-8: an error answer too, not a closed connection.
        let p = path.clone();
        let answer = tokio::task::spawn_blocking(move || {
            let mut s = UnixStream::connect(&p).unwrap();
            s.write_all(b"{\"request\":\"st\xffatus\"}\n").unwrap();
            let mut line = String::new();
            BufReader::new(s).read_line(&mut line).unwrap();
            line
        })
        .await
        .unwrap();
        assert!(answer.contains("not UTF-8"), "{answer}");
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists(), "left behind, as by a daemon that died");
        bind(&path).expect("a stale socket does not block the start");
    }

    #[tokio::test]
    async fn an_existing_directory_keeps_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let _l = bind(&shared.join("control.sock")).unwrap();
        let mode = std::fs::metadata(&shared).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o7777,
            0o1777,
            "a directory we did not create is left alone"
        );
        // One we create is root-only.
        let _l = bind(&dir.path().join("new/deeper/control.sock")).unwrap();
        let mode = std::fs::metadata(dir.path().join("new/deeper"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[tokio::test]
    async fn a_file_in_the_way_is_refused_not_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        std::fs::write(&path, b"precious").unwrap();
        let e = bind(&path).unwrap_err();
        assert!(e.to_string().contains("not a socket"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    }

    #[tokio::test]
    async fn a_live_socket_is_not_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let _first = bind(&path).unwrap();
        let e = bind(&path).unwrap_err();
        assert!(e.to_string().contains("another daemon"), "{e}");
    }

    #[test]
    fn no_daemon_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = request(
            &dir.path().join("none.sock"),
            &Request::Status,
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("is `edge-sensor run` running?"),
            "{e}"
        );
    }
}
