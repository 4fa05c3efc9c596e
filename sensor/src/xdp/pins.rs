//! The maps the sensor pins, checked against the layout this binary expects.
//!
//! aya reuses an existing pin without any check. A pin left by a binary with
//! another layout would then be read and written with the wrong offsets, so
//! every existing pin is checked before loading, and before the CLI reads it.

use std::{
    io,
    path::{Path, PathBuf},
};

use aya::maps::{Map, MapData, MapError, MapInfo, MapType};
use edge_sensor_common::{
    AGENT_STATE, AgentState, DEFAULT_MAX_DESTINATIONS, DST_STATS, DstKey, DstStats, EXPORTER_STATS,
    ExporterKey, ExporterStats, GLOBAL_STATS, GlobalStats, MAX_EXPORTERS, MAX_USER_DESTINATIONS,
    USER_DST_STATS, USER_EXPORTER_STATS,
};

/// The layout of one pinned map.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PinnedMapSpec {
    pub name: &'static str,
    pub map_type: MapType,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
}

/// Every map the sensor pins. `DST_STATS`' capacity is configured; the
/// value here is the default, see [`pinned_maps`].
pub const PINNED_MAPS: &[PinnedMapSpec] = &[
    PinnedMapSpec {
        name: DST_STATS,
        map_type: MapType::LruHash,
        key_size: size_of::<DstKey>() as u32,
        value_size: size_of::<DstStats>() as u32,
        max_entries: DEFAULT_MAX_DESTINATIONS,
    },
    PinnedMapSpec {
        name: EXPORTER_STATS,
        map_type: MapType::LruPerCpuHash,
        key_size: size_of::<ExporterKey>() as u32,
        value_size: size_of::<ExporterStats>() as u32,
        max_entries: MAX_EXPORTERS,
    },
    PinnedMapSpec {
        name: AGENT_STATE,
        map_type: MapType::LruHash,
        key_size: size_of::<ExporterKey>() as u32,
        value_size: size_of::<AgentState>() as u32,
        max_entries: MAX_EXPORTERS,
    },
    PinnedMapSpec {
        name: USER_DST_STATS,
        map_type: MapType::Hash,
        key_size: size_of::<DstKey>() as u32,
        value_size: size_of::<DstStats>() as u32,
        max_entries: MAX_USER_DESTINATIONS,
    },
    PinnedMapSpec {
        name: USER_EXPORTER_STATS,
        map_type: MapType::Hash,
        key_size: size_of::<ExporterKey>() as u32,
        value_size: size_of::<ExporterStats>() as u32,
        max_entries: MAX_EXPORTERS,
    },
    PinnedMapSpec {
        name: GLOBAL_STATS,
        map_type: MapType::PerCpuArray,
        key_size: 4,
        value_size: size_of::<GlobalStats>() as u32,
        max_entries: 1,
    },
];

/// The pinned maps with `DST_STATS` sized for `max_destinations`.
pub fn pinned_maps(max_destinations: u32) -> Vec<PinnedMapSpec> {
    PINNED_MAPS
        .iter()
        .map(|spec| PinnedMapSpec {
            max_entries: if spec.name == DST_STATS {
                max_destinations
            } else {
                spec.max_entries
            },
            ..*spec
        })
        .collect()
}

/// A pinned map that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error(
        "no pinned map at {path}: is the sensor loaded? (pin path {dir}; \
         start it with `edge-sensor run` or `cargo xtask build-and-load`)"
    )]
    NotFound { path: PathBuf, dir: PathBuf },
    #[error("permission denied opening {path}: needs root or CAP_BPF")]
    PermissionDenied { path: PathBuf },
    #[error(
        "pinned map {path} has another layout ({found}) than this sensor expects ({expected}): \
         it was pinned by another version of edge-sensor or with another `xdp.destinations`; \
         stop that sensor and remove the pin, or use another pin path"
    )]
    LayoutMismatch {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("pinned map {path}: {source}")]
    Map { path: PathBuf, source: MapError },
    #[error("pin path {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl PinnedMapSpec {
    fn describe(map_type: MapType, key: u32, value: u32, max: u32) -> String {
        format!("{map_type:?}, key {key} B, value {value} B, {max} entries")
    }

    /// The layout this spec expects, as error messages and `edge-sensor
    /// maps` name it.
    pub fn expected(&self) -> String {
        if self.max_entries == ANY_CAPACITY {
            return format!(
                "{:?}, key {} B, value {} B",
                self.map_type, self.key_size, self.value_size
            );
        }
        Self::describe(
            self.map_type,
            self.key_size,
            self.value_size,
            self.max_entries,
        )
    }

    /// Checks the map pinned at `path` against this spec. `Ok(false)` when
    /// nothing is pinned there.
    pub fn check_pin(&self, path: &Path) -> Result<bool, PinError> {
        let info = match MapInfo::from_pin(path) {
            Ok(info) => info,
            Err(e) => {
                return match io_kind(&e) {
                    Some(io::ErrorKind::NotFound) => Ok(false),
                    Some(io::ErrorKind::PermissionDenied) => Err(PinError::PermissionDenied {
                        path: path.to_owned(),
                    }),
                    _ => Err(PinError::Map {
                        path: path.to_owned(),
                        source: e,
                    }),
                };
            }
        };
        let map_type = info.map_type().map_err(|source| PinError::Map {
            path: path.to_owned(),
            source,
        })?;
        let found = Self::describe(
            map_type,
            info.key_size(),
            info.value_size(),
            info.max_entries(),
        );
        if map_type != self.map_type
            || info.key_size() != self.key_size
            || info.value_size() != self.value_size
            || (self.max_entries != ANY_CAPACITY && info.max_entries() != self.max_entries)
        {
            return Err(PinError::LayoutMismatch {
                path: path.to_owned(),
                found,
                expected: self.expected(),
            });
        }
        Ok(true)
    }

    /// This spec with any capacity: what a reader checks, not knowing the
    /// daemon's configuration.
    pub fn any_capacity(&self) -> PinnedMapSpec {
        PinnedMapSpec {
            max_entries: ANY_CAPACITY,
            ..*self
        }
    }

    /// Opens the map pinned under `dir`, after checking its layout (any
    /// capacity: a reader does not know the daemon's configuration).
    pub fn open(&self, dir: &Path) -> Result<Map, PinError> {
        let path = dir.join(self.name);
        if !self.any_capacity().check_pin(&path)? {
            return Err(PinError::NotFound {
                path,
                dir: dir.to_owned(),
            });
        }
        let data = MapData::from_pin(&path).map_err(|source| PinError::Map {
            path: path.clone(),
            source,
        })?;
        Map::from_map_data(data).map_err(|source| PinError::Map { path, source })
    }
}

/// `max_entries` of a spec that accepts any capacity.
const ANY_CAPACITY: u32 = 0;

/// The spec of the pinned map called `name`.
pub fn spec(name: &str) -> Option<&'static PinnedMapSpec> {
    PINNED_MAPS.iter().find(|s| s.name == name)
}

/// The I/O error kind behind a map error, if it is one.
fn io_kind(e: &MapError) -> Option<io::ErrorKind> {
    match e {
        MapError::SyscallError(s) => Some(s.io_error.kind()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pinned_map_has_a_unique_name() {
        let mut names: Vec<_> = PINNED_MAPS.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), PINNED_MAPS.len());
        assert!(spec(EXPORTER_STATS).is_some());
        assert!(spec("NOPE").is_none());
    }

    #[test]
    fn a_missing_pin_is_reported_as_not_loaded() {
        let dir = Path::new("/nonexistent-edge-sensor-pins");
        let e = spec(EXPORTER_STATS).unwrap().open(dir).unwrap_err();
        let text = e.to_string();
        // Without a bpffs or permissions the error may differ; both name the path.
        assert!(text.contains("/nonexistent-edge-sensor-pins"), "{text}");
    }
}
