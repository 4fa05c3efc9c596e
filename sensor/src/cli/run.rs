//! `edge-sensor run`: load, attach, wait for a signal, detach.

use anyhow::{Context, Result, bail};

use super::RunArgs;
use crate::{
    config::Config,
    daemon,
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

    // Saved templates become plans before the program sees a datagram.
    let flows = daemon::FlowState::prepare(&mut sensor, &config);
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
    let reload = || load(&args);
    let signal_name =
        runtime.block_on(daemon::serve(&mut sensor, config.clone(), flows, reload))?;
    tracing::info!("{signal_name} received: detaching");
    detach_all(&mut sensor, links);
    Ok(())
}

fn detach_all(sensor: &mut Sensor, links: Vec<(String, aya::programs::xdp::XdpLinkId)>) {
    for (iface, link) in links {
        match sensor.program_mut().detach(link) {
            Ok(()) => tracing::info!(iface, "XDP program detached"),
            Err(e) => tracing::error!(iface, "detaching: {}", error_chain(&e)),
        }
    }
}
