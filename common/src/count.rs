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
        self.add_class(Class::All, packets, bytes);
        self.add_class(Class::of_protocol(proto), packets, bytes);
        if syn {
            self.add_class(Class::TcpSyn, packets, bytes);
        }
        if fragment {
            self.add_class(Class::Fragment, packets, bytes);
        }
    }

    #[inline(always)]
    fn add_class(&mut self, class: Class, packets: u64, bytes: u64) {
        let i = class as usize;
        if i < Class::COUNT {
            self.packets[i] = self.packets[i].wrapping_add(packets);
            self.bytes[i] = self.bytes[i].wrapping_add(bytes);
        }
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
