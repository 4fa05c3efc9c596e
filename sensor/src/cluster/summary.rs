//! One sensor's summary of one poll: the rates of the destinations at a
//! fraction of their thresholds, per class and metric.
//!
//! Binary, not JSON: a flooded destination is an address, a 14-bit mask of
//! the non-zero (class, metric) rates and an `f32` per set bit, about 23
//! bytes for an IPv4 victim with two classes where compact JSON of the same
//! table takes 150 to 250; at thousands of destinations a poll that is the
//! difference between tens of kB/s and MB/s per sensor on the bus. `f32`
//! keeps 7 significant digits, well inside sampling error.
//!
//! Layout (little endian): `b"ES"`, version 1, `seq: u64`, `count: u32`,
//! then per destination: family (4 or 6), the address, `mask: u16` (bit
//! `2 * class + metric`), the set rates as `f32`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use edge_sensor_common::Class;

use crate::detect::meter::{Table, ZERO};

const MAGIC: &[u8; 2] = b"ES";
const VERSION: u8 = 1;

/// A sensor's rates for one poll.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// The publisher's poll counter.
    pub seq: u64,
    /// `table[class][metric]`: pps and bps.
    pub rates: Vec<(IpAddr, Table)>,
}

/// A payload that is not a summary of this version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("summary: {0}")]
pub struct DecodeError(&'static str);

impl Summary {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(15 + self.rates.len() * 24);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&(self.rates.len() as u32).to_le_bytes());
        for (ip, t) in &self.rates {
            match ip {
                IpAddr::V4(a) => {
                    out.push(4);
                    out.extend_from_slice(&a.octets());
                }
                IpAddr::V6(a) => {
                    out.push(6);
                    out.extend_from_slice(&a.octets());
                }
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
            for row in t {
                for v in row {
                    if *v > 0.0 {
                        out.extend_from_slice(&(*v as f32).to_le_bytes());
                    }
                }
            }
        }
        out
    }

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
        let count = u32::from_le_bytes(take(&mut b, 4)?.try_into().unwrap()) as usize;
        // Each entry takes at least 7 bytes: a count beyond that is a lie.
        if count > b.len() / 7 {
            return Err(DecodeError("count beyond the payload"));
        }
        let mut rates = Vec::with_capacity(count);
        for _ in 0..count {
            let ip = match take(&mut b, 1)?[0] {
                4 => IpAddr::V4(Ipv4Addr::from(
                    <[u8; 4]>::try_from(take(&mut b, 4)?).unwrap(),
                )),
                6 => IpAddr::V6(Ipv6Addr::from(
                    <[u8; 16]>::try_from(take(&mut b, 16)?).unwrap(),
                )),
                _ => return Err(DecodeError("bad address family")),
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
            rates.push((ip, t));
        }
        if !b.is_empty() {
            return Err(DecodeError("trailing bytes"));
        }
        Ok(Self { seq, rates })
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

    #[test]
    fn round_trips_and_is_compact() {
        let s = Summary {
            seq: 42,
            rates: vec![
                ("198.18.202.10".parse().unwrap(), table(40_000.0)),
                ("2001:db8::1".parse().unwrap(), table(1_000.5)),
            ],
        };
        let b = s.encode();
        assert_eq!(Summary::decode(&b).unwrap(), s);
        // 15 header + (1+4+2+12) + (1+16+2+12)
        assert_eq!(b.len(), 15 + 19 + 31);
        let json = serde_json::to_string(&s.rates).unwrap();
        assert!(json.len() > 3 * b.len(), "json {} bytes", json.len());
    }

    #[test]
    fn garbage_is_refused_not_panicked_on() {
        let b = Summary {
            seq: 1,
            rates: vec![("198.18.0.1".parse().unwrap(), table(5.0))],
        }
        .encode();
        for n in 0..b.len() {
            assert!(Summary::decode(&b[..n]).is_err(), "prefix {n}");
        }
        let mut lying = b.clone();
        lying[11..15].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Summary::decode(&lying).is_err());
        assert!(Summary::decode(b"XX").is_err());
    }
}
