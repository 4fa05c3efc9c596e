//! sFlow version 5 (sflow.org/sflow_version_5.txt) parsed in the kernel.
//!
//! The datagram is copied once into this CPU's scratch entry ([`Scratch`]),
//! then walked there: datagram header -> samples -> flow records -> the
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

use aya_ebpf::{
    helpers::{bpf_loop, bpf_xdp_load_bytes},
    programs::XdpContext,
};
use edge_sensor_common::{
    MAX_DATAGRAM, MAX_RECORDS, MAX_SAMPLES, MAX_SAMPLING_RATE, MAX_STRIPPED, ParseError, Plan,
    PlanKey, RateKey, RateSource, SAMPLING_OVERRIDE, WatchKind,
};

use crate::{
    count, maps,
    read::{self, Addr, Data, fits},
    sampled::{self, Packet},
    watch,
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

/// This CPU's working memory for one datagram.
#[repr(C)]
pub struct Scratch {
    pub walk: Walk,
    pub data: Data,
}

/// The walk's state and results.
#[repr(C)]
pub struct Walk {
    /// Cursor, and the datagram's length (offsets are into the datagram).
    pub(crate) off: u32,
    pub(crate) end: u32,
    /// End of the flow sample whose records are walked; 0 between samples.
    pub(crate) sample_end: u32,
    /// Its sampling rate.
    pub(crate) rate: u32,
    /// Samples still to read (announced, capped at MAX_SAMPLES).
    pub(crate) samples_left: u32,
    /// Records of the current flow sample still to read (capped at MAX_RECORDS).
    pub(crate) records_left: u32,
    /// The current flow sample announced more than MAX_RECORDS records.
    pub(crate) records_over: u8,
    /// All announced samples were read.
    pub(crate) done: u8,
    /// Some error means the datagram was not fully accounted for.
    pub fatal: u8,
    /// The current sample's first raw header record and first
    /// sampled_ipv4/ipv6 record gave a packet.
    have_raw: u8,
    have_ip: u8,
    /// `Settings::watching` when the datagram arrived.
    pub(crate) watching: u8,
    /// The v9/IPFIX walk's format (a `WatchKind`).
    pub(crate) flow_kind: u8,
    /// Where `rate_used` came from (a `RateSource`).
    pub(crate) rate_source: u8,
    _pad: [u8; 3],
    /// The sampling rate applied to the last sample or record counted.
    pub(crate) rate_used: u32,
    /// The configured rule for the datagram's source (`SamplingRule`).
    pub(crate) rule_rate: u32,
    pub(crate) rule_mode: u32,
    pub(crate) raw_len: u32,
    ip_len: u32,
    /// Where the raw header record and the sampled_ipv4/ipv6 record lie
    /// (from their `data_format`).
    raw_off: u32,
    raw_rec_len: u32,
    ip_off: u32,
    /// The destination `watch::sample` was called for.
    pub(crate) watch_dst: Addr,
    raw: Packet,
    ip: Packet,
    /// Results.
    pub samples: u32,
    pub records: u32,
    pub max_drops: u32,
    pub errors: [u32; ParseError::COUNT],
    /// NetFlow v9 / IPFIX walk (`flow.rs`): the cursor within the current
    /// set, its template's plan, and the keys of the plans and rates.
    pub(crate) rec_off: u32,
    pub(crate) clean: u32,
    pub(crate) plan: Plan,
    pub(crate) plan_key: PlanKey,
    pub(crate) rate_key: RateKey,
}

impl Walk {
    /// Clears the results of the previous datagram.
    #[inline(always)]
    pub(crate) fn reset_results(&mut self) {
        self.fatal = 0;
        self.samples = 0;
        self.records = 0;
        self.max_drops = 0;
        for i in 0..ParseError::COUNT {
            self.errors[i] = 0;
        }
    }

    #[inline(always)]
    pub fn error(&mut self, e: ParseError) {
        let i = e as usize;
        if i < ParseError::COUNT {
            self.errors[i] += 1;
        }
        if e.is_fatal() {
            self.fatal = 1;
        }
    }
}

/// What the `bpf_loop` callback gets: the scratch entry. Passing it (rather
/// than looking it up again) also tells the compiler the callback writes
/// through it, so nothing read after the loop is a stale copy.
#[repr(C)]
pub(crate) struct LoopCtx {
    pub(crate) scratch: *mut Scratch,
}

/// Steps one walk may take: every sample header and record, and one more
/// to see that no sample is left.
pub(crate) const MAX_STEPS: u32 = MAX_SAMPLES * (MAX_RECORDS + 1) + 1;

/// Copies the datagram of `len` bytes at frame offset `off` into this CPU's
/// scratch entry. `Err` with the reason when it cannot be parsed at all.
#[inline(always)]
pub fn copy(
    ctx: &XdpContext,
    off: u32,
    len: u32,
    src: Addr,
) -> Result<&'static mut Scratch, ParseError> {
    if len == 0 {
        return Err(ParseError::TruncatedHeader);
    }
    if len > MAX_DATAGRAM as u32 {
        return Err(ParseError::DatagramTooLarge);
    }
    let scratch = maps::scratch().ok_or(ParseError::TruncatedHeader)?;
    // SAFETY: this CPU's entry; nothing else runs on this CPU meanwhile.
    let scratch = unsafe { &mut *scratch };
    // SAFETY: `data` holds MAX_DATAGRAM bytes and 0 < len <= that.
    let rc = unsafe {
        bpf_xdp_load_bytes(
            ctx.ctx,
            off,
            scratch.data.0.as_mut_ptr().cast(),
            read::datagram_len(len),
        )
    };
    if rc != 0 {
        return Err(ParseError::TruncatedHeader);
    }
    scratch.walk.end = len;
    scratch.walk.watching = maps::settings().watching;
    let rule = maps::sampling_rule(src);
    scratch.walk.rule_rate = rule.rate;
    scratch.walk.rule_mode = rule.mode;
    scratch.walk.rate_used = 0;
    scratch.walk.rate_source = RateSource::Unknown as u8;
    Ok(scratch)
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
pub fn walk(s: &mut Scratch, h: &Header) {
    let w = &mut s.walk;
    w.off = h.samples_off;
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
    w.reset_results();
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
    let Scratch { walk: w, data: d } = unsafe { &mut *(*ctx.cast::<LoopCtx>()).scratch };
    if w.sample_end == 0 {
        sample_header(w, d)
    } else {
        record(w, d);
        0
    }
}

/// Reads the next sample's header; enters a flow sample, skips any other.
#[inline(always)]
fn sample_header(w: &mut Walk, d: &Data) -> i64 {
    if w.samples_left == 0 {
        w.done = 1;
        return 1;
    }
    w.samples_left -= 1;
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
    w.have_raw = 0;
    w.have_ip = 0;
    if w.rule_mode == SAMPLING_OVERRIDE {
        w.rate = w.rule_rate;
        w.rate_source = RateSource::ConfigOverride as u8;
    } else {
        w.rate = rate;
        w.rate_source = RateSource::Sample as u8;
    }
    w.rate_used = w.rate;
    w.records_left = if num_records > MAX_RECORDS {
        MAX_RECORDS
    } else {
        num_records
    };
    w.records_over = u8::from(num_records > MAX_RECORDS);
    w.off = body + fixed;
    w.sample_end = next;
    if w.records_left == 0 {
        sample_done(w);
    }
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
    let rate = u64::from(w.rate);
    if w.have_raw != 0 {
        let bytes = u64::from(w.raw_len) * rate;
        count::destination(&w.raw, rate, bytes);
        let src = watch::Source {
            kind: WatchKind::SflowRecord,
            at: w.raw_off,
            len: w.raw_rec_len,
        };
        watch::sample(w, w.raw.dst, src, rate, bytes);
    } else if w.have_ip != 0 {
        let bytes = u64::from(w.ip_len) * rate;
        count::destination(&w.ip, rate, bytes);
        // The record's own header says how long it is (40 or 64 bytes).
        let src = watch::Source {
            kind: WatchKind::SflowRecord,
            at: w.ip_off,
            len: 64,
        };
        watch::sample(w, w.ip.dst, src, rate, bytes);
    } else {
        w.error(ParseError::NoDestination);
    }
}

/// Reads one record of the current flow sample, and counts the sample after
/// its last record. A record whose length lies ends the sample, uncounted.
#[inline(always)]
fn record(w: &mut Walk, d: &Data) {
    w.records_left -= 1;
    let off = w.off;
    let end = w.sample_end;
    if !record_ok(w, d, off, end) {
        w.error(ParseError::BadRecordLength);
        w.off = end;
        w.sample_end = 0;
    } else if w.records_left == 0 {
        sample_done(w);
    }
}

#[inline(always)]
fn record_ok(w: &mut Walk, d: &Data, off: u32, end: u32) -> bool {
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
        1 => raw_header(w, d, body, rec_end),
        3 => sampled_ipv4(w, d, body, rec_end),
        4 => sampled_ipv6(w, d, body, rec_end),
        _ => true,
    }
}

/// sampled_header (format 1): header_protocol, frame_length, stripped,
/// header_length, then the header bytes. `false` when the record is too
/// short for what it announces.
#[inline(always)]
fn raw_header(w: &mut Walk, d: &Data, body: u32, end: u32) -> bool {
    if !fits(body, 16, end) {
        return false;
    }
    let header_len = d.be32(body + 12);
    if header_len > end - (body + 16) {
        return false;
    }
    if w.have_raw != 0 {
        return true;
    }
    let frame_len = d.be32(body + 4);
    let stripped = d.be32(body + 8);
    if let Some(pkt) = sampled::parse(d, body + 16, header_len, d.be32(body)) {
        w.raw = pkt;
        w.raw_len = if stripped <= MAX_STRIPPED && stripped < frame_len {
            frame_len - stripped
        } else {
            frame_len
        };
        w.have_raw = 1;
        // The whole record, from its format: userspace reads
        // header_protocol, frame_length and stripped from it again.
        w.raw_off = body - 8;
        w.raw_rec_len = end - (body - 8);
    }
    true
}

/// sampled_ipv4 (format 3): length, protocol, src, dst, ports, tcp_flags, tos.
#[inline(always)]
fn sampled_ipv4(w: &mut Walk, d: &Data, body: u32, end: u32) -> bool {
    if !fits(body, 32, end) {
        return false;
    }
    if w.have_ip == 0 {
        w.ip = sampled::from_ip_record(
            d.addr4_mapped(body + 12),
            d.be32(body + 4),
            d.be32(body + 24),
        );
        w.ip_len = d.be32(body);
        w.have_ip = 1;
        w.ip_off = body - 8;
    }
    true
}

/// sampled_ipv6 (format 4): length, protocol, src(16), dst(16), ports,
/// tcp_flags, priority.
#[inline(always)]
fn sampled_ipv6(w: &mut Walk, d: &Data, body: u32, end: u32) -> bool {
    if !fits(body, 56, end) {
        return false;
    }
    if w.have_ip == 0 {
        w.ip = sampled::from_ip_record(d.addr16(body + 24), d.be32(body + 4), d.be32(body + 48));
        w.ip_len = d.be32(body);
        w.have_ip = 1;
        w.ip_off = body - 8;
    }
    true
}
