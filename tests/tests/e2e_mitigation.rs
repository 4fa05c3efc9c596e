//! The whole loop in namespaces, with real parts: hping3 floods from a
//! router namespace, pmacct's sfprobe there exports sFlow of it, the sensor
//! (XDP on the collector's veth) detects and fingerprints the attack and
//! announces a Flow Spec rule to gobgpd (standing in for the router) over a
//! real BGP session; the rule is read back with gobgpd's own CLI, and
//! withdrawn when the flood is over. Also: a sensor killed with SIGKILL
//! mid-attack and restarted keeps the mitigation; a router restart gets it
//! back; a flood to an address outside the own networks announces nothing.
//! And the main case again on the userspace collector (`--mode userspace`,
//! what runs when the kernel refuses the program): no XDP at all.

use std::{
    ffi::OsStr,
    net::IpAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use edge_sensor_tests::{
    Guarded, PinDir,
    bgp::{Gobgpd, gobgpd_config, sensor_bgp_section, wait_for},
    netns::{Link, start_sensor_userspace, start_sensor_with},
    require_root, require_tool, sensor_bin, unique_name,
};
use serde_json::Value;

/// The time the loop gets from flood start to the rule on the router: the
/// exporter's own delays (pmacct sends every second or so) plus two polls,
/// with margin for a loaded CI machine.
const RULE_WITHIN: Duration = Duration::from_secs(20);

/// The HTTP API's write token in these tests.
const API_TOKEN: &str = "e2e-token-0123456789abcdef";

struct Lab<'l> {
    link: &'l Link,
    pin: PinDir,
    dir: PathBuf,
    gobgp: Gobgpd<'l>,
    sensor: Option<Guarded>,
    probe: Option<Guarded>,
    victim: IpAddr,
    /// The sensor runs the userspace collector instead of XDP.
    userspace: bool,
}

/// The tools first, then the namespaces.
fn link() -> Link {
    require_root();
    for tool in ["gobgpd", "gobgp", "pmacctd", "hping3"] {
        require_tool(tool);
    }
    Link::new()
}

impl<'l> Lab<'l> {
    fn new(link: &'l Link) -> Self {
        Self::with(link, false)
    }

    fn with(link: &'l Link, userspace: bool) -> Self {
        let own = own_network(link);
        Self::with_networks(link, userspace, &format!("own_networks = [\"{own}\"]"))
    }

    /// `networks`: the `[detect]` lines that say what the own networks
    /// are (`bgp.announce_within` stays the link's /24).
    fn with_networks(link: &'l Link, userspace: bool, networks: &str) -> Self {
        let gobgp = Gobgpd::start(
            &link.b,
            &gobgpd_config(
                65001,
                "[neighbors.transport.config]\n    passive-mode = true\n  \
                 [neighbors.graceful-restart.config]\n    enabled = true\n    restart-time = 60",
            )
            .replace(
                "    afi-safi-name = \"ipv4-flowspec\"\n",
                "    afi-safi-name = \"ipv4-flowspec\"\n  \
                 [neighbors.afi-safis.mp-graceful-restart.config]\n    enabled = true\n",
            ),
        );
        let dir = std::env::temp_dir().join(unique_name("es-e2e-"));
        std::fs::create_dir_all(&dir).unwrap();
        // The HTTP API's write token: root's alone.
        let token = dir.join("api-token");
        std::fs::write(&token, format!("{API_TOKEN}\n")).unwrap();
        std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let own = own_network(link);
        std::fs::write(
            dir.join("sensor.toml"),
            format!(
                r#"
[daemon]
metrics_listen = "127.0.0.1:9810"
api_token_file = "{token}"

[detect]
{networks}
poll_interval = "1s"
smoothing = "1s"
[detect.thresholds]
all = {{ pps = 3000 }}
udp = {{ pps = 1500 }}
[detect.release]
ratio = 0.5
min_duration = "2s"
hold = "3s"

[mitigation]
min_hold = "5s"
event_log = "{events}"

{bgp}"#,
                events = dir.join("events.jsonl").display(),
                token = token.display(),
                bgp = sensor_bgp_section(
                    &own,
                    "graceful_restart = 60\n[bgp.peers.flowspec]\ndialect = \"gobgp\"\n"
                ),
            ),
        )
        .unwrap();
        let victim = link.b_addr;
        let mut lab = Self {
            link,
            pin: PinDir::new(),
            dir,
            gobgp,
            sensor: None,
            probe: None,
            victim,
            userspace,
        };
        lab.start_sensor();
        lab.start_probe();
        lab
    }

    fn start_sensor(&mut self) {
        let config = self.dir.join("sensor.toml");
        let mut args = vec![OsStr::new("--config"), config.as_os_str()];
        let start = if self.userspace {
            args.extend([OsStr::new("--mode"), OsStr::new("userspace")]);
            start_sensor_userspace
        } else {
            start_sensor_with
        };
        self.sensor = Some(start(
            &self.link.b,
            &self.link.b_if,
            self.pin.path(),
            &self.dir.join("sensor.log"),
            &args,
        ));
    }

    /// pmacct's sfprobe on the router's veth, 1 in 10 packets.
    fn start_probe(&mut self) {
        let config = format!(
            "daemonize: false\npcap_interface: {}\npcap_filter: not udp port 6343 and not tcp port 179\n\
             sampling_rate: 10\nplugins: sfprobe\nsfprobe_receiver: {}:6343\n\
             sfprobe_agentip: {}\n",
            self.link.a_if, self.link.b_addr, self.link.a_addr
        );
        self.probe = Some(self.link.a.start_pmacctd(&self.dir, &config));
    }

    /// hping3 at ~5 kpps for `secs` seconds (bounded by count) to `dst`
    /// with `kind` options, in the background.
    fn hping3(&self, dst: IpAddr, secs: u64, kind: &[&str]) -> Guarded {
        let count = (5000 * secs).to_string();
        let mut args = vec!["-q", "-i", "u200", "-c", &count];
        args.extend_from_slice(kind);
        let dst = dst.to_string();
        args.push(&dst);
        self.link.a.spawn("hping3", args)
    }

    /// An NTP-amplification-like flood: UDP from port 123, 400 bytes.
    fn flood(&self, dst: IpAddr, secs: u64) -> Guarded {
        self.hping3(
            dst,
            secs,
            &["--udp", "-s", "123", "-k", "-p", "5555", "-d", "400"],
        )
    }

    /// A SYN flood to port 80 from random sources.
    fn syn_flood(&self, dst: IpAddr, secs: u64) -> Guarded {
        self.hping3(dst, secs, &["-S", "-p", "80", "--rand-source"])
    }

    /// The gobgpd flow spec rules for `dst`.
    fn rules_for(&self, dst: IpAddr) -> Vec<(String, Value)> {
        self.gobgp
            .rib("ipv4-flowspec")
            .into_iter()
            .filter(|(k, _)| k.contains(&format!("destination: {dst}/32")))
            .collect()
    }

    fn ask(&self, command: &str) -> Value {
        self.ask_with(&[command])
    }

    /// `edge-sensor ARGS --json --socket S`, asserting success.
    fn ask_with(&self, args: &[&str]) -> Value {
        let command = args.join(" ");
        let out = self
            .link
            .b
            .command(sensor_bin())
            .args(args)
            .args(["--json", "--socket"])
            .arg(self.dir.join("sensor.sock"))
            .output()
            .expect("run edge-sensor");
        assert!(
            out.status.success(),
            "{command}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        // The documented schema of each read-only command's answer.
        if let [cmd] = args
            && ["status", "attacks", "mitigations", "bgp"].contains(cmd)
        {
            edge_sensor_tests::assert_json_schema(cmd, &doc);
        }
        doc
    }

    /// One HTTP request to the daemon's listener (in the collector
    /// namespace): the status code and the body.
    fn http(&self, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
        let raw = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n")),
            body.len()
        );
        let response = self.link.b.run(move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect("127.0.0.1:9810").expect("HTTP listener");
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(raw.as_bytes()).unwrap();
            let mut text = String::new();
            let _ = s.read_to_string(&mut text);
            text
        });
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_string();
        (status, body)
    }

    /// The daemon's Prometheus exposition (in the collector namespace).
    fn metrics(&self) -> String {
        self.link.b.run(|| {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect("127.0.0.1:9810").expect("metrics endpoint");
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut text = String::new();
            let _ = s.read_to_string(&mut text);
            text
        })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sensor.log")).unwrap_or_default()
    }

    /// The event log's entries named `name`, in order.
    fn events_named(&self, name: &str) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["event"] == name)
            .collect()
    }

    fn events(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|v| v["event"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// Waits for the rule for the victim; returns it and how long it took.
    fn wait_rule(&self, since: Instant, within: Duration) -> (String, Duration) {
        let rule = wait_for(within, || self.rules_for(self.victim).into_iter().next());
        let took = since.elapsed();
        let (key, _) = rule.unwrap_or_else(|| {
            panic!(
                "no flow spec rule for {} on gobgpd within {within:?}\nevents: {:?}\nrib: {}\nlog:\n{}",
                self.victim,
                self.events(),
                self.gobgp.cli(&["global", "rib", "-a", "ipv4-flowspec"]),
                self.log()
            )
        });
        (key, took)
    }

    fn wait_no_rule(&self, within: Duration) {
        let gone = wait_for(within, || {
            self.rules_for(self.victim).is_empty().then_some(())
        });
        assert!(
            gone.is_some(),
            "the rule was not withdrawn within {within:?}\nevents: {:?}\nlog:\n{}",
            self.events(),
            self.log()
        );
    }
}

impl Drop for Lab<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.probe.take() {
            p.stop(libc::SIGTERM);
        }
        if let Some(s) = self.sensor.take() {
            s.stop(libc::SIGTERM);
        }
        self.gobgp.stop(libc::SIGTERM);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `link`'s /24: the own network of these tests.
fn own_network(link: &Link) -> String {
    let IpAddr::V4(b) = link.b_addr else {
        unreachable!()
    };
    let o = b.octets();
    format!("{}.{}.{}.0/24", o[0], o[1], o[2])
}

#[test]
fn a_flood_gets_a_precise_rule_on_the_router_which_goes_when_the_flood_ends() {
    let link = link();
    let lab = Lab::new(&link);
    let start = Instant::now();
    let flood = lab.flood(lab.victim, 12);
    let (rule, took) = lab.wait_rule(start, RULE_WITHIN);
    eprintln!("e2e: rule on gobgpd {took:?} after the flood started: {rule}");
    assert!(rule.contains("protocol: ==udp"), "{rule}");
    assert!(rule.contains("source-port: ==123"), "{rule}");
    // Flow Spec packet length is the IP length (RFC 8955 §4.2.2.10): 20 +
    // 8 + 400 bytes of data, not the 442-byte frame sFlow describes.
    assert!(
        !rule.contains("packet-length") || rule.contains("packet-length: ==428"),
        "{rule}"
    );
    // The action: traffic-rate-bytes 0 (extended community 0x8006), discard.
    let path = &lab.rules_for(lab.victim)[0].1;
    let discard = path[0]["attrs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["type"] == 16)
        .flat_map(|a| a["value"].as_array().cloned().unwrap_or_default())
        .any(|c| c["type"] == 128 && c["subtype"] == 6 && c["rate"] == 0);
    assert!(discard, "a discard action: {path}");
    let attacks = lab.ask("attacks");
    let current = &attacks["current"][0];
    assert_eq!(current["victim"], format!("{}/32", lab.victim), "{attacks}");
    assert_eq!(
        current["class"],
        serde_json::json!({"type": "udp_amplification", "port": 123}),
        "{attacks}"
    );
    let mitigations = lab.ask("mitigations");
    assert_eq!(mitigations["mitigations"][0]["kind"], "flowspec");
    // The rule sent to the router, per its dialect: GoBGP takes it as it is.
    let sent = &mitigations["mitigations"][0]["sent"][0];
    assert_eq!(sent["peer"], "gobgp", "{mitigations}");
    assert_eq!(sent["dialect"], "gobgp", "{mitigations}");
    assert_eq!(sent["route"], mitigations["mitigations"][0]["route"]);
    assert_eq!(sent["changes"], serde_json::json!([]), "{mitigations}");
    // The daemon's metrics: the mitigation, the peer, the victim's rate.
    let metrics = lab.metrics();
    let victim = format!("{}", lab.victim);
    let line = |prefix: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(prefix) && l.contains(&victim))
            .map(str::to_owned)
    };
    assert!(line("edge_sensor_mitigation{").is_some(), "{metrics}");
    assert!(
        metrics.contains("edge_sensor_bgp_peer_established{peer=\"gobgp\"} 1"),
        "{metrics}"
    );
    let pps = line("edge_sensor_destination_pps{")
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no rate for the victim: {metrics}"));
    assert!(pps > 1000.0, "victim at {pps} pps: {metrics}");
    assert!(
        metrics.contains("edge_sensor_map_entries{map=\"DST_STATS\"}"),
        "map fill levels: {metrics}"
    );
    assert!(metrics.contains("edge_sensor_xdp_programs 1"), "{metrics}");
    let bgp = lab.ask("bgp");
    let peer = &bgp["peers"][0];
    assert_eq!(peer["state"], "established", "{bgp}");
    assert!(peer["uptime_secs"].as_u64().is_some(), "{bgp}");
    let families = peer["negotiated"]["families"].to_string();
    assert!(families.contains("ipv4-flowspec"), "{bgp}");
    assert!(peer["routes_announced"].as_u64() >= Some(1), "{bgp}");

    flood.stop(libc::SIGTERM);
    // Release hold 3 s + minimum attack 2 s + min_hold 5 s from the start,
    // plus polls.
    lab.wait_no_rule(Duration::from_secs(30));
    let events = lab.events();
    for e in [
        "attack_started",
        "mitigation_announced",
        "attack_ended",
        "mitigation_withdrawn",
    ] {
        assert!(events.iter().any(|x| x == e), "{e} in {events:?}");
    }
    assert!(
        lab.ask("mitigations")["mitigations"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn on_the_userspace_collector_a_flood_gets_the_same_precise_rule() {
    let link = link();
    let lab = Lab::with(&link, true);
    assert!(
        !lab.link.b.has_xdp(&lab.link.b_if),
        "no XDP in userspace mode"
    );
    let status = lab.ask("status");
    assert_eq!(status["fast_path"]["mode"], "userspace", "{status}");
    assert_eq!(
        status["fast_path"]["reason"], "xdp.mode = userspace",
        "{status}"
    );
    let start = Instant::now();
    let flood = lab.flood(lab.victim, 12);
    let (rule, took) = lab.wait_rule(start, RULE_WITHIN);
    eprintln!("e2e (userspace): rule on gobgpd {took:?} after the flood started: {rule}");
    // As narrow as behind XDP: the collector streams the watched samples.
    assert!(rule.contains("protocol: ==udp"), "{rule}");
    assert!(rule.contains("source-port: ==123"), "{rule}");
    let attacks = lab.ask("attacks");
    assert_eq!(
        attacks["current"][0]["class"],
        serde_json::json!({"type": "udp_amplification", "port": 123}),
        "{attacks}"
    );
    let metrics = lab.metrics();
    assert!(
        metrics.contains("edge_sensor_fast_path{mode=\"userspace\"} 1")
            && metrics.contains("edge_sensor_fast_path{mode=\"xdp\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.lines().any(|l| l
            .starts_with("edge_sensor_watch_samples_total{what=\"streamed\"}")
            && !l.ends_with(" 0")),
        "samples of the victim streamed: {metrics}"
    );
    // The collector's counts, in status and in the pinned maps (`top`).
    let status = lab.ask("status");
    assert!(
        status["telemetry"]["datagrams"].as_u64() > Some(0),
        "{status}"
    );
    let top = lab.ask_with(&["top", "--pin-path", &lab.pin.path().display().to_string()]);
    assert!(
        top["destinations"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| d["ip"] == lab.victim.to_string()),
        "the victim in top: {top}"
    );
    flood.stop(libc::SIGTERM);
    lab.wait_no_rule(Duration::from_secs(30));
}

#[test]
fn a_sensor_killed_mid_attack_keeps_its_mitigation_and_withdraws_it_later() {
    let link = link();
    let mut lab = Lab::new(&link);
    let start = Instant::now();
    let flood = lab.flood(lab.victim, 40);
    lab.wait_rule(start, RULE_WITHIN);
    // SIGKILL: no shutdown at all; graceful restart keeps the rule (stale).
    let sensor = lab.sensor.take().unwrap();
    sensor.stop(libc::SIGKILL);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !lab.rules_for(lab.victim).is_empty(),
        "gobgpd dropped the rule while the sensor was away"
    );
    lab.start_sensor();
    // Restored from the state file and announced again (no longer stale).
    let fresh = wait_for(RULE_WITHIN, || {
        lab.rules_for(lab.victim)
            .into_iter()
            .find(|(_, paths)| paths[0]["stale"] != true)
    });
    assert!(fresh.is_some(), "not re-announced: {}", lab.log());
    assert!(lab.events().iter().any(|e| e == "mitigation_restored"));
    flood.stop(libc::SIGTERM);
    lab.wait_no_rule(Duration::from_secs(90));
}

#[test]
fn a_router_restart_gets_the_rule_back_and_outside_addresses_get_nothing() {
    let link = link();
    let mut lab = Lab::new(&link);
    // An address on the collector outside the own networks (198.19/16 is
    // not the test's /24), reachable from the router.
    let IpAddr::V4(b) = lab.victim else {
        unreachable!()
    };
    let x = b.octets()[2];
    lab.link.b.ip(&[
        "addr",
        "add",
        &format!("198.19.{x}.2/24"),
        "dev",
        &lab.link.b_if,
    ]);
    lab.link.a.ip(&[
        "addr",
        "add",
        &format!("198.19.{x}.1/24"),
        "dev",
        &lab.link.a_if,
    ]);
    let outside: IpAddr = format!("198.19.{x}.2").parse().unwrap();
    let flood = lab.flood(outside, 8);
    std::thread::sleep(Duration::from_secs(10));
    flood.stop(libc::SIGTERM);
    assert!(
        lab.gobgp.rib("ipv4-flowspec").is_empty() && lab.gobgp.rib("ipv4").is_empty(),
        "announced for an address outside the own networks"
    );
    assert!(lab.ask("attacks")["current"].as_array().unwrap().is_empty());

    let start = Instant::now();
    let flood = lab.flood(lab.victim, 40);
    lab.wait_rule(start, RULE_WITHIN);
    lab.gobgp.restart();
    let back = wait_for(Duration::from_secs(60), || {
        lab.rules_for(lab.victim).into_iter().next()
    });
    assert!(
        back.is_some(),
        "not re-announced after the router restarted: {}",
        lab.log()
    );
    flood.stop(libc::SIGTERM);
    lab.wait_no_rule(Duration::from_secs(60));
}

#[test]
fn a_syn_flood_from_random_sources_is_classified_and_filtered_on_its_flags() {
    let link = link();
    let lab = Lab::new(&link);
    let start = Instant::now();
    let flood = lab.syn_flood(lab.victim, 12);
    let (rule, took) = lab.wait_rule(start, RULE_WITHIN);
    eprintln!("e2e: SYN flood rule on gobgpd {took:?} after the flood started: {rule}");
    assert!(rule.contains("protocol: ==tcp"), "{rule}");
    assert!(rule.contains("destination-port: ==80"), "{rule}");
    assert!(rule.contains("tcp-flags"), "{rule}");
    assert!(
        !rule.contains("source:"),
        "random sources: no source prefix: {rule}"
    );
    let attacks = lab.ask("attacks");
    assert_eq!(
        attacks["current"][0]["class"]["type"], "tcp_syn_flood",
        "{attacks}"
    );
    flood.stop(libc::SIGTERM);
    lab.wait_no_rule(Duration::from_secs(30));
}

/// Blackholes on gobgpd for `ip` (IPv4 unicast with 65535:666).
fn blackholes(lab: &Lab<'_>, ip: IpAddr) -> Vec<Value> {
    lab.gobgp
        .rib("ipv4")
        .into_iter()
        .filter(|(k, _)| k == &format!("{ip}/32"))
        .map(|(_, v)| v)
        .collect()
}

#[test]
fn the_operator_bans_unbans_reloads_and_stops_without_losing_rules() {
    let link = link();
    let mut lab = Lab::new(&link);
    let established = || lab.ask("bgp")["peers"][0]["established_count"].clone();
    assert!(
        wait_for(RULE_WITHIN, || (lab.ask("bgp")["peers"][0]["state"]
            == "established")
            .then_some(()))
        .is_some(),
        "no session: {}",
        lab.log()
    );
    let sessions = established();
    // Flap protection: nothing quarantined on a router that behaves; the
    // operator's commands answer.
    assert_eq!(lab.ask("bgp")["peers"][0]["flap"]["quarantined"], 0);
    let quarantine = lab.ask_with(&["bgp", "--quarantine"]);
    assert_eq!(quarantine["configured"], true, "{quarantine}");
    assert!(
        quarantine["quarantine"]
            .as_object()
            .is_some_and(|q| q.values().all(|l| l.as_array().is_some_and(Vec::is_empty))),
        "{quarantine}"
    );
    let peer = lab.ask("bgp")["peers"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let cleared = lab.ask_with(&["bgp", "clear-quarantine", &peer]);
    assert_eq!(cleared["cleared"], serde_json::json!([]), "{cleared}");
    // A manual blackhole: on the router at once, with the RTBH community.
    let other: IpAddr = match lab.victim {
        IpAddr::V4(v) => {
            let o = v.octets();
            IpAddr::from([o[0], o[1], o[2], 77])
        }
        IpAddr::V6(_) => unreachable!(),
    };
    let ban = lab.ask_with(&["ban", &other.to_string(), "--blackhole", "--for", "10m"]);
    let id = ban["mitigation"]["id"].as_u64().expect("an id");
    let held = wait_for(RULE_WITHIN, || {
        let b = blackholes(&lab, other);
        (!b.is_empty()).then_some(b)
    })
    .unwrap_or_else(|| panic!("no blackhole on gobgpd: {}", lab.log()));
    // BLACKHOLE 65535:666 (RFC 7999) as gobgp shows it: a 32-bit number.
    let blackhole_community = (65535u64 << 16) | 666;
    let communities = held[0][0]["attrs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["type"] == 8)
        .flat_map(|a| a["communities"].as_array().cloned().unwrap_or_default())
        .collect::<Vec<_>>();
    assert!(
        communities.contains(&Value::from(blackhole_community)),
        "RTBH community: {held:?}"
    );
    // A manual filter, then unbanned by address.
    lab.ask_with(&[
        "ban",
        &lab.victim.to_string(),
        "--flowspec",
        "proto udp src-port 53 len 100-1500",
    ]);
    let (rule, _) = lab.wait_rule(Instant::now(), RULE_WITHIN);
    assert!(rule.contains("source-port: ==53"), "{rule}");
    lab.ask_with(&["unban", &lab.victim.to_string()]);
    lab.wait_no_rule(RULE_WITHIN);
    // Refused: outside the own networks.
    let out = lab
        .link
        .b
        .command(sensor_bin())
        .args(["ban", "198.51.100.1", "--blackhole", "--socket"])
        .arg(lab.dir.join("sensor.sock"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("outside the own networks"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // SIGHUP with a new policy (dry run): the session and the ban stay.
    let config = lab.dir.join("sensor.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("[mitigation]\n", "[mitigation]\ndry_run = true\n"),
    )
    .unwrap();
    let pid = lab.ask("status")["pid"].as_i64().unwrap() as i32;
    // SAFETY: signalling the sensor we started.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    assert!(
        wait_for(RULE_WITHIN, || lab.ask("mitigations")["dry_run"]
            .as_bool()
            .filter(|d| *d))
        .is_some(),
        "not reloaded: {}",
        lab.log()
    );
    assert_eq!(established(), sessions, "the BGP session was not reset");
    assert_eq!(lab.ask("mitigations")["mitigations"][0]["id"], id);
    assert!(!blackholes(&lab, other).is_empty());
    // A flood now is detected but announces nothing.
    let flood = lab.flood(lab.victim, 8);
    assert!(
        wait_for(RULE_WITHIN, || (!lab.ask("attacks")["current"]
            .as_array()
            .unwrap()
            .is_empty())
        .then_some(()))
        .is_some()
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(lab.rules_for(lab.victim).is_empty(), "dry run announced");
    flood.stop(libc::SIGTERM);

    // SIGTERM: the rules stay on the router (graceful restart: stale).
    lab.sensor.take().unwrap().stop(libc::SIGTERM);
    let kept = wait_for(RULE_WITHIN, || {
        let b = blackholes(&lab, other);
        b.first().filter(|p| p[0]["stale"] == true).cloned()
    });
    assert!(
        kept.is_some(),
        "the blackhole did not stay: {:?}",
        blackholes(&lab, other)
    );
}

/// Another system's rule over the victim (issue 15): gobgpd announces a
/// discard for the victim before the flood; the daemon holds it in its
/// Adj-RIB-In (`rib flowspec`), `attacks` and the event log say it covers
/// the attack, and our own, narrower rule still goes out.
#[test]
fn a_foreign_rule_covering_the_victim_is_shown_and_logged() {
    let link = link();
    let lab = Lab::new(&link);
    let foreign = format!("{}/32", lab.victim);
    lab.gobgp.cli(&[
        "global",
        "rib",
        "add",
        "-a",
        "ipv4-flowspec",
        "match",
        "destination",
        &foreign,
        "then",
        "discard",
    ]);
    let received = wait_for(RULE_WITHIN, || {
        let rib = lab.ask_with(&["rib", "flowspec"]);
        (rib["flowspec"].as_array().map(Vec::len) == Some(1)).then_some(rib)
    })
    .unwrap_or_else(|| panic!("the daemon never held gobgpd's rule: {}", lab.log()));
    let row = &received["flowspec"][0];
    assert_eq!(row["peer"], "gobgp", "{received}");
    assert_eq!(row["destination"], foreign, "{received}");
    // eBGP from AS 65000, left-most: RFC 9117 §4.2 holds, b.1/c are not
    // checked by a sensor.
    assert_eq!(row["validation"]["state"], "unvalidated", "{received}");
    assert_eq!(received["ours"], serde_json::json!([]), "{received}");
    let bgp = lab.ask("bgp");
    assert_eq!(bgp["peers"][0]["rib_in"]["flowspec_rules"], 1, "{bgp}");
    let metrics = wait_for(RULE_WITHIN, || {
        let m = lab.metrics();
        m.lines()
            .any(|l| {
                l.starts_with("edge_sensor_bgp_peer_received{")
                    && l.contains("kind=\"flowspec_rules\"")
                    && l.ends_with(" 1")
            })
            .then_some(m)
    });
    assert!(metrics.is_some(), "{}", lab.metrics());

    let flood = lab.flood(lab.victim, 12);
    let attacks = wait_for(RULE_WITHIN, || {
        let a = lab.ask("attacks");
        (a["current"][0]["covered_by"].as_array().map(Vec::len) == Some(1)).then_some(a)
    })
    .unwrap_or_else(|| panic!("no covered_by: {}", lab.ask("attacks")));
    assert_eq!(attacks["current"][0]["covered_by"][0]["peer"], "gobgp");
    // Ours is narrower (protocol, ports): announced, beside gobgpd's.
    let ours = wait_for(RULE_WITHIN, || {
        let rib = lab.ask_with(&["rib", "flowspec"]);
        (rib["ours"].as_array().map(Vec::len) == Some(1)).then_some(rib)
    })
    .unwrap_or_else(|| panic!("no rule of ours: {}", lab.log()));
    assert!(
        ours["ours"][0]["rule"]
            .as_str()
            .unwrap()
            .contains("proto ==17"),
        "{ours}"
    );
    let events = lab.events();
    assert!(
        events.iter().any(|e| e == "attack_covered_elsewhere"),
        "{events:?}"
    );
    flood.stop(libc::SIGTERM);
}

/// Issue 15: own networks from BGP. The sensor's configured own network
/// does not hold the victim; gobgpd (the router) announces the victim's
/// /24 tagged 65000:100, and a tagged prefix outside `announce_within`.
/// The /24 becomes an own network and a flood on it gets its rule; the
/// other is refused. Withdrawn, the /24 is no longer ours: the rule goes at
/// once although the flood goes on, and nothing is announced again.
#[test]
fn own_networks_follow_tagged_routes_from_bgp() {
    let link = link();
    let lab = Lab::with_networks(
        &link,
        false,
        "own_networks = [\"192.0.2.0/24\"]\n\
         networks_from_bgp = [{ peer = \"gobgp\", community = \"65000:100\" }]",
    );
    let customer = own_network(&link);
    let add = |prefix: &str, community: &str| {
        lab.gobgp.cli(&[
            "global",
            "rib",
            "add",
            "-a",
            "ipv4",
            prefix,
            "community",
            community,
        ]);
    };
    add(&customer, "65000:100");
    add("203.0.113.0/24", "65000:100");
    add("198.51.100.0/24", "65000:999");
    let learnt = wait_for(RULE_WITHIN, || {
        lab.events_named("own_networks_from_bgp")
            .into_iter()
            .find(|e| {
                e["added"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|n| n == &Value::from(customer.clone())))
            })
    })
    .unwrap_or_else(|| panic!("the tagged route was not learnt\n{}", lab.log()));
    // Inside the ceiling only; the untagged route is not taken at all.
    assert_eq!(learnt["added"], serde_json::json!([customer]), "{learnt}");
    assert_eq!(
        learnt["outside_announce_within"],
        serde_json::json!(["203.0.113.0/24"]),
        "{learnt}"
    );

    let start = Instant::now();
    let flood = lab.flood(lab.victim, 30);
    let (rule, took) = lab.wait_rule(start, RULE_WITHIN);
    eprintln!("e2e: rule on gobgpd {took:?} after the flood started: {rule}");
    assert!(rule.contains("protocol: ==udp"), "{rule}");

    // The route goes while the flood goes on.
    lab.gobgp
        .cli(&["global", "rib", "del", "-a", "ipv4", &customer]);
    lab.wait_no_rule(Duration::from_secs(10));
    let removed = lab.events_named("own_networks_from_bgp");
    assert!(
        removed
            .iter()
            .any(|e| e["removed"] == serde_json::json!([customer])),
        "{removed:?}"
    );
    let withdrawn = lab.events_named("mitigation_withdrawn");
    assert!(
        withdrawn
            .iter()
            .any(|e| e["reason"] == "outside the own networks"),
        "{withdrawn:?}"
    );
    // Still flooding, no longer ours: nothing comes back.
    std::thread::sleep(Duration::from_secs(5));
    assert!(lab.rules_for(lab.victim).is_empty(), "{}", lab.log());
    assert!(
        lab.ask("attacks")["current"]
            .as_array()
            .is_some_and(Vec::is_empty)
    );
    flood.stop(libc::SIGTERM);
}

/// Issue 15: the HTTP API. Reads answer what the control socket answers;
/// a ban through `POST /api/v1/routes` with the token puts the rule on the
/// router through the same checks, `DELETE` takes it away; without the
/// token, or outside the own networks, nothing happens.
#[test]
fn the_http_api_reads_and_bans_with_its_token() {
    let link = link();
    let lab = Lab::new(&link);
    let up = wait_for(RULE_WITHIN, || {
        let (code, body) = lab.http("GET", "/api/v1/bgp", None, "");
        (code == 200 && body.contains("\"established\"")).then_some(body)
    });
    assert!(up.is_some(), "{}", lab.log());
    let (code, rib) = lab.http("GET", "/api/v1/rib?family=ipv4-unicast&limit=10", None, "");
    assert_eq!(code, 200, "{rib}");
    let rib: Value = serde_json::from_str(&rib).unwrap();
    assert!(rib["routes"].is_array(), "{rib}");

    let ban = format!(
        r#"{{"ip":"{}","flowspec":"proto udp dst-port 5555","duration_secs":600}}"#,
        lab.victim
    );
    let (code, body) = lab.http("POST", "/api/v1/routes", None, &ban);
    assert_eq!(code, 401, "{body}");
    assert!(lab.rules_for(lab.victim).is_empty());
    let outside = r#"{"ip":"203.0.113.9","blackhole":true}"#;
    let (code, body) = lab.http("POST", "/api/v1/routes", Some(API_TOKEN), outside);
    assert_eq!(code, 400, "outside the own networks: {body}");

    let (code, body) = lab.http("POST", "/api/v1/routes", Some(API_TOKEN), &ban);
    assert_eq!(code, 200, "{body}");
    let rule = wait_for(RULE_WITHIN, || lab.rules_for(lab.victim).into_iter().next())
        .unwrap_or_else(|| panic!("no rule after the API's ban: {}", lab.log()));
    assert!(rule.0.contains("destination-port: ==5555"), "{}", rule.0);
    let (code, mitigations) = lab.http("GET", "/api/v1/mitigations", None, "");
    assert_eq!(code, 200);
    let m: Value = serde_json::from_str(&mitigations).unwrap();
    assert_eq!(m["mitigations"][0]["manual"], true, "{m}");

    let path = format!("/api/v1/routes/{}", lab.victim);
    let (code, body) = lab.http("DELETE", &path, Some(API_TOKEN), "");
    assert_eq!(code, 200, "{body}");
    lab.wait_no_rule(RULE_WITHIN);
}

/// Issue 19: the live web view, read by headless Chromium (Debian's
/// `chromium`) from the collector's namespace during an attack: the page
/// shows the victim, its fingerprint and the rule as sent to the router,
/// and the BGP session up. The screenshot is kept with the test's
/// artifacts (target/test-artifacts/web-view.png).
#[test]
fn the_web_view_shows_the_attack_and_its_rule_in_chromium() {
    require_tool("chromium");
    let link = link();
    let lab = Lab::new(&link);
    let start = Instant::now();
    let flood = lab.flood(lab.victim, 30);
    let (rule, _) = lab.wait_rule(start, RULE_WITHIN);
    let profile = lab.dir.join("chromium-profile");
    let chromium = |extra: &[&str]| {
        let out = lab
            .link
            .b
            .command("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--virtual-time-budget=4000",
                "--window-size=1280,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg("http://127.0.0.1:9810/")
            .output()
            .expect("run chromium");
        assert!(
            out.status.success(),
            "chromium: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let dom = chromium(&["--dump-dom"]);
    let victim = format!("{}/32", lab.victim);
    let attacks = dom
        .split("id=\"attacks\"")
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .unwrap_or_else(|| panic!("no attacks table: {dom}"));
    assert!(
        attacks.contains(&victim),
        "the victim in the attacks: {attacks}"
    );
    assert!(attacks.contains("udp_amplification 123"), "{attacks}");
    let mitigations = dom
        .split("id=\"mitigations\"")
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .unwrap_or_default();
    // The rule as gobgpd holds it, as sent to it.
    assert!(mitigations.contains("gobgp"), "{mitigations}");
    assert!(mitigations.contains("then discard"), "{mitigations}");
    assert!(
        mitigations.contains(&format!("dst {}/32", lab.victim)),
        "{mitigations}\ngobgpd: {rule}"
    );
    assert!(dom.contains(">established<"), "the session: {dom}");

    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("web-view.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&[&format!("--screenshot={}", shot.display())]);
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    flood.stop(libc::SIGTERM);
}
