//! Exporter sequence numbers: how many datagrams (or records) were lost
//! between two, and whether the exporter restarted. The kernel
//! (`sensor-ebpf/src/sequence.rs`) and the userspace decoder
//! (`sensor/src/telemetry/mod.rs`) keep the state in different places but
//! share this arithmetic.

/// The last sequence number a datagram used: sFlow and NetFlow v9 number
/// datagrams (`advance` 1); NetFlow v5 and IPFIX number records (`advance` =
/// records in it; RFC 7011 §3.1).
#[inline(always)]
pub fn last_used(seq: u32, advance: u32) -> u32 {
    seq.wrapping_add(advance).wrapping_sub(1)
}

/// Lost numbers and restarts between the previous datagram, whose last
/// number was `previous_last`, and one starting at `seq`: `(gaps, resets)`.
/// A jump forward by less than 2^31 is a gap; anything else (backwards, a
/// repeat) is a reset (restart or reordering).
#[inline(always)]
pub fn gap(previous_last: u32, seq: u32) -> (u32, u32) {
    let delta = seq.wrapping_sub(previous_last.wrapping_add(1));
    if delta == 0 {
        (0, 0)
    } else if delta < 0x8000_0000 {
        (delta, 0)
    } else {
        (0, 1)
    }
}

impl crate::AgentState {
    /// The state after an exporter's first datagram.
    #[inline(always)]
    pub fn first(seq: u32, uptime_ms: u32, advance: u32) -> Self {
        Self {
            last_sequence: last_used(seq, advance),
            agent_drops: 0,
            uptime_ms,
            flags: 0,
        }
    }

    /// Takes the exporter's next datagram (numbers `seq` onwards, `advance`
    /// of them): `(gaps, resets)` since the previous one, none after a
    /// resynchronisation mark ([`crate::AGENT_RESYNC`]).
    #[inline(always)]
    pub fn observe(&mut self, seq: u32, uptime_ms: u32, advance: u32) -> (u32, u32) {
        let previous_last = self.last_sequence;
        self.last_sequence = last_used(seq, advance);
        self.uptime_ms = uptime_ms;
        if self.flags & crate::AGENT_RESYNC != 0 {
            self.flags = 0;
            return (0, 0);
        }
        gap(previous_last, seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observe_counts_and_resynchronises() {
        let mut s = crate::AgentState::first(100, 5, 1);
        assert_eq!(s.observe(101, 6, 1), (0, 0));
        assert_eq!(s.observe(105, 7, 1), (3, 0));
        s.flags = crate::AGENT_RESYNC;
        assert_eq!(s.observe(1, 8, 1), (0, 0));
        assert_eq!(s.flags, 0);
        assert_eq!(s.observe(1, 9, 1), (0, 1));
        assert_eq!(s.uptime_ms, 9);
    }

    #[test]
    fn gaps_resets_and_wrap() {
        assert_eq!(gap(last_used(10, 1), 11), (0, 0));
        assert_eq!(gap(last_used(10, 1), 14), (3, 0));
        assert_eq!(gap(last_used(10, 1), 5), (0, 1));
        assert_eq!(gap(last_used(10, 1), 10), (0, 1));
        assert_eq!(gap(u32::MAX, 0), (0, 0));
        assert_eq!(gap(last_used(100, 30), 130), (0, 0));
        assert_eq!(gap(last_used(100, 30), 131), (1, 0));
    }
}
