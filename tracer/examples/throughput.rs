//! Quick throughput check of the pipeline on the synthetic workload (the
//! criterion bench `pipeline` is the reference figure).
//!
//!     cargo run --release -p tracer --example throughput -- [events] [window_ns] [pages_per_inode] [inodes] [rounds]
//!
//! `rounds` (default 4) is the number of steady rounds; with
//! `THROUGHPUT_STEADY_ONLY=1` only the steady decode+pipeline case runs
//! (for profiling it alone with `perf record`).
//!
//! Three runs each of: the pipeline on in-memory `Event`s, then the same
//! events as kernel ring-buffer records decoded (`tracer::decode`) and pushed
//! (the criterion case `pipeline/decode+...`). Each of those starts from an
//! empty pipeline, so the reorder window and the page store fill for the
//! first time (fresh memory, page faults) while events pass.
//!
//! Then the steady state of live tracing at a high rate: one pipeline fed
//! the same records over and over with later timestamps, so the window
//! stays full (its count bound) and the working set of pages stays known;
//! rounds after the first are timed (criterion: `pipeline/steady_*`).

use tracer::pipeline::{Pipeline, PipelineConfig};
use tracer::workload::Workload;

/// CPU time of this thread: on a shared, loaded machine wall time overstates
/// the cost, so both are printed.
fn cpu_now() -> std::time::Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer for clock_gettime.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    std::time::Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(2_000_000, |a| a.parse().unwrap());
    let window_ns: u64 = args.next().map_or(100_000_000, |a| a.parse().unwrap());
    let pages: u64 = args.next().map_or(1 << 16, |a| a.parse().unwrap());
    let inodes: u64 = args.next().map_or(16, |a| a.parse().unwrap());
    let rounds: u64 = args.next().map_or(4, |a| a.parse().unwrap());
    let steady_only = std::env::var_os("THROUGHPUT_STEADY_ONLY").is_some();
    let events = Workload {
        inodes,
        pages_per_inode: pages,
        ..Workload::default()
    }
    .generate(n);
    let (buf, spans) = tracer::decode::encode_all(&events);
    for decode in [false, true] {
        for _ in 0..if steady_only { 0 } else { 3 } {
            let mut p = Pipeline::new(PipelineConfig {
                window_ns,
                ..PipelineConfig::default()
            });
            let t = std::time::Instant::now();
            let c = cpu_now();
            if decode {
                for &(s, e) in &spans {
                    p.push(
                        tracer::decode::decode(&buf[s..e]).expect("records decode"),
                        &mut (),
                    );
                }
            } else {
                for e in &events {
                    p.push(*e, &mut ());
                }
            }
            p.finish(&mut ());
            let el = t.elapsed();
            let cpu = cpu_now() - c;
            let s = p.stats();
            println!(
                "{}{} events in {:.2?} wall, {:.2?} cpu: {:.1} M events/s wall, {:.1} M events/s cpu (pages {}, faults {}, findings {}, late {})",
                if decode { "decode+pipeline: " } else { "pipeline: " },
                s.events,
                el,
                cpu,
                s.events as f64 / el.as_secs_f64() / 1e6,
                s.events as f64 / cpu.as_secs_f64() / 1e6,
                s.pages,
                s.faults,
                s.findings,
                s.late
            );
        }
    }
    let span = events.iter().map(|e| e.ts).max().unwrap_or(0) + 1;
    for decode in [false, true] {
        if steady_only && !decode {
            continue;
        }
        let mut p = Pipeline::new(PipelineConfig {
            window_ns,
            ..PipelineConfig::default()
        });
        for round in 0..rounds {
            let off = round * span;
            let before = p.stats().events;
            let t = std::time::Instant::now();
            let c = cpu_now();
            if decode {
                for &(s, e) in &spans {
                    let ev = tracer::decode::decode(&buf[s..e]).expect("records decode");
                    p.push(
                        tracer::event::Event {
                            ts: ev.ts + off,
                            ..ev
                        },
                        &mut (),
                    );
                }
            } else {
                for e in &events {
                    p.push(
                        tracer::event::Event {
                            ts: e.ts + off,
                            ..*e
                        },
                        &mut (),
                    );
                }
            }
            let (el, cpu) = (t.elapsed(), cpu_now() - c);
            let n = p.stats().events - before;
            if round > 0 {
                println!(
                    "steady {}round {round}: {n} events in {:.2?} wall, {:.2?} cpu: {:.1} M events/s wall, {:.1} M events/s cpu (pages kept {}, held in window {})",
                    if decode { "decode+pipeline " } else { "pipeline " },
                    el,
                    cpu,
                    n as f64 / el.as_secs_f64() / 1e6,
                    n as f64 / cpu.as_secs_f64() / 1e6,
                    p.timelines().pages.len(),
                    p.pending()
                );
            }
            // How much of the pipeline's memory is in huge pages (the
            // window, slots and index are reached at random per event).
            if round + 1 == rounds {
                if let Ok(r) = std::fs::read_to_string("/proc/self/smaps_rollup") {
                    let kb = |k: &str| {
                        r.lines()
                            .find(|l| l.starts_with(k))
                            .and_then(|l| l.split_whitespace().nth(1))
                            .unwrap_or("?")
                            .to_string()
                    };
                    println!(
                        "resident {} kB, of which in huge pages {} kB",
                        kb("Rss:"),
                        kb("AnonHugePages:")
                    );
                }
            }
        }
    }
}
