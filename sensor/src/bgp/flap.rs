//! Flap protection: a route that makes a router reset the session is found,
//! quarantined for that router and never sent to it again, and a router
//! that keeps resetting is reconnected to ever more slowly.
//!
//! A session that ends soon after our UPDATEs, with an UPDATE error
//! NOTIFICATION (code 3) or a dropped connection without a NOTIFICATION,
//! is blamed on the routes sent within the probation time before the end
//! that had not yet proven themselves (a route is *proven* once it stayed
//! at the router for the probation time). Then:
//!
//! - the NOTIFICATION's data names one of them (it holds the attribute or
//!   NLRI of exactly one): that one is quarantined;
//! - only one was unproven and the router said NOTIFICATION 3, or it was
//!   a suspect already (second strike): it is quarantined;
//! - otherwise all of them become *suspects*: on the next session every
//!   other route is sent at once and the suspects one at a time, each
//!   after the one before proved itself, so the next reset names the
//!   culprit. At most two resets for one bad route.
//!
//! A quarantined route is taken out of the peer's Adj-RIB-Out and refused
//! when announced again (`RejectReason::Quarantined`), so the mitigation
//! falls back (e.g. to RTBH); the speaker reports it as an event.
//!
//! Reconnects after a session that ended in such a reset before it stayed
//! up [`STABLE_AFTER`] double the wait (with jitter), and no more than
//! [`MAX_ATTEMPTS_PER_MINUTE`] connections are made a minute (RFC 4271
//! §8.1.1 DampPeerOscillations).

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

use serde::{Deserialize, Serialize};

use super::route::{Route, RouteKey};

/// A session up this long was stable: the back-off starts over.
pub const STABLE_AFTER: Duration = Duration::from_secs(30);
/// At most this many sessions to one router that were established and
/// then reset, in any minute (DampPeerOscillations): after them the next
/// connection waits.
pub const MAX_ATTEMPTS_PER_MINUTE: usize = 5;

/// One route a router will not be sent again, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quarantined {
    pub route: Route,
    /// The router's reason: the NOTIFICATION, or the dropped connection.
    pub reason: String,
    /// Unix seconds.
    pub since: u64,
}

/// A route quarantined for a peer since the last
/// [`super::Speaker::quarantine_events`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuarantineEvent {
    pub peer: String,
    pub route: Route,
    pub reason: String,
}

/// Why a session ended, when it may be our UPDATEs' fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reset {
    /// NOTIFICATION code 3 (text, data field).
    UpdateError { text: String, data: Vec<u8> },
    /// The connection closed or broke without a NOTIFICATION.
    Dropped(String),
}

impl Reset {
    pub fn text(&self) -> String {
        match self {
            Reset::UpdateError { text, .. } => format!("NOTIFICATION {text}"),
            Reset::Dropped(why) => format!("connection dropped without NOTIFICATION ({why})"),
        }
    }
}

/// The flap protection state of one peer.
#[derive(Debug, Default)]
pub(crate) struct Flap {
    pub quarantine: Vec<Quarantined>,
    /// Held back on the next session, then sent one at a time.
    pub suspects: BTreeSet<RouteKey>,
    /// Unproven at a reset before (the next reset with it alone
    /// quarantines it).
    pub struck: BTreeSet<RouteKey>,
    /// Routes that stayed at the router for the probation time.
    pub proven: BTreeMap<RouteKey, Route>,
    /// Sessions that ended in an UPDATE error NOTIFICATION or a drop.
    pub resets: u64,
    pub last_reset: Option<String>,
    /// Start of recent sessions that were established and then reset
    /// (for the per-minute cap).
    pub attempts: VecDeque<Instant>,
    /// The current back-off and when the next attempt is due.
    pub backoff: Duration,
    pub next_attempt: Option<Instant>,
    /// Quarantined since last drained.
    pub events: Vec<(Route, String)>,
    /// Changed since last saved.
    pub dirty: bool,
}

impl Flap {
    pub fn is_quarantined(&self, route: &Route) -> Option<&Quarantined> {
        self.quarantine.iter().find(|q| &q.route == route)
    }

    /// Quarantines `route` with `reason`.
    pub fn quarantine(&mut self, route: Route, reason: String) {
        let key = route.key();
        self.suspects.remove(&key);
        self.struck.remove(&key);
        self.proven.remove(&key);
        if self.is_quarantined(&route).is_none() {
            self.quarantine.push(Quarantined {
                route: route.clone(),
                reason: reason.clone(),
                since: unix_now(),
            });
            self.events.push((route, reason));
            self.dirty = true;
        }
    }

    /// Counts a connection now; how long to wait before it so that at most
    /// [`MAX_ATTEMPTS_PER_MINUTE`] happen in a minute.
    pub fn damp_wait(&mut self, now: Instant) -> Duration {
        // A minute, and a margin for the time a connection takes.
        let minute = Duration::from_secs(61);
        while self
            .attempts
            .front()
            .is_some_and(|t| now.duration_since(*t) >= minute)
        {
            self.attempts.pop_front();
        }
        if self.attempts.len() < MAX_ATTEMPTS_PER_MINUTE {
            return Duration::ZERO;
        }
        let oldest = self.attempts[self.attempts.len() - MAX_ATTEMPTS_PER_MINUTE];
        (oldest + minute).saturating_duration_since(now)
    }
}

/// What to do after a reset blamed on the routes in `unproven` (sent this
/// session, not yet proven): the routes to quarantine, or none (then they
/// became suspects). `encoded` gives a route's UPDATE bytes, to find the
/// one a NOTIFICATION's data names.
pub(crate) fn blame(
    flap: &mut Flap,
    reset: &Reset,
    unproven: &[Route],
    encoded: impl Fn(&Route) -> Option<Vec<u8>>,
) -> Option<Route> {
    if unproven.is_empty() {
        return None;
    }
    if let Reset::UpdateError { data, .. } = reset
        && data.len() >= 4
    {
        let named: Vec<&Route> = unproven
            .iter()
            .filter(|r| encoded(r).is_some_and(|bytes| contains(&bytes, data)))
            .collect();
        if let [one] = named[..] {
            return Some(one.clone());
        }
    }
    if let [one] = unproven {
        let key = one.key();
        if matches!(reset, Reset::UpdateError { .. }) || flap.struck.contains(&key) {
            return Some(one.clone());
        }
    }
    for r in unproven {
        flap.suspects.insert(r.key());
        flap.struck.insert(r.key());
    }
    None
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The quarantine file in a state dir.
pub fn quarantine_file(state_dir: &Path) -> PathBuf {
    state_dir.join("bgp-quarantine.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hole(last: u8) -> Route {
        Route::blackhole(std::net::IpAddr::from([192, 0, 2, last]))
    }

    fn notification() -> Reset {
        Reset::UpdateError {
            text: "3/9".into(),
            data: Vec::new(),
        }
    }

    fn dropped() -> Reset {
        Reset::Dropped("reset".into())
    }

    #[test]
    fn no_new_route_no_blame() {
        let mut f = Flap::default();
        assert_eq!(blame(&mut f, &dropped(), &[], |_| None), None);
        assert!(f.suspects.is_empty());
    }

    #[test]
    fn an_update_error_after_one_new_route_names_it() {
        let mut f = Flap::default();
        let r = hole(1);
        assert_eq!(
            blame(&mut f, &notification(), std::slice::from_ref(&r), |_| None),
            Some(r)
        );
    }

    #[test]
    fn a_drop_after_one_new_route_needs_a_second_strike() {
        let mut f = Flap::default();
        let r = hole(1);
        assert_eq!(
            blame(&mut f, &dropped(), std::slice::from_ref(&r), |_| None),
            None
        );
        assert!(f.suspects.contains(&r.key()));
        f.suspects.clear(); // sent on probation
        assert_eq!(
            blame(&mut f, &dropped(), std::slice::from_ref(&r), |_| None),
            Some(r)
        );
    }

    #[test]
    fn several_new_routes_become_suspects_unless_the_data_names_one() {
        let mut f = Flap::default();
        let routes = [hole(1), hole(2), hole(3)];
        assert_eq!(blame(&mut f, &notification(), &routes, |_| None), None);
        assert_eq!(f.suspects.len(), 3);

        let mut f = Flap::default();
        let named = Reset::UpdateError {
            text: "3/9".into(),
            data: vec![0x20, 192, 0, 2, 2],
        };
        let encoded = |r: &Route| match r {
            Route::Blackhole { prefix } => {
                let mut b = vec![0xaa, 0x20];
                if let std::net::IpAddr::V4(a) = prefix.addr() {
                    b.extend_from_slice(&a.octets());
                }
                Some(b)
            }
            _ => None,
        };
        assert_eq!(blame(&mut f, &named, &routes, encoded), Some(hole(2)));
        assert!(f.suspects.is_empty());
    }

    #[test]
    fn quarantine_once_with_an_event() {
        let mut f = Flap::default();
        f.suspects.insert(hole(1).key());
        f.quarantine(hole(1), "3/9".into());
        f.quarantine(hole(1), "3/9".into());
        assert_eq!(f.quarantine.len(), 1);
        assert_eq!(f.events.len(), 1);
        assert!(f.suspects.is_empty() && f.dirty);
        assert!(f.is_quarantined(&hole(1)).is_some());
        assert!(f.is_quarantined(&hole(2)).is_none());
    }

    #[test]
    fn at_most_five_connections_a_minute() {
        let mut f = Flap::default();
        let t0 = Instant::now();
        for i in 0..5 {
            let now = t0 + Duration::from_secs(i);
            assert_eq!(f.damp_wait(now), Duration::ZERO);
            f.attempts.push_back(now);
        }
        let now = t0 + Duration::from_secs(5);
        assert_eq!(f.damp_wait(now), Duration::from_secs(56));
        // After the oldest left the window, one more.
        assert_eq!(f.damp_wait(t0 + Duration::from_secs(61)), Duration::ZERO);
    }
}
