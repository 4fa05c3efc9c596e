//! `edge-sensor run`: load, attach, wait for a signal, detach.

use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
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
    telemetry::{Datagram, UserDecoder},
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
    let mut decoder = UserDecoder::new(&ports, &config.exporters.allow, false);
    let mut flush = tokio::time::interval(Duration::from_secs(1));
    let mut synced = 0;
    loop {
        tokio::select! {
            _ = term.recv() => break Ok("SIGTERM"),
            _ = int.recv() => break Ok("SIGINT"),
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
            }
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
