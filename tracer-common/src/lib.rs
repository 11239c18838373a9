//! Wire records shared by `tracer-ebpf` (writer) and `tracer` (reader).
//!
//! Every ring-buffer record is a [`Header`] at offset 0 followed by exactly one
//! payload struct chosen by `Header::kind`. Discriminants are stable: they are
//! part of the trace-file format too, so never renumber, only append.
//! This crate holds data only: no decoding logic (that is `tracer::decode`).
#![no_std]

use core::mem::{align_of, size_of};

/// Name of the BPF ring buffer map.
pub const EVENTS_MAP: &str = "EVENTS";
/// Name of the per-CPU array counting records that could not be reserved, per kind.
pub const DROPPED_MAP: &str = "DROPPED";
/// Name of the per-task "fault in progress" map.
pub const FAULTS_MAP: &str = "FAULTS";
/// Name of the load-time configuration global.
pub const CONFIG_GLOBAL: &str = "CONFIG";
/// Ring buffer size in bytes (power of two, multiple of the page size).
pub const EVENTS_RING_BYTES: u32 = 8 << 20;
/// Slots in [`DROPPED_MAP`]: one per [`Kind`] discriminant, 0 unused.
pub const DROPPED_SLOTS: u32 = 16;
/// Pages covered by one PMD (2 MiB / 4 KiB).
pub const PMD_PAGES: u64 = 512;

/// Record kinds. Stable discriminants; append only.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    FaultBegin = 1,
    FaultEnd = 2,
    MapBlocks = 3,
    LoadHole = 4,
    InsertMapping = 5,
    Invalidate = 6,
    Lost = 7,
}

impl Kind {
    pub const MAX: u16 = 7;

    pub fn from_u16(v: u16) -> Option<Self> {
        Some(match v {
            1 => Self::FaultBegin,
            2 => Self::FaultEnd,
            3 => Self::MapBlocks,
            4 => Self::LoadHole,
            5 => Self::InsertMapping,
            6 => Self::Invalidate,
            7 => Self::Lost,
            _ => return None,
        })
    }
}

/// Attach points that produce records, so that userspace can count per
/// tracepoint (and compare with the kernel's own trace). Stable; append only.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    None = 0,
    DaxPteFault = 1,
    DaxPteFaultDone = 2,
    DaxPmdFault = 3,
    DaxPmdFaultDone = 4,
    DaxLoadHole = 5,
    DaxPmdLoadHole = 6,
    DaxInsertMapping = 7,
    DaxPmdInsertMapping = 8,
    IomapIterDstmap = 9,
    Ext4ExtMapBlocksExit = 10,
    XfsIomapAlloc = 11,
    Ext4PunchHole = 12,
    Ext4TruncateEnter = 13,
    Ext4CollapseRange = 14,
    Ext4ZeroRange = 15,
    XfsFreeFileSpace = 16,
    // Kernel functions (kprobe/kretprobe, fentry/fexit backends), from 32 so
    // tracepoints can grow below. `*Ret` ones fire at the function's return.
    FnUDaxFault = 32,
    FnUDaxFaultRet = 33,
    FnDaxFault = 34,
    FnDaxFaultRet = 35,
    FnDaxIomapPteFault = 36,
    FnDaxIomapPteFaultRet = 37,
    FnDaxIomapPmdFault = 38,
    FnDaxIomapPmdFaultRet = 39,
    FnExt4IomapBeginRet = 40,
    FnExt2IomapBeginRet = 41,
    FnXfsFileIomapBeginRet = 42,
    FnXfsReadIomapBeginRet = 43,
    FnXfsDirectWriteIomapBeginRet = 44,
    FnXfsDaxWriteIomapBeginRet = 45,
    FnExt4DaxMmapGetBlockRet = 46,
    FnExt4DaxGetBlockRet = 47,
    FnExt2GetBlockRet = 48,
    FnXfsGetBlocksDaxFaultRet = 49,
    FnDaxLoadHole = 50,
    FnDaxPmdLoadHole = 51,
    FnDaxInsertMapping = 52,
    FnDaxInsertMappingEntry = 53,
    FnDaxInsertEntry = 54,
    /// The writer's next `iomap_iter`: its `write(2)` teardown of the
    /// previous, newly allocated extent is done (emitted as `invalidate`
    /// reason `write`; no kernel event of its own to compare with).
    IomapIter = 17,
}

impl Probe {
    pub const ALL: [Probe; 17] = [
        Self::DaxPteFault,
        Self::DaxPteFaultDone,
        Self::DaxPmdFault,
        Self::DaxPmdFaultDone,
        Self::DaxLoadHole,
        Self::DaxPmdLoadHole,
        Self::DaxInsertMapping,
        Self::DaxPmdInsertMapping,
        Self::IomapIterDstmap,
        Self::Ext4ExtMapBlocksExit,
        Self::XfsIomapAlloc,
        Self::Ext4PunchHole,
        Self::Ext4TruncateEnter,
        Self::Ext4CollapseRange,
        Self::Ext4ZeroRange,
        Self::XfsFreeFileSpace,
        Self::IomapIter,
    ];

    /// Function probes (not in [`Probe::ALL`], which lists tracepoints).
    pub const FUNCS: [Probe; 23] = [
        Self::FnUDaxFault,
        Self::FnUDaxFaultRet,
        Self::FnDaxFault,
        Self::FnDaxFaultRet,
        Self::FnDaxIomapPteFault,
        Self::FnDaxIomapPteFaultRet,
        Self::FnDaxIomapPmdFault,
        Self::FnDaxIomapPmdFaultRet,
        Self::FnExt4IomapBeginRet,
        Self::FnExt2IomapBeginRet,
        Self::FnXfsFileIomapBeginRet,
        Self::FnXfsReadIomapBeginRet,
        Self::FnXfsDirectWriteIomapBeginRet,
        Self::FnXfsDaxWriteIomapBeginRet,
        Self::FnExt4DaxMmapGetBlockRet,
        Self::FnExt4DaxGetBlockRet,
        Self::FnExt2GetBlockRet,
        Self::FnXfsGetBlocksDaxFaultRet,
        Self::FnDaxLoadHole,
        Self::FnDaxPmdLoadHole,
        Self::FnDaxInsertMapping,
        Self::FnDaxInsertMappingEntry,
        Self::FnDaxInsertEntry,
    ];
    /// Records of this probe are derived (not one record per kernel event),
    /// so they are left out of counts compared with the kernel's own trace.
    pub fn derived(self) -> bool {
        matches!(self, Self::IomapIter)
    }

    pub fn from_u16(v: u16) -> Option<Self> {
        Self::ALL
            .iter()
            .chain(Self::FUNCS.iter())
            .copied()
            .find(|p| *p as u16 == v)
            .or(if v == 0 { Some(Self::None) } else { None })
    }

    /// By its [`Probe::tracepoint`] name (tracepoints and functions).
    pub fn by_name(name: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .chain(Self::FUNCS.iter())
            .copied()
            .find(|p| p.tracepoint() == name)
    }

    /// The kernel function of a function probe ("" for tracepoints).
    pub fn function(self) -> &'static str {
        let n = self.tracepoint();
        match n.split_once(':') {
            Some(("func" | "func_ret", f)) => f,
            _ => "",
        }
    }

    /// `category:event` as in tracefs.
    pub fn tracepoint(self) -> &'static str {
        match self {
            Self::None => "",
            Self::DaxPteFault => "fs_dax:dax_pte_fault",
            Self::DaxPteFaultDone => "fs_dax:dax_pte_fault_done",
            Self::DaxPmdFault => "fs_dax:dax_pmd_fault",
            Self::DaxPmdFaultDone => "fs_dax:dax_pmd_fault_done",
            Self::DaxLoadHole => "fs_dax:dax_load_hole",
            Self::DaxPmdLoadHole => "fs_dax:dax_pmd_load_hole",
            Self::DaxInsertMapping => "fs_dax:dax_insert_mapping",
            Self::DaxPmdInsertMapping => "fs_dax:dax_pmd_insert_mapping",
            Self::IomapIterDstmap => "iomap:iomap_iter_dstmap",
            Self::Ext4ExtMapBlocksExit => "ext4:ext4_ext_map_blocks_exit",
            Self::XfsIomapAlloc => "xfs:xfs_iomap_alloc",
            Self::Ext4PunchHole => "ext4:ext4_punch_hole",
            Self::Ext4TruncateEnter => "ext4:ext4_truncate_enter",
            Self::Ext4CollapseRange => "ext4:ext4_collapse_range",
            Self::Ext4ZeroRange => "ext4:ext4_zero_range",
            Self::XfsFreeFileSpace => "xfs:xfs_free_file_space",
            Self::FnUDaxFault => "func:__dax_fault",
            Self::FnUDaxFaultRet => "func_ret:__dax_fault",
            Self::FnDaxFault => "func:dax_fault",
            Self::FnDaxFaultRet => "func_ret:dax_fault",
            Self::FnDaxIomapPteFault => "func:dax_iomap_pte_fault",
            Self::FnDaxIomapPteFaultRet => "func_ret:dax_iomap_pte_fault",
            Self::FnDaxIomapPmdFault => "func:dax_iomap_pmd_fault",
            Self::FnDaxIomapPmdFaultRet => "func_ret:dax_iomap_pmd_fault",
            Self::FnExt4IomapBeginRet => "func_ret:ext4_iomap_begin",
            Self::FnExt2IomapBeginRet => "func_ret:ext2_iomap_begin",
            Self::FnXfsFileIomapBeginRet => "func_ret:xfs_file_iomap_begin",
            Self::FnXfsReadIomapBeginRet => "func_ret:xfs_read_iomap_begin",
            Self::FnXfsDirectWriteIomapBeginRet => "func_ret:xfs_direct_write_iomap_begin",
            Self::FnXfsDaxWriteIomapBeginRet => "func_ret:xfs_dax_write_iomap_begin",
            Self::FnExt4DaxMmapGetBlockRet => "func_ret:ext4_dax_mmap_get_block",
            Self::FnExt4DaxGetBlockRet => "func_ret:ext4_dax_get_block",
            Self::FnExt2GetBlockRet => "func_ret:ext2_get_block",
            Self::FnXfsGetBlocksDaxFaultRet => "func_ret:xfs_get_blocks_dax_fault",
            Self::FnDaxLoadHole => "func:dax_load_hole",
            Self::FnDaxPmdLoadHole => "func:dax_pmd_load_hole",
            Self::FnDaxInsertMapping => "func:dax_insert_mapping",
            Self::FnDaxInsertMappingEntry => "func:dax_insert_mapping_entry",
            Self::FnDaxInsertEntry => "func:dax_insert_entry",
            Self::IomapIter => "iomap:iomap_iter",
        }
    }

    /// Name of the eBPF program for this attach point (`tp_<category>_<event>`).
    pub fn program(self) -> &'static str {
        match self {
            Self::None => "",
            Self::DaxPteFault => "tp_fs_dax_dax_pte_fault",
            Self::DaxPteFaultDone => "tp_fs_dax_dax_pte_fault_done",
            Self::DaxPmdFault => "tp_fs_dax_dax_pmd_fault",
            Self::DaxPmdFaultDone => "tp_fs_dax_dax_pmd_fault_done",
            Self::DaxLoadHole => "tp_fs_dax_dax_load_hole",
            Self::DaxPmdLoadHole => "tp_fs_dax_dax_pmd_load_hole",
            Self::DaxInsertMapping => "tp_fs_dax_dax_insert_mapping",
            Self::DaxPmdInsertMapping => "tp_fs_dax_dax_pmd_insert_mapping",
            Self::IomapIterDstmap => "tp_iomap_iomap_iter_dstmap",
            Self::Ext4ExtMapBlocksExit => "tp_ext4_ext4_ext_map_blocks_exit",
            Self::XfsIomapAlloc => "tp_xfs_xfs_iomap_alloc",
            Self::Ext4PunchHole => "tp_ext4_ext4_punch_hole",
            Self::Ext4TruncateEnter => "tp_ext4_ext4_truncate_enter",
            Self::Ext4CollapseRange => "tp_ext4_ext4_collapse_range",
            Self::Ext4ZeroRange => "tp_ext4_ext4_zero_range",
            Self::XfsFreeFileSpace => "tp_xfs_xfs_free_file_space",
            Self::IomapIter => "tp_iomap_iomap_iter",
            // Function probes have one program per backend (see tracer::attach::funcs).
            _ => "",
        }
    }
}

/// Fault size.
pub const SIZE_PTE: u8 = 0;
pub const SIZE_PMD: u8 = 1;

/// `MapBlocks::result`.
pub const MAP_HOLE: u8 = 0;
pub const MAP_MAPPED: u8 = 1;
pub const MAP_UNWRITTEN: u8 = 2;

/// `Invalidate::reason`.
pub const INV_TRUNCATE: u8 = 0;
pub const INV_PUNCH_HOLE: u8 = 1;
pub const INV_COLLAPSE_RANGE: u8 = 2;
pub const INV_ZERO_RANGE: u8 = 3;
pub const INV_WRITE: u8 = 4;

/// `Invalidate::npages` meaning "to the end of the file" (the kernel did not
/// say where: `ext4_truncate_enter`, `xfs_free_file_space`).
pub const NPAGES_TO_EOF: u64 = u64::MAX;

/// Fault ids: 0 means "no fault".
pub const NO_FAULT: u64 = 0;

/// Common header at offset 0 of every record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// [`Kind`] discriminant.
    pub kind: u16,
    /// [`Probe`] discriminant: which attach point produced the record.
    pub probe: u16,
    pub cpu: u32,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC).
    pub ts: u64,
    pub tid: u32,
    pub pid: u32,
    /// Kernel-internal `dev_t` (major << 20 | minor).
    pub dev: u32,
    pub _pad: u32,
    pub ino: u64,
    pub comm: [u8; 16],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultBegin {
    pub fault: u64,
    pub pgoff: u64,
    pub address: u64,
    /// `FAULT_FLAG_*` bits as the kernel reported them.
    pub flags: u32,
    pub size: u8,
    pub write: u8,
    pub _pad: [u8; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultEnd {
    pub fault: u64,
    pub pgoff: u64,
    /// `VM_FAULT_*` bits.
    pub result: u32,
    pub size: u8,
    pub _pad: [u8; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapBlocks {
    pub fault: u64,
    pub pgoff: u64,
    pub npages: u64,
    pub result: u8,
    pub new: u8,
    pub write: u8,
    pub _pad: [u8; 5],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadHole {
    pub fault: u64,
    pub pgoff: u64,
    pub size: u8,
    pub _pad: [u8; 7],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InsertMapping {
    pub fault: u64,
    pub pgoff: u64,
    pub size: u8,
    /// 1 when no probe saw the insert and it was inferred from the fault's end.
    pub inferred: u8,
    pub _pad: [u8; 6],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Invalidate {
    pub pgoff: u64,
    pub npages: u64,
    pub reason: u8,
    pub _pad: [u8; 7],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lost {
    pub count: u64,
}

/// A header followed by one payload: the unit written to the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Record<P> {
    pub header: Header,
    pub payload: P,
}

/// Per-task state of the fault in progress (value of [`FAULTS_MAP`], keyed by tid).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FaultCtx {
    pub fault: u64,
    pub pgoff: u64,
    pub size: u8,
    pub write: u8,
    /// Last lookup of this fault returned blocks (mapped/unwritten).
    pub lookup_mapped: u8,
    /// This fault loaded a hole.
    pub hole_loaded: u8,
    /// An insert was seen by a probe (so none is inferred).
    pub insert_seen: u8,
    pub _pad: [u8; 3],
    /// The fault's file, for probes inside the fault that cannot read it
    /// themselves (a function probe on `dax_insert_entry` when the fault
    /// began at a tracepoint).
    pub dev: u32,
    pub _pad2: u32,
    pub ino: u64,
}

/// Field offsets of one classic tracepoint's record, read by userspace from
/// tracefs `format` files. `u16::MAX` marks a field the kernel does not have.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TpFields {
    pub dev: u16,
    pub ino: u16,
    pub pgoff: u16,
    pub flags: u16,
    pub result: u16,
    /// Byte offset (iomap), `offset` (punch/zero/collapse) or `lblk`/`startoff`.
    pub offset: u16,
    /// Byte length (iomap, punch, ...) or block count.
    pub length: u16,
    /// iomap type, ext4 mflags.
    pub kind: u16,
    pub mode: u16,
    pub _pad: u16,
}

impl TpFields {
    pub const ABSENT: u16 = u16::MAX;
    pub const NONE: TpFields = TpFields {
        dev: Self::ABSENT,
        ino: Self::ABSENT,
        pgoff: Self::ABSENT,
        flags: Self::ABSENT,
        result: Self::ABSENT,
        offset: Self::ABSENT,
        length: Self::ABSENT,
        kind: Self::ABSENT,
        mode: Self::ABSENT,
        _pad: 0,
    };
}

impl Default for TpFields {
    fn default() -> Self {
        Self::NONE
    }
}

/// Byte offsets of the kernel struct members that the tp_btf, raw_tp,
/// kprobe and fentry programs read (they get struct pointers, not a
/// flattened record). Userspace takes them from the running kernel's BTF (or
/// `--btf FILE`); [`TpFields::ABSENT`] marks a member that kernel lacks.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BtfOffsets {
    /// `struct inode`: `i_sb`, `i_ino`; `struct super_block`: `s_dev`.
    pub inode_i_sb: u16,
    pub inode_i_ino: u16,
    pub sb_s_dev: u16,
    /// `struct vm_fault`: `vma`, `pgoff`, `address`, `flags`.
    pub vmf_vma: u16,
    pub vmf_pgoff: u16,
    pub vmf_address: u16,
    pub vmf_flags: u16,
    /// `struct vm_area_struct`: `vm_file`; `struct file`: `f_inode`.
    pub vma_vm_file: u16,
    pub file_f_inode: u16,
    /// `struct iomap`: `offset`, `length`, `type`, `flags`.
    pub iomap_offset: u16,
    pub iomap_length: u16,
    pub iomap_type: u16,
    pub iomap_flags: u16,
    /// `struct ext4_map_blocks`: `m_lblk`, `m_len`, `m_flags`.
    pub ext4_map_lblk: u16,
    pub ext4_map_len: u16,
    pub ext4_map_flags: u16,
    /// `struct xfs_inode`: `i_vnode` (the embedded `struct inode`).
    pub xfs_inode_vnode: u16,
    /// `struct xfs_bmbt_irec`: `br_startoff`, `br_blockcount`.
    pub irec_startoff: u16,
    pub irec_blockcount: u16,
    /// `struct buffer_head`: `b_state`, `b_size` (legacy `get_block`).
    pub bh_state: u16,
    pub bh_size: u16,
    /// Bit numbers in `b_state` (`enum bh_state_bits`): BH_Mapped, BH_New, BH_Unwritten.
    pub bh_bit_mapped: u16,
    pub bh_bit_new: u16,
    pub bh_bit_unwritten: u16,
    /// `struct iomap_iter` (5.15+): `inode`, `flags` (IOMAP_WRITE, IOMAP_DAX, ...).
    pub iter_inode: u16,
    pub iter_flags: u16,
    /// `struct task_struct`: `pid`, `tgid`, `comm`, which the tp_btf
    /// programs load from the current task instead of calling helpers
    /// (absent: they call the helpers).
    pub task_pid: u16,
    pub task_tgid: u16,
    pub task_comm: u16,
    pub _pad: u16,
}

impl BtfOffsets {
    pub const NONE: BtfOffsets = BtfOffsets {
        inode_i_sb: TpFields::ABSENT,
        inode_i_ino: TpFields::ABSENT,
        sb_s_dev: TpFields::ABSENT,
        vmf_vma: TpFields::ABSENT,
        vmf_pgoff: TpFields::ABSENT,
        vmf_address: TpFields::ABSENT,
        vmf_flags: TpFields::ABSENT,
        vma_vm_file: TpFields::ABSENT,
        file_f_inode: TpFields::ABSENT,
        iomap_offset: TpFields::ABSENT,
        iomap_length: TpFields::ABSENT,
        iomap_type: TpFields::ABSENT,
        iomap_flags: TpFields::ABSENT,
        ext4_map_lblk: TpFields::ABSENT,
        ext4_map_len: TpFields::ABSENT,
        ext4_map_flags: TpFields::ABSENT,
        xfs_inode_vnode: TpFields::ABSENT,
        irec_startoff: TpFields::ABSENT,
        irec_blockcount: TpFields::ABSENT,
        bh_state: TpFields::ABSENT,
        bh_size: TpFields::ABSENT,
        bh_bit_mapped: TpFields::ABSENT,
        bh_bit_new: TpFields::ABSENT,
        bh_bit_unwritten: TpFields::ABSENT,
        iter_inode: TpFields::ABSENT,
        iter_flags: TpFields::ABSENT,
        task_pid: TpFields::ABSENT,
        task_tgid: TpFields::ABSENT,
        task_comm: TpFields::ABSENT,
        _pad: 0,
    };
}

impl Default for BtfOffsets {
    fn default() -> Self {
        Self::NONE
    }
}

/// Load-time configuration, written into the eBPF object's `CONFIG` global
/// before load. Index `fields` by [`Probe`] discriminant.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Kernel `dev_t` to trace, or 0 for every device.
    pub filter_dev: u32,
    /// 1 when `filter_ino` applies.
    pub filter_ino_on: u32,
    pub filter_ino: u64,
    /// Filesystem block size shift for block-numbered tracepoints (12 = 4 KiB).
    pub blkbits: u32,
    pub _pad: u32,
    pub fields: [TpFields; 18],
    /// Struct member offsets for the backends that get struct pointers.
    pub btf: BtfOffsets,
}

impl Config {
    pub const DEFAULT: Config = Config {
        filter_dev: 0,
        filter_ino_on: 0,
        filter_ino: 0,
        blkbits: 12,
        _pad: 0,
        fields: [TpFields::NONE; 18],
        btf: BtfOffsets::NONE,
    };
}

impl Default for Config {
    fn default() -> Self {
        Self::DEFAULT
    }
}

// The layout is a wire format: pin it.
const _: () = {
    assert!(size_of::<Header>() == 56);
    assert!(align_of::<Header>() == 8);
    assert!(size_of::<FaultBegin>() == 32);
    assert!(size_of::<FaultEnd>() == 24);
    assert!(size_of::<MapBlocks>() == 32);
    assert!(size_of::<LoadHole>() == 24);
    assert!(size_of::<InsertMapping>() == 24);
    assert!(size_of::<Invalidate>() == 24);
    assert!(size_of::<Lost>() == 8);
    assert!(size_of::<FaultCtx>() == 40);
    assert!(size_of::<TpFields>() == 20);
    assert!(size_of::<BtfOffsets>() == 60);
    assert!(size_of::<Record<MapBlocks>>() == 88);
    assert!(Probe::ALL.len() + 1 == 18);
};

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: plain repr(C) data with explicit padding, any bit pattern valid.
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for TpFields {}
    unsafe impl aya::Pod for BtfOffsets {}
    unsafe impl aya::Pod for FaultCtx {}
    unsafe impl aya::Pod for Header {}
}
