//! Attaching the program to an interface, native first.

use aya::programs::{ProgramError, Xdp, XdpMode, xdp::XdpLinkId};

use std::fmt;

use serde::Deserialize;

/// How the XDP program is attached to an interface.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// Native (driver) mode, falling back to skb (generic) mode where the
    /// driver has no XDP support.
    #[default]
    Auto,
    /// Native (driver) mode only; attaching fails where the driver lacks it.
    Native,
    /// Generic (skb) mode: works on every interface, slower.
    Skb,
    /// No XDP: the userspace collector (`recvmmsg` sockets) counts the
    /// telemetry, as after a fallback; costs CPU per datagram.
    Userspace,
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Native => "native",
            Self::Skb => "skb",
            Self::Userspace => "userspace",
        })
    }
}

/// Linux interface names: 1 to 15 bytes, no '/', no whitespace, no NUL.
pub fn validate_iface_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 15 {
        return Err(format!("interface name {name:?} must be 1 to 15 bytes"));
    }
    if name
        .bytes()
        .any(|b| b == b'/' || b == 0 || b.is_ascii_whitespace() || b == b':')
    {
        return Err(format!(
            "interface name {name:?} has a character Linux refuses"
        ));
    }
    Ok(())
}

/// The mode the program ended up attached in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachedMode {
    Native,
    Skb,
}

impl std::fmt::Display for AttachedMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Native => "native",
            Self::Skb => "skb",
        })
    }
}

/// The program could not be attached.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("interface {iface}: {message}")]
    BadName { iface: String, message: String },
    #[error("xdp.mode = userspace: nothing to attach")]
    Userspace,
    #[error("attaching to {iface} in {mode} mode: {source}")]
    Attach {
        iface: String,
        mode: AttachedMode,
        source: ProgramError,
    },
}

/// Attaches `xdp` to `iface`. In [`AttachMode::Auto`] a failed native attach
/// falls back to skb mode; the log says which mode is in use and why.
pub fn attach(
    xdp: &mut Xdp,
    iface: &str,
    mode: AttachMode,
) -> Result<(XdpLinkId, AttachedMode), AttachError> {
    validate_iface_name(iface).map_err(|message| AttachError::BadName {
        iface: iface.to_owned(),
        message,
    })?;
    if interface_index(iface).is_none() {
        return Err(AttachError::BadName {
            iface: iface.to_owned(),
            message: "no such interface in this network namespace".into(),
        });
    }
    let try_mode = |xdp: &mut Xdp, mode: AttachedMode| {
        let flags = match mode {
            AttachedMode::Native => XdpMode::Driver,
            AttachedMode::Skb => XdpMode::Skb,
        };
        xdp.attach(iface, flags)
            .map(|id| (id, mode))
            .map_err(|source| AttachError::Attach {
                iface: iface.to_owned(),
                mode,
                source,
            })
    };
    let attached = match mode {
        AttachMode::Userspace => return Err(AttachError::Userspace),
        AttachMode::Native => try_mode(xdp, AttachedMode::Native)?,
        AttachMode::Skb => try_mode(xdp, AttachedMode::Skb)?,
        AttachMode::Auto => match try_mode(xdp, AttachedMode::Native) {
            Ok(done) => done,
            Err(native) => {
                tracing::warn!(
                    "{iface}: native XDP unavailable ({}), falling back to skb mode",
                    error_chain(&native)
                );
                try_mode(xdp, AttachedMode::Skb)?
            }
        },
    };
    tracing::info!(iface, mode = %attached.1, "XDP program attached in {} mode", attached.1);
    Ok(attached)
}

fn interface_index(iface: &str) -> Option<u32> {
    let name = std::ffi::CString::new(iface).ok()?;
    // SAFETY: name is NUL-terminated.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// `e` and its sources, joined by ": ".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}
