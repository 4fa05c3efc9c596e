//! Routes on probation (see [`crate::bgp::flap`]): a session reset soon
//! after our UPDATEs is blamed on the routes not yet proven, which are
//! then sent one at a time.

use std::time::{Duration, Instant};

use crate::bgp::{capability::Family, flap, message::Message, route::Route, update};

use super::Task;

impl Task {
    pub(super) fn probation(&self) -> Duration {
        Duration::from_secs(self.shared.config.probation)
    }

    /// After a session ended: a reset soon after our UPDATEs is blamed on
    /// the unproven routes (see [`crate::bgp::flap`]).
    pub(super) fn blame(&mut self) {
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
        let (four_octet, add_path) = {
            let s = self.shared.stats();
            let n = s.negotiated.as_ref();
            (
                n.is_none_or(|n| n.four_octet_as),
                n.map(|n| n.add_path_send.clone()).unwrap_or_default(),
            )
        };
        let params = self.shared.params(four_octet, &add_path);
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
    pub(super) fn prove(&mut self) {
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
    pub(super) fn next_suspect(&self, sendable: &[Family]) -> Option<Route> {
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
}
