//! A synthetic, realistic-shaped event stream for benchmarks and memory
//! measurements (not a model of the race: `daxtrace simulate` is that).
//!
//! Faults run a few at a time on several CPUs over a working set of pages:
//! each is `fault_begin`, a lookup, then a hole load (read of a hole), or an
//! allocation and insert (write to a hole), or an insert (mapped page), then
//! `fault_end`. About 1% of faults are PMD, and `write(2)` allocations and
//! punch-hole invalidations are mixed in. Timestamps rise by tens of ns with
//! small cross-CPU disorder, as the kernel ring buffer delivers them.

use crate::event::{Body, Comm, Dev, Event, FaultResult, InvalidateReason, MapResult, Size};

/// xorshift64*: deterministic and allocation-free.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Shape of the generated stream.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    pub inodes: u64,
    /// Pages per inode the faults pick from.
    pub pages_per_inode: u64,
    pub cpus: u32,
    pub seed: u64,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            inodes: 16,
            pages_per_inode: 1 << 16,
            cpus: 8,
            seed: 42,
        }
    }
}

impl Workload {
    /// About `n` events.
    pub fn generate(&self, n: usize) -> Vec<Event> {
        let mut rng = Rng::new(self.seed);
        let mut out = Vec::with_capacity(n + 16);
        let mut ts = 1_000_000u64;
        let mut fault = 0u64;
        while out.len() < n {
            fault += 1;
            let cpu = rng.below(u64::from(self.cpus)) as u32;
            let tid = 1000 + cpu;
            let ino = 100 + rng.below(self.inodes);
            let mut pgoff = rng.below(self.pages_per_inode);
            let base = Event {
                ts,
                cpu,
                tid,
                pid: tid,
                comm: Comm::new("bench"),
                dev: Dev::new(259, 0),
                ino,
                probe: 0,
                body: Body::Lost { count: 0 },
            };
            let mut push = |dt: u64, body: Body, out: &mut Vec<Event>| {
                ts += dt;
                out.push(Event { ts, body, ..base });
            };
            let r = rng.below(1000);
            if r < 10 {
                // write(2) allocating a few pages.
                let n = 1 + rng.below(8);
                push(
                    40,
                    Body::MapBlocks {
                        fault: None,
                        pgoff,
                        npages: n,
                        result: MapResult::Mapped,
                        new: true,
                        write: true,
                    },
                    &mut out,
                );
                push(
                    30,
                    Body::Invalidate {
                        pgoff,
                        npages: n,
                        reason: InvalidateReason::Write,
                    },
                    &mut out,
                );
                continue;
            }
            if r < 20 {
                push(
                    40,
                    Body::Invalidate {
                        pgoff,
                        npages: 1 + rng.below(4),
                        reason: InvalidateReason::PunchHole,
                    },
                    &mut out,
                );
                continue;
            }
            let size = if r < 30 { Size::Pmd } else { Size::Pte };
            if size == Size::Pmd {
                pgoff &= !511;
            }
            let npages = if size == Size::Pmd { 512 } else { 1 };
            let write = rng.below(3) == 0;
            push(
                20,
                Body::FaultBegin {
                    fault,
                    pgoff,
                    size,
                    write,
                },
                &mut out,
            );
            let hole = rng.below(2) == 0;
            let result = if hole {
                MapResult::Hole
            } else {
                MapResult::Mapped
            };
            push(
                30,
                Body::MapBlocks {
                    fault: Some(fault),
                    pgoff,
                    npages,
                    result,
                    new: false,
                    write: false,
                },
                &mut out,
            );
            if hole && !write {
                push(40, Body::LoadHole { fault, pgoff, size }, &mut out);
            } else {
                if hole {
                    push(
                        30,
                        Body::MapBlocks {
                            fault: Some(fault),
                            pgoff,
                            npages,
                            result: MapResult::Mapped,
                            new: true,
                            write: true,
                        },
                        &mut out,
                    );
                }
                push(
                    40,
                    Body::InsertMapping {
                        fault,
                        pgoff,
                        size,
                        inferred: false,
                    },
                    &mut out,
                );
            }
            push(
                20,
                Body::FaultEnd {
                    fault,
                    result: FaultResult::Nopage,
                },
                &mut out,
            );
        }
        // Cross-CPU disorder: swap neighbours now and then (well inside any window).
        for i in 1..out.len() {
            if rng.below(8) == 0 {
                out.swap(i - 1, i);
            }
        }
        out
    }
}
