//! End-to-end through the `daxtrace` binary: export round-trips, summary,
//! Perfetto parse-back, record (replay source) with clean and killed stops.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tracer::event::{Body, Comm, Dev, Event, FaultResult, MapResult, Size};
use tracer::source::tracefile::{synth::Workload, TraceReader};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_daxtrace"))
}

fn run(args: &[&str]) -> Output {
    let out = bin().args(args).output().unwrap();
    out
}

fn ok(args: &[&str]) -> Output {
    let out = run(args);
    assert!(
        out.status.success(),
        "daxtrace {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn write_jsonl(path: &Path, evs: &[Event]) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for e in evs {
        serde_json::to_writer(&mut f, e).unwrap();
        f.write_all(b"\n").unwrap();
    }
    f.flush().unwrap();
}

fn ev(ts: u64, tid: u32, comm: &str, body: Body) -> Event {
    Event {
        ts,
        cpu: tid % 2,
        tid,
        pid: tid,
        comm: Comm::new(comm),
        dev: Dev::new(259, 0),
        ino: 12,
        probe: 0,
        body,
    }
}

/// The seed's race on page 5, then an unrelated clean fault on page 9.
fn race() -> Vec<Event> {
    vec![
        ev(
            100,
            1,
            "reader",
            Body::FaultBegin {
                fault: 1,
                pgoff: 5,
                size: Size::Pte,
                write: false,
            },
        ),
        ev(
            110,
            1,
            "reader",
            Body::MapBlocks {
                fault: Some(1),
                pgoff: 5,
                npages: 1,
                result: MapResult::Hole,
                new: false,
                write: false,
            },
        ),
        ev(
            120,
            2,
            "writer",
            Body::FaultBegin {
                fault: 2,
                pgoff: 5,
                size: Size::Pte,
                write: true,
            },
        ),
        ev(
            130,
            2,
            "writer",
            Body::MapBlocks {
                fault: Some(2),
                pgoff: 5,
                npages: 1,
                result: MapResult::Mapped,
                new: true,
                write: true,
            },
        ),
        ev(
            140,
            2,
            "writer",
            Body::InsertMapping {
                fault: 2,
                pgoff: 5,
                size: Size::Pte,
                inferred: false,
            },
        ),
        ev(
            150,
            2,
            "writer",
            Body::FaultEnd {
                fault: 2,
                result: FaultResult::Nopage,
            },
        ),
        ev(
            160,
            1,
            "reader",
            Body::LoadHole {
                fault: 1,
                pgoff: 5,
                size: Size::Pte,
            },
        ),
        ev(
            170,
            1,
            "reader",
            Body::FaultEnd {
                fault: 1,
                result: FaultResult::Nopage,
            },
        ),
        ev(
            200,
            3,
            "other",
            Body::FaultBegin {
                fault: 3,
                pgoff: 9,
                size: Size::Pte,
                write: false,
            },
        ),
        ev(
            210,
            3,
            "other",
            Body::MapBlocks {
                fault: Some(3),
                pgoff: 9,
                npages: 1,
                result: MapResult::Mapped,
                new: false,
                write: false,
            },
        ),
        ev(
            220,
            3,
            "other",
            Body::InsertMapping {
                fault: 3,
                pgoff: 9,
                size: Size::Pte,
                inferred: true,
            },
        ),
        ev(
            230,
            3,
            "other",
            Body::FaultEnd {
                fault: 3,
                result: FaultResult::Nopage,
            },
        ),
        ev(240, 0, "daxtrace", Body::Lost { count: 4 }),
    ]
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn jsonl_to_trace_to_jsonl_is_byte_identical() {
    let d = tmp();
    let mut evs: Vec<Event> = Workload::new(11).take(50_000).collect();
    evs.extend(race());
    evs[10].probe = tracer_common::Probe::IomapIterDstmap as u16;
    let (j, t, back) = (
        d.path().join("in.jsonl"),
        d.path().join("t.dxt"),
        d.path().join("back.jsonl"),
    );
    write_jsonl(&j, &evs);
    ok(&["export", "--format", "daxtrace", "-o", s(&t), s(&j)]);
    assert_eq!(mode(&t), 0o600);
    ok(&["export", "--format", "jsonl", "-o", s(&back), s(&t)]);
    assert_eq!(std::fs::read(&j).unwrap(), std::fs::read(&back).unwrap());
    // And trace -> trace (through the header copy) keeps every event too.
    let t2 = d.path().join("t2.dxt");
    ok(&["export", "--format", "daxtrace", "-o", s(&t2), s(&t)]);
    let a: Vec<Event> = TraceReader::open(&t).unwrap().collect();
    let b: Vec<Event> = TraceReader::open(&t2).unwrap().collect();
    assert_eq!(a, b);
    assert_eq!(a, evs);
    // Told apart by content, not by name: a trace file named .jsonl still reads.
    let disguised = d.path().join("looks-like.jsonl");
    std::fs::copy(&t, &disguised).unwrap();
    let out = ok(&["export", "--format", "jsonl", "-o", "-", s(&disguised)]);
    assert_eq!(out.stdout, std::fs::read(&j).unwrap());
}

/// Without --format the output's name picks it; a name that says nothing
/// is a one-line error that says what to pass.
#[test]
fn export_format_follows_the_output_name() {
    let d = tmp();
    let j = d.path().join("r.jsonl");
    write_jsonl(&j, &race());
    let (t, back, c) = (
        d.path().join("r.DXT"),
        d.path().join("back.jsonl"),
        d.path().join("r.csv"),
    );
    ok(&["export", "-o", s(&t), s(&j)]);
    let evs: Vec<Event> = TraceReader::open(&t).unwrap().collect();
    assert_eq!(evs, race());
    ok(&["export", "-o", s(&back), s(&t)]);
    assert_eq!(std::fs::read(&j).unwrap(), std::fs::read(&back).unwrap());
    ok(&["export", "-o", s(&c), s(&t)]);
    let csv = std::fs::read_to_string(&c).unwrap();
    assert!(csv.starts_with("ts,"), "{csv}");
    assert_eq!(csv.lines().count(), race().len() + 1);
    // The same bytes as asked for by name.
    let (p, named) = (d.path().join("r.pftrace"), d.path().join("named.bin"));
    ok(&["export", "-o", s(&p), s(&t)]);
    ok(&["export", "--format", "perfetto", "-o", s(&named), s(&t)]);
    let bytes = std::fs::read(&p).unwrap();
    assert!(!bytes.is_empty());
    assert_eq!(bytes, std::fs::read(&named).unwrap());
    for out in [d.path().join("r.txt"), PathBuf::from("-")] {
        let r = run(&["export", "-o", s(&out), s(&j)]);
        let err = String::from_utf8(r.stderr).unwrap();
        assert_eq!(r.status.code(), Some(2), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("cannot tell the output format") && err.contains("--format"),
            "{err}"
        );
    }
    assert!(!d.path().join("r.txt").exists());
}

#[test]
fn csv_has_one_row_per_event() {
    let d = tmp();
    let j = d.path().join("r.jsonl");
    write_jsonl(&j, &race());
    let out = ok(&["export", "--format", "csv", "-o", "-", s(&j)]);
    let text = String::from_utf8(out.stdout).unwrap();
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let hdr = r.headers().unwrap().clone();
    assert_eq!(&hdr[0], "ts");
    assert_eq!(&hdr[8], "kind");
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), race().len());
    assert_eq!(&rows[6][8], "load_hole");
    assert_eq!(&rows[6][10], "5");
    assert_eq!(&rows[12][18], "4");
    assert_eq!(&rows[3][15], "true");
}

#[test]
fn summary_reports_header_kinds_lost_and_bytes_per_event() {
    let d = tmp();
    let (j, t) = (d.path().join("r.jsonl"), d.path().join("r.dxt"));
    write_jsonl(&j, &race());
    ok(&["export", "--format", "daxtrace", "-o", s(&t), s(&j)]);
    for input in [&j, &t] {
        let out = String::from_utf8(ok(&["summary", s(input)]).stdout).unwrap();
        assert!(out.contains("events:    13 ("), "{out}");
        assert!(out.contains("bytes/event"), "{out}");
        assert!(out.contains("fault_begin     3"), "{out}");
        assert!(out.contains("lost:      4"), "{out}");
        assert!(out.contains("faults:    3"), "{out}");
        assert!(out.contains("duration:  0.000000140 s"), "{out}");
    }
    let out = String::from_utf8(ok(&["summary", s(&t)]).stdout).unwrap();
    assert!(out.contains("trace file"), "{out}");
    assert!(out.contains("closed:    yes"), "{out}");
}

#[test]
fn bad_inputs_exit_2_with_one_line() {
    let d = tmp();
    let j = d.path().join("bad.jsonl");
    std::fs::write(&j, "{\"ts\":1,\"kind\":\"lost\",\"count\":1}\nnot json\n").unwrap();
    let out = run(&["summary", s(&j)]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("bad.jsonl:2"), "{err}");
    // A newer trace format: clear error.
    let t = d.path().join("new.dxt");
    let mut b = b"DAXTRACE".to_vec();
    b.extend_from_slice(&9u16.to_le_bytes());
    b.extend_from_slice(&[0; 10]);
    std::fs::write(&t, &b).unwrap();
    let out = run(&["summary", s(&t)]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("version 9 is newer"), "{err}");
}

#[test]
fn damaged_trace_file_is_read_with_warnings() {
    let d = tmp();
    let (j, t) = (d.path().join("w.jsonl"), d.path().join("w.dxt"));
    let evs: Vec<Event> = Workload::new(12).take(200_000).collect();
    write_jsonl(&j, &evs);
    ok(&["export", "--format", "daxtrace", "-o", s(&t), s(&j)]);
    let mut b = std::fs::read(&t).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0xff;
    b.truncate(b.len() - 7);
    std::fs::write(&t, &b).unwrap();
    let out = ok(&["summary", s(&t)]);
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("CRC32C mismatch"), "{err}");
    assert!(err.contains("no footer"), "{err}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("closed:    no"), "{text}");
}

#[cfg(feature = "perfetto")]
fn perfetto_of(evs: &[Event]) -> perfetto_protos::trace::Trace {
    use protobuf::Message;
    let d = tmp();
    let (j, p) = (d.path().join("r.jsonl"), d.path().join("r.perfetto-trace"));
    write_jsonl(&j, evs);
    ok(&["export", "--format", "perfetto", "-o", s(&p), s(&j)]);
    assert_eq!(mode(&p), 0o600);
    perfetto_protos::trace::Trace::parse_from_bytes(&std::fs::read(&p).unwrap())
        .expect("a valid perfetto Trace")
}

#[cfg(feature = "perfetto")]
#[test]
fn perfetto_parses_back_with_tracks_slices_and_instants() {
    use perfetto_protos::track_event::track_event::Type;
    let trace = perfetto_of(&race());
    let mut names: HashMap<u64, String> = HashMap::new();
    let mut threads: HashMap<u64, (i32, String)> = HashMap::new();
    for p in &trace.packet {
        if p.has_track_descriptor() {
            let d = p.track_descriptor();
            if d.thread.is_some() {
                threads.insert(
                    d.uuid(),
                    (d.thread.tid(), d.thread.thread_name().to_owned()),
                );
            }
            names.insert(d.uuid(), d.name().to_owned());
        }
    }
    let mut tids: Vec<i32> = threads.values().map(|t| t.0).collect();
    tids.sort_unstable();
    assert_eq!(tids, vec![0, 1, 2, 3]);
    assert!(threads.values().any(|t| t.1 == "reader"));
    // Page 5 saw both a hole load and an allocation: it gets a track; page 9 does not.
    let page5 = names
        .iter()
        .find(|(_, n)| n.contains("pgoff 5"))
        .map(|(u, _)| *u)
        .expect("page 5 track");
    assert!(!names.values().any(|n| n.contains("pgoff 9")), "{names:?}");
    let evs: Vec<_> = trace
        .packet
        .iter()
        .filter(|p| p.has_track_event())
        .collect();
    let count = |ty: Type| evs.iter().filter(|p| p.track_event().type_() == ty).count();
    assert_eq!(count(Type::TYPE_SLICE_BEGIN), 3, "one slice per fault");
    assert_eq!(count(Type::TYPE_SLICE_END), 3);
    let reader_track = threads
        .iter()
        .find(|(_, t)| t.0 == 1)
        .map(|(u, _)| *u)
        .unwrap();
    let on = |track: u64| -> Vec<String> {
        evs.iter()
            .filter(|p| p.track_event().track_uuid() == track)
            .map(|p| p.track_event().name().to_owned())
            .collect()
    };
    let reader = on(reader_track);
    assert_eq!(reader[0], "pte read fault pgoff 5", "{reader:?}");
    assert!(
        reader.contains(&"lookup: hole".to_owned())
            && reader.contains(&"load_hole (pte)".to_owned()),
        "{reader:?}"
    );
    let page = on(page5);
    assert_eq!(
        page.len(),
        5,
        "lookup, allocate, insert, hole load, finding on page 5: {page:?}"
    );
    assert!(page[1].starts_with("allocate by 2 (writer)"), "{page:?}");
    assert!(
        page[3].starts_with("load_hole (pte) by 1 (reader)"),
        "{page:?}"
    );
    assert_eq!(page[4], "FINDING hole_load_after_allocate (corruption)");
    // The finding is also on the top-level findings track, with its steps as arguments.
    let findings_track = names
        .iter()
        .find(|(_, n)| *n == "findings")
        .map(|(u, _)| *u)
        .unwrap();
    let f: Vec<_> = evs
        .iter()
        .filter(|p| p.track_event().track_uuid() == findings_track)
        .collect();
    assert_eq!(f.len(), 2, "the finding and the lost record");
    let finding = f
        .iter()
        .find(|p| p.track_event().name().starts_with("FINDING"))
        .unwrap();
    assert_eq!(finding.timestamp(), 160);
    let steps = finding
        .track_event()
        .debug_annotations
        .iter()
        .filter(|a| a.name().starts_with("step"))
        .count();
    assert!(steps >= 3, "lookup, alloc, (insert,) hole");
    for p in &evs {
        assert_eq!(p.timestamp_clock_id(), 3, "CLOCK_MONOTONIC");
        assert!(p.timestamp() >= 100);
    }
}

fn replay_file(d: &Path, n: usize) -> (PathBuf, Vec<Event>) {
    let j = d.join("replay.jsonl");
    let evs: Vec<Event> = Workload::new(13).take(n).collect();
    write_jsonl(&j, &evs);
    (j, evs)
}

#[test]
fn record_replay_writes_a_complete_private_file() {
    let d = tmp();
    let (j, evs) = replay_file(d.path(), 30_000);
    let t = d.path().join("rec.dxt");
    let out = ok(&["record", "--replay", s(&j), "-o", s(&t)]);
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("recorded 30000 events"), "{err}");
    assert!(err.contains("lost 0"), "{err}");
    assert_eq!(mode(&t), 0o600);
    let mut r = TraceReader::open(&t).unwrap();
    let back: Vec<Event> = r.by_ref().collect();
    assert_eq!(back, evs);
    let f = r.report().footer.clone().expect("footer");
    assert_eq!(f.stop_reason, "end of input");
    assert_eq!(r.header().unwrap().clock, "mono");
    // Filters.
    let t2 = d.path().join("ino.dxt");
    ok(&["record", "--replay", s(&j), "--inode", "13", "-o", s(&t2)]);
    let back: Vec<Event> = TraceReader::open(&t2).unwrap().collect();
    assert_eq!(
        back,
        evs.iter()
            .copied()
            .filter(|e| e.ino == 13)
            .collect::<Vec<_>>()
    );
}

#[test]
fn record_counts_queue_overflow_as_lost_events_in_the_file() {
    let d = tmp();
    let (j, evs) = replay_file(d.path(), 100_000);
    let t = d.path().join("rec.dxt");
    // A 1-event queue cannot keep up with an unpaced replay.
    ok(&["record", "--replay", s(&j), "--queue", "1", "-o", s(&t)]);
    let mut r = TraceReader::open(&t).unwrap();
    let back: Vec<Event> = r.by_ref().collect();
    let f = r.report().footer.clone().unwrap();
    let lost_events: u64 = back
        .iter()
        .filter_map(|e| {
            if let Body::Lost { count } = e.body {
                Some(count)
            } else {
                None
            }
        })
        .sum();
    assert!(f.queue_dropped > 0, "the queue never overflowed: {f:?}");
    assert_eq!(lost_events, f.queue_dropped);
    assert_eq!(f.lost, f.queue_dropped);
    let kept = back
        .iter()
        .filter(|e| !matches!(e.body, Body::Lost { .. }))
        .count() as u64;
    assert_eq!(
        kept + f.queue_dropped,
        evs.len() as u64,
        "every event is either in the file or counted lost"
    );
}

#[test]
fn record_stops_cleanly_on_sigint_and_duration() {
    let d = tmp();
    let (j, _) = replay_file(d.path(), 200_000);
    let t = d.path().join("int.dxt");
    let child = bin()
        .args([
            "record",
            "--replay",
            s(&j),
            "--replay-rate",
            "20000",
            "-o",
            s(&t),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut r = TraceReader::open(&t).unwrap();
    let n = r.by_ref().count();
    assert!(n > 0 && n < 200_000, "{n}");
    assert_eq!(r.report().footer.as_ref().unwrap().stop_reason, "signal");

    let t = d.path().join("dur.dxt");
    ok(&[
        "record",
        "--replay",
        s(&j),
        "--replay-rate",
        "20000",
        "--duration",
        "500ms",
        "-o",
        s(&t),
    ]);
    let mut r = TraceReader::open(&t).unwrap();
    let n = r.by_ref().count();
    assert!(n > 0 && n < 200_000, "{n}");
    assert_eq!(r.report().footer.as_ref().unwrap().stop_reason, "duration");
}

#[test]
fn record_killed_with_sigkill_leaves_a_readable_file() {
    let d = tmp();
    let (j, evs) = replay_file(d.path(), 200_000);
    let t = d.path().join("kill.dxt");
    let mut child = bin()
        .args([
            "record",
            "--replay",
            s(&j),
            "--replay-rate",
            "40000",
            "-o",
            s(&t),
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let mut r = TraceReader::open(&t).unwrap();
    let back: Vec<Event> = r.by_ref().collect();
    assert!(
        !back.is_empty(),
        "chunks are cut every second: some must be complete"
    );
    assert!(back.len() < evs.len());
    assert_eq!(back[..], evs[..back.len()], "a prefix of what was recorded");
    assert!(r.report().footer.is_none());
    // The postmortem tools read it and say it was not closed cleanly.
    let out = ok(&["summary", s(&t)]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no footer"));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("events:    {} (", back.len())));
}

/// `analyze --json` output with the input's name taken out.
fn analyze_json(input: &Path) -> (Option<i32>, String) {
    let out = run(&["analyze", "--json", s(input)]);
    (out.status.code(), String::from_utf8(out.stdout).unwrap())
}

#[test]
fn analyze_finds_the_same_in_a_trace_file_as_in_its_jsonl() {
    let d = tmp();
    let mut inputs: Vec<PathBuf> = Vec::new();
    let race_j = d.path().join("race.jsonl");
    write_jsonl(&race_j, &race());
    inputs.push(race_j);
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    for dir in [data.join("data"), data.join("scenarios")] {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            // `*.expected.jsonl` hold findings, not events.
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".jsonl") && !name.ends_with(".expected.jsonl") {
                inputs.push(e.path());
            }
        }
    }
    let mut with_findings = 0;
    for (i, j) in inputs.iter().enumerate() {
        let t = d.path().join(format!("{i}.dxt"));
        ok(&["export", "--format", "daxtrace", "-o", s(&t), s(j)]);
        let (code_j, out_j) = analyze_json(j);
        let (code_t, out_t) = analyze_json(&t);
        assert_eq!(code_j, code_t, "{}", j.display());
        assert_eq!(out_j, out_t, "{}", j.display());
        if code_j == Some(1) {
            with_findings += 1;
            assert!(
                out_t.contains("hole_load_after_allocate")
                    || out_t.contains("insert_after_invalidate")
            );
        }
    }
    assert!(
        with_findings >= 1,
        "no input had findings: the comparison proved nothing"
    );
}

#[test]
fn record_stops_cleanly_on_sigterm_and_max_size_and_filters_by_dev() {
    let d = tmp();
    let j = d.path().join("devs.jsonl");
    let mut evs: Vec<Event> = Workload::new(14).take(200_000).collect();
    for e in evs.iter_mut().step_by(3) {
        e.dev = Dev::new(7, 0);
    }
    write_jsonl(&j, &evs);
    // SIGTERM stops like SIGINT: footer written, reason "signal".
    let t = d.path().join("term.dxt");
    let child = bin()
        .args([
            "record",
            "--replay",
            s(&j),
            "--replay-rate",
            "20000",
            "-o",
            s(&t),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut r = TraceReader::open(&t).unwrap();
    let back: Vec<Event> = r.by_ref().collect();
    assert!(!back.is_empty() && back.len() < evs.len(), "{}", back.len());
    assert_eq!(back[..], evs[..back.len()]);
    assert_eq!(r.report().footer.as_ref().unwrap().stop_reason, "signal");
    // --max-size: stops at the first check past the limit (a chunk is cut every
    // second), closes the file cleanly, and the file stays near the limit.
    let t = d.path().join("max.dxt");
    ok(&[
        "record",
        "--replay",
        s(&j),
        "--replay-rate",
        "40000",
        "--max-size",
        "20K",
        "-o",
        s(&t),
    ]);
    let mut r = TraceReader::open(&t).unwrap();
    let n = r.by_ref().count();
    assert!(n > 0 && n < evs.len(), "{n}");
    assert_eq!(r.report().footer.as_ref().unwrap().stop_reason, "max size");
    let size = std::fs::metadata(&t).unwrap().len();
    assert!(size < 2_000_000, "{size} bytes for --max-size 20K");
    // --dev keeps that device's events only.
    let t = d.path().join("dev.dxt");
    ok(&["record", "--replay", s(&j), "--dev", "7:0", "-o", s(&t)]);
    let back: Vec<Event> = TraceReader::open(&t).unwrap().collect();
    let want: Vec<Event> = evs
        .iter()
        .copied()
        .filter(|e| e.dev == Dev::new(7, 0))
        .collect();
    assert_eq!(back, want);
}

/// Long reads draw a progress bar on a terminal (here a pseudo-terminal made
/// by util-linux `script`) and nothing when stderr is a pipe.
#[test]
fn progress_shows_on_a_terminal_and_not_when_piped() {
    assert!(
        Command::new("script")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "util-linux `script` is missing: run `cargo xtask setup`"
    );
    let d = tmp();
    let (j, t) = (d.path().join("p.jsonl"), d.path().join("p.dxt"));
    write_jsonl(&j, &Workload::new(15).take(20_000).collect::<Vec<_>>());
    ok(&["export", "--format", "daxtrace", "-o", s(&t), s(&j)]);
    let exe = env!("CARGO_BIN_EXE_daxtrace");
    let back = d.path().join("back.jsonl");
    for cmd in [
        "summary".to_owned(),
        "analyze".to_owned(),
        format!("export --format jsonl -o {}", s(&back)),
    ] {
        let line = format!("{exe} {cmd} {} >/dev/null", s(&t));
        let tty = Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&tty.stdout);
        assert!(
            shown.contains(&format!("reading {}", s(&t))),
            "{cmd} on a terminal: no progress bar in {shown:?}"
        );
        let piped = bin()
            .args(cmd.split(' '))
            .arg(&t)
            .stdout(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&piped.stderr);
        assert!(
            !err.contains("reading") && !err.contains('\u{1b}'),
            "{cmd} piped: {err:?}"
        );
    }
    // record's progress line: events, bytes, lost, rate (redrawn once a second).
    let rec = d.path().join("rec.dxt");
    let line = format!(
        "{exe} record --replay {} --replay-rate 10000 -o {}",
        s(&j),
        s(&rec)
    );
    let tty = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&tty.stdout);
    let progress = shown
        .split(['\r', '\n'])
        .find(|l| l.contains("recording "))
        .unwrap_or_else(|| panic!("no progress line in {shown:?}"));
    assert!(
        progress.contains(" events, ")
            && progress.contains("lost 0")
            && progress.contains("events/s"),
        "{progress:?}"
    );
    let piped = bin()
        .args([
            "record",
            "--replay",
            s(&j),
            "--replay-rate",
            "10000",
            "-o",
            s(&rec),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&piped.stderr);
    assert!(
        !err.contains("recording ") && err.contains("recorded 20000 events"),
        "record piped: {err:?}"
    );
}
