//! Debian's packaged kernels through a private apt configuration: the
//! archive's address comes from this machine's own apt sources, while the
//! source list, package lists, state and downloads live under the kernel
//! cache, so the machine's own apt state is never touched. Signatures are
//! checked with the machine's keyrings, as apt always does.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, SystemTime},
};

use super::matrix::Version;

/// The suites kernels are taken from.
const SUITES: &[&str] = &[
    "bookworm",
    "bookworm-backports",
    "trixie",
    "trixie-backports",
];

/// Debian's release names; an apt source serving one of them (other than
/// its security suite, which lives elsewhere) is the Debian archive.
const CODENAMES: &[&str] = &[
    "buster",
    "bullseye",
    "bookworm",
    "trixie",
    "forky",
    "duke",
    "sid",
    "oldstable",
    "stable",
    "testing",
    "unstable",
];

/// Package lists older than this are fetched again (newer kernels appear in
/// backports every few weeks; CI need not ask every run).
const LISTS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(
        "no Debian archive among this machine's apt sources (/etc/apt/sources.list, \
         /etc/apt/sources.list.d/*.list, *.sources): cannot fetch Debian's kernels"
    )]
    NoDebianSource,
    #[error("{0} failed: {1}")]
    Apt(String, String),
    #[error("cannot start {0}: {1}")]
    Spawn(String, std::io::Error),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
}

type Result<T> = std::result::Result<T, ArchiveError>;

/// A Debian archive entry of the machine's sources.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Source {
    uri: String,
    signed_by: Option<String>,
}

/// A kernel image package the archive offers.
#[derive(Debug, Clone)]
pub struct ImagePackage {
    /// linux-image-<release>
    pub package: String,
    /// `uname -r` of the kernel, e.g. 6.18.15+deb13-cloud-amd64.
    pub release: String,
    /// The package's Debian version, e.g. 6.18.15-1~bpo13+1.
    pub debian_version: String,
    /// The upstream version, e.g. 6.18.15.
    pub version: Version,
    /// Packages to download: the image and, for newer kernels, the
    /// linux-binary-* (vmlinuz) and linux-modules-* packages it depends on.
    pub parts: Vec<String>,
    /// Whether every part is in the archive (some versions' modules
    /// packages are missing).
    pub complete: bool,
}

/// The private apt setup under `<cache>/apt`.
pub struct Archive {
    dir: PathBuf,
}

impl Archive {
    /// Writes the private source list (from the machine's sources) and
    /// fetches the package lists when they are missing, stale or the list
    /// changed.
    pub fn open(cache: &Path) -> Result<Self> {
        let archive = Self {
            dir: cache.join("apt"),
        };
        for sub in [
            "lists/partial",
            "state",
            "cache/archives/partial",
            "parts",
            "prefs",
        ] {
            let d = archive.dir.join(sub);
            fs::create_dir_all(&d).map_err(|e| ArchiveError::Io(d, e))?;
        }
        let status = archive.dir.join("state/status");
        if !status.exists() {
            fs::write(&status, "").map_err(|e| ArchiveError::Io(status, e))?;
        }
        let list = source_list(&machine_sources()?);
        let list_path = archive.dir.join("sources.list");
        let changed = fs::read_to_string(&list_path).ok().as_deref() != Some(list.as_str());
        if changed {
            fs::write(&list_path, &list).map_err(|e| ArchiveError::Io(list_path.clone(), e))?;
        }
        let stamp = archive.dir.join("lists.updated");
        let stale = fs::metadata(&stamp)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_none_or(|age| age > LISTS_MAX_AGE);
        if changed || stale {
            match archive.update() {
                Ok(()) => fs::write(&stamp, "").map_err(|e| ArchiveError::Io(stamp, e))?,
                // Lists from an earlier run still name what is cached.
                Err(e) if stamp.exists() => {
                    eprintln!(
                        "xtask: kernels: warning: {e}; using the package lists of an earlier run"
                    )
                }
                Err(e) => return Err(e),
            }
        }
        Ok(archive)
    }

    /// `apt-get`/`apt-cache` on the private configuration.
    fn apt(&self, tool: &str) -> Command {
        let d = |sub: &str| self.dir.join(sub).display().to_string();
        let mut cmd = Command::new(tool);
        for (key, value) in [
            ("Dir::Etc::SourceList", d("sources.list")),
            ("Dir::Etc::SourceParts", d("parts")),
            ("Dir::Etc::Preferences", d("prefs/none")),
            ("Dir::Etc::PreferencesParts", d("prefs")),
            ("Dir::State", d("state")),
            ("Dir::State::Lists", d("lists")),
            ("Dir::State::status", d("state/status")),
            ("Dir::Cache", d("cache")),
            ("APT::Architecture", "amd64".into()),
            ("APT::Architectures", "amd64".into()),
            ("Acquire::Languages", "none".into()),
            // Only the Packages indices are needed, not AppStream metadata.
            (
                "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled",
                "false".into(),
            ),
            (
                "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled",
                "false".into(),
            ),
            (
                "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled",
                "false".into(),
            ),
            (
                "Acquire::IndexTargets::deb::DEP-11-icons-hidpi::DefaultEnabled",
                "false".into(),
            ),
            // Downloads go to a root-owned directory of the cache.
            ("APT::Sandbox::User", "root".into()),
        ] {
            cmd.arg("-o").arg(format!("{key}={value}"));
        }
        cmd
    }

    fn output(&self, mut cmd: Command) -> Result<String> {
        let what = crate::util::describe(&cmd);
        let what = what.split(" -o ").next().unwrap_or(&what).to_owned();
        let out = cmd
            .output()
            .map_err(|e| ArchiveError::Spawn(what.clone(), e))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        // apt reports a bad or missing signature as a warning plus an error.
        let bad = stderr
            .lines()
            .filter(|l| l.starts_with("E:") || l.contains("GPG error") || l.contains("NO_PUBKEY"))
            .collect::<Vec<_>>();
        if !out.status.success() || !bad.is_empty() {
            let detail = if bad.is_empty() {
                stderr.trim().to_owned()
            } else {
                bad.join("\n")
            };
            return Err(ArchiveError::Apt(what, detail));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn update(&self) -> Result<()> {
        eprintln!(
            "xtask: kernels: fetching the package lists of {}",
            SUITES.join(", ")
        );
        let mut cmd = self.apt("apt-get");
        cmd.args(["-q", "update"]);
        self.output(cmd).map(drop)
    }

    /// Every `linux-image-<release>-cloud-amd64` the suites offer.
    pub fn images(&self) -> Result<Vec<ImagePackage>> {
        let mut cmd = self.apt("apt-cache");
        cmd.arg("pkgnames").arg("linux-");
        let names: BTreeSet<String> = self.output(cmd)?.lines().map(str::to_owned).collect();
        let images: Vec<&String> = names
            .iter()
            .filter(|n| {
                n.strip_prefix("linux-image-")
                    .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
                    && n.ends_with("-cloud-amd64")
            })
            .collect();
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = self.apt("apt-cache");
        cmd.args(["show", "--no-all-versions"]).args(&images);
        let mut out = Vec::new();
        for record in self.output(cmd)?.split("\n\n") {
            let field = |name: &str| {
                record
                    .lines()
                    .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                    .map(|v| v.trim().to_owned())
            };
            let (Some(package), Some(debian_version)) = (field("Package"), field("Version")) else {
                continue;
            };
            let release = package["linux-image-".len()..].to_owned();
            let Some(version) = Version::of_debian(&debian_version) else {
                continue;
            };
            let mut parts = vec![package.clone()];
            for dep in field("Depends").unwrap_or_default().split([',', '|']) {
                let dep = dep.split_whitespace().next().unwrap_or("");
                if dep == format!("linux-binary-{release}")
                    || dep == format!("linux-modules-{release}")
                {
                    parts.push(dep.to_owned());
                }
            }
            let complete = parts.iter().all(|p| names.contains(p));
            out.push(ImagePackage {
                package,
                release,
                debian_version,
                version,
                parts,
                complete,
            });
        }
        Ok(out)
    }

    /// The suite `package` comes from (for the report).
    pub fn suite_of(&self, package: &str) -> Result<String> {
        let mut cmd = self.apt("apt-cache");
        cmd.args(["madison", package]);
        // `pkg | version | <uri> <suite>/main amd64 Packages`
        Ok(self
            .output(cmd)?
            .lines()
            .filter_map(|l| l.split('|').nth(2))
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter_map(|s| s.split('/').next())
            .next()
            .unwrap_or("?")
            .to_owned())
    }

    /// Downloads `packages` into `dir`; returns the .deb files.
    pub fn download(&self, packages: &[String], dir: &Path) -> Result<Vec<PathBuf>> {
        fs::create_dir_all(dir).map_err(|e| ArchiveError::Io(dir.to_owned(), e))?;
        let mut cmd = self.apt("apt-get");
        cmd.args(["-q", "download"]).args(packages).current_dir(dir);
        self.output(cmd)?;
        let debs = fs::read_dir(dir)
            .map_err(|e| ArchiveError::Io(dir.to_owned(), e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "deb"))
            .collect();
        Ok(debs)
    }
}

/// The Debian archive entries of the machine's apt sources, both formats.
fn machine_sources() -> Result<Vec<Source>> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        more.sort();
        files.extend(more);
    }
    let mut found = Vec::new();
    for file in files {
        let Ok(text) = fs::read_to_string(&file) else {
            continue;
        };
        let entries = match file.extension().and_then(|e| e.to_str()) {
            Some("sources") => deb822_entries(&text),
            Some("list") => one_line_entries(&text),
            _ => continue,
        };
        for (uri, suites, signed_by) in entries {
            let debian = suites.iter().any(|s| {
                let codename = s.split('-').next().unwrap_or(s);
                CODENAMES.contains(&codename) && !s.ends_with("-security")
            });
            let source = Source { uri, signed_by };
            if debian && !found.contains(&source) {
                found.push(source);
            }
        }
    }
    if found.is_empty() {
        return Err(ArchiveError::NoDebianSource);
    }
    Ok(found)
}

type Entry = (String, Vec<String>, Option<String>);

/// `deb [options] URI SUITE COMPONENTS...` lines.
fn one_line_entries(text: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line.strip_prefix("deb ") else {
            continue;
        };
        let rest = rest.trim();
        let (options, rest) = match rest.strip_prefix('[') {
            Some(r) => r.split_once(']').unwrap_or(("", r)),
            None => ("", rest),
        };
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        let signed_by = options
            .split_whitespace()
            .find_map(|o| o.strip_prefix("signed-by="))
            .map(str::to_owned);
        out.push((uri.to_owned(), vec![suite.to_owned()], signed_by));
    }
    out
}

/// deb822 stanzas (`Types:`, `URIs:`, `Suites:`, `Signed-By:`, `Enabled:`).
fn deb822_entries(text: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in stanza.lines() {
            if line.starts_with('#') {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                // A continuation (an inline key): not a path, not needed.
                if let Some(last) = fields.last_mut() {
                    last.1.push('\n');
                }
                continue;
            }
            if let Some((k, v)) = line.split_once(':') {
                fields.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let get = |k: &str| {
            fields
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        let enabled = get("enabled").is_none_or(|v| v != "no");
        let is_deb = get("types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
        if !enabled || !is_deb {
            continue;
        }
        let signed_by = get("signed-by")
            .filter(|v| !v.contains('\n') && v.starts_with('/'))
            .map(str::to_owned);
        let suites: Vec<String> = get("suites")
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        for uri in get("uris").unwrap_or("").split_whitespace() {
            out.push((uri.to_owned(), suites.clone(), signed_by.clone()));
        }
    }
    out
}

/// The private source list: every kernel suite from every Debian source.
fn source_list(sources: &[Source]) -> String {
    let mut out =
        String::from("# Written by `cargo xtask kernels` from this machine's apt sources.\n");
    for source in sources {
        let options = source
            .signed_by
            .as_ref()
            .map(|k| format!("[signed-by={k}] "))
            .unwrap_or_default();
        for suite in SUITES {
            out.push_str(&format!("deb {options}{} {suite} main\n", source.uri));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_source_formats_are_read() {
        let deb822 = "\
Types: deb
# a comment
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main

Types: deb
URIs: http://other.example/x
Suites: bookworm
Enabled: no
";
        let entries = deb822_entries(deb822);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].0, "http://mirror.example/debian");
        assert_eq!(
            entries[0].2.as_deref(),
            Some("/usr/share/keyrings/debian-archive-keyring.gpg")
        );
        let one_line = "\
# deb http://commented.example/debian bookworm main
deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main contrib
deb-src http://mirror.example/debian bookworm main
deb http://plain.example/debian trixie main
";
        let entries = one_line_entries(one_line);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].2.as_deref(), Some("/k.gpg"));
        assert_eq!(entries[1].1, vec!["trixie"]);
        let list = source_list(&[Source {
            uri: "http://mirror.example/debian".into(),
            signed_by: None,
        }]);
        assert!(list.contains("deb http://mirror.example/debian trixie-backports main\n"));
    }
}
