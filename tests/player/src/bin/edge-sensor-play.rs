//! `edge-sensor-play SCENARIO.toml`: plays a scenario's datagrams onto UDP
//! destinations in real time (run it inside a namespace to play onto a
//! veth), or writes them to a capture; optionally writes the truth.

use std::{fs::File, io::BufWriter, net::SocketAddr, path::PathBuf};

use anyhow::{Context, Result};
use clap::Parser;
use edge_sensor_player::{Player, Scenario, pcap, realtime, truth::TruthWriter};

#[derive(Parser)]
#[command(about = "Play a traffic-model scenario as sFlow v5 / IPFIX datagrams")]
struct Args {
    /// The scenario file (TOML).
    scenario: PathBuf,
    /// Where sFlow datagrams go.
    #[arg(long, default_value = "127.0.0.1:6343")]
    sflow: SocketAddr,
    /// Where IPFIX messages go.
    #[arg(long, default_value = "127.0.0.1:4739")]
    ipfix: SocketAddr,
    /// Local address of the routers' sockets.
    #[arg(long, default_value = "0.0.0.0:0")]
    bind: SocketAddr,
    /// Simulated seconds per second.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Write the truth as JSON lines here.
    #[arg(long)]
    truth: Option<PathBuf>,
    /// Write a capture here instead of sending (as fast as it is generated).
    #[arg(long)]
    pcap: Option<PathBuf>,
    /// Override the scenario's seed.
    #[arg(long)]
    seed: Option<u64>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut scenario = Scenario::from_file(&args.scenario)?;
    if let Some(seed) = args.seed {
        scenario.seed = seed;
    }
    let mut player = Player::new(&scenario)?;
    let mut datagrams = Vec::new();
    let sent = if let Some(path) = &args.pcap {
        datagrams = player.by_ref().collect();
        let a = pcap::Addressing {
            src: "192.0.2.1".parse()?,
            src_port: 50000,
            dst: "192.0.2.100".parse()?,
            sflow_port: args.sflow.port(),
            ipfix_port: args.ipfix.port(),
            start_unix_s: scenario.start_unix_s,
        };
        let file = File::create(path).with_context(|| format!("create {}", path.display()))?;
        pcap::write(BufWriter::new(file), &a, &datagrams)?;
        None
    } else {
        let target = realtime::Target {
            sflow: args.sflow,
            ipfix: args.ipfix,
            bind: args.bind,
            speed: args.speed,
        };
        let keep = args.truth.is_some();
        Some(realtime::play(&mut player, &target, |d| {
            if keep {
                datagrams.push(d.clone());
            }
        })?)
    };
    if let Some(path) = &args.truth {
        let file = File::create(path).with_context(|| format!("create {}", path.display()))?;
        let mut w = TruthWriter::new(BufWriter::new(file), player.model())?;
        for d in &datagrams {
            w.datagram(player.model(), d)?;
        }
        w.finish(player.model())?;
    }
    match sent {
        Some(s) => eprintln!(
            "sent {} datagrams ({} bytes, {} samples) in {:.2?}, at most {:.2?} late",
            s.datagrams, s.bytes, s.samples, s.elapsed, s.max_lateness
        ),
        None => eprintln!("wrote {} datagrams", datagrams.len()),
    }
    Ok(())
}
