//! What one sample or flow record adds to its destination's counters. The
//! kernel (`sensor-ebpf/src/count.rs`) and the userspace decoder
//! (`sensor/src/telemetry/sampled.rs`) both count through these.

use crate::{Class, DstStats};

impl DstStats {
    /// Adds `packets` and `bytes` (already scaled by the sampling rate) of
    /// packets of IP protocol `proto` to `All`, to the protocol's class, to
    /// `TcpSyn` for a SYN without ACK and to `Fragment` for a fragment.
    /// Wraps rather than panics.
    #[inline(always)]
    pub fn add_sample(&mut self, proto: u8, syn: bool, fragment: bool, packets: u64, bytes: u64) {
        for_each_class(proto, syn, fragment, |i| {
            self.packets[i] = self.packets[i].wrapping_add(packets);
            self.bytes[i] = self.bytes[i].wrapping_add(bytes);
        });
    }
}

/// Calls `add` with the index (`< Class::COUNT`) of every class a sample of
/// IP protocol `proto` counts in: `All`, the protocol's class, `TcpSyn` for
/// a SYN without ACK, `Fragment` for a fragment. [`DstStats::add_sample`]
/// adds with plain adds; the kernel, whose counters all CPUs share, with
/// atomic ones through the same classes.
#[inline(always)]
pub fn for_each_class(proto: u8, syn: bool, fragment: bool, mut add: impl FnMut(usize)) {
    let mut class = |c: Class| {
        let i = c as usize;
        if i < Class::COUNT {
            add(i);
        }
    };
    class(Class::All);
    class(Class::of_protocol(proto));
    if syn {
        class(Class::TcpSyn);
    }
    if fragment {
        class(Class::Fragment);
    }
}

/// `count * rate`, saturating. Written in 32-bit halves: LLVM turns
/// `u64::saturating_mul` into a 128-bit multiply, which BPF does not have.
#[inline(always)]
pub fn scale(count: u64, rate: u32) -> u64 {
    let rate = u64::from(rate);
    let lo = (count & 0xffff_ffff) * rate;
    let hi = (count >> 32) * rate;
    if hi >> 32 != 0 {
        return u64::MAX;
    }
    let sum = lo.wrapping_add(hi << 32);
    if sum < lo { u64::MAX } else { sum }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_saturates_like_saturating_mul() {
        for (a, r) in [
            (0u64, 5u32),
            (3, 1000),
            (u64::from(u32::MAX), u32::MAX),
            (1 << 40, 1 << 23),
            (1 << 40, 1 << 24),
            (u64::MAX, 2),
            (u64::MAX / 3, 3),
            (u64::MAX / 3 + 1, 3),
        ] {
            assert_eq!(scale(a, r), a.saturating_mul(u64::from(r)), "{a} * {r}");
        }
    }

    #[test]
    fn classes() {
        let mut s = DstStats::default();
        s.add_sample(6, true, false, 2, 100);
        s.add_sample(17, false, true, 1, 50);
        assert_eq!(s.packets[Class::All as usize], 3);
        assert_eq!(s.packets[Class::Tcp as usize], 2);
        assert_eq!(s.packets[Class::TcpSyn as usize], 2);
        assert_eq!(s.bytes[Class::Udp as usize], 50);
        assert_eq!(s.bytes[Class::Fragment as usize], 50);
        assert_eq!(s.packets[Class::Other as usize], 0);
    }
}
