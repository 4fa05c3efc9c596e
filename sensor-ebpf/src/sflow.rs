//! sFlow version 5 (sflow.org/sflow_version_5.txt) parsed in the kernel.
//!
//! datagram header -> samples (walked with `bpf_loop`) -> flow records
//! (walked with a nested `bpf_loop`) -> the sampled packet's header. Every
//! length is checked against the structure that contains it; a length that
//! lies stops the walk at that level and is counted, never trusted.
//!
//! Bounds: at most [`MAX_SAMPLES`] samples per datagram (no valid 9000-byte
//! datagram has more) and [`MAX_RECORDS`] records per sample (real exporters
//! send 1 to 5); anything past them is counted as `too_many_*` and the
//! datagram is passed on to the stack rather than dropped.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::xdp_md,
    check_bounds_signed,
    helpers::{bpf_loop, bpf_xdp_load_bytes},
    programs::XdpContext,
};
use edge_sensor_common::{
    MAX_RECORDS, MAX_SAMPLED_HEADER, MAX_SAMPLES, MAX_SAMPLING_RATE, MAX_STRIPPED, ParseError,
};

use crate::{
    count, maps,
    read::{Addr, bytes},
    sampled::{self, Packet},
};

/// Datagram header fields after the agent address (sFlow v5 §5.1).
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

/// Reads the datagram header at `off` (datagram ends at `end`).
#[inline(always)]
pub fn header(ctx: &XdpContext, off: u32, end: u32) -> Result<Header, ParseError> {
    let h = bytes::<8>(ctx, off, end).ok_or(ParseError::TruncatedHeader)?;
    if h.be32(0) != 5 {
        return Err(ParseError::BadVersion);
    }
    let (agent, rest_off) = match h.be32(4) {
        1 => {
            let a = bytes::<4>(ctx, off + 8, end).ok_or(ParseError::TruncatedHeader)?;
            (a.addr4_mapped(0), off + 12)
        }
        2 => {
            let a = bytes::<16>(ctx, off + 8, end).ok_or(ParseError::TruncatedHeader)?;
            (a.addr16(0), off + 24)
        }
        _ => return Err(ParseError::BadAgentAddress),
    };
    let r = bytes::<16>(ctx, rest_off, end).ok_or(ParseError::TruncatedHeader)?;
    Ok(Header {
        agent,
        sub_agent: r.be32(0),
        sequence: r.be32(4),
        uptime_ms: r.be32(8),
        num_samples: r.be32(12),
        samples_off: rest_off + 16,
    })
}

/// The walk's state. It lives in a per-CPU map, not on the stack: the
/// verifier tracks stack contents across `bpf_loop` iterations and explores
/// the callback again for every new combination of ranges (a bounded
/// sampling rate in a stack slot was enough to pass a million
/// instructions), whereas map memory it does not track at all.
///
/// One flat loop walks everything: between samples a step reads a sample
/// header; inside a flow sample a step reads one record, and the step after
/// the last record counts the sample.
#[repr(C)]
pub struct Walk {
    /// Cursor and end of the datagram (frame offsets).
    off: u32,
    end: u32,
    /// End of the flow sample whose records are walked; 0 between samples.
    sample_end: u32,
    /// Its sampling rate.
    rate: u32,
    /// Samples still to read (announced, capped at MAX_SAMPLES).
    samples_left: u32,
    /// Records of the current flow sample still to read (capped at MAX_RECORDS).
    records_left: u32,
    /// The current flow sample announced more than MAX_RECORDS records.
    records_over: u8,
    /// All announced samples were read.
    done: u8,
    /// Some error means the datagram was not fully accounted for.
    pub fatal: u8,
    /// The current sample's first raw header record and first
    /// sampled_ipv4/ipv6 record gave a packet.
    have_raw: u8,
    have_ip: u8,
    _pad: [u8; 3],
    raw_len: u32,
    ip_len: u32,
    raw: Packet,
    ip: Packet,
    /// Results.
    pub samples: u32,
    pub records: u32,
    pub max_drops: u32,
    pub errors: [u32; ParseError::COUNT],
    /// The raw header being parsed.
    header: sampled::Header,
}

/// What the `bpf_loop` callback gets: only the program context.
#[repr(C)]
struct LoopCtx {
    ctx: *mut xdp_md,
}

impl Walk {
    #[inline(always)]
    fn error(&mut self, e: ParseError) {
        let i = e as usize;
        if i < ParseError::COUNT {
            self.errors[i] += 1;
        }
        if e.is_fatal() {
            self.fatal = 1;
        }
    }
}

/// Steps one walk may take: every sample header, record and sample end.
const MAX_STEPS: u32 = MAX_SAMPLES * (MAX_RECORDS + 2);

/// Walks the samples of a datagram whose header is `h`; the result is this
/// CPU's walk entry (`None` only if the map lookup fails).
#[inline(always)]
pub fn walk(ctx: &XdpContext, h: &Header, end: u32) -> Option<&'static Walk> {
    let w = maps::walk_scratch()?;
    // SAFETY: this CPU's entry; nothing else runs on this CPU meanwhile.
    let w = unsafe { &mut *w };
    w.off = h.samples_off;
    w.end = end;
    w.sample_end = 0;
    w.rate = 0;
    w.samples_left = if h.num_samples > MAX_SAMPLES {
        MAX_SAMPLES
    } else {
        h.num_samples
    };
    w.records_left = 0;
    w.records_over = 0;
    w.done = 0;
    w.fatal = 0;
    w.samples = 0;
    w.records = 0;
    w.max_drops = 0;
    for i in 0..ParseError::COUNT {
        w.errors[i] = 0;
    }
    let mut loop_ctx = LoopCtx { ctx: ctx.ctx };
    // SAFETY: the callback has bpf_loop's signature; loop_ctx outlives the call.
    unsafe {
        bpf_loop(
            MAX_STEPS,
            step as *mut c_void,
            (&mut loop_ctx as *mut LoopCtx).cast(),
            0,
        );
    }
    if w.done != 0 {
        if h.num_samples > MAX_SAMPLES {
            w.error(ParseError::TooManySamples);
        } else if w.off < w.end {
            w.error(ParseError::TrailingBytes);
        }
    }
    Some(w)
}

/// One step of the walk (`bpf_loop` callback): returns 1 to stop.
extern "C" fn step(_index: u64, data: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the `LoopCtx` given in `walk`.
    let ctx = XdpContext {
        ctx: unsafe { (*data.cast::<LoopCtx>()).ctx },
    };
    let Some(w) = maps::walk_scratch() else {
        return 1;
    };
    // SAFETY: this CPU's walk entry.
    let w = unsafe { &mut *w };
    if w.sample_end == 0 {
        sample_header(&ctx, w)
    } else if w.records_left == 0 {
        sample_done(w);
        0
    } else {
        record(&ctx, w);
        0
    }
}

/// Reads the next sample's header; enters a flow sample, skips any other.
#[inline(always)]
fn sample_header(ctx: &XdpContext, w: &mut Walk) -> i64 {
    if w.samples_left == 0 {
        w.done = 1;
        return 1;
    }
    w.samples_left -= 1;
    let off = w.off;
    let Some(h) = bytes::<8>(ctx, off, w.end) else {
        w.error(ParseError::MissingSamples);
        return 1;
    };
    let format = h.be32(0);
    let len = h.be32(4);
    let body = off + 8;
    if len > w.end - body {
        w.error(ParseError::BadSampleLength);
        return 1;
    }
    let next = body + len;
    // Enterprise 0 (sflow.org): 1 = flow sample, 3 = expanded flow sample.
    // Counter samples and other enterprises' samples are skipped by length.
    if format != 1 && format != 3 {
        w.off = next;
        return 0;
    }
    // Fixed part: compact (1) 32 bytes, expanded (3) 44 bytes.
    let (rate, drops, num_records, fixed) = if format == 1 {
        let Some(f) = bytes::<32>(ctx, body, next) else {
            w.error(ParseError::BadSampleLength);
            return 1;
        };
        (f.be32(8), f.be32(16), f.be32(28), 32)
    } else {
        let Some(f) = bytes::<44>(ctx, body, next) else {
            w.error(ParseError::BadSampleLength);
            return 1;
        };
        (f.be32(12), f.be32(20), f.be32(40), 44)
    };
    w.samples += 1;
    if drops > w.max_drops {
        w.max_drops = drops;
    }
    w.off = next;
    if rate == 0 {
        w.error(ParseError::ZeroSamplingRate);
        return 0;
    }
    if rate > MAX_SAMPLING_RATE {
        w.error(ParseError::SamplingRateTooHigh);
        return 0;
    }
    w.have_raw = 0;
    w.have_ip = 0;
    w.rate = rate;
    w.records_left = if num_records > MAX_RECORDS {
        MAX_RECORDS
    } else {
        num_records
    };
    w.records_over = u8::from(num_records > MAX_RECORDS);
    w.off = body + fixed;
    w.sample_end = next;
    0
}

/// After a flow sample's last record: counts what it describes.
#[inline(always)]
fn sample_done(w: &mut Walk) {
    w.off = w.sample_end;
    w.sample_end = 0;
    if w.records_over != 0 {
        w.error(ParseError::TooManyRecords);
    }
    if w.have_raw != 0 {
        count::destination(&w.raw, w.raw_len, w.rate);
    } else if w.have_ip != 0 {
        count::destination(&w.ip, w.ip_len, w.rate);
    } else {
        w.error(ParseError::NoDestination);
    }
}

/// Reads one record of the current flow sample. A record whose length lies
/// ends the sample, uncounted.
#[inline(always)]
fn record(ctx: &XdpContext, w: &mut Walk) {
    w.records_left -= 1;
    let off = w.off;
    let end = w.sample_end;
    if !record_ok(ctx, w, off, end) {
        w.error(ParseError::BadRecordLength);
        w.off = end;
        w.sample_end = 0;
    }
}

#[inline(always)]
fn record_ok(ctx: &XdpContext, w: &mut Walk, off: u32, end: u32) -> bool {
    let Some(h) = bytes::<8>(ctx, off, end) else {
        return false;
    };
    let format = h.be32(0);
    let len = h.be32(4);
    let body = off + 8;
    if len > end - body {
        return false;
    }
    w.records += 1;
    let rec_end = body + len;
    w.off = rec_end;
    match format {
        1 => raw_header(ctx, w, body, rec_end),
        3 => sampled_ipv4(ctx, w, body, rec_end),
        4 => sampled_ipv6(ctx, w, body, rec_end),
        _ => true,
    }
}

/// sampled_header (format 1): header_protocol, frame_length, stripped,
/// header_length, then the header bytes. `false` when the record is too
/// short for what it announces.
#[inline(always)]
fn raw_header(ctx: &XdpContext, w: &mut Walk, body: u32, end: u32) -> bool {
    let Some(f) = bytes::<16>(ctx, body, end) else {
        return false;
    };
    let header_len = f.be32(12);
    if header_len > end - (body + 16) {
        return false;
    }
    if w.have_raw != 0 {
        return true;
    }
    let frame_len = f.be32(4);
    let stripped = f.be32(8);
    let copied = if header_len > MAX_SAMPLED_HEADER as u32 {
        MAX_SAMPLED_HEADER as u32
    } else {
        header_len
    };
    // The verifier must see the very register passed as the length bounded
    // away from zero; a plain `if` may be applied by LLVM to another copy.
    if !check_bounds_signed(i64::from(copied), 1, MAX_SAMPLED_HEADER as i64) {
        return true;
    }
    // SAFETY: `header` is MAX_SAMPLED_HEADER bytes and 0 < copied <= that.
    let rc =
        unsafe { bpf_xdp_load_bytes(ctx.ctx, body + 16, w.header.as_mut_ptr().cast(), copied) };
    if rc != 0 {
        return false;
    }
    if let Some(pkt) = sampled::parse(&w.header, copied, f.be32(0)) {
        w.raw = pkt;
        w.raw_len = if stripped <= MAX_STRIPPED && stripped < frame_len {
            frame_len - stripped
        } else {
            frame_len
        };
        w.have_raw = 1;
    }
    true
}

/// sampled_ipv4 (format 3): length, protocol, src, dst, ports, tcp_flags, tos.
#[inline(always)]
fn sampled_ipv4(ctx: &XdpContext, w: &mut Walk, body: u32, end: u32) -> bool {
    let Some(r) = bytes::<32>(ctx, body, end) else {
        return false;
    };
    if w.have_ip == 0 {
        w.ip = sampled::from_ip_record(r.addr4_mapped(12), r.be32(4), r.be32(24));
        w.ip_len = r.be32(0);
        w.have_ip = 1;
    }
    true
}

/// sampled_ipv6 (format 4): length, protocol, src(16), dst(16), ports,
/// tcp_flags, priority.
#[inline(always)]
fn sampled_ipv6(ctx: &XdpContext, w: &mut Walk, body: u32, end: u32) -> bool {
    if end < body || end - body < 56 {
        return false;
    }
    if w.have_ip != 0 {
        return true;
    }
    let (Some(a), Some(dst), Some(flags)) = (
        bytes::<8>(ctx, body, end),
        bytes::<16>(ctx, body + 24, end),
        bytes::<4>(ctx, body + 48, end),
    ) else {
        return false;
    };
    w.ip = sampled::from_ip_record(dst.addr16(0), a.be32(4), flags.be32(0));
    w.ip_len = a.be32(0);
    w.have_ip = 1;
    true
}
