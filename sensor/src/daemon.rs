//! `edge-sensor run`'s loop, once the XDP program is attached (or the
//! userspace collector stands in for it: [`FastPath`]).
//!
//! One task owns all state and takes, in turn: NetFlow v9 / IPFIX datagrams
//! the kernel passed on (templates, data it has no plan for; with the
//! userspace collector, every telemetry datagram), the poll tick
//! (counters -> detector -> mitigations -> BGP), the publish tick (the
//! daemon's own counts into the pinned maps), control socket requests,
//! SIGHUP (reload) and SIGTERM/SIGINT (stop). The BGP sessions run in tasks
//! of their own (`bgp::Speaker`), the control socket and the metrics
//! endpoint too; none of them owns a decision.

use std::{
    collections::{BTreeMap, VecDeque},
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result};
use aya::maps::{MapData, RingBuf};
use edge_sensor_common::{Class, DST_STATS, DstStats, GlobalStats, LAYOUT_VERSION, WatchStats};
use serde_json::json;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};

use crate::{
    bgp::Speaker,
    config::Config,
    control::{self, Pending, Request, Response},
    counters::Report,
    decode::passed_to_daemon,
    detect::{Attack, Detector, Event},
    fastpath::{FastPath, sockets},
    metrics::{self, Metrics},
    mitigate::{Announcer, Mitigation, Mitigator, NoPeers, log::EventLog},
    state,
    telemetry::{
        Datagram, UserDecoder,
        template::{SavedTemplates, TemplateCache},
        watch,
    },
    xdp::{Sensor, attach::error_chain},
};

/// Samples read off the kernel's ring per poll at most (the rest wait).
const MAX_SAMPLES_PER_POLL: usize = 200_000;
/// Ended attacks `edge-sensor attacks` shows.
const RECENT_ATTACKS: usize = 100;
/// Destinations in the metrics' top list.
const TOP_DESTINATIONS: usize = 20;

static NO_PEERS: NoPeers = NoPeers;

/// Until SIGTERM/SIGINT; returns the signal's name. `reload` re-reads the
/// configuration for SIGHUP (the file, with the command line's overrides).
/// `sensor` is the object's maps (and program); the userspace collector may
/// run without them (no BPF at all): then only the pinned-map readers of
/// the CLI go without its counts.
pub async fn serve(
    sensor: Option<&mut Sensor>,
    fast: FastPath,
    config: Config,
    flows: FlowState,
    reload: impl Fn() -> Result<Config>,
) -> Result<&'static str> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let ports: Vec<_> = config.telemetry.ports().collect();
    let mut datagrams = if fast.is_userspace() {
        sockets::collector(&ports)?
    } else {
        sockets::passed_on(&ports).await
    };
    let (control_tx, mut control_rx) = mpsc::channel::<Pending>(64);
    match control::bind(&config.daemon.control_socket) {
        Ok(listener) => {
            tokio::spawn(control::serve(listener, control_tx));
            tracing::info!(socket = %config.daemon.control_socket.display(), "control socket");
        }
        // The daemon still protects; only the CLI's view of it is missing.
        Err(e) => tracing::error!("{e}: `edge-sensor ban/attacks/status` will not reach it"),
    }
    let metrics = start_metrics(&config).await;
    let mut d = Daemon::new(sensor, fast, config, flows, metrics)?;

    let mut publish = tokio::time::interval(Duration::from_secs(1));
    let mut poll = tokio::time::interval(d.poll_interval());
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let signal = loop {
        tokio::select! {
            _ = term.recv() => break "SIGTERM",
            _ = int.recv() => break "SIGINT",
            _ = hup.recv() => match reload() {
                Ok(new) => {
                    d.reconfigure(new);
                    poll = tokio::time::interval(d.poll_interval());
                    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                }
                Err(e) => tracing::error!("SIGHUP: {e:#}: keeping the running configuration"),
            },
            Some(batch) = datagrams.recv() => {
                for (payload, src, port) in batch {
                    d.datagram(&payload, src, port);
                }
                d.sync_plans();
            }
            _ = publish.tick() => d.publish(),
            _ = poll.tick() => d.poll(),
            Some((request, reply)) = control_rx.recv() => {
                let _ = reply.send(d.handle(request));
            }
        }
    };
    d.stop().await;
    Ok(signal)
}

async fn start_metrics(config: &Config) -> Option<Metrics> {
    let addr = config.daemon.metrics_addr()?;
    let m = Metrics::for_sensor();
    for (name, kind, help) in [
        (
            "edge_sensor_attacks_active",
            metrics::Kind::Gauge,
            "Attacks in progress.",
        ),
        (
            "edge_sensor_mitigations_active",
            metrics::Kind::Gauge,
            "Active mitigations, by kind.",
        ),
        (
            "edge_sensor_mitigation",
            metrics::Kind::Gauge,
            "One series per active mitigation (value: seconds since it was created).",
        ),
        (
            "edge_sensor_bgp_peer_established",
            metrics::Kind::Gauge,
            "1 while the BGP session to the peer is established.",
        ),
        (
            "edge_sensor_bgp_peer_routes",
            metrics::Kind::Gauge,
            "Routes in the peer's Adj-RIB-Out.",
        ),
        (
            "edge_sensor_bgp_peer_flap_resets",
            metrics::Kind::Gauge,
            "Sessions the peer ended with an UPDATE error NOTIFICATION or a dropped connection.",
        ),
        (
            "edge_sensor_bgp_route_quarantined",
            metrics::Kind::Gauge,
            "One series per route quarantined for a peer, with the router's reason (value: \
             unix time of the quarantine).",
        ),
        (
            "edge_sensor_bgp_update_errors_total",
            metrics::Kind::Counter,
            "Errors in UPDATEs received from the peer, by reason (RFC 7606).",
        ),
        (
            "edge_sensor_watch_samples_total",
            metrics::Kind::Counter,
            "Samples of watched destinations the kernel (or the userspace collector) streamed, \
             and lost.",
        ),
        (
            "edge_sensor_fast_path",
            metrics::Kind::Gauge,
            "The path counting the telemetry: 1 for the one in use (xdp, or userspace: the \
             collector after a fallback or by xdp.mode = userspace), 0 for the other.",
        ),
    ] {
        let _ = m.describe(name, kind, help);
    }
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => {
            tracing::info!(%addr, "metrics on http://{addr}/metrics");
            tokio::spawn(metrics::http::serve(listener, m.clone()));
            Some(m)
        }
        Err(e) => {
            tracing::error!("metrics endpoint {addr}: {e}");
            None
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The daemon's NetFlow v9 / IPFIX decoder with the templates saved before
/// a restart, their plans already in the kernel: prepared before XDP is
/// attached, so the first data datagram is decoded there.
pub struct FlowState {
    decoder: UserDecoder,
    templates: TemplateState,
    synced: u64,
}

impl FlowState {
    /// Behind the XDP program `kernel` (its plans restored), or, with
    /// `None`, as the userspace collector's decoder, which sees everything
    /// (and so checks every sequence number itself).
    pub fn prepare(kernel: Option<&mut Sensor>, config: &Config) -> Self {
        let ports: Vec<_> = config.telemetry.ports().collect();
        let mut decoder = UserDecoder::new(&ports, &config.exporters.allow, false)
            .with_sampling(config.exporters.sampling_rules());
        if kernel.is_some() {
            decoder = decoder.behind_kernel();
        }
        let templates = TemplateState::load(config, &mut decoder);
        let mut synced = 0;
        if let Some(sensor) = kernel
            && templates.restored > 0
        {
            synced = decoder.templates().generation();
            if let Err(e) = sensor.sync_flow(decoder.templates()) {
                tracing::error!("restoring the kernel's template plans: {}", error_chain(&e));
            }
        }
        Self {
            decoder,
            templates,
            synced,
        }
    }
}

/// Everything the loop owns.
struct Daemon<'s> {
    sensor: Option<&'s mut Sensor>,
    fast: FastPath,
    config: Config,
    decoder: UserDecoder,
    templates: TemplateState,
    synced: u64,
    ring: Option<RingBuf<MapData>>,
    detector: Option<Detector>,
    speaker: Option<Speaker>,
    mitigator: Mitigator,
    events: EventLog,
    recent: VecDeque<Attack>,
    metrics: Option<Metrics>,
    started: Instant,
    watch_errors: u64,
    /// The last poll's counters, for the top destinations' rates.
    last: Option<(Instant, BTreeMap<IpAddr, DstStats>)>,
    /// When the maps' fill levels and the program's run counts were last
    /// read (counting a large map's keys takes a while: not every poll).
    maps_read: Option<Instant>,
}

impl<'s> Daemon<'s> {
    fn new(
        mut sensor: Option<&'s mut Sensor>,
        fast: FastPath,
        config: Config,
        flows: FlowState,
        metrics: Option<Metrics>,
    ) -> Result<Self> {
        let FlowState {
            decoder,
            templates,
            synced,
        } = flows;
        // The userspace collector streams its own samples (the decoder's).
        let ring = match sensor.as_deref_mut() {
            Some(sensor) if !fast.is_userspace() => match sensor.take_watch_ring() {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::error!(
                        "watch ring: {}: fingerprints from counters only",
                        error_chain(&e)
                    );
                    None
                }
            },
            _ => None,
        };
        let detector = match &config.detect {
            Some(c) => Some(Detector::new(c.clone()).context("detect")?),
            None => {
                tracing::warn!("no [detect] section: counting only, no detection or mitigation");
                None
            }
        };
        let speaker = match &config.bgp {
            Some(b) => {
                let mut s = Speaker::start(b.clone()).context("bgp")?;
                match s.load_quarantine(&config.daemon.state_dir) {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!("BGP: {n} quarantined routes kept from before"),
                    Err(e) => tracing::error!("BGP quarantine: {e}: starting without it"),
                }
                Some(s)
            }
            None => {
                if detector.is_some() {
                    tracing::warn!("no [bgp] section: mitigations are decided and logged only");
                }
                None
            }
        };
        let own = config
            .detect
            .as_ref()
            .map(|d| d.own_networks.clone())
            .unwrap_or_default();
        let mut mitigator = Mitigator::new(config.mitigation.clone(), own);
        let events = EventLog::open(
            config.mitigation.event_log.as_deref(),
            config.mitigation.notify.as_deref(),
        )
        .with_context(|| format!("event log {:?}", config.mitigation.event_log))?;
        let mut d = Self {
            sensor,
            fast,
            decoder,
            templates,
            synced,
            ring,
            detector,
            speaker,
            mitigator: Mitigator::new(config.mitigation.clone(), Vec::new()),
            events,
            recent: VecDeque::new(),
            metrics,
            started: Instant::now(),
            watch_errors: 0,
            last: None,
            maps_read: None,
            config,
        };
        // Mitigations from before a restart go out again at once.
        let path = mitigations_file(&d.config.daemon.state_dir);
        match state::read_json::<Vec<Mitigation>>(&path) {
            Ok(Some(saved)) if !saved.is_empty() => {
                let records = mitigator.restore(saved, unix_now(), d.announcer_of());
                for r in records {
                    d.events.record(r);
                }
            }
            Ok(_) => {}
            Err(e) => tracing::error!("{e}: starting without the saved mitigations"),
        }
        d.mitigator = mitigator;
        d.save_mitigations();
        Ok(d)
    }

    fn announcer_of(&self) -> &dyn Announcer {
        match &self.speaker {
            Some(s) => s,
            None => &NO_PEERS,
        }
    }

    fn poll_interval(&self) -> Duration {
        self.config
            .detect
            .as_ref()
            .map_or(Duration::from_secs(1), |d| d.poll_interval)
    }

    /// A datagram the kernel passed on to the flow sockets.
    fn datagram(&mut self, payload: &[u8], src: SocketAddr, port: u16) {
        let Some(kind) = self
            .config
            .telemetry
            .ports()
            .find(|(p, _)| *p == port)
            .map(|(_, k)| k)
        else {
            return;
        };
        let datagram = Datagram {
            src: src.ip().to_canonical(),
            src_port: src.port(),
            port,
            kind,
            payload,
        };
        // Behind XDP, only what the kernel left uncounted; it counted the rest.
        if !self.fast.is_userspace() && !passed_to_daemon(&datagram) {
            return;
        }
        self.decoder.datagram(&datagram);
    }

    /// New or changed templates and rates become kernel plans; resent
    /// identical ones cost nothing. (No program, no plans.)
    fn sync_plans(&mut self) {
        let generation = self.decoder.templates().generation();
        if generation == self.synced || self.fast.is_userspace() {
            return;
        }
        self.synced = generation;
        if let Some(sensor) = self.sensor.as_deref_mut()
            && let Err(e) = sensor.sync_flow(self.decoder.templates())
        {
            tracing::error!("updating the kernel's template plans: {}", error_chain(&e));
        }
    }

    /// The datagram totals: the kernel's, or the collector's own.
    fn global(&self) -> Option<GlobalStats> {
        if self.fast.is_userspace() {
            return Some(self.decoder.global);
        }
        self.sensor.as_deref()?.global_stats().ok()
    }

    /// Samples of watched destinations streamed and lost.
    fn watch_stats(&self) -> Option<WatchStats> {
        if self.fast.is_userspace() {
            return Some(self.decoder.watch_stats());
        }
        self.sensor.as_deref()?.watch_stats().ok()
    }

    /// Every second: the daemon's counts into the pinned maps, templates
    /// expired and saved.
    fn publish(&mut self) {
        if let Some(sensor) = self.sensor.as_deref_mut()
            && let Err(e) = sensor.publish_user(&self.decoder.report)
        {
            tracing::error!("publishing userspace counters: {}", error_chain(&e));
        }
        self.templates.tick(&mut self.decoder);
        self.sync_plans();
    }

    /// One detection poll: counters and samples in, decisions out.
    fn poll(&mut self) {
        let took = Instant::now();
        let now_unix = unix_now();
        let counters = if self.detector.is_some() || self.metrics.is_some() {
            let kernel = self.sensor.as_deref().filter(|_| !self.fast.is_userspace());
            match read_destinations(kernel, &self.decoder.report) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::error!("reading the counters: {e:#}");
                    if let Some(m) = &self.metrics {
                        m.count_poll_error();
                    }
                    return;
                }
            }
        } else {
            None
        };
        if let (Some(detector), Some(counters)) = (&mut self.detector, &counters) {
            let mut samples = self.decoder.take_samples();
            if let Some(ring) = &mut self.ring {
                for s in Sensor::read_watch(ring, MAX_SAMPLES_PER_POLL) {
                    match watch::decode(&s, self.decoder.templates()) {
                        Ok(p) => samples.push(p),
                        Err(_) => self.watch_errors += 1,
                    }
                }
            }
            let events = detector.poll(self.started.elapsed(), counters, &samples);
            if self.fast.is_userspace() {
                self.decoder.set_watched(detector.watched());
            } else if let Some(sensor) = self.sensor.as_deref_mut()
                && let Err(e) = sensor.set_watched(detector.watched())
            {
                tracing::error!("updating the watched destinations: {}", error_chain(&e));
            }
            for ev in &events {
                self.on_event(ev, now_unix);
            }
        }
        self.on_quarantine();
        let records = {
            let a: &dyn Announcer = match &self.speaker {
                Some(s) => s,
                None => &NO_PEERS,
            };
            self.mitigator.tick(now_unix, a)
        };
        for r in records {
            self.events.record(r);
        }
        self.save_mitigations();
        self.update_metrics(took.elapsed());
        if let (Some(m), Some(now)) = (&self.metrics, counters) {
            if let Some((then, before)) = &self.last {
                let mut top = crate::rates::between(before, &now, then.elapsed());
                top.sort_by(|a, b| b.pps(Class::All).total_cmp(&a.pps(Class::All)));
                top.truncate(TOP_DESTINATIONS);
                m.set_top_destinations(&top, now.len());
            }
            self.last = Some((Instant::now(), now));
        }
    }

    fn on_event(&mut self, ev: &Event, now_unix: u64) {
        let name = match ev {
            Event::AttackStarted(_) => "attack_started",
            Event::AttackUpdated(_) => "attack_updated",
            Event::AttackEnded(_) => "attack_ended",
        };
        self.events
            .record(json!({"event": name, "attack": ev.attack()}));
        if let Event::AttackEnded(a) = ev {
            if self.recent.len() == RECENT_ATTACKS {
                self.recent.pop_front();
            }
            self.recent.push_back(a.clone());
        }
        let a: &dyn Announcer = match &self.speaker {
            Some(s) => s,
            None => &NO_PEERS,
        };
        for r in self.mitigator.on_event(ev, now_unix, a) {
            self.events.record(r);
        }
    }

    /// Routes the speaker quarantined: their mitigations fall back; the
    /// quarantine is saved.
    fn on_quarantine(&mut self) {
        let Some(s) = &self.speaker else { return };
        for ev in s.quarantine_events() {
            for r in self
                .mitigator
                .on_quarantine(&ev.peer, &ev.route, &ev.reason, s)
            {
                self.events.record(r);
            }
        }
        if let Err(e) = s.save_quarantine() {
            tracing::error!("saving the BGP quarantine: {e}");
        }
    }

    fn save_mitigations(&mut self) {
        if let Some(active) = self.mitigator.take_changed() {
            let path = mitigations_file(&self.config.daemon.state_dir);
            if let Err(e) = state::write_json(&path, &active) {
                tracing::error!("saving the active mitigations: {e}");
            }
        }
    }

    fn update_metrics(&mut self, took: Duration) {
        let Some(m) = &self.metrics else { return };
        m.set_poll(took, unix_now() as f64);
        for mode in ["xdp", "userspace"] {
            let on = self.fast.mode() == mode;
            m.set(
                "edge_sensor_fast_path",
                &[("mode", mode)],
                if on { 1.0 } else { 0.0 },
            );
        }
        if self.sensor.is_some()
            && self
                .maps_read
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            self.maps_read = Some(Instant::now());
            match crate::xdp::inspect::list(&self.config.xdp.pin_path) {
                Ok(maps) => {
                    m.set_maps(&maps);
                    if let Some(id) = maps.iter().find(|x| x.name == DST_STATS).map(|x| x.id) {
                        let (programs, runs, time) = metrics::pinned::programs_using(id);
                        m.set_programs(programs, runs, time, metrics::pinned::bpf_stats_enabled());
                    }
                }
                Err(e) => tracing::warn!("metrics: reading the pinned maps: {e}"),
            }
        }
        if let Some(g) = self.global() {
            m.set_global(&g);
        }
        let kernel = match self.sensor.as_deref() {
            Some(sensor) if !self.fast.is_userspace() => Some(sensor.exporters_report()),
            _ => None,
        };
        match kernel {
            Some(Ok(mut report)) => {
                report.merge(&self.decoder.report);
                m.set_exporters(&report);
            }
            Some(Err(_)) => {}
            None => m.set_exporters(&self.decoder.report),
        }
        let attacks = self.detector.as_ref().map_or(0, |d| d.attacks().len());
        m.set("edge_sensor_attacks_active", &[], attacks as f64);
        let mut kinds: BTreeMap<&str, f64> =
            BTreeMap::from([("flowspec", 0.0), ("blackhole", 0.0)]);
        for mi in self.mitigator.active() {
            let k = match mi.kind {
                crate::mitigate::Kind::Flowspec => "flowspec",
                crate::mitigate::Kind::Blackhole => "blackhole",
            };
            *kinds.entry(k).or_default() += 1.0;
        }
        for (k, v) in kinds {
            m.set("edge_sensor_mitigations_active", &[("kind", k)], v);
        }
        let now = unix_now();
        m.replace(
            "edge_sensor_mitigation",
            self.mitigator.active().map(|mi| {
                (
                    vec![
                        ("id", mi.id.to_string()),
                        ("victim", mi.victim.to_string()),
                        ("kind", format!("{:?}", mi.kind).to_lowercase()),
                        ("manual", mi.manual.to_string()),
                    ],
                    now.saturating_sub(mi.created) as f64,
                )
            }),
        );
        if let Some(s) = &self.speaker {
            for p in s.status() {
                let up = matches!(p.state, crate::bgp::SessionState::Established);
                m.set(
                    "edge_sensor_bgp_peer_established",
                    &[("peer", &p.name)],
                    if up { 1.0 } else { 0.0 },
                );
                m.set(
                    "edge_sensor_bgp_peer_routes",
                    &[("peer", &p.name)],
                    p.adj_rib_out as f64,
                );
                m.set(
                    "edge_sensor_bgp_peer_flap_resets",
                    &[("peer", &p.name)],
                    p.flap.resets as f64,
                );
                for (reason, n) in &p.update_errors {
                    m.set(
                        "edge_sensor_bgp_update_errors_total",
                        &[("peer", &p.name), ("reason", reason.name())],
                        *n as f64,
                    );
                }
            }
            let quarantined = s.quarantine().into_iter().flat_map(|(peer, list)| {
                list.into_iter().map(move |q| {
                    (
                        vec![
                            ("peer", peer.clone()),
                            ("route", q.route.to_string()),
                            ("reason", q.reason),
                        ],
                        q.since as f64,
                    )
                })
            });
            m.replace("edge_sensor_bgp_route_quarantined", quarantined);
        }
        if let Some(w) = self.watch_stats() {
            m.set(
                "edge_sensor_watch_samples_total",
                &[("what", "streamed")],
                w.streamed as f64,
            );
            m.set(
                "edge_sensor_watch_samples_total",
                &[("what", "lost")],
                w.lost as f64,
            );
        }
    }

    /// A control socket request.
    fn handle(&mut self, request: Request) -> Response {
        let ok = |body| Response::Ok { body };
        let err = |message: String| Response::Error { message };
        match request {
            Request::Status => ok(self.status()),
            Request::Attacks => {
                let current = self
                    .detector
                    .as_ref()
                    .map(Detector::attacks)
                    .unwrap_or_default();
                ok(
                    json!({"detection": self.detector.is_some(), "current": current,
                    "recent": self.recent.iter().rev().collect::<Vec<_>>()}),
                )
            }
            Request::Mitigations => ok(json!({
                "dry_run": self.mitigator.config().dry_run,
                "mitigations": self.mitigator.active().collect::<Vec<_>>(),
            })),
            Request::Bgp => ok(json!({
                "configured": self.speaker.is_some(),
                "peers": self.speaker.as_ref().map(Speaker::status).unwrap_or_default(),
            })),
            Request::BgpQuarantine => ok(json!({
                "configured": self.speaker.is_some(),
                "quarantine": self.speaker.as_ref().map(Speaker::quarantine).unwrap_or_default(),
            })),
            Request::ClearQuarantine { peer } => {
                let Some(s) = &self.speaker else {
                    return err("no BGP peers configured".into());
                };
                match s.clear_quarantine(&peer) {
                    Ok(cleared) => {
                        self.events.record(json!({"event": "quarantine_cleared",
                            "peer": peer, "routes": cleared}));
                        if let Err(e) = s.save_quarantine() {
                            tracing::error!("saving the BGP quarantine: {e}");
                        }
                        ok(json!({"peer": peer, "cleared": cleared}))
                    }
                    Err(e) => err(e.to_string()),
                }
            }
            Request::Ban {
                ip,
                flowspec,
                blackhole,
                duration_secs,
            } => {
                let Ok(ip) = ip.parse::<IpAddr>() else {
                    return err(format!("`{ip}` is not an address"));
                };
                let a: &dyn Announcer = match &self.speaker {
                    Some(s) => s,
                    None => &NO_PEERS,
                };
                let result = self.mitigator.ban(
                    ip,
                    flowspec.as_deref(),
                    blackhole,
                    duration_secs,
                    unix_now(),
                    a,
                );
                let response = match result {
                    Ok(m) => {
                        self.events
                            .record(json!({"event": "mitigation_announced", "mitigation": m}));
                        ok(json!({"mitigation": m}))
                    }
                    Err(e) => {
                        self.events.record(json!({"event": "mitigation_refused",
                            "victim": ip, "reason": e, "manual": true}));
                        err(e)
                    }
                };
                self.save_mitigations();
                response
            }
            Request::Unban { target } => {
                let a: &dyn Announcer = match &self.speaker {
                    Some(s) => s,
                    None => &NO_PEERS,
                };
                let response = match self.mitigator.unban(&target, a) {
                    Ok(records) => {
                        let body = json!({"withdrawn": records.len()});
                        for r in records {
                            self.events.record(r);
                        }
                        ok(body)
                    }
                    Err(e) => err(e),
                };
                self.save_mitigations();
                response
            }
        }
    }

    fn status(&self) -> serde_json::Value {
        let global = self.global();
        let peers: Vec<_> = self
            .speaker
            .as_ref()
            .map(|s| {
                s.status()
                    .into_iter()
                    .map(|p| {
                        json!({"name": p.name, "address": p.address, "state": p.state,
                        "uptime_secs": p.uptime_secs, "routes": p.adj_rib_out})
                    })
                    .collect()
            })
            .unwrap_or_default();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "layout_version": LAYOUT_VERSION,
            "pid": std::process::id(),
            "uptime_secs": self.started.elapsed().as_secs(),
            "pin_path": self.config.xdp.pin_path,
            "interfaces": self.config.xdp.interfaces,
            "fast_path": self.fast.to_json(),
            "telemetry": global.map(|g| json!({
                "datagrams": g.telemetry_datagrams, "rejected": g.rejected_datagrams,
                "consumed": g.consumed_datagrams, "passed": g.passed_datagrams})),
            "detection": self.detector.as_ref().map(|d| json!({
                "attacks": d.attacks().len(), "watched": d.watched().len(), "stats": d.stats()})),
            "mitigations": {
                "active": self.mitigator.active().count(),
                "dry_run": self.mitigator.config().dry_run,
            },
            "bgp": peers,
            "watch_decode_errors": self.watch_errors,
        })
    }

    /// SIGHUP: what can change without dropping sessions or mitigations.
    fn reconfigure(&mut self, new: Config) {
        if let Some(sensor) = self.sensor.as_deref_mut()
            && let Err(e) = sensor
                .set_exporters(&new.exporters.allow, new.telemetry.pass_telemetry)
                .and_then(|()| sensor.set_sampling(&new.exporters.sampling_rules()))
        {
            tracing::error!("SIGHUP: exporter settings: {}", error_chain(&e));
        }
        self.decoder.set_sampling(new.exporters.sampling_rules());
        self.decoder.set_allow(&new.exporters.allow);
        if new.detect != self.config.detect {
            match new.detect.clone().map(Detector::new).transpose() {
                Ok(detector) => {
                    tracing::info!("SIGHUP: detection restarted with the new thresholds");
                    self.detector = detector;
                }
                Err(e) => tracing::error!("SIGHUP: detect: {e}: keeping the old detection"),
            }
        }
        let own = new
            .detect
            .as_ref()
            .map(|d| d.own_networks.clone())
            .unwrap_or_default();
        self.mitigator.reconfigure(new.mitigation.clone(), own);
        if new.bgp != self.config.bgp {
            tracing::warn!("SIGHUP: [bgp] changes take effect at the next restart");
        }
        if new.xdp != self.config.xdp {
            tracing::warn!(
                "SIGHUP: [xdp] changes (interfaces, mode, fallback, ...) take effect at the next \
                 restart"
            );
        }
        let keep_bgp = self.config.bgp.clone();
        let keep_xdp = self.config.xdp.clone();
        self.config = new;
        self.config.bgp = keep_bgp;
        self.config.xdp = keep_xdp;
        tracing::info!("SIGHUP: configuration reloaded");
    }

    /// Stop: save, and withdraw or keep the mitigations.
    async fn stop(mut self) {
        let withdraw = self.mitigator.config().withdraw_on_exit;
        if withdraw {
            let a: &dyn Announcer = match &self.speaker {
                Some(s) => s,
                None => &NO_PEERS,
            };
            for r in self.mitigator.withdraw_all(a) {
                self.events.record(r);
            }
        }
        self.save_mitigations();
        self.templates.save(&self.decoder);
        if let Some(speaker) = self.speaker.take() {
            speaker.shutdown(withdraw).await;
        }
    }
}

fn mitigations_file(dir: &Path) -> PathBuf {
    dir.join("mitigations.json")
}

/// Kernel counters (none without the program) plus what the daemon
/// decoded itself.
fn read_destinations(kernel: Option<&Sensor>, user: &Report) -> Result<BTreeMap<IpAddr, DstStats>> {
    let mut all = match kernel {
        Some(sensor) => sensor.destinations()?,
        None => BTreeMap::new(),
    };
    for (ip, s) in &user.destinations {
        all.entry(*ip).or_default().accumulate(s);
    }
    Ok(all)
}

/// The learnt templates on disk: restored at start (so the kernel decodes
/// data sets at once instead of after the exporters' next refresh), expired
/// by `telemetry.template_lifetime`, saved when they change (at most every
/// few seconds), refreshed every minute and at exit.
pub(crate) struct TemplateState {
    path: PathBuf,
    lifetime: Duration,
    restored: usize,
    saved_generation: u64,
    last_save: Instant,
}

impl TemplateState {
    const SAVE_EVERY: Duration = Duration::from_secs(5);
    const REFRESH_EVERY: Duration = Duration::from_secs(60);

    fn load(config: &Config, decoder: &mut UserDecoder) -> Self {
        let path = state::templates_file(&config.daemon.state_dir);
        let lifetime = Duration::from_secs(config.telemetry.template_lifetime);
        let mut restored = 0;
        match state::read_json::<SavedTemplates>(&path) {
            Ok(Some(saved)) => {
                let mut cache = TemplateCache::restored(saved, SystemTime::now(), lifetime);
                cache.set_sampling_rules(config.exporters.sampling_rules());
                restored = cache.templates().count();
                tracing::info!(path = %path.display(), restored, "templates restored");
                *decoder.templates_mut() = cache;
            }
            Ok(None) => {}
            // A damaged file costs only the wait for the next refresh.
            Err(e) => tracing::warn!("{e}: starting without saved templates"),
        }
        Self {
            saved_generation: decoder.templates().generation(),
            path,
            lifetime,
            restored,
            last_save: Instant::now(),
        }
    }

    fn tick(&mut self, decoder: &mut UserDecoder) {
        let expired = decoder
            .templates_mut()
            .expire(SystemTime::now(), self.lifetime);
        if expired > 0 {
            tracing::info!(
                expired,
                "templates expired (not refreshed within the lifetime)"
            );
        }
        let changed = decoder.templates().generation() != self.saved_generation;
        // Refreshes move only the last-seen times; they are saved less often.
        let refresh = decoder.templates().templates().next().is_some()
            && self.last_save.elapsed() >= Self::REFRESH_EVERY;
        if (changed && self.last_save.elapsed() >= Self::SAVE_EVERY) || refresh {
            self.save(decoder);
        }
    }

    fn save(&mut self, decoder: &UserDecoder) {
        if decoder.templates().generation() == self.saved_generation
            && decoder.templates().templates().next().is_none()
        {
            return;
        }
        self.last_save = Instant::now();
        let generation = decoder.templates().generation();
        match state::write_json(&self.path, &decoder.templates().saved()) {
            Ok(()) => self.saved_generation = generation,
            Err(e) => tracing::error!("saving templates: {e}"),
        }
    }
}
