//! One sensor's summary of one poll: the rates of the destinations at a
//! fraction of their thresholds, and of the aggregate blocks whose other
//! hosts sum to that fraction of the block's thresholds, per class and
//! metric.
//!
//! Binary, not JSON: a flooded destination is an address, a 14-bit mask of
//! the non-zero (class, metric) rates and an `f32` per set bit, about 23
//! bytes for an IPv4 victim with two classes where compact JSON of the same
//! table takes 150 to 250; at thousands of destinations a poll that is the
//! difference between tens of kB/s and MB/s per sensor on the bus. `f32`
//! keeps 7 significant digits, well inside sampling error.
//!
//! A summary bigger than one NATS message (`max_payload`, 1 MB by default:
//! about 45 000 IPv4 destinations) is sent in parts, each a summary of its
//! own entries with the part's index and the count; a reader takes a
//! member's parts only when every one is of the same poll
//! ([`Summary::join`]).
//!
//! Layout (little endian): `b"ES"`, version 2, `seq: u64`, `part: u8`,
//! `parts: u8`, `count: u32`, then per entry: kind (4 or 6: a host of
//! that family; 0x84 or 0x86: a block, followed by its prefix length), the
//! address, `mask: u16` (bit `2 * class + metric`), the set rates as `f32`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use edge_sensor_common::Class;
use ipnet::IpNet;

use crate::detect::meter::{Table, ZERO};

const MAGIC: &[u8; 2] = b"ES";
const VERSION: u8 = 2;
/// Bytes before the first entry.
pub const HEADER_LEN: usize = 2 + 1 + 8 + 1 + 1 + 4;
/// The kind byte's flag for a block entry.
const BLOCK: u8 = 0x80;
/// At most this many parts (the index is a byte).
pub const MAX_PARTS: usize = 255;

/// A sensor's rates for one poll.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// The publisher's poll counter.
    pub seq: u64,
    /// `table[class][metric]`: pps and bps, per destination near a
    /// threshold ([`crate::detect::Detector::near_threshold`]).
    pub rates: Vec<(IpAddr, Table)>,
    /// Per aggregate block, its other hosts summed
    /// ([`crate::detect::Detector::block_rest`]).
    pub blocks: Vec<(IpNet, Table)>,
}

/// One NATS message of a summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub index: u8,
    pub count: u8,
    pub summary: Summary,
}

/// A payload that is not a summary of this version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("summary: {0}")]
pub struct DecodeError(&'static str);

/// The parts a summary was cut into, and what did not fit in
/// [`MAX_PARTS`] (entries left out, the lowest rates first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub parts: Vec<Vec<u8>>,
    pub left_out: usize,
}

fn entry_len(t: &Table, addr_len: usize, block: bool) -> usize {
    let rates = t.iter().flatten().filter(|v| **v > 0.0).count();
    1 + addr_len + usize::from(block) + 2 + 4 * rates
}

fn put_entry(out: &mut Vec<u8>, ip: IpAddr, prefix: Option<u8>, t: &Table) {
    let flag = if prefix.is_some() { BLOCK } else { 0 };
    match ip {
        IpAddr::V4(a) => {
            out.push(4 | flag);
            out.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            out.push(6 | flag);
            out.extend_from_slice(&a.octets());
        }
    }
    if let Some(p) = prefix {
        out.push(p);
    }
    let mut mask = 0u16;
    for (c, row) in t.iter().enumerate() {
        for (m, v) in row.iter().enumerate() {
            if *v > 0.0 {
                mask |= 1 << (2 * c + m);
            }
        }
    }
    out.extend_from_slice(&mask.to_le_bytes());
    for v in t.iter().flatten() {
        if *v > 0.0 {
            out.extend_from_slice(&(*v as f32).to_le_bytes());
        }
    }
}

impl Summary {
    /// In one message, whatever its size.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = self.encode_parts(usize::MAX);
        debug_assert_eq!(e.parts.len(), 1);
        e.parts.swap_remove(0)
    }

    /// In parts of at most `max_bytes` each (at least one entry a part).
    /// Past [`MAX_PARTS`] the entries with the lowest all-traffic pps are
    /// left out, and counted.
    pub fn encode_parts(&self, max_bytes: usize) -> Encoded {
        enum Entry<'a> {
            Host(IpAddr, &'a Table),
            Block(IpNet, &'a Table),
        }
        let mut entries: Vec<(Entry, usize)> = self
            .rates
            .iter()
            .map(|(ip, t)| {
                let len = entry_len(t, if ip.is_ipv4() { 4 } else { 16 }, false);
                (Entry::Host(*ip, t), len)
            })
            .chain(self.blocks.iter().map(|(net, t)| {
                let len = entry_len(t, if net.addr().is_ipv4() { 4 } else { 16 }, true);
                (Entry::Block(*net, t), len)
            }))
            .collect();
        let room = max_bytes.saturating_sub(HEADER_LEN).max(1);
        let total: usize = entries.iter().map(|(_, l)| l).sum();
        let mut left_out = 0;
        if total > room.saturating_mul(MAX_PARTS) {
            // Keep the heaviest: those are the ones that can make an attack.
            let pps = |e: &Entry| match e {
                Entry::Host(_, t) | Entry::Block(_, t) => t[0][0],
            };
            entries.sort_by(|a, b| pps(&b.0).total_cmp(&pps(&a.0)));
            let mut used = 0;
            let keep = entries
                .iter()
                .take_while(|(_, l)| {
                    used += l;
                    used <= room * MAX_PARTS * 9 / 10
                })
                .count();
            left_out = entries.len() - keep;
            entries.truncate(keep);
        }
        // Cut by size, then write each part with its entry count.
        let mut cuts: Vec<std::ops::Range<usize>> = Vec::new();
        let (mut from, mut size) = (0, 0);
        for (i, (_, len)) in entries.iter().enumerate() {
            if i > from && size + len > room {
                cuts.push(from..i);
                (from, size) = (i, 0);
            }
            size += len;
        }
        cuts.push(from..entries.len());
        if cuts.len() > MAX_PARTS {
            // Only with parts too small for the entries' slack above.
            left_out += cuts[MAX_PARTS..].iter().map(|r| r.len()).sum::<usize>();
            cuts.truncate(MAX_PARTS);
        }
        let count = cuts.len() as u8;
        let parts = cuts
            .into_iter()
            .enumerate()
            .map(|(index, range)| {
                let mut out = Vec::with_capacity(HEADER_LEN + 24 * range.len());
                out.extend_from_slice(MAGIC);
                out.push(VERSION);
                out.extend_from_slice(&self.seq.to_le_bytes());
                out.push(index as u8);
                out.push(count);
                out.extend_from_slice(&(range.len() as u32).to_le_bytes());
                for (e, _) in &entries[range] {
                    match e {
                        Entry::Host(ip, t) => put_entry(&mut out, *ip, None, t),
                        Entry::Block(net, t) => {
                            put_entry(&mut out, net.addr(), Some(net.prefix_len()), t)
                        }
                    }
                }
                out
            })
            .collect();
        Encoded { parts, left_out }
    }

    /// A summary sent in one message.
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let part = Part::decode(b)?;
        if part.count != 1 {
            return Err(DecodeError("one part of several"));
        }
        Ok(part.summary)
    }

    /// A summary from all its parts: refused unless they are every part
    /// of one poll's.
    pub fn join(parts: Vec<Part>) -> Result<Self, DecodeError> {
        let Some(first) = parts.first() else {
            return Err(DecodeError("no parts"));
        };
        let (seq, count) = (first.summary.seq, first.count);
        if parts.len() != usize::from(count)
            || parts
                .iter()
                .enumerate()
                .any(|(i, p)| usize::from(p.index) != i || p.count != count || p.summary.seq != seq)
        {
            return Err(DecodeError("parts of different polls"));
        }
        let mut whole = Summary {
            seq,
            ..Summary::default()
        };
        for p in parts {
            whole.rates.extend(p.summary.rates);
            whole.blocks.extend(p.summary.blocks);
        }
        Ok(whole)
    }
}

impl Part {
    pub fn decode(mut b: &[u8]) -> Result<Self, DecodeError> {
        fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], DecodeError> {
            if b.len() < n {
                return Err(DecodeError("truncated"));
            }
            let (head, tail) = b.split_at(n);
            *b = tail;
            Ok(head)
        }
        if take(&mut b, 2)? != MAGIC {
            return Err(DecodeError("bad magic"));
        }
        if take(&mut b, 1)?[0] != VERSION {
            return Err(DecodeError("unknown version"));
        }
        let seq = u64::from_le_bytes(take(&mut b, 8)?.try_into().unwrap());
        let (index, count) = match take(&mut b, 2)? {
            [i, c] if i < c => (*i, *c),
            _ => return Err(DecodeError("bad part index")),
        };
        let entries = u32::from_le_bytes(take(&mut b, 4)?.try_into().unwrap()) as usize;
        // Each entry takes at least 7 bytes: a count beyond that is a lie.
        if entries > b.len() / 7 {
            return Err(DecodeError("count beyond the payload"));
        }
        let mut summary = Summary {
            seq,
            ..Summary::default()
        };
        for _ in 0..entries {
            let kind = take(&mut b, 1)?[0];
            let ip = match kind & !BLOCK {
                4 => IpAddr::V4(Ipv4Addr::from(
                    <[u8; 4]>::try_from(take(&mut b, 4)?).unwrap(),
                )),
                6 => IpAddr::V6(Ipv6Addr::from(
                    <[u8; 16]>::try_from(take(&mut b, 16)?).unwrap(),
                )),
                _ => return Err(DecodeError("bad address family")),
            };
            let block = if kind & BLOCK != 0 {
                let len = take(&mut b, 1)?[0];
                let net = IpNet::new(ip, len).map_err(|_| DecodeError("bad prefix length"))?;
                if net.trunc() != net {
                    return Err(DecodeError("block address with host bits"));
                }
                Some(net)
            } else {
                None
            };
            let mask = u16::from_le_bytes(take(&mut b, 2)?.try_into().unwrap());
            if mask >> (2 * Class::COUNT) != 0 {
                return Err(DecodeError("unknown class"));
            }
            let mut t = ZERO;
            for (c, row) in t.iter_mut().enumerate() {
                for (m, v) in row.iter_mut().enumerate() {
                    if mask & (1 << (2 * c + m)) != 0 {
                        let x = f32::from_le_bytes(take(&mut b, 4)?.try_into().unwrap());
                        if !(x.is_finite() && x >= 0.0) {
                            return Err(DecodeError("bad rate"));
                        }
                        *v = f64::from(x);
                    }
                }
            }
            match block {
                Some(net) => summary.blocks.push((net, t)),
                None => summary.rates.push((ip, t)),
            }
        }
        if !b.is_empty() {
            return Err(DecodeError("trailing bytes"));
        }
        Ok(Self {
            index,
            count,
            summary,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(pps: f64) -> Table {
        let mut t = ZERO;
        t[0] = [pps, pps * 8000.0];
        t[2] = [pps / 2.0, 0.0];
        t
    }

    fn sample() -> Summary {
        Summary {
            seq: 42,
            rates: vec![
                ("198.18.202.10".parse().unwrap(), table(40_000.0)),
                ("2001:db8::1".parse().unwrap(), table(1_000.5)),
            ],
            blocks: vec![("198.18.202.0/24".parse().unwrap(), table(9_000.0))],
        }
    }

    #[test]
    fn round_trips_and_is_compact() {
        let s = sample();
        let b = s.encode();
        assert_eq!(Summary::decode(&b).unwrap(), s);
        // header + (1+4+2+12) + (1+16+2+12) + block (1+4+1+2+12)
        assert_eq!(b.len(), HEADER_LEN + 19 + 31 + 20);
        let json = serde_json::to_string(&s.rates).unwrap();
        assert!(json.len() > 3 * (b.len() - 20), "json {} bytes", json.len());
    }

    #[test]
    fn a_big_summary_goes_in_parts_that_join_into_it() {
        let s = Summary {
            seq: 7,
            rates: (0..1000u32)
                .map(|i| {
                    (
                        IpAddr::V4(Ipv4Addr::from(0xc612_0000 + i)),
                        table(f64::from(i + 1)),
                    )
                })
                .collect(),
            blocks: vec![("198.18.0.0/24".parse().unwrap(), table(5.0))],
        };
        let e = s.encode_parts(2048);
        assert_eq!(e.left_out, 0);
        assert_eq!(e.parts.len(), 19_000usize.div_ceil(2048 - HEADER_LEN));
        assert!(e.parts.iter().all(|p| p.len() <= 2048));
        let parts: Vec<Part> = e.parts.iter().map(|p| Part::decode(p).unwrap()).collect();
        assert_eq!(Summary::join(parts.clone()).unwrap(), s);
        // One part of another poll, a missing one, or the wrong order: refused.
        let mut other = parts.clone();
        other[2].summary.seq = 8;
        assert!(Summary::join(other).is_err());
        assert!(Summary::join(parts[1..].to_vec()).is_err());
        let mut swapped = parts.clone();
        swapped.swap(0, 1);
        assert!(Summary::join(swapped).is_err());
        assert!(
            Summary::decode(&e.parts[0]).is_err(),
            "a part is not a whole"
        );
    }

    #[test]
    fn past_the_part_limit_the_lightest_entries_are_left_out_and_counted() {
        let s = Summary {
            seq: 1,
            rates: (0..600u32)
                .map(|i| {
                    (
                        IpAddr::V4(Ipv4Addr::from(0xc612_0000 + i)),
                        table(f64::from(i + 1)),
                    )
                })
                .collect(),
            blocks: Vec::new(),
        };
        // Two entries a part: 255 parts hold 510 at most.
        let e = s.encode_parts(HEADER_LEN + 2 * 19);
        assert!(e.parts.len() <= MAX_PARTS);
        assert!(e.left_out >= 90, "{}", e.left_out);
        let parts: Vec<Part> = e.parts.iter().map(|p| Part::decode(p).unwrap()).collect();
        let kept = Summary::join(parts).unwrap();
        assert_eq!(kept.rates.len() + e.left_out, 600);
        let lightest_kept = kept
            .rates
            .iter()
            .map(|(_, t)| t[0][0])
            .fold(f64::MAX, f64::min);
        assert!(lightest_kept > e.left_out as f64 - 1.0, "the heaviest kept");
    }

    #[test]
    fn garbage_is_refused_not_panicked_on() {
        let b = sample().encode();
        for n in 0..b.len() {
            assert!(Summary::decode(&b[..n]).is_err(), "prefix {n}");
        }
        let mut lying = b.clone();
        lying[13..17].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Summary::decode(&lying).is_err());
        let mut index = b.clone();
        index[11] = 1; // part 1 of 1
        assert!(Summary::decode(&index).is_err());
        let mut host_bits = b.clone();
        let at = b.len() - 20 + 4; // the block's last address byte
        host_bits[at] = 1;
        assert!(Summary::decode(&host_bits).is_err());
        assert!(Summary::decode(b"XX").is_err());
    }
}
