//! Where routes go: the daemon's BGP speaker, or nowhere.

use crate::bgp::{self, Announcement, Dialect, Profile, Route, RouteError, RouteKey};

/// Where routes go: the BGP speaker, or nowhere (no peers, tests).
pub trait Announcer {
    fn announce(&self, route: Route) -> Result<Announcement, RouteError>;
    fn announce_to(&self, peers: &[&str], route: Route) -> Result<Announcement, RouteError>;
    fn withdraw_key(&self, key: &RouteKey) -> usize;
    /// The routers, by name.
    fn peers(&self) -> Vec<String>;
    /// Each router's Flow Spec dialect (default: `generic` for all).
    fn dialects(&self) -> Vec<(String, Dialect)> {
        self.peers()
            .into_iter()
            .map(|p| (p, Dialect::profile(Profile::Generic)))
            .collect()
    }
}

impl Announcer for bgp::Speaker {
    fn peers(&self) -> Vec<String> {
        self.config().peers.iter().map(|p| p.name.clone()).collect()
    }
    fn dialects(&self) -> Vec<(String, Dialect)> {
        self.config()
            .peers
            .iter()
            .map(|p| (p.name.clone(), p.flowspec.dialect()))
            .collect()
    }
    fn announce(&self, route: Route) -> Result<Announcement, RouteError> {
        bgp::Speaker::announce(self, route)
    }
    fn announce_to(&self, peers: &[&str], route: Route) -> Result<Announcement, RouteError> {
        bgp::Speaker::announce_to(self, peers, route)
    }
    fn withdraw_key(&self, key: &RouteKey) -> usize {
        bgp::Speaker::withdraw_key(self, key)
    }
}

/// The daemon's BGP speaker, if configured. Without one (`None`), routes
/// are decided and logged, sent nowhere.
impl Announcer for Option<bgp::Speaker> {
    fn peers(&self) -> Vec<String> {
        self.as_ref().map(Announcer::peers).unwrap_or_default()
    }
    fn dialects(&self) -> Vec<(String, Dialect)> {
        self.as_ref().map(Announcer::dialects).unwrap_or_default()
    }
    fn announce(&self, route: Route) -> Result<Announcement, RouteError> {
        match self {
            Some(speaker) => Announcer::announce(speaker, route),
            None => Ok(Announcement {
                key: route.key(),
                peers: Vec::new(),
            }),
        }
    }
    fn announce_to(&self, peers: &[&str], route: Route) -> Result<Announcement, RouteError> {
        match self {
            Some(speaker) => Announcer::announce_to(speaker, peers, route),
            None => self.announce(route),
        }
    }
    fn withdraw_key(&self, key: &RouteKey) -> usize {
        self.as_ref()
            .map_or(0, |speaker| Announcer::withdraw_key(speaker, key))
    }
}
