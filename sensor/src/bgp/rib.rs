//! The Adj-RIB-Out of one peer (RFC 4271 §3.2): the routes we want the
//! router to have. It outlives sessions: on every (re)connect it is sent in
//! full, so a router that restarted gets every active mitigation back.

use std::collections::BTreeMap;

use super::{
    capability::Family,
    route::{Route, RouteKey},
};

#[derive(Debug, Default)]
pub struct AdjRibOut {
    routes: BTreeMap<RouteKey, Route>,
}

/// What [`AdjRibOut::insert`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added,
    Replaced,
    Unchanged,
}

impl AdjRibOut {
    pub fn insert(&mut self, route: Route) -> Change {
        match self.routes.insert(route.key(), route.clone()) {
            None => Change::Added,
            Some(old) if old == route => Change::Unchanged,
            Some(_) => Change::Replaced,
        }
    }

    pub fn remove(&mut self, key: &RouteKey) -> Option<Route> {
        self.routes.remove(key)
    }

    pub fn get(&self, key: &RouteKey) -> Option<&Route> {
        self.routes.get(key)
    }

    pub fn contains(&self, key: &RouteKey) -> bool {
        self.routes.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Routes of a family, in key order.
    pub fn family(&self, family: Family) -> Vec<Route> {
        self.routes
            .iter()
            .filter(|(k, _)| k.family() == family)
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// How many flow spec rules (both families) are held.
    pub fn flowspec_rules(&self) -> usize {
        self.routes
            .keys()
            .filter(|k| matches!(k, RouteKey::FlowSpec { .. }))
            .count()
    }

    pub fn keys(&self) -> Vec<RouteKey> {
        self.routes.keys().cloned().collect()
    }

    pub fn routes(&self) -> impl Iterator<Item = &Route> {
        self.routes.values()
    }
}
