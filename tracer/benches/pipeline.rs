//! Throughput of the userspace path, measured with criterion.
//!
//! * `pipeline/events`: reorder window + per-page timelines + both rules on
//!   in-memory `Event`s (a synthetic stream from `tracer::workload`). The
//!   binary record decoder (`tracer::decode`) is not on main yet; when it is,
//!   a `decode+pipeline` case belongs next to this one.
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
        ("events_64k_pages", Workload { inodes: 1, pages_per_inode: 1 << 16, ..Workload::default() }),
        ("events_1m_pages", Workload { inodes: 16, pages_per_inode: 1 << 16, ..Workload::default() }),
    ] {
        let events = w.generate(n);
        g.throughput(Throughput::Elements(events.len() as u64));
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

fn jsonl(c: &mut Criterion) {
    let events = Workload::default().generate(100_000);
    let text: Vec<String> = events.iter().map(|e| serde_json::to_string(e).unwrap()).collect();
    let bytes: usize = text.iter().map(|l| l.len() + 1).sum();
    let mut g = c.benchmark_group("jsonl");
    g.sample_size(10);
    g.throughput(Throughput::Elements(text.len() as u64));
    g.bench_function("parse", |b| {
        b.iter(|| text.iter().map(|l| tracer::source::jsonl::parse_line(l).unwrap().ts).fold(0u64, u64::wrapping_add))
    });
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("parse_bytes", |b| {
        b.iter(|| text.iter().map(|l| tracer::source::jsonl::parse_line(l).unwrap().ts).fold(0u64, u64::wrapping_add))
    });
    g.finish();
}

criterion_group!(benches, pipeline, jsonl);
criterion_main!(benches);
