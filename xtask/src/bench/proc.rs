//! A traced tool as a child process: its output lines with arrival times
//! (the ready signals are lines), a stop by signal, and its CPU time from
//! `wait4` (children it reaped included: trace-cmd's per-CPU recorders).

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

/// One line of output, `at` after the spawn.
#[derive(Clone, Debug)]
pub struct Line {
    pub at: Duration,
    pub text: String,
}

pub struct Running {
    child: Child,
    pub started: Instant,
    rx: Receiver<Line>,
    pub lines: Vec<Line>,
    reaped: bool,
}

/// How a tool ended.
pub struct Finished {
    pub lines: Vec<Line>,
    /// Exit code, or 128 + signal.
    pub code: i32,
    /// User + system CPU of the tool and its reaped children.
    pub cpu: Duration,
}

impl Finished {
    pub fn text(&self) -> String {
        self.lines
            .iter()
            .map(|l| l.text.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Running {
    /// Start `cmd` with stdout and stderr captured line by line (stdout is
    /// left alone when the caller already redirected it).
    pub fn spawn(cmd: &mut Command, capture_stdout: bool) -> Result<Self> {
        if capture_stdout {
            cmd.stdout(Stdio::piped());
        }
        cmd.stderr(Stdio::piped()).stdin(Stdio::null());
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {cmd:?}"))?;
        let (tx, rx) = mpsc::channel();
        let mut readers: Vec<Box<dyn std::io::Read + Send>> = Vec::new();
        if let Some(o) = child.stdout.take() {
            readers.push(Box::new(o));
        }
        if let Some(e) = child.stderr.take() {
            readers.push(Box::new(e));
        }
        for r in readers {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for text in BufReader::new(r).lines().map_while(std::result::Result::ok) {
                    if tx
                        .send(Line {
                            at: started.elapsed(),
                            text,
                        })
                        .is_err()
                    {
                        break;
                    }
                }
            });
        }
        Ok(Self {
            child,
            started,
            rx,
            lines: Vec::new(),
            reaped: false,
        })
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap_or(i32::MAX)
    }

    /// Collect lines until `ready(lines)` gives a time (since the spawn), the
    /// tool exits (an error carrying its output), or `timeout`.
    pub fn wait_ready(
        &mut self,
        timeout: Duration,
        mut ready: impl FnMut(&[Line], i32) -> Option<Duration>,
    ) -> Result<Duration> {
        let deadline = self.started + timeout;
        loop {
            if let Some(t) = ready(&self.lines, self.pid()) {
                return Ok(t);
            }
            match self.rx.recv_timeout(Duration::from_millis(2)) {
                Ok(l) => self.lines.push(l),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                self.drain(Duration::from_millis(200));
                bail!(
                    "exited ({st}) before it was ready:\n{}",
                    tail(&self.lines, 15)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "not ready after {:.0}s:\n{}",
                    timeout.as_secs_f64(),
                    tail(&self.lines, 15)
                );
            }
        }
    }

    fn drain(&mut self, grace: Duration) {
        while let Ok(l) = self.rx.recv_timeout(grace) {
            self.lines.push(l);
        }
    }

    /// Send `sig`, wait up to `timeout` (then SIGKILL), reap with wait4 for
    /// the CPU time, and gather the rest of the output.
    pub fn stop(mut self, sig: i32, timeout: Duration) -> Result<Finished> {
        let r = self.stop_inner(sig, timeout);
        self.reaped = true;
        r
    }

    fn stop_inner(&mut self, sig: i32, timeout: Duration) -> Result<Finished> {
        let pid = self.pid();
        // SAFETY: signalling our own child, which has not been reaped.
        unsafe { libc::kill(pid, sig) };
        let deadline = Instant::now() + timeout;
        let mut status = 0;
        // SAFETY: zeroed rusage is a valid out-parameter.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let mut killed = false;
        let mut last_sig = Instant::now();
        loop {
            // SAFETY: valid pointers; WNOHANG so we can time out.
            let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
            if r == pid {
                break;
            }
            if r < 0 {
                bail!("wait4({pid}): {}", std::io::Error::last_os_error());
            }
            // A signal that came while the tool was still setting up its
            // handler can be lost (bpftrace once ignored one): repeat it.
            if !killed && last_sig.elapsed() > Duration::from_secs(5) {
                // SAFETY: as above.
                unsafe { libc::kill(pid, sig) };
                last_sig = Instant::now();
            }
            if Instant::now() > deadline && !killed {
                eprintln!(
                    "bench: pid {pid} still running {:.0}s after the stop signal; killing it",
                    timeout.as_secs_f64()
                );
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                killed = true;
            }
            // Keep the pipes flowing while it writes its last words.
            while let Ok(l) = self.rx.recv_timeout(Duration::from_millis(5)) {
                self.lines.push(l);
            }
        }
        self.drain(Duration::from_millis(300));
        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            128 + libc::WTERMSIG(status)
        };
        let tv = |t: libc::timeval| {
            Duration::new(
                u64::try_from(t.tv_sec).unwrap_or(0),
                u32::try_from(t.tv_usec).unwrap_or(0) * 1000,
            )
        };
        let cpu = tv(ru.ru_utime) + tv(ru.ru_stime);
        if killed {
            bail!(
                "had to be killed after the stop signal:\n{}",
                tail(&self.lines, 15)
            );
        }
        Ok(Finished {
            lines: std::mem::take(&mut self.lines),
            code,
            cpu,
        })
    }
}

impl Drop for Running {
    /// A tool given up on (not ready, or an error elsewhere) is stopped like
    /// a user would (SIGINT, so trace-cmd cleans up), then killed.
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        let pid = self.pid();
        // SAFETY: our own unreaped child.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn tail(lines: &[Line], n: usize) -> String {
    let from = lines.len().saturating_sub(n);
    lines[from..]
        .iter()
        .map(|l| format!("  | {}", l.text))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first line containing `needle`, as its arrival time.
pub fn line_with(lines: &[Line], needle: &str) -> Option<Duration> {
    lines.iter().find(|l| l.text.contains(needle)).map(|l| l.at)
}

/// How many of `pid`'s open files are perf events (bpftrace attaches each
/// tracepoint through one, after one per CPU for its output buffer).
pub fn perf_event_fds(pid: i32) -> usize {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    rd.flatten()
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().contains("perf_event"))
        })
        .count()
}
