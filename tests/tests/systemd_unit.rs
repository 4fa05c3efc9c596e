//! The shipped systemd unit (`contrib/systemd/edge-sensor.service`):
//! `systemd-analyze verify` accepts it, and the daemon really runs with
//! nothing but the capabilities it grants (and fails clearly without one).

use std::{
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use edge_sensor_tests::{PinDir, netns::Link, require_root, require_tool, sensor_bin, unique_name};

fn unit_text() -> String {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../contrib/systemd/edge-sensor.service");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `CapabilityBoundingSet=` of the unit, as setpriv names them.
fn unit_capabilities(unit: &str) -> Vec<String> {
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit bounds its capabilities");
    line.split_whitespace()
        .map(|c| {
            c.strip_prefix("CAP_")
                .expect("CAP_ names")
                .to_ascii_lowercase()
        })
        .collect()
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    require_root();
    require_tool("systemd-analyze");
    let dir = std::env::temp_dir().join(unique_name("es-unit-"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("edge-sensor.toml");
    std::fs::write(&config, "[xdp]\ninterfaces = [\"lo\"]\n").unwrap();
    // The same unit, pointing at this build and a config that exists.
    let unit = unit_text().replace(
        "ExecStart=/usr/local/bin/edge-sensor run --config /etc/edge-sensor/edge-sensor.toml",
        &format!(
            "ExecStart={} run --config {}",
            sensor_bin().display(),
            config.display()
        ),
    );
    assert!(
        unit.contains(&sensor_bin().display().to_string()),
        "ExecStart replaced"
    );
    let path = dir.join("edge-sensor.service");
    std::fs::write(&path, unit).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `edge-sensor run` in the collector namespace with only `caps`;
/// returns whether XDP got attached, and the log.
fn run_with(link: &Link, caps: &[String]) -> (bool, String) {
    use std::os::unix::process::CommandExt;
    let pin = PinDir::new();
    let dir = std::env::temp_dir().join(unique_name("es-caps-"));
    std::fs::create_dir_all(&dir).unwrap();
    let bounding = std::iter::once("-all".to_string())
        .chain(caps.iter().map(|c| format!("+{c}")))
        .collect::<Vec<_>>()
        .join(",");
    let log = dir.join("sensor.log");
    let mut child = link
        .b
        .command("setpriv")
        .args(["--bounding-set", &bounding, "--inh-caps", "-all", "--"])
        .arg(sensor_bin())
        .args([
            "run",
            "--iface",
            &link.b_if,
            "--metrics-listen",
            "",
            "--pin-path",
        ])
        .arg(pin.path())
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--control-socket")
        .arg(dir.join("control.sock"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .process_group(0)
        .spawn()
        .expect("setpriv");
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut attached = false;
    while Instant::now() < deadline {
        if link.b.has_xdp(&link.b_if) {
            attached = true;
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: signalling our own child's process group.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGTERM) };
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    (attached, text)
}

#[test]
fn the_daemon_runs_with_only_the_units_capabilities_and_not_with_less() {
    require_root();
    require_tool("setpriv");
    let caps = unit_capabilities(&unit_text());
    assert!(caps.contains(&"bpf".to_string()), "{caps:?}");
    let link = Link::new();
    let (attached, log) = run_with(&link, &caps);
    assert!(attached, "did not attach with {caps:?}:\n{log}");
    assert!(!log.contains("ERROR"), "{log}");
    // Without CAP_BPF it cannot load, and says what it needs.
    let less: Vec<String> = caps.iter().filter(|c| *c != "bpf").cloned().collect();
    let (attached, log) = run_with(&link, &less);
    assert!(!attached, "attached without CAP_BPF:\n{log}");
    assert!(
        log.contains("CAP_BPF"),
        "the error names the capability:\n{log}"
    );
}
