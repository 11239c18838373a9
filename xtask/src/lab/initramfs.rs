//! The guest's initramfs: busybox-static, the kernel modules DAX needs
//! (decompressed on the host), the daxtrace binary and the workload with the
//! shared libraries they load, the real mkfs tools, the tracepoint list, and
//! `/init` (guest.sh).

use std::collections::BTreeSet;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _, Result};

use super::fetch::{Kernel, Tools};

/// Modules loaded in order (their dependencies first, as modprobe says).
/// `crc32c_generic` backs ext4's and xfs's metadata checksums; `9p` with
/// `9pnet_virtio` and (a module on 6.1) `virtio_pci` carry the results out.
const MODULES: &[&str] = &[
    "virtio_pci",
    "9pnet_virtio",
    "9p",
    "crc32c_generic",
    "libnvdimm",
    "nd_e820",
    "nd_pmem",
    "ext4",
    "xfs",
];

/// Modules that may be built in or absent without harm.
const OPTIONAL: &[&str] = &["virtio_pci", "crc32c_generic"];

/// Host binaries the guest runs by full path (busybox has its own mke2fs).
const HOST_BINARIES: &[&str] = &["/usr/sbin/mkfs.ext4", "/usr/sbin/mkfs.xfs"];

const INIT: &str = include_str!("guest.sh");

pub struct Inputs<'a> {
    pub tools: &'a Tools,
    pub kernel: &'a Kernel,
    /// None: boot with the workload alone.
    pub daxtrace: Option<&'a Path>,
    pub workload: &'a Path,
    /// `category:event` of every tracepoint daxtrace attaches.
    pub events: &'a [&'a str],
}

/// Build `<dir>/initramfs.cpio` from a staging tree in `<dir>/root`.
pub fn build(inp: &Inputs<'_>, dir: &Path) -> Result<PathBuf> {
    let root = dir.join("root");
    if root.exists() {
        fs::remove_dir_all(&root).with_context(|| format!("cannot clear {}", root.display()))?;
    }
    for d in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc",
        "lab",
        "lib/modules",
        "proc",
        "sys",
        "dev",
        "tmp",
        "mnt",
        "share",
    ] {
        fs::create_dir_all(root.join(d))?;
    }
    // An initial console before /init mounts devtmpfs (only root may mknod;
    // /init redirects to /dev/console again after mounting).
    let _ = Command::new("mknod")
        .arg(root.join("dev/console"))
        .args(["c", "5", "1"])
        .status();

    copy(&inp.tools.busybox, &root.join("bin/busybox"))?;
    write_exec(&root.join("init"), INIT)?;
    fs::write(root.join("lab/events"), inp.events.join("\n") + "\n")?;

    let order = modules(inp.tools, inp.kernel, &root.join("lib/modules"))?;
    fs::write(root.join("lab/modules"), order.join("\n") + "\n")?;

    let mut libs = BTreeSet::new();
    for (src, dst) in [
        (inp.daxtrace, "usr/bin/daxtrace"),
        (Some(inp.workload), "usr/bin/lab-workload"),
    ] {
        let Some(src) = src else { continue };
        copy(src, &root.join(dst))?;
        libs.extend(shared_libs(src)?);
    }
    for b in HOST_BINARIES {
        let p = Path::new(b);
        if !p.exists() {
            bail!("{b} is missing on this machine; run `cargo xtask setup` (it installs e2fsprogs and xfsprogs)");
        }
        copy(p, &root.join(b.trim_start_matches('/')))?;
        libs.extend(shared_libs(p)?);
    }
    if Path::new("/etc/mke2fs.conf").exists() {
        copy(Path::new("/etc/mke2fs.conf"), &root.join("etc/mke2fs.conf"))?;
    }
    for l in &libs {
        copy(l, &root.join(l.strip_prefix("/").unwrap_or(l)))?;
    }

    let out = dir.join("initramfs.cpio");
    cpio(inp.tools, &root, &out)?;
    Ok(out)
}

/// Resolve, copy (decompressing .ko.xz) and order the modules; returns
/// their file names in load order.
fn modules(tools: &Tools, k: &Kernel, dst: &Path) -> Result<Vec<String>> {
    let base = k
        .modules
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .context("modules folder layout")?;
    if !k.modules.join("modules.dep").exists() {
        let st = tools
            .kmod("depmod")
            .arg("-b")
            .arg(base)
            .arg(&k.release)
            .status()
            .context("cannot run the unpacked depmod")?;
        if !st.success() {
            bail!("depmod for {} failed ({st})", k.release);
        }
    }
    let mut order: Vec<String> = Vec::new();
    for m in MODULES {
        // -C /dev/null: the host's modprobe.d must not change what loads.
        let out = tools
            .kmod("modprobe")
            .args(["-C", "/dev/null", "--show-depends", "-d"])
            .arg(base)
            .args(["-S", &k.release, m])
            .output()
            .context("cannot run the unpacked modprobe")?;
        if !out.status.success() {
            if OPTIONAL.contains(m) {
                continue;
            }
            bail!(
                "modprobe --show-depends {m} for {} failed: {}",
                k.release,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // "insmod /path/mod.ko.xz [params]" or "builtin mod"
            let Some(path) = line
                .strip_prefix("insmod ")
                .and_then(|r| r.split_whitespace().next())
            else {
                continue;
            };
            let src = Path::new(path);
            let name = src
                .file_name()
                .context("module path")?
                .to_string_lossy()
                .trim_end_matches(".xz")
                .to_string();
            if order.contains(&name) {
                continue;
            }
            let target = dst.join(&name);
            if path.ends_with(".xz") {
                let mut input = std::io::BufReader::new(
                    fs::File::open(src).with_context(|| format!("open {path}"))?,
                );
                let mut outf = fs::File::create(&target)?;
                lzma_rs::xz_decompress(&mut input, &mut outf)
                    .map_err(|e| anyhow::anyhow!("xz {path}: {e:?}"))?;
            } else if path.ends_with(".zst") || path.ends_with(".gz") {
                bail!("{path}: only plain and .xz modules are handled");
            } else {
                copy(src, &target)?;
            }
            order.push(name);
        }
    }
    Ok(order)
}

/// The shared libraries (and the loader) a dynamic binary needs, from ldd.
fn shared_libs(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .context("cannot run ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // Static binaries: "not a dynamic executable".
        return Ok(Vec::new());
    }
    let mut v = Vec::new();
    for l in text.lines() {
        if l.contains("not found") {
            bail!(
                "{} needs a library this machine lacks: {}",
                bin.display(),
                l.trim()
            );
        }
        let path = match l.split_once("=>") {
            Some((_, r)) => r.split_whitespace().next(),
            None => l.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            v.push(PathBuf::from(p));
        }
    }
    Ok(v)
}

/// Copy following symlinks, creating the parent, keeping the mode.
fn copy(src: &Path, dst: &Path) -> Result<()> {
    if let Some(p) = dst.parent() {
        fs::create_dir_all(p)?;
    }
    fs::copy(src, dst)
        .with_context(|| format!("cannot copy {} to {}", src.display(), dst.display()))?;
    Ok(())
}

fn write_exec(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::write(path, text)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// newc archive of the staging tree, written by the unpacked cpio.
fn cpio(tools: &Tools, root: &Path, out: &Path) -> Result<()> {
    let mut names = Vec::new();
    walk(root, Path::new("."), &mut names)?;
    let mut child = tools
        .command(&tools.cpio)
        .args(["--quiet", "-o", "-H", "newc"])
        .current_dir(root)
        .stdin(Stdio::piped())
        .stdout(fs::File::create(out)?)
        .spawn()
        .context("cannot run the unpacked cpio")?;
    {
        let mut stdin = child.stdin.take().context("cpio stdin")?;
        for n in &names {
            writeln!(stdin, "{}", n.display())?;
        }
    }
    let st = child.wait()?;
    if !st.success() {
        bail!("cpio failed ({st})");
    }
    Ok(())
}

fn walk(base: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    out.push(rel.to_path_buf());
    let full = base.join(rel);
    if fs::symlink_metadata(&full)?.is_dir() {
        let mut entries: Vec<_> = fs::read_dir(&full)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(fs::DirEntry::file_name);
        for e in entries {
            walk(base, &rel.join(e.file_name()), out)?;
        }
    }
    Ok(())
}
