//! The `edge-sensor` command line.

mod collect;
mod decode;
mod exporters;
mod run;
mod top;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use edge_sensor_common::DEFAULT_PIN_DIR;

use crate::config::AttachMode;

#[derive(Debug, Parser)]
#[command(
    name = "edge-sensor",
    version,
    about = "DDoS detection and mitigation from sFlow/IPFIX telemetry, parsed in XDP"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load the XDP program, attach it and run until Ctrl-C or SIGTERM.
    Run(RunArgs),
    /// Per exporter counters, read from the pinned maps.
    Exporters(ExportersArgs),
    /// Destinations ranked by current rate (two reads of the pinned map).
    Top(TopArgs),
    /// Decode captures (pcap/pcapng) with the XDP program or the userspace
    /// decoder, and print per destination and per exporter totals.
    Decode(DecodeArgs),
    /// Collect telemetry from UDP sockets (recvmmsg) with the userspace
    /// decoder, for comparison with the kernel path; writes a report on
    /// SIGINT/SIGTERM (and on SIGUSR1, without stopping).
    Collect(CollectArgs),
}

#[derive(Debug, clap::Args)]
pub struct CollectArgs {
    /// Decode in userspace from sockets (the only engine here; the kernel
    /// path is `edge-sensor run`).
    #[arg(long)]
    pub user: bool,
    /// Configuration file: ports (unless --port) and exporter allow-list.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Port to collect on, as KIND/PORT (sflow/6343, ipfix/4739,
    /// netflow/2055); repeatable; replaces the configured ports.
    #[arg(long = "port")]
    pub ports: Vec<collect::PortSpec>,
    /// Datagrams per recvmmsg call.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Socket receive buffer in bytes (default: the system's).
    #[arg(long)]
    pub rcvbuf: Option<usize>,
    /// Write the report (JSON) here instead of printing it.
    #[arg(long)]
    pub json_report: Option<PathBuf>,
    /// Leave the per-destination rows out of the report (counts stay).
    #[arg(long)]
    pub summary_only: bool,
}

#[derive(Debug, clap::Args)]
pub struct TopArgs {
    /// What to rank by.
    #[arg(long, value_enum, default_value_t = top::By::Pps)]
    pub by: top::By,
    /// How many destinations to show.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Only IPv4 or only IPv6 destinations.
    #[arg(long, value_enum)]
    pub family: Option<top::Family>,
    /// Seconds between the two reads the rates come from.
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Refresh in place until Ctrl-C.
    #[arg(long)]
    pub watch: bool,
    /// Pin directory of the sensor to read.
    #[arg(long, default_value = DEFAULT_PIN_DIR)]
    pub pin_path: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct DecodeArgs {
    /// Which decoder: the real XDP program (through BPF_PROG_TEST_RUN) or
    /// the userspace reference decoder.
    #[arg(long, value_enum, default_value_t = crate::decode::Engine::Xdp)]
    pub engine: crate::decode::Engine,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Configuration file, for the telemetry ports.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Captures to decode, in order (sequence numbers carry across files).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Configuration file (TOML); defaults apply without one.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Interface to attach to (repeatable); overrides `xdp.interfaces`.
    #[arg(long = "iface", short = 'i')]
    pub ifaces: Vec<String>,
    /// Attach mode; overrides `xdp.mode` (default: native, falling back to skb).
    #[arg(long, value_enum)]
    pub mode: Option<AttachMode>,
    /// Pin directory; overrides `xdp.pin_path`.
    #[arg(long)]
    pub pin_path: Option<PathBuf>,
    /// State directory; overrides `daemon.state_dir`.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ExportersArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Pin directory of the sensor to read.
    #[arg(long, default_value = DEFAULT_PIN_DIR)]
    pub pin_path: PathBuf,
}

/// Runs the command line; errors are printed with their causes.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Exporters(args) => exporters::exporters(args),
        Command::Decode(args) => decode::decode(args),
        Command::Top(args) => top::top(args),
        Command::Collect(args) => collect::collect(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edge-sensor: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EDGE_SENSOR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}
