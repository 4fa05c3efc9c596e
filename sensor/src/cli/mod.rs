//! The `edge-sensor` command line.

mod ask;
mod collect;
mod decode;
mod exporters;
mod generate;
mod maps;
mod metrics;
mod rib;
/// The counters' JSON rows live with the counters (the daemon's web view
/// prints them too); the CLI's paths stay.
pub use crate::counters::rows;
mod run;
mod style;
mod top;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use edge_sensor_common::DEFAULT_PIN_DIR;

use crate::config::{AttachMode, Fallback};

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
    /// Every pinned map: type, sizes, entries, memory; `maps dump NAME`
    /// shows one map's entries.
    Maps(MapsArgs),
    /// Serve Prometheus metrics read from the pinned maps (works while the
    /// daemon is down; the daemon serves the same names itself).
    Metrics(MetricsArgs),
    /// Attacks in progress and recently ended (asks the daemon).
    Attacks(AskArgs),
    /// Active mitigations and where they were announced (asks the daemon).
    Mitigations(AskArgs),
    /// BGP peers: state, uptime, capabilities, routes (asks the daemon).
    Bgp(BgpArgs),
    /// Received routes (Adj-RIB-In) per peer: lookups by prefix and
    /// community; `rib flowspec` shows received Flow Spec rules beside
    /// ours; `rib refresh` asks a peer to send its routes again.
    Rib(rib::RibArgs),
    /// The daemon at a glance.
    Status(AskArgs),
    /// `[cluster]`: members and their lag (age of each one's last
    /// summary), the network-wide attacks with their owner and the sensor
    /// announcing each (asks the daemon).
    Cluster(AskArgs),
    /// Mitigate an address by hand: a Flow Spec filter or a blackhole.
    Ban(BanArgs),
    /// Withdraw a mitigation (by id) or every one for an address.
    Unban(UnbanArgs),
    /// Collect telemetry from UDP sockets (recvmmsg) with the userspace
    /// decoder, for comparison with the kernel path; writes a report on
    /// SIGINT/SIGTERM (and on SIGUSR1, without stopping).
    Collect(CollectArgs),
    /// Manual pages or shell completions into a directory (for packaging).
    #[command(hide = true)]
    Generate(GenerateArgs),
}

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    pub what: GenerateWhat,
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum GenerateWhat {
    Man,
    Completions,
}

#[derive(Debug, clap::Args)]
pub struct AskArgs {
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
    /// The daemon's control socket.
    #[arg(long, global = true, default_value = crate::control::DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct BgpArgs {
    #[command(subcommand)]
    pub action: Option<BgpAction>,
    /// The routes quarantined per peer (routers that reset the session
    /// over them are never sent them again).
    #[arg(long)]
    pub quarantine: bool,
    #[command(flatten)]
    pub ask: AskArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum BgpAction {
    /// Clear a peer's quarantine: its routes may be sent to it again.
    ClearQuarantine {
        /// The peer's name, as in [[bgp.peers]].
        peer: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct BanArgs {
    /// The address to protect (inside the own networks).
    pub ip: std::net::IpAddr,
    /// A Flow Spec match, e.g. "proto udp src-port 123 len 400-1500"
    /// (words: src, proto, src-port, dst-port, tcp-flags, len, fragment,
    /// not-fragment, first-fragment, later-fragment).
    #[arg(long, conflicts_with = "blackhole")]
    pub flowspec: Option<String>,
    /// Blackhole the address (RTBH) instead (the default without --flowspec).
    #[arg(long)]
    pub blackhole: bool,
    /// How long, e.g. 10m, 1h (default: mitigation.manual_duration).
    #[arg(long = "for")]
    pub r#for: Option<String>,
    #[arg(long)]
    pub json: bool,
    #[arg(long, default_value = crate::control::DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct UnbanArgs {
    /// A mitigation id, or an address (every mitigation for it).
    pub target: String,
    #[arg(long)]
    pub json: bool,
    #[arg(long, default_value = crate::control::DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct MapsArgs {
    #[command(subcommand)]
    pub action: Option<MapsAction>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
    /// Pin directory of the sensor to read.
    #[arg(long, global = true, default_value = DEFAULT_PIN_DIR)]
    pub pin_path: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum MapsAction {
    /// The entries of one pinned map: named fields for the sensor's maps
    /// (per-CPU values summed), hex for any other.
    Dump(DumpArgs),
}

#[derive(Debug, clap::Args)]
pub struct DumpArgs {
    /// The map's pin name (as `edge-sensor maps` lists it).
    pub name: String,
    /// At most this many entries.
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
    /// One value per CPU instead of their sum.
    #[arg(long)]
    pub per_cpu: bool,
    /// Hex keys and values even for maps this binary knows.
    #[arg(long)]
    pub raw: bool,
}

#[derive(Debug, clap::Args)]
pub struct MetricsArgs {
    /// Address to serve `/metrics` on.
    #[arg(long, default_value = crate::metrics::DEFAULT_LISTEN)]
    pub listen: std::net::SocketAddr,
    /// Pin directory of the sensor to read.
    #[arg(long, default_value = DEFAULT_PIN_DIR)]
    pub pin_path: PathBuf,
    /// Seconds between two reads of the maps (the top destinations' rates
    /// are measured over it).
    #[arg(long, default_value_t = 5.0)]
    pub interval: f64,
    /// Destinations exported with their rates (the busiest by packets).
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    /// Have the kernel count program runs and run time while this runs
    /// (BPF_ENABLE_STATS; costs a few nanoseconds per packet).
    #[arg(long)]
    pub bpf_stats: bool,
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
    pub family: Option<top::IpVersion>,
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
    /// The daemon's control socket, asked which destinations are under
    /// mitigation (the maps alone do not say).
    #[arg(long, default_value = crate::control::DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct DecodeArgs {
    /// Which decoder: the real XDP program (through BPF_PROG_TEST_RUN) or
    /// the userspace decoder.
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
    /// Attach mode; overrides `xdp.mode` (default: native, falling back to
    /// skb; `userspace`: no XDP, the userspace collector).
    #[arg(long, value_enum)]
    pub mode: Option<AttachMode>,
    /// When XDP cannot run; overrides `xdp.fallback` (default: userspace).
    #[arg(long, value_enum)]
    pub fallback: Option<Fallback>,
    /// Pin directory; overrides `xdp.pin_path`.
    #[arg(long)]
    pub pin_path: Option<PathBuf>,
    /// State directory; overrides `daemon.state_dir`.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Control socket; overrides `daemon.control_socket`.
    #[arg(long)]
    pub control_socket: Option<PathBuf>,
    /// Metrics endpoint ADDRESS:PORT, or "" for none; overrides
    /// `daemon.metrics_listen`.
    #[arg(long)]
    pub metrics_listen: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ExportersArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Seconds between the two reads the per-second rates come from; 0
    /// reads once (totals only).
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// Pin directory of the sensor to read.
    #[arg(long, default_value = DEFAULT_PIN_DIR)]
    pub pin_path: PathBuf,
    /// The daemon's control socket, asked for the templates it evicted per
    /// exporter (the maps alone do not say).
    #[arg(long, default_value = crate::control::DEFAULT_SOCKET)]
    pub socket: PathBuf,
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
        Command::Maps(args) => maps::maps(args),
        Command::Metrics(args) => metrics::metrics(args),
        Command::Attacks(args) => ask::attacks(args),
        Command::Mitigations(args) => ask::mitigations(args),
        Command::Bgp(args) => ask::bgp(args),
        Command::Rib(args) => rib::rib(args),
        Command::Status(args) => ask::status(args),
        Command::Cluster(args) => ask::cluster(args),
        Command::Ban(args) => ask::ban(args),
        Command::Unban(args) => ask::unban(args),
        Command::Collect(args) => collect::collect(args),
        Command::Generate(args) => generate::generate(args),
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
