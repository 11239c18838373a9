//! The live source: records from the BPF ring buffer, decoded, plus `lost`
//! events made from the kernel's per-CPU drop counters.
//!
//! One thread polls the ring buffer's fd and drains it; the caller's closure
//! gets each event in place, so the hot path neither allocates nor locks.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use aya::maps::{MapData, PerCpuArray, RingBuf};
use tracer_common::{DROPPED_MAP, EVENTS_MAP};

use crate::attach::{self, AttachError, AttachPlan, Filter, Loaded};
use crate::decode::decode;
use crate::event::{Body, Event};

/// How often the drop counters are read (a syscall per CPU batch).
const DROP_POLL: Duration = Duration::from_millis(100);

/// How often, while `iomap:iomap_iter` waits for a DAX filesystem to be
/// mounted, `/proc/self/mountinfo` is read again to see one appear.
const MOUNT_POLL: Duration = Duration::from_secs(1);

/// Longest the reader sleeps without looking at the ring buffer. The
/// programs wake it only when the ring fills faster than this drains it
/// (tracer-ebpf's `WAKE_CHECK_NS`: a wakeup per record cost ~1.5 us per
/// event, one per ms per CPU still ~90 ns), so records are in general
/// announced by nobody: they are seen within this much, far inside the
/// reorder window.
pub const MAX_QUIET: Duration = Duration::from_millis(10);

/// Counters of the live source itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct LiveStats {
    pub records: u64,
    /// Records the kernel could not reserve (ring buffer full), all kinds.
    pub lost: u64,
    /// Records that did not decode (never expected; counted, not hidden).
    pub undecodable: u64,
}

pub struct LiveSource {
    // Field order matters for drop: maps before the object that owns programs.
    ring: RingBuf<MapData>,
    dropped: PerCpuArray<MapData, u64>,
    loaded: Loaded,
    last_drop_check: Instant,
    last_mount_check: Instant,
    stats: LiveStats,
    /// What changed while tracing, to tell the user ([`LiveSource::take_notes`]).
    notes: Vec<String>,
}

/// CLOCK_MONOTONIC now, in ns: the clock of `bpf_ktime_get_ns()`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

impl LiveSource {
    /// Load and attach (see `attach::load`) and open the maps.
    pub fn open(filter: &Filter) -> Result<Self, AttachError> {
        let mut loaded = attach::load::load(filter)?;
        let ring = loaded
            .ebpf
            .take_map(EVENTS_MAP)
            .ok_or(AttachError::MissingMap(EVENTS_MAP))?;
        let ring = RingBuf::try_from(ring).map_err(|source| AttachError::Map {
            map: EVENTS_MAP,
            source,
        })?;
        let dropped = loaded
            .ebpf
            .take_map(DROPPED_MAP)
            .ok_or(AttachError::MissingMap(DROPPED_MAP))?;
        let dropped = PerCpuArray::try_from(dropped).map_err(|source| AttachError::Map {
            map: DROPPED_MAP,
            source,
        })?;
        let now = Instant::now();
        Ok(Self {
            ring,
            dropped,
            loaded,
            last_drop_check: now,
            last_mount_check: now,
            stats: LiveStats::default(),
            notes: Vec::new(),
        })
    }

    pub fn plan(&self) -> &AttachPlan {
        &self.loaded.plan
    }

    pub fn ready_after(&self) -> Duration {
        self.loaded.ready_after
    }

    pub fn stats(&self) -> LiveStats {
        self.stats
    }

    /// Notes since the last call (an attach point attached while tracing:
    /// `iomap:iomap_iter` once a DAX filesystem is mounted). Each command
    /// shows them its own way: stderr, or the dashboard's notifications.
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    /// A reader of how full the kernel ring buffer is (for `serve`'s gauge).
    pub fn ring_fill(&self) -> std::io::Result<RingFill> {
        RingFill::new(
            self.ring.as_raw_fd(),
            u64::from(tracer_common::EVENTS_RING_BYTES),
        )
    }

    /// Wait up to `timeout` for records, then hand every available event to
    /// `f`. Returns how many events were handed over. EINTR (a signal) just
    /// returns early so the caller can look at its stop flag.
    pub fn poll(&mut self, timeout: Duration, f: &mut impl FnMut(Event)) -> std::io::Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let slice = left.min(MAX_QUIET);
            let mut pfd = libc::pollfd {
                fd: self.ring.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = i32::try_from(slice.as_millis()).unwrap_or(i32::MAX);
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
            let mut interrupted = false;
            if rc < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
                interrupted = true;
            }
            let mut n = self.drain(f);
            if self.last_drop_check.elapsed() >= DROP_POLL {
                n += self.check_drops(f);
            }
            if self.loaded.waits_for_dax_mount() && self.last_mount_check.elapsed() >= MOUNT_POLL {
                self.last_mount_check = Instant::now();
                if let Some(msg) = self.loaded.attach_on_dax_mount() {
                    self.notes.push(msg);
                }
            }
            if n > 0 || interrupted || left <= slice {
                return Ok(n);
            }
        }
    }

    fn drain(&mut self, f: &mut impl FnMut(Event)) -> usize {
        let mut n = 0;
        while let Some(item) = self.ring.next() {
            self.stats.records += 1;
            match decode(&item) {
                Ok(ev) => {
                    f(ev);
                    n += 1;
                }
                Err(e) => {
                    self.stats.undecodable += 1;
                    tracing::warn!("undecodable record: {e}");
                }
            }
        }
        n
    }

    /// Turn increases of the kernel's drop counters into one `lost` event.
    fn check_drops(&mut self, f: &mut impl FnMut(Event)) -> usize {
        self.last_drop_check = Instant::now();
        let mut total = 0u64;
        for slot in 0..self.dropped.len() {
            if let Ok(per_cpu) = self.dropped.get(&slot, 0) {
                total += per_cpu.iter().sum::<u64>();
            }
        }
        if total <= self.stats.lost {
            return 0;
        }
        let count = total - self.stats.lost;
        self.stats.lost = total;
        f(Event {
            ts: monotonic_ns(),
            cpu: 0,
            tid: 0,
            pid: 0,
            comm: crate::event::Comm::default(),
            dev: crate::event::Dev::default(),
            ino: 0,
            probe: 0,
            body: Body::Lost { count },
        });
        1
    }

    /// Stop: detach every program first so nothing new arrives, then drain
    /// what the ring buffer still holds and the final drop count, so nothing
    /// already captured is lost.
    pub fn finish(mut self, f: &mut impl FnMut(Event)) -> LiveStats {
        let names: Vec<String> = self
            .loaded
            .ebpf
            .programs()
            .map(|(n, _)| n.to_string())
            .collect();
        for name in names {
            if let Some(p) = self.loaded.ebpf.program_mut(&name) {
                if let Ok(tp) = <&mut aya::programs::TracePoint>::try_from(p) {
                    // Unloading detaches its links; errors mean it was never loaded.
                    let _ = tp.unload();
                }
            }
        }
        self.drain(f);
        self.check_drops(f);
        self.stats
    }
}

/// How full a BPF ring buffer is: its producer minus consumer position over
/// its size. The first two pages of the map (consumer position, then producer
/// position) are mapped read-only once, so a reading costs two loads.
pub struct RingFill {
    base: *mut libc::c_void,
    page: usize,
    size: u64,
}

// SAFETY: the mapping is read-only shared memory, read with atomic loads.
unsafe impl Send for RingFill {}

impl RingFill {
    fn new(fd: std::os::fd::RawFd, size: u64) -> std::io::Result<Self> {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        // SAFETY: a fresh read-only shared mapping of the map's first two
        // pages; the kernel allows read-only mappings of them (libbpf maps
        // the producer page the same way).
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                2 * page,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self { base, page, size })
    }

    /// Fill, 0 to 1.
    #[allow(clippy::cast_precision_loss, reason = "a ratio for a gauge")]
    pub fn ratio(&self) -> f64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        // SAFETY: both positions are aligned u64s inside the live mapping;
        // the kernel updates them concurrently, hence atomic loads.
        let (cons, prod) = unsafe {
            let c = &*self.base.cast::<AtomicU64>();
            let p = &*self.base.cast::<u8>().add(self.page).cast::<AtomicU64>();
            (c.load(Ordering::Acquire), p.load(Ordering::Acquire))
        };
        (prod.saturating_sub(cons) as f64 / self.size as f64).clamp(0.0, 1.0)
    }
}

impl Drop for RingFill {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped.
        unsafe { libc::munmap(self.base, 2 * self.page) };
    }
}
