//! A generator that outruns the collector (issue 20, item 1; a first,
//! stand-alone step): frames built once and transmitted by the kernel
//! itself. `BPF_PROG_TEST_RUN` with `BPF_F_TEST_XDP_LIVE_FRAMES` runs a
//! two-instruction XDP program (`return XDP_TX`) `repeat` times on a frame
//! "received" on the sender's veth, and each run transmits the frame out of
//! that veth to its peer in the collector namespace: no socket, no copy per
//! packet from userspace, no qdisc (the mechanism of xdp-tools'
//! xdp-trafficgen). The capture's frames are cycled, a batch of `repeat`
//! copies each, so what was sent is known exactly: every call sends
//! `repeat` copies of one known frame.
//!
//! Raw `bpf(2)` through libc: aya 0.14's `TestRunOptions` has no `flags`
//! (nor `ctx_in` for the ingress interface), and the program is two
//! instructions, so no object file is needed.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;
const XDP_TX: i32 = 3;
/// The kernel's default batch for live frames (NAPI_POLL_WEIGHT).
const BATCH: u32 = 64;

/// One BPF instruction (`struct bpf_insn`).
#[repr(C)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

/// The `BPF_PROG_LOAD` part of `union bpf_attr`, zero-padded (the kernel
/// wants every byte it does not know to be zero).
#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    _rest: [u64; 8],
}

/// The `BPF_PROG_TEST_RUN` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// `struct xdp_md` as the test run's input context: the frame "arrives" on
/// `ingress_ifindex`, which `XDP_TX` sends it out of.
#[repr(C)]
#[derive(Default)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, zero-padded bpf_attr prefix of its size.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// The transmitting program, loaded.
pub struct LiveGen {
    prog: OwnedFd,
}

impl LiveGen {
    /// Loads `r0 = XDP_TX; exit`.
    pub fn load() -> io::Result<Self> {
        let insns = [
            // BPF_ALU64 | BPF_MOV | BPF_K: r0 = XDP_TX
            Insn {
                code: 0xb7,
                regs: 0,
                off: 0,
                imm: XDP_TX,
            },
            // BPF_JMP | BPF_EXIT
            Insn {
                code: 0x95,
                regs: 0,
                off: 0,
                imm: 0,
            },
        ];
        let license = c"GPL";
        let mut name = [0u8; 16];
        name[..10].copy_from_slice(b"es_livegen");
        let mut attr = ProgLoad {
            prog_type: BPF_PROG_TYPE_XDP,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            prog_name: name,
            ..Default::default()
        };
        let fd = bpf(BPF_PROG_LOAD, &mut attr)?;
        // SAFETY: a new file descriptor the kernel gave us.
        Ok(Self {
            prog: unsafe { OwnedFd::from_raw_fd(fd as i32) },
        })
    }

    /// Transmits `repeat` copies of `frame` out of interface `ifindex` (in
    /// the calling thread's network namespace). Returns the nanoseconds
    /// the kernel reports for the whole run (0 on kernels that leave it out
    /// in live mode).
    pub fn send(&self, ifindex: u32, frame: &[u8], repeat: u32) -> io::Result<u32> {
        let mut ctx = XdpMd {
            data_end: frame.len() as u32,
            ingress_ifindex: ifindex,
            ..Default::default()
        };
        let mut attr = TestRunAttr {
            prog_fd: self.prog.as_raw_fd() as u32,
            data_size_in: frame.len() as u32,
            data_in: frame.as_ptr() as u64,
            repeat,
            ctx_size_in: std::mem::size_of::<XdpMd>() as u32,
            ctx_in: &mut ctx as *mut XdpMd as u64,
            flags: BPF_F_TEST_XDP_LIVE_FRAMES,
            batch_size: BATCH,
            ..Default::default()
        };
        bpf(BPF_PROG_TEST_RUN, &mut attr)?;
        Ok(attr.duration)
    }
}
