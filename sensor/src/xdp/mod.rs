//! The XDP program: its embedded object, loading, pinned maps and attachment.

pub mod attach;
pub mod inspect;
pub mod loader;
pub mod pins;
pub mod read;
pub mod verifier;

pub use attach::{AttachedMode, attach};
pub use loader::{LoadOptions, Sensor};

/// The XDP object built by `cargo xtask build-ebpf`, embedded at build time
/// (empty when the crate was built without it; [`Sensor::load`] says so).
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/edge-sensor.bpf.o"));
