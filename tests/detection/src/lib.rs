//! Detection quality under sampling noise (issue 16, item 4): the player's
//! traffic model, sampled 1:N and emitted as sFlow and IPFIX datagrams, fed
//! to the sensor's own userspace decoder (the XDP program's twin, exact to
//! the differential tests) and its detector, on a simulated clock. No
//! kernel, no sockets: a simulated day takes minutes.
//!
//! - [`replay`]: one scenario through the decoder and one or more
//!   detectors (each sees the samples of the destinations it asked to
//!   watch, as the kernel would stream them), with the truth of the
//!   samples of chosen destinations;
//! - [`experiments`]: false positives in a day of normal traffic with flash
//!   crowds, an attack set (victim, class, fingerprint coverage and normal
//!   traffic hit), time to detect against attack size per sampling rate;
//! - [`report`]: all of it as Markdown with SVG plots
//!   (`edge-sensor-detection-report --out DIR`).

pub mod experiments;
pub mod replay;
pub mod report;
pub mod svg;

/// What can go wrong running an experiment.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("player: {0}")]
    Player(#[from] edge_sensor_player::Error),
    #[error("detector: {0}")]
    Detect(#[from] edge_sensor::detect::DetectConfigError),
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
}
