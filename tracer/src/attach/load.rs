//! Load the eBPF object with this kernel's offsets, and attach what the plan
//! says. Everything we create is owned by `Loaded`: programs, links and maps
//! are file descriptors, never pinned, so the kernel frees them whenever
//! the process ends (normally, by signal, or by SIGKILL).

use std::path::Path;

use aya::programs::{BtfTracePoint, RawTracePoint, TracePoint};
use aya::{Btf, Ebpf, EbpfLoader};
use tracer_common::{Config, CONFIG_GLOBAL};

use super::plan::{Backend, Choice, Entry, Request, Step};
use super::{plan, privileges, tracefs, AttachError, AttachPlan};
use crate::event::Dev;

/// The embedded eBPF object (empty when built with DAXTRACE_EBPF=stub).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer-ebpf"));

/// Whether this build carries its eBPF programs (not a `DAXTRACE_EBPF=stub` build).
pub fn has_programs() -> bool {
    !OBJECT.is_empty()
}

/// Kernel-side filter (untraced files cost one comparison), and how to attach.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub dev: Option<Dev>,
    pub ino: Option<u64>,
    /// `--backend`.
    pub backend: Choice,
    /// `--btf FILE`: struct offsets from this file instead of the kernel's BTF.
    pub btf: Option<std::path::PathBuf>,
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
/// attach per the plan, falling back where the kernel refuses a backend.
pub fn load(filter: &Filter) -> Result<Loaded, AttachError> {
    load_described(filter, plan::Depth::Attachable)
}

/// `load`, describing the kernel to `depth` (`probe` wants everything).
pub fn load_described(filter: &Filter, depth: plan::Depth) -> Result<Loaded, AttachError> {
    let t0 = std::time::Instant::now();
    if !privileges::can_trace() {
        return Err(AttachError::NotPrivileged);
    }
    if OBJECT.is_empty() {
        return Err(AttachError::StubObject);
    }
    filter.validate()?;
    // Struct offsets and the typed backends come from BTF; a `--btf` file
    // stands in for a kernel without it (classic tracepoints then still work).
    if filter.btf.is_none() && !Path::new(super::btf::VMLINUX).exists() {
        return Err(AttachError::NoBtf);
    }
    // aya parses the kernel's whole BTF twice: in `EbpfLoader::new` (for CO-RE
    // relocations, which our object has none of) and for tp_btf/fentry
    // targets. Under TCG each parse takes up to a second, so both run on
    // their own threads while the kernel is described.
    let kernel_btf = Path::new(super::btf::VMLINUX).exists().then(|| std::thread::spawn(|| Btf::from_sys_fs().ok()));
    let loader = std::thread::spawn(EbpfLoader::new);
    let root = tracefs::find_or_mount()?;
    tracing::debug!("start-up: checks and tracefs {:.3}s", t0.elapsed().as_secs_f64());
    let req = Request { backend: filter.backend, btf_file: filter.btf.clone() };
    let desc = plan::describe(Some(&root), depth, &req)?;
    let t_described = t0.elapsed();
    let mut plan = plan::plan(&desc, filter.backend);
    if plan.missing_required().contains(&Step::FaultBegin) && plan.missing_required().contains(&Step::Lookup) {
        return Err(AttachError::NothingToAttach);
    }
    raise_memlock();

    let mut config = Config { fields: plan.fields, btf: plan.offsets, ..Config::default() };
    if let Some(d) = filter.dev {
        config.filter_dev = d.to_kernel();
    }
    if let Some(i) = filter.ino {
        config.filter_ino_on = 1;
        config.filter_ino = i;
    }
    let t_btf = std::time::Instant::now();
    // tp_btf and fentry resolve their target in the running kernel's BTF.
    let kbtf = kernel_btf.and_then(|j| j.join().ok().flatten()).filter(|_| plan.kernel.btf);
    let mut loader = loader.join().map_err(|_| AttachError::LoaderPanicked)?;
    let t_btf = t_btf.elapsed();
    let t_obj = std::time::Instant::now();
    let mut ebpf = loader.override_global(CONFIG_GLOBAL, &config, true).load(OBJECT)?;
    let t_obj = t_obj.elapsed();
    let t_attach = std::time::Instant::now();
    // A kernel that refuses a backend outright (EPERM: fentry on a locked-down
    // kernel) refuses it for every function: try it once, not per function.
    let mut refused: Vec<Backend> = Vec::new();
    plan.checked = "attached";
    plan.choose(&mut |e| {
        if refused.contains(&e.backend) {
            return Err(format!("not tried: this kernel refused {} above", e.backend.name()));
        }
        attach_one(&mut ebpf, kbtf.as_ref(), e).map_err(|err| {
            let msg = short_error(&err.to_string());
            if msg.contains("Operation not permitted") {
                refused.push(e.backend);
            }
            msg
        })
    });
    for n in &plan.notes {
        tracing::info!("{n}");
    }
    tracing::info!(
        "start-up: described the kernel in {:.3}s, then waited {:.3}s for the BTF parsed beside it, loaded the object in {:.3}s, loaded and attached programs in {:.3}s",
        t_described.as_secs_f64(),
        t_btf.as_secs_f64(),
        t_obj.as_secs_f64(),
        t_attach.elapsed().as_secs_f64()
    );
    if plan.used().next().is_none() {
        return Err(AttachError::NothingToAttach);
    }
    Ok(Loaded { ebpf, plan, ready_after: t0.elapsed() })
}

/// One line of an attach error: aya puts the whole verifier log in it; keep
/// the syscall's error and the verifier's verdict (its last real line).
pub fn short_error(e: &str) -> String {
    let Some((head, log)) = e.split_once("Verifier output:") else { return e.lines().next().unwrap_or(e).to_string() };
    let verdict = log
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with("verification time") && !l.starts_with("stack depth") && !l.starts_with("processed ") && *l != ")")
        .unwrap_or("");
    let head = head.trim().trim_end_matches('.');
    if verdict.is_empty() { head.to_string() } else { format!("{head}: verifier: {verdict}") }
}

/// Load and attach one entry's program.
fn attach_one(ebpf: &mut Ebpf, btf: Option<&Btf>, e: &Entry) -> Result<(), AttachError> {
    let Some(probe) = e.probe else { return Err(AttachError::NoProgram(e.symbol.to_string())) };
    if e.backend.family() == plan::Family::Function {
        return super::funcs::attach(ebpf, btf, e.backend, probe, e.symbol);
    }
    let name = e.backend.program(probe).ok_or_else(|| AttachError::NoProgram(e.symbol.to_string()))?;
    let (cat, ev) = probe.tracepoint().split_once(':').expect("category:event");
    let perr = |source| AttachError::ProgramNamed { program: name.clone(), source };
    let prog = ebpf.program_mut(&name).ok_or_else(|| AttachError::NoProgram(name.clone()))?;
    match e.backend {
        Backend::Tracepoint => {
            let p: &mut TracePoint = prog.try_into().map_err(perr)?;
            p.load().map_err(perr)?;
            p.attach(cat, ev).map_err(perr)?;
        }
        Backend::TpBtf => {
            let btf = btf.ok_or(AttachError::NoBtf)?;
            let p: &mut BtfTracePoint = prog.try_into().map_err(perr)?;
            p.load(ev, btf).map_err(perr)?;
            p.attach().map_err(perr)?;
        }
        Backend::RawTp => {
            let p: &mut RawTracePoint = prog.try_into().map_err(perr)?;
            p.load().map_err(perr)?;
            p.attach(ev).map_err(perr)?;
        }
        Backend::Fentry | Backend::Kprobe => unreachable!("function family handled above"),
    }
    Ok(())
}
