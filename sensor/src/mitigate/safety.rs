//! The route-level safety rules and limits (see the module doc), checked for
//! every route, automatic or manual.

use std::net::IpAddr;

use ipnet::IpNet;

use super::{Mitigator, PolicyError};
use crate::{
    bgp::Route,
    detect::{Attack, Scope},
};

impl Mitigator {
    /// The single address a blackhole may be for.
    pub(super) fn host(&self, attack: &Attack) -> Result<IpAddr, PolicyError> {
        let v = attack.victim;
        if attack.scope != Scope::Host || v.prefix_len() != v.max_prefix_len() {
            return Err(PolicyError::BlockVictim(v));
        }
        Ok(v.addr())
    }

    /// The route-level safety rules (see the module doc).
    pub(super) fn safe(
        &self,
        route: &Route,
        victim: IpNet,
        counting: bool,
    ) -> Result<(), PolicyError> {
        let inside = |net: &IpNet| {
            self.own_networks
                .iter()
                .any(|own| own.contains(net) || own == net)
        };
        if !inside(&victim) {
            return Err(PolicyError::OutsideOwnNetworks(victim));
        }
        match route {
            Route::Blackhole { prefix } => {
                if !inside(prefix) {
                    return Err(PolicyError::OutsideOwnNetworks(*prefix));
                }
                if prefix.prefix_len() != prefix.max_prefix_len() {
                    return Err(PolicyError::BlackholeNotHost(*prefix));
                }
                if let Some(n) = self
                    .cfg
                    .never_blackhole
                    .iter()
                    .find(|n| n.contains(&prefix.addr()))
                {
                    return Err(PolicyError::NeverBlackhole {
                        prefix: *prefix,
                        listed: *n,
                    });
                }
            }
            Route::FlowSpec { rule, .. } => {
                let Some(dst) = rule.destination() else {
                    return Err(PolicyError::NoDestination);
                };
                let dst = dst.net();
                if !inside(&dst) {
                    return Err(PolicyError::OutsideOwnNetworks(dst));
                }
                let min = match dst {
                    IpNet::V4(_) => self.cfg.min_prefix_v4,
                    IpNet::V6(_) => self.cfg.min_prefix_v6,
                };
                if dst.prefix_len() < min {
                    return Err(PolicyError::TooBroad {
                        destination: dst,
                        min,
                    });
                }
            }
        }
        if counting && self.active.len() >= self.cfg.max_active {
            return Err(PolicyError::MaxActive(self.active.len()));
        }
        Ok(())
    }

    pub(super) fn within_rate(&mut self, now: u64) -> Result<(), PolicyError> {
        while self.recent.front().is_some_and(|&t| t + 60 <= now) {
            self.recent.pop_front();
        }
        if self.recent.len() >= self.cfg.max_new_per_minute {
            return Err(PolicyError::MaxNewPerMinute(self.recent.len()));
        }
        Ok(())
    }
}
