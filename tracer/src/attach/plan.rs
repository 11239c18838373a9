//! The attach plan: one declarative table of step x backend x candidate,
//! resolved against the running kernel (tracefs, kallsyms, BTF).
//!
//! Only the tracepoint backend has programs today; kprobe and fentry rows
//! are resolved and reported (what this kernel would offer) so `probe`
//! tells the whole story, and so those backends can join without a new table.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tracer_common::{Probe, TpFields};

use super::tracefs;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    FaultBegin,
    FaultEnd,
    Lookup,
    HoleLoad,
    Insert,
    Invalidate,
}

impl Step {
    pub const ALL: [Step; 6] = [Step::FaultBegin, Step::FaultEnd, Step::Lookup, Step::HoleLoad, Step::Insert, Step::Invalidate];
    pub fn name(self) -> &'static str {
        match self {
            Step::FaultBegin => "fault begin",
            Step::FaultEnd => "fault end",
            Step::Lookup => "block lookup",
            Step::HoleLoad => "hole load",
            Step::Insert => "insert mapping",
            Step::Invalidate => "invalidation",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    Tracepoint,
    Kprobe,
    Fentry,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Tracepoint => "tracepoint",
            Backend::Kprobe => "kprobe",
            Backend::Fentry => "fentry",
        }
    }
}

/// One row of the table.
#[derive(Clone, Copy, Debug)]
pub struct Candidate {
    pub step: Step,
    pub backend: Backend,
    /// `category:event` for tracepoints, a kernel function otherwise.
    pub symbol: &'static str,
    /// The program that implements it (tracepoints only, for now).
    pub probe: Option<Probe>,
    /// Kernel generation note shown by `probe`.
    pub era: &'static str,
}

const fn tp(step: Step, probe: Probe, era: &'static str) -> Candidate {
    Candidate { step, backend: Backend::Tracepoint, symbol: probe_tracepoint(probe), probe: Some(probe), era }
}

const fn func(step: Step, backend: Backend, symbol: &'static str, era: &'static str) -> Candidate {
    Candidate { step, backend, symbol, probe: None, era }
}

const fn probe_tracepoint(p: Probe) -> &'static str {
    match p {
        Probe::None => "",
        Probe::DaxPteFault => "fs_dax:dax_pte_fault",
        Probe::DaxPteFaultDone => "fs_dax:dax_pte_fault_done",
        Probe::DaxPmdFault => "fs_dax:dax_pmd_fault",
        Probe::DaxPmdFaultDone => "fs_dax:dax_pmd_fault_done",
        Probe::DaxLoadHole => "fs_dax:dax_load_hole",
        Probe::DaxPmdLoadHole => "fs_dax:dax_pmd_load_hole",
        Probe::DaxInsertMapping => "fs_dax:dax_insert_mapping",
        Probe::DaxPmdInsertMapping => "fs_dax:dax_pmd_insert_mapping",
        Probe::IomapIterDstmap => "iomap:iomap_iter_dstmap",
        Probe::Ext4ExtMapBlocksExit => "ext4:ext4_ext_map_blocks_exit",
        Probe::XfsIomapAlloc => "xfs:xfs_iomap_alloc",
        Probe::Ext4PunchHole => "ext4:ext4_punch_hole",
        Probe::Ext4TruncateEnter => "ext4:ext4_truncate_enter",
        Probe::Ext4CollapseRange => "ext4:ext4_collapse_range",
        Probe::Ext4ZeroRange => "ext4:ext4_zero_range",
        Probe::XfsFreeFileSpace => "xfs:xfs_free_file_space",
    }
}

use Backend::Kprobe;
use Step::{FaultBegin, FaultEnd, HoleLoad, Insert, Invalidate, Lookup};

/// DESIGN.md §1's table, as data.
pub const TABLE: &[Candidate] = &[
    tp(FaultBegin, Probe::DaxPteFault, "4.11+"),
    tp(FaultBegin, Probe::DaxPmdFault, "4.9+"),
    tp(FaultEnd, Probe::DaxPteFaultDone, "4.11+"),
    tp(FaultEnd, Probe::DaxPmdFaultDone, "4.9+"),
    tp(Lookup, Probe::IomapIterDstmap, "5.15+"),
    tp(Lookup, Probe::Ext4ExtMapBlocksExit, "ext4"),
    tp(Lookup, Probe::XfsIomapAlloc, "xfs"),
    tp(HoleLoad, Probe::DaxLoadHole, "4.11+"),
    tp(HoleLoad, Probe::DaxPmdLoadHole, "4.9+"),
    tp(Insert, Probe::DaxInsertMapping, "4.11-4.x (never fires on 6.x)"),
    tp(Insert, Probe::DaxPmdInsertMapping, "4.9-4.x (never fires on 6.x)"),
    tp(Invalidate, Probe::Ext4PunchHole, "ext4"),
    tp(Invalidate, Probe::Ext4TruncateEnter, "ext4"),
    tp(Invalidate, Probe::Ext4CollapseRange, "ext4"),
    tp(Invalidate, Probe::Ext4ZeroRange, "ext4"),
    tp(Invalidate, Probe::XfsFreeFileSpace, "xfs"),
    func(FaultBegin, Kprobe, "__dax_fault", "legacy 4.0-4.9"),
    func(FaultBegin, Kprobe, "__dax_pmd_fault", "legacy 4.0-4.9"),
    func(FaultBegin, Kprobe, "dax_iomap_fault", "4.10+"),
    func(FaultBegin, Kprobe, "dax_iomap_pte_fault", "4.10+"),
    func(FaultBegin, Kprobe, "dax_iomap_pmd_fault", "4.10+"),
    func(Lookup, Kprobe, "ext4_dax_mmap_get_block", "legacy"),
    func(Lookup, Kprobe, "ext4_get_block", "legacy"),
    func(Lookup, Kprobe, "ext2_get_block", "legacy"),
    func(Lookup, Kprobe, "xfs_get_blocks_dax_fault", "legacy"),
    func(Lookup, Kprobe, "ext4_iomap_begin", "4.10+"),
    func(Lookup, Kprobe, "ext2_iomap_begin", "4.10+"),
    func(Lookup, Kprobe, "xfs_read_iomap_begin", "5.x+"),
    func(Lookup, Kprobe, "xfs_direct_write_iomap_begin", "5.x+"),
    func(Lookup, Kprobe, "xfs_dax_write_iomap_begin", "6.x"),
    func(Lookup, Kprobe, "xfs_file_iomap_begin", "4.10-5.x"),
    func(HoleLoad, Kprobe, "dax_load_hole", "all (often inlined)"),
    func(HoleLoad, Kprobe, "dax_pmd_load_hole", "4.10+ (often inlined)"),
    func(Insert, Kprobe, "dax_insert_mapping", "legacy"),
    func(Insert, Kprobe, "dax_insert_mapping_entry", "4.10-5.x"),
    func(Insert, Kprobe, "dax_insert_entry", "5.x+"),
    func(Insert, Kprobe, "vmf_insert_mixed", "4.17+"),
    func(Insert, Kprobe, "vmf_insert_pfn_pmd", "4.17+"),
    func(Invalidate, Kprobe, "ext4_punch_hole", "ext4"),
    func(Invalidate, Kprobe, "ext4_truncate", "ext4"),
    func(Invalidate, Kprobe, "xfs_free_file_space", "xfs"),
    func(Invalidate, Kprobe, "truncate_pagecache_range", "all"),
];

/// Slot -> field-name candidates of one tracepoint, oldest names last.
fn field_names(p: Probe) -> &'static [(Slot, &'static [&'static str])] {
    use Slot::*;
    match p {
        Probe::DaxPteFault | Probe::DaxPteFaultDone | Probe::DaxPmdFault | Probe::DaxPmdFaultDone | Probe::DaxLoadHole => {
            &[(Dev, &["dev"]), (Ino, &["ino"]), (Pgoff, &["pgoff"]), (Flags, &["flags"]), (Result, &["result"])]
        }
        Probe::DaxPmdLoadHole | Probe::DaxInsertMapping | Probe::DaxPmdInsertMapping => {
            &[(Dev, &["dev"]), (Ino, &["ino"]), (Pgoff, &["pgoff"])]
        }
        Probe::IomapIterDstmap => {
            &[(Dev, &["dev"]), (Ino, &["ino"]), (Offset, &["offset"]), (Length, &["length"]), (Kind, &["type"]), (Flags, &["flags"])]
        }
        Probe::Ext4ExtMapBlocksExit => &[
            (Dev, &["dev"]),
            (Ino, &["ino"]),
            (Offset, &["lblk"]),
            (Length, &["len"]),
            (Kind, &["mflags"]),
            (Result, &["ret"]),
            (Flags, &["flags"]),
        ],
        Probe::XfsIomapAlloc => &[(Dev, &["dev"]), (Ino, &["ino"]), (Offset, &["startoff"]), (Length, &["blockcount"])],
        Probe::Ext4PunchHole | Probe::Ext4CollapseRange | Probe::Ext4ZeroRange => {
            &[(Dev, &["dev"]), (Ino, &["ino"]), (Offset, &["offset"]), (Length, &["len"]), (Mode, &["mode"])]
        }
        Probe::Ext4TruncateEnter | Probe::XfsFreeFileSpace => &[(Dev, &["dev"]), (Ino, &["ino"])],
        Probe::None => &[],
    }
}

/// Which `TpFields` member a field fills.
#[derive(Clone, Copy, Debug)]
enum Slot {
    Dev,
    Ino,
    Pgoff,
    Flags,
    Result,
    Offset,
    Length,
    Kind,
    Mode,
}

fn set(f: &mut TpFields, slot: Slot, off: u16) {
    match slot {
        Slot::Dev => f.dev = off,
        Slot::Ino => f.ino = off,
        Slot::Pgoff => f.pgoff = off,
        Slot::Flags => f.flags = off,
        Slot::Result => f.result = off,
        Slot::Offset => f.offset = off,
        Slot::Length => f.length = off,
        Slot::Kind => f.kind = off,
        Slot::Mode => f.mode = off,
    }
}

/// Fields every program of this probe needs; without them it is not attached.
fn required(p: Probe, f: &TpFields) -> Result<(), &'static str> {
    let absent = TpFields::ABSENT;
    if f.dev == absent || f.ino == absent {
        return Err("record has no dev/ino field");
    }
    match p {
        Probe::DaxPteFault | Probe::DaxPteFaultDone | Probe::DaxPmdFault | Probe::DaxPmdFaultDone if f.pgoff == absent => {
            Err("record has no pgoff field")
        }
        Probe::IomapIterDstmap if f.offset == absent || f.length == absent || f.kind == absent => {
            Err("record has no offset/length/type field")
        }
        Probe::Ext4ExtMapBlocksExit if f.offset == absent || f.length == absent || f.kind == absent || f.result == absent => {
            Err("record has no lblk/len/mflags/ret field")
        }
        Probe::XfsIomapAlloc if f.offset == absent || f.length == absent => Err("record has no startoff/blockcount field"),
        _ => Ok(()),
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "detail")]
pub enum Status {
    /// Present and will be (or was) attached.
    Used,
    /// Present but this backend has no program for it yet.
    Available,
    /// Present, but the kernel cannot attach this backend (e.g. no kprobes).
    Unsupported(String),
    /// The kernel does not have it.
    Missing,
    /// Could not be checked without privileges.
    Unknown(String),
    /// Attach was tried and failed.
    Failed(String),
}

#[derive(Clone, Debug, Serialize)]
pub struct Entry {
    pub step: Step,
    pub backend: Backend,
    pub symbol: &'static str,
    pub era: &'static str,
    #[serde(flatten)]
    pub status: Status,
}

/// How a step of the fault path is covered on this kernel.
#[derive(Clone, Debug, Serialize)]
pub struct Coverage {
    pub step: Step,
    /// "traced", "inferred" or "missing".
    pub how: &'static str,
    pub by: Vec<&'static str>,
}

#[derive(Clone, Debug, Serialize)]
pub struct KernelFacts {
    pub release: String,
    pub btf: bool,
    pub ringbuf: bool,
    pub kprobes: bool,
    pub tracefs: Option<PathBuf>,
    pub tracefs_readable: bool,
    pub kallsyms_readable: bool,
    pub root: bool,
    pub can_trace: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct AttachPlan {
    pub kernel: KernelFacts,
    pub backend: Backend,
    pub entries: Vec<Entry>,
    pub coverage: Vec<Coverage>,
    /// Offsets handed to the programs, per probe (indexed by `Probe`).
    #[serde(skip)]
    pub fields: [TpFields; 17],
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// (major, minor) of a release string like "6.18.0-1-amd64".
pub fn version(release: &str) -> (u32, u32) {
    let mut it = release.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

fn kallsyms() -> (HashSet<String>, bool) {
    match std::fs::read_to_string("/proc/kallsyms") {
        Ok(text) => {
            let names = text
                .lines()
                .filter_map(|l| l.split_whitespace().nth(2))
                // "name.cold", "name.isra.0": the function is there under a suffix
                .map(|n| n.split('.').next().unwrap_or(n).to_string())
                .collect();
            (names, true)
        }
        Err(_) => (HashSet::new(), false),
    }
}

fn btf_has_func(btf: Option<&aya::Btf>, name: &str) -> bool {
    btf.is_some_and(|b| b.id_by_type_name_kind(name, aya_obj::btf::BtfKind::Func).is_ok())
}

/// How much of the table to resolve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depth {
    /// Everything, for `daxtrace probe` (parses kallsyms and the whole BTF).
    Full,
    /// Only the rows with programs: what a live start needs, fast.
    Attachable,
}

/// Resolve the table against the running kernel. Reads only what it may:
/// without root, tracefs rows are `Unknown`.
pub fn resolve(tracefs_root: Option<&Path>, depth: Depth) -> AttachPlan {
    let release = kernel_release();
    let (maj, min) = version(&release);
    let btf_path = Path::new("/sys/kernel/btf/vmlinux");
    let full = depth == Depth::Full;
    let btf = (full && btf_path.exists()).then(|| aya::Btf::from_sys_fs().ok()).flatten();
    let tracefs_root = tracefs_root.map(Path::to_path_buf).or_else(tracefs::find);
    let tracefs_readable = tracefs_root.as_ref().is_some_and(|r| std::fs::read_dir(r.join("events")).is_ok());
    let (syms, kallsyms_readable) = if full { kallsyms() } else { (HashSet::new(), false) };
    let kprobes = Path::new("/sys/bus/event_source/devices/kprobe").exists();
    let kernel = KernelFacts {
        release,
        btf: btf_path.exists(),
        ringbuf: (maj, min) >= (5, 8),
        kprobes,
        tracefs: tracefs_root.clone(),
        tracefs_readable,
        kallsyms_readable,
        root: super::privileges::is_root(),
        can_trace: super::privileges::can_trace(),
    };

    let mut fields = [TpFields::NONE; 17];
    let mut entries = Vec::new();
    for c in TABLE.iter().filter(|c| full || c.probe.is_some()) {
        let status = match c.backend {
            Backend::Tracepoint => {
                let probe = c.probe.expect("tracepoint rows name their program");
                match (&tracefs_root, tracefs_readable) {
                    (None, _) => Status::Unknown("tracefs is not mounted".into()),
                    (Some(_), false) => Status::Unknown("tracefs needs root to read".into()),
                    (Some(root), true) => match tracefs::format(root, c.symbol) {
                        None => Status::Missing,
                        Some(Err(e)) => Status::Failed(format!("cannot read its format: {e}")),
                        Some(Ok(layout)) => {
                            let mut f = TpFields::NONE;
                            for (slot, names) in field_names(probe) {
                                if let Some(fl) = names.iter().find_map(|n| layout.get(*n)) {
                                    set(&mut f, *slot, fl.offset);
                                }
                            }
                            match required(probe, &f) {
                                Ok(()) => {
                                    fields[probe as usize] = f;
                                    Status::Used
                                }
                                Err(why) => Status::Failed(why.into()),
                            }
                        }
                    },
                }
            }
            Backend::Kprobe => {
                if !kallsyms_readable {
                    Status::Unknown("/proc/kallsyms is not readable".into())
                } else if !syms.contains(c.symbol) {
                    Status::Missing
                } else if !kprobes {
                    Status::Unsupported("in kallsyms, but this kernel has no kprobes (CONFIG_KPROBES off)".into())
                } else {
                    Status::Available
                }
            }
            Backend::Fentry => unreachable!("fentry rows are derived from kprobe rows"),
        };
        entries.push(Entry { step: c.step, backend: c.backend, symbol: c.symbol, era: c.era, status });
        if c.backend == Backend::Kprobe {
            // fentry needs the function in BTF (a trampoline target).
            let status = if btf.is_none() {
                Status::Unsupported("no BTF".into())
            } else if btf_has_func(btf.as_ref(), c.symbol) {
                Status::Available
            } else {
                Status::Missing
            };
            entries.push(Entry { step: c.step, backend: Backend::Fentry, symbol: c.symbol, era: c.era, status });
        }
    }

    let coverage = Step::ALL
        .iter()
        .map(|&step| {
            let by: Vec<&'static str> = entries
                .iter()
                .filter(|e| e.step == step && e.status == Status::Used)
                .map(|e| e.symbol)
                .collect();
            let faults_end = entries.iter().any(|e| e.step == FaultEnd && e.status == Status::Used);
            let how = if !by.is_empty() {
                "traced"
            } else if step == Insert && faults_end {
                "inferred"
            } else {
                "missing"
            };
            let by = if how == "inferred" { vec!["fs_dax:*_fault_done after a lookup that found blocks"] } else { by };
            Coverage { step, how, by }
        })
        .collect();

    AttachPlan { kernel, backend: Backend::Tracepoint, entries, coverage, fields }
}

impl AttachPlan {
    /// Probes whose programs will be attached.
    pub fn used_probes(&self) -> impl Iterator<Item = Probe> + '_ {
        TABLE.iter().zip(self.tracepoint_statuses()).filter(|(_, s)| **s == Status::Used).filter_map(|(c, _)| c.probe)
    }

    fn tracepoint_statuses(&self) -> impl Iterator<Item = &Status> + '_ {
        self.entries.iter().filter(|e| e.backend == Backend::Tracepoint).map(|e| &e.status)
    }

    /// Mark a probe whose attach failed, so every output tells.
    pub fn mark_failed(&mut self, probe: Probe, why: String) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.backend == Backend::Tracepoint && e.symbol == probe.tracepoint()) {
            e.status = Status::Failed(why);
        }
    }

    /// One line per step for headers and status lines.
    pub fn summary_line(&self) -> String {
        self.coverage.iter().map(|c| format!("{} {}", c.step.name(), c.how)).collect::<Vec<_>>().join(", ")
    }

    /// Human table for `daxtrace probe`.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let k = &self.kernel;
        let yn = |b: bool| if b { "yes" } else { "no" };
        let mut s = String::new();
        let _ = writeln!(
            s,
            "kernel {}  BTF {}  ring buffer {}  kprobes {}  tracefs {}",
            k.release,
            yn(k.btf),
            yn(k.ringbuf),
            yn(k.kprobes),
            k.tracefs.as_ref().map_or("not mounted".into(), |p| p.display().to_string())
        );
        let _ = writeln!(
            s,
            "privileges: {}",
            if k.can_trace {
                "can load and attach eBPF programs"
            } else {
                "cannot trace: run as root (or with CAP_BPF and CAP_PERFMON); rows marked unknown need root to check"
            }
        );
        let _ = writeln!(s, "backend in use: {}\n", self.backend.name());
        let _ = writeln!(s, "{:<15} {:<11} {:<34} {:<28} {}", "STEP", "BACKEND", "ATTACH POINT", "KERNELS", "STATUS");
        for e in &self.entries {
            let status = match &e.status {
                Status::Used => "present, used".to_string(),
                Status::Available => match e.backend {
                    Backend::Fentry => "in BTF; fentry backend not built yet".to_string(),
                    _ => "present; kprobe backend not built yet".to_string(),
                },
                Status::Unsupported(w) => format!("unusable: {w}"),
                Status::Missing => "missing".to_string(),
                Status::Unknown(w) => format!("unknown: {w}"),
                Status::Failed(w) => format!("FAILED: {w}"),
            };
            let _ = writeln!(s, "{:<15} {:<11} {:<34} {:<28} {}", e.step.name(), e.backend.name(), e.symbol, e.era, status);
        }
        let _ = writeln!(s, "\ncoverage:");
        for c in &self.coverage {
            let _ = writeln!(s, "  {:<15} {:<9} {}", c.step.name(), c.how, c.by.join(", "));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_probe_is_in_the_table_once() {
        for p in Probe::ALL {
            assert_eq!(TABLE.iter().filter(|c| c.probe == Some(p)).count(), 1, "{p:?}");
            assert_eq!(probe_tracepoint(p), p.tracepoint());
        }
    }

    #[test]
    fn versions() {
        assert_eq!(version("6.18.0-1-amd64"), (6, 18));
        assert_eq!(version("4.4.302"), (4, 4));
    }

    #[test]
    fn fields_from_a_recorded_format() {
        // fs_dax:dax_load_hole as 6.18 lays it out.
        let layout = tracefs::parse_format(
            "format:\n\tfield:unsigned long ino;\toffset:8;\tsize:8;\tsigned:0;\n\tfield:unsigned long pgoff;\toffset:32;\tsize:8;\tsigned:0;\n\tfield:dev_t dev;\toffset:40;\tsize:4;\tsigned:0;\n",
        );
        let mut f = TpFields::NONE;
        for (slot, names) in field_names(Probe::DaxLoadHole) {
            if let Some(fl) = names.iter().find_map(|n| layout.get(*n)) {
                set(&mut f, *slot, fl.offset);
            }
        }
        assert_eq!((f.dev, f.ino, f.pgoff), (40, 8, 32));
        assert!(required(Probe::DaxLoadHole, &f).is_ok());
        assert!(required(Probe::IomapIterDstmap, &f).is_err());
    }
}
