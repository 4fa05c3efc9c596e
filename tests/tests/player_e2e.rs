//! The whole loop on the traffic-model player's datagrams: the player
//! (tests/player) plays a network's normal traffic and a 1 Mpps UDP flood
//! on one host, sampled 1:1000, as an sFlow agent in real time from a
//! router namespace; the sensor (XDP on the collector's veth, an operator's
//! thresholds, the default confidence) detects it and announces a Flow Spec
//! rule to gobgpd over a real BGP session; the rule is read back with
//! gobgpd's CLI while the flood lasts and must be withdrawn after it.
//!
//! The time to the rule is printed, not asserted: speed targets live in the
//! benchmarks (`cargo xtask bench`, `cargo xtask lab --exporter
//! player-sflow`), never in timed tests.

use std::{
    ffi::OsStr,
    net::IpAddr,
    os::unix::process::CommandExt,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use edge_sensor_tests::{
    Guarded, PinDir,
    bgp::{Gobgpd, gobgpd_config, sensor_bgp_section, wait_for},
    netns::{Link, start_sensor_with},
    patience, player_bin, require_root, require_tool, sensor_bin, unique_name,
};
use serde_json::Value;

/// The scenario's times, in seconds from the player's start: the flood
/// starts late enough for the sensor's first polls, and the background
/// plays on after it so the withdrawal happens under normal traffic.
const FLOOD_AT: f64 = 5.0;
const FLOOD_FOR: f64 = 15.0;
const PLAY_FOR: f64 = 60.0;
/// Hosts of the link's /24 with normal traffic; the victim is one of them.
const HOSTS: u32 = 250;
const VICTIM_HOST: u8 = 10;

struct Setup<'l> {
    link: &'l Link,
    _pin: PinDir,
    dir: PathBuf,
    gobgp: Gobgpd<'l>,
    sensor: Option<Guarded>,
    victim: IpAddr,
}

impl<'l> Setup<'l> {
    fn new(link: &'l Link) -> Self {
        let gobgp = Gobgpd::start(
            &link.b,
            &gobgpd_config(
                65001,
                "[neighbors.transport.config]\n    passive-mode = true",
            ),
        );
        let dir = std::env::temp_dir().join(unique_name("es-pl-"));
        std::fs::create_dir_all(&dir).unwrap();
        let own = own_network(link);
        // The thresholds of the detection experiments (tests/detection),
        // an operator's: FastNetMon's all-traffic default is 20 kpps.
        std::fs::write(
            dir.join("sensor.toml"),
            format!(
                r#"
[detect]
own_networks = ["{own}"]
poll_interval = "1s"
[detect.thresholds]
all = {{ pps = 100000, bps = "1G" }}
tcp_syn = {{ pps = 20000 }}
udp = {{ pps = 50000 }}
icmp = {{ pps = 10000 }}
fragment = {{ pps = 10000 }}
[detect.release]
ratio = 0.5
min_duration = "2s"
hold = "3s"

[mitigation]
min_hold = "5s"
event_log = "{events}"

{bgp}"#,
                events = dir.join("events.jsonl").display(),
                bgp = sensor_bgp_section(&own, ""),
            ),
        )
        .unwrap();
        let pin = PinDir::new();
        let config = dir.join("sensor.toml");
        let sensor = start_sensor_with(
            &link.b,
            &link.b_if,
            pin.path(),
            &dir.join("sensor.log"),
            &[OsStr::new("--config"), config.as_os_str()],
        );
        let IpAddr::V4(b) = link.b_addr else {
            unreachable!()
        };
        let o = b.octets();
        Self {
            link,
            _pin: pin,
            dir,
            gobgp,
            sensor: Some(sensor),
            victim: IpAddr::from([o[0], o[1], o[2], VICTIM_HOST]),
        }
    }

    /// The scenario: the /24's first [`HOSTS`] addresses with 20 kpps of
    /// normal traffic in all, one sFlow agent at 1:1000, and the flood.
    fn scenario(&self) -> PathBuf {
        let path = self.dir.join("scenario.toml");
        std::fs::write(
            &path,
            format!(
                r#"seed = 16
duration_s = {PLAY_FOR:?}

[[routers]]
name = "router"
agent = "{agent}"
format = "sflow"
sampling_rate = 1000

[hosts]
count = {HOSTS}
prefix = "{own}"
total_pps = 20000.0

[[attacks]]
id = "flood"
vector = "udp_flood"
target = "{victim}"
start_s = {FLOOD_AT:?}
duration_s = {FLOOD_FOR:?}
pps = 1000000.0
sources = 50000
"#,
                agent = self.link.a_addr,
                own = own_network(self.link),
                victim = self.victim,
            ),
        )
        .unwrap();
        path
    }

    /// The player in the router namespace, sending to the collector.
    fn play(&self, scenario: &std::path::Path) -> Guarded {
        let log = std::fs::File::create(self.dir.join("player.log")).unwrap();
        self.link
            .a
            .command(player_bin())
            .arg(scenario)
            .arg("--sflow")
            .arg(format!("{}:6343", self.link.b_addr))
            .arg("--ipfix")
            .arg(format!("{}:4739", self.link.b_addr))
            .arg("--bind")
            .arg(format!("{}:0", self.link.a_addr))
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .map(Guarded)
            .expect("start edge-sensor-play")
    }

    /// Every flow spec rule gobgpd holds (gobgp's text of each NLRI).
    fn rules(&self) -> Vec<String> {
        self.gobgp.rib("ipv4-flowspec").keys().cloned().collect()
    }

    fn ask(&self, command: &str) -> Value {
        let out = self
            .link
            .b
            .command(sensor_bin())
            .args([command, "--json", "--socket"])
            .arg(self.dir.join("sensor.sock"))
            .output()
            .expect("run edge-sensor");
        assert!(
            out.status.success(),
            "{command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON")
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    /// What a failure needs: the rules, the events and the logs.
    fn story(&self) -> String {
        format!(
            "rules: {:?}\nevents:\n{}\nplayer: {}\nsensor log:\n{}",
            self.rules(),
            self.log("events.jsonl"),
            self.log("player.log"),
            self.log("sensor.log")
        )
    }
}

impl Drop for Setup<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.sensor.take() {
            s.stop(libc::SIGTERM);
        }
        self.gobgp.stop(libc::SIGTERM);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `link`'s /24: the own network here.
fn own_network(link: &Link) -> String {
    let IpAddr::V4(b) = link.b_addr else {
        unreachable!()
    };
    let o = b.octets();
    format!("{}.{}.{}.0/24", o[0], o[1], o[2])
}

#[test]
fn a_1_mpps_flood_at_1_1000_from_the_player_gets_one_rule_for_its_victim_only() {
    require_root();
    for tool in ["gobgpd", "gobgp"] {
        require_tool(tool);
    }
    player_bin();
    let link = Link::new();
    let setup = Setup::new(&link);
    // The session first: the time to the rule is the detection's and the
    // announcement's, not the session's set-up.
    let up = wait_for(patience(Duration::from_secs(30)), || {
        (setup.ask("bgp")["peers"][0]["state"] == "established").then_some(())
    });
    assert!(up.is_some(), "no BGP session: {}", setup.story());

    let scenario = setup.scenario();
    let mut play = setup.play(&scenario);
    // The player's clock starts when it runs (after exec, once its model is
    // built: milliseconds, which only add to the time measured here).
    let flood_start = Instant::now() + Duration::from_secs_f64(FLOOD_AT);
    let flood_end = flood_start + Duration::from_secs_f64(FLOOD_FOR);
    let victim_rule = format!("[destination: {}/32]", setup.victim);

    // Until the flood ends: at most one rule at any time, and only ever
    // for the victim; the first one's time is printed.
    let mut first: Option<(Duration, String)> = None;
    while Instant::now() < flood_end {
        let rules = setup.rules();
        assert!(
            rules.len() <= 1 && rules.iter().all(|r| r.starts_with(&victim_rule)),
            "one rule, for {} only: {}",
            setup.victim,
            setup.story()
        );
        if first.is_none()
            && let Some(rule) = rules.first()
        {
            let took = Instant::now().saturating_duration_since(flood_start);
            eprintln!("player e2e: rule on gobgpd {took:?} after the flood started: {rule}");
            first = Some((took, rule.clone()));
        }
        if let Ok(Some(status)) = play.0.try_wait() {
            panic!(
                "the player exited during the flood ({status}): {}",
                setup.story()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, rule) = first.unwrap_or_else(|| {
        panic!(
            "no flow spec rule on gobgpd while the flood lasted: {}",
            setup.story()
        )
    });
    assert!(rule.contains("[protocol: ==udp]"), "{rule}");
    let attacks = setup.ask("attacks");
    assert_eq!(
        attacks["current"][0]["victim"],
        format!("{}/32", setup.victim),
        "{attacks}"
    );
    assert_eq!(
        attacks["current"][0]["class"]["type"], "udp_flood",
        "{attacks}"
    );
    assert_eq!(
        attacks["current"].as_array().map(Vec::len),
        Some(1),
        "one attack: {attacks}"
    );
    // No blackhole for anyone (the action is Flow Spec).
    assert!(setup.gobgp.rib("ipv4").is_empty(), "{}", setup.story());

    // The flood is over, the background plays on: the rule goes (release
    // hold 3 s after the rate falls, 5 s of minimum hold, polls).
    let gone = wait_for(patience(Duration::from_secs(25)), || {
        let rules = setup.rules();
        assert!(
            rules.iter().all(|r| r.starts_with(&victim_rule)),
            "a rule for another host: {}",
            setup.story()
        );
        rules.is_empty().then_some(())
    });
    assert!(
        gone.is_some(),
        "the rule was not withdrawn after the flood: {}",
        setup.story()
    );
    assert!(
        setup.ask("attacks")["current"]
            .as_array()
            .is_some_and(Vec::is_empty),
        "{}",
        setup.story()
    );
    let events = setup.log("events.jsonl");
    for e in ["mitigation_announced", "mitigation_withdrawn"] {
        assert!(events.contains(e), "{e}: {}", setup.story());
    }
    // Still playing the background (it runs past the withdrawal).
    assert!(
        play.0.try_wait().ok().flatten().is_none(),
        "the player ended early: {}",
        setup.story()
    );
}
