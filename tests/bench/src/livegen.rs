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
    time::{Duration, Instant},
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
            batch_size: BATCH.min(repeat),
            ..Default::default()
        };
        bpf(BPF_PROG_TEST_RUN, &mut attr)?;
        Ok(attr.duration)
    }
}

/// Frames to cycle through, each with the flow samples (or records) it
/// carries, from the userspace decoder over the very same bytes.
#[derive(Debug, Clone, Default)]
pub struct Frames {
    pub frames: Vec<Vec<u8>>,
    pub samples: Vec<u64>,
    /// Leading frames sent once at the start of a run (the capture's
    /// first pass, IPFIX templates included), then the rest cycled.
    pub once: usize,
}

/// What a paced run sent: exact, whatever the pacing achieved.
#[derive(Debug, Clone, Copy, Default)]
pub struct LiveSent {
    pub datagrams: u64,
    pub samples: u64,
    pub elapsed: Duration,
    /// The sending thread's CPU (user + system).
    pub cpu_s: f64,
}

impl LiveSent {
    pub fn rate(&self) -> f64 {
        self.datagrams as f64 / self.elapsed.as_secs_f64()
    }
}

/// CPU seconds (user + system) of the calling thread.
pub fn thread_cpu_s() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    if rc != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

impl LiveGen {
    /// Sends `frames` out of `ifindex` at `rate` frames/s (infinite: as
    /// fast as it can) for `duration`:
    /// each call sends up to `copies` copies of the next frame, as many as
    /// are due. The truth is exact by construction: every frame's copies
    /// are counted as they are handed to the kernel, and a copy repeats
    /// its frame's sequence number (the collectors count every datagram
    /// and sample whatever its sequence number; the sequence only feeds
    /// the exporters' drop counters). When it falls more than 10 ms
    /// behind, it does not burst to catch up: the achieved rate is then
    /// below the offered one (the generator saturated).
    pub fn send_paced(
        &self,
        ifindex: u32,
        frames: &Frames,
        rate: f64,
        duration: Duration,
        copies: u32,
    ) -> io::Result<LiveSent> {
        let cpu0 = thread_cpu_s();
        let start = Instant::now();
        let mut out = LiveSent::default();
        for (f, s) in frames.frames.iter().zip(&frames.samples).take(frames.once) {
            self.send(ifindex, f, 1)?;
            out.datagrams += 1;
            out.samples += s;
        }
        let cycle = frames.once..frames.frames.len();
        if cycle.is_empty() {
            return Err(io::Error::other("no frames to cycle"));
        }
        let mut next = cycle.start;
        // Credit given up when behind (no catch-up bursts).
        let mut forgiven = 0.0;
        let slack = (rate * 0.010).max(f64::from(copies));
        // Bounded by `duration`.
        loop {
            let now = start.elapsed();
            if now >= duration {
                break;
            }
            if !rate.is_finite() {
                // Flat out: whole calls, the longest bursts.
                self.send(ifindex, &frames.frames[next], copies)?;
                out.datagrams += u64::from(copies);
                out.samples += u64::from(copies) * frames.samples[next];
                next = if next + 1 == cycle.end {
                    cycle.start
                } else {
                    next + 1
                };
                continue;
            }
            let due = rate * now.as_secs_f64() - forgiven;
            let behind = due - out.datagrams as f64;
            if behind > slack {
                forgiven += behind - slack;
            }
            if behind < 1.0 {
                // Ahead of schedule: sleep when far ahead (a core shared
                // with a receive path gets it back), else spin (a sleep's
                // wake-up latency is longer than a batch).
                let wait = (1.0 - behind) / rate;
                if wait > 200e-6 {
                    std::thread::sleep(Duration::from_secs_f64(wait - 100e-6));
                } else {
                    std::hint::spin_loop();
                }
                continue;
            }
            let n = (behind as u32).clamp(1, copies);
            self.send(ifindex, &frames.frames[next], n)?;
            out.datagrams += u64::from(n);
            out.samples += u64::from(n) * frames.samples[next];
            next = if next + 1 == cycle.end {
                cycle.start
            } else {
                next + 1
            };
        }
        out.elapsed = start.elapsed();
        out.cpu_s = thread_cpu_s() - cpu0;
        Ok(out)
    }
}
