//! Sending the Adj-RIB-Out: each route read at send time (present:
//! announce, absent: withdraw) as an UPDATE (RFC 4271 §4.3, RFC 8955 for
//! flow specifications).

use std::{collections::BTreeSet, time::Instant};

use crate::bgp::{
    capability::Family,
    message::{Message, Update},
    route::{Route, RouteKey},
    update::{self, SessionParams},
};

use super::{
    Task,
    conn::{Conn, ConnError},
};

impl Task {
    pub(super) async fn send_update(
        &mut self,
        conn: &mut Conn,
        update: Update,
    ) -> Result<(), ConnError> {
        conn.send(&Message::Update(update)).await?;
        self.shared.stats().updates_sent += 1;
        Ok(())
    }

    /// Announces every route of `family` in the Adj-RIB-Out.
    pub(super) async fn send_family(
        &mut self,
        conn: &mut Conn,
        family: Family,
        params: &SessionParams,
        held: &BTreeSet<RouteKey>,
    ) -> Result<(), ConnError> {
        let routes = self.shared.rib().family(family);
        for route in routes.into_iter().filter(|r| !held.contains(&r.key())) {
            self.send_route(conn, &route, params).await?;
        }
        Ok(())
    }

    pub(super) async fn send_route(
        &mut self,
        conn: &mut Conn,
        route: &Route,
        params: &SessionParams,
    ) -> Result<(), ConnError> {
        // Composed and verified again with this session's parameters; a
        // route that fails is never sent (it passed with the assumed ones).
        match update::announce(route, params) {
            Ok(u) => {
                self.send_update(conn, u).await?;
                self.shared.stats().routes_announced += 1;
                let key = route.key();
                self.unproven.retain(|(r, _)| r.key() != key);
                if self.shared.flap().proven.get(&key) != Some(route) {
                    self.unproven.push((route.clone(), Instant::now()));
                }
            }
            Err(e) => self.shared.error(format!("not sending {route}: {e}")),
        }
        Ok(())
    }

    pub(super) async fn send_withdraw(
        &mut self,
        conn: &mut Conn,
        key: &RouteKey,
        params: &SessionParams,
    ) -> Result<(), ConnError> {
        self.unproven.retain(|(r, _)| &r.key() != key);
        self.shared.flap().proven.remove(key);
        self.send_update(conn, update::withdraw_for(key, params))
            .await?;
        self.shared.stats().routes_withdrawn += 1;
        Ok(())
    }
}
