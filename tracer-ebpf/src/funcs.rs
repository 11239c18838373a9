//! Function probes on the DAX fault path, for kernels where the
//! tracepoints do not see a step (insert-mapping on 6.x, the fs lookup with
//! its NEW flag, everything on legacy kernels): fentry/fexit (BTF
//! trampolines) and kprobe/kretprobe (the oldest kernels). Struct members are
//! read at BTF offsets (`CONFIG.btf`), as for tp_btf.
//!
//! Programs are named `fe_`/`fx_`/`kp_`/`kr_` + function. Entry probes stash
//! the fault's (dev, ino) per task, so return probes (which have no
//! arguments under kretprobe) and probes whose arguments moved between
//! releases (dax_load_hole, dax_insert_entry) take them from there.

// Programs keep their kernel function's underscores (`fe___dax_fault`).
#![allow(non_snake_case)]

use aya_ebpf::{
    macros::{fentry, fexit, kprobe, kretprobe, map},
    maps::LruHashMap,
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext},
    EbpfContext,
};
use tracer_common::{
    BtfOffsets, Probe, TpFields, MAP_HOLE, MAP_MAPPED, MAP_UNWRITTEN, SIZE_PMD, SIZE_PTE,
};

use crate::btf_tp::iomap_result;
use crate::path::{self, kread, offsets, ArgArray, Args};
use crate::{pages, tid, Helpers, IOMAP_F_NEW};

/// What an entry probe leaves for the return probe (or for probes inside
/// the fault), keyed by (slot << 32 | tid).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Call {
    pub dev: u32,
    pub _pad: u32,
    pub ino: u64,
    /// Lookups: `struct iomap *` or `struct buffer_head *`.
    pub ptr: u64,
    /// Lookups: iomap flags / get_block `create`; the block number for get_block.
    pub flags: u64,
    pub block: u64,
}

#[map(name = "CALLS")]
static CALLS: LruHashMap<u64, Call> = LruHashMap::with_max_entries(65536, 0);

const SLOT_FAULT: u64 = 1;
const SLOT_LOOKUP: u64 = 2;

/// `IOMAP_WRITE` in `->iomap_begin`'s flags.
const IOMAP_WRITE: u64 = 1;
/// dax entry flags (4.20+ xarray): PMD, zero page, empty.
const DAX_PMD: u64 = 1 << 1;
const DAX_ZERO_PAGE: u64 = 1 << 2;
const DAX_EMPTY: u64 = 1 << 3;
/// The same in the radix-tree era (4.14-4.19): shifted by RADIX_TREE_EXCEPTIONAL_SHIFT (2).
const RADIX_DAX_PMD: u64 = 1 << 3;
const RADIX_DAX_ZERO_PAGE: u64 = 1 << 4;
const RADIX_DAX_EMPTY: u64 = 1 << 5;

#[inline(always)]
fn key(slot: u64) -> u64 {
    (slot << 32) | u64::from(tid())
}

/// kprobe arguments come from the saved registers.
pub struct Regs<'a>(&'a ProbeContext);

impl Args for Regs<'_> {
    type Cur = Helpers;

    #[inline(always)]
    fn cur(&self) -> Helpers {
        Helpers
    }

    #[inline(always)]
    fn arg(&self, n: usize) -> u64 {
        self.0.arg::<u64>(n).unwrap_or(0)
    }
}

/// `struct inode *` of a `struct vm_area_struct *`: vma->vm_file->f_inode.
#[inline(always)]
fn vma_inode(o: &BtfOffsets, vma: u64) -> u64 {
    let file: u64 = kread(vma, o.vma_vm_file).unwrap_or(0);
    kread(file, o.file_f_inode).unwrap_or(0)
}

/// Fault entry. `vma_arg`: legacy handlers take (vma, vmf, ...); the iomap
/// ones (4.11+) take vmf first and reach the vma through it.
#[inline(always)]
fn fault_enter(a: &impl Args, probe: Probe, size: u8, vmf_arg: usize, vma_arg: Option<usize>) {
    let o = offsets();
    let vmf = a.arg(vmf_arg);
    let inode = match vma_arg {
        Some(i) => vma_inode(&o, a.arg(i)),
        None => path::vmf_inode(&o, vmf),
    };
    let Some((dev, ino)) = path::inode_target(a, &o, inode) else {
        return;
    };
    let Ok(pgoff) = kread::<u64>(vmf, o.vmf_pgoff) else {
        return;
    };
    let flags: u32 = kread(vmf, o.vmf_flags).unwrap_or(0);
    let address: u64 = kread(vmf, o.vmf_address).unwrap_or(0);
    let c = Call {
        dev,
        _pad: 0,
        ino,
        ptr: 0,
        flags: 0,
        block: 0,
    };
    let _ = CALLS.insert(&key(SLOT_FAULT), &c, 0);
    path::fault_begin(&Helpers, probe, size, dev, ino, pgoff, flags, address);
}

#[inline(always)]
fn fault_exit(probe: Probe, size: u8, ret: u64) {
    let k = key(SLOT_FAULT);
    // SAFETY: copied out at once.
    let Some(c) = (unsafe { CALLS.get(&k) }).copied() else {
        return;
    };
    let _ = CALLS.remove(&k);
    path::fault_end(&Helpers, probe, size, c.dev, c.ino, None, ret as u32);
}

/// The fault this task is in: (dev, ino), or None outside a traced fault.
/// From the per-task fault context every backend's fault begin fills (a
/// fault may begin at a tracepoint while the insert is seen by a function
/// probe: the lab saw every such insert dropped when this read `CALLS`).
#[inline(always)]
fn in_fault() -> Option<(u32, u64)> {
    // SAFETY: copied out at once.
    crate::path::task_fault().map(|c| unsafe { ((*c).dev, (*c).ino) })
}

/// `->iomap_begin(inode, pos, length, flags, iomap, srcmap)`: entry side.
#[inline(always)]
fn iomap_enter(a: &impl Args) {
    let o = offsets();
    let Some((dev, ino)) = path::inode_target(a, &o, a.arg(0)) else {
        return;
    };
    let c = Call {
        dev,
        _pad: 0,
        ino,
        ptr: a.arg(4),
        flags: a.arg(3),
        block: 0,
    };
    let _ = CALLS.insert(&key(SLOT_LOOKUP), &c, 0);
}

/// Return side: the filled-in `struct iomap` when it returned 0.
#[inline(always)]
fn iomap_exit(probe: Probe, ret: u64) {
    let k = key(SLOT_LOOKUP);
    // SAFETY: copied out at once.
    let Some(c) = (unsafe { CALLS.get(&k) }).copied() else {
        return;
    };
    let _ = CALLS.remove(&k);
    if ret as i32 != 0 {
        return;
    }
    let o = offsets();
    let (Ok(off), Ok(len), Ok(ty)) = (
        kread::<i64>(c.ptr, o.iomap_offset),
        kread::<u64>(c.ptr, o.iomap_length),
        kread::<u16>(c.ptr, o.iomap_type),
    ) else {
        return;
    };
    let flags: u16 = kread(c.ptr, o.iomap_flags).unwrap_or(0);
    let (pgoff, npages) = pages(off as u64, len);
    let write = u8::from(c.flags & IOMAP_WRITE != 0);
    path::lookup(
        &Helpers,
        probe,
        c.dev,
        c.ino,
        pgoff,
        npages,
        iomap_result(ty),
        u8::from(flags & IOMAP_F_NEW != 0),
        Some(write),
    );
}

/// Legacy `get_block(inode, sector_t iblock, struct buffer_head *bh, int create)`: entry side.
#[inline(always)]
fn get_block_enter(a: &impl Args) {
    let o = offsets();
    let Some((dev, ino)) = path::inode_target(a, &o, a.arg(0)) else {
        return;
    };
    let c = Call {
        dev,
        _pad: 0,
        ino,
        ptr: a.arg(2),
        flags: a.arg(3),
        block: a.arg(1),
    };
    let _ = CALLS.insert(&key(SLOT_LOOKUP), &c, 0);
}

#[inline(always)]
fn bit(state: u64, b: u16) -> bool {
    b < 64 && state & (1u64 << b) != 0
}

/// Return side: the buffer_head's state (mapped, new, unwritten) and size.
#[inline(always)]
fn get_block_exit(probe: Probe, ret: u64) {
    let k = key(SLOT_LOOKUP);
    // SAFETY: copied out at once.
    let Some(c) = (unsafe { CALLS.get(&k) }).copied() else {
        return;
    };
    let _ = CALLS.remove(&k);
    if ret as i32 != 0 {
        return;
    }
    let o = offsets();
    if o.bh_bit_mapped == TpFields::ABSENT {
        return;
    }
    let (Ok(state), Ok(size)) = (
        kread::<u64>(c.ptr, o.bh_state),
        kread::<u64>(c.ptr, o.bh_size),
    ) else {
        return;
    };
    let result = if bit(state, o.bh_bit_unwritten) {
        MAP_UNWRITTEN
    } else if bit(state, o.bh_bit_mapped) {
        MAP_MAPPED
    } else {
        MAP_HOLE
    };
    let shift = 12 - crate::blkbits();
    path::lookup(
        &Helpers,
        probe,
        c.dev,
        c.ino,
        c.block >> shift,
        (size >> 12).max(1),
        result,
        u8::from(bit(state, o.bh_bit_new)),
        Some(u8::from(c.flags != 0)),
    );
}

#[inline(always)]
fn hole(probe: Probe, size: u8) {
    let Some((dev, ino)) = in_fault() else { return };
    path::load_hole(&Helpers, probe, size, dev, ino, None);
}

/// An insert of real blocks (not the zero page, not an empty entry).
#[inline(always)]
fn insert(probe: Probe, flags: u64, pmd: u64, zero: u64, empty: u64) {
    if flags & (zero | empty) != 0 {
        return;
    }
    let Some((dev, ino)) = in_fault() else { return };
    let size = if flags & pmd != 0 { SIZE_PMD } else { SIZE_PTE };
    path::insert(&Helpers, probe, size, dev, ino, None);
}

/// Entry probes: fentry and kprobe programs running one body.
macro_rules! on_entry {
    ($fe:ident, $kp:ident, $body:expr) => {
        #[fentry]
        pub fn $fe(ctx: FEntryContext) -> u32 {
            let f: fn(&ArgArray) = $body;
            f(&ArgArray(ctx.as_ptr() as *const u64));
            0
        }
        #[kprobe]
        pub fn $kp(ctx: ProbeContext) -> u32 {
            let f: fn(&Regs<'_>) = $body;
            f(&Regs(&ctx));
            0
        }
    };
}

/// Return probes: fexit and kretprobe programs, given the return value.
macro_rules! on_return {
    ($fx:ident, $kr:ident, $body:expr) => {
        #[fexit]
        pub fn $fx(ctx: FExitContext) -> u32 {
            let f: fn(u64) = $body;
            if let Ok(ret) = ctx.ret::<u64>() {
                f(ret);
            }
            0
        }
        #[kretprobe]
        pub fn $kr(ctx: RetProbeContext) -> u32 {
            let f: fn(u64) = $body;
            f(ctx.ret::<u64>());
            0
        }
    };
}

// Fault begin/end. Legacy (vma, vmf, get_block): `__dax_fault` (4.0-4.6), `dax_fault` (4.7-4.9).
on_entry!(fe___dax_fault, kp___dax_fault, |a| fault_enter(
    a,
    Probe::FnUDaxFault,
    SIZE_PTE,
    1,
    Some(0)
));
on_return!(fx___dax_fault, kr___dax_fault, |r| fault_exit(
    Probe::FnUDaxFaultRet,
    SIZE_PTE,
    r
));
on_entry!(fe_dax_fault, kp_dax_fault, |a| fault_enter(
    a,
    Probe::FnDaxFault,
    SIZE_PTE,
    1,
    Some(0)
));
on_return!(fx_dax_fault, kr_dax_fault, |r| fault_exit(
    Probe::FnDaxFaultRet,
    SIZE_PTE,
    r
));
// iomap era (4.11+): (vmf, ...).
on_entry!(fe_dax_iomap_pte_fault, kp_dax_iomap_pte_fault, |a| {
    fault_enter(a, Probe::FnDaxIomapPteFault, SIZE_PTE, 0, None)
});
on_return!(fx_dax_iomap_pte_fault, kr_dax_iomap_pte_fault, |r| {
    fault_exit(Probe::FnDaxIomapPteFaultRet, SIZE_PTE, r)
});
on_entry!(fe_dax_iomap_pmd_fault, kp_dax_iomap_pmd_fault, |a| {
    fault_enter(a, Probe::FnDaxIomapPmdFault, SIZE_PMD, 0, None)
});
on_return!(fx_dax_iomap_pmd_fault, kr_dax_iomap_pmd_fault, |r| {
    fault_exit(Probe::FnDaxIomapPmdFaultRet, SIZE_PMD, r)
});

// Block lookups: the fs `->iomap_begin` (entry stashes, return reads the iomap).
on_entry!(fe_ext4_iomap_begin, kp_ext4_iomap_begin, |a| iomap_enter(a));
on_return!(fx_ext4_iomap_begin, kr_ext4_iomap_begin, |r| iomap_exit(
    Probe::FnExt4IomapBeginRet,
    r
));
on_entry!(fe_ext2_iomap_begin, kp_ext2_iomap_begin, |a| iomap_enter(a));
on_return!(fx_ext2_iomap_begin, kr_ext2_iomap_begin, |r| iomap_exit(
    Probe::FnExt2IomapBeginRet,
    r
));
on_entry!(fe_xfs_file_iomap_begin, kp_xfs_file_iomap_begin, |a| {
    iomap_enter(a)
});
on_return!(fx_xfs_file_iomap_begin, kr_xfs_file_iomap_begin, |r| {
    iomap_exit(Probe::FnXfsFileIomapBeginRet, r)
});
on_entry!(fe_xfs_read_iomap_begin, kp_xfs_read_iomap_begin, |a| {
    iomap_enter(a)
});
on_return!(fx_xfs_read_iomap_begin, kr_xfs_read_iomap_begin, |r| {
    iomap_exit(Probe::FnXfsReadIomapBeginRet, r)
});
on_entry!(
    fe_xfs_direct_write_iomap_begin,
    kp_xfs_direct_write_iomap_begin,
    |a| iomap_enter(a)
);
on_return!(
    fx_xfs_direct_write_iomap_begin,
    kr_xfs_direct_write_iomap_begin,
    |r| iomap_exit(Probe::FnXfsDirectWriteIomapBeginRet, r)
);
on_entry!(
    fe_xfs_dax_write_iomap_begin,
    kp_xfs_dax_write_iomap_begin,
    |a| iomap_enter(a)
);
on_return!(
    fx_xfs_dax_write_iomap_begin,
    kr_xfs_dax_write_iomap_begin,
    |r| iomap_exit(Probe::FnXfsDaxWriteIomapBeginRet, r)
);
// Legacy get_block callbacks.
on_entry!(
    fe_ext4_dax_mmap_get_block,
    kp_ext4_dax_mmap_get_block,
    |a| get_block_enter(a)
);
on_return!(
    fx_ext4_dax_mmap_get_block,
    kr_ext4_dax_mmap_get_block,
    |r| get_block_exit(Probe::FnExt4DaxMmapGetBlockRet, r)
);
on_entry!(fe_ext4_dax_get_block, kp_ext4_dax_get_block, |a| {
    get_block_enter(a)
});
on_return!(fx_ext4_dax_get_block, kr_ext4_dax_get_block, |r| {
    get_block_exit(Probe::FnExt4DaxGetBlockRet, r)
});
on_entry!(fe_ext2_get_block, kp_ext2_get_block, |a| get_block_enter(a));
on_return!(fx_ext2_get_block, kr_ext2_get_block, |r| get_block_exit(
    Probe::FnExt2GetBlockRet,
    r
));
on_entry!(
    fe_xfs_get_blocks_dax_fault,
    kp_xfs_get_blocks_dax_fault,
    |a| get_block_enter(a)
);
on_return!(
    fx_xfs_get_blocks_dax_fault,
    kr_xfs_get_blocks_dax_fault,
    |r| get_block_exit(Probe::FnXfsGetBlocksDaxFaultRet, r)
);

// Hole loads and inserts: inside a traced fault, at entry.
on_entry!(fe_dax_load_hole, kp_dax_load_hole, |_a| hole(
    Probe::FnDaxLoadHole,
    SIZE_PTE
));
on_entry!(fe_dax_pmd_load_hole, kp_dax_pmd_load_hole, |_a| hole(
    Probe::FnDaxPmdLoadHole,
    SIZE_PMD
));
on_entry!(fe_dax_insert_mapping, kp_dax_insert_mapping, |_a| insert(
    Probe::FnDaxInsertMapping,
    0,
    0,
    0,
    0
));
// (mapping, vmf, entry, pfn, flags, dirty)
on_entry!(
    fe_dax_insert_mapping_entry,
    kp_dax_insert_mapping_entry,
    |a| insert(
        Probe::FnDaxInsertMappingEntry,
        a.arg(4),
        RADIX_DAX_PMD,
        RADIX_DAX_ZERO_PAGE,
        RADIX_DAX_EMPTY
    )
);
// 4.20-5.x (xas, mapping, vmf, entry, pfn, flags, dirty); 6.x (xas, vmf, iter, entry, pfn, flags): flags is arg 5 in both.
on_entry!(fe_dax_insert_entry, kp_dax_insert_entry, |a| insert(
    Probe::FnDaxInsertEntry,
    a.arg(5),
    DAX_PMD,
    DAX_ZERO_PAGE,
    DAX_EMPTY
));
