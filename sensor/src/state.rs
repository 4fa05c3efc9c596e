//! State that survives a restart: files under `daemon.state_dir`, written
//! atomically (a temporary file in the same directory, synced, renamed over
//! the old one), so a crash mid-write leaves the previous version intact.

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

use serde::{Serialize, de::DeserializeOwned};

/// A state file that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("state file {path} is not valid: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error(
        "state directory {dir} is in use by another edge-sensor (PID {pid}): two daemons \
         would overwrite each other's state; stop it, or give this one another \
         daemon.state_dir"
    )]
    Locked { dir: PathBuf, pid: String },
}

/// The state directory held by this daemon: an exclusive `flock` on
/// `dir/lock` (holding our PID), released when dropped or when the process
/// dies, so a crash never leaves it stuck.
#[derive(Debug)]
pub struct StateLock {
    _file: fs::File,
    pub path: PathBuf,
}

/// Takes the state directory `dir` (created 0700 if missing) for this
/// process; [`StateError::Locked`] names the PID of the daemon holding it.
pub fn lock_dir(dir: &Path) -> Result<StateLock, StateError> {
    use std::io::Read;
    let path = dir.join("lock");
    let io_err = |source| StateError::Io {
        path: path.clone(),
        source,
    };
    create_private_dir(dir).map_err(io_err)?;
    // Created if missing, never truncated: the holder's PID must stay
    // readable. The lock itself is held on a read-only descriptor, so the
    // daemon keeps nothing open for writing there (a file open for writing
    // stops an operator's `mount -o remount,ro` with EBUSY).
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err)?;
    let mut file = fs::File::open(&path).map_err(io_err)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            return Err(StateError::Locked {
                dir: dir.to_owned(),
                pid: if pid.is_empty() {
                    "unknown".into()
                } else {
                    pid.into()
                },
            });
        }
        Err(fs::TryLockError::Error(e)) => return Err(io_err(e)),
    }
    fs::write(&path, format!("{}\n", std::process::id())).map_err(io_err)?;
    Ok(StateLock { _file: file, path })
}

/// The file of learnt NetFlow v9 / IPFIX templates in `dir`.
pub fn templates_file(dir: &Path) -> PathBuf {
    dir.join("templates.json")
}

/// Writes `value` as JSON to `path`, atomically; creates the directory
/// (mode 0700: it may name the operator's routers and networks).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StateError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| StateError::Invalid {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    write_bytes(path, &bytes)
}

/// Writes `text` to `path`, as [`write_json`] does (for a verifier log).
pub fn write_text(path: &Path, text: &str) -> Result<(), StateError> {
    write_bytes(path, text.as_bytes())
}

/// Creates `dir` (and its parents) readable by the owner only, if it is
/// missing; an existing directory keeps its mode.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.exists() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

fn write_bytes(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let io_err = |source| StateError::Io {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir(dir).map_err(io_err)?;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        // The rename itself is durable once the directory is synced.
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err)
}

/// Reads JSON written by [`write_json`]; `Ok(None)` when there is no file.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StateError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StateError::Invalid {
            path: path.to_owned(),
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let first = lock_dir(&state).unwrap();
        let pid = std::process::id().to_string();
        assert_eq!(fs::read_to_string(&first.path).unwrap().trim(), pid);
        // flock is per open file: a second open in this process conflicts
        // just as another daemon's would.
        let e = lock_dir(&state).unwrap_err();
        assert!(
            matches!(&e, StateError::Locked { pid: p, .. } if *p == pid),
            "{e}"
        );
        assert!(e.to_string().contains(&format!("PID {pid}")), "{e}");
        drop(first);
        lock_dir(&state).expect("free again once the holder is gone");
    }

    #[test]
    fn round_trip_missing_and_corrupt_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        assert_eq!(read_json::<Vec<u32>>(&path).unwrap(), None);
        write_json(&path, &vec![1u32, 2, 3]).unwrap();
        write_json(&path, &vec![4u32]).unwrap();
        assert_eq!(read_json::<Vec<u32>>(&path).unwrap(), Some(vec![4]));
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left: {leftovers:?}");
        fs::write(&path, b"{ not json").unwrap();
        let err = read_json::<Vec<u32>>(&path).unwrap_err();
        assert!(err.to_string().contains("not valid"), "{err}");
    }
}
