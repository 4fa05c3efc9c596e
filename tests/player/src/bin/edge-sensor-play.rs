//! `edge-sensor-play SCENARIO.toml`: plays a scenario's datagrams onto UDP
//! destinations in real time (run it inside a namespace to play onto a
//! veth), or writes them to a capture as fast as they are generated;
//! optionally writes the truth as JSON lines. Both stream: a day-long
//! scenario never sits in memory.

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
    /// Write a capture here instead of sending.
    #[arg(long)]
    pcap: Option<PathBuf>,
    /// Override the scenario's seed.
    #[arg(long)]
    seed: Option<u64>,
}

fn create(path: &PathBuf) -> Result<BufWriter<File>> {
    let file = File::create(path).with_context(|| format!("create {}", path.display()))?;
    Ok(BufWriter::new(file))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut scenario = Scenario::from_file(&args.scenario)?;
    if let Some(seed) = args.seed {
        scenario.seed = seed;
    }
    let mut player = Player::new(&scenario)?;
    let mut truth = match &args.truth {
        Some(path) => Some(TruthWriter::new(create(path)?, player.model())?),
        None => None,
    };
    if let Some(path) = &args.pcap {
        let a = pcap::Addressing {
            src: "192.0.2.1".parse()?,
            src_port: 50000,
            dst: "192.0.2.100".parse()?,
            sflow_port: args.sflow.port(),
            ipfix_port: args.ipfix.port(),
            start_unix_s: scenario.start_unix_s,
        };
        let mut w = pcap::Writer::new(create(path)?, a)?;
        let (mut datagrams, mut samples) = (0u64, 0u64);
        // Bounded: the player ends with its scenario.
        while let Some(batch) = player.next_tick() {
            for d in &batch {
                w.datagram(d)?;
                if let Some(t) = truth.as_mut() {
                    t.datagram(player.model(), d)?;
                }
                datagrams += 1;
                samples += d.truth.samples.len() as u64;
            }
        }
        w.finish()?;
        eprintln!(
            "wrote {datagrams} datagrams ({samples} samples) to {}",
            path.display()
        );
    } else {
        let target = realtime::Target {
            sflow: args.sflow,
            ipfix: args.ipfix,
            bind: args.bind,
            speed: args.speed,
        };
        let mut failed = None;
        let s = realtime::play(&mut player, &target, |model, d| {
            if let Some(t) = truth.as_mut()
                && failed.is_none()
            {
                failed = t.datagram(model, d).err();
            }
        })?;
        if let Some(e) = failed {
            return Err(e).context("write the truth");
        }
        eprintln!(
            "sent {} datagrams ({} bytes, {} samples) in {:.2?}, at most {:.2?} late",
            s.datagrams, s.bytes, s.samples, s.elapsed, s.max_lateness
        );
    }
    if let Some(t) = truth {
        t.finish(player.model())?;
    }
    Ok(())
}
