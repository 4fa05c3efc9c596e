//! edge-sensor's XDP program.
//!
//! Runs on the collector's NIC. For every frame it finds the UDP datagrams sent
//! to a configured telemetry port (`TELEMETRY_PORTS`), checks the sender
//! against the exporter allow-list, parses sFlow datagrams down to the sampled
//! packets and counts them per destination and per exporter. Everything else,
//! and every frame it cannot fully parse, is passed to the kernel stack
//! untouched; a fully parsed sFlow datagram is dropped (it has been consumed)
//! unless `pass_telemetry` is set.
#![no_std]
#![no_main]
// Inline asm on BPF (read::datagram_len) is unstable; the build enables it
// with RUSTC_BOOTSTRAP (Debian's rustc) or nightly, as aya-ebpf itself needs.
#![feature(asm_experimental_arch)]

mod count;
mod flow;
mod maps;
mod netflow5;
mod packet;
mod read;
mod sampled;
mod sflow;
mod watch;

use aya_ebpf::{
    bindings::xdp_action, helpers::bpf_ktime_get_ns, macros::xdp, programs::XdpContext,
};
use edge_sensor_common::{
    AGENT_RESYNC, AgentState, ExporterKey, ExporterStats, FORMAT_IPFIX, FORMAT_NETFLOW5,
    FORMAT_NETFLOW9, FORMAT_SFLOW5, ParseError, TelemetryKind,
};

#[xdp]
pub fn edge_sensor(ctx: XdpContext) -> u32 {
    let Some(dgram) = packet::telemetry_datagram(&ctx) else {
        return xdp_action::XDP_PASS;
    };
    let settings = maps::settings();
    let Some(global) = maps::global_stats() else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY (all derefs of map values below): per-CPU values, written only
    // by this CPU.
    unsafe { (*global).telemetry_datagrams += 1 };
    if !maps::exporter_allowed(dgram.src, &settings) {
        unsafe { (*global).rejected_datagrams += 1 };
        return xdp_action::XDP_PASS;
    }

    let consumed = if dgram.kind == TelemetryKind::Sflow as u8 {
        sflow_datagram(&ctx, &dgram)
    } else {
        flow_datagram(&ctx, &dgram)
    };
    if consumed && settings.pass_telemetry == 0 {
        unsafe { (*global).consumed_datagrams += 1 };
        xdp_action::XDP_DROP
    } else {
        unsafe { (*global).passed_datagrams += 1 };
        xdp_action::XDP_PASS
    }
}

/// The exporter key of a datagram whose own header names no agent.
#[inline(always)]
fn source_key(dgram: &packet::Datagram) -> ExporterKey {
    ExporterKey {
        addr: read::addr_bytes(dgram.src),
        sub_agent: 0,
        port: dgram.dst_port,
        kind: dgram.kind,
        _pad: 0,
    }
}

/// Counts a datagram that could not be parsed, under its source address.
#[inline(always)]
fn unparsed(dgram: &packet::Datagram, error: Option<ParseError>) {
    if let Some(stats) = maps::exporter_stats(&source_key(dgram)) {
        unsafe {
            (*stats).datagrams += 1;
            (*stats).bytes += u64::from(dgram.payload_len);
            (*stats).last_seen_ns = bpf_ktime_get_ns();
            if let Some(e) = error {
                let i = e as usize;
                if i < ParseError::COUNT {
                    (*stats).errors[i] += 1;
                }
            }
        }
    }
}

/// A NetFlow/IPFIX datagram: version 5 is parsed here; v9 and IPFIX need
/// templates and are left to userspace (for now), counted per source.
#[inline(always)]
fn flow_datagram(ctx: &XdpContext, dgram: &packet::Datagram) -> bool {
    let len = u32::from(dgram.payload_len);
    let scratch = match sflow::copy(ctx, dgram.payload_off as u32, len, dgram.src) {
        Ok(s) => s,
        Err(e) => {
            unparsed(dgram, Some(e));
            return false;
        }
    };
    let version = if len < 2 { 0 } else { scratch.data.be16(0) };
    if version == 9 || version == 10 {
        return templated(scratch, dgram, version, len);
    }
    if version != 5 {
        unparsed(dgram, None);
        return false;
    }
    let header = match netflow5::header(&scratch.data, len) {
        Ok(h) => h,
        Err(e) => {
            unparsed(dgram, Some(e));
            return false;
        }
    };
    let key = ExporterKey {
        addr: read::addr_bytes(dgram.src),
        sub_agent: header.engine,
        port: dgram.dst_port,
        kind: dgram.kind,
        _pad: 0,
    };
    let (gaps, resets) = sequence(&key, header.sequence, header.uptime_ms, header.count);
    netflow5::walk(scratch, &header);
    let walk = &scratch.walk;
    if let Some(stats) = maps::exporter_stats(&key) {
        unsafe { add(&mut *stats, dgram, walk, gaps, resets, FORMAT_NETFLOW5) };
    }
    walk.fatal == 0
}

/// A NetFlow v9 / IPFIX datagram: counted here when clean and every
/// template has a plan; otherwise passed on uncounted, for userspace.
#[inline(always)]
fn templated(
    scratch: &mut sflow::Scratch,
    dgram: &packet::Datagram,
    version: u16,
    len: u32,
) -> bool {
    let Some((domain, start, end)) = flow::header(&scratch.data, version, len) else {
        return false;
    };
    flow::keys(scratch, read::addr_bytes(dgram.src), dgram.src_port, domain);
    scratch.walk.flow_kind = if version == 9 {
        edge_sensor_common::WatchKind::NetFlow9 as u8
    } else {
        edge_sensor_common::WatchKind::Ipfix as u8
    };
    let key = ExporterKey {
        addr: read::addr_bytes(dgram.src),
        sub_agent: domain,
        port: dgram.dst_port,
        kind: dgram.kind,
        _pad: 0,
    };
    let clean = flow::check(scratch, start, end);
    if clean {
        flow::walk(scratch, start);
    }
    // Sequence numbers are checked here for every datagram, taken or
    // passed, since only the kernel sees them all. NetFlow v9 numbers
    // datagrams (RFC 3954 §5.1); IPFIX numbers data records (RFC 7011
    // §3.1), which only a datagram decoded here has counted, so after one
    // passed on the next sets a new baseline.
    let d = &scratch.data;
    let (gaps, resets) = if version == 9 {
        sequence(&key, d.be32(12), d.be32(4), 1)
    } else if clean {
        sequence(&key, d.be32(8), 0, scratch.walk.records)
    } else {
        resync(&key, d.be32(8));
        (0, 0)
    };
    if clean || gaps != 0 || resets != 0 {
        if let Some(stats) = maps::exporter_stats(&key) {
            unsafe {
                if clean {
                    (*stats).datagrams += 1;
                    (*stats).bytes += u64::from(dgram.payload_len);
                    (*stats).records += u64::from(scratch.walk.records);
                    (*stats).format = if version == 9 {
                        FORMAT_NETFLOW9
                    } else {
                        FORMAT_IPFIX
                    };
                    seen(&mut *stats, &scratch.walk);
                }
                (*stats).sequence_gaps += u64::from(gaps);
                (*stats).sequence_resets += u64::from(resets);
            }
        }
    }
    clean
}

/// Marks the exporter's sequence for resynchronisation at its next datagram.
#[inline(always)]
fn resync(key: &ExporterKey, seq: u32) {
    match maps::AGENT_STATE.get_ptr_mut(key) {
        // SAFETY: a valid map value.
        Some(state) => unsafe { (*state).flags = AGENT_RESYNC },
        None => {
            let fresh = AgentState {
                last_sequence: seq,
                agent_drops: 0,
                uptime_ms: 0,
                flags: AGENT_RESYNC,
            };
            let _ = maps::AGENT_STATE.insert(key, fresh, 0);
        }
    }
}

/// Parses and counts an sFlow datagram; `true` when all of it was accounted for.
#[inline(always)]
fn sflow_datagram(ctx: &XdpContext, dgram: &packet::Datagram) -> bool {
    let len = u32::from(dgram.payload_len);
    let parsed = sflow::copy(ctx, dgram.payload_off as u32, len, dgram.src)
        .and_then(|scratch| sflow::header(&scratch.data, len).map(|h| (scratch, h)));
    let (scratch, header) = match parsed {
        Ok(ok) => ok,
        Err(e) => {
            unparsed(dgram, Some(e));
            return false;
        }
    };
    let key = ExporterKey {
        addr: read::addr_bytes(header.agent),
        sub_agent: header.sub_agent,
        port: dgram.dst_port,
        kind: dgram.kind,
        _pad: 0,
    };
    let (gaps, resets) = sequence(&key, header.sequence, header.uptime_ms, 1);
    sflow::walk(scratch, &header);
    let walk = &scratch.walk;
    if let Some(state) = maps::AGENT_STATE.get_ptr_mut(&key) {
        // Shared across CPUs: a racing update can only lose a max, never
        // corrupt a counter.
        unsafe {
            if walk.max_drops > (*state).agent_drops {
                (*state).agent_drops = walk.max_drops;
            }
        }
    }
    if let Some(stats) = maps::exporter_stats(&key) {
        unsafe { add(&mut *stats, dgram, walk, gaps, resets, FORMAT_SFLOW5) };
    }
    walk.fatal == 0
}

#[inline(always)]
fn add(
    s: &mut ExporterStats,
    dgram: &packet::Datagram,
    w: &sflow::Walk,
    gaps: u32,
    resets: u32,
    format: u8,
) {
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

/// When the exporter was last counted, and the rate its samples got.
#[inline(always)]
fn seen(s: &mut ExporterStats, w: &sflow::Walk) {
    // SAFETY: a helper without arguments.
    s.last_seen_ns = unsafe { bpf_ktime_get_ns() };
    if w.rate_used != 0 {
        s.sampling_rate = w.rate_used;
        s.rate_source = w.rate_source;
    }
}

/// Datagrams lost since the previous one from this agent, and whether the
/// sequence went backwards (restart or reordering). Updates the agent state.
#[inline(always)]
fn sequence(key: &ExporterKey, seq: u32, uptime_ms: u32, advance: u32) -> (u32, u32) {
    // The last number this datagram used: sFlow numbers datagrams (advance
    // 1), NetFlow v5 numbers flow records (advance = records in it).
    let last = seq.wrapping_add(advance).wrapping_sub(1);
    let Some(state) = maps::AGENT_STATE.get_ptr_mut(key) else {
        let fresh = AgentState {
            last_sequence: last,
            agent_drops: 0,
            uptime_ms,
            flags: 0,
        };
        let _ = maps::AGENT_STATE.insert(key, fresh, 0);
        return (0, 0);
    };
    // SAFETY: a valid map value; a concurrent update from another CPU (only
    // possible if one agent's datagrams are spread over CPUs) can at worst
    // miscount one gap.
    unsafe {
        let delta = seq.wrapping_sub((*state).last_sequence.wrapping_add(1));
        (*state).last_sequence = last;
        (*state).uptime_ms = uptime_ms;
        if (*state).flags & AGENT_RESYNC != 0 {
            (*state).flags = 0;
            return (0, 0);
        }
        if delta == 0 {
            (0, 0)
        } else if delta < 0x8000_0000 {
            (delta, 0)
        } else {
            (0, 1)
        }
    }
}

// The kernel refuses a program whose panic path is reachable, so the loop is
// never run: it only satisfies `no_std`.
#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
