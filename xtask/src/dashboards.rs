//! `cargo xtask check-dashboards`: the Grafana dashboards, the alert rules and
//! the scrape config in `dashboards/` against the exporter and a real
//! Prometheus (Debian's `prometheus` package; `cargo xtask setup` installs it).

use std::process::Command;

use anyhow::Result;

use crate::util::{root, run};

pub fn run_checks() -> Result<()> {
    let dir = root().join("dashboards");
    run(Command::new("promtool")
        .arg("check")
        .arg("config")
        .arg(dir.join("prometheus.yml")))?;
    run(Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(dir.join("daxtrace-rules.yml")))?;
    // Names only exported metrics (static), then every panel query against a
    // Prometheus scraping `daxtrace serve --replay` of a racing trace.
    run(Command::new(env!("CARGO")).current_dir(root()).args([
        "test",
        "-p",
        "tracer",
        "--test",
        "metrics_dashboards",
        "--test",
        "metrics_prometheus",
    ]))
}
