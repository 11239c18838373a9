//! Host-side proof: daxtrace's events against the kernel's own trace of the
//! same tracepoints (a tracefs instance in the guest).
//!
//! Both sides are cut to the window between the `lab-start` and `lab-end`
//! trace markers (mono clock on both sides). Then, per tracepoint, daxtrace's
//! count must equal the kernel's, or, when daxtrace reported `lost` events,
//! fall short by exactly the lost total. With nothing lost, each task's
//! sequence of tracepoints, ordered by daxtrace's timestamps, must also
//! equal the kernel's (a mis-ordered or mis-stamped event shows there).
//! Inferred `insert_mapping` events and derived write(2) teardowns have no
//! kernel counterpart and are counted apart.
//!
//! Function probes (kprobe/kretprobe, fentry/fexit) are compared with the
//! tracepoint the same kernel function fires (`counterpart`): a probe on
//! `dax_iomap_pte_fault`'s entry against `fs_dax:dax_pte_fault`, one on an
//! fs `->iomap_begin`'s return against `iomap:iomap_iter_dstmap`. Function
//! steps with no tracepoint (insert-mapping at `dax_insert_entry`) are
//! counted apart, and tracepoints daxtrace did not attach on this backend
//! (its `--plan-json` says which) are left out of the comparison.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// One kernel trace line, as far as the comparison needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelLine<'a> {
    pub tid: u32,
    pub ts: u64,
    pub event: &'a str,
    pub rest: &'a str,
}

/// Parse one line of a tracefs `trace` file ("comm-tid [cpu] flags ts: event: text").
pub fn parse_kernel_line(line: &str) -> Option<KernelLine<'_>> {
    if line.starts_with('#') {
        return None;
    }
    // The CPU field "[001]" ends the task; the comm itself may hold spaces or dashes.
    let mut search = 0;
    let (task_end, after) = loop {
        let open = search + line[search..].find('[')?;
        let close = open + line[open..].find(']')?;
        let inner = &line[open + 1..close];
        if !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_digit()) {
            break (open, close + 1);
        }
        search = close;
    };
    let task = line[..task_end].trim_end();
    let tid = task.rsplit_once('-')?.1.parse().ok()?;
    let tail = &line[after..];
    // Tokens: optional flags, "secs.usecs:", "event:", then the event's text.
    let mut rest = tail;
    let mut ts = None;
    while let Some(tok) = next_token(&mut rest) {
        if let Some(t) = tok.strip_suffix(':').and_then(parse_secs) {
            ts = Some(t);
            break;
        }
    }
    let ts = ts?;
    let ev = next_token(&mut rest)?.strip_suffix(':')?;
    Some(KernelLine {
        tid,
        ts,
        event: ev,
        rest: rest.trim(),
    })
}

fn next_token<'a>(s: &mut &'a str) -> Option<&'a str> {
    let t = s.trim_start();
    if t.is_empty() {
        return None;
    }
    let end = t.find(char::is_whitespace).unwrap_or(t.len());
    *s = &t[end..];
    Some(&t[..end])
}

/// "12.345678" seconds to nanoseconds, exactly.
fn parse_secs(s: &str) -> Option<u64> {
    let (a, b) = s.split_once('.')?;
    if b.is_empty() || b.len() > 9 || !b.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = a.parse().ok()?;
    let frac: u64 = b.parse().ok()?;
    Some(secs * 1_000_000_000 + frac * 10u64.pow(9 - b.len() as u32))
}

/// The device printed in an event's text ("dev 259:0" or ext4's "dev 259,0").
fn text_dev(rest: &str) -> Option<(u32, u32)> {
    let i = rest.find("dev ")?;
    let t = rest[i + 4..].split_whitespace().next()?;
    let (a, b) = t.split_once([':', ','])?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// One daxtrace JSON Lines event, as far as the comparison needs it.
#[derive(Debug, Clone, Deserialize)]
pub struct DxEvent {
    pub ts: u64,
    #[serde(default)]
    pub tid: u32,
    pub kind: String,
    #[serde(default)]
    pub probe: Option<String>,
    #[serde(default)]
    pub inferred: bool,
    #[serde(default)]
    pub count: u64,
    /// The fault id an event carries (`null` or absent outside a fault).
    #[serde(default)]
    pub fault: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Row {
    pub kernel: u64,
    pub daxtrace: u64,
    /// Function probes counted here in place of the tracepoint itself.
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub via: BTreeSet<String>,
}

/// The tracepoint that fires inside the kernel function a function probe
/// watches, once per call, with nothing else we trace in between (so the
/// per-task order is the same): fault entry/return against the fault's
/// first/last tracepoint, a successful `->iomap_begin` against the
/// `iomap_iter_dstmap` that `iomap_iter` records right after it.
pub fn counterpart(probe: &str) -> Option<&'static str> {
    Some(match probe {
        "func:dax_iomap_pte_fault" => "fs_dax:dax_pte_fault",
        "func_ret:dax_iomap_pte_fault" => "fs_dax:dax_pte_fault_done",
        "func:dax_iomap_pmd_fault" => "fs_dax:dax_pmd_fault",
        "func_ret:dax_iomap_pmd_fault" => "fs_dax:dax_pmd_fault_done",
        "func:dax_load_hole" => "fs_dax:dax_load_hole",
        "func:dax_pmd_load_hole" => "fs_dax:dax_pmd_load_hole",
        "func_ret:ext4_iomap_begin"
        | "func_ret:ext2_iomap_begin"
        | "func_ret:xfs_read_iomap_begin"
        | "func_ret:xfs_direct_write_iomap_begin"
        | "func_ret:xfs_dax_write_iomap_begin"
        | "func_ret:xfs_file_iomap_begin" => "iomap:iomap_iter_dstmap",
        _ => return None,
    })
}

/// What daxtrace attached, from its `--plan-json` (the plan as attached).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Attached {
    /// `category:event` attached through any tracepoint backend.
    pub tracepoints: BTreeSet<String>,
    /// Function probes attached, by the `probe` name their events carry.
    pub functions: BTreeSet<String>,
    /// "backend symbol" per entry used, for the report.
    pub used: Vec<String>,
}

impl Attached {
    pub fn from_plan(plan: &serde_json::Value) -> Result<Self, String> {
        let entries = plan["entries"]
            .as_array()
            .ok_or("the plan has no \"entries\" list")?;
        let mut a = Attached::default();
        for e in entries.iter().filter(|e| e["status"] == "used") {
            let (Some(step), Some(backend), Some(sym)) = (
                e["step"].as_str(),
                e["backend"].as_str(),
                e["symbol"].as_str(),
            ) else {
                return Err(format!("a plan entry lacks step/backend/symbol: {e}"));
            };
            a.used.push(format!("{backend} {sym}"));
            match backend {
                "fentry" | "kprobe" => {
                    // Return-side steps carry the return probe's name.
                    let side = if matches!(step, "fault_end" | "lookup") {
                        "func_ret"
                    } else {
                        "func"
                    };
                    a.functions.insert(format!("{side}:{sym}"));
                }
                _ => {
                    a.tracepoints.insert(sym.to_string());
                }
            }
        }
        Ok(a)
    }

    /// Tracepoints of `all` this attach set is compared on.
    fn compared<'a>(&self, all: &[&'a str]) -> BTreeSet<&'a str> {
        all.iter()
            .copied()
            .filter(|tp| {
                self.tracepoints.contains(*tp)
                    || self.functions.iter().any(|f| counterpart(f) == Some(*tp))
            })
            .collect()
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Comparison {
    /// Per tracepoint (`category:event`).
    pub rows: BTreeMap<String, Row>,
    /// daxtrace events by kind (`fault_begin`, ...), inside the window.
    pub kinds: BTreeMap<String, u64>,
    pub inferred_inserts: u64,
    /// Derived events (`Probe::derived`: the write(2) teardowns reported at
    /// the writer's next `iomap_iter`), counted apart like inferred inserts.
    pub derived: u64,
    /// Function-probe events with no tracepoint counterpart, by probe.
    pub function_only: BTreeMap<String, u64>,
    /// Kernel counts of tracepoints daxtrace did not attach on this backend.
    pub not_attached: BTreeMap<String, u64>,
    /// Sum of daxtrace's `lost` counts (anywhere in its output).
    pub lost: u64,
    pub window_ns: (u64, u64),
    /// |daxtrace ts - kernel ts| over events matched by order within a task:
    /// the median and the largest.
    pub median_skew_ns: u64,
    pub max_skew_ns: u64,
    pub tasks_compared: usize,
    /// Lookups, hole loads and inserts checked for their fault id: inside a
    /// task's fault (between its begin and end) the fault's, outside none.
    pub fault_ids_checked: u64,
    /// Every way the two records disagree; empty means they agree.
    pub disagreements: Vec<String>,
}

impl Comparison {
    #[cfg(test)]
    pub fn agrees(&self) -> bool {
        self.disagreements.is_empty()
    }

    pub fn kernel(&self, tp: &str) -> u64 {
        self.rows.get(tp).map_or(0, |r| r.kernel)
    }
}

/// Every lookup, hole load and insert of a task between its fault's begin and
/// end carries that fault's id, and none outside one carries an id (the
/// programs keep each task's fault context: a stale or missing one shows
/// here). Skipped when events were lost: a lost begin or end would show too.
fn check_fault_ids(events: &[DxEvent], c: &mut Comparison) {
    let mut open: BTreeMap<u32, Option<u64>> = BTreeMap::new();
    let (mut wrong, mut first) = (0u64, None);
    let mut order: Vec<&DxEvent> = events.iter().collect();
    order.sort_by_key(|e| e.ts);
    for e in order {
        match e.kind.as_str() {
            "fault_begin" => {
                open.insert(e.tid, e.fault);
            }
            "fault_end" => {
                open.remove(&e.tid);
            }
            "map_blocks" | "load_hole" | "insert_mapping" => {
                c.fault_ids_checked += 1;
                let want = open.get(&e.tid).copied().flatten();
                if e.fault.filter(|&f| f != 0) != want {
                    wrong += 1;
                    first.get_or_insert_with(|| {
                        format!(
                            "{} of task {} at {} carries fault {:?}, expected {:?}",
                            e.kind, e.tid, e.ts, e.fault, want
                        )
                    });
                }
            }
            _ => {}
        }
    }
    if let Some(f) = first {
        c.disagreements.push(format!(
            "{wrong} event(s) carry the wrong fault id (first: {f})"
        ));
    }
}

/// A median distance above this means the two clocks are not the same
/// (trace_clock not `mono`). Single events may be much further apart: under
/// TCG on a busy host a vCPU can stall between the tracepoint's ftrace
/// callback and its BPF program (up to 0.1 s was seen); the median stays at
/// microseconds.
const MAX_MEDIAN_SKEW_NS: u64 = 1_000_000;

/// Compare a kernel trace with daxtrace's events. `dev` keeps only kernel
/// events of that device; `tracepoints` are the `category:event` names the
/// kernel's trace recorded (it names events without category); `attached`,
/// when known, what daxtrace attached (else: all of `tracepoints`).
pub fn compare(
    kernel_trace: &str,
    events: &[DxEvent],
    dev: (u32, u32),
    tracepoints: &[&str],
    attached: Option<&Attached>,
) -> Comparison {
    let mut c = Comparison::default();
    let compared: BTreeSet<&str> = attached.map_or_else(
        || tracepoints.iter().copied().collect(),
        |a| a.compared(tracepoints),
    );
    let by_name: BTreeMap<&str, &str> = tracepoints
        .iter()
        .map(|tp| (tp.split_once(':').map_or(*tp, |x| x.1), *tp))
        .collect();

    // Kernel side, in its own (timestamp) order.
    let mut start = None;
    let mut end = None;
    let mut kseq: BTreeMap<u32, Vec<(&str, u64)>> = BTreeMap::new();
    for line in kernel_trace.lines() {
        let Some(k) = parse_kernel_line(line) else {
            continue;
        };
        if k.event == "tracing_mark_write" {
            match k.rest {
                "lab-start" => start = Some(k.ts),
                "lab-end" => end = Some(k.ts),
                _ => {}
            }
            continue;
        }
        let Some(tp) = by_name.get(k.event) else {
            continue;
        };
        if start.is_none() || end.is_some() || text_dev(k.rest).is_some_and(|d| d != dev) {
            continue;
        }
        if !compared.contains(tp) {
            *c.not_attached.entry((*tp).to_string()).or_default() += 1;
            continue;
        }
        c.rows.entry((*tp).to_string()).or_default().kernel += 1;
        kseq.entry(k.tid).or_default().push((tp, k.ts));
    }
    let (Some(start), Some(end)) = (start, end) else {
        c.disagreements.push(
            "the kernel trace lacks the lab-start/lab-end markers (was the trace cut short?)"
                .into(),
        );
        return c;
    };
    // Markers print microseconds: the true time is up to 999 ns later.
    let (lo, hi) = (start, end + 999);
    c.window_ns = (lo, hi);

    let mut dseq: BTreeMap<u32, Vec<(&str, u64)>> = BTreeMap::new();
    let mut unknown = 0u64;
    for e in events {
        if e.kind == "lost" {
            c.lost += e.count;
            continue;
        }
        if e.ts < lo || e.ts > hi {
            continue;
        }
        *c.kinds.entry(e.kind.clone()).or_default() += 1;
        if e.inferred {
            c.inferred_inserts += 1;
            continue;
        }
        if e.probe.as_deref().is_some_and(is_derived) {
            c.derived += 1;
            continue;
        }
        let probe = e.probe.as_deref().unwrap_or("");
        let direct = compared.get(probe).copied();
        let via = counterpart(probe).and_then(|tp| compared.get(tp).copied());
        match (direct, via) {
            (Some(tp), _) => {
                c.rows.entry(tp.to_string()).or_default().daxtrace += 1;
                dseq.entry(e.tid).or_default().push((tp, e.ts));
            }
            (None, Some(tp)) => {
                let r = c.rows.entry(tp.to_string()).or_default();
                r.daxtrace += 1;
                if !r.via.contains(probe) {
                    r.via.insert(probe.to_string());
                }
                dseq.entry(e.tid).or_default().push((tp, e.ts));
            }
            _ if probe.starts_with("func") => {
                *c.function_only.entry(probe.to_string()).or_default() += 1
            }
            _ => unknown += 1,
        }
    }
    if unknown > 0 {
        c.disagreements.push(format!("{unknown} daxtrace event(s) name a tracepoint that is not compared (or none) in \"probe\""));
    }
    if c.lost == 0 {
        check_fault_ids(events, &mut c);
    }

    // Counts: equal, or short by exactly what daxtrace says it lost.
    let mut short = 0u64;
    for (tp, r) in &c.rows {
        if r.daxtrace > r.kernel {
            c.disagreements.push(format!(
                "{tp}: daxtrace has {} events, the kernel only {}",
                r.daxtrace, r.kernel
            ));
        } else {
            short += r.kernel - r.daxtrace;
        }
    }
    if short != c.lost {
        let detail: Vec<String> = c
            .rows
            .iter()
            .filter(|(_, r)| r.kernel != r.daxtrace)
            .map(|(tp, r)| format!("{tp} kernel {} daxtrace {}", r.kernel, r.daxtrace))
            .collect();
        c.disagreements.push(format!(
            "daxtrace is short by {short} event(s) but reported {} lost ({})",
            c.lost,
            if detail.is_empty() {
                "counts differ".to_string()
            } else {
                detail.join(", ")
            }
        ));
    }

    // Order: with nothing lost, each task's sequences must match one to one.
    if c.lost == 0 {
        let mut skews = Vec::new();
        for (tid, ks) in &kseq {
            let mut ds = dseq.remove(tid).unwrap_or_default();
            ds.sort_by_key(|&(_, ts)| ts);
            c.tasks_compared += 1;
            if let Some(i) = (0..ks.len().max(ds.len()))
                .find(|&i| ks.get(i).map(|x| x.0) != ds.get(i).map(|x| x.0))
            {
                c.disagreements.push(format!(
                    "task {tid}: event {i} is {} in the kernel's trace but {} in daxtrace's (by timestamp)",
                    ks.get(i).map_or("nothing", |x| x.0),
                    ds.get(i).map_or("nothing", |x| x.0)
                ));
                continue;
            }
            for (k, d) in ks.iter().zip(&ds) {
                // Kernel text has microseconds; compare at that resolution.
                skews.push((d.1 / 1000 * 1000).abs_diff(k.1));
            }
        }
        skews.sort_unstable();
        c.median_skew_ns = skews.get(skews.len() / 2).copied().unwrap_or(0);
        c.max_skew_ns = skews.last().copied().unwrap_or(0);
        for (tid, ds) in &dseq {
            c.disagreements.push(format!(
                "task {tid}: {} daxtrace event(s) the kernel's trace does not have",
                ds.len()
            ));
        }
        if c.median_skew_ns > MAX_MEDIAN_SKEW_NS {
            c.disagreements.push(format!(
                "timestamps differ by {:.3} ms (median) between the traces (is the guest's trace_clock mono?)",
                c.median_skew_ns as f64 / 1e6
            ));
        }
    }
    c
}

/// Records with no kernel event of their own (see `Probe::derived`).
fn is_derived(tp: &str) -> bool {
    tracer_common::Probe::ALL
        .iter()
        .any(|p| p.derived() && p.tracepoint() == tp)
}

/// Parse a JSON Lines file of daxtrace events; bad lines are errors with their number.
pub fn parse_events(text: &str) -> Result<Vec<DxEvent>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}

/// Kernel-side loss: "overrun" and "dropped events" in the per-CPU stats.
pub fn kernel_overrun(stats: &str) -> u64 {
    stats
        .lines()
        .filter_map(|l| {
            l.strip_prefix("overrun: ")
                .or_else(|| l.strip_prefix("dropped events: "))
        })
        .filter_map(|v| v.trim().parse::<u64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TPS: &[&str] = &[
        "fs_dax:dax_pte_fault",
        "fs_dax:dax_pte_fault_done",
        "fs_dax:dax_load_hole",
        "iomap:iomap_iter_dstmap",
    ];
    const DEV: (u32, u32) = (259, 0);

    const KERNEL: &str = "\
# tracer: nop
#
#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION
#              | |         |   |||||     |         |
              sh-80      [000] .....    10.000000: tracing_mark_write: lab-start
    lab-workload-95      [001] .....    10.000100: dax_pte_fault: dev 259:0 ino 0xc shared READ address 0x7f0000 pgoff 0x3
    lab-workload-95      [001] .....    10.000102: iomap_iter_dstmap: dev 259:0 ino 0xc bdev 259:0 addr -1 offset 0x3000 length 0x1000 type HOLE flags 0x0
    lab-workload-95      [001] .....    10.000104: dax_load_hole: dev 259:0 ino 0xc shared READ address 0x7f0000 pgoff 0x3
    lab-workload-95      [001] .....    10.000106: dax_pte_fault_done: dev 259:0 ino 0xc shared READ address 0x7f0000 pgoff 0x3 NOPAGE
 kworker/u4:1-12     [000] .....    10.000200: iomap_iter_dstmap: dev 8:1 ino 0x5 offset 0x0 length 0x1000 type MAPPED
    lab-workload-96      [000] d..1.    10.000300: dax_pte_fault: dev 259:0 ino 0xc shared WRITE address 0x7f1000 pgoff 0x4
    lab-workload-96      [000] d..1.    10.000305: dax_pte_fault_done: dev 259:0 ino 0xc shared WRITE address 0x7f1000 pgoff 0x4 NOPAGE
              sh-80      [000] .....    10.001000: tracing_mark_write: lab-end
";

    fn ev(ts: u64, tid: u32, kind: &str, probe: &str) -> DxEvent {
        DxEvent {
            ts,
            tid,
            kind: kind.into(),
            probe: Some(probe.into()),
            inferred: false,
            count: 0,
            fault: None,
        }
    }

    /// daxtrace's view of KERNEL: same events, stamped a few hundred ns later.
    fn good() -> Vec<DxEvent> {
        vec![
            ev(10_000_100_400, 95, "fault_begin", "fs_dax:dax_pte_fault"),
            ev(10_000_102_300, 95, "map_blocks", "iomap:iomap_iter_dstmap"),
            ev(10_000_104_200, 95, "load_hole", "fs_dax:dax_load_hole"),
            ev(10_000_106_100, 95, "fault_end", "fs_dax:dax_pte_fault_done"),
            ev(10_000_300_500, 96, "fault_begin", "fs_dax:dax_pte_fault"),
            DxEvent {
                inferred: true,
                ..ev(
                    10_000_305_300,
                    96,
                    "insert_mapping",
                    "fs_dax:dax_pte_fault_done",
                )
            },
            ev(10_000_305_400, 96, "fault_end", "fs_dax:dax_pte_fault_done"),
            // Outside the window: ignored on both sides.
            ev(9_000_000_000, 95, "fault_begin", "fs_dax:dax_pte_fault"),
        ]
    }

    #[test]
    fn parses_trace_lines() {
        let l = parse_kernel_line("    lab-workload-95      [001] .....    10.000102: iomap_iter_dstmap: dev 259:0 ino 0xc").unwrap();
        assert_eq!(
            (l.tid, l.ts, l.event, l.rest),
            (95, 10_000_102_000, "iomap_iter_dstmap", "dev 259:0 ino 0xc")
        );
        // No flags column, a comm with spaces, dashes and brackets.
        let l = parse_kernel_line(" my [x]-prog-7 [003] 5.5: ext4_punch_hole: dev 259,0 ino 12")
            .unwrap();
        assert_eq!(
            (l.tid, l.ts, l.event),
            (7, 5_500_000_000, "ext4_punch_hole")
        );
        assert_eq!(text_dev(l.rest), Some((259, 0)));
        assert!(parse_kernel_line("# tracer: nop").is_none());
        assert!(parse_kernel_line("garbage").is_none());
    }

    #[test]
    fn agreeing_traces_agree() {
        let c = compare(KERNEL, &good(), DEV, TPS, None);
        assert!(c.agrees(), "{:?}", c.disagreements);
        assert_eq!(c.kernel("fs_dax:dax_pte_fault"), 2);
        // The other device's iomap event is not counted.
        assert_eq!(
            (
                c.rows["iomap:iomap_iter_dstmap"].kernel,
                c.rows["iomap:iomap_iter_dstmap"].daxtrace
            ),
            (1, 1)
        );
        assert_eq!(c.inferred_inserts, 1);
        assert_eq!(c.tasks_compared, 2);
        assert!(
            c.max_skew_ns < 1000 && c.median_skew_ns <= c.max_skew_ns,
            "{}",
            c.max_skew_ns
        );
    }

    #[test]
    fn derived_write_teardowns_are_counted_apart() {
        let mut e = good();
        e.push(ev(10_000_400_000, 97, "invalidate", "iomap:iomap_iter"));
        let c = compare(KERNEL, &e, DEV, TPS, None);
        assert!(c.agrees(), "{:?}", c.disagreements);
        assert_eq!(c.derived, 1);
        // A tracepoint that is neither compared nor derived is still an error.
        e.push(ev(10_000_400_001, 97, "invalidate", "ext4:ext4_punch_hole"));
        assert!(!compare(KERNEL, &e, DEV, TPS, None).agrees());
    }

    #[test]
    fn a_wrong_or_stale_fault_id_is_a_mismatch() {
        let with = |mut e: Vec<DxEvent>, ids: &[(usize, u64)]| {
            for &(i, f) in ids {
                e[i].fault = Some(f);
            }
            e
        };
        // Task 95's fault 7: begin, lookup, hole load, end all carry it.
        let ok = with(good(), &[(0, 7), (1, 7), (2, 7), (3, 7)]);
        let c = compare(KERNEL, &ok, DEV, TPS, None);
        assert!(c.agrees(), "{:?}", c.disagreements);
        assert!(c.fault_ids_checked >= 2);
        // The hole load without its fault's id.
        let bad = with(good(), &[(0, 7), (1, 7), (3, 7)]);
        let c = compare(KERNEL, &bad, DEV, TPS, None);
        assert!(
            c.disagreements.iter().any(|d| d.contains("wrong fault id")),
            "{:?}",
            c.disagreements
        );
        // An event after the fault's end still carrying its id (a stale context).
        let mut stale = ok.clone();
        stale.push(DxEvent {
            fault: Some(7),
            ..ev(10_000_107_000, 95, "map_blocks", "iomap:iomap_iter_dstmap")
        });
        let c = compare(KERNEL, &stale, DEV, TPS, None);
        assert!(
            c.disagreements.iter().any(|d| d.contains("wrong fault id")),
            "{:?}",
            c.disagreements
        );
    }

    #[test]
    fn a_missing_event_is_a_mismatch() {
        let mut e = good();
        e.remove(2); // daxtrace lost a load_hole without saying so
        let c = compare(KERNEL, &e, DEV, TPS, None);
        assert!(!c.agrees());
        assert!(
            c.disagreements.iter().any(|d| d.contains("short by 1")
                && d.contains("fs_dax:dax_load_hole kernel 1 daxtrace 0")),
            "{:?}",
            c.disagreements
        );
    }

    #[test]
    fn an_extra_event_is_a_mismatch() {
        let mut e = good();
        e.push(ev(
            10_000_500_000,
            96,
            "fault_begin",
            "fs_dax:dax_pte_fault",
        ));
        let c = compare(KERNEL, &e, DEV, TPS, None);
        assert!(
            c.disagreements
                .iter()
                .any(|d| d.contains("daxtrace has 3 events, the kernel only 2")),
            "{:?}",
            c.disagreements
        );
    }

    #[test]
    fn reported_loss_covers_exactly_the_shortfall() {
        let mut e = good();
        e.remove(2);
        e.push(DxEvent {
            ts: 10_000_900_000,
            tid: 0,
            kind: "lost".into(),
            probe: None,
            inferred: false,
            count: 1,
            fault: None,
        });
        let c = compare(KERNEL, &e, DEV, TPS, None);
        assert!(c.agrees(), "{:?}", c.disagreements);
        assert_eq!(c.lost, 1);
        // Claiming more loss than the shortfall is a disagreement too.
        e.last_mut().unwrap().count = 2;
        assert!(!compare(KERNEL, &e, DEV, TPS, None).agrees());
    }

    #[test]
    fn a_misordered_trace_is_a_mismatch() {
        // Same counts, but daxtrace stamps the hole load before the lookup.
        let mut e = good();
        e[2].ts = 10_000_101_000;
        let c = compare(KERNEL, &e, DEV, TPS, None);
        assert!(c.rows.values().all(|r| r.kernel == r.daxtrace));
        assert!(
            c.disagreements.iter().any(|d| d.starts_with("task 95: event 1 is iomap:iomap_iter_dstmap in the kernel's trace but fs_dax:dax_load_hole")),
            "{:?}",
            c.disagreements
        );
    }

    #[test]
    fn a_wrong_clock_is_a_mismatch() {
        let mut e = good();
        for x in &mut e {
            x.ts += 3_000_000_000; // realtime-ish offset: all outside the window
        }
        let c = compare(KERNEL, &e, DEV, TPS, None);
        assert!(!c.agrees());
    }

    #[test]
    fn another_clock_is_a_mismatch_even_inside_the_window() {
        // The window is wide; every daxtrace stamp is 5 ms late (another clock).
        let k = KERNEL.replace(
            "10.001000: tracing_mark_write: lab-end",
            "10.100000: tracing_mark_write: lab-end",
        );
        let mut e = good();
        assert!(compare(&k, &e, DEV, TPS, None).agrees());
        for x in &mut e {
            x.ts += 5_000_000;
        }
        let c = compare(&k, &e, DEV, TPS, None);
        assert!(c.rows.values().all(|r| r.kernel == r.daxtrace));
        assert!(
            c.disagreements.iter().any(|d| d.contains("(median)")),
            "{:?}",
            c.disagreements
        );
        // One stalled event alone is noise, not a clock.
        let mut e = good();
        e[3].ts += 50_000_000;
        assert!(compare(&k, &e, DEV, TPS, None).agrees());
    }

    #[test]
    fn wrong_task_is_a_mismatch() {
        let mut e = good();
        e[4].tid = 97;
        let c = compare(KERNEL, &e, DEV, TPS, None);
        assert!(
            c.disagreements.iter().any(|d| d.starts_with("task 97:")),
            "{:?}",
            c.disagreements
        );
    }

    #[test]
    fn missing_markers_fail() {
        let k: String = KERNEL
            .lines()
            .filter(|l| !l.contains("lab-end"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(!compare(&k, &good(), DEV, TPS, None).agrees());
    }

    /// `--backend kprobe` on 6.12: faults and lookups through function
    /// probes, the hole load through its tracepoint, inserts at
    /// `dax_insert_entry`; `ext4_ext_map_blocks_exit` not attached.
    fn function_run() -> (String, Vec<DxEvent>, Attached) {
        let k = KERNEL.replace(
            " kworker/u4:1-12 ",
            "           <...>-95      [001] .....    10.000103: ext4_ext_map_blocks_exit: dev 259,0 ino 12 flags 0 lblk 3 len 1\n kworker/u4:1-12 ",
        );
        let plan = serde_json::json!({"entries": [
            {"step": "fault_begin", "backend": "kprobe", "symbol": "dax_iomap_pte_fault", "status": "used"},
            {"step": "fault_begin", "backend": "tracepoint", "symbol": "fs_dax:dax_pte_fault", "status": "available"},
            {"step": "fault_end", "backend": "kprobe", "symbol": "dax_iomap_pte_fault", "status": "used"},
            {"step": "lookup", "backend": "kprobe", "symbol": "ext4_iomap_begin", "status": "used"},
            {"step": "hole_load", "backend": "tp_btf", "symbol": "fs_dax:dax_load_hole", "status": "used"},
            {"step": "insert", "backend": "kprobe", "symbol": "dax_insert_entry", "status": "used"},
            {"step": "lookup", "backend": "fentry", "symbol": "ext4_iomap_begin", "status": "unsupported", "detail": "in module ext4's BTF"},
        ]});
        let a = Attached::from_plan(&plan).unwrap();
        let f = |ts, tid, kind: &str, probe: &str| ev(ts, tid, kind, probe);
        let e = vec![
            f(
                10_000_099_900,
                95,
                "fault_begin",
                "func:dax_iomap_pte_fault",
            ),
            f(
                10_000_102_000,
                95,
                "map_blocks",
                "func_ret:ext4_iomap_begin",
            ),
            f(10_000_104_200, 95, "load_hole", "fs_dax:dax_load_hole"),
            f(
                10_000_106_300,
                95,
                "fault_end",
                "func_ret:dax_iomap_pte_fault",
            ),
            f(
                10_000_299_900,
                96,
                "fault_begin",
                "func:dax_iomap_pte_fault",
            ),
            f(
                10_000_303_000,
                96,
                "insert_mapping",
                "func:dax_insert_entry",
            ),
            f(
                10_000_305_400,
                96,
                "fault_end",
                "func_ret:dax_iomap_pte_fault",
            ),
        ];
        (k, e, a)
    }

    const TPS_EXT4: &[&str] = &[
        "fs_dax:dax_pte_fault",
        "fs_dax:dax_pte_fault_done",
        "fs_dax:dax_load_hole",
        "iomap:iomap_iter_dstmap",
        "ext4:ext4_ext_map_blocks_exit",
    ];

    #[test]
    fn function_probes_are_compared_with_their_tracepoints() {
        let (k, e, a) = function_run();
        assert!(
            a.functions.contains("func_ret:ext4_iomap_begin")
                && a.functions.contains("func:dax_iomap_pte_fault"),
            "{a:?}"
        );
        assert_eq!(
            a.tracepoints.iter().collect::<Vec<_>>(),
            ["fs_dax:dax_load_hole"]
        );
        let c = compare(&k, &e, DEV, TPS_EXT4, Some(&a));
        assert!(c.agrees(), "{:?}", c.disagreements);
        let r = &c.rows["fs_dax:dax_pte_fault"];
        assert_eq!((r.kernel, r.daxtrace), (2, 2));
        assert!(r.via.contains("func:dax_iomap_pte_fault"));
        assert_eq!(
            c.rows["iomap:iomap_iter_dstmap"]
                .via
                .iter()
                .collect::<Vec<_>>(),
            ["func_ret:ext4_iomap_begin"]
        );
        assert_eq!(c.function_only.get("func:dax_insert_entry"), Some(&1));
        // The ext4 lookup tracepoint was not attached: reported, not compared.
        assert_eq!(
            c.not_attached.get("ext4:ext4_ext_map_blocks_exit"),
            Some(&1)
        );
        assert!(!c.rows.contains_key("ext4:ext4_ext_map_blocks_exit"));
        assert_eq!(c.tasks_compared, 2);
        // Without the plan every recorded tracepoint is compared: that lookup is then missing.
        assert!(!compare(&k, &e, DEV, TPS_EXT4, None).agrees());
    }

    #[test]
    fn a_missed_return_probe_is_a_mismatch() {
        // A kretprobe that ran out of instances misses a return silently.
        let (k, mut e, a) = function_run();
        e.remove(3);
        let c = compare(&k, &e, DEV, TPS_EXT4, Some(&a));
        assert!(
            c.disagreements
                .iter()
                .any(|d| d.contains("fs_dax:dax_pte_fault_done kernel 2 daxtrace 1")),
            "{:?}",
            c.disagreements
        );
        // A function probe the plan does not list is not counted for a tracepoint.
        let (k, mut e, mut a) = function_run();
        a.functions.remove("func_ret:ext4_iomap_begin");
        e.retain(|x| x.kind != "map_blocks");
        let c = compare(&k, &e, DEV, TPS_EXT4, Some(&a));
        assert!(c.agrees(), "{:?}", c.disagreements);
        assert_eq!(c.not_attached.get("iomap:iomap_iter_dstmap"), Some(&1));
    }

    #[test]
    fn plans_without_entries_are_rejected() {
        assert!(Attached::from_plan(&serde_json::json!({"kernel": {}})).is_err());
        assert!(
            Attached::from_plan(&serde_json::json!({"entries": [{"status": "used"}]})).is_err()
        );
    }

    #[test]
    fn kernel_overrun_is_counted() {
        assert_eq!(
            kernel_overrun(
                "entries: 5\noverrun: 3\ncommit overrun: 0\ndropped events: 2\noverrun: 0\n"
            ),
            5
        );
    }

    #[test]
    fn events_parse_with_line_numbers() {
        let ok = parse_events("{\"ts\":1,\"kind\":\"lost\",\"count\":4}\n\n{\"ts\":2,\"tid\":3,\"kind\":\"fault_begin\",\"probe\":\"fs_dax:dax_pte_fault\"}\n").unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[0].count, 4);
        let err = parse_events("{\"ts\":1,\"kind\":\"lost\"}\nnot json\n").unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
    }
}
