//! NetFlow v9 (RFC 3954) and IPFIX (RFC 7011) data sets, decoded in the
//! kernel with plans userspace compiled from the templates (`FLOW_PLANS`).
//!
//! The kernel takes a datagram only when it is clean: a well-formed header,
//! every set a data set whose template has a plan, at most
//! [`MAX_FLOW_SETS`] sets and [`MAX_FLOW_RECORDS`] records. Anything else —
//! templates, options data, unknown templates, odd lengths — goes to
//! userspace whole (XDP_PASS), where the reference decoder counts it and
//! compiles new plans. So a datagram is counted by exactly one side, and
//! nothing is lost while templates are learnt.
//!
//! Two flat `bpf_loop` walks over the scratch copy: the first checks the
//! sets, the second counts their records.

use core::ffi::c_void;

use aya_ebpf::helpers::bpf_loop;
use edge_sensor_common::{
    DOMAIN_RATE, FieldLoc, MAX_FLOW_RECORDS, MAX_FLOW_SETS, PlanKey, RateKey, RateSource,
    SAMPLING_DEFAULT, SAMPLING_OVERRIDE, WatchKind, proto::tcp_flags,
};

use crate::{
    count, maps,
    read::{Addr, Data, fits},
    sampled::Packet,
    sflow::{LoopCtx, Scratch},
    watch,
};

/// IPFIX fragmentFlags "More Fragments" (bit 2 from the top).
const MORE_FRAGMENTS: u64 = 0x20;

/// Message header of a v9 (`version` 9) or IPFIX (10) datagram of `len`
/// bytes: the observation domain / source id, and where the sets start and
/// end. `None` when malformed (userspace says why).
#[inline(always)]
pub fn header(d: &Data, version: u16, len: u32) -> Option<(u32, u32, u32)> {
    if version == 9 {
        if !fits(0, 20, len) {
            return None;
        }
        Some((d.be32(16), 20, len))
    } else {
        if !fits(0, 16, len) {
            return None;
        }
        let msg_len = u32::from(d.be16(2));
        if msg_len < 16 || msg_len > len {
            return None;
        }
        Some((d.be32(12), 16, msg_len))
    }
}

/// Whether the kernel can take the whole datagram (see the module doc).
/// `start..end` are the sets; `plan_key`/`rate_key` are filled but for the
/// template id and sampler.
#[inline(always)]
pub fn check(s: &mut Scratch, start: u32, end: u32) -> bool {
    let w = &mut s.walk;
    w.off = start;
    w.end = end;
    w.records = 0;
    w.clean = 0;
    w.done = 0;
    let mut loop_ctx = LoopCtx {
        scratch: s as *mut Scratch,
    };
    // SAFETY: the callback has bpf_loop's signature; loop_ctx outlives the call.
    unsafe {
        bpf_loop(
            MAX_FLOW_SETS + 1,
            check_set as *mut c_void,
            (&mut loop_ctx as *mut LoopCtx).cast(),
            0,
        );
    }
    s.walk.done != 0 && s.walk.clean != 0
}

/// One set of the check (`bpf_loop` callback).
extern "C" fn check_set(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the `LoopCtx` given in `check`.
    let Scratch { walk: w, data: d } = unsafe { &mut *(*ctx.cast::<LoopCtx>()).scratch };
    let off = w.off;
    if !fits(off, 4, w.end) {
        // No set header left: the walk is over and every set was fine.
        w.done = 1;
        w.clean = 1;
        return 1;
    }
    let id = d.be16(off);
    let len = u32::from(d.be16(off + 2));
    if len < 4 || len > w.end - off || id < 256 {
        return 1;
    }
    w.plan_key.template = id;
    let Some(plan) = maps::flow_plan(&w.plan_key) else {
        return 1;
    };
    let record_len = u32::from(plan.record_len);
    if record_len == 0 {
        return 1;
    }
    w.records += (len - 4) / record_len;
    if w.records > MAX_FLOW_RECORDS {
        return 1;
    }
    w.off = off + len;
    0
}

/// Counts every record of a datagram [`check`] found clean.
#[inline(always)]
pub fn walk(s: &mut Scratch, start: u32) {
    let w = &mut s.walk;
    w.off = start;
    w.records_left = 0;
    w.records = 0;
    let mut loop_ctx = LoopCtx {
        scratch: s as *mut Scratch,
    };
    // SAFETY: as in `check`.
    unsafe {
        bpf_loop(
            MAX_FLOW_SETS + MAX_FLOW_RECORDS + 1,
            count_step as *mut c_void,
            (&mut loop_ctx as *mut LoopCtx).cast(),
            0,
        );
    }
}

/// One step (`bpf_loop` callback): enter the next set, or count one record.
extern "C" fn count_step(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the `LoopCtx` given in `walk`.
    let Scratch { walk: w, data: d } = unsafe { &mut *(*ctx.cast::<LoopCtx>()).scratch };
    if w.records_left == 0 {
        let off = w.off;
        if !fits(off, 4, w.end) {
            return 1;
        }
        let len = u32::from(d.be16(off + 2));
        w.plan_key.template = d.be16(off);
        let Some(plan) = maps::flow_plan(&w.plan_key) else {
            return 1;
        };
        w.plan = plan;
        let record_len = u32::from(plan.record_len);
        if record_len == 0 || len < 4 {
            return 1;
        }
        w.records_left = (len - 4) / record_len;
        w.rec_off = off + 4;
        w.off = off + len;
        return 0;
    }
    w.records_left -= 1;
    let r = w.rec_off;
    w.rec_off = r + u32::from(w.plan.record_len);
    w.records += 1;
    record(w, d, r);
    0
}

/// An unsigned integer of `loc.len` (1 to 8) big-endian bytes at `r + loc.off`.
#[inline(always)]
fn uint(d: &Data, r: u32, loc: FieldLoc) -> u64 {
    let at = r + u32::from(loc.off);
    let mut v = 0u64;
    for i in 0..8u32 {
        if i < u32::from(loc.len) {
            v = (v << 8) | u64::from(d.u8(at + i));
        }
    }
    v
}

/// A rate from a record field: valid from 1 to u32::MAX.
#[inline(always)]
fn field_rate(d: &Data, r: u32, loc: FieldLoc) -> Option<u64> {
    if loc.len == 0 {
        return None;
    }
    let v = uint(d, r, loc);
    if v >= 1 && v <= u64::from(u32::MAX) {
        Some(v)
    } else {
        None
    }
}

/// `a * rate`, saturating, for a rate below 2^32. Written in 32-bit halves:
/// LLVM turns the obvious overflow check into a 128-bit multiply, which BPF
/// does not have.
#[inline(always)]
fn saturating_mul(a: u64, rate: u64) -> u64 {
    let lo = (a & 0xffff_ffff) * rate;
    let hi = (a >> 32) * rate;
    if hi >> 32 != 0 {
        return u64::MAX;
    }
    let sum = lo.wrapping_add(hi << 32);
    if sum < lo { u64::MAX } else { sum }
}

/// Counts the record at `r` with the current plan.
#[inline(always)]
fn record(w: &mut crate::sflow::Walk, d: &Data, r: u32) {
    let p = w.plan;
    // Dual-stack templates carry both addresses; IPv4 wins unless it is
    // 0.0.0.0 and IPv6 is set (as the userspace decoder decides).
    let v6 = if p.dst_v6.len == 16 {
        Some(d.addr16(r + u32::from(p.dst_v6.off)))
    } else {
        None
    };
    let dst: Addr = if p.dst_v4.len == 4 {
        let at = r + u32::from(p.dst_v4.off);
        let v4_zero = d.u8(at) | d.u8(at + 1) | d.u8(at + 2) | d.u8(at + 3) == 0;
        match v6 {
            Some(a) if v4_zero && (a[0] | a[1]) != 0 => a,
            _ => d.addr4_mapped(at),
        }
    } else {
        match v6 {
            Some(a) => a,
            None => return,
        }
    };
    let packets = uint(d, r, p.packets);
    let octets = if p.octets.len == 0 {
        0
    } else {
        uint(d, r, p.octets)
    };
    let proto = if p.protocol.len == 0 {
        0
    } else {
        uint(d, r, p.protocol) as u8
    };
    let flags = if p.tcp_flags.len == 0 {
        0
    } else {
        uint(d, r, p.tcp_flags) as u8
    };
    let fragment = (p.fragment_offset.len != 0 && uint(d, r, p.fragment_offset) != 0)
        || (p.fragment_flags.len != 0 && uint(d, r, p.fragment_flags) & MORE_FRAGMENTS != 0);
    // A configured override; else the record's own rate, then its
    // sampler's, then the domain's; else a configured default, else 1.
    let rate = if w.rule_mode == SAMPLING_OVERRIDE {
        w.rate_source = RateSource::ConfigOverride as u8;
        u64::from(w.rule_rate)
    } else {
        match field_rate(d, r, p.sampling_interval) {
            Some(v) => {
                w.rate_source = RateSource::Record as u8;
                v
            }
            None => match field_rate(d, r, p.sampler_random_interval) {
                Some(v) => {
                    w.rate_source = RateSource::Record as u8;
                    v
                }
                None => learnt_rate(w, d, r),
            },
        }
    };
    w.rate_used = rate as u32;
    let pkt = Packet {
        dst,
        proto,
        syn: proto == edge_sensor_common::proto::ipproto::TCP && tcp_flags::is_syn(flags),
        fragment,
    };
    let packets = saturating_mul(packets, rate);
    let bytes = saturating_mul(octets, rate);
    count::destination(&pkt, packets, bytes);
    let kind = if w.flow_kind == WatchKind::NetFlow9 as u8 {
        WatchKind::NetFlow9
    } else {
        WatchKind::Ipfix
    };
    let src = watch::Source {
        kind,
        at: r,
        len: u32::from(p.record_len),
    };
    watch::sample(w, dst, src, packets, bytes);
}

#[inline(always)]
fn learnt_rate(w: &mut crate::sflow::Walk, d: &Data, r: u32) -> u64 {
    let p = w.plan;
    if p.sampler.len != 0 {
        w.rate_key.sampler = uint(d, r, p.sampler);
        if let Some(rate) = maps::flow_rate(&w.rate_key) {
            w.rate_source = RateSource::Options as u8;
            return u64::from(rate);
        }
    }
    w.rate_key.sampler = DOMAIN_RATE;
    match maps::flow_rate(&w.rate_key) {
        Some(rate) => {
            w.rate_source = RateSource::Options as u8;
            u64::from(rate)
        }
        None if w.rule_mode == SAMPLING_DEFAULT => {
            w.rate_source = RateSource::ConfigDefault as u8;
            u64::from(w.rule_rate)
        }
        None => {
            w.rate_source = RateSource::Unsampled as u8;
            1
        }
    }
}

/// The keys of plans and rates for a datagram from `addr`:`src_port`.
#[inline(always)]
pub fn keys(s: &mut Scratch, addr: [u8; 16], src_port: u16, domain: u32) {
    s.walk.plan_key = PlanKey {
        addr,
        domain,
        template: 0,
        src_port,
    };
    s.walk.rate_key = RateKey {
        addr,
        domain,
        src_port,
        _pad: 0,
        sampler: DOMAIN_RATE,
    };
}
