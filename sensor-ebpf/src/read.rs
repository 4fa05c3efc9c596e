//! Reads at offsets the verifier cannot bound (a cursor walking a datagram).
//!
//! `bpf_xdp_load_bytes` copies a fixed number of bytes from any offset into
//! a stack buffer and checks the bounds at run time, so walking nested,
//! variable-length records needs no packet-pointer proofs at all.
//!
//! Buffers are 8-aligned and never zeroed first: an unaligned or zeroed
//! array makes LLVM call a byte-loop `memset`/`memcpy`, which the verifier
//! then walks byte by byte on every path.

use core::mem::MaybeUninit;

use aya_ebpf::{helpers::bpf_xdp_load_bytes, programs::XdpContext};

/// `N` bytes read from a frame.
#[repr(C, align(8))]
pub struct Buf<const N: usize>(pub [u8; N]);

impl<const N: usize> Buf<N> {
    #[inline(always)]
    pub fn be32(&self, at: usize) -> u32 {
        u32::from_be_bytes([self.0[at], self.0[at + 1], self.0[at + 2], self.0[at + 3]])
    }

    /// 16 bytes at `at` (an IPv6 address), as two little-endian words.
    #[inline(always)]
    pub fn addr16(&self, at: usize) -> Addr {
        let b = &self.0;
        let lo = u64::from_le_bytes([
            b[at],
            b[at + 1],
            b[at + 2],
            b[at + 3],
            b[at + 4],
            b[at + 5],
            b[at + 6],
            b[at + 7],
        ]);
        let hi = u64::from_le_bytes([
            b[at + 8],
            b[at + 9],
            b[at + 10],
            b[at + 11],
            b[at + 12],
            b[at + 13],
            b[at + 14],
            b[at + 15],
        ]);
        [lo, hi]
    }

    /// 4 bytes at `at` (an IPv4 address), mapped into IPv6 (`::ffff:a.b.c.d`)
    /// and stored as [`Buf::addr16`] would.
    #[inline(always)]
    pub fn addr4_mapped(&self, at: usize) -> Addr {
        mapped_v4([self.0[at], self.0[at + 1], self.0[at + 2], self.0[at + 3]])
    }
}

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

/// `N` bytes at frame offset `off`, if `off + N <= limit` and the frame holds
/// them. `limit` is where the enclosing structure (datagram, record) ends.
#[inline(always)]
pub fn bytes<const N: usize>(ctx: &XdpContext, off: u32, limit: u32) -> Option<Buf<N>> {
    if off > limit || limit - off < N as u32 {
        return None;
    }
    let mut buf = MaybeUninit::<Buf<N>>::uninit();
    // SAFETY: the helper writes all N bytes of the buffer or fails.
    let rc = unsafe { bpf_xdp_load_bytes(ctx.ctx, off, buf.as_mut_ptr().cast(), N as u32) };
    if rc == 0 {
        // SAFETY: fully written by the helper.
        Some(unsafe { buf.assume_init() })
    } else {
        None
    }
}
