//! Helpers for the `serve` tests: start the daemon, read its JSON log, scrape.

#![allow(dead_code, reason = "each test file uses a different part")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn daxtrace() -> &'static str {
    env!("CARGO_BIN_EXE_daxtrace")
}

pub fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// The racing trace the metrics tests replay: the sim helper's when present,
/// else this crate's hand-written one.
pub fn race_trace() -> PathBuf {
    let sim = data("race.jsonl");
    if sim.exists() {
        sim
    } else {
        data("metrics-race.jsonl")
    }
}

/// A running `daxtrace serve`, killed on drop if still running.
pub struct Serve {
    pub child: Child,
    /// stdout lines (the JSON log), filled by a reader thread.
    pub log: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<String>>,
}

impl Serve {
    pub fn start(args: &[&str]) -> Self {
        let mut child = Command::new(daxtrace())
            .arg("serve")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting daxtrace serve");
        let log = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let l = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                l.lock().unwrap().push(line);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let err = child.stderr.take().unwrap();
        let e = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = e.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Self { child, log, stderr }
    }

    /// The first log record with `"kind": kind`, waiting up to `timeout`.
    /// `None` if the daemon exits or the time runs out first.
    pub fn wait_log(&mut self, kind: &str, timeout: Duration) -> Option<Value> {
        let t0 = Instant::now();
        loop {
            if let Some(v) = self.logged(kind).into_iter().next() {
                return Some(v);
            }
            if t0.elapsed() > timeout || self.child.try_wait().unwrap().is_some() {
                // One last look: the reader thread may lag the exit.
                std::thread::sleep(Duration::from_millis(100));
                return self.logged(kind).into_iter().next();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every log record with `"kind": kind` so far.
    pub fn logged(&self, kind: &str) -> Vec<Value> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|l| {
                serde_json::from_str::<Value>(l)
                    .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}"))
            })
            .filter(|v| v["kind"] == kind)
            .collect()
    }

    /// Where /metrics listens, from the "listening" log record.
    pub fn addr(&mut self) -> String {
        let v = self
            .wait_log("listening", Duration::from_secs(20))
            .unwrap_or_else(|| {
                panic!(
                    "serve did not start listening; stderr:\n{}",
                    self.stderr.lock().unwrap()
                )
            });
        v["addr"].as_str().unwrap().to_owned()
    }

    /// SIGTERM, then wait up to 5 s for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        self.wait_exit(Duration::from_secs(5))
            .expect("serve did not stop within 5 s of SIGTERM")
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let t0 = Instant::now();
        while t0.elapsed() < timeout {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `url`: (status, content type, body).
pub fn get(url: &str, accept: Option<&str>) -> (u16, String, String) {
    try_get(url, accept).unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// GET `url`, or the transport error (connection refused while starting).
pub fn try_get(url: &str, accept: Option<&str>) -> Result<(u16, String, String), ureq::Error> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut req = agent.get(url);
    if let Some(a) = accept {
        req = req.header("Accept", a);
    }
    let mut resp = req.call()?;
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = resp.body_mut().read_to_string()?;
    Ok((status, ct, body))
}

/// A TCP port free right now on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Debian tool (prometheus, promtool), or a clear failure naming the fix.
pub fn tool(name: &str) -> PathBuf {
    let var = format!("DAXTRACE_{}", name.to_ascii_uppercase());
    if let Some(p) = std::env::var_os(&var) {
        return PathBuf::from(p);
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("{name} not found: install Debian's `prometheus` package (`cargo xtask setup` does), or set {var}");
}

/// The sample value of an exact series (`name{labels}`) in a text scrape.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|r| r.strip_prefix(' '))
            .map(|v| v.parse().unwrap())
    })
}
