//! A Debian kernel made bootable for the tests and kept in the cache
//! (`<cache>/<release>/`): its vmlinuz, the modules the tests need
//! (decompressed, as busybox's insmod wants them) in load order, its config.
//! Built once from the downloaded packages; the packages are then removed.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::{
    archive::{Archive, ImagePackage},
    matrix::{Spec, Version},
};

/// Modules the tests need where the kernel does not build them in: veth
/// for the netns tests.
pub const MODULES: &[&str] = &["veth"];

/// A kernel ready to boot.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub release: String,
    /// Upstream version.
    pub version: String,
    /// The Debian suite it came from.
    pub origin: String,
    pub vmlinuz: PathBuf,
    /// Decompressed modules, dependencies first.
    pub modules: Vec<PathBuf>,
}

const INFO: &str = "kernel.json";

impl Kernel {
    /// The cached kernel for `image`, downloading and unpacking it first if
    /// the cache lacks it.
    pub fn ensure(cache: &Path, archive: &Archive, image: &ImagePackage) -> Result<Self> {
        let dir = cache.join(&image.release);
        if let Some(kernel) = Self::load(&dir)? {
            return Ok(kernel);
        }
        eprintln!(
            "xtask: kernels: downloading {} ({})",
            image.package, image.debian_version
        );
        let partial = cache.join(format!("{}.partial", image.release));
        let _ = fs::remove_dir_all(&partial);
        let debs = archive.download(&image.parts, &partial.join("debs"))?;
        let unpacked = partial.join("unpacked");
        for deb in &debs {
            crate::util::run(
                Command::new("dpkg-deb")
                    .arg("-x")
                    .arg(deb)
                    .arg(&unpacked)
                    .stdout(Stdio::null()),
            )?;
        }
        let origin = archive.suite_of(&image.package)?;
        lay_out(&unpacked, &partial, &image.release)?;
        fs::write(
            partial.join(INFO),
            serde_json::to_string_pretty(&json!({
                "release": image.release,
                "version": image.version.to_string(),
                "origin": origin,
                "package": image.package,
                "debian_version": image.debian_version,
            }))?,
        )?;
        fs::remove_dir_all(partial.join("debs"))?;
        fs::remove_dir_all(&unpacked)?;
        let _ = fs::remove_dir_all(&dir);
        fs::rename(&partial, &dir)?;
        Self::load(&dir)?.context("the kernel just cached cannot be read back")
    }

    /// The newest kernel in the cache that `spec` accepts: the stand-in when
    /// the archive cannot be reached.
    pub fn newest_cached(cache: &Path, spec: &Spec) -> Option<Self> {
        fs::read_dir(cache)
            .ok()?
            .filter_map(|e| Self::load(&e.ok()?.path()).ok().flatten())
            .filter_map(|k| Some((Version::parse(&k.version)?, k)))
            .filter(|(v, k)| spec.matches(v, &k.release))
            .max_by(|a, b| a.0.cmp(&b.0))
            .map(|(_, k)| k)
    }

    /// The kernel cached in `dir`, if complete.
    fn load(dir: &Path) -> Result<Option<Self>> {
        let Ok(text) = fs::read_to_string(dir.join(INFO)) else {
            return Ok(None);
        };
        let info: serde_json::Value = serde_json::from_str(&text)?;
        let field = |k: &str| info[k].as_str().unwrap_or("?").to_owned();
        let order = fs::read_to_string(dir.join("modules.order")).unwrap_or_default();
        Ok(Some(Self {
            release: field("release"),
            version: field("version"),
            origin: field("origin"),
            vmlinuz: dir.join("vmlinuz"),
            modules: order
                .lines()
                .map(|m| dir.join("modules").join(format!("{m}.ko")))
                .collect(),
        }))
    }
}

/// From the unpacked packages in `unpacked` to `dir`: vmlinuz, config,
/// modules/<name>.ko and modules.order.
fn lay_out(unpacked: &Path, dir: &Path, release: &str) -> Result<()> {
    let vmlinuz = [
        format!("boot/vmlinuz-{release}"),
        format!("usr/lib/modules/{release}/vmlinuz"),
        format!("lib/modules/{release}/vmlinuz"),
    ]
    .into_iter()
    .map(|p| unpacked.join(p))
    .find(|p| p.exists())
    .with_context(|| format!("no vmlinuz in the packages of {release}"))?;
    fs::copy(&vmlinuz, dir.join("vmlinuz"))?;
    let config = unpacked.join(format!("boot/config-{release}"));
    if config.exists() {
        fs::copy(&config, dir.join("config"))?;
    }

    let modules_root = [
        format!("usr/lib/modules/{release}"),
        format!("lib/modules/{release}"),
    ]
    .into_iter()
    .map(|p| unpacked.join(p))
    .find(|p| p.is_dir())
    .with_context(|| format!("no modules in the packages of {release}"))?;
    let builtin: BTreeSet<String> = fs::read_to_string(modules_root.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| module_name(Path::new(l)))
        .collect();
    let mut files = BTreeMap::new();
    find_modules(&modules_root.join("kernel"), &mut files)?;

    let out = dir.join("modules");
    fs::create_dir_all(&out)?;
    let mut order = Vec::new();
    for name in MODULES {
        add_module(
            &module_key(name),
            &builtin,
            &files,
            &out,
            &mut order,
            release,
        )?;
    }
    fs::write(dir.join("modules.order"), order.join("\n"))?;
    Ok(())
}

/// Decompresses module `name` and, first, the modules it depends on.
fn add_module(
    name: &str,
    builtin: &BTreeSet<String>,
    files: &BTreeMap<String, PathBuf>,
    out: &Path,
    order: &mut Vec<String>,
    release: &str,
) -> Result<()> {
    if builtin.contains(name) || order.iter().any(|m| m == name) {
        return Ok(());
    }
    let Some(source) = files.get(name) else {
        bail!("{release} has no module {name}, and does not build it in");
    };
    let ko = out.join(format!("{name}.ko"));
    decompress(source, &ko)?;
    let bytes = fs::read(&ko)?;
    for dep in modinfo_depends(&bytes) {
        add_module(&module_key(&dep), builtin, files, out, order, release)?;
    }
    order.push(name.to_owned());
    Ok(())
}

/// The `depends=` entry of a module's .modinfo section (NUL-separated
/// `key=value` strings).
fn modinfo_depends(ko: &[u8]) -> Vec<String> {
    ko.split(|b| *b == 0)
        .find_map(|s| s.strip_prefix(b"depends="))
        .map(|d| {
            String::from_utf8_lossy(d)
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn decompress(source: &Path, dest: &Path) -> Result<()> {
    let tool = match source.extension().and_then(|e| e.to_str()) {
        Some("ko") => {
            fs::copy(source, dest)?;
            return Ok(());
        }
        Some("xz") => "xz",
        Some("zst") => "zstd",
        Some("gz") => "gzip",
        other => bail!("{}: unknown module compression {other:?}", source.display()),
    };
    let out = fs::File::create(dest)?;
    crate::util::run(Command::new(tool).arg("-dc").arg(source).stdout(out))
        .with_context(|| format!("decompressing {}", source.display()))
}

/// Module name as the kernel keys it (`-` and `_` are the same).
fn module_key(name: &str) -> String {
    name.replace('-', "_")
}

/// `kernel/drivers/net/veth.ko.xz` -> `veth`.
fn module_name(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    let stem = file.split(".ko").next()?;
    (file.len() > stem.len()).then(|| module_key(stem))
}

fn find_modules(dir: &Path, out: &mut BTreeMap<String, PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            find_modules(&path, out)?;
        } else if let Some(name) = module_name(&path) {
            out.insert(name, path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_and_dependencies() {
        assert_eq!(
            module_name(Path::new("kernel/drivers/net/veth.ko.xz")).as_deref(),
            Some("veth")
        );
        assert_eq!(
            module_name(Path::new("kernel/net/sched/sch-ingress.ko")).as_deref(),
            Some("sch_ingress")
        );
        assert_eq!(module_name(Path::new("modules.builtin")), None);
        let modinfo = b"\x7fELF...\0license=GPL\0depends=a,b_c\0intree=Y\0";
        assert_eq!(modinfo_depends(modinfo), vec!["a", "b_c"]);
        assert!(modinfo_depends(b"\0depends=\0").is_empty());
    }
}
