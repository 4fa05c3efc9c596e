//! Telemetry the daemon decodes itself: NetFlow v9 / IPFIX datagrams the
//! kernel passed on (templates, data it has no plan for) or, with the
//! userspace collector, every datagram; the template plans it hands the
//! kernel; and the learnt templates kept on disk across restarts.

use std::{
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, Instant, SystemTime},
};

use super::{Daemon, StateFile};
use crate::{
    config::Config,
    decode::passed_to_daemon,
    state,
    telemetry::{
        Datagram, UserDecoder,
        template::{SavedTemplates, TemplateCache},
    },
    xdp::{Sensor, attach::error_chain},
};

/// The daemon's NetFlow v9 / IPFIX decoder with the templates saved before
/// a restart, their plans already in the kernel: prepared before XDP is
/// attached, so the first data datagram is decoded there.
pub struct FlowState {
    pub(super) decoder: UserDecoder,
    pub(super) templates: TemplateState,
    pub(super) synced: u64,
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
            if let Err(e) = sensor.sync_template_plans(decoder.templates()) {
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

impl Daemon<'_> {
    /// A datagram the kernel passed on to the flow sockets.
    pub(super) fn datagram(&mut self, payload: &[u8], src: SocketAddr, port: u16) {
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
    pub(super) fn sync_plans(&mut self) {
        let generation = self.decoder.templates().generation();
        if generation == self.synced || self.fast.is_userspace() {
            return;
        }
        self.synced = generation;
        if let Some(sensor) = self.sensor.as_deref_mut()
            && let Err(e) = sensor.sync_template_plans(self.decoder.templates())
        {
            tracing::error!("updating the kernel's template plans: {}", error_chain(&e));
        }
    }

    /// Every second: the daemon's counts into the pinned maps, templates
    /// expired and saved.
    pub(super) fn publish(&mut self) {
        if let Some(sensor) = self.sensor.as_deref_mut()
            && let Err(e) = sensor.publish_user(&self.decoder.report)
        {
            tracing::error!("publishing userspace counters: {}", error_chain(&e));
        }
        if let Some(result) = self.templates.tick(&mut self.decoder) {
            self.saves.record(StateFile::Templates, result);
        }
        self.sync_plans();
    }

    /// The template store for `status`: size, limits, evictions.
    pub(super) fn templates_json(&self) -> serde_json::Value {
        let t = self.decoder.templates();
        let l = t.limits();
        let evicted: serde_json::Map<String, serde_json::Value> = t
            .evicted()
            .map(|(ip, n)| (ip.to_string(), n.into()))
            .collect();
        serde_json::json!({
            "count": t.templates().count(),
            "memory_bytes": t.memory_bytes(),
            "limits": {"per_exporter": l.per_exporter, "per_exporter_bytes": l.per_exporter_bytes,
                "total": l.total, "total_bytes": l.total_bytes},
            "templates_evicted": evicted,
        })
    }
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
                let mut cache = TemplateCache::restored(
                    saved,
                    SystemTime::now(),
                    lifetime,
                    config.telemetry.template_limits(),
                );
                cache.set_sampling_rules(config.exporters.sampling_rules());
                restored = cache.templates().count();
                tracing::info!(path = %path.display(), restored, "templates restored");
                *decoder.templates_mut() = cache;
            }
            Ok(None) => decoder
                .templates_mut()
                .set_limits(config.telemetry.template_limits()),
            // A damaged file costs only the wait for the next refresh.
            Err(e) => {
                tracing::warn!("{e}: starting without saved templates");
                decoder
                    .templates_mut()
                    .set_limits(config.telemetry.template_limits());
            }
        }
        Self {
            saved_generation: decoder.templates().generation(),
            path,
            lifetime,
            restored,
            last_save: Instant::now(),
        }
    }

    /// Templates not announced for `lifetime` expire (SIGHUP).
    pub(super) fn set_lifetime(&mut self, lifetime: Duration) {
        self.lifetime = lifetime;
    }

    /// `Some(result)` when a save was tried.
    fn tick(&mut self, decoder: &mut UserDecoder) -> Option<Option<String>> {
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
        ((changed && self.last_save.elapsed() >= Self::SAVE_EVERY) || refresh)
            .then(|| self.save(decoder))
    }

    /// Returns the error if the save failed (`None`: saved, or nothing to save).
    pub(super) fn save(&mut self, decoder: &UserDecoder) -> Option<String> {
        if decoder.templates().generation() == self.saved_generation
            && decoder.templates().templates().next().is_none()
        {
            return None;
        }
        self.last_save = Instant::now();
        let generation = decoder.templates().generation();
        match state::write_json(&self.path, &decoder.templates().saved()) {
            Ok(()) => {
                self.saved_generation = generation;
                None
            }
            Err(e) => Some(e.to_string()),
        }
    }
}
