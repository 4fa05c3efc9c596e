//! NetFlow v9 (RFC 3954) and IPFIX (RFC 7011) data sets, decoded in the
//! kernel with plans userspace compiled from the templates (`FLOW_PLANS`).
//!
//! The kernel takes a datagram only when it is clean: a well-formed header,
//! every set a data set whose template has a plan, at most
//! [`MAX_FLOW_SETS`] sets and [`MAX_FLOW_RECORDS`] records. Anything else —
//! templates, options data, unknown templates, odd lengths — goes to
//! userspace whole (XDP_PASS), where the userspace decoder counts it and
//! compiles new plans. So a datagram is counted by exactly one side, and
//! nothing is lost while templates are learnt.
//!
//! Two flat `bpf_loop` walks over the scratch copy: the first checks the
//! sets and keeps each set's plan (one map lookup per set), the second
//! counts their records, each record in a global function
//! (`edge_sensor_template_record`) verified once on its own. A set's plan
//! is compiled once for its records (`scratch::SetPlan`): every field is
//! then read with one load, a byte swap, a shift and a mask, whatever its
//! length: no branch per length for the verifier to multiply, nor for the
//! CPU to predict. Learnt sampling rates are looked up once per datagram.
//!
//! An exporter's datagrams come to one CPU (RSS hashes its UDP flow) and
//! repeat their templates, so each CPU remembers its last lookups of plans
//! and rates (`scratch::TemplateMemo`) and the last plan it compiled: while
//! `Settings::plans_generation` is unchanged (the daemon bumps it after
//! every change to `FLOW_PLANS` or `FLOW_RATES`), a set whose key matches
//! takes them without asking the maps, which measured about a sixth of a
//! one-record datagram's cost.

use core::ffi::c_void;

use aya_ebpf::helpers::bpf_loop;
use edge_sensor_common::{
    DOMAIN_RATE, FORMAT_IPFIX, FORMAT_NETFLOW9, MAX_FLOW_RECORDS, MAX_FLOW_SETS, PlanKey, RateKey,
    RateSource, SAMPLING_DEFAULT, SAMPLING_OVERRIDE, WatchKind, count::scale, plan::FieldRead,
    proto::tcp_flags,
};

use crate::{
    count, maps,
    meta::Source,
    packet::Packet,
    read::{self, Addr, Data, fits},
    scratch::{
        self, DOMAIN_MEMO, LoopCtx, SAMPLER_MEMO, Scratch, TemplateMemo, TemplateWalk, Walk,
    },
    sequence,
};

/// IPFIX fragmentFlags "More Fragments" (bit 2 from the top).
const MORE_FRAGMENTS: u64 = 0x20;

/// Counts the v9 (`version` 9) or IPFIX (10) datagram in this CPU's scratch
/// entry when it is clean and every template has a plan; 1 when counted
/// here, 0 when passed on for userspace. Sequence numbers are checked here
/// for every datagram, taken or passed, since only the kernel sees them
/// all. A global function (see `main.rs`).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn edge_sensor_template(version: u64) -> i64 {
    let Some(s) = scratch::get() else {
        return 0;
    };
    let v9 = version == 9;
    let Some((domain, start, end)) = header(&s.data, v9, s.walk.end) else {
        return 0;
    };
    let addr = read::addr_bytes(s.dgram.src);
    keys(&mut s.template, addr, s.dgram.src_port, domain);
    s.template.kind = if v9 {
        WatchKind::NetFlow9 as u8
    } else {
        WatchKind::Ipfix as u8
    };
    s.template.domain_known = 0;
    s.template.sampler_known = 0;
    s.template.generation = maps::plans_generation();
    let key = count::exporter_key(&s.dgram, addr, domain);
    let clean = check(s, start, end);
    if clean {
        walk(s, start);
    }
    // NetFlow v9 numbers datagrams (RFC 3954 §5.1); IPFIX numbers data
    // records (RFC 7011 §3.1), which only a datagram decoded here has
    // counted, so after one passed on the next sets a new baseline.
    let d = &s.data;
    let (gaps, resets) = if v9 {
        sequence::check(&key, d.be32(12), d.be32(4), 1)
    } else if clean {
        sequence::check(&key, d.be32(8), 0, s.walk.records)
    } else {
        sequence::resync(&key, d.be32(8));
        (0, 0)
    };
    if (clean || gaps != 0 || resets != 0)
        && let Some(stats) = maps::exporter_stats(&key)
    {
        // SAFETY: a per-CPU value.
        let st = unsafe { &mut *stats };
        if clean {
            st.datagrams += 1;
            st.bytes += u64::from(s.dgram.payload_len);
            st.records += u64::from(s.walk.records);
            st.format = if v9 { FORMAT_NETFLOW9 } else { FORMAT_IPFIX };
            count::seen(st, &s.walk);
        }
        st.sequence_gaps += u64::from(gaps);
        st.sequence_resets += u64::from(resets);
    }
    i64::from(clean)
}

/// Message header of a v9 or IPFIX datagram of `len` bytes: the
/// observation domain / source id, and where the sets start and end.
/// `None` when malformed (userspace says why).
#[inline(always)]
fn header(d: &Data, v9: bool, len: u32) -> Option<(u32, u32, u32)> {
    if v9 {
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
#[inline(always)]
fn check(s: &mut Scratch, start: u32, end: u32) -> bool {
    let w = &mut s.walk;
    w.off = start;
    w.end = end;
    w.records = 0;
    w.done = 0;
    w.fatal = 1;
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
    s.walk.done != 0 && s.walk.fatal == 0
}

/// One set of the check (`bpf_loop` callback): its plan is kept in
/// `plans[index]` for the count.
extern "C" fn check_set(index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the `LoopCtx` given in `check`.
    let Scratch {
        walk: w,
        template: t,
        data: d,
        memo,
        ..
    } = unsafe { &mut *(*ctx.cast::<LoopCtx>()).scratch };
    let off = w.off;
    if !fits(off, 4, w.end) {
        // No set header left: the walk is over and every set was fine.
        w.done = 1;
        w.fatal = 0;
        return 1;
    }
    let id = d.be16(off);
    let len = u32::from(d.be16(off + 2));
    // A set past MAX_FLOW_SETS: not done, so not clean.
    if len < 4 || len > w.end - off || id < 256 || index >= u64::from(MAX_FLOW_SETS) {
        return 1;
    }
    t.plan_key.template = id;
    let i = slot(index);
    // The plan this slot holds is this set's while the key and the
    // generation match (the same exporter's datagrams keep their sets'
    // templates); else it is looked up, copied whole into the slot
    // (8-aligned: six words) and read there: the plan checked is the plan
    // counted with. One branch for the verifier to follow, not three. A
    // failed lookup leaves the slot as it was, still true of its own key.
    let generation = t.generation;
    let stale = u64::from(memo.plan_generations[i] ^ generation)
        | maps::words_diff(&memo.plan_keys[i], &t.plan_key);
    if stale != 0 {
        let Some(found) = maps::flow_plan(&t.plan_key) else {
            return 1;
        };
        maps::copy_words(&mut t.plans[i], found);
        maps::copy_words(&mut memo.plan_keys[i], &t.plan_key);
        memo.plan_generations[i] = generation;
    }
    let record_len = u32::from(t.plans[i].record_len);
    if record_len == 0 {
        return 1;
    }
    let records = (len - 4) / record_len;
    t.set_records[i] = records;
    w.records += records;
    if w.records > MAX_FLOW_RECORDS {
        return 1;
    }
    w.off = off + len;
    if !fits(w.off, 4, w.end) {
        // The last set (what the next step would find): over, every set fine.
        w.done = 1;
        w.fatal = 0;
        return 1;
    }
    0
}

/// `index` as a slot of the per-set arrays, masked in inline assembly:
/// LLVM drops a plain mask that a bound check before it makes redundant,
/// and 6.1's verifier loses that check's bound when the index is spilled
/// and reloaded ("math between map_value pointer and register with
/// unbounded min value"). Masked again in Rust, which LLVM cannot see
/// through the assembly: it proves the arrays' bounds (no panic path).
#[inline(always)]
fn slot(index: u64) -> usize {
    const MASK: u64 = MAX_FLOW_SETS as u64 - 1;
    let mut x = index;
    // SAFETY: a register-only AND; no memory, no side effects.
    unsafe { core::arch::asm!("{0} &= {m}", inout(reg) x, m = const MASK) };
    (x & MASK) as usize
}

/// Counts every record of a datagram [`check`] found clean.
#[inline(always)]
fn walk(s: &mut Scratch, start: u32) {
    s.walk.off = start;
    s.walk.records = 0;
    s.template.records_left = 0;
    s.template.set = 0;
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
    let Scratch {
        walk: w,
        template: t,
        data: d,
        memo,
        ..
    } = unsafe { &mut *(*ctx.cast::<LoopCtx>()).scratch };
    if t.records_left == 0 {
        let off = w.off;
        if !fits(off, 4, w.end) {
            return 1;
        }
        let len = u32::from(d.be16(off + 2));
        // The plan the check found for this set (the map is not asked
        // again: one lookup per set, and the same plan both times),
        // compiled once for all the set's records, unless it is the plan
        // compiled last.
        let i = slot(u64::from(t.set));
        t.set += 1;
        if maps::words_diff(&memo.compiled, &t.plans[i]) != 0 {
            t.set_plan.compile(&t.plans[i]);
            maps::copy_words(&mut memo.compiled, &t.plans[i]);
        }
        if t.set_plan.record_len == 0 || len < 4 {
            return 1;
        }
        t.records_left = t.set_records[i];
        t.rec_off = off + 4;
        w.off = off + len;
        return 0;
    }
    t.records_left -= 1;
    let r = t.rec_off;
    t.rec_off = r + t.set_plan.record_len;
    w.records += 1;
    edge_sensor_template_record(u64::from(r));
    // The last record of the last set: no step to find that out.
    if t.records_left == 0 && !fits(w.off, 4, w.end) {
        return 1;
    }
    0
}

/// A field of the record at `r`, by its compiled reading.
#[inline(always)]
fn field(d: &Data, r: u32, f: FieldRead) -> u64 {
    f.value(d.be64(r + f.off))
}

/// A rate from a record field: valid from 1 to u32::MAX.
#[inline(always)]
fn field_rate(d: &Data, r: u32, f: FieldRead) -> Option<u32> {
    let v = field(d, r, f);
    if v >= 1 && v <= u64::from(u32::MAX) {
        Some(v as u32)
    } else {
        None
    }
}

/// Counts the record at `r` with the current set's compiled plan. A global
/// function: the verifier checks a record once, whatever the walk around it.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn edge_sensor_template_record(r: u64) -> i64 {
    let Some(s) = scratch::get() else {
        return 0;
    };
    let Scratch {
        walk: w,
        template: t,
        data: d,
        ..
    } = s;
    let r = r as u32;
    let p = &t.set_plan;
    // Dual-stack templates carry both addresses; IPv4 wins unless it is
    // 0.0.0.0 and IPv6 is set (as the userspace decoder decides).
    let v6 = if p.has_v6 != 0 {
        Some(d.addr16(r + p.dst_v6))
    } else {
        None
    };
    let dst: Addr = if p.has_v4 != 0 {
        let v4 = d.addr4_mapped(r + p.dst_v4);
        match v6 {
            // The IPv4 address is the mapped form's top 32 bits.
            Some(a) if v4[1] >> 32 == 0 && (a[0] | a[1]) != 0 => a,
            _ => v4,
        }
    } else {
        match v6 {
            Some(a) => a,
            None => return 0,
        }
    };
    let packets = field(d, r, p.packets);
    let octets = field(d, r, p.octets);
    let proto = field(d, r, p.protocol) as u8;
    let flags = field(d, r, p.tcp_flags) as u8;
    let fragment =
        field(d, r, p.fragment_offset) != 0 || field(d, r, p.fragment_flags) & MORE_FRAGMENTS != 0;
    let record_len = p.record_len;
    let (interval, random_interval) = (p.sampling_interval, p.sampler_random_interval);
    // A configured override; else the record's own rate, then its
    // sampler's, then the domain's; else a configured default, else 1.
    let rate = if w.rule_mode == SAMPLING_OVERRIDE {
        w.rate_source = RateSource::ConfigOverride as u8;
        w.rule_rate
    } else if let Some(v) = field_rate(d, r, interval) {
        w.rate_source = RateSource::Record as u8;
        v
    } else if let Some(v) = field_rate(d, r, random_interval) {
        w.rate_source = RateSource::Record as u8;
        v
    } else {
        learnt_rate(w, t, d, r)
    };
    w.rate_used = rate;
    let pkt = Packet {
        dst,
        proto,
        syn: proto == edge_sensor_common::proto::ipproto::TCP && tcp_flags::is_syn(flags),
        fragment,
    };
    let kind = if t.kind == WatchKind::NetFlow9 as u8 {
        WatchKind::NetFlow9
    } else {
        WatchKind::Ipfix
    };
    let src = Source {
        kind,
        at: r,
        len: record_len,
    };
    count::sample(
        &pkt,
        scale(packets, rate),
        scale(octets, rate),
        w.watching,
        src,
    );
    0
}

/// The rate options data gave the record's sampler, else its domain; else
/// the configured default, else 1 (unsampled). Each is looked up once per
/// datagram (the domain's, and the last sampler's: records of a datagram
/// name one or two samplers), not once per record.
#[inline(always)]
fn learnt_rate(w: &mut Walk, t: &mut TemplateWalk, d: &Data, r: u32) -> u32 {
    if t.set_plan.sampler.present() {
        let id = field(d, r, t.set_plan.sampler);
        if t.sampler_known == 0 || t.sampler_id != id {
            let found = edge_sensor_template_rate(SAMPLER_MEMO as u64, id);
            t.sampler_id = id;
            if found >= 0 {
                t.sampler_rate = found as u32;
                t.sampler_known = 1;
            } else {
                t.sampler_known = 2;
            }
        }
        if t.sampler_known == 1 {
            w.rate_source = RateSource::Options as u8;
            return t.sampler_rate;
        }
    }
    if t.domain_known == 0 {
        let found = edge_sensor_template_rate(DOMAIN_MEMO as u64, DOMAIN_RATE);
        let (rate, source) = if found >= 0 {
            (found as u32, RateSource::Options)
        } else if w.rule_mode == SAMPLING_DEFAULT {
            (w.rule_rate, RateSource::ConfigDefault)
        } else {
            (1, RateSource::Unsampled)
        };
        t.domain_rate = rate;
        t.domain_source = source as u8;
        t.domain_known = 1;
    }
    w.rate_source = t.domain_source;
    t.domain_rate
}

/// The learnt rate of `sampler` (or [`DOMAIN_RATE`]) in the datagram's
/// session and domain, -1 for none: the lookup in memo `slot` when it was
/// for that key in this generation (see `TemplateMemo::plan_keys`), else a
/// new lookup, kept there. A global function, called once per datagram
/// (or per change of sampler) and verified once: inlined at both of the
/// record's call sites it added about 300 processed instructions there.
/// It writes only `rate_key.sampler` and the memo, which its caller does
/// not read afterwards.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn edge_sensor_template_rate(slot: u64, sampler: u64) -> i64 {
    let Some(s) = scratch::get() else {
        return -1;
    };
    s.template.rate_key.sampler = sampler;
    match rate(&s.template, &mut s.memo, slot as usize) {
        Some(rate) => i64::from(rate),
        None => -1,
    }
}

/// [`edge_sensor_template_rate`]'s work.
#[inline(always)]
fn rate(t: &TemplateWalk, memo: &mut TemplateMemo, slot: usize) -> Option<u32> {
    let generation = t.generation;
    let m = &mut memo.rate_memo[slot & 1];
    if u64::from(m.generation ^ generation) | maps::words_diff(&m.key, &t.rate_key) == 0 {
        return if m.found != 0 { Some(m.rate) } else { None };
    }
    // Both halves set on both paths: an `Option`'s value is undefined when
    // `None`, and LLVM may then move an unset register the verifier refuses
    // to read.
    let (found, rate) = match maps::flow_rate(&t.rate_key) {
        Some(rate) => (1, rate),
        None => (0, 0),
    };
    maps::copy_words(&mut m.key, &t.rate_key);
    m.found = found;
    m.rate = rate;
    m.generation = generation;
    if found != 0 { Some(rate) } else { None }
}

/// The keys of plans and rates for a datagram from `addr`:`src_port`.
#[inline(always)]
fn keys(t: &mut TemplateWalk, addr: [u8; 16], src_port: u16, domain: u32) {
    t.plan_key = PlanKey {
        addr,
        domain,
        template: 0,
        src_port,
    };
    t.rate_key = RateKey {
        addr,
        domain,
        src_port,
        _pad: 0,
        sampler: DOMAIN_RATE,
    };
}
