//! The replay generator of the benchmark: real telemetry datagrams from
//! captures, sent at a controlled rate (batches paced with `sendmmsg`), and
//! the truth of what was sent.
//!
//! The stream is deterministic: datagram `i` is capture datagram `i mod n`,
//! with (optionally) the IPv4 destination of every sampled Ethernet/IPv4
//! header in an sFlow flow sample rewritten to `base + k mod count`, `k`
//! numbering those headers along the stream. So the truth is simply the
//! userspace decoder run over datagrams `0..sent` again, byte for byte the
//! ones that went out.

use std::{
    io,
    mem::zeroed,
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    path::Path,
    time::{Duration, Instant},
};

use edge_sensor::{
    pcap,
    telemetry::{Datagram, UserDecoder, frame},
};
use edge_sensor_common::TelemetryKind;

/// Datagrams per `sendmmsg` call.
const BATCH: usize = 32;

/// One capture datagram and where its rewritable destinations are.
#[derive(Debug, Clone)]
struct Template {
    payload: Vec<u8>,
    /// Offsets of the IPv4 headers (inside sampled packet headers) whose
    /// destination may be rewritten.
    ipv4_headers: Vec<usize>,
}

/// Destinations to spread the samples over: `base`, `base + 1`, ...
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    pub base: Ipv4Addr,
    pub count: u32,
}

/// A replayable stream of telemetry datagrams.
#[derive(Debug, Clone)]
pub struct Workload {
    pub kind: TelemetryKind,
    templates: Vec<Template>,
    /// Rewritable headers before each template, and in a whole cycle.
    slots_before: Vec<u64>,
    slots_per_cycle: u64,
    spread: Option<Spread>,
}

impl Workload {
    /// The datagrams of `captures` (in order) that carry `kind`: sFlow v5,
    /// or IPFIX (version 10) for `Ipfix`, v9 for `Netflow`. Any UDP port.
    pub fn from_captures(captures: &[&Path], kind: TelemetryKind) -> Self {
        let mut templates = Vec::new();
        for path in captures {
            let frames =
                pcap::ethernet_frames(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            for f in &frames {
                let Some(d) = frame::telemetry_datagram(f, |_| Some(kind)) else {
                    continue;
                };
                let p = d.payload;
                let wanted = match kind {
                    TelemetryKind::Sflow => p.get(..4) == Some(&[0, 0, 0, 5]),
                    TelemetryKind::Ipfix => p.get(..2) == Some(&[0, 10]),
                    TelemetryKind::Netflow => p.get(..2) == Some(&[0, 9]),
                };
                if wanted {
                    let ipv4_headers = if kind == TelemetryKind::Sflow {
                        sflow_ipv4_headers(p)
                    } else {
                        Vec::new()
                    };
                    templates.push(Template {
                        payload: p.to_vec(),
                        ipv4_headers,
                    });
                }
            }
        }
        assert!(
            !templates.is_empty(),
            "no {} datagrams in {captures:?}",
            kind.name()
        );
        let mut slots_before = Vec::with_capacity(templates.len());
        let mut total = 0u64;
        for t in &templates {
            slots_before.push(total);
            total += t.ipv4_headers.len() as u64;
        }
        Self {
            kind,
            templates,
            slots_before,
            slots_per_cycle: total,
            spread: None,
        }
    }

    /// Rewrites the sampled IPv4 destinations over `spread`.
    pub fn spread(mut self, spread: Spread) -> Self {
        assert!(spread.count > 0, "an empty spread");
        self.spread = Some(spread);
        self
    }

    /// Capture datagrams in one cycle of the stream.
    pub fn cycle_len(&self) -> usize {
        self.templates.len()
    }

    /// Sampled IPv4 headers whose destination is rewritten, per cycle.
    pub fn rewritable_per_cycle(&self) -> u64 {
        self.slots_per_cycle
    }

    /// Datagram `i` of the stream, into `out`.
    pub fn datagram(&self, i: u64, out: &mut Vec<u8>) {
        let n = self.templates.len() as u64;
        let t = &self.templates[(i % n) as usize];
        out.clear();
        out.extend_from_slice(&t.payload);
        let Some(spread) = self.spread else {
            return;
        };
        let first = (i / n) * self.slots_per_cycle + self.slots_before[(i % n) as usize];
        for (j, &ip) in t.ipv4_headers.iter().enumerate() {
            let k = (first + j as u64) % u64::from(spread.count);
            let dst = Ipv4Addr::from(u32::from(spread.base).wrapping_add(k as u32));
            out[ip + 16..ip + 20].copy_from_slice(&dst.octets());
            out[ip + 10..ip + 12].fill(0);
            let sum = ipv4_checksum(&out[ip..ip + 20]);
            out[ip + 10..ip + 12].copy_from_slice(&sum.to_be_bytes());
        }
    }

    /// The truth: the userspace decoder over datagrams `0..sent`, as the
    /// collector receives them from `src` on `port`.
    pub fn truth(&self, sent: u64, src: SocketAddr, port: u16) -> UserDecoder {
        let mut decoder = UserDecoder::new(&[(port, self.kind)], &[], false);
        let mut buf = Vec::new();
        for i in 0..sent {
            self.datagram(i, &mut buf);
            decoder.datagram(&Datagram {
                src: src.ip(),
                src_port: src.port(),
                port,
                kind: self.kind,
                payload: &buf,
            });
        }
        decoder
    }
}

/// What a replay sent.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    pub datagrams: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    /// The sender's address, as the collector sees it.
    pub src: SocketAddr,
}

impl Sent {
    pub fn rate(&self) -> f64 {
        self.datagrams as f64 / self.elapsed.as_secs_f64()
    }
}

/// Sends datagrams `0..` of `workload` to `dst` at `rate` datagrams per
/// second for `duration` (or until `limit` datagrams), in paced batches.
/// When the sender falls more than 10 ms behind its schedule it does not
/// burst to catch up: the achieved rate is then below the offered one (the
/// generator saturated), which [`Sent::rate`] shows.
pub fn send(
    workload: &Workload,
    dst: SocketAddr,
    rate: f64,
    duration: Duration,
    limit: Option<u64>,
) -> io::Result<Sent> {
    let bind: SocketAddr = if dst.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    let socket = UdpSocket::bind(bind)?;
    socket.connect(dst)?;
    let src = socket.local_addr()?;
    let limit = limit.unwrap_or(u64::MAX);
    let mut bufs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(2048)).collect();
    let interval = Duration::from_secs_f64(BATCH as f64 / rate);
    let max_lag = Duration::from_millis(10);
    let start = Instant::now();
    let mut due = start;
    let (mut next, mut bytes) = (0u64, 0u64);
    while next < limit && start.elapsed() < duration {
        let now = Instant::now();
        if now < due {
            let wait = due - now;
            if wait > Duration::from_micros(200) {
                std::thread::sleep(wait - Duration::from_micros(100));
            }
            while Instant::now() < due {
                std::hint::spin_loop();
            }
        } else if now - due > max_lag {
            due = now;
        }
        due += interval;
        let n = BATCH.min((limit - next) as usize);
        for (k, buf) in bufs.iter_mut().take(n).enumerate() {
            workload.datagram(next + k as u64, buf);
        }
        send_all(&socket, &bufs[..n])?;
        bytes += bufs[..n].iter().map(|b| b.len() as u64).sum::<u64>();
        next += n as u64;
    }
    Ok(Sent {
        datagrams: next,
        bytes,
        elapsed: start.elapsed(),
        src,
    })
}

/// Every buffer, with as few `sendmmsg` calls as the kernel allows.
fn send_all(socket: &UdpSocket, bufs: &[Vec<u8>]) -> io::Result<()> {
    let mut iovecs: Vec<libc::iovec> = bufs
        .iter()
        .map(|b| libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        })
        .collect();
    let mut headers: Vec<libc::mmsghdr> = iovecs
        .iter_mut()
        .map(|iov| {
            // SAFETY: msghdr is plain old data; all zeroes is valid.
            let mut hdr: libc::msghdr = unsafe { zeroed() };
            hdr.msg_iov = iov;
            hdr.msg_iovlen = 1;
            libc::mmsghdr {
                msg_hdr: hdr,
                msg_len: 0,
            }
        })
        .collect();
    let mut done = 0;
    while done < headers.len() {
        // SAFETY: `headers[done..]` are initialised and point into `bufs`
        // through `iovecs`, all alive for the call; the socket is connected.
        let n = unsafe {
            libc::sendmmsg(
                socket.as_raw_fd(),
                headers[done..].as_mut_ptr(),
                (headers.len() - done) as libc::c_uint,
                0,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                // An ICMP error from an earlier datagram (nobody listening
                // yet): the datagram was still sent.
                io::ErrorKind::ConnectionRefused
                | io::ErrorKind::Interrupted
                | io::ErrorKind::WouldBlock => continue,
                _ if e.raw_os_error() == Some(libc::ENOBUFS) => continue,
                _ => return Err(e),
            }
        }
        done += n as usize;
    }
    Ok(())
}

/// RFC 1071 checksum of an IPv4 header (checksum field zeroed).
fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn be32(p: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(p.get(at..at + 4)?.try_into().ok()?))
}

/// Offsets of the IPv4 headers inside the raw packet header records
/// (sFlow v5 §5.2 `sampled_header`, Ethernet, up to two VLAN tags) of the
/// flow samples (formats 1 and 3) of an sFlow v5 datagram, where the whole
/// 20-byte header was sampled.
fn sflow_ipv4_headers(p: &[u8]) -> Vec<usize> {
    let mut found = Vec::new();
    let Some(agent_type) = be32(p, 4) else {
        return found;
    };
    let mut off = match agent_type {
        1 => 8 + 4,
        2 => 8 + 16,
        _ => return found,
    } + 16; // sub_agent, sequence, uptime, sample count
    let Some(samples) = be32(p, off - 4) else {
        return found;
    };
    for _ in 0..samples {
        let (Some(format), Some(len)) = (be32(p, off), be32(p, off + 4)) else {
            break;
        };
        let body = off + 8;
        let end = body + len as usize;
        let records_at = match format {
            1 => Some(body + 28),
            3 => Some(body + 40),
            _ => None,
        };
        if let Some(at) = records_at {
            let mut r = at + 4;
            for _ in 0..be32(p, at).unwrap_or(0) {
                let (Some(rformat), Some(rlen)) = (be32(p, r), be32(p, r + 4)) else {
                    break;
                };
                if rformat == 1 && be32(p, r + 8) == Some(1) {
                    let header_len = be32(p, r + 20).unwrap_or(0) as usize;
                    if let Some(ip) = ethernet_ipv4(p, r + 24, header_len) {
                        found.push(ip);
                    }
                }
                r += 8 + rlen as usize;
            }
        }
        off = end;
    }
    found
}

/// The offset of a complete IPv4 header in the Ethernet header at `at`.
fn ethernet_ipv4(p: &[u8], at: usize, len: usize) -> Option<usize> {
    let header = p.get(at..at + len)?;
    let mut off = 12;
    let mut ethertype = u16::from_be_bytes(header.get(off..off + 2)?.try_into().ok()?);
    for _ in 0..2 {
        if ethertype != 0x8100 && ethertype != 0x88a8 {
            break;
        }
        off += 4;
        ethertype = u16::from_be_bytes(header.get(off..off + 2)?.try_into().ok()?);
    }
    off += 2;
    (ethertype == 0x0800 && header.get(off..off + 20)?[0] >> 4 == 4).then_some(at + off)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_checksum_of_a_known_header() {
        // The example header of RFC 1071 errata / Wikipedia: checksum b861.
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(ipv4_checksum(&h), 0xb861);
    }
}
