//! The traffic: the scripted attack (hping3) and the real flow exporter
//! that samples it on the router.

use std::{
    fs,
    process::{Child, Stdio},
};

use anyhow::{Context, Result};

use super::{Attack, COLLECTOR_ADDR, Exporter, Lab, ROUTER_ADDR, VICTIM, in_ns};

impl Attack {
    pub(super) fn target(self) -> &'static str {
        match self {
            Self::Carpet => "198.18.202.0/24",
            _ => VICTIM,
        }
    }

    /// hping3 from the edge at ~5 kpps (bounded by count) for `secs`.
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
        if self == Self::Carpet {
            // hping3 needs the interface for random destinations.
            args.extend_from_slice(&["-I", &lab.names.er]);
        }
        in_ns(&lab.names.edge, "hping3")
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
        }
    }
}

pub(super) fn start_exporter(lab: &Lab, exporter: Exporter, sampling: u32) -> Result<Child> {
    let log = fs::File::create(lab.dir.join("exporter.log"))?;
    let mut cmd = match exporter {
        Exporter::PmacctSflow | Exporter::PmacctIpfix => {
            let plugin = match exporter {
                Exporter::PmacctSflow => format!(
                    "plugins: sfprobe\nsfprobe_receiver: {COLLECTOR_ADDR}:6343\n\
                     sfprobe_agentip: {ROUTER_ADDR}\nsfprobe_agentsubid: 1\n\
                     sfprobe_ifspeed: 10000000000\n"
                ),
                _ => format!(
                    "plugins: nfprobe\nnfprobe_receiver: {COLLECTOR_ADDR}:4739\n\
                     nfprobe_version: 10\nnfprobe_source_ip: {ROUTER_ADDR}\n\
                     nfprobe_timeouts: tcp=3:udp=3:icmp=3:general=3:maxlife=5:expint=1\n"
                ),
            };
            let conf = lab.dir.join("pmacctd.conf");
            fs::write(
                &conf,
                format!(
                    "daemonize: false\npcap_interface: {}\nsampling_rate: {sampling}\n{plugin}",
                    lab.names.re
                ),
            )?;
            let mut cmd = in_ns(&lab.names.router, "pmacctd");
            cmd.arg("-f").arg(conf);
            cmd
        }
        Exporter::SoftflowdIpfix => {
            let mut cmd = in_ns(&lab.names.router, "softflowd");
            cmd.args(["-d", "-i", &lab.names.re, "-v", "10", "-n"])
                .arg(format!("{COLLECTOR_ADDR}:4739"))
                .arg("-s")
                .arg(sampling.to_string())
                .arg("-p")
                .arg(lab.dir.join("softflowd.pid"))
                .arg("-c")
                .arg(lab.dir.join("softflowd.ctl"))
                .args(["-t", "maxlife=5", "-t", "expint=1", "-t", "icmp=3"]);
            cmd
        }
    };
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", exporter.name()))
}
