//! NetFlow v5 (Cisco's fixed format: a 24-byte header, then `count` records
//! of 48 bytes) parsed entirely in the kernel. No templates: every field
//! sits at a fixed offset.
//!
//! Header: version(2) = 5, count(2), sys_uptime(4), unix_secs(4),
//! unix_nsecs(4), flow_sequence(4), engine_type(1), engine_id(1),
//! sampling_interval(2: mode in the top 2 bits, interval in the low 14).
//! Record: srcaddr(4) dstaddr(4) nexthop(4) input(2) output(2) dPkts(4)
//! dOctets(4) first(4) last(4) srcport(2) dstport(2) pad(1) tcp_flags(1)
//! prot(1) tos(1) src_as(2) dst_as(2) src_mask(1) dst_mask(1) pad(2).

use core::ffi::c_void;

use aya_ebpf::helpers::bpf_loop;
use edge_sensor_common::{
    FORMAT_NETFLOW5, MAX_NETFLOW5_RECORDS, NETFLOW5_HEADER, NETFLOW5_RECORD, ParseError,
    RateSource, SAMPLING_DEFAULT, SAMPLING_OVERRIDE, WatchKind,
};

use crate::{
    count,
    meta::Source,
    read::{self, Data, fits},
    sampled,
    scratch::{self, LoopCtx, Scratch},
    sequence,
};

/// The header fields that matter.
pub struct Header {
    pub count: u32,
    pub sequence: u32,
    pub uptime_ms: u32,
    /// engine_type << 8 | engine_id: the exporter's "sub-agent".
    pub engine: u32,
    /// Sampling interval; 0: unsampled or unknown.
    pub interval: u32,
}

/// Parses and counts the NetFlow v5 datagram in this CPU's scratch entry; 1
/// when all of it was accounted for. A global function (see `main.rs`).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn edge_sensor_netflow5() -> i64 {
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
    let key = count::exporter_key(&s.dgram, read::addr_bytes(s.dgram.src), header.engine);
    let (gaps, resets) = sequence::check(&key, header.sequence, header.uptime_ms, header.count);
    walk(s, &header);
    count::exporter(&key, &s.dgram, &s.walk, gaps, resets, FORMAT_NETFLOW5);
    i64::from(s.walk.fatal == 0)
}

/// Reads the header of a datagram of `end` bytes whose version word is 5.
#[inline(always)]
pub fn header(d: &Data, end: u32) -> Result<Header, ParseError> {
    if !fits(0, NETFLOW5_HEADER, end) {
        return Err(ParseError::TruncatedHeader);
    }
    let interval = u32::from(d.be16(22) & 0x3fff);
    Ok(Header {
        count: u32::from(d.be16(2)),
        uptime_ms: d.be32(4),
        sequence: d.be32(16),
        engine: u32::from(d.be16(20)),
        interval,
    })
}

/// Walks the records; errors and the number of records read land in the
/// scratch entry's walk.
#[inline(always)]
fn walk(s: &mut Scratch, h: &Header) {
    let end = s.walk.end;
    let present = (end - NETFLOW5_HEADER) / NETFLOW5_RECORD;
    let n = if h.count > MAX_NETFLOW5_RECORDS {
        MAX_NETFLOW5_RECORDS
    } else {
        h.count
    };
    let n = if n > present { present } else { n };
    let w = &mut s.walk;
    w.off = NETFLOW5_HEADER;
    // The header's interval; 0 means unsampled or unknown: a configured
    // default applies then, an override always.
    let (rate, source) = if w.rule_mode == SAMPLING_OVERRIDE {
        (w.rule_rate, RateSource::ConfigOverride)
    } else if h.interval != 0 {
        (h.interval, RateSource::Header)
    } else if w.rule_mode == SAMPLING_DEFAULT {
        (w.rule_rate, RateSource::ConfigDefault)
    } else {
        (1, RateSource::Unsampled)
    };
    w.rate_used = rate;
    w.rate_source = source as u8;
    w.reset_results();
    s.netflow5.rate = rate;
    s.netflow5.records_left = n;
    let mut loop_ctx = LoopCtx {
        scratch: s as *mut Scratch,
    };
    // SAFETY: the callback has bpf_loop's signature; loop_ctx outlives the call.
    unsafe {
        bpf_loop(
            MAX_NETFLOW5_RECORDS,
            record as *mut c_void,
            (&mut loop_ctx as *mut LoopCtx).cast(),
            0,
        );
    }
    let w = &mut s.walk;
    if h.count > MAX_NETFLOW5_RECORDS {
        w.error(ParseError::TooManySamples);
    } else if h.count > present {
        w.error(ParseError::MissingSamples);
    } else if end > NETFLOW5_HEADER + h.count * NETFLOW5_RECORD {
        w.error(ParseError::TrailingBytes);
    }
}

/// One record (`bpf_loop` callback): returns 1 when none is left.
extern "C" fn record(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the `LoopCtx` given in `walk`.
    let Scratch {
        walk: w,
        netflow5: n,
        data: d,
        ..
    } = unsafe { &mut *(*ctx.cast::<LoopCtx>()).scratch };
    if n.records_left == 0 {
        return 1;
    }
    n.records_left -= 1;
    let r = w.off;
    w.off = r + NETFLOW5_RECORD;
    w.records += 1;
    let pkt = sampled::from_ip_record(
        d.addr4_mapped(r + 4),
        u32::from(d.u8(r + 38)),
        u32::from(d.u8(r + 37)),
    );
    let rate = u64::from(n.rate);
    let packets = u64::from(d.be32(r + 16)) * rate;
    let bytes = u64::from(d.be32(r + 20)) * rate;
    let src = Source {
        kind: WatchKind::NetFlow5,
        at: r,
        len: NETFLOW5_RECORD,
    };
    count::sample(&pkt, packets, bytes, w.watching, src);
    0
}
