//! Reading captures (pcap and pcapng) as Ethernet frames, the form the XDP
//! program sees. Raw-IP and Linux cooked captures get an Ethernet header.

use std::{
    fs::File,
    io::Read,
    path::{Path, PathBuf},
};

use pcap_file::{
    DataLink,
    pcap::PcapReader,
    pcapng::{Block, PcapNgReader},
};

/// A capture that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a pcap or pcapng capture")]
    NotACapture { path: PathBuf },
    #[error("{path}: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error(
        "{path}: link type {linktype:?} is not supported (Ethernet, raw IP and Linux cooked are)"
    )]
    LinkType { path: PathBuf, linktype: DataLink },
}

const PCAP_MAGICS: [[u8; 4]; 4] = [
    [0xd4, 0xc3, 0xb2, 0xa1],
    [0xa1, 0xb2, 0xc3, 0xd4],
    [0x4d, 0x3c, 0xb2, 0xa1],
    [0xa1, 0xb2, 0x3c, 0x4d],
];
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// Every packet of the capture at `path`, as an Ethernet frame.
pub fn ethernet_frames(path: &Path) -> Result<Vec<Vec<u8>>, CaptureError> {
    let io = |source| CaptureError::Io {
        path: path.to_owned(),
        source,
    };
    let corrupt = |e: pcap_file::PcapError| CaptureError::Corrupt {
        path: path.to_owned(),
        message: format!("truncated or corrupt capture ({e})"),
    };
    let mut magic = [0u8; 4];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => CaptureError::NotACapture {
                path: path.to_owned(),
            },
            _ => io(e),
        })?;
    let file = File::open(path).map_err(io)?;
    let mut frames = Vec::new();
    if PCAP_MAGICS.contains(&magic) {
        let mut reader = PcapReader::new(file).map_err(corrupt)?;
        let linktype = reader.header().datalink;
        while let Some(packet) = reader.next_packet() {
            let packet = packet.map_err(corrupt)?;
            frames.push(to_ethernet(path, linktype, &packet.data)?);
        }
    } else if magic == PCAPNG_MAGIC {
        let mut reader = PcapNgReader::new(file).map_err(corrupt)?;
        let mut linktypes = Vec::new();
        while let Some(block) = reader.next_block() {
            match block.map_err(corrupt)? {
                Block::InterfaceDescription(idb) => linktypes.push(idb.linktype),
                Block::EnhancedPacket(epb) => {
                    let linktype = *linktypes.get(epb.interface_id as usize).ok_or_else(|| {
                        CaptureError::Corrupt {
                            path: path.to_owned(),
                            message: format!("packet on undeclared interface {}", epb.interface_id),
                        }
                    })?;
                    frames.push(to_ethernet(path, linktype, &epb.data)?);
                }
                Block::SimplePacket(spb) => {
                    let linktype = *linktypes.first().unwrap_or(&DataLink::ETHERNET);
                    frames.push(to_ethernet(path, linktype, &spb.data)?);
                }
                _ => {}
            }
        }
    } else {
        return Err(CaptureError::NotACapture {
            path: path.to_owned(),
        });
    }
    Ok(frames)
}

fn to_ethernet(path: &Path, linktype: DataLink, data: &[u8]) -> Result<Vec<u8>, CaptureError> {
    let with_ethertype = |ethertype: u16, payload: &[u8]| {
        let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    };
    let by_version = |payload: &[u8]| {
        let ethertype = match payload.first().map(|b| b >> 4) {
            Some(6) => 0x86dd,
            _ => 0x0800,
        };
        with_ethertype(ethertype, payload)
    };
    Ok(match linktype {
        DataLink::ETHERNET => data.to_vec(),
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => by_version(data),
        // Linux cooked (SLL): 16-byte header, protocol in the last 2 bytes.
        DataLink::LINUX_SLL if data.len() >= 16 => {
            with_ethertype(u16::from_be_bytes([data[14], data[15]]), &data[16..])
        }
        DataLink::LINUX_SLL => Vec::new(),
        other => {
            return Err(CaptureError::LinkType {
                path: path.to_owned(),
                linktype: other,
            });
        }
    })
}
