//! Counting: one sampled packet into its destination's counters, and one
//! datagram into its exporter's.
//!
//! Per destination, the work is a global function: the verifier checks it
//! once, on its own, with unknown arguments, instead of again at every call
//! site in every state of every parser that reaches it (inlined in the sFlow
//! walk, it alone cost ~900K processed instructions on 6.18).

use aya_ebpf::helpers::bpf_ktime_get_coarse_ns;
use edge_sensor_common::{DstKey, ExporterKey, ExporterStats, ParseError, count::for_each_class};

use crate::{
    frame::Datagram,
    maps,
    meta::{self, Source},
    packet::Packet,
    read::{self, Addr},
    scratch::Walk,
    watch,
};

/// Counts `packets` and `bytes` (already scaled by the sampling rate) of
/// packets like `pkt` for its destination, and streams the sample if the
/// destination is watched (`watching`: `Settings::watching`).
#[inline(always)]
pub fn sample(pkt: &Packet, packets: u64, bytes: u64, watching: u8, src: Source) {
    let m = meta::pack(pkt, src);
    edge_sensor_count(pkt.dst[0], pkt.dst[1], m, packets, bytes);
    // Called here, not from `edge_sensor_count`: one call deep fewer (6.1
    // allows 512 bytes of stack over the whole chain, each frame rounded up
    // to 32).
    if watching != 0 {
        watch::edge_sensor_watch(pkt.dst[0], pkt.dst[1], m, packets, bytes);
    }
}

/// [`sample`]'s work, as a global BPF function (see the module doc).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn edge_sensor_count(dst0: u64, dst1: u64, m: u64, packets: u64, bytes: u64) -> i64 {
    let dst: Addr = [dst0, dst1];
    let key = DstKey {
        addr: read::addr_bytes(dst),
    };
    if let Some(stats) = maps::dst_stats(&key) {
        // One value shared by every CPU (memory that does not grow with
        // the core count): atomic adds keep it exact.
        for_each_class(meta::proto(m), meta::syn(m), meta::fragment(m), |i| {
            // SAFETY: `stats` points into a live map value and `i` is a
            // valid index (`for_each_class`).
            unsafe {
                read::atomic_add(&raw mut (*stats).packets[i], packets);
                read::atomic_add(&raw mut (*stats).bytes[i], bytes);
            }
        });
    }
    0
}

/// The key of exporter `addr` (its agent or source address) and
/// `sub_agent` for a datagram that arrived as `dgram`.
#[inline(always)]
pub fn exporter_key(dgram: &Datagram, addr: [u8; 16], sub_agent: u32) -> ExporterKey {
    ExporterKey {
        addr,
        sub_agent,
        port: dgram.dst_port,
        kind: dgram.kind,
        _pad: 0,
    }
}

/// Counts a datagram that could not be parsed, under its source address.
#[inline(always)]
pub fn unparsed(dgram: &Datagram, error: Option<ParseError>) {
    if let Some(stats) = maps::exporter_stats(&exporter_key(dgram, read::addr_bytes(dgram.src), 0))
    {
        // SAFETY: a per-CPU value.
        let s = unsafe { &mut *stats };
        s.datagrams += 1;
        s.bytes += u64::from(dgram.payload_len);
        s.last_seen_ns = now_coarse();
        if let Some(e) = error {
            let i = e as usize;
            if i < ParseError::COUNT {
                s.errors[i] += 1;
            }
        }
    }
}

/// Adds a walked datagram of `format` to its exporter's counters.
#[inline(always)]
pub fn exporter(key: &ExporterKey, dgram: &Datagram, w: &Walk, gaps: u32, resets: u32, format: u8) {
    let Some(stats) = maps::exporter_stats(key) else {
        return;
    };
    // SAFETY: a per-CPU value.
    let s = unsafe { &mut *stats };
    s.format = format;
    s.datagrams += 1;
    s.bytes += u64::from(dgram.payload_len);
    s.samples += u64::from(w.samples);
    s.records += u64::from(w.records);
    s.sequence_gaps += u64::from(gaps);
    s.sequence_resets += u64::from(resets);
    for i in 0..ParseError::COUNT {
        s.errors[i] += u64::from(w.errors[i]);
    }
    seen(s, w);
}

/// The time an exporter was last seen is stamped with: CLOCK_MONOTONIC as
/// of the last timer tick (CLOCK_MONOTONIC_COARSE: the same clock, 1 to 4
/// ms behind). `bpf_ktime_get_ns` reads the clock source (an ordered TSC
/// read): measured at about 25 ns a datagram, a sixth of a small IPFIX
/// datagram's cost, for a precision nothing reading the stamp uses.
#[inline(always)]
fn now_coarse() -> u64 {
    // SAFETY: a helper without arguments.
    unsafe { bpf_ktime_get_coarse_ns() }
}

/// When the exporter was last counted, and the rate its samples got.
#[inline(always)]
pub fn seen(s: &mut ExporterStats, w: &Walk) {
    s.last_seen_ns = now_coarse();
    if w.rate_used != 0 {
        s.sampling_rate = w.rate_used;
        s.rate_source = w.rate_source;
    }
}
