//! The datagram being parsed, copied into a per-CPU buffer.
//!
//! One `bpf_xdp_load_bytes` per datagram copies it into map memory; every
//! field is then read from there with its index masked into the buffer (for
//! the verifier) after an explicit check against the structure that
//! contains it (for correctness). Reading each field straight from the
//! frame took five helper calls per sample, and walking the frame with
//! packet pointers would need the verifier to prove every offset.

use edge_sensor_common::{MAX_DATAGRAM, WATCH_SNAP};

const MASK: u32 = MAX_DATAGRAM as u32 - 1;
const _: () = assert!(MAX_DATAGRAM.is_power_of_two());

/// A 16-byte address as two words holding its bytes in memory order (BPF
/// has no 128-bit arithmetic; two 64-bit moves copy it).
pub type Addr = [u64; 2];

/// The bytes of `addr` in memory order, for a map key.
#[inline(always)]
pub fn addr_bytes(addr: Addr) -> [u8; 16] {
    // SAFETY: [u64; 2] and [u8; 16] have the same size; every bit pattern is valid.
    unsafe { core::mem::transmute::<Addr, [u8; 16]>(addr) }
}

/// `::ffff:a.b.c.d` (RFC 4291 §2.5.5.2): bytes 10 and 11 are 0xff, 12..16
/// the IPv4 address (bpfel: word 1 holds bytes 8..16, least significant first).
#[inline(always)]
pub fn mapped_v4(v4: [u8; 4]) -> Addr {
    [
        0,
        (0xffff << 16) | (u64::from(u32::from_le_bytes(v4)) << 32),
    ]
}

/// `len`, known to lie in `1..=MAX_DATAGRAM`, in a form the verifier can
/// bound: masked inside inline assembly, which LLVM cannot see through, so
/// the register handed to a helper is the masked one. (An `if` is not
/// enough: LLVM may apply it to another copy of the value.)
#[inline(always)]
pub fn datagram_len(len: u32) -> u32 {
    const _: () = assert!(MAX_DATAGRAM == 0x4000);
    let mut x = u64::from(len.wrapping_sub(1));
    // SAFETY: a register-only AND; no memory, no side effects.
    unsafe { core::arch::asm!("{0} &= 0x3fff", inout(reg) x) };
    x as u32 + 1
}

/// `v` in a register the verifier knows to lie in `0..=0xffff`. A 16-bit
/// big-endian field is loaded and byte-swapped; kernels before 6.19 or so
/// forget a swapped register's bounds, and refuse to add it to a packet
/// pointer ("math between pkt pointer and register with unbounded min
/// value"). The mask is inline assembly so LLVM cannot drop it as redundant.
#[inline(always)]
pub fn bounded16(v: u16) -> u16 {
    let mut x = u64::from(v);
    // SAFETY: a register-only AND; no memory, no side effects.
    unsafe { core::arch::asm!("{0} &= 0xffff", inout(reg) x) };
    x as u16
}

/// `*counter += v`, atomically: a BPF atomic add without fetch (`lock
/// *(u64 *)(r + 0) += v`), which every kernel we support has. Inline
/// assembly because `AtomicU64::fetch_add` does not exist for this target
/// (it has no compare-and-swap in Rust's target description).
///
/// # Safety
/// `counter` points to an 8-aligned `u64` in a map value.
#[inline(always)]
pub unsafe fn atomic_add(counter: *mut u64, v: u64) {
    // SAFETY: the caller's.
    unsafe {
        core::arch::asm!(
            "lock *(u64 *)({c} + 0) += {v}",
            c = in(reg) counter,
            v = in(reg) v,
        );
    }
}

/// Copies 16 bytes (an address) from `src` to `dst`, neither aligned: two
/// 64-bit moves in inline assembly. LLVM turns an unaligned 16-byte copy
/// into a call to `memmove`, a subprogram whose frame counts against the
/// 512 bytes of stack the verifier allows the deepest call chain.
#[inline(always)]
pub fn copy16(dst: *mut [u8; 16], src: &[u8; 16]) {
    // SAFETY: both point at 16 bytes; BPF loads and stores need no alignment.
    unsafe {
        core::arch::asm!(
            "{t} = *(u64 *)({s} + 0)",
            "*(u64 *)({d} + 0) = {t}",
            "{t} = *(u64 *)({s} + 8)",
            "*(u64 *)({d} + 8) = {t}",
            s = in(reg) src.as_ptr(),
            d = in(reg) dst.cast::<u8>(),
            t = out(reg) _,
        );
    }
}

/// Whether `n` bytes at `at` end at or before `limit`.
#[inline(always)]
pub fn fits(at: u32, n: u32, limit: u32) -> bool {
    at <= limit && limit - at >= n
}

/// A datagram's bytes. Reads never leave the buffer; whether they are
/// inside the datagram is the caller's check ([`fits`]). 8-aligned, so an
/// aligned offset is an aligned address. [`WATCH_SNAP`] bytes of slack
/// after the largest datagram let [`Data::snapshot`] copy a fixed size
/// from any offset.
#[repr(C, align(8))]
pub struct Data(pub [u8; MAX_DATAGRAM + WATCH_SNAP]);

impl Data {
    #[inline(always)]
    pub fn u8(&self, at: u32) -> u8 {
        self.0[(at & MASK) as usize]
    }

    #[inline(always)]
    pub fn be16(&self, at: u32) -> u16 {
        u16::from_be_bytes([self.u8(at), self.u8(at + 1)])
    }

    /// A big-endian word. XDR (sFlow) puts every field on a 4-byte
    /// boundary: one load there; a lying length elsewhere takes the bytes.
    #[inline(always)]
    pub fn be32(&self, at: u32) -> u32 {
        if at & 3 == 0 {
            let i = (at & MASK & !3) as usize;
            // SAFETY: i + 4 <= MAX_DATAGRAM and i is 4-aligned in an
            // 8-aligned buffer.
            u32::from_be(unsafe { self.0.as_ptr().add(i).cast::<u32>().read() })
        } else {
            u32::from_be_bytes([
                self.u8(at),
                self.u8(at + 1),
                self.u8(at + 2),
                self.u8(at + 3),
            ])
        }
    }

    /// The 8 bytes at `at` as a little-endian word (memory order on bpfel),
    /// with one unaligned load. Bytes past the datagram (up to 7, inside
    /// the buffer's slack) are whatever the buffer holds: callers shift or
    /// mask them out, or checked that the 8 bytes are inside.
    #[inline(always)]
    fn load64(&self, at: u32) -> u64 {
        let src = self.0.as_ptr().wrapping_add((at & MASK) as usize);
        let raw: u64;
        // SAFETY: src + 8 <= MAX_DATAGRAM + WATCH_SNAP (masked offset plus
        // slack); BPF loads need no alignment. Inline assembly: LLVM would
        // split an unaligned load into eight.
        unsafe { core::arch::asm!("{t} = *(u64 *)({s} + 0)", s = in(reg) src, t = out(reg) raw) };
        raw
    }

    /// The 4 bytes at `at` in memory order, with one unaligned load.
    #[inline(always)]
    fn load32(&self, at: u32) -> u32 {
        let src = self.0.as_ptr().wrapping_add((at & MASK) as usize);
        let raw: u64;
        // SAFETY: as in `load64`.
        unsafe { core::arch::asm!("{t} = *(u32 *)({s} + 0)", s = in(reg) src, t = out(reg) raw) };
        raw as u32
    }

    /// The 8 bytes at `at` as a big-endian word: a v9/IPFIX field is read
    /// from it by its compiled plan (`common::plan::FieldRead`).
    #[inline(always)]
    pub fn be64(&self, at: u32) -> u64 {
        u64::from_be(self.load64(at))
    }

    /// Copies the [`WATCH_SNAP`] bytes at `at` to `out` (past the datagram's
    /// end they are stale; the caller says how many hold data). Unaligned
    /// 64-bit moves in inline assembly: LLVM would split them into bytes.
    #[inline(always)]
    pub fn snapshot(&self, at: u32, out: *mut [u8; WATCH_SNAP]) {
        const _: () = assert!(WATCH_SNAP.is_multiple_of(8));
        let src = self.0.as_ptr().wrapping_add((at & MASK) as usize);
        let dst = out.cast::<u8>();
        macro_rules! words {
            ($($o:literal)*) => {$(
                // SAFETY: src + $o + 8 <= MAX_DATAGRAM + WATCH_SNAP (masked
                // offset plus slack); dst is WATCH_SNAP bytes. BPF loads and
                // stores need no alignment.
                unsafe {
                    core::arch::asm!(
                        "{t} = *(u64 *)({s} + {o})",
                        "*(u64 *)({d} + {o}) = {t}",
                        s = in(reg) src,
                        d = in(reg) dst,
                        o = const $o,
                        t = out(reg) _,
                    );
                }
            )*};
        }
        const _: () = assert!(WATCH_SNAP == 192);
        words!(0 8 16 24 32 40 48 56 64 72 80 88 96 104 112 120 128 136 144 152 160 168 176 184);
    }

    /// 16 bytes at `at` (an IPv6 address): two loads, not sixteen.
    #[inline(always)]
    pub fn addr16(&self, at: u32) -> Addr {
        [self.load64(at), self.load64(at + 8)]
    }

    /// 4 bytes at `at` (an IPv4 address), mapped into IPv6: one load.
    #[inline(always)]
    pub fn addr4_mapped(&self, at: u32) -> Addr {
        mapped_v4(self.load32(at).to_le_bytes())
    }
}
