//! What the speaker and a session task share: the peer's configuration,
//! its Adj-RIB-Out, quarantine state and counters, and the capabilities
//! our OPEN advertises (RFC 5492, less those the peer refused).

use std::{
    collections::{BTreeMap, VecDeque},
    net::Ipv4Addr,
    sync::Mutex,
    time::{Instant, SystemTime},
};

use serde::Serialize;

use super::SessionState;
use crate::bgp::{
    capability::{Capability, Family, Negotiated},
    config::PeerConfig,
    flap::Flap,
    receive::Reason,
    rib::AdjRibOut,
    rib_in::AdjRibIn,
    route::Route,
    update::SessionParams,
};

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
    pub route_refreshes_sent: u64,
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
    /// The last [`HISTORY`] state changes, oldest first.
    pub history: VecDeque<Transition>,
}

/// How many state changes a peer keeps (`edge-sensor bgp`).
pub const HISTORY: usize = 20;

/// One change of a session's state (RFC 4271 §8.2.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transition {
    /// Unix seconds.
    pub at: u64,
    pub from: SessionState,
    pub to: SessionState,
    /// Why, where known: the error or NOTIFICATION that ended a session.
    pub reason: Option<String>,
}

impl Stats {
    /// Moves to `to`, remembering the change (a reason for a session that
    /// ends: its last error).
    pub fn enter(&mut self, to: SessionState) {
        if self.state == to {
            return;
        }
        let reason = match (self.state, to) {
            (_, SessionState::Idle) => self.last_error.clone(),
            _ => None,
        };
        if self.history.len() >= HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(Transition {
            at: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            from: self.state,
            to,
            reason,
        });
        self.state = to;
    }
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
            route_refreshes_sent: 0,
            established_count: 0,
            last_error: None,
            last_notification_sent: None,
            last_notification_received: None,
            update_errors: BTreeMap::new(),
            afi_safi_disabled: Vec::new(),
            last_update_error: None,
            history: VecDeque::new(),
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
    /// What the peer sent us (RFC 4271 §3.2). Lock order: `rib_in` alone
    /// (never held with another of these locks).
    pub rib_in: Mutex<AdjRibIn>,
    pub stats: Mutex<Stats>,
    /// Quarantine, suspects and back-off (see [`crate::bgp::flap`]). Lock
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

    pub fn rib_in(&self) -> std::sync::MutexGuard<'_, AdjRibIn> {
        self.rib_in.lock().unwrap_or_else(|e| e.into_inner())
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

    pub(super) fn set_state(&self, state: SessionState) {
        let mut s = self.stats();
        if s.state != state {
            tracing::debug!(peer = %self.config.name, from = ?s.state, to = ?state, "BGP state");
        }
        s.enter(state);
        if state != SessionState::Established {
            s.established_at = None;
        }
    }

    pub(super) fn error(&self, message: String) {
        tracing::warn!(peer = %self.config.name, "BGP session: {message}");
        self.stats().last_error = Some(message);
    }

    /// The UPDATE parameters for this peer; `four_octet` as negotiated
    /// (assumed when not yet known: every check is repeated at send time).
    pub fn params(&self, four_octet: bool, add_path: &[Family]) -> SessionParams {
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
            add_path: add_path.to_vec(),
        }
    }

    pub(super) fn capabilities(&self) -> Vec<Capability> {
        let c = &self.config;
        let mut caps: Vec<Capability> = c.families.iter().map(|f| Capability::family(*f)).collect();
        caps.push(Capability::RouteRefresh);
        caps.push(Capability::FourOctetAs(self.local_asn));
        if let Some(bits) = c.add_path.bits() {
            caps.push(Capability::AddPath(
                c.families
                    .iter()
                    .map(|f| {
                        let (afi, safi) = f.codes();
                        (afi, safi, bits)
                    })
                    .collect(),
            ));
        }
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

/// Whether a refused capability `r` (as the peer echoed it) is `c`: the
/// same code, and for multiprotocol the same family.
fn same_capability(r: &Capability, c: &Capability) -> bool {
    match (r, c) {
        (Capability::MultiProtocol { .. }, Capability::MultiProtocol { .. }) => r == c,
        (Capability::Other { code: a, .. }, Capability::Other { code: b, .. }) => a == b,
        _ => std::mem::discriminant(r) == std::mem::discriminant(c),
    }
}
