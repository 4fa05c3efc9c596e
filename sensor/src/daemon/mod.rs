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

mod flows;
mod metrics;
mod mitigation;
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
    let metrics = metrics::start(&config).await;
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
        // Mitigations from before a restart go out again at once.
        let mitigator = mitigation::restore(&config, &speaker, &mut events);
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
        if let Some(detector) = &mut self.detector {
            let mut samples = self.decoder.take_samples();
            if let Some(ring) = &mut self.ring {
                for s in Sensor::read_watch(ring, MAX_SAMPLES_PER_POLL) {
                    match watch::decode(&s, self.decoder.templates()) {
                        Ok(p) => samples.push(p),
                        Err(_) => self.watch_errors += 1,
                    }
                }
            }
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
        self.on_quarantine();
        let records = self.mitigator.tick(now_unix, &self.speaker);
        for r in records {
            self.events.record(r);
        }
        self.save_mitigations();
        self.update_metrics(took.elapsed());
        if let (Some(m), Some(top)) = (&self.metrics, top) {
            m.set_top_destinations(&top.into_sorted(), self.destinations.len());
        }
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
            for r in self.mitigator.withdraw_all(&self.speaker) {
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

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
