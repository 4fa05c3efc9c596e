//! One family's unicast routes from one peer: paths keyed by prefix and
//! path identifier (RFC 7911 §3; 0 without Add-Path), in prefix order so
//! exact, longest-match and more-specific lookups are range reads of one
//! ordered map.
//!
//! A path is a few words: the identifier, a shared pointer to its
//! attributes (interned, see `attributes.rs`), the stale mark of graceful
//! restart (RFC 4724 §4.2) and when it was received.

use std::{collections::BTreeMap, net::IpAddr, sync::Arc};

use ipnet::IpNet;

use super::attributes::Attributes;

/// One received path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    pub attrs: Arc<Attributes>,
    /// Kept from a session that ended with graceful restart, not yet
    /// refreshed by the new one (RFC 4724 §4.2).
    pub stale: bool,
    /// Unix seconds when it was received.
    pub since: u64,
}

/// What a change did to a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added,
    Replaced,
    Unchanged,
}

/// The paths of one unicast family.
#[derive(Debug, Default)]
pub struct Table {
    paths: BTreeMap<(IpNet, u32), Path>,
    prefixes: usize,
}

impl Table {
    /// Stores a path for `prefix` (host bits cleared: RFC 4271 §4.3
    /// ignores the trailing bits) with `path_id`.
    pub fn insert(&mut self, prefix: IpNet, path_id: u32, path: Path) -> Change {
        let prefix = prefix.trunc();
        let new_prefix = !self.has_prefix(&prefix);
        match self.paths.insert((prefix, path_id), path.clone()) {
            None => {
                self.prefixes += usize::from(new_prefix);
                Change::Added
            }
            Some(old) if old.attrs == path.attrs && !old.stale => {
                // Same route again: keep when it was first received.
                if let Some(p) = self.paths.get_mut(&(prefix, path_id)) {
                    p.since = old.since;
                }
                Change::Unchanged
            }
            Some(_) => Change::Replaced,
        }
    }

    /// Removes the path; `true` if it was there.
    pub fn remove(&mut self, prefix: IpNet, path_id: u32) -> bool {
        let prefix = prefix.trunc();
        let removed = self.paths.remove(&(prefix, path_id)).is_some();
        if removed && !self.has_prefix(&prefix) {
            self.prefixes -= 1;
        }
        removed
    }

    fn has_prefix(&self, prefix: &IpNet) -> bool {
        self.paths
            .range((*prefix, 0)..=(*prefix, u32::MAX))
            .next()
            .is_some()
    }

    /// The paths of exactly `prefix`, by path identifier.
    pub fn exact(&self, prefix: IpNet) -> impl Iterator<Item = (IpNet, u32, &Path)> {
        let prefix = prefix.trunc();
        self.paths
            .range((prefix, 0)..=(prefix, u32::MAX))
            .map(|((p, id), path)| (*p, *id, path))
    }

    /// The paths of the longest prefix that contains `addr` (or `prefix`
    /// as a whole, for a prefix query).
    pub fn longest(&self, prefix: IpNet) -> Vec<(IpNet, u32, &Path)> {
        let prefix = prefix.trunc();
        for len in (0..=prefix.prefix_len()).rev() {
            let Ok(covering) = IpNet::new(prefix.addr(), len).map(|n| n.trunc()) else {
                continue;
            };
            let found: Vec<_> = self.exact(covering).collect();
            if !found.is_empty() {
                return found;
            }
        }
        Vec::new()
    }

    /// `prefix` and every prefix inside it.
    pub fn more_specific(&self, prefix: IpNet) -> impl Iterator<Item = (IpNet, u32, &Path)> {
        let prefix = prefix.trunc();
        let last = IpNet::new(prefix.broadcast(), prefix.max_prefix_len()).unwrap_or(prefix);
        self.paths
            .range((prefix, 0)..=(last, u32::MAX))
            .filter(move |((p, _), _)| prefix.contains(p))
            .map(|((p, id), path)| (*p, *id, path))
    }

    /// Every path in prefix order.
    pub fn iter(&self) -> impl Iterator<Item = (IpNet, u32, &Path)> {
        self.paths.iter().map(|((p, id), path)| (*p, *id, path))
    }

    /// Marks every path stale (RFC 4724 §4.2: the peer restarts).
    pub fn mark_stale(&mut self) {
        self.paths.values_mut().for_each(|p| p.stale = true);
    }

    /// Removes the stale paths; returns how many.
    pub fn sweep_stale(&mut self) -> usize {
        let before = self.paths.len();
        self.paths.retain(|_, p| !p.stale);
        self.recount();
        before - self.paths.len()
    }

    fn recount(&mut self) {
        let mut last = None;
        self.prefixes = 0;
        for (p, _) in self.paths.keys() {
            if last != Some(*p) {
                self.prefixes += 1;
                last = Some(*p);
            }
        }
    }

    pub fn clear(&mut self) {
        self.paths.clear();
        self.prefixes = 0;
    }

    /// Distinct prefixes.
    pub fn prefixes(&self) -> usize {
        self.prefixes
    }

    /// Paths (more than prefixes with Add-Path).
    pub fn paths(&self) -> usize {
        self.paths.len()
    }

    /// Whether a path covers `addr`.
    pub fn covers(&self, addr: IpAddr) -> bool {
        !self.longest(IpNet::from(addr)).is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn path(lp: u32) -> Path {
        Path {
            attrs: Arc::new(Attributes {
                local_pref: Some(lp),
                ..Attributes::default()
            }),
            stale: false,
            since: 0,
        }
    }

    fn prefixes<'a>(it: impl IntoIterator<Item = (IpNet, u32, &'a Path)>) -> Vec<String> {
        it.into_iter()
            .map(|(p, id, _)| format!("{p}#{id}"))
            .collect()
    }

    #[test]
    fn lookups_by_exact_longest_and_more_specific() {
        let mut t = Table::default();
        for p in ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "11.0.0.0/8"] {
            assert_eq!(t.insert(net(p), 0, path(100)), Change::Added);
        }
        // Host bits past the length are ignored (RFC 4271 §4.3).
        assert_eq!(
            t.insert(net("10.1.2.9/24"), 0, path(100)),
            Change::Unchanged
        );
        assert_eq!(t.insert(net("10.1.2.0/24"), 7, path(200)), Change::Added);
        assert_eq!((t.prefixes(), t.paths()), (4, 5));
        assert_eq!(
            prefixes(t.exact(net("10.1.2.0/24"))),
            ["10.1.2.0/24#0", "10.1.2.0/24#7"]
        );
        assert_eq!(
            prefixes(t.longest(net("10.1.2.3/32"))),
            ["10.1.2.0/24#0", "10.1.2.0/24#7"]
        );
        assert_eq!(prefixes(t.longest(net("10.1.9.3/32"))), ["10.1.0.0/16#0"]);
        assert!(t.longest(net("12.0.0.1/32")).is_empty());
        assert_eq!(
            prefixes(t.more_specific(net("10.0.0.0/8"))),
            [
                "10.0.0.0/8#0",
                "10.1.0.0/16#0",
                "10.1.2.0/24#0",
                "10.1.2.0/24#7"
            ]
        );
        assert_eq!(prefixes(t.more_specific(net("10.1.0.0/16"))).len(), 3);
        assert!(t.covers("11.2.3.4".parse().unwrap()));

        assert!(t.remove(net("10.1.2.0/24"), 0));
        assert!(!t.remove(net("10.1.2.0/24"), 0));
        assert_eq!((t.prefixes(), t.paths()), (4, 4), "path 7 keeps the prefix");
        assert!(t.remove(net("10.1.2.0/24"), 7));
        assert_eq!((t.prefixes(), t.paths()), (3, 3));
        assert_eq!(t.insert(net("11.0.0.0/8"), 0, path(300)), Change::Replaced);
    }

    #[test]
    fn ipv6_and_stale_sweep() {
        let mut t = Table::default();
        t.insert(net("2001:db8::/32"), 0, path(1));
        t.insert(net("2001:db8:1::/48"), 0, path(1));
        assert_eq!(
            prefixes(t.longest(net("2001:db8:1::5/128"))),
            ["2001:db8:1::/48#0"]
        );
        t.mark_stale();
        // Re-announced by the restarted peer: no longer stale.
        assert_eq!(t.insert(net("2001:db8::/32"), 0, path(1)), Change::Replaced);
        assert_eq!(t.sweep_stale(), 1);
        assert_eq!(prefixes(t.iter()), ["2001:db8::/32#0"]);
        assert_eq!(t.prefixes(), 1);
    }
}
