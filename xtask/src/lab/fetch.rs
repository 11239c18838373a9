//! Fetch what the lab boots: Debian's kernels, QEMU 7.2 with its firmware
//! and libraries, busybox-static, and the host tools this machine lacks
//! (kmod's depmod/modprobe, cpio). Everything comes from `apt-get download`
//! into one cache folder and is unpacked with `dpkg-deb -x`, never
//! installed: installing Debian's QEMU would replace the machine's newer
//! qemu-utils (DESIGN.md §5).
//!
//! A second run finds every .deb named in the cache's lists and touches no
//! network and no apt at all.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};

use crate::util::output;

/// Packages the lab runs from (their missing library closure is added by
/// asking apt what an install would bring, `apt-get -s install`).
const TOOLS: &[&str] = &[
    "qemu-system-x86",
    "qemu-system-common",
    "qemu-system-data",
    "seabios",
    "ipxe-qemu",
    "busybox-static",
    "kmod",
    "cpio",
];

/// A kernel the lab knows how to find: `--kernel 6.1` / `6.12`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum KernelLine {
    V6_1,
    V6_12,
}

impl KernelLine {
    pub const ALL: [KernelLine; 2] = [KernelLine::V6_1, KernelLine::V6_12];

    pub fn label(self) -> &'static str {
        match self {
            KernelLine::V6_1 => "6.1",
            KernelLine::V6_12 => "6.12",
        }
    }

    /// The meta package whose dependency names the newest exact image
    /// (`linux-image-6.1.0-NN-amd64`, `linux-image-6.12.NNN+deb12-amd64`).
    fn meta(self) -> &'static str {
        match self {
            KernelLine::V6_1 => "linux-image-amd64",
            KernelLine::V6_12 => "linux-image-6.12-amd64",
        }
    }

    fn accepts(self, pkg: &str) -> bool {
        match self {
            KernelLine::V6_1 => pkg.starts_with("linux-image-6.1.0-") && pkg.ends_with("-amd64"),
            KernelLine::V6_12 => {
                pkg.starts_with("linux-image-6.12.") && pkg.ends_with("+deb12-amd64")
            }
        }
    }
}

/// The unpacked tools.
pub struct Tools {
    pub qemu: PathBuf,
    /// `QEMU_MODULE_DIR` (accel-tcg-x86_64.so lives there).
    pub qemu_modules: PathBuf,
    /// `-L` folders: seabios, ipxe, qemu-system-data.
    pub firmware: Vec<PathBuf>,
    pub busybox: PathBuf,
    /// kmod's one binary; depmod and modprobe are absolute symlinks to
    /// /bin/kmod in the package, so it runs under those names via argv[0].
    pub kmod: PathBuf,
    pub cpio: PathBuf,
    /// LD_LIBRARY_PATH for the unpacked binaries.
    pub lib_path: String,
}

impl Tools {
    /// A command for an unpacked binary, with its libraries found.
    pub fn command(&self, bin: &Path) -> Command {
        let mut c = Command::new(bin);
        c.env("LD_LIBRARY_PATH", &self.lib_path);
        c
    }

    /// kmod as `depmod` or `modprobe`.
    pub fn kmod(&self, name: &str) -> Command {
        use std::os::unix::process::CommandExt as _;
        let mut c = self.command(&self.kmod);
        c.arg0(name);
        c
    }
}

/// An unpacked kernel image package.
pub struct Kernel {
    pub package: String,
    /// `uname -r` of the guest, e.g. `6.12.117+deb12-amd64`.
    pub release: String,
    pub vmlinuz: PathBuf,
    /// `<root>/lib/modules/<release>` (or under usr/ on merged layouts).
    pub modules: PathBuf,
}

/// The cache folder: `$DAXTRACE_LAB_CACHE`, else `<repo>/lab-cache`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("DAXTRACE_LAB_CACHE")
        .map_or_else(|| crate::util::root().join("lab-cache"), PathBuf::from)
}

pub struct Fetcher {
    cache: PathBuf,
    debs: PathBuf,
    updated: bool,
    /// Bytes downloaded by this run.
    pub downloaded: u64,
}

impl Fetcher {
    pub fn new(cache: &Path) -> Result<Self> {
        let debs = cache.join("debs");
        fs::create_dir_all(&debs)
            .with_context(|| format!("cannot create the lab cache {}", debs.display()))?;
        Ok(Self {
            cache: cache.to_path_buf(),
            debs,
            updated: false,
            downloaded: 0,
        })
    }

    /// The tools, downloading and unpacking them on first use.
    pub fn tools(&mut self) -> Result<Tools> {
        let list = self.cache.join("tools.list");
        let debs = match self.cached_list(&list) {
            Some(d) => d,
            None => {
                let pkgs = self.tool_closure()?;
                let files = self.download(&pkgs)?;
                write_list(&list, &files)?;
                files
            }
        };
        let root = self.cache.join("tools");
        unpack_all(
            &debs.iter().map(|f| self.debs.join(f)).collect::<Vec<_>>(),
            &root,
        )?;
        let lib_path = ["usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu"]
            .iter()
            .map(|d| root.join(d).display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        let t = Tools {
            qemu: root.join("usr/bin/qemu-system-x86_64"),
            qemu_modules: root.join("usr/lib/x86_64-linux-gnu/qemu"),
            firmware: ["usr/share/seabios", "usr/lib/ipxe/qemu", "usr/share/qemu"]
                .iter()
                .map(|d| root.join(d))
                .collect(),
            busybox: root.join("bin/busybox"),
            kmod: first_existing(&root, &["bin/kmod", "usr/bin/kmod"])?,
            cpio: first_existing(&root, &["bin/cpio", "usr/bin/cpio"])?,
            lib_path,
        };
        for p in [
            &t.qemu,
            &t.busybox,
            &t.qemu_modules.join("accel-tcg-x86_64.so"),
        ] {
            if !p.exists() {
                bail!(
                    "{} is missing after unpacking; delete {} and run again",
                    p.display(),
                    self.cache.display()
                );
            }
        }
        Ok(t)
    }

    /// The newest kernel of a line, downloading and unpacking it on first use.
    pub fn kernel(&mut self, line: KernelLine) -> Result<Kernel> {
        let list = self.cache.join(format!("kernel-{}.list", line.label()));
        let deb = match self.cached_list(&list) {
            Some(d) => d.into_iter().next().context("empty kernel list")?,
            None => {
                self.apt_update()?;
                let deps = output(Command::new("apt-cache").args(["depends", line.meta()]))
                    .unwrap_or_default();
                let pkg = deps
                    .lines()
                    .filter_map(|l| l.trim().strip_prefix("Depends: "))
                    .find(|p| line.accepts(p))
                    .with_context(|| {
                        format!("apt knows no kernel for {} (apt-cache depends {}); check the Debian sources", line.label(), line.meta())
                    })?
                    .to_string();
                let files = self.download(&[pkg])?;
                write_list(&list, &files)?;
                files
                    .into_iter()
                    .next()
                    .context("apt-get download wrote nothing")?
            }
        };
        // linux-image-6.1.0-56-amd64_6.1.192-2_amd64.deb -> linux-image-6.1.0-56-amd64
        let package = deb.split('_').next().unwrap_or(&deb).to_string();
        let release = package.trim_start_matches("linux-image-").to_string();
        let root = self.cache.join("kernels").join(&package);
        unpack_all(&[self.debs.join(&deb)], &root)?;
        let vmlinuz = root.join("boot").join(format!("vmlinuz-{release}"));
        let modules = ["lib/modules", "usr/lib/modules"]
            .iter()
            .map(|d| root.join(d).join(&release))
            .find(|p| p.is_dir())
            .with_context(|| format!("no modules folder for {release} in {}", root.display()))?;
        if !vmlinuz.exists() {
            bail!("{} is missing in {deb}", vmlinuz.display());
        }
        Ok(Kernel {
            package,
            release,
            vmlinuz,
            modules,
        })
    }

    /// The file names of a list when every one is in the cache.
    fn cached_list(&self, list: &Path) -> Option<Vec<String>> {
        let text = fs::read_to_string(list).ok()?;
        let files: Vec<String> = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        (!files.is_empty() && files.iter().all(|f| self.debs.join(f).exists())).then_some(files)
    }

    fn apt_update(&mut self) -> Result<()> {
        if self.updated {
            return Ok(());
        }
        eprintln!("lab: apt-get update (package lists for the first download)");
        let st = Command::new("apt-get")
            .args(["update", "-q"])
            .status()
            .context("cannot run apt-get")?;
        if !st.success() {
            bail!("apt-get update failed ({st}); the lab needs Debian's package lists once");
        }
        self.updated = true;
        Ok(())
    }

    /// Any set of Debian packages (plus the libraries this machine lacks for
    /// them), downloaded once into the cache and unpacked into
    /// `<cache>/<name>`, never installed. Returns that root and the
    /// LD_LIBRARY_PATH its binaries need.
    pub fn unpacked(&mut self, name: &str, packages: &[&str]) -> Result<(PathBuf, String)> {
        let list = self.cache.join(format!("{name}.list"));
        let debs = match self.cached_list(&list) {
            Some(d) => d,
            None => {
                let pkgs = self.closure(packages)?;
                let files = self.download(&pkgs)?;
                write_list(&list, &files)?;
                files
            }
        };
        let root = self.cache.join(name);
        unpack_all(
            &debs.iter().map(|f| self.debs.join(f)).collect::<Vec<_>>(),
            &root,
        )?;
        let lib_path = ["usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu"]
            .iter()
            .map(|d| root.join(d).display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        Ok((root, lib_path))
    }

    /// The tools plus every package an install of them would add: the
    /// libraries QEMU needs that this machine lacks.
    fn tool_closure(&mut self) -> Result<Vec<String>> {
        self.closure(TOOLS)
    }

    /// `packages` plus every package an install of them would add.
    fn closure(&mut self, packages: &[&str]) -> Result<Vec<String>> {
        self.apt_update()?;
        let out = Command::new("apt-get")
            .args(["-s", "install", "--no-install-recommends"])
            .args(packages)
            .output()
            .context("cannot run apt-get -s install")?;
        if !out.status.success() {
            bail!(
                "apt-get -s install {} failed: {}",
                packages.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let mut pkgs: Vec<String> = packages.iter().map(|s| (*s).to_string()).collect();
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(rest) = l.strip_prefix("Inst ") {
                let name = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                if !pkgs.contains(&name) {
                    pkgs.push(name);
                }
            }
        }
        Ok(pkgs)
    }

    /// `apt-get download` into the cache; returns the .deb file names.
    fn download(&mut self, pkgs: &[String]) -> Result<Vec<String>> {
        self.apt_update()?;
        // One apt-cache call: each one parses the whole package list.
        let size: u64 = output(
            Command::new("apt-cache")
                .args(["show", "--no-all-versions"])
                .args(pkgs),
        )
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            l.strip_prefix("Size: ")
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum();
        eprintln!(
            "lab: downloading {} package(s), {:.1} MB: {}",
            pkgs.len(),
            size as f64 / 1e6,
            pkgs.join(" ")
        );
        let before = deb_names(&self.debs)?;
        // Run as root: apt's _apt sandbox user cannot write into the cache.
        let st = Command::new("apt-get")
            .args(["download", "-o", "APT::Sandbox::User=root"])
            .args(pkgs)
            .current_dir(&self.debs)
            .status()
            .context("cannot run apt-get download")?;
        if !st.success() {
            bail!("apt-get download {} failed ({st})", pkgs.join(" "));
        }
        let mut files = Vec::new();
        for p in pkgs {
            let f = deb_names(&self.debs)?
                .into_iter()
                .filter(|f| f.split('_').next() == Some(p.as_str()))
                .max()
                .with_context(|| format!("apt-get download left no .deb for {p}"))?;
            if !before.contains(&f) {
                self.downloaded += fs::metadata(self.debs.join(&f))?.len();
            }
            files.push(f);
        }
        Ok(files)
    }
}

fn deb_names(dir: &Path) -> Result<Vec<String>> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir)? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".deb") {
            v.push(name);
        }
    }
    Ok(v)
}

fn write_list(path: &Path, files: &[String]) -> Result<()> {
    fs::write(path, files.join("\n") + "\n")
        .with_context(|| format!("cannot write {}", path.display()))
}

/// `dpkg-deb -x` every package into one root, once (a stamp names the set).
fn unpack_all(debs: &[PathBuf], root: &Path) -> Result<()> {
    let stamp = root.join(".unpacked");
    let want: String = debs
        .iter()
        .map(|d| format!("{}\n", d.file_name().unwrap_or_default().to_string_lossy()))
        .collect();
    if fs::read_to_string(&stamp).is_ok_and(|s| s == want) {
        return Ok(());
    }
    if root.exists() {
        fs::remove_dir_all(root).with_context(|| format!("cannot clear {}", root.display()))?;
    }
    fs::create_dir_all(root)?;
    eprintln!(
        "lab: unpacking {} package(s) into {}",
        debs.len(),
        root.display()
    );
    for d in debs {
        let st = Command::new("dpkg-deb")
            .arg("-x")
            .arg(d)
            .arg(root)
            .status()
            .context("cannot run dpkg-deb")?;
        if !st.success() {
            bail!(
                "dpkg-deb -x {} failed ({st}); delete it and run again",
                d.display()
            );
        }
    }
    fs::write(&stamp, want)?;
    Ok(())
}

fn first_existing(root: &Path, rels: &[&str]) -> Result<PathBuf> {
    rels.iter()
        .map(|r| root.join(r))
        .find(|p| p.exists())
        .with_context(|| format!("none of {} in {}", rels.join(", "), root.display()))
}
