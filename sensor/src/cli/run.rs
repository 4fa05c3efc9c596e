//! `edge-sensor run`: load, attach (or fall back to the userspace
//! collector), wait for a signal, detach.

use anyhow::{Context, Result, bail};
use aya::programs::xdp::XdpLinkId;

use super::RunArgs;
use crate::{
    config::{AttachMode, Config, Fallback},
    daemon,
    fastpath::{self, FastPath, Unavailable},
    xdp::{self, LoadOptions, Sensor, attach::error_chain},
};

pub fn run(args: RunArgs) -> Result<()> {
    let load = |args: &RunArgs| -> Result<Config> {
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
        if let Some(fallback) = args.fallback {
            config.xdp.fallback = fallback;
        }
        if let Some(pin) = &args.pin_path {
            config.xdp.pin_path = pin.clone();
        }
        if let Some(dir) = &args.state_dir {
            config.daemon.state_dir = dir.clone();
        }
        if let Some(socket) = &args.control_socket {
            config.daemon.control_socket = socket.clone();
        }
        if let Some(listen) = &args.metrics_listen {
            config.daemon.metrics_listen = listen.clone();
        }
        config.validate()?;
        Ok(config)
    };
    let config = load(&args)?;
    // Before the maps or any state file are touched: a second daemon on the
    // same state would rewrite the first one's templates and mitigations.
    let _lock = match crate::state::lock_dir(&config.daemon.state_dir) {
        Ok(lock) => Some(lock),
        Err(e @ crate::state::StateError::Locked { .. }) => return Err(e.into()),
        // An unwritable state directory must not stop the protection; saves
        // will fail, and say so in `status` and the metrics.
        Err(e) => {
            tracing::error!("{e}: running without the state directory lock");
            None
        }
    };
    let forced = config.xdp.mode == AttachMode::Userspace;
    if config.xdp.interfaces.is_empty() && !forced {
        bail!("no interface to attach to: pass --iface or set xdp.interfaces in the config");
    }

    let ports: Vec<_> = config.telemetry.ports().collect();
    if config.exporters.allow.is_empty() {
        tracing::warn!(
            "no exporter allow-list (exporters.allow): telemetry from any source is accepted"
        );
    }
    let opts = LoadOptions {
        pin_dir: Some(config.xdp.pin_path.clone()),
        ports: ports.clone(),
        max_destinations: config.xdp.destinations,
        allow: config.exporters.allow.clone(),
        pass_telemetry: config.telemetry.pass_telemetry,
        sampling: config.exporters.sampling_rules(),
    };

    let started = if forced {
        tracing::warn!("xdp.mode = userspace: no XDP program; {}", fastpath::COST);
        let maps = Sensor::open(&opts)
            .map_err(|e| tracing::warn!("{}", error_chain(&e)))
            .ok();
        Started::userspace(maps, "xdp.mode = userspace".into())
    } else {
        match start_xdp(&config, &opts)? {
            Ok(started) => started,
            Err((maps, why)) => {
                let block = why.block(&config.daemon.state_dir.join("verifier.log"));
                if config.xdp.fallback == Fallback::None {
                    bail!(
                        "{block}\nxdp.fallback = \"none\": not starting (\"userspace\" keeps \
                         protecting on the userspace collector)"
                    );
                }
                tracing::error!("{block}");
                tracing::warn!("{}; {}", fastpath::COST, fastpath::HOW_TO_REFUSE);
                Started::userspace(maps, why.short())
            }
        }
    };
    let Started {
        mut sensor,
        links,
        fast,
        flows,
    } = started;
    let flows = flows.unwrap_or_else(|| daemon::FlowState::prepare(None, &config));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let reload = || load(&args);
    let signal_name = runtime.block_on(daemon::serve(
        sensor.as_mut(),
        fast,
        config.clone(),
        flows,
        reload,
    ))?;
    tracing::info!("{signal_name} received: stopping");
    if let Some(sensor) = &mut sensor {
        detach_all(sensor, links);
    }
    Ok(())
}

/// What runs: the object's maps (and attached program), the links to undo,
/// the decoder behind the program (`None`: the collector's, to prepare).
struct Started {
    sensor: Option<Sensor>,
    links: Vec<(String, XdpLinkId)>,
    fast: FastPath,
    flows: Option<daemon::FlowState>,
}

impl Started {
    /// The userspace collector, with the maps where they could be created
    /// (for `top`, `exporters`, `maps` and the map metrics).
    fn userspace(sensor: Option<Sensor>, reason: String) -> Self {
        if sensor.is_none() {
            tracing::warn!(
                "no pinned maps: `top`, `exporters` and `maps` will not see the userspace \
                 collector's counts; `status`, `attacks` and the metrics will"
            );
        }
        Self {
            sensor,
            links: Vec::new(),
            fast: FastPath::Userspace { reason },
            flows: None,
        }
    }
}

/// Loads and attaches the program. `Ok(Err(..))`: XDP is unavailable here
/// (with the maps, if they were created); `Err`: a configuration mistake.
#[allow(clippy::type_complexity)]
fn start_xdp(
    config: &Config,
    opts: &LoadOptions,
) -> Result<Result<Started, (Option<Sensor>, Unavailable)>> {
    let mut sensor = match Sensor::open(opts) {
        Ok(s) => s,
        Err(e) => {
            let why =
                Unavailable::classify_load(e).map_err(|e| anyhow::anyhow!(error_chain(&e)))?;
            return Ok(Err((None, why)));
        }
    };
    if let Err(e) = sensor.load_program() {
        let why = Unavailable::classify_load(e).map_err(|e| anyhow::anyhow!(error_chain(&e)))?;
        return Ok(Err((Some(sensor), why)));
    }
    tracing::info!(
        pin_path = %config.xdp.pin_path.display(),
        ports = ?opts.ports.iter().map(|(p, k)| format!("{}/{p}", k.name())).collect::<Vec<_>>(),
        "XDP program loaded"
    );
    // Saved templates become plans before the program sees a datagram.
    let flows = daemon::FlowState::prepare(Some(&mut sensor), config);
    let mut links = Vec::new();
    let mut attached = Vec::new();
    for iface in &config.xdp.interfaces {
        match xdp::attach(sensor.program_mut(), iface, config.xdp.mode) {
            Ok((link, mode)) => {
                links.push((iface.clone(), link));
                attached.push((iface.clone(), mode));
            }
            Err(e) => {
                detach_all(&mut sensor, links);
                let why = Unavailable::classify_attach(e)
                    .map_err(|e| anyhow::anyhow!(error_chain(&e)))?;
                return Ok(Err((Some(sensor), why)));
            }
        }
    }
    Ok(Ok(Started {
        sensor: Some(sensor),
        links,
        fast: FastPath::Xdp { attached },
        flows: Some(flows),
    }))
}

fn detach_all(sensor: &mut Sensor, links: Vec<(String, XdpLinkId)>) {
    for (iface, link) in links {
        match sensor.program_mut().detach(link) {
            Ok(()) => tracing::info!(iface, "XDP program detached"),
            Err(e) => tracing::error!(iface, "detaching: {}", error_chain(&e)),
        }
    }
}
