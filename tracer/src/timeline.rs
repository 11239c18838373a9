//! Per-page timelines keyed by (device, inode, page index), kept compact so
//! that 10 million pages fit in memory, plus the per-inode and per-fault
//! records the rules need.
//!
//! Where each step of DESIGN.md §2 lives, and why:
//!
//! * **Allocations, inserted mappings, hole loads** touch real pages: they go
//!   into a fixed-size [`Slot`] per page (the two latest allocations, the two
//!   latest inserts, a hole-load count), found through a hash index and kept
//!   on an LRU list (intrusive `u32` links, no allocation per event; a hit
//!   on a slot already in the front quarter does not relink it).
//!   Beyond `max_pages` slots the least recently used is evicted and counted.
//! * A **PMD** (512 pages: a PMD hole load, insert, or an aligned 512-page
//!   allocation) is one slot keyed by its first page with [`PMD_TAG`] set, so
//!   it costs O(1), not 512; a page's state is its own slot plus its PMD's.
//! * **Invalidations** (truncate to EOF, punch, ...) and allocations wider
//!   than four PMDs (a large `write(2)` or fallocate) are *range records* on
//!   the inode: O(1) each whatever the range, never one entry per page.
//! * **Lookups** belong to the fault that made them: per-fault records (a
//!   fault makes one or two), dropped at `fault_end`.
//!
//! A page's full event history is kept only for pages someone asked to
//! [`Timelines::watch`] (the `timeline` subcommand, the dashboard's page
//! view): it would cost far too much for every page.

use hashbrown::HashMap;
use smallvec::SmallVec;

use crate::huge::Zeroed;

use crate::event::{Body, Comm, Dev, Event, InvalidateReason, MapResult, PageKey, Size, PMD_PAGES};

/// Index of an inode in [`Inodes`] (dev, ino interned to 4 bytes).
pub type InodeRef = u32;

const NIL: u32 = u32::MAX;

/// Allocations wider than this are kept as inode range records.
pub const MAX_SLOT_RANGE: u64 = 4 * PMD_PAGES;

/// Set in a slot's `pgoff` for a PMD-wide slot (page indexes stay below 2^52).
pub const PMD_TAG: u64 = 1 << 63;

/// The key of the PMD slot holding page `p`.
#[inline]
pub fn pmd_key(p: u64) -> u64 {
    PMD_TAG | (p & !(PMD_PAGES - 1))
}

/// Pages a slot stands for (in `pages` and `evicted` counts).
fn weight(pgoff: u64) -> u64 {
    if pgoff & PMD_TAG != 0 {
        PMD_PAGES
    } else {
        1
    }
}

/// Most range records kept per inode; the oldest half is dropped beyond it.
/// Records only matter inside the lifetime of a live fault (microseconds to
/// milliseconds), so this bounds memory without losing realistic orderings.
pub const MAX_RANGES_PER_INODE: usize = 4096;

/// Most live faults tracked; beyond it the least recently active half is
/// dropped (faults whose `fault_end` never arrived).
pub const MAX_FAULTS: usize = 1 << 20;

/// One allocation or insert on a page: who and when (24 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rec {
    pub ts: u64,
    /// Fault id; meaningful only with `HAS_FAULT` (a `write(2)` has none).
    pub fault: u64,
    pub tid: u32,
    pub cpu: u16,
    pub flags: u16,
}

impl Rec {
    pub const VALID: u16 = 1;
    pub const HAS_FAULT: u16 = 2;
    /// An insert inferred from the fault's end, not seen by a probe.
    pub const INFERRED: u16 = 4;

    fn new(ev: &Event, fault: Option<u64>, extra: u16) -> Self {
        Self {
            ts: ev.ts,
            fault: fault.unwrap_or(0),
            tid: ev.tid,
            cpu: u16::try_from(ev.cpu).unwrap_or(u16::MAX),
            flags: Self::VALID | extra | if fault.is_some() { Self::HAS_FAULT } else { 0 },
        }
    }

    pub fn is_valid(&self) -> bool {
        self.flags & Self::VALID != 0
    }

    pub fn fault(&self) -> Option<u64> {
        (self.flags & Self::HAS_FAULT != 0).then_some(self.fault)
    }

    /// Made by an actor other than fault `f` (a `write(2)` is always other).
    pub fn is_other_than(&self, f: u64) -> bool {
        self.fault() != Some(f)
    }
}

/// Compact per-page state (128 bytes: two cache lines, aligned so a slot
/// never straddles a third).
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
pub struct Slot {
    pub ino: InodeRef,
    prev: u32,
    next: u32,
    /// Hole loads seen on this page (saturating).
    pub hole_loads: u32,
    pub pgoff: u64,
    /// Value of the store's touch clock when the slot last moved to the
    /// front of the LRU list.
    stamp: u32,
    /// The two latest allocations covering the page, older first.
    pub allocs: [Rec; 2],
    /// The two latest inserted mappings, older first.
    pub inserts: [Rec; 2],
}

fn push2(a: &mut [Rec; 2], r: Rec) {
    a[0] = a[1];
    a[1] = r;
}

/// Hash of an inode, mixed into its pages' hashes. Computed from the
/// event's own (dev, ino), so a page's index bucket can be found (and
/// prefetched) before the inode is interned.
#[inline]
pub fn inode_seed(dev: Dev, ino: u64) -> u64 {
    let x = ino ^ (u64::from(dev.to_kernel()) << 32 | u64::from(dev.to_kernel()) >> 32);
    let m = u128::from(x ^ 0x1319_8a2e_0370_7344) * 0x9e37_79b9_7f4a_7c15_u128;
    (m as u64) ^ ((m >> 64) as u64)
}

/// Seed of an inode ref no [`Timelines`] registered (a bare [`PageStore`]).
#[inline]
fn bare_seed(ino: InodeRef) -> u64 {
    inode_seed(Dev::default(), u64::from(ino) | 1 << 62)
}

/// 32-bit tag of a page: its index entry's tag and home position.
#[inline]
fn page_tag(seed: u64, pgoff: u64) -> u32 {
    // Folded 128-bit multiply: every input bit reaches the high 32 bits.
    let m = u128::from(pgoff ^ seed ^ 0x243f_6a88_85a3_08d3) * 0x9e37_79b9_7f4a_7c15_u128;
    (((m as u64) ^ ((m >> 64) as u64)) >> 32) as u32
}

/// Ask the CPU to start loading a cache line (a hint: never faults).
#[inline(always)]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch is a hint; it never dereferences or faults on any address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The page -> slot index. Open addressing with linear probing over 8-byte
/// entries (`tag << 32 | slot + 1`, 0 empty); an entry's home is
/// `tag * len >> 32`, so the table can be any size and grows without
/// reading a slot (the tag is the hash). Deletion shifts back (no
/// tombstones). Hand-made rather than hashbrown because the pipeline
/// prefetches the entry, then the slot, of events the reorder window will
/// release next ([`PageStore::prefetch_index`], [`PageStore::prefetch_slot`]):
/// a page event then costs no dependent cache miss.
struct Index {
    t: Zeroed<u64>,
    len: usize,
    /// Size at the page cap: load 0.84 there (9.5 B per page of the cap).
    max: usize,
}

impl Index {
    fn new(cap: usize) -> Self {
        Self {
            t: Zeroed::new(0),
            len: 0,
            max: (cap + cap * 3 / 16 + 8).max(16),
        }
    }

    #[inline]
    fn home(&self, tag: u32) -> usize {
        ((u64::from(tag) * self.t.len() as u64) >> 32) as usize
    }

    #[inline]
    fn next(&self, i: usize) -> usize {
        if i + 1 == self.t.len() {
            0
        } else {
            i + 1
        }
    }

    /// Position of the entry with `tag` whose slot satisfies `is`.
    #[inline]
    fn find(&self, tag: u32, mut is: impl FnMut(u32) -> bool) -> Option<usize> {
        if self.t.is_empty() {
            return None;
        }
        let mut i = self.home(tag);
        loop {
            let e = self.t[i];
            if e == 0 {
                return None;
            }
            if (e >> 32) as u32 == tag && is((e as u32) - 1) {
                return Some(i);
            }
            i = self.next(i);
        }
    }

    /// First slot whose entry carries `tag` (unverified: for prefetching).
    #[inline]
    fn guess(&self, tag: u32) -> Option<u32> {
        if self.t.is_empty() {
            return None;
        }
        let mut i = self.home(tag);
        for _ in 0..8 {
            let e = self.t[i];
            if e == 0 {
                return None;
            }
            if (e >> 32) as u32 == tag {
                return Some((e as u32) - 1);
            }
            i = self.next(i);
        }
        None
    }

    #[inline]
    fn entry_addr(&self, tag: u32) -> Option<*const u64> {
        (!self.t.is_empty()).then(|| self.t.as_ptr().wrapping_add(self.home(tag)))
    }

    fn place(t: &mut [u64], e: u64) {
        let n = t.len();
        let mut i = (((e >> 32) * n as u64) >> 32) as usize;
        while t[i] != 0 {
            i = if i + 1 == n { 0 } else { i + 1 };
        }
        t[i] = e;
    }

    /// Add a slot known not to be indexed.
    fn insert(&mut self, tag: u32, slot: u32) {
        if (self.len + 1) * 4 > self.t.len() * 3 && self.t.len() < self.max
            || (self.len + 1) * 16 > self.t.len() * 15
        {
            self.grow();
        }
        Self::place(&mut self.t, u64::from(tag) << 32 | u64::from(slot + 1));
        self.len += 1;
    }

    /// Double (up to the size at the cap): entries move by their tag alone.
    #[cold]
    fn grow(&mut self) {
        let n = (self.t.len() * 2).max(16);
        let n = if n > self.max && self.t.len() < self.max {
            self.max
        } else {
            n
        };
        let mut t = Zeroed::new(n);
        for &e in self.t.iter() {
            if e != 0 {
                Self::place(&mut t, e);
            }
        }
        self.t = t;
    }

    /// Remove the entry at `i`; later entries of its run shift back.
    fn remove_at(&mut self, mut i: usize) {
        let n = self.t.len();
        let mut j = i;
        loop {
            j = self.next(j);
            let e = self.t[j];
            if e == 0 {
                break;
            }
            // The entry at j may move to the hole at i unless its home lies
            // cyclically in (i, j].
            let h = self.home((e >> 32) as u32);
            let stays = if i <= j {
                i < h && h <= j
            } else {
                i < h || h <= j
            };
            if !stays {
                self.t[i] = e;
                i = j;
            }
        }
        self.t[i] = 0;
        let _ = n;
        self.len -= 1;
    }
}

const CHUNK_BITS: u32 = 15;
const CHUNK: usize = 1 << CHUNK_BITS;

/// Slots in fixed chunks of 32768 (4 MiB): growing never moves or copies
/// what is there, so resident memory peaks at what is used (a doubling
/// `Vec` of 10M slots would copy 1 GiB and reserve 16M).
#[derive(Default)]
struct Slab {
    /// Each a mapping of its own ([`Zeroed`]: all of it huge pages), filled
    /// by `push`: memory is touched when a slot is used. Slots at `len` and
    /// beyond are never read.
    chunks: Vec<Zeroed<Slot>>,
    len: usize,
}

impl Slab {
    fn len(&self) -> usize {
        self.len
    }

    fn push(&mut self, s: Slot) {
        if self.len == self.chunks.len() * CHUNK {
            self.chunks.push(Zeroed::new(CHUNK));
        }
        let i = self.len;
        self.chunks[i >> CHUNK_BITS][i & (CHUNK - 1)] = s;
        self.len += 1;
    }

    #[inline]
    fn addr(&self, i: usize) -> *const Slot {
        self.chunks[i >> CHUNK_BITS]
            .as_ptr()
            .wrapping_add(i & (CHUNK - 1))
    }
}

impl std::ops::Index<usize> for Slab {
    type Output = Slot;
    #[inline]
    fn index(&self, i: usize) -> &Slot {
        assert!(i < self.len, "slot {i} of {}", self.len);
        &self.chunks[i >> CHUNK_BITS][i & (CHUNK - 1)]
    }
}

impl std::ops::IndexMut<usize> for Slab {
    #[inline]
    fn index_mut(&mut self, i: usize) -> &mut Slot {
        assert!(i < self.len, "slot {i} of {}", self.len);
        &mut self.chunks[i >> CHUNK_BITS][i & (CHUNK - 1)]
    }
}

/// The per-page store: slab of slots + hash index + LRU list.
pub struct PageStore {
    slots: Slab,
    index: Index,
    /// Hash seed per inode ref ([`inode_seed`]), set by [`Timelines`].
    seeds: Vec<u64>,
    /// Counts moves to the LRU front (wrapping).
    clock: u32,
    /// Most recently used.
    head: u32,
    /// Least recently used: evicted first.
    tail: u32,
    cap: usize,
    /// Pages evicted (a PMD slot counts 512).
    pub evicted: u64,
    /// Pages ever given a slot (a PMD slot counts 512; a page evicted and seen
    /// again counts twice).
    pub pages_seen: u64,
}

impl PageStore {
    pub fn new(max_pages: usize) -> Self {
        let cap = max_pages.clamp(1, NIL as usize - 1);
        Self {
            slots: Slab::default(),
            index: Index::new(cap),
            seeds: Vec::new(),
            clock: 0,
            head: NIL,
            tail: NIL,
            cap,
            evicted: 0,
            pages_seen: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.len() == 0
    }

    /// Register the hash seed of inode ref `ino` (refs are dense, in order).
    fn add_inode(&mut self, ino: InodeRef, seed: u64) {
        debug_assert_eq!(ino as usize, self.seeds.len());
        self.seeds.push(seed);
    }

    #[inline]
    fn tag(&self, ino: InodeRef, pgoff: u64) -> u32 {
        let seed = match self.seeds.get(ino as usize) {
            Some(&s) => s,
            None => bare_seed(ino),
        };
        page_tag(seed, pgoff)
    }

    #[inline]
    fn find(&self, ino: InodeRef, pgoff: u64) -> Option<usize> {
        let slots = &self.slots;
        self.index.find(self.tag(ino, pgoff), |i| {
            let s = &slots[i as usize];
            s.ino == ino && s.pgoff == pgoff
        })
    }

    pub fn get(&self, ino: InodeRef, pgoff: u64) -> Option<&Slot> {
        self.find(ino, pgoff)
            .map(|at| &self.slots[(self.index.t[at] as u32 - 1) as usize])
    }

    /// First prefetch stage for a page `seed` (its inode's [`inode_seed`]):
    /// the index entry's cache line. Returns the page's tag, for the second stage.
    #[inline]
    pub fn prefetch_index(&self, seed: u64, pgoff: u64) -> u32 {
        let tag = page_tag(seed, pgoff);
        if let Some(p) = self.index.entry_addr(tag) {
            prefetch(p);
        }
        tag
    }

    /// Second stage, once the entry's line has had time to arrive: the
    /// slot the entry with `tag` names (both of its cache lines). A tag of
    /// another page (a stale one) only costs a useless load.
    #[inline]
    pub fn prefetch_slot(&self, tag: u32) {
        if let Some(i) = self.index.guess(tag) {
            if (i as usize) < self.slots.len() {
                let p = self.slots.addr(i as usize);
                prefetch(p);
                prefetch(p.cast::<u8>().wrapping_add(64));
            }
        }
    }

    fn unlink(&mut self, i: u32) {
        let Slot { prev, next, .. } = self.slots[i as usize];
        if prev == NIL {
            self.head = next
        } else {
            self.slots[prev as usize].next = next
        }
        if next == NIL {
            self.tail = prev
        } else {
            self.slots[next as usize].prev = prev
        }
    }

    fn link_front(&mut self, i: u32) {
        let old = self.head;
        self.clock = self.clock.wrapping_add(1);
        {
            let s = &mut self.slots[i as usize];
            s.prev = NIL;
            s.next = old;
            s.stamp = self.clock;
        }
        if old == NIL {
            self.tail = i
        } else {
            self.slots[old as usize].prev = i
        }
        self.head = i;
    }

    /// The page's slot, created (evicting the LRU page at the cap) if new,
    /// and marked most recently used.
    #[inline]
    pub fn touch(&mut self, ino: InodeRef, pgoff: u64) -> &mut Slot {
        let tag = self.tag(ino, pgoff);
        let slots = &self.slots;
        let found = self
            .index
            .find(tag, |i| {
                let s = &slots[i as usize];
                s.ino == ino && s.pgoff == pgoff
            })
            .map(|at| self.index.t[at] as u32 - 1);
        let i = match found {
            Some(i) => {
                // A slot moved to the front fewer than cap/4 moves ago is in
                // the front quarter of the list, far from eviction: leave it
                // (saves two random cache lines per hit on hot pages; the
                // order only loosens inside that front quarter).
                let age = self.clock.wrapping_sub(self.slots[i as usize].stamp) as usize;
                if self.head != i && age >= self.cap / 4 {
                    self.unlink(i);
                    self.link_front(i);
                }
                i
            }
            None => self.add(ino, pgoff, tag),
        };
        &mut self.slots[i as usize]
    }

    /// A new page's slot: a fresh one below the cap, else the least
    /// recently used page's, evicted.
    fn add(&mut self, ino: InodeRef, pgoff: u64, tag: u32) -> u32 {
        let fresh = Slot {
            ino,
            prev: NIL,
            next: NIL,
            hole_loads: 0,
            pgoff,
            stamp: 0,
            allocs: [Rec::default(); 2],
            inserts: [Rec::default(); 2],
        };
        let i = if self.slots.len() < self.cap {
            self.slots.push(fresh);
            (self.slots.len() - 1) as u32
        } else {
            // Evict the least recently used page and reuse its slot.
            let v = self.tail;
            let (vino, vpg) = (self.slots[v as usize].ino, self.slots[v as usize].pgoff);
            let vtag = self.tag(vino, vpg);
            let at = self
                .index
                .find(vtag, |j| j == v)
                .expect("every slot is indexed");
            self.index.remove_at(at);
            self.unlink(v);
            self.slots[v as usize] = fresh;
            self.evicted += weight(vpg);
            v
        };
        self.index.insert(tag, i);
        self.link_front(i);
        self.pages_seen += weight(pgoff);
        i
    }

    /// Pages from most to least recently used (tests, dashboard).
    pub fn iter_mru(&self) -> impl Iterator<Item = &Slot> {
        let mut i = self.head;
        std::iter::from_fn(move || {
            if i == NIL {
                return None;
            }
            let s = &self.slots[i as usize];
            i = s.next;
            Some(s)
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeKind {
    Invalidate(InvalidateReason),
    /// An allocation wider than a PMD (kept per inode, not per page).
    Alloc,
}

/// A range event on an inode: pages `[start, end)`; `end == u64::MAX` is EOF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeRec {
    pub kind: RangeKind,
    pub start: u64,
    pub end: u64,
    pub rec: Rec,
}

impl RangeRec {
    pub fn covers(&self, p: u64) -> bool {
        self.start <= p && p < self.end
    }
}

pub struct Inode {
    pub dev: Dev,
    pub ino: u64,
    /// In release (timestamp) order.
    pub ranges: Vec<RangeRec>,
    /// Time of the latest allocation on the inode (any range, any actor):
    /// a hole load after a lookup newer than this cannot be a finding, so
    /// the rule skips its pages without looking at them.
    pub last_alloc: Option<u64>,
    /// Time of the latest block-freeing invalidation (same use, other rule).
    pub last_free: Option<u64>,
}

/// A block lookup by a fault (a `map_blocks` with a fault id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lookup {
    pub ts: u64,
    pub ino: InodeRef,
    pub start: u64,
    /// Exclusive.
    pub end: u64,
    pub result: MapResult,
    /// Blocks were allocated by this call (the fault's own allocation).
    pub new: bool,
    pub tid: u32,
    pub cpu: u32,
}

impl Lookup {
    pub fn covers(&self, ino: InodeRef, p: u64) -> bool {
        self.ino == ino && self.start <= p && p < self.end
    }

    /// The lookup saw a hole (and allocated nothing).
    pub fn saw_hole(&self) -> bool {
        self.result == MapResult::Hole && !self.new
    }

    /// The lookup returned blocks (existing, unwritten or just allocated).
    pub fn returned_blocks(&self) -> bool {
        self.new || self.result != MapResult::Hole
    }
}

/// What is known of a fault while it runs.
#[derive(Clone, Debug)]
pub struct FaultState {
    pub tid: u32,
    pub pid: u32,
    pub cpu: u32,
    pub comm: Comm,
    /// From `fault_begin`, if one was seen.
    pub begin: Option<(u64, Size, bool)>,
    pub last_ts: u64,
    pub lookups: SmallVec<[Lookup; 2]>,
}

impl FaultState {
    fn from_event(ev: &Event) -> Self {
        Self {
            tid: ev.tid,
            pid: ev.pid,
            cpu: ev.cpu,
            comm: ev.comm,
            begin: None,
            last_ts: ev.ts,
            lookups: SmallVec::new(),
        }
    }

    /// Which lookup of the fault counts for page `p`: the **latest** one
    /// covering it. A fault acts on what its most recent lookup told it, so
    /// a hole seen early and then a lookup after another actor's allocation
    /// is "a lookup made after the allocation" (no finding), and a fault that
    /// allocated itself (legacy write fault: lookup hole, then allocate) has
    /// its own allocation as latest lookup.
    pub fn lookup_for(&self, ino: InodeRef, p: u64) -> Option<&Lookup> {
        self.lookups.iter().rev().find(|l| l.covers(ino, p))
    }
}

/// Everything the detector remembers.
/// A watched page's history, and the fault ids in it: a fault's end joins
/// the history of the pages its fault touched, found without a walk over
/// the history (which grows for as long as the page is watched).
#[derive(Default)]
struct Watched {
    hist: Vec<Event>,
    faults: hashbrown::HashSet<u64>,
}

pub struct Timelines {
    pub pages: PageStore,
    inodes: Vec<Inode>,
    inode_index: HashMap<(Dev, u64), InodeRef>,
    last_inode: Option<((Dev, u64), InodeRef)>,
    pub faults: HashMap<u64, FaultState>,
    /// Distinct fault ids seen (with or without a `fault_begin`).
    pub faults_seen: u64,
    /// pid and comm per task (from fault_begin, write(2) allocations and
    /// invalidations) for findings' steps; per-page records keep only tid and cpu.
    tasks: HashMap<u32, (u32, Comm)>,
    watched: HashMap<PageKey, Watched>,
}

impl Timelines {
    pub fn new(max_pages: usize) -> Self {
        Self {
            pages: PageStore::new(max_pages),
            inodes: Vec::new(),
            inode_index: HashMap::new(),
            last_inode: None,
            faults: HashMap::new(),
            faults_seen: 0,
            tasks: HashMap::new(),
            watched: HashMap::new(),
        }
    }

    #[inline]
    pub fn inode_ref(&mut self, dev: Dev, ino: u64) -> InodeRef {
        if let Some((k, r)) = self.last_inode {
            if k == (dev, ino) {
                return r;
            }
        }
        let next = self.inodes.len() as InodeRef;
        let r = *self.inode_index.entry((dev, ino)).or_insert(next);
        if r == next {
            self.inodes.push(Inode {
                dev,
                ino,
                ranges: Vec::new(),
                last_alloc: None,
                last_free: None,
            });
            self.pages.add_inode(r, inode_seed(dev, ino));
        }
        self.last_inode = Some(((dev, ino), r));
        r
    }

    pub fn find_inode(&self, dev: Dev, ino: u64) -> Option<InodeRef> {
        self.inode_index.get(&(dev, ino)).copied()
    }

    pub fn inode(&self, r: InodeRef) -> &Inode {
        &self.inodes[r as usize]
    }

    pub fn task(&self, tid: u32) -> (u32, Comm) {
        self.tasks.get(&tid).copied().unwrap_or_default()
    }

    /// The fault's state, created from this event if no `fault_begin` was seen
    /// (faults are judged by the id on their events).
    fn fault_mut(&mut self, ev: &Event, fault: u64) -> &mut FaultState {
        let faults_seen = &mut self.faults_seen;
        let f = self.faults.entry(fault).or_insert_with(|| {
            *faults_seen += 1;
            FaultState::from_event(ev)
        });
        f.last_ts = ev.ts;
        f
    }

    fn add_range(&mut self, ino: InodeRef, r: RangeRec) {
        let v = &mut self.inodes[ino as usize].ranges;
        if v.len() >= MAX_RANGES_PER_INODE {
            v.drain(..MAX_RANGES_PER_INODE / 2);
        }
        v.push(r);
    }

    /// Ask for the full history of one page (kept from now on).
    pub fn watch(&mut self, key: PageKey) {
        self.watched.entry(key).or_default();
    }

    /// Stop keeping a page's history (and drop what was kept).
    pub fn unwatch(&mut self, key: &PageKey) {
        self.watched.remove(key);
    }

    pub fn history(&self, key: &PageKey) -> Option<&[Event]> {
        self.watched.get(key).map(|w| w.hist.as_slice())
    }

    fn record_watched(&mut self, ev: &Event) {
        let span = match ev.body {
            Body::FaultBegin { pgoff, size, .. }
            | Body::LoadHole { pgoff, size, .. }
            | Body::InsertMapping { pgoff, size, .. } => {
                let (s, n) = size.span(pgoff);
                Some((s, s.saturating_add(n)))
            }
            Body::MapBlocks { pgoff, npages, .. } | Body::Invalidate { pgoff, npages, .. } => {
                Some((pgoff, pgoff.saturating_add(npages.max(1))))
            }
            Body::FaultEnd { fault, .. } => {
                // A fault's end belongs to the pages whose history holds the fault.
                for w in self.watched.values_mut() {
                    if w.faults.contains(&fault) {
                        w.hist.push(*ev);
                    }
                }
                None
            }
            Body::Lost { .. } => None,
        };
        if let Some((s, e)) = span {
            for (k, w) in &mut self.watched {
                if k.dev == ev.dev && k.ino == ev.ino && s <= k.pgoff && k.pgoff < e {
                    w.faults.extend(ev.body.fault());
                    w.hist.push(*ev);
                }
            }
        }
    }

    /// The slot key (`pgoff` or [`pmd_key`]) of the first page an event
    /// will touch in the page store, if it touches one.
    #[inline]
    fn slot_key(ev: &Event) -> Option<u64> {
        match ev.body {
            Body::LoadHole { pgoff, size, .. } | Body::InsertMapping { pgoff, size, .. } => {
                Some(if size == Size::Pmd {
                    pmd_key(pgoff)
                } else {
                    pgoff
                })
            }
            Body::MapBlocks {
                pgoff,
                npages,
                new: true,
                ..
            } if npages <= MAX_SLOT_RANGE => {
                Some(if pgoff % PMD_PAGES == 0 && npages >= PMD_PAGES {
                    pmd_key(pgoff)
                } else {
                    pgoff
                })
            }
            _ => None,
        }
    }

    /// Prefetch, first stage: the index entry of the page `ev` will touch.
    /// Called for an event some places ahead in release order, so that by
    /// the time it is applied its page costs no cache miss. Returns the
    /// page's tag, to hand to [`Timelines::prefetch_slot`] a few events
    /// later (the kind, key and hash are worked out once, not twice).
    #[inline]
    pub fn prefetch_index(&self, ev: &Event) -> Option<u32> {
        Self::slot_key(ev).map(|k| self.pages.prefetch_index(inode_seed(ev.dev, ev.ino), k))
    }

    /// Prefetch, second stage (once the index entry asked for by
    /// [`Timelines::prefetch_index`] has had time to land): the page's slot.
    #[inline]
    pub fn prefetch_slot(&self, tag: u32) {
        self.pages.prefetch_slot(tag);
    }

    /// Record an event (after the rules have judged it).
    #[inline]
    pub fn apply(&mut self, ev: &Event) {
        self.apply_with(ev, None);
    }

    /// [`Timelines::apply`] with the event's inode already interned (the
    /// pipeline has it from judging a hole load or insert: one lookup, not two).
    #[inline]
    pub(crate) fn apply_with(&mut self, ev: &Event, ino: Option<InodeRef>) {
        if !self.watched.is_empty() {
            self.record_watched(ev);
        }
        match ev.body {
            Body::FaultBegin {
                fault, size, write, ..
            } => {
                // Findings name actors after their fault ended: keep pid and comm per task.
                self.note_task(ev);
                let f = self.fault_mut(ev, fault);
                f.begin = Some((ev.ts, size, write));
                f.tid = ev.tid;
                f.pid = ev.pid;
                f.cpu = ev.cpu;
                f.comm = ev.comm;
            }
            Body::MapBlocks {
                fault,
                pgoff,
                npages,
                result,
                new,
                ..
            } => {
                let ino = self.inode_ref(ev.dev, ev.ino);
                let end = pgoff.saturating_add(npages.max(1));
                if let Some(id) = fault {
                    let l = Lookup {
                        ts: ev.ts,
                        ino,
                        start: pgoff,
                        end,
                        result,
                        new,
                        tid: ev.tid,
                        cpu: ev.cpu,
                    };
                    self.fault_mut(ev, id).lookups.push(l);
                }
                if new {
                    if fault.is_none() {
                        self.note_task(ev);
                    }
                    let rec = Rec::new(ev, fault, 0);
                    self.inodes[ino as usize].last_alloc = Some(ev.ts);
                    if end - pgoff > MAX_SLOT_RANGE {
                        self.add_range(
                            ino,
                            RangeRec {
                                kind: RangeKind::Alloc,
                                start: pgoff,
                                end,
                                rec,
                            },
                        );
                    } else {
                        // Whole aligned PMDs in one slot each, other pages one by one.
                        let mut p = pgoff;
                        while p < end {
                            if p % PMD_PAGES == 0 && end - p >= PMD_PAGES {
                                push2(&mut self.pages.touch(ino, pmd_key(p)).allocs, rec);
                                p += PMD_PAGES;
                            } else {
                                push2(&mut self.pages.touch(ino, p).allocs, rec);
                                p += 1;
                            }
                        }
                    }
                }
            }
            Body::LoadHole { fault, pgoff, size } => {
                let ino = match ino {
                    Some(i) => i,
                    None => self.inode_ref(ev.dev, ev.ino),
                };
                self.fault_mut(ev, fault);
                let key = if size == Size::Pmd {
                    pmd_key(pgoff)
                } else {
                    pgoff
                };
                let slot = self.pages.touch(ino, key);
                slot.hole_loads = slot.hole_loads.saturating_add(1);
            }
            Body::InsertMapping {
                fault,
                pgoff,
                size,
                inferred,
            } => {
                let ino = match ino {
                    Some(i) => i,
                    None => self.inode_ref(ev.dev, ev.ino),
                };
                self.fault_mut(ev, fault);
                let rec = Rec::new(ev, Some(fault), if inferred { Rec::INFERRED } else { 0 });
                let key = if size == Size::Pmd {
                    pmd_key(pgoff)
                } else {
                    pgoff
                };
                push2(&mut self.pages.touch(ino, key).inserts, rec);
            }
            Body::FaultEnd { fault, .. } => {
                if self.faults.remove(&fault).is_none() {
                    // An end whose fault left no other trace still counts as a fault.
                    self.faults_seen += 1;
                }
            }
            Body::Invalidate {
                pgoff,
                npages,
                reason,
            } => {
                let ino = self.inode_ref(ev.dev, ev.ino);
                let end = if npages == u64::MAX {
                    u64::MAX
                } else {
                    pgoff.saturating_add(npages)
                };
                self.note_task(ev);
                if crate::detect::insert_after_invalidate::frees_blocks(reason) {
                    self.inodes[ino as usize].last_free = Some(ev.ts);
                }
                let rec = Rec::new(ev, None, 0);
                self.add_range(
                    ino,
                    RangeRec {
                        kind: RangeKind::Invalidate(reason),
                        start: pgoff,
                        end,
                        rec,
                    },
                );
            }
            Body::Lost { .. } => {}
        }
        if self.faults.len() > MAX_FAULTS {
            self.expire_faults();
        }
    }

    /// Remember a task's pid and comm (a lookup, an insert only if it changed).
    fn note_task(&mut self, ev: &Event) {
        if self.tasks.get(&ev.tid) != Some(&(ev.pid, ev.comm)) {
            if self.tasks.len() >= MAX_FAULTS {
                self.tasks.clear();
            }
            self.tasks.insert(ev.tid, (ev.pid, ev.comm));
        }
    }

    /// Drop the least recently active half of the faults (their end was lost).
    fn expire_faults(&mut self) {
        let mut ts: Vec<u64> = self.faults.values().map(|f| f.last_ts).collect();
        let mid = ts.len() / 2;
        let (_, &mut cut, _) = ts.select_nth_unstable(mid);
        self.faults.retain(|_, f| f.last_ts > cut);
    }

    /// Range records of an inode covering `p`, newest first, while `keep(ts)`.
    pub fn ranges_back(&self, ino: InodeRef, p: u64) -> impl Iterator<Item = &RangeRec> {
        self.inodes[ino as usize]
            .ranges
            .iter()
            .rev()
            .filter(move |r| r.covers(p))
    }

    /// A summary of one page for display (not the hot path).
    pub fn page_view(&self, key: &PageKey) -> Option<PageView> {
        let ino = self.find_inode(key.dev, key.ino)?;
        let page = self.pages.get(ino, key.pgoff);
        let pmd = self.pages.get(ino, pmd_key(key.pgoff));
        let recs = |f: fn(&Slot) -> [Rec; 2]| -> Vec<Rec> {
            let mut v: Vec<Rec> = page
                .into_iter()
                .chain(pmd)
                .flat_map(f)
                .filter(Rec::is_valid)
                .collect();
            v.sort_by_key(|r| r.ts);
            v
        };
        let ranges: Vec<RangeRec> = self.inodes[ino as usize]
            .ranges
            .iter()
            .filter(|r| r.covers(key.pgoff))
            .copied()
            .collect();
        let lookups: Vec<(u64, Lookup)> = self
            .faults
            .iter()
            .flat_map(|(&id, f)| {
                f.lookups
                    .iter()
                    .filter(|l| l.covers(ino, key.pgoff))
                    .map(move |l| (id, *l))
            })
            .collect();
        if page.is_none() && pmd.is_none() && ranges.is_empty() && lookups.is_empty() {
            return None;
        }
        Some(PageView {
            key: *key,
            allocs: recs(|s| s.allocs),
            inserts: recs(|s| s.inserts),
            hole_loads: page.map_or(0, |s| s.hole_loads) + pmd.map_or(0, |s| s.hole_loads),
            ranges,
            live_lookups: lookups,
        })
    }
}

/// What is remembered of one page (compact state, for display).
#[derive(Clone, Debug)]
pub struct PageView {
    pub key: PageKey,
    pub allocs: Vec<Rec>,
    pub inserts: Vec<Rec>,
    pub hole_loads: u32,
    /// Invalidations and wide allocations covering the page.
    pub ranges: Vec<RangeRec>,
    /// Lookups by faults still running, covering the page: (fault, lookup).
    pub live_lookups: Vec<(u64, Lookup)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_is_compact() {
        assert_eq!(std::mem::size_of::<Rec>(), 24);
        assert_eq!(std::mem::size_of::<Slot>(), 128);
    }

    /// A watched page's history: the events covering it (a PMD fault over
    /// it included) and the ends of exactly the faults among them.
    #[test]
    fn watched_history_takes_the_ends_of_its_faults() {
        let dev = Dev::new(259, 0);
        let ev = |ts, body| Event {
            ts,
            cpu: 0,
            tid: 1,
            pid: 1,
            comm: Comm::new("t"),
            dev,
            ino: 7,
            probe: 0,
            body,
        };
        let end = |ts, fault| {
            ev(
                ts,
                Body::FaultEnd {
                    fault,
                    result: crate::event::FaultResult::Nopage,
                },
            )
        };
        let begin = |ts, fault, pgoff, size| {
            ev(
                ts,
                Body::FaultBegin {
                    fault,
                    pgoff,
                    size,
                    write: false,
                },
            )
        };
        let key = PageKey {
            dev,
            ino: 7,
            pgoff: 3,
        };
        let mut t = Timelines::new(100);
        t.watch(key);
        let events = [
            begin(1, 10, 3, Size::Pte),
            begin(2, 11, 4, Size::Pte),
            ev(
                3,
                Body::LoadHole {
                    fault: 10,
                    pgoff: 3,
                    size: Size::Pte,
                },
            ),
            end(4, 11),
            end(5, 10),
            begin(6, 12, 0, Size::Pmd),
            end(7, 12),
            end(8, 13),
        ];
        for e in &events {
            t.apply_with(e, None);
        }
        let ts: Vec<u64> = t.history(&key).unwrap().iter().map(|e| e.ts).collect();
        assert_eq!(ts, [1, 3, 5, 6, 7]);
    }

    #[test]
    fn lru_evicts_least_recently_used() {
        let mut s = PageStore::new(2);
        s.touch(0, 1);
        s.touch(0, 2);
        s.touch(0, 1); // 1 is now most recent
        s.touch(0, 3); // evicts 2
        assert_eq!(s.evicted, 1);
        assert!(s.get(0, 2).is_none());
        assert!(s.get(0, 1).is_some() && s.get(0, 3).is_some());
        let order: Vec<u64> = s.iter_mru().map(|x| x.pgoff).collect();
        assert_eq!(order, [3, 1]);
        assert_eq!(s.len(), 2);
        assert_eq!(s.pages_seen, 3);
    }

    #[test]
    fn eviction_keeps_index_consistent() {
        let mut s = PageStore::new(64);
        for round in 0..5u64 {
            for p in 0..100u64 {
                s.touch((p % 3) as u32, p + round * 7).hole_loads += 1;
            }
        }
        assert_eq!(s.len(), 64);
        assert_eq!(s.iter_mru().count(), 64);
        for slot in s.iter_mru() {
            assert_eq!(
                s.get(slot.ino, slot.pgoff).map(|x| (x.ino, x.pgoff)),
                Some((slot.ino, slot.pgoff))
            );
        }
        assert_eq!(s.evicted, s.pages_seen - 64);
    }
}
