//! Turning one sampled packet into per-destination counters.

use edge_sensor_common::{Class, DstKey};

use crate::{maps, read, sampled::Packet};

/// Adds `packets` and `bytes` (already scaled by the sampling rate) of
/// packets like `pkt` to its destination's counters.
#[inline(always)]
pub fn destination(pkt: &Packet, packets: u64, bytes: u64) {
    let key = DstKey {
        addr: read::addr_bytes(pkt.dst),
    };
    let Some(stats) = maps::dst_stats(&key) else {
        return;
    };
    let class = Class::of_protocol(pkt.proto) as usize;
    // Per-CPU value: no other CPU writes it, so plain adds are race-free.
    unsafe {
        let s = &mut *stats;
        s.packets[Class::All as usize] += packets;
        s.bytes[Class::All as usize] += bytes;
        if class < Class::COUNT {
            s.packets[class] += packets;
            s.bytes[class] += bytes;
        }
        if pkt.syn {
            s.packets[Class::TcpSyn as usize] += packets;
            s.bytes[Class::TcpSyn as usize] += bytes;
        }
        if pkt.fragment {
            s.packets[Class::Fragment as usize] += packets;
            s.bytes[Class::Fragment as usize] += bytes;
        }
    }
}
