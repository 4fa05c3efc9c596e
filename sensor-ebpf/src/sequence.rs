//! Exporter sequence numbers, checked for every datagram: the arithmetic is
//! `common::sequence` (shared with the userspace decoder); the state, one
//! entry per exporter shared by all CPUs, is `AGENT_STATE`.

use edge_sensor_common::{AGENT_RESYNC, AgentState, ExporterKey, sequence};

use crate::maps;

/// Numbers lost since the exporter's previous datagram, and whether its
/// sequence went backwards (restart or reordering): `(gaps, resets)`.
/// `advance`: the numbers this datagram uses (1 for datagram-numbered
/// formats, its records for record-numbered ones).
#[inline(always)]
pub fn check(key: &ExporterKey, seq: u32, uptime_ms: u32, advance: u32) -> (u32, u32) {
    let last = sequence::last_used(seq, advance);
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
    let state = unsafe { &mut *state };
    let previous_last = state.last_sequence;
    state.last_sequence = last;
    state.uptime_ms = uptime_ms;
    if state.flags & AGENT_RESYNC != 0 {
        state.flags = 0;
        return (0, 0);
    }
    sequence::gap(previous_last, seq)
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
