//! Prometheus metrics sink: counts what the pipeline sees, for `daxtrace serve`.
//!
//! Every exported name is a `const` here; `dashboards/` may only query these
//! (`tests/metrics_dashboards.rs` fails otherwise). Label sets are small and
//! fixed (kinds, sizes, reasons, rules): no per-page or per-task labels, so a
//! scrape's size does not grow with the workload.
//!
//! Hot path: every series is created up front and its handle kept in an
//! array, so counting an event is one relaxed atomic add: no lock, no
//! allocation, no formatting. prometheus-client's own `Histogram` takes a
//! mutex per observation, so fault latency uses [`LatencyHistograms`], an
//! atomic-bucket histogram that encodes itself through the crate's encoder.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};

use crate::detect::{Finding, Rule, Severity};
use crate::event::{Body, Event, FaultResult, InvalidateReason, MapResult, Size, KIND_NAMES};
use crate::pipeline::{Sink, Stats};

/// Build information; labels `version`.
pub const BUILD_INFO: &str = "daxtrace_build_info";
/// Events received, by `kind` (the JSON Lines kind names, late ones included).
pub const EVENTS_TOTAL: &str = "daxtrace_events_total";
/// Faults begun, by `size` (pte|pmd) and `access` (read|write).
pub const FAULTS_TOTAL: &str = "daxtrace_faults_total";
/// Faults ended, by `result` (nopage, fallback, sigbus, retry, ...).
pub const FAULT_RESULTS_TOTAL: &str = "daxtrace_fault_results_total";
/// Fault latency (fault_begin to fault_end of the same fault), by `size`.
pub const FAULT_DURATION_SECONDS: &str = "daxtrace_fault_duration_seconds";
/// Block lookups (`map_blocks`), by `result` (hole|mapped|unwritten).
pub const BLOCK_LOOKUPS_TOTAL: &str = "daxtrace_block_lookups_total";
/// Lookups that allocated blocks (`new: true`), by `origin` (fault|write).
pub const ALLOCATIONS_TOTAL: &str = "daxtrace_allocations_total";
/// Pages those allocations covered, by `origin`.
pub const ALLOCATED_PAGES_TOTAL: &str = "daxtrace_allocated_pages_total";
/// Hole loads (zero page mapped), by `size`.
pub const HOLE_LOADS_TOTAL: &str = "daxtrace_hole_loads_total";
/// Inserted mappings, by `size` and `inferred` (true when no probe saw it).
pub const INSERTS_TOTAL: &str = "daxtrace_inserts_total";
/// Invalidations, by `reason` (truncate, punch_hole, ...).
pub const INVALIDATIONS_TOTAL: &str = "daxtrace_invalidations_total";
/// Findings, by `rule` and `severity`.
pub const FINDINGS_TOTAL: &str = "daxtrace_findings_total";
/// Events the kernel side could not deliver (sum of `lost` records).
pub const LOST_EVENTS_TOTAL: &str = "daxtrace_lost_events_total";
/// Events that arrived later than the reorder window.
pub const LATE_EVENTS_TOTAL: &str = "daxtrace_late_events_total";
/// Pages evicted from the timeline store by its page cap.
pub const EVICTED_PAGES_TOTAL: &str = "daxtrace_evicted_pages_total";
/// Input lines skipped as bad (`--skip-bad`).
pub const BAD_INPUT_TOTAL: &str = "daxtrace_bad_input_total";
/// Kernel ring buffer fill, 0 to 1, at the last read (0 when replaying).
pub const RINGBUF_FILL_RATIO: &str = "daxtrace_ringbuf_fill_ratio";
/// Attach status: 1 for the `status` each (`step`, `backend`) is in, else 0.
pub const ATTACH_STATUS: &str = "daxtrace_attach_status";
/// 1 once a replayed input has been read to its end (0 while reading, and live).
pub const INPUT_COMPLETE: &str = "daxtrace_input_complete";

/// Every exported metric name, for the dashboard check.
pub const ALL: &[&str] = &[
    BUILD_INFO,
    EVENTS_TOTAL,
    FAULTS_TOTAL,
    FAULT_RESULTS_TOTAL,
    FAULT_DURATION_SECONDS,
    BLOCK_LOOKUPS_TOTAL,
    ALLOCATIONS_TOTAL,
    ALLOCATED_PAGES_TOTAL,
    HOLE_LOADS_TOTAL,
    INSERTS_TOTAL,
    INVALIDATIONS_TOTAL,
    FINDINGS_TOTAL,
    LOST_EVENTS_TOTAL,
    LATE_EVENTS_TOTAL,
    EVICTED_PAGES_TOTAL,
    BAD_INPUT_TOTAL,
    RINGBUF_FILL_RATIO,
    ATTACH_STATUS,
    INPUT_COMPLETE,
];

/// Names a query may use for `name`: a histogram also exports `_bucket`,
/// `_sum` and `_count` series.
pub fn series_names(name: &str) -> Vec<String> {
    if name == FAULT_DURATION_SECONDS {
        ["_bucket", "_sum", "_count"]
            .iter()
            .map(|s| format!("{name}{s}"))
            .collect()
    } else {
        vec![name.to_owned()]
    }
}

/// Steps of the fault path (DESIGN.md §1 table rows), named as the attach
/// plan names them (`attach::plan::Step`, serde names).
pub const ATTACH_STEPS: [&str; 6] = [
    "fault_begin",
    "fault_end",
    "lookup",
    "hole_load",
    "insert",
    "invalidate",
];
/// Attach backends (`attach::plan::Backend` names).
pub const ATTACH_BACKENDS: [&str; 5] = ["tracepoint", "tp_btf", "kprobe", "fentry", "raw_tp"];

/// Where one (step, backend) pair stands, folded over its candidate symbols
/// (the best of them). Exported as a state set: one series per status, value
/// 1 for the current one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AttachStatus {
    /// Not checked (replaying a file, or no privileges to look).
    Unknown = 0,
    /// The kernel has no candidate.
    Missing = 1,
    /// Present, but the kernel cannot attach this backend (e.g. no kprobes).
    Unsupported = 2,
    /// Present, not used (another backend serves the step, or no program yet).
    Available = 3,
    /// Attach was tried and failed.
    Failed = 4,
    /// Attached.
    Used = 5,
}

impl AttachStatus {
    pub const ALL: [AttachStatus; 6] = [
        Self::Unknown,
        Self::Missing,
        Self::Unsupported,
        Self::Available,
        Self::Failed,
        Self::Used,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Missing => "missing",
            Self::Unsupported => "unsupported",
            Self::Available => "available",
            Self::Failed => "failed",
            Self::Used => "used",
        }
    }
}

/// Fault latency bucket bounds in nanoseconds (exported in seconds): 1 µs to
/// 1 s. Native faults take microseconds, faults under TCG tens of them, and a
/// fault that waits on block allocation or I/O milliseconds.
const LATENCY_BOUNDS_NS: [u64; 19] = [
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
];

type Labels = Vec<(&'static str, &'static str)>;

/// One atomic-bucket histogram.
#[derive(Debug, Default)]
struct AtomicHistogram {
    /// Non-cumulative counts; the last slot is the +Inf overflow.
    buckets: [AtomicU64; LATENCY_BOUNDS_NS.len() + 1],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl AtomicHistogram {
    fn observe_ns(&self, ns: u64) {
        let i = LATENCY_BOUNDS_NS.partition_point(|&b| b < ns);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// Fault latency histograms, one per fault size. Written lock-free by the
/// pipeline thread, read by the scrape (a scrape may see a sample's bucket
/// before its count: harmless for rates).
#[derive(Clone, Debug, Default)]
pub struct LatencyHistograms(Arc<[AtomicHistogram; 2]>);

impl LatencyHistograms {
    fn observe_ns(&self, size: Size, ns: u64) {
        self.0[size_index(size)].observe_ns(ns);
    }
}

#[allow(
    clippy::cast_precision_loss,
    reason = "bucket bounds and latency sums fit f64 well enough for seconds"
)]
impl EncodeMetric for LatencyHistograms {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (i, h) in self.0.iter().enumerate() {
            let labels: Labels = vec![("size", SIZE_NAMES[i])];
            // Per-bucket (not cumulative) counts: the encoder accumulates.
            let mut count = 0;
            let mut buckets = Vec::with_capacity(LATENCY_BOUNDS_NS.len() + 1);
            for (j, b) in h.buckets.iter().enumerate() {
                let n = b.load(Ordering::Relaxed);
                count += n;
                let le = LATENCY_BOUNDS_NS
                    .get(j)
                    .map_or(f64::INFINITY, |&ns| ns as f64 / 1e9);
                buckets.push((le, n));
            }
            // Count from the buckets so the +Inf bucket always equals _count.
            let sum = h.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
            encoder
                .encode_family(&labels)?
                .encode_histogram::<Labels>(sum, count, &buckets, None)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

impl TypedMetric for LatencyHistograms {
    const TYPE: MetricType = MetricType::Histogram;
}

const SIZE_NAMES: [&str; 2] = ["pte", "pmd"];
const ACCESS_NAMES: [&str; 2] = ["read", "write"];
const MAP_RESULT_NAMES: [&str; 3] = ["hole", "mapped", "unwritten"];
const ORIGIN_NAMES: [&str; 2] = ["fault", "write"];
const INVALIDATE_NAMES: [&str; 5] = [
    "truncate",
    "punch_hole",
    "collapse_range",
    "zero_range",
    "write",
];
const FAULT_RESULT_NAMES: [&str; 8] = [
    "nopage", "fallback", "sigbus", "retry", "oom", "sigsegv", "error", "other",
];
/// The (rule, severity) pairs DESIGN.md §2 can raise.
const FINDING_KINDS: [(Rule, Severity); 3] = [
    (Rule::HoleLoadAfterAllocate, Severity::Corruption),
    (Rule::HoleLoadAfterAllocate, Severity::StaleHole),
    (Rule::InsertAfterInvalidate, Severity::StaleMapping),
];

fn size_index(s: Size) -> usize {
    match s {
        Size::Pte => 0,
        Size::Pmd => 1,
    }
}

fn map_result_index(r: MapResult) -> usize {
    match r {
        MapResult::Hole => 0,
        MapResult::Mapped => 1,
        MapResult::Unwritten => 2,
    }
}

fn invalidate_index(r: InvalidateReason) -> usize {
    match r {
        InvalidateReason::Truncate => 0,
        InvalidateReason::PunchHole => 1,
        InvalidateReason::CollapseRange => 2,
        InvalidateReason::ZeroRange => 3,
        InvalidateReason::Write => 4,
    }
}

fn fault_result_index(r: FaultResult) -> usize {
    match r {
        FaultResult::Nopage => 0,
        FaultResult::Fallback => 1,
        FaultResult::Sigbus => 2,
        FaultResult::Retry => 3,
        FaultResult::Oom => 4,
        FaultResult::Sigsegv => 5,
        FaultResult::Error => 6,
        FaultResult::Other => 7,
    }
}

fn finding_index(rule: Rule, severity: Severity) -> Option<usize> {
    FINDING_KINDS.iter().position(|&k| k == (rule, severity))
}

/// Faults in flight waiting for their end, for latency. Direct-mapped on the
/// fault id: fixed memory, no allocation per fault; a collision (two faults in
/// flight whose ids share a slot) loses one latency sample, never a count.
const INFLIGHT_SLOTS: usize = 4096;

#[derive(Clone, Copy, Default)]
struct Inflight {
    fault: u64,
    ts: u64,
    size: u8,
    used: bool,
}

/// Create every series of a family up front and keep their handles.
fn series<M, const N: usize>(family: &Family<Labels, M>, labels: [Labels; N]) -> [M; N]
where
    M: Clone + Default + TypedMetric + EncodeMetric,
{
    labels.map(|l| family.get_or_create(&l).clone())
}

fn labels1<const N: usize>(key: &'static str, values: [&'static str; N]) -> [Labels; N] {
    values.map(|v| vec![(key, v)])
}

fn counter_name(name: &'static str) -> &'static str {
    // prometheus-client appends `_total` to counters itself.
    name.strip_suffix("_total")
        .expect("counter names end in _total")
}

/// The metrics sink. Cheap handles over the shared series: the pipeline
/// thread owns this, the HTTP thread encodes the [`Registry`].
pub struct Metrics {
    events: [Counter; 7],
    faults: [[Counter; 2]; 2],
    fault_results: [Counter; 8],
    latency: LatencyHistograms,
    lookups: [Counter; 3],
    allocations: [Counter; 2],
    allocated_pages: [Counter; 2],
    hole_loads: [Counter; 2],
    inserts: [[Counter; 2]; 2],
    invalidations: [Counter; 5],
    findings: [Counter; 3],
    lost: Counter,
    late: Counter,
    evicted: Counter,
    bad_input: Counter,
    ringbuf_fill: Gauge<f64, AtomicU64>,
    attach: Vec<[Gauge; 6]>,
    input_complete: Gauge,
    inflight: Box<[Inflight]>,
    /// Stats already turned into counter increments (see `sync_stats`).
    synced: Stats,
}

impl Metrics {
    /// Create every series and the registry that exports them.
    #[allow(
        clippy::too_many_lines,
        reason = "one registration per metric, read top to bottom"
    )]
    pub fn new() -> (Self, Registry) {
        let mut r = Registry::default();

        r.register(
            BUILD_INFO
                .strip_suffix("_info")
                .expect("info names end in _info"),
            "daxtrace build information",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );

        let f = Family::<Labels, Counter>::default();
        let events = series(&f, labels1("kind", KIND_NAMES));
        r.register(
            counter_name(EVENTS_TOTAL),
            "Events received, by kind (late events included)",
            f,
        );

        let f = Family::<Labels, Counter>::default();
        let faults = [0, 1].map(|s| {
            series(
                &f,
                ACCESS_NAMES.map(|a| vec![("size", SIZE_NAMES[s]), ("access", a)]),
            )
        });
        r.register(
            counter_name(FAULTS_TOTAL),
            "DAX faults begun, by size and access",
            f,
        );

        let f = Family::<Labels, Counter>::default();
        let fault_results = series(&f, labels1("result", FAULT_RESULT_NAMES));
        r.register(
            counter_name(FAULT_RESULTS_TOTAL),
            "DAX faults ended, by result",
            f,
        );

        let latency = LatencyHistograms::default();
        r.register_with_unit(
            FAULT_DURATION_SECONDS
                .strip_suffix("_seconds")
                .expect("duration names end in _seconds"),
            "DAX fault latency from fault_begin to fault_end, by size",
            Unit::Seconds,
            latency.clone(),
        );

        let f = Family::<Labels, Counter>::default();
        let lookups = series(&f, labels1("result", MAP_RESULT_NAMES));
        r.register(
            counter_name(BLOCK_LOOKUPS_TOTAL),
            "Block lookups (map_blocks), by result",
            f,
        );

        let f = Family::<Labels, Counter>::default();
        let allocations = series(&f, labels1("origin", ORIGIN_NAMES));
        r.register(
            counter_name(ALLOCATIONS_TOTAL),
            "Block lookups that allocated, by origin (a fault, or write(2) outside a fault)",
            f,
        );

        let f = Family::<Labels, Counter>::default();
        let allocated_pages = series(&f, labels1("origin", ORIGIN_NAMES));
        r.register(
            counter_name(ALLOCATED_PAGES_TOTAL),
            "Pages covered by allocating lookups, by origin",
            f,
        );

        let f = Family::<Labels, Counter>::default();
        let hole_loads = series(&f, labels1("size", SIZE_NAMES));
        r.register(
            counter_name(HOLE_LOADS_TOTAL),
            "Hole loads (zero page mapped), by size",
            f,
        );

        let f = Family::<Labels, Counter>::default();
        let inserts = [0, 1].map(|s| {
            series(
                &f,
                ["false", "true"].map(|i| vec![("size", SIZE_NAMES[s]), ("inferred", i)]),
            )
        });
        r.register(
            counter_name(INSERTS_TOTAL),
            "Inserted mappings, by size; inferred=true when no probe saw the insert",
            f,
        );

        let f = Family::<Labels, Counter>::default();
        let invalidations = series(&f, labels1("reason", INVALIDATE_NAMES));
        r.register(
            counter_name(INVALIDATIONS_TOTAL),
            "Page invalidations, by reason",
            f,
        );

        let f = Family::<Labels, Counter>::default();
        let findings = series(
            &f,
            FINDING_KINDS.map(|(rule, sev)| vec![("rule", rule.name()), ("severity", sev.name())]),
        );
        r.register(
            counter_name(FINDINGS_TOTAL),
            "Findings raised, by rule and severity",
            f,
        );

        let lost = Counter::default();
        r.register(
            counter_name(LOST_EVENTS_TOTAL),
            "Events the kernel side could not deliver",
            lost.clone(),
        );
        let late = Counter::default();
        r.register(
            counter_name(LATE_EVENTS_TOTAL),
            "Events that arrived later than the reorder window",
            late.clone(),
        );
        let evicted = Counter::default();
        r.register(
            counter_name(EVICTED_PAGES_TOTAL),
            "Pages evicted from the timeline store by its cap",
            evicted.clone(),
        );
        let bad_input = Counter::default();
        r.register(
            counter_name(BAD_INPUT_TOTAL),
            "Input lines skipped as bad",
            bad_input.clone(),
        );

        let ringbuf_fill = Gauge::<f64, AtomicU64>::default();
        r.register(
            RINGBUF_FILL_RATIO,
            "Kernel ring buffer fill (0 to 1) at the last read",
            ringbuf_fill.clone(),
        );

        let f = Family::<Labels, Gauge>::default();
        let mut attach = Vec::with_capacity(ATTACH_STEPS.len() * ATTACH_BACKENDS.len());
        for step in ATTACH_STEPS {
            for backend in ATTACH_BACKENDS {
                let g = series(
                    &f,
                    AttachStatus::ALL
                        .map(|s| vec![("step", step), ("backend", backend), ("status", s.name())]),
                );
                g[AttachStatus::Unknown as usize].set(1);
                attach.push(g);
            }
        }
        r.register(
            ATTACH_STATUS,
            "Attach status per fault-path step and backend: 1 for the current status, else 0",
            f,
        );

        let input_complete = Gauge::default();
        r.register(
            INPUT_COMPLETE,
            "1 once a replayed input has been read to its end",
            input_complete.clone(),
        );

        let m = Self {
            events,
            faults,
            fault_results,
            latency,
            lookups,
            allocations,
            allocated_pages,
            hole_loads,
            inserts,
            invalidations,
            findings,
            lost,
            late,
            evicted,
            bad_input,
            ringbuf_fill,
            attach,
            input_complete,
            inflight: vec![Inflight::default(); INFLIGHT_SLOTS].into_boxed_slice(),
            synced: Stats::default(),
        };
        (m, r)
    }

    /// Turn the pipeline's counters (events by kind, lost, late, evicted,
    /// bad input) into counter increments. Call after each batch: the
    /// exported values then equal what `analyze` reports for the same input.
    pub fn sync_stats(&mut self, stats: &Stats) {
        for (i, c) in self.events.iter().enumerate() {
            c.inc_by(stats.by_kind[i].saturating_sub(self.synced.by_kind[i]));
        }
        self.lost
            .inc_by(stats.lost.saturating_sub(self.synced.lost));
        self.late
            .inc_by(stats.late.saturating_sub(self.synced.late));
        self.evicted
            .inc_by(stats.evicted.saturating_sub(self.synced.evicted));
        self.bad_input
            .inc_by(stats.bad_input.saturating_sub(self.synced.bad_input));
        self.synced = stats.clone();
    }

    /// Kernel ring buffer fill, 0 to 1.
    pub fn set_ringbuf_fill(&self, ratio: f64) {
        self.ringbuf_fill.set(ratio.clamp(0.0, 1.0));
    }

    /// Record where one step stands on one backend.
    pub fn set_attach(&self, step: &str, backend: &str, status: AttachStatus) {
        let (Some(s), Some(b)) = (
            ATTACH_STEPS.iter().position(|&x| x == step),
            ATTACH_BACKENDS.iter().position(|&x| x == backend),
        ) else {
            tracing::warn!(
                step,
                backend,
                "attach status for an unknown step or backend not exported"
            );
            return;
        };
        for (i, g) in self.attach[s * ATTACH_BACKENDS.len() + b]
            .iter()
            .enumerate()
        {
            g.set(i64::from(i == status as usize));
        }
    }

    /// Mark the replayed input as read to its end.
    pub fn set_input_complete(&self) {
        self.input_complete.set(1);
    }

    fn count(&mut self, ev: &Event) {
        match ev.body {
            Body::FaultBegin {
                fault, size, write, ..
            } => {
                self.faults[size_index(size)][usize::from(write)].inc();
                #[allow(
                    clippy::cast_possible_truncation,
                    reason = "slot index is below INFLIGHT_SLOTS"
                )]
                let slot = &mut self.inflight[(fault % INFLIGHT_SLOTS as u64) as usize];
                *slot = Inflight {
                    fault,
                    ts: ev.ts,
                    size: size_index(size) as u8,
                    used: true,
                };
            }
            Body::FaultEnd { fault, result } => {
                self.fault_results[fault_result_index(result)].inc();
                #[allow(
                    clippy::cast_possible_truncation,
                    reason = "slot index is below INFLIGHT_SLOTS"
                )]
                let slot = &mut self.inflight[(fault % INFLIGHT_SLOTS as u64) as usize];
                if slot.used && slot.fault == fault && ev.ts >= slot.ts {
                    let size = if slot.size == 0 { Size::Pte } else { Size::Pmd };
                    self.latency.observe_ns(size, ev.ts - slot.ts);
                    slot.used = false;
                }
            }
            Body::MapBlocks {
                fault,
                npages,
                result,
                new,
                ..
            } => {
                self.lookups[map_result_index(result)].inc();
                if new {
                    let origin = usize::from(fault.is_none());
                    self.allocations[origin].inc();
                    self.allocated_pages[origin].inc_by(npages);
                }
            }
            Body::LoadHole { size, .. } => {
                self.hole_loads[size_index(size)].inc();
            }
            Body::InsertMapping { size, inferred, .. } => {
                self.inserts[size_index(size)][usize::from(inferred)].inc();
            }
            Body::Invalidate { reason, .. } => {
                self.invalidations[invalidate_index(reason)].inc();
            }
            Body::Lost { .. } => {}
        }
    }
}

impl Sink for Metrics {
    fn on_event(&mut self, ev: &Event) {
        self.count(ev);
    }

    /// A late event still happened: count it like any other (only the
    /// detector skips it).
    fn on_late(&mut self, ev: &Event) {
        self.count(ev);
    }

    fn on_finding(&mut self, f: &Finding) {
        if let Some(i) = finding_index(f.rule, f.severity) {
            self.findings[i].inc();
        } else {
            tracing::warn!(
                rule = f.rule.name(),
                severity = f.severity.name(),
                "finding with an unexpected severity"
            );
        }
    }
}

/// Which text format a scrape asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4 (the default).
    Prometheus,
    /// OpenMetrics 1.0 text, when the scraper's Accept header asks for it.
    OpenMetrics,
}

impl Format {
    /// Pick by the scraper's `Accept` header, as Prometheus negotiates.
    pub fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Self::OpenMetrics,
            _ => Self::Prometheus,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Encode the registry for one scrape.
pub fn encode(registry: &Registry, format: Format) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let r = match format {
        Format::Prometheus => {
            prometheus_client::encoding::prometheus_text::encode(&mut out, registry)
        }
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, registry),
    };
    // Writing into a String cannot fail; an encoder error would be a bug in
    // a metric's encode, which the tests cover.
    r.expect("encoding metrics into a String");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{Role, Step};
    use crate::event::{Comm, Dev, PageKey};

    fn ev(ts: u64, body: Body) -> Event {
        Event {
            ts,
            cpu: 0,
            tid: 1,
            pid: 1,
            comm: Comm::new("t"),
            dev: Dev::new(7, 0),
            ino: 12,
            probe: 0,
            body,
        }
    }

    /// The sample value of `series` (exact text before the value) in `text`.
    fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
            .parse()
            .unwrap()
    }

    #[test]
    fn every_const_is_exported_under_its_name() {
        let (_m, r) = Metrics::new();
        for fmt in [Format::Prometheus, Format::OpenMetrics] {
            let text = encode(&r, fmt);
            for name in ALL {
                for s in series_names(name) {
                    assert!(
                        text.lines()
                            .any(|l| l.starts_with(&format!("{s}{{"))
                                || l.starts_with(&format!("{s} "))),
                        "{s} missing from {fmt:?} output:\n{text}"
                    );
                }
            }
        }
    }

    #[test]
    fn events_update_their_series() {
        let (mut m, r) = Metrics::new();
        m.on_event(&ev(
            100,
            Body::FaultBegin {
                fault: 5,
                pgoff: 0,
                size: Size::Pte,
                write: true,
            },
        ));
        m.on_event(&ev(
            110,
            Body::MapBlocks {
                fault: Some(5),
                pgoff: 0,
                npages: 16,
                result: MapResult::Hole,
                new: true,
                write: true,
            },
        ));
        m.on_event(&ev(
            120,
            Body::InsertMapping {
                fault: 5,
                pgoff: 0,
                size: Size::Pte,
                inferred: true,
            },
        ));
        // 30 µs fault: lands in the 50 µs bucket, not the 25 µs one.
        m.on_event(&ev(
            30_100,
            Body::FaultEnd {
                fault: 5,
                result: FaultResult::Nopage,
            },
        ));
        m.on_late(&ev(
            90,
            Body::Invalidate {
                pgoff: 0,
                npages: 1,
                reason: InvalidateReason::PunchHole,
            },
        ));
        let text = encode(&r, Format::Prometheus);
        assert_eq!(
            value(&text, r#"daxtrace_faults_total{size="pte",access="write"}"#),
            1.0
        );
        assert_eq!(
            value(&text, r#"daxtrace_faults_total{size="pte",access="read"}"#),
            0.0
        );
        assert_eq!(
            value(&text, r#"daxtrace_allocations_total{origin="fault"}"#),
            1.0
        );
        assert_eq!(
            value(&text, r#"daxtrace_allocated_pages_total{origin="fault"}"#),
            16.0
        );
        assert_eq!(
            value(&text, r#"daxtrace_block_lookups_total{result="hole"}"#),
            1.0
        );
        assert_eq!(
            value(
                &text,
                r#"daxtrace_inserts_total{size="pte",inferred="true"}"#
            ),
            1.0
        );
        assert_eq!(
            value(
                &text,
                r#"daxtrace_invalidations_total{reason="punch_hole"}"#
            ),
            1.0
        );
        assert_eq!(
            value(&text, r#"daxtrace_fault_results_total{result="nopage"}"#),
            1.0
        );
        assert_eq!(
            value(
                &text,
                r#"daxtrace_fault_duration_seconds_bucket{size="pte",le="2.5e-05"}"#
            ),
            0.0
        );
        assert_eq!(
            value(
                &text,
                r#"daxtrace_fault_duration_seconds_bucket{size="pte",le="5e-05"}"#
            ),
            1.0
        );
        assert_eq!(
            value(
                &text,
                r#"daxtrace_fault_duration_seconds_bucket{size="pte",le="1"}"#
            ),
            1.0
        );
        assert_eq!(
            value(
                &text,
                r#"daxtrace_fault_duration_seconds_bucket{size="pte",le="+Inf"}"#
            ),
            1.0
        );
        assert_eq!(
            value(
                &text,
                r#"daxtrace_fault_duration_seconds_count{size="pte"}"#
            ),
            1.0
        );
        assert!(
            (value(&text, r#"daxtrace_fault_duration_seconds_sum{size="pte"}"#) - 30e-6).abs()
                < 1e-12
        );
    }

    #[test]
    fn fault_end_without_begin_gives_no_latency() {
        let (mut m, r) = Metrics::new();
        m.on_event(&ev(
            10,
            Body::FaultBegin {
                fault: 1,
                pgoff: 0,
                size: Size::Pmd,
                write: false,
            },
        ));
        m.on_event(&ev(
            20,
            Body::FaultEnd {
                fault: 1 + INFLIGHT_SLOTS as u64,
                result: FaultResult::Fallback,
            },
        ));
        let text = encode(&r, Format::Prometheus);
        assert_eq!(
            value(
                &text,
                r#"daxtrace_fault_duration_seconds_count{size="pmd"}"#
            ),
            0.0
        );
        assert_eq!(
            value(&text, r#"daxtrace_fault_results_total{result="fallback"}"#),
            1.0
        );
    }

    #[test]
    fn stats_sync_adds_only_the_difference() {
        let (mut m, r) = Metrics::new();
        let mut s = Stats {
            late: 2,
            lost: 5,
            evicted: 1,
            ..Stats::default()
        };
        s.by_kind[2] = 3;
        m.sync_stats(&s);
        s.late = 3;
        s.by_kind[2] = 4;
        m.sync_stats(&s);
        m.sync_stats(&s);
        let text = encode(&r, Format::Prometheus);
        assert_eq!(value(&text, "daxtrace_late_events_total"), 3.0);
        assert_eq!(value(&text, "daxtrace_lost_events_total"), 5.0);
        assert_eq!(value(&text, "daxtrace_evicted_pages_total"), 1.0);
        assert_eq!(
            value(&text, r#"daxtrace_events_total{kind="load_hole"}"#),
            4.0
        );
    }

    #[test]
    fn findings_counted_by_rule_and_severity() {
        let (mut m, r) = Metrics::new();
        let step = Step {
            role: Role::Lookup,
            ts: 1,
            tid: 1,
            pid: 1,
            cpu: 0,
            comm: Comm::new("a"),
            fault: Some(1),
        };
        let f = Finding {
            rule: Rule::HoleLoadAfterAllocate,
            severity: Severity::Corruption,
            page: PageKey {
                dev: Dev::new(7, 0),
                ino: 1,
                pgoff: 0,
            },
            ts: 4,
            steps: vec![step],
        };
        m.on_finding(&f);
        m.on_finding(&f);
        let text = encode(&r, Format::OpenMetrics);
        assert_eq!(
            value(
                &text,
                r#"daxtrace_findings_total{rule="hole_load_after_allocate",severity="corruption"}"#
            ),
            2.0
        );
        assert_eq!(
            value(
                &text,
                r#"daxtrace_findings_total{rule="insert_after_invalidate",severity="stale_mapping"}"#
            ),
            0.0
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn attach_status_is_a_state_set() {
        let (m, r) = Metrics::new();
        m.set_attach("hole_load", "tracepoint", AttachStatus::Used);
        let text = encode(&r, Format::Prometheus);
        let s = |st: &str| {
            format!(
                r#"daxtrace_attach_status{{step="hole_load",backend="tracepoint",status="{st}"}}"#
            )
        };
        assert_eq!(value(&text, &s("used")), 1.0);
        assert_eq!(value(&text, &s("unknown")), 0.0);
        let other = r#"daxtrace_attach_status{step="hole_load",backend="kprobe",status="unknown"}"#;
        assert_eq!(value(&text, other), 1.0);
    }

    #[test]
    fn accept_header_picks_the_format() {
        assert_eq!(Format::from_accept(None), Format::Prometheus);
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::from_accept(Some(prom)), Format::OpenMetrics);
        assert_eq!(Format::from_accept(Some("text/plain")), Format::Prometheus);
    }
}
