//! The TCP transport of a session: connect (active) or accept (passive),
//! with the optional TCP MD5 signature option (RFC 2385) keyed per peer.

use std::{
    io,
    net::{IpAddr, SocketAddr},
    os::fd::AsRawFd,
    time::Duration,
};

use tokio::net::{TcpListener, TcpSocket, TcpStream};

use super::config::PeerConfig;

/// `struct tcp_md5sig` of linux/tcp.h (not in the libc crate).
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: libc::c_int,
    key: [u8; 80],
}

/// Installs the RFC 2385 key for segments to and from `peer` on `fd`.
pub fn set_md5(fd: &impl AsRawFd, peer: IpAddr, key: &str) -> io::Result<()> {
    if key.is_empty() || key.len() > 80 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "MD5 key must be 1-80 octets",
        ));
    }
    // SAFETY: all-zero is a valid value of this plain C struct.
    let mut sig: TcpMd5Sig = unsafe { std::mem::zeroed() };
    match peer {
        IpAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any
            // sockaddr; we write a sockaddr_in at its start.
            let sin = unsafe { &mut *(&mut sig.addr as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_addr.s_addr = u32::from(a).to_be();
        }
        IpAddr::V6(a) => {
            // SAFETY: as above, with a sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut sig.addr as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_addr.s6_addr = a.octets();
        }
    }
    sig.keylen = key.len() as u16;
    sig.key[..key.len()].copy_from_slice(key.as_bytes());
    // SAFETY: a valid socket fd and a correctly sized option value.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MD5SIG,
            &sig as *const _ as *const libc::c_void,
            std::mem::size_of::<TcpMd5Sig>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Connects to the peer (from `local_address` when set), within `timeout`.
pub async fn connect(peer: &PeerConfig, timeout: Duration) -> io::Result<TcpStream> {
    let remote = SocketAddr::new(peer.address, peer.port);
    let socket = if remote.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(key) = &peer.md5_password {
        set_md5(&socket, peer.address, key)?;
    }
    if let Some(local) = peer.local_address {
        socket.bind(SocketAddr::new(local, 0))?;
    }
    let stream = tokio::time::timeout(timeout, socket.connect(remote))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// The listening socket of a passive peer: `local_address` (or any) and
/// `port`.
pub fn listen(peer: &PeerConfig) -> io::Result<TcpListener> {
    let local = peer.local_address.unwrap_or(match peer.address {
        IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    });
    let socket = if local.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if let Some(key) = &peer.md5_password {
        set_md5(&socket, peer.address, key)?;
    }
    socket.bind(SocketAddr::new(local, peer.port))?;
    socket.listen(4)
}

/// Accepts the next connection from the peer's address; others are closed.
pub async fn accept(listener: &TcpListener, peer: &PeerConfig) -> io::Result<TcpStream> {
    loop {
        let (stream, from) = listener.accept().await?;
        if from.ip() == peer.address {
            stream.set_nodelay(true)?;
            return Ok(stream);
        }
        tracing::warn!(peer = %peer.name, %from, "refused a connection from an unknown address");
    }
}
