//! The attach plan: one declarative table (step x attach point x kernel
//! range), expanded over the backends that can reach each attach point,
//! resolved against a description of the kernel (tracefs events, kallsyms,
//! BTF), then chosen per step with fallback.
//!
//! Attach points come in two families: tracepoints (reached by `tp_btf`,
//! `raw_tp` or a classic `tracepoint` program) and kernel functions
//! (`fentry`/`fexit` or `kprobe`/`kretprobe`). A step is served by one
//! family, so no event is seen twice; inside the family each attach point
//! takes the first backend, in the chosen order, that loads and attaches.
//! Order for `auto`: fentry, tp_btf, raw_tp, tracepoint, kprobe (cheapest
//! first); a named backend goes first and the rest follow as fallbacks.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;
use tracer_common::{BtfOffsets, Probe, TpFields};

use super::btf::{self, KernelBtf};
use super::tracefs::{self, Field};

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

/// What a kernel without any attach point for a step means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Need {
    /// The detector cannot work without it.
    Required,
    /// Inferred from other steps when not traced (insert: from the fault's end).
    Inferred,
    /// Nice to have (invalidations make the detector stricter).
    Optional,
}

impl Step {
    pub const ALL: [Step; 6] = [
        Step::FaultBegin,
        Step::FaultEnd,
        Step::Lookup,
        Step::HoleLoad,
        Step::Insert,
        Step::Invalidate,
    ];
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
    pub fn need(self) -> Need {
        match self {
            Step::FaultBegin | Step::FaultEnd | Step::Lookup | Step::HoleLoad => Need::Required,
            Step::Insert => Need::Inferred,
            Step::Invalidate => Need::Optional,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    Fentry,
    TpBtf,
    RawTp,
    Tracepoint,
    Kprobe,
}

impl Backend {
    /// Cheapest first (DESIGN.md §1, issue 9).
    pub const AUTO: [Backend; 5] = [
        Backend::Fentry,
        Backend::TpBtf,
        Backend::RawTp,
        Backend::Tracepoint,
        Backend::Kprobe,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Backend::Tracepoint => "tracepoint",
            Backend::TpBtf => "tp_btf",
            Backend::RawTp => "raw_tp",
            Backend::Kprobe => "kprobe",
            Backend::Fentry => "fentry",
        }
    }

    pub fn family(self) -> Family {
        match self {
            Backend::TpBtf | Backend::RawTp | Backend::Tracepoint => Family::Tracepoint,
            Backend::Fentry | Backend::Kprobe => Family::Function,
        }
    }

    /// First release where the kernel can run this kind of program.
    pub fn since(self) -> (u32, u32) {
        match self {
            Backend::Tracepoint => (4, 7),
            Backend::Kprobe => (4, 1),
            Backend::RawTp => (4, 17),
            Backend::TpBtf | Backend::Fentry => (5, 5),
        }
    }

    /// The eBPF program implementing `probe` on this backend.
    pub fn program(self, probe: Probe) -> Option<String> {
        match self {
            Backend::Tracepoint => Some(probe.program().to_string()),
            Backend::TpBtf => Some(format!("btf_{}", probe.tracepoint().split_once(':')?.1)),
            Backend::RawTp => Some(format!("raw_{}", probe.tracepoint().split_once(':')?.1)),
            Backend::Fentry | Backend::Kprobe => None,
        }
    }
}

/// `--backend`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Choice {
    /// Cheapest that works: fentry, tp_btf, raw_tp, tracepoint, kprobe.
    #[default]
    Auto,
    /// Classic tracepoints (stable record formats, tracefs offsets).
    Tracepoint,
    /// Typed raw tracepoints (BTF offsets).
    #[value(name = "tp_btf")]
    TpBtf,
    /// Raw tracepoints (BTF offsets; no BTF needed for the attach).
    #[value(name = "raw_tp")]
    RawTp,
    /// kprobe/kretprobe on kernel functions (oldest kernels).
    Kprobe,
    /// fentry/fexit BTF trampolines.
    Fentry,
}

impl Choice {
    pub fn name(self) -> &'static str {
        match self {
            Choice::Auto => "auto",
            Choice::Tracepoint => "tracepoint",
            Choice::TpBtf => "tp_btf",
            Choice::RawTp => "raw_tp",
            Choice::Kprobe => "kprobe",
            Choice::Fentry => "fentry",
        }
    }

    /// Backends to try, in order.
    pub fn order(self) -> Vec<Backend> {
        let first = match self {
            Choice::Auto => return Backend::AUTO.to_vec(),
            Choice::Tracepoint => Backend::Tracepoint,
            Choice::TpBtf => Backend::TpBtf,
            Choice::RawTp => Backend::RawTp,
            Choice::Kprobe => Backend::Kprobe,
            Choice::Fentry => Backend::Fentry,
        };
        std::iter::once(first)
            .chain(Backend::AUTO.into_iter().filter(|b| *b != first))
            .collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Tracepoint,
    Function,
}

/// One row of the table: an attach point serving a step.
#[derive(Clone, Copy, Debug)]
pub struct Candidate {
    pub step: Step,
    pub family: Family,
    /// `category:event` for tracepoints, a kernel function otherwise.
    pub symbol: &'static str,
    /// The programs' identity (tracepoints: the same for every backend).
    pub probe: Option<Probe>,
    /// Kernel generation note shown by `probe`.
    pub era: &'static str,
    /// Releases on which it does its job: [since, until). Outside, a present
    /// attach point is reported and left alone (e.g. a tracepoint that
    /// exists but never fires there).
    pub since: (u32, u32),
    pub until: Option<(u32, u32)>,
}

const ANY: (u32, u32) = (0, 0);

const fn tp(
    step: Step,
    probe: Probe,
    era: &'static str,
    since: (u32, u32),
    until: Option<(u32, u32)>,
) -> Candidate {
    Candidate {
        step,
        family: Family::Tracepoint,
        symbol: probe_tracepoint(probe),
        probe: Some(probe),
        era,
        since,
        until,
    }
}

const fn func(
    step: Step,
    symbol: &'static str,
    era: &'static str,
    since: (u32, u32),
    until: Option<(u32, u32)>,
) -> Candidate {
    Candidate {
        step,
        family: Family::Function,
        symbol,
        probe: None,
        era,
        since,
        until,
    }
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
        Probe::IomapIter => "iomap:iomap_iter",
        _ => "",
    }
}

use Step::{FaultBegin, FaultEnd, HoleLoad, Insert, Invalidate, Lookup};

/// DESIGN.md §1's table, as data. Kernel ranges: where the attach point does
/// its job (fs_dax's insert tracepoints stopped firing when the fault path
/// moved to `dax_fault_iter`, 5.17).
pub const TABLE: &[Candidate] = &[
    tp(FaultBegin, Probe::DaxPteFault, "4.11+", (4, 11), None),
    tp(FaultBegin, Probe::DaxPmdFault, "4.10+", (4, 10), None),
    tp(FaultEnd, Probe::DaxPteFaultDone, "4.11+", (4, 11), None),
    tp(FaultEnd, Probe::DaxPmdFaultDone, "4.10+", (4, 10), None),
    tp(Lookup, Probe::IomapIterDstmap, "5.15+", (5, 15), None),
    tp(Lookup, Probe::Ext4ExtMapBlocksExit, "ext4", ANY, None),
    tp(Lookup, Probe::XfsIomapAlloc, "xfs", ANY, None),
    tp(HoleLoad, Probe::DaxLoadHole, "4.11+", (4, 11), None),
    tp(HoleLoad, Probe::DaxPmdLoadHole, "4.10+", (4, 10), None),
    tp(
        Insert,
        Probe::DaxInsertMapping,
        "4.11-5.14 (silent from 5.15)",
        (4, 11),
        Some((5, 15)),
    ),
    tp(
        Insert,
        Probe::DaxPmdInsertMapping,
        "4.10-5.14 (silent from 5.15)",
        (4, 10),
        Some((5, 15)),
    ),
    tp(Invalidate, Probe::Ext4PunchHole, "ext4", ANY, None),
    tp(Invalidate, Probe::Ext4TruncateEnter, "ext4", ANY, None),
    tp(Invalidate, Probe::Ext4CollapseRange, "ext4", ANY, None),
    tp(Invalidate, Probe::Ext4ZeroRange, "ext4", ANY, None),
    tp(Invalidate, Probe::XfsFreeFileSpace, "xfs", ANY, None),
    tp(
        Invalidate,
        Probe::IomapIter,
        "5.15+ (DAX write(2) teardown, after the writer's extent)",
        (5, 15),
        None,
    ),
    // Invalidations have tracepoints on every kernel (ext4 and xfs), which
    // also tell collapse and zero range apart: no function rows for them.
    // Function rows: ranges keep a wrapper and the function it calls from
    // both being probed on one kernel (dax_fault calls __dax_fault on 4.4).
    func(
        FaultBegin,
        "__dax_fault",
        "legacy 4.0-4.6",
        ANY,
        Some((4, 7)),
    ),
    func(
        FaultBegin,
        "__dax_pmd_fault",
        "legacy 4.0-4.6",
        ANY,
        Some((4, 7)),
    ),
    func(
        FaultBegin,
        "dax_fault",
        "legacy 4.7-4.9",
        (4, 7),
        Some((4, 10)),
    ),
    func(
        FaultBegin,
        "dax_pmd_fault",
        "legacy 4.7-4.9",
        (4, 7),
        Some((4, 10)),
    ),
    func(
        FaultBegin,
        "dax_iomap_fault",
        "iomap 4.9-4.10 (PTE)",
        (4, 9),
        Some((4, 11)),
    ),
    func(FaultBegin, "dax_iomap_pte_fault", "4.11+", (4, 11), None),
    func(FaultBegin, "dax_iomap_pmd_fault", "4.9+", (4, 9), None),
    func(
        FaultEnd,
        "__dax_fault",
        "legacy 4.0-4.6 (return)",
        ANY,
        Some((4, 7)),
    ),
    func(
        FaultEnd,
        "__dax_pmd_fault",
        "legacy 4.0-4.6 (return)",
        ANY,
        Some((4, 7)),
    ),
    func(
        FaultEnd,
        "dax_fault",
        "legacy 4.7-4.9 (return)",
        (4, 7),
        Some((4, 10)),
    ),
    func(
        FaultEnd,
        "dax_pmd_fault",
        "legacy 4.7-4.9 (return)",
        (4, 7),
        Some((4, 10)),
    ),
    func(
        FaultEnd,
        "dax_iomap_fault",
        "iomap 4.9-4.10 (return)",
        (4, 9),
        Some((4, 11)),
    ),
    func(
        FaultEnd,
        "dax_iomap_pte_fault",
        "4.11+ (return)",
        (4, 11),
        None,
    ),
    func(
        FaultEnd,
        "dax_iomap_pmd_fault",
        "4.9+ (return)",
        (4, 9),
        None,
    ),
    func(
        Lookup,
        "ext4_dax_mmap_get_block",
        "legacy ext4 4.4-4.5",
        ANY,
        Some((4, 10)),
    ),
    func(
        Lookup,
        "ext4_dax_get_block",
        "legacy ext4 4.6-4.9",
        ANY,
        Some((4, 10)),
    ),
    func(
        Lookup,
        "ext2_get_block",
        "legacy ext2 to 4.8",
        ANY,
        Some((4, 9)),
    ),
    func(
        Lookup,
        "xfs_get_blocks_dax_fault",
        "legacy xfs to 4.8",
        ANY,
        Some((4, 9)),
    ),
    func(Lookup, "ext4_iomap_begin", "4.10+", (4, 10), None),
    func(Lookup, "ext2_iomap_begin", "4.9+", (4, 9), None),
    func(
        Lookup,
        "xfs_file_iomap_begin",
        "4.9-5.4",
        (4, 9),
        Some((5, 5)),
    ),
    func(Lookup, "xfs_read_iomap_begin", "5.5+", (5, 5), None),
    func(Lookup, "xfs_direct_write_iomap_begin", "5.5+", (5, 5), None),
    func(Lookup, "xfs_dax_write_iomap_begin", "6.1+", (6, 1), None),
    func(HoleLoad, "dax_load_hole", "all (often inlined)", ANY, None),
    func(
        HoleLoad,
        "dax_pmd_load_hole",
        "4.11+ (often inlined)",
        (4, 11),
        None,
    ),
    func(
        Insert,
        "dax_insert_mapping",
        "legacy to 4.13",
        ANY,
        Some((4, 14)),
    ),
    func(
        Insert,
        "dax_insert_mapping_entry",
        "4.14-4.19",
        (4, 14),
        Some((4, 20)),
    ),
    func(
        Insert,
        "dax_insert_entry",
        "4.20+ (PTE and PMD)",
        (4, 20),
        None,
    ),
];

/// Slot -> field-name candidates of one tracepoint, oldest names last.
fn field_names(p: Probe) -> &'static [(Slot, &'static [&'static str])] {
    use Slot::*;
    match p {
        Probe::DaxPteFault
        | Probe::DaxPteFaultDone
        | Probe::DaxPmdFault
        | Probe::DaxPmdFaultDone
        | Probe::DaxLoadHole => &[
            (Dev, &["dev"]),
            (Ino, &["ino"]),
            (Pgoff, &["pgoff"]),
            (Flags, &["flags"]),
            (Result, &["result"]),
        ],
        Probe::DaxPmdLoadHole | Probe::DaxInsertMapping | Probe::DaxPmdInsertMapping => {
            &[(Dev, &["dev"]), (Ino, &["ino"]), (Pgoff, &["pgoff"])]
        }
        Probe::IomapIterDstmap => &[
            (Dev, &["dev"]),
            (Ino, &["ino"]),
            (Offset, &["offset"]),
            (Length, &["length"]),
            (Kind, &["type"]),
            (Flags, &["flags"]),
        ],
        Probe::Ext4ExtMapBlocksExit => &[
            (Dev, &["dev"]),
            (Ino, &["ino"]),
            (Offset, &["lblk"]),
            (Length, &["len"]),
            (Kind, &["mflags"]),
            (Result, &["ret"]),
            (Flags, &["flags"]),
        ],
        Probe::XfsIomapAlloc => &[
            (Dev, &["dev"]),
            (Ino, &["ino"]),
            (Offset, &["startoff"]),
            (Length, &["blockcount"]),
        ],
        Probe::Ext4PunchHole | Probe::Ext4CollapseRange | Probe::Ext4ZeroRange => &[
            (Dev, &["dev"]),
            (Ino, &["ino"]),
            (Offset, &["offset"]),
            (Length, &["len"]),
            (Mode, &["mode"]),
        ],
        Probe::Ext4TruncateEnter | Probe::XfsFreeFileSpace => &[(Dev, &["dev"]), (Ino, &["ino"])],
        Probe::IomapIter => &[
            (Dev, &["dev"]),
            (Ino, &["ino"]),
            (Offset, &["pos"]),
            (Length, &["length"]),
            (Flags, &["flags"]),
        ],
        _ => &[],
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
        Probe::DaxPteFault
        | Probe::DaxPteFaultDone
        | Probe::DaxPmdFault
        | Probe::DaxPmdFaultDone
            if f.pgoff == absent =>
        {
            Err("record has no pgoff field")
        }
        Probe::IomapIterDstmap if f.offset == absent || f.length == absent || f.kind == absent => {
            Err("record has no offset/length/type field")
        }
        Probe::Ext4ExtMapBlocksExit
            if f.offset == absent
                || f.length == absent
                || f.kind == absent
                || f.result == absent =>
        {
            Err("record has no lblk/len/mflags/ret field")
        }
        Probe::XfsIomapAlloc if f.offset == absent || f.length == absent => {
            Err("record has no startoff/blockcount field")
        }
        Probe::IomapIter if f.flags == absent => Err("record has no flags field"),
        _ => Ok(()),
    }
}

/// Struct members (names of [`btf::MEMBERS`]) the tp_btf/raw_tp program of a
/// tracepoint reads.
pub fn btf_needs(p: Probe) -> &'static [&'static str] {
    const INODE: &[&str] = &["inode_i_sb", "inode_i_ino", "sb_s_dev"];
    match p {
        Probe::DaxPteFault
        | Probe::DaxPteFaultDone
        | Probe::DaxPmdFault
        | Probe::DaxPmdFaultDone
        | Probe::DaxLoadHole
        | Probe::DaxPmdLoadHole
        | Probe::DaxInsertMapping
        | Probe::DaxPmdInsertMapping => &[
            "inode_i_sb",
            "inode_i_ino",
            "sb_s_dev",
            "vmf_pgoff",
            "vmf_flags",
        ],
        Probe::IomapIterDstmap => &[
            "inode_i_sb",
            "inode_i_ino",
            "sb_s_dev",
            "iomap_offset",
            "iomap_length",
            "iomap_type",
            "iomap_flags",
        ],
        Probe::Ext4ExtMapBlocksExit => &[
            "inode_i_sb",
            "inode_i_ino",
            "sb_s_dev",
            "ext4_map_lblk",
            "ext4_map_len",
            "ext4_map_flags",
        ],
        Probe::XfsIomapAlloc => &[
            "inode_i_sb",
            "inode_i_ino",
            "sb_s_dev",
            "xfs_inode_vnode",
            "irec_startoff",
            "irec_blockcount",
        ],
        Probe::XfsFreeFileSpace => &["inode_i_sb", "inode_i_ino", "sb_s_dev", "xfs_inode_vnode"],
        Probe::IomapIter => &[
            "inode_i_sb",
            "inode_i_ino",
            "sb_s_dev",
            "iter_inode",
            "iter_flags",
        ],
        Probe::Ext4PunchHole
        | Probe::Ext4TruncateEnter
        | Probe::Ext4CollapseRange
        | Probe::Ext4ZeroRange => INODE,
        _ => &[],
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "detail")]
pub enum Status {
    /// Chosen: attached (live) or would be attached (`probe`).
    Used,
    /// Present and attachable with this backend, but not chosen.
    Available,
    /// Present, but this kernel or this build cannot use it with this backend.
    Unsupported(String),
    /// The kernel does not have it.
    Missing,
    /// Could not be checked (no privileges, no tracefs).
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
    #[serde(skip)]
    pub probe: Option<Probe>,
}

/// How a step of the fault path is covered on this kernel.
#[derive(Clone, Debug, Serialize)]
pub struct Coverage {
    pub step: Step,
    pub need: Need,
    /// "traced", "inferred" or "missing".
    pub how: &'static str,
    /// "backend symbol" of each attach point used.
    pub by: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct KernelFacts {
    pub release: String,
    pub btf: bool,
    pub ringbuf: bool,
    pub kprobes: bool,
    pub tracefs: Option<PathBuf>,
    pub tracefs_readable: bool,
    /// kallsyms was read: always by `probe`; by a live start only when the
    /// kernel has no BTF (its BTF lists the functions a kprobe can reach).
    pub kallsyms_readable: bool,
    pub root: bool,
    pub can_trace: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct AttachPlan {
    pub kernel: KernelFacts,
    /// What was asked for (`--backend`).
    pub backend: Choice,
    /// Where struct offsets came from (kernel BTF, `--btf FILE`), if anywhere.
    pub btf_source: Option<String>,
    /// Struct members that BTF lacks (their programs cannot run).
    pub btf_missing: Vec<String>,
    /// The offsets handed to the programs, by `struct.member`.
    pub btf_offsets: std::collections::BTreeMap<String, u16>,
    pub entries: Vec<Entry>,
    pub coverage: Vec<Coverage>,
    /// Substitutions and fallbacks, one sentence each.
    pub notes: Vec<String>,
    /// How the USED rows were established: `attached` (loaded and attached,
    /// by a live run or `probe` as root), else `predicted` from what the
    /// kernel lists (a refusal at load, such as fentry's EPERM, is not seen).
    pub checked: &'static str,
    /// Offsets handed to the classic programs, per probe (indexed by `Probe`).
    #[serde(skip)]
    pub fields: [TpFields; Probe::ALL.len() + 1],
    /// Offsets handed to every other backend.
    #[serde(skip)]
    pub offsets: BtfOffsets,
}

/// What BTF says, reduced to what the plan asks.
#[derive(Clone, Debug, Default)]
pub struct BtfFacts {
    pub source: String,
    /// Whether this describes the running kernel (tp_btf and fentry attach
    /// through the kernel's own BTF; a `--btf` file only gives offsets).
    pub kernel: bool,
    /// Functions of the table present in BTF.
    pub funcs: HashSet<String>,
    /// Tracepoints (event names) with a `btf_trace_<event>` typedef.
    pub tp_btf: HashSet<String>,
    pub offsets: Option<BtfOffsets>,
    pub missing: Vec<String>,
    /// Functions and `btf_trace_<event>` typedefs found only in a module's
    /// split BTF, with the module: fentry and tp_btf cannot attach to them
    /// from this build (aya 0.14 loads against vmlinux's BTF only and never
    /// passes a module's BTF object, `attach_btf_obj_fd`).
    pub in_module: HashMap<String, String>,
    /// vmlinux's type ids of the table's functions (FUNC) and
    /// `btf_trace_<event>` typedefs, by name: what tp_btf and fentry attach
    /// by (see `load::aya_target_btf`). Running kernel only.
    pub vmlinux_ids: Vec<(String, u32, bool)>,
}

/// A kernel, as the plan sees it: the running one, or a recorded fixture.
#[derive(Clone, Debug, Default)]
pub struct KernelDesc {
    pub release: String,
    pub kprobes: bool,
    /// BTF facts; None when the kernel has no BTF and no `--btf` was given.
    pub btf: Option<BtfFacts>,
    /// `category:event` -> record layout; None when tracefs could not be read.
    pub events: Option<HashMap<String, HashMap<String, Field>>>,
    pub events_unknown: String,
    /// kallsyms names (suffixes like `.isra.0` cut); None when unreadable.
    pub kallsyms: Option<HashSet<String>>,
    pub tracefs: Option<PathBuf>,
    pub root: bool,
    pub can_trace: bool,
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// (major, minor) of a release string like "6.18.0-1-amd64".
pub fn version(release: &str) -> (u32, u32) {
    let mut it = release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// kallsyms names, with "name.cold" / "name.isra.0" cut to "name".
pub fn parse_kallsyms(text: &str) -> HashSet<String> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            match (f.next(), f.next(), f.next()) {
                (Some(_), Some(_), Some(n)) => Some(n),
                (Some(n), None, None) => Some(n),
                _ => None,
            }
        })
        .map(|n| n.split('.').next().unwrap_or(n).to_string())
        .collect()
}

/// How much of the running kernel to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depth {
    /// Everything, for `daxtrace probe`.
    Full,
    /// What a live start needs (kallsyms only when kprobes exist).
    Attachable,
}

/// What the user asked for: backend order and offsets source.
#[derive(Clone, Debug, Default)]
pub struct Request {
    pub backend: Choice,
    /// `--btf FILE`.
    pub btf_file: Option<PathBuf>,
}

/// Read the running kernel. Reads only what it may: without root, tracefs
/// rows are `Unknown`.
pub fn describe(
    tracefs_root: Option<&Path>,
    depth: Depth,
    req: &Request,
) -> Result<KernelDesc, btf::BtfError> {
    let release = kernel_release();
    let tracefs_root = tracefs_root.map(Path::to_path_buf).or_else(tracefs::find);
    let kprobes = Path::new("/sys/bus/event_source/devices/kprobe").exists();
    let t = std::time::Instant::now();
    let events = match &tracefs_root {
        Some(root) if std::fs::read_dir(root.join("events")).is_ok() => {
            let mut m = HashMap::new();
            for c in TABLE.iter().filter(|c| c.family == Family::Tracepoint) {
                if let Some(Ok(layout)) = tracefs::format(root, c.symbol) {
                    m.insert(c.symbol.to_string(), layout);
                }
            }
            Some(m)
        }
        _ => None,
    };
    tracing::debug!(
        "describe: tracepoint formats {:.3}s",
        t.elapsed().as_secs_f64()
    );
    let events_unknown = if tracefs_root.is_none() {
        "tracefs is not mounted".to_string()
    } else {
        "tracefs needs root to read".to_string()
    };
    let t = std::time::Instant::now();
    // Every name the facts below ask about, looked up in one walk per blob.
    let wanted: Vec<String> = TABLE
        .iter()
        .map(|c| match c.family {
            Family::Function => c.symbol.to_string(),
            Family::Tracepoint => format!(
                "btf_trace_{}",
                c.symbol.split_once(':').map_or(c.symbol, |x| x.1)
            ),
        })
        .collect();
    let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
    let kernel_btf = match KernelBtf::open(None) {
        Ok(mut k) => {
            k.prefetch(&wanted);
            Some(k)
        }
        Err(btf::BtfError::NoKernelBtf) => None,
        Err(e) => return Err(e),
    };
    tracing::debug!("describe: BTF indexed {:.3}s", t.elapsed().as_secs_f64());
    // kallsyms is 100,000+ lines the kernel formats on each read (seconds
    // under TCG). A live start with the kernel's BTF does without it: BTF
    // lists the functions of vmlinux and of every loaded module, which is
    // what a kprobe can reach. `probe` (Depth::Full) still reads it.
    let t = std::time::Instant::now();
    let need_kallsyms = depth == Depth::Full || (kprobes && kernel_btf.is_none());
    let kallsyms = if need_kallsyms {
        std::fs::read_to_string("/proc/kallsyms")
            .ok()
            .map(|t| parse_kallsyms(&t))
            .filter(|s| s.len() > 1)
    } else {
        None
    };
    tracing::debug!(
        "describe: kallsyms {:.3}s (read: {need_kallsyms})",
        t.elapsed().as_secs_f64()
    );
    let file_btf = req
        .btf_file
        .as_deref()
        .map(|f| {
            KernelBtf::open(Some(f)).map(|mut b| {
                b.prefetch(&wanted);
                b
            })
        })
        .transpose()?;
    let btf = match (&kernel_btf, &file_btf) {
        (None, None) => None,
        (k, f) => {
            let mut facts = BtfFacts::default();
            if let Some(k) = k {
                facts.kernel = true;
                facts.source.clone_from(&k.source.display().to_string());
                for c in TABLE {
                    match c.family {
                        Family::Function if k.has_func(c.symbol) => {
                            facts.funcs.insert(c.symbol.to_string());
                            if let Some(id) = k.vmlinux_id(c.symbol, true) {
                                facts.vmlinux_ids.push((c.symbol.to_string(), id, true));
                            }
                            if let Some(m) = k.module_of(c.symbol) {
                                facts.in_module.insert(c.symbol.to_string(), m.to_string());
                            }
                        }
                        Family::Tracepoint => {
                            let ev = c.symbol.split_once(':').map_or(c.symbol, |x| x.1);
                            if k.has_tp_btf(ev) {
                                facts.tp_btf.insert(ev.to_string());
                                let name = format!("btf_trace_{ev}");
                                if let Some(id) = k.vmlinux_id(&name, false) {
                                    facts.vmlinux_ids.push((name, id, false));
                                }
                                if let Some(m) = k.module_of(&format!("btf_trace_{ev}")) {
                                    facts
                                        .in_module
                                        .insert(format!("btf_trace_{ev}"), m.to_string());
                                }
                            }
                        }
                        Family::Function => {}
                    }
                }
            }
            // Offsets: the user's file wins over the running kernel's BTF.
            let from = f.as_ref().or(k.as_ref()).expect("one of them");
            facts.source = from.source.display().to_string();
            let r = from.resolve();
            facts.offsets = Some(r.offsets);
            facts.missing = r.missing;
            Some(facts)
        }
    };
    Ok(KernelDesc {
        release,
        kprobes,
        btf,
        events,
        events_unknown,
        kallsyms,
        tracefs: tracefs_root,
        root: super::privileges::is_root(),
        can_trace: super::privileges::can_trace(),
    })
}

/// Resolve the table against the running kernel, for `--backend auto`.
pub fn resolve(tracefs_root: Option<&Path>, depth: Depth) -> AttachPlan {
    match describe(tracefs_root, depth, &Request::default()) {
        Ok(desc) => plan(&desc, Choice::Auto),
        Err(e) => {
            // Unreadable kernel BTF: plan without it, and say so.
            let mut desc = describe_without_btf(tracefs_root, depth);
            desc.btf = None;
            let mut p = plan(&desc, Choice::Auto);
            p.notes.push(format!("kernel BTF unusable: {e}"));
            p
        }
    }
}

fn describe_without_btf(tracefs_root: Option<&Path>, depth: Depth) -> KernelDesc {
    let tracefs_root = tracefs_root.map(Path::to_path_buf).or_else(tracefs::find);
    let events = tracefs_root
        .as_ref()
        .filter(|r| std::fs::read_dir(r.join("events")).is_ok())
        .map(|root| {
            TABLE
                .iter()
                .filter(|c| c.family == Family::Tracepoint)
                .filter_map(|c| {
                    Some((c.symbol.to_string(), tracefs::format(root, c.symbol)?.ok()?))
                })
                .collect()
        });
    let kprobes = Path::new("/sys/bus/event_source/devices/kprobe").exists();
    KernelDesc {
        release: kernel_release(),
        kprobes,
        btf: None,
        events,
        events_unknown: "tracefs is not readable".into(),
        kallsyms: (depth == Depth::Full || kprobes)
            .then(|| {
                std::fs::read_to_string("/proc/kallsyms")
                    .ok()
                    .map(|t| parse_kallsyms(&t))
            })
            .flatten(),
        tracefs: tracefs_root,
        root: super::privileges::is_root(),
        can_trace: super::privileges::can_trace(),
    }
}

/// Whether a program for (backend, candidate) is built into this daxtrace.
pub type HasProgram<'a> = &'a dyn Fn(Backend, &Candidate) -> bool;

/// Which backends have programs in this build: all tracepoint ones; function
/// ones where the table names a probe.
pub fn built_programs(b: Backend, c: &Candidate) -> bool {
    match b.family() {
        Family::Tracepoint => c.probe.is_some(),
        Family::Function => super::funcs::program(b, c.symbol, c.step).is_some(),
    }
}

/// Resolve every (candidate, backend) against `desc` and choose per step.
/// Nothing is attached; [`super::load`] then attaches in the same order and
/// falls back where the kernel refuses.
pub fn plan(desc: &KernelDesc, choice: Choice) -> AttachPlan {
    plan_with(desc, choice, &built_programs)
}

pub fn plan_with(desc: &KernelDesc, choice: Choice, has_program: HasProgram<'_>) -> AttachPlan {
    let (maj, min) = version(&desc.release);
    let ver = (maj, min);
    let kernel = KernelFacts {
        release: desc.release.clone(),
        btf: desc.btf.as_ref().is_some_and(|b| b.kernel),
        ringbuf: ver >= (5, 8),
        kprobes: desc.kprobes,
        tracefs: desc.tracefs.clone(),
        tracefs_readable: desc.events.is_some(),
        kallsyms_readable: desc.kallsyms.is_some(),
        root: desc.root,
        can_trace: desc.can_trace,
    };
    let offsets = desc
        .btf
        .as_ref()
        .and_then(|b| b.offsets)
        .unwrap_or(BtfOffsets::NONE);
    let mut fields = [TpFields::NONE; Probe::ALL.len() + 1];
    let mut entries = Vec::new();
    for c in TABLE {
        let in_range = ver >= c.since && c.until.is_none_or(|u| ver < u);
        let backends: &[Backend] = match c.family {
            Family::Tracepoint => &[Backend::TpBtf, Backend::RawTp, Backend::Tracepoint],
            Family::Function => &[Backend::Fentry, Backend::Kprobe],
        };
        let probe = match c.family {
            Family::Tracepoint => c.probe,
            Family::Function => super::funcs::probe(c.symbol, c.step),
        };
        let c = &Candidate { probe, ..*c };
        for &b in backends {
            let mut status = presence(desc, c, b, &offsets, &mut fields);
            if status == Status::Available && ver < b.since() {
                let (a, m) = b.since();
                status = Status::Unsupported(format!("{} programs need kernel {a}.{m}+", b.name()));
            }
            if status == Status::Available && !in_range {
                status = Status::Unsupported(format!(
                    "present, but does its job only on {}",
                    range_text(c)
                ));
            }
            if status == Status::Available && !has_program(b, c) {
                status = Status::Unsupported("no program for this backend in this build".into());
            }
            entries.push(Entry {
                step: c.step,
                backend: b,
                symbol: c.symbol,
                era: c.era,
                status,
                probe: c.probe,
            });
        }
    }
    let mut p = AttachPlan {
        kernel,
        backend: choice,
        btf_source: desc.btf.as_ref().map(|b| b.source.clone()),
        btf_missing: desc
            .btf
            .as_ref()
            .map(|b| b.missing.clone())
            .unwrap_or_default(),
        btf_offsets: btf::MEMBERS
            .iter()
            .filter(|(name, _, _)| btf::get(&offsets, name) != TpFields::ABSENT)
            .map(|(name, strukt, members)| {
                (format!("{strukt}.{}", members[0]), btf::get(&offsets, name))
            })
            .collect(),
        entries,
        coverage: Vec::new(),
        notes: Vec::new(),
        checked: "predicted",
        fields,
        offsets,
    };
    p.choose(&mut |_| Ok(()));
    if !p.kernel.ringbuf {
        p.notes.push("this kernel has no BPF ring buffer (5.8+): daxtrace's programs cannot deliver events here; the plan shows what would attach".into());
    }
    p
}

fn status_text(s: &Status) -> String {
    match s {
        Status::Used => "used".into(),
        Status::Available => "available".into(),
        Status::Unsupported(w) => w.clone(),
        Status::Missing => "missing on this kernel".into(),
        Status::Unknown(w) => format!("unknown: {w}"),
        Status::Failed(w) => format!("failed: {w}"),
    }
}

fn range_text(c: &Candidate) -> String {
    let v = |(a, b): (u32, u32)| format!("{a}.{b}");
    match (c.since, c.until) {
        (ANY, Some(u)) => format!("kernels before {}", v(u)),
        (s, Some(u)) => format!("kernels {} to before {}", v(s), v(u)),
        (s, None) => format!("kernels {} and later", v(s)),
    }
}

/// Why a BTF target in a module cannot be used (measured in the lab on
/// Debian's 6.12: `unknown BTF type` for every ext4/xfs fentry and tp_btf).
fn module_only(module: &str) -> String {
    format!("in module {module}'s BTF; this build attaches fentry/tp_btf to vmlinux only")
}

/// Whether `c` is present for backend `b` on this kernel.
fn presence(
    desc: &KernelDesc,
    c: &Candidate,
    b: Backend,
    offsets: &BtfOffsets,
    fields: &mut [TpFields; Probe::ALL.len() + 1],
) -> Status {
    match b.family() {
        Family::Tracepoint => {
            let Some(events) = &desc.events else {
                return Status::Unknown(desc.events_unknown.clone());
            };
            let Some(layout) = events.get(c.symbol) else {
                return Status::Missing;
            };
            let probe = c.probe.expect("tracepoint rows name their probe");
            match b {
                Backend::Tracepoint => {
                    let mut f = TpFields::NONE;
                    for (slot, names) in field_names(probe) {
                        if let Some(fl) = names.iter().find_map(|n| layout.get(*n)) {
                            set(&mut f, *slot, fl.offset);
                        }
                    }
                    match required(probe, &f) {
                        Ok(()) => {
                            fields[probe as usize] = f;
                            Status::Available
                        }
                        Err(why) => Status::Failed(why.into()),
                    }
                }
                _ => {
                    let Some(btf) = &desc.btf else {
                        return Status::Unsupported("no BTF for struct offsets (kernel without BTF: name one with --btf FILE)".into());
                    };
                    let ev = c.symbol.split_once(':').map_or(c.symbol, |x| x.1);
                    if b == Backend::TpBtf && !btf.kernel {
                        return Status::Unsupported(
                            "tp_btf attaches through the running kernel's BTF, which it lacks"
                                .into(),
                        );
                    }
                    if b == Backend::TpBtf && !btf.tp_btf.contains(ev) {
                        return Status::Unsupported(format!("kernel BTF has no btf_trace_{ev}"));
                    }
                    if let Some(m) = btf
                        .in_module
                        .get(&format!("btf_trace_{ev}"))
                        .filter(|_| b == Backend::TpBtf)
                    {
                        return Status::Unsupported(module_only(m));
                    }
                    let lacking: Vec<&str> = btf_needs(probe)
                        .iter()
                        .copied()
                        .filter(|m| btf::get(offsets, m) == TpFields::ABSENT)
                        .collect();
                    if lacking.is_empty() {
                        Status::Available
                    } else {
                        Status::Unsupported(format!("BTF lacks {}", lacking.join(", ")))
                    }
                }
            }
        }
        Family::Function => match b {
            Backend::Fentry => match &desc.btf {
                Some(btf) if btf.kernel => {
                    if let Some(m) = btf.in_module.get(c.symbol) {
                        Status::Unsupported(module_only(m))
                    } else if btf.funcs.contains(c.symbol) {
                        Status::Available
                    } else {
                        Status::Missing
                    }
                }
                _ => Status::Unsupported("fentry needs the running kernel's BTF".into()),
            },
            _ => match desc
                .kallsyms
                .as_ref()
                .map(|syms| syms.contains(c.symbol))
                .or_else(|| {
                    // Not read (see `describe`): the running kernel's BTF knows its functions.
                    desc.btf
                        .as_ref()
                        .filter(|b| b.kernel)
                        .map(|b| b.funcs.contains(c.symbol))
                }) {
                None => Status::Unknown("/proc/kallsyms is not readable".into()),
                Some(false) => Status::Missing,
                Some(_) if !desc.kprobes => Status::Unsupported(
                    "the function exists, but this kernel has no kprobes (CONFIG_KPROBES off)"
                        .into(),
                ),
                Some(_) if desc.btf.as_ref().and_then(|b| b.offsets).is_none() => {
                    Status::Unsupported(
                        "no BTF for struct offsets: name one with --btf FILE".into(),
                    )
                }
                Some(_) => Status::Available,
            },
        },
    }
}

impl AttachPlan {
    /// Choose per step, trying `attach` on each chosen entry; an entry that
    /// fails is marked `Failed` and the next backend (then the other family)
    /// takes over. `attach` returning Ok for all gives the planned choice.
    pub fn choose(&mut self, attach: &mut dyn FnMut(&Entry) -> Result<(), String>) {
        let order = self.backend.order();
        for e in &mut self.entries {
            if e.status == Status::Used {
                e.status = Status::Available;
            }
        }
        let mut notes = Vec::new();
        // A failure seen before (same backend, same reason: a kernel that
        // refuses a backend refuses it everywhere) is counted on its first
        // note, not told again: (backend, reason, note index, more).
        let mut failures: Vec<(Backend, String, usize, usize)> = Vec::new();
        for step in Step::ALL {
            // The first backend in order with something available for this
            // step picks the family; inside it every attach point tries the
            // family's backends in order; a family that attaches nothing
            // hands the step to the next backend's family.
            let mut tried: Vec<Family> = Vec::new();
            for first in &order {
                let fam = first.family();
                if tried.contains(&fam)
                    || !self.entries.iter().any(|e| {
                        e.step == step && e.backend == *first && e.status == Status::Available
                    })
                {
                    continue;
                }
                tried.push(fam);
                let mut symbols: Vec<&'static str> = Vec::new();
                for e in self
                    .entries
                    .iter()
                    .filter(|e| e.step == step && e.backend.family() == fam)
                {
                    if !symbols.contains(&e.symbol) {
                        symbols.push(e.symbol);
                    }
                }
                let mut any = false;
                for sym in symbols {
                    for b in order.iter().filter(|b| b.family() == fam) {
                        let Some(i) = self
                            .entries
                            .iter()
                            .position(|e| e.step == step && e.symbol == sym && e.backend == *b)
                        else {
                            continue;
                        };
                        if self.entries[i].status != Status::Available {
                            continue;
                        }
                        match attach(&self.entries[i]) {
                            Ok(()) => {
                                self.entries[i].status = Status::Used;
                                if *b != order[0] && self.backend != Choice::Auto {
                                    let why = self
                                        .entries
                                        .iter()
                                        .find(|e| {
                                            e.step == step
                                                && e.symbol == sym
                                                && e.backend == order[0]
                                        })
                                        .map_or_else(
                                            || "no such attach point for it".to_string(),
                                            |e| status_text(&e.status),
                                        );
                                    notes.push(format!(
                                        "{}: {sym} through {} instead of {} ({why})",
                                        step.name(),
                                        b.name(),
                                        order[0].name()
                                    ));
                                }
                                any = true;
                                break;
                            }
                            Err(why) => {
                                match failures.iter_mut().find(|f| f.0 == *b && f.1 == why) {
                                    Some(f) => f.3 += 1,
                                    None => {
                                        failures.push((*b, why.clone(), notes.len(), 0));
                                        notes.push(format!(
                                            "{}: {} {sym} failed ({why}); trying the next backend",
                                            step.name(),
                                            b.name()
                                        ));
                                    }
                                }
                                self.entries[i].status = Status::Failed(why);
                            }
                        }
                    }
                }
                if any {
                    break;
                }
            }
        }
        for (b, _, at, more) in failures {
            if more > 0 {
                notes[at].push_str(&format!(
                    "; {} failed the same way on {more} more attach point(s)",
                    b.name()
                ));
            }
        }
        // Notes describe the last choice (planning, then the real attach).
        self.notes = notes;
        self.coverage = self.compute_coverage();
    }

    fn compute_coverage(&self) -> Vec<Coverage> {
        let used = |step: Step| -> Vec<String> {
            self.entries
                .iter()
                .filter(|e| e.step == step && e.status == Status::Used)
                .map(|e| format!("{} {}", e.backend.name(), e.symbol))
                .collect()
        };
        Step::ALL
            .iter()
            .map(|&step| {
                let by = used(step);
                let how = if !by.is_empty() {
                    "traced"
                } else if step.need() == Need::Inferred && !used(FaultEnd).is_empty() {
                    "inferred"
                } else {
                    "missing"
                };
                let by = if how == "inferred" {
                    vec!["the fault's end after a lookup that found blocks".to_string()]
                } else {
                    by
                };
                Coverage {
                    step,
                    need: step.need(),
                    how,
                    by,
                }
            })
            .collect()
    }

    /// Entries chosen (attached, or to attach).
    pub fn used(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.entries.iter().filter(|e| e.status == Status::Used)
    }

    /// Probes whose programs are (to be) attached.
    pub fn used_probes(&self) -> impl Iterator<Item = Probe> + '_ {
        self.used().filter_map(|e| e.probe)
    }

    /// Backends in use, with how many attach points each.
    pub fn backends_used(&self) -> Vec<(Backend, usize)> {
        let mut m: std::collections::BTreeMap<Backend, usize> = std::collections::BTreeMap::new();
        for e in self.used() {
            *m.entry(e.backend).or_insert(0) += 1;
        }
        m.into_iter().collect()
    }

    /// Mark a probe whose attach failed, so every output tells.
    pub fn mark_failed(&mut self, probe: Probe, why: String) {
        if let Some(e) = self
            .entries
            .iter_mut()
            .find(|e| e.status == Status::Used && e.probe == Some(probe))
        {
            e.status = Status::Failed(why);
        }
        self.coverage = self.compute_coverage();
    }

    /// Required steps that nothing covers.
    pub fn missing_required(&self) -> Vec<Step> {
        self.coverage
            .iter()
            .filter(|c| c.how == "missing" && c.need == Need::Required)
            .map(|c| c.step)
            .collect()
    }

    /// One line for headers and status lines: backends, then per step.
    pub fn summary_line(&self) -> String {
        let b: Vec<String> = self
            .backends_used()
            .iter()
            .map(|(b, n)| format!("{} {n}", b.name()))
            .collect();
        let steps: Vec<String> = self
            .coverage
            .iter()
            .map(|c| format!("{} {}", c.step.name(), c.how))
            .collect();
        format!(
            "{}; {}",
            if b.is_empty() {
                "nothing attached".to_string()
            } else {
                b.join(", ")
            },
            steps.join(", ")
        )
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
            k.tracefs
                .as_ref()
                .map_or("not mounted".into(), |p| p.display().to_string())
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
        let _ = writeln!(
            s,
            "struct offsets from: {}",
            self.btf_source
                .as_deref()
                .unwrap_or("no BTF (classic tracepoints only)")
        );
        if !self.btf_missing.is_empty() {
            let _ = writeln!(s, "BTF lacks: {}", self.btf_missing.join(", "));
        }
        let order: Vec<&str> = self.backend.order().iter().map(|b| b.name()).collect();
        let _ = writeln!(
            s,
            "backend: {} (order {})",
            self.backend.name(),
            order.join(" > ")
        );
        let checked = if self.checked == "attached" {
            "USED rows were loaded and attached (then detached)"
        } else {
            "USED rows are predicted from what the kernel lists (run as root to check by attaching)"
        };
        let _ = writeln!(s, "{checked}\n");
        let _ = writeln!(
            s,
            "{:<15} {:<11} {:<34} {:<28} STATUS",
            "STEP", "BACKEND", "ATTACH POINT", "KERNELS"
        );
        for e in &self.entries {
            let status = match &e.status {
                Status::Used => "USED".to_string(),
                Status::Available => "available".to_string(),
                Status::Unsupported(w) => format!("unusable: {w}"),
                Status::Missing => "missing".to_string(),
                Status::Unknown(w) => format!("unknown: {w}"),
                Status::Failed(w) => format!("FAILED: {w}"),
            };
            let _ = writeln!(
                s,
                "{:<15} {:<11} {:<34} {:<28} {}",
                e.step.name(),
                e.backend.name(),
                e.symbol,
                e.era,
                status
            );
        }
        let _ = writeln!(s, "\ncoverage:");
        for c in &self.coverage {
            let need = match c.need {
                Need::Required => "required",
                Need::Inferred => "inferable",
                Need::Optional => "optional",
            };
            let _ = writeln!(
                s,
                "  {:<15} {:<9} {:<9} {}",
                c.step.name(),
                need,
                c.how,
                c.by.join(", ")
            );
        }
        if !self.notes.is_empty() {
            let _ = writeln!(s, "\nnotes:");
            for n in &self.notes {
                let _ = writeln!(s, "  {n}");
            }
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
            assert_eq!(
                TABLE.iter().filter(|c| c.probe == Some(p)).count(),
                1,
                "{p:?}"
            );
            assert_eq!(probe_tracepoint(p), p.tracepoint());
        }
    }

    #[test]
    fn versions() {
        assert_eq!(version("6.18.0-1-amd64"), (6, 18));
        assert_eq!(version("4.4.302"), (4, 4));
    }

    #[test]
    fn orders() {
        assert_eq!(Choice::Auto.order(), Backend::AUTO.to_vec());
        assert_eq!(
            Choice::Tracepoint.order(),
            vec![
                Backend::Tracepoint,
                Backend::Fentry,
                Backend::TpBtf,
                Backend::RawTp,
                Backend::Kprobe
            ]
        );
        assert_eq!(Choice::Kprobe.order()[0], Backend::Kprobe);
        assert_eq!(Choice::Kprobe.order().len(), 5);
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

    #[test]
    fn fallback_when_the_first_backend_is_refused() {
        // Every tracepoint present with full BTF: tp_btf first; refuse it for
        // one tracepoint and that one falls back to raw_tp, the rest stay.
        let layout: HashMap<String, Field> = [
            "dev",
            "ino",
            "pgoff",
            "flags",
            "result",
            "offset",
            "length",
            "type",
            "lblk",
            "len",
            "mflags",
            "ret",
            "startoff",
            "blockcount",
            "mode",
        ]
        .iter()
        .enumerate()
        .map(|(i, n)| {
            (
                n.to_string(),
                Field {
                    offset: 8 + 8 * i as u16,
                    size: 8,
                },
            )
        })
        .collect();
        let events = TABLE
            .iter()
            .filter(|c| c.family == Family::Tracepoint)
            .map(|c| (c.symbol.to_string(), layout.clone()))
            .collect();
        let mut offsets = BtfOffsets::NONE;
        for (name, _, _) in btf::MEMBERS {
            btf::set(&mut offsets, name, 16);
        }
        let desc = KernelDesc {
            release: "6.12.0".into(),
            btf: Some(BtfFacts {
                source: "test".into(),
                kernel: true,
                funcs: HashSet::new(),
                tp_btf: TABLE
                    .iter()
                    .filter_map(|c| c.probe)
                    .map(|p| p.tracepoint().split_once(':').unwrap().1.to_string())
                    .collect(),
                offsets: Some(offsets),
                missing: vec![],
                in_module: HashMap::new(),
                vmlinux_ids: Vec::new(),
            }),
            events: Some(events),
            ..KernelDesc::default()
        };
        let mut p = plan_with(&desc, Choice::Auto, &|_, c| c.probe.is_some());
        let used =
            |p: &AttachPlan, sym: &str| p.used().find(|e| e.symbol == sym).map(|e| e.backend);
        assert_eq!(used(&p, "fs_dax:dax_pte_fault"), Some(Backend::TpBtf));
        p.choose(&mut |e| {
            if e.symbol == "fs_dax:dax_pte_fault" && e.backend == Backend::TpBtf {
                Err("EINVAL".into())
            } else {
                Ok(())
            }
        });
        assert_eq!(used(&p, "fs_dax:dax_pte_fault"), Some(Backend::RawTp));
        assert_eq!(used(&p, "fs_dax:dax_load_hole"), Some(Backend::TpBtf));
        assert!(
            p.notes
                .iter()
                .any(|n| n.contains("tp_btf fs_dax:dax_pte_fault failed (EINVAL)")),
            "{:?}",
            p.notes
        );
        // A backend that fails alike everywhere (a kernel refusing it) is
        // one note with a count, not a note per attach point.
        p.choose(&mut |e| {
            if e.backend == Backend::TpBtf {
                Err("EPERM".into())
            } else {
                Ok(())
            }
        });
        let failed = p
            .entries
            .iter()
            .filter(|e| e.backend == Backend::TpBtf && e.status == Status::Failed("EPERM".into()))
            .count();
        assert!(failed >= 5, "{}", p.render());
        let told: Vec<&String> = p.notes.iter().filter(|n| n.contains("EPERM")).collect();
        assert_eq!(told.len(), 1, "{:?}", p.notes);
        assert!(
            told[0].ends_with(&format!(
                "tp_btf failed the same way on {} more attach point(s)",
                failed - 1
            )),
            "{told:?}"
        );
        assert!(p.used().all(|e| e.backend != Backend::TpBtf));
        // 6.12: the insert tracepoints are silent, so insert is inferred.
        let ins = p.coverage.iter().find(|c| c.step == Insert).unwrap();
        assert_eq!(ins.how, "inferred");
        // Forced classic: every tracepoint through the classic backend.
        let p = plan_with(&desc, Choice::Tracepoint, &|_, c| c.probe.is_some());
        assert!(
            p.used().all(|e| e.backend == Backend::Tracepoint),
            "{}",
            p.render()
        );
        assert!(p.used().count() >= 10);
    }

    /// Debian's 6.12 (the lab): ext4 and xfs are modules, so their
    /// functions and tracepoints are in split BTF, which fentry and tp_btf
    /// cannot target from this build: the plan must send those to kprobe
    /// and raw_tp instead of failing at attach.
    #[test]
    fn module_btf_targets_go_to_kprobe_and_raw_tp() {
        let layout: HashMap<String, Field> = [
            "dev", "ino", "pgoff", "flags", "result", "offset", "length", "type", "lblk", "len",
            "mflags", "ret", "mode", "pos",
        ]
        .iter()
        .enumerate()
        .map(|(i, n)| {
            (
                n.to_string(),
                Field {
                    offset: 8 + 8 * i as u16,
                    size: 8,
                },
            )
        })
        .collect();
        let events = TABLE
            .iter()
            .filter(|c| c.family == Family::Tracepoint)
            .map(|c| (c.symbol.to_string(), layout.clone()))
            .collect();
        let mut offsets = BtfOffsets::NONE;
        for (name, _, _) in btf::MEMBERS {
            btf::set(&mut offsets, name, 16);
        }
        let funcs = [
            "dax_iomap_pte_fault",
            "dax_iomap_pmd_fault",
            "dax_insert_entry",
            "ext4_iomap_begin",
        ];
        let desc = KernelDesc {
            release: "6.12.57+deb12-amd64".into(),
            kprobes: true,
            btf: Some(BtfFacts {
                source: "test".into(),
                kernel: true,
                funcs: funcs.iter().map(|f| f.to_string()).collect(),
                tp_btf: ["dax_pte_fault", "dax_load_hole", "ext4_punch_hole"]
                    .iter()
                    .map(|f| f.to_string())
                    .collect(),
                offsets: Some(offsets),
                missing: vec![],
                in_module: [
                    ("ext4_iomap_begin", "ext4"),
                    ("btf_trace_ext4_punch_hole", "ext4"),
                ]
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
                vmlinux_ids: Vec::new(),
            }),
            events: Some(events),
            kallsyms: Some(funcs.iter().map(|f| f.to_string()).collect()),
            ..KernelDesc::default()
        };
        let p = plan_with(&desc, Choice::Fentry, &|_, _| true);
        let used = |sym: &str| p.used().find(|e| e.symbol == sym).map(|e| e.backend);
        assert_eq!(used("dax_iomap_pte_fault"), Some(Backend::Fentry));
        assert_eq!(used("dax_insert_entry"), Some(Backend::Fentry));
        // No fentry for the lookup: the next backend in order (the
        // tracepoint family) serves it, instead of a failed attach.
        assert_eq!(used("ext4_iomap_begin"), None, "{}", p.render());
        assert_eq!(
            used("iomap:iomap_iter_dstmap"),
            Some(Backend::RawTp),
            "{}",
            p.render()
        );
        let fe = p
            .entries
            .iter()
            .find(|e| e.symbol == "ext4_iomap_begin" && e.backend == Backend::Fentry)
            .unwrap();
        assert!(
            matches!(&fe.status, Status::Unsupported(w) if w.contains("module ext4")),
            "{:?}",
            fe.status
        );
        // kprobes reach module functions.
        let p = plan_with(&desc, Choice::Kprobe, &|_, _| true);
        assert_eq!(
            p.used()
                .find(|e| e.symbol == "ext4_iomap_begin")
                .map(|e| e.backend),
            Some(Backend::Kprobe),
            "{}",
            p.render()
        );
        let p = plan_with(&desc, Choice::TpBtf, &|_, _| true);
        let used = |sym: &str| p.used().find(|e| e.symbol == sym).map(|e| e.backend);
        assert_eq!(used("fs_dax:dax_pte_fault"), Some(Backend::TpBtf));
        assert_eq!(
            used("ext4:ext4_punch_hole"),
            Some(Backend::RawTp),
            "{}",
            p.render()
        );
    }
}
