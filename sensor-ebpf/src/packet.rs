//! What a sampled packet, or a flow record, says about itself: all that the
//! per-destination counters need.

use crate::read::Addr;

/// What a sampled packet says about itself.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Packet {
    /// Destination (IPv4 mapped into IPv6).
    pub dst: Addr,
    /// IP protocol (after IPv6 extension headers).
    pub proto: u8,
    /// TCP SYN without ACK.
    pub syn: bool,
    /// An IP fragment (first or later).
    pub fragment: bool,
}
