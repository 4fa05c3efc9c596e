//! The API's write token: read from a file only root may read, compared
//! in constant time.

use std::{os::unix::fs::MetadataExt, path::Path};

/// A bearer token.
pub struct Token(String);

/// Why a token file is refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{path}: readable by others (mode {mode:o}); the token file must be 0600 or 0400, owned by root"
    )]
    Readable { path: String, mode: u32 },
    #[error("{path}: owned by uid {uid}, not root")]
    Owner { path: String, uid: u32 },
    #[error("{path}: the token must be at least 16 characters")]
    Short { path: String },
}

impl Token {
    /// Reads the token (its first line, trimmed) from `path`, refusing a
    /// file anyone but root may read or write.
    pub fn from_file(path: &Path) -> Result<Self, TokenError> {
        let shown = path.display().to_string();
        let read = |source| TokenError::Read {
            path: shown.clone(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read)?;
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(TokenError::Readable { path: shown, mode });
        }
        if meta.uid() != 0 {
            return Err(TokenError::Owner {
                path: shown,
                uid: meta.uid(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        let token = text.lines().next().unwrap_or("").trim().to_string();
        if token.chars().count() < 16 {
            return Err(TokenError::Short { path: shown });
        }
        Ok(Self(token))
    }

    /// Whether `given` is the token; the time taken does not depend on
    /// where they differ.
    pub fn matches(&self, given: &str) -> bool {
        constant_time_eq::constant_time_eq(self.0.as_bytes(), given.as_bytes())
    }

    #[cfg(test)]
    pub fn new(token: &str) -> Self {
        Self(token.to_string())
    }
}
