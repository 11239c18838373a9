//! What `top`'s dashboard sink adds to the stage that judges events (the
//! stage `top --replay --speed 0` and `analyze` share), in CPU time of the
//! thread per event, on the synthetic lab-shaped workload of `gen_trace`:
//!
//!     cargo run --release -p tracer --example dashboard_cost -- [events] [rounds] [order]
//!
//! The events go through the arrival side (reorder window) once; then, in
//! alternating rounds, the judging side with no sink (`analyze`'s cost) and
//! with the dashboard sink, and the dashboard sink alone over the same items.
//! Then the stage where an unpaced replay counts the panes (`top --replay
//! --speed 0`: the reorder window's thread, `tui::feed`): the window alone
//! (`analyze`'s order stage) against the window plus [`Counts`] over what it
//! releases, the events arriving in decoder-sized chunks as from a trace file.
//! With `order`, only that (quick; deterministic under `valgrind --tool=cachegrind`).

use tracer::event::Event;
use tracer::pipeline::{Pipeline, PipelineConfig, Released, Sink};
use tracer::source::tracefile::synth::Workload;
use tracer::tui::snapshot::{Counts, Dashboard};

/// CPU time of this thread (wall time on a shared machine overstates costs).
fn cpu_now() -> std::time::Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer for clock_gettime.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    std::time::Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map_or(2_000_000, |a| a.parse().expect("events is a number"));
    let rounds: usize = args
        .next()
        .map_or(5, |a| a.parse().expect("rounds is a number"));
    let order_only = args.next().is_some_and(|a| a == "order");
    let mut p = Pipeline::new(PipelineConfig::default());
    let mut arrivals = p.take_arrivals();
    let mut items: Vec<Released> = Vec::with_capacity(n);
    for ev in Workload::new(1).take(n) {
        arrivals.push(ev, &mut items);
    }
    arrivals.finish(&mut items);
    let judge = |sink: &mut dyn Sink| {
        let mut p = Pipeline::new(PipelineConfig::default());
        let c = cpu_now();
        for r in &items {
            p.apply_released(r, sink);
        }
        p.finish(sink);
        (
            (cpu_now() - c).as_secs_f64() * 1e9 / n as f64,
            p.stats().findings,
        )
    };
    let (mut bare, mut dash, mut alone) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..if order_only { 0 } else { rounds } {
        let (ns, findings) = judge(&mut ());
        bare.push(ns);
        let mut d = Dashboard::new().without_recent();
        dash.push(judge(&mut d).0);
        let mut d = Dashboard::new().without_recent();
        let c = cpu_now();
        for r in &items {
            match r {
                Released::Event(e) => d.on_event(e),
                Released::Late(e) => d.on_late(e),
            }
        }
        alone.push((cpu_now() - c).as_secs_f64() * 1e9 / n as f64);
        println!("round: judging {:.1} ns/event, with dashboard {:.1}, dashboard alone {:.1} ({findings} findings)", bare.last().unwrap(), dash.last().unwrap(), alone.last().unwrap());
    }
    if !order_only {
        let (b, d, a) = (median(&mut bare), median(&mut dash), median(&mut alone));
        println!("median of {rounds}: judging {b:.1} ns/event, with dashboard {d:.1} (+{:.0}%), dashboard alone {a:.1}", 100.0 * (d - b) / b);
    }

    // The order stage: chunks as the trace file's decoder hands them on.
    let chunks: Vec<Vec<Event>> = {
        let evs: Vec<Event> = Workload::new(1).take(n).collect();
        evs.chunks(CHUNK).map(<[Event]>::to_vec).collect()
    };
    let order = |counts: Option<&mut Counts>| {
        let mut arrivals = Pipeline::new(PipelineConfig::default()).take_arrivals();
        let mut out: Vec<Released> = Vec::with_capacity(CHUNK + 1024);
        let c = cpu_now();
        match counts {
            None => {
                for chunk in &chunks {
                    out.clear();
                    for &ev in chunk {
                        arrivals.push(ev, &mut out);
                    }
                    std::hint::black_box(&out);
                }
            }
            Some(counts) => {
                for chunk in &chunks {
                    out.clear();
                    for &ev in chunk {
                        // As `tui::feed::StageOut::push`: count what each arrival releases.
                        let from = out.len();
                        arrivals.push(ev, &mut out);
                        for r in &out[from..] {
                            match r {
                                Released::Event(e) | Released::Late(e) => counts.on_event(e),
                            }
                        }
                    }
                    std::hint::black_box(&out);
                }
            }
        }
        (cpu_now() - c).as_secs_f64() * 1e9 / n as f64
    };
    let (mut win, mut counted) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        win.push(order(None));
        let mut counts = Counts::new();
        counted.push(order(Some(&mut counts)));
        std::hint::black_box(counts.view(true));
        println!(
            "round: order stage {:.1} ns/event, with the panes' counts {:.1}",
            win.last().unwrap(),
            counted.last().unwrap()
        );
    }
    let (w, c) = (median(&mut win), median(&mut counted));
    println!("median of {rounds}: order stage {w:.1} ns/event, with the panes' counts {c:.1} (+{:.1} ns/event, +{:.0}%)", c - w, 100.0 * (c - w) / w);
}

/// Events per decoded chunk of a trace file (about what `tracefile` hands on).
const CHUNK: usize = 65_536;
