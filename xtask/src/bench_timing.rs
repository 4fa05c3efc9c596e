//! Benchmark item 3: time from attack start to detection and to the rule on
//! the router, for edge-sensor (gobgpd as the router) and for FastNetMon
//! Community (its ban), measured side by side on the same sFlow stream in
//! the lab (`xtask lab --fastnetmon`): hping3 attacks sampled by pmacct,
//! and the traffic-model player's 1 Mpps UDP flood at 1:1000 and 1:4096 on
//! sFlow and on IPFIX (FastNetMon only on sFlow).

use std::{fmt::Write as _, fs, path::Path, process::Command};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// The hping3 attacks timed, with pmacct at 1:10 (the lab's default:
/// hping3 makes ~5 kpps; at 1:1000 the same would be 500 samples a minute).
const ATTACKS: [&str; 4] = ["ntp-amp", "syn", "udp", "carpet"];

/// The player's runs: exporter, sampling, FastNetMon beside (sFlow only).
const PLAYER: [(&str, u32, bool); 4] = [
    ("player-sflow", 1000, true),
    ("player-sflow", 4096, true),
    ("player-ipfix", 1000, false),
    ("player-ipfix", 4096, false),
];

/// Runs the lab once per attack and per player setup; writes `timing.json`
/// and `timing.md` in `out` and returns the Markdown.
pub fn timing(sensor_bin: &Path, player_bin: &Path, out: &Path) -> Result<String> {
    let xtask = std::env::current_exe().context("the xtask binary")?;
    let mut rows = Vec::new();
    let run = |args: &[String], what: &str| -> Result<Value> {
        eprintln!("xtask: bench timing: {what}");
        let run = Command::new(&xtask)
            .args(["lab", "--json", "--duration", "70"])
            .args(args)
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
            Some(s) if run.status.success() => Ok(s),
            _ => bail!(
                "lab {what}: no summary\n{text}\n{}",
                String::from_utf8_lossy(&run.stderr)
            ),
        }
    };
    for (i, attack) in ATTACKS.iter().enumerate() {
        let args = [
            "--fastnetmon",
            "--attack",
            attack,
            "--prefix",
            &format!("esbt{i}"),
        ]
        .map(String::from);
        let mut s = run(&args, attack)?;
        s["setup"] = json!("hping3 ~5 kpps, pmacct sFlow 1:10");
        rows.push(s);
    }
    for (i, (exporter, sampling, fastnetmon)) in PLAYER.iter().enumerate() {
        let mut args = vec![
            "--exporter".to_string(),
            exporter.to_string(),
            "--sampling".into(),
            sampling.to_string(),
            "--prefix".into(),
            format!("esbp{i}"),
            "--player-bin".into(),
            player_bin.display().to_string(),
        ];
        if *fastnetmon {
            args.push("--fastnetmon".into());
        }
        let format = if exporter.ends_with("sflow") {
            "sFlow"
        } else {
            "IPFIX"
        };
        let mut s = run(&args, &format!("{exporter} 1:{sampling}"))?;
        s["setup"] = json!(format!("player, {format} 1:{sampling}"));
        rows.push(s);
    }
    fs::create_dir_all(out)?;
    fs::write(
        out.join("timing.json"),
        serde_json::to_string_pretty(&json!({ "runs": rows }))?,
    )?;
    let secs = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.2} s"));
    let mut md = String::from(
        "| setup | attack | edge-sensor: detected | edge-sensor: rule on the router | FastNetMon: ban |\n\
         |---|---|---:|---:|---:|\n",
    );
    for r in &rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            r["setup"].as_str().unwrap_or("?"),
            r["attack"].as_str().unwrap_or("?"),
            secs(&r["detect_s"]),
            secs(&r["rule_on_peer_s"]),
            secs(&r["fastnetmon_ban_s"]),
        );
    }
    md.push_str(
        "\nSeconds after the attack started; the lab looks every 50 ms while it waits \
         (the sensor's `attacks`, gobgpd's RIB with `gobgp`, FastNetMon's notify script), \
         so each figure is late by up to that and by the time those commands take. \
         Both collectors see the same datagrams (the sensor passes them on); edge-sensor \
         polls every second (and decides on the samples a quarter second after a poll \
         that found a victim over a threshold before the kernel sampled it), with `detect.confidence` at its \
         default (0.999), and the rule is read back from gobgpd. FastNetMon Community 1.2.4 runs with \
         `threshold_pps` at the sensor's UDP threshold and its defaults otherwise \
         (`ban_details_records_count = 20`, `average_calculation_time = 5`); its ban is \
         when it runs its notify script, announcing it to a router would come on top.\n\n\
         hping3 rows: hping3 at ~5 kpps from random sources, sampled 1:10 by pmacct's \
         sfprobe; thresholds sized for it (2 kpps UDP, 1.5 kpps SYN, FastNetMon 2 kpps).\n\n\
         player rows: the traffic-model player (tests/player) in the router namespace, \
         in real time: 250 customers of the lab's /24 with 20 kpps of normal traffic in \
         all, and a 1 Mpps UDP flood (512-byte packets, 50,000 spoofed sources, no ramp) \
         on one of them, sampled 1:1000 or 1:4096 by one router exporting sFlow v5, or \
         IPFIX with one record per sample (no flow cache: a router's cache timeouts \
         would come on top). The attack starts at the flood's first packet in the \
         player's scenario, counted from when the player started (its start-up, a few \
         milliseconds, counts against us). Operator thresholds: 100 kpps / 1 Gbps per \
         host, UDP 50 kpps, SYN 20 kpps, ICMP 10 kpps; FastNetMon at 50 kpps. The \
         player's datagrams reach XDP on a veth; at 1 Mpps that is 1000 or 244 samples \
         a second, not a million packets. The lab starts the flood a few milliseconds \
         after one of the sensor's polls, so the first poll to see it comes a second \
         later: close to the worst phase.\n",
    );
    fs::write(out.join("timing.md"), &md)?;
    Ok(md)
}
