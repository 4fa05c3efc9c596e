//! A plan's field (`FieldLoc`) made ready for the record loop: how to read it
//! from the 8 bytes at its offset with a byte swap, a shift and a mask,
//! whatever its length. The kernel (`sensor-ebpf/src/template.rs`) compiles
//! each field once per data set, so a record costs no branch per field
//! length; the arithmetic is here so that it is tested in userspace against
//! the plain reading of a big-endian integer.

use crate::FieldLoc;

/// One field of the set being counted, compiled from its [`FieldLoc`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FieldRead {
    /// Offset in the record.
    pub off: u32,
    /// Right shift of the big-endian 64-bit word read at `off`: drops the
    /// bytes after a field shorter than 8.
    pub shift: u32,
    /// All ones for a field the template has, 0 for one it lacks.
    pub mask: u64,
}

impl FieldRead {
    /// The reading of `loc`: an unsigned big-endian integer of `len` bytes
    /// (1 to 8; the first 8 of a longer field; 0 when `len` is 0).
    #[inline(always)]
    pub fn of(loc: FieldLoc) -> Self {
        let len = u32::from(loc.len);
        Self {
            off: u32::from(loc.off),
            shift: if len == 0 || len >= 8 {
                0
            } else {
                (8 - len) * 8
            },
            mask: if len == 0 { 0 } else { u64::MAX },
        }
    }

    /// The field's value, from the 8 bytes at `off` read as a big-endian
    /// word (bytes past the record are shifted or masked out).
    #[inline(always)]
    pub fn value(self, be_word: u64) -> u64 {
        be_word.wrapping_shr(self.shift) & self.mask
    }

    /// Whether the template has the field.
    #[inline(always)]
    pub fn present(self) -> bool {
        self.mask != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain reading: the first min(len, 8) bytes as a big-endian integer.
    fn plain(bytes: &[u8], len: usize) -> u64 {
        bytes[..len.min(8)]
            .iter()
            .fold(0u64, |v, b| (v << 8) | u64::from(*b))
    }

    #[test]
    fn every_length_reads_as_the_plain_integer() {
        let bytes = [0x81, 0x02, 0xf3, 0x04, 0x05, 0xa6, 0x07, 0xf8, 0x99, 0x10];
        let word = u64::from_be_bytes(bytes[..8].try_into().unwrap());
        for len in 0..=255u8 {
            let r = FieldRead::of(FieldLoc {
                off: 7,
                len,
                _pad: 0,
            });
            assert_eq!(r.off, 7);
            assert_eq!(r.present(), len != 0, "len {len}");
            let want = if len == 0 {
                0
            } else {
                plain(&bytes, len.into())
            };
            assert_eq!(r.value(word), want, "len {len}");
        }
    }
}
