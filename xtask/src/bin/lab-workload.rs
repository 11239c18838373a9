//! The lab's racing workload (runs inside the DAX guest, issue 5 point 2).
//!
//! Each round races mmap readers against mmap writers and `pwrite(2)` into
//! the holes of one sparse (or freshly punched) file, through a 2 MiB-aligned
//! mapping (PMD faults) and a deliberately misaligned one (PTE faults). Then
//! it punches or truncates part of the file and starts again on the holes.
//!
//! Corruption is judged from the data alone, independent of any tracer:
//! every word a writer stores is unique to (round, page, word); a reader
//! accepts a word only if it is 0 (not yet written) or that value, and once a
//! writer has published a page as done a reader must see all of it (a zero
//! there is the stale-hole corruption of the 2016 race). A full `pread` check
//! after every phase closes each round.
//!
//! Prints one JSON object on stdout; exits 2 on usage or I/O errors, 0
//! otherwise (the host judges the mismatch counts).

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

const PAGE: usize = 4096;
const WORDS: usize = PAGE / 8;
const PMD: usize = 2 << 20;

struct Args {
    dir: PathBuf,
    rounds: u32,
    /// Pages per file; rounded up to whole PMDs.
    pages: usize,
    /// Reader passes per round at most (each pass maps afresh, so faults again).
    passes: u32,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        dir: PathBuf::from("."),
        rounds: 10,
        pages: 1024,
        passes: 4,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{k} needs a value"));
        match k.as_str() {
            "--dir" => a.dir = PathBuf::from(val()?),
            "--rounds" => a.rounds = val()?.parse().map_err(|e| format!("--rounds: {e}"))?,
            "--pages" => a.pages = val()?.parse().map_err(|e| format!("--pages: {e}"))?,
            "--passes" => a.passes = val()?.parse().map_err(|e| format!("--passes: {e}"))?,
            "-h" | "--help" => {
                return Err(
                    "usage: lab-workload [--dir D] [--rounds N] [--pages N] [--passes N]".into(),
                );
            }
            _ => return Err(format!("unknown argument {k:?} (try --help)")),
        }
    }
    let per_pmd = PMD / PAGE;
    a.pages = a.pages.max(per_pmd).div_ceil(per_pmd) * per_pmd;
    Ok(a)
}

/// The value of word `w` of page `p` as written in `round` (never 0).
fn tag(round: u32, p: usize, w: usize) -> u64 {
    (u64::from(round) + 1) << 44 | (p as u64) << 12 | w as u64
}

#[derive(Default)]
struct Counts {
    page_reads: AtomicU64,
    /// A word that is neither 0 nor the value written there.
    garbage: AtomicU64,
    /// A zero word in a page a writer had published as done.
    stale: AtomicU64,
    /// Pages whose final contents (pread) differ from the model.
    final_bad: AtomicU64,
    mmap_writes: AtomicU64,
    pwrites: AtomicU64,
    punches: AtomicU64,
    truncates: AtomicU64,
}

impl Counts {
    fn mismatches(&self) -> u64 {
        self.garbage.load(Ordering::Relaxed)
            + self.stale.load(Ordering::Relaxed)
            + self.final_bad.load(Ordering::Relaxed)
    }
}

/// A shared file mapping; `misalign` shifts it one page off 2 MiB so every
/// fault through it is a PTE fault.
struct Map {
    base: *mut u8,
    len: usize,
    reserve: (*mut libc::c_void, usize),
}

// SAFETY: the mapping is plain shared memory; threads only read/write words.
unsafe impl Sync for Map {}
unsafe impl Send for Map {}

impl Map {
    fn new(fd: i32, len: usize, write: bool, misalign: bool) -> std::io::Result<Self> {
        // Reserve address space, then map the file at an address 2 MiB
        // aligned (plus one page when misaligned) inside it.
        let rlen = len + 2 * PMD;
        // SAFETY: anonymous reservation, no file involved.
        let r = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                rlen,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if r == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let mut at = (r as usize).next_multiple_of(PMD);
        if misalign {
            at += PAGE;
        }
        let prot = if write {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: MAP_FIXED inside our own reservation.
        let m = unsafe {
            libc::mmap(
                at as *mut _,
                len,
                prot,
                libc::MAP_SHARED | libc::MAP_FIXED,
                fd,
                0,
            )
        };
        if m == libc::MAP_FAILED {
            let e = std::io::Error::last_os_error();
            // SAFETY: our reservation.
            unsafe { libc::munmap(r, rlen) };
            return Err(e);
        }
        Ok(Self {
            base: m.cast(),
            len,
            reserve: (r, rlen),
        })
    }

    fn word(&self, p: usize, w: usize) -> *mut u64 {
        debug_assert!(p * PAGE + w * 8 < self.len);
        // SAFETY: inside the mapping.
        unsafe { self.base.add(p * PAGE + w * 8).cast() }
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: our reservation (covers the file mapping too).
        unsafe { libc::munmap(self.reserve.0, self.reserve.1) };
    }
}

/// Per page: 0 = hole (expected zero), else the round+1 whose tag it holds.
struct Model {
    state: Vec<AtomicU32>,
    done: Vec<AtomicBool>,
}

fn open(path: &std::path::Path) -> std::io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: valid C string.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC,
            0o644,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn check(r: i64, what: &str) -> std::io::Result<()> {
    if r < 0 {
        let e = std::io::Error::last_os_error();
        return Err(std::io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(())
}

/// Which writer owns page p (chunks of 8 pages so each writer covers runs).
fn owner(p: usize) -> usize {
    (p / 8) % 3
}

fn run(a: &Args) -> std::io::Result<serde_like::Report> {
    std::fs::create_dir_all(&a.dir)?;
    let path = a.dir.join("race.dat");
    let fd = open(&path)?;
    let fdn = fd.as_raw_fd();
    let len = a.pages * PAGE;
    // SAFETY: plain syscall on our fd.
    check(
        unsafe { libc::ftruncate(fdn, len as i64) }.into(),
        "ftruncate",
    )?;
    let model = Model {
        state: (0..a.pages).map(|_| AtomicU32::new(0)).collect(),
        done: (0..a.pages).map(|_| AtomicBool::new(false)).collect(),
    };
    let c = Counts::default();
    let t0 = Instant::now();
    for round in 0..a.rounds {
        race(a, fdn, len, round, &model, &c)?;
        verify(fdn, a.pages, &model, &c)?;
        churn(fdn, a.pages, round, &model, &c)?;
        verify(fdn, a.pages, &model, &c)?;
    }
    drop(fd);
    std::fs::remove_file(&path)?;
    Ok(serde_like::Report {
        rounds: a.rounds,
        pages: a.pages,
        page_reads: c.page_reads.load(Ordering::Relaxed),
        mmap_writes: c.mmap_writes.load(Ordering::Relaxed),
        pwrites: c.pwrites.load(Ordering::Relaxed),
        punches: c.punches.load(Ordering::Relaxed),
        truncates: c.truncates.load(Ordering::Relaxed),
        garbage: c.garbage.load(Ordering::Relaxed),
        stale: c.stale.load(Ordering::Relaxed),
        final_bad: c.final_bad.load(Ordering::Relaxed),
        mismatches: c.mismatches(),
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// One racing phase: every hole page gets written by its owner while two
/// readers scan through fresh mappings.
fn race(a: &Args, fd: i32, len: usize, round: u32, m: &Model, c: &Counts) -> std::io::Result<()> {
    let targets: Vec<usize> = (0..a.pages)
        .filter(|&p| m.state[p].load(Ordering::Relaxed) == 0)
        .collect();
    for &p in &targets {
        m.done[p].store(false, Ordering::Relaxed);
    }
    let writers_left = AtomicU64::new(3);
    let wmap_pmd = Map::new(fd, len, true, false)?;
    let wmap_pte = Map::new(fd, len, true, true)?;
    std::thread::scope(|s| -> std::io::Result<()> {
        let mut hs = Vec::new();
        for w in 0..3 {
            let (targets, wl) = (&targets, &writers_left);
            let map = if w == 0 { &wmap_pmd } else { &wmap_pte };
            hs.push(s.spawn(move || -> std::io::Result<()> {
                let mut buf = vec![0u64; WORDS];
                for &p in targets.iter().filter(|&&p| owner(p) == w) {
                    if w == 2 {
                        // pwrite(2) into the hole.
                        for (i, b) in buf.iter_mut().enumerate() {
                            *b = tag(round, p, i);
                        }
                        // SAFETY: buf is PAGE bytes.
                        let n = unsafe {
                            libc::pwrite(fd, buf.as_ptr().cast(), PAGE, (p * PAGE) as i64)
                        };
                        check(n as i64, "pwrite")?;
                        c.pwrites.fetch_add(1, Ordering::Relaxed);
                    } else {
                        for i in 0..WORDS {
                            // SAFETY: inside the writable mapping.
                            unsafe { std::ptr::write_volatile(map.word(p, i), tag(round, p, i)) };
                        }
                        c.mmap_writes.fetch_add(1, Ordering::Relaxed);
                    }
                    m.state[p].store(round + 1, Ordering::Relaxed);
                    m.done[p].store(true, Ordering::Release);
                }
                wl.fetch_sub(1, Ordering::Release);
                Ok(())
            }));
        }
        for r in 0..2 {
            let wl = &writers_left;
            hs.push(s.spawn(move || -> std::io::Result<()> {
                let mut pass = 0;
                loop {
                    let last = wl.load(Ordering::Acquire) == 0 || pass + 1 >= a.passes;
                    // A fresh mapping each pass, so every page faults again.
                    let map = Map::new(fd, len, false, r == 1)?;
                    for p in 0..a.pages {
                        read_page(&map, p, m, c);
                    }
                    pass += 1;
                    if last {
                        return Ok(());
                    }
                }
            }));
        }
        for h in hs {
            h.join().expect("workload thread panicked")?;
        }
        Ok(())
    })
}

fn read_page(map: &Map, p: usize, m: &Model, c: &Counts) {
    let done = m.done[p].load(Ordering::Acquire);
    let st = m.state[p].load(Ordering::Relaxed);
    c.page_reads.fetch_add(1, Ordering::Relaxed);
    let round = st.max(1) - 1;
    for w in 0..WORDS {
        // SAFETY: inside the mapping; volatile so each access really reads.
        let v = unsafe { std::ptr::read_volatile(map.word(p, w)) };
        if v == 0 {
            if done {
                c.stale.fetch_add(1, Ordering::Relaxed);
                eprintln!("lab-workload: page {p} word {w}: zero after the write was published");
                return;
            }
        } else if st == 0 || v != tag(round, p, w) {
            // st == 0 and nonzero: a writer may just have stored it; accept
            // only values that are some round's tag for this very word.
            if !(st == 0 && v & 0xfff_ffff_ffff == tag(0, p, w) & 0xfff_ffff_ffff) {
                c.garbage.fetch_add(1, Ordering::Relaxed);
                eprintln!("lab-workload: page {p} word {w}: {v:#x} is not what was written");
                return;
            }
        }
    }
}

/// Full check of the file through pread against the model.
fn verify(fd: i32, pages: usize, m: &Model, c: &Counts) -> std::io::Result<()> {
    let mut buf = vec![0u64; WORDS];
    for p in 0..pages {
        // SAFETY: buf is PAGE bytes.
        let n = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), PAGE, (p * PAGE) as i64) };
        check(n as i64, "pread")?;
        let st = m.state[p].load(Ordering::Relaxed);
        let ok = if st == 0 {
            buf.iter().all(|&v| v == 0)
        } else {
            let round = st - 1;
            buf.iter().enumerate().all(|(w, &v)| v == tag(round, p, w))
        };
        if !ok {
            c.final_bad.fetch_add(1, Ordering::Relaxed);
            eprintln!("lab-workload: page {p}: contents differ from what was written (state {st})");
        }
    }
    Ok(())
}

/// Invalidate part of the file: even rounds punch every other 16-page run
/// (a PMD's worth in the middle too), odd rounds truncate the second half
/// away and extend the file again (sparse).
fn churn(fd: i32, pages: usize, round: u32, m: &Model, c: &Counts) -> std::io::Result<()> {
    let zero = |from: usize, to: usize| {
        for p in from..to.min(pages) {
            m.state[p].store(0, Ordering::Relaxed);
            m.done[p].store(false, Ordering::Relaxed);
        }
    };
    if round.is_multiple_of(2) {
        let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        let mut p = (round as usize / 2 % 2) * 16;
        while p < pages {
            // SAFETY: plain syscall.
            let r = unsafe { libc::fallocate(fd, mode, (p * PAGE) as i64, (16 * PAGE) as i64) };
            check(r.into(), "fallocate(PUNCH_HOLE)")?;
            c.punches.fetch_add(1, Ordering::Relaxed);
            zero(p, p + 16);
            p += 32;
        }
        // One whole aligned 2 MiB range, so the next round sees a PMD hole.
        let per_pmd = PMD / PAGE;
        if pages >= 2 * per_pmd {
            // SAFETY: plain syscall.
            let r = unsafe { libc::fallocate(fd, mode, PMD as i64, PMD as i64) };
            check(r.into(), "fallocate(PUNCH_HOLE)")?;
            c.punches.fetch_add(1, Ordering::Relaxed);
            zero(per_pmd, 2 * per_pmd);
        }
    } else {
        let half = pages / 2;
        // SAFETY: plain syscalls.
        check(
            unsafe { libc::ftruncate(fd, (half * PAGE) as i64) }.into(),
            "ftruncate",
        )?;
        check(
            unsafe { libc::ftruncate(fd, (pages * PAGE) as i64) }.into(),
            "ftruncate",
        )?;
        c.truncates.fetch_add(1, Ordering::Relaxed);
        zero(half, pages);
    }
    Ok(())
}

/// The report, written by hand as one JSON object to keep the guest binary
/// free of dependencies beyond libc.
mod serde_like {
    pub struct Report {
        pub rounds: u32,
        pub pages: usize,
        pub page_reads: u64,
        pub mmap_writes: u64,
        pub pwrites: u64,
        pub punches: u64,
        pub truncates: u64,
        pub garbage: u64,
        pub stale: u64,
        pub final_bad: u64,
        pub mismatches: u64,
        pub seconds: f64,
    }

    impl std::fmt::Display for Report {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(
                f,
                "{{\"rounds\":{},\"pages\":{},\"page_reads\":{},\"mmap_writes\":{},\"pwrites\":{},\"punches\":{},\"truncates\":{},\"garbage\":{},\"stale\":{},\"final_bad\":{},\"mismatches\":{},\"seconds\":{:.3}}}",
                self.rounds,
                self.pages,
                self.page_reads,
                self.mmap_writes,
                self.pwrites,
                self.punches,
                self.truncates,
                self.garbage,
                self.stale,
                self.final_bad,
                self.mismatches,
                self.seconds
            )
        }
    }
}

fn main() -> ExitCode {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("lab-workload: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&a) {
        Ok(r) => {
            println!("{r}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lab-workload: error: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The data check must catch what the race would do: a published page
    /// that reads zero (stale hole), and a word nobody wrote.
    #[test]
    fn detects_stale_and_garbage_pages() {
        let dir = std::env::temp_dir().join(format!("lab-workload-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fd = open(&dir.join("f")).unwrap();
        let fdn = fd.as_raw_fd();
        let pages = 512;
        // SAFETY: plain syscall.
        assert_eq!(unsafe { libc::ftruncate(fdn, (pages * PAGE) as i64) }, 0);
        let m = Model {
            state: (0..pages).map(|_| AtomicU32::new(0)).collect(),
            done: (0..pages).map(|_| AtomicBool::new(false)).collect(),
        };
        let c = Counts::default();
        let page: Vec<u64> = (0..WORDS).map(|w| tag(0, 3, w)).collect();
        // SAFETY: page is PAGE bytes.
        assert_eq!(
            unsafe { libc::pwrite(fdn, page.as_ptr().cast(), PAGE, (3 * PAGE) as i64) },
            PAGE as isize
        );
        m.state[3].store(1, Ordering::Relaxed);
        m.done[3].store(true, Ordering::Release);

        let map = Map::new(fdn, pages * PAGE, false, false).unwrap();
        for p in 0..pages {
            read_page(&map, p, &m, &c);
        }
        verify(fdn, pages, &m, &c).unwrap();
        assert_eq!(c.mismatches(), 0);

        // The written page goes back to zero behind the model's back.
        let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        // SAFETY: plain syscall.
        assert_eq!(
            unsafe { libc::fallocate(fdn, mode, (3 * PAGE) as i64, PAGE as i64) },
            0
        );
        // A word no writer stores appears in a hole page.
        let junk = 0xdead_beef_u64;
        // SAFETY: 8 bytes.
        assert_eq!(
            unsafe { libc::pwrite(fdn, std::ptr::from_ref(&junk).cast(), 8, (5 * PAGE) as i64) },
            8
        );
        let map = Map::new(fdn, pages * PAGE, false, true).unwrap();
        for p in 0..pages {
            read_page(&map, p, &m, &c);
        }
        assert_eq!(c.stale.load(Ordering::Relaxed), 1);
        assert_eq!(c.garbage.load(Ordering::Relaxed), 1);
        verify(fdn, pages, &m, &c).unwrap();
        assert_eq!(c.final_bad.load(Ordering::Relaxed), 2);
        drop(map);
        drop(fd);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tags_are_unique_and_never_zero() {
        assert_ne!(tag(0, 0, 0), 0);
        assert_ne!(tag(0, 3, 1), tag(1, 3, 1));
        assert_ne!(tag(2, 3, 1), tag(2, 4, 1));
        assert_ne!(tag(2, 3, 1), tag(2, 3, 2));
    }
}
