//! Helpers shared by the integration tests: privileges, the sensor binary,
//! network namespaces and veths the tests create (and remove), crafted frames.
//!
//! Every test here needs root (loading BPF programs, creating namespaces). A
//! test run without it fails loudly: nothing skips itself into green.

pub mod bgp;
pub mod cluster;
/// The daemons' configuration text, shared with `cargo xtask lab`.
pub use edge_sensor_labconf as labconf;
pub mod engines;
pub mod filled;
pub mod frame;
pub mod netns;
pub mod replay;
pub mod scripted;
pub mod sflow;
pub mod tshark;
pub mod tshark_flow;
pub mod verifier;

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

/// Panics with a clear message unless running as root.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!(
            "this test loads BPF programs and creates network namespaces: run it as root \
             (`cargo xtask test` does)"
        );
    }
}

/// Panics with a clear message unless `name` is on PATH.
pub fn require_tool(name: &str) {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(found, "{name} is not installed: run scripts/setup");
}

/// `limit` stretched by `EDGE_SENSOR_TEST_PATIENCE` (a factor, default 1)
/// for runs on slow machines: the kernel matrix's emulated guests verify a
/// program several times slower than the host does. Only waits for
/// something to happen are stretched, never what the test expects.
pub fn patience(limit: std::time::Duration) -> std::time::Duration {
    let factor = std::env::var("EDGE_SENSOR_TEST_PATIENCE")
        .ok()
        .and_then(|f| f.parse::<f64>().ok())
        .filter(|f| f.is_finite() && *f >= 1.0)
        .unwrap_or(1.0);
    limit.mul_f64(factor)
}

/// The `edge-sensor` binary under test (`EDGE_SENSOR_BIN`, set by `cargo
/// xtask test`, or the debug build in the workspace's target directory).
pub fn sensor_bin() -> PathBuf {
    let bin = std::env::var_os("EDGE_SENSOR_BIN").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/edge-sensor"),
        PathBuf::from,
    );
    assert!(
        bin.exists(),
        "no edge-sensor binary at {}: build it with `cargo xtask build` (or run `cargo xtask test`)",
        bin.display()
    );
    bin
}

/// The `xtask` binary (`EDGE_SENSOR_XTASK_BIN`, set by `cargo xtask test`,
/// or the debug build in the workspace's target directory), for the lab.
pub fn xtask_bin() -> PathBuf {
    let bin = std::env::var_os("EDGE_SENSOR_XTASK_BIN").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/xtask"),
        PathBuf::from,
    );
    assert!(
        bin.exists(),
        "no xtask binary at {}: run the tests with `cargo xtask test`",
        bin.display()
    );
    bin
}

/// The traffic-model player (`EDGE_SENSOR_PLAYER_BIN`, or the release
/// build in the workspace's target directory: it paces a thousand samples
/// a second in real time).
pub fn player_bin() -> PathBuf {
    let bin = std::env::var_os("EDGE_SENSOR_PLAYER_BIN").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/edge-sensor-play"),
        PathBuf::from,
    );
    assert!(
        bin.exists(),
        "no edge-sensor-play binary at {}: build it with \
         `cargo build --release -p edge-sensor-player` (or run `cargo xtask test`)",
        bin.display()
    );
    bin
}

/// The JSON Schema `tests/schemas/NAME.json` (documented in docs/json.md).
pub fn json_schema(name: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("schemas/{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Asserts `doc` is valid under the schema `name`, listing every error.
pub fn assert_json_schema(name: &str, doc: &serde_json::Value) {
    let validator = jsonschema::validator_for(&json_schema(name))
        .unwrap_or_else(|e| panic!("schema {name} is not a valid JSON Schema: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{name}: {errors:#?}\n{doc:#}");
}

/// The shared captures (`../shared/data/pcaps` beside the repository, as
/// on every developer machine and in CI); panics clearly when missing.
pub fn shared_captures() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/pcaps");
    assert!(
        dir.is_dir(),
        "the shared captures are missing at {} (CI runs with shared/ beside main)",
        dir.display()
    );
    dir
}

/// A child process killed (with its whole process group) when dropped, so a
/// failing test leaves no daemon or exporter behind. Spawn it with
/// [`std::os::unix::process::CommandExt::process_group`]`(0)`.
pub struct Guarded(pub std::process::Child);

impl Guarded {
    /// Sends `signal` to the child's process group and waits (at most 10 s)
    /// for the child; then kills the group.
    pub fn stop(mut self, signal: i32) -> Option<std::process::ExitStatus> {
        let pgid = self.0.id() as i32;
        // SAFETY: signalling our own child's process group.
        unsafe { libc::kill(-pgid, signal) };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.0.try_wait() {
                // SAFETY: as above; stragglers (forked plugins) go too.
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // SAFETY: our own child's process group.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// A name unique to this test process, for namespaces, links and pin dirs.
/// Short: Linux interface names have at most 15 bytes.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!("{prefix}{}{n}", std::process::id() % 100_000);
    assert!(name.len() <= 15, "name {name} too long for an interface");
    name
}

/// A pin directory of the test's own under /sys/fs/bpf, removed on drop.
pub struct PinDir(pub PathBuf);

impl PinDir {
    pub fn new() -> Self {
        let dir = PathBuf::from("/sys/fs/bpf")
            .join(unique_name("es-pin-"))
            .join("v1");
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Default for PinDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        if let Some(parent) = self.0.parent() {
            let _ = std::fs::remove_dir_all(parent);
        }
    }
}
