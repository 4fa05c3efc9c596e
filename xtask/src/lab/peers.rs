//! The BGP peer standing in for the router (gobgpd or BIRD), the rules read
//! back with its own CLI, and FastNetMon Community as the comparison.

use std::{fs, process::Stdio};

use anyhow::{Context, Result};
use serde_json::Value;

use super::{CUSTOMERS, EDGE_ADDR, Lab, Peer, in_ns};

impl Peer {
    pub(super) fn daemon(self) -> &'static str {
        match self {
            Self::Gobgp => "gobgpd",
            Self::Bird => "bird",
        }
    }

    /// The rules the daemon in namespace `ns` holds from us, in its own
    /// words (`gobgp -j`, `birdc show route`).
    pub(super) fn rules(self, ns: &str) -> Vec<String> {
        match self {
            Self::Gobgp => ["ipv4-flowspec", "ipv4"]
                .iter()
                .flat_map(|family| {
                    let out = in_ns(ns, "gobgp")
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
                    let out = in_ns(ns, "birdc")
                        .args(["-s", &bird_socket(ns), "show", "route", "table", table])
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

/// BIRD's control socket when it runs in namespace `ns`.
pub(super) fn bird_socket(ns: &str) -> String {
    format!("/run/{ns}-bird.ctl")
}

/// FastNetMon Community in the collector namespace (unprivileged), on the
/// sFlow port, banning above `threshold_pps` (the sensor's UDP threshold:
/// 2 kpps for hping3, 50 kpps for the player), its defaults otherwise (20
/// packets of evidence, 5 s averages); its notify script records each ban
/// in `bans`.
pub(super) fn start_fastnetmon(
    lab: &mut Lab,
    bans: &std::path::Path,
    threshold_pps: u32,
) -> Result<()> {
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
             ban_for_pps = on\nban_for_bandwidth = off\nban_for_flows = off\nthreshold_pps = {threshold_pps}\n\
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

/// The BGP daemon in the edge namespace, passive, waiting for the sensor
/// (AS 65001) at `neighbor`: the collector's address (one sensor).
pub(super) fn start_peer(lab: &mut Lab, peer: Peer, neighbor: &str) -> Result<Peer> {
    let edge = lab.names.edge.clone();
    start_peer_in(lab, peer, &edge, EDGE_ADDR, neighbor, "")
}

/// The BGP daemon standing in for a router's BGP: in namespace `ns`, AS
/// 65000, router id and local address `local`, passive, waiting for AS
/// 65001 at `neighbor` (the sensor, or the route reflector with
/// `--sensors` > 1: one daemon per router). `tag` tells its files apart.
pub(super) fn start_peer_in(
    lab: &mut Lab,
    peer: Peer,
    ns: &str,
    local: &str,
    neighbor: &str,
    tag: &str,
) -> Result<Peer> {
    let log = fs::File::create(lab.dir.join(format!("peer{tag}.log")))?;
    let child = match peer {
        Peer::Gobgp => {
            let conf = lab.dir.join(format!("gobgpd{tag}.toml"));
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
                    "[global.config]\n  as = 65000\n  router-id = \"{local}\"\n  port = 179\n  \
                     local-address-list = [\"{local}\"]\n\n[[neighbors]]\n  [neighbors.config]\n    \
                     neighbor-address = \"{neighbor}\"\n    peer-as = 65001\n  \
                     [neighbors.transport.config]\n    passive-mode = true\n    local-address = \"{local}\"\n  \
                     [neighbors.ebgp-multihop.config]\n    enabled = true\n    multihop-ttl = 4\n{families}"
                ),
            )?;
            let mut cmd = in_ns(ns, "gobgpd");
            cmd.arg("-f")
                .arg(&conf)
                .args(["--api-hosts", "127.0.0.1:50051", "--pprof-disable"]);
            cmd
        }
        Peer::Bird => {
            let conf = lab.dir.join(format!("bird{tag}.conf"));
            fs::write(
                &conf,
                format!(
                    "log stderr all;\nrouter id {local};\nipv4 table master4;\nflow4 table flowtab4;\n\
                     protocol device {{ }}\nprotocol bgp sensor {{\n  local {local} port 179 as 65000;\n  \
                     neighbor {neighbor} as 65001;\n  passive on;\n  multihop;\n  \
                     ipv4 {{ import all; export none; }};\n  \
                     flow4 {{ table flowtab4; import all; export none; }};\n}}\n"
                ),
            )?;
            let mut cmd = in_ns(ns, "bird");
            cmd.arg("-f")
                .arg("-c")
                .arg(&conf)
                .arg("-s")
                .arg(bird_socket(ns));
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
