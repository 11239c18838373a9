//! Load the eBPF object with this kernel's offsets, and attach what the plan
//! says. Everything we create is owned by `Loaded`: programs, links and maps
//! are file descriptors, never pinned, so the kernel frees them whenever
//! the process ends (normally, by signal, or by SIGKILL).

use std::path::Path;

use aya::programs::{BtfTracePoint, Program, RawTracePoint, TracePoint};
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
                    Some(d) => format!(
                        "device {d} (mounted on {})",
                        mounts
                            .iter()
                            .map(|m| m.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
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
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        // id parent maj:min root mountpoint opts ... - fstype source superopts
        let Some(sep) = f.iter().position(|x| *x == "-") else {
            continue;
        };
        let (Some(majmin), Some(mp), Some(fstype)) = (f.get(2), f.get(4), f.get(sep + 1)) else {
            continue;
        };
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
        let Ok(meta) = std::fs::symlink_metadata(root) else {
            continue;
        };
        let dev = meta.dev();
        if meta.ino() == ino {
            return true;
        }
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for ent in rd.flatten() {
                seen += 1;
                if seen > BOUND {
                    tracing::warn!(
                        "stopped looking for inode {ino} after {BOUND} entries; assuming it exists"
                    );
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

/// Why `iomap:iomap_iter` is left out of a start.
const NO_DAX_MOUNT: &str = "not attached yet: no ext2/ext4/xfs filesystem is mounted on a DAX-capable device (it only sees DAX write(2) teardowns; attached once one is mounted)";

/// Whether a DAX `write(2)` can happen on what is mounted now: an
/// ext2/ext4/xfs mount (of `dev`, when given) on a block device whose queue
/// says `dax` 1 (a partition's is its disk's). Unreadable sysfs counts as yes.
fn dax_mounted(dev: Option<Dev>) -> bool {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return true;
    };
    let sysfs = Path::new("/sys/dev/block").exists();
    dax_mounted_in(&text, dev, |majmin| {
        let base = Path::new("/sys/dev/block").join(majmin);
        [base.join("queue/dax"), base.join("../queue/dax")]
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok())
            .map(|v| v.trim() == "1")
    }) || !sysfs
}

/// [`dax_mounted`] over `mountinfo` text; `queue_dax` answers for a
/// `MAJ:MIN` (None: unknown, counted as DAX).
fn dax_mounted_in(
    mountinfo: &str,
    dev: Option<Dev>,
    queue_dax: impl Fn(&str) -> Option<bool>,
) -> bool {
    mountinfo.lines().any(|line| {
        // id parent maj:min root mountpoint opts ... - fstype source superopts
        let f: Vec<&str> = line.split_whitespace().collect();
        let Some(sep) = f.iter().position(|x| *x == "-") else {
            return false;
        };
        let (Some(majmin), Some(fstype)) = (f.get(2), f.get(sep + 1)) else {
            return false;
        };
        matches!(*fstype, "ext2" | "ext4" | "xfs")
            && dev.is_none_or(|d| majmin.parse::<Dev>().is_ok_and(|m| m == d))
            && queue_dax(majmin).unwrap_or(true)
    })
}

/// Our programs, loaded and attached. Dropping it detaches and unloads all.
pub struct Loaded {
    pub ebpf: Ebpf,
    pub plan: AttachPlan,
    /// How long loading and attaching took (start to ready).
    pub ready_after: std::time::Duration,
    /// `iomap:iomap_iter`, left out at start for want of a DAX mount: what
    /// attaching it once one appears needs ([`Loaded::attach_on_dax_mount`]).
    deferred: Option<Deferred>,
}

struct Deferred {
    dev: Option<Dev>,
    btf: Option<Btf>,
}

impl Loaded {
    /// `iomap:iomap_iter` waits for a DAX filesystem to be mounted.
    pub fn waits_for_dax_mount(&self) -> bool {
        self.deferred.is_some()
    }

    /// Attach `iomap:iomap_iter` if a DAX filesystem is mounted now (at
    /// start there was none, so it was left out). A live source calls this
    /// now and then: without it, a DAX `write(2)`'s own teardown of a hole
    /// page would go unseen, and its findings would not be withdrawn.
    /// Returns what happened, to tell the user; `None` while there is no
    /// DAX mount yet (or nothing waits).
    pub fn attach_on_dax_mount(&mut self) -> Option<String> {
        if !dax_mounted(self.deferred.as_ref()?.dev) {
            return None;
        }
        let d = self.deferred.take()?;
        let waiting =
            |e: &Entry| matches!(&e.status, plan::Status::Unsupported(why) if why == NO_DAX_MOUNT);
        self.plan.notes.retain(|n| !n.contains(NO_DAX_MOUNT));
        let mut failed = Vec::new();
        for b in self.plan.backend.order() {
            let Some(i) = self
                .plan
                .entries
                .iter()
                .position(|e| e.backend == b && waiting(e))
            else {
                continue;
            };
            match attach_one(&mut self.ebpf, d.btf.as_ref(), &self.plan.entries[i]) {
                Ok(()) => {
                    let e = &mut self.plan.entries[i];
                    e.status = plan::Status::Used;
                    let by = format!("{} {}", b.name(), e.symbol);
                    let symbol = e.symbol;
                    for e in self.plan.entries.iter_mut().filter(|e| waiting(e)) {
                        e.status = plan::Status::Available;
                    }
                    if let Some(c) = self
                        .plan
                        .coverage
                        .iter_mut()
                        .find(|c| c.step == Step::Invalidate)
                    {
                        c.by.push(by);
                    }
                    return Some(format!("a DAX filesystem is mounted now: attached {symbol} ({}), for DAX write(2) teardowns", b.name()));
                }
                Err(err) => {
                    let msg = short_error(&err.to_string());
                    failed.push(format!("{}: {msg}", b.name()));
                    self.plan.entries[i].status = plan::Status::Failed(msg);
                }
            }
        }
        Some(format!(
            "a DAX filesystem is mounted now, but iomap:iomap_iter could not be attached ({}): DAX write(2) teardowns are not seen",
            failed.join("; ")
        ))
    }
}

fn raise_memlock() {
    let lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
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
    let loader = std::thread::spawn(|| {
        let t = std::time::Instant::now();
        let (l, parsed) = loader_without_kernel_btf();
        tracing::debug!(
            "start-up: aya's loader ready after {:.3}s (kernel BTF parsed: {parsed})",
            t.elapsed().as_secs_f64()
        );
        l
    });
    let root = tracefs::find_or_mount()?;
    tracing::debug!(
        "start-up: checks and tracefs {:.3}s",
        t0.elapsed().as_secs_f64()
    );
    let req = Request {
        backend: filter.backend,
        btf_file: filter.btf.clone(),
    };
    let desc = plan::describe(Some(&root), depth, &req)?;
    let t_described = t0.elapsed();
    let mut plan = plan::plan(&desc, filter.backend);
    if plan.missing_required().contains(&Step::FaultBegin)
        && plan.missing_required().contains(&Step::Lookup)
    {
        return Err(AttachError::NothingToAttach);
    }
    // `iomap_iter` fires two or three times per I/O on every iomap
    // filesystem, DAX or not, and serves only DAX write(2) teardowns: its
    // dispatch is two thirds of an empty program's cost per read
    // (docs/performance.md, "The floor"). Without a DAX device mounted there
    // is nothing for it to see. (`plan` marks its predicted choice Used;
    // `choose` starts over from both.)
    let mut skipped_iter = false;
    if !dax_mounted(filter.dev) {
        for e in plan.entries.iter_mut().filter(|e| {
            e.probe == Some(tracer_common::Probe::IomapIter)
                && matches!(e.status, plan::Status::Available | plan::Status::Used)
        }) {
            e.status = plan::Status::Unsupported(NO_DAX_MOUNT.into());
            skipped_iter = true;
        }
    }
    raise_memlock();

    let mut config = Config {
        fields: plan.fields,
        btf: plan.offsets,
        ..Config::default()
    };
    if let Some(d) = filter.dev {
        config.filter_dev = d.to_kernel();
    }
    if let Some(i) = filter.ino {
        config.filter_ino_on = 1;
        config.filter_ino = i;
    }
    // tp_btf and fentry resolve their target in the running kernel's BTF,
    // by ids btf_scan found while describing it: built beside the object load.
    let ids = desc
        .btf
        .as_ref()
        .filter(|f| f.kernel && plan.kernel.btf)
        .map(|f| f.vmlinux_ids.clone())
        .unwrap_or_default();
    let target_btf = std::thread::spawn(move || aya_target_btf(&ids));
    let t_btf = std::time::Instant::now();
    let mut loader = loader.join().map_err(|_| AttachError::LoaderPanicked)?;
    let t_btf = t_btf.elapsed();
    let t_obj = std::time::Instant::now();
    loader.override_global(CONFIG_GLOBAL, &config, true);
    // The function programs' entry/return pairing map is preallocated (an
    // LRU hash): without a function backend in the plan, a token size.
    let per_task = aya::util::nr_cpus().map_or(PER_TASK_MAX, per_task_entries);
    loader
        .map_max_entries(FAULTS_MAP, per_task)
        .map_max_entries(WRITES_MAP, per_task);
    if plan.entries.iter().any(|e| {
        e.backend.family() == plan::Family::Function
            && matches!(e.status, plan::Status::Available | plan::Status::Used)
    }) {
        loader.map_max_entries(CALLS_MAP, per_task);
    } else {
        loader.map_max_entries(CALLS_MAP, CALLS_UNUSED);
    }
    let mut ebpf = loader.load(OBJECT)?;
    let t_obj = t_obj.elapsed();
    let t_attach = std::time::Instant::now();
    let kbtf = target_btf.join().map_err(|_| AttachError::LoaderPanicked)?;
    let preloaded = preload(&mut ebpf, kbtf.as_ref(), &plan);
    let t_preload = t_attach.elapsed();
    // A kernel that refuses a backend outright (EPERM: fentry on a locked-down
    // kernel) refuses it for every function: try it once, not per function.
    let mut refused: Vec<Backend> = Vec::new();
    plan.checked = "attached";
    plan.choose(&mut |e| {
        if refused.contains(&e.backend) {
            return Err(format!(
                "not tried: this kernel refused {} above",
                e.backend.name()
            ));
        }
        attach_one(&mut ebpf, kbtf.as_ref(), e).map_err(|err| {
            let msg = short_error(&err.to_string());
            if msg.contains("Operation not permitted") {
                refused.push(e.backend);
            }
            msg
        })
    });
    if skipped_iter {
        plan.notes
            .push(format!("invalidate: iomap:iomap_iter {NO_DAX_MOUNT}"));
    }
    for n in &plan.notes {
        tracing::info!("{n}");
    }
    tracing::info!(
        "start-up: described the kernel in {:.3}s, then waited {:.3}s for aya's loader, loaded the object in {:.3}s, loaded and attached programs in {:.3}s ({preloaded} verified on {} threads in {:.3}s)",
        t_described.as_secs_f64(),
        t_btf.as_secs_f64(),
        t_obj.as_secs_f64(),
        t_attach.elapsed().as_secs_f64(),
        PRELOAD_THREADS,
        t_preload.as_secs_f64()
    );
    if plan.used().next().is_none() {
        return Err(AttachError::NothingToAttach);
    }
    let deferred = skipped_iter.then_some(Deferred {
        dev: filter.dev,
        btf: kbtf,
    });
    Ok(Loaded {
        ebpf,
        plan,
        ready_after: t0.elapsed(),
        deferred,
    })
}

/// aya's loader, without the kernel BTF it would parse for nothing.
///
/// aya 0.14's `EbpfLoader::new` always parses all of vmlinux's BTF, for the
/// CO-RE relocations of an object; ours has none (offsets come in `CONFIG`,
/// see `no_core_relocations` below), so the parse (up to a second under TCG,
/// one of the largest pieces of start-up there) serves nothing, and aya has no
/// constructor without it (`.btf(None)` only drops it afterwards). Run on its
/// own thread, this takes that thread out of the shared filesystem context
/// (`unshare(CLONE_FS)`: root directory and cwd become the thread's own) and
/// chroots it into `/sys/kernel/btf`, where `/sys/kernel/btf/vmlinux` does
/// not resolve: the read fails at once and the loader starts without BTF,
/// exactly as after `.btf(None)`. Nothing outside the thread changes; the
/// thread ends here. Without the privilege to chroot (CAP_SYS_CHROOT) it
/// parses as before. Returns the loader and whether the BTF was parsed.
fn loader_without_kernel_btf() -> (EbpfLoader<'static>, bool) {
    let dir = c"/sys/kernel/btf";
    // SAFETY: plain syscalls with a valid NUL-terminated path; they change
    // only this thread's filesystem context once unshared from the others'.
    let isolated = unsafe {
        libc::unshare(libc::CLONE_FS) == 0
            && libc::chroot(dir.as_ptr()) == 0
            && libc::chdir(c"/".as_ptr()) == 0
    };
    let mut l = EbpfLoader::new();
    if isolated {
        // Whatever this thread saw, the loader relocates nothing.
        l.btf(None);
        return (l, false);
    }
    (l, true)
}

/// The function programs' pairing map (tracer-ebpf/src/funcs.rs) and its
/// size when no function program can run.
const CALLS_MAP: &str = "CALLS";
const CALLS_UNUSED: u32 = 64;
/// The per-task maps of faults and DAX writes in progress (tracer-ebpf/src/main.rs).
const FAULTS_MAP: &str = "FAULTS";
const WRITES_MAP: &str = "WRITES";
/// Entries per possible CPU of the per-task maps, and their bounds. They are
/// preallocated LRU hashes: the kernel builds every entry at map creation
/// (under TCG ~40 ms per 65,536), and an entry lives only while its task is
/// inside a fault, a DAX write or a probed function. The kernel's LRU keeps
/// up to 128 free entries on each CPU's own list, so a map much smaller than
/// CPUs x 128 could evict a live entry while free ones sit on other CPUs.
const PER_TASK_PER_CPU: u32 = 512;
const PER_TASK_MIN: u32 = 4096;
const PER_TASK_MAX: u32 = 65536;

/// Size of the per-task LRU maps for `ncpus` possible CPUs.
fn per_task_entries(ncpus: usize) -> u32 {
    u32::try_from(ncpus)
        .unwrap_or(u32::MAX)
        .saturating_mul(PER_TASK_PER_CPU)
        .clamp(PER_TASK_MIN, PER_TASK_MAX)
}

/// Program loads (the verifier) run on this many threads: the guests and
/// the host have 2 CPUs, and privileged loads verify concurrently.
const PRELOAD_THREADS: usize = 2;

/// Load (verify) the programs the plan's choice will attach, on
/// [`PRELOAD_THREADS`] threads, before `choose` attaches them one by one
/// (each `attach_one` then finds its program loaded). Under TCG the verifier
/// is most of start-up's kernel time. Which programs: a dry run of `choose`
/// that takes each entry whose programs load; one that fails to load is
/// refused in the next dry run, as the real choice will refuse it, so its
/// fallback is loaded too. Failures are left for `attach_one` to meet again
/// and report. Returns how many programs were loaded here.
#[allow(
    clippy::while_let_loop,
    reason = "in a `while let` the queue's lock guard would live through each program's load, one verifier at a time"
)]
fn preload(ebpf: &mut Ebpf, btf: Option<&Btf>, plan: &AttachPlan) -> usize {
    let mut failed: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut loaded = 0;
    // Each round falls back one backend further; there are five.
    for _ in 0..5 {
        let mut want: Vec<(String, &'static str)> = Vec::new();
        let mut dry = plan.clone();
        dry.choose(&mut |e| {
            let progs = entry_programs(e);
            if progs.is_empty() || progs.iter().any(|(n, _)| failed.contains(n)) {
                return Err(String::new());
            }
            for p in progs {
                if !want.iter().any(|w| w.0 == p.0) {
                    want.push(p);
                }
            }
            Ok(())
        });
        let jobs: Vec<(&str, &mut Program, &'static str)> = ebpf
            .programs_mut()
            .filter(|(_, p)| p.fd().is_err())
            .filter_map(|(n, p)| want.iter().find(|w| w.0 == n).map(|w| (n, p, w.1)))
            .collect();
        if jobs.is_empty() {
            break;
        }
        let queue = std::sync::Mutex::new(jobs);
        let fails = std::sync::Mutex::new(Vec::new());
        let done = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..PRELOAD_THREADS {
                s.spawn(|| loop {
                    let Some((name, prog, target)) = queue.lock().map_or(None, |mut q| q.pop())
                    else {
                        break;
                    };
                    match load_program(prog, target, btf) {
                        Ok(()) => {
                            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(e) => {
                            let e = e.into_attach(name);
                            tracing::debug!(
                                "start-up: {name} did not load ({}); its entry will fall back",
                                short_error(&e.to_string())
                            );
                            if let Ok(mut f) = fails.lock() {
                                f.push(name.to_string());
                            }
                        }
                    }
                });
            }
        });
        loaded += done.into_inner();
        let fails = fails.into_inner().unwrap_or_default();
        if fails.is_empty() {
            break;
        }
        failed.extend(fails);
    }
    loaded
}

/// The programs `attach_one` loads for entry `e`, each with its load target
/// (the function, or the tracepoint's event name).
fn entry_programs(e: &Entry) -> Vec<(String, &'static str)> {
    let Some(probe) = e.probe else {
        return Vec::new();
    };
    if e.backend.family() == plan::Family::Function {
        return super::funcs::programs(e.backend, probe)
            .into_iter()
            .map(|n| (n, e.symbol))
            .collect();
    }
    let ev = probe.tracepoint().split_once(':').map_or("", |x| x.1);
    e.backend
        .program(probe)
        .map(|n| vec![(n, ev)])
        .unwrap_or_default()
}

/// Why [`load_program`] did not load a program.
pub(super) enum LoadError {
    NoBtf,
    NotTracing,
    Program(aya::programs::ProgramError),
}

impl LoadError {
    /// As the attach path reports it, for program `name`.
    pub(super) fn into_attach(self, name: &str) -> AttachError {
        match self {
            LoadError::NoBtf => AttachError::NoBtf,
            LoadError::NotTracing => AttachError::NoProgram(name.to_string()),
            LoadError::Program(source) => AttachError::ProgramNamed {
                program: name.to_string(),
                source,
            },
        }
    }
}

/// Load (verify) one program unless it is loaded already: the one place
/// programs are loaded, by [`preload`] ahead of time and by the attach path
/// for whatever preload did not reach. `target` is the function (fentry,
/// fexit) or the tracepoint's event name (tp_btf).
pub(super) fn load_program(
    prog: &mut Program,
    target: &str,
    btf: Option<&Btf>,
) -> Result<(), LoadError> {
    if prog.fd().is_ok() {
        return Ok(());
    }
    let btf = || btf.ok_or(LoadError::NoBtf);
    let r = match prog {
        Program::TracePoint(p) => p.load(),
        Program::BtfTracePoint(p) => p.load(target, btf()?),
        Program::RawTracePoint(p) => p.load(),
        Program::FEntry(p) => p.load(target, btf()?),
        Program::FExit(p) => p.load(target, btf()?),
        Program::KProbe(p) => p.load(),
        _ => return Err(LoadError::NotTracing),
    };
    r.map_err(LoadError::Program)
}

/// A stand-in for vmlinux's BTF that answers aya's tp_btf and fentry/fexit
/// target lookups with the kernel's own type ids, which btf_scan found while
/// describing the kernel. aya takes those targets only from a parsed
/// `aya::Btf` and asks it one thing, `id_by_type_name_kind` (the first type
/// of that kind and name, by id); parsing vmlinux's whole BTF for it took up
/// to a second under TCG. Here each name sits at its kernel id, placeholder
/// records (nameless pointers) in between.
pub fn aya_target_btf(ids: &[(String, u32, bool)]) -> Option<Btf> {
    const PTR: u32 = 2;
    const TYPEDEF: u32 = 8;
    const FUNC: u32 = 12;
    let max = ids.iter().map(|x| x.1).max()?;
    let mut strs = vec![0u8];
    let mut named: std::collections::HashMap<u32, (u32, u32)> = std::collections::HashMap::new();
    for (name, id, func) in ids {
        named.entry(*id).or_insert_with(|| {
            let off = u32::try_from(strs.len()).unwrap_or(u32::MAX);
            strs.extend_from_slice(name.as_bytes());
            strs.push(0);
            (off, if *func { FUNC } else { TYPEDEF })
        });
    }
    let mut types = Vec::with_capacity(max as usize * 12);
    for id in 1..=max {
        let (name, kind) = named.get(&id).copied().unwrap_or((0, PTR));
        for w in [name, kind << 24, 0] {
            types.extend_from_slice(&w.to_ne_bytes());
        }
    }
    let (tlen, slen) = (
        u32::try_from(types.len()).ok()?,
        u32::try_from(strs.len()).ok()?,
    );
    // btf_header: magic, version 1, flags 0, hdr_len 24, type_off, type_len, str_off, str_len.
    let mut blob = Vec::with_capacity(24 + types.len() + strs.len());
    blob.extend_from_slice(&0xeb9f_u16.to_ne_bytes());
    blob.extend_from_slice(&[1, 0]);
    for w in [24, 0, tlen, tlen, slen] {
        blob.extend_from_slice(&w.to_ne_bytes());
    }
    blob.extend_from_slice(&types);
    blob.extend_from_slice(&strs);
    match Btf::parse(&blob, aya::Endianness::default()) {
        Ok(b) => Some(b),
        Err(e) => {
            tracing::warn!(
                "cannot build the BTF of attach targets ({e}); tp_btf and fentry are unavailable"
            );
            None
        }
    }
}

/// One line of an attach error: aya puts the whole verifier log in it; keep
/// the syscall's error and the verifier's verdict (its last real line).
pub fn short_error(e: &str) -> String {
    let Some((head, log)) = e.split_once("Verifier output:") else {
        return e.lines().next().unwrap_or(e).to_string();
    };
    let verdict = log
        .lines()
        .map(str::trim)
        .rfind(|l| {
            !l.is_empty()
                && !l.starts_with("verification time")
                && !l.starts_with("stack depth")
                && !l.starts_with("processed ")
                && *l != ")"
        })
        .unwrap_or("");
    let head = head.trim().trim_end_matches('.');
    if verdict.is_empty() {
        head.to_string()
    } else {
        format!("{head}: verifier: {verdict}")
    }
}

/// Load (unless [`preload`] did) and attach one entry's program.
fn attach_one(ebpf: &mut Ebpf, btf: Option<&Btf>, e: &Entry) -> Result<(), AttachError> {
    let Some(probe) = e.probe else {
        return Err(AttachError::NoProgram(e.symbol.to_string()));
    };
    if e.backend.family() == plan::Family::Function {
        return super::funcs::attach(ebpf, btf, e.backend, probe, e.symbol);
    }
    let name = e
        .backend
        .program(probe)
        .ok_or_else(|| AttachError::NoProgram(e.symbol.to_string()))?;
    let (cat, ev) = probe.tracepoint().split_once(':').expect("category:event");
    let perr = |source| AttachError::ProgramNamed {
        program: name.clone(),
        source,
    };
    let prog = ebpf
        .program_mut(&name)
        .ok_or_else(|| AttachError::NoProgram(name.clone()))?;
    load_program(prog, ev, btf).map_err(|e| e.into_attach(&name))?;
    match e.backend {
        Backend::Tracepoint => {
            let p: &mut TracePoint = prog.try_into().map_err(perr)?;
            p.attach(cat, ev).map_err(perr)?;
        }
        Backend::TpBtf => {
            let p: &mut BtfTracePoint = prog.try_into().map_err(perr)?;
            p.attach().map_err(perr)?;
        }
        Backend::RawTp => {
            let p: &mut RawTracePoint = prog.try_into().map_err(perr)?;
            p.attach(ev).map_err(perr)?;
        }
        Backend::Fentry | Backend::Kprobe => unreachable!("function family handled above"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aya_obj::btf::BtfKind;

    #[test]
    fn per_task_maps_scale_with_cpus_within_bounds() {
        assert_eq!(per_task_entries(2), PER_TASK_MIN);
        assert_eq!(per_task_entries(16), 8192);
        assert_eq!(per_task_entries(4096), PER_TASK_MAX);
        // Never below the kernel's per-CPU free lists: 128 per CPU.
        for n in [1, 2, 8, 64, 128, 1024] {
            assert!(per_task_entries(n) as usize >= 128 * n.min(512), "{n} CPUs");
        }
    }

    #[test]
    fn iomap_iter_only_with_a_dax_device_mounted() {
        let info = "36 25 7:1 / /mnt/loop rw,relatime shared:1 - ext4 /dev/loop1 rw\n\
                    37 25 259:0 / /mnt/pmem rw,relatime shared:2 - xfs /dev/pmem0 rw,dax=always\n\
                    38 25 0:5 / /dev rw shared:3 - devtmpfs udev rw\n";
        let dax = |m: &str| match m {
            "7:1" => Some(false),
            "259:0" => Some(true),
            _ => None,
        };
        assert!(dax_mounted_in(info, None, dax), "pmem0 is DAX");
        assert!(
            !dax_mounted_in(info, Some(Dev { major: 7, minor: 1 }), dax),
            "--dev the loop device: no DAX write can be traced"
        );
        assert!(dax_mounted_in(
            info,
            Some(Dev {
                major: 259,
                minor: 0
            }),
            dax
        ));
        let loop_only = info.lines().next().unwrap();
        assert!(!dax_mounted_in(loop_only, None, dax));
        // A device sysfs cannot tell about counts as DAX (attach, as before).
        assert!(dax_mounted_in(loop_only, None, |_| None));
        // Not a DAX filesystem type: never counts.
        assert!(!dax_mounted_in(
            "38 25 259:0 / /dev rw - tmpfs tmp rw\n",
            None,
            dax
        ));
    }

    /// The loader runs without the kernel's BTF (`loader_without_kernel_btf`):
    /// right only while the object asks for no CO-RE relocation.
    #[test]
    fn no_core_relocations() {
        if OBJECT.is_empty() {
            eprintln!("stub eBPF object; skipped");
            return;
        }
        let obj = aya_obj::Object::parse(OBJECT).expect("the embedded object parses");
        assert!(
            !obj.has_btf_relocations(),
            "the eBPF object has CO-RE relocations: the loader must keep the kernel's BTF"
        );
    }

    /// The stand-in answers every lookup the plan can make as aya's own
    /// parse of the running kernel's BTF does (ids, and absence).
    #[test]
    fn target_btf_answers_as_the_kernels_own() {
        let Ok(real) = Btf::from_sys_fs() else {
            eprintln!("no kernel BTF here; skipped");
            return;
        };
        let desc =
            plan::describe(None, plan::Depth::Attachable, &Request::default()).expect("describe");
        let facts = desc.btf.expect("kernel BTF facts");
        assert!(!facts.vmlinux_ids.is_empty());
        let ours = aya_target_btf(&facts.vmlinux_ids).expect("built");
        let mut asked = 0;
        for c in plan::TABLE {
            let (name, kind) = match c.family {
                plan::Family::Function => (c.symbol.to_string(), BtfKind::Func),
                plan::Family::Tracepoint => (
                    format!(
                        "btf_trace_{}",
                        c.symbol.split_once(':').map_or(c.symbol, |x| x.1)
                    ),
                    BtfKind::Typedef,
                ),
            };
            let want = real.id_by_type_name_kind(&name, kind).ok();
            assert_eq!(ours.id_by_type_name_kind(&name, kind).ok(), want, "{name}");
            asked += usize::from(want.is_some());
        }
        assert!(
            asked > 5,
            "the running kernel has tp_btf targets for the table's tracepoints"
        );
        // A function is not a typedef, and an unknown name is unknown.
        assert!(ours
            .id_by_type_name_kind("btf_trace_iomap_iter", BtfKind::Func)
            .is_err());
        assert!(ours
            .id_by_type_name_kind("no_such_function_here", BtfKind::Func)
            .is_err());
        assert!(aya_target_btf(&[]).is_none());
    }
}
