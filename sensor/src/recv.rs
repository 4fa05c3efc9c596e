//! Batched UDP receive with `recvmmsg(2)`: one system call returns up to a
//! batch of datagrams with their sources, which is what a userspace
//! collector needs to keep up with a busy exporter (one `recvfrom` per
//! datagram costs a system call each).

use std::{
    io,
    mem::{size_of, zeroed},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    time::Duration,
};

/// Largest UDP payload.
const MAX_PAYLOAD: usize = 65_535;

/// Receive buffers for one socket: `batch` datagrams at a time.
pub struct BatchReceiver {
    socket: UdpSocket,
    buffers: Vec<Vec<u8>>,
    addrs: Vec<libc::sockaddr_storage>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers in `iovecs` and `headers` point only into
// `buffers` and `addrs`, owned by the same value; they are rebuilt before
// every call, so moving the receiver to another thread leaves nothing
// dangling or shared.
unsafe impl Send for BatchReceiver {}

/// One datagram of a batch.
pub struct Received<'a> {
    pub src: SocketAddr,
    pub payload: &'a [u8],
}

impl BatchReceiver {
    /// Wraps `socket`; a read waits at most `timeout` so the caller can
    /// check for a stop request between batches.
    pub fn new(socket: UdpSocket, batch: usize, timeout: Duration) -> io::Result<Self> {
        socket.set_read_timeout(Some(timeout))?;
        let batch = batch.max(1);
        Ok(Self {
            socket,
            buffers: vec![vec![0u8; MAX_PAYLOAD]; batch],
            // SAFETY: sockaddr_storage is plain old data; all zeroes is valid.
            addrs: vec![unsafe { zeroed() }; batch],
            iovecs: Vec::with_capacity(batch),
            headers: Vec::with_capacity(batch),
        })
    }

    /// Asks the kernel for a receive buffer of `bytes` (SO_RCVBUFFORCE
    /// where permitted, else SO_RCVBUF, which `rmem_max` caps).
    pub fn set_receive_buffer(&self, bytes: usize) -> io::Result<()> {
        let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        let set = |option| {
            // SAFETY: a valid socket and a c_int option value of the right size.
            unsafe {
                libc::setsockopt(
                    self.socket.as_raw_fd(),
                    libc::SOL_SOCKET,
                    option,
                    (&value as *const libc::c_int).cast(),
                    size_of::<libc::c_int>() as libc::socklen_t,
                )
            }
        };
        if set(libc::SO_RCVBUFFORCE) == 0 || set(libc::SO_RCVBUF) == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Waits (at most the timeout) for datagrams and calls `each` for every
    /// one of the batch received; returns how many. A timeout or an
    /// interrupting signal is `Ok(0)`.
    pub fn recv_batch(&mut self, mut each: impl FnMut(Received<'_>)) -> io::Result<usize> {
        let batch = self.buffers.len();
        self.iovecs.clear();
        self.headers.clear();
        for buf in &mut self.buffers {
            self.iovecs.push(libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            });
        }
        for (addr, iov) in self.addrs.iter_mut().zip(self.iovecs.iter_mut()) {
            // SAFETY: msghdr is plain old data; all zeroes is valid.
            let mut hdr: libc::msghdr = unsafe { zeroed() };
            hdr.msg_name = (addr as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = iov;
            hdr.msg_iovlen = 1;
            self.headers.push(libc::mmsghdr {
                msg_hdr: hdr,
                msg_len: 0,
            });
        }
        // SAFETY: `headers` holds `batch` initialised mmsghdr whose name and
        // iovec pointers point into `addrs` and `buffers`, which outlive the
        // call and are not otherwise borrowed during it.
        let n = unsafe {
            libc::recvmmsg(
                self.socket.as_raw_fd(),
                self.headers.as_mut_ptr(),
                batch as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        let n = n as usize;
        for i in 0..n {
            let len = self.headers[i].msg_len as usize;
            let Some(src) = socket_addr(&self.addrs[i]) else {
                continue;
            };
            each(Received {
                src,
                payload: &self.buffers[i][..len.min(MAX_PAYLOAD)],
            });
        }
        Ok(n)
    }
}

/// The source address the kernel wrote, IPv4-mapped IPv6 made plain IPv4.
fn socket_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(sin.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::new(
                ip.to_canonical(),
                u16::from_be(sin6.sin6_port),
            ))
        }
        _ => None,
    }
}
