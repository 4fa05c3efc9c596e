//! Benchmark item 3: time from attack start to detection and to the rule on
//! the router, for edge-sensor (gobgpd as the router) and for FastNetMon
//! Community (its ban), measured side by side on the same sFlow stream in
//! the lab (`xtask lab --fastnetmon`), for several attack kinds.

use std::{fmt::Write as _, fs, path::Path, process::Command};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// The attacks timed, with the exporter at 1:10 (the lab's default: hping3
/// makes ~5 kpps; at 1:1000 the same would be 500 samples a minute).
const ATTACKS: [&str; 4] = ["ntp-amp", "syn", "udp", "carpet"];

/// Runs the lab once per attack; writes `timing.json` and `timing.md` in
/// `out` and returns the Markdown.
pub fn timing(sensor_bin: &Path, out: &Path) -> Result<String> {
    let xtask = std::env::current_exe().context("the xtask binary")?;
    let mut rows = Vec::new();
    for (i, attack) in ATTACKS.iter().enumerate() {
        eprintln!("xtask: bench timing: {attack}");
        let run = Command::new(&xtask)
            .args(["lab", "--json", "--fastnetmon", "--duration", "70"])
            .args(["--attack", attack, "--prefix", &format!("esbt{i}")])
            .arg("--sensor-bin")
            .arg(sensor_bin)
            .output()
            .context("running the lab")?;
        let text = String::from_utf8_lossy(&run.stdout);
        let summary = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["event"] == "summary");
        match summary {
            Some(s) if run.status.success() => rows.push(s),
            _ => bail!(
                "lab --attack {attack}: no summary\n{text}\n{}",
                String::from_utf8_lossy(&run.stderr)
            ),
        }
    }
    fs::create_dir_all(out)?;
    fs::write(
        out.join("timing.json"),
        serde_json::to_string_pretty(&json!({ "runs": rows }))?,
    )?;
    let secs = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.2} s"));
    let mut md = String::from(
        "| attack | edge-sensor: detected | edge-sensor: rule on the router | FastNetMon: ban |\n\
         |---|---:|---:|---:|\n",
    );
    for r in &rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            r["attack"].as_str().unwrap_or("?"),
            secs(&r["detect_s"]),
            secs(&r["rule_on_peer_s"]),
            secs(&r["fastnetmon_ban_s"]),
        );
    }
    md.push_str(
        "\nSeconds after the attack started (hping3, ~5 kpps, sampled 1:10 by pmacct's \
         sfprobe; both collectors see the same datagrams: the sensor passes them on). \
         edge-sensor: 1 s polls, thresholds 2 kpps (UDP) / 1.5 kpps (SYN), the rule read \
         back from gobgpd. FastNetMon Community 1.2.4: `threshold_pps = 2000`, its defaults \
         otherwise (`ban_details_records_count = 20`, `average_calculation_time = 5`); \
         its ban is when it runs its notify script; announcing it to a router would come \
         on top.\n",
    );
    fs::write(out.join("timing.md"), &md)?;
    Ok(md)
}
