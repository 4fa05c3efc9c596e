//! `edge-sensor collect --user`: the userspace path, for comparison with the
//! kernel's. UDP sockets read with `recvmmsg` in batches feed the userspace
//! userspace decoder (which counts exactly what the XDP program counts); on
//! SIGINT/SIGTERM (and on SIGUSR1, without stopping) the report is written:
//! per destination totals, datagrams, the CPU time the process used.

use std::{
    net::{Ipv4Addr, Ipv6Addr, UdpSocket},
    path::Path,
    str::FromStr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use edge_sensor_common::TelemetryKind;
use serde_json::json;
use tokio::signal::unix::{SignalKind, signal};

use super::{
    CollectArgs,
    rows::{ExporterRow, report_json},
};
use crate::{
    config::Config,
    counters::Report,
    recv::BatchReceiver,
    state,
    telemetry::{Datagram, UserDecoder},
};

/// How long a read waits before the thread looks for a stop request.
const READ_TIMEOUT: Duration = Duration::from_millis(100);

/// `KIND/PORT`, as the sensor logs its ports (`sflow/6343`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSpec {
    pub kind: TelemetryKind,
    pub port: u16,
}

impl FromStr for PortSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, port) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}`: expected KIND/PORT, e.g. sflow/6343"))?;
        let kind = match kind {
            "sflow" => TelemetryKind::Sflow,
            "ipfix" => TelemetryKind::Ipfix,
            "netflow" => TelemetryKind::Netflow,
            other => return Err(format!("`{other}`: expected sflow, ipfix or netflow")),
        };
        let port = port
            .parse()
            .map_err(|e| format!("`{port}`: not a UDP port ({e})"))?;
        Ok(Self { kind, port })
    }
}

/// One decoder per socket, shared by its reader thread and the report
/// writer (locked once per batch).
type Shared = Arc<Mutex<UserDecoder>>;

pub fn collect(args: CollectArgs) -> Result<()> {
    if !args.user {
        bail!(
            "only the userspace path is collected here (--user); the kernel path is `edge-sensor run`"
        );
    }
    let config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    let ports: Vec<(u16, TelemetryKind)> = if args.ports.is_empty() {
        config.telemetry.ports().collect()
    } else {
        args.ports.iter().map(|p| (p.port, p.kind)).collect()
    };
    if ports.is_empty() {
        bail!("no port to listen on: pass --port KIND/PORT or set them in the config");
    }
    // Handlers first: a SIGUSR1 that came before them would kill the
    // process (its default action) once the sockets are visible.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (mut term, mut int, mut usr1) = {
        let _context = runtime.enter();
        (
            signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            signal(SignalKind::user_defined1()).context("installing the SIGUSR1 handler")?,
        )
    };
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut decoders: Vec<Shared> = Vec::new();
    let mut threads: Vec<JoinHandle<Result<()>>> = Vec::new();
    for &(port, kind) in &ports {
        let socket = bind(port)?;
        let receiver = BatchReceiver::new(socket, args.batch, READ_TIMEOUT)
            .with_context(|| format!("preparing the socket on port {port}"))?;
        if let Some(bytes) = args.rcvbuf {
            receiver
                .set_receive_buffer(bytes)
                .with_context(|| format!("setting a {bytes}-byte receive buffer"))?;
        }
        let decoder = Arc::new(Mutex::new(UserDecoder::new(
            &ports,
            &config.exporters.allow,
            false,
        )));
        let (shared, stop) = (decoder.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name(format!("collect-{port}"))
            .spawn(move || read_loop(receiver, port, kind, &shared, &stop))?;
        tracing::info!(port, "collecting {} datagrams (recvmmsg)", kind.name());
        decoders.push(decoder);
        threads.push(thread);
    }

    runtime.block_on(async {
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = usr1.recv() => write_report(&args, &decoders, started)?,
            }
        }
        anyhow::Ok(())
    })?;

    stop.store(true, Ordering::Relaxed);
    let mut failure = None;
    for thread in threads {
        match thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failure = Some(e),
            Err(_) => failure = Some(anyhow::anyhow!("a reader thread panicked")),
        }
    }
    write_report(&args, &decoders, started)?;
    failure.map_or(Ok(()), Err)
}

/// Dual-stack where IPv6 exists; IPv4 alone where it is disabled.
fn bind(port: u16) -> Result<UdpSocket> {
    UdpSocket::bind((Ipv6Addr::UNSPECIFIED, port))
        .or_else(|_| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)))
        .with_context(|| format!("binding UDP port {port}"))
}

fn read_loop(
    mut receiver: BatchReceiver,
    port: u16,
    kind: TelemetryKind,
    decoder: &Mutex<UserDecoder>,
    stop: &AtomicBool,
) -> Result<()> {
    // One lock per batch: cheap next to the batch's system call.
    while !stop.load(Ordering::Relaxed) {
        let mut guard = None;
        receiver
            .recv_batch(|d| {
                let decoder = guard.get_or_insert_with(|| decoder.lock().expect("decoder lock"));
                decoder.datagram(&Datagram {
                    src: d.src.ip(),
                    src_port: d.src.port(),
                    port,
                    kind,
                    payload: d.payload,
                });
            })
            .with_context(|| format!("receiving on port {port}"))?;
    }
    Ok(())
}

/// The report: every reader's counters added, the process's CPU time and
/// memory, written atomically (a reader never sees half a file).
fn write_report(args: &CollectArgs, decoders: &[Shared], started: Instant) -> Result<()> {
    let mut report = Report::default();
    let mut datagrams = 0;
    let mut consumed = 0;
    for decoder in decoders {
        let decoder = decoder.lock().expect("decoder lock");
        report.merge(&decoder.report);
        datagrams += decoder.global.telemetry_datagrams;
        consumed += decoder.global.consumed_datagrams;
    }
    let usage = rusage();
    let body = if args.summary_only {
        // Without building a row per destination (a million of them would
        // cost more memory than the counters).
        let exporters: Vec<_> = report
            .exporters
            .iter()
            .map(|(id, t)| ExporterRow::new(*id, t))
            .collect();
        json!({ "destinations": [], "exporters": exporters })
    } else {
        report_json(&report)
    };
    let value = json!({
        "engine": "user",
        "elapsed_s": started.elapsed().as_secs_f64(),
        "datagrams": datagrams,
        "decoded_datagrams": consumed,
        "samples": report.exporters.values().map(|t| t.stats.samples).sum::<u64>(),
        "records": report.exporters.values().map(|t| t.stats.records).sum::<u64>(),
        "destination_count": report.destinations.len(),
        "cpu_user_s": usage.user_s,
        "cpu_system_s": usage.system_s,
        "max_rss_kib": usage.max_rss_kib,
        "report": body,
    });
    match &args.json_report {
        Some(path) => write(path, &value),
        None => {
            println!("{}", serde_json::to_string_pretty(&value)?);
            Ok(())
        }
    }
}

fn write(path: &Path, value: &serde_json::Value) -> Result<()> {
    state::write_json(path, value).with_context(|| format!("writing {}", path.display()))
}

struct Usage {
    user_s: f64,
    system_s: f64,
    max_rss_kib: i64,
}

/// This process's CPU time and peak memory (getrusage).
fn rusage() -> Usage {
    // SAFETY: rusage is plain old data; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Usage {
        user_s: secs(ru.ru_utime),
        system_s: secs(ru.ru_stime),
        max_rss_kib: ru.ru_maxrss,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs_parse_as_the_sensor_logs_them() {
        assert_eq!(
            "sflow/6343".parse::<PortSpec>(),
            Ok(PortSpec {
                kind: TelemetryKind::Sflow,
                port: 6343
            })
        );
        assert_eq!(
            "ipfix/4739".parse::<PortSpec>().map(|p| p.kind),
            Ok(TelemetryKind::Ipfix)
        );
        assert!("sflow:6343".parse::<PortSpec>().is_err());
        assert!("bgp/179".parse::<PortSpec>().is_err());
        assert!("sflow/70000".parse::<PortSpec>().is_err());
    }
}
