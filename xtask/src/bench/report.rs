//! Numbers out of the runs: spreads (min/median/max over rounds), the cost a
//! tracer adds per event (paired with the same round's untraced run, so a
//! slow minute of the shared machine hits both sides), the table and the
//! JSON file.

use serde::Serialize;

use super::tools::{ToolRun, Tracer};
use super::workload::Timing;

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(xs: &[f64]) -> Option<Self> {
        let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Self {
            min: v[0],
            median,
            max: v[n - 1],
        })
    }

    fn show(s: Option<Self>, prec: usize) -> String {
        s.map_or_else(
            || "-".into(),
            |s| format!("{:.p$} {:.p$} {:.p$}", s.min, s.median, s.max, p = prec),
        )
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub round: u32,
    pub timing: Timing,
    pub tool: Option<ToolRun>,
}

impl Sample {
    #[allow(clippy::cast_precision_loss, reason = "ns per op for a report")]
    fn cpu_per_op(&self) -> f64 {
        self.timing.cpu_ns as f64 / self.timing.ops.max(1) as f64
    }

    #[allow(clippy::cast_precision_loss, reason = "as above")]
    fn wall_per_op(&self) -> f64 {
        self.timing.wall_ns as f64 / self.timing.ops.max(1) as f64
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub cpu_ns_per_op: Option<Spread>,
    pub wall_ns_per_op: Option<Spread>,
    /// (traced - untraced of the same round) / events per op, thread CPU time.
    pub added_cpu_ns_per_event: Option<Spread>,
    /// The same on wall time (includes the tool's competition for the CPUs).
    pub added_wall_ns_per_event: Option<Spread>,
    /// (traced - untraced of the same round) CPU per event the tool itself
    /// saw: trace-cmd and bpftrace also see the `iomap_iter` hits daxtrace
    /// consumes without an event, so per workload event favours daxtrace.
    pub added_cpu_ns_per_seen: Option<Spread>,
    pub ready_s: Option<Spread>,
    /// What the tool itself says: daxtrace's "attached in", bpftrace's "Attaching" line.
    pub reported_ready_s: Option<Spread>,
    /// The tool's own CPU per event it saw.
    pub tool_cpu_ns_per_event: Option<Spread>,
    /// Events the tool saw per op (other processes' events included).
    pub seen_per_op: Option<Spread>,
    pub lost: u64,
    pub file_bytes_per_event: Option<Spread>,
    pub data_bytes_per_event: Option<Spread>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ConfigResult {
    pub name: String,
    pub tracer: Tracer,
    pub command: String,
    pub samples: Vec<Sample>,
    pub summary: Summary,
}

/// Fill every config's summary; `configs[untraced]` is the baseline and
/// `events_per_op` the workload's own events per op (from the calibration).
#[allow(clippy::cast_precision_loss, reason = "report figures")]
pub fn summarize(configs: &mut [ConfigResult], events_per_op: f64) {
    let base: Vec<(u32, f64, f64)> = configs
        .iter()
        .find(|c| c.tracer == Tracer::Untraced)
        .map(|c| {
            c.samples
                .iter()
                .map(|s| (s.round, s.cpu_per_op(), s.wall_per_op()))
                .collect()
        })
        .unwrap_or_default();
    for c in configs.iter_mut() {
        let s = &c.samples;
        let col = |f: &dyn Fn(&Sample) -> Option<f64>| {
            Spread::of(&s.iter().filter_map(f).collect::<Vec<_>>())
        };
        let paired = |wall: bool| {
            let v: Vec<f64> = s
                .iter()
                .filter_map(|x| {
                    let b = base.iter().find(|b| b.0 == x.round)?;
                    let (t, u) = if wall {
                        (x.wall_per_op(), b.2)
                    } else {
                        (x.cpu_per_op(), b.1)
                    };
                    (events_per_op > 0.0).then(|| (t - u) / events_per_op)
                })
                .collect();
            Spread::of(&v)
        };
        let tool =
            |f: &dyn Fn(&ToolRun) -> Option<f64>| col(&|x: &Sample| x.tool.as_ref().and_then(f));
        c.summary = Summary {
            cpu_ns_per_op: col(&|x| Some(x.cpu_per_op())),
            wall_ns_per_op: col(&|x| Some(x.wall_per_op())),
            added_cpu_ns_per_event: if c.tracer == Tracer::Untraced {
                None
            } else {
                paired(false)
            },
            added_wall_ns_per_event: if c.tracer == Tracer::Untraced {
                None
            } else {
                paired(true)
            },
            added_cpu_ns_per_seen: col(&|x| {
                let b = base.iter().find(|b| b.0 == x.round)?;
                let seen = x.tool.as_ref().filter(|t| t.events > 0)?.events as f64
                    / x.timing.ops.max(1) as f64;
                Some((x.cpu_per_op() - b.1) / seen)
            }),
            ready_s: tool(&|t| Some(t.ready_s)),
            reported_ready_s: tool(&|t| t.reported_s),
            tool_cpu_ns_per_event: tool(&|t| {
                (t.events > 0).then(|| t.tool_cpu_ns as f64 / t.events as f64)
            }),
            seen_per_op: col(&|x| {
                x.tool
                    .as_ref()
                    .filter(|t| t.events > 0)
                    .map(|t| t.events as f64 / x.timing.ops.max(1) as f64)
            }),
            lost: s
                .iter()
                .filter_map(|x| x.tool.as_ref())
                .map(|t| t.lost)
                .sum(),
            file_bytes_per_event: tool(&|t| Some(t.file_bytes? as f64 / t.events.max(1) as f64)),
            data_bytes_per_event: tool(&|t| Some(t.data_bytes? as f64 / t.events.max(1) as f64)),
        };
    }
}

/// The overhead table of one workload.
pub fn table(configs: &[ConfigResult]) -> String {
    let mut out = String::new();
    let w = configs
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(8)
        .max(8);
    out += &format!(
        "{:<w$}  {:>23}  {:>23}  {:>23}  {:>23}  {:>12}  {:>17}  {:>9}  {:>7}  {:>5}\n",
        "config",
        "cpu ns/op min/med/max",
        "wall ns/op min/med/max",
        "+cpu ns/event min/med/max",
        "+wall ns/event",
        "+cpu ns/seen",
        "ready s min/med/max",
        "tool ns/ev",
        "seen/op",
        "lost"
    );
    for c in configs {
        let s = &c.summary;
        out += &format!(
            "{:<w$}  {:>23}  {:>23}  {:>23}  {:>23}  {:>12}  {:>17}  {:>9}  {:>7}  {:>5}\n",
            c.name,
            Spread::show(s.cpu_ns_per_op, 0),
            Spread::show(s.wall_ns_per_op, 0),
            Spread::show(s.added_cpu_ns_per_event, 0),
            Spread::show(s.added_wall_ns_per_event, 0),
            s.added_cpu_ns_per_seen
                .map_or_else(|| "-".into(), |x| format!("{:.0}", x.median)),
            Spread::show(s.ready_s, 2),
            s.tool_cpu_ns_per_event
                .map_or_else(|| "-".into(), |x| format!("{:.0}", x.median)),
            s.seen_per_op
                .map_or_else(|| "-".into(), |x| format!("{:.3}", x.median)),
            if c.tracer == Tracer::Untraced {
                "-".into()
            } else {
                s.lost.to_string()
            },
        );
    }
    out
}

/// `--bpf-stats`: per config and program, runs per op and ns per run
/// (min/median/max over rounds); empty when no run has program figures.
pub fn prog_table(configs: &[ConfigResult], ops: u64) -> String {
    use std::collections::BTreeMap;
    use std::fmt::Write as _;
    let mut out = String::new();
    for c in configs {
        let mut by_name: BTreeMap<&str, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
        for s in &c.samples {
            for p in s.tool.iter().flat_map(|t| &t.progs) {
                let e = by_name.entry(p.name.as_str()).or_default();
                #[allow(clippy::cast_precision_loss, reason = "runs per op for a report")]
                e.0.push(p.runs as f64 / ops.max(1) as f64);
                e.1.push(p.ns_per_run);
            }
        }
        if by_name.is_empty() {
            continue;
        }
        if out.is_empty() {
            out.push_str("  eBPF programs (kernel bpf_stats, --bpf-stats; the timings above include its accounting):\n");
        }
        for (name, (runs, ns)) in by_name {
            let _ = writeln!(
                out,
                "    {:<44} {:<16} {:>6} runs/op  ns/run {}",
                c.name,
                name,
                Spread::of(&runs).map_or_else(|| "-".into(), |s| format!("{:.2}", s.median)),
                Spread::show(Spread::of(&ns), 1)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::tools::DxMode;

    fn sample(round: u32, cpu_ns: u64, wall_ns: u64, tool: Option<ToolRun>) -> Sample {
        Sample {
            round,
            timing: Timing {
                ops: 1000,
                wall_ns,
                cpu_ns,
            },
            tool,
        }
    }

    #[test]
    fn spread_is_min_median_max() {
        assert_eq!(
            Spread::of(&[3.0, 1.0, 2.0]),
            Some(Spread {
                min: 1.0,
                median: 2.0,
                max: 3.0
            })
        );
        assert_eq!(
            Spread::of(&[4.0, 1.0, 2.0, 3.0]).map(|s| s.median),
            Some(2.5)
        );
        assert_eq!(Spread::of(&[]), None);
        assert_eq!(Spread::of(&[f64::NAN]), None);
    }

    #[test]
    fn added_cost_is_paired_by_round_and_per_event() {
        let tool = |events| {
            Some(ToolRun {
                events,
                tool_cpu_ns: 2_000_000,
                ready_s: 0.5,
                ..ToolRun::default()
            })
        };
        let mut cs = vec![
            ConfigResult {
                name: "untraced".into(),
                tracer: Tracer::Untraced,
                command: String::new(),
                // Round 1 is a slow minute of the machine: 1000 ns/op instead of 800.
                samples: vec![
                    sample(0, 800_000, 900_000, None),
                    sample(1, 1_000_000, 1_100_000, None),
                ],
                summary: Summary::default(),
            },
            ConfigResult {
                name: "daxtrace".into(),
                tracer: Tracer::Daxtrace {
                    mode: DxMode::Record,
                    backend: None,
                    before: false,
                },
                command: String::new(),
                samples: vec![
                    sample(0, 1_000_000, 1_300_000, tool(2000)),
                    sample(1, 1_200_000, 1_500_000, tool(2000)),
                ],
                summary: Summary::default(),
            },
            ConfigResult {
                name: "trace-cmd".into(),
                tracer: Tracer::TraceCmd,
                command: String::new(),
                // Sees 4 events per op where the workload makes 2 of daxtrace's.
                samples: vec![
                    sample(0, 1_000_000, 1_300_000, tool(4000)),
                    sample(1, 1_200_000, 1_500_000, tool(4000)),
                ],
                summary: Summary::default(),
            },
        ];
        summarize(&mut cs, 2.0);
        let t = &cs[2].summary;
        assert_eq!(t.added_cpu_ns_per_event.map(|s| s.median), Some(100.0));
        assert_eq!(t.added_cpu_ns_per_seen.map(|s| s.median), Some(50.0));
        let d = &cs[1].summary;
        // +200 ns/op in both rounds over 2 events per op: 100 ns/event, no spread
        // although the unpaired medians differ by the slow round.
        assert_eq!(
            d.added_cpu_ns_per_event,
            Some(Spread {
                min: 100.0,
                median: 100.0,
                max: 100.0
            })
        );
        assert_eq!(d.added_wall_ns_per_event.map(|s| s.median), Some(200.0));
        assert_eq!(d.tool_cpu_ns_per_event.map(|s| s.median), Some(1000.0));
        assert_eq!(d.seen_per_op.map(|s| s.median), Some(2.0));
        // It saw the workload's 2 events per op itself: 100 ns per event it saw too.
        assert_eq!(d.added_cpu_ns_per_seen.map(|s| s.median), Some(100.0));
        assert!(cs[0].summary.added_cpu_ns_per_event.is_none());
        let t = table(&cs);
        assert!(
            t.lines()
                .nth(2)
                .is_some_and(|l| l.starts_with("daxtrace") && l.contains("100 100 100")),
            "{t}"
        );
    }
}
