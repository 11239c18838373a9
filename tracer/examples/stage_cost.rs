//! Where steady-state time goes, stage by stage (same records, same run):
//! decode alone; decode + reorder window; decode + whole pipeline.
//!
//!     cargo run --release -p tracer --example stage_cost -- [events] [rounds]
use tracer::pipeline::{Pipeline, PipelineConfig};
use tracer::reorder::Reorder;
use tracer::workload::Workload;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(2_000_000, |a| a.parse().unwrap());
    let rounds: u64 = args.next().map_or(5, |a| a.parse().unwrap());
    let events = Workload::default().generate(n);
    let (buf, spans) = tracer::decode::encode_all(&events);
    let span = events.iter().map(|e| e.ts).max().unwrap_or(0) + 1;
    let we: usize = std::env::var("WE").map_or(1 << 20, |v| v.parse().unwrap());
    let mut p = Pipeline::new(PipelineConfig {
        window_events: we,
        ..PipelineConfig::default()
    });
    let mut r = Reorder::new(100_000_000, we);
    let mut sink = 0u64;
    // STAGE_ONLY=pipeline: only decode + pipeline (for cachegrind's per-line counts).
    let only = std::env::var("STAGE_ONLY").is_ok();
    for round in 0..rounds {
        let off = round * span;
        let t = std::time::Instant::now();
        for &(s, e) in spans.iter().filter(|_| !only) {
            let ev = tracer::decode::decode(&buf[s..e]).unwrap();
            sink = sink.wrapping_add(ev.ts + off + ev.ino);
        }
        let d = t.elapsed();
        let t = std::time::Instant::now();
        for &(s, e) in spans.iter().filter(|_| !only) {
            let ev = tracer::decode::decode(&buf[s..e]).unwrap();
            r.push(tracer::event::Event {
                ts: ev.ts + off,
                ..ev
            });
            while let Some(x) = r.pop_ready() {
                sink = sink.wrapping_add(x.ino);
            }
        }
        let w = t.elapsed();
        let t = std::time::Instant::now();
        for &(s, e) in &spans {
            let ev = tracer::decode::decode(&buf[s..e]).unwrap();
            p.push(
                tracer::event::Event {
                    ts: ev.ts + off,
                    ..ev
                },
                &mut (),
            );
        }
        let f = t.elapsed();
        let ns = |x: std::time::Duration| x.as_nanos() as f64 / spans.len() as f64;
        if round > 0 {
            println!("round {round}: decode {:.1} ns/ev, decode+window {:.1}, decode+pipeline {:.1} ({:.1} M/s)", ns(d), ns(w), ns(f), 1e3 / ns(f));
        }
    }
    eprintln!("{sink}");
}
