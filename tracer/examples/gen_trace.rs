//! Write N synthetic lab-shaped events straight into a trace file (for the
//! 10^8-event `analyze` measurement). `cargo run --release -p tracer --example gen_trace -- N OUT`

use tracer::sink::tracefile::{TraceWriter, WriterOptions};
use tracer::source::tracefile::{synth::Workload, Header};

fn main() {
    let mut a = std::env::args().skip(1);
    let n: u64 = a.next().expect("N").parse().expect("N is a number");
    let out = a.next().expect("OUT");
    let mut w = TraceWriter::create(
        out.as_ref(),
        &Header::for_this_host("synthetic", serde_json::Value::Null),
        WriterOptions::default(),
    )
    .unwrap();
    for e in Workload::new(1).take(n as usize) {
        w.write_event(&e);
    }
    let (f, _) = w.finish(0, 0, "end of input").unwrap();
    eprintln!("{} events, {} chunks", f.events, f.chunks);
}
