//! `daxtrace serve` as a process: the /metrics text, the default address,
//! the findings log, SIGTERM, bad input.

mod metrics_util;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use metrics_util::{daxtrace, get, race_trace, sample, tool, Serve};

fn replay_on_any_port(trace: &std::path::Path) -> (Serve, String) {
    let mut s = Serve::start(&[
        "--replay",
        trace.to_str().unwrap(),
        "--metrics",
        "127.0.0.1:0",
    ]);
    let addr = s.addr();
    assert!(
        s.wait_log("replay_complete", Duration::from_secs(30))
            .is_some(),
        "replay did not complete; stderr:\n{}",
        s.stderr.lock().unwrap()
    );
    (s, addr)
}

/// Prometheus's own parser (`promtool check metrics`) accepts the default
/// text format, and the OpenMetrics variant ends as OpenMetrics requires.
#[test]
fn metrics_parse_as_prometheus_text() {
    let (mut s, addr) = replay_on_any_port(&metrics_util::data("metrics-race.jsonl"));
    let (status, ct, body) = get(&format!("http://{addr}/metrics"), None);
    assert_eq!(status, 200);
    assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");

    let mut promtool = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool rejects /metrics:\n{}{}\n--- body ---\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The parser would also accept an empty page: check the content is there.
    assert_eq!(sample(&body, "daxtrace_input_complete"), Some(1.0));
    assert_eq!(
        sample(&body, r#"daxtrace_events_total{kind="fault_begin"}"#),
        Some(17.0)
    );
    assert_eq!(sample(&body, "daxtrace_lost_events_total"), Some(3.0));
    assert_eq!(sample(&body, "daxtrace_late_events_total"), Some(1.0));
    assert_eq!(
        sample(&body, r#"daxtrace_hole_loads_total{size="pmd"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(&body, r#"daxtrace_allocations_total{origin="write"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(&body, r#"daxtrace_invalidations_total{reason="truncate"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &body,
            r#"daxtrace_fault_duration_seconds_count{size="pte"}"#
        ),
        Some(14.0)
    );
    assert_eq!(
        sample(
            &body,
            r#"daxtrace_fault_duration_seconds_count{size="pmd"}"#
        ),
        Some(3.0)
    );

    let (status, ct, om) = get(
        &format!("http://{addr}/metrics"),
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    );
    assert_eq!(status, 200);
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    assert!(om.ends_with("# EOF\n"));
    assert!(om.contains("# UNIT daxtrace_fault_duration_seconds seconds"));

    let (status, _, _) = get(&format!("http://{addr}/nothing"), None);
    assert_eq!(status, 404);
    assert!(s.terminate().success());
}

/// Without --metrics the daemon listens on 127.0.0.1:9464 and on loopback
/// only (checked in the kernel's socket table, not just in our log).
#[test]
fn default_metrics_address_is_loopback() {
    let trace = race_trace();
    // Another daxtrace on the machine may hold 9464 for a while: retry.
    let t0 = Instant::now();
    let (mut s, addr) = loop {
        let mut s = Serve::start(&["--replay", trace.to_str().unwrap()]);
        if let Some(v) = s.wait_log("listening", Duration::from_secs(20)) {
            break (s, v["addr"].as_str().unwrap().to_owned());
        }
        let err = s.stderr.lock().unwrap().clone();
        assert!(
            err.contains("cannot listen on 127.0.0.1:9464"),
            "serve failed otherwise: {err}"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "127.0.0.1:9464 stayed busy for a minute"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(addr, "127.0.0.1:9464");

    // /proc/net/tcp: local address 0100007F:24F8 (127.0.0.1:9464), state 0A (listen).
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let listeners: Vec<&str> = tcp
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[3] == "0A" && f[1].ends_with(":24F8")).then_some(f[1])
        })
        .collect();
    assert_eq!(
        listeners,
        ["0100007F:24F8"],
        "listening sockets on port 9464"
    );
    let tcp6 = std::fs::read_to_string("/proc/net/tcp6").unwrap_or_default();
    assert!(!tcp6.lines().any(|l| l
        .split_whitespace()
        .nth(1)
        .is_some_and(|a| a.ends_with(":24F8"))));

    let (status, _, body) = get("http://127.0.0.1:9464/metrics", None);
    assert_eq!(status, 200);
    assert!(body.contains("daxtrace_build_info"));
    assert!(s.terminate().success());
}

/// Each finding is one JSON log line with the DESIGN.md §3 names; SIGTERM
/// ends the daemon with status 0 after the replay has finished serving.
#[test]
fn findings_logged_as_json_and_sigterm_stops_cleanly() {
    let (mut s, _addr) = replay_on_any_port(&metrics_util::data("metrics-race.jsonl"));
    let findings = s.logged("finding");
    assert_eq!(findings.len(), 3, "{findings:#?}");
    let corruption = findings
        .iter()
        .find(|f| f["severity"] == "corruption")
        .expect("the seed race");
    assert_eq!(corruption["rule"], "hole_load_after_allocate");
    assert_eq!(corruption["dev"], "259:0");
    assert_eq!(corruption["ino"], 12);
    assert_eq!(corruption["pgoff"], 5);
    assert_eq!(corruption["lookup_tid"], 101);
    assert_eq!(corruption["alloc_tid"], 202);
    assert_eq!(corruption["insert_fault"], 2);
    assert_eq!(corruption["hole_ts"], 1_011_000);
    let stale = findings
        .iter()
        .find(|f| f["severity"] == "stale_mapping")
        .unwrap();
    assert_eq!(stale["invalidate_tid"], 404);
    assert!(
        stale.get("alloc_ts").is_none(),
        "no alloc step in insert_after_invalidate: {stale}"
    );

    // Still serving after the replay ended.
    std::thread::sleep(Duration::from_millis(300));
    assert!(s.child.try_wait().unwrap().is_none());
    let st = s.terminate();
    assert!(st.success(), "{st:?}");
    assert_eq!(s.logged("stopped").len(), 1);
}

/// A bad line stops the replay with one line naming it (exit 2); with
/// --skip-bad it is counted and exported, and what follows is still read.
#[test]
fn bad_input_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.jsonl");
    let good = std::fs::read_to_string(metrics_util::data("metrics-race.jsonl")).unwrap();
    let mut lines: Vec<&str> = good.lines().collect();
    lines.insert(3, r#"{"ts":1,"kind":"no_such_kind"}"#);
    std::fs::write(&path, lines.join("\n")).unwrap();

    let out = Command::new(daxtrace())
        .args([
            "serve",
            "--metrics",
            "127.0.0.1:0",
            "--replay",
            path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("bad.jsonl:4") && err.contains("--skip-bad"),
        "{err}"
    );

    let mut s = Serve::start(&[
        "--metrics",
        "127.0.0.1:0",
        "--skip-bad",
        "--replay",
        path.to_str().unwrap(),
    ]);
    let addr = s.addr();
    assert!(s
        .wait_log("replay_complete", Duration::from_secs(30))
        .is_some());
    let (_, _, body) = get(&format!("http://{addr}/metrics"), None);
    assert_eq!(sample(&body, "daxtrace_bad_input_total"), Some(1.0));
    assert_eq!(
        sample(&body, r#"daxtrace_events_total{kind="fault_begin"}"#),
        Some(17.0)
    );
    assert!(s.terminate().success());
}

#[test]
fn address_in_use_is_a_one_line_error() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    let out = Command::new(daxtrace())
        .args([
            "serve",
            "--metrics",
            &addr,
            "--replay",
            race_trace().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("cannot listen on {addr}")) && err.contains("--metrics"),
        "{err}"
    );
}

/// `--record` writes a trace file holding every replayed event, finished
/// (footer written) on SIGTERM; `analyze` finds the same findings in it.
#[test]
fn record_writes_a_trace_file_closed_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("serve.dtr");
    let src = metrics_util::data("metrics-race.jsonl");
    let mut s = Serve::start(&[
        "--metrics",
        "127.0.0.1:0",
        "--replay",
        src.to_str().unwrap(),
        "--record",
        out.to_str().unwrap(),
    ]);
    let _ = s.addr();
    assert!(
        s.wait_log("replay_complete", Duration::from_secs(30))
            .is_some(),
        "{}",
        s.stderr.lock().unwrap()
    );
    assert!(s.terminate().success());
    let rec = s.logged("recorded");
    assert_eq!(rec.len(), 1, "{rec:?}");
    assert_eq!(rec[0]["events"], 72);

    let a = Command::new(daxtrace())
        .args(["analyze", "--json"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(
        a.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&a.stderr)
    );
    let text = String::from_utf8(a.stdout).unwrap();
    assert_eq!(
        text.lines()
            .filter(|l| l.contains(r#""kind":"finding""#))
            .count(),
        3,
        "{text}"
    );
}
