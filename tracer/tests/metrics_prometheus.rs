//! End to end with Debian's real Prometheus: it scrapes `daxtrace serve
//! --replay` of a racing trace; then every PromQL expression of every
//! dashboard panel goes to its HTTP API and must return data, and the
//! findings metric must equal what `daxtrace analyze` finds in the same file.

mod metrics_util;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use metrics_util::{daxtrace, free_port, race_trace, tool, Serve};
use serde_json::Value;

/// Our own Prometheus on a free loopback port, with a temp storage dir.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str, rules: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {rules}\n\
                 scrape_configs:\n  - job_name: daxtrace\n    static_configs:\n      - targets: ['{target}']\n",
                rules = rules.display()
            ),
        )
        .unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting prometheus");
        let p = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        p.wait(Duration::from_secs(60), "ready", || {
            metrics_util::try_get(&format!("{}/-/ready", p.url), None).is_ok_and(|r| r.0 == 200)
        });
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Poll `ok` every 200 ms until it holds; fail with the Prometheus log.
    fn wait(&self, timeout: Duration, what: &str, mut ok: impl FnMut() -> bool) {
        let t0 = Instant::now();
        while !ok() {
            assert!(
                t0.elapsed() < timeout,
                "prometheus: {what} not reached in {timeout:?}; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// An instant query: (status, result vector).
    fn query(&self, expr: &str) -> (String, Vec<Value>) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut resp = agent
            .get(&format!("{}/api/v1/query", self.url))
            .query("query", expr)
            .call()
            .unwrap();
        let v: Value = serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
        let status = v["status"].as_str().unwrap_or("?").to_owned();
        if status != "success" {
            return (format!("{status}: {}", v["error"]), Vec::new());
        }
        (
            status,
            v["data"]["result"].as_array().cloned().unwrap_or_default(),
        )
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dashboards() -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dashboards");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// (panel title, expr) for every target of every panel.
fn panel_exprs(dash: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack: Vec<&Value> = dash["panels"].as_array().unwrap().iter().collect();
    while let Some(p) = stack.pop() {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(e) = t["expr"].as_str() {
                out.push((p["title"].as_str().unwrap_or("?").to_owned(), e.to_owned()));
            }
        }
        stack.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

/// What Grafana substitutes before sending a query: the dashboard variables
/// (the host picker at "All") and the interval macros.
fn grafana_substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "1s")
        .replace("$__range", "5m")
        .replace("$instance", ".*")
        .replace("${instance}", ".*")
}

/// Findings of `daxtrace analyze --json` on `path`, per (rule, severity).
fn analyze_findings(path: &Path) -> BTreeMap<(String, String), u64> {
    let out = Command::new(daxtrace())
        .args(["analyze", "--json"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "analyze failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut counts = BTreeMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        if v["kind"] == "finding" {
            let key = (
                v["rule"].as_str().unwrap().to_owned(),
                v["severity"].as_str().unwrap().to_owned(),
            );
            *counts.entry(key).or_default() += 1;
        }
    }
    counts
}

#[test]
fn dashboards_against_real_prometheus() {
    let trace = race_trace();
    let mut serve = Serve::start(&[
        "--replay",
        trace.to_str().unwrap(),
        "--metrics",
        "127.0.0.1:0",
    ]);
    let target = serve.addr();
    assert!(
        serve
            .wait_log("replay_complete", Duration::from_secs(120))
            .is_some(),
        "replay did not complete: {}",
        serve.stderr.lock().unwrap()
    );

    let rules = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dashboards/daxtrace-rules.yml");
    let prom = Prometheus::start(&target, &rules);
    // A few scrapes after the replay: enough samples for every rate() over 1m.
    prom.wait(
        Duration::from_secs(60),
        "4 scrapes of the finished replay",
        || {
            let (_, r) = prom.query("count_over_time(daxtrace_input_complete[1m])");
            r.first()
                .and_then(|s| s["value"][1].as_str())
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|n| n >= 4.0)
        },
    );
    let (_, up) = prom.query("up");
    assert_eq!(up.len(), 1);
    assert_eq!(up[0]["value"][1], "1", "scrape failing: {up:?}");

    // Every panel's every query returns data.
    let mut failures = Vec::new();
    let mut n = 0;
    for (file, dash) in dashboards() {
        for (title, expr) in panel_exprs(&dash) {
            let q = grafana_substitute(&expr);
            let (status, result) = prom.query(&q);
            n += 1;
            if status != "success" || result.is_empty() {
                failures.push(format!(
                    "{file} / {title}: {status}, {} series: {q}",
                    result.len()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} dashboard queries gave nothing:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(n >= 20, "only {n} queries checked");

    // The findings metric equals what analyze finds in the same file.
    let expected = analyze_findings(&trace);
    assert!(
        expected.values().sum::<u64>() > 0,
        "the racing trace has no finding"
    );
    let (_, series) = prom.query("daxtrace_findings_total");
    let mut got = BTreeMap::new();
    for s in &series {
        let key = (
            s["metric"]["rule"].as_str().unwrap().to_owned(),
            s["metric"]["severity"].as_str().unwrap().to_owned(),
        );
        let v: f64 = s["value"][1].as_str().unwrap().parse().unwrap();
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "counts are small integers"
        )]
        if v > 0.0 {
            got.insert(key, v as u64);
        }
    }
    assert_eq!(
        got, expected,
        "Prometheus's daxtrace_findings_total vs analyze --json"
    );

    // The alert rules shipped next to the dashboards load and fire on it.
    if expected.keys().any(|(_, sev)| sev == "corruption") {
        prom.wait(
            Duration::from_secs(30),
            "DaxStaleHoleCorruption firing",
            || {
                !prom
                    .query(r#"ALERTS{alertname="DaxStaleHoleCorruption",alertstate="firing"}"#)
                    .1
                    .is_empty()
            },
        );
    }

    let st = serve.terminate();
    assert!(st.success(), "serve exit: {st:?}");
}

/// The scrape config example and the alert rules pass Prometheus's own checks.
#[test]
fn scrape_config_and_rules_pass_promtool() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dashboards");
    for (what, file) in [
        ("config", "prometheus.yml"),
        ("rules", "daxtrace-rules.yml"),
    ] {
        let out = Command::new(tool("promtool"))
            .args(["check", what])
            .arg(dir.join(file))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool check {what} {file}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
