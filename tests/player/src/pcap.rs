//! Datagrams as a classic pcap capture (Ethernet, IPv4, UDP): for tshark,
//! `edge-sensor decode` and replay tools.

use std::{io::Write, net::Ipv4Addr};

use crate::{Datagram, Format, packet::checksum};

/// Where the frames of a capture come from and go to.
#[derive(Debug, Clone, Copy)]
pub struct Addressing {
    /// Router `r` sends from `src` with UDP source port `src_port + r`.
    pub src: Ipv4Addr,
    pub src_port: u16,
    pub dst: Ipv4Addr,
    pub sflow_port: u16,
    pub ipfix_port: u16,
    /// Simulated time 0 as UNIX seconds (the frames' timestamps).
    pub start_unix_s: u64,
}

/// The Ethernet frame that carries `d`.
pub fn frame(a: &Addressing, d: &Datagram) -> Vec<u8> {
    let dport = match d.format {
        Format::Sflow => a.sflow_port,
        Format::Ipfix => a.ipfix_port,
    };
    let udp_len = 8 + d.payload.len();
    let mut f = Vec::with_capacity(42 + d.payload.len());
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00]);
    let ip_start = f.len();
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&((20 + udp_len) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&a.src.octets());
    f.extend_from_slice(&a.dst.octets());
    let sum = checksum(&f[ip_start..ip_start + 20]);
    f[ip_start + 10..ip_start + 12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&(a.src_port.wrapping_add(d.router as u16)).to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]); // no UDP checksum (allowed over IPv4)
    f.extend_from_slice(&d.payload);
    f
}

/// A pcap being written (microsecond timestamps, LINKTYPE_ETHERNET), one
/// datagram at a time.
pub struct Writer<W: Write> {
    out: W,
    addressing: Addressing,
}

impl<W: Write> Writer<W> {
    /// Writes the file header.
    pub fn new(mut out: W, addressing: Addressing) -> std::io::Result<Self> {
        out.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
        out.write_all(&2u16.to_le_bytes())?;
        out.write_all(&4u16.to_le_bytes())?;
        out.write_all(&[0; 8])?;
        out.write_all(&65535u32.to_le_bytes())?;
        out.write_all(&1u32.to_le_bytes())?;
        Ok(Self { out, addressing })
    }

    pub fn datagram(&mut self, d: &Datagram) -> std::io::Result<()> {
        let a = &self.addressing;
        let f = frame(a, d);
        let secs = a.start_unix_s + d.time_ns / 1_000_000_000;
        let usecs = (d.time_ns % 1_000_000_000) / 1000;
        self.out.write_all(&(secs as u32).to_le_bytes())?;
        self.out.write_all(&(usecs as u32).to_le_bytes())?;
        self.out.write_all(&(f.len() as u32).to_le_bytes())?;
        self.out.write_all(&(f.len() as u32).to_le_bytes())?;
        self.out.write_all(&f)
    }

    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Writes `datagrams` as a whole pcap.
pub fn write<'a>(
    out: impl Write,
    a: &Addressing,
    datagrams: impl IntoIterator<Item = &'a Datagram>,
) -> std::io::Result<()> {
    let mut w = Writer::new(out, *a)?;
    for d in datagrams {
        w.datagram(d)?;
    }
    w.finish().map(drop)
}
