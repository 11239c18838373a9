//! Simulator of the legacy (4.0-4.5) DAX fault path, as an event source with
//! an independent oracle.
//!
//! * [`model`]: the fault path, `write(2)`, truncate and punch as atomic steps
//!   over shared files, emitting the events the kernel would trace;
//! * [`oracle`]: the file's bytes and the definition of a corrupted page;
//! * [`schedule`]: actors, their scripts, and the random draws.
//!
//! A schedule is an interleaving of the actors' steps chosen by a seeded RNG
//! (or a script, for hand-built cases). Its events go through the real
//! pipeline (`daxtrace simulate`, `tests/sim_property.rs`); its bytes go through
//! the oracle; the two verdicts are compared per page and per schedule.
//!
//! # Why a finding is a corruption (and the granularity that makes it so)
//!
//! DESIGN.md §2's `hole_load_after_allocate` judges at the allocation: a hole
//! load after another actor's allocation, with no invalidation between, is a
//! finding, `corruption` if that actor also inserted its mapping before the
//! hole load, else `stale_hole`. In bytes: the reader maps zeros over blocks
//! the file now owns. The model lets the allocator's bytes land in the blocks
//! in the allocating step (the faulting store, the `write(2)` copy, the 2 MiB
//! store of a PMD write fault), so from the hole load on the reader's view is
//! zeros where the file holds data: both severities are corrupted pages, and
//! they differ only in whether the writer could already be reading its data
//! back through its own mapping (`corruption`) or not yet (`stale_hole`).
//! `insert_after_invalidate` maps blocks the file freed; they hold the bytes
//! written before the free, and the file reads zeros there: corrupted too.
//!
//! Finer models split what this one keeps atomic; under them the rule and the
//! bytes disagree, which `daxtrace simulate` can measure (see the report in
//! the issue): a hole load between an allocation and the allocator's own
//! teardown of hole pages is torn down before any data lands (a finding, no
//! wrong byte); a `write(2)` that traces its `invalidate_inode_pages2_range`
//! (reason `write`) *after* its copy makes every later hole load look
//! "invalidated between" to the rule, while the reader does map zeros over
//! the copied data (no finding, wrong bytes: the race fixed in 2017 by "dax:
//! Fix data corruption when fault races with write").

pub mod model;
pub mod oracle;
pub mod schedule;

use rand::rngs::SmallRng;
use rand::Rng;
use serde::Serialize;

pub use self::model::{Clock, ModelConfig, Pick, Run, ScheduleError, Sim, SIM_DEV};
pub use self::schedule::{schedule_rng, Actor, Mix, Op, Scenario, ScenarioShape};
use crate::detect::{Finding, Rule, Severity};
use crate::event::{Event, PageKey};
use crate::pipeline::{Pipeline, PipelineConfig, Sink, Stats};

/// Deliver events slightly out of order, as several CPUs' buffers do: each
/// event swaps with its successor from another CPU with probability 1/4.
/// Timestamps are untouched, so the reorder window must restore the order.
pub fn jitter(events: &mut [Event], rng: &mut SmallRng) {
    let mut i = 0;
    while i + 1 < events.len() {
        if events[i].cpu != events[i + 1].cpu && rng.gen_range(0..4u32) == 0 {
            events.swap(i, i + 1);
            i += 2;
        } else {
            i += 1;
        }
    }
}

/// A 2x2 confusion matrix: positive = the detector raised a finding, true = the
/// oracle saw corruption.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Confusion {
    /// Finding and corruption.
    pub tp: u64,
    /// Finding, no corruption.
    pub fp: u64,
    /// Corruption, no finding.
    #[serde(rename = "fn")]
    pub fn_: u64,
    /// Neither.
    pub tn: u64,
}

impl Confusion {
    pub fn add(&mut self, finding: bool, corrupt: bool) {
        match (finding, corrupt) {
            (true, true) => self.tp += 1,
            (true, false) => self.fp += 1,
            (false, true) => self.fn_ += 1,
            (false, false) => self.tn += 1,
        }
    }

    /// TP / (TP + FP); 1.0 when nothing was flagged.
    pub fn precision(&self) -> f64 {
        if self.tp + self.fp == 0 {
            1.0
        } else {
            self.tp as f64 / (self.tp + self.fp) as f64
        }
    }

    /// TP / (TP + FN); 1.0 when nothing was corrupted.
    pub fn recall(&self) -> f64 {
        if self.tp + self.fn_ == 0 {
            1.0
        } else {
            self.tp as f64 / (self.tp + self.fn_) as f64
        }
    }

    pub fn merge(&mut self, o: &Confusion) {
        self.tp += o.tp;
        self.fp += o.fp;
        self.fn_ += o.fn_;
        self.tn += o.tn;
    }
}

/// The comparison of one schedule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub pages: Confusion,
    /// Finding anywhere in the schedule.
    pub flagged: bool,
    /// Corruption anywhere in the schedule.
    pub corrupt: bool,
    /// Pages flagged without corruption.
    pub false_pages: Vec<PageKey>,
    /// Corrupted pages without a finding.
    pub missed_pages: Vec<PageKey>,
}

impl Verdict {
    pub fn agrees(&self) -> bool {
        self.false_pages.is_empty() && self.missed_pages.is_empty()
    }
}

/// Compare the detector's findings with the oracle's corrupted pages. Pages in
/// the universe that neither names count as true negatives.
pub fn compare(run: &Run, findings: &[Finding]) -> Verdict {
    let mut flagged: Vec<PageKey> = findings.iter().map(|f| f.page).collect();
    flagged.sort_unstable();
    flagged.dedup();
    let corrupted = &run.corrupted; // sorted by construction
    let mut v = Verdict {
        flagged: !flagged.is_empty(),
        corrupt: !corrupted.is_empty(),
        ..Verdict::default()
    };
    let (mut i, mut j) = (0, 0);
    while i < flagged.len() || j < corrupted.len() {
        match (flagged.get(i), corrupted.get(j)) {
            (Some(f), Some(c)) if f == c => {
                v.pages.tp += 1;
                i += 1;
                j += 1;
            }
            (Some(f), c) if c.is_none_or(|c| f < c) => {
                v.pages.fp += 1;
                v.false_pages.push(*f);
                i += 1;
            }
            (_, Some(c)) => {
                v.pages.fn_ += 1;
                v.missed_pages.push(*c);
                j += 1;
            }
            _ => unreachable!(),
        }
    }
    let named = v.pages.tp + v.pages.fp + v.pages.fn_;
    v.pages.tn = run.pages_touched.saturating_sub(named);
    v
}

/// Totals over many schedules.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Tally {
    pub schedules: u64,
    pub events: u64,
    pub steps: u64,
    /// Schedules: finding anywhere vs corruption anywhere.
    pub schedule_matrix: Confusion,
    /// Pages of every schedule: finding vs corruption.
    pub page_matrix: Confusion,
    pub corrupting_schedules: u64,
    pub corrupted_pages: u64,
    pub findings: u64,
    pub findings_corruption: u64,
    pub findings_stale_hole: u64,
    pub findings_stale_mapping: u64,
    pub findings_hole_load_after_allocate: u64,
    pub findings_insert_after_invalidate: u64,
    /// Reads in the schedules that returned wrong bytes.
    pub wrong_reads: u64,
    /// Pipeline counters summed over schedules (must stay 0 here: reported, not assumed).
    pub late: u64,
    pub lost: u64,
    pub evicted: u64,
    /// Indices of the first schedules where detector and oracle disagree.
    pub disagreeing: Vec<u64>,
    pub disagreeing_total: u64,
}

impl Tally {
    pub fn add(&mut self, index: u64, run: &Run, findings: &[Finding], v: &Verdict) {
        self.schedules += 1;
        self.events += run.events.len() as u64;
        self.steps += run.steps;
        self.schedule_matrix.add(v.flagged, v.corrupt);
        self.page_matrix.merge(&v.pages);
        self.corrupting_schedules += u64::from(v.corrupt);
        self.corrupted_pages += run.corrupted.len() as u64;
        self.wrong_reads += run.wrong_reads;
        for f in findings {
            self.findings += 1;
            match f.severity {
                Severity::Corruption => self.findings_corruption += 1,
                Severity::StaleHole => self.findings_stale_hole += 1,
                Severity::StaleMapping => self.findings_stale_mapping += 1,
            }
            match f.rule {
                Rule::HoleLoadAfterAllocate => self.findings_hole_load_after_allocate += 1,
                Rule::InsertAfterInvalidate => self.findings_insert_after_invalidate += 1,
            }
        }
        if !v.agrees() {
            self.disagreeing_total += 1;
            if self.disagreeing.len() < 20 {
                self.disagreeing.push(index);
            }
        }
    }

    pub fn merge(&mut self, o: &Tally) {
        self.schedules += o.schedules;
        self.events += o.events;
        self.steps += o.steps;
        self.schedule_matrix.merge(&o.schedule_matrix);
        self.page_matrix.merge(&o.page_matrix);
        self.corrupting_schedules += o.corrupting_schedules;
        self.corrupted_pages += o.corrupted_pages;
        self.findings += o.findings;
        self.findings_corruption += o.findings_corruption;
        self.findings_stale_hole += o.findings_stale_hole;
        self.findings_stale_mapping += o.findings_stale_mapping;
        self.findings_hole_load_after_allocate += o.findings_hole_load_after_allocate;
        self.findings_insert_after_invalidate += o.findings_insert_after_invalidate;
        self.wrong_reads += o.wrong_reads;
        self.late += o.late;
        self.lost += o.lost;
        self.evicted += o.evicted;
        self.disagreeing_total += o.disagreeing_total;
        for &d in &o.disagreeing {
            if self.disagreeing.len() < 20 {
                self.disagreeing.push(d);
            }
        }
        self.disagreeing.sort_unstable();
    }
}

/// Everything a run of many schedules shares.
#[derive(Clone, Copy, Debug)]
pub struct SimOptions {
    pub seed: u64,
    pub shape: ScenarioShape,
    /// 4.6+ entry locking.
    pub fixed: bool,
    pub clock: Clock,
    /// Deliver events out of order across CPUs (inside the reorder window).
    pub jitter: bool,
    /// The pipeline every schedule goes through (a fresh one each).
    pub pipeline: PipelineConfig,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            seed: 1,
            shape: ScenarioShape::default(),
            fixed: false,
            clock: Clock::Strict,
            jitter: false,
            // A schedule spans microseconds and a few hundred pages.
            pipeline: PipelineConfig {
                window_ns: 100_000_000,
                window_events: 4096,
                max_pages: 1 << 16,
            },
        }
    }
}

/// One schedule's model config: schedules get disjoint inodes, fault ids and
/// times, so any set of them written to one file analyzes as they ran.
pub fn model_config(opts: &SimOptions, index: u64) -> ModelConfig {
    ModelConfig {
        fixed: opts.fixed,
        ino_base: 100 + index * opts.shape.files.max(1) as u64,
        ts_start: 1_000_000_000 + index * 1_000_000_000,
        fault_base: 1 + (index << 20),
        clock: opts.clock,
    }
}

/// Collects findings.
#[derive(Debug, Default)]
struct Collect(Vec<Finding>);

impl Sink for Collect {
    fn on_finding(&mut self, f: &Finding) {
        self.0.push(f.clone());
    }
}

/// Run `events` (in delivery order) through a fresh pipeline: the detector
/// exactly as `analyze` and `watch` run it.
pub fn detect(events: &[Event], cfg: PipelineConfig) -> (Vec<Finding>, Stats) {
    let mut p = Pipeline::new(cfg);
    let mut sink = Collect::default();
    for ev in events {
        p.push(*ev, &mut sink);
    }
    p.finish(&mut sink);
    (sink.0, p.stats().clone())
}

/// One schedule, judged both ways.
#[derive(Debug)]
pub struct Judged<'a> {
    pub index: u64,
    pub scenario: Scenario,
    pub run: &'a Run,
    /// The events in the order the pipeline received them.
    pub delivered: &'a [Event],
    pub findings: Vec<Finding>,
    pub stats: Stats,
    pub verdict: Verdict,
}

/// Runs schedules one after another, reusing buffers.
#[derive(Debug, Default)]
pub struct Simulation {
    pub opts: SimOptions,
    sim: Sim,
    delivered: Vec<Event>,
}

impl Simulation {
    pub fn new(opts: SimOptions) -> Self {
        Self {
            opts,
            sim: Sim::new(),
            delivered: Vec::new(),
        }
    }

    /// Draw, run and judge schedule `index`.
    pub fn judge(&mut self, index: u64) -> Judged<'_> {
        let mut rng = schedule_rng(self.opts.seed, index);
        let scenario = self.opts.shape.draw(&mut rng);
        let cfg = model_config(&self.opts, index);
        let run = self
            .sim
            .run(&scenario, cfg, &[], &mut rng)
            .expect("random schedules never block");
        self.delivered.clear();
        self.delivered.extend_from_slice(&run.events);
        if self.opts.jitter {
            jitter(&mut self.delivered, &mut rng);
        }
        let (findings, stats) = detect(&self.delivered, self.opts.pipeline);
        let verdict = compare(run, &findings);
        Judged {
            index,
            scenario,
            run,
            delivered: &self.delivered,
            findings,
            stats,
            verdict,
        }
    }
}

impl Tally {
    pub fn add_judged(&mut self, j: &Judged<'_>) {
        self.add(j.index, j.run, &j.findings, &j.verdict);
        self.late += j.stats.late;
        self.lost += j.stats.lost;
        self.evicted += j.stats.evicted;
    }
}
