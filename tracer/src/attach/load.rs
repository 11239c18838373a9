//! Load the eBPF object with this kernel's offsets, and attach what the plan
//! says. Everything we create is owned by `Loaded`: programs, links and maps
//! are file descriptors, never pinned, so the kernel frees them whenever
//! the process ends (normally, by signal, or by SIGKILL).

use std::path::Path;

use aya::programs::TracePoint;
use aya::{Ebpf, EbpfLoader};
use tracer_common::{Config, Probe, CONFIG_GLOBAL};

use super::{plan, privileges, tracefs, AttachError, AttachPlan};
use crate::event::Dev;

/// The embedded eBPF object (empty when built with DAXTRACE_EBPF=stub).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer-ebpf"));

/// Kernel-side filter: untraced files cost one comparison.
#[derive(Clone, Copy, Debug, Default)]
pub struct Filter {
    pub dev: Option<Dev>,
    pub ino: Option<u64>,
}

impl Filter {
    /// Check that what the user named exists, so a typo is an error rather
    /// than a silent empty trace.
    pub fn validate(&self) -> Result<(), AttachError> {
        if let Some(dev) = self.dev {
            if !Path::new(&format!("/sys/dev/block/{dev}")).exists() {
                return Err(AttachError::NoSuchDevice(dev.to_string()));
            }
        }
        if let Some(ino) = self.ino {
            let mounts = mountpoints(self.dev);
            if !mounts.is_empty() && !inode_exists(&mounts, ino) {
                let where_ = match self.dev {
                    Some(d) => format!("device {d} (mounted on {})", mounts.iter().map(|m| m.display().to_string()).collect::<Vec<_>>().join(", ")),
                    None => "any mounted ext2/ext4/xfs filesystem".to_string(),
                };
                return Err(AttachError::NoSuchInode { ino, where_ });
            }
        }
        Ok(())
    }
}

/// Mount points of `dev`, or of every DAX-capable filesystem when `None`.
fn mountpoints(dev: Option<Dev>) -> Vec<std::path::PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else { return Vec::new() };
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        // id parent maj:min root mountpoint opts ... - fstype source superopts
        let Some(sep) = f.iter().position(|x| *x == "-") else { continue };
        let (Some(majmin), Some(mp), Some(fstype)) = (f.get(2), f.get(4), f.get(sep + 1)) else { continue };
        let matches = match dev {
            Some(d) => majmin.parse::<Dev>().is_ok_and(|m| m == d),
            None => matches!(*fstype, "ext2" | "ext4" | "xfs"),
        };
        if matches && f.get(3) == Some(&"/") {
            out.push(std::path::PathBuf::from(mp.replace("\\040", " ")));
        }
    }
    out
}

/// Walk the mounts (same filesystem only) looking for `ino`. Bounded, so a
/// huge filesystem cannot stall start-up: past the bound we assume it exists.
fn inode_exists(mounts: &[std::path::PathBuf], ino: u64) -> bool {
    use std::os::unix::fs::MetadataExt;
    const BOUND: usize = 2_000_000;
    let mut seen = 0usize;
    for root in mounts {
        let Ok(meta) = std::fs::symlink_metadata(root) else { continue };
        let dev = meta.dev();
        if meta.ino() == ino {
            return true;
        }
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&dir) else { continue };
            for ent in rd.flatten() {
                seen += 1;
                if seen > BOUND {
                    tracing::warn!("stopped looking for inode {ino} after {BOUND} entries; assuming it exists");
                    return true;
                }
                let Ok(m) = ent.metadata() else { continue };
                if m.dev() != dev {
                    continue;
                }
                if m.ino() == ino {
                    return true;
                }
                if m.is_dir() {
                    stack.push(ent.path());
                }
            }
        }
    }
    false
}

/// Our programs, loaded and attached. Dropping it detaches and unloads all.
pub struct Loaded {
    pub ebpf: Ebpf,
    pub plan: AttachPlan,
    /// How long loading and attaching took (start to ready).
    pub ready_after: std::time::Duration,
}

fn raise_memlock() {
    let lim = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: plain syscall with a valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) } != 0 {
        let e = std::io::Error::last_os_error();
        // Kernels from 5.11 account BPF memory to the cgroup instead: only
        // older ones can fail for want of it.
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        if plan::version(&release) >= (5, 11) {
            tracing::info!("setrlimit(RLIMIT_MEMLOCK) refused ({e}); not needed on this kernel");
        } else {
            tracing::warn!("setrlimit(RLIMIT_MEMLOCK) refused ({e}); loading may fail for want of locked memory");
        }
    }
}

/// Check privileges and kernel, load the object with this kernel's offsets,
/// attach every tracepoint the plan uses.
pub fn load(filter: &Filter) -> Result<Loaded, AttachError> {
    let t0 = std::time::Instant::now();
    if !privileges::can_trace() {
        return Err(AttachError::NotPrivileged);
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(AttachError::NoBtf);
    }
    if OBJECT.is_empty() {
        return Err(AttachError::StubObject);
    }
    filter.validate()?;
    let root = tracefs::find_or_mount()?;
    let mut plan = plan::resolve(Some(&root), plan::Depth::Attachable);
    if !plan.used_probes().any(|p| matches!(p, Probe::DaxPteFault | Probe::IomapIterDstmap)) {
        return Err(AttachError::NothingToAttach);
    }
    raise_memlock();

    let mut config = Config { fields: plan.fields, ..Config::default() };
    if let Some(d) = filter.dev {
        config.filter_dev = d.to_kernel();
    }
    if let Some(i) = filter.ino {
        config.filter_ino_on = 1;
        config.filter_ino = i;
    }
    let mut ebpf = EbpfLoader::new().override_global(CONFIG_GLOBAL, &config, true).load(OBJECT)?;

    let used: Vec<Probe> = plan.used_probes().collect();
    for probe in used {
        let name = probe.program();
        let (cat, ev) = probe.tracepoint().split_once(':').expect("category:event");
        let prog: &mut TracePoint = ebpf
            .program_mut(name)
            .ok_or(AttachError::Program { program: name, source: aya::programs::ProgramError::UnexpectedProgramType })?
            .try_into()
            .map_err(|source| AttachError::Program { program: name, source })?;
        let r = prog.load().and_then(|()| prog.attach(cat, ev).map(|_| ()));
        if let Err(e) = r {
            // One tracepoint failing is reported, not fatal; the plan says so.
            tracing::warn!("{}: not attached: {e}", probe.tracepoint());
            plan.mark_failed(probe, e.to_string());
        }
    }
    Ok(Loaded { ebpf, plan, ready_after: t0.elapsed() })
}
