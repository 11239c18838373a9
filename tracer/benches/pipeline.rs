//! Throughput of the userspace path, measured with criterion.
//!
//! * `pipeline/events_*`: reorder window + per-page timelines + both rules on
//!   in-memory `Event`s (a synthetic stream from `tracer::workload`).
//! * `pipeline/decode+events_*`: the same stream as kernel ring-buffer
//!   records (`tracer::decode::encode`), decoded then pushed: the whole
//!   userspace path behind the ring buffer.
//! * `pipeline/steady+decode+events_*`: the steady state of live tracing at a high
//!   rate. One pipeline is fed the same records over and over with later
//!   timestamps, so the reorder window stays full (its count bound, 2^20)
//!   and the working set of pages stays known; the cases above instead
//!   start each iteration from an empty pipeline (fresh memory filled).
//! * `decode/records`: decoding alone.
//! * `jsonl/parse`: JSON Lines text -> `Event`, measured on its own.
//!
//! Run: `cargo bench -p tracer --bench pipeline`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tracer::pipeline::{Pipeline, PipelineConfig};
use tracer::workload::Workload;

fn pipeline(c: &mut Criterion) {
    let n = 1_000_000;
    let mut g = c.benchmark_group("pipeline");
    g.sample_size(20);
    for (name, w) in [
        (
            "events_64k_pages",
            Workload {
                inodes: 1,
                pages_per_inode: 1 << 16,
                ..Workload::default()
            },
        ),
        (
            "events_1m_pages",
            Workload {
                inodes: 16,
                pages_per_inode: 1 << 16,
                ..Workload::default()
            },
        ),
    ] {
        let events = w.generate(n);
        let (buf, spans) = tracer::decode::encode_all(&events);
        g.throughput(Throughput::Elements(events.len() as u64));
        g.bench_function(format!("decode+{name}"), |b| {
            b.iter_batched_ref(
                || Pipeline::new(PipelineConfig::default()),
                |p| {
                    for &(s, e) in &spans {
                        p.push(tracer::decode::decode(&buf[s..e]).unwrap(), &mut ());
                    }
                    p.finish(&mut ());
                    p.stats().findings
                },
                BatchSize::PerIteration,
            )
        });
        let span = events.iter().map(|e| e.ts).max().unwrap_or(0) + 1;
        let mut p = Pipeline::new(PipelineConfig::default());
        let mut round = 0u64;
        g.bench_function(format!("steady+decode+{name}"), |b| {
            b.iter_custom(|iters| {
                let t = std::time::Instant::now();
                for _ in 0..iters {
                    round += 1;
                    let off = round * span;
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
                }
                t.elapsed()
            })
        });
        drop(p);
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || Pipeline::new(PipelineConfig::default()),
                |p| {
                    for e in &events {
                        p.push(*e, &mut ());
                    }
                    p.finish(&mut ());
                    p.stats().findings
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

fn decode(c: &mut Criterion) {
    let events = Workload::default().generate(1_000_000);
    let (buf, spans) = tracer::decode::encode_all(&events);
    let mut g = c.benchmark_group("decode");
    g.sample_size(20);
    g.throughput(Throughput::Elements(spans.len() as u64));
    g.bench_function("records", |b| {
        b.iter(|| {
            spans
                .iter()
                .map(|&(s, e)| tracer::decode::decode(&buf[s..e]).unwrap().ts)
                .fold(0u64, u64::wrapping_add)
        })
    });
    g.finish();
}

fn jsonl(c: &mut Criterion) {
    let events = Workload::default().generate(100_000);
    let text: Vec<String> = events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    let bytes: usize = text.iter().map(|l| l.len() + 1).sum();
    let mut g = c.benchmark_group("jsonl");
    g.sample_size(10);
    g.throughput(Throughput::Elements(text.len() as u64));
    g.bench_function("parse", |b| {
        b.iter(|| {
            text.iter()
                .map(|l| tracer::source::jsonl::parse_line(l).unwrap().ts)
                .fold(0u64, u64::wrapping_add)
        })
    });
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("parse_bytes", |b| {
        b.iter(|| {
            text.iter()
                .map(|l| tracer::source::jsonl::parse_line(l).unwrap().ts)
                .fold(0u64, u64::wrapping_add)
        })
    });
    g.finish();
}

criterion_group!(benches, pipeline, decode, jsonl);
criterion_main!(benches);
