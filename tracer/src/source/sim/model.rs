//! The legacy (4.0-4.5) DAX fault path, step by step, with the events the
//! kernel would trace at each step.
//!
//! Each step below is one atomic action; a schedule interleaves the actors'
//! steps. Steps and what they emit (DESIGN.md §1, §3):
//!
//! | operation | steps (one per line of events) |
//! |---|---|
//! | 4 KiB read fault | `fault_begin` + `map_blocks` (get_block create=0) / `load_hole` (maps the zero page) or `insert_mapping`, + `fault_end` |
//! | 4 KiB write fault | `fault_begin` + `map_blocks` (create=0) / if hole: `map_blocks` (create=1: allocates, the store's bytes land, hole pages are unmapped) / `insert_mapping` + `fault_end` |
//! | 2 MiB read fault | `fault_begin` + `map_blocks` (512 pages) / `load_hole` (huge zero page) or `insert_mapping`, + `fault_end`; a range neither all hole nor one contiguous extent: `fault_end` `fallback`, then a 4 KiB fault |
//! | 2 MiB write fault | `fault_begin` + `map_blocks` (create=1: allocates 512 pages holding the 2 MiB store, unmaps hole pages) / `insert_mapping` + `fault_end` |
//! | `write(2)` | per run of holes / blocks: `map_blocks` with `fault: null` (`new: true` for holes, which are allocated, filled and unmapped) |
//! | truncate, punch | `invalidate`: blocks freed, every mapping of the range zapped |
//!
//! Granularity, chosen so that what the tracer can see decides what the
//! bytes say (see `mod.rs` for the finer variants and where DESIGN's rule and
//! the bytes part ways under them):
//!
//! * an allocation, the allocator's data landing in the new blocks, and the
//!   teardown of zero-page mappings of those pages (`unmap_mapping_range`
//!   after `get_block(create=1)` in legacy `__dax_fault`, `__dax_pmd_fault`,
//!   and `write(2)`'s invalidation of hole pages) are one step, traced as the
//!   allocating `map_blocks`;
//! * a store by a write fault that found blocks lands with its
//!   `insert_mapping`;
//! * `write(2)`, truncate and punch hold the inode lock (`i_rwsem`) against
//!   each other; faults hold nothing (the race);
//! * with `fixed` (4.6+), a fault holds the per-index entry lock(s) of the
//!   pages it covers from its lookup to its insert or hole load; `write(2)`,
//!   truncate and punch take the entry locks of their range too.

use rand::rngs::SmallRng;
use rand::Rng;

use super::oracle::{Memory, Pte, FILE_PAGES};
use super::schedule::{Op, Scenario};
use crate::event::{
    Body, Comm, Dev, Event, FaultResult, InvalidateReason, MapResult, PageKey, Size, PMD_PAGES,
};

/// The device every modelled file lives on (pmem0's usual numbers).
pub const SIM_DEV: Dev = Dev::new(259, 0);

/// How events get their timestamps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Clock {
    /// Strictly increasing; gaps of 1..=1000 ns.
    #[default]
    Strict,
    /// Like `Strict`, but about one gap in `n` is zero: equal timestamps, which
    /// DESIGN.md §2 says never order anything.
    Ties(u32),
}

#[derive(Clone, Copy, Debug)]
pub struct ModelConfig {
    /// 4.6+ entry locking.
    pub fixed: bool,
    /// Inode number of file 0; file `i` is `ino_base + i`.
    pub ino_base: u64,
    /// Timestamp of the first event.
    pub ts_start: u64,
    /// First fault id.
    pub fault_base: u64,
    pub clock: Clock,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            fixed: false,
            ino_base: 12,
            ts_start: 1_000_000,
            fault_base: 1,
            clock: Clock::Strict,
        }
    }
}

/// Who takes each step; once the list is used up, the RNG draws.
#[derive(Clone, Copy, Debug)]
pub enum Pick<'a> {
    /// Step `i` is taken by actor `list[i]` (an error if it cannot step).
    Actors(&'a [usize]),
    /// Step `i` is taken by the `list[i] % n`-th of the `n` actors that can step.
    Among(&'a [u32]),
}

/// Why a scripted schedule could not run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    #[error("step {step}: actor {actor} does not exist or has finished")]
    NotRunnable { step: usize, actor: usize },
    #[error("step {step}: actor {actor} waits for a lock held by another actor")]
    Blocked { step: usize, actor: usize },
    #[error("all actors wait for locks (model bug)")]
    Deadlock,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Start,
    /// 4 KiB read after its lookup: `Some(b)` found blocks, `None` a hole.
    ReadFinish(Option<u32>),
    /// 4 KiB write whose lookup saw a hole: next, get_block(create=1).
    WriteAlloc,
    /// Insert `b`; `store`: the store lands now (it did not land at allocation).
    WriteInsert {
        b: u32,
        store: bool,
    },
    PmdReadFinish(Option<u32>),
    PmdInsert {
        b0: u32,
        store: bool,
    },
    /// `write(2)`: the next page to handle.
    Pwrite {
        next: u64,
    },
    Done,
}

#[derive(Clone, Copy, Debug, Default)]
struct Held {
    inode: Option<usize>,
    /// (file, first page, pages)
    entries: Option<(usize, u64, u64)>,
}

#[derive(Clone, Debug)]
struct ActorState {
    op_idx: usize,
    cur: Option<Op>,
    phase: Phase,
    fault: u64,
    held: Held,
}

/// What one schedule produced.
#[derive(Clone, Debug, Default)]
pub struct Run {
    /// Events in true (emission) order, timestamps non-decreasing.
    pub events: Vec<Event>,
    /// Pages the oracle found corrupted, sorted.
    pub corrupted: Vec<PageKey>,
    /// Distinct pages any event covered (the page universe of the confusion matrix).
    pub pages_touched: u64,
    /// Reads (at the end of a read fault or through an existing mapping) that returned wrong bytes.
    pub wrong_reads: u64,
    /// Mappings still showing wrong bytes at the end.
    pub incoherent_at_end: u64,
    pub steps: u64,
}

/// The simulator. Keeps its buffers between schedules.
#[derive(Debug, Default)]
pub struct Sim {
    cfg: ModelConfig,
    files: usize,
    mem: Memory,
    actors: Vec<ActorState>,
    ops: Vec<Vec<Op>>,
    /// `[file * FILE_PAGES + page]`: holder actor + 1, or 0.
    entry_lock: Vec<u16>,
    inode_lock: Vec<u16>,
    ts: u64,
    next_fault: u64,
    run: Run,
}

impl Sim {
    pub fn new() -> Self {
        Self::default()
    }

    /// Run `sc`. Step `i` is taken by actor `script[i]` while the script lasts,
    /// then by a runnable actor drawn from `rng`; `rng` also draws timestamp gaps.
    pub fn run(
        &mut self,
        sc: &Scenario,
        cfg: ModelConfig,
        script: &[usize],
        rng: &mut SmallRng,
    ) -> Result<&Run, ScheduleError> {
        self.run_with(sc, cfg, Pick::Actors(script), rng)
    }

    /// Like [`Sim::run`], with the steps chosen by `pick`.
    pub fn run_with(
        &mut self,
        sc: &Scenario,
        cfg: ModelConfig,
        pick: Pick<'_>,
        rng: &mut SmallRng,
    ) -> Result<&Run, ScheduleError> {
        self.reset(sc, cfg);
        let mut runnable = Vec::with_capacity(self.actors.len());
        let mut step = 0usize;
        loop {
            runnable.clear();
            let mut live = 0;
            for a in 0..self.actors.len() {
                if self.actors[a].phase != Phase::Done {
                    live += 1;
                    if self.can_step(a) {
                        runnable.push(a);
                    }
                }
            }
            if live == 0 {
                break;
            }
            if runnable.is_empty() {
                return Err(ScheduleError::Deadlock);
            }
            let a = match pick {
                Pick::Actors(script) if step < script.len() => {
                    let a = script[step];
                    if a >= self.actors.len() || self.actors[a].phase == Phase::Done {
                        return Err(ScheduleError::NotRunnable { step, actor: a });
                    }
                    if !runnable.contains(&a) {
                        return Err(ScheduleError::Blocked { step, actor: a });
                    }
                    a
                }
                Pick::Among(choices) if step < choices.len() => {
                    runnable[choices[step] as usize % runnable.len()]
                }
                _ => runnable[rng.gen_range(0..runnable.len())],
            };
            self.step(a, rng);
            step += 1;
        }
        self.finish(step as u64);
        Ok(&self.run)
    }

    fn reset(&mut self, sc: &Scenario, cfg: ModelConfig) {
        self.cfg = cfg;
        self.files = sc.files.max(1);
        let n = sc.actors.len();
        self.mem.reset(self.files, n);
        self.ops.clear();
        self.ops.extend(sc.actors.iter().map(|a| a.ops.clone()));
        self.actors.clear();
        for a in 0..n {
            let cur = self.ops[a].first().copied();
            let phase = if cur.is_some() {
                Phase::Start
            } else {
                Phase::Done
            };
            self.actors.push(ActorState {
                op_idx: 0,
                cur,
                phase,
                fault: 0,
                held: Held::default(),
            });
        }
        let pages = self.files * FILE_PAGES as usize;
        self.entry_lock.clear();
        self.entry_lock.resize(pages, 0);
        self.inode_lock.clear();
        self.inode_lock.resize(self.files, 0);
        self.ts = cfg.ts_start;
        self.next_fault = cfg.fault_base;
        self.run.events.clear();
        self.run.corrupted.clear();
        self.run.pages_touched = 0;
        self.run.wrong_reads = 0;
        self.run.incoherent_at_end = 0;
    }

    fn finish(&mut self, steps: u64) {
        self.run.steps = steps;
        self.run.incoherent_at_end = self.mem.incoherent_mappings();
        let (base, mut corrupted, mut touched) = (
            self.cfg.ino_base,
            std::mem::take(&mut self.run.corrupted),
            0,
        );
        // Only touched pages can have changed, let alone be corrupted.
        let pages: Vec<(usize, u64)> = self.mem.touched_pages().collect();
        for (file, page) in pages {
            touched += 1;
            if self.mem.is_corrupted(file, page) {
                corrupted.push(PageKey {
                    dev: SIM_DEV,
                    ino: base + file as u64,
                    pgoff: page,
                });
            }
        }
        self.run.corrupted = corrupted;
        self.run.pages_touched = touched;
    }

    // ---- locks -------------------------------------------------------------

    /// The locks the actor's next step must take: (inode, entry range).
    fn wants(&self, a: usize) -> Held {
        let st = &self.actors[a];
        let (Phase::Start, Some(op)) = (st.phase, st.cur) else {
            return Held::default();
        };
        let fixed = self.cfg.fixed;
        let entries = |file: usize, start: u64, len: u64| {
            if fixed {
                Some((file, start, len))
            } else {
                None
            }
        };
        match op {
            Op::Read { file, pgoff } => {
                let file = usize::from(file);
                if self.mem.pte(a, file, pgoff) == Pte::None {
                    Held {
                        inode: None,
                        entries: entries(file, pgoff, 1),
                    }
                } else {
                    Held::default()
                }
            }
            Op::Write { file, pgoff } => {
                let file = usize::from(file);
                if matches!(self.mem.pte(a, file, pgoff), Pte::Block(_)) {
                    Held::default()
                } else {
                    Held {
                        inode: None,
                        entries: entries(file, pgoff, 1),
                    }
                }
            }
            Op::PmdRead { file, pgoff } | Op::PmdWrite { file, pgoff } => {
                let file = usize::from(file);
                let s = pgoff & !(PMD_PAGES - 1);
                if self.mem.maps_any(a, file, s, PMD_PAGES) {
                    // Takes the 4 KiB path; lock as that would.
                    let pte = self.mem.pte(a, file, pgoff);
                    let hit = match op {
                        Op::PmdRead { .. } => pte != Pte::None,
                        _ => matches!(pte, Pte::Block(_)),
                    };
                    if hit {
                        Held::default()
                    } else {
                        Held {
                            inode: None,
                            entries: entries(file, pgoff, 1),
                        }
                    }
                } else {
                    Held {
                        inode: None,
                        entries: entries(file, s, PMD_PAGES),
                    }
                }
            }
            Op::Pwrite {
                file,
                pgoff,
                npages,
            }
            | Op::Punch {
                file,
                pgoff,
                npages,
            } => {
                let file = usize::from(file);
                Held {
                    inode: Some(file),
                    entries: entries(file, pgoff, npages),
                }
            }
            Op::Truncate { file, pgoff } => {
                let file = usize::from(file);
                Held {
                    inode: Some(file),
                    entries: entries(file, pgoff, FILE_PAGES - pgoff),
                }
            }
        }
    }

    fn can_step(&self, a: usize) -> bool {
        let w = self.wants(a);
        let me = a as u16 + 1;
        if let Some(f) = w.inode {
            if self.inode_lock[f] != 0 && self.inode_lock[f] != me {
                return false;
            }
        }
        if let Some((f, s, n)) = w.entries {
            let i = f * FILE_PAGES as usize + s as usize;
            if self.entry_lock[i..i + n as usize]
                .iter()
                .any(|&h| h != 0 && h != me)
            {
                return false;
            }
        }
        true
    }

    fn acquire(&mut self, a: usize) {
        let w = self.wants(a);
        let me = a as u16 + 1;
        if let Some(f) = w.inode {
            self.inode_lock[f] = me;
        }
        if let Some((f, s, n)) = w.entries {
            let i = f * FILE_PAGES as usize + s as usize;
            self.entry_lock[i..i + n as usize].fill(me);
        }
        self.actors[a].held = w;
    }

    fn release(&mut self, a: usize) {
        let h = std::mem::take(&mut self.actors[a].held);
        if let Some(f) = h.inode {
            self.inode_lock[f] = 0;
        }
        if let Some((f, s, n)) = h.entries {
            let i = f * FILE_PAGES as usize + s as usize;
            self.entry_lock[i..i + n as usize].fill(0);
        }
    }

    // ---- events ------------------------------------------------------------

    fn emit(&mut self, a: usize, file: usize, body: Body, rng: &mut SmallRng) {
        let gap = match self.cfg.clock {
            Clock::Strict => rng.gen_range(1..=1000u64),
            Clock::Ties(n) => {
                if rng.gen_range(0..n.max(1)) == 0 {
                    0
                } else {
                    rng.gen_range(1..=1000u64)
                }
            }
        };
        // The first event keeps ts_start exactly.
        if !self.run.events.is_empty() {
            self.ts += gap;
        }
        let id = a as u32 + 1000;
        let mut comm = *b"sim-actor-\0\0\0\0\0\0";
        let digits = a.to_string();
        let n = digits.len().min(5);
        comm[10..10 + n].copy_from_slice(&digits.as_bytes()[..n]);
        self.run.events.push(Event {
            ts: self.ts,
            cpu: a as u32,
            tid: id,
            pid: id,
            comm: Comm(comm),
            dev: SIM_DEV,
            ino: self.cfg.ino_base + file as u64,
            probe: 0,
            body,
        });
    }

    fn new_fault(&mut self, a: usize) -> u64 {
        let f = self.next_fault;
        self.next_fault += 1;
        self.actors[a].fault = f;
        f
    }

    /// The current operation is over: release its locks, move to the next one.
    fn op_done(&mut self, a: usize) {
        self.release(a);
        let st = &mut self.actors[a];
        st.op_idx += 1;
        st.cur = self.ops[a].get(st.op_idx).copied();
        st.phase = if st.cur.is_some() {
            Phase::Start
        } else {
            Phase::Done
        };
    }

    fn read_check(&mut self, a: usize, file: usize, page: u64) {
        if self
            .mem
            .view(a, file, page)
            .is_some_and(|v| v != self.mem.truth(file, page))
        {
            self.run.wrong_reads += 1;
        }
    }

    /// Range state for a PMD lookup.
    fn classify(&self, file: usize, s: u64) -> Range {
        let first = self.mem.block_of(file, s);
        let mut run = 1;
        while run < PMD_PAGES {
            let b = self.mem.block_of(file, s + run);
            let same = match (first, b) {
                (None, None) => true,
                (Some(f), Some(b)) => b == f + run as u32,
                _ => false,
            };
            if !same {
                break;
            }
            run += 1;
        }
        match (first, run == PMD_PAGES) {
            (None, true) => Range::Hole,
            (Some(b0), true) => Range::Extent(b0),
            (first, false) => Range::Mixed {
                hole: first.is_none(),
                run,
            },
        }
    }

    // ---- one atomic step ---------------------------------------------------

    fn step(&mut self, a: usize, rng: &mut SmallRng) {
        let st = &self.actors[a];
        let op = st.cur.expect("a live actor has an operation");
        let phase = st.phase;
        if phase == Phase::Start {
            self.acquire(a);
        }
        let file = op.file();
        let (cs, cl) = match (op, phase) {
            (Op::Read { pgoff, .. }, Phase::Start) => self.read_start(a, file, pgoff, rng),
            (Op::Read { pgoff, .. }, Phase::ReadFinish(found)) => {
                let fault = self.actors[a].fault;
                match found {
                    None => {
                        self.mem.set_pte(a, file, pgoff, Pte::Zero);
                        self.emit(
                            a,
                            file,
                            Body::LoadHole {
                                fault,
                                pgoff,
                                size: Size::Pte,
                            },
                            rng,
                        );
                    }
                    Some(b) => {
                        self.mem.set_pte(a, file, pgoff, Pte::Block(b));
                        self.emit(
                            a,
                            file,
                            Body::InsertMapping {
                                fault,
                                pgoff,
                                size: Size::Pte,
                                inferred: false,
                            },
                            rng,
                        );
                    }
                }
                self.emit(
                    a,
                    file,
                    Body::FaultEnd {
                        fault,
                        result: FaultResult::Nopage,
                    },
                    rng,
                );
                self.read_check(a, file, pgoff);
                self.op_done(a);
                (pgoff, 1)
            }
            (Op::Write { pgoff, .. }, Phase::Start) => self.write_start(a, file, pgoff, rng),
            (Op::Write { pgoff, .. }, Phase::WriteAlloc) => {
                let fault = self.actors[a].fault;
                let (b, new) = match self.mem.block_of(file, pgoff) {
                    // Another actor allocated since our lookup: get_block returns it.
                    Some(b) => (b, false),
                    None => (self.mem.allocate(file, pgoff, 1), true),
                };
                self.emit(
                    a,
                    file,
                    Body::MapBlocks {
                        fault: Some(fault),
                        pgoff,
                        npages: 1,
                        result: MapResult::Mapped,
                        new,
                        write: true,
                    },
                    rng,
                );
                self.actors[a].phase = Phase::WriteInsert { b, store: !new };
                (pgoff, 1)
            }
            (Op::Write { pgoff, .. }, Phase::WriteInsert { b, store }) => {
                let fault = self.actors[a].fault;
                self.mem.set_pte(a, file, pgoff, Pte::Block(b));
                if store {
                    self.mem.store(b);
                }
                self.emit(
                    a,
                    file,
                    Body::InsertMapping {
                        fault,
                        pgoff,
                        size: Size::Pte,
                        inferred: false,
                    },
                    rng,
                );
                self.emit(
                    a,
                    file,
                    Body::FaultEnd {
                        fault,
                        result: FaultResult::Nopage,
                    },
                    rng,
                );
                self.op_done(a);
                (pgoff, 1)
            }
            (Op::PmdRead { pgoff, .. } | Op::PmdWrite { pgoff, .. }, Phase::Start) => {
                let write = matches!(op, Op::PmdWrite { .. });
                self.pmd_start(a, file, pgoff, write, rng)
            }
            (Op::PmdRead { pgoff, .. }, Phase::PmdReadFinish(found)) => {
                let fault = self.actors[a].fault;
                let s = pgoff & !(PMD_PAGES - 1);
                match found {
                    None => {
                        for i in 0..PMD_PAGES {
                            self.mem.set_pte(a, file, s + i, Pte::Zero);
                        }
                        self.emit(
                            a,
                            file,
                            Body::LoadHole {
                                fault,
                                pgoff: s,
                                size: Size::Pmd,
                            },
                            rng,
                        );
                    }
                    Some(b0) => {
                        for i in 0..PMD_PAGES {
                            self.mem.set_pte(a, file, s + i, Pte::Block(b0 + i as u32));
                        }
                        self.emit(
                            a,
                            file,
                            Body::InsertMapping {
                                fault,
                                pgoff: s,
                                size: Size::Pmd,
                                inferred: false,
                            },
                            rng,
                        );
                    }
                }
                self.emit(
                    a,
                    file,
                    Body::FaultEnd {
                        fault,
                        result: FaultResult::Nopage,
                    },
                    rng,
                );
                self.read_check(a, file, pgoff);
                self.op_done(a);
                (s, PMD_PAGES)
            }
            (Op::PmdWrite { pgoff, .. }, Phase::PmdInsert { b0, store }) => {
                let fault = self.actors[a].fault;
                let s = pgoff & !(PMD_PAGES - 1);
                for i in 0..PMD_PAGES {
                    let b = b0 + i as u32;
                    self.mem.set_pte(a, file, s + i, Pte::Block(b));
                    if store {
                        self.mem.store(b);
                    }
                }
                self.emit(
                    a,
                    file,
                    Body::InsertMapping {
                        fault,
                        pgoff: s,
                        size: Size::Pmd,
                        inferred: false,
                    },
                    rng,
                );
                self.emit(
                    a,
                    file,
                    Body::FaultEnd {
                        fault,
                        result: FaultResult::Nopage,
                    },
                    rng,
                );
                self.op_done(a);
                (s, PMD_PAGES)
            }
            (Op::Pwrite { pgoff, npages, .. }, Phase::Start) => {
                self.actors[a].phase = Phase::Pwrite { next: pgoff };
                self.pwrite_run(a, file, pgoff, pgoff + npages, rng)
            }
            (Op::Pwrite { pgoff, npages, .. }, Phase::Pwrite { next }) => {
                self.pwrite_run(a, file, next, pgoff + npages, rng)
            }
            (Op::Punch { pgoff, npages, .. }, Phase::Start) => {
                self.emit(
                    a,
                    file,
                    Body::Invalidate {
                        pgoff,
                        npages,
                        reason: InvalidateReason::PunchHole,
                    },
                    rng,
                );
                self.mem.invalidate(file, pgoff, npages);
                self.op_done(a);
                (pgoff, npages)
            }
            (Op::Truncate { pgoff, .. }, Phase::Start) => {
                // u64::MAX: "to the end of the file" (event.rs).
                self.emit(
                    a,
                    file,
                    Body::Invalidate {
                        pgoff,
                        npages: u64::MAX,
                        reason: InvalidateReason::Truncate,
                    },
                    rng,
                );
                self.mem.invalidate(file, pgoff, FILE_PAGES - pgoff);
                self.op_done(a);
                (pgoff, FILE_PAGES - pgoff)
            }
            (op, phase) => unreachable!("actor {a}: {op:?} has no step in {phase:?}"),
        };
        self.mem.touch(file, cs, cl);
        self.mem.check(file, cs, cl);
    }

    fn read_start(&mut self, a: usize, file: usize, pgoff: u64, rng: &mut SmallRng) -> (u64, u64) {
        if self.mem.pte(a, file, pgoff) != Pte::None {
            // Mapped already: the load needs no fault.
            self.read_check(a, file, pgoff);
            self.op_done(a);
            return (pgoff, 1);
        }
        let found = self.pte_fault_lookup(a, file, pgoff, false, rng);
        self.actors[a].phase = Phase::ReadFinish(found);
        (pgoff, 1)
    }

    fn write_start(&mut self, a: usize, file: usize, pgoff: u64, rng: &mut SmallRng) -> (u64, u64) {
        if let Pte::Block(b) = self.mem.pte(a, file, pgoff) {
            // Writable mapping: the store needs no fault.
            self.mem.store(b);
            self.op_done(a);
            return (pgoff, 1);
        }
        let found = self.pte_fault_lookup(a, file, pgoff, true, rng);
        self.actors[a].phase = match found {
            Some(b) => Phase::WriteInsert { b, store: true },
            None => Phase::WriteAlloc,
        };
        (pgoff, 1)
    }

    /// A 4 KiB fault's first two steps: its begin, then the lookup of the
    /// page's block, which a legacy fault makes before any allocation (a
    /// lookup, so `write: false` even in a write fault). The block found.
    fn pte_fault_lookup(
        &mut self,
        a: usize,
        file: usize,
        pgoff: u64,
        write: bool,
        rng: &mut SmallRng,
    ) -> Option<u32> {
        let fault = self.new_fault(a);
        let found = self.mem.block_of(file, pgoff);
        self.emit(
            a,
            file,
            Body::FaultBegin {
                fault,
                pgoff,
                size: Size::Pte,
                write,
            },
            rng,
        );
        let result = if found.is_some() {
            MapResult::Mapped
        } else {
            MapResult::Hole
        };
        self.emit(
            a,
            file,
            Body::MapBlocks {
                fault: Some(fault),
                pgoff,
                npages: 1,
                result,
                new: false,
                write: false,
            },
            rng,
        );
        found
    }

    fn pmd_start(
        &mut self,
        a: usize,
        file: usize,
        pgoff: u64,
        write: bool,
        rng: &mut SmallRng,
    ) -> (u64, u64) {
        let s = pgoff & !(PMD_PAGES - 1);
        if self.mem.maps_any(a, file, s, PMD_PAGES) {
            // PTEs already populate this PMD: the kernel never tries a PMD fault.
            self.actors[a].cur = Some(pte_op(file, pgoff, write));
            return if write {
                self.write_start(a, file, pgoff, rng)
            } else {
                self.read_start(a, file, pgoff, rng)
            };
        }
        let fault = self.new_fault(a);
        self.emit(
            a,
            file,
            Body::FaultBegin {
                fault,
                pgoff: s,
                size: Size::Pmd,
                write,
            },
            rng,
        );
        // The PMD's block lookup.
        let lookup = |npages, result, new| Body::MapBlocks {
            fault: Some(fault),
            pgoff: s,
            npages,
            result,
            new,
            write,
        };
        match self.classify(file, s) {
            Range::Hole if write => {
                let b0 = self.mem.allocate(file, s, PMD_PAGES);
                self.emit(a, file, lookup(PMD_PAGES, MapResult::Mapped, true), rng);
                self.actors[a].phase = Phase::PmdInsert { b0, store: false };
            }
            Range::Hole => {
                self.emit(a, file, lookup(PMD_PAGES, MapResult::Hole, false), rng);
                self.actors[a].phase = Phase::PmdReadFinish(None);
            }
            Range::Extent(b0) => {
                self.emit(a, file, lookup(PMD_PAGES, MapResult::Mapped, false), rng);
                self.actors[a].phase = if write {
                    Phase::PmdInsert { b0, store: true }
                } else {
                    Phase::PmdReadFinish(Some(b0))
                };
            }
            Range::Mixed { hole, run } => {
                // Neither one hole nor one 2 MiB extent: fall back to 4 KiB.
                let result = if hole {
                    MapResult::Hole
                } else {
                    MapResult::Mapped
                };
                self.emit(a, file, lookup(run, result, false), rng);
                self.emit(
                    a,
                    file,
                    Body::FaultEnd {
                        fault,
                        result: FaultResult::Fallback,
                    },
                    rng,
                );
                self.release(a);
                self.actors[a].cur = Some(pte_op(file, pgoff, write));
                self.actors[a].phase = Phase::Start;
            }
        }
        (s, PMD_PAGES)
    }

    /// One run of `write(2)`: the maximal run of holes or of blocks at `next`.
    fn pwrite_run(
        &mut self,
        a: usize,
        file: usize,
        next: u64,
        end: u64,
        rng: &mut SmallRng,
    ) -> (u64, u64) {
        let hole = self.mem.block_of(file, next).is_none();
        let mut len = 1;
        while next + len < end && self.mem.block_of(file, next + len).is_none() == hole {
            len += 1;
        }
        if hole {
            self.mem.allocate(file, next, len);
        } else {
            for p in next..next + len {
                let b = self.mem.block_of(file, p).expect("run of blocks");
                self.mem.store(b);
            }
        }
        let body = Body::MapBlocks {
            fault: None,
            pgoff: next,
            npages: len,
            result: MapResult::Mapped,
            new: hole,
            write: true,
        };
        self.emit(a, file, body, rng);
        if next + len == end {
            self.op_done(a);
        } else {
            self.actors[a].phase = Phase::Pwrite { next: next + len };
        }
        (next, len)
    }
}

enum Range {
    Hole,
    Extent(u32),
    Mixed { hole: bool, run: u64 },
}

/// The 4 KiB operation a PMD fault falls back to.
fn pte_op(file: usize, pgoff: u64, write: bool) -> Op {
    let file = file as u8;
    if write {
        Op::Write { file, pgoff }
    } else {
        Op::Read { file, pgoff }
    }
}
