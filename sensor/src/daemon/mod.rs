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
//!
//! The rooms: `flows` (datagrams the daemon decodes, templates kept across
//! restarts), `mitigation` (events to mitigations, saved state), `requests`
//! (the control socket's questions), `metrics` (the daemon's metrics). This
//! file holds the loop and the poll.

mod cluster;
mod flows;
mod metrics;
mod mitigation;
mod networks;
mod requests;

use std::{
    collections::VecDeque,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result};
use aya::maps::{MapData, RingBuf};
use edge_sensor_common::{DstStats, GlobalStats, WatchStats};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};

pub use flows::FlowState;
use flows::TemplateState;
use mitigation::{SaveHealth, StateFile};

use crate::{
    bgp::Speaker,
    config::Config,
    control::{self, Pending},
    counters::Destinations,
    detect::{Attack, Detector},
    fastpath::{FastPath, sockets},
    metrics::Metrics,
    mitigate::{Mitigator, log::EventLog},
    rates::{self, Top},
    telemetry::{UserDecoder, watch},
    xdp::{Sensor, attach::error_chain, loader::LoadError},
};

/// Samples read off the kernel's ring per poll at most (the rest wait).
const MAX_SAMPLES_PER_POLL: usize = 200_000;
/// Destinations in the metrics' top list.
const TOP_DESTINATIONS: usize = 20;

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
    let (mut passed_on, mut datagrams) = if fast.is_userspace() {
        (None, sockets::collector(&ports)?)
    } else {
        let (sockets, rx) = sockets::passed_on(&ports).await;
        (Some(sockets), rx)
    };
    let (control_tx, mut control_rx) = mpsc::channel::<Pending>(64);
    match control::bind(&config.daemon.control_socket) {
        Ok(listener) => {
            tokio::spawn(control::serve(listener, control_tx.clone()));
            tracing::info!(socket = %config.daemon.control_socket.display(), "control socket");
        }
        // The daemon still protects; only the CLI's view of it is missing.
        Err(e) => tracing::error!("{e}: `edge-sensor ban/attacks/status` will not reach it"),
    }
    let metrics = metrics::start(&config, control_tx).await;
    let mut d = Daemon::new(sensor, fast, config, flows, metrics)?;
    let mut cluster_reports = d.take_cluster_reports();

    let mut publish = tokio::time::interval(Duration::from_secs(1));
    let mut poll = tokio::time::interval(d.poll_interval());
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // When to look at the samples between two polls ([`Daemon::between_polls`]).
    let mut early: Option<tokio::time::Instant> = None;
    let signal = loop {
        tokio::select! {
            _ = term.recv() => break "SIGTERM",
            _ = int.recv() => break "SIGINT",
            _ = hup.recv() => {
                let outcome = match reload() {
                    Ok(new) => {
                        let outcome = d.reconfigure(new);
                        if !matches!(outcome, Reload::Refused(_)) {
                            if let Some(sockets) = &mut passed_on {
                                let ports: Vec<_> = d.config.telemetry.ports().collect();
                                sockets.set_ports(&ports).await;
                            }
                            poll = tokio::time::interval(d.poll_interval());
                            poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        }
                        outcome
                    }
                    Err(e) => Reload::Invalid(format!("{e:#}")),
                };
                outcome.log();
                let count = d.last_reload.as_ref().map_or(0, |r| r["count"].as_u64().unwrap_or(0));
                let mut json = outcome.to_json();
                json["count"] = (count + 1).into();
                d.last_reload = Some(json);
            }
            Some(batch) = datagrams.recv() => {
                for (payload, src, port) in batch {
                    d.datagram(&payload, src, port);
                }
                d.sync_plans();
            }
            _ = publish.tick() => d.publish(),
            _ = poll.tick() => {
                d.poll();
                // A victim crossed before the kernel sampled it: decide again
                // once its samples are in (a flood at 1:1000 gives hundreds
                // in this time) rather than a whole interval later.
                early = d
                    .detector
                    .as_ref()
                    .is_some_and(|x| x.samples_awaited())
                    .then(|| tokio::time::Instant::now() + d.poll_interval() / 4);
            }
            _ = tokio::time::sleep_until(early.unwrap_or_else(tokio::time::Instant::now)), if early.is_some() => {
                early = None;
                d.between_polls();
            }
            Some(report) = async {
                match &mut cluster_reports {
                    Some(r) => r.recv().await,
                    None => std::future::pending().await,
                }
            } => d.on_cluster_report(report),
            Some((request, reply)) = control_rx.recv() => {
                let _ = reply.send(d.handle(request));
            }
        }
    };
    d.stop().await;
    Ok(signal)
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
    /// Ended attacks, the latest last (`edge-sensor attacks`).
    recent: VecDeque<Attack>,
    metrics: Option<Metrics>,
    started: Instant,
    watch_errors: u64,
    /// Every destination's counters at the last poll, updated in place
    /// (the detector's input, and the top destinations' rates), and when
    /// they were read.
    destinations: Destinations,
    read_at: Option<Instant>,
    /// When the maps' fill levels and the program's run counts were last
    /// read (counting a large map's keys takes a while: not every poll).
    maps_read: Option<Instant>,
    /// State saves that are failing.
    saves: SaveHealth,
    /// What the last SIGHUP did (`status`).
    last_reload: Option<serde_json::Value>,
    /// The Adj-RIB-In versions `detect.networks_from_bgp` was last
    /// computed from.
    bgp_networks_seen: Option<Vec<Option<u64>>>,
    /// The busiest destinations at the last poll (the web view).
    top: Vec<crate::rates::DstRates>,
    /// `[cluster]`: the node's task and what the mitigator follows.
    cluster: Option<cluster::ClusterLink>,
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
        let mut events = EventLog::open(
            config.mitigation.event_log.as_deref(),
            config.mitigation.notify.as_deref(),
        )
        .with_context(|| format!("event log {:?}", config.mitigation.event_log))?;
        // Mitigations from before a restart go out again at once; in a
        // cluster once the node says whether another sensor holds them.
        let saved = mitigation::saved(&config);
        let cluster = cluster::ClusterLink::start(&config, saved.clone());
        let saved = if cluster.is_some() { Vec::new() } else { saved };
        let mitigator = mitigation::restore(&config, saved, &speaker, &mut events);
        let mut d = Self {
            sensor,
            fast,
            decoder,
            templates,
            synced,
            ring,
            detector,
            speaker,
            mitigator,
            events,
            recent: VecDeque::new(),
            metrics,
            started: Instant::now(),
            watch_errors: 0,
            destinations: Destinations::default(),
            read_at: None,
            maps_read: None,
            saves: SaveHealth::default(),
            last_reload: None,
            bgp_networks_seen: None,
            top: Vec::new(),
            cluster,
            config,
        };
        d.save_mitigations();
        Ok(d)
    }

    fn poll_interval(&self) -> Duration {
        self.config
            .detect
            .as_ref()
            .map_or(Duration::from_secs(1), |d| d.poll_interval)
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

    /// One detection poll: counters and samples in, decisions out.
    fn poll(&mut self) {
        let took = Instant::now();
        let now_unix = unix_now();
        let mut top = None;
        if self.detector.is_some() || self.metrics.is_some() {
            match self.read_destinations() {
                Ok(rates) => top = rates,
                Err(e) => {
                    tracing::error!("reading the counters: {e:#}");
                    if let Some(m) = &self.metrics {
                        m.count_poll_error();
                    }
                    return;
                }
            }
        }
        self.follow_bgp_networks(now_unix);
        let samples = if self.detector.is_some() {
            self.watched_samples()
        } else {
            Vec::new()
        };
        if let Some(detector) = &mut self.detector {
            let events = detector.poll(self.started.elapsed(), &self.destinations, &samples);
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
        self.feed_cluster();
        self.on_quarantine();
        let records = self.mitigator.tick(now_unix, &self.speaker);
        for r in records {
            self.events.record(r);
        }
        self.save_mitigations();
        self.update_metrics(took.elapsed());
        if let Some(top) = top {
            self.top = top.into_sorted();
            if let Some(m) = &self.metrics {
                m.set_top_destinations(&self.top, self.destinations.len());
            }
        }
    }

    /// Between two polls: the samples streamed since the last one, for a
    /// victim the last poll left waiting for them
    /// ([`Detector::samples_awaited`]); counters wait for the next poll.
    fn between_polls(&mut self) {
        let now_unix = unix_now();
        let samples = self.watched_samples();
        let Some(detector) = &mut self.detector else {
            return;
        };
        let events = detector.between_polls(self.started.elapsed(), &samples);
        for ev in &events {
            self.on_event(ev, now_unix);
        }
        if !events.is_empty() {
            self.save_mitigations();
            self.update_state_metrics();
        }
    }

    /// The samples of watched destinations since they were last taken:
    /// the daemon's own decoder's and the kernel's ring's.
    fn watched_samples(&mut self) -> Vec<crate::detect::Sample> {
        let mut samples = self.decoder.take_samples();
        if let Some(ring) = &mut self.ring {
            for s in Sensor::read_watch(ring, MAX_SAMPLES_PER_POLL) {
                match watch::decode(&s, self.decoder.templates()) {
                    Ok(p) => samples.push(p),
                    Err(_) => self.watch_errors += 1,
                }
            }
        }
        samples
    }

    /// A new reading of every destination's counters into the table:
    /// the kernel's (none without the program) plus what the daemon
    /// decoded itself. Returns the top destinations by rate since the last
    /// reading, if there was one.
    fn read_destinations(&mut self) -> Result<Option<Top>> {
        let now = Instant::now();
        let elapsed = self.read_at.map(|t| now - t).filter(|e| !e.is_zero());
        let mut top = Top::new(TOP_DESTINATIONS);
        let mut each = |ip, before: Option<&DstStats>, after: &DstStats| {
            if let Some(elapsed) = elapsed {
                top.offer(rates::of(ip, before, after, elapsed));
            }
        };
        let user = &self.decoder.report.destinations;
        match self.sensor.as_deref().filter(|_| !self.fast.is_userspace()) {
            Some(sensor) => sensor.update_destinations(user, &mut self.destinations, &mut each)?,
            None => {
                let fresh = user.iter().map(|(ip, s)| Ok::<_, LoadError>((*ip, *s)));
                self.destinations.update(fresh, &mut each)?;
            }
        }
        self.read_at = Some(now);
        Ok(elapsed.map(|_| top))
    }

    /// SIGHUP: what can change without dropping sessions or mitigations,
    /// applied at once (the kernel's maps included), or nothing at all when
    /// a key changed that only a restart can apply.
    fn reconfigure(&mut self, new: Config) -> Reload {
        if let Some(key) = restart_only_change(&self.config, &new, self.fast.is_userspace()) {
            return Reload::Refused(key);
        }
        let mut failed = Vec::new();
        let old_ports: Vec<_> = self.config.telemetry.ports().collect();
        let new_ports: Vec<_> = new.telemetry.ports().collect();
        if let Some(sensor) = self.sensor.as_deref_mut() {
            // The kernel counts on the ports in TELEMETRY_PORTS; without
            // this it would keep the old list (the userspace collector
            // refuses port changes above).
            if new_ports != old_ports
                && let Err(e) = sensor.set_ports(&new_ports)
            {
                failed.push(format!("telemetry ports: {}", error_chain(&e)));
            }
            if let Err(e) = sensor.set_exporters(&new.exporters.allow, new.telemetry.pass_telemetry)
            {
                failed.push(format!("exporters.allow: {}", error_chain(&e)));
            }
            if let Err(e) = sensor.set_sampling(&new.exporters.sampling_rules()) {
                failed.push(format!("exporters.sampling: {}", error_chain(&e)));
            }
        }
        self.decoder.set_ports(&new_ports);
        self.decoder.set_sampling(new.exporters.sampling_rules());
        self.decoder.set_allow(&new.exporters.allow);
        self.decoder
            .set_pass_telemetry(new.telemetry.pass_telemetry);
        self.decoder
            .templates_mut()
            .set_limits(new.telemetry.template_limits());
        self.templates
            .set_lifetime(Duration::from_secs(new.telemetry.template_lifetime));
        if new.detect != self.config.detect {
            match new.detect.clone().map(Detector::new).transpose() {
                Ok(mut detector) => {
                    if let (Some(new), Some(old)) = (&mut detector, &self.detector) {
                        new.continue_ids(old);
                    }
                    self.detector = detector;
                    // The network-wide view has the same thresholds.
                    if let (Some(c), Some(d)) = (&mut self.cluster, &new.detect) {
                        c.reconfigure(d.clone());
                    }
                }
                Err(e) => failed.push(format!("detect: {e} (the old detection runs on)")),
            }
        }
        self.mitigator
            .reconfigure(new.mitigation.clone(), mitigation::mitigator_networks(&new));
        // The detector may be new: learn the networks from BGP again.
        self.bgp_networks_seen = None;
        self.config = new;
        if failed.is_empty() {
            Reload::Applied
        } else {
            Reload::Partial(failed)
        }
    }

    /// Stop: save, and withdraw or keep the mitigations.
    async fn stop(mut self) {
        // First out of the cluster: the other sensors announce what this
        // one did before its rules go.
        if let Some(c) = self.cluster.take() {
            c.leave().await;
        }
        let withdraw = self.mitigator.config().withdraw_on_exit;
        if withdraw {
            for r in self.mitigator.withdraw_all(&self.speaker) {
                self.events.record(r);
            }
        }
        self.save_mitigations();
        let saved = self.templates.save(&self.decoder);
        self.saves.record(StateFile::Templates, saved);
        if let Some(speaker) = self.speaker.take() {
            speaker.shutdown(withdraw).await;
        }
    }
}

/// What a SIGHUP did.
#[derive(Debug, Clone, PartialEq)]
enum Reload {
    Applied,
    /// Nothing applied: this key changed, and only a restart applies it.
    Refused(String),
    /// Applied but for these (the kernel refused a map update, ...).
    Partial(Vec<String>),
    /// Nothing applied: the file does not load or validate.
    Invalid(String),
}

impl Reload {
    fn log(&self) {
        match self {
            Self::Applied => tracing::info!("SIGHUP: configuration reloaded"),
            Self::Refused(key) => tracing::error!(
                "SIGHUP: reload refused: `{key}` changed, which only a restart applies; \
                 nothing was changed (restart, or put `{key}` back)"
            ),
            Self::Partial(failed) => tracing::error!(
                "SIGHUP: configuration applied except: {}",
                failed.join("; ")
            ),
            Self::Invalid(e) => {
                tracing::error!("SIGHUP: {e}: keeping the running configuration")
            }
        }
    }

    fn to_json(&self) -> serde_json::Value {
        let (outcome, detail) = match self {
            Self::Applied => ("applied", Vec::new()),
            Self::Refused(key) => ("refused", vec![format!("{key} needs a restart")]),
            Self::Partial(failed) => ("partial", failed.clone()),
            Self::Invalid(e) => ("invalid", vec![e.clone()]),
        };
        serde_json::json!({"at": unix_now(), "outcome": outcome, "detail": detail})
    }
}

/// The first key that changed from `old` to `new` that a running daemon
/// cannot apply: the BGP sessions, the attachment, its own files and
/// endpoints, the event log; the ports, for the userspace collector (its
/// socket threads are fixed at start).
fn restart_only_change(old: &Config, new: &Config, userspace: bool) -> Option<String> {
    let t = (&old.telemetry, &new.telemetry);
    let changes = [
        ("bgp", old.bgp != new.bgp),
        ("cluster", old.cluster != new.cluster),
        ("xdp", old.xdp != new.xdp),
        (
            "daemon.state_dir",
            old.daemon.state_dir != new.daemon.state_dir,
        ),
        (
            "daemon.control_socket",
            old.daemon.control_socket != new.daemon.control_socket,
        ),
        (
            "daemon.metrics_listen",
            old.daemon.metrics_listen != new.daemon.metrics_listen,
        ),
        (
            "mitigation.event_log",
            old.mitigation.event_log != new.mitigation.event_log,
        ),
        (
            "mitigation.notify",
            old.mitigation.notify != new.mitigation.notify,
        ),
        (
            "telemetry.sflow_ports",
            userspace && t.0.sflow_ports != t.1.sflow_ports,
        ),
        (
            "telemetry.ipfix_ports",
            userspace && t.0.ipfix_ports != t.1.ipfix_ports,
        ),
        (
            "telemetry.netflow_ports",
            userspace && t.0.netflow_ports != t.1.netflow_ports,
        ),
    ];
    changes
        .into_iter()
        .find(|(_, changed)| *changed)
        .map(|(key, _)| key.to_string())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_is_refused_naming_the_key_only_a_restart_applies() {
        let old = Config::default();
        let mut new = old.clone();
        new.exporters.allow = vec!["192.0.2.0/24".parse().unwrap()];
        new.telemetry.sflow_ports = vec![16343];
        assert_eq!(
            restart_only_change(&old, &new, false),
            None,
            "live behind XDP"
        );
        assert_eq!(
            restart_only_change(&old, &new, true).as_deref(),
            Some("telemetry.sflow_ports"),
            "the userspace collector's sockets are fixed"
        );
        let mut new = old.clone();
        new.daemon.state_dir = "/elsewhere".into();
        assert_eq!(
            restart_only_change(&old, &new, false).as_deref(),
            Some("daemon.state_dir")
        );
        let mut new = old.clone();
        new.xdp.interfaces = vec!["eth9".into()];
        assert_eq!(
            restart_only_change(&old, &new, false).as_deref(),
            Some("xdp")
        );
    }
}
