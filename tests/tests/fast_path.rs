//! The sensor where XDP cannot run, provoked for real: strict native mode on
//! loopback, whose driver has no XDP (or, on a kernel that refuses the
//! program, the refusal comes first: the same path, another cause). With
//! `xdp.fallback = "none"` that is one clear error and exit status 1; by
//! default the sensor keeps running on the userspace collector and says so.

use std::{ffi::OsStr, path::PathBuf, time::Duration};

use edge_sensor_tests::{
    PinDir,
    bgp::wait_for,
    netns::{NetNs, start_sensor_userspace},
    require_root, sensor_bin, unique_name,
};
use serde_json::Value;

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap()
        .trim()
        .to_owned()
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(unique_name("es-fp-"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn with_fallback_none_a_failed_xdp_start_is_one_clear_error() {
    require_root();
    let ns = NetNs::new("es-fpn-");
    let pin = PinDir::new();
    let dir = temp_dir();
    let out = ns
        .command(sensor_bin())
        .args(["run", "--iface", "lo", "--mode", "native"])
        .args(["--fallback", "none", "--metrics-listen", "", "--pin-path"])
        .arg(pin.path())
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--control-socket")
        .arg(dir.join("sock"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let head = format!(
        "the XDP fast path is unavailable (kernel {}, program edge_sensor)",
        kernel_release()
    );
    assert!(stderr.contains(&head), "{stderr}");
    assert!(
        stderr.contains("xdp.fallback = \"none\": not starting"),
        "{stderr}"
    );
    if stderr.contains("verifier refused") {
        // The kernel refused the program: its summary, not megabytes of log.
        for part in ["reason:", "stats:      processed ", "stopped at: "] {
            assert!(stderr.contains(part), "{part} in {stderr}");
        }
        assert!(dir.join("state/verifier.log").exists());
        assert!(stderr.len() < 4096, "a summary: {stderr}");
    } else {
        assert!(
            stderr.contains("attaching to lo in native mode"),
            "{stderr}"
        );
    }
    assert!(!stderr.contains("userspace collector:"), "{stderr}");
    assert!(!ns.has_xdp("lo"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn by_default_a_failed_xdp_start_runs_the_userspace_collector() {
    require_root();
    let ns = NetNs::new("es-fpu-");
    let pin = PinDir::new();
    let dir = temp_dir();
    let log = dir.join("sensor.log");
    let sensor = start_sensor_userspace(
        &ns,
        "lo",
        pin.path(),
        &log,
        &[
            OsStr::new("--mode"),
            OsStr::new("native"),
            OsStr::new("--metrics-listen"),
            OsStr::new(""),
        ],
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("the XDP fast path is unavailable") && text.contains("xdp.fallback"),
        "{text}"
    );
    let status = || -> Value {
        let out = ns
            .command(sensor_bin())
            .args(["status", "--json", "--socket"])
            .arg(log.with_extension("sock"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let s = status();
    edge_sensor_tests::assert_json_schema("status", &s);
    assert_eq!(s["fast_path"]["mode"], "userspace", "{s}");
    let reason = s["fast_path"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("native mode") || reason.contains("verifier refused"),
        "{s}"
    );
    // The collector's socket counts what arrives (not sFlow: rejected as
    // unparsable, but counted).
    ns.run(|| {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..3 {
            socket.send_to(b"not sflow", "127.0.0.1:6343").unwrap();
        }
    });
    let counted = wait_for(Duration::from_secs(5), || {
        (status()["telemetry"]["datagrams"].as_u64() == Some(3)).then_some(())
    });
    assert!(counted.is_some(), "{}", status());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("userspace collector: sflow"), "{text}");
    assert!(!ns.has_xdp("lo"));
    sensor.stop(libc::SIGTERM);
    let _ = std::fs::remove_dir_all(&dir);
}
