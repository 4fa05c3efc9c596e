//! `edge-sensor run`: load, attach, wait for a signal, detach.

use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    path::PathBuf,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result, bail};
use edge_sensor_common::TelemetryKind;
use tokio::{
    net::UdpSocket,
    signal::unix::{SignalKind, signal},
};

use super::RunArgs;
use crate::{
    config::Config,
    decode::passed_to_daemon,
    state,
    telemetry::{
        Datagram, UserDecoder,
        template::{SavedTemplates, TemplateCache},
    },
    xdp::{self, LoadOptions, Sensor, attach::error_chain},
};

pub fn run(args: RunArgs) -> Result<()> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if !args.ifaces.is_empty() {
        config.xdp.interfaces = args.ifaces.clone();
    }
    if let Some(mode) = args.mode {
        config.xdp.mode = mode;
    }
    if let Some(pin) = &args.pin_path {
        config.xdp.pin_path = pin.clone();
    }
    if let Some(dir) = &args.state_dir {
        config.daemon.state_dir = dir.clone();
    }
    config.validate()?;
    if config.xdp.interfaces.is_empty() {
        bail!("no interface to attach to: pass --iface or set xdp.interfaces in the config");
    }

    let ports: Vec<_> = config.telemetry.ports().collect();
    if config.exporters.allow.is_empty() {
        tracing::warn!(
            "no exporter allow-list (exporters.allow): telemetry from any source is accepted"
        );
    }
    let mut sensor = Sensor::load(&LoadOptions {
        pin_dir: Some(config.xdp.pin_path.clone()),
        ports: ports.clone(),
        max_destinations: config.xdp.destinations,
        allow: config.exporters.allow.clone(),
        pass_telemetry: config.telemetry.pass_telemetry,
        sampling: config.exporters.sampling_rules(),
    })
    .map_err(|e| anyhow::anyhow!(error_chain(&e)))?;
    tracing::info!(
        pin_path = %config.xdp.pin_path.display(),
        ports = ?ports.iter().map(|(p, k)| format!("{}/{p}", k.name())).collect::<Vec<_>>(),
        "XDP program loaded"
    );

    let mut links = Vec::new();
    for iface in &config.xdp.interfaces {
        match xdp::attach(sensor.program_mut(), iface, config.xdp.mode) {
            Ok((link, _mode)) => links.push((iface.clone(), link)),
            Err(e) => {
                detach_all(&mut sensor, links);
                return Err(anyhow::anyhow!(error_chain(&e)));
            }
        }
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let signal_name = runtime.block_on(serve(&mut sensor, &config))?;
    tracing::info!("{signal_name} received: detaching");
    detach_all(&mut sensor, links);
    Ok(())
}

/// Until SIGTERM/SIGINT: receive the NetFlow v9 / IPFIX datagrams the
/// kernel passed on (templates, options, data it has no plan for yet),
/// decode them, turn new templates into kernel plans, and publish what was
/// counted here every second. Returns the signal's name.
async fn serve(sensor: &mut Sensor, config: &Config) -> Result<&'static str> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let ports: Vec<_> = config.telemetry.ports().collect();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Vec<u8>, SocketAddr, u16)>(4096);
    for &(port, kind) in ports.iter().filter(|(_, k)| *k != TelemetryKind::Sflow) {
        // Dual-stack where IPv6 exists; IPv4 alone where it is disabled.
        let bound = match UdpSocket::bind((Ipv6Addr::UNSPECIFIED, port)).await {
            Ok(socket) => Ok(socket),
            Err(_) => UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).await,
        };
        match bound {
            Ok(socket) => {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    while let Ok((n, src)) = socket.recv_from(&mut buf).await {
                        if tx.send((buf[..n].to_vec(), src, port)).await.is_err() {
                            break;
                        }
                    }
                });
                tracing::info!(
                    port,
                    "listening for {} datagrams the kernel passes on",
                    kind.name()
                );
            }
            Err(e) => tracing::warn!(
                port,
                "cannot bind UDP port {port} ({e}): NetFlow v9/IPFIX templates arriving there \
                 cannot be learnt, so their data will not be counted"
            ),
        }
    }
    drop(tx);
    let mut decoder = UserDecoder::new(&ports, &config.exporters.allow, false)
        .with_sampling(config.exporters.sampling_rules())
        .behind_kernel();
    let mut templates = TemplateState::load(config, &mut decoder);
    let mut flush = tokio::time::interval(Duration::from_secs(1));
    let mut synced = 0;
    if templates.restored > 0 {
        synced = decoder.templates().generation();
        if let Err(e) = sensor.sync_flow(decoder.templates()) {
            tracing::error!("restoring the kernel's template plans: {}", error_chain(&e));
        }
    }
    let signal = loop {
        tokio::select! {
            _ = term.recv() => break "SIGTERM",
            _ = int.recv() => break "SIGINT",
            Some((payload, src, port)) = rx.recv() => {
                let Some(kind) = ports.iter().find(|(p, _)| *p == port).map(|(_, k)| *k) else {
                    continue;
                };
                let datagram = Datagram {
                    src: src.ip().to_canonical(),
                    src_port: src.port(),
                    port,
                    kind,
                    payload: &payload,
                };
                // Only what the kernel left uncounted; it counted the rest.
                if !passed_to_daemon(&datagram) {
                    continue;
                }
                decoder.datagram(&datagram);
                // New or changed templates and rates become plans; resent
                // identical ones cost nothing.
                let generation = decoder.templates().generation();
                if generation == synced {
                    continue;
                }
                synced = generation;
                if let Err(e) = sensor.sync_flow(decoder.templates()) {
                    tracing::error!("updating the kernel's template plans: {}", error_chain(&e));
                }
            }
            _ = flush.tick() => {
                if let Err(e) = sensor.publish_user(&decoder.report) {
                    tracing::error!("publishing userspace counters: {}", error_chain(&e));
                }
                templates.tick(&mut decoder);
                let generation = decoder.templates().generation();
                if generation != synced {
                    synced = generation;
                    if let Err(e) = sensor.sync_flow(decoder.templates()) {
                        tracing::error!("updating the kernel's template plans: {}", error_chain(&e));
                    }
                }
            }
        }
    };
    if decoder.templates().generation() != templates.saved_generation
        || decoder.templates().templates().next().is_some()
    {
        templates.save(&decoder);
    }
    Ok(signal)
}

/// The learnt templates on disk: restored at start (so the kernel decodes
/// data sets at once instead of after the exporters' next refresh), expired
/// by `telemetry.template_lifetime`, saved when they change (at most every
/// few seconds) and at exit.
struct TemplateState {
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
        self.last_save = Instant::now();
        let generation = decoder.templates().generation();
        match state::write_json(&self.path, &decoder.templates().saved()) {
            Ok(()) => self.saved_generation = generation,
            Err(e) => tracing::error!("saving templates: {e}"),
        }
    }
}

fn detach_all(sensor: &mut Sensor, links: Vec<(String, aya::programs::xdp::XdpLinkId)>) {
    for (iface, link) in links {
        match sensor.program_mut().detach(link) {
            Ok(()) => tracing::info!(iface, "XDP program detached"),
            Err(e) => tracing::error!(iface, "detaching: {}", error_chain(&e)),
        }
    }
}
