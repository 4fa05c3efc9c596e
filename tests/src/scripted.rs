//! A scripted, misbehaving BGP peer for the flap protection tests: a raw
//! TCP BGP speaker (AS 65000, 127.0.0.1:179, passive) that parses OPEN,
//! KEEPALIVE and UPDATE just enough to keep what it was sent (per
//! connection, by NLRI bytes, as a router's Adj-RIB-In) and to react to a
//! chosen rule: NOTIFICATION 3/9 then close, or close without a word, as
//! the routers of issue 14 did. Or it resets every session at once.
//!
//! Start it on a tokio runtime in the test's namespace (see
//! [`crate::bgp::in_namespace`]).

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

/// How the peer misbehaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Script {
    /// An UPDATE containing these bytes: NOTIFICATION 3/9 (Optional
    /// Attribute Error, empty data), then close.
    NotifyOn(Vec<u8>),
    /// An UPDATE containing these bytes: close without NOTIFICATION.
    DropOn(Vec<u8>),
    /// Close without NOTIFICATION as soon as the session is established.
    AlwaysReset,
}

/// What the peer saw.
#[derive(Debug, Default)]
pub struct PeerLog {
    /// When each connection's OPEN arrived.
    pub connections: Vec<Instant>,
    /// When each session reached Established (our side).
    pub established: Vec<Instant>,
    /// When we reset a session, and how.
    pub resets: Vec<(Instant, &'static str)>,
    /// The NLRI we hold from the current connection (one entry per
    /// UPDATE's NLRI field).
    pub present: BTreeSet<Vec<u8>>,
    /// Every UPDATE received (whole messages).
    pub updates: Vec<Vec<u8>>,
    /// What happened, in order: sessions, the NLRI of each UPDATE, resets.
    pub history: Vec<(Instant, String)>,
}

impl PeerLog {
    /// Whether an NLRI held now contains `pattern`.
    pub fn holds(&self, pattern: &[u8]) -> bool {
        self.present.iter().any(|n| contains(n, pattern))
    }
}

/// The running peer; stops when dropped.
pub struct ScriptedPeer {
    log: Arc<Mutex<PeerLog>>,
    task: JoinHandle<()>,
}

impl Drop for ScriptedPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ScriptedPeer {
    /// Listens on 127.0.0.1:179 and follows `script`.
    pub async fn start(script: Script) -> Self {
        let listener = TcpListener::bind("127.0.0.1:179")
            .await
            .expect("bind 127.0.0.1:179");
        let log = Arc::new(Mutex::new(PeerLog::default()));
        let l = log.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                // One session at a time, as a router per neighbor.
                let _ = serve(stream, &script, &l).await;
                l.lock().unwrap().present.clear();
            }
        });
        Self { log, task }
    }

    pub fn log(&self) -> MutexGuard<'_, PeerLog> {
        self.log.lock().unwrap()
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    m.push(kind);
    m.extend_from_slice(body);
    m
}

/// Our OPEN: AS 65000, hold 9, id 127.0.0.1; IPv4/IPv6 unicast and flow
/// spec, route refresh, 4-octet AS.
fn open() -> Vec<u8> {
    let mut caps = Vec::new();
    for (afi, safi) in [(1u16, 1u8), (2, 1), (1, 133), (2, 133)] {
        caps.extend_from_slice(&[1, 4]);
        caps.extend_from_slice(&afi.to_be_bytes());
        caps.extend_from_slice(&[0, safi]);
    }
    caps.extend_from_slice(&[2, 0]);
    caps.extend_from_slice(&[65, 4]);
    caps.extend_from_slice(&65000u32.to_be_bytes());
    let mut body = vec![4];
    body.extend_from_slice(&65000u16.to_be_bytes());
    body.extend_from_slice(&9u16.to_be_bytes());
    body.extend_from_slice(&[127, 0, 0, 1]);
    body.push(caps.len() as u8 + 2);
    body.push(2);
    body.push(caps.len() as u8);
    body.extend_from_slice(&caps);
    message(1, &body)
}

/// Reads one message: (type, body); `None` at EOF or error. Cancel-safe
/// (what was read stays in `buf`), so it can race the keepalive timer.
async fn read_message(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(u8, Vec<u8>)> {
    loop {
        if buf.len() >= 19 {
            let len = u16::from_be_bytes([buf[16], buf[17]]) as usize;
            if len < 19 {
                return None;
            }
            if buf.len() >= len {
                let frame: Vec<u8> = buf.drain(..len).collect();
                return Some((frame[18], frame[19..].to_vec()));
            }
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The NLRI an UPDATE announces and withdraws (MP_REACH/MP_UNREACH and
/// plain IPv4), each field as a whole.
fn nlri(body: &[u8]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let (mut reach, mut unreach) = (Vec::new(), Vec::new());
    let Some(wlen) = body
        .get(..2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
    else {
        return (reach, unreach);
    };
    if wlen > 0 {
        unreach.push(body[2..2 + wlen].to_vec());
    }
    let at = 2 + wlen;
    let alen = u16::from_be_bytes([body[at], body[at + 1]]) as usize;
    let attrs = &body[at + 2..at + 2 + alen];
    let plain = &body[at + 2 + alen..];
    if !plain.is_empty() {
        reach.push(plain.to_vec());
    }
    let mut i = 0;
    while i + 3 <= attrs.len() {
        let (flags, kind) = (attrs[i], attrs[i + 1]);
        let (len, head) = if flags & 0x10 != 0 {
            (u16::from_be_bytes([attrs[i + 2], attrs[i + 3]]) as usize, 4)
        } else {
            (attrs[i + 2] as usize, 3)
        };
        let value = &attrs[i + head..i + head + len];
        match kind {
            14 => {
                let nh = value[3] as usize;
                let n = &value[5 + nh..];
                if !n.is_empty() {
                    reach.push(n.to_vec());
                }
            }
            15 => {
                let n = &value[3..];
                if !n.is_empty() {
                    unreach.push(n.to_vec());
                }
            }
            _ => {}
        }
        i += head + len;
    }
    (reach, unreach)
}

async fn serve(mut s: TcpStream, script: &Script, log: &Mutex<PeerLog>) -> Option<()> {
    let mut buf = Vec::new();
    let (kind, _) = read_message(&mut s, &mut buf).await?;
    if kind != 1 {
        return None;
    }
    log.lock().unwrap().connections.push(Instant::now());
    s.write_all(&open()).await.ok()?;
    s.write_all(&message(4, &[])).await.ok()?;
    let mut established = false;
    let mut keepalive = tokio::time::interval(Duration::from_secs(3));
    loop {
        let msg = tokio::select! {
            m = read_message(&mut s, &mut buf) => m?,
            _ = keepalive.tick() => {
                s.write_all(&message(4, &[])).await.ok()?;
                continue;
            }
        };
        match msg {
            (4, _) if !established => {
                established = true;
                {
                    let mut l = log.lock().unwrap();
                    l.established.push(Instant::now());
                    l.history.push((Instant::now(), "established".into()));
                }
                if *script == Script::AlwaysReset {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    log.lock().unwrap().resets.push((Instant::now(), "always"));
                    return None;
                }
            }
            (2, body) => {
                let whole = message(2, &body);
                let react = match script {
                    Script::NotifyOn(p) if contains(&whole, p) => Some("notification"),
                    Script::DropOn(p) if contains(&whole, p) => Some("dropped"),
                    _ => None,
                };
                {
                    let mut l = log.lock().unwrap();
                    let (reach, unreach) = nlri(&body);
                    let what = format!("update +{reach:?} -{unreach:?} reset: {react:?}");
                    l.history.push((Instant::now(), what));
                    l.updates.push(whole);
                    match react {
                        Some(how) => l.resets.push((Instant::now(), how)),
                        None => {
                            for n in unreach {
                                l.present.remove(&n);
                            }
                            l.present.extend(reach);
                        }
                    }
                }
                if react == Some("notification") {
                    // Sent, then a clean close: read what is still
                    // coming so the close is a FIN, not a reset.
                    s.write_all(&message(3, &[3, 9])).await.ok()?;
                    let _ = s.shutdown().await;
                    let mut sink = [0u8; 4096];
                    let drain = async { while s.read(&mut sink).await.is_ok_and(|n| n > 0) {} };
                    let _ = tokio::time::timeout(Duration::from_millis(300), drain).await;
                }
                if react.is_some() {
                    return None;
                }
            }
            (3, _) => return None,
            _ => {}
        }
    }
}
