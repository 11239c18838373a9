//! Measure resident memory of the per-page store: N distinct pages, each
//! mapped by one complete fault (begin, insert, end), through the pipeline.
//!
//!     cargo run --release -p tracer --example page_rss -- 10000000 [max_pages]
//!
//! Prints VmRSS/VmHWM before and after, the bytes per page, and the budget
//! the cap implies (docs/performance.md), which the peak must stay under:
//!
//! * per page of the cap: one `timeline::Slot` (128 B) + at most 12 B of hash
//!   index (8-byte entries; the index stops doubling at 1.1875 entries per
//!   page of the cap: 9.5 B per page);
//! * plus the reorder window's own bound: `window_events + 1` entries of
//!   `Event` (96 B each).

use tracer::event::{Body, Comm, Dev, Event, FaultResult, Size};
use tracer::pipeline::{Pipeline, PipelineConfig};

fn status(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let pages: u64 = args
        .next()
        .map_or(10_000_000, |a| a.parse().expect("pages"));
    let cap: usize = args
        .next()
        .map_or(10_000_000, |a| a.parse().expect("max_pages"));
    let before = status("VmRSS:");
    let mut p = Pipeline::new(PipelineConfig {
        max_pages: cap,
        ..PipelineConfig::default()
    });
    let base = Event {
        ts: 0,
        cpu: 0,
        tid: 1,
        pid: 1,
        comm: Comm::new("rss"),
        dev: Dev::new(259, 0),
        ino: 0,
        probe: 0,
        body: Body::Lost { count: 0 },
    };
    let t0 = std::time::Instant::now();
    let mut ts = 0;
    for i in 0..pages {
        let (ino, pgoff) = (1 + i % 64, i / 64);
        for body in [
            Body::FaultBegin {
                fault: i + 1,
                pgoff,
                size: Size::Pte,
                write: true,
            },
            Body::InsertMapping {
                fault: i + 1,
                pgoff,
                size: Size::Pte,
                inferred: false,
            },
            Body::FaultEnd {
                fault: i + 1,
                result: FaultResult::Nopage,
            },
        ] {
            ts += 10;
            p.push(
                Event {
                    ts,
                    ino,
                    body,
                    ..base
                },
                &mut (),
            );
        }
    }
    p.finish(&mut ());
    let el = t0.elapsed();
    let (after, hwm) = (status("VmRSS:"), status("VmHWM:"));
    let st = p.stats();
    let cfg = *p.config();
    let kept = p.timelines().pages.len() as u64;
    println!(
        "pages pushed {pages}, kept {kept}, evicted {}, events {} in {:.2?} ({:.1} M events/s)",
        st.evicted,
        st.events,
        el,
        st.events as f64 / el.as_secs_f64() / 1e6
    );
    println!(
        "VmRSS before {:.1} MiB, after {:.1} MiB, peak {:.1} MiB: {:.1} bytes per kept page",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        hwm as f64 / 1048576.0,
        (after - before) as f64 / kept.max(1) as f64
    );
    let per_page = std::mem::size_of::<tracer::timeline::Slot>() + 12;
    let window = (cfg.window_events + 1) * std::mem::size_of::<Event>();
    let budget = cfg.max_pages * per_page + window;
    println!(
        "budget for a cap of {} pages: {} B/page ({:.1} MiB) + window {:.1} MiB = {:.1} MiB; peak is {}",
        cfg.max_pages,
        per_page,
        (cfg.max_pages * per_page) as f64 / 1048576.0,
        window as f64 / 1048576.0,
        budget as f64 / 1048576.0,
        if (hwm as usize) <= budget { "under it" } else { "OVER it" }
    );
}
