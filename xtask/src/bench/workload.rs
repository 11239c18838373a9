//! The host workload: O_DIRECT 4 KiB reads of a hole (or writes into holes)
//! on a loop-mounted ext4 that this module makes and removes. Each read is
//! one `iomap:iomap_iter_dstmap` hit (the extent status cache answers the
//! ext4 lookup); each write also allocates (`ext4:ext4_ext_map_blocks_exit`).

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

use crate::util::run;

const BLOCK: usize = 4096;
/// The read file: 1 GiB of hole, read at random block offsets.
const READ_BYTES: u64 = 1 << 30;
/// The write file: 256 MiB written block by block in a scattered order,
/// then punched whole and written again.
const WRITE_BLOCKS: u64 = 65_536;
/// Odd, so `i * STRIDE mod WRITE_BLOCKS` visits every block once per cycle.
const STRIDE: u64 = 40_503;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Read,
    Write,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Read => "read",
            Kind::Write => "write",
        }
    }
}

/// A loop-mounted ext4 (`mkfs.ext4 -b 4096`), unmounted and deleted on drop.
pub struct LoopFs {
    pub mnt: PathBuf,
    image: PathBuf,
    /// "major:minor" of the mounted filesystem (for `--dev` filters).
    pub dev: String,
}

impl LoopFs {
    pub fn make(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir)?;
        let image = dir.join("ext4.img");
        let mnt = dir.join("mnt");
        // A mount left by a killed run.
        if is_mountpoint(&mnt) {
            let _ = Command::new("umount").arg(&mnt).status();
        }
        fs::create_dir_all(&mnt)?;
        let f = fs::File::create(&image)
            .with_context(|| format!("cannot create {}", image.display()))?;
        f.set_len(2 << 30)?;
        drop(f);
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-b", "4096"])
            .arg(&image))
        .context("mkfs.ext4 (e2fsprogs) makes the bench filesystem")?;
        run(Command::new("mount")
            .args(["-t", "ext4", "-o", "loop"])
            .arg(&image)
            .arg(&mnt))
        .context("mounting the bench image on a loop device (needs root)")?;
        let meta = fs::metadata(&mnt)?;
        let dev = format!("{}:{}", libc::major(meta.dev()), libc::minor(meta.dev()));
        Ok(Self { mnt, image, dev })
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
        let _ = fs::remove_file(&self.image);
    }
}

fn is_mountpoint(p: &Path) -> bool {
    let Ok(me) = fs::metadata(p) else {
        return false;
    };
    let Some(parent) = p.parent().and_then(|q| fs::metadata(q).ok()) else {
        return false;
    };
    me.dev() != parent.dev()
}

/// An open O_DIRECT file and an aligned buffer; `run` does the timed loop.
pub struct Workload {
    kind: Kind,
    fd: OwnedFd,
    buf: *mut libc::c_void,
    /// Position in the write cycle (carried across runs).
    next: u64,
    rng: u64,
}

/// One timed loop.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Timing {
    pub ops: u64,
    pub wall_ns: u64,
    /// CPU time of the looping thread (the tracepoint handlers run in it).
    pub cpu_ns: u64,
}

impl Workload {
    pub fn open(fsys: &LoopFs, kind: Kind) -> Result<Self> {
        let path = fsys.mnt.join(kind.label());
        {
            let f = fs::File::create(&path)?;
            f.set_len(if kind == Kind::Read {
                READ_BYTES
            } else {
                WRITE_BLOCKS * BLOCK as u64
            })?;
        }
        let c = CString::new(path.as_os_str().as_bytes())?;
        // SAFETY: valid C string; the fd is owned below.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_DIRECT) };
        if fd < 0 {
            bail!(
                "open({}, O_DIRECT): {}",
                path.display(),
                std::io::Error::last_os_error()
            );
        }
        // SAFETY: fresh fd from open.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut buf = std::ptr::null_mut();
        // SAFETY: valid out pointer; alignment is a power of two.
        if unsafe { libc::posix_memalign(&mut buf, BLOCK, BLOCK) } != 0 {
            bail!("posix_memalign failed");
        }
        // SAFETY: buf holds BLOCK bytes.
        unsafe { std::ptr::write_bytes(buf.cast::<u8>(), 0xa5, BLOCK) };
        let mut w = Self {
            kind,
            fd,
            buf,
            next: 0,
            rng: 0x9e37_79b9_7f4a_7c15,
        };
        if kind == Kind::Write {
            w.punch()?;
        }
        Ok(w)
    }

    /// Make the whole write file a hole again.
    fn punch(&mut self) -> Result<()> {
        // SAFETY: plain syscall on our fd.
        let r = unsafe {
            libc::fallocate(
                self.fd.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                0,
                i64::try_from(WRITE_BLOCKS * BLOCK as u64).unwrap_or(i64::MAX),
            )
        };
        if r != 0 {
            bail!("fallocate(PUNCH_HOLE): {}", std::io::Error::last_os_error());
        }
        self.next = 0;
        Ok(())
    }

    /// Before a traced run: writes start a fresh cycle so every run
    /// allocates the same way (the punch happens before the tool starts).
    pub fn reset(&mut self) -> Result<()> {
        if self.kind == Kind::Write {
            self.punch()?;
        }
        Ok(())
    }

    /// `ops` operations back to back; wall and thread CPU time.
    pub fn run(&mut self, ops: u64) -> Result<Timing> {
        let fd = self.fd.as_raw_fd();
        let c0 = thread_cpu();
        let t0 = Instant::now();
        for _ in 0..ops {
            let r = match self.kind {
                Kind::Read => {
                    // xorshift64: a random block of the hole, no allocation.
                    self.rng ^= self.rng << 13;
                    self.rng ^= self.rng >> 7;
                    self.rng ^= self.rng << 17;
                    let off = (self.rng % (READ_BYTES / BLOCK as u64)) * BLOCK as u64;
                    // SAFETY: buf is BLOCK bytes, aligned for O_DIRECT.
                    unsafe { libc::pread(fd, self.buf, BLOCK, off as i64) }
                }
                Kind::Write => {
                    if self.next == WRITE_BLOCKS {
                        self.punch()?;
                    }
                    let off = ((self.next * STRIDE) % WRITE_BLOCKS) * BLOCK as u64;
                    self.next += 1;
                    // SAFETY: as above.
                    unsafe { libc::pwrite(fd, self.buf, BLOCK, off as i64) }
                }
            };
            if r != BLOCK as isize {
                bail!(
                    "{} returned {r}: {}",
                    self.kind.label(),
                    std::io::Error::last_os_error()
                );
            }
        }
        let wall = t0.elapsed();
        let cpu = thread_cpu().saturating_sub(c0);
        Ok(Timing {
            ops,
            wall_ns: nanos(wall),
            cpu_ns: nanos(cpu),
        })
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        // SAFETY: allocated by posix_memalign in `open`.
        unsafe { libc::free(self.buf) };
    }
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
