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

use std::{
    collections::{BTreeMap, BTreeSet},
    io,
    net::Ipv4Addr,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use serde::Serialize;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{mpsc, watch},
};

use super::{
    capability::{Capability, Family, Negotiated},
    config::PeerConfig,
    flap::{self, Flap, Reset, STABLE_AFTER},
    message::{Message, MessageError, Notification, Open, Update, error_code},
    receive::{self, Approach, Reason, ReceiveContext, UpdateVerdict},
    rib::AdjRibOut,
    route::{Route, RouteKey},
    tcp,
    update::{self, SessionParams, open_my_as},
};

/// Hold time while waiting for the peer's OPEN (RFC 4271 §8.2.2: "a large
/// value", 4 minutes suggested).
const OPEN_HOLD: Duration = Duration::from_secs(240);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a write may take before the session is declared dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

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

/// Counters and last events of one peer.
#[derive(Debug, Clone)]
pub(crate) struct Stats {
    pub state: SessionState,
    pub established_at: Option<Instant>,
    pub negotiated: Option<Negotiated>,
    pub updates_sent: u64,
    pub updates_received: u64,
    pub routes_announced: u64,
    pub routes_withdrawn: u64,
    pub route_refreshes_received: u64,
    pub established_count: u64,
    pub last_error: Option<String>,
    pub last_notification_sent: Option<String>,
    pub last_notification_received: Option<String>,
    /// Errors in received UPDATEs per reason (RFC 7606), over all sessions.
    pub update_errors: BTreeMap<Reason, u64>,
    /// Families ignored for the rest of this session (RFC 7606 §2 AFI/SAFI
    /// disable, RFC 4760 §7).
    pub afi_safi_disabled: Vec<(u16, u8)>,
    pub last_update_error: Option<String>,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            state: SessionState::Idle,
            established_at: None,
            negotiated: None,
            updates_sent: 0,
            updates_received: 0,
            routes_announced: 0,
            routes_withdrawn: 0,
            route_refreshes_received: 0,
            established_count: 0,
            last_error: None,
            last_notification_sent: None,
            last_notification_received: None,
            update_errors: BTreeMap::new(),
            afi_safi_disabled: Vec::new(),
            last_update_error: None,
        }
    }
}

/// What the speaker and a session task share.
pub(crate) struct PeerShared {
    pub config: PeerConfig,
    pub local_asn: u32,
    pub router_id: Ipv4Addr,
    pub shutdown_message: String,
    /// Capabilities the peer refused with NOTIFICATION 2/7, left out of
    /// our next OPENs (RFC 5492 §5).
    pub refused_capabilities: Mutex<Vec<Capability>>,
    pub rib: Mutex<AdjRibOut>,
    pub stats: Mutex<Stats>,
    /// Quarantine, suspects and back-off (see [`super::flap`]). Lock
    /// order: `rib` before `flap`.
    pub flap: Mutex<Flap>,
}

impl PeerShared {
    pub fn stats(&self) -> std::sync::MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn rib(&self) -> std::sync::MutexGuard<'_, AdjRibOut> {
        self.rib.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn flap(&self) -> std::sync::MutexGuard<'_, Flap> {
        self.flap.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Quarantines `route` for this peer: out of the Adj-RIB-Out, refused
    /// from now on, reported as an event.
    pub fn quarantine(&self, route: Route, reason: String) {
        tracing::warn!(peer = %self.config.name, %route, reason = %reason,
            "BGP route quarantined: the router reset the session over it; not sent to it again");
        {
            let mut rib = self.rib();
            if rib.get(&route.key()) == Some(&route) {
                rib.remove(&route.key());
            }
        }
        self.flap().quarantine(route, reason);
    }

    fn set_state(&self, state: SessionState) {
        let mut s = self.stats();
        if s.state != state {
            tracing::debug!(peer = %self.config.name, from = ?s.state, to = ?state, "BGP state");
        }
        s.state = state;
        if state != SessionState::Established {
            s.established_at = None;
        }
    }

    fn error(&self, message: String) {
        tracing::warn!(peer = %self.config.name, "BGP session: {message}");
        self.stats().last_error = Some(message);
    }

    /// The UPDATE parameters for this peer; `four_octet` as negotiated
    /// (assumed when not yet known: every check is repeated at send time).
    pub fn params(&self, four_octet: bool) -> SessionParams {
        let c = &self.config;
        SessionParams {
            local_asn: self.local_asn,
            ibgp: c.peer_asn == self.local_asn,
            four_octet,
            local_pref: c.local_pref,
            next_hop_v4: c.next_hop_v4,
            next_hop_v6: c.next_hop_v6,
            communities: c.communities.clone(),
            blackhole_communities: c.blackhole_communities.clone(),
            no_export: c.no_export,
        }
    }

    fn capabilities(&self) -> Vec<Capability> {
        let c = &self.config;
        let mut caps: Vec<Capability> = c.families.iter().map(|f| Capability::family(*f)).collect();
        caps.push(Capability::RouteRefresh);
        caps.push(Capability::FourOctetAs(self.local_asn));
        if let Some(restart_time) = c.graceful_restart {
            caps.push(Capability::GracefulRestart {
                restart_state: false,
                notification: false,
                restart_time,
                // F bit set: the mitigations we hold are our "forwarding
                // state" and survive our restart (they are re-announced),
                // so the router keeps its stale copies until our
                // End-of-RIB instead of dropping them when we reconnect
                // (RFC 4724 §4.2).
                families: c
                    .families
                    .iter()
                    .map(|f| {
                        let (afi, safi) = f.codes();
                        (afi, safi, true)
                    })
                    .collect(),
            });
        }
        let refused = self
            .refused_capabilities
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        caps.retain(|c| !refused.iter().any(|r| same_capability(r, c)));
        caps
    }
}

/// Why a connection ended.
enum End {
    /// The speaker asked us to stop.
    Stopped,
    /// The session failed (the reason is already recorded).
    Down,
}

/// A failure on an open connection.
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    #[error("the peer closed the connection")]
    Closed,
    #[error("write timed out")]
    WriteTimeout,
    #[error("received a malformed message: {0}")]
    Protocol(MessageError),
}

/// A connection with its receive buffer. `recv` is cancel-safe: all state
/// lives in `buf`, so it can sit in `select!` beside the timers.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn recv(&mut self) -> Result<Message, ConnError> {
        loop {
            match Message::frame_len(&self.buf) {
                Err(e) => return Err(ConnError::Protocol(e)),
                Ok(Some(len)) => {
                    let frame: Vec<u8> = self.buf.drain(..len).collect();
                    return Message::decode(&frame).map_err(ConnError::Protocol);
                }
                Ok(None) => {}
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(ConnError::Closed);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn send(&mut self, msg: &Message) -> Result<(), ConnError> {
        let bytes = msg.encode();
        tokio::time::timeout(WRITE_TIMEOUT, self.stream.write_all(&bytes))
            .await
            .map_err(|_| ConnError::WriteTimeout)??;
        Ok(())
    }
}

/// A session task's inputs.
pub(crate) struct Task {
    pub shared: Arc<PeerShared>,
    pub changes: mpsc::UnboundedReceiver<RouteKey>,
    pub stop: watch::Receiver<Option<Stop>>,
    /// Routes sent this session that have not proven themselves yet.
    pub unproven: Vec<(Route, Instant)>,
    /// How the last session ended, when that may be our UPDATEs' fault.
    pub reset: Option<Reset>,
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
                    let end = self.session(conn).await;
                    let up = self.shared.stats().established_at.map(|t| t.elapsed());
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

    fn probation(&self) -> Duration {
        Duration::from_secs(self.shared.config.probation)
    }

    /// After a session ended: a reset soon after our UPDATEs is blamed on
    /// the unproven routes (see [`super::flap`]).
    fn blame(&mut self) {
        let Some(reset) = self.reset.take() else {
            // Not the router's refusal (hold timer, Cease...): a suspect
            // on probation is still one.
            let mut flap = self.shared.flap();
            for (r, _) in self.unproven.drain(..) {
                if flap.struck.contains(&r.key()) {
                    flap.suspects.insert(r.key());
                }
            }
            return;
        };
        let now = Instant::now();
        let window = self.probation() + Duration::from_secs(2);
        let unproven: Vec<Route> = self
            .unproven
            .drain(..)
            .filter(|(_, t)| now.duration_since(*t) < window)
            .map(|(r, _)| r)
            .collect();
        let name = self.shared.config.name.clone();
        let four_octet = self
            .shared
            .stats()
            .negotiated
            .as_ref()
            .is_none_or(|n| n.four_octet_as);
        let params = self.shared.params(four_octet);
        let why = reset.text();
        let culprit = {
            let mut flap = self.shared.flap();
            flap.resets += 1;
            flap.last_reset = Some(why.clone());
            flap::blame(&mut flap, &reset, &unproven, |r| {
                update::announce(r, &params)
                    .ok()
                    .map(|u| Message::Update(u).encode())
            })
        };
        match culprit {
            Some(route) => {
                self.shared.quarantine(route, why);
                // Found: the other suspects go out at once next time.
                self.shared.flap().suspects.clear();
            }
            None if unproven.is_empty() => {
                tracing::info!(peer = %name, "BGP session reset ({why}), not after new routes")
            }
            None => {
                let list: Vec<String> = unproven.iter().map(ToString::to_string).collect();
                tracing::warn!(peer = %name, suspects = ?list,
                    "BGP session reset ({why}) after these routes: held back on the next session and sent one at a time");
            }
        }
    }

    /// Routes on probation that stayed long enough are proven.
    fn prove(&mut self) {
        let probation = self.probation();
        let (done, rest): (Vec<_>, Vec<_>) = self
            .unproven
            .drain(..)
            .partition(|(_, t)| t.elapsed() >= probation);
        self.unproven = rest;
        if !done.is_empty() {
            let mut flap = self.shared.flap();
            for (r, _) in done {
                flap.struck.remove(&r.key());
                flap.proven.insert(r.key(), r);
            }
        }
    }

    /// The next suspect to send on probation (in the Adj-RIB-Out, of a
    /// family the session carries).
    fn next_suspect(&self, sendable: &[Family]) -> Option<Route> {
        loop {
            // One lock at a time: `rib` is taken before `flap` elsewhere.
            let key = self.shared.flap().suspects.pop_first()?;
            if !sendable.contains(&key.family()) {
                continue;
            }
            if let Some(r) = self.shared.rib().get(&key).cloned() {
                return Some(r);
            }
        }
    }

    /// A write failed on an established session: a NOTIFICATION the peer
    /// sent before closing may still be readable; otherwise the connection
    /// dropped.
    async fn write_failed(&mut self, conn: &mut Conn, e: ConnError) -> End {
        if matches!(e, ConnError::Io(_) | ConnError::Closed)
            && let Ok(Ok(Message::Notification(n))) =
                tokio::time::timeout(Duration::from_millis(300), conn.recv()).await
        {
            return self.unexpected(conn, Ok(Message::Notification(n)), 3).await;
        }
        if matches!(e, ConnError::Io(_) | ConnError::Closed) {
            self.reset = Some(Reset::Dropped(e.to_string()));
        }
        self.shared.error(e.to_string());
        End::Down
    }

    /// One connection from OPEN to its end.
    async fn session(&mut self, mut conn: Conn) -> End {
        let shared = self.shared.clone();
        let cfg = &shared.config;
        let our_caps = shared.capabilities();
        let open = Open {
            version: 4,
            my_as: open_my_as(shared.local_asn),
            hold_time: cfg.hold_time,
            bgp_id: shared.router_id,
            capabilities: our_caps.clone(),
        };
        if let Err(e) = conn.send(&Message::Open(open)).await {
            shared.error(e.to_string());
            return End::Down;
        }
        shared.set_state(SessionState::OpenSent);

        // OpenSent: wait for the peer's OPEN.
        let msg = tokio::select! {
            r = tokio::time::timeout(OPEN_HOLD, conn.recv()) => match r {
                Ok(r) => r,
                Err(_) => {
                    return self.fail(&mut conn, Notification::new(error_code::HOLD_TIMER_EXPIRED, 0),
                        "hold timer expired in OpenSent").await;
                }
            },
            _ = self.stop.changed() => return self.cease(&mut conn).await,
        };
        let peer_open = match msg {
            Ok(Message::Open(o)) => o,
            other => return self.unexpected(&mut conn, other, 1).await,
        };
        if let Err(n) = self.check_open(&peer_open) {
            let why = format!("refused the peer's OPEN: {n}");
            return self.fail(&mut conn, n, &why).await;
        }
        let negotiated = Negotiated::from_opens(
            &our_caps,
            &peer_open.capabilities,
            cfg.hold_time,
            peer_open.hold_time,
            peer_open.asn(),
            peer_open.bgp_id,
        );
        if let Err(e) = conn.send(&Message::Keepalive).await {
            shared.error(e.to_string());
            return End::Down;
        }
        shared.set_state(SessionState::OpenConfirm);

        let hold = Duration::from_secs(u64::from(negotiated.hold_time));
        let keepalive_every = hold / 3;
        // OpenConfirm: wait for the KEEPALIVE that confirms the OPEN.
        let wait = if hold.is_zero() { OPEN_HOLD } else { hold };
        let msg = tokio::select! {
            r = tokio::time::timeout(wait, conn.recv()) => match r {
                Ok(r) => r,
                Err(_) => {
                    return self.fail(&mut conn, Notification::new(error_code::HOLD_TIMER_EXPIRED, 0),
                        "hold timer expired in OpenConfirm").await;
                }
            },
            _ = self.stop.changed() => return self.cease(&mut conn).await,
        };
        match msg {
            Ok(Message::Keepalive) => {}
            other => return self.unexpected(&mut conn, other, 2).await,
        }

        // Established.
        {
            let mut s = shared.stats();
            s.state = SessionState::Established;
            s.established_at = Some(Instant::now());
            s.established_count += 1;
            s.negotiated = Some(negotiated.clone());
            s.afi_safi_disabled.clear();
        }
        let receive_ctx = ReceiveContext {
            four_octet: negotiated.four_octet_as,
            ibgp: cfg.peer_asn == shared.local_asn,
            families: negotiated.families.clone(),
        };
        tracing::info!(peer = %cfg.name, families = ?negotiated.families, hold = negotiated.hold_time,
            "BGP session established");
        let sendable: Vec<Family> = cfg
            .families
            .iter()
            .copied()
            .filter(|f| negotiated.families.contains(f))
            .collect();
        let params = shared.params(negotiated.four_octet_as);
        // Changes queued before now are covered by the full table.
        while self.changes.try_recv().is_ok() {}
        // Suspects of an earlier reset are held back and sent one at a time.
        let held: BTreeSet<RouteKey> = shared.flap().suspects.clone();
        if !held.is_empty() {
            tracing::info!(peer = %cfg.name, held = held.len(),
                "holding back the routes suspected of the last reset: sending them one at a time");
        }
        for family in &sendable {
            if let Err(e) = self.send_family(&mut conn, *family, &params, &held).await {
                return self.write_failed(&mut conn, e).await;
            }
        }
        for family in &sendable {
            if let Err(e) = self
                .send_update(&mut conn, Update::end_of_rib(*family))
                .await
            {
                return self.write_failed(&mut conn, e).await;
            }
        }
        let mut probe = tokio::time::interval(Duration::from_millis(500));

        let hold_timer = tokio::time::sleep(if hold.is_zero() {
            Duration::MAX / 4
        } else {
            hold
        });
        tokio::pin!(hold_timer);
        let mut keepalive = tokio::time::interval_at(
            tokio::time::Instant::now() + keepalive_every.max(Duration::from_secs(1)),
            keepalive_every.max(Duration::from_secs(1)),
        );
        loop {
            tokio::select! {
                msg = conn.recv() => {
                    if !hold.is_zero() {
                        hold_timer.as_mut().reset(tokio::time::Instant::now() + hold);
                    }
                    match msg {
                        Ok(Message::Keepalive) => {}
                        Ok(Message::Update(u)) => {
                            let verdict = receive::check(&u, &receive_ctx);
                            if let Some((n, why)) = self.received(&verdict) {
                                return self.fail(&mut conn, n, &why).await;
                            }
                            // The receive side (a later issue) keeps the
                            // routes of Ok / AttributeDiscard verdicts here.
                        }
                        // Withdrawn Routes or Total Path Attribute Length
                        // past the message (RFC 4271 §6.3, RFC 7606 §4).
                        Err(ConnError::Protocol(e)) if e.code == error_code::UPDATE_MESSAGE => {
                            {
                                let mut s = shared.stats();
                                s.updates_received += 1;
                                *s.update_errors.entry(Reason::UpdateLengths).or_insert(0) += 1;
                                s.last_update_error = Some(format!("received UPDATE in error: {e}"));
                            }
                            return self.unexpected(&mut conn, Err(ConnError::Protocol(e)), 3).await;
                        }
                        Ok(Message::RouteRefresh(rr)) => {
                            shared.stats().route_refreshes_received += 1;
                            // RFC 2918 §4: re-advertise the family's Adj-RIB-Out.
                            let held = shared.flap().suspects.clone();
                            if let Some(family) = Family::from_codes(rr.afi, rr.safi)
                                && sendable.contains(&family)
                                && let Err(e) = self.send_family(&mut conn, family, &params, &held).await
                            {
                                return self.write_failed(&mut conn, e).await;
                            }
                        }
                        other => return self.unexpected(&mut conn, other, 3).await,
                    }
                }
                _ = keepalive.tick(), if !hold.is_zero() => {
                    if let Err(e) = conn.send(&Message::Keepalive).await {
                        return self.write_failed(&mut conn, e).await;
                    }
                }
                _ = probe.tick() => {
                    self.prove();
                    if self.unproven.is_empty()
                        && let Some(route) = self.next_suspect(&sendable)
                    {
                        tracing::info!(peer = %cfg.name, %route, "sending a suspect route on probation");
                        if let Err(e) = self.send_route(&mut conn, &route, &params).await {
                            return self.write_failed(&mut conn, e).await;
                        }
                    }
                }
                () = &mut hold_timer => {
                    return self.fail(&mut conn, Notification::new(error_code::HOLD_TIMER_EXPIRED, 0),
                        "hold timer expired: the peer went silent").await;
                }
                Some(key) = self.changes.recv() => {
                    if !sendable.contains(&key.family()) {
                        continue;
                    }
                    let route = shared.rib().get(&key).cloned();
                    let r = match route {
                        // Held back: sent when its probation turn comes.
                        Some(_) if shared.flap().suspects.contains(&key) => Ok(()),
                        Some(route) => self.send_route(&mut conn, &route, &params).await,
                        None => self.send_withdraw(&mut conn, &key).await,
                    };
                    if let Err(e) = r {
                        return self.write_failed(&mut conn, e).await;
                    }
                }
                _ = self.stop.changed() => {
                    let stop = *self.stop.borrow();
                    let withdraw_all = stop.is_some_and(|s| s.withdraw_all);
                    if withdraw_all {
                        let keys = shared.rib().keys();
                        for key in keys.iter().filter(|k| sendable.contains(&k.family())) {
                            if self.send_withdraw(&mut conn, key).await.is_err() {
                                break;
                            }
                        }
                    } else if negotiated.graceful_restart {
                        // Fail-static: no NOTIFICATION, the router keeps our
                        // routes as stale until we are back (RFC 4724 §4.2).
                        let _ = conn.stream.shutdown().await;
                        return End::Stopped;
                    }
                    return self.cease(&mut conn).await;
                }
            }
        }
    }

    /// RFC 4271 §6.2 checks of the peer's OPEN (version and parameters are
    /// checked while decoding).
    fn check_open(&self, open: &Open) -> Result<(), Notification> {
        let cfg = &self.shared.config;
        if open.asn() != cfg.peer_asn {
            let mut n = Notification::new(error_code::OPEN_MESSAGE, 2);
            n.data = open.my_as.to_be_bytes().to_vec();
            return Err(n);
        }
        if open.hold_time == 1 || open.hold_time == 2 {
            return Err(Notification::new(error_code::OPEN_MESSAGE, 6));
        }
        let ibgp = cfg.peer_asn == self.shared.local_asn;
        if open.bgp_id.is_unspecified() || (ibgp && open.bgp_id == self.shared.router_id) {
            return Err(Notification::new(error_code::OPEN_MESSAGE, 3));
        }
        Ok(())
    }

    /// Handles a message that is wrong for the state (`fsm_subcode`: RFC
    /// 6608: 1 OpenSent, 2 OpenConfirm, 3 Established), a NOTIFICATION, or
    /// a connection error.
    async fn unexpected(
        &mut self,
        conn: &mut Conn,
        msg: Result<Message, ConnError>,
        fsm_subcode: u8,
    ) -> End {
        match msg {
            Ok(Message::Notification(n)) => {
                if (n.code, n.subcode) == (error_code::OPEN_MESSAGE, 7)
                    && let Ok(refused) = Capability::decode_list(&n.data)
                {
                    tracing::warn!(peer = %self.shared.config.name, ?refused,
                        "the peer does not support these capabilities: leaving them out");
                    self.shared
                        .refused_capabilities
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend(refused);
                }
                let text = n.to_string();
                if fsm_subcode == 3 && n.code == error_code::UPDATE_MESSAGE {
                    self.reset = Some(Reset::UpdateError {
                        text: text.clone(),
                        data: n.data.clone(),
                    });
                }
                tracing::warn!(peer = %self.shared.config.name, "NOTIFICATION received: {text}");
                {
                    let mut s = self.shared.stats();
                    s.last_notification_received = Some(text.clone());
                    s.last_error = Some(format!("peer sent NOTIFICATION {text}"));
                }
                End::Down
            }
            Ok(other) => {
                let why = format!("unexpected message type {} in this state", other.kind());
                self.fail(conn, Notification::new(error_code::FSM, fsm_subcode), &why)
                    .await
            }
            Err(ConnError::Protocol(e)) => {
                let why = e.to_string();
                self.fail(conn, e.notification(), &why).await
            }
            Err(e) => {
                if fsm_subcode == 3 && matches!(e, ConnError::Io(_) | ConnError::Closed) {
                    self.reset = Some(Reset::Dropped(e.to_string()));
                }
                self.shared.error(e.to_string());
                End::Down
            }
        }
    }

    /// Counts a received UPDATE and its errors per reason; records an
    /// AFI/SAFI disable; returns the NOTIFICATION to reset with, if any.
    fn received(&self, verdict: &UpdateVerdict) -> Option<(Notification, String)> {
        let peer = &self.shared.config.name;
        let mut s = self.shared.stats();
        s.updates_received += 1;
        for e in verdict.errors() {
            *s.update_errors.entry(e.reason).or_insert(0) += 1;
        }
        let approach = verdict.approach()?;
        let errors: Vec<String> = verdict.errors().iter().map(|e| e.to_string()).collect();
        let text = format!("received UPDATE in error: {}", errors.join("; "));
        s.last_update_error = Some(text.clone());
        match verdict {
            UpdateVerdict::SessionReset { notification, .. } => {
                return Some((notification.clone(), text));
            }
            UpdateVerdict::AfiSafiDisable { afi, safi, .. } => {
                if !s.afi_safi_disabled.contains(&(*afi, *safi)) {
                    s.afi_safi_disabled.push((*afi, *safi));
                }
                tracing::warn!(%peer, afi, safi, "{text}: AFI/SAFI disabled for this session");
            }
            _ if approach == Approach::TreatAsWithdraw => tracing::info!(%peer, "{text}"),
            _ => tracing::debug!(%peer, "{text}"),
        }
        None
    }

    /// Sends `n`, records why, closes.
    async fn fail(&mut self, conn: &mut Conn, n: Notification, why: &str) -> End {
        self.shared.error(why.to_string());
        self.shared.stats().last_notification_sent = Some(n.to_string());
        let _ = conn.send(&Message::Notification(n)).await;
        let _ = conn.stream.shutdown().await;
        End::Down
    }

    /// Cease / Administrative Shutdown with our RFC 9003 text, then close.
    async fn cease(&mut self, conn: &mut Conn) -> End {
        let n = Notification::shutdown(&self.shared.shutdown_message);
        self.shared.stats().last_notification_sent = Some(n.to_string());
        let _ = conn.send(&Message::Notification(n)).await;
        let _ = conn.stream.shutdown().await;
        End::Stopped
    }

    async fn send_update(&mut self, conn: &mut Conn, update: Update) -> Result<(), ConnError> {
        conn.send(&Message::Update(update)).await?;
        self.shared.stats().updates_sent += 1;
        Ok(())
    }

    /// Announces every route of `family` in the Adj-RIB-Out.
    async fn send_family(
        &mut self,
        conn: &mut Conn,
        family: Family,
        params: &SessionParams,
        held: &BTreeSet<RouteKey>,
    ) -> Result<(), ConnError> {
        let routes = self.shared.rib().family(family);
        for route in routes.into_iter().filter(|r| !held.contains(&r.key())) {
            self.send_route(conn, &route, params).await?;
        }
        Ok(())
    }

    async fn send_route(
        &mut self,
        conn: &mut Conn,
        route: &Route,
        params: &SessionParams,
    ) -> Result<(), ConnError> {
        // Composed and verified again with this session's parameters; a
        // route that fails is never sent (it passed with the assumed ones).
        match update::announce(route, params) {
            Ok(u) => {
                self.send_update(conn, u).await?;
                self.shared.stats().routes_announced += 1;
                let key = route.key();
                self.unproven.retain(|(r, _)| r.key() != key);
                if self.shared.flap().proven.get(&key) != Some(route) {
                    self.unproven.push((route.clone(), Instant::now()));
                }
            }
            Err(e) => self.shared.error(format!("not sending {route}: {e}")),
        }
        Ok(())
    }

    async fn send_withdraw(&mut self, conn: &mut Conn, key: &RouteKey) -> Result<(), ConnError> {
        self.unproven.retain(|(r, _)| &r.key() != key);
        self.shared.flap().proven.remove(key);
        self.send_update(conn, update::withdraw(key)).await?;
        self.shared.stats().routes_withdrawn += 1;
        Ok(())
    }
}

/// Whether a refused capability `r` (as the peer echoed it) is `c`: the
/// same code, and for multiprotocol the same family.
fn same_capability(r: &Capability, c: &Capability) -> bool {
    match (r, c) {
        (Capability::MultiProtocol { .. }, Capability::MultiProtocol { .. }) => r == c,
        (Capability::Other { code: a, .. }, Capability::Other { code: b, .. }) => a == b,
        _ => std::mem::discriminant(r) == std::mem::discriminant(c),
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
