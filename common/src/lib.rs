//! Types shared by the XDP program (`sensor-ebpf`) and userspace (`sensor`).
//!
//! Everything here is `#[repr(C)]` with explicit padding, so the kernel and
//! userspace agree on every byte, and each type's size is asserted at compile
//! time. With the `user` feature the types implement `aya::Pod` (to read and
//! write BPF maps) and `bytemuck::Pod` (whose derive refuses implicit padding).
//!
//! Changing the layout of a pinned map's key or value is a breaking change for
//! a running sensor: bump [`LAYOUT_VERSION`], which names the pin directory.
#![no_std]

pub mod count;
pub mod maps;
pub mod parse;
pub mod plan;
pub mod proto;
pub mod sequence;
pub mod telemetry;

pub use maps::*;
pub use parse::*;
pub use telemetry::*;

/// Version of the layout of the pinned maps. Part of the default pin path, so a
/// new binary never reuses maps pinned by an older one with another layout.
pub const LAYOUT_VERSION: u32 = 3;

/// Default directory under which the sensor pins its maps.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/edge-sensor/v2";

/// Name of the XDP program in the eBPF object.
pub const XDP_PROGRAM: &str = "edge_sensor";
