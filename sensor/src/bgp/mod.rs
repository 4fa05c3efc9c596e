//! The BGP speaker: sessions to routers that announce and withdraw
//! mitigations as Flow Spec rules (RFC 8955/8956) or RTBH blackholes (RFC
//! 7999). See docs/bgp.md for why the wire encoding and the state machine
//! are our own.
//!
//! ```text
//! Speaker::announce(route) --checks--> per-peer Adj-RIB-Out --> session task --> router
//! ```
//!
//! A route is checked once for itself (well formed, inside
//! `announce_within`) and then per peer against what that router takes
//! (families, flow spec components and actions, rule count); a refusal
//! names its reason so the caller can fall back (e.g. to RTBH). Every
//! UPDATE is decoded back before it is sent: a malformed flow spec NLRI
//! would make the router reset the session and drop every mitigation on it.
//!
//! What a peer sends is checked as RFC 7606 says ([`receive`]): an error
//! resets the session with the right NOTIFICATION, disables the family,
//! or is treated as a withdrawal or discarded, and is counted per peer and
//! per reason ([`PeerStatus::update_errors`]).

pub mod attribute;
pub mod capability;
pub mod config;
pub mod dialect;
pub mod duplicate;
pub mod flap;
pub mod flowspec;
pub mod message;
pub mod receive;
pub mod rib;
pub mod rib_in;
pub mod route;
pub mod rtbh;
pub mod session;
pub mod tcp;
pub mod update;

#[cfg(test)]
mod receive_session_tests;
#[cfg(test)]
mod receive_tests;
#[cfg(test)]
mod tests;

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde::Serialize;
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};

pub use capability::{Family, Negotiated};
pub use config::{BgpConfig, BgpConfigError, FlowSpecSupport, PeerConfig};
pub use dialect::{Dialect, Profile, Refusal};
pub use flap::{QuarantineEvent, Quarantined};
pub use flowspec::{
    Action, ActionKind, BitmaskMatch, Component, ComponentKind, FlowPrefix, FlowSpec,
    FlowSpecError, IpFamily, NumericMatch, NumericOp,
};
pub use rib_in::query::{MatchMode, QueryError, RibAnswer, RibQuery};
pub use route::{Route, RouteError, RouteKey};
pub use session::SessionState;

use rib::Change;
use session::{PeerShared, Stop, Task};

/// Why one peer did not take a route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "kebab-case", tag = "reason")]
pub enum RejectReason {
    #[error("family {family} is not configured for this peer")]
    FamilyNotConfigured { family: Family },
    #[error("the peer did not negotiate family {family}")]
    FamilyNotNegotiated { family: Family },
    #[error("the router does not take flow spec component {component}")]
    ComponentNotSupported { component: ComponentKind },
    #[error("the router does not take flow spec action {action}")]
    ActionNotSupported { action: ActionKind },
    #[error("the router already holds its maximum of {max} flow spec rules")]
    MaxRules { max: usize },
    #[error("the route cannot be encoded for this peer: {message}")]
    Encoding { message: String },
    #[error("quarantined for this router, which reset the session over it: {router_reason}")]
    Quarantined { router_reason: String },
    /// Anything else the router's dialect does not take (see
    /// [`dialect::adapt`] for the rule it would take instead).
    #[error("{refusal}")]
    Dialect { refusal: Refusal },
}

/// What one peer did with an announced route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "outcome")]
pub enum Outcome {
    /// New in the Adj-RIB-Out (or replacing the route with the same key):
    /// sent now if the session is up, else when it comes up.
    Accepted,
    /// Already there, identical: nothing to send.
    Unchanged,
    /// Not sent: peer `from` already sends us the same Flow Spec rule with
    /// the same actions from another system ([`duplicate`]); sent when
    /// that rule is withdrawn ([`Speaker::resume_suppressed`]).
    InForceElsewhere {
        from: String,
    },
    Refused(RejectReason),
}

/// Per-peer outcomes of [`Speaker::announce`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Announcement {
    pub key: RouteKey,
    pub peers: Vec<(String, Outcome)>,
}

impl Announcement {
    /// Peers that refused, with why.
    pub fn refused(&self) -> Vec<(&str, &RejectReason)> {
        self.peers
            .iter()
            .filter_map(|(p, o)| match o {
                Outcome::Refused(r) => Some((p.as_str(), r)),
                _ => None,
            })
            .collect()
    }

    /// Whether every peer holds the route.
    pub fn accepted_by_all(&self) -> bool {
        self.refused().is_empty()
    }
}

/// One peer as `edge-sensor bgp` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PeerStatus {
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    pub peer_asn: u32,
    pub passive: bool,
    pub state: SessionState,
    /// Seconds in Established.
    pub uptime_secs: Option<u64>,
    /// Capabilities and hold time agreed with the peer (while up).
    pub negotiated: Option<Negotiated>,
    /// Routes we want the router to have.
    pub adj_rib_out: usize,
    pub flowspec_rules: usize,
    /// Routes whose family the live session did not negotiate.
    pub unsent_routes: usize,
    /// Routes the router has from us now (0 while the session is down).
    pub advertised: usize,
    pub routes_announced: u64,
    pub routes_withdrawn: u64,
    pub updates_sent: u64,
    pub updates_received: u64,
    pub route_refreshes_received: u64,
    /// ROUTE-REFRESH messages we sent (`edge-sensor rib refresh`).
    pub route_refreshes_sent: u64,
    /// How many times the session reached Established.
    pub established_count: u64,
    pub last_error: Option<String>,
    pub last_notification_sent: Option<String>,
    pub last_notification_received: Option<String>,
    /// Errors in received UPDATEs, per reason (RFC 7606; the names of
    /// [`receive::Reason`]).
    pub update_errors: std::collections::BTreeMap<receive::Reason, u64>,
    /// Families ignored for the rest of the session after a malformed
    /// MP_REACH/MP_UNREACH (RFC 7606 §2), as `afi/safi`.
    pub afi_safi_disabled: Vec<String>,
    pub last_update_error: Option<String>,
    /// Flap protection: quarantined routes, suspects, back-off.
    pub flap: FlapStatus,
    /// What the peer sent us: routes, paths, rules, End-of-RIB.
    pub rib_in: rib_in::RibInStatus,
    /// The last 20 state changes, oldest first, with the reason a session
    /// ended.
    pub history: Vec<session::Transition>,
    /// Capabilities the peer refused (NOTIFICATION 2/7, RFC 5492 §5), left
    /// out of our OPENs since.
    pub refused_capabilities: Vec<capability::Capability>,
}

/// A peer's flap protection state (see [`flap`]).
#[derive(Debug, Clone, Serialize)]
pub struct FlapStatus {
    /// Routes never sent to this router again (`edge-sensor bgp --quarantine`).
    pub quarantined: usize,
    /// Routes held back after a reset, sent one at a time.
    pub suspects: usize,
    /// Sessions that ended in an UPDATE error NOTIFICATION or a dropped
    /// connection (whether blamed on a route or not).
    pub resets: u64,
    pub last_reset: Option<String>,
    /// The current reconnect back-off, seconds.
    pub backoff_secs: f64,
    /// Seconds until the next connection attempt (while waiting).
    pub reconnect_in_secs: Option<f64>,
}

/// Errors of the quarantine file and operations.
#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    #[error("no BGP peer named `{0}`")]
    NoSuchPeer(String),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

struct Peer {
    shared: Arc<PeerShared>,
    changes: mpsc::UnboundedSender<RouteKey>,
    /// Families to ask the peer to send again (ROUTE-REFRESH, RFC 2918).
    refresh: mpsc::UnboundedSender<Family>,
    stop: watch::Sender<Option<Stop>>,
    task: Option<JoinHandle<()>>,
}

impl Peer {
    /// Whether this peer takes `route`, per its configuration and session.
    fn admit(&self, route: &Route, rib: &rib::AdjRibOut) -> Result<(), RejectReason> {
        let cfg = &self.shared.config;
        let family = route.family();
        if !cfg.families.contains(&family) {
            return Err(RejectReason::FamilyNotConfigured { family });
        }
        let negotiated = self.shared.stats().negotiated.clone();
        let stats_state = self.shared.stats().state;
        if stats_state == SessionState::Established
            && let Some(n) = &negotiated
            && !n.families.contains(&family)
        {
            return Err(RejectReason::FamilyNotNegotiated { family });
        }
        if let Some(q) = self.shared.flap().is_quarantined(route) {
            return Err(RejectReason::Quarantined {
                router_reason: q.reason.clone(),
            });
        }
        if let Route::FlowSpec { rule, actions } = route {
            let support = &cfg.flowspec;
            let dialect = support.dialect();
            if let Some(c) = rule
                .components()
                .iter()
                .map(Component::kind)
                .find(|&k| !dialect.component(k))
            {
                return Err(RejectReason::ComponentNotSupported { component: c });
            }
            for a in actions {
                let kind = a.kind();
                let ok = dialect.action(kind)
                    || (kind == ActionKind::Discard
                        && dialect.action(ActionKind::TrafficRateBytes));
                if !ok {
                    return Err(RejectReason::ActionNotSupported { action: kind });
                }
            }
            dialect
                .accepts(rule, actions)
                .map_err(|refusal| RejectReason::Dialect { refusal })?;
            if !rib.contains(&route.key()) && rib.flowspec_rules() >= support.max_rules {
                return Err(RejectReason::MaxRules {
                    max: support.max_rules,
                });
            }
        }
        let four_octet = negotiated.as_ref().map(|n| n.four_octet_as).unwrap_or(true);
        let add_path = negotiated.map(|n| n.add_path_send).unwrap_or_default();
        update::announce(route, &self.shared.params(four_octet, &add_path)).map_err(|e| {
            RejectReason::Encoding {
                message: e.to_string(),
            }
        })?;
        Ok(())
    }

    fn status(&self) -> PeerStatus {
        let cfg = &self.shared.config;
        let (adj_rib_out, flowspec_rules, keys) = {
            let rib = self.shared.rib();
            (rib.len(), rib.flowspec_rules(), rib.keys())
        };
        let s = self.shared.stats().clone();
        let flap = {
            let f = self.shared.flap();
            FlapStatus {
                quarantined: f.quarantine.len(),
                suspects: f.suspects.len(),
                resets: f.resets,
                last_reset: f.last_reset.clone(),
                backoff_secs: f.backoff.as_secs_f64(),
                reconnect_in_secs: f
                    .next_attempt
                    .filter(|_| s.state == SessionState::Idle)
                    .map(|t| t.saturating_duration_since(Instant::now()).as_secs_f64()),
            }
        };
        let unsent_routes = match (&s.negotiated, s.state) {
            (Some(n), SessionState::Established) => keys
                .iter()
                .filter(|k| !n.families.contains(&k.family()))
                .count(),
            _ => 0,
        };
        PeerStatus {
            name: cfg.name.clone(),
            address: cfg.address,
            port: cfg.port,
            peer_asn: cfg.peer_asn,
            passive: cfg.passive,
            state: s.state,
            uptime_secs: s.established_at.map(|t| t.elapsed().as_secs()),
            negotiated: if s.state == SessionState::Established {
                s.negotiated
            } else {
                None
            },
            adj_rib_out,
            flowspec_rules,
            unsent_routes,
            advertised: if s.state == SessionState::Established {
                adj_rib_out - unsent_routes
            } else {
                0
            },
            routes_announced: s.routes_announced,
            routes_withdrawn: s.routes_withdrawn,
            updates_sent: s.updates_sent,
            updates_received: s.updates_received,
            route_refreshes_received: s.route_refreshes_received,
            route_refreshes_sent: s.route_refreshes_sent,
            established_count: s.established_count,
            last_error: s.last_error,
            last_notification_sent: s.last_notification_sent,
            last_notification_received: s.last_notification_received,
            flap,
            update_errors: s.update_errors,
            afi_safi_disabled: s
                .afi_safi_disabled
                .iter()
                .map(|(afi, safi)| match Family::from_codes(*afi, *safi) {
                    Some(f) => f.to_string(),
                    None => format!("{afi}/{safi}"),
                })
                .collect(),
            last_update_error: s.last_update_error,
            rib_in: {
                let mut r = self.shared.rib_in();
                r.expire(Instant::now());
                r.status()
            },
            history: s.history.into_iter().collect(),
            refused_capabilities: self
                .shared
                .refused_capabilities
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}

/// Why a route refresh cannot be asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    #[error("no BGP peer named `{0}`")]
    NoSuchPeer(String),
    #[error("the session with `{0}` is not established")]
    NotEstablished(String),
    #[error("`{0}` did not advertise route refresh (RFC 2918)")]
    NotSupported(String),
    #[error("`{peer}` did not negotiate {family}")]
    FamilyNotNegotiated { peer: String, family: Family },
}

/// Why the speaker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] BgpConfigError),
    #[error("the BGP speaker must be started from within a tokio runtime")]
    NoRuntime,
}

/// The BGP speaker: one session task per configured peer.
pub struct Speaker {
    config: BgpConfig,
    peers: Vec<Peer>,
    /// Serialises announce/withdraw so the per-peer RIB updates and change
    /// notifications of one call are not interleaved with another's.
    ops: Mutex<()>,
    /// Where the quarantine is kept (`None`: not kept).
    quarantine_file: Option<PathBuf>,
    /// Flow Spec routes held back because another system has them in
    /// force, with the peers they are for.
    suppressed: Mutex<Vec<(Route, Vec<String>)>>,
    /// Whether a rule in force from another system holds ours back
    /// ([`Speaker::set_hold_back_duplicates`]).
    hold_back_duplicates: std::sync::atomic::AtomicBool,
}

impl Speaker {
    /// Validates `config` and starts a session task per peer on the current
    /// tokio runtime (call from within one).
    pub fn start(config: BgpConfig) -> Result<Self, StartError> {
        config.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime)?;
        let peers = config
            .peers
            .iter()
            .map(|pc| {
                let shared = Arc::new(PeerShared {
                    config: pc.clone(),
                    local_asn: pc.local_asn(&config),
                    router_id: config.router_id,
                    shutdown_message: config.shutdown_message.clone(),
                    refused_capabilities: Mutex::default(),
                    rib: Mutex::default(),
                    rib_in: Mutex::default(),
                    stats: Mutex::default(),
                    flap: Mutex::default(),
                });
                let (changes_tx, changes_rx) = mpsc::unbounded_channel();
                let (refresh_tx, refresh_rx) = mpsc::unbounded_channel();
                let (stop_tx, stop_rx) = watch::channel(None);
                let task = Task {
                    shared: shared.clone(),
                    changes: changes_rx,
                    refresh: refresh_rx,
                    stop: stop_rx,
                    unproven: Vec::new(),
                    reset: None,
                    notified: false,
                };
                let handle = runtime.spawn(task.run());
                Peer {
                    shared,
                    changes: changes_tx,
                    refresh: refresh_tx,
                    stop: stop_tx,
                    task: Some(handle),
                }
            })
            .collect();
        Ok(Self {
            config,
            peers,
            ops: Mutex::new(()),
            quarantine_file: None,
            suppressed: Mutex::default(),
            hold_back_duplicates: std::sync::atomic::AtomicBool::new(true),
        })
    }

    /// Keeps the quarantine in `state_dir` (see [`Speaker::save_quarantine`])
    /// and loads what is there, for the configured peers. Call before
    /// announcing.
    pub fn load_quarantine(&mut self, state_dir: &Path) -> Result<usize, QuarantineError> {
        let path = flap::quarantine_file(state_dir);
        self.quarantine_file = Some(path.clone());
        let saved: BTreeMap<String, Vec<Quarantined>> =
            crate::state::read_json(&path)?.unwrap_or_default();
        let mut n = 0;
        for peer in &self.peers {
            if let Some(list) = saved.get(&peer.shared.config.name) {
                let mut f = peer.shared.flap();
                for q in list {
                    if f.is_quarantined(&q.route).is_none() {
                        f.quarantine.push(q.clone());
                        n += 1;
                    }
                }
            }
        }
        Ok(n)
    }

    /// Writes the quarantine file if the quarantine changed.
    pub fn save_quarantine(&self) -> Result<(), QuarantineError> {
        let Some(path) = &self.quarantine_file else {
            return Ok(());
        };
        let mut dirty = false;
        for peer in &self.peers {
            dirty |= std::mem::take(&mut peer.shared.flap().dirty);
        }
        if dirty {
            crate::state::write_json(path, &self.quarantine())?;
        }
        Ok(())
    }

    /// Every peer's quarantined routes.
    pub fn quarantine(&self) -> BTreeMap<String, Vec<Quarantined>> {
        self.peers
            .iter()
            .map(|p| {
                (
                    p.shared.config.name.clone(),
                    p.shared.flap().quarantine.clone(),
                )
            })
            .collect()
    }

    /// Routes quarantined since the last call (the caller falls back).
    pub fn quarantine_events(&self) -> Vec<QuarantineEvent> {
        let mut out = Vec::new();
        for p in &self.peers {
            let events = std::mem::take(&mut p.shared.flap().events);
            out.extend(events.into_iter().map(|(route, reason)| QuarantineEvent {
                peer: p.shared.config.name.clone(),
                route,
                reason,
            }));
        }
        out
    }

    /// Clears a peer's quarantine (and its suspects and back-off); returns
    /// the routes that were quarantined. They may be announced again.
    pub fn clear_quarantine(&self, peer: &str) -> Result<Vec<Quarantined>, QuarantineError> {
        let p = self
            .peers
            .iter()
            .find(|p| p.shared.config.name == peer)
            .ok_or_else(|| QuarantineError::NoSuchPeer(peer.to_string()))?;
        let mut f = p.shared.flap();
        let cleared = std::mem::take(&mut f.quarantine);
        f.suspects.clear();
        f.struck.clear();
        f.attempts.clear();
        f.dirty = true;
        tracing::info!(
            peer,
            routes = cleared.len(),
            "BGP quarantine cleared by the operator"
        );
        Ok(cleared)
    }

    pub fn config(&self) -> &BgpConfig {
        &self.config
    }

    /// Puts `route` in the Adj-RIB-Out of every peer that takes it (sent at
    /// once where the session is up, else when it comes up). A route that
    /// is malformed or outside `announce_within` is refused for all with
    /// an error; otherwise each peer's outcome says whether it took it.
    /// A refused route leaves an earlier route with the same key in place.
    pub fn announce(&self, route: Route) -> Result<Announcement, RouteError> {
        self.announce_where(route, |_| true)
    }

    /// Like [`Speaker::announce`], to the named peers only: e.g. the RTBH
    /// fallback for the routers that refused a flow spec rule.
    pub fn announce_to(&self, peers: &[&str], route: Route) -> Result<Announcement, RouteError> {
        self.announce_where(route, |name| peers.contains(&name))
    }

    fn announce_where(
        &self,
        route: Route,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<Announcement, RouteError> {
        route.check(&self.config.announce_within)?;
        let key = route.key();
        let _guard = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        let mut outcomes = Vec::with_capacity(self.peers.len());
        if let Some(from) = self.in_force_elsewhere(&route) {
            let peers: Vec<String> = self
                .peers
                .iter()
                .map(|p| p.shared.config.name.clone())
                .filter(|n| wanted(n))
                .collect();
            tracing::info!(%route, %from,
                "Flow Spec rule not announced: the same rule is in force from another system");
            let mut held = self.suppressed.lock().unwrap_or_else(|e| e.into_inner());
            held.retain(|(r, _)| r.key() != key);
            held.push((route, peers.clone()));
            return Ok(Announcement {
                key,
                peers: peers
                    .into_iter()
                    .map(|p| (p, Outcome::InForceElsewhere { from: from.clone() }))
                    .collect(),
            });
        }
        for peer in self.peers.iter().filter(|p| wanted(&p.shared.config.name)) {
            let mut rib = peer.shared.rib();
            let outcome = match peer.admit(&route, &rib) {
                Err(reason) => Outcome::Refused(reason),
                Ok(()) => match rib.insert(route.clone()) {
                    Change::Unchanged => Outcome::Unchanged,
                    Change::Added | Change::Replaced => {
                        let _ = peer.changes.send(key.clone());
                        Outcome::Accepted
                    }
                },
            };
            if let Outcome::Refused(r) = &outcome {
                tracing::info!(peer = %peer.shared.config.name, %route, "route refused: {r}");
            }
            outcomes.push((peer.shared.config.name.clone(), outcome));
        }
        Ok(Announcement {
            key,
            peers: outcomes,
        })
    }

    /// Withdraws `route` (by its key) from every peer holding it; returns
    /// how many did.
    pub fn withdraw(&self, route: &Route) -> usize {
        self.withdraw_key(&route.key())
    }

    /// Withdraws the route with `key` from every peer holding it.
    pub fn withdraw_key(&self, key: &RouteKey) -> usize {
        let _guard = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        self.suppressed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(r, _)| r.key() != *key);
        let mut n = 0;
        for peer in &self.peers {
            if peer.shared.rib().remove(key).is_some() {
                let _ = peer.changes.send(key.clone());
                n += 1;
            }
        }
        n
    }

    /// The routes in a peer's Adj-RIB-Out (`None`: no such peer).
    pub fn routes(&self, peer: &str) -> Option<Vec<Route>> {
        self.peers
            .iter()
            .find(|p| p.shared.config.name == peer)
            .map(|p| p.shared.rib().routes().cloned().collect())
    }

    /// The received routes that match `query`, from every peer or the one
    /// it names, in peer order (each peer's Adj-RIB-In locked in turn).
    pub fn rib(&self, query: &RibQuery) -> Result<RibAnswer, QueryError> {
        let compiled = rib_in::query::Compiled::new(query)?;
        if let Some(name) = &query.peer
            && !self.peers.iter().any(|p| &p.shared.config.name == name)
        {
            return Err(QueryError::NoSuchPeer(name.clone()));
        }
        let mut out = RibAnswer::default();
        for p in &self.peers {
            let name = &p.shared.config.name;
            if query.peer.as_ref().is_some_and(|n| n != name) {
                continue;
            }
            let mut rib = p.shared.rib_in();
            rib.expire(Instant::now());
            compiled.run(name, &rib, &mut out);
            if out.truncated {
                break;
            }
        }
        Ok(out)
    }

    /// A peer's Adj-RIB-In version: it changes whenever the routes held
    /// change (`None`: no such peer).
    pub fn rib_in_version(&self, peer: &str) -> Option<u64> {
        self.peers
            .iter()
            .find(|p| p.shared.config.name == peer)
            .map(|p| p.shared.rib_in().version())
    }

    /// Whether `peer` has sent its whole table of `family` this session:
    /// End-of-RIB arrived (RFC 4724 §2), or, for peers that never send it,
    /// the session has been up for [`TABLE_SETTLE`].
    pub fn table_complete(&self, peer: &str, family: Family) -> bool {
        self.peers
            .iter()
            .find(|p| p.shared.config.name == peer)
            .is_some_and(|p| {
                let up = p.shared.stats().established_at;
                up.is_some()
                    && (p.shared.rib_in().has_end_of_rib(family)
                        || up.is_some_and(|t| t.elapsed() >= TABLE_SETTLE))
            })
    }

    /// The prefixes `peer` sends in `family` tagged with `community`
    /// (`ASN:VALUE` or `GLOBAL:LOCAL1:LOCAL2`), each once.
    pub fn tagged_prefixes(
        &self,
        peer: &str,
        family: Family,
        community: &str,
    ) -> Result<Vec<ipnet::IpNet>, QueryError> {
        let query = RibQuery {
            peer: Some(peer.to_string()),
            family: Some(family),
            community: Some(community.to_string()),
            limit: Some(0),
            ..RibQuery::default()
        };
        let mut prefixes: Vec<ipnet::IpNet> = self
            .rib(&query)?
            .routes
            .into_iter()
            .map(|r| r.prefix)
            .collect();
        prefixes.sort();
        prefixes.dedup();
        Ok(prefixes)
    }

    /// Whether an identical rule in force from another system holds ours
    /// back (the default). Off while this sensor is part of a healthy
    /// cluster: there each rule has one announcer by ownership, and an
    /// identical rule seen through the route reflector is a cluster
    /// member's, which a new owner must replace, not wait for (a clean
    /// stop's old owner withdraws only once the new owner has announced).
    /// Rules held back so far go out at the next
    /// [`Speaker::resume_suppressed`].
    pub fn set_hold_back_duplicates(&self, on: bool) {
        self.hold_back_duplicates
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// The peer that sends us `route` (same Flow Spec NLRI and actions)
    /// from another system, unless one of our peers already has it from us
    /// (we keep announcing what we announced).
    fn in_force_elsewhere(&self, route: &Route) -> Option<String> {
        let Route::FlowSpec { rule, actions } = route else {
            return None;
        };
        if !self
            .hold_back_duplicates
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return None;
        }
        let key = route.key();
        if self.peers.iter().any(|p| p.shared.rib().contains(&key)) {
            return None;
        }
        self.peers.iter().find_map(|p| {
            let mut rib = p.shared.rib_in();
            rib.expire(Instant::now());
            duplicate::same_rule(
                &rib,
                rule,
                actions,
                self.config.router_id,
                p.shared.local_asn,
            )
            .then(|| p.shared.config.name.clone())
        })
    }

    /// Announces the Flow Spec routes held back as duplicates whose
    /// foreign copy is gone; returns what each peer did with them. The
    /// daemon calls it now and then.
    pub fn resume_suppressed(&self) -> Vec<Announcement> {
        let held = std::mem::take(&mut *self.suppressed.lock().unwrap_or_else(|e| e.into_inner()));
        let mut out = Vec::new();
        for (route, peers) in held {
            // Still in force elsewhere: held back again (by announce).
            match self.announce_where(route, |n| peers.iter().any(|p| p == n)) {
                Ok(a)
                    if a.peers
                        .iter()
                        .all(|(_, o)| matches!(o, Outcome::InForceElsewhere { .. })) => {}
                Ok(a) => out.push(a),
                Err(e) => tracing::warn!("a held-back Flow Spec rule cannot be announced: {e}"),
            }
        }
        out
    }

    /// The Flow Spec rules other systems have in force whose destination
    /// covers `addr` (for the attack log and `edge-sensor attacks`).
    pub fn foreign_rules_covering(&self, addr: IpAddr) -> Vec<duplicate::ForeignRule> {
        let mut out = Vec::new();
        for p in &self.peers {
            let mut rib = p.shared.rib_in();
            rib.expire(Instant::now());
            out.extend(duplicate::covering(
                &p.shared.config.name,
                &rib,
                addr,
                self.config.router_id,
                p.shared.local_asn,
            ));
        }
        out
    }

    /// Asks `peer` to send its routes of `families` again (ROUTE-REFRESH,
    /// RFC 2918 §3; every negotiated family when empty); returns the
    /// families asked for.
    pub fn route_refresh(
        &self,
        peer: &str,
        families: &[Family],
    ) -> Result<Vec<Family>, RefreshError> {
        let p = self
            .peers
            .iter()
            .find(|p| p.shared.config.name == peer)
            .ok_or_else(|| RefreshError::NoSuchPeer(peer.to_string()))?;
        let s = p.shared.stats();
        let n = match (&s.negotiated, s.state) {
            (Some(n), SessionState::Established) => n.clone(),
            _ => return Err(RefreshError::NotEstablished(peer.to_string())),
        };
        drop(s);
        if !n.route_refresh {
            return Err(RefreshError::NotSupported(peer.to_string()));
        }
        let wanted = if families.is_empty() {
            n.families.clone()
        } else {
            families.to_vec()
        };
        for &family in &wanted {
            if !n.families.contains(&family) {
                return Err(RefreshError::FamilyNotNegotiated {
                    peer: peer.to_string(),
                    family,
                });
            }
        }
        for &family in &wanted {
            let _ = p.refresh.send(family);
        }
        Ok(wanted)
    }

    /// Each peer's state, capabilities, uptime and counters.
    pub fn status(&self) -> Vec<PeerStatus> {
        self.peers.iter().map(Peer::status).collect()
    }

    /// Stops every session: with `withdraw_all`, withdraws every route then
    /// sends Cease/Administrative Shutdown with the configured text;
    /// without, keeps the routes at routers that negotiated graceful
    /// restart (closing without NOTIFICATION) and sends the Cease to the
    /// others. Waits at most 10 s for the sessions to finish.
    pub async fn shutdown(mut self, withdraw_all: bool) {
        for peer in &self.peers {
            let _ = peer.stop.send(Some(Stop { withdraw_all }));
        }
        for peer in &mut self.peers {
            if let Some(task) = peer.task.take() {
                let abort = task.abort_handle();
                if tokio::time::timeout(Duration::from_secs(10), task)
                    .await
                    .is_err()
                {
                    abort.abort();
                }
            }
        }
    }
}

/// How long after a session comes up a peer that sends no End-of-RIB is
/// taken to have sent its table.
pub const TABLE_SETTLE: Duration = Duration::from_secs(10);

impl Drop for Speaker {
    /// Without [`Speaker::shutdown`], the sessions are dropped (connections
    /// closed, no NOTIFICATION).
    fn drop(&mut self) {
        for peer in &mut self.peers {
            if let Some(task) = peer.task.take() {
                task.abort();
            }
        }
    }
}
