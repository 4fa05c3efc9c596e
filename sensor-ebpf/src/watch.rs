//! The sample stream of watched destinations, for fingerprinting.
//!
//! Userspace marks destinations near or over a threshold in `WATCHED`; for
//! each sample counted for one of them, the kernel puts on the
//! `WATCH_SAMPLES` ring the bytes it was counted from (the sampled header or
//! the flow record) with the scaled packets and bytes. The daemon decodes
//! ports, flags and lengths from them with its reference decoder, so the hot
//! path for every other destination stays what it was: no lookup at all
//! while nothing is watched, one hash lookup per sample otherwise.

use edge_sensor_common::{DstKey, WATCH_SNAP, WatchKind, WatchSample};

use crate::{
    maps,
    read::{self, Addr},
    sflow::{Scratch, Walk},
};

/// What the sample was counted from: `len` bytes at `at` of the datagram.
pub struct Source {
    pub kind: WatchKind,
    pub at: u32,
    pub len: u32,
}

/// Streams the sample counted for `dst` if `dst` is watched.
#[inline(always)]
pub fn sample(w: &mut Walk, dst: Addr, src: Source, packets: u64, bytes: u64) {
    if w.watching == 0 {
        return;
    }
    w.watch_dst = dst;
    let source = (u64::from(src.kind as u8) << 32) | u64::from(src.at);
    // A BPF-to-BPF call; the function reads the walk from the scratch map,
    // where `watch_dst` was just written.
    edge_sensor_watch(source, u64::from(src.len), packets, bytes);
}

/// The stream's slow path, a global function: the verifier checks it once,
/// on its own, instead of again at every call site inside every loop state
/// (inlined at the four sites it doubled the instructions verified).
/// `source` is the [`WatchKind`] << 32 | the offset of the counted bytes.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn edge_sensor_watch(source: u64, len: u64, packets: u64, bytes: u64) -> i64 {
    let Some(scratch) = maps::scratch() else {
        return 0;
    };
    // SAFETY: this CPU's scratch entry; the caller is done writing it.
    let Scratch { walk: w, data: d } = unsafe { &mut *scratch };
    let key = DstKey {
        addr: read::addr_bytes(w.watch_dst),
    };
    if maps::WATCHED.get_ptr(&key).is_none() {
        return 0;
    }
    let Some(stats) = maps::WATCH_STATS.get_ptr_mut(0) else {
        return 0;
    };
    let Some(mut entry) = maps::WATCH_SAMPLES.reserve::<WatchSample>(0) else {
        // SAFETY: per-CPU value.
        unsafe { (*stats).lost += 1 };
        return 0;
    };
    let rec = entry.as_mut_ptr();
    // SAFETY: `rec` is the reserved record, written field by field before
    // it is submitted.
    unsafe {
        (*rec).dst = key.addr;
        (*rec).exporter = w.plan_key.addr;
        (*rec).packets = packets;
        (*rec).bytes = bytes;
        (*rec).domain = w.plan_key.domain;
        (*rec).len = if len > WATCH_SNAP as u64 {
            WATCH_SNAP as u32
        } else {
            len as u32
        };
        (*rec).template = w.plan_key.template;
        (*rec).src_port = w.plan_key.src_port;
        (*rec).kind = (source >> 32) as u8;
        (*rec)._pad = [0; 3];
        d.snapshot(source as u32, &raw mut (*rec).snap);
        (*stats).streamed += 1;
    }
    entry.submit(0);
    0
}
