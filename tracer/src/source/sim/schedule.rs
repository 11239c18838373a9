//! What a schedule is made of: actors (processes), each running a short script
//! of operations on the modelled files, and the random choices that build one.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::oracle::FILE_PAGES;
use crate::event::PMD_PAGES;

/// One user-level operation. Faulting operations (`Read`, `Write`, `PmdRead`,
/// `PmdWrite`) are accesses through the process's own mapping: they fault only
/// when the page table does not already allow the access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Load from page `pgoff` through a 4 KiB mapping.
    Read { file: u8, pgoff: u64 },
    /// Store to page `pgoff` through a 4 KiB mapping.
    Write { file: u8, pgoff: u64 },
    /// Load through a 2 MiB mapping covering `pgoff` (falls back to `Read`).
    PmdRead { file: u8, pgoff: u64 },
    /// Store through a 2 MiB mapping covering `pgoff`: the whole 2 MiB is
    /// written (falls back to `Write`).
    PmdWrite { file: u8, pgoff: u64 },
    /// `pwrite(2)` of `npages` pages at `pgoff`.
    Pwrite { file: u8, pgoff: u64, npages: u64 },
    /// `fallocate(PUNCH_HOLE)` of `npages` pages at `pgoff`.
    Punch { file: u8, pgoff: u64, npages: u64 },
    /// `ftruncate` down to `pgoff` pages and back up (frees to end of file).
    Truncate { file: u8, pgoff: u64 },
}

impl Op {
    pub fn file(self) -> usize {
        match self {
            Op::Read { file, .. }
            | Op::Write { file, .. }
            | Op::PmdRead { file, .. }
            | Op::PmdWrite { file, .. }
            | Op::Pwrite { file, .. }
            | Op::Punch { file, .. }
            | Op::Truncate { file, .. } => usize::from(file),
        }
    }
}

/// One process (one thread) and its script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub ops: Vec<Op>,
}

/// The actors of one schedule and the files they share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    pub files: usize,
    pub actors: Vec<Actor>,
}

/// Which operations random scenarios draw, with weights.
#[derive(Clone, Copy, Debug)]
pub struct Mix {
    pub read: u32,
    pub write: u32,
    pub pmd_read: u32,
    pub pmd_write: u32,
    pub pwrite: u32,
    pub punch: u32,
    pub truncate: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Self {
            read: 4,
            write: 3,
            pmd_read: 1,
            pmd_write: 1,
            pwrite: 2,
            punch: 1,
            truncate: 1,
        }
    }
}

/// Shape of random scenarios.
#[derive(Clone, Copy, Debug)]
pub struct ScenarioShape {
    /// Processes per schedule.
    pub actors: usize,
    /// Most operations per process (each gets 1..=ops).
    pub ops: usize,
    /// Files (inodes) shared by the processes.
    pub files: usize,
    /// 4 KiB operations pick their page among `0..hot_pages` (all inside the
    /// first PMD, so 4 KiB and 2 MiB faults meet).
    pub hot_pages: u64,
    pub mix: Mix,
}

impl Default for ScenarioShape {
    fn default() -> Self {
        Self {
            actors: 3,
            ops: 2,
            files: 1,
            hot_pages: 2,
            mix: Mix::default(),
        }
    }
}

/// The RNG of schedule `index` under `seed`: independent streams, so any one
/// schedule of a run can be replayed alone.
pub fn schedule_rng(seed: u64, index: u64) -> SmallRng {
    // splitmix64 of (seed, index): decorrelates neighbouring indices.
    let mut z = seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    SmallRng::seed_from_u64(z ^ (z >> 31))
}

impl ScenarioShape {
    /// Draw a scenario.
    pub fn draw(&self, rng: &mut SmallRng) -> Scenario {
        let files = self.files.max(1);
        let hot = self.hot_pages.clamp(1, PMD_PAGES);
        let m = self.mix;
        let weights = [
            m.read,
            m.write,
            m.pmd_read,
            m.pmd_write,
            m.pwrite,
            m.punch,
            m.truncate,
        ];
        let total: u32 = weights.iter().sum::<u32>().max(1);
        let actors = (0..self.actors.max(1))
            .map(|_| {
                let n = rng.gen_range(1..=self.ops.max(1));
                let ops = (0..n)
                    .map(|_| {
                        let file = rng.gen_range(0..files) as u8;
                        let pgoff = rng.gen_range(0..hot);
                        let mut pick = rng.gen_range(0..total);
                        let mut kind = 0;
                        while pick >= weights[kind] {
                            pick -= weights[kind];
                            kind += 1;
                        }
                        match kind {
                            0 => Op::Read { file, pgoff },
                            1 => Op::Write { file, pgoff },
                            2 => Op::PmdRead { file, pgoff },
                            3 => Op::PmdWrite { file, pgoff },
                            4 => Op::Pwrite {
                                file,
                                pgoff,
                                npages: rng.gen_range(1..=2u64).min(FILE_PAGES - pgoff),
                            },
                            5 => Op::Punch {
                                file,
                                pgoff,
                                npages: rng.gen_range(1..=2u64).min(FILE_PAGES - pgoff),
                            },
                            _ => Op::Truncate { file, pgoff },
                        }
                    })
                    .collect();
                Actor { ops }
            })
            .collect();
        Scenario { files, actors }
    }
}
