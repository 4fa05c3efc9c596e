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
//! With `--exporter player-sflow` or `player-ipfix` the router's exporter
//! is the traffic-model player (`edge-sensor-play`, tests/player) instead
//! of pmacct and hping3: a few hundred customers of the block with normal
//! traffic, sampled 1:`--sampling`, and a UDP flood of `--flood-pps` on the
//! victim from `--attack-at` for `--attack-for`, played in real time as
//! sFlow or IPFIX datagrams to the collector. The sensor then has an
//! operator's thresholds (100 kpps per host, 50 kpps UDP).
//!
//! Addresses are from 198.18.0.0/15 (RFC 2544) and exist only inside these
//! namespaces. The lab refuses to start if any of its names exist, and
//! removes everything it created on exit, Ctrl-C included.
//!
//! `--sensors N` (N > 1) adds N - 1 routers and collectors, a namespace
//! the traffic starts in behind the edge, a management LAN, a route
//! reflector and N NATS nodes: see `cluster.rs`.
//!
//! This file has the arguments, the clean-up guard and the scenario;
//! `topology.rs` builds the network, `traffic.rs` runs the attack and the
//! exporter (or the player), `peers.rs` the BGP peer (and FastNetMon), `sensor.rs` the
//! sensor, `timeline.rs` prints what happened.

mod cluster;
mod peers;
mod sensor;
mod timeline;
mod topology;
mod traffic;

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
use peers::{start_fastnetmon, start_peer};
use sensor::{sensor_config, wait_for_xdp};
use timeline::Timeline;
use topology::topology;
pub(crate) use traffic::build_player;
use traffic::{start_exporter, start_normal_traffic};

const COLLECTOR_ADDR: &str = "198.18.200.2";
const ROUTER_ADDR: &str = "198.18.200.1";
const ROUTER_EDGE_ADDR: &str = "198.18.201.1";
const EDGE_ADDR: &str = "198.18.201.2";
/// The customer block the router hosts (the own network of the lab).
const CUSTOMERS: &str = "198.18.202.0/24";
const VICTIM: &str = "198.18.202.10";
/// Player modes: customers with normal traffic (the first addresses of
/// the block, the victim among them), their packets per second in all, and
/// the sensor's UDP threshold (FastNetMon's too).
const PLAYER_HOSTS: u32 = 250;
const PLAYER_NORMAL_PPS: u32 = 20_000;
const PLAYER_UDP_PPS: u32 = 50_000;

#[derive(clap::Args)]
pub struct LabArgs {
    /// Exporter running in the router namespace (in each router's).
    #[arg(long, value_enum, default_value_t = Exporter::PmacctSflow)]
    exporter: Exporter,
    /// The attack to play.
    #[arg(long, value_enum, default_value_t = Attack::NtpAmp)]
    attack: Attack,
    /// The BGP daemon standing in for the router (for each router with
    /// `--sensors` > 1).
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
    /// Player modes: the UDP flood's rate at full strength, in packets per
    /// second (`--attack` is for the hping3 modes).
    #[arg(long, default_value_t = 1_000_000)]
    flood_pps: u64,
    /// Player modes: the flood's linear ramp from 0, in seconds.
    #[arg(long, default_value_t = 0.0)]
    flood_ramp: f64,
    /// Player modes: use this edge-sensor-play binary instead of building
    /// one (release).
    #[arg(long)]
    player_bin: Option<PathBuf>,
    /// How many sensors: more than one run as a cluster (issue 17), as
    /// many routers, each with its own exporter, BGP speaker and sensor
    /// (the edge spreads the traffic over the routers), a node of a
    /// JetStream cluster each, and a route reflector (gobgpd) that the
    /// sensors peer with and that passes the rules to every router; each
    /// in its own namespace. The checks: the flood, under the threshold at
    /// every sensor, is mitigated network-wide by exactly one rule; the
    /// owner stopped, another sensor takes it over. pmacct/softflowd
    /// exporters and hping3 attacks other than carpet.
    #[arg(long, default_value_t = 1)]
    sensors: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Exporter {
    /// pmacct `pmacctd` with the sfprobe plugin: sFlow v5 to port 6343.
    PmacctSflow,
    /// pmacct `pmacctd` with the nfprobe plugin: IPFIX to port 4739.
    PmacctIpfix,
    /// softflowd: IPFIX to port 4739.
    SoftflowdIpfix,
    /// The traffic-model player as an sFlow v5 agent (no hping3, no ping).
    PlayerSflow,
    /// The traffic-model player as an IPFIX exporter (no hping3, no ping).
    PlayerIpfix,
}

impl Exporter {
    fn is_player(self) -> bool {
        matches!(self, Self::PlayerSflow | Self::PlayerIpfix)
    }

    /// Whether FastNetMon can listen beside the sensor: on sFlow only.
    fn is_sflow(self) -> bool {
        matches!(self, Self::PmacctSflow | Self::PlayerSflow)
    }
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
    /// `--sensors` beyond the first: their sites (see [`cluster`]).
    more: Vec<Site>,
    /// `--sensors` > 1: the namespaces the cluster adds besides the sites.
    cluster: Option<ClusterNames>,
}

/// Site `k` (2, 3, ...) of `--sensors`: its collector's namespace, the
/// veth ends on its router's and on the collector's side, its pins; its
/// router's namespace, the router's veth to the edge and the edge's end of
/// it.
struct Site {
    ns: String,
    router_end: String,
    end: String,
    pins: String,
    router: String,
    uplink: String,
    edge_end: String,
}

/// `--sensors` > 1: where the traffic comes from (`inet`, behind the edge,
/// which spreads it over the routers), the management LAN (a bridge in
/// `lan`), the route reflector's namespace and the NATS nodes'.
struct ClusterNames {
    inet: String,
    /// The inet's veth to the edge, and the edge's end of it.
    inet_end: String,
    edge_inet: String,
    lan: String,
    rr: String,
    nats: Vec<String>,
}

impl Names {
    fn new(prefix: &str, sensors: usize) -> Result<Self> {
        if prefix.is_empty()
            || prefix.len() > 12
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            bail!("--prefix {prefix:?}: 1 to 12 letters, digits or '-'");
        }
        if !(1..=cluster::MAX_SENSORS).contains(&sensors) {
            bail!("--sensors {sensors}: 1 to {}", cluster::MAX_SENSORS);
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
            // Veth names: at most 15 characters with a 12-character prefix.
            more: (2..=sensors)
                .map(|k| Site {
                    ns: format!("{prefix}-collector{k}"),
                    router_end: format!("{prefix}-r{k}"),
                    end: format!("{prefix}-c{k}"),
                    pins: format!("/sys/fs/bpf/{prefix}-{k}"),
                    router: format!("{prefix}-router{k}"),
                    uplink: format!("{prefix}-u{k}"),
                    edge_end: format!("{prefix}-e{k}"),
                })
                .collect(),
            cluster: (sensors > 1).then(|| ClusterNames {
                inet: format!("{prefix}-inet"),
                inet_end: format!("{prefix}-in"),
                edge_inet: format!("{prefix}-ei"),
                lan: format!("{prefix}-lan"),
                rr: format!("{prefix}-rr"),
                nats: (1..=sensors).map(|k| format!("{prefix}-nats{k}")).collect(),
            }),
        })
    }

    fn namespaces(&self) -> Vec<&str> {
        let mut ns = vec![self.router.as_str(), &self.collector, &self.edge];
        for s in &self.more {
            ns.extend([s.router.as_str(), &s.ns]);
        }
        if let Some(c) = &self.cluster {
            ns.extend([c.inet.as_str(), &c.lan, &c.rr]);
            ns.extend(c.nats.iter().map(String::as_str));
        }
        ns
    }

    fn all_pins(&self) -> Vec<&str> {
        let mut pins = vec![self.pins.as_str()];
        pins.extend(self.more.iter().map(|c| c.pins.as_str()));
        pins
    }

    /// Where the normal traffic and the attack come from, and its
    /// interface: the edge itself with one router; with several, the inet
    /// behind the edge (the edge forwards, spreading it over the routers).
    fn sources(&self) -> (&str, &str) {
        match &self.cluster {
            Some(c) => (&c.inet, &c.inet_end),
            None => (&self.edge, &self.er),
        }
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
        for pins in self.names.all_pins() {
            let _ = fs::remove_dir_all(pins);
        }
        // BIRD's control sockets (`peers.rs`), if it left them.
        for ns in self.names.namespaces() {
            let _ = fs::remove_file(peers::bird_socket(ns));
        }
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
    let names = Names::new(&args.prefix, args.sensors)?;
    if args.sensors > 1 {
        cluster::refuse(&args)?;
    }
    if args.sensor_bin.is_none() {
        util::setup()?;
    }
    if !util::is_root() {
        bail!("the lab creates network namespaces and loads XDP: run it as root");
    }
    let tools: &[&str] = if args.exporter.is_player() {
        &[]
    } else if args.sensors > 1 {
        &["hping3", "ping", "nats-server", "gobgp"]
    } else {
        &["hping3", "ping"]
    };
    for tool in tools.iter().chain([&args.peer.daemon()]) {
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
    let player = match (&args.player_bin, args.exporter.is_player()) {
        (Some(b), true) => Some(b.clone()),
        (None, true) => Some(build_player()?),
        (_, false) => None,
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
    for pins in names.all_pins() {
        if fs::metadata(pins).is_ok() {
            bail!("{pins} already exists: another lab is running, or remove it");
        }
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
    if args.sensors > 1 {
        return cluster::run(&args, &mut lab, &bin, tl);
    }
    let peer = start_peer(&mut lab, args.peer, COLLECTOR_ADDR)?;
    if args.fastnetmon && !args.exporter.is_sflow() {
        bail!(
            "--fastnetmon compares on sFlow (--exporter pmacct-sflow or player-sflow): the sensor's \
             daemon owns the flow ports"
        );
    }
    let config = lab.dir.join("edge-sensor.toml");
    fs::write(
        &config,
        sensor_config(&lab, args.fastnetmon, args.exporter.is_player()),
    )?;
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
        let threshold = if args.exporter.is_player() {
            PLAYER_UDP_PPS
        } else {
            2000
        };
        start_fastnetmon(&mut lab, &bans, threshold)?;
        tl.note(
            "fastnetmon",
            format!("FastNetMon Community on the same sFlow stream, threshold_pps = {threshold}"),
            json!({ "threshold_pps": threshold }),
        );
    }
    // Player modes: the real instant the player started (its scenario's
    // time zero), in seconds of the timeline, once it runs.
    let mut played_from: Option<f64> = None;
    if let Some(player) = &player {
        let scenario = lab.dir.join("scenario.toml");
        fs::write(&scenario, traffic::player_scenario(&args))?;
        let child = traffic::start_player(&lab, player, &scenario)?;
        // After exec (spawn returns once the program is running): what is
        // left before the player's clock starts is parsing the scenario and
        // building its model, a few milliseconds, which only makes the
        // times measured from it longer.
        played_from = Some(tl.start.elapsed().as_secs_f64());
        lab.children.push(("traffic", child));
        tl.note(
            "ready",
            format!(
                "{} from {} (1:{} sampling): {} customers of {CUSTOMERS} at {PLAYER_NORMAL_PPS} pps \
                 in all; UDP flood of {} pps on {VICTIM} at {}s for {}s; peer: {} in {}",
                args.exporter.name(),
                lab.names.router,
                args.sampling,
                PLAYER_HOSTS,
                args.flood_pps,
                args.attack_at,
                args.attack_for,
                args.peer.daemon(),
                lab.names.edge
            ),
            json!({"exporter": args.exporter.name(), "sampling": args.sampling,
                "flood_pps": args.flood_pps, "flood_ramp_s": args.flood_ramp}),
        );
    } else {
        let exporter = start_exporter(&lab, args.exporter, args.sampling)?;
        lab.children.push(("exporter", exporter));
        let traffic = start_normal_traffic(&lab, args.duration)?;
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
    }

    let ask = |what: &str| -> Option<Value> {
        let out = Command::new(&bin)
            .args([what, "--json", "--socket"])
            .arg(&socket)
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    };
    // The player's flood starts at its scenario's time, from when the
    // player started; hping3 starts when the loop starts it.
    let attack_at =
        Duration::from_secs_f64(played_from.unwrap_or(0.0)) + Duration::from_secs(args.attack_at);
    let attack_end = attack_at + Duration::from_secs(args.attack_for);
    let mut attack: Option<Child> = None;
    let mut attacking = false;
    let (mut detected, mut ruled, mut ended, mut withdrawn) = (false, false, false, false);
    let mut banned = !args.fastnetmon;
    let mut last_top = Instant::now();
    let end = Instant::now() + Duration::from_secs(args.duration);
    while Instant::now() < end && !INTERRUPTED.load(Ordering::SeqCst) {
        let t = tl.start.elapsed();
        if !attacking && !ended && t >= attack_at {
            attacking = true;
            if player.is_some() {
                // The flood's first packets are due at attack_at: that is
                // when it started, however late the loop looks.
                tl.note_at(
                    attack_at.as_secs_f64(),
                    "attack_started",
                    format!("UDP flood of {} pps -> {VICTIM}", args.flood_pps),
                    json!({"attack": "udp_flood", "target": VICTIM, "pps": args.flood_pps,
                        "ramp_s": args.flood_ramp}),
                );
            } else {
                attack = Some(args.attack.start(&lab, args.attack_for)?);
                tl.note(
                    "attack_started",
                    format!("attack {:?} -> {}", args.attack, args.attack.target()),
                    json!({"attack": format!("{:?}", args.attack), "target": args.attack.target()}),
                );
            }
        }
        if !ended && t >= attack_end {
            if let Some(a) = attack.take() {
                stop_attack(a);
            }
            attacking = false;
            ended = true;
            if player.is_some() {
                tl.note_at(
                    attack_end.as_secs_f64(),
                    "attack_ended",
                    "flood over".into(),
                    json!({}),
                );
            } else {
                tl.note("attack_ended", "attack stopped".into(), json!({}));
            }
        }
        if attacking
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
        if !banned && attacking && fs::read_to_string(&bans).is_ok_and(|b| b.contains(" ban")) {
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
            // `top` as an operator would run it now: its MIT column must
            // see the mitigation (it asks the lab daemon's socket).
            let out = top(&bin, &lab.names.pins, &socket, true).output()?;
            let rows: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            let mitigated: Vec<String> = rows["destinations"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| {
                    let mark = match d["mitigated"].as_bool() {
                        Some(true) => "*",
                        Some(false) => "",
                        None => "?",
                    };
                    format!("{}{mark}", d["ip"].as_str().unwrap_or("?"))
                })
                .collect();
            tl.note(
                "top",
                format!("top while the rule is on: {}", mitigated.join(" ")),
                json!({"destinations": rows["destinations"]}),
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
            let top = top(&bin, &lab.names.pins, &socket, false).output()?;
            print!("{}", String::from_utf8_lossy(&top.stdout));
        }
        if let Some((name, status)) = exited(&mut lab) {
            let log = fs::read_to_string(lab.dir.join("sensor.log")).unwrap_or_default();
            bail!("{name} exited early ({status}); sensor log:\n{log}");
        }
        // Waiting for the detection, the rule or the ban, look often: the
        // times are only as fine as this.
        let waiting = attacking && !(detected && ruled && banned);
        std::thread::sleep(Duration::from_millis(if waiting { 50 } else { 200 }));
    }
    if let Some(a) = attack.take() {
        stop_attack(a);
    }
    let label = if player.is_some() {
        format!("udp-flood-{}pps", args.flood_pps)
    } else {
        format!("{:?}", args.attack)
    };
    tl.summary(&label, detected && ruled && withdrawn);
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

/// The first child that exited before its time: any daemon, or a traffic
/// generator that failed (one that finished its count is fine).
/// Stops an attack (hping3 or the player) with its process group, and
/// reaps it.
fn stop_attack(mut attack: std::process::Child) {
    // SAFETY: signalling our own child's process group.
    unsafe { libc::kill(-(attack.id() as i32), libc::SIGTERM) };
    let _ = attack.wait();
}

fn exited(lab: &mut Lab) -> Option<(&'static str, std::process::ExitStatus)> {
    lab.children.iter_mut().find_map(|(name, child)| {
        let status = child.try_wait().ok().flatten()?;
        (*name != "traffic" || !status.success()).then_some((*name, status))
    })
}

/// `edge-sensor top` on the lab's pins, asking the lab daemon's control
/// socket for the MIT column (without `--socket` it asks the machine's
/// default one, and shows `?` for every destination).
fn top(bin: &std::path::Path, pins: &str, socket: &std::path::Path, json: bool) -> Command {
    let mut c = Command::new(bin);
    c.args(["top", "--limit", "3", "--interval", "1", "--pin-path", pins])
        .arg("--socket")
        .arg(socket);
    if json {
        c.arg("--json");
    }
    c
}
