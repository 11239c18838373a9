//! Trace file writer and reader throughput (events/s) on the synthetic lab-shaped workload.
//! `cargo bench -p tracer --bench tracefile`

use std::io::Cursor;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tracer::event::Event;
use tracer::sink::tracefile::{TraceWriter, WriterOptions};
use tracer::source::tracefile::{synth::Workload, Header, TraceReader};

const N: usize = 1 << 20;

fn events() -> Vec<Event> {
    Workload::new(42).take(N).collect()
}

fn write(evs: &[Event], level: i32) -> Vec<u8> {
    let mut w = TraceWriter::new(
        Vec::with_capacity(N * 4),
        &Header::default(),
        WriterOptions {
            zstd_level: level,
            ..Default::default()
        },
    )
    .unwrap();
    for e in evs {
        w.write_event(e);
    }
    w.finish(0, 0, "bench").unwrap().1
}

fn bench(c: &mut Criterion) {
    let evs = events();
    let mut g = c.benchmark_group("tracefile");
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(10);
    for level in [1, 3] {
        g.bench_function(format!("write_zstd{level}"), |b| {
            b.iter(|| write(&evs, level))
        });
    }
    let bytes = write(&evs, 3);
    g.bench_function("read", |b| {
        b.iter_batched(
            || Cursor::new(bytes.clone()),
            |cur| TraceReader::new(cur).unwrap().count(),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
