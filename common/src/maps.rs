//! BPF map names, sizes and the layouts of their keys and values.

use core::mem::size_of;

/// Per exporter counters: `LRU_PERCPU_HASH<ExporterKey, ExporterStats>`, pinned.
pub const EXPORTER_STATS: &str = "EXPORTER_STATS";
/// Telemetry ports: `HASH<u16 (UDP port, host order), PortConfig>`, written by userspace.
pub const TELEMETRY_PORTS: &str = "TELEMETRY_PORTS";

/// Capacity of [`EXPORTER_STATS`]: exporters are routers, a few thousand at most.
pub const MAX_EXPORTERS: u32 = 4096;
/// Capacity of [`TELEMETRY_PORTS`].
pub const MAX_TELEMETRY_PORTS: u32 = 64;

/// Who sent a telemetry datagram, and to which of our ports.
///
/// `addr` is the IPv6 address of the source, or the IPv4-mapped IPv6 address
/// (`::ffff:a.b.c.d`, RFC 4291 §2.5.5.2) of an IPv4 source, so one key type
/// holds both families.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct ExporterKey {
    /// Source address, network byte order, IPv4 mapped into IPv6.
    pub addr: [u8; 16],
    /// Destination UDP port the datagram was sent to (host byte order).
    pub port: u16,
    /// The port's [`crate::TelemetryKind`] as `u8`.
    pub kind: u8,
    /// Explicit padding; always zero.
    pub _pad: u8,
}
const _: () = assert!(size_of::<ExporterKey>() == 20);

/// Counters of one exporter. Per CPU in the kernel; userspace sums the CPUs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct ExporterStats {
    /// Telemetry datagrams received.
    pub datagrams: u64,
    /// UDP payload bytes of those datagrams.
    pub bytes: u64,
}
const _: () = assert!(size_of::<ExporterStats>() == 16);

impl ExporterStats {
    /// Adds `other` field by field (used to sum per-CPU values); wraps rather
    /// than panics on overflow.
    pub fn accumulate(&mut self, other: &Self) {
        self.datagrams = self.datagrams.wrapping_add(other.datagrams);
        self.bytes = self.bytes.wrapping_add(other.bytes);
    }
}

/// What a telemetry port carries.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct PortConfig {
    /// A [`crate::TelemetryKind`] as `u8`.
    pub kind: u8,
    /// Explicit padding; always zero.
    pub _pad: [u8; 3],
}
const _: () = assert!(size_of::<PortConfig>() == 4);

#[cfg(feature = "user")]
mod user {
    // SAFETY: all three are #[repr(C)], Copy, and have no implicit padding
    // (bytemuck's derive above checks that), so every bit pattern is valid.
    unsafe impl aya::Pod for super::ExporterKey {}
    unsafe impl aya::Pod for super::ExporterStats {}
    unsafe impl aya::Pod for super::PortConfig {}
}
