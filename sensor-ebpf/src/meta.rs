//! One counted sample described in a word: its protocol, flags, and where
//! its bytes lie in the datagram, packed into the third argument of
//! `count::edge_sensor_count` and `watch::edge_sensor_watch` (BPF functions
//! take at most five scalar arguments).

use edge_sensor_common::WatchKind;

use crate::packet::Packet;

/// Where the sample's bytes lie, for the watched-destination stream: `len`
/// bytes at `at` of the datagram, of kind `kind`.
pub struct Source {
    pub kind: WatchKind,
    pub at: u32,
    pub len: u32,
}

const SYN: u64 = 1 << 8;
const FRAGMENT: u64 = 1 << 9;
const KIND_SHIFT: u32 = 12;
const LEN_SHIFT: u32 = 16;
const AT_SHIFT: u32 = 32;

/// Packs `pkt`'s protocol and flags and `src` (a length past 0xffff is cut:
/// the stream carries at most `WATCH_SNAP` bytes anyway).
#[inline(always)]
pub fn pack(pkt: &Packet, src: Source) -> u64 {
    let len = if src.len > 0xffff { 0xffff } else { src.len };
    let mut m = u64::from(pkt.proto)
        | (u64::from(src.kind as u8) << KIND_SHIFT)
        | (u64::from(len) << LEN_SHIFT)
        | (u64::from(src.at) << AT_SHIFT);
    if pkt.syn {
        m |= SYN;
    }
    if pkt.fragment {
        m |= FRAGMENT;
    }
    m
}

#[inline(always)]
pub fn proto(m: u64) -> u8 {
    m as u8
}

#[inline(always)]
pub fn syn(m: u64) -> bool {
    m & SYN != 0
}

#[inline(always)]
pub fn fragment(m: u64) -> bool {
    m & FRAGMENT != 0
}

/// The `WatchKind` as `u8`.
#[inline(always)]
pub fn kind(m: u64) -> u8 {
    ((m >> KIND_SHIFT) & 0xf) as u8
}

#[inline(always)]
pub fn len(m: u64) -> u32 {
    ((m >> LEN_SHIFT) & 0xffff) as u32
}

#[inline(always)]
pub fn at(m: u64) -> u32 {
    (m >> AT_SHIFT) as u32
}
