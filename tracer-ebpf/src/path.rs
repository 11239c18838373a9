//! The fault-path logic shared by every backend that hands us values rather
//! than a classic tracepoint record (tp_btf, raw_tp, kprobe, fentry): each
//! entry reads its arguments its own way, then calls one of these.
//!
//! The same per-task fault context as the classic programs (`FAULTS`), so a
//! lookup, hole load or insert inside a fault carries the fault's id.

use core::ptr::{addr_of, read_volatile};

use aya_ebpf::helpers::bpf_probe_read_kernel;
use tracer_common::{
    BtfOffsets, FaultBegin, FaultCtx, FaultEnd, InsertMapping, Invalidate, Kind, LoadHole,
    MapBlocks, Probe, TpFields, INV_WRITE, MAP_HOLE, PMD_PAGES, SIZE_PMD,
};

use crate::{
    emit, next_fault_id, tid, Cur, Helpers, TaskBtf, WriteCtx, ANY_FAULT, CONFIG, FAULTS,
    FAULT_FLAG_WRITE, IOMAP_DAX, IOMAP_FAULT, IOMAP_WRITE, VM_FAULT_NOPAGE, WRITES,
};

/// Where arguments come from: a u64 array (tp_btf, raw_tp, fentry) or the
/// saved registers (kprobe).
pub trait Args {
    /// Where this program type's records take the task's ids and name.
    type Cur: Cur;

    fn arg(&self, n: usize) -> u64;

    fn cur(&self) -> Self::Cur;

    /// A `T` at `base + off` of kernel memory. A probe read by default:
    /// kprobe registers and raw_tp arguments are plain integers to the verifier.
    #[inline(always)]
    fn load<T>(&self, base: u64, off: u16) -> Result<T, i32> {
        kread(base, off)
    }
}

/// `ctx` of raw_tp and fentry/fexit programs: `u64 args[]`.
pub struct ArgArray(pub *const u64);

impl Args for ArgArray {
    type Cur = Helpers;

    #[inline(always)]
    fn cur(&self) -> Helpers {
        Helpers
    }

    #[inline(always)]
    fn arg(&self, n: usize) -> u64 {
        // SAFETY: the verifier checks the index against the attach point's
        // prototype (fentry) or the tracepoint's arity (raw_tp).
        unsafe { *self.0.add(n) }
    }
}

/// `ctx` of tp_btf programs. Their arguments are BTF-typed pointers, so the
/// verifier lets the program load members straight through them (and
/// through the pointers it loads, like `inode->i_sb`): one instruction the
/// JIT guards against faults, where `bpf_probe_read_kernel` costs a helper
/// call per member (7 of them made `iomap_iter_dstmap` ~580 ns per run on
/// the host, kernel bpf_stats). The offsets must be constants to the
/// verifier: they are, read from `CONFIG` in the frozen `.rodata` map; a
/// member the kernel lacks (`ABSENT`) is a branch the verifier prunes.
pub struct BtfArgs(pub *const u64);

impl Args for BtfArgs {
    type Cur = TaskBtf;

    #[inline(always)]
    fn cur(&self) -> TaskBtf {
        TaskBtf
    }

    #[inline(always)]
    fn arg(&self, n: usize) -> u64 {
        // SAFETY: the verifier checks the index against the prototype.
        unsafe { *self.0.add(n) }
    }

    #[inline(always)]
    fn load<T>(&self, base: u64, off: u16) -> Result<T, i32> {
        if off == TpFields::ABSENT || base == 0 {
            return Err(-1);
        }
        // SAFETY: a verifier-checked load of a member of a BTF-typed kernel
        // struct (size and offset checked against BTF at load time);
        // volatile so LLVM neither merges nor splits it.
        Ok(unsafe { read_volatile((base + u64::from(off)) as *const T) })
    }
}

#[inline(always)]
pub fn offsets() -> BtfOffsets {
    // SAFETY: CONFIG is a plain global the loader overwrote before load.
    unsafe { read_volatile(addr_of!(CONFIG.btf)) }
}

/// Read a `T` at `base + off` of kernel memory.
#[inline(always)]
pub fn kread<T>(base: u64, off: u16) -> Result<T, i32> {
    if off == TpFields::ABSENT || base == 0 {
        return Err(-1);
    }
    // SAFETY: bpf_probe_read_kernel checks the address; a bad one is an error.
    unsafe { bpf_probe_read_kernel((base + u64::from(off)) as *const T) }
}

/// (dev, ino) of a `struct inode *`, or None when the filter excludes it.
#[inline(always)]
pub fn inode_target(a: &impl Args, o: &BtfOffsets, inode: u64) -> Option<(u32, u64)> {
    let sb: u64 = a.load(inode, o.inode_i_sb).ok()?;
    let dev: u32 = a.load(sb, o.sb_s_dev).ok()?;
    let ino: u64 = a.load(inode, o.inode_i_ino).ok()?;
    crate::pass_filter(dev, ino).then_some((dev, ino))
}

/// The `struct inode *` of a `struct vm_fault *`: vmf->vma->vm_file->f_inode.
#[inline(always)]
pub fn vmf_inode(o: &BtfOffsets, vmf: u64) -> u64 {
    let vma: u64 = kread(vmf, o.vmf_vma).unwrap_or(0);
    let file: u64 = kread(vma, o.vma_vm_file).unwrap_or(0);
    kread(file, o.file_f_inode).unwrap_or(0)
}

#[inline(always)]
pub fn fault_begin(
    c: &impl Cur,
    probe: Probe,
    size: u8,
    dev: u32,
    ino: u64,
    pgoff: u64,
    flags: u32,
    address: u64,
) {
    let write = u8::from(flags & FAULT_FLAG_WRITE != 0);
    let fault = next_fault_id();
    let fc = FaultCtx {
        fault,
        pgoff,
        size,
        write,
        dev,
        ino,
        ..FaultCtx::default()
    };
    begin_fault(&fc);
    emit(
        c,
        Kind::FaultBegin,
        probe,
        dev,
        ino,
        FaultBegin {
            fault,
            pgoff,
            address,
            flags,
            size,
            write,
            _pad: [0; 2],
        },
    );
}

/// `pgoff` None: the fault's own (a probe at the fault's return has no vmf).
#[inline(always)]
pub fn fault_end(
    c: &impl Cur,
    probe: Probe,
    size: u8,
    dev: u32,
    ino: u64,
    pgoff: Option<u64>,
    result: u32,
) {
    let fc = end_fault();
    let fault = fc.map_or(0, |c| c.fault);
    let pgoff = pgoff.unwrap_or(fc.map_or(0, |c| c.pgoff));
    if let Some(f) = fc {
        // No probe on this kernel saw the insert: a fault that found blocks
        // and ended with NOPAGE without loading a hole inserted a mapping.
        if f.lookup_mapped != 0
            && f.hole_loaded == 0
            && f.insert_seen == 0
            && result & VM_FAULT_NOPAGE != 0
        {
            let first = if size == SIZE_PMD {
                pgoff & !(PMD_PAGES - 1)
            } else {
                pgoff
            };
            emit(
                c,
                Kind::InsertMapping,
                probe,
                dev,
                ino,
                InsertMapping {
                    fault,
                    pgoff: first,
                    size,
                    inferred: 1,
                    _pad: [0; 6],
                },
            );
        }
    }
    emit(
        c,
        Kind::FaultEnd,
        probe,
        dev,
        ino,
        FaultEnd {
            fault,
            pgoff,
            result,
            size,
            _pad: [0; 3],
        },
    );
}

/// The task's fault in progress, if any. A task's entry outlives its fault
/// (`fault == 0` once ended) and is rewritten in place by its next one: an
/// LRU insert and delete per fault were most of the fault programs' cost
/// under TCG (kernel bpf_stats in the lab: ~4 and ~3 us of a 6.7 and 5.9 us
/// run; docs/performance.md). The LRU still retires the entries of tasks
/// that are gone.
#[inline(always)]
pub fn task_fault() -> Option<*mut FaultCtx> {
    // SAFETY: a plain load of this task's map value.
    FAULTS
        .get_ptr_mut(&tid())
        .filter(|c| unsafe { read_volatile(addr_of!((**c).fault)) } != 0)
}

/// Start the task's fault context: its old entry rewritten, or a new one.
#[inline(always)]
pub fn begin_fault(fc: &FaultCtx) {
    let t = tid();
    if let Some(c) = FAULTS.get_ptr_mut(&t) {
        // SAFETY: this task's map value; only this task writes it.
        unsafe { *c = *fc };
        return;
    }
    if FAULTS.insert(&t, fc, 0).is_ok() {
        note_any_fault();
    }
}

/// End the task's fault: its context copied out and marked ended.
#[inline(always)]
pub fn end_fault() -> Option<FaultCtx> {
    let c = task_fault()?;
    // SAFETY: as in `begin_fault`.
    unsafe {
        let fc = *c;
        (*c).fault = 0;
        Some(fc)
    }
}

/// (fault id, the fault's pgoff) after marking the task's fault.
#[inline(always)]
fn in_fault(mark: fn(&mut FaultCtx)) -> (u64, Option<u64>) {
    match task_fault() {
        // SAFETY: map value of this task, updated in place.
        Some(c) => unsafe {
            mark(&mut *c);
            ((*c).fault, Some((*c).pgoff))
        },
        None => (0, None),
    }
}

#[inline(always)]
pub fn load_hole(c: &impl Cur, probe: Probe, size: u8, dev: u32, ino: u64, pgoff: Option<u64>) {
    let (fault, fpg) = in_fault(|c| c.hole_loaded = 1);
    let mut pgoff = pgoff.or(fpg).unwrap_or(0);
    if size == SIZE_PMD {
        pgoff &= !(PMD_PAGES - 1);
    }
    emit(
        c,
        Kind::LoadHole,
        probe,
        dev,
        ino,
        LoadHole {
            fault,
            pgoff,
            size,
            _pad: [0; 7],
        },
    );
}

#[inline(always)]
pub fn insert(c: &impl Cur, probe: Probe, size: u8, dev: u32, ino: u64, pgoff: Option<u64>) {
    let (fault, fpg) = in_fault(|c| c.insert_seen = 1);
    let mut pgoff = pgoff.or(fpg).unwrap_or(0);
    if size == SIZE_PMD {
        pgoff &= !(PMD_PAGES - 1);
    }
    emit(
        c,
        Kind::InsertMapping,
        probe,
        dev,
        ino,
        InsertMapping {
            fault,
            pgoff,
            size,
            inferred: 0,
            _pad: [0; 6],
        },
    );
}

/// Some fault has begun since load: until then no lookup can be inside one,
/// and lookups (one per O_DIRECT I/O) skip the per-task map.
#[inline(always)]
pub fn note_any_fault() {
    if let Some(p) = ANY_FAULT.get_ptr_mut(0) {
        // SAFETY: map value; every writer stores the same 1.
        unsafe { *p = 1 };
    }
}

/// Record a lookup's result in the task's fault (if any): (fault id, whether
/// that fault asked to write).
#[inline(always)]
pub fn note_lookup(result: u8) -> (u64, Option<u8>) {
    // A stale 0 is impossible for this task's own fault: its fault_begin
    // stored the 1 earlier in the task's order.
    // SAFETY: a plain load of a map value.
    if ANY_FAULT
        .get_ptr(0)
        .is_none_or(|p| unsafe { read_volatile(p) } == 0)
    {
        return (0, None);
    }
    match task_fault() {
        // SAFETY: map value of this task, updated in place.
        Some(c) => unsafe {
            (*c).lookup_mapped = u8::from(result != MAP_HOLE);
            ((*c).fault, Some((*c).write))
        },
        None => (0, None),
    }
}

/// A DAX `write(2)` allocated `npages` at `pgoff` (an iomap lookup with NEW
/// outside a fault): `dax_iomap_iter` tears down the range's hole pages
/// before copying, which the writer's next `iomap_iter` reports.
#[inline(always)]
pub fn note_write_alloc(dev: u32, ino: u64, pgoff: u64, npages: u64) {
    if let Some(w) = WRITES.get_ptr_mut(&tid()) {
        // SAFETY: map value of this task, updated in place.
        unsafe {
            if (*w).flags & (IOMAP_WRITE | IOMAP_DAX | IOMAP_FAULT) == IOMAP_WRITE | IOMAP_DAX {
                (*w).dev = dev;
                (*w).ino = ino;
                (*w).pgoff = pgoff;
                (*w).npages = npages;
            }
        }
    }
}

/// Every `iomap_iter` call (`flags`: the iteration's IOMAP_* flags): the
/// previous extent of this task is done. For a DAX write whose previous
/// extent was newly allocated, its teardown of that range
/// (`invalidate_inode_pages2_range`) has happened by now. `target` reads the
/// (dev, ino) of the iteration's inode, only when needed.
#[inline(always)]
pub fn iomap_iter(
    c: &impl Cur,
    probe: Probe,
    flags: u32,
    target: impl FnOnce() -> Option<(u32, u64)>,
) {
    // Reads, faults and non-DAX I/O (the common case) stop here, before
    // any map lookup: only a DAX write's iterations can have a pending extent.
    if flags & (IOMAP_WRITE | IOMAP_DAX | IOMAP_FAULT) != IOMAP_WRITE | IOMAP_DAX {
        return;
    }
    let t = tid();
    match WRITES.get_ptr_mut(&t) {
        // SAFETY: as above.
        Some(w) => unsafe {
            if (*w).npages != 0 {
                let (dev, ino, pgoff, npages) = ((*w).dev, (*w).ino, (*w).pgoff, (*w).npages);
                (*w).npages = 0;
                invalidate(c, probe, dev, ino, pgoff, npages, INV_WRITE);
            }
            (*w).flags = flags;
        },
        None => {
            let Some((dev, ino)) = target() else { return };
            let w = WriteCtx {
                dev,
                flags,
                ino,
                pgoff: 0,
                npages: 0,
            };
            let _ = WRITES.insert(&t, &w, 0);
        }
    }
}

/// A block lookup. `write` None: the caller's intent is not known to the
/// probe; inside a fault take the fault's, outside one an allocation implies it.
#[inline(always)]
pub fn lookup(
    c: &impl Cur,
    probe: Probe,
    dev: u32,
    ino: u64,
    pgoff: u64,
    npages: u64,
    result: u8,
    new: u8,
    write: Option<u8>,
) {
    let (fault, fwrite) = note_lookup(result);
    let write = write.or(fwrite).unwrap_or(new);
    // iomap lookups (dstmap, or an fs ->iomap_begin return under kprobe or
    // fentry: the lab saw no write teardown there) of a DAX write that allocated.
    let iomap = matches!(
        probe,
        Probe::IomapIterDstmap
            | Probe::FnExt4IomapBeginRet
            | Probe::FnExt2IomapBeginRet
            | Probe::FnXfsFileIomapBeginRet
            | Probe::FnXfsReadIomapBeginRet
            | Probe::FnXfsDirectWriteIomapBeginRet
            | Probe::FnXfsDaxWriteIomapBeginRet
    );
    if fault == 0 && new != 0 && iomap {
        note_write_alloc(dev, ino, pgoff, npages);
    }
    emit(
        c,
        Kind::MapBlocks,
        probe,
        dev,
        ino,
        MapBlocks {
            fault,
            pgoff,
            npages,
            result,
            new,
            write,
            _pad: [0; 5],
        },
    );
}

#[inline(always)]
pub fn invalidate(
    c: &impl Cur,
    probe: Probe,
    dev: u32,
    ino: u64,
    pgoff: u64,
    npages: u64,
    reason: u8,
) {
    emit(
        c,
        Kind::Invalidate,
        probe,
        dev,
        ino,
        Invalidate {
            pgoff,
            npages,
            reason,
            _pad: [0; 7],
        },
    );
}
