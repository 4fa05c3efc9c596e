//! edge-sensor's XDP program: the entry point and the verdict.
//!
//! Runs on the collector's NIC. For every frame it finds the UDP datagrams
//! sent to a configured telemetry port (`frame.rs`), checks the sender
//! against the exporter allow-list, copies the datagram into this CPU's
//! scratch entry (`scratch.rs`) and hands it to its format: sFlow v5
//! (`sflow.rs`, sampled headers in `sampled.rs`), NetFlow v5
//! (`netflow5.rs`), NetFlow v9 and IPFIX with the plans the daemon compiles
//! from templates (`template.rs`). Samples and records are counted per
//! destination and per exporter (`count.rs`, sequence numbers in
//! `sequence.rs`) and streamed for watched destinations (`watch.rs`).
//! A datagram fully accounted for is dropped (consumed) unless
//! `pass_telemetry` is set; everything else is passed to the stack
//! untouched: other traffic, and any datagram the kernel cannot fully
//! count (errors, v9/IPFIX templates, unknown templates), which the daemon
//! then decodes.
//!
//! **Verifier cost, bounded by construction.** Each stage whose paths would
//! multiply with its callers' is a global BPF function (`edge_sensor_*`,
//! scalar arguments, state read from the scratch map): the verifier checks
//! it once, on its own, with unknown arguments, and at a call site only
//! the call. The cost of the whole is then about the sum of the stages', on
//! every kernel, instead of their product left to one kernel's state
//! pruning. The loops are `bpf_loop` callbacks whose state lives in the
//! scratch map too, so each is explored from one starting state.
#![no_std]
#![no_main]
// Inline asm on BPF (`read.rs`) is unstable; the build enables it with
// RUSTC_BOOTSTRAP (Debian's rustc) or nightly, as aya-ebpf itself needs.
#![feature(asm_experimental_arch)]

mod count;
mod frame;
mod maps;
mod meta;
mod netflow5;
mod packet;
mod read;
mod sampled;
mod scratch;
mod sequence;
mod sflow;
mod template;
mod watch;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use edge_sensor_common::{Settings, TelemetryKind};

#[xdp]
pub fn edge_sensor(ctx: XdpContext) -> u32 {
    let Some(dgram) = frame::telemetry_datagram(&ctx) else {
        return xdp_action::XDP_PASS;
    };
    let settings = maps::settings();
    let Some(global) = maps::global_stats() else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY (all derefs of `global`): a per-CPU value, written only by this CPU.
    unsafe { (*global).telemetry_datagrams += 1 };
    if !maps::exporter_allowed(dgram.src, &settings) {
        unsafe { (*global).rejected_datagrams += 1 };
        return xdp_action::XDP_PASS;
    }
    if consume(&ctx, &dgram, &settings) && settings.pass_telemetry == 0 {
        unsafe { (*global).consumed_datagrams += 1 };
        xdp_action::XDP_DROP
    } else {
        unsafe { (*global).passed_datagrams += 1 };
        xdp_action::XDP_PASS
    }
}

/// Parses and counts the datagram; `true` when all of it was accounted for.
#[inline(always)]
fn consume(ctx: &XdpContext, dgram: &frame::Datagram, settings: &Settings) -> bool {
    let scratch = match scratch::copy(ctx, dgram, settings) {
        Ok(s) => s,
        Err(e) => {
            count::unparsed(dgram, Some(e));
            return false;
        }
    };
    if dgram.kind == TelemetryKind::Sflow as u8 {
        return sflow::edge_sensor_sflow() != 0;
    }
    // NetFlow and IPFIX share their ports; the version word tells them apart.
    let len = u32::from(dgram.payload_len);
    let version = if len < 2 { 0 } else { scratch.data.be16(0) };
    match version {
        5 => netflow5::edge_sensor_netflow5() != 0,
        9 | 10 => template::edge_sensor_template(u64::from(version)) != 0,
        _ => {
            count::unparsed(dgram, None);
            false
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
