//! The replay generator of the benchmark: real telemetry datagrams from
//! captures, sent at a controlled rate (batches paced with `sendmmsg`), and
//! the truth of what was sent.
//!
//! The stream is deterministic: every capture datagram once, then the ones
//! that carry data (not templates) in a loop, with (optionally) the IPv4 destination of every sampled Ethernet/IPv4
//! header in an sFlow flow sample rewritten to `base + k mod count`, `k`
//! numbering those headers along the stream. So the truth is simply the
//! userspace decoder run over datagrams `0..sent` again, byte for byte the
//! ones that went out.

use std::{
    io,
    mem::{size_of, zeroed},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
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
    /// NetFlow v9 / IPFIX: it carries a template or options template set.
    defines_templates: bool,
}

/// Destinations to spread the samples over: `base`, `base + 1`, ...
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    pub base: Ipv4Addr,
    pub count: u32,
}

/// One pass over capture datagrams (by index), with what each carries.
#[derive(Debug, Clone, Default)]
struct Cycle {
    order: Vec<usize>,
    /// Rewritable headers before each datagram of the cycle, and in all.
    slots_before: Vec<u64>,
    slots: u64,
    /// sFlow flow samples / flow records in each datagram of the cycle.
    samples: Vec<u64>,
}

impl Cycle {
    fn new(order: Vec<usize>, templates: &[Template]) -> Self {
        let mut slots_before = Vec::with_capacity(order.len());
        let mut slots = 0;
        for &t in &order {
            slots_before.push(slots);
            slots += templates[t].ipv4_headers.len() as u64;
        }
        Self {
            order,
            slots_before,
            slots,
            samples: Vec::new(),
        }
    }

    fn len(&self) -> u64 {
        self.order.len() as u64
    }
}

/// A replayable stream of telemetry datagrams: the whole capture once,
/// then (as exporters do) its data again and again, templates left out
/// (they are refreshed every few minutes, not with every datagram).
#[derive(Debug, Clone)]
pub struct Workload {
    pub kind: TelemetryKind,
    templates: Vec<Template>,
    first: Cycle,
    steady: Cycle,
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
                        defines_templates: defines_templates(p),
                    });
                }
            }
        }
        assert!(
            !templates.is_empty(),
            "no {} datagrams in {captures:?}",
            kind.name()
        );
        let all: Vec<usize> = (0..templates.len()).collect();
        let mut data: Vec<usize> = all
            .iter()
            .copied()
            .filter(|&t| !templates[t].defines_templates)
            .collect();
        if data.is_empty() {
            data = all.clone();
        }
        let mut workload = Self {
            kind,
            first: Cycle::new(all, &templates),
            steady: Cycle::new(data, &templates),
            templates,
            spread: None,
        };
        workload.profile();
        workload
    }

    /// What each datagram carries, from the decoder over the first cycle
    /// and one steady cycle.
    fn profile(&mut self) {
        let src: SocketAddr = "192.0.2.1:50000".parse().unwrap();
        let mut decoder = UserDecoder::new(&[(1, self.kind)], &[], false);
        let mut counts = Vec::new();
        let mut buf = Vec::new();
        let mut last = 0;
        for i in 0..self.first.len() + self.steady.len() {
            self.datagram(i, &mut buf);
            decoder.datagram(&Datagram {
                src: src.ip(),
                src_port: src.port(),
                port: 1,
                kind: self.kind,
                payload: &buf,
            });
            let now = samples_of(&decoder);
            counts.push(now - last);
            last = now;
        }
        self.steady.samples = counts.split_off(self.first.order.len());
        self.first.samples = counts;
    }

    /// sFlow flow samples (or flow records) in datagrams `0..sent`.
    pub fn expected_samples(&self, sent: u64) -> u64 {
        let n = self.first.len();
        let first: u64 = self.first.samples.iter().take(sent.min(n) as usize).sum();
        if sent <= n {
            return first;
        }
        let (rest, m) = (sent - n, self.steady.len());
        let per_cycle: u64 = self.steady.samples.iter().sum();
        let partial: u64 = self.steady.samples.iter().take((rest % m) as usize).sum();
        first + rest / m * per_cycle + partial
    }

    /// Rewrites the sampled IPv4 destinations over `spread`.
    pub fn spread(mut self, spread: Spread) -> Self {
        assert!(spread.count > 0, "an empty spread");
        self.spread = Some(spread);
        self
    }

    /// Datagrams of the stream's first pass (the whole capture, templates
    /// included), before the repeated cycle.
    pub fn first_len(&self) -> usize {
        self.first.order.len()
    }

    /// Datagrams in the repeated cycle of the stream.
    pub fn cycle_len(&self) -> usize {
        self.steady.order.len()
    }

    /// Sampled IPv4 headers whose destination is rewritten, per cycle.
    pub fn rewritable_per_cycle(&self) -> u64 {
        self.steady.slots
    }

    /// Datagrams needed for `count` distinct spread destinations.
    pub fn datagrams_for_destinations(&self, count: u64) -> u64 {
        assert!(self.steady.slots > 0, "nothing to spread");
        if count <= self.first.slots {
            let k = self
                .first
                .slots_before
                .iter()
                .filter(|&&b| b < count)
                .count();
            return k as u64;
        }
        let rest = count - self.first.slots;
        self.first.len() + rest.div_ceil(self.steady.slots) * self.steady.len()
    }

    /// Datagram `i` of the stream, into `out`.
    pub fn datagram(&self, i: u64, out: &mut Vec<u8>) {
        let (template, first_slot) = if i < self.first.len() {
            let k = i as usize;
            (self.first.order[k], self.first.slots_before[k])
        } else {
            let (j, m) = (i - self.first.len(), self.steady.len());
            let k = (j % m) as usize;
            let slot = self.first.slots + j / m * self.steady.slots + self.steady.slots_before[k];
            (self.steady.order[k], slot)
        };
        let t = &self.templates[template];
        out.clear();
        out.extend_from_slice(&t.payload);
        let Some(spread) = self.spread else {
            return;
        };
        for (j, &ip) in t.ipv4_headers.iter().enumerate() {
            let k = (first_slot + j as u64) % u64::from(spread.count);
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

/// sFlow flow samples plus v9/IPFIX/v5 flow records counted so far.
pub fn samples_of(decoder: &UserDecoder) -> u64 {
    decoder
        .report
        .exporters
        .iter()
        .map(|(id, t)| {
            if id.protocol() == "sflow" {
                t.stats.samples
            } else {
                t.stats.records
            }
        })
        .sum()
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

/// How the datagrams leave the sender.
#[derive(Debug, Clone)]
pub enum Via {
    /// A connected UDP socket (the kernel's UDP/IP output path).
    Socket,
    /// Whole Ethernet frames written to `iface` with an AF_PACKET socket
    /// that bypasses the qdisc: the same datagrams for a fraction of the
    /// sender's CPU, so that one core can offer more than it could
    /// through the UDP stack.
    Raw(RawLink),
}

/// The addresses of the frames [`Via::Raw`] builds.
#[derive(Debug, Clone)]
pub struct RawLink {
    pub iface: String,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: SocketAddrV4,
}

/// Raw frames from the sender's veth of `link` to the collector's, from
/// the sender's address and source port 40000.
pub fn raw_via(link: &crate::netns::Link) -> Via {
    let mac = |ns: &crate::netns::NetNs, iface: &str| -> [u8; 6] {
        let v: serde_json::Value =
            serde_json::from_str(&ns.ip_output(&["-j", "link", "show", "dev", iface]))
                .expect("ip -j link");
        let text = v[0]["address"].as_str().expect("a MAC address");
        let bytes: Vec<u8> = text
            .split(':')
            .map(|b| u8::from_str_radix(b, 16).expect("a hex byte"))
            .collect();
        bytes.try_into().expect("6 bytes")
    };
    let std::net::IpAddr::V4(src) = link.a_addr else {
        unreachable!("the link's addresses are IPv4")
    };
    Via::Raw(RawLink {
        iface: link.a_if.clone(),
        src_mac: mac(&link.a, &link.a_if),
        dst_mac: mac(&link.b, &link.b_if),
        src: SocketAddrV4::new(src, 40_000),
    })
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
    send_via(&Via::Socket, workload, dst, rate, duration, limit)
}

/// [`send`], through `via`.
pub fn send_via(
    via: &Via,
    workload: &Workload,
    dst: SocketAddr,
    rate: f64,
    duration: Duration,
    limit: Option<u64>,
) -> io::Result<Sent> {
    let mut sink = match via {
        Via::Socket => Sink::socket(dst)?,
        Via::Raw(link) => match dst {
            SocketAddr::V4(dst) => Sink::raw(link, dst)?,
            SocketAddr::V6(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "raw sending builds IPv4 frames only",
                ));
            }
        },
    };
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
        sink.send(&bufs[..n])?;
        bytes += bufs[..n].iter().map(|b| b.len() as u64).sum::<u64>();
        next += n as u64;
    }
    Ok(Sent {
        datagrams: next,
        bytes,
        elapsed: start.elapsed(),
        src: sink.src,
    })
}

/// Where a batch goes.
struct Sink {
    fd: OwnedFd,
    src: SocketAddr,
    /// Raw: the Ethernet/IPv4/UDP headers to put before each payload.
    raw: Option<(RawLink, SocketAddrV4)>,
    frames: Vec<Vec<u8>>,
    ip_id: u16,
}

impl Sink {
    fn socket(dst: SocketAddr) -> io::Result<Self> {
        let bind: SocketAddr = if dst.is_ipv4() {
            "0.0.0.0:0".parse().unwrap()
        } else {
            "[::]:0".parse().unwrap()
        };
        let socket = UdpSocket::bind(bind)?;
        socket.connect(dst)?;
        let src = socket.local_addr()?;
        Ok(Self {
            fd: socket.into(),
            src,
            raw: None,
            frames: Vec::new(),
            ip_id: 0,
        })
    }

    fn raw(link: &RawLink, dst: SocketAddrV4) -> io::Result<Self> {
        let name = std::ffi::CString::new(link.iface.as_str())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name"))?;
        // SAFETY: a valid C string.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::last_os_error());
        }
        // Protocol 0: this socket sends only, it receives nothing.
        // SAFETY: plain socket(2).
        let raw_fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        if raw_fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw_fd) };
        // SAFETY: sockaddr_ll is plain old data.
        let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: a valid sockaddr_ll of the size given.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let one: libc::c_int = 1;
        // SAFETY: a c_int option of the right size.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_QDISC_BYPASS,
                (&one as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        Ok(Self {
            fd,
            src: SocketAddr::V4(link.src),
            raw: Some((link.clone(), dst)),
            frames: (0..BATCH).map(|_| Vec::with_capacity(2048)).collect(),
            ip_id: 0,
        })
    }

    fn send(&mut self, payloads: &[Vec<u8>]) -> io::Result<()> {
        let Some((link, dst)) = &self.raw else {
            return send_all(self.fd.as_raw_fd(), payloads);
        };
        for (frame, payload) in self.frames.iter_mut().zip(payloads) {
            self.ip_id = self.ip_id.wrapping_add(1);
            udp_frame(frame, link, *dst, self.ip_id, payload);
        }
        send_all(self.fd.as_raw_fd(), &self.frames[..payloads.len()])
    }
}

/// Ethernet + IPv4 (RFC 791, checksummed) + UDP (RFC 768, checksum 0:
/// none, as IPv4 allows) around `payload`.
pub fn udp_frame(out: &mut Vec<u8>, link: &RawLink, dst: SocketAddrV4, id: u16, payload: &[u8]) {
    out.clear();
    out.extend_from_slice(&link.dst_mac);
    out.extend_from_slice(&link.src_mac);
    out.extend_from_slice(&0x0800u16.to_be_bytes());
    let ip_len = (20 + 8 + payload.len()) as u16;
    let ip_at = out.len();
    out.extend_from_slice(&[0x45, 0]);
    out.extend_from_slice(&ip_len.to_be_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0x40, 0, 64, 17, 0, 0]); // DF, TTL 64, UDP
    out.extend_from_slice(&link.src.ip().octets());
    out.extend_from_slice(&dst.ip().octets());
    let sum = ipv4_checksum(&out[ip_at..ip_at + 20]);
    out[ip_at + 10..ip_at + 12].copy_from_slice(&sum.to_be_bytes());
    out.extend_from_slice(&link.src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(payload);
}

/// Every buffer, with as few `sendmmsg` calls as the kernel allows.
fn send_all(fd: i32, bufs: &[Vec<u8>]) -> io::Result<()> {
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
        // through `iovecs`, all alive for the call; the socket is connected
        // (UDP) or bound to an interface (AF_PACKET).
        let n = unsafe {
            libc::sendmmsg(
                fd,
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

/// Whether a NetFlow v9 (RFC 3954 §5: flowset IDs 0, 1) or IPFIX (RFC
/// 7011 §3.3.2: set IDs 2, 3) message carries a template set.
fn defines_templates(p: &[u8]) -> bool {
    let (mut off, template_ids) = match p.get(..2) {
        Some([0, 9]) => (20, [0u16, 1]),
        Some([0, 10]) => (16, [2, 3]),
        _ => return false,
    };
    while let (Some(id), Some(len)) = (be16(p, off), be16(p, off + 2)) {
        if template_ids.contains(&id) {
            return true;
        }
        if len < 4 {
            return false;
        }
        off += usize::from(len);
    }
    false
}

fn be16(p: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(p.get(at..at + 2)?.try_into().ok()?))
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
