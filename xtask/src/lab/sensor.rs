//! The sensor in the lab: its configuration, and the wait for its XDP
//! program to attach.

use std::{
    fs,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};

use super::{COLLECTOR_ADDR, CUSTOMERS, EDGE_ADDR, Lab, PLAYER_UDP_PPS, exited};

/// The thresholds for hping3's ~5 kpps at 1:10.
const HPING3_THRESHOLDS: &str = r#"[detect.thresholds]
all = { pps = 4000 }
tcp_syn = { pps = 1500 }
udp = { pps = 2000 }
icmp = { pps = 1500 }
fragment = { pps = 1500 }
[detect.aggregate]
all = { pps = 3000 }
udp = { pps = 2000 }"#;

/// An operator's thresholds, for the player's flood (the detection
/// experiments' too, tests/detection): the documented defaults plus UDP.
fn player_thresholds() -> String {
    format!(
        r#"[detect.thresholds]
all = {{ pps = 100000, bps = "1G" }}
tcp_syn = {{ pps = 20000 }}
udp = {{ pps = {PLAYER_UDP_PPS} }}
icmp = {{ pps = 10000 }}
fragment = {{ pps = 10000 }}"#
    )
}

/// The sensor's configuration in the lab: the customer block is the own
/// network; thresholds sized for hping3's ~5 kpps at 1:10, or an
/// operator's for the player. `detect.confidence` is left at its default.
pub(super) fn sensor_config(lab: &Lab, pass_telemetry: bool, player: bool) -> String {
    let thresholds = if player {
        player_thresholds()
    } else {
        HPING3_THRESHOLDS.to_string()
    };
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
{thresholds}
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

pub(super) fn wait_for_xdp(lab: &mut Lab) -> Result<()> {
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
