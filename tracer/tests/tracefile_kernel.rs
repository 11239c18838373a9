//! `daxtrace record` on the real kernel: a loop-mounted ext4, O_DIRECT reads
//! of holes (one `iomap:iomap_iter_dstmap` each), the real ring buffer.
//! Root only: behind the `kernel-tests` feature, like tests/kernel.rs.
#![cfg(feature = "kernel-tests")]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tracer::event::{Body, Event, MapResult};
use tracer::source::tracefile::TraceReader;

mod loopfs;
use loopfs::{LoopFs, PAGE};

/// Kernel tests share tracefs and the BPF program list: one at a time.
static KERNEL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// O_DIRECT reads of hole pages for `dur`; returns how many.
fn read_holes(path: &Path, pages: u64, dur: Duration) -> u64 {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .unwrap();
    let layout = std::alloc::Layout::from_size_align(PAGE, PAGE).unwrap();
    // SAFETY: non-zero, page-aligned layout; freed below.
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
    // SAFETY: PAGE bytes just allocated.
    let buf = unsafe { std::slice::from_raw_parts_mut(ptr, PAGE) };
    let t = Instant::now();
    let mut n = 0;
    while t.elapsed() < dur {
        f.read_exact_at(buf, (n % pages) * PAGE as u64).unwrap();
        n += 1;
    }
    // SAFETY: allocated above with this layout.
    unsafe { std::alloc::dealloc(ptr, layout) };
    n
}

/// Start `daxtrace record` and wait until its programs are attached.
fn start_record(out: &Path, dev: &str) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_daxtrace"))
        .args(["record", "--dev", dev, "-o"])
        .arg(out)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    loop {
        let line = lines
            .next()
            .expect("record exited before attaching")
            .unwrap();
        if line.contains("attached") {
            break;
        }
    }
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    child
}

fn hole_lookups(evs: &[Event], ino: u64) -> usize {
    evs.iter()
        .filter(|e| {
            e.ino == ino
                && matches!(
                    e.body,
                    Body::MapBlocks {
                        result: MapResult::Hole,
                        ..
                    }
                )
        })
        .count()
}

#[test]
fn record_live_then_sigint_writes_a_complete_file() {
    let _g = KERNEL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let fs = LoopFs::ext4("tf-int", 64);
    let (file, ino) = fs.sparse("holes", 256);
    let out = fs.dir.join("live.dxt");
    let child = start_record(&out, &fs.dev().0);
    let reads = read_holes(&file, 256, Duration::from_millis(1500));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait_with_output().unwrap().status;
    assert!(status.success(), "{status}");
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let mut r = TraceReader::open(&out).unwrap();
    let h = r.header().unwrap().clone();
    assert_eq!(
        h.kernel,
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap()
            .trim()
    );
    assert_eq!(h.clock, "mono");
    assert!(
        !h.attach_plan.is_null(),
        "the attach plan used is in the header"
    );
    let evs: Vec<Event> = r.by_ref().collect();
    let f = r
        .report()
        .footer
        .clone()
        .expect("clean stop writes the footer");
    assert_eq!(f.stop_reason, "signal");
    let seen = hole_lookups(&evs, ino);
    let lost = f.lost;
    // Every read is one hole lookup, unless the kernel says it lost some.
    assert!(
        seen as u64 + lost >= reads,
        "{seen} hole lookups + {lost} lost < {reads} reads"
    );
}

#[test]
fn record_killed_with_sigkill_is_read_up_to_its_last_chunk() {
    let _g = KERNEL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let fs = LoopFs::ext4("tf-kill", 64);
    let (file, ino) = fs.sparse("holes", 256);
    let out = fs.dir.join("killed.dxt");
    let mut child = start_record(&out, &fs.dev().0);
    // Chunks are cut every second: after 2.5 s of reads, some are on disk.
    read_holes(&file, 256, Duration::from_millis(2500));
    child.kill().unwrap();
    child.wait().unwrap();
    let mut r = TraceReader::open(&out).unwrap();
    let evs: Vec<Event> = r.by_ref().collect();
    assert!(r.report().footer.is_none());
    assert!(
        hole_lookups(&evs, ino) > 0,
        "no complete chunk survived the kill"
    );
    // analyze reads it too (no finding on a fixed kernel) and says what is missing.
    let a = Command::new(env!("CARGO_BIN_EXE_daxtrace"))
        .arg("analyze")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(
        a.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&a.stderr)
    );
    assert!(String::from_utf8_lossy(&a.stderr).contains("no footer"));
}
