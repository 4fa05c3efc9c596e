//! What a BPF map costs as the kernel accounts it (`memlock` in its fdinfo,
//! the `map_mem_usage` of its type), so that the destination map's size can
//! be stated for core counts this machine does not have (issue 16 item 1).
//!
//! A hash map with preallocated elements (LRU or not) costs, per the
//! kernel's `htab_map_mem_usage`:
//!
//! ```text
//! fixed + buckets(N) x bucket + N x (header + round8(key) + round8(value) x V)
//! ```
//!
//! where `buckets(N)` is N rounded up to a power of two and `V` is 1 for a
//! value shared by all CPUs and the number of possible CPUs for a per-CPU
//! map (whose element also holds an 8-byte pointer to its per-CPU values,
//! counted here in `header`). `fixed` holds `sizeof(struct bpf_htab)` and
//! 8 lock counters of 4 bytes per possible CPU. The constants are not taken
//! from a header: they are read off this kernel by creating small maps of
//! the same type, key and value and solving for them ([`HtabCost::measure`]).

use std::{
    fs, io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use serde_json::{Value, json};

const BPF_MAP_CREATE: libc::c_long = 0;
pub const BPF_MAP_TYPE_LRU_HASH: u32 = 9;
pub const BPF_MAP_TYPE_LRU_PERCPU_HASH: u32 = 10;
/// Lock counters of a hash map: `HASHTAB_MAP_LOCK_COUNT` (8) ints per
/// possible CPU (kernel/bpf/hashtab.c); too small to measure against the
/// page-rounded rest, so taken from the source.
const LOCKS_PER_CPU: u64 = 8 * 4;

/// The `BPF_MAP_CREATE` part of `union bpf_attr`, zero-padded.
#[repr(C)]
#[derive(Default)]
struct MapCreate {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    _rest: [u32; 27],
}

fn create(map_type: u32, key: u32, value: u32, entries: u32) -> io::Result<OwnedFd> {
    let mut attr = MapCreate {
        map_type,
        key_size: key,
        value_size: value,
        max_entries: entries,
        ..Default::default()
    };
    // SAFETY: `attr` is a valid, zero-padded bpf_attr prefix of its size.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_CREATE,
            &mut attr as *mut MapCreate,
            size_of::<MapCreate>() as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new file descriptor the kernel gave us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The kernel's accounting of a map we hold (`memlock:` in its fdinfo).
fn memlock(fd: &OwnedFd) -> io::Result<u64> {
    let info = fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))?;
    info.lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| io::Error::other("no memlock in fdinfo"))
}

fn size_of_map(map_type: u32, key: u32, value: u32, entries: u32) -> io::Result<u64> {
    memlock(&create(map_type, key, value, entries)?)
}

/// Possible CPUs (`/sys/devices/system/cpu/possible`, e.g. `0-1`): what
/// per-CPU maps allocate for, not the online count.
pub fn possible_cpus() -> u64 {
    let text = fs::read_to_string("/sys/devices/system/cpu/possible").unwrap_or_default();
    text.trim()
        .split(',')
        .filter_map(|r| {
            let (a, b) = r.split_once('-').unwrap_or((r, r));
            Some(b.parse::<u64>().ok()? - a.parse::<u64>().ok()? + 1)
        })
        .sum()
}

fn round8(x: u64) -> u64 {
    x.div_ceil(8) * 8
}

/// The constants of the formula for one hash map type, key and value size,
/// as this kernel charges them.
#[derive(Debug, Clone, Copy)]
pub struct HtabCost {
    pub map_type: u32,
    pub key: u64,
    pub value: u64,
    pub percpu: bool,
    /// Possible CPUs when measured.
    pub cpus: u64,
    /// Per element, besides key and value(s): `struct htab_elem` (+ the
    /// per-CPU pointer).
    pub header: u64,
    pub bucket: u64,
    pub fixed: u64,
    /// Values each element holds, read off the kernel: 8 more bytes of
    /// value cost this many times 8 bytes per element (1, or the
    /// possible CPUs for a per-CPU map).
    pub values_per_elem: u64,
}

impl HtabCost {
    /// Creates maps of 1024, 1025 and 1026 entries (buckets: 1024, 2048,
    /// 2048) and one with an 8-byte longer value, and solves for the
    /// constants. Nothing is pinned; the maps close with their descriptors.
    pub fn measure(map_type: u32, key: u32, value: u32) -> io::Result<Self> {
        let m = |n| size_of_map(map_type, key, value, n);
        let (m1024, m1025, m1026) = (m(1024)?, m(1025)?, m(1026)?);
        let wider = size_of_map(map_type, key, value + 8, 1026)?;
        let elem = m1026 - m1025;
        let bucket = (m1025 - m1024 - elem) / 1024;
        let fixed = m1024 - 1024 * (elem + bucket);
        let values_per_elem = (wider - m1026) / (8 * 1026);
        let percpu = map_type == BPF_MAP_TYPE_LRU_PERCPU_HASH;
        let (k, v) = (round8(u64::from(key)), round8(u64::from(value)));
        Ok(Self {
            map_type,
            key: u64::from(key),
            value: u64::from(value),
            percpu,
            cpus: possible_cpus(),
            header: elem - k - v * values_per_elem,
            bucket,
            fixed,
            values_per_elem,
        })
    }

    /// Bytes for `entries` elements with `cpus` possible CPUs.
    pub fn bytes(&self, entries: u64, cpus: u64) -> u64 {
        let values = if self.percpu { cpus } else { 1 };
        let fixed = (self.fixed + LOCKS_PER_CPU * cpus).saturating_sub(LOCKS_PER_CPU * self.cpus);
        fixed
            + entries.next_power_of_two() * self.bucket
            + entries * (self.header + round8(self.key) + round8(self.value) * values)
    }

    pub fn json(&self) -> Value {
        json!({
            "map_type": self.map_type, "percpu": self.percpu,
            "key_bytes": self.key, "value_bytes": self.value,
            "possible_cpus_measured": self.cpus,
            "elem_header_bytes": self.header, "bucket_bytes": self.bucket,
            "fixed_bytes": self.fixed, "values_per_elem_measured": self.values_per_elem,
        })
    }
}

/// How much more a loaded map costs per extra possible CPU, by its type
/// (bpftool's name): per-CPU maps a value per entry (+ locks for hashes),
/// other hashes their lock counters (and, preallocated without LRU, one
/// spare element and a pointer per CPU), the rest nothing.
pub fn per_cpu_slope(map_type: &str, key: u64, value: u64, entries: u64, header: u64) -> u64 {
    match map_type {
        "percpu_hash" | "lru_percpu_hash" => entries * round8(value) + LOCKS_PER_CPU,
        "percpu_array" => entries * round8(value),
        "hash" => header + round8(key) + round8(value) + 8 + LOCKS_PER_CPU,
        "lru_hash" => LOCKS_PER_CPU,
        _ => 0,
    }
}
