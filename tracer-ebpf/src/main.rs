//! daxtrace eBPF programs: classic tracepoints on the DAX fault path.
//!
//! Each program is a thin entry that calls a shared `try_*` function. Field
//! offsets are never compiled in: userspace reads them from the running
//! kernel's tracefs `format` files and writes them into `CONFIG` before load.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// On the host (`cargo build --workspace`, clippy) this is an empty binary;
// the real object is built for bpfel by tracer/build.rs.
#![cfg_attr(not(target_arch = "bpf"), allow(dead_code, unused_imports))]

#[cfg(not(target_arch = "bpf"))]
fn main() {}

mod btf_tp;
mod funcs;
mod path;

use core::ptr::{addr_of, addr_of_mut, read_volatile};

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns, generated},
    macros::{map, tracepoint},
    maps::{Array, LruHashMap, PerCpuArray, RingBuf},
    programs::TracePointContext,
    EbpfContext as _,
};
use tracer_common::{
    Config, FaultBegin, FaultCtx, FaultEnd, InsertMapping, Invalidate, Kind, LoadHole, MapBlocks,
    Probe, Record, TpFields, DROPPED_SLOTS, EVENTS_RING_BYTES, INV_COLLAPSE_RANGE, INV_PUNCH_HOLE,
    INV_TRUNCATE, INV_ZERO_RANGE, MAP_MAPPED, NPAGES_TO_EOF, SIZE_PMD, SIZE_PTE,
};

#[unsafe(no_mangle)]
static CONFIG: Config = Config::DEFAULT;

#[map(name = "EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_RING_BYTES, 0);

/// Records that could not be reserved, per kind (the ring-buffer loss count).
#[map(name = "DROPPED")]
static DROPPED: PerCpuArray<u64> = PerCpuArray::with_max_entries(DROPPED_SLOTS, 0);

/// Fault context per task, so events inside a fault carry its id; kept
/// after the fault ends (`fault == 0`) and rewritten by the task's next one
/// (`path::begin_fault`). LRU so that exited tasks' entries cannot fill the
/// map; sized by the loader (per possible CPU).
#[map(name = "FAULTS")]
static FAULTS: LruHashMap<u32, FaultCtx> = LruHashMap::with_max_entries(65536, 0);

/// Per-CPU fault sequence; ids are (seq << 12 | cpu), unique per trace, never 0.
#[map(name = "FAULT_SEQ")]
static FAULT_SEQ: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// 1 once any fault has been put in `FAULTS`: until then a block lookup
/// (every event on a machine without DAX faults) skips the hash lookup.
/// Only ever set, so no atomics (the bpf target has none in `core`).
#[map(name = "ANY_FAULT")]
static ANY_FAULT: Array<u64> = Array::with_max_entries(1, 0);

/// Per CPU: when this CPU last looked at the ring buffer's fill (ns).
#[map(name = "LAST_WAKE")]
static LAST_WAKE: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Records never wake the reader on their own: by default the kernel wakes
/// it for every record written while it has caught up, which for a reader
/// that keeps up is nearly every record (an irq_work and a self-IPI each,
/// measured at ~1.5 us per event on the host VM, `cargo xtask
/// bench-overhead`), and even one forced wakeup per ms per CPU showed in a
/// profile of the host bench as ~90 ns per event (the self-IPI's APIC write
/// traps to the hypervisor here). The reader polls in slices of at most
/// `ringbuf::MAX_QUIET` (10 ms), so an unannounced record waits no longer.
/// Only a ring filling faster than that is announced: at most once per
/// `WAKE_CHECK_NS` per CPU a record looks at the unread bytes and wakes the
/// reader when they pass `WAKE_BYTES`.
const WAKE_CHECK_NS: u64 = 1_000_000;
/// An eighth of the ring: far from full, yet rarely reached in 10 ms.
const WAKE_BYTES: u64 = EVENTS_RING_BYTES as u64 / 8;

/// A DAX write(2)'s iteration, and the newly allocated extent it is
/// processing (`npages == 0`: none pending).
#[derive(Clone, Copy)]
#[repr(C)]
struct WriteCtx {
    dev: u32,
    flags: u32,
    ino: u64,
    pgoff: u64,
    npages: u64,
}

/// Per task: the DAX write in progress, so the writer's next `iomap_iter`
/// can report the teardown of the extent it allocated. LRU: never fills.
#[map(name = "WRITES")]
static WRITES: LruHashMap<u32, WriteCtx> = LruHashMap::with_max_entries(16384, 0);

const FAULT_FLAG_WRITE: u32 = 0x1;
const IOMAP_WRITE: u32 = 1 << 0;
const IOMAP_FAULT: u32 = 1 << 3;
const IOMAP_DAX: u32 = 1 << 8;
const VM_FAULT_NOPAGE: u32 = 0x100;
const IOMAP_HOLE: u16 = 0;
const IOMAP_MAPPED: u16 = 2;
const IOMAP_UNWRITTEN: u16 = 3;
const IOMAP_F_NEW: u16 = 1;
const EXT4_MAP_NEW: u32 = 1 << 5;
const EXT4_MAP_UNWRITTEN: u32 = 1 << 11;
const EXT4_GET_BLOCKS_CREATE: u32 = 1;

type Res = Result<(), i32>;

#[inline(always)]
fn fields(probe: Probe) -> TpFields {
    // SAFETY: CONFIG is a plain global the loader overwrote before load.
    unsafe { read_volatile(addr_of!(CONFIG.fields[probe as usize])) }
}

/// Bytes of a classic tracepoint record copied at once: every field we read
/// on 6.x ends before byte 80.
const REC_BYTES: usize = 96;

/// A classic tracepoint record, copied to the stack with one helper call so
/// that each field is a plain load. A helper call costs ~50 ns on the host
/// VM (bpf_stats): one per field made the program several times slower.
struct Tp<'a> {
    ctx: &'a TracePointContext,
    /// Filled by the helper (zeroed by it when the read fails), so never
    /// zeroed here: a 96-byte memset is a loop of ~300 instructions in BPF.
    rec: core::mem::MaybeUninit<[u8; REC_BYTES]>,
    /// false: the copy failed; fields are read one by one from `ctx`.
    whole: bool,
}

impl<'a> Tp<'a> {
    #[inline(always)]
    fn new(ctx: &'a TracePointContext) -> Self {
        let mut t = Tp {
            ctx,
            rec: core::mem::MaybeUninit::uninit(),
            whole: false,
        };
        // SAFETY: the record sits in the per-CPU perf trace buffer (8 KiB),
        // so REC_BYTES from its start are kernel memory; a failed read is
        // reported (and zeroes the buffer), not a fault.
        t.whole = unsafe {
            generated::bpf_probe_read_kernel(
                t.rec.as_mut_ptr().cast(),
                REC_BYTES as u32,
                ctx.as_ptr(),
            )
        } == 0;
        t
    }
}

#[inline(always)]
fn read<T>(ctx: &Tp, off: u16) -> Result<T, i32> {
    if off == TpFields::ABSENT {
        return Err(-1);
    }
    let off = off as usize;
    if ctx.whole && off <= REC_BYTES - core::mem::size_of::<T>() {
        // SAFETY: bounds checked just above; T is a plain integer.
        return Ok(unsafe {
            core::ptr::read_unaligned(ctx.rec.as_ptr().cast::<u8>().add(off).cast::<T>())
        });
    }
    // SAFETY: offset comes from the tracepoint's own format file.
    unsafe { ctx.ctx.read_at::<T>(off) }
}

/// (dev, ino) of the record, or None when the filter excludes it.
#[inline(always)]
fn target(ctx: &Tp, f: &TpFields) -> Option<(u32, u64)> {
    let dev: u32 = read(ctx, f.dev).ok()?;
    let ino: u64 = read(ctx, f.ino).ok()?;
    // SAFETY: as in `fields`.
    let (fdev, fon, fino) = unsafe {
        (
            read_volatile(addr_of!(CONFIG.filter_dev)),
            read_volatile(addr_of!(CONFIG.filter_ino_on)),
            read_volatile(addr_of!(CONFIG.filter_ino)),
        )
    };
    if (fdev != 0 && fdev != dev) || (fon != 0 && fino != ino) {
        return None;
    }
    Some((dev, ino))
}

/// The user's dev/inode filter (for backends that read dev and ino themselves).
#[inline(always)]
fn pass_filter(dev: u32, ino: u64) -> bool {
    // SAFETY: as in `fields`.
    let (fdev, fon, fino) = unsafe {
        (
            read_volatile(addr_of!(CONFIG.filter_dev)),
            read_volatile(addr_of!(CONFIG.filter_ino_on)),
            read_volatile(addr_of!(CONFIG.filter_ino)),
        )
    };
    !((fdev != 0 && fdev != dev) || (fon != 0 && fino != ino))
}

#[inline(always)]
fn dropped(kind: Kind) {
    if let Some(c) = DROPPED.get_ptr_mut(kind as u32) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *c += 1 };
    }
}

/// Submit flags for a record written at `ts`: see `WAKE_CHECK_NS`.
#[inline(always)]
fn wake_flags(ts: u64) -> u64 {
    let Some(last) = LAST_WAKE.get_ptr_mut(0) else {
        return u64::from(BPF_RB_NO_WAKEUP);
    };
    // SAFETY: per-CPU slot, no concurrent writer on this CPU.
    unsafe {
        if ts.wrapping_sub(*last) < WAKE_CHECK_NS {
            return u64::from(BPF_RB_NO_WAKEUP);
        }
        *last = ts;
    }
    if EVENTS.query(u64::from(BPF_RB_AVAIL_DATA)) >= WAKE_BYTES {
        u64::from(BPF_RB_FORCE_WAKEUP)
    } else {
        u64::from(BPF_RB_NO_WAKEUP)
    }
}

/// Write one record straight into its ring-buffer reservation: every header
/// field is one store (no record built on the stack and copied, no
/// zeroed comm buffer: those were BPF `memset` calls and byte-by-byte
/// copies); `c` writes the task's ids and name in place.
#[inline(always)]
fn emit<P: Put + 'static>(c: &impl Cur, kind: Kind, probe: Probe, dev: u32, ino: u64, payload: P) {
    let Some(mut entry) = EVENTS.reserve::<Record<P>>(0) else {
        dropped(kind);
        return;
    };
    let r = entry.as_mut_ptr();
    // SAFETY: plain helpers without arguments.
    let (ts, cpu) = unsafe { (bpf_ktime_get_ns(), bpf_get_smp_processor_id()) };
    // SAFETY: `r` is the reserved record (size_of::<Record<P>>() bytes,
    // 8-aligned); every byte of it is written below (the header's `_pad`
    // with `dev`, the payload's padding by `Put`).
    unsafe {
        let h = addr_of_mut!((*r).header);
        // kind (u16) then probe (u16): one store, little-endian.
        addr_of_mut!((*h).kind)
            .cast::<u32>()
            .write(u32::from(kind as u16) | (u32::from(probe as u16) << 16));
        addr_of_mut!((*h).cpu).write(cpu);
        addr_of_mut!((*h).ts).write(ts);
        // dev then `_pad` (0).
        addr_of_mut!((*h).dev).cast::<u64>().write(u64::from(dev));
        addr_of_mut!((*h).ino).write(ino);
        // tid (low half) then pid, and all 16 bytes of comm.
        c.put_task(
            addr_of_mut!((*h).tid).cast::<u64>(),
            addr_of_mut!((*h).comm),
        );
        payload.put(addr_of_mut!((*r).payload));
    }
    entry.submit(wake_flags(ts));
}

/// Where a record's task ids and name come from.
pub trait Cur {
    /// Write the current task's `tid | pid << 32` to `ids` and its name
    /// (NUL padded) to `comm`.
    ///
    /// # Safety
    /// Both are valid for writes.
    unsafe fn put_task(&self, ids: *mut u64, comm: *mut [u8; 16]);
}

/// The helpers: every program type, every kernel.
pub struct Helpers;

impl Cur for Helpers {
    #[inline(always)]
    unsafe fn put_task(&self, ids: *mut u64, comm: *mut [u8; 16]) {
        // SAFETY: per the trait; the helper fills all 16 bytes (zeroes if it fails).
        unsafe {
            ids.write(generated::bpf_get_current_pid_tgid());
            generated::bpf_get_current_comm(comm.cast(), 16);
        }
    }
}

/// tp_btf programs: loads through `bpf_get_current_task_btf()` (a BTF
/// pointer, loaded from like the programs' arguments) at BTF offsets.
/// `bpf_get_current_comm` (a strscpy) was a fifth of `iomap_iter_dstmap`'s
/// time in a profile of the host bench. The kernel keeps `comm` NUL padded
/// (`__set_task_comm` uses strscpy_pad), and the decoder stops at the first
/// NUL anyway, so events are the same as with the helpers.
pub struct TaskBtf;

impl Cur for TaskBtf {
    #[inline(always)]
    unsafe fn put_task(&self, ids: *mut u64, comm: *mut [u8; 16]) {
        // SAFETY: as in `fields`.
        let (op, ot, oc) = unsafe {
            (
                read_volatile(addr_of!(CONFIG.btf.task_pid)),
                read_volatile(addr_of!(CONFIG.btf.task_tgid)),
                read_volatile(addr_of!(CONFIG.btf.task_comm)),
            )
        };
        if op == TpFields::ABSENT || ot == TpFields::ABSENT || oc == TpFields::ABSENT {
            // SAFETY: per the trait.
            return unsafe { Helpers.put_task(ids, comm) };
        }
        // SAFETY: verifier-checked loads of task_struct members (offsets
        // are constants from the frozen CONFIG); the writes per the trait.
        unsafe {
            let t = generated::bpf_get_current_task_btf() as u64;
            let pid = read_volatile((t + u64::from(op)) as *const u32);
            let tgid = read_volatile((t + u64::from(ot)) as *const u32);
            ids.write((u64::from(tgid) << 32) | u64::from(pid));
            let src = t + u64::from(oc);
            comm.cast::<u64>().write(read_volatile(src as *const u64));
            comm.cast::<u64>()
                .add(1)
                .write(read_volatile((src + 8) as *const u64));
        }
    }
}

/// A payload written field by field into the ring buffer. A whole-struct
/// write also writes its `_pad: [u8; N]` arrays, and a zeroed array is a
/// call to a byte-loop `memset` subprogram in BPF (LLVM does not inline it
/// here); every payload keeps its padding in its last 8 bytes (asserted
/// below), so that word is zeroed with one store and the fields go over it.
trait Put: Copy {
    /// # Safety
    /// `dst` is valid for writes of `Self` and 8-aligned.
    unsafe fn put(self, dst: *mut Self);
}

macro_rules! put {
    ($t:ty, $($f:ident),*) => {
        const _: () = assert!(core::mem::offset_of!($t, _pad) >= core::mem::size_of::<$t>() - 8);
        impl Put for $t {
            #[inline(always)]
            unsafe fn put(self, dst: *mut Self) {
                // SAFETY: per the trait; the last word is inside `Self`.
                unsafe {
                    dst.cast::<u64>().add(core::mem::size_of::<$t>() / 8 - 1).write(0);
                    $( addr_of_mut!((*dst).$f).write(self.$f); )*
                }
            }
        }
    };
}

put!(FaultBegin, fault, pgoff, address, flags, size, write);
put!(FaultEnd, fault, pgoff, result, size);
put!(MapBlocks, fault, pgoff, npages, result, new, write);
put!(LoadHole, fault, pgoff, size);
put!(InsertMapping, fault, pgoff, size, inferred);
put!(Invalidate, pgoff, npages, reason);

#[inline(always)]
fn tid() -> u32 {
    bpf_get_current_pid_tgid() as u32
}

#[inline(always)]
fn next_fault_id() -> u64 {
    // SAFETY: plain helper.
    let cpu = unsafe { bpf_get_smp_processor_id() } as u64;
    let Some(seq) = FAULT_SEQ.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: per-CPU slot.
    unsafe {
        *seq += 1;
        (*seq << 12) | (cpu & 0xfff)
    }
}

// Every try_* is inlined: as a BPF subprogram taking `&Tp` (the caller's
// stack) LLVM may hand that pointer back in r0, which the verifier refuses
// ("cannot return stack pointer to the caller", seen with --dev on 6.18).
#[inline(always)]
fn try_fault_begin(ctx: &Tp, probe: Probe, size: u8) -> Res {
    let f = fields(probe);
    let Some((dev, ino)) = target(ctx, &f) else {
        return Ok(());
    };
    let pgoff: u64 = read(ctx, f.pgoff)?;
    let flags: u32 = read(ctx, f.flags).unwrap_or(0);
    // The classic records carry no fault address.
    path::fault_begin(&Helpers, probe, size, dev, ino, pgoff, flags, 0);
    Ok(())
}

#[inline(always)]
fn try_fault_end(ctx: &Tp, probe: Probe, size: u8) -> Res {
    let f = fields(probe);
    let Some((dev, ino)) = target(ctx, &f) else {
        return Ok(());
    };
    let pgoff: u64 = read(ctx, f.pgoff)?;
    let result: u32 = read(ctx, f.result).unwrap_or(0);
    path::fault_end(&Helpers, probe, size, dev, ino, Some(pgoff), result);
    Ok(())
}

/// `dax_pmd_load_hole` has no pgoff: the fault's own (`path::load_hole`).
#[inline(always)]
fn try_load_hole(ctx: &Tp, probe: Probe, size: u8) -> Res {
    let f = fields(probe);
    let Some((dev, ino)) = target(ctx, &f) else {
        return Ok(());
    };
    path::load_hole(&Helpers, probe, size, dev, ino, read(ctx, f.pgoff).ok());
    Ok(())
}

#[inline(always)]
fn try_insert(ctx: &Tp, probe: Probe, size: u8) -> Res {
    let f = fields(probe);
    let Some((dev, ino)) = target(ctx, &f) else {
        return Ok(());
    };
    path::insert(&Helpers, probe, size, dev, ino, read(ctx, f.pgoff).ok());
    Ok(())
}

#[inline(always)]
fn pages(off_bytes: u64, len_bytes: u64) -> (u64, u64) {
    let first = off_bytes >> 12;
    let end = (off_bytes.saturating_add(len_bytes).saturating_add(4095)) >> 12;
    (first, end.saturating_sub(first))
}

#[inline(always)]
fn try_iomap(ctx: &Tp) -> Res {
    let probe = Probe::IomapIterDstmap;
    let f = fields(probe);
    let Some((dev, ino)) = target(ctx, &f) else {
        return Ok(());
    };
    let off: i64 = read(ctx, f.offset)?;
    let len: u64 = read(ctx, f.length)?;
    let ty: u16 = read(ctx, f.kind)?;
    let flags: u16 = read(ctx, f.flags).unwrap_or(0);
    let (pgoff, npages) = pages(off as u64, len);
    // The tracepoint does not carry IOMAP_WRITE: `lookup` takes it from the fault.
    path::lookup(
        &Helpers,
        probe,
        dev,
        ino,
        pgoff,
        npages,
        btf_tp::iomap_result(ty),
        u8::from(flags & IOMAP_F_NEW != 0),
        None,
    );
    Ok(())
}

/// Every `iomap_iter` call (see `path::iomap_iter`).
#[inline(always)]
fn try_iomap_iter(ctx: &Tp) -> Res {
    let f = fields(Probe::IomapIter);
    let flags: u32 = read(ctx, f.flags)?;
    path::iomap_iter(&Helpers, Probe::IomapIter, flags, || target(ctx, &f));
    Ok(())
}

#[inline(always)]
fn blkbits() -> u32 {
    // SAFETY: as in `fields`.
    let b = unsafe { read_volatile(addr_of!(CONFIG.blkbits)) };
    if b > 12 {
        12
    } else {
        b
    }
}

#[inline(always)]
fn try_ext4_map_blocks(ctx: &Tp) -> Res {
    let probe = Probe::Ext4ExtMapBlocksExit;
    let f = fields(probe);
    let Some((dev, ino)) = target(ctx, &f) else {
        return Ok(());
    };
    let lblk: u32 = read(ctx, f.offset)?;
    let len: u32 = read(ctx, f.length)?;
    let mflags: u32 = read(ctx, f.kind)?;
    let ret: i32 = read(ctx, f.result)?;
    let flags: u32 = read(ctx, f.flags).unwrap_or(0);
    let shift = 12 - blkbits();
    path::lookup(
        &Helpers,
        probe,
        dev,
        ino,
        u64::from(lblk) >> shift,
        (u64::from(len) >> shift).max(1),
        btf_tp::ext4_result(ret, mflags),
        u8::from(mflags & EXT4_MAP_NEW != 0),
        Some(u8::from(flags & EXT4_GET_BLOCKS_CREATE != 0)),
    );
    Ok(())
}

#[inline(always)]
fn try_xfs_alloc(ctx: &Tp) -> Res {
    let probe = Probe::XfsIomapAlloc;
    let f = fields(probe);
    let Some((dev, ino)) = target(ctx, &f) else {
        return Ok(());
    };
    let startoff: u64 = read(ctx, f.offset)?;
    let count: u64 = read(ctx, f.length)?;
    let shift = 12 - blkbits();
    path::lookup(
        &Helpers,
        probe,
        dev,
        ino,
        startoff >> shift,
        (count >> shift).max(1),
        MAP_MAPPED,
        1,
        Some(1),
    );
    Ok(())
}

#[inline(always)]
fn try_invalidate(ctx: &Tp, probe: Probe, reason: u8) -> Res {
    let f = fields(probe);
    let Some((dev, ino)) = target(ctx, &f) else {
        return Ok(());
    };
    let (pgoff, npages) = if f.offset == TpFields::ABSENT {
        // Truncate and xfs_free_file_space do not say where: to EOF.
        (0, NPAGES_TO_EOF)
    } else {
        let off: i64 = read(ctx, f.offset)?;
        let len: i64 = read(ctx, f.length)?;
        pages(off as u64, len as u64)
    };
    path::invalidate(&Helpers, probe, dev, ino, pgoff, npages, reason);
    Ok(())
}

macro_rules! tp {
    ($name:ident, $body:expr) => {
        #[tracepoint]
        pub fn $name(ctx: TracePointContext) -> u32 {
            let f: fn(&Tp) -> Res = $body;
            match f(&Tp::new(&ctx)) {
                Ok(()) => 0,
                Err(_) => 1,
            }
        }
    };
}

tp!(tp_fs_dax_dax_pte_fault, |c| try_fault_begin(
    c,
    Probe::DaxPteFault,
    SIZE_PTE
));
tp!(tp_fs_dax_dax_pte_fault_done, |c| try_fault_end(
    c,
    Probe::DaxPteFaultDone,
    SIZE_PTE
));
tp!(tp_fs_dax_dax_pmd_fault, |c| try_fault_begin(
    c,
    Probe::DaxPmdFault,
    SIZE_PMD
));
tp!(tp_fs_dax_dax_pmd_fault_done, |c| try_fault_end(
    c,
    Probe::DaxPmdFaultDone,
    SIZE_PMD
));
tp!(tp_fs_dax_dax_load_hole, |c| try_load_hole(
    c,
    Probe::DaxLoadHole,
    SIZE_PTE
));
tp!(tp_fs_dax_dax_pmd_load_hole, |c| try_load_hole(
    c,
    Probe::DaxPmdLoadHole,
    SIZE_PMD
));
tp!(tp_fs_dax_dax_insert_mapping, |c| try_insert(
    c,
    Probe::DaxInsertMapping,
    SIZE_PTE
));
tp!(tp_fs_dax_dax_pmd_insert_mapping, |c| try_insert(
    c,
    Probe::DaxPmdInsertMapping,
    SIZE_PMD
));
tp!(tp_iomap_iomap_iter_dstmap, try_iomap);
tp!(tp_iomap_iomap_iter, try_iomap_iter);
tp!(tp_ext4_ext4_ext_map_blocks_exit, try_ext4_map_blocks);
tp!(tp_xfs_xfs_iomap_alloc, try_xfs_alloc);
tp!(tp_ext4_ext4_punch_hole, |c| try_invalidate(
    c,
    Probe::Ext4PunchHole,
    INV_PUNCH_HOLE
));
tp!(tp_ext4_ext4_truncate_enter, |c| try_invalidate(
    c,
    Probe::Ext4TruncateEnter,
    INV_TRUNCATE
));
tp!(tp_ext4_ext4_collapse_range, |c| try_invalidate(
    c,
    Probe::Ext4CollapseRange,
    INV_COLLAPSE_RANGE
));
tp!(tp_ext4_ext4_zero_range, |c| try_invalidate(
    c,
    Probe::Ext4ZeroRange,
    INV_ZERO_RANGE
));
tp!(tp_xfs_xfs_free_file_space, |c| try_invalidate(
    c,
    Probe::XfsFreeFileSpace,
    INV_PUNCH_HOLE
));

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic path, so this never runs.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
