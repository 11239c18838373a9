//! `daxtrace serve`: the pipeline as a daemon. Prometheus text format at
//! `/metrics` (default 127.0.0.1:9464, loopback unless told otherwise),
//! findings as JSON lines on stdout through `tracing`, clean stop on SIGTERM
//! or SIGINT.
//!
//! Threads: the HTTP server answers scrapes on its own thread by encoding
//! the shared registry; the pipeline runs on the main thread and only bumps
//! atomics, so a scrape never stalls the pipeline and vice versa.
//!
//! `--replay FILE` feeds a recorded trace (JSON Lines or trace file) through
//! the same pipeline, then keeps serving the final values until stopped, so
//! a Prometheus can scrape a replay as it would a live host.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::{Context as _, Result};
use prometheus_client::registry::Registry;
use tracer::attach::{AttachPlan, Status};
use tracer::detect::{Finding, Role};
use tracer::event::{Dev, Event};
use tracer::pipeline::{Pipeline, PipelineConfig, Sink};
use tracer::sink::metrics::{self, AttachStatus, Format, Metrics};
use tracer::sink::tracefile::{TraceWriter, WriterOptions};
use tracer::source::ringbuf::{monotonic_ns, LiveSource};
use tracer::source::tracefile::Header;
use tracing::Dispatch;

/// Where `/metrics` listens unless `--metrics` says otherwise: loopback only,
/// so a host's trace data is not on the network until the operator asks.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9464";

/// Events between two copies of the pipeline's counters into the metrics.
const SYNC_EVERY: u64 = 4096;
/// How long the main loop sleeps between looks at the stop flag when idle.
const IDLE_TICK: Duration = Duration::from_millis(100);
/// How often a live `--record` writes its buffered events out.
const RECORD_FLUSH: Duration = Duration::from_secs(5);

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only events of this block device (MAJ:MIN).
    #[arg(long, value_name = "MAJ:MIN")]
    pub dev: Option<Dev>,
    /// Only events of this inode.
    #[arg(long, value_name = "N")]
    pub inode: Option<u64>,
    /// Address for the Prometheus endpoint (/metrics). Loopback by default;
    /// give 0.0.0.0:9464 (or a host address) to let other hosts scrape.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_METRICS_ADDR)]
    pub metrics: SocketAddr,
    /// Replay a recorded trace (JSON Lines or trace file) instead of tracing
    /// live; keeps serving the final values until stopped.
    #[arg(long, value_name = "FILE")]
    pub replay: Option<PathBuf>,
    /// Also record every event into this trace file (flushed on stop).
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Skip (and count) bad input lines instead of stopping at the first.
    #[arg(long)]
    pub skip_bad: bool,
    #[command(flatten)]
    pub attach: super::live::BackendArgs,
}

pub fn run(args: Args) -> Result<super::Outcome> {
    let log = json_log();
    let _log_guard = tracing::dispatcher::set_default(&log);

    let stop = super::live::stop_flag()?;

    let (metrics, registry) = Metrics::new();
    let server = Arc::new(listen(args.metrics)?);
    let addr = server
        .server_addr()
        .to_ip()
        .map_or_else(|| args.metrics.to_string(), |a| a.to_string());
    tracing::info!(kind = "listening", addr = %addr, "serving /metrics on http://{addr}/metrics");
    let http = {
        let server = Arc::clone(&server);
        let log = log.clone();
        thread::Builder::new()
            .name("metrics-http".into())
            .spawn(move || {
                tracing::dispatcher::with_default(&log, || serve_http(&server, &registry))
            })
            .context("starting the HTTP thread")?
    };

    let mut out = Outputs {
        metrics,
        findings: 0,
        record: None,
    };
    let result = match &args.replay {
        Some(path) => replay(path, &args, &mut out, &stop),
        None => live(&args, &mut out, &stop),
    };
    server.unblock();
    let _ = http.join();
    result?;
    tracing::info!(kind = "stopped", findings = out.findings, "stopped");
    Ok(super::Outcome::Clean)
}

/// JSON lines on stdout for this daemon's own log (findings included), so a
/// log pipeline takes them as they are. `DAXTRACE_LOG` filters (default info).
fn json_log() -> Dispatch {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("DAXTRACE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let sub = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_target(false)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .finish();
    Dispatch::new(sub)
}

/// Bind the /metrics listener. TCP_NODELAY is set on the listening socket
/// (Linux hands it to every accepted one): tiny_http writes a response in
/// 1 KiB pieces, and with Nagle the last piece waits for the scraper's
/// delayed ACK, about 40 ms per scrape on a kept-alive connection.
fn listen(addr: SocketAddr) -> Result<tiny_http::Server> {
    use std::os::fd::AsRawFd as _;
    let cannot = |e: &dyn std::fmt::Display| {
        anyhow::anyhow!(
            "cannot listen on {addr} for /metrics: {e}; pick another address with --metrics ADDR"
        )
    };
    let listener = std::net::TcpListener::bind(addr).map_err(|e| cannot(&e))?;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket fd and a pointer to a c_int of the given size.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            std::ptr::from_ref(&one).cast(),
            std::mem::size_of_val(&one) as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::warn!(
            "TCP_NODELAY refused ({}); scrapes may be slower",
            std::io::Error::last_os_error()
        );
    }
    tiny_http::Server::from_listener(listener, None).map_err(|e| cannot(&e))
}

fn serve_http(server: &tiny_http::Server, registry: &Registry) {
    // One request at a time: a scrape costs well under a millisecond.
    for req in server.incoming_requests() {
        let path = req.url().split('?').next().unwrap_or("");
        let resp = match (req.method(), path) {
            (tiny_http::Method::Get | tiny_http::Method::Head, "/metrics") => {
                let accept = req
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("Accept"))
                    .map(|h| h.value.as_str());
                let format = Format::from_accept(accept);
                let body = metrics::encode(registry, format);
                tiny_http::Response::from_string(body)
                    .with_header(header("Content-Type", format.content_type()))
            }
            (tiny_http::Method::Get, "/") => tiny_http::Response::from_string(
                "daxtrace metrics exporter: scrape /metrics (Prometheus text format)\n",
            )
            .with_header(header("Content-Type", "text/plain; charset=utf-8")),
            _ => {
                tiny_http::Response::from_string("not found: try /metrics\n").with_status_code(404)
            }
        };
        if let Err(e) = req.respond(resp) {
            tracing::debug!("scrape answer not delivered: {e}");
        }
    }
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes())
        .expect("static header is valid")
}

/// The pipeline's sinks in `serve`: metrics, the findings log, and the
/// trace file with `--record`.
struct Outputs {
    metrics: Metrics,
    findings: u64,
    record: Option<TraceWriter<File>>,
}

impl Outputs {
    /// Start `--record FILE`, its header naming the source and attach plan.
    fn start_record(&mut self, args: &Args, source: &str, plan: serde_json::Value) -> Result<()> {
        if let Some(path) = &args.record {
            let header = Header::for_this_host(source, plan);
            let w = TraceWriter::create(path, &header, WriterOptions::default())
                .with_context(|| format!("cannot create {}", path.display()))?;
            self.record = Some(w);
        }
        Ok(())
    }

    /// Write what the trace file still buffers and its footer.
    fn finish_record(&mut self, stats: &tracer::pipeline::Stats, reason: &str) -> Result<()> {
        if let Some(w) = self.record.take() {
            let (footer, _) = w
                .finish(stats.late, 0, reason)
                .context("writing the trace file")?;
            tracing::info!(
                kind = "recorded",
                events = footer.events,
                chunks = footer.chunks,
                "trace file complete"
            );
        }
        Ok(())
    }
}

impl Sink for Outputs {
    fn on_event(&mut self, ev: &Event) {
        self.metrics.on_event(ev);
        if let Some(w) = &mut self.record {
            w.write_event(ev);
        }
    }

    fn on_late(&mut self, ev: &Event) {
        self.metrics.on_late(ev);
        if let Some(w) = &mut self.record {
            w.write_event(ev);
        }
    }

    fn on_finding(&mut self, f: &Finding) {
        self.metrics.on_finding(f);
        self.findings += 1;
        log_finding(f);
    }
}

/// One structured line per finding: the DESIGN.md §3 names, flat, and each
/// role's timestamp, tid and fault id (absent roles are left out).
fn log_finding(f: &Finding) {
    let step = |role: Role| f.steps.iter().find(|s| s.role == role);
    let (lookup, alloc, insert, hole, inv) = (
        step(Role::Lookup),
        step(Role::Alloc),
        step(Role::Insert),
        step(Role::Hole),
        step(Role::Invalidate),
    );
    tracing::warn!(
        kind = "finding",
        rule = f.rule.name(),
        severity = f.severity.name(),
        dev = %f.page.dev,
        ino = f.page.ino,
        pgoff = f.page.pgoff,
        ts = f.ts,
        lookup_ts = lookup.map(|s| s.ts),
        lookup_tid = lookup.map(|s| s.tid),
        lookup_fault = lookup.and_then(|s| s.fault),
        alloc_ts = alloc.map(|s| s.ts),
        alloc_tid = alloc.map(|s| s.tid),
        alloc_fault = alloc.and_then(|s| s.fault),
        insert_ts = insert.map(|s| s.ts),
        insert_tid = insert.map(|s| s.tid),
        insert_fault = insert.and_then(|s| s.fault),
        hole_ts = hole.map(|s| s.ts),
        hole_tid = hole.map(|s| s.tid),
        hole_fault = hole.and_then(|s| s.fault),
        invalidate_ts = inv.map(|s| s.ts),
        invalidate_tid = inv.map(|s| s.tid),
        "{} ({}) on {} ino {} page {}",
        f.rule.name(),
        f.severity.name(),
        f.page.dev,
        f.page.ino,
        f.page.pgoff,
    );
}

fn wanted(args: &Args, ev: &Event) -> bool {
    // `lost` records belong to no file: always kept.
    matches!(ev.body, tracer::event::Body::Lost { .. })
        || (args.dev.is_none_or(|d| d == ev.dev) && args.inode.is_none_or(|i| i == ev.ino))
}

fn replay(path: &std::path::Path, args: &Args, out: &mut Outputs, stop: &AtomicBool) -> Result<()> {
    let input = tracer::source::open_any(path)?;
    out.start_record(
        args,
        &format!("replay:{}", path.display()),
        serde_json::json!({ "replay": path.display().to_string() }),
    )?;
    let mut pipe = Pipeline::new(PipelineConfig::default());
    let mut n = 0u64;
    for item in input {
        match item {
            Ok(ev) if wanted(args, &ev) => pipe.push(ev, out),
            Ok(_) => {}
            Err(e) if args.skip_bad && e.is_skippable() => {
                tracing::warn!(kind = "bad_input", "skipped: {e}");
                pipe.note_bad_input();
            }
            Err(e) => {
                // Keep what was read: judge it and export it before failing.
                pipe.finish(out);
                out.metrics.sync_stats(pipe.stats());
                out.finish_record(pipe.stats(), "input error")?;
                return Err(e).context("replay stopped (use --skip-bad to skip bad lines)");
            }
        }
        n += 1;
        if n.is_multiple_of(SYNC_EVERY) {
            out.metrics.sync_stats(pipe.stats());
            if stop.load(Ordering::Relaxed) {
                break;
            }
        }
    }
    pipe.finish(out);
    out.metrics.sync_stats(pipe.stats());
    out.finish_record(
        pipe.stats(),
        if stop.load(Ordering::Relaxed) {
            "signal"
        } else {
            "end of input"
        },
    )?;
    out.metrics.set_input_complete();
    let st = pipe.stats();
    tracing::info!(
        kind = "replay_complete",
        events = st.events,
        findings = st.findings,
        late = st.late,
        lost = st.lost,
        evicted = st.evicted,
        bad_input = st.bad_input,
        "replay of {} complete; serving until SIGTERM",
        path.display()
    );
    while !stop.load(Ordering::Relaxed) {
        thread::sleep(IDLE_TICK);
    }
    Ok(())
}

fn live(args: &Args, out: &mut Outputs, stop: &AtomicBool) -> Result<()> {
    let filter = args.attach.filter(args.dev, args.inode);
    let mut src = LiveSource::open(&filter)?;
    export_plan(&out.metrics, src.plan());
    out.start_record(
        args,
        "live",
        serde_json::to_value(src.plan()).unwrap_or_default(),
    )?;
    tracing::info!(
        kind = "attached",
        probes = src.plan().used_probes().count(),
        ready_s = src.ready_after().as_secs_f64(),
        plan = %src.plan().summary_line(),
        "attached"
    );
    let fill = src
        .ring_fill()
        .map_err(|e| tracing::warn!("ring buffer fill not readable ({e}); its gauge stays 0"))
        .ok();
    let mut pipe = Pipeline::new(PipelineConfig::default());
    let mut last_flush = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        // Read the fill before draining: that is when it is highest.
        if let Some(f) = &fill {
            out.metrics.set_ringbuf_fill(f.ratio());
        }
        src.poll(IDLE_TICK, &mut |ev| pipe.push(ev, out))?;
        for n in src.take_notes() {
            tracing::info!("{n}");
        }
        // Release what the window no longer needs even when nothing new came.
        pipe.advance(monotonic_ns(), out);
        out.metrics.sync_stats(pipe.stats());
        // A quiet host still gets its events on disk within seconds.
        if let Some(w) = &mut out.record {
            if last_flush.elapsed() >= RECORD_FLUSH {
                w.write_stats(pipe.stats().late, 0);
                last_flush = std::time::Instant::now();
            }
        }
    }
    // Detach, then drain what the kernel still holds: nothing captured is lost.
    let st = src.finish(&mut |ev| pipe.push(ev, out));
    pipe.finish(out);
    out.metrics.sync_stats(pipe.stats());
    out.finish_record(pipe.stats(), "signal")?;
    tracing::info!(
        kind = "live_complete",
        records = st.records,
        lost = st.lost,
        undecodable = st.undecodable,
        "detached"
    );
    Ok(())
}

/// The attach plan as the `daxtrace_attach_status` state set: per (step,
/// backend), the best status among its candidate symbols.
fn export_plan(m: &Metrics, plan: &AttachPlan) {
    let name = |v: serde_json::Value| v.as_str().map(str::to_owned).unwrap_or_default();
    let mut best: BTreeMap<(String, String), AttachStatus> = BTreeMap::new();
    for e in &plan.entries {
        let status = match e.status {
            Status::Used => AttachStatus::Used,
            Status::Failed(_) => AttachStatus::Failed,
            Status::Available => AttachStatus::Available,
            Status::Unsupported(_) => AttachStatus::Unsupported,
            Status::Missing => AttachStatus::Missing,
            Status::Unknown(_) => AttachStatus::Unknown,
        };
        let key = (
            name(serde_json::to_value(e.step).unwrap_or_default()),
            name(serde_json::to_value(e.backend).unwrap_or_default()),
        );
        let slot = best.entry(key).or_insert(status);
        *slot = (*slot).max(status);
    }
    for ((step, backend), status) in best {
        m.set_attach(&step, &backend, status);
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn default_metrics_address_is_loopback() {
        let cli = Cli::try_parse_from(["serve"]).unwrap();
        assert!(cli.args.metrics.ip().is_loopback(), "{}", cli.args.metrics);
        assert_eq!(cli.args.metrics.port(), 9464);
        let cli = Cli::try_parse_from(["serve", "--metrics", "0.0.0.0:9000"]).unwrap();
        assert!(!cli.args.metrics.ip().is_loopback());
    }
}
