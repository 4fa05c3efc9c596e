//! `cargo xtask deb`: `target/deb/edge-sensor_<version>_amd64.deb`, a native
//! Debian package: the release binary (XDP object embedded), the systemd
//! unit, the example configuration as a conffile, manual pages and shell
//! completions generated from the CLI, and the Debian metadata; checked
//! with lintian when it is installed. Built with dpkg-deb directly: the
//! package is one binary and its files, which debhelper's whole
//! source-package machinery would not make simpler.

use std::{
    fs,
    io::Write,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::{
    run,
    util::{self, root},
};

const PACKAGE: &str = "edge-sensor";
const MAINTAINER: &str = "edge-sensor developers <edge-sensor@example.org>";

/// Builds the package (`debug`: from the debug build, for the install
/// test; the package's mechanics are the same); returns its path.
pub fn deb(debug: bool) -> Result<PathBuf> {
    let binary = run::build(!debug)?;
    let version = env!("CARGO_PKG_VERSION");
    let out = run::target_dir().join("deb");
    let stage = out.join(format!("{PACKAGE}_{version}_amd64"));
    if stage.exists() {
        fs::remove_dir_all(&stage)?;
    }
    fs::create_dir_all(&stage)?;
    let at = |p: &str| stage.join(p);

    // The binary, stripped of its debug information (Debian policy 10.1).
    let bin = at("usr/bin/edge-sensor");
    copy(&binary, &bin, 0o755)?;
    util::run(
        Command::new("strip")
            .args(["--strip-unneeded", "--remove-section=.comment"])
            .arg(&bin),
    )?;

    // The unit, pointing at the packaged binary.
    let unit = fs::read_to_string(root().join("contrib/systemd/edge-sensor.service"))?
        .replace("/usr/local/bin/edge-sensor", "/usr/bin/edge-sensor");
    write(&at("lib/systemd/system/edge-sensor.service"), &unit, 0o644)?;
    let config = root().join("sensor/config/edge-sensor.example.toml");
    copy(&config, &at("etc/edge-sensor/edge-sensor.toml"), 0o644)?;

    // Manual pages and completions, from the binary itself.
    let generated = out.join("generated");
    let _ = fs::remove_dir_all(&generated);
    for what in ["man", "completions"] {
        util::run(
            Command::new(&bin)
                .args(["generate", what])
                .arg(generated.join(what)),
        )?;
    }
    let man = at("usr/share/man/man1");
    fs::create_dir_all(&man)?;
    for page in fs::read_dir(generated.join("man"))? {
        let page = page?.path();
        let name = page
            .file_name()
            .expect("a file")
            .to_string_lossy()
            .into_owned();
        gzip(&page, &man.join(format!("{name}.gz")))?;
    }
    let comp = generated.join("completions");
    copy(
        &comp.join("edge-sensor.bash"),
        &at("usr/share/bash-completion/completions/edge-sensor"),
        0o644,
    )?;
    copy(
        &comp.join("_edge-sensor"),
        &at("usr/share/zsh/vendor-completions/_edge-sensor"),
        0o644,
    )?;
    copy(
        &comp.join("edge-sensor.fish"),
        &at("usr/share/fish/vendor_completions.d/edge-sensor.fish"),
        0o644,
    )?;

    // Documentation: copyright (DEP-5) and the changelog of a native package.
    let doc = at("usr/share/doc/edge-sensor");
    write(&doc.join("copyright"), COPYRIGHT, 0o644)?;
    let changelog = format!(
        "{PACKAGE} ({version}) unstable; urgency=medium\n\n  * Release {version}: see the README.\n\n -- {MAINTAINER}  Sat, 05 Dec 2026 00:00:00 +0000\n"
    );
    let plain = out.join("changelog");
    fs::write(&plain, changelog)?;
    gzip(&plain, &doc.join("changelog.gz"))?;

    // Control files.
    let control = at("DEBIAN");
    fs::create_dir_all(&control)?;
    fs::set_permissions(&control, fs::Permissions::from_mode(0o755))?;
    let depends = shlib_depends(&bin, &out)?;
    let installed_kib = du_kib(&stage)?;
    write(
        &control.join("control"),
        &format!(
            "Package: {PACKAGE}\nVersion: {version}\nArchitecture: amd64\nMaintainer: {MAINTAINER}\n\
             Installed-Size: {installed_kib}\nDepends: {depends}\nSection: net\nPriority: optional\n\
             Homepage: https://github.com/edge-sensor/edge-sensor\n\
             Description: DDoS detection and mitigation from sFlow/IPFIX telemetry\n \
             edge-sensor parses sFlow v5, IPFIX and NetFlow datagrams in an XDP program,\n \
             counts traffic per destination in the kernel, detects volumetric attacks\n \
             within seconds, fingerprints them, and announces BGP Flow Spec (RFC 8955/8956)\n \
             filters or RTBH (RFC 7999) routes to the routers, withdrawn when the attack\n \
             subsides.\n"
        ),
        0o644,
    )?;
    write(
        &control.join("conffiles"),
        "/etc/edge-sensor/edge-sensor.toml\n",
        0o644,
    )?;
    write(&control.join("postinst"), POSTINST, 0o755)?;
    write(&control.join("postrm"), POSTRM, 0o755)?;
    write(&control.join("md5sums"), &md5sums(&stage)?, 0o644)?;

    let deb = out.join(format!("{PACKAGE}_{version}_amd64.deb"));
    util::run(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(&stage)
            .arg(&deb),
    )?;
    eprintln!("xtask: deb: {}", deb.display());
    lintian(&deb)?;
    Ok(deb)
}

/// lintian's verdict: errors fail the build, warnings are printed.
fn lintian(deb: &Path) -> Result<()> {
    let out = match Command::new("lintian")
        .args(["--no-tag-display-limit"])
        .arg(deb)
        .output()
    {
        Ok(out) => out,
        Err(e) => bail!("lintian: {e} (scripts/setup installs it)"),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    eprint!("{text}");
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("E:")).collect();
    if !errors.is_empty() {
        bail!("lintian: {} error(s)", errors.len());
    }
    eprintln!("xtask: deb: lintian: no errors");
    Ok(())
}

/// `Depends` from the binary's shared libraries (dpkg-shlibdeps, which
/// wants a debian/control beside it).
fn shlib_depends(bin: &Path, out: &Path) -> Result<String> {
    let work = out.join("shlibdeps");
    fs::create_dir_all(work.join("debian"))?;
    fs::write(
        work.join("debian/control"),
        format!("Source: {PACKAGE}\n\nPackage: {PACKAGE}\nArchitecture: amd64\n"),
    )?;
    let o = Command::new("dpkg-shlibdeps")
        .current_dir(&work)
        .args(["-O", "-e"])
        .arg(bin)
        .output()
        .context("dpkg-shlibdeps (package dpkg-dev)")?;
    if !o.status.success() {
        bail!("dpkg-shlibdeps: {}", String::from_utf8_lossy(&o.stderr));
    }
    let text = String::from_utf8_lossy(&o.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .map(str::to_owned)
        .context("dpkg-shlibdeps gave no shlibs:Depends")
}

fn du_kib(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in walk(dir)? {
        total += fs::metadata(&entry)?.len().div_ceil(1024);
    }
    Ok(total)
}

fn md5sums(stage: &Path) -> Result<String> {
    let mut files: Vec<PathBuf> = walk(stage)?
        .into_iter()
        .filter(|p| !p.starts_with(stage.join("DEBIAN")))
        .collect();
    files.sort();
    let mut out = String::new();
    for f in files {
        let o = Command::new("md5sum").arg(&f).output()?;
        let sum = String::from_utf8_lossy(&o.stdout);
        let sum = sum.split_whitespace().next().unwrap_or_default();
        let rel = f.strip_prefix(stage).expect("inside the stage");
        out.push_str(&format!("{sum}  {}\n", rel.display()));
    }
    Ok(out)
}

/// Every regular file under `dir`.
fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    Ok(out)
}

fn copy(from: &Path, to: &Path, mode: u32) -> Result<()> {
    fs::create_dir_all(to.parent().expect("a parent"))?;
    fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn write(to: &Path, text: &str, mode: u32) -> Result<()> {
    fs::create_dir_all(to.parent().expect("a parent"))?;
    fs::File::create(to)?.write_all(text.as_bytes())?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// gzip -9n: no name or time stamp, reproducible (policy 12.3).
fn gzip(from: &Path, to: &Path) -> Result<()> {
    let o = Command::new("gzip")
        .args(["-9n", "-c"])
        .arg(from)
        .output()?;
    if !o.status.success() {
        bail!(
            "gzip {}: {}",
            from.display(),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    fs::write(to, o.stdout)?;
    fs::set_permissions(to, fs::Permissions::from_mode(0o644))?;
    Ok(())
}

const COPYRIGHT: &str = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: edge-sensor
Source: https://github.com/edge-sensor/edge-sensor

Files: *
Copyright: 2026 edge-sensor developers
License: MIT or Apache-2.0

License: MIT or Apache-2.0
 The software is dual-licensed under the MIT license and the Apache License,
 Version 2.0, at your option.
 .
 On Debian systems, the full text of the Apache License, Version 2.0 can be
 found in /usr/share/common-licenses/Apache-2.0.
 .
 Permission is hereby granted, free of charge, to any person obtaining a copy
 of this software and associated documentation files (the \"Software\"), to deal
 in the Software without restriction, including without limitation the rights
 to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
 copies of the Software, and to permit persons to whom the Software is
 furnished to do so, subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included in
 all copies or substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
 IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
 FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
 AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
 LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
 OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN
 THE SOFTWARE.
";

/// The unit is registered but neither enabled nor started: a sensor must be
/// configured (interfaces, own networks, peers) before it runs. These are
/// the snippets dh_installsystemd --no-enable --no-start writes.
const POSTINST: &str = "#!/bin/sh
set -e
if [ \"$1\" = \"configure\" ] || [ \"$1\" = \"abort-upgrade\" ] || [ \"$1\" = \"abort-deconfigure\" ] || [ \"$1\" = \"abort-remove\" ] ; then
	if deb-systemd-helper debian-installed 'edge-sensor.service'; then
		# The unit was installed before: keep its state as it is.
		deb-systemd-helper unmask 'edge-sensor.service' >/dev/null || true
		if deb-systemd-helper --quiet was-enabled 'edge-sensor.service'; then
			deb-systemd-helper enable 'edge-sensor.service' >/dev/null || true
		fi
	fi
	deb-systemd-helper update-state 'edge-sensor.service' >/dev/null || true
	if [ -d /run/systemd/system ]; then
		systemctl --system daemon-reload >/dev/null || true
	fi
fi
";

const POSTRM: &str = "#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ \"$1\" = remove ]; then
	systemctl --system daemon-reload >/dev/null || true
fi
if [ \"$1\" = \"remove\" ]; then
	if [ -x \"/usr/bin/deb-systemd-helper\" ]; then
		deb-systemd-helper mask 'edge-sensor.service' >/dev/null || true
	fi
fi
if [ \"$1\" = \"purge\" ]; then
	if [ -x \"/usr/bin/deb-systemd-helper\" ]; then
		deb-systemd-helper purge 'edge-sensor.service' >/dev/null || true
		deb-systemd-helper unmask 'edge-sensor.service' >/dev/null || true
	fi
fi
";
