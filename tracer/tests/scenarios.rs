//! Scenario traces (tests/scenarios/*.jsonl) run through the real binary
//! (`daxtrace analyze --json`), compared with their expected findings; then
//! each again through the library with its events shuffled (seeded), which
//! must give the very same findings (the reorder window's promise).

use std::path::{Path, PathBuf};
use std::process::Command;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::Value;
use tracer::detect::Finding;
use tracer::event::Event;
use tracer::pipeline::{Pipeline, PipelineConfig, Sink};
use tracer::sink::jsonl::FindingLine;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios")
}

fn scenarios() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "jsonl")
                && !p.to_string_lossy().ends_with(".expected.jsonl")
        })
        .collect();
    v.sort();
    assert!(v.len() >= 20, "scenario files missing: {v:?}");
    v
}

fn expected(trace: &Path) -> Vec<Value> {
    let p = trace.with_extension("expected.jsonl");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut out = vec![];
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut v: Value = serde_json::from_str(line).unwrap();
        let o = v.as_object_mut().unwrap();
        let repeat = o.remove("repeat").map_or(1, |r| r.as_u64().unwrap());
        let from = o.remove("pgoff_from").map(|r| r.as_u64().unwrap());
        for i in 0..repeat {
            let mut x = v.clone();
            if let Some(f) = from {
                x["pgoff"] = (f + i).into();
            }
            out.push(x);
        }
    }
    out
}

fn analyze_json(args: &[&str]) -> (i32, Vec<Value>, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_daxtrace"))
        .arg("analyze")
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let findings = lines
        .iter()
        .filter(|v| v["kind"] == "finding")
        .cloned()
        .collect();
    let summary = lines
        .iter()
        .find(|v| v["kind"] == "summary")
        .cloned()
        .expect("a summary line");
    (
        out.status.code().unwrap(),
        findings,
        summary,
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn scenarios_give_their_expected_findings() {
    let mut failures = vec![];
    for trace in scenarios() {
        let name = trace.file_stem().unwrap().to_string_lossy().into_owned();
        let want = expected(&trace);
        let (code, got, summary, stderr) = analyze_json(&[trace.to_str().unwrap()]);
        let want_code = if want.is_empty() { 0 } else { 1 };
        if code != want_code {
            failures.push(format!("{name}: exit {code}, want {want_code} ({stderr})"));
        }
        if summary["findings"] != got.len() {
            failures.push(format!(
                "{name}: summary says {} findings, {} printed",
                summary["findings"],
                got.len()
            ));
        }
        if got.len() != want.len() {
            failures.push(format!(
                "{name}: {} findings, want {}: {got:?}",
                got.len(),
                want.len()
            ));
            continue;
        }
        for (g, w) in got.iter().zip(&want) {
            for (k, v) in w.as_object().unwrap() {
                if &g[k] != v {
                    failures.push(format!("{name}: {k} = {}, want {v} in {g}", g[k]));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

struct Collect(Vec<Finding>);
impl Sink for Collect {
    fn on_finding(&mut self, f: &Finding) {
        self.0.push(f.clone());
    }
}

fn run(events: &[Event]) -> Vec<Value> {
    let mut p = Pipeline::new(PipelineConfig::default());
    let mut c = Collect(vec![]);
    for e in events {
        p.push(*e, &mut c);
    }
    p.finish(&mut c);
    assert_eq!(p.stats().late, 0);
    let mut v: Vec<Value> =
        c.0.iter()
            .map(|f| serde_json::to_value(FindingLine::new(f)).unwrap())
            .collect();
    v.sort_by_key(ToString::to_string);
    v
}

#[test]
fn shuffled_scenarios_give_the_same_findings() {
    for trace in scenarios() {
        let events: Vec<Event> = tracer::source::open_any(&trace)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let base = run(&events);
        for seed in 0..12u64 {
            let mut ev = events.clone();
            ev.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
            assert_eq!(
                run(&ev),
                base,
                "{} shuffled with seed {seed}",
                trace.display()
            );
        }
    }
}

#[test]
fn bad_line_names_line_and_keeps_earlier_findings() {
    let tmp = std::env::temp_dir().join(format!("daxtrace-bad-{}.jsonl", std::process::id()));
    let seed = std::fs::read_to_string(dir().join("seed_race.jsonl")).unwrap();
    std::fs::write(
        &tmp,
        format!("{seed}{{\"ts\":2000,\"kind\":\"load_hole\",\"fault\":1}}\n"),
    )
    .unwrap();
    let (code, got, summary, stderr) = analyze_json(&[tmp.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(":10:") && stderr.contains("missing field `pgoff`"),
        "{stderr}"
    );
    assert_eq!(
        got.len(),
        1,
        "the seed finding before the bad line is still printed"
    );
    assert!(summary["error"].as_str().unwrap().contains(":10:"));

    let (code, got, summary, _) = analyze_json(&["--skip-bad", tmp.to_str().unwrap()]);
    assert_eq!((code, got.len()), (1, 1));
    assert_eq!(summary["bad_input"], 1);
    std::fs::remove_file(&tmp).ok();
}

/// A file that cannot be opened: one line naming it and the OS error once,
/// what to do, exit 2; nothing was read, so no claim of earlier findings.
#[test]
fn missing_file_is_one_line_naming_it_once() {
    let missing =
        std::env::temp_dir().join(format!("daxtrace-missing-{}.jsonl", std::process::id()));
    let (code, got, summary, stderr) = analyze_json(&[missing.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains(missing.to_str().unwrap()) && stderr.contains("check the path"),
        "{stderr}"
    );
    assert!(!stderr.contains("findings before it"), "{stderr}");
    assert!(got.is_empty());
    assert_eq!(summary["events"], 0);
}

#[test]
fn several_files_and_stdin() {
    // The seed race split over two files is still one ordering.
    let seed = std::fs::read_to_string(dir().join("seed_race.jsonl")).unwrap();
    let lines: Vec<&str> = seed.lines().collect();
    let a = std::env::temp_dir().join(format!("daxtrace-a-{}.jsonl", std::process::id()));
    std::fs::write(&a, lines[..4].join("\n")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_daxtrace"))
        .args(["analyze", "--json", a.to_str().unwrap(), "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines[4..].join("\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    std::fs::remove_file(&a).ok();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("\"kind\":\"finding\""))
            .count(),
        1,
        "{text}"
    );
}

#[test]
fn late_events_are_counted_and_reported() {
    // With a 1 ms window, 10 ms is released when 20 ms arrives; 5 ms is then
    // older than what was released: late. (15 ms would still be put in order.)
    let tmp = std::env::temp_dir().join(format!("daxtrace-late-{}.jsonl", std::process::id()));
    let text = [
        r#"{"ts":10000000,"kind":"lost","count":2}"#,
        r#"{"ts":20000000,"kind":"fault_end","fault":1,"result":"nopage"}"#,
        r#"{"ts":5000000,"kind":"fault_end","fault":2,"result":"nopage"}"#,
    ]
    .join("\n");
    std::fs::write(&tmp, text).unwrap();
    let (code, _, summary, _) = analyze_json(&["--window-ms", "1", tmp.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert_eq!(
        (
            summary["late"].as_u64(),
            summary["lost"].as_u64(),
            summary["events"].as_u64()
        ),
        (Some(1), Some(2), Some(3))
    );
    let out = Command::new(env!("CARGO_BIN_EXE_daxtrace"))
        .args(["analyze", "--window-ms", "1", tmp.to_str().unwrap()])
        .output()
        .unwrap();
    let human = String::from_utf8(out.stdout).unwrap();
    assert!(human.contains("1 late, 2 lost"), "{human}");
    let json = Command::new(env!("CARGO_BIN_EXE_daxtrace"))
        .args([
            "analyze",
            "--json",
            "--window-ms",
            "1",
            tmp.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8(json.stdout)
        .unwrap()
        .contains(r#"{"kind":"late","event":{"ts":5000000"#));
    std::fs::remove_file(&tmp).ok();
}

#[test]
fn timeline_shows_one_page() {
    let trace = dir().join("pmd_alloc_vs_pte_hole.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_daxtrace"))
        .args([
            "timeline",
            "--dev",
            "259:0",
            "--ino",
            "12",
            "--pgoff",
            "5",
            "--json",
            trace.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let kinds: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    // The PMD fault's events cover page 5 (its begin at pgoff 0 spans 0..511).
    assert_eq!(
        kinds,
        [
            "fault_begin",
            "map_blocks",
            "fault_begin",
            "map_blocks",
            "map_blocks",
            "insert_mapping",
            "fault_end",
            "load_hole",
            "fault_end",
            "finding"
        ]
    );
    let other = Command::new(env!("CARGO_BIN_EXE_daxtrace"))
        .args([
            "timeline",
            "--dev",
            "259:0",
            "--ino",
            "12",
            "--pgoff",
            "600",
            trace.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8(other.stdout).unwrap();
    assert!(text.contains("(no event covers this page)"), "{text}");
    assert_eq!(other.status.code(), Some(0));
}
