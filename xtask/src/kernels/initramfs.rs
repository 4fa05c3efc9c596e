//! The guests' initramfs: busybox for /init and the shell, the test
//! binaries, the sensor, this xtask (the runner), the tools the tests exec
//! with their libraries and data, the shared captures, and every kernel's
//! modules (/init loads those of the kernel it runs on). One archive for
//! all kernels, written in the cpio "newc" format the kernel unpacks.

use std::{
    collections::BTreeMap,
    fs,
    io::{BufWriter, Write},
    os::unix::fs::PermissionsExt,
    path::{Component, Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use super::{
    image::Kernel,
    suite::{Marker, Payload, SENSOR_NAME, STEPS, TOOL_DATA, TOOLS},
};

/// Where things go in the guest.
const BIN_DIR: &str = "/es/bin";
const XTASK: &str = "/es/xtask";
const BUSYBOX: &str = "/busybox/busybox";

#[derive(Clone)]
enum Node {
    Dir,
    File { source: Source, mode: u32 },
    Symlink(PathBuf),
}

#[derive(Clone)]
enum Source {
    Host(PathBuf),
    Bytes(Vec<u8>),
}

/// A file tree to archive, by guest path.
#[derive(Default)]
struct Tree {
    nodes: BTreeMap<PathBuf, Node>,
}

impl Tree {
    fn insert(&mut self, guest: &Path, node: Node) {
        let guest = guest.strip_prefix("/").unwrap_or(guest).to_owned();
        for parent in guest.ancestors().skip(1) {
            if !parent.as_os_str().is_empty() {
                self.nodes.entry(parent.to_owned()).or_insert(Node::Dir);
            }
        }
        self.nodes.insert(guest, node);
    }

    fn dir(&mut self, guest: impl AsRef<Path>) {
        self.insert(guest.as_ref(), Node::Dir);
    }

    fn file(&mut self, guest: impl AsRef<Path>, host: &Path) -> Result<()> {
        let mode = fs::metadata(host)
            .with_context(|| format!("{}", host.display()))?
            .permissions()
            .mode()
            & 0o7777;
        self.insert(
            guest.as_ref(),
            Node::File {
                source: Source::Host(host.to_owned()),
                mode,
            },
        );
        Ok(())
    }

    fn bytes(&mut self, guest: impl AsRef<Path>, bytes: Vec<u8>, mode: u32) {
        self.insert(
            guest.as_ref(),
            Node::File {
                source: Source::Bytes(bytes),
                mode,
            },
        );
    }

    /// An executable or library and the libraries it needs, each at the
    /// path the host resolves it to.
    fn elf(&mut self, guest: impl AsRef<Path>, host: &Path) -> Result<()> {
        self.file(guest, host)?;
        for lib in libraries(host)? {
            let at = resolved_path(&lib)?;
            if !self.nodes.contains_key(at.strip_prefix("/").unwrap_or(&at)) {
                self.file(&at, &lib)?;
            }
        }
        Ok(())
    }

    /// A host directory at its own path, ELF files with their libraries.
    fn host_dir(&mut self, dir: &Path) -> Result<()> {
        for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            let meta = fs::symlink_metadata(&path)?;
            if meta.is_dir() {
                self.host_dir(&path)?;
            } else if meta.is_file() {
                let at = resolved_path(&path)?;
                if is_elf(&path) {
                    self.elf(&at, &path)?;
                } else {
                    self.file(&at, &path)?;
                }
            } else if meta.file_type().is_symlink() && path.exists() {
                self.insert(&resolved_path(&path)?, Node::Symlink(fs::read_link(&path)?));
            }
        }
        Ok(())
    }

    /// Writes the tree as a newc archive.
    fn write(&self, out: &Path) -> Result<()> {
        let mut w = BufWriter::new(fs::File::create(out)?);
        let mut ino = 1;
        for (path, node) in &self.nodes {
            let name = path.to_str().context("non-UTF-8 guest path")?;
            match node {
                Node::Dir => newc_entry(&mut w, ino, name, 0o040755, 0, &mut std::io::empty())?,
                Node::Symlink(target) => {
                    let t = target.as_os_str().as_encoded_bytes();
                    newc_entry(&mut w, ino, name, 0o120777, t.len() as u64, &mut &t[..])?
                }
                Node::File { source, mode } => match source {
                    Source::Bytes(b) => newc_entry(
                        &mut w,
                        ino,
                        name,
                        0o100000 | mode,
                        b.len() as u64,
                        &mut &b[..],
                    )?,
                    Source::Host(p) => {
                        let mut f =
                            fs::File::open(p).with_context(|| format!("{}", p.display()))?;
                        let len = f.metadata()?.len();
                        newc_entry(&mut w, ino, name, 0o100000 | mode, len, &mut f)?
                    }
                },
            }
            ino += 1;
        }
        newc_entry(&mut w, ino, "TRAILER!!!", 0, 0, &mut std::io::empty())?;
        w.flush()?;
        Ok(())
    }
}

/// One newc header, name and data, each padded to 4 bytes.
fn newc_entry(
    w: &mut impl Write,
    ino: u32,
    name: &str,
    mode: u32,
    len: u64,
    data: &mut impl std::io::Read,
) -> Result<()> {
    let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
    let namesize = name.len() + 1;
    let len32 = u32::try_from(len).context("a file over 4 GiB in the initramfs")?;
    write!(
        w,
        "070701{ino:08X}{mode:08X}{:08X}{:08X}{nlink:08X}{:08X}{len32:08X}{:08X}{:08X}{:08X}{:08X}{namesize:08X}{:08X}",
        0, 0, 0, 0, 0, 0, 0, 0
    )?;
    w.write_all(name.as_bytes())?;
    w.write_all(&[0])?;
    pad(w, 110 + namesize)?;
    let copied = std::io::copy(&mut std::io::Read::take(data, len), w)?;
    if copied != len {
        bail!("{name}: the file changed while being archived");
    }
    pad(w, len as usize)
}

fn pad(w: &mut impl Write, written: usize) -> Result<()> {
    w.write_all(&[0; 3][..(4 - written % 4) % 4])?;
    Ok(())
}

fn is_elf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

/// The shared libraries `elf` loads, as `ldd` finds them.
fn libraries(elf: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(elf)
        .output()
        .context("running ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut libs = Vec::new();
    for line in text.lines() {
        if line.contains("not found") {
            bail!("{}: {}", elf.display(), line.trim());
        }
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` or
        // `/lib64/ld-linux-x86-64.so.2 (0x...)`; vdso has no path.
        let path = line
            .split("=>")
            .last()
            .and_then(|r| r.split_whitespace().next())
            .filter(|p| p.starts_with('/'));
        if let Some(p) = path {
            libs.push(PathBuf::from(p));
        }
    }
    Ok(libs)
}

/// `path` with its directory resolved on the host (through merged-/usr
/// links such as /lib -> usr/lib), the file name kept.
fn resolved_path(path: &Path) -> Result<PathBuf> {
    let dir = path.parent().context("a path without a directory")?;
    let name = path.file_name().context("a path without a file name")?;
    Ok(fs::canonicalize(dir)
        .with_context(|| format!("{}", dir.display()))?
        .join(name))
}

/// `a/b/../c` -> `a/c`, without asking the file system.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// /init: mounts, this kernel's modules, the runner; always powers off.
fn init_script() -> String {
    let probe = Marker::ProbeOk;
    let failed = Marker::ModuleFailed("$m".into());
    format!(
        r#"#!{BUSYBOX} sh
# The edge-sensor test guest (written by `cargo xtask kernels`).
{BUSYBOX} --install -s /busybox
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:/busybox HOME=/root TMPDIR=/tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t bpf bpf /sys/fs/bpf
# No tmpfs over /tmp or /run: the initramfs is in memory already, and a
# clone under /tmp (as CI's may be) has its test data there.
mkdir -p /tmp /run
chmod 1777 /tmp
ip link set lo up
release=$(uname -r)
for m in $(cat /es/modules/$release/order 2>/dev/null); do
  insmod /es/modules/$release/$m.ko || echo "{failed}"
done
if [ -n "$ES_PROBE" ]; then
  echo "{probe}"
else
  {XTASK} kernel-guest --bin-dir {BIN_DIR}
fi
poweroff -f
"#
    )
}

/// Builds the initramfs at `out` for `kernels`, with `payload` stripped
/// into `stage` first.
pub fn build(payload: &Payload, kernels: &[Kernel], stage: &Path, out: &Path) -> Result<()> {
    let mut tree = Tree::default();
    for top in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
        let host = Path::new("/").join(top);
        if let Ok(target) = fs::read_link(&host) {
            tree.insert(Path::new(top), Node::Symlink(target));
        }
    }
    for dir in ["proc", "sys", "dev", "tmp", "run", "root", "etc", "busybox"] {
        tree.dir(dir);
    }
    // iproute2 keeps named namespaces under /var/run/netns.
    tree.insert(Path::new("var/run"), Node::Symlink("../run".into()));
    tree.bytes("init", init_script().into_bytes(), 0o755);
    tree.bytes(
        "etc/passwd",
        b"root:x:0:0:root:/root:/busybox/sh\n".to_vec(),
        0o644,
    );
    tree.bytes("etc/group", b"root:x:0:\n".to_vec(), 0o644);
    tree.elf(BUSYBOX, &which("busybox")?)?;

    fs::create_dir_all(stage)?;
    let stripped = |name: &str, host: &Path| -> Result<PathBuf> {
        let dest = stage.join(name);
        crate::util::run(Command::new("strip").arg("-o").arg(&dest).arg(host))?;
        Ok(dest)
    };
    for step in STEPS {
        let bin = stripped(step.target, &payload.tests[step.target])?;
        tree.elf(Path::new(BIN_DIR).join(step.target), &bin)?;
    }
    let sensor = stripped(SENSOR_NAME, &payload.sensor)?;
    tree.elf(Path::new(BIN_DIR).join(SENSOR_NAME), &sensor)?;
    let xtask = stripped("xtask", &std::env::current_exe()?)?;
    tree.elf(XTASK, &xtask)?;

    for tool in TOOLS {
        let host = which(tool)?;
        tree.elf(resolved_path(&host)?, &host)?;
    }
    for dir in TOOL_DATA {
        if Path::new(dir).is_dir() {
            tree.host_dir(Path::new(dir))?;
        }
    }

    // The tests find the captures at a path compiled into them:
    // <tests>/../../shared/data/pcaps.
    let tests_dir = crate::util::root().join("tests");
    let captures = tests_dir.join("../../shared/data/pcaps");
    tree.dir(&tests_dir);
    add_dir_as(&mut tree, &captures, &lexical(&captures))?;

    for kernel in kernels {
        let dir = Path::new("/es/modules").join(&kernel.release);
        let mut order = Vec::new();
        for ko in &kernel.modules {
            let name = ko.file_name().context("module name")?;
            tree.file(dir.join(name), ko)?;
            order.push(
                ko.file_stem()
                    .context("module name")?
                    .to_string_lossy()
                    .into_owned(),
            );
        }
        tree.bytes(dir.join("order"), order.join("\n").into_bytes(), 0o644);
    }
    tree.write(out)
}

/// The host directory `host` at guest path `guest`, recursively.
fn add_dir_as(tree: &mut Tree, host: &Path, guest: &Path) -> Result<()> {
    tree.dir(guest);
    for entry in fs::read_dir(host).with_context(|| format!("reading {}", host.display()))? {
        let entry = entry?;
        let (h, g) = (entry.path(), guest.join(entry.file_name()));
        if h.is_dir() {
            add_dir_as(tree, &h, &g)?;
        } else {
            tree.file(&g, &h)?;
        }
    }
    Ok(())
}

/// `name` on PATH.
fn which(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("{name} is not installed: run scripts/setup"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_entries_are_padded_to_four_bytes() {
        let mut out = Vec::new();
        newc_entry(&mut out, 1, "init", 0o100755, 5, &mut &b"hello"[..]).unwrap();
        // 110-byte header + "init\0" = 115 -> 116; 5 data bytes -> 8.
        assert_eq!(out.len(), 116 + 8);
        assert!(out.starts_with(b"070701"));
        assert_eq!(&out[116..121], b"hello");
        assert_eq!(lexical(Path::new("/a/b/tests/../../c")), Path::new("/a/c"));
    }
}
