//! The same tracepoints as the classic programs, attached as typed raw
//! tracepoints: `tp_btf` (BTF-typed arguments) and `raw_tp` (the same u64
//! argument array, untyped; works without BTF for the attach and for
//! tracepoints in modules). Neither pays for the classic tracepoint's copy
//! of every field into a record; they get the tracepoint's own arguments
//! (struct pointers) and read the few members we need at offsets taken from
//! BTF (`CONFIG.btf`).
//!
//! Programs are named `btf_<event>` and `raw_<event>`. Argument positions
//! are the tracepoints' `TP_PROTO`s, unchanged since the events appeared.

use aya_ebpf::{
    macros::{btf_tracepoint, raw_tracepoint},
    programs::{BtfTracePointContext, RawTracePointContext},
    EbpfContext,
};
use tracer_common::{
    BtfOffsets, Probe, INV_COLLAPSE_RANGE, INV_PUNCH_HOLE, INV_TRUNCATE, INV_ZERO_RANGE, MAP_HOLE,
    MAP_MAPPED, MAP_UNWRITTEN, NPAGES_TO_EOF, SIZE_PMD, SIZE_PTE,
};

use crate::path::{self, offsets, ArgArray, Args, BtfArgs};
use crate::{
    pages, EXT4_GET_BLOCKS_CREATE, EXT4_MAP_NEW, EXT4_MAP_UNWRITTEN, IOMAP_F_NEW, IOMAP_HOLE,
    IOMAP_MAPPED, IOMAP_UNWRITTEN,
};

/// (offsets, dev, ino, vmf) for the fs_dax events: `(struct inode *, struct vm_fault *, ...)`.
#[inline(always)]
fn dax_args(a: &impl Args) -> Option<(BtfOffsets, u32, u64, u64)> {
    let o = offsets();
    let (dev, ino) = path::inode_target(a, &o, a.arg(0))?;
    Some((o, dev, ino, a.arg(1)))
}

/// `dax_pte_fault(inode, vmf, result)`, `dax_pmd_fault(inode, vmf, max_pgoff, result)`.
#[inline(always)]
fn fault_begin(a: &impl Args, probe: Probe, size: u8) {
    let Some((o, dev, ino, vmf)) = dax_args(a) else {
        return;
    };
    let Ok(pgoff) = a.load::<u64>(vmf, o.vmf_pgoff) else {
        return;
    };
    let flags: u32 = a.load(vmf, o.vmf_flags).unwrap_or(0);
    let address: u64 = a.load(vmf, o.vmf_address).unwrap_or(0);
    path::fault_begin(&a.cur(), probe, size, dev, ino, pgoff, flags, address);
}

#[inline(always)]
fn fault_end(a: &impl Args, probe: Probe, size: u8, result_arg: usize) {
    let Some((o, dev, ino, vmf)) = dax_args(a) else {
        return;
    };
    let Ok(pgoff) = a.load::<u64>(vmf, o.vmf_pgoff) else {
        return;
    };
    path::fault_end(
        &a.cur(),
        probe,
        size,
        dev,
        ino,
        Some(pgoff),
        a.arg(result_arg) as u32,
    );
}

#[inline(always)]
fn load_hole(a: &impl Args, probe: Probe, size: u8) {
    let Some((o, dev, ino, vmf)) = dax_args(a) else {
        return;
    };
    path::load_hole(
        &a.cur(),
        probe,
        size,
        dev,
        ino,
        a.load::<u64>(vmf, o.vmf_pgoff).ok(),
    );
}

#[inline(always)]
fn insert(a: &impl Args, probe: Probe, size: u8) {
    let Some((o, dev, ino, vmf)) = dax_args(a) else {
        return;
    };
    path::insert(
        &a.cur(),
        probe,
        size,
        dev,
        ino,
        a.load::<u64>(vmf, o.vmf_pgoff).ok(),
    );
}

#[inline(always)]
pub(crate) fn iomap_result(ty: u16) -> u8 {
    match ty {
        IOMAP_HOLE => MAP_HOLE,
        IOMAP_UNWRITTEN => MAP_UNWRITTEN,
        IOMAP_MAPPED => MAP_MAPPED,
        // DELALLOC and INLINE never reach DAX; report them as mapped data.
        _ => MAP_MAPPED,
    }
}

/// `iomap_iter_dstmap(struct inode *, struct iomap *)`.
#[inline(always)]
fn iomap(a: &impl Args) {
    let o = offsets();
    let Some((dev, ino)) = path::inode_target(a, &o, a.arg(0)) else {
        return;
    };
    let map = a.arg(1);
    let (Ok(off), Ok(len), Ok(ty)) = (
        a.load::<i64>(map, o.iomap_offset),
        a.load::<u64>(map, o.iomap_length),
        a.load::<u16>(map, o.iomap_type),
    ) else {
        return;
    };
    let flags: u16 = a.load(map, o.iomap_flags).unwrap_or(0);
    let (pgoff, npages) = pages(off as u64, len);
    path::lookup(
        &a.cur(),
        Probe::IomapIterDstmap,
        dev,
        ino,
        pgoff,
        npages,
        iomap_result(ty),
        u8::from(flags & IOMAP_F_NEW != 0),
        None,
    );
}

/// `iomap_iter(struct iomap_iter *, const void *ops, unsigned long caller)`.
#[inline(always)]
fn iomap_iter(a: &impl Args) {
    let o = offsets();
    let iter = a.arg(0);
    let Ok(flags) = a.load::<u32>(iter, o.iter_flags) else {
        return;
    };
    path::iomap_iter(&a.cur(), Probe::IomapIter, flags, || {
        path::inode_target(a, &o, a.load::<u64>(iter, o.iter_inode).ok()?)
    });
}

/// What an ext4 block lookup found: its return value and `m_flags`.
#[inline(always)]
pub(crate) fn ext4_result(ret: i32, mflags: u32) -> u8 {
    if ret <= 0 {
        MAP_HOLE
    } else if mflags & EXT4_MAP_UNWRITTEN != 0 {
        MAP_UNWRITTEN
    } else {
        MAP_MAPPED
    }
}

/// `ext4_ext_map_blocks_exit(struct inode *, unsigned flags, struct ext4_map_blocks *, int ret)`.
#[inline(always)]
fn ext4_map_blocks(a: &impl Args) {
    let o = offsets();
    let Some((dev, ino)) = path::inode_target(a, &o, a.arg(0)) else {
        return;
    };
    let flags = a.arg(1) as u32;
    let map = a.arg(2);
    let ret = a.arg(3) as i32;
    let (Ok(lblk), Ok(len), Ok(mflags)) = (
        a.load::<u32>(map, o.ext4_map_lblk),
        a.load::<u32>(map, o.ext4_map_len),
        a.load::<u32>(map, o.ext4_map_flags),
    ) else {
        return;
    };
    let result = ext4_result(ret, mflags);
    let shift = 12 - crate::blkbits();
    let write = u8::from(flags & EXT4_GET_BLOCKS_CREATE != 0);
    path::lookup(
        &a.cur(),
        Probe::Ext4ExtMapBlocksExit,
        dev,
        ino,
        u64::from(lblk) >> shift,
        (u64::from(len) >> shift).max(1),
        result,
        u8::from(mflags & EXT4_MAP_NEW != 0),
        Some(write),
    );
}

/// `struct inode *` of a `struct xfs_inode *` (its embedded `i_vnode`).
#[inline(always)]
fn xfs_vfs_inode(o: &BtfOffsets, ip: u64) -> u64 {
    if o.xfs_inode_vnode == tracer_common::TpFields::ABSENT || ip == 0 {
        0
    } else {
        ip + u64::from(o.xfs_inode_vnode)
    }
}

/// `xfs_iomap_alloc(struct xfs_inode *, xfs_off_t, ssize_t, int whichfork, struct xfs_bmbt_irec *)`.
#[inline(always)]
fn xfs_alloc(a: &impl Args) {
    let o = offsets();
    let Some((dev, ino)) = path::inode_target(a, &o, xfs_vfs_inode(&o, a.arg(0))) else {
        return;
    };
    let irec = a.arg(4);
    let (Ok(startoff), Ok(count)) = (
        a.load::<u64>(irec, o.irec_startoff),
        a.load::<u64>(irec, o.irec_blockcount),
    ) else {
        return;
    };
    let shift = 12 - crate::blkbits();
    path::lookup(
        &a.cur(),
        Probe::XfsIomapAlloc,
        dev,
        ino,
        startoff >> shift,
        (count >> shift).max(1),
        MAP_MAPPED,
        1,
        Some(1),
    );
}

/// `ext4_punch_hole/zero_range(inode, offset, len, mode)`, `ext4_collapse_range(inode, offset, len)`.
#[inline(always)]
fn ext4_range(a: &impl Args, probe: Probe, reason: u8) {
    let o = offsets();
    let Some((dev, ino)) = path::inode_target(a, &o, a.arg(0)) else {
        return;
    };
    let (pgoff, npages) = pages(a.arg(1), a.arg(2));
    path::invalidate(&a.cur(), probe, dev, ino, pgoff, npages, reason);
}

/// `ext4_truncate_enter(inode)`, `xfs_free_file_space(ip)`: to EOF (they do not say where).
#[inline(always)]
fn to_eof(a: &impl Args, probe: Probe, reason: u8, xfs: bool) {
    let o = offsets();
    let inode = if xfs {
        xfs_vfs_inode(&o, a.arg(0))
    } else {
        a.arg(0)
    };
    let Some((dev, ino)) = path::inode_target(a, &o, inode) else {
        return;
    };
    path::invalidate(&a.cur(), probe, dev, ino, 0, NPAGES_TO_EOF, reason);
}

macro_rules! typed_tp {
    ($btf:ident, $raw:ident, $body:expr) => {
        #[btf_tracepoint]
        pub fn $btf(ctx: BtfTracePointContext) -> u32 {
            let f: fn(&BtfArgs) = $body;
            f(&BtfArgs(ctx.as_ptr() as *const u64));
            0
        }
        #[raw_tracepoint]
        pub fn $raw(ctx: RawTracePointContext) -> u32 {
            let f: fn(&ArgArray) = $body;
            f(&ArgArray(ctx.as_ptr() as *const u64));
            0
        }
    };
}

typed_tp!(btf_dax_pte_fault, raw_dax_pte_fault, |a| fault_begin(
    a,
    Probe::DaxPteFault,
    SIZE_PTE
));
typed_tp!(btf_dax_pte_fault_done, raw_dax_pte_fault_done, |a| {
    fault_end(a, Probe::DaxPteFaultDone, SIZE_PTE, 2)
});
typed_tp!(btf_dax_pmd_fault, raw_dax_pmd_fault, |a| fault_begin(
    a,
    Probe::DaxPmdFault,
    SIZE_PMD
));
typed_tp!(btf_dax_pmd_fault_done, raw_dax_pmd_fault_done, |a| {
    fault_end(a, Probe::DaxPmdFaultDone, SIZE_PMD, 3)
});
typed_tp!(btf_dax_load_hole, raw_dax_load_hole, |a| load_hole(
    a,
    Probe::DaxLoadHole,
    SIZE_PTE
));
typed_tp!(btf_dax_pmd_load_hole, raw_dax_pmd_load_hole, |a| load_hole(
    a,
    Probe::DaxPmdLoadHole,
    SIZE_PMD
));
typed_tp!(btf_dax_insert_mapping, raw_dax_insert_mapping, |a| insert(
    a,
    Probe::DaxInsertMapping,
    SIZE_PTE
));
typed_tp!(
    btf_dax_pmd_insert_mapping,
    raw_dax_pmd_insert_mapping,
    |a| insert(a, Probe::DaxPmdInsertMapping, SIZE_PMD)
);
typed_tp!(btf_iomap_iter_dstmap, raw_iomap_iter_dstmap, iomap);
typed_tp!(btf_iomap_iter, raw_iomap_iter, iomap_iter);
typed_tp!(
    btf_ext4_ext_map_blocks_exit,
    raw_ext4_ext_map_blocks_exit,
    ext4_map_blocks
);
typed_tp!(btf_xfs_iomap_alloc, raw_xfs_iomap_alloc, xfs_alloc);
typed_tp!(btf_ext4_punch_hole, raw_ext4_punch_hole, |a| ext4_range(
    a,
    Probe::Ext4PunchHole,
    INV_PUNCH_HOLE
));
typed_tp!(
    btf_ext4_truncate_enter,
    raw_ext4_truncate_enter,
    |a| to_eof(a, Probe::Ext4TruncateEnter, INV_TRUNCATE, false)
);
typed_tp!(btf_ext4_collapse_range, raw_ext4_collapse_range, |a| {
    ext4_range(a, Probe::Ext4CollapseRange, INV_COLLAPSE_RANGE)
});
typed_tp!(btf_ext4_zero_range, raw_ext4_zero_range, |a| ext4_range(
    a,
    Probe::Ext4ZeroRange,
    INV_ZERO_RANGE
));
typed_tp!(
    btf_xfs_free_file_space,
    raw_xfs_free_file_space,
    |a| to_eof(a, Probe::XfsFreeFileSpace, INV_PUNCH_HOLE, true)
);
