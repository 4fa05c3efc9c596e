//! Pinned maps as they are, whatever their layout: what the kernel says about
//! each one, how many entries it holds, how much memory it locks, and its raw
//! keys and values. For `edge-sensor maps` and the metrics' fill levels.
//!
//! Keys and values are read with the raw `bpf(2)` commands
//! (`BPF_MAP_GET_NEXT_KEY`, `BPF_MAP_LOOKUP_ELEM`) into byte buffers sized
//! from the map's own info, so a map of a layout this binary does not know
//! can still be shown in hex.

use std::{
    fs, io,
    os::fd::{AsFd, AsRawFd},
    path::{Path, PathBuf},
};

use aya::{
    maps::{MapData, MapError, MapType},
    sys::SyscallError,
};

use super::pins::{self, PinError};

/// How a pinned map's layout compares with what this binary expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// One of the sensor's maps, with the expected type, key and value sizes.
    Ok,
    /// One of the sensor's maps by name, with another layout.
    Mismatch { expected: String, found: String },
    /// Not a map this sensor pins (shown, dumped as hex).
    Unknown,
}

/// One pinned map as the kernel describes it.
#[derive(Debug, Clone)]
pub struct MapStatus {
    /// The pin's file name (the kernel's own name is cut to 15 bytes).
    pub name: String,
    pub path: PathBuf,
    pub id: u32,
    pub map_type: Option<MapType>,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    /// Entries present: every index of an array, the keys of a hash or trie
    /// (counted, at most `max_entries`), `None` for maps without keys (ring
    /// buffers).
    pub entries: Option<u64>,
    /// Bytes the kernel charges for the map (`memlock` in its fdinfo).
    pub memlock: Option<u64>,
    pub layout: Layout,
}

impl MapStatus {
    /// The type as the kernel names it (`BPF_MAP_TYPE_` dropped, lower case).
    pub fn type_name(&self) -> &'static str {
        self.map_type.map_or("unknown", type_name)
    }
}

/// A pinned map opened for raw reading.
pub struct RawMap {
    data: MapData,
    pub status: MapStatus,
}

/// One entry: the key's bytes and the value's, one per possible CPU for
/// per-CPU maps (each `value_size` long).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    pub key: Vec<u8>,
    pub values: Vec<Vec<u8>>,
}

/// Every map pinned directly under `dir`, by name. Files that are not maps
/// (a pinned program or link) are left out. An absent or empty directory is
/// [`PinError::NotFound`]: the sensor is not loaded there.
pub fn list(dir: &Path) -> Result<Vec<MapStatus>, PinError> {
    let not_loaded = || PinError::NotFound {
        path: dir.to_owned(),
        dir: dir.to_owned(),
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            return Err(match e.kind() {
                io::ErrorKind::NotFound => not_loaded(),
                io::ErrorKind::PermissionDenied => PinError::PermissionDenied {
                    path: dir.to_owned(),
                },
                _ => PinError::Io {
                    path: dir.to_owned(),
                    source: e,
                },
            });
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    let mut out = Vec::new();
    // Files on another filesystem are not pins (and opening them as pins
    // fails with EACCES, which would read as a permission problem).
    if is_bpffs(dir) {
        for name in names {
            if let Some(map) = RawMap::open_if_map(&dir.join(&name))? {
                out.push(map.status);
            }
        }
    }
    if out.is_empty() {
        return Err(not_loaded());
    }
    Ok(out)
}

/// Whether `dir` is on a bpffs.
fn is_bpffs(dir: &Path) -> bool {
    let Ok(path) = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(dir.as_os_str()))
    else {
        return false;
    };
    // SAFETY: a NUL-terminated path and a zeroed statfs the kernel fills.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let rc = unsafe { libc::statfs(path.as_ptr(), &mut st) };
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between libc targets
    let on_bpffs = rc == 0 && st.f_type as i64 == super::loader::BPF_FS_MAGIC;
    on_bpffs
}

impl RawMap {
    /// Opens the map pinned at `path` and describes it.
    pub fn open(path: &Path) -> Result<Self, PinError> {
        Self::open_if_map(path)?.ok_or_else(|| PinError::Io {
            path: path.to_owned(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "pinned, but not a map"),
        })
    }

    /// Opens what is pinned at `path`; `None` when it is not a map (a
    /// pinned program or link).
    pub fn open_if_map(path: &Path) -> Result<Option<Self>, PinError> {
        let data = match MapData::from_pin(path) {
            Ok(data) => data,
            // A program's fd fails aya's map checks with EINVAL.
            Err(MapError::SyscallError(s)) if s.io_error.raw_os_error() == Some(libc::EINVAL) => {
                return Ok(None);
            }
            Err(e) => return Err(pin_error(path, e)),
        };
        // BPF_OBJ_GET hands out a program's fd too, whose info would be
        // misread as a map's: the fd's inode says which it is.
        let link = fs::read_link(format!("/proc/self/fd/{}", data.fd().as_fd().as_raw_fd()));
        if link.is_ok_and(|l| l.as_os_str() != "anon_inode:bpf-map") {
            return Ok(None);
        }
        let info = data.info().map_err(|e| pin_error(path, e))?;
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let map_type = info.map_type().ok();
        let layout = match pins::spec(&name) {
            None => Layout::Unknown,
            Some(spec) => {
                let spec = spec.any_capacity();
                match map_type {
                    Some(t)
                        if t == spec.map_type
                            && info.key_size() == spec.key_size
                            && info.value_size() == spec.value_size =>
                    {
                        Layout::Ok
                    }
                    _ => Layout::Mismatch {
                        expected: spec.expected(),
                        found: format!(
                            "{}, key {} B, value {} B",
                            map_type.map_or_else(|| "unknown".into(), |t| format!("{t:?}")),
                            info.key_size(),
                            info.value_size()
                        ),
                    },
                }
            }
        };
        let mut map = Self {
            data,
            status: MapStatus {
                name,
                path: path.to_owned(),
                id: info.id(),
                map_type,
                key_size: info.key_size(),
                value_size: info.value_size(),
                max_entries: info.max_entries(),
                entries: None,
                memlock: None,
                layout,
            },
        };
        map.status.memlock = map.memlock();
        map.status.entries = map.count()?;
        Ok(Some(map))
    }

    /// The layout check as an error, for readers that decode the values.
    pub fn check_layout(&self) -> Result<(), PinError> {
        match &self.status.layout {
            Layout::Mismatch { expected, found } => Err(PinError::LayoutMismatch {
                path: self.status.path.clone(),
                found: found.clone(),
                expected: expected.clone(),
            }),
            _ => Ok(()),
        }
    }

    fn is_array(&self) -> bool {
        matches!(
            self.status.map_type,
            Some(MapType::Array | MapType::PerCpuArray)
        )
    }

    fn has_keys(&self) -> bool {
        self.is_array()
            || matches!(
                self.status.map_type,
                Some(
                    MapType::Hash
                        | MapType::PerCpuHash
                        | MapType::LruHash
                        | MapType::LruPerCpuHash
                        | MapType::LpmTrie
                )
            )
    }

    /// Whether each key holds one value per possible CPU.
    pub fn per_cpu(&self) -> bool {
        matches!(
            self.status.map_type,
            Some(
                MapType::PerCpuArray
                    | MapType::PerCpuHash
                    | MapType::LruPerCpuHash
                    | MapType::PerCpuCgroupStorage
            )
        )
    }

    /// Entries present. Keys are counted one by one, at most `max_entries`:
    /// an LRU map being updated can restart the walk, and the bound keeps
    /// it finite.
    fn count(&self) -> Result<Option<u64>, PinError> {
        if self.is_array() {
            return Ok(Some(u64::from(self.status.max_entries)));
        }
        if !self.has_keys() {
            return Ok(None);
        }
        let mut key = Vec::new();
        let mut n = 0u64;
        while n < u64::from(self.status.max_entries) {
            match self.next_key(&key)? {
                Some(next) => {
                    key = next;
                    n += 1;
                }
                None => break,
            }
        }
        Ok(Some(n))
    }

    /// At most `limit` entries, in the kernel's order; `true` when there
    /// were more.
    pub fn entries(&self, limit: usize) -> Result<(Vec<RawEntry>, bool), PinError> {
        if !self.has_keys() {
            return Err(PinError::Io {
                path: self.status.path.clone(),
                source: io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("a {} map has no keys to dump", self.status.type_name()),
                ),
            });
        }
        let bound = (self.status.max_entries as usize).min(limit);
        let mut out = Vec::new();
        let mut key = Vec::new();
        while let Some(next) = self.next_key(&key)? {
            if out.len() == bound {
                return Ok((out, true));
            }
            if let Some(values) = self.lookup(&next)? {
                out.push(RawEntry {
                    key: next.clone(),
                    values,
                });
            }
            key = next;
        }
        Ok((out, false))
    }

    /// The key after `key` (the first one for an empty `key`).
    fn next_key(&self, key: &[u8]) -> Result<Option<Vec<u8>>, PinError> {
        let mut next = vec![0u8; self.status.key_size as usize];
        let mut attr = ElemAttr {
            map_fd: self.fd(),
            key: if key.is_empty() {
                0
            } else {
                key.as_ptr() as u64
            },
            value: next.as_mut_ptr() as u64,
            ..Default::default()
        };
        match sys_bpf(BPF_MAP_GET_NEXT_KEY, &mut attr) {
            Ok(()) => Ok(Some(next)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(self.syscall_error("BPF_MAP_GET_NEXT_KEY", e)),
        }
    }

    /// The value(s) of `key`; `None` when it went away meanwhile.
    fn lookup(&self, key: &[u8]) -> Result<Option<Vec<Vec<u8>>>, PinError> {
        let value_size = self.status.value_size as usize;
        // Per-CPU values come back each padded to 8 bytes, one per possible CPU.
        let (stride, cpus) = if self.per_cpu() {
            (value_size.next_multiple_of(8), possible_cpus())
        } else {
            (value_size, 1)
        };
        let mut buf = vec![0u8; stride * cpus];
        let mut attr = ElemAttr {
            map_fd: self.fd(),
            key: key.as_ptr() as u64,
            value: buf.as_mut_ptr() as u64,
            ..Default::default()
        };
        match sys_bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) {
            Ok(()) => Ok(Some(
                buf.chunks(stride)
                    .map(|c| c[..value_size].to_vec())
                    .collect(),
            )),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(self.syscall_error("BPF_MAP_LOOKUP_ELEM", e)),
        }
    }

    /// `memlock` from the map fd's fdinfo: what the kernel charges for it.
    fn memlock(&self) -> Option<u64> {
        let fdinfo = fs::read_to_string(format!("/proc/self/fdinfo/{}", self.fd())).ok()?;
        fdinfo
            .lines()
            .find_map(|l| l.strip_prefix("memlock:"))
            .and_then(|v| v.trim().parse().ok())
    }

    fn fd(&self) -> u32 {
        self.data.fd().as_fd().as_raw_fd() as u32
    }

    fn syscall_error(&self, call: &'static str, io_error: io::Error) -> PinError {
        pin_error(
            &self.status.path,
            MapError::SyscallError(SyscallError { call, io_error }),
        )
    }
}

/// Possible CPUs (what per-CPU values are sized by), at least 1.
pub fn possible_cpus() -> usize {
    aya::util::nr_cpus().unwrap_or(1).max(1)
}

/// A map error at `path`, with not-found and permission errors named.
fn pin_error(path: &Path, source: MapError) -> PinError {
    if let MapError::SyscallError(s) = &source {
        match s.io_error.kind() {
            io::ErrorKind::PermissionDenied => {
                return PinError::PermissionDenied {
                    path: path.to_owned(),
                };
            }
            io::ErrorKind::NotFound => {
                let dir = path.parent().unwrap_or(path).to_owned();
                return PinError::NotFound {
                    path: path.to_owned(),
                    dir,
                };
            }
            _ => {}
        }
    }
    PinError::Map {
        path: path.to_owned(),
        source,
    }
}

/// The kernel's name of a map type (`BPF_MAP_TYPE_` dropped, lower case),
/// as bpftool prints it.
pub fn type_name(t: MapType) -> &'static str {
    match t {
        MapType::Hash => "hash",
        MapType::Array => "array",
        MapType::ProgramArray => "prog_array",
        MapType::PerfEventArray => "perf_event_array",
        MapType::PerCpuHash => "percpu_hash",
        MapType::PerCpuArray => "percpu_array",
        MapType::StackTrace => "stack_trace",
        MapType::CgroupArray => "cgroup_array",
        MapType::LruHash => "lru_hash",
        MapType::LruPerCpuHash => "lru_percpu_hash",
        MapType::LpmTrie => "lpm_trie",
        MapType::ArrayOfMaps => "array_of_maps",
        MapType::HashOfMaps => "hash_of_maps",
        MapType::DevMap => "devmap",
        MapType::SockMap => "sockmap",
        MapType::CpuMap => "cpumap",
        MapType::XskMap => "xskmap",
        MapType::SockHash => "sockhash",
        MapType::Queue => "queue",
        MapType::Stack => "stack",
        MapType::RingBuf => "ringbuf",
        MapType::BloomFilter => "bloom_filter",
        _ => "other",
    }
}

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;

/// The part of `union bpf_attr` the element commands read (linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    /// `value` for lookups, `next_key` for `BPF_MAP_GET_NEXT_KEY`.
    value: u64,
    flags: u64,
}

fn sys_bpf(cmd: libc::c_long, attr: &mut ElemAttr) -> io::Result<()> {
    // SAFETY: `attr` is a valid bpf_attr prefix of the size passed; the key
    // and value pointers in it point to live buffers of the map's key and
    // value sizes (per-CPU values: padded size times possible CPUs), which
    // is what the kernel writes for these two commands.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut ElemAttr,
            size_of::<ElemAttr>(),
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_pin_dir_is_reported_as_not_loaded() {
        let e = list(Path::new("/nonexistent-edge-sensor-pins/v1")).unwrap_err();
        assert!(matches!(e, PinError::NotFound { .. }), "{e}");
        assert!(e.to_string().contains("is the sensor loaded?"), "{e}");
    }

    #[test]
    fn an_empty_pin_dir_is_reported_as_not_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let e = list(dir.path()).unwrap_err();
        assert!(matches!(e, PinError::NotFound { .. }), "{e}");
    }

    #[test]
    fn type_names_are_the_kernels() {
        assert_eq!(type_name(MapType::LruPerCpuHash), "lru_percpu_hash");
        assert_eq!(type_name(MapType::PerCpuArray), "percpu_array");
    }
}
