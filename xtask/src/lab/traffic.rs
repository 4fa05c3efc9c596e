//! The traffic: the scripted attack (hping3) and the real flow exporter
//! that samples it on the router; or the traffic-model player, which is
//! both.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Stdio},
};

use anyhow::{Context, Result, bail};

use super::{
    Attack, COLLECTOR_ADDR, CUSTOMERS, Exporter, Lab, LabArgs, PLAYER_HOSTS, PLAYER_NORMAL_PPS,
    ROUTER_ADDR, VICTIM, in_ns,
};
use crate::{run, util};

impl Attack {
    pub(super) fn target(self) -> &'static str {
        match self {
            Self::Carpet => "198.18.202.0/24",
            _ => VICTIM,
        }
    }

    /// hping3 from the edge (`--sensors` > 1: from the inet behind it) at
    /// ~5 kpps (bounded by count) for `secs`.
    pub(super) fn start(self, lab: &Lab, secs: u64) -> Result<Child> {
        let count = (5000 * secs).to_string();
        let mut args: Vec<&str> = vec!["-q", "-i", "u200", "-c", &count, "--rand-source"];
        args.extend_from_slice(match self {
            Self::Syn => &["-S", "-p", "80"],
            Self::Udp => &["--udp", "-p", "9999", "-d", "200"],
            Self::NtpAmp => &["--udp", "-s", "123", "-k", "-p", "4444", "-d", "440"],
            Self::Icmp => &["--icmp", "-d", "500"],
            Self::Frag => &["--udp", "-p", "7777", "-d", "1400", "-f", "-m", "512"],
            Self::Carpet => &[
                "--udp",
                "-s",
                "53",
                "-k",
                "-p",
                "3333",
                "-d",
                "300",
                "--rand-dest",
            ],
        });
        let target = match self {
            Self::Carpet => "198.18.202.x",
            _ => VICTIM,
        };
        let (ns, iface) = lab.names.sources();
        if self == Self::Carpet {
            // hping3 needs the interface for random destinations.
            args.extend_from_slice(&["-I", iface]);
        }
        in_ns(ns, "hping3")
            .args(&args)
            .arg(target)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting hping3")
    }
}

impl Exporter {
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::PmacctSflow => "pmacct sfprobe (sFlow v5)",
            Self::PmacctIpfix => "pmacct nfprobe (IPFIX)",
            Self::SoftflowdIpfix => "softflowd (IPFIX)",
            Self::PlayerSflow => "edge-sensor-play (sFlow v5)",
            Self::PlayerIpfix => "edge-sensor-play (IPFIX)",
        }
    }
}

/// `--sensors` > 1: the exporter of router `index` (0-based), in its
/// namespace `ns`, sampling the packets its edge-facing veth `iface`
/// receives (the share of the traffic the edge sends it), exporting them as
/// agent `agent` to `collector`.
pub(super) struct Share {
    pub index: usize,
    pub ns: String,
    pub iface: String,
    pub agent: String,
    pub collector: String,
}

/// The lab's normal traffic: ping from the edge (`--sensors` > 1: from
/// the inet behind it) to the victim, 20 a second of 500 bytes, for `secs`
/// seconds.
pub(super) fn start_normal_traffic(lab: &Lab, secs: u64) -> Result<Child> {
    super::in_ns(lab.names.sources().0, "ping")
        .args(["-q", "-i", "0.05", "-s", "500", "-c"])
        .arg((secs * 20).to_string())
        .arg(super::VICTIM)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting ping")
}

pub(super) fn start_exporter(lab: &Lab, exporter: Exporter, sampling: u32) -> Result<Child> {
    start_exporter_share(lab, exporter, sampling, None)
}

pub(super) fn start_exporter_share(
    lab: &Lab,
    exporter: Exporter,
    sampling: u32,
    share: Option<&Share>,
) -> Result<Child> {
    let suffix = share.map_or(String::new(), |s| format!("-{}", s.index + 1));
    let collector = share.map_or(COLLECTOR_ADDR, |s| s.collector.as_str());
    let agent = share.map_or(ROUTER_ADDR, |s| s.agent.as_str());
    let ns = share.map_or(lab.names.router.as_str(), |s| s.ns.as_str());
    let iface = share.map_or(lab.names.re.as_str(), |s| s.iface.as_str());
    let log = fs::File::create(lab.dir.join(format!("exporter{suffix}.log")))?;
    let mut cmd = match exporter {
        Exporter::PmacctSflow | Exporter::PmacctIpfix => {
            let plugin = match exporter {
                Exporter::PmacctSflow => format!(
                    "plugins: sfprobe\nsfprobe_receiver: {collector}:6343\n\
                     sfprobe_agentip: {agent}\nsfprobe_agentsubid: 1\n\
                     sfprobe_ifspeed: 10000000000\n"
                ),
                _ => format!(
                    "plugins: nfprobe\nnfprobe_receiver: {collector}:4739\n\
                     nfprobe_version: 10\nnfprobe_source_ip: {agent}\n\
                     nfprobe_timeouts: tcp=3:udp=3:icmp=3:general=3:maxlife=5:expint=1\n"
                ),
            };
            let conf = lab.dir.join(format!("pmacctd{suffix}.conf"));
            fs::write(
                &conf,
                format!(
                    "daemonize: false\npcap_interface: {iface}\nsampling_rate: {sampling}\n{plugin}"
                ),
            )?;
            let mut cmd = in_ns(ns, "pmacctd");
            cmd.arg("-f").arg(conf);
            cmd
        }
        Exporter::SoftflowdIpfix => {
            let mut cmd = in_ns(ns, "softflowd");
            cmd.args(["-d", "-i", iface, "-v", "10", "-n"])
                .arg(format!("{collector}:4739"))
                .arg("-s")
                .arg(sampling.to_string())
                .arg("-p")
                .arg(lab.dir.join(format!("softflowd{suffix}.pid")))
                .arg("-c")
                .arg(lab.dir.join(format!("softflowd{suffix}.ctl")))
                .args(["-t", "maxlife=5", "-t", "expint=1", "-t", "icmp=3"]);
            cmd
        }
        Exporter::PlayerSflow | Exporter::PlayerIpfix => {
            bail!("the player is started by start_player")
        }
    };
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", exporter.name()))
}

/// Builds the player (release: it paces a thousand samples a second) and
/// returns its path.
pub(crate) fn build_player() -> Result<PathBuf> {
    util::run(util::cargo().args([
        "build",
        "--release",
        "--package",
        "edge-sensor-player",
        "--bin",
        "edge-sensor-play",
    ]))?;
    Ok(run::target_dir().join("release").join("edge-sensor-play"))
}

/// The player's scenario: the lab's customers (the first [`PLAYER_HOSTS`]
/// addresses of the block, the victim among them) with normal traffic of
/// [`PLAYER_NORMAL_PPS`] in all (the player's defaults: Pareto host rates,
/// a diurnal factor, a TCP/QUIC/DNS/ICMP mix), one router of the chosen
/// format sampling 1:`--sampling`, and a UDP flood on the victim. IPFIX is
/// exported one record per sample (no flow cache: a router's cache
/// timeouts would come on top), as sFlow is, so both formats time the
/// sensor and not the exporter.
pub(super) fn player_scenario(args: &LabArgs) -> String {
    let format = match args.exporter {
        Exporter::PlayerIpfix => "ipfix",
        _ => "sflow",
    };
    format!(
        r#"seed = 20260516
duration_s = {duration:?}

[[routers]]
name = "router"
agent = "{ROUTER_ADDR}"
format = "{format}"
sampling_rate = {sampling}

[hosts]
count = {PLAYER_HOSTS}
prefix = "{CUSTOMERS}"
total_pps = {PLAYER_NORMAL_PPS}

[[attacks]]
id = "flood"
vector = "udp_flood"
target = "{VICTIM}"
start_s = {start:?}
duration_s = {length:?}
ramp_s = {ramp:?}
pps = {pps:?}
sources = 50000
"#,
        // As TOML floats (`{:?}` of an f64 always has a point).
        duration = args.duration as f64,
        sampling = args.sampling,
        start = args.attack_at as f64,
        length = args.attack_for as f64,
        ramp = args.flood_ramp,
        pps = args.flood_pps as f64,
    )
}

/// The player in the router namespace, in real time from now, sending
/// from the router's address to the collector's flow ports.
pub(super) fn start_player(lab: &Lab, player: &Path, scenario: &Path) -> Result<Child> {
    let log = fs::File::create(lab.dir.join("player.log"))?;
    in_ns(&lab.names.router, player.to_str().context("player path")?)
        .arg(scenario)
        .args(["--sflow", &format!("{COLLECTOR_ADDR}:6343")])
        .args(["--ipfix", &format!("{COLLECTOR_ADDR}:4739")])
        .args(["--bind", &format!("{ROUTER_ADDR}:0")])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting edge-sensor-play")
}
