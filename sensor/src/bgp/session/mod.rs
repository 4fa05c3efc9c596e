//! One peer's session: the RFC 4271 §8 state machine as a tokio task.
//!
//! Idle -> Connect (or Active, waiting for the router when passive) ->
//! OpenSent -> OpenConfirm -> Established; any error, NOTIFICATION, closed
//! connection or hold timer expiry goes back to Idle, and the next attempt
//! waits the connect-retry time, doubled on each failure up to a maximum,
//! with jitter (§8.1 DampPeerOscillations in spirit). Outgoing connections
//! only (or incoming only, when passive), so no collision detection (§6.8).
//!
//! On Established the whole Adj-RIB-Out is sent, then End-of-RIB per family
//! (RFC 4724 §2); afterwards each change the speaker queues is sent as it
//! comes, read from the Adj-RIB-Out at send time (present: announce,
//! absent: withdraw), so nothing queued while down is lost or stale.
//!
//! One file per concern: this file has the states and the outer loop
//! (connect or accept, run a session, back off); `fsm.rs` the state
//! machine over one connection with its timers, `conn.rs` the I/O,
//! `announce.rs` the UPDATEs sent from the Adj-RIB-Out, `probation.rs`
//! the routes blamed for resets, `shared.rs` what the speaker shares.

mod announce;
mod conn;
mod fsm;
mod probation;
mod shared;

use std::{
    io,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use serde::Serialize;
use tokio::{
    net::TcpListener,
    sync::{mpsc, watch},
};

pub(crate) use shared::PeerShared;
pub use shared::{HISTORY, Transition};

use super::{
    flap::{Reset, STABLE_AFTER},
    route::{Route, RouteKey},
    tcp,
};
use conn::{Conn, End};

/// Hold time while waiting for the peer's OPEN (RFC 4271 §8.2.2: "a large
/// value", 4 minutes suggested).
const OPEN_HOLD: Duration = Duration::from_secs(240);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Session states (RFC 4271 §8.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

/// How the speaker asks a session to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop {
    /// Withdraw every route before the Cease; otherwise, with graceful
    /// restart negotiated, close without NOTIFICATION so the router keeps
    /// our rules as stale for its restart time (RFC 4724 §4.2).
    pub withdraw_all: bool,
}

/// A session task's inputs.
pub(crate) struct Task {
    pub shared: Arc<PeerShared>,
    pub changes: mpsc::UnboundedReceiver<RouteKey>,
    /// Families the operator wants the peer to send again (RFC 2918).
    pub refresh: mpsc::UnboundedReceiver<crate::bgp::capability::Family>,
    pub stop: watch::Receiver<Option<Stop>>,
    /// Routes sent this session that have not proven themselves yet.
    pub unproven: Vec<(Route, Instant)>,
    /// How the last session ended, when that may be our UPDATEs' fault.
    pub reset: Option<Reset>,
    /// A NOTIFICATION was sent or received on this connection: graceful
    /// restart does not apply to its end (RFC 4724 §4.2).
    pub notified: bool,
}

impl Task {
    /// Runs until stopped: connect (or accept), run the session, back off,
    /// again.
    pub async fn run(mut self) {
        let cfg = self.shared.config.clone();
        let initial = Duration::from_secs(cfg.connect_retry);
        let max = Duration::from_secs(cfg.connect_retry_max);
        let mut backoff = initial;
        let mut listener: Option<TcpListener> = None;
        loop {
            if self.stop.borrow().is_some() {
                break;
            }
            let stream = if cfg.passive {
                self.shared.set_state(SessionState::Active);
                if listener.is_none() {
                    match tcp::listen(&cfg) {
                        Ok(l) => listener = Some(l),
                        Err(e) => self
                            .shared
                            .error(format!("listen on port {}: {e}", cfg.port)),
                    }
                }
                match &listener {
                    Some(l) => tokio::select! {
                        r = tcp::accept(l, &cfg) => r,
                        _ = self.stop.changed() => break,
                    },
                    None => Err(io::Error::other("not listening")),
                }
            } else {
                self.shared.set_state(SessionState::Connect);
                tokio::select! {
                    r = tcp::connect(&cfg, CONNECT_TIMEOUT) => r,
                    _ = self.stop.changed() => break,
                }
            };
            let end = match stream {
                Ok(stream) => {
                    let conn = Conn {
                        stream,
                        buf: Vec::new(),
                    };
                    let started = Instant::now();
                    self.unproven.clear();
                    self.reset = None;
                    self.notified = false;
                    let end = self.session(conn).await;
                    let (up, restart) = {
                        let s = self.shared.stats();
                        let restart = s
                            .negotiated
                            .as_ref()
                            .filter(|n| n.graceful_restart && !self.notified)
                            .and_then(|n| n.peer_restart_time)
                            .map(|t| Duration::from_secs(u64::from(t)));
                        (s.established_at.map(|t| t.elapsed()), restart)
                    };
                    if up.is_some() {
                        // RFC 4724 §4.2: stale for the peer's restart
                        // time, or gone at once.
                        self.shared.rib_in().session_down(restart, Instant::now());
                    }
                    let stable = up.is_some_and(|u| u >= STABLE_AFTER);
                    if stable {
                        self.shared.flap().attempts.clear();
                    } else if up.is_some() && self.reset.is_some() {
                        // An oscillation: counted for the per-minute cap.
                        self.shared.flap().attempts.push_back(started);
                    }
                    if stable || (up.is_some() && self.reset.is_none()) {
                        // It worked for a while, or ended for another
                        // reason than a reset (Cease, hold timer): start
                        // over from the short wait. Resets keep doubling it.
                        backoff = initial;
                    }
                    if up.is_some() && matches!(end, End::Down) {
                        self.blame();
                    }
                    end
                }
                Err(e) => {
                    self.shared
                        .error(format!("connect to {}:{}: {e}", cfg.address, cfg.port));
                    End::Down
                }
            };
            self.shared.set_state(SessionState::Idle);
            if let End::Stopped = end {
                break;
            }
            let wait = {
                let mut flap = self.shared.flap();
                let now = Instant::now();
                let wait = jittered(backoff).max(flap.damp_wait(now));
                flap.backoff = backoff;
                flap.next_attempt = Some(now + wait);
                wait
            };
            if wait > backoff {
                tracing::info!(peer = %cfg.name, wait = ?wait,
                    "BGP peer oscillating: next connection delayed (DampPeerOscillations)");
            }
            backoff = (backoff * 2).min(max);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.stop.changed() => break,
            }
        }
        self.shared.set_state(SessionState::Idle);
    }
}

/// `d` scaled by a factor in [0.75, 1.0) (RFC 4271 §10: jitter timers so
/// peers do not synchronise).
fn jittered(d: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    d.mul_f64(0.75 + f64::from(nanos % 1000) / 4000.0)
}
