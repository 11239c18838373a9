//! JSON Lines cost per event, both ways, on the synthetic workload:
//! writing (what `stream --json` and `export --format jsonl` do per event)
//! and parsing (what `analyze` of a .jsonl does).
//!
//!     cargo run --release -p tracer --example json_cost -- [events] [rounds]
use std::io::Write;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(1_000_000, |a| a.parse().unwrap());
    let rounds: usize = args.next().map_or(3, |a| a.parse().unwrap());
    let events = tracer::workload::Workload::default().generate(n);
    let mut text = Vec::with_capacity(n * 240);
    for round in 0..rounds {
        text.clear();
        let t = std::time::Instant::now();
        for e in &events {
            serde_json::to_writer(&mut text, e).unwrap();
            text.push(b'\n');
        }
        let w = t.elapsed();
        let s = std::str::from_utf8(&text).unwrap();
        let t = std::time::Instant::now();
        let mut sink = 0u64;
        for l in s.lines() {
            sink = sink.wrapping_add(tracer::source::jsonl::parse_line(l).unwrap().ts);
        }
        let p = t.elapsed();
        let per = |d: std::time::Duration| d.as_nanos() as f64 / n as f64;
        println!(
            "round {round}: write {:.0} ns/ev, parse {:.0} ns/ev, {:.0} bytes/ev ({sink})",
            per(w),
            per(p),
            text.len() as f64 / n as f64
        );
    }
    std::io::stdout().flush().unwrap();
}
