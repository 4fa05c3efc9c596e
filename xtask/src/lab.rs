//! `cargo xtask lab`: the whole loop on one box.
//!
//! Three namespaces joined by veths:
//!
//! ```text
//!   edge 198.18.201.2 ──── 198.18.201.1 router 198.18.200.1 ──── 198.18.200.2 collector
//!   (traffic and attack      (real exporter samples          (edge-sensor, XDP on
//!    sources; gobgpd or       its edge-facing veth; hosts      {prefix}-cr; BGP to
//!    BIRD standing in for     the customer block               the edge's daemon)
//!    the router's BGP)        198.18.202.0/24)
//! ```
//!
//! Normal traffic (ping) runs to a customer address throughout; at
//! `--attack-at` a scripted attack (hping3) starts for `--attack-for`
//! seconds. The lab prints a timeline: attack start, detection (asked of the
//! sensor), the rule on the peer (read back with the peer's own CLI), attack
//! end, withdrawal. `--json` prints it as JSON lines for scripts and tests.
//!
//! Addresses are from 198.18.0.0/15 (RFC 2544) and exist only inside these
//! namespaces. The lab refuses to start if any of its names exist, and
//! removes everything it created on exit, Ctrl-C included.

use std::{
    fs,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::{run, util};

const COLLECTOR_ADDR: &str = "198.18.200.2";
const ROUTER_ADDR: &str = "198.18.200.1";
const ROUTER_EDGE_ADDR: &str = "198.18.201.1";
const EDGE_ADDR: &str = "198.18.201.2";
/// The customer block the router hosts (the own network of the lab).
const CUSTOMERS: &str = "198.18.202.0/24";
const VICTIM: &str = "198.18.202.10";

#[derive(clap::Args)]
pub struct LabArgs {
    /// Exporter running in the router namespace.
    #[arg(long, value_enum, default_value_t = Exporter::PmacctSflow)]
    exporter: Exporter,
    /// The attack to play.
    #[arg(long, value_enum, default_value_t = Attack::NtpAmp)]
    attack: Attack,
    /// The BGP daemon standing in for the router.
    #[arg(long, value_enum, default_value_t = Peer::Gobgp)]
    peer: Peer,
    /// How long to run at most, in seconds (the lab ends earlier once the
    /// attack is over and its rule withdrawn).
    #[arg(long, default_value_t = 90)]
    duration: u64,
    /// When the attack starts and how long it lasts, in seconds.
    #[arg(long, default_value_t = 8)]
    attack_at: u64,
    #[arg(long, default_value_t = 15)]
    attack_for: u64,
    /// Sampling rate of the exporter (1 in N packets).
    #[arg(long, default_value_t = 10)]
    sampling: u32,
    /// Names of the lab's namespaces, veths and pins start with this (at
    /// most 12 characters), so labs can run side by side.
    #[arg(long, default_value = "es-lab")]
    prefix: String,
    /// Use this edge-sensor binary instead of building one.
    #[arg(long)]
    sensor_bin: Option<PathBuf>,
    /// The timeline as JSON lines.
    #[arg(long)]
    json: bool,
    /// Run FastNetMon Community beside the sensor on the same sFlow stream
    /// (the sensor passes the datagrams on) with the same threshold, and
    /// put its ban in the timeline.
    #[arg(long)]
    fastnetmon: bool,
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

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
enum Attack {
    /// TCP SYN flood to port 80 from random sources.
    Syn,
    /// UDP flood to port 9999 from random sources.
    Udp,
    /// NTP reflection: UDP from source port 123, 440-byte packets.
    NtpAmp,
    /// ICMP echo flood.
    Icmp,
    /// Fragmented UDP (fragments of 512 bytes).
    Frag,
    /// Carpet bombing: DNS reflection spread over the whole /24.
    Carpet,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Peer {
    Gobgp,
    Bird,
}

/// The lab's names.
struct Names {
    router: String,
    collector: String,
    edge: String,
    /// Router <-> collector veth ends, router <-> edge veth ends.
    rc: String,
    cr: String,
    re: String,
    er: String,
    pins: String,
}

impl Names {
    fn new(prefix: &str) -> Result<Self> {
        if prefix.is_empty()
            || prefix.len() > 12
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            bail!("--prefix {prefix:?}: 1 to 12 letters, digits or '-'");
        }
        Ok(Self {
            router: format!("{prefix}-router"),
            collector: format!("{prefix}-collector"),
            edge: format!("{prefix}-edge"),
            rc: format!("{prefix}-rc"),
            cr: format!("{prefix}-cr"),
            re: format!("{prefix}-re"),
            er: format!("{prefix}-er"),
            pins: format!("/sys/fs/bpf/{prefix}"),
        })
    }

    fn namespaces(&self) -> [&str; 3] {
        [&self.router, &self.collector, &self.edge]
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Everything the lab created; removed on drop, by name, ours only.
struct Lab {
    names: Names,
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
        for ns in self.names.namespaces() {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
        let _ = fs::remove_dir_all(&self.names.pins);
        if std::env::var_os("EDGE_SENSOR_LAB_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
        eprintln!(
            "lab: removed namespaces {}, pins and {}",
            self.names.namespaces().join(", "),
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
    let names = Names::new(&args.prefix)?;
    if args.sensor_bin.is_none() {
        util::setup()?;
    }
    if !util::is_root() {
        bail!("the lab creates network namespaces and loads XDP: run it as root");
    }
    for tool in ["hping3", "ping", args.peer.daemon()] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .map_or(true, |s| !s.success())
        {
            bail!("{tool} is missing: run scripts/setup");
        }
    }
    let bin = match &args.sensor_bin {
        Some(b) => b.clone(),
        None => run::build(false)?,
    };

    let existing =
        String::from_utf8_lossy(&Command::new("ip").args(["netns", "list"]).output()?.stdout)
            .into_owned();
    for ns in names.namespaces() {
        if existing
            .lines()
            .any(|l| l.split_whitespace().next() == Some(ns))
        {
            bail!(
                "namespace {ns} already exists: another lab is running, or remove it with `ip netns del {ns}`"
            );
        }
    }
    if fs::metadata(&names.pins).is_ok() {
        bail!(
            "{} already exists: another lab is running, or remove it",
            names.pins
        );
    }

    // SAFETY: the handler only stores to an atomic.
    unsafe { libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t) };
    let dir = std::env::temp_dir().join(format!(
        "edge-sensor-lab-{}-{}",
        args.prefix,
        std::process::id()
    ));
    fs::create_dir_all(&dir)?;
    let mut lab = Lab {
        names,
        dir,
        children: Vec::new(),
    };
    let mut tl = Timeline::new(args.json);

    topology(&lab.names)?;
    let peer = start_peer(&mut lab, args.peer)?;
    if args.fastnetmon && args.exporter != Exporter::PmacctSflow {
        bail!(
            "--fastnetmon compares on sFlow (--exporter pmacct-sflow): the sensor's daemon owns the flow ports"
        );
    }
    let config = lab.dir.join("edge-sensor.toml");
    fs::write(&config, sensor_config(&lab, args.fastnetmon))?;
    let sensor_log = fs::File::create(lab.dir.join("sensor.log"))?;
    let socket = lab.dir.join("control.sock");
    let sensor = in_ns(&lab.names.collector, bin.to_str().context("binary path")?)
        .args([
            "run",
            "--iface",
            &lab.names.cr,
            "--pin-path",
            &lab.names.pins,
        ])
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(lab.dir.join("state"))
        .arg("--control-socket")
        .arg(&socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(sensor_log)
        .spawn()
        .context("starting edge-sensor")?;
    lab.children.push(("edge-sensor", sensor));
    wait_for_xdp(&mut lab)?;
    tl.note(
        "sensor",
        format!(
            "edge-sensor attached to {} in {}",
            lab.names.cr, lab.names.collector
        ),
        json!({}),
    );

    let bans = lab.dir.join("fastnetmon-bans");
    if args.fastnetmon {
        start_fastnetmon(&mut lab, &bans)?;
        tl.note(
            "fastnetmon",
            "FastNetMon Community on the same sFlow stream".into(),
            json!({}),
        );
    }
    let exporter = start_exporter(&lab, args.exporter, args.sampling)?;
    lab.children.push(("exporter", exporter));
    let traffic = in_ns(&lab.names.edge, "ping")
        .args(["-q", "-i", "0.05", "-s", "500", "-c"])
        .arg((args.duration * 20).to_string())
        .arg(VICTIM)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting ping")?;
    lab.children.push(("traffic", traffic));
    tl.note(
        "ready",
        format!(
            "{} exporting from {} (1:{} sampling); normal traffic: ping {EDGE_ADDR} -> {VICTIM}; \
             peer: {} in {}",
            args.exporter.name(),
            lab.names.router,
            args.sampling,
            args.peer.daemon(),
            lab.names.edge
        ),
        json!({"exporter": args.exporter.name(), "sampling": args.sampling}),
    );

    let ask = |what: &str| -> Option<Value> {
        let out = Command::new(&bin)
            .args([what, "--json", "--socket"])
            .arg(&socket)
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    };
    let attack_at = Duration::from_secs(args.attack_at);
    let attack_end = attack_at + Duration::from_secs(args.attack_for);
    let mut attack: Option<Child> = None;
    let (mut detected, mut ruled, mut ended, mut withdrawn) = (false, false, false, false);
    let mut banned = !args.fastnetmon;
    let mut last_top = Instant::now();
    let end = Instant::now() + Duration::from_secs(args.duration);
    while Instant::now() < end && !INTERRUPTED.load(Ordering::SeqCst) {
        let t = tl.start.elapsed();
        if attack.is_none() && !ended && t >= attack_at {
            attack = Some(args.attack.start(&lab, args.attack_for)?);
            tl.note(
                "attack_started",
                format!("attack {:?} -> {}", args.attack, args.attack.target()),
                json!({"attack": format!("{:?}", args.attack), "target": args.attack.target()}),
            );
        }
        if !ended && t >= attack_end {
            if let Some(mut a) = attack.take() {
                // SAFETY: signalling our own child's process group.
                unsafe { libc::kill(-(a.id() as i32), libc::SIGTERM) };
                let _ = a.wait();
            }
            ended = true;
            tl.note("attack_ended", "attack stopped".into(), json!({}));
        }
        if attack.is_some()
            && !detected
            && let Some(a) = ask("attacks")
            && let Some(first) = a["current"].as_array().and_then(|l| l.first())
        {
            detected = true;
            tl.note(
                "detected",
                format!(
                    "detected {} on {}: {} (covers {:.0}%)",
                    class_name(&first["class"]),
                    first["victim"].as_str().unwrap_or("?"),
                    first["fingerprint"]["match"],
                    first["fingerprint"]["covers_attack"]
                        .as_f64()
                        .unwrap_or(0.0)
                        * 100.0
                ),
                json!({"class": first["class"], "victim": first["victim"],
                    "match": first["fingerprint"]["match"]}),
            );
        }
        if !banned
            && attack.is_some()
            && fs::read_to_string(&bans).is_ok_and(|b| b.contains(" ban"))
        {
            banned = true;
            let line = fs::read_to_string(&bans).unwrap_or_default();
            let first = line.lines().next().unwrap_or("").trim().to_string();
            tl.note(
                "fastnetmon_ban",
                format!("FastNetMon bans: {first}"),
                json!({ "line": first }),
            );
        }
        let rules = peer.rules(&lab.names.edge);
        if !ruled && !rules.is_empty() {
            ruled = true;
            tl.note(
                "rule_on_peer",
                format!("on {}: {}", args.peer.daemon(), rules.join(" | ")),
                json!({"rules": rules}),
            );
        }
        if ruled && ended && !withdrawn && rules.is_empty() {
            withdrawn = true;
            tl.note(
                "withdrawn",
                format!("{} has no rule left", args.peer.daemon()),
                json!({}),
            );
        }
        if withdrawn && (banned || tl.start.elapsed() > attack_end + Duration::from_secs(30)) {
            break;
        }
        if !args.json && last_top.elapsed() >= Duration::from_secs(5) {
            last_top = Instant::now();
            let top = Command::new(&bin)
                .args([
                    "top",
                    "--limit",
                    "3",
                    "--interval",
                    "1",
                    "--pin-path",
                    &lab.names.pins,
                ])
                .output()?;
            print!("{}", String::from_utf8_lossy(&top.stdout));
        }
        if let Some((name, status)) = exited(&mut lab) {
            let log = fs::read_to_string(lab.dir.join("sensor.log")).unwrap_or_default();
            bail!("{name} exited early ({status}); sensor log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if let Some(mut a) = attack.take() {
        // SAFETY: as above.
        unsafe { libc::kill(-(a.id() as i32), libc::SIGTERM) };
        let _ = a.wait();
    }
    tl.summary(args.attack, detected && ruled && withdrawn);
    if INTERRUPTED.load(Ordering::SeqCst) {
        eprintln!("lab: interrupted; cleaning up");
    } else if !(detected && ruled && withdrawn) {
        let log = fs::read_to_string(lab.dir.join("sensor.log")).unwrap_or_default();
        eprintln!("lab: the loop did not complete; sensor log:\n{log}");
    }
    Ok(())
}

fn class_name(c: &Value) -> String {
    match c["port"].as_u64() {
        Some(p) => format!("{} (port {p})", c["type"].as_str().unwrap_or("?")),
        None => c["type"].as_str().unwrap_or("?").to_string(),
    }
}

/// The timeline, as text or JSON lines, with times since the lab started.
struct Timeline {
    json: bool,
    start: Instant,
    at: Vec<(String, f64)>,
}

impl Timeline {
    fn new(json: bool) -> Self {
        Self {
            json,
            start: Instant::now(),
            at: Vec::new(),
        }
    }

    fn note(&mut self, event: &str, text: String, mut data: Value) {
        let t = self.start.elapsed().as_secs_f64();
        self.at.push((event.to_string(), t));
        if self.json {
            data["event"] = json!(event);
            data["t"] = json!(t);
            println!("{data}");
        } else {
            println!("[{t:>7.2}s] {text}");
        }
    }

    fn summary(&self, attack: Attack, complete: bool) {
        let at = |e: &str| self.at.iter().find(|(x, _)| x == e).map(|(_, t)| *t);
        let since = |e: &str| Some(at(e)? - at("attack_started")?);
        let after_end = (|| Some(at("withdrawn")? - at("attack_ended")?))();
        let s = json!({
            "event": "summary",
            "attack": format!("{attack:?}"),
            "complete": complete,
            "detect_s": since("detected"),
            "rule_on_peer_s": since("rule_on_peer"),
            "withdrawn_after_end_s": after_end,
            "fastnetmon_ban_s": since("fastnetmon_ban"),
        });
        if self.json {
            println!("{s}");
        } else {
            let f = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.2} s"));
            println!(
                "summary: detection {} and rule on the peer {} after the attack started; \
                 withdrawn {} after it ended",
                f(&s["detect_s"]),
                f(&s["rule_on_peer_s"]),
                f(&s["withdrawn_after_end_s"])
            );
            if !s["fastnetmon_ban_s"].is_null() {
                println!(
                    "         FastNetMon banned {} after the attack started",
                    f(&s["fastnetmon_ban_s"])
                );
            }
        }
    }
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
                &lab.names.collector,
                "-d",
                "link",
                "show",
                "dev",
                &lab.names.cr,
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

fn topology(n: &Names) -> Result<()> {
    for ns in n.namespaces() {
        ip(&["netns", "add", ns])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
    }
    veth_pair((&n.rc, &n.router), (&n.cr, &n.collector))?;
    veth_pair((&n.re, &n.router), (&n.er, &n.edge))?;
    for (ns, dev, addr) in [
        (&n.router, &n.rc, "198.18.200.1/30"),
        (&n.collector, &n.cr, "198.18.200.2/30"),
        (&n.router, &n.re, "198.18.201.1/24"),
        (&n.edge, &n.er, "198.18.201.2/24"),
    ] {
        ip(&["-n", ns, "addr", "add", addr, "dev", dev])?;
        ip(&["-n", ns, "link", "set", dev, "up"])?;
    }
    // The router forwards between edge and collector and hosts the
    // customer block (every address of it local: AnyIP); attack sources
    // are random, so no reverse-path filter.
    let sysctl = |ns: &str, key: &str, value: &str| {
        util::run(
            in_ns(ns, "sysctl")
                .args(["-qw", &format!("{key}={value}")])
                .stdout(Stdio::null()),
        )
    };
    sysctl(&n.router, "net.ipv4.ip_forward", "1")?;
    for dev in ["all", "default", n.re.as_str(), n.rc.as_str()] {
        sysctl(&n.router, &format!("net.ipv4.conf.{dev}.rp_filter"), "0")?;
    }
    ip(&[
        "-n", &n.router, "route", "add", "local", CUSTOMERS, "dev", "lo",
    ])?;
    ip(&[
        "-n",
        &n.collector,
        "route",
        "add",
        "default",
        "via",
        ROUTER_ADDR,
    ])?;
    ip(&[
        "-n",
        &n.edge,
        "route",
        "add",
        "default",
        "via",
        ROUTER_EDGE_ADDR,
    ])?;
    Ok(())
}

/// A veth pair with one end in each namespace.
fn veth_pair((a, a_ns): (&str, &str), (b, b_ns): (&str, &str)) -> Result<()> {
    let args = [
        "link", "add", a, "netns", a_ns, "type", "veth", "peer", "name", b, "netns", b_ns,
    ];
    ip(&args)
}

impl Attack {
    fn target(self) -> &'static str {
        match self {
            Self::Carpet => "198.18.202.0/24",
            _ => VICTIM,
        }
    }

    /// hping3 from the edge at ~5 kpps (bounded by count) for `secs`.
    fn start(self, lab: &Lab, secs: u64) -> Result<Child> {
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

impl Peer {
    fn daemon(self) -> &'static str {
        match self {
            Self::Gobgp => "gobgpd",
            Self::Bird => "bird",
        }
    }

    /// The rules the daemon holds from us, in its own words (`gobgp -j`,
    /// `birdc show route`).
    fn rules(self, edge: &str) -> Vec<String> {
        match self {
            Self::Gobgp => ["ipv4-flowspec", "ipv4"]
                .iter()
                .flat_map(|family| {
                    let out = in_ns(edge, "gobgp")
                        .args(["-j", "global", "rib", "-a", family])
                        .output();
                    let text = out.map(|o| o.stdout).unwrap_or_default();
                    match serde_json::from_slice::<Value>(&text) {
                        Ok(Value::Object(m)) => m.keys().cloned().collect(),
                        _ => Vec::new(),
                    }
                })
                .collect(),
            Self::Bird => ["flowtab4", "master4"]
                .iter()
                .flat_map(|table| {
                    let out = in_ns(edge, "birdc")
                        .args([
                            "-s",
                            &format!("/run/{edge}-bird.ctl"),
                            "show",
                            "route",
                            "table",
                            table,
                        ])
                        .output();
                    let text = String::from_utf8_lossy(&out.map(|o| o.stdout).unwrap_or_default())
                        .into_owned();
                    text.lines()
                        .filter(|l| l.starts_with("flow4") || l.starts_with("198.18.202."))
                        .map(|l| l.split_whitespace().take(12).collect::<Vec<_>>().join(" "))
                        .collect::<Vec<_>>()
                })
                .collect(),
        }
    }
}

/// FastNetMon Community in the collector namespace (unprivileged), on the
/// sFlow port, banning above 2 kpps (the sensor's UDP threshold), its
/// defaults otherwise (20 packets of evidence, 5 s averages); its notify
/// script records each ban in `bans`.
fn start_fastnetmon(lab: &mut Lab, bans: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = lab.dir.join("fastnetmon");
    fs::create_dir_all(&dir)?;
    // It runs as nobody and writes its files here.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777))?;
    fs::set_permissions(&lab.dir, fs::Permissions::from_mode(0o755))?;
    fs::write(bans, "")?;
    fs::set_permissions(bans, fs::Permissions::from_mode(0o666))?;
    let notify = dir.join("notify.sh");
    fs::write(
        &notify,
        format!(
            "#!/bin/sh\n# ip direction pps action\necho \"$1 $2 $3 $4\" >> {}\n",
            bans.display()
        ),
    )?;
    fs::set_permissions(&notify, fs::Permissions::from_mode(0o755))?;
    let d = dir.display();
    fs::write(dir.join("networks_list"), format!("{CUSTOMERS}\n"))?;
    fs::write(dir.join("networks_whitelist"), "")?;
    fs::write(
        dir.join("fastnetmon.conf"),
        format!(
            "logging_level = info\nlogging_local_syslog_logging = off\n\
             logging_remote_syslog_logging = off\ndisable_usage_report = on\n\
             enable_ban = on\nenable_ban_ipv6 = on\n\
             process_incoming_traffic = on\nprocess_outgoing_traffic = off\n\
             ban_details_records_count = 20\nban_time = 1900\nunban_only_if_attack_finished = on\n\
             networks_list_path = {d}/networks_list\nwhite_list_path = {d}/networks_whitelist\n\
             check_period = 1\nenable_connection_tracking = on\n\
             ban_for_pps = on\nban_for_bandwidth = off\nban_for_flows = off\nthreshold_pps = 2000\n\
             mirror_afpacket = off\nmirror_afxdp = off\npcap = off\nnetflow = off\n\
             sflow = on\nsflow_port = 6343\nsflow_host = 0.0.0.0\n\
             average_calculation_time = 5\nspeed_calculation_delay = 1\n\
             exabgp = off\ngobgp = off\ninfluxdb = off\ngraphite = off\n\
             monitor_local_ip_addresses = off\n\
             cli_stats_file_path = {d}/fastnetmon.dat\ncli_stats_ipv6_file_path = {d}/fastnetmon_ipv6.dat\n\
             enable_api = off\nprometheus = off\nnotify_script_path = {notify}\n",
            notify = notify.display()
        ),
    )?;
    let log = fs::File::create(dir.join("stderr.log"))?;
    let child = in_ns(&lab.names.collector, "setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg("/usr/sbin/fastnetmon")
        .arg("--configuration_file")
        .arg(dir.join("fastnetmon.conf"))
        .arg("--log_file")
        .arg(dir.join("fastnetmon.log"))
        .arg("--disable_pid_logic")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting fastnetmon")?;
    lab.children.push(("fastnetmon", child));
    Ok(())
}

/// The BGP daemon in the edge namespace, passive, waiting for the sensor.
fn start_peer(lab: &mut Lab, peer: Peer) -> Result<Peer> {
    let log = fs::File::create(lab.dir.join("peer.log"))?;
    let child = match peer {
        Peer::Gobgp => {
            let conf = lab.dir.join("gobgpd.toml");
            let families = ["ipv4-unicast", "ipv4-flowspec"]
                .iter()
                .map(|f| {
                    format!(
                        "[[neighbors.afi-safis]]\n  [neighbors.afi-safis.config]\n    afi-safi-name = \"{f}\"\n"
                    )
                })
                .collect::<String>();
            fs::write(
                &conf,
                format!(
                    "[global.config]\n  as = 65000\n  router-id = \"{EDGE_ADDR}\"\n  port = 179\n  \
                     local-address-list = [\"{EDGE_ADDR}\"]\n\n[[neighbors]]\n  [neighbors.config]\n    \
                     neighbor-address = \"{COLLECTOR_ADDR}\"\n    peer-as = 65001\n  \
                     [neighbors.transport.config]\n    passive-mode = true\n    local-address = \"{EDGE_ADDR}\"\n  \
                     [neighbors.ebgp-multihop.config]\n    enabled = true\n    multihop-ttl = 4\n{families}"
                ),
            )?;
            let mut cmd = in_ns(&lab.names.edge, "gobgpd");
            cmd.arg("-f")
                .arg(&conf)
                .args(["--api-hosts", "127.0.0.1:50051", "--pprof-disable"]);
            cmd
        }
        Peer::Bird => {
            let conf = lab.dir.join("bird.conf");
            fs::write(
                &conf,
                format!(
                    "log stderr all;\nrouter id {EDGE_ADDR};\nipv4 table master4;\nflow4 table flowtab4;\n\
                     protocol device {{ }}\nprotocol bgp sensor {{\n  local {EDGE_ADDR} port 179 as 65000;\n  \
                     neighbor {COLLECTOR_ADDR} as 65001;\n  passive on;\n  multihop;\n  \
                     ipv4 {{ import all; export none; }};\n  \
                     flow4 {{ table flowtab4; import all; export none; }};\n}}\n"
                ),
            )?;
            let mut cmd = in_ns(&lab.names.edge, "bird");
            cmd.arg("-f")
                .arg("-c")
                .arg(&conf)
                .arg("-s")
                .arg(format!("/run/{}-bird.ctl", lab.names.edge));
            cmd
        }
    }
    .stdin(Stdio::null())
    .stdout(log.try_clone()?)
    .stderr(log)
    .spawn()
    .with_context(|| format!("starting {}", peer.daemon()))?;
    lab.children.push(("peer", child));
    Ok(peer)
}

/// The sensor's configuration in the lab: the customer block is the own
/// network; thresholds sized for hping3's ~5 kpps at 1:10.
fn sensor_config(lab: &Lab, pass_telemetry: bool) -> String {
    format!(
        r#"[daemon]
metrics_listen = "127.0.0.1:9810"

[telemetry]
pass_telemetry = {pass_telemetry}

[detect]
own_networks = ["{CUSTOMERS}"]
poll_interval = "1s"
smoothing = "1s"
action = "flowspec_then_blackhole"
[detect.thresholds]
all = {{ pps = 4000 }}
tcp_syn = {{ pps = 1500 }}
udp = {{ pps = 2000 }}
icmp = {{ pps = 1500 }}
fragment = {{ pps = 1500 }}
[detect.aggregate]
all = {{ pps = 3000 }}
udp = {{ pps = 2000 }}
[detect.release]
ratio = 0.5
min_duration = "3s"
hold = "3s"

[mitigation]
min_hold = "10s"
escalate_after = "10m"
event_log = "{events}"

[bgp]
router_id = "{COLLECTOR_ADDR}"
local_asn = 65001
announce_within = ["{CUSTOMERS}"]
[[bgp.peers]]
name = "router"
address = "{EDGE_ADDR}"
local_address = "{COLLECTOR_ADDR}"
peer_asn = 65000
hold_time = 9
connect_retry = 1
connect_retry_max = 2
families = ["ipv4-flowspec", "ipv4-unicast"]
next_hop_v4 = "192.0.2.254"
"#,
        events = lab.dir.join("events.jsonl").display()
    )
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
