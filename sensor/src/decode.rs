//! `edge-sensor decode`: captures through either engine, into one report.
//!
//! * `xdp`: every frame runs through the real XDP program with
//!   BPF_PROG_TEST_RUN, against its real (unpinned) maps, which are read at
//!   the end.
//! * `user`: every frame goes through the userspace decoder.

use std::path::Path;

use anyhow::{Context, Result, bail};
use aya::programs::{TestRun, TestRunOptions};
use edge_sensor_common::{MAX_DATAGRAM, TelemetryKind};

use crate::{
    config::TelemetryConfig,
    counters::Report,
    pcap,
    telemetry::sampling::SamplingRules,
    telemetry::{UserDecoder, Verdict, frame},
    xdp::{LoadOptions, Sensor, attach::error_chain},
};

/// Which decoder runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    /// The XDP program, through BPF_PROG_TEST_RUN (needs root or CAP_BPF).
    Xdp,
    /// The userspace decoder.
    User,
}

/// Destinations the decode engine's map holds (captures are small).
const DECODE_DESTINATIONS: u32 = 1 << 16;
/// BPF_PROG_TEST_RUN gives an XDP program one page minus head- and tailroom.
const MAX_TEST_RUN_FRAME: usize = 3500;

/// The datagrams the kernel leaves to the daemon uncounted: NetFlow v9 and
/// IPFIX ones it did not take (`sensor-ebpf/src/template.rs`).
pub fn passed_to_daemon(d: &frame::Datagram<'_>) -> bool {
    d.kind != TelemetryKind::Sflow
        && (2..=MAX_DATAGRAM).contains(&d.payload.len())
        && matches!(d.payload[..2], [0, 9] | [0, 10])
}

/// Runs a whole decode: every frame of every capture through `engine`.
pub struct Decoder {
    engine: EngineState,
    rules: SamplingRules,
    ports: Vec<(u16, TelemetryKind)>,
    /// Telemetry datagrams seen, and the verdicts given to them.
    pub datagrams: u64,
    pub dropped: u64,
}

enum EngineState {
    /// The XDP program, and what the daemon does with the v9/IPFIX
    /// datagrams it passes on: decode them and compile new plans.
    Xdp {
        sensor: Box<Sensor>,
        daemon: Box<UserDecoder>,
    },
    User(Box<UserDecoder>),
}

impl Decoder {
    pub fn new(engine: Engine, telemetry: &TelemetryConfig) -> Result<Self> {
        Self::with_sampling(engine, telemetry, SamplingRules::default())
    }

    /// A decoder applying configured sampling rules (`exporters.sampling`).
    pub fn with_sampling(
        engine: Engine,
        telemetry: &TelemetryConfig,
        rules: SamplingRules,
    ) -> Result<Self> {
        let ports: Vec<_> = telemetry.ports().collect();
        let user = |rules: &SamplingRules| {
            UserDecoder::new(&ports, &[], false).with_sampling(rules.clone())
        };
        let engine = match engine {
            Engine::Xdp => {
                let mut opts = LoadOptions::unpinned(DECODE_DESTINATIONS);
                opts.ports = ports.clone();
                opts.sampling = rules.clone();
                let sensor = Sensor::load(&opts).map_err(|e| anyhow::anyhow!(error_chain(&e)))?;
                EngineState::Xdp {
                    sensor: Box::new(sensor),
                    daemon: Box::new(user(&rules).behind_kernel()),
                }
            }
            Engine::User => EngineState::User(Box::new(user(&rules))),
        };
        Ok(Self {
            engine,
            rules,
            ports,
            datagrams: 0,
            dropped: 0,
        })
    }

    /// One Ethernet frame; `Ok(None)` when it is not telemetry.
    pub fn frame(&mut self, frame: &[u8]) -> Result<Option<Verdict>> {
        let datagram = frame::telemetry_datagram(frame, |port| {
            self.ports.iter().find(|(p, _)| *p == port).map(|(_, k)| *k)
        });
        let is_telemetry = datagram.is_some();
        let verdict = match &mut self.engine {
            EngineState::User(user) => user.frame(frame),
            EngineState::Xdp { sensor, daemon } => {
                if frame.len() < 14 {
                    return Ok(None);
                }
                if frame.len() > MAX_TEST_RUN_FRAME {
                    bail!(
                        "a {}-byte frame is larger than BPF_PROG_TEST_RUN runs through XDP \
                         ({MAX_TEST_RUN_FRAME}); use --engine user for jumbo captures",
                        frame.len()
                    );
                }
                let result = sensor
                    .program()
                    .test_run(TestRunOptions {
                        data_in: Some(frame),
                        ..Default::default()
                    })
                    .map_err(|e| anyhow::anyhow!("BPF_PROG_TEST_RUN: {}", error_chain(&e)))?;
                let verdict = match result.return_value {
                    1 => Verdict::Drop,
                    2 => Verdict::Pass,
                    other => bail!("the XDP program returned {other} (aborted?)"),
                };
                // The daemon's part: v9/IPFIX datagrams the kernel passed on
                // uncounted are decoded in userspace, and new templates
                // become plans for the next ones.
                if let Some(d) =
                    datagram.filter(|d| verdict == Verdict::Pass && passed_to_daemon(d))
                {
                    let before = daemon.templates().generation();
                    daemon.datagram(&d);
                    if daemon.templates().generation() != before {
                        sensor
                            .sync_template_plans(daemon.templates())
                            .map_err(|e| anyhow::anyhow!(error_chain(&e)))?;
                    }
                }
                verdict
            }
        };
        if !is_telemetry {
            return Ok(None);
        }
        self.datagrams += 1;
        if verdict == Verdict::Drop {
            self.dropped += 1;
        }
        Ok(Some(verdict))
    }

    /// Every frame of the capture at `path`; the number of telemetry datagrams.
    pub fn capture(&mut self, path: &Path) -> Result<u64> {
        let frames = pcap::ethernet_frames(path)?;
        let before = self.datagrams;
        for (i, frame) in frames.iter().enumerate() {
            self.frame(frame)
                .with_context(|| format!("{}: frame {}", path.display(), i + 1))?;
        }
        Ok(self.datagrams - before)
    }

    /// Forgets everything counted (and every agent's sequence state).
    pub fn reset(&mut self) -> Result<()> {
        self.datagrams = 0;
        self.dropped = 0;
        match &mut self.engine {
            EngineState::User(user) => {
                **user =
                    UserDecoder::new(&self.ports, &[], false).with_sampling(self.rules.clone());
            }
            EngineState::Xdp { sensor, daemon } => {
                sensor
                    .clear_counters()
                    .map_err(|e| anyhow::anyhow!(error_chain(&e)))?;
                **daemon = UserDecoder::new(&self.ports, &[], false)
                    .with_sampling(self.rules.clone())
                    .behind_kernel();
            }
        }
        Ok(())
    }

    /// What was counted.
    pub fn report(&self) -> Result<Report> {
        match &self.engine {
            EngineState::User(user) => Ok(user.report.clone()),
            EngineState::Xdp { sensor, daemon } => {
                let mut report = sensor.report()?;
                report.merge(&daemon.report);
                Ok(report)
            }
        }
    }
}
