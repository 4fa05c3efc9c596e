//! Issue 19: the Debian package. `cargo xtask deb --debug` builds it (and
//! fails on a lintian error); it installs with `dpkg -i`, its unit passes
//! `systemd-analyze verify`, the binary runs, the conffile and manual pages
//! are where Debian puts them, and `dpkg --purge` leaves nothing behind.

use std::{path::Path, process::Command};

use edge_sensor_tests::{require_root, require_tool, xtask_bin};

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Removes the package however the test ends.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg")
            .args(["--purge", "edge-sensor"])
            .output();
    }
}

#[test]
fn the_package_installs_verifies_and_purges_cleanly() {
    require_root();
    for tool in [
        "dpkg",
        "dpkg-deb",
        "dpkg-shlibdeps",
        "lintian",
        "systemd-analyze",
        "strip",
    ] {
        require_tool(tool);
    }
    if Path::new("/var/lib/dpkg/info/edge-sensor.list").exists() {
        panic!("edge-sensor is already installed on this machine: the test would remove it");
    }
    // Fails on a lintian error (xtask deb reads lintian's verdict).
    run(Command::new(xtask_bin()).args(["deb", "--debug"]));
    let version = env!("CARGO_PKG_VERSION");
    let deb = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../target/deb/edge-sensor_{version}_amd64.deb"));
    assert!(deb.exists(), "{}", deb.display());
    let info = run(Command::new("dpkg-deb").arg("--info").arg(&deb));
    assert!(info.contains("Depends: libc6"), "{info}");

    let _installed = Installed;
    run(Command::new("dpkg").arg("-i").arg(&deb));
    let v = run(Command::new("/usr/bin/edge-sensor").arg("--version"));
    assert_eq!(v.trim(), format!("edge-sensor {version}"));
    let unit = "/lib/systemd/system/edge-sensor.service";
    let text = std::fs::read_to_string(unit).expect("the unit");
    assert!(
        text.contains("ExecStart=/usr/bin/edge-sensor run"),
        "{text}"
    );
    run(Command::new("systemd-analyze").args(["verify", unit]));
    let conffiles = run(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "edge-sensor"]));
    assert!(
        conffiles.contains("/etc/edge-sensor/edge-sensor.toml"),
        "{conffiles}"
    );
    for f in [
        "/usr/share/man/man1/edge-sensor.1.gz",
        "/usr/share/man/man1/edge-sensor-run.1.gz",
        "/usr/share/bash-completion/completions/edge-sensor",
        "/usr/share/doc/edge-sensor/copyright",
    ] {
        assert!(Path::new(f).exists(), "{f}");
    }
    // Installed, not started: a sensor runs once it is configured.
    let status = run(Command::new("dpkg-query").args(["-W", "-f=${Status}", "edge-sensor"]));
    assert_eq!(status, "install ok installed");

    run(Command::new("dpkg").args(["--purge", "edge-sensor"]));
    for f in [
        "/usr/bin/edge-sensor",
        unit,
        "/etc/edge-sensor/edge-sensor.toml",
    ] {
        assert!(!Path::new(f).exists(), "{f} left after purge");
    }
}
