//! sFlow version 5 (sflow.org/sflow_version_5.txt) parsed in the kernel.
//!
//! The datagram is copied once into this CPU's scratch entry
//! (`scratch.rs`), then walked there: datagram header -> samples -> flow records -> the
//! sampled packet's header. Every length is checked against the structure
//! that contains it; a length that lies stops the walk at that level and is
//! counted, never trusted.
//!
//! One flat `bpf_loop` walks everything: between samples a step reads a
//! sample header; inside a flow sample a step reads one record, and the step
//! after the last record counts the sample. The walk's state lives in the
//! scratch map, not on the stack: the verifier tracks stack contents across
//! `bpf_loop` iterations and explores the callback again for every new
//! combination of ranges (a bounded sampling rate kept on the stack was
//! enough to pass a million instructions), whereas map memory it does not
//! track. Nesting a record loop inside a sample loop cost the same way.
//!
//! Bounds: at most [`MAX_SAMPLES`] samples per datagram (no valid 9000-byte
//! datagram has more), [`MAX_RECORDS`] records per sample (real exporters
//! send 1 to 5), [`MAX_DATAGRAM`] bytes per datagram. Anything past them is
//! counted by reason and the datagram is passed on to the stack, not dropped.

use core::ffi::c_void;

use aya_ebpf::helpers::bpf_loop;
use edge_sensor_common::{
    FORMAT_SFLOW5, MAX_RECORDS, MAX_SAMPLES, MAX_SAMPLING_RATE, MAX_STRIPPED, ParseError,
    RateSource, SAMPLING_OVERRIDE, WatchKind,
};

use crate::{
    count,
    meta::Source,
    read::{self, Addr, Data, fits},
    sampled,
    scratch::{self, LoopCtx, Scratch, SflowWalk, Walk},
    sequence,
};

/// Datagram header fields (sFlow v5 §5.1 `sample_datagram_v5`).
pub struct Header {
    /// Agent address (IPv4 mapped into IPv6).
    pub agent: Addr,
    pub sub_agent: u32,
    pub sequence: u32,
    pub uptime_ms: u32,
    pub num_samples: u32,
    /// Offset of the first sample.
    pub samples_off: u32,
}

/// Steps one walk may take: every sample header and record, and one more
/// to see that no sample is left.
pub(crate) const MAX_STEPS: u32 = MAX_SAMPLES * (MAX_RECORDS + 1) + 1;

/// Parses and counts the sFlow datagram in this CPU's scratch entry; 1 when
/// all of it was accounted for. A global function: verified once, on its
/// own (see `main.rs`).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn edge_sensor_sflow() -> i64 {
    let Some(s) = scratch::get() else {
        return 0;
    };
    let header = match header(&s.data, s.walk.end) {
        Ok(h) => h,
        Err(e) => {
            count::unparsed(&s.dgram, Some(e));
            return 0;
        }
    };
    let key = count::exporter_key(&s.dgram, read::addr_bytes(header.agent), header.sub_agent);
    let (gaps, resets) = sequence::check(&key, header.sequence, header.uptime_ms, 1);
    walk(s, &header);
    sequence::agent_drops(&key, s.walk.max_drops);
    count::exporter(&key, &s.dgram, &s.walk, gaps, resets, FORMAT_SFLOW5);
    i64::from(s.walk.fatal == 0)
}

/// Reads the datagram header (the datagram is `end` bytes).
#[inline(always)]
pub fn header(d: &Data, end: u32) -> Result<Header, ParseError> {
    if !fits(0, 8, end) {
        return Err(ParseError::TruncatedHeader);
    }
    if d.be32(0) != 5 {
        return Err(ParseError::BadVersion);
    }
    let (agent, rest) = match d.be32(4) {
        1 if fits(8, 4, end) => (d.addr4_mapped(8), 12),
        2 if fits(8, 16, end) => (d.addr16(8), 24),
        1 | 2 => return Err(ParseError::TruncatedHeader),
        _ => return Err(ParseError::BadAgentAddress),
    };
    if !fits(rest, 16, end) {
        return Err(ParseError::TruncatedHeader);
    }
    Ok(Header {
        agent,
        sub_agent: d.be32(rest),
        sequence: d.be32(rest + 4),
        uptime_ms: d.be32(rest + 8),
        num_samples: d.be32(rest + 12),
        samples_off: rest + 16,
    })
}

/// Walks the samples of the datagram in `s` whose header is `h`.
#[inline(always)]
fn walk(s: &mut Scratch, h: &Header) {
    s.walk.off = h.samples_off;
    s.walk.reset_results();
    let f = &mut s.sflow;
    f.sample_end = 0;
    f.rate = 0;
    f.samples_left = if h.num_samples > MAX_SAMPLES {
        MAX_SAMPLES
    } else {
        h.num_samples
    };
    f.records_left = 0;
    f.records_over = 0;
    let mut loop_ctx = LoopCtx {
        scratch: s as *mut Scratch,
    };
    // SAFETY: the callback has bpf_loop's signature; loop_ctx outlives the call.
    unsafe {
        bpf_loop(
            MAX_STEPS,
            step as *mut c_void,
            (&mut loop_ctx as *mut LoopCtx).cast(),
            0,
        );
    }
    let w = &mut s.walk;
    if w.done != 0 {
        if h.num_samples > MAX_SAMPLES {
            w.error(ParseError::TooManySamples);
        } else if w.off < w.end {
            w.error(ParseError::TrailingBytes);
        }
    }
}

/// One step of the walk (`bpf_loop` callback): returns 1 to stop.
extern "C" fn step(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the `LoopCtx` given in `walk`, whose
    // pointer is this CPU's scratch entry.
    let Scratch {
        walk: w,
        sflow: f,
        data: d,
        ..
    } = unsafe { &mut *(*ctx.cast::<LoopCtx>()).scratch };
    if f.sample_end == 0 {
        sample_header(w, f, d)
    } else {
        record(w, f, d);
        0
    }
}

/// Reads the next sample's header; enters a flow sample, skips any other.
#[inline(always)]
fn sample_header(w: &mut Walk, f: &mut SflowWalk, d: &Data) -> i64 {
    if f.samples_left == 0 {
        w.done = 1;
        return 1;
    }
    f.samples_left -= 1;
    let off = w.off;
    if !fits(off, 8, w.end) {
        w.error(ParseError::MissingSamples);
        return 1;
    }
    let format = d.be32(off);
    let len = d.be32(off + 4);
    let body = off + 8;
    if len > w.end - body {
        w.error(ParseError::BadSampleLength);
        return 1;
    }
    let next = body + len;
    w.off = next;
    // Enterprise 0 (sflow.org): 1 = flow sample, 3 = expanded flow sample.
    // Counter samples and other enterprises' samples are skipped by length.
    if format != 1 && format != 3 {
        return 0;
    }
    // Fixed part: compact (1) 32 bytes, expanded (3) 44 bytes.
    let (fixed, rate, drops, num_records) = if format == 1 {
        (32, d.be32(body + 8), d.be32(body + 16), d.be32(body + 28))
    } else {
        (44, d.be32(body + 12), d.be32(body + 20), d.be32(body + 40))
    };
    if !fits(body, fixed, next) {
        w.error(ParseError::BadSampleLength);
        return 1;
    }
    w.samples += 1;
    if drops > w.max_drops {
        w.max_drops = drops;
    }
    if rate == 0 {
        w.error(ParseError::ZeroSamplingRate);
        return 0;
    }
    if rate > MAX_SAMPLING_RATE {
        w.error(ParseError::SamplingRateTooHigh);
        return 0;
    }
    f.have_raw = 0;
    f.have_ip = 0;
    if w.rule_mode == SAMPLING_OVERRIDE {
        f.rate = w.rule_rate;
        w.rate_source = RateSource::ConfigOverride as u8;
    } else {
        f.rate = rate;
        w.rate_source = RateSource::Sample as u8;
    }
    w.rate_used = f.rate;
    f.records_left = if num_records > MAX_RECORDS {
        MAX_RECORDS
    } else {
        num_records
    };
    f.records_over = u8::from(num_records > MAX_RECORDS);
    w.off = body + fixed;
    f.sample_end = next;
    if f.records_left == 0 {
        sample_done(w, f);
    }
    0
}

/// After a flow sample's last record: counts what it describes.
#[inline(always)]
fn sample_done(w: &mut Walk, f: &mut SflowWalk) {
    w.off = f.sample_end;
    f.sample_end = 0;
    if f.records_over != 0 {
        w.error(ParseError::TooManyRecords);
    }
    let rate = u64::from(f.rate);
    // The raw header wins; the sampled_ipv4/ipv6 record's own header says
    // how long it is (40 or 64 bytes).
    let (pkt, len, at, rec_len) = if f.have_raw != 0 {
        (&f.raw, f.raw_len, f.raw_off, f.raw_rec_len)
    } else if f.have_ip != 0 {
        (&f.ip, f.ip_len, f.ip_off, 64)
    } else {
        w.error(ParseError::NoDestination);
        return;
    };
    let src = Source {
        kind: WatchKind::SflowRecord,
        at,
        len: rec_len,
    };
    count::sample(pkt, rate, u64::from(len) * rate, w.watching, src);
}

/// Reads one record of the current flow sample, and counts the sample after
/// its last record. A record whose length lies ends the sample, uncounted.
#[inline(always)]
fn record(w: &mut Walk, f: &mut SflowWalk, d: &Data) {
    f.records_left -= 1;
    let off = w.off;
    let end = f.sample_end;
    if !record_ok(w, f, d, off, end) {
        w.error(ParseError::BadRecordLength);
        w.off = end;
        f.sample_end = 0;
    } else if f.records_left == 0 {
        sample_done(w, f);
    }
}

#[inline(always)]
fn record_ok(w: &mut Walk, f: &mut SflowWalk, d: &Data, off: u32, end: u32) -> bool {
    if !fits(off, 8, end) {
        return false;
    }
    let format = d.be32(off);
    let len = d.be32(off + 4);
    let body = off + 8;
    if len > end - body {
        return false;
    }
    w.records += 1;
    let rec_end = body + len;
    w.off = rec_end;
    match format {
        1 => raw_header(f, d, body, rec_end),
        3 => sampled_ipv4(f, d, body, rec_end),
        4 => sampled_ipv6(f, d, body, rec_end),
        _ => true,
    }
}

/// sampled_header (format 1): header_protocol, frame_length, stripped,
/// header_length, then the header bytes. `false` when the record is too
/// short for what it announces.
#[inline(always)]
fn raw_header(f: &mut SflowWalk, d: &Data, body: u32, end: u32) -> bool {
    if !fits(body, 16, end) {
        return false;
    }
    let header_len = d.be32(body + 12);
    if header_len > end - (body + 16) {
        return false;
    }
    if f.have_raw != 0 {
        return true;
    }
    let frame_len = d.be32(body + 4);
    let stripped = d.be32(body + 8);
    if sampled::parse_into_raw(body + 16, header_len, d.be32(body)) {
        f.raw_len = if stripped <= MAX_STRIPPED && stripped < frame_len {
            frame_len - stripped
        } else {
            frame_len
        };
        f.have_raw = 1;
        // The whole record, from its format: userspace reads
        // header_protocol, frame_length and stripped from it again.
        f.raw_off = body - 8;
        f.raw_rec_len = end - (body - 8);
    }
    true
}

/// sampled_ipv4 (format 3): length, protocol, src, dst, ports, tcp_flags, tos.
#[inline(always)]
fn sampled_ipv4(f: &mut SflowWalk, d: &Data, body: u32, end: u32) -> bool {
    if !fits(body, 32, end) {
        return false;
    }
    if f.have_ip == 0 {
        f.ip = sampled::from_ip_record(
            d.addr4_mapped(body + 12),
            d.be32(body + 4),
            d.be32(body + 24),
        );
        f.ip_len = d.be32(body);
        f.have_ip = 1;
        f.ip_off = body - 8;
    }
    true
}

/// sampled_ipv6 (format 4): length, protocol, src(16), dst(16), ports,
/// tcp_flags, priority.
#[inline(always)]
fn sampled_ipv6(f: &mut SflowWalk, d: &Data, body: u32, end: u32) -> bool {
    if !fits(body, 56, end) {
        return false;
    }
    if f.have_ip == 0 {
        f.ip = sampled::from_ip_record(d.addr16(body + 24), d.be32(body + 4), d.be32(body + 48));
        f.ip_len = d.be32(body);
        f.have_ip = 1;
        f.ip_off = body - 8;
    }
    true
}
