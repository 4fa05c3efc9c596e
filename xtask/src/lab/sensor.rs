//! The sensor in the lab: its configuration, and the wait for its XDP
//! program to attach.

use std::{
    fs,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use edge_sensor_labconf::{Bgp, BgpPeer};

use super::{COLLECTOR_ADDR, CUSTOMERS, EDGE_ADDR, Lab, PLAYER_UDP_PPS, exited};

/// The thresholds for hping3's ~5 kpps at 1:10.
pub(super) const HPING3_THRESHOLDS: &str = r#"[detect.thresholds]
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
    let bgp = Bgp::new(COLLECTOR_ADDR, 65001, &[CUSTOMERS]).peer(BgpPeer::new(
        "router",
        EDGE_ADDR,
        COLLECTOR_ADDR,
        65000,
    ));
    config_with(
        &format!("[telemetry]\npass_telemetry = {pass_telemetry}\n"),
        &thresholds,
        &lab.dir.join("events.jsonl"),
        &bgp.section(),
    )
}

/// The daemon's configuration around its `telemetry`, `thresholds` and
/// `bgp` sections: polls every second, release after 3 s at half the
/// threshold, rules held 10 s at least, events to `events`.
pub(super) fn config_with(
    telemetry: &str,
    thresholds: &str,
    events: &std::path::Path,
    bgp: &str,
) -> String {
    format!(
        r#"[daemon]
metrics_listen = "127.0.0.1:9810"

{telemetry}
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

{bgp}"#,
        events = events.display()
    )
}

/// Waits for the (first) sensor's XDP program on the collector's veth.
pub(super) fn wait_for_xdp(lab: &mut Lab) -> Result<()> {
    let (ns, iface) = (lab.names.collector.clone(), lab.names.cr.clone());
    wait_for_xdp_on(lab, &ns, &iface, &lab.dir.join("sensor.log"))
}

/// Waits for the XDP program on `iface` in `ns` (the sensor logging to
/// `log`), 20 s at most.
pub(super) fn wait_for_xdp_on(
    lab: &mut Lab,
    ns: &str,
    iface: &str,
    log: &std::path::Path,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = Command::new("ip")
            .args(["-n", ns, "-d", "link", "show", "dev", iface])
            .output()?;
        if String::from_utf8_lossy(&out.stdout).contains("prog/xdp") {
            return Ok(());
        }
        if exited(lab).is_some() || Instant::now() > deadline {
            let log = fs::read_to_string(log).unwrap_or_default();
            bail!("edge-sensor did not attach to {iface} in {ns}; its log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
