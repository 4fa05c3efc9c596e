//! Exporter sequence numbers, checked for every datagram: the arithmetic and
//! the state's update are `common::sequence` (shared with the userspace decoder); the state, one
//! entry per exporter shared by all CPUs, is `AGENT_STATE`.

use edge_sensor_common::{AGENT_RESYNC, AgentState, ExporterKey};

use crate::maps;

/// Numbers lost since the exporter's previous datagram, and whether its
/// sequence went backwards (restart or reordering): `(gaps, resets)`.
/// `advance`: the numbers this datagram uses (1 for datagram-numbered
/// formats, its records for record-numbered ones).
#[inline(always)]
pub fn check(key: &ExporterKey, seq: u32, uptime_ms: u32, advance: u32) -> (u32, u32) {
    match maps::AGENT_STATE.get_ptr_mut(key) {
        // SAFETY: a valid map value; a concurrent update from another CPU
        // (only possible if one agent's datagrams are spread over CPUs) can
        // at worst miscount one gap.
        Some(state) => unsafe { (*state).observe(seq, uptime_ms, advance) },
        None => {
            let _ = maps::AGENT_STATE.insert(key, AgentState::first(seq, uptime_ms, advance), 0);
            (0, 0)
        }
    }
}

/// Marks the exporter's sequence for resynchronisation at its next datagram.
#[inline(always)]
pub fn resync(key: &ExporterKey, seq: u32) {
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

/// Keeps the highest drop counter an sFlow agent reported. Shared across
/// CPUs: a racing update can only lose a max, never corrupt a counter.
#[inline(always)]
pub fn agent_drops(key: &ExporterKey, drops: u32) {
    if let Some(state) = maps::AGENT_STATE.get_ptr_mut(key) {
        // SAFETY: a valid map value.
        unsafe {
            if drops > (*state).agent_drops {
                (*state).agent_drops = drops;
            }
        }
    }
}
