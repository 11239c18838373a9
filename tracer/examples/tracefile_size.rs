//! Bytes per event: trace file (zstd levels) vs JSON Lines, on the synthetic
//! lab-shaped workload or on a given input (JSON Lines or trace file).
//! `cargo run --release -p tracer --example tracefile_size -- [N | FILE]`

use std::io::{BufRead, BufReader, Write};

use tracer::event::Event;
use tracer::sink::tracefile::{TraceWriter, WriterOptions};
use tracer::source::tracefile::{synth::Workload, Header, TraceReader};

fn main() {
    let arg = std::env::args().nth(1).unwrap_or_else(|| "1000000".into());
    let evs: Vec<Event> = if let Ok(n) = arg.parse::<usize>() {
        Workload::new(42).take(n).collect()
    } else if std::fs::read(&arg).unwrap().starts_with(b"DAXTRACE") {
        TraceReader::open(arg.as_ref()).unwrap().collect()
    } else {
        BufReader::new(std::fs::File::open(&arg).unwrap())
            .lines()
            .map(|l| l.unwrap())
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(&l).unwrap())
            .collect()
    };
    let n = evs.len() as f64;
    let mut jsonl = Vec::new();
    for e in &evs {
        serde_json::to_writer(&mut jsonl, e).unwrap();
        jsonl.write_all(b"\n").unwrap();
    }
    println!("events: {}", evs.len());
    println!("jsonl: {:.2} bytes/event", jsonl.len() as f64 / n);
    let zj = zstd::encode_all(&jsonl[..], 3).unwrap();
    println!(
        "jsonl.zst (level 3): {:.2} bytes/event",
        zj.len() as f64 / n
    );
    for level in [1, 3, 9, 19] {
        let t = std::time::Instant::now();
        let mut w = TraceWriter::new(
            Vec::new(),
            &Header::default(),
            WriterOptions {
                zstd_level: level,
                ..Default::default()
            },
        )
        .unwrap();
        for e in &evs {
            w.write_event(e);
        }
        let out = w.finish(0, 0, "size").unwrap().1;
        let secs = t.elapsed().as_secs_f64();
        println!(
            "daxtrace zstd {level}: {:.3} bytes/event ({} bytes), writer {:.1} M events/s",
            out.len() as f64 / n,
            out.len(),
            n / secs / 1e6
        );
    }
}
