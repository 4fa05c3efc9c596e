//! What the kernel's verifier says about each program of the XDP object:
//! processed instructions and states, the reason and place of a refusal,
//! and which functions cost the most.
//!
//! aya loads a program with no log when it verifies, and keeps only the
//! last 10 KiB of the log when it does not. So this module loads the
//! object a second time by hand, with the same relocations aya applies
//! (`aya_obj`), asking for the statistics (`BPF_LOG_STATS`) and, when a
//! diagnosis is wanted, for the whole instruction trace (`BPF_LOG_LEVEL2`,
//! tens of MiB), which it attributes to functions through the program's
//! BTF `func_info`. No crate does this: bpftool and veristat go through
//! libbpf, which refuses aya's legacy `maps` section.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    ffi::CString,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
};

use edge_sensor::xdp::verifier::{stack_depths, summarize};

use aya_obj::{
    Object,
    generated::{bpf_attr, bpf_cmd, bpf_map_type},
};

/// Log levels (`include/uapi/linux/bpf.h`).
const LOG_LEVEL2: u32 = 2;
const LOG_STATS: u32 = 4;
/// A log at level 2 of a program near the 1M-instruction limit runs to
/// hundreds of MiB; the kernel keeps the tail that fits (6.4+) or stops
/// logging (older kernels), and the attribution covers what was kept.
const TRACE_LOG_BYTES: usize = 64 << 20;
const STATS_LOG_BYTES: usize = 1 << 20;
/// Hash maps are created small here: their capacity does not change what
/// the verifier checks, and the real one (1M destinations) costs memory.
const DIAGNOSTIC_HASH_ENTRIES: u32 = 1024;

/// The verifier's verdict on one program.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub program: String,
    /// The load succeeded.
    pub verified: bool,
    /// `processed N insns`.
    pub insns: Option<u64>,
    /// `total_states` and `peak_states`.
    pub states: Option<u64>,
    pub peak_states: Option<u64>,
    /// The statistics line as the kernel printed it.
    pub stats_line: Option<String>,
    /// On refusal: the verifier's reason (its last message before the
    /// statistics) and the last instruction it processed.
    pub reason: Option<String>,
    pub stopped_at: Option<String>,
    /// Processed instructions per function, most first (a trace was asked for).
    pub by_function: Vec<(String, u64)>,
    /// Stack bytes per function, in program order (`stack depth` line).
    pub stack_by_function: Vec<(String, u64)>,
    /// The errno of a refused load.
    pub errno: Option<i32>,
}

/// `123: (bf) r1 = r6` (an instruction), not `123: R1=...` (a state).
fn instruction_index(line: &str) -> Option<u64> {
    let (index, rest) = line.trim_start().split_once(": ")?;
    if !rest.starts_with('(') {
        return None;
    }
    index.parse().ok()
}

/// Verifies every program of `object` (an aya XDP object) and says what the
/// kernel said. With `trace`, each program's instructions are attributed to
/// its functions (slower: a level-2 log).
pub fn verify_object(object: &[u8], trace: bool) -> anyhow::Result<Vec<Verdict>> {
    use anyhow::Context;

    let mut obj = Object::parse(object).context("parse the object")?;
    // Function names by their BTF id, before calls are linked.
    let names_by_type: HashMap<u32, String> = obj
        .functions
        .values()
        .filter_map(|f| Some((f.func_info.func_info.first()?.type_id, f.name.clone())))
        .collect();
    let btf_fd = match (aya::features().btf(), obj.btf.is_some()) {
        (Some(features), true) => obj
            .fixup_and_sanitize_btf(features)
            .context("sanitise the BTF")?
            .map(|btf| load_btf(&btf.to_bytes()))
            .transpose()?,
        _ => None,
    };
    let mut maps = Vec::new();
    for (name, map) in &obj.maps {
        maps.push((name.clone(), create_map(name, map)?, map.clone()));
    }
    let text_sections: HashSet<usize> = obj.functions.keys().map(|(s, _)| *s).collect();
    obj.relocate_maps(
        maps.iter()
            .map(|(name, fd, map)| (name.as_str(), fd.as_raw_fd(), map)),
        &text_sections,
    )
    .context("relocate maps")?;
    obj.relocate_calls(&text_sections)
        .context("relocate calls")?;
    obj.sanitize_functions(aya::features());

    let mut verdicts = Vec::new();
    let mut programs: Vec<_> = obj.programs.iter().collect();
    programs.sort_by(|a, b| a.0.cmp(b.0));
    for (name, program) in programs {
        let function = &obj.functions[&program.function_key()];
        let license = program.license.clone();
        let level = if trace {
            LOG_LEVEL2 | LOG_STATS
        } else {
            LOG_STATS
        };
        let size = if trace {
            TRACE_LOG_BYTES
        } else {
            STATS_LOG_BYTES
        };
        let (result, log) = load_program(name, function, &license, btf_fd.as_ref(), level, size);
        // A truncated trace (ENOSPC on 6.4+) still verified: ask again for
        // the verdict with statistics only.
        let (result, stats_log) = match &result {
            Err(e) if trace && *e == libc::ENOSPC => load_program(
                name,
                function,
                &license,
                btf_fd.as_ref(),
                LOG_STATS,
                STATS_LOG_BYTES,
            ),
            _ => (result, String::new()),
        };
        let summary = summarize(&log);
        let stats = if summary.stats.is_some() {
            summary.clone()
        } else {
            summarize(&stats_log)
        };
        let by_function = if trace {
            attribute(&log, function, &names_by_type)
        } else {
            Vec::new()
        };
        let names = function_names(function, &names_by_type);
        let depths = match stack_depths(&log) {
            d if d.is_empty() => stack_depths(&stats_log),
            d => d,
        };
        let stack_by_function = names
            .values()
            .cloned()
            .zip(depths.iter().copied())
            .collect();
        verdicts.push(Verdict {
            program: name.clone(),
            verified: result.is_ok(),
            insns: stats.processed_insns(),
            states: stats.total_states(),
            peak_states: stats.peak_states(),
            stats_line: stats.stats,
            reason: result.is_err().then(|| summary.reason.clone()).flatten(),
            stopped_at: result
                .is_err()
                .then(|| summary.stopped_at.clone())
                .flatten(),
            by_function,
            stack_by_function,
            errno: result.err(),
        });
    }
    Ok(verdicts)
}

/// The functions of a linked program by their first instruction, in
/// program order (the verifier's subprogram order).
fn function_names(
    function: &aya_obj::Function,
    names_by_type: &HashMap<u32, String>,
) -> BTreeMap<u64, String> {
    function
        .func_info
        .func_info
        .iter()
        .map(|fi| {
            let name = names_by_type
                .get(&fi.type_id)
                .cloned()
                .unwrap_or_else(|| format!("func@{}", fi.insn_off));
            (u64::from(fi.insn_off), demangle(&name))
        })
        .collect()
}

/// Processed instructions per function: every instruction line of the
/// trace, placed by its index among the functions' starts (`func_info`).
fn attribute(
    log: &str,
    function: &aya_obj::Function,
    names_by_type: &HashMap<u32, String>,
) -> Vec<(String, u64)> {
    let starts = function_names(function, names_by_type);
    let mut counts: HashMap<String, u64> = HashMap::new();
    for line in log.lines() {
        if let Some(i) = instruction_index(line) {
            let name = starts
                .range(..=i)
                .next_back()
                .map_or("?", |(_, n)| n.as_str());
            *counts.entry(name.to_owned()).or_default() += 1;
        }
    }
    let mut out: Vec<_> = counts.into_iter().collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    out
}

/// `_RNvNtCs..._11edge_sensor5sflow4step` -> `sflow::step` (v0 mangling,
/// enough of it for our own crate's paths); other names as they are.
fn demangle(name: &str) -> String {
    let Some(rest) = name.strip_prefix("_R") else {
        return name.to_owned();
    };
    // The crate root `C`, its disambiguator `s<base62>_`, then the path's
    // identifiers as <length><ident>, the crate's name first.
    let Some(root) = rest.find('C') else {
        return name.to_owned();
    };
    let mut rest = &rest[root + 1..];
    if let Some(after_s) = rest.strip_prefix('s') {
        rest = after_s.split_once('_').map_or("", |(_, r)| r);
    }
    let mut parts = Vec::new();
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            rest = &rest[1..];
            continue;
        }
        let n: usize = rest[..digits].parse().unwrap_or(0);
        let end = (digits + n).min(rest.len());
        parts.push(&rest[digits..end]);
        rest = &rest[end..];
    }
    parts.iter().skip(1).copied().collect::<Vec<_>>().join("::")
}

fn sys_bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> Result<RawFd, i32> {
    // SAFETY: `attr` is a valid, fully initialised bpf_attr; the kernel
    // reads at most its size.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut bpf_attr,
            std::mem::size_of::<bpf_attr>(),
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(rc as RawFd)
    }
}

fn zeroed_attr() -> bpf_attr {
    // SAFETY: bpf_attr is a plain C union; all zeroes is its "unset" value.
    unsafe { std::mem::zeroed() }
}

fn load_btf(bytes: &[u8]) -> anyhow::Result<OwnedFd> {
    let mut attr = zeroed_attr();
    // SAFETY: writing the BTF_LOAD member of the union.
    let u = unsafe { &mut attr.__bindgen_anon_7 };
    u.btf = bytes.as_ptr() as u64;
    u.btf_size = bytes.len() as u32;
    let fd = sys_bpf(bpf_cmd::BPF_BTF_LOAD, &mut attr)
        .map_err(|e| anyhow::anyhow!("BPF_BTF_LOAD: errno {e}"))?;
    // SAFETY: a new file descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn create_map(name: &str, map: &aya_obj::Map) -> anyhow::Result<OwnedFd> {
    let ty = map.map_type();
    let hashed = [
        bpf_map_type::BPF_MAP_TYPE_HASH as u32,
        bpf_map_type::BPF_MAP_TYPE_LRU_HASH as u32,
        bpf_map_type::BPF_MAP_TYPE_PERCPU_HASH as u32,
        bpf_map_type::BPF_MAP_TYPE_LRU_PERCPU_HASH as u32,
        bpf_map_type::BPF_MAP_TYPE_LPM_TRIE as u32,
    ]
    .contains(&ty);
    let mut attr = zeroed_attr();
    // SAFETY: writing the MAP_CREATE member of the union.
    let u = unsafe { &mut attr.__bindgen_anon_1 };
    u.map_type = ty;
    u.key_size = map.key_size();
    u.value_size = map.value_size();
    u.max_entries = if hashed {
        map.max_entries().min(DIAGNOSTIC_HASH_ENTRIES)
    } else {
        map.max_entries()
    };
    u.map_flags = map.map_flags();
    let fd = sys_bpf(bpf_cmd::BPF_MAP_CREATE, &mut attr)
        .map_err(|e| anyhow::anyhow!("BPF_MAP_CREATE {name}: errno {e}"))?;
    // SAFETY: a new file descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Loads `function` as an XDP program with a log of `log_bytes` at `level`;
/// the program is closed again at once. `Err(errno)` when refused.
fn load_program(
    name: &str,
    function: &aya_obj::Function,
    license: &CString,
    btf_fd: Option<&OwnedFd>,
    level: u32,
    log_bytes: usize,
) -> (Result<(), i32>, String) {
    let mut log = vec![0u8; log_bytes];
    let mut attr = zeroed_attr();
    // SAFETY: writing the PROG_LOAD member of the union.
    let u = unsafe { &mut attr.__bindgen_anon_3 };
    u.prog_type = aya_obj::generated::bpf_prog_type::BPF_PROG_TYPE_XDP as u32;
    u.insn_cnt = function.instructions.len() as u32;
    u.insns = function.instructions.as_ptr() as u64;
    u.license = license.as_ptr() as u64;
    u.log_level = level;
    u.log_size = log.len() as u32;
    u.log_buf = log.as_mut_ptr() as u64;
    for (dst, src) in u.prog_name.iter_mut().zip(name.bytes().take(15)) {
        *dst = src as libc::c_char;
    }
    if let Some(btf) = btf_fd {
        u.prog_btf_fd = btf.as_raw_fd() as u32;
        if !function.func_info.func_info.is_empty() {
            u.func_info_rec_size = function.func_info_rec_size as u32;
            u.func_info = function.func_info.func_info.as_ptr() as u64;
            u.func_info_cnt = function.func_info.func_info.len() as u32;
        }
        if !function.line_info.line_info.is_empty() {
            u.line_info_rec_size = function.line_info_rec_size as u32;
            u.line_info = function.line_info.line_info.as_ptr() as u64;
            u.line_info_cnt = function.line_info.line_info.len() as u32;
        }
    }
    let result = sys_bpf(bpf_cmd::BPF_PROG_LOAD, &mut attr).map(|fd| {
        // SAFETY: a new file descriptor we own; closed here.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    });
    let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
    log.truncate(end);
    (result, String::from_utf8_lossy(&log).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demangles_our_paths() {
        assert_eq!(
            demangle("_RNvNtCsawgoS80zGVi_11edge_sensor5sflow4step"),
            "sflow::step"
        );
        assert_eq!(demangle("edge_sensor_count"), "edge_sensor_count");
    }
}
