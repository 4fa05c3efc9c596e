//! The RFC 4271 §8 state machine over one connection: OpenSent,
//! OpenConfirm and Established with their hold and keepalive timers
//! (§4.4, §10), messages wrong for the state (§6.6), and how a session
//! ends (NOTIFICATION, Cease with an RFC 9003 shutdown message).

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use tokio::io::AsyncWriteExt;

use crate::bgp::{
    capability::{Capability, Family, Negotiated},
    flap::Reset,
    message::{Message, Notification, Open, RouteRefresh, Update, error_code},
    receive::{self, Approach, Reason, ReceiveContext, UpdateVerdict},
    rib_in::PeerInfo,
    route::RouteKey,
    update::open_my_as,
};

use super::{
    OPEN_HOLD, SessionState, Task,
    conn::{Conn, ConnError, End},
};

impl Task {
    /// A write failed on an established session: a NOTIFICATION the peer
    /// sent before closing may still be readable; otherwise the connection
    /// dropped.
    pub(super) async fn write_failed(&mut self, conn: &mut Conn, e: ConnError) -> End {
        if matches!(e, ConnError::Io(_) | ConnError::Closed)
            && let Ok(Ok(Message::Notification(n))) =
                tokio::time::timeout(Duration::from_millis(300), conn.recv()).await
        {
            return self.unexpected(conn, Ok(Message::Notification(n)), 3).await;
        }
        if matches!(e, ConnError::Io(_) | ConnError::Closed) {
            self.reset = Some(Reset::Dropped(e.to_string()));
        }
        self.shared.error(e.to_string());
        End::Down
    }

    /// One connection from OPEN to its end.
    pub(super) async fn session(&mut self, mut conn: Conn) -> End {
        let shared = self.shared.clone();
        let cfg = &shared.config;
        let our_caps = shared.capabilities();
        let open = Open {
            version: 4,
            my_as: open_my_as(shared.local_asn),
            hold_time: cfg.hold_time,
            bgp_id: shared.router_id,
            capabilities: our_caps.clone(),
        };
        if let Err(e) = conn.send(&Message::Open(open)).await {
            shared.error(e.to_string());
            return End::Down;
        }
        shared.set_state(SessionState::OpenSent);

        // OpenSent: wait for the peer's OPEN.
        let msg = tokio::select! {
            r = tokio::time::timeout(OPEN_HOLD, conn.recv()) => match r {
                Ok(r) => r,
                Err(_) => {
                    return self.fail(&mut conn, Notification::new(error_code::HOLD_TIMER_EXPIRED, 0),
                        "hold timer expired in OpenSent").await;
                }
            },
            _ = self.stop.changed() => return self.cease(&mut conn).await,
        };
        let peer_open = match msg {
            Ok(Message::Open(o)) => o,
            other => return self.unexpected(&mut conn, other, 1).await,
        };
        if let Err(n) = self.check_open(&peer_open) {
            let why = format!("refused the peer's OPEN: {n}");
            return self.fail(&mut conn, n, &why).await;
        }
        let negotiated = Negotiated::from_opens(
            &our_caps,
            &peer_open.capabilities,
            cfg.hold_time,
            peer_open.hold_time,
            peer_open.asn(),
            peer_open.bgp_id,
        );
        if let Err(e) = conn.send(&Message::Keepalive).await {
            shared.error(e.to_string());
            return End::Down;
        }
        shared.set_state(SessionState::OpenConfirm);

        let hold = Duration::from_secs(u64::from(negotiated.hold_time));
        let keepalive_every = hold / 3;
        // OpenConfirm: wait for the KEEPALIVE that confirms the OPEN.
        let wait = if hold.is_zero() { OPEN_HOLD } else { hold };
        let msg = tokio::select! {
            r = tokio::time::timeout(wait, conn.recv()) => match r {
                Ok(r) => r,
                Err(_) => {
                    return self.fail(&mut conn, Notification::new(error_code::HOLD_TIMER_EXPIRED, 0),
                        "hold timer expired in OpenConfirm").await;
                }
            },
            _ = self.stop.changed() => return self.cease(&mut conn).await,
        };
        match msg {
            Ok(Message::Keepalive) => {}
            other => return self.unexpected(&mut conn, other, 2).await,
        }

        // Established.
        {
            let mut s = shared.stats();
            s.enter(SessionState::Established);
            s.established_at = Some(Instant::now());
            s.established_count += 1;
            s.negotiated = Some(negotiated.clone());
            s.afi_safi_disabled.clear();
        }
        let receive_ctx = ReceiveContext {
            four_octet: negotiated.four_octet_as,
            ibgp: cfg.peer_asn == shared.local_asn,
            families: negotiated.families.clone(),
            add_path: negotiated.add_path_receive.clone(),
        };
        let peer_info = PeerInfo {
            ibgp: receive_ctx.ibgp,
            peer_asn: cfg.peer_asn,
            four_octet: negotiated.four_octet_as,
        };
        // The families whose stale routes wait for End-of-RIB: those the
        // peer's graceful restart capability says it kept (F bit, RFC 4724
        // §4.2).
        let keep: Vec<Family> = peer_open
            .capabilities
            .iter()
            .filter(|_| negotiated.graceful_restart)
            .filter_map(|c| match c {
                Capability::GracefulRestart { families, .. } => Some(families),
                _ => None,
            })
            .flatten()
            .filter(|(_, _, fwd)| *fwd)
            .filter_map(|(afi, safi, _)| Family::from_codes(*afi, *safi))
            .collect();
        shared.rib_in().session_up(&keep, Instant::now());
        tracing::info!(peer = %cfg.name, families = ?negotiated.families, hold = negotiated.hold_time,
            "BGP session established");
        let sendable: Vec<Family> = cfg
            .families
            .iter()
            .copied()
            .filter(|f| negotiated.families.contains(f))
            .collect();
        let params = shared.params(negotiated.four_octet_as, &negotiated.add_path_send);
        // Changes queued before now are covered by the full table, and
        // the peer sends its whole table anyway.
        while self.changes.try_recv().is_ok() {}
        while self.refresh.try_recv().is_ok() {}
        // Suspects of an earlier reset are held back and sent one at a time.
        let held: BTreeSet<RouteKey> = shared.flap().suspects.clone();
        if !held.is_empty() {
            tracing::info!(peer = %cfg.name, held = held.len(),
                "holding back the routes suspected of the last reset: sending them one at a time");
        }
        for family in &sendable {
            if let Err(e) = self.send_family(&mut conn, *family, &params, &held).await {
                return self.write_failed(&mut conn, e).await;
            }
        }
        for family in &sendable {
            if let Err(e) = self
                .send_update(&mut conn, Update::end_of_rib(*family))
                .await
            {
                return self.write_failed(&mut conn, e).await;
            }
        }
        let mut probe = tokio::time::interval(Duration::from_millis(500));

        let hold_timer = tokio::time::sleep(if hold.is_zero() {
            Duration::MAX / 4
        } else {
            hold
        });
        tokio::pin!(hold_timer);
        let mut keepalive = tokio::time::interval_at(
            tokio::time::Instant::now() + keepalive_every.max(Duration::from_secs(1)),
            keepalive_every.max(Duration::from_secs(1)),
        );
        loop {
            tokio::select! {
                msg = conn.recv() => {
                    if !hold.is_zero() {
                        hold_timer.as_mut().reset(tokio::time::Instant::now() + hold);
                    }
                    match msg {
                        Ok(Message::Keepalive) => {}
                        Ok(Message::Update(u)) => {
                            let verdict = receive::check(&u, &receive_ctx);
                            if let Some((n, why)) = self.received(&verdict) {
                                return self.fail(&mut conn, n, &why).await;
                            }
                            shared.rib_in().apply(&verdict, peer_info);
                        }
                        // Withdrawn Routes or Total Path Attribute Length
                        // past the message (RFC 4271 §6.3, RFC 7606 §4).
                        Err(ConnError::Protocol(e)) if e.code == error_code::UPDATE_MESSAGE => {
                            {
                                let mut s = shared.stats();
                                s.updates_received += 1;
                                *s.update_errors.entry(Reason::UpdateLengths).or_insert(0) += 1;
                                s.last_update_error = Some(format!("received UPDATE in error: {e}"));
                            }
                            return self.unexpected(&mut conn, Err(ConnError::Protocol(e)), 3).await;
                        }
                        Ok(Message::RouteRefresh(rr)) => {
                            shared.stats().route_refreshes_received += 1;
                            // RFC 2918 §4: re-advertise the family's Adj-RIB-Out.
                            let held = shared.flap().suspects.clone();
                            if let Some(family) = Family::from_codes(rr.afi, rr.safi)
                                && sendable.contains(&family)
                                && let Err(e) = self.send_family(&mut conn, family, &params, &held).await
                            {
                                return self.write_failed(&mut conn, e).await;
                            }
                        }
                        other => return self.unexpected(&mut conn, other, 3).await,
                    }
                }
                _ = keepalive.tick(), if !hold.is_zero() => {
                    if let Err(e) = conn.send(&Message::Keepalive).await {
                        return self.write_failed(&mut conn, e).await;
                    }
                }
                _ = probe.tick() => {
                    self.prove();
                    shared.rib_in().expire(Instant::now());
                    if self.unproven.is_empty()
                        && let Some(route) = self.next_suspect(&sendable)
                    {
                        tracing::info!(peer = %cfg.name, %route, "sending a suspect route on probation");
                        if let Err(e) = self.send_route(&mut conn, &route, &params).await {
                            return self.write_failed(&mut conn, e).await;
                        }
                    }
                }
                () = &mut hold_timer => {
                    return self.fail(&mut conn, Notification::new(error_code::HOLD_TIMER_EXPIRED, 0),
                        "hold timer expired: the peer went silent").await;
                }
                Some(family) = self.refresh.recv() => {
                    // RFC 2918 §3: ask the peer to re-advertise the family.
                    let (afi, safi) = family.codes();
                    let rr = Message::RouteRefresh(RouteRefresh { afi, subtype: 0, safi });
                    if let Err(e) = conn.send(&rr).await {
                        return self.write_failed(&mut conn, e).await;
                    }
                    shared.stats().route_refreshes_sent += 1;
                    tracing::info!(peer = %cfg.name, %family, "ROUTE-REFRESH sent");
                }
                Some(key) = self.changes.recv() => {
                    if !sendable.contains(&key.family()) {
                        continue;
                    }
                    let route = shared.rib().get(&key).cloned();
                    let r = match route {
                        // Held back: sent when its probation turn comes.
                        Some(_) if shared.flap().suspects.contains(&key) => Ok(()),
                        Some(route) => self.send_route(&mut conn, &route, &params).await,
                        None => self.send_withdraw(&mut conn, &key, &params).await,
                    };
                    if let Err(e) = r {
                        return self.write_failed(&mut conn, e).await;
                    }
                }
                _ = self.stop.changed() => {
                    let stop = *self.stop.borrow();
                    let withdraw_all = stop.is_some_and(|s| s.withdraw_all);
                    if withdraw_all {
                        let keys = shared.rib().keys();
                        for key in keys.iter().filter(|k| sendable.contains(&k.family())) {
                            if self.send_withdraw(&mut conn, key, &params).await.is_err() {
                                break;
                            }
                        }
                    } else if negotiated.graceful_restart {
                        // Fail-static: no NOTIFICATION, the router keeps our
                        // routes as stale until we are back (RFC 4724 §4.2).
                        let _ = conn.stream.shutdown().await;
                        return End::Stopped;
                    }
                    return self.cease(&mut conn).await;
                }
            }
        }
    }

    /// RFC 4271 §6.2 checks of the peer's OPEN (version and parameters are
    /// checked while decoding).
    pub(super) fn check_open(&self, open: &Open) -> Result<(), Notification> {
        let cfg = &self.shared.config;
        if open.asn() != cfg.peer_asn {
            let mut n = Notification::new(error_code::OPEN_MESSAGE, 2);
            n.data = open.my_as.to_be_bytes().to_vec();
            return Err(n);
        }
        if open.hold_time == 1 || open.hold_time == 2 {
            return Err(Notification::new(error_code::OPEN_MESSAGE, 6));
        }
        let ibgp = cfg.peer_asn == self.shared.local_asn;
        if open.bgp_id.is_unspecified() || (ibgp && open.bgp_id == self.shared.router_id) {
            return Err(Notification::new(error_code::OPEN_MESSAGE, 3));
        }
        Ok(())
    }

    /// Handles a message that is wrong for the state (`fsm_subcode`: RFC
    /// 6608: 1 OpenSent, 2 OpenConfirm, 3 Established), a NOTIFICATION, or
    /// a connection error.
    pub(super) async fn unexpected(
        &mut self,
        conn: &mut Conn,
        msg: Result<Message, ConnError>,
        fsm_subcode: u8,
    ) -> End {
        match msg {
            Ok(Message::Notification(n)) => {
                if (n.code, n.subcode) == (error_code::OPEN_MESSAGE, 7)
                    && let Ok(refused) = Capability::decode_list(&n.data)
                {
                    tracing::warn!(peer = %self.shared.config.name, ?refused,
                        "the peer does not support these capabilities: leaving them out");
                    self.shared
                        .refused_capabilities
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend(refused);
                }
                let text = n.to_string();
                if fsm_subcode == 3 && n.code == error_code::UPDATE_MESSAGE {
                    self.reset = Some(Reset::UpdateError {
                        text: text.clone(),
                        data: n.data.clone(),
                    });
                }
                self.notified = true;
                tracing::warn!(peer = %self.shared.config.name, "NOTIFICATION received: {text}");
                {
                    let mut s = self.shared.stats();
                    s.last_notification_received = Some(text.clone());
                    s.last_error = Some(format!("peer sent NOTIFICATION {text}"));
                }
                End::Down
            }
            Ok(other) => {
                let why = format!("unexpected message type {} in this state", other.kind());
                self.fail(conn, Notification::new(error_code::FSM, fsm_subcode), &why)
                    .await
            }
            Err(ConnError::Protocol(e)) => {
                let why = e.to_string();
                self.fail(conn, e.notification(), &why).await
            }
            Err(e) => {
                if fsm_subcode == 3 && matches!(e, ConnError::Io(_) | ConnError::Closed) {
                    self.reset = Some(Reset::Dropped(e.to_string()));
                }
                self.shared.error(e.to_string());
                End::Down
            }
        }
    }

    /// Counts a received UPDATE and its errors per reason; records an
    /// AFI/SAFI disable; returns the NOTIFICATION to reset with, if any.
    pub(super) fn received(&self, verdict: &UpdateVerdict) -> Option<(Notification, String)> {
        let peer = &self.shared.config.name;
        let mut s = self.shared.stats();
        s.updates_received += 1;
        for e in verdict.errors() {
            *s.update_errors.entry(e.reason).or_insert(0) += 1;
        }
        let approach = verdict.approach()?;
        let errors: Vec<String> = verdict.errors().iter().map(|e| e.to_string()).collect();
        let text = format!("received UPDATE in error: {}", errors.join("; "));
        s.last_update_error = Some(text.clone());
        match verdict {
            UpdateVerdict::SessionReset { notification, .. } => {
                return Some((notification.clone(), text));
            }
            UpdateVerdict::AfiSafiDisable { afi, safi, .. } => {
                if !s.afi_safi_disabled.contains(&(*afi, *safi)) {
                    s.afi_safi_disabled.push((*afi, *safi));
                }
                tracing::warn!(%peer, afi, safi, "{text}: AFI/SAFI disabled for this session");
            }
            _ if approach == Approach::TreatAsWithdraw => tracing::info!(%peer, "{text}"),
            _ => tracing::debug!(%peer, "{text}"),
        }
        None
    }

    /// Sends `n`, records why, closes.
    pub(super) async fn fail(&mut self, conn: &mut Conn, n: Notification, why: &str) -> End {
        self.notified = true;
        self.shared.error(why.to_string());
        self.shared.stats().last_notification_sent = Some(n.to_string());
        let _ = conn.send(&Message::Notification(n)).await;
        let _ = conn.stream.shutdown().await;
        End::Down
    }

    /// Cease / Administrative Shutdown with our RFC 9003 text, then close.
    pub(super) async fn cease(&mut self, conn: &mut Conn) -> End {
        self.notified = true;
        let n = Notification::shutdown(&self.shared.shutdown_message);
        self.shared.stats().last_notification_sent = Some(n.to_string());
        let _ = conn.send(&Message::Notification(n)).await;
        let _ = conn.stream.shutdown().await;
        End::Stopped
    }
}
