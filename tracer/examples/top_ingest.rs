//! `top --replay FILE --speed 0` against `analyze FILE` in one process, for
//! comparing builds quickly: alternating rounds of `analyze`'s reading path
//! (`tracefile::open_ordered` + `Pipeline::apply_batch`) and `top`'s unpaced
//! replay (`tui::feed::spawn`, with the UI loop drawing every snapshot into
//! a 200x50 `TestBackend`, as the terminal loop draws). Wall time and the
//! process's CPU time (all threads, `getrusage`) of each:
//!
//!     cargo run --release -p tracer --example top_ingest -- FILE [rounds]
//!
//! The figures for the closing note come from the real binary in a terminal
//! (docs/performance.md); this leaves out the terminal's own output only.

use std::path::Path;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use ratatui::backend::TestBackend;
use ratatui::Terminal;

use tracer::pipeline::{Pipeline, PipelineConfig};
use tracer::source::tracefile;
use tracer::tui::app::App;
use tracer::tui::event::{self, AppEvent};
use tracer::tui::feed::{self, Narrow, Pace, Replay, ReplayInput};
use tracer::tui::snapshot::{FeedState, Snapshot, SourceInfo};

/// CPU time of the whole process (exited threads included).
fn cpu_now() -> Duration {
    // SAFETY: a zeroed rusage is a valid out-parameter.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `analyze`'s path: (events, wall seconds, CPU seconds).
fn analyze(path: &Path) -> (u64, f64, f64) {
    let (c, t) = (cpu_now(), Instant::now());
    let mut pipe = Pipeline::new(PipelineConfig::default());
    let mut file =
        match tracefile::open_ordered(path, path.display().to_string(), pipe.take_arrivals()) {
            Ok(f) => f,
            Err((e, _)) => panic!("{e}"),
        };
    while let Some(batch) = file.next_slice() {
        pipe.apply_batch(batch, &mut ());
    }
    pipe.put_arrivals(file.into_state().expect("the window comes back"));
    pipe.finish(&mut ());
    (
        pipe.stats().events,
        t.elapsed().as_secs_f64(),
        (cpu_now() - c).as_secs_f64(),
    )
}

/// `top`'s unpaced replay: (events, "done in" seconds, CPU seconds to the final state, frames drawn).
fn top(path: &Path) -> (u64, f64, f64, u64) {
    let c = cpu_now();
    let source = SourceInfo {
        label: "replay".into(),
        ..SourceInfo::default()
    };
    let (tx, rx) = event::channel();
    let (req_tx, req_rx) = mpsc::channel();
    let input = ReplayInput::Batches(
        tracefile::open_batches_quiet(path, path.display().to_string()).expect("a trace file"),
    );
    let replay = Replay {
        input,
        pace: Pace::Unpaced,
        skip_bad: false,
        narrow: Narrow::default(),
    };
    let feed = feed::spawn(
        replay,
        PipelineConfig::default(),
        source.clone(),
        tx,
        req_rx,
    );
    let mut app = App::new(Arc::new(Snapshot::empty(source)));
    let mut term = Terminal::new(TestBackend::new(200, 50)).expect("test backend");
    let mut frames = 0;
    // The terminal loop (`tui::run_loop`): take what is queued, draw once.
    let (events, elapsed) = 'ui: loop {
        let mut batch = vec![rx.recv().expect("the feed ended early")];
        batch.extend(rx.try_iter());
        for ev in batch {
            if let AppEvent::Snapshot(s) = &ev {
                if let FeedState::Done { elapsed } = s.state {
                    break 'ui (s.stats.events, elapsed.as_secs_f64());
                }
            }
            tracer::tui::apply(&mut app, ev);
        }
        term.draw(|f| tracer::tui::ui::render(f, &app))
            .expect("draw");
        frames += 1;
    };
    let cpu = (cpu_now() - c).as_secs_f64();
    drop((req_tx, rx));
    feed.join().expect("the feed thread");
    (events, elapsed, cpu, frames)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: top_ingest FILE [rounds]");
    let rounds: usize = args
        .next()
        .map_or(5, |a| a.parse().expect("rounds is a number"));
    let path = Path::new(&path);
    let (mut ratio, mut cpu_ratio) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        // Order alternated: neither side always runs first after the other.
        let (a, t) = if r % 2 == 0 {
            let a = analyze(path);
            (a, top(path))
        } else {
            let t = top(path);
            (analyze(path), t)
        };
        assert_eq!(a.0, t.0, "both read every event");
        ratio.push(a.1 / t.1);
        cpu_ratio.push(t.2 / a.2);
        println!(
            "round {r}: analyze {:.2} s ({:.2} M/s, CPU {:.2} s)  top {:.2} s ({:.2} M/s, CPU {:.2} s, {} frames)  rate ratio {:.0}%  CPU ratio {:.2}",
            a.1,
            a.0 as f64 / a.1 / 1e6,
            a.2,
            t.1,
            t.0 as f64 / t.1 / 1e6,
            t.2,
            t.3,
            100.0 * a.1 / t.1,
            t.2 / a.2
        );
    }
    let (lo, hi) = (
        ratio.iter().copied().fold(f64::MAX, f64::min),
        ratio.iter().copied().fold(0.0, f64::max),
    );
    let (clo, chi) = (
        cpu_ratio.iter().copied().fold(f64::MAX, f64::min),
        cpu_ratio.iter().copied().fold(0.0, f64::max),
    );
    println!(
        "median of {rounds}: rate ratio {:.0}% ({:.0}%-{:.0}%), CPU top/analyze {:.2} ({clo:.2}-{chi:.2})",
        100.0 * median(&mut ratio),
        100.0 * lo,
        100.0 * hi,
        median(&mut cpu_ratio)
    );
}
