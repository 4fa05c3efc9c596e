//! Pinned maps filled by the real XDP program: loaded with its maps pinned in
//! a test pin directory, fed crafted sFlow datagrams through
//! `BPF_PROG_TEST_RUN`. For the CLI and metrics tests, which read the pins
//! from another process as an operator would.

use std::{
    path::Path,
    process::{Command, Output},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use aya::programs::{TestRun, TestRunOptions};
use edge_sensor::xdp::{LoadOptions, Sensor};
use serde_json::Value;

use crate::{
    PinDir,
    frame::*,
    sensor_bin,
    sflow::{Datagram, Record, Sample},
};

/// Sampling rate of every crafted sample: each one counts this many packets.
pub const RATE: u32 = 1000;

/// An sFlow datagram from agent 198.18.7.1 with `n` samples (rate [`RATE`])
/// of TCP SYNs to `victim`.
pub fn syn_datagram(victim: [u8; 4], n: usize) -> Vec<u8> {
    let mut tcp = vec![0u8; 20];
    tcp[12] = 5 << 4;
    tcp[13] = 0x02;
    let pkt = ethernet(
        &[],
        ETH_P_IPV4,
        &ipv4([192, 0, 2, 1], victim, IPPROTO_TCP, &tcp),
    );
    let samples = (0..n)
        .map(|_| Sample::flow(RATE, vec![Record::ethernet(&pkt, 128)]))
        .collect();
    let payload = Datagram::new(1, samples).encode();
    ethernet(
        &[],
        ETH_P_IPV4,
        &ipv4(
            [198, 18, 7, 1],
            [198, 18, 7, 2],
            IPPROTO_UDP,
            &udp(1, 6343, &payload),
        ),
    )
}

/// A loaded sensor whose maps are pinned in a pin directory of the test's own.
pub struct Filled {
    pub sensor: Sensor,
    // Dropped after the sensor: the pins go with the directory.
    pub pin: PinDir,
}

impl Filled {
    pub fn new() -> Self {
        let pin = PinDir::new();
        let mut opts = LoadOptions::unpinned(1 << 16);
        opts.pin_dir = Some(pin.path().to_owned());
        let sensor = Sensor::load(&opts).unwrap_or_else(|e| panic!("load: {e:#?}"));
        Self { sensor, pin }
    }

    pub fn path(&self) -> &Path {
        self.pin.path()
    }

    /// Runs the program once on `frame`.
    pub fn send(&self, frame: &[u8]) {
        self.sensor
            .program()
            .test_run(TestRunOptions {
                data_in: Some(frame),
                ..Default::default()
            })
            .expect("test run");
    }

    /// Sends `frames` round after round until `stop` is set (at most
    /// `limit`), `pause` apart.
    pub fn stream(&self, frames: &[&[u8]], stop: &AtomicBool, pause: Duration, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            for frame in frames {
                self.send(frame);
            }
            std::thread::sleep(pause);
        }
    }

    /// `edge-sensor ARGS --pin-path PIN`.
    pub fn cli(&self, args: &[&str]) -> Output {
        cli_at(self.path(), args)
    }

    /// `edge-sensor ARGS --json --pin-path PIN`, succeeded, parsed.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.cli(&all);
        assert!(
            out.status.success(),
            "edge-sensor {}: {}",
            all.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "edge-sensor {} is not JSON ({e}): {}",
                all.join(" "),
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}

impl Default for Filled {
    fn default() -> Self {
        Self::new()
    }
}

/// `edge-sensor ARGS --pin-path DIR`.
pub fn cli_at(dir: &Path, args: &[&str]) -> Output {
    Command::new(sensor_bin())
        .args(args)
        .arg("--pin-path")
        .arg(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("run edge-sensor")
}
