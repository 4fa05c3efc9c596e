//! `edge-sensor metrics`: a Prometheus exporter reading the pinned maps.

use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::MetricsArgs;
use crate::{
    http,
    metrics::{Metrics, pinned::PinnedPoller},
};

pub fn metrics(args: MetricsArgs) -> Result<()> {
    if !(0.1..=3600.0).contains(&args.interval) {
        bail!("--interval must be between 0.1 and 3600 seconds");
    }
    // Held until exit: the kernel counts while any holder keeps it open.
    let _stats = if args.bpf_stats {
        Some(
            aya::sys::enable_stats(aya::sys::Stats::RunTime)
                .context("enabling BPF run statistics (needs root or CAP_SYS_ADMIN)")?,
        )
    } else {
        None
    };
    let metrics = Metrics::for_sensor();
    let mut poller = PinnedPoller::new(args.pin_path.clone(), args.top);
    poller.stats_held = args.bpf_stats;
    // The first read must work: a wrong pin path or missing rights are
    // reported now, not as an empty page later.
    poller.poll(&metrics)?;

    let interval = Duration::from_secs_f64(args.interval);
    let for_poller = metrics.clone();
    std::thread::Builder::new()
        .name("poll".into())
        .spawn(move || {
            loop {
                std::thread::sleep(interval);
                if let Err(e) = poller.poll(&for_poller) {
                    tracing::warn!("reading the pinned maps: {e}");
                }
            }
        })
        .context("starting the poller")?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        tracing::info!(
            "serving metrics on http://{}/metrics",
            listener.local_addr()?
        );
        tokio::select! {
            r = http::serve(listener, http::metrics_router(metrics)) => r.context("serving metrics"),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
}
