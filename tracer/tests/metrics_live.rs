//! `daxtrace serve` live on the real kernel: attached programs show in the
//! attach status, real block lookups on a loop-mounted ext4 show in the
//! counters, SIGTERM detaches and exits 0. Needs root and the real eBPF
//! object: behind the `kernel-tests` feature, like `kernel.rs`.
#![cfg(feature = "kernel-tests")]

mod loopfs;
mod metrics_util;

use std::os::unix::fs::{FileExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::Path;
use std::time::{Duration, Instant};

use metrics_util::{get, sample, Serve};

use loopfs::{LoopFs, PAGE};

/// An O_DIRECT-able (page-aligned) slice of `pages` pages inside `buf`.
fn aligned(buf: &mut Vec<u8>, pages: usize) -> &mut [u8] {
    buf.resize((pages + 1) * PAGE, 0xab);
    let off = buf.as_ptr().align_offset(PAGE);
    &mut buf[off..off + pages * PAGE]
}

fn direct(path: &Path, write: bool, page: u64, pages: usize) {
    let f = std::fs::OpenOptions::new()
        .read(!write)
        .write(write)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .unwrap();
    let mut buf = Vec::new();
    let b = aligned(&mut buf, pages);
    if write {
        f.write_all_at(b, page * PAGE as u64).unwrap();
    } else {
        f.read_exact_at(b, page * PAGE as u64).unwrap();
    }
}

#[test]
fn live_serve_counts_real_lookups_and_stops_cleanly() {
    let fs = LoopFs::ext4("metrics-live", 64);
    let path = fs.mnt.join("f");
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(256 * PAGE as u64).unwrap();
    let ino = f.metadata().unwrap().ino().to_string();
    drop(f);

    let mut s = Serve::start(&["--metrics", "127.0.0.1:0", "--inode", &ino]);
    let addr = s.addr();
    assert!(
        s.wait_log("attached", Duration::from_secs(60)).is_some(),
        "serve did not attach: {}",
        s.stderr.lock().unwrap()
    );
    direct(&path, true, 64, 16); // allocates: map_blocks new=true, outside a fault
    direct(&path, false, 200, 1); // a hole

    let url = format!("http://{addr}/metrics");
    let t0 = Instant::now();
    let body = loop {
        let (_, _, body) = get(&url, None);
        let allocs = sample(&body, r#"daxtrace_allocations_total{origin="write"}"#).unwrap();
        let holes = sample(&body, r#"daxtrace_block_lookups_total{result="hole"}"#).unwrap();
        if allocs >= 1.0 && holes >= 1.0 {
            break body;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no allocation/hole lookup counted:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(sample(&body, r#"daxtrace_allocated_pages_total{origin="write"}"#).unwrap() >= 16.0);
    assert!(sample(&body, r#"daxtrace_events_total{kind="map_blocks"}"#).unwrap() >= 2.0);
    // The attach points used on this host (tp_btf for every tracepoint
    // here, by `auto`) are in the state set.
    assert!(
        body.lines()
            .any(|l| l.starts_with("daxtrace_attach_status{")
                && l.contains(r#"step="lookup""#)
                && l.contains(r#"status="used""#)
                && l.ends_with(" 1")),
        "no used attach point for the block lookup in:\n{body}"
    );
    let fill = sample(&body, "daxtrace_ringbuf_fill_ratio").unwrap();
    assert!((0.0..=1.0).contains(&fill));
    assert_eq!(sample(&body, "daxtrace_input_complete"), Some(0.0));

    let st = s.terminate();
    assert!(st.success(), "{st:?}: {}", s.stderr.lock().unwrap());
    assert_eq!(s.logged("live_complete").len(), 1);
}
