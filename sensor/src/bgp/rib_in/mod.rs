//! The Adj-RIB-In of one peer (RFC 4271 §3.2): the routes it sent us, per
//! family (IPv4/IPv6 unicast, Flow Spec v4/v6), as they are after the RFC
//! 7606 check of each UPDATE ([`crate::bgp::receive`]).
//!
//! ```text
//! UPDATE --receive::check--> verdict --AdjRibIn::apply--> tables
//! ```
//!
//! - Ok / attribute discard: withdrawals, then announcements (RFC 4271
//!   §4.3: a prefix in both is announced); treat-as-withdraw: every route
//!   of the UPDATE withdrawn (RFC 7606 §2); AFI/SAFI disable: the family
//!   emptied and ignored for the rest of the session (RFC 4760 §7).
//! - End-of-RIB (RFC 4724 §2) is recorded per family, and ends the stale
//!   period of that family.
//! - Graceful restart (RFC 4724 §4.2): a session that ends without a
//!   NOTIFICATION, where both sides negotiated it, leaves the peer's
//!   routes marked stale for its restart time; the new session refreshes
//!   them and its End-of-RIB removes those it did not send again. Any
//!   other end of a session empties the Adj-RIB-In.
//! - Path attributes are interned (`attributes.rs`): a full table holds
//!   one copy per distinct attribute set.
//!
//! One file per concern: `attributes.rs` the attribute sets and their
//! interner, `table.rs` the unicast prefix table, `flow.rs` the Flow Spec
//! rules and their validation (RFC 8955 §6, RFC 9117), `query.rs` the
//! lookups `edge-sensor rib` asks for.

pub mod attributes;
pub mod flow;
pub mod query;
pub mod table;

use std::{
    collections::BTreeSet,
    time::{Duration, Instant, SystemTime},
};

use ipnet::IpNet;
use serde::Serialize;

use crate::bgp::{
    capability::Family,
    receive::{Nlri, PathNlri, ReceivedUpdate, UpdateVerdict},
};
use attributes::{Attributes, Interner};
use flow::{FlowRoute, FlowTable, Sender};
use table::{Path, Table};

/// How long stale routes wait for the restarted peer's End-of-RIB once
/// the session is back (RFC 4724 §4.2 leaves it local; 360 s is the
/// common default of routers' "stalepath-time").
pub const STALE_PATH_TIME: Duration = Duration::from_secs(360);

/// Who the routes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerInfo {
    pub ibgp: bool,
    pub peer_asn: u32,
    /// AS numbers are 4 octets (RFC 6793).
    pub four_octet: bool,
}

/// Counters of one Adj-RIB-In, as `edge-sensor bgp` shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RibInStatus {
    /// Distinct unicast prefixes (both families).
    pub prefixes: usize,
    /// Unicast paths (more than prefixes with Add-Path).
    pub paths: usize,
    /// Flow Spec rules (paths, both families).
    pub flowspec_rules: usize,
    /// Distinct attribute sets held (interned).
    pub attribute_sets: usize,
    /// Paths kept stale for a restarting peer (RFC 4724 §4.2).
    pub stale: usize,
    /// Families whose End-of-RIB arrived this session.
    pub end_of_rib: Vec<Family>,
    /// Routes announced and withdrawn over all sessions.
    pub announced: u64,
    pub withdrawn: u64,
    /// Stale paths removed (End-of-RIB or restart time over).
    pub stale_removed: u64,
}

/// One peer's received routes.
#[derive(Debug, Default)]
pub struct AdjRibIn {
    v4: Table,
    v6: Table,
    flow4: FlowTable,
    flow6: FlowTable,
    interner: Interner,
    end_of_rib: BTreeSet<Family>,
    /// Families ignored for the rest of the session (RFC 4760 §7).
    disabled: BTreeSet<Family>,
    /// When the stale routes go, if nothing refreshes them first.
    stale_until: Option<Instant>,
    announced: u64,
    withdrawn: u64,
    stale_removed: u64,
    /// Bumped by every change of the routes held ([`Self::version`]).
    version: u64,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl AdjRibIn {
    /// Applies what the RFC 7606 check made of one UPDATE.
    pub fn apply(&mut self, verdict: &UpdateVerdict, peer: PeerInfo) {
        self.version += 1;
        match verdict {
            UpdateVerdict::Ok(u) | UpdateVerdict::AttributeDiscard { update: u, .. } => {
                self.apply_update(u, peer);
            }
            UpdateVerdict::TreatAsWithdraw { withdrawn, .. } => {
                for n in withdrawn {
                    self.withdraw(n);
                }
            }
            UpdateVerdict::AfiSafiDisable { afi, safi, .. } => {
                if let Some(f) = Family::from_codes(*afi, *safi) {
                    self.disable(f);
                }
            }
            // The session ends: `session_down` empties the tables.
            UpdateVerdict::SessionReset { .. } => {}
        }
    }

    fn apply_update(&mut self, u: &ReceivedUpdate, peer: PeerInfo) {
        for n in &u.withdrawn {
            self.withdraw(n);
        }
        if let Some((afi, safi)) = u.end_of_rib
            && let Some(f) = Family::from_codes(afi, safi)
        {
            self.end_of_rib(f);
        }
        if u.announced.is_empty() {
            return;
        }
        let attrs = self
            .interner
            .intern(Attributes::from_received(&u.attributes, peer.four_octet));
        let since = unix_now();
        let mut flow_actions = None;
        for n in &u.announced {
            let Some(family) = family_of(&n.nlri) else {
                continue;
            };
            if self.disabled.contains(&family) {
                continue;
            }
            self.announced += 1;
            match &n.nlri {
                Nlri::Prefix(p) => {
                    let path = Path {
                        attrs: attrs.clone(),
                        stale: false,
                        since,
                    };
                    self.table_mut(family).insert(*p, n.path_id, path);
                }
                Nlri::FlowSpec(rule) => {
                    let actions = flow_actions
                        .get_or_insert_with(|| FlowRoute::actions_of(&attrs))
                        .clone();
                    let sender = Sender {
                        ibgp: peer.ibgp,
                        peer_asn: peer.peer_asn,
                    };
                    let validation = flow::validate(rule, &attrs, sender, |dest| {
                        let t = match dest {
                            IpNet::V4(_) => &self.v4,
                            IpNet::V6(_) => &self.v6,
                        };
                        t.longest(dest).first().map(|(p, _, _)| *p)
                    });
                    let route = FlowRoute {
                        rule: rule.clone(),
                        actions,
                        attrs: attrs.clone(),
                        validation,
                        stale: false,
                        since,
                    };
                    if let Some(t) = self.flow_mut(family) {
                        t.insert(n.path_id, route);
                    }
                }
                Nlri::Raw { .. } => {}
            }
        }
        self.interner.collect_if_due();
    }

    fn withdraw(&mut self, n: &PathNlri) {
        let Some(family) = family_of(&n.nlri) else {
            return;
        };
        let removed = match &n.nlri {
            Nlri::Prefix(p) => self.table_mut(family).remove(*p, n.path_id),
            Nlri::FlowSpec(rule) => self
                .flow_mut(family)
                .is_some_and(|t| t.remove(rule, n.path_id)),
            Nlri::Raw { .. } => false,
        };
        self.withdrawn += u64::from(removed);
    }

    fn table_mut(&mut self, family: Family) -> &mut Table {
        match family {
            Family::Ipv6Unicast | Family::Ipv6FlowSpec => &mut self.v6,
            Family::Ipv4Unicast | Family::Ipv4FlowSpec => &mut self.v4,
        }
    }

    fn flow_mut(&mut self, family: Family) -> Option<&mut FlowTable> {
        match family {
            Family::Ipv4FlowSpec => Some(&mut self.flow4),
            Family::Ipv6FlowSpec => Some(&mut self.flow6),
            _ => None,
        }
    }

    /// The unicast table of `family` (`None` for Flow Spec families).
    pub fn table(&self, family: Family) -> Option<&Table> {
        match family {
            Family::Ipv4Unicast => Some(&self.v4),
            Family::Ipv6Unicast => Some(&self.v6),
            _ => None,
        }
    }

    /// The Flow Spec rules of `family` (`None` for unicast families).
    pub fn flows(&self, family: Family) -> Option<&FlowTable> {
        match family {
            Family::Ipv4FlowSpec => Some(&self.flow4),
            Family::Ipv6FlowSpec => Some(&self.flow6),
            _ => None,
        }
    }

    /// End-of-RIB for `family` (RFC 4724 §2): the peer sent its table; the
    /// stale routes it did not send again go (§4.2).
    pub fn end_of_rib(&mut self, family: Family) {
        self.end_of_rib.insert(family);
        let n = self.sweep(family);
        if n > 0 {
            tracing::debug!(%family, stale = n, "End-of-RIB: stale routes removed");
        }
    }

    fn sweep(&mut self, family: Family) -> usize {
        let n = match family {
            Family::Ipv4Unicast => self.v4.sweep_stale(),
            Family::Ipv6Unicast => self.v6.sweep_stale(),
            Family::Ipv4FlowSpec => self.flow4.sweep_stale(),
            Family::Ipv6FlowSpec => self.flow6.sweep_stale(),
        };
        self.stale_removed += n as u64;
        if n > 0 {
            self.version += 1;
            self.interner.collect();
        }
        n
    }

    /// Whether End-of-RIB for `family` arrived this session.
    pub fn has_end_of_rib(&self, family: Family) -> bool {
        self.end_of_rib.contains(&family)
    }

    /// Changes whenever the routes held change (readers that derive
    /// something from the table recompute only then).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// AFI/SAFI disable (RFC 7606 §2, RFC 4760 §7): the family's routes go
    /// and later ones are ignored until the session ends.
    pub fn disable(&mut self, family: Family) {
        self.version += 1;
        self.disabled.insert(family);
        match family {
            Family::Ipv4Unicast => self.v4.clear(),
            Family::Ipv6Unicast => self.v6.clear(),
            Family::Ipv4FlowSpec => self.flow4.clear(),
            Family::Ipv6FlowSpec => self.flow6.clear(),
        }
        self.interner.collect();
    }

    /// A session reached Established. `keep`: the families whose stale
    /// routes may wait for End-of-RIB (the peer's graceful restart
    /// capability lists them with forwarding state preserved, RFC 4724
    /// §4.2); the stale routes of the others go now.
    pub fn session_up(&mut self, keep: &[Family], now: Instant) {
        self.end_of_rib.clear();
        self.disabled.clear();
        for f in Family::ALL {
            if !keep.contains(&f) {
                self.sweep(f);
            }
        }
        if self.stale_until.is_some() {
            self.stale_until = Some(now + STALE_PATH_TIME);
        }
    }

    /// The session ended. `restart`: graceful restart applies (both sides
    /// negotiated it and no NOTIFICATION ended the session, RFC 4724
    /// §4.2), with the peer's restart time: the routes are kept stale that
    /// long. Otherwise they all go.
    pub fn session_down(&mut self, restart: Option<Duration>, now: Instant) {
        self.end_of_rib.clear();
        self.disabled.clear();
        match restart {
            Some(t) if !t.is_zero() && self.total_paths() > 0 => {
                self.v4.mark_stale();
                self.v6.mark_stale();
                self.flow4.mark_stale();
                self.flow6.mark_stale();
                self.stale_until = Some(now + t);
            }
            _ => self.clear(),
        }
    }

    /// Removes the stale routes whose time is over (call now and then, and
    /// before answering queries).
    pub fn expire(&mut self, now: Instant) {
        if self.stale_until.is_some_and(|t| now >= t) {
            self.stale_until = None;
            for f in Family::ALL {
                self.sweep(f);
            }
        }
    }

    pub fn clear(&mut self) {
        self.version += 1;
        self.v4.clear();
        self.v6.clear();
        self.flow4.clear();
        self.flow6.clear();
        self.interner.clear();
        self.stale_until = None;
    }

    fn total_paths(&self) -> usize {
        self.v4.paths() + self.v6.paths() + self.flow4.len() + self.flow6.len()
    }

    pub fn status(&self) -> RibInStatus {
        // Counted only while stale routes can exist: a walk over every
        // path (millions with a full table) on each status request would
        // hold the lock the session's UPDATEs wait for.
        let stale = if self.stale_until.is_some() {
            self.v4.iter().filter(|(_, _, p)| p.stale).count()
                + self.v6.iter().filter(|(_, _, p)| p.stale).count()
                + self.flow4.iter().filter(|(_, r)| r.stale).count()
                + self.flow6.iter().filter(|(_, r)| r.stale).count()
        } else {
            0
        };
        RibInStatus {
            prefixes: self.v4.prefixes() + self.v6.prefixes(),
            paths: self.v4.paths() + self.v6.paths(),
            flowspec_rules: self.flow4.len() + self.flow6.len(),
            attribute_sets: self.interner.len(),
            stale,
            end_of_rib: self.end_of_rib.iter().copied().collect(),
            announced: self.announced,
            withdrawn: self.withdrawn,
            stale_removed: self.stale_removed,
        }
    }
}

/// The family of a received NLRI.
fn family_of(n: &Nlri) -> Option<Family> {
    match n {
        Nlri::Prefix(IpNet::V4(_)) => Some(Family::Ipv4Unicast),
        Nlri::Prefix(IpNet::V6(_)) => Some(Family::Ipv6Unicast),
        Nlri::FlowSpec(r) => Some(match r.family() {
            crate::bgp::flowspec::IpFamily::Ipv4 => Family::Ipv4FlowSpec,
            crate::bgp::flowspec::IpFamily::Ipv6 => Family::Ipv6FlowSpec,
        }),
        Nlri::Raw { .. } => None,
    }
}

#[cfg(test)]
mod tests;
