//! Which path counts the telemetry: the XDP program, or the userspace
//! collector (forced with `xdp.mode = "userspace"`, or the fallback when the
//! kernel refuses the program or an interface cannot take it); and how that
//! is told to the operator (the error block at start, `status`, metrics).

pub mod sockets;

use std::path::Path;

use edge_sensor_common::XDP_PROGRAM;
use serde_json::json;

use crate::xdp::{
    AttachedMode,
    attach::{AttachError, error_chain},
    loader::LoadError,
};

/// The path in use, for `status` and the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FastPath {
    /// The XDP program, attached to these interfaces in these modes.
    Xdp {
        attached: Vec<(String, AttachedMode)>,
    },
    /// The userspace collector, and why.
    Userspace { reason: String },
}

impl FastPath {
    /// `xdp` or `userspace`: the metric's label, the JSON's `mode`.
    pub fn mode(&self) -> &'static str {
        match self {
            Self::Xdp { .. } => "xdp",
            Self::Userspace { .. } => "userspace",
        }
    }

    pub fn is_userspace(&self) -> bool {
        matches!(self, Self::Userspace { .. })
    }

    /// `status`'s `fast_path` object (docs/json.md).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Self::Xdp { attached } => json!({
                "mode": "xdp",
                "attached": attached.iter()
                    .map(|(iface, mode)| json!({"interface": iface, "mode": mode.to_string()}))
                    .collect::<Vec<_>>(),
                "reason": null,
            }),
            Self::Userspace { reason } => json!({
                "mode": "userspace", "attached": [], "reason": reason,
            }),
        }
    }
}

/// Why the XDP program cannot run here.
#[derive(Debug)]
pub enum Unavailable {
    Load(LoadError),
    Attach(AttachError),
}

impl Unavailable {
    /// Failures the userspace collector can stand in for: the kernel's (a
    /// refusal, no BPF, no XDP in the mode asked for). Configuration
    /// mistakes (a pin path off bpffs, an unknown interface) stay fatal:
    /// falling back would hide them.
    pub fn classify_load(e: LoadError) -> Result<Self, LoadError> {
        match e {
            LoadError::NoObject
            | LoadError::Object(_)
            | LoadError::MissingProgram
            | LoadError::MissingMap(_)
            | LoadError::Program(_)
            | LoadError::Refused(_) => Ok(Self::Load(e)),
            LoadError::PinDir { .. } | LoadError::Pin(_) | LoadError::Map { .. } => Err(e),
        }
    }

    /// As [`Self::classify_load`], for attaching.
    pub fn classify_attach(e: AttachError) -> Result<Self, AttachError> {
        match e {
            AttachError::Attach { .. } => Ok(Self::Attach(e)),
            AttachError::BadName { .. } | AttachError::Userspace => Err(e),
        }
    }

    /// One line: `status`'s reason.
    pub fn short(&self) -> String {
        match self {
            Self::Load(LoadError::Refused(r)) => {
                format!(
                    "the kernel's verifier refused the XDP program: {}",
                    r.reason()
                )
            }
            Self::Load(e) => error_chain(e),
            Self::Attach(e) => error_chain(e),
        }
    }

    /// The error block of the log: kernel, program, the verifier's reason,
    /// statistics and the instruction it stopped at; the whole verifier log
    /// is written to `log_file` (a refusal's log runs to megabytes).
    pub fn block(&self, log_file: &Path) -> String {
        let mut out = format!(
            "the XDP fast path is unavailable (kernel {}, program {XDP_PROGRAM}):\n",
            kernel_release()
        );
        match self {
            Self::Load(LoadError::Refused(r)) => {
                out.push_str(&format!(
                    "  the kernel's verifier refused the program ({})\n{}",
                    r.error, r.summary
                ));
                match crate::state::write_text(log_file, &r.log) {
                    Ok(()) => {
                        out.push_str(&format!("\n  full verifier log: {}", log_file.display()))
                    }
                    Err(e) => out.push_str(&format!("\n  (verifier log not saved: {e})")),
                }
            }
            Self::Load(e) => out.push_str(&format!("  {}", error_chain(e))),
            Self::Attach(e) => out.push_str(&format!("  {}", error_chain(e))),
        }
        out
    }
}

/// `uname -r`.
pub fn kernel_release() -> String {
    // SAFETY: utsname is plain old data; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out-pointer.
    if unsafe { libc::uname(&mut u) } != 0 {
        return "(unknown)".into();
    }
    // SAFETY: uname NUL-terminates release.
    unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// What the userspace collector costs: the warning at start.
pub const COST: &str = "running on the userspace collector: the telemetry ports are read with \
     recvmmsg sockets and every datagram is decoded in this process; detection, mitigation, the \
     CLI and the metrics work as usual, at a CPU cost per datagram that XDP does not have (see \
     `edge-sensor collect --user` for a measure)";

/// How to turn the fallback off: after [`COST`] when it was not asked for.
pub const HOW_TO_REFUSE: &str = "set xdp.fallback = \"none\" to refuse to start instead";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_json_names_the_path_and_why() {
        let x = FastPath::Xdp {
            attached: vec![("eth1".into(), AttachedMode::Skb)],
        };
        assert_eq!(x.to_json()["attached"][0]["mode"], "skb");
        assert!(x.to_json()["reason"].is_null());
        let u = FastPath::Userspace {
            reason: "xdp.mode = userspace".into(),
        };
        assert_eq!(u.to_json()["mode"], "userspace");
        assert_eq!(u.mode(), "userspace");
    }

    #[test]
    fn the_kernel_release_is_known() {
        assert!(!kernel_release().is_empty());
        assert_ne!(kernel_release(), "(unknown)");
    }
}
