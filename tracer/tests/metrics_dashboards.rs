//! Every dashboard query names only metrics the exporter really exports, and
//! every exported metric is on some dashboard. Static: no Prometheus needed
//! (`metrics_prometheus.rs` runs the same queries against a real one).

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;
use tracer::sink::metrics::{self, Format, Metrics};

fn dashboards_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dashboards")
}

/// Every dashboard file, parsed.
fn dashboards() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dashboards_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).unwrap();
            let v: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            out.push((path.file_name().unwrap().to_string_lossy().into_owned(), v));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// (panel title, expr) of every panel target, rows' nested panels included.
fn exprs(dash: &Value) -> Vec<(String, String)> {
    fn walk(panels: &[Value], out: &mut Vec<(String, String)>) {
        for p in panels {
            let title = p["title"].as_str().unwrap_or("?").to_owned();
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    out.push((title.clone(), e.to_owned()));
                }
            }
            if let Some(inner) = p["panels"].as_array() {
                walk(inner, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(
        dash["panels"].as_array().expect("a dashboard has panels"),
        &mut out,
    );
    out
}

/// Metric names a PromQL expression reads. Label matchers, label lists,
/// ranges and strings are dropped first; what is left that is neither a
/// function call, a keyword nor a number is a metric name.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
    ];
    // Drop "...", {...} and [...] (keep the brackets' places as spaces).
    let mut s = String::new();
    let mut depth: Option<char> = None;
    for c in expr.chars() {
        match (depth, c) {
            (None, '"') => depth = Some('"'),
            (None, '{') => depth = Some('}'),
            (None, '[') => depth = Some(']'),
            (Some(close), c) if c == close => {
                depth = None;
                s.push(' ');
            }
            (Some(_), _) => {}
            (None, c) => s.push(c),
        }
    }
    // Drop the label lists after by/without/on/ignoring/group_*.
    let mut cleaned = String::new();
    let mut rest = s.as_str();
    while let Some(i) = rest.find(|c: char| c.is_ascii_alphabetic() || c == '_') {
        cleaned.push_str(&rest[..i]);
        rest = &rest[i..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        let word = &rest[..end];
        cleaned.push_str(word);
        rest = &rest[end..];
        if [
            "by",
            "without",
            "on",
            "ignoring",
            "group_left",
            "group_right",
        ]
        .contains(&word)
        {
            let t = rest.trim_start();
            if let Some(close) = t.strip_prefix('(').and_then(|t| t.find(')')) {
                rest = &t[close + 2..];
                cleaned.push(' ');
            }
        }
    }
    cleaned.push_str(rest);

    let mut names = BTreeSet::new();
    let mut rest = cleaned.as_str();
    while let Some(i) =
        rest.find(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '.')
    {
        rest = &rest[i..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '.'))
            .unwrap_or(rest.len());
        let word = &rest[..end];
        rest = &rest[end..];
        let next = rest.trim_start();
        // `sum by (...) (...)`: an aggregation, whose label list is gone.
        let is_call =
            next.starts_with('(') || next.starts_with("by ") || next.starts_with("without ");
        let is_number = word.starts_with(|c: char| c.is_ascii_digit() || c == '.');
        if !is_call && !is_number && !KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) {
            names.insert(word.to_owned());
        }
    }
    names
}

/// Sample names the exporter writes in one scrape.
fn exported_series() -> BTreeSet<String> {
    let (_m, registry) = Metrics::new();
    metrics::encode(&registry, Format::Prometheus)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
        .collect()
}

/// `expr:` lines of the alert rules file, as (alert name, expr).
fn rule_exprs() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(dashboards_dir().join("daxtrace-rules.yml")).unwrap();
    let mut out = Vec::new();
    let mut alert = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
        if let Some(a) = line.strip_prefix("- alert:") {
            alert = a.trim().to_owned();
        } else if let Some(e) = line.strip_prefix("expr:") {
            out.push((alert.clone(), e.trim().to_owned()));
        }
    }
    out
}

/// Every query: each dashboard panel's, and each alert rule's.
fn all_queries() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (file, dash) in dashboards() {
        out.extend(exprs(&dash).into_iter().map(|(t, e)| (file.clone(), t, e)));
    }
    out.extend(
        rule_exprs()
            .into_iter()
            .map(|(a, e)| ("daxtrace-rules.yml".to_owned(), a, e)),
    );
    out
}

/// The names the queries read that the exporter lacks, as "file / panel: name".
fn unknown_names(exported: &BTreeSet<String>) -> Vec<String> {
    let mut bad = Vec::new();
    for (file, title, expr) in all_queries() {
        for name in metric_names(&expr) {
            if !exported.contains(&name) {
                bad.push(format!("{file} / {title}: {name} (in {expr})"));
            }
        }
    }
    bad
}

#[test]
fn the_name_extractor_finds_metrics_and_only_metrics() {
    let e = r#"histogram_quantile(0.99, sum by (le, size) (rate(daxtrace_fault_duration_seconds_bucket{instance=~"$instance",le!="x"}[5m]))) / on(instance) group_left(version) daxtrace_build_info > bool 0.5 or vector(1) and node_load1 offset 5m"#;
    let names: Vec<_> = metric_names(e).into_iter().collect();
    assert_eq!(
        names,
        [
            "daxtrace_build_info",
            "daxtrace_fault_duration_seconds_bucket",
            "node_load1"
        ]
    );
}

#[test]
fn every_dashboard_query_names_an_exported_metric() {
    let exported = exported_series();
    let bad = unknown_names(&exported);
    assert!(
        bad.is_empty(),
        "dashboard queries name metrics the exporter lacks:\n{}",
        bad.join("\n")
    );

    // The check has teeth: without one metric, its panels are reported.
    let mut fewer = exported.clone();
    fewer.remove(metrics::FINDINGS_TOTAL);
    assert!(unknown_names(&fewer)
        .iter()
        .any(|b| b.contains(metrics::FINDINGS_TOTAL)));
}

#[test]
fn the_rules_file_is_read() {
    let rules = rule_exprs();
    assert!(rules.len() >= 4, "{rules:?}");
    assert!(rules
        .iter()
        .any(|(a, e)| a == "DaxStaleHoleCorruption" && e.contains(metrics::FINDINGS_TOTAL)));
}

#[test]
fn every_exported_metric_is_on_a_dashboard() {
    let used: BTreeSet<String> = dashboards()
        .iter()
        .flat_map(|(_, d)| exprs(d))
        .flat_map(|(_, e)| metric_names(&e))
        .collect();
    let missing: Vec<&str> = metrics::ALL
        .iter()
        .copied()
        .filter(|name| !metrics::series_names(name).iter().any(|s| used.contains(s)))
        .collect();
    assert!(
        missing.is_empty(),
        "exported but on no dashboard: {missing:?}"
    );
}

#[test]
fn two_dashboards_with_panels_and_templating() {
    let ds = dashboards();
    let names: Vec<&str> = ds.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(names, ["daxtrace-findings.json", "daxtrace-overview.json"]);
    let mut uids = BTreeSet::new();
    for (file, d) in &ds {
        assert!(
            uids.insert(d["uid"].as_str().unwrap().to_owned()),
            "{file}: duplicate uid"
        );
        let ex = exprs(d);
        assert!(ex.len() >= 10, "{file}: only {} queries", ex.len());
        for (title, e) in &ex {
            assert!(
                !metric_names(e).is_empty(),
                "{file} / {title}: query reads no metric: {e}"
            );
        }
        let vars: Vec<&str> = d["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        assert!(
            vars.contains(&"datasource") && vars.contains(&"instance"),
            "{file}: {vars:?}"
        );
    }
}
