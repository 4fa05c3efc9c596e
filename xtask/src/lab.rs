//! `cargo xtask lab`: the whole telemetry path on one box.
//!
//! Three namespaces joined by veths:
//!
//! ```text
//!   edge 198.18.201.2 ──── 198.18.201.1 router 198.18.200.1 ──── 198.18.200.2 collector
//!   (traffic source)        (real exporter samples          (edge-sensor, XDP on
//!                            its edge-facing veth)           es-lab-cr)
//! ```
//!
//! Addresses are from 198.18.0.0/15 (RFC 2544) and exist only inside these
//! namespaces. Every two seconds it prints the top destinations (rates the
//! kernel measured from the exporter's samples) and the exporters. The lab
//! refuses to start if any of its names exist, and removes everything it
//! created on exit, Ctrl-C included.

use std::{
    fs,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{run, util};

const NS_ROUTER: &str = "es-lab-router";
const NS_COLLECTOR: &str = "es-lab-collector";
const NS_EDGE: &str = "es-lab-edge";
const NAMESPACES: [&str; 3] = [NS_ROUTER, NS_COLLECTOR, NS_EDGE];
const PIN_PARENT: &str = "/sys/fs/bpf/edge-sensor-lab";
const ROUTER_TO_COLLECTOR: (&str, &str) = ("es-lab-rc", "es-lab-cr");
const ROUTER_TO_EDGE: (&str, &str) = ("es-lab-re", "es-lab-er");
const COLLECTOR_ADDR: &str = "198.18.200.2";
const ROUTER_ADDR: &str = "198.18.200.1";
const ROUTER_EDGE_ADDR: &str = "198.18.201.1";

#[derive(clap::Args)]
pub struct LabArgs {
    /// Exporter running in the router namespace.
    #[arg(long, value_enum, default_value_t = Exporter::PmacctSflow)]
    exporter: Exporter,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Sampling rate of the exporter (1 in N packets).
    #[arg(long, default_value_t = 1)]
    sampling: u32,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Exporter {
    /// pmacct `pmacctd` with the sfprobe plugin: sFlow v5 to port 6343.
    PmacctSflow,
    /// pmacct `pmacctd` with the nfprobe plugin: IPFIX to port 4739.
    PmacctIpfix,
    /// softflowd: IPFIX to port 4739.
    SoftflowdIpfix,
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Everything the lab created; removed on drop, by name, ours only.
struct Lab {
    dir: PathBuf,
    children: Vec<(&'static str, Child)>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (name, child) in &mut self.children {
            // Each child leads its own process group: pmacctd forks plugin
            // processes that outlive a SIGTERM to the parent alone.
            let group = -(child.id() as i32);
            // SAFETY: signalling our own child's process group.
            unsafe { libc::kill(group, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if child.try_wait().ok().flatten().is_none() {
                eprintln!("lab: {name} did not stop on SIGTERM; killing it");
            }
            // SAFETY: as above; whatever is left of the group goes.
            unsafe { libc::kill(group, libc::SIGKILL) };
            let _ = child.wait();
        }
        for ns in NAMESPACES {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
        let _ = fs::remove_dir_all(PIN_PARENT);
        if std::env::var_os("EDGE_SENSOR_LAB_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
        eprintln!(
            "lab: removed namespaces {}, pins and {}",
            NAMESPACES.join(", "),
            self.dir.display()
        );
    }
}

fn ip(args: &[&str]) -> Result<()> {
    util::run(Command::new("ip").args(args).stdout(Stdio::null()))
}

fn in_ns(ns: &str, program: &str) -> Command {
    // nsenter --net switches only the network namespace; `ip netns exec`
    // would also remount /sys and hide the bpffs the sensor pins into.
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{ns}")).arg(program);
    // Its own process group, so cleanup reaches every process it forks.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd
}

pub fn lab(args: LabArgs) -> Result<()> {
    util::setup()?;
    if !util::is_root() {
        bail!("the lab creates network namespaces and loads XDP: run it as root");
    }
    let bin = run::build(false)?;

    let existing =
        String::from_utf8_lossy(&Command::new("ip").args(["netns", "list"]).output()?.stdout)
            .into_owned();
    for ns in NAMESPACES {
        if existing
            .lines()
            .any(|l| l.split_whitespace().next() == Some(ns))
        {
            bail!(
                "namespace {ns} already exists: another lab is running, or remove it with `ip netns del {ns}`"
            );
        }
    }
    if fs::metadata(PIN_PARENT).is_ok() {
        bail!("{PIN_PARENT} already exists: another lab is running, or remove it");
    }

    // SAFETY: the handler only stores to an atomic.
    unsafe { libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t) };
    let dir = std::env::temp_dir().join(format!("edge-sensor-lab-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    let mut lab = Lab {
        dir,
        children: Vec::new(),
    };

    topology()?;
    let pin = format!("{PIN_PARENT}/maps");
    let sensor_log = fs::File::create(lab.dir.join("sensor.log"))?;
    let sensor = in_ns(NS_COLLECTOR, bin.to_str().context("binary path")?)
        .args(["run", "--iface", ROUTER_TO_COLLECTOR.1, "--pin-path", &pin])
        .arg("--state-dir")
        .arg(lab.dir.join("state"))
        .arg("--control-socket")
        .arg(lab.dir.join("control.sock"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(sensor_log)
        .spawn()
        .context("starting edge-sensor")?;
    lab.children.push(("edge-sensor", sensor));
    wait_for_xdp(&mut lab)?;
    println!(
        "lab: edge-sensor attached to {} in {NS_COLLECTOR}",
        ROUTER_TO_COLLECTOR.1
    );

    let exporter = start_exporter(&lab, args.exporter, args.sampling)?;
    lab.children.push(("exporter", exporter));
    let traffic = in_ns(NS_EDGE, "ping")
        .args(["-q", "-i", "0.05", "-s", "500", "-c"])
        .arg((args.duration * 20).to_string())
        .arg(ROUTER_EDGE_ADDR)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting ping")?;
    lab.children.push(("traffic", traffic));
    println!(
        "lab: {} exporting from {NS_ROUTER} (1:{} sampling); traffic: ping edge -> router",
        args.exporter.name(),
        args.sampling
    );

    let start = Instant::now();
    let end = start + Duration::from_secs(args.duration);
    while Instant::now() < end && !INTERRUPTED.load(Ordering::SeqCst) {
        // `top` measures over two seconds, then the exporters are read.
        let top = Command::new(&bin)
            .args(["top", "--limit", "5", "--interval", "2", "--pin-path", &pin])
            .output()?;
        if INTERRUPTED.load(Ordering::SeqCst) {
            // Ctrl-C reached the children too; they are stopping.
            break;
        }
        let exporters = Command::new(&bin)
            .args(["exporters", "--pin-path", &pin])
            .output()?;
        println!("--- t={:>3}s", start.elapsed().as_secs());
        for out in [&top, &exporters] {
            print!("{}", String::from_utf8_lossy(&out.stdout));
            if !out.status.success() {
                eprint!("{}", String::from_utf8_lossy(&out.stderr));
            }
        }
        if let Some((name, status)) = exited(&mut lab) {
            let log = fs::read_to_string(lab.dir.join("sensor.log")).unwrap_or_default();
            bail!("{name} exited early ({status}); sensor log:\n{log}");
        }
    }
    if INTERRUPTED.load(Ordering::SeqCst) {
        println!("lab: interrupted; cleaning up");
    } else {
        println!("lab: done; cleaning up");
    }
    Ok(())
}

/// The first child that exited before its time: any daemon, or a traffic
/// generator that failed (one that finished its count is fine).
fn exited(lab: &mut Lab) -> Option<(&'static str, std::process::ExitStatus)> {
    lab.children.iter_mut().find_map(|(name, child)| {
        let status = child.try_wait().ok().flatten()?;
        (*name != "traffic" || !status.success()).then_some((*name, status))
    })
}

fn wait_for_xdp(lab: &mut Lab) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = Command::new("ip")
            .args([
                "-n",
                NS_COLLECTOR,
                "-d",
                "link",
                "show",
                "dev",
                ROUTER_TO_COLLECTOR.1,
            ])
            .output()?;
        if String::from_utf8_lossy(&out.stdout).contains("prog/xdp") {
            return Ok(());
        }
        if exited(lab).is_some() || Instant::now() > deadline {
            let log = fs::read_to_string(lab.dir.join("sensor.log")).unwrap_or_default();
            bail!("edge-sensor did not attach; its log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn topology() -> Result<()> {
    for ns in NAMESPACES {
        ip(&["netns", "add", ns])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
    }
    let (rc, cr) = ROUTER_TO_COLLECTOR;
    let (re, er) = ROUTER_TO_EDGE;
    veth_pair((rc, NS_ROUTER), (cr, NS_COLLECTOR))?;
    veth_pair((re, NS_ROUTER), (er, NS_EDGE))?;
    for (ns, dev, addr) in [
        (NS_ROUTER, rc, "198.18.200.1/30"),
        (NS_COLLECTOR, cr, "198.18.200.2/30"),
        (NS_ROUTER, re, "198.18.201.1/24"),
        (NS_EDGE, er, "198.18.201.2/24"),
    ] {
        ip(&["-n", ns, "addr", "add", addr, "dev", dev])?;
        ip(&["-n", ns, "link", "set", dev, "up"])?;
    }
    Ok(())
}

/// A veth pair with one end in each namespace.
fn veth_pair((a, a_ns): (&str, &str), (b, b_ns): (&str, &str)) -> Result<()> {
    let args = [
        "link", "add", a, "netns", a_ns, "type", "veth", "peer", "name", b, "netns", b_ns,
    ];
    ip(&args)
}

impl Exporter {
    fn name(self) -> &'static str {
        match self {
            Self::PmacctSflow => "pmacct sfprobe (sFlow v5)",
            Self::PmacctIpfix => "pmacct nfprobe (IPFIX)",
            Self::SoftflowdIpfix => "softflowd (IPFIX)",
        }
    }
}

fn start_exporter(lab: &Lab, exporter: Exporter, sampling: u32) -> Result<Child> {
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
                    ROUTER_TO_EDGE.0
                ),
            )?;
            let mut cmd = in_ns(NS_ROUTER, "pmacctd");
            cmd.arg("-f").arg(conf);
            cmd
        }
        Exporter::SoftflowdIpfix => {
            let mut cmd = in_ns(NS_ROUTER, "softflowd");
            cmd.args(["-d", "-i", ROUTER_TO_EDGE.0, "-v", "10", "-n"])
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
