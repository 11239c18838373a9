//! The oracle: the file's bytes, and the one definition of "corrupted".
//!
//! The model keeps what the hardware and the kernel would hold, and nothing
//! the detector sees:
//!
//! * storage blocks, each holding a token (a `u64` standing for the page's
//!   4 KiB; `0` is all zeros). Every write puts a new, unique, non-zero token;
//!   freed blocks keep their bytes and are never reused within a schedule;
//! * per file, which block (if any) backs each page;
//! * per process, its page table: for each file page, nothing, the zero page
//!   (read-only, always zeros), or a block.
//!
//! What a process sees at page `p` (its *view*) is the zero page's zeros or
//! its mapped block's bytes; what the file holds at `p` (the *truth*) is the
//! backing block's bytes, or zeros for a hole.
//!
//! **Definition.** Page `p` is *corrupted* in a schedule iff after some step
//! some process maps `p` and its view differs from the truth: a read through
//! that mapping at that moment would return bytes the file does not hold. This
//! covers both shapes of damage, judged on bytes alone:
//!
//! * a reader that maps zeros over blocks holding data (written through another
//!   mapping, by `write(2)`, or by the allocating fault): the data is invisible
//!   to it, and its own later view is wrong;
//! * a mapping of blocks the file no longer owns (freed by truncate or punch):
//!   the reader sees old bytes where the file has a hole, and a store through it
//!   lands on freed blocks, lost to the file.
//!
//! Reads are not needed for the judgement (a schedule's reads are a sample of
//! what could be read), but reads that did return wrong bytes are counted too.
//!
//! The oracle never looks at events and never calls the detector.

use crate::event::PMD_PAGES;

/// Pages per modelled file: two PMDs, so PMD faults have room and a neighbour.
pub const FILE_PAGES: u64 = 2 * PMD_PAGES;

/// What one page-table entry maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pte {
    None,
    /// The zero page (a PTE hole load) or the huge zero page (a PMD one).
    Zero,
    Block(u32),
}

/// The bytes of the model: block contents, file block maps, page tables, and
/// the pages found corrupted so far.
#[derive(Debug, Default)]
pub struct Memory {
    files: usize,
    procs: usize,
    /// Block contents (token; 0 = zeros). Index = block number.
    pub blocks: Vec<u64>,
    /// `[file * FILE_PAGES + page]` -> backing block.
    filemap: Vec<Option<u32>>,
    /// `[(proc * files + file) * FILE_PAGES + page]`.
    pt: Vec<Pte>,
    /// `[file * FILE_PAGES + page]`.
    corrupted: Vec<bool>,
    /// `[file * FILE_PAGES + page]`: covered by some step; and the list of them.
    touched: Vec<bool>,
    touched_list: Vec<u32>,
    next_token: u64,
}

#[inline]
fn fp(file: usize, page: u64) -> usize {
    file * FILE_PAGES as usize + page as usize
}

impl Memory {
    /// Empty files, empty page tables. Reuses the buffers of a previous run and
    /// clears only the pages it touched (every change is to a touched page).
    pub fn reset(&mut self, files: usize, procs: usize) {
        let pages = files * FILE_PAGES as usize;
        if self.files != files || self.procs != procs || self.filemap.len() != pages {
            self.files = files;
            self.procs = procs;
            self.filemap.clear();
            self.filemap.resize(pages, None);
            self.pt.clear();
            self.pt.resize(pages * procs, Pte::None);
            self.corrupted.clear();
            self.corrupted.resize(pages, false);
            self.touched.clear();
            self.touched.resize(pages, false);
            self.touched_list.clear();
        } else {
            for &i in &self.touched_list {
                let i = i as usize;
                self.filemap[i] = None;
                self.corrupted[i] = false;
                self.touched[i] = false;
                let (file, page) = (i / FILE_PAGES as usize, i % FILE_PAGES as usize);
                for proc in 0..procs {
                    self.pt[(proc * files + file) * FILE_PAGES as usize + page] = Pte::None;
                }
            }
            self.touched_list.clear();
        }
        self.blocks.clear();
        self.next_token = 1;
    }

    /// Note that a step covered `[start, start + len)`.
    pub fn touch(&mut self, file: usize, start: u64, len: u64) {
        let i = fp(file, start);
        for j in i..i + len as usize {
            if !self.touched[j] {
                self.touched[j] = true;
                self.touched_list.push(j as u32);
            }
        }
    }

    /// Pages any step covered, as (file, page), in order.
    pub fn touched_pages(&mut self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.touched_list.sort_unstable();
        self.touched_list
            .iter()
            .map(|&i| (i as usize / FILE_PAGES as usize, u64::from(i) % FILE_PAGES))
    }

    #[inline]
    fn pti(&self, proc: usize, file: usize, page: u64) -> usize {
        (proc * self.files + file) * FILE_PAGES as usize + page as usize
    }

    /// A fresh, unique, non-zero token: the bytes of one new write.
    pub fn token(&mut self) -> u64 {
        let t = self.next_token;
        self.next_token += 1;
        t
    }

    pub fn pte(&self, proc: usize, file: usize, page: u64) -> Pte {
        self.pt[self.pti(proc, file, page)]
    }

    pub fn set_pte(&mut self, proc: usize, file: usize, page: u64, pte: Pte) {
        let i = self.pti(proc, file, page);
        self.pt[i] = pte;
    }

    /// Does `proc` map any page of `[start, start + len)`?
    pub fn maps_any(&self, proc: usize, file: usize, start: u64, len: u64) -> bool {
        let i = self.pti(proc, file, start);
        self.pt[i..i + len as usize].iter().any(|&e| e != Pte::None)
    }

    pub fn block_of(&self, file: usize, page: u64) -> Option<u32> {
        self.filemap[fp(file, page)]
    }

    /// What a process sees at `page`, if it maps it.
    pub fn view(&self, proc: usize, file: usize, page: u64) -> Option<u64> {
        match self.pte(proc, file, page) {
            Pte::None => None,
            Pte::Zero => Some(0),
            Pte::Block(b) => Some(self.blocks[b as usize]),
        }
    }

    /// What the file holds at `page`.
    pub fn truth(&self, file: usize, page: u64) -> u64 {
        self.block_of(file, page)
            .map_or(0, |b| self.blocks[b as usize])
    }

    /// Allocate fresh blocks for `[start, start + len)` holding the allocator's
    /// data, and tear down every zero-page mapping of those pages (the
    /// allocator's `unmap_mapping_range` of hole pages). Returns the first block;
    /// the run is contiguous.
    pub fn allocate(&mut self, file: usize, start: u64, len: u64) -> u32 {
        let b0 = u32::try_from(self.blocks.len()).expect("fewer than 4G blocks per schedule");
        for i in 0..len {
            let t = self.token();
            self.blocks.push(t);
            self.filemap[fp(file, start + i)] = Some(b0 + i as u32);
        }
        for proc in 0..self.procs {
            let i = self.pti(proc, file, start);
            for e in &mut self.pt[i..i + len as usize] {
                if *e == Pte::Zero {
                    *e = Pte::None;
                }
            }
        }
        b0
    }

    /// Store new bytes into block `b` (through a mapping or by `write(2)`).
    pub fn store(&mut self, b: u32) {
        let t = self.token();
        self.blocks[b as usize] = t;
    }

    /// Truncate or punch: the pages become holes (their blocks are freed and keep
    /// their old bytes) and every mapping of them is zapped.
    pub fn invalidate(&mut self, file: usize, start: u64, len: u64) {
        let f = fp(file, start);
        self.filemap[f..f + len as usize].fill(None);
        for proc in 0..self.procs {
            let i = self.pti(proc, file, start);
            self.pt[i..i + len as usize].fill(Pte::None);
        }
    }

    /// The judgement, applied to the pages a step touched: mark every page some
    /// process maps with a view that differs from the file's bytes.
    pub fn check(&mut self, file: usize, start: u64, len: u64) {
        for page in start..start + len {
            let truth = self.truth(file, page);
            for proc in 0..self.procs {
                if self.view(proc, file, page).is_some_and(|v| v != truth) {
                    self.corrupted[fp(file, page)] = true;
                }
            }
        }
    }

    pub fn is_corrupted(&self, file: usize, page: u64) -> bool {
        self.corrupted[fp(file, page)]
    }

    /// Mappings whose view differs from the file at the end (what a final read
    /// of every mapped page by every process would get wrong).
    pub fn incoherent_mappings(&self) -> u64 {
        let mut n = 0;
        for &i in &self.touched_list {
            let (file, page) = (i as usize / FILE_PAGES as usize, u64::from(i) % FILE_PAGES);
            let truth = self.truth(file, page);
            n += (0..self.procs)
                .filter(|&p| self.view(p, file, page).is_some_and(|v| v != truth))
                .count() as u64;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_page_over_data_is_corrupted_and_allocation_tears_down_holes() {
        let mut m = Memory::default();
        m.reset(1, 2);
        // Process 0 maps the zero page over a hole: coherent.
        m.touch(0, 3, 1);
        m.set_pte(0, 0, 3, Pte::Zero);
        m.check(0, 3, 1);
        assert!(!m.is_corrupted(0, 3));
        // An allocation tears that mapping down: still coherent.
        let b = m.allocate(0, 3, 1);
        m.check(0, 3, 1);
        assert!(!m.is_corrupted(0, 3));
        assert_eq!(m.pte(0, 0, 3), Pte::None);
        // A zero page mapped after the allocation shows zeros over data.
        m.set_pte(1, 0, 3, Pte::Zero);
        m.set_pte(0, 0, 3, Pte::Block(b));
        m.check(0, 3, 1);
        assert!(m.is_corrupted(0, 3));
        assert_eq!(m.incoherent_mappings(), 1);
    }

    #[test]
    fn mapping_freed_blocks_is_corrupted() {
        let mut m = Memory::default();
        m.reset(1, 1);
        m.touch(0, 0, 1);
        let b = m.allocate(0, 0, 1);
        m.invalidate(0, 0, 1);
        m.check(0, 0, 1);
        assert!(!m.is_corrupted(0, 0));
        m.set_pte(0, 0, 0, Pte::Block(b));
        m.check(0, 0, 1);
        assert!(
            m.is_corrupted(0, 0),
            "old bytes visible where the file has a hole"
        );
    }
}
