//! Quick throughput check of the pipeline on the synthetic workload (the
//! criterion bench `pipeline` is the reference figure).
//!
//!     cargo run --release -p tracer --example throughput -- [events] [window_ns]

use tracer::pipeline::{Pipeline, PipelineConfig};
use tracer::workload::Workload;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(2_000_000, |a| a.parse().unwrap());
    let window_ns: u64 = args.next().map_or(100_000_000, |a| a.parse().unwrap());
    let events = Workload::default().generate(n);
    for _ in 0..3 {
        let mut p = Pipeline::new(PipelineConfig { window_ns, ..PipelineConfig::default() });
        let t = std::time::Instant::now();
        for e in &events {
            p.push(*e, &mut ());
        }
        p.finish(&mut ());
        let el = t.elapsed();
        let s = p.stats();
        println!(
            "{} events in {:.2?}: {:.1} M events/s (pages {}, faults {}, findings {}, late {})",
            s.events,
            el,
            s.events as f64 / el.as_secs_f64() / 1e6,
            s.pages,
            s.faults,
            s.findings,
            s.late
        );
    }
}
