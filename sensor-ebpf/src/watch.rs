//! The sample stream of watched destinations, for fingerprinting.
//!
//! Userspace marks destinations near or over a threshold in `WATCHED`; for
//! each sample counted for one of them, the kernel puts on the
//! `WATCH_SAMPLES` ring the bytes it was counted from (the sampled header or
//! the flow record) with the scaled packets and bytes. The daemon decodes
//! ports, flags and lengths from them with its decoder, so the hot path for
//! every other destination stays what it was: no lookup at all while
//! nothing is watched, one hash lookup per sample otherwise.

use edge_sensor_common::{DstKey, WATCH_SNAP, WatchSample};

use crate::{
    maps, meta,
    read::{self, Addr},
    scratch,
};

/// Streams the sample counted for `dst0, dst1` if that destination is
/// watched; `m` says where its bytes lie (see `meta.rs`). A global
/// function, like `edge_sensor_count`, verified once on its own.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn edge_sensor_watch(dst0: u64, dst1: u64, m: u64, packets: u64, bytes: u64) -> i64 {
    let dst: Addr = [dst0, dst1];
    let key = DstKey {
        addr: read::addr_bytes(dst),
    };
    if maps::WATCHED.get_ptr(key).is_none() {
        return 0;
    }
    let Some(s) = scratch::get() else {
        return 0;
    };
    let Some(stats) = maps::WATCH_STATS.get_ptr_mut(0) else {
        return 0;
    };
    let Some(mut entry) = maps::WATCH_SAMPLES.reserve::<WatchSample>(0) else {
        // SAFETY: per-CPU value.
        unsafe { (*stats).lost += 1 };
        return 0;
    };
    let len = meta::len(m);
    let at = meta::at(m);
    let plan_key = &s.template.plan_key;
    let rec = entry.as_mut_ptr();
    // SAFETY: `rec` is the reserved record, written field by field before
    // it is submitted.
    unsafe {
        (*rec).dst = key.addr;
        read::copy16(&raw mut (*rec).exporter, &plan_key.addr);
        (*rec).packets = packets;
        (*rec).bytes = bytes;
        (*rec).domain = plan_key.domain;
        (*rec).len = if len > WATCH_SNAP as u32 {
            WATCH_SNAP as u32
        } else {
            len
        };
        (*rec).template = plan_key.template;
        (*rec).src_port = plan_key.src_port;
        (*rec).kind = meta::kind(m);
        // Volatile, byte by byte: LLVM calls `memset` for an unaligned
        // 3-byte store (see `copy16`).
        for i in 0..3 {
            core::ptr::write_volatile(&raw mut (*rec)._pad[i], 0);
        }
        s.data.snapshot(at, &raw mut (*rec).snap);
        (*stats).streamed += 1;
    }
    entry.submit(0);
    0
}
