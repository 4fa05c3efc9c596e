//! edge-sensor's XDP program.
//!
//! Runs on the collector's NIC. For every frame it finds the UDP datagrams sent
//! to a configured telemetry port ([`TELEMETRY_PORTS`](maps::TELEMETRY_PORTS))
//! and counts them per exporter. Everything else, and every frame it cannot
//! fully parse, is passed to the kernel stack untouched.
#![no_std]
#![no_main]

mod maps;
mod packet;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use edge_sensor_common::ExporterKey;

#[xdp]
pub fn edge_sensor(ctx: XdpContext) -> u32 {
    let Some(dgram) = packet::telemetry_datagram(&ctx) else {
        return xdp_action::XDP_PASS;
    };
    let key = ExporterKey {
        addr: dgram.src,
        port: dgram.dst_port,
        kind: dgram.kind,
        _pad: 0,
    };
    if let Some(stats) = maps::exporter_stats(&key) {
        // Per-CPU value: no other CPU writes it, so plain adds are race-free.
        unsafe {
            (*stats).datagrams += 1;
            (*stats).bytes += u64::from(dgram.payload_len);
        }
    }
    xdp_action::XDP_PASS
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
