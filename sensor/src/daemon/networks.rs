//! Own networks learnt from BGP (`[[detect.networks_from_bgp]]`): the routes
//! a peer sends with the configured community, within `bgp.announce_within`
//! (the ceiling), become own networks of the detector and of the
//! mitigator's safety checks, live as the routes come and go.

use std::collections::BTreeSet;

use ipnet::IpNet;
use serde_json::json;

use super::Daemon;
use crate::bgp::Family;

impl Daemon<'_> {
    /// Follows the peers' routes once a poll (only when a peer's
    /// Adj-RIB-In changed).
    pub(super) fn follow_bgp_networks(&mut self, now_unix: u64) {
        let (Some(detector), Some(speaker)) = (&mut self.detector, &self.speaker) else {
            return;
        };
        let wanted = detector.config().networks_from_bgp.clone();
        if wanted.is_empty() {
            return;
        }
        // Until each peer has sent its whole table the learnt set would be
        // partial: the previous one stays (at start, the mitigations saved
        // before a restart stay announced until then).
        if !wanted
            .iter()
            .all(|n| speaker.table_complete(&n.peer, family_of(&n.family)))
        {
            return;
        }
        let versions: Vec<Option<u64>> = wanted
            .iter()
            .map(|n| speaker.rib_in_version(&n.peer))
            .collect();
        if self.bgp_networks_seen.as_ref() == Some(&versions) {
            return;
        }
        self.bgp_networks_seen = Some(versions);
        let ceiling = &speaker.config().announce_within;
        let (mut learnt, mut outside) = (Vec::new(), BTreeSet::new());
        for n in &wanted {
            match speaker.tagged_prefixes(&n.peer, family_of(&n.family), &n.community) {
                Ok(prefixes) => {
                    for p in prefixes {
                        // Never wider than the ceiling: a prefix is taken
                        // only if it lies inside one of its networks.
                        if ceiling.iter().any(|c| c.contains(&p)) {
                            learnt.push((p, n.host_group.clone()));
                        } else {
                            outside.insert(p);
                        }
                    }
                }
                Err(e) => tracing::warn!("detect.networks_from_bgp: {e}"),
            }
        }
        let before: BTreeSet<IpNet> = detector.own_networks().iter().copied().collect();
        let ended = detector.set_learnt_networks(&learnt);
        let after: BTreeSet<IpNet> = detector.own_networks().iter().copied().collect();
        if before != after || !outside.is_empty() {
            let added: Vec<String> = after.difference(&before).map(|n| n.to_string()).collect();
            let removed: Vec<String> = before.difference(&after).map(|n| n.to_string()).collect();
            let outside: Vec<String> = outside.iter().map(|n| n.to_string()).collect();
            tracing::info!(?added, ?removed, ?outside, "own networks from BGP");
            self.events.record(json!({
                "event": "own_networks_from_bgp",
                "added": added,
                "removed": removed,
                "learnt": learnt.len(),
                "outside_announce_within": outside,
            }));
        }
        let own: Vec<IpNet> = after.into_iter().collect();
        let records = self.mitigator.set_own_networks(own, &self.speaker);
        for r in records {
            self.events.record(r);
        }
        for ev in &ended {
            self.on_event(ev, now_unix);
        }
    }
}

/// The unicast family a validated `networks_from_bgp.family` names.
fn family_of(name: &str) -> Family {
    match name {
        "ipv6-unicast" => Family::Ipv6Unicast,
        _ => Family::Ipv4Unicast,
    }
}
