//! Tests on the real kernel: loop-mounted ext4, real tracepoints, the real
//! ring buffer, and the kernel's own ftrace as the oracle. They need root,
//! so they sit behind the `kernel-tests` feature (`cargo xtask test` turns
//! it on) and run one at a time (they share kernel state).
#![cfg(feature = "kernel-tests")]

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod loopfs;
use loopfs::{LoopFs, PAGE};

/// Kernel tests share tracefs, the BPF program list and loop devices: one at a time.
static KERNEL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    let guard = KERNEL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // The kernel frees a finished run's programs a moment after its last fd
    // closes (RCU): start each test once the previous one's are gone, so that
    // "nothing of ours is loaded" checks see only their own run.
    let t0 = Instant::now();
    while !our_programs().is_empty() && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    guard
}

/// Page-aligned buffer for O_DIRECT.
struct Aligned {
    ptr: *mut u8,
    len: usize,
}

impl Aligned {
    fn new(pages: usize, fill: u8) -> Self {
        let len = pages * PAGE;
        let layout = std::alloc::Layout::from_size_align(len, PAGE).unwrap();
        // SAFETY: non-zero size layout.
        let ptr = unsafe { std::alloc::alloc(layout) };
        // SAFETY: freshly allocated, len bytes.
        unsafe { std::ptr::write_bytes(ptr, fill, len) };
        Self { ptr, len }
    }
    fn as_slice(&self) -> &[u8] {
        // SAFETY: valid for len bytes while self lives.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, unique borrow.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        let layout = std::alloc::Layout::from_size_align(self.len, PAGE).unwrap();
        // SAFETY: allocated with this layout.
        unsafe { std::alloc::dealloc(self.ptr, layout) };
    }
}

fn direct_write(path: &Path, page: u64, pages: usize) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .unwrap();
    let buf = Aligned::new(pages, 0xab);
    f.write_all_at(buf.as_slice(), page * PAGE as u64).unwrap();
}

fn direct_read(path: &Path, page: u64, pages: usize) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .unwrap();
    let mut buf = Aligned::new(pages, 0);
    f.read_exact_at(buf.as_mut_slice(), page * PAGE as u64)
        .unwrap();
}

/// A running `daxtrace stream --json`, ready (its programs attached).
struct Stream {
    child: Child,
    stderr_lines: Vec<String>,
}

fn daxtrace() -> Command {
    Command::new(env!("CARGO_BIN_EXE_daxtrace"))
}

impl Stream {
    fn start(args: &[&str], stdout: Stdio) -> Self {
        let mut cmd = daxtrace();
        cmd.args(["stream", "--json"]).args(args);
        Self::spawn(cmd, stdout)
    }

    /// Start `cmd` (a `stream --json`, possibly behind a wrapper that execs
    /// it) and wait until its programs are attached.
    fn spawn(mut cmd: Command, stdout: Stdio) -> Self {
        let mut child = cmd
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start daxtrace");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut lines = Vec::new();
        let t0 = Instant::now();
        loop {
            let mut l = String::new();
            assert!(
                stderr.read_line(&mut l).unwrap() > 0,
                "daxtrace exited before ready: {lines:?}"
            );
            let ready = l.contains(" attached in ");
            lines.push(l);
            if ready {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "not ready: {lines:?}"
            );
        }
        // Keep reading stderr in the background so the child never blocks on it.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = stderr.read_to_string(&mut rest);
            let _ = tx.send(rest);
        });
        STDERR_RX.with(|r| *r.borrow_mut() = Some(rx));
        Self {
            child,
            stderr_lines: lines,
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our child's pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Stop with `sig`, collect stdout events, exit status and stderr.
    fn stop(mut self, sig: i32) -> (Vec<Value>, std::process::ExitStatus, String) {
        let mut out = String::new();
        let reader = self.child.stdout.take().map(|mut s| {
            std::thread::spawn(move || {
                let _ = s.read_to_string(&mut out);
                out
            })
        });
        self.signal(sig);
        let status = self.child.wait().unwrap();
        let out = reader.map(|h| h.join().unwrap()).unwrap_or_default();
        let rest = STDERR_RX
            .with(|r| r.borrow_mut().take())
            .map(|rx| rx.recv().unwrap_or_default())
            .unwrap_or_default();
        let events = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect();
        (events, status, self.stderr_lines.concat() + &rest)
    }
}

thread_local! {
    static STDERR_RX: std::cell::RefCell<Option<std::sync::mpsc::Receiver<String>>> = const { std::cell::RefCell::new(None) };
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("no {k} in {v}"))
}

#[test]
fn odirect_write_shows_allocation_and_read_shows_hole() {
    let _serial = serial();
    let fs = LoopFs::ext4("kt-odirect", 256);
    let (dev, _) = fs.dev();
    let (file, ino) = fs.sparse("sparse", 1024);
    let (_other, _) = fs.sparse("other", 1024);
    let s = Stream::start(
        &["--dev", &dev, "--inode", &ino.to_string()],
        Stdio::piped(),
    );
    direct_write(&file, 64, 16);
    direct_read(&file, 300, 1);
    // Activity on another inode of the same filesystem must not show.
    direct_write(&fs.mnt.join("other"), 10, 4);
    std::thread::sleep(Duration::from_millis(300));
    let (events, status, stderr) = s.stop(libc::SIGINT);
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(stderr.contains("events"), "summary line missing: {stderr}");
    assert!(!events.is_empty());
    for e in &events {
        if e["kind"] != "lost" {
            assert_eq!(u(e, "ino"), ino, "event of another inode: {e}");
            assert_eq!(e["dev"], dev.as_str());
        }
    }
    let mut covered = HashSet::new();
    for e in events
        .iter()
        .filter(|e| e["kind"] == "map_blocks" && e["new"] == true)
    {
        let (p, n) = (u(e, "pgoff"), u(e, "npages"));
        covered.extend(p..p + n);
        assert!(
            e["fault"].is_null(),
            "a write(2)/O_DIRECT allocation is outside any fault: {e}"
        );
    }
    for p in 64..80 {
        assert!(
            covered.contains(&p),
            "page {p} not covered by a new map_blocks: {events:?}"
        );
    }
    let hole = events.iter().any(|e| {
        e["kind"] == "map_blocks"
            && e["result"] == "hole"
            && u(e, "pgoff") <= 300
            && 300 < u(e, "pgoff") + u(e, "npages")
    });
    assert!(hole, "no hole lookup covering page 300: {events:?}");
}

/// Tracepoints the ftrace instance records, with an ftrace filter on dev.
const COMPARED: &[&str] = &[
    "iomap:iomap_iter_dstmap",
    "ext4:ext4_ext_map_blocks_exit",
    "ext4:ext4_punch_hole",
    "ext4:ext4_zero_range",
    "ext4:ext4_collapse_range",
    "ext4:ext4_truncate_enter",
    "fs_dax:dax_pte_fault",
    "fs_dax:dax_load_hole",
];

struct Instance {
    dir: PathBuf,
}

impl Instance {
    fn new(kdev: u64) -> Self {
        let dir = PathBuf::from(format!(
            "/sys/kernel/tracing/instances/daxtrace-kt-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir).expect("create ftrace instance");
        std::fs::write(dir.join("buffer_size_kb"), "8192").unwrap();
        std::fs::write(dir.join("trace_clock"), "mono").unwrap();
        for tp in COMPARED {
            let (c, e) = tp.split_once(':').unwrap();
            let ev = dir.join("events").join(c).join(e);
            if ev.exists() {
                std::fs::write(ev.join("filter"), format!("dev == {kdev}")).unwrap();
                std::fs::write(ev.join("enable"), "1").unwrap();
            }
        }
        Self { dir }
    }
    fn stop(&self) {
        std::fs::write(self.dir.join("tracing_on"), "0").unwrap();
    }
    fn counts(&self) -> (BTreeMap<String, u64>, u64) {
        let text = std::fs::read_to_string(self.dir.join("trace")).unwrap();
        let mut m = BTreeMap::new();
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            if let Some(name) = l
                .split(": ")
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
            {
                *m.entry(name.trim_end_matches(':').to_string()).or_insert(0) += 1;
            }
        }
        // "entries-in-buffer/entries-written: 5/5": overrun = written - in buffer
        let overrun = text
            .lines()
            .find(|l| l.contains("entries-in-buffer/entries-written"))
            .and_then(|l| l.split(':').nth(1))
            .and_then(|v| {
                let v = v.split_whitespace().next()?;
                let (a, b) = v.split_once('/')?;
                Some(b.parse::<u64>().ok()? - a.parse::<u64>().ok()?)
            })
            .unwrap_or(0);
        (m, overrun)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[test]
fn counts_equal_the_kernels_own_trace() {
    let _serial = serial();
    let fs = LoopFs::ext4("kt-counts", 256);
    let (dev, kdev) = fs.dev();
    let s = Stream::start(&["--dev", &dev], Stdio::piped());
    // A workload touching every kind of record the host can produce.
    let (events, status, stderr, inst) = mixed_run(s, &fs, kdev);
    assert!(status.success(), "{status:?}: {stderr}");
    let (kernel, overrun) = inst.counts();
    assert_eq!(
        overrun, 0,
        "the ftrace instance itself overran; enlarge its buffer"
    );
    let lost: u64 = events
        .iter()
        .filter(|e| e["kind"] == "lost")
        .map(|e| u(e, "count"))
        .sum();
    let mut ours: BTreeMap<String, u64> = BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| e["kind"] != "lost" && e["inferred"] != true)
    {
        let probe = e["probe"]
            .as_str()
            .unwrap_or_else(|| panic!("event without probe: {e}"));
        let name = probe.split_once(':').unwrap().1.to_string();
        *ours.entry(name).or_insert(0) += 1;
    }
    let mut table = String::new();
    let mut diff_total = 0i64;
    for tp in COMPARED {
        let name = tp.split_once(':').unwrap().1;
        let (k, o) = (
            kernel.get(name).copied().unwrap_or(0),
            ours.get(name).copied().unwrap_or(0),
        );
        diff_total += k as i64 - o as i64;
        table += &format!("{tp:<32} kernel {k:>6} daxtrace {o:>6}\n");
    }
    eprintln!("{table}lost {lost}");
    assert!(
        kernel.get("iomap_iter_dstmap").copied().unwrap_or(0) > 20,
        "workload produced too little:\n{table}"
    );
    assert!(
        kernel.get("ext4_punch_hole").copied().unwrap_or(0) >= 8,
        "{table}"
    );
    assert_eq!(
        diff_total, lost as i64,
        "counts differ by more than the reported loss:\n{table}"
    );
    if lost == 0 {
        for tp in COMPARED {
            let name = tp.split_once(':').unwrap().1;
            assert_eq!(kernel.get(name), ours.get(name), "{tp}:\n{table}");
        }
    }
}

/// Programs of ours currently in the kernel (names are cut to 15 bytes).
fn our_programs() -> Vec<String> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter_map(|p| p.name_as_str().map(str::to_string))
        .filter(|n| {
            // Classic `tp_*`, typed `btf_*`/`raw_*`, function `fe_/fx_/kp_/kr_*`.
            tracer_common::Probe::ALL.iter().any(|pr| {
                let full = pr.program();
                let ev = pr.tracepoint().split_once(':').map_or("", |x| x.1);
                let typed = [format!("btf_{ev}"), format!("raw_{ev}")];
                (full.starts_with(n.as_str()) || typed.iter().any(|t| t.starts_with(n.as_str())))
                    && n.len() >= 12
            }) || tracer_common::Probe::FUNCS.iter().any(|pr| {
                let f = pr.function();
                ["fe_", "fx_", "kp_", "kr_"]
                    .iter()
                    .any(|k| format!("{k}{f}").starts_with(n.as_str()))
                    && n.len() >= 12
            })
        })
        .collect()
}

#[test]
fn no_program_stays_after_any_exit() {
    let _serial = serial();
    let fs = LoopFs::ext4("kt-exit", 256);
    let (dev, _) = fs.dev();
    assert_eq!(
        our_programs(),
        Vec::<String>::new(),
        "programs of ours before the test"
    );
    for (how, sig) in [
        ("SIGINT", libc::SIGINT),
        ("SIGTERM", libc::SIGTERM),
        ("SIGKILL", libc::SIGKILL),
    ] {
        let s = Stream::start(&["--dev", &dev], Stdio::piped());
        assert!(
            !our_programs().is_empty(),
            "{how}: nothing attached while running?"
        );
        let (_, status, _) = s.stop(sig);
        if sig != libc::SIGKILL {
            assert!(status.success(), "{how}: {status:?}");
        }
        // The kernel frees programs when the last fd closes; give RCU a moment.
        let t0 = Instant::now();
        while !our_programs().is_empty() && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(our_programs(), Vec::<String>::new(), "after {how}");
    }
    // Normal end by --duration.
    let out = daxtrace()
        .args(["stream", "--json", "--dev", &dev, "--duration", "1s"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // An error after attach: stdout is a pipe whose reader is gone.
    let s = Stream::start(&["--dev", &dev], Stdio::piped());
    let Stream { mut child, .. } = s;
    drop(child.stdout.take());
    direct_write(&fs.sparse("x", 64).0, 0, 4);
    let _ = child.wait();
    let t0 = Instant::now();
    while !our_programs().is_empty() && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(our_programs(), Vec::<String>::new(), "after a broken pipe");
}

#[test]
fn unprivileged_stream_is_a_one_line_error() {
    let _serial = serial();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(env!("CARGO_BIN_EXE_daxtrace"))
        .args(["stream", "--json", "--duration", "1s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("root") && err.contains("CAP_BPF"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_device_and_inode_are_one_line_errors() {
    let _serial = serial();
    let fs = LoopFs::ext4("kt-bad", 256);
    let (dev, _) = fs.dev();
    for (args, want) in [
        (vec!["--dev", "250:250"], "device 250:250 does not exist"),
        (
            vec!["--dev", &dev, "--inode", "999999"],
            "inode 999999 was not found",
        ),
        (vec!["--dev", "nonsense"], "MAJOR:MINOR"),
    ] {
        let out = daxtrace()
            .args(["stream", "--json"])
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
        if want != "MAJOR:MINOR" {
            // Ours (clap's own usage errors are several lines): one line, saying what to do.
            assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
            assert!(err.contains("pass the"), "{args:?}: {err}");
        }
    }
}

/// `mixed_workload` traced by the running `s` and by a tracefs instance on
/// the same device; `s` is stopped with SIGTERM (the stopped instance is
/// returned for its counts).
fn mixed_run(
    s: Stream,
    fs: &LoopFs,
    kdev: u64,
) -> (Vec<Value>, std::process::ExitStatus, String, Instance) {
    let inst = Instance::new(kdev);
    mixed_workload(fs);
    std::thread::sleep(Duration::from_millis(200));
    inst.stop();
    std::thread::sleep(Duration::from_millis(200));
    let (events, status, stderr) = s.stop(libc::SIGTERM);
    (events, status, stderr, inst)
}

/// The workload of `counts_equal_the_kernels_own_trace`: O_DIRECT writes
/// and reads of holes, punch, zero, collapse and truncate on 8 files.
fn mixed_workload(fs: &LoopFs) {
    for i in 0..8u64 {
        let (f, _) = fs.sparse(&format!("w{i}"), 2048);
        direct_write(&f, i * 40, 8);
        direct_read(&f, 1000 + i, 1);
        direct_read(&f, i * 40, 2);
        let file = std::fs::OpenOptions::new().write(true).open(&f).unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        // SAFETY: fallocate on an open fd with valid ranges.
        unsafe {
            libc::fallocate(
                fd,
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                (i * 40 * 4096) as i64,
                8192,
            );
            libc::fallocate(fd, libc::FALLOC_FL_ZERO_RANGE, 4096 * 1500, 8192);
            libc::fallocate(fd, libc::FALLOC_FL_COLLAPSE_RANGE, 4096 * 1600, 4096 * 16);
        }
        file.set_len(4096 * 100).unwrap();
    }
}

/// What an event says, minus what differs between two runs of the same
/// workload (time, task, CPU, device number, fault ids).
fn signature(e: &Value) -> String {
    let mut m = e.as_object().unwrap().clone();
    for k in ["ts", "cpu", "tid", "pid", "comm", "dev", "fault"] {
        m.remove(k);
    }
    serde_json::to_string(&m).unwrap()
}

/// Issue 9, step 1: the typed raw tracepoint backends (tp_btf, raw_tp) read
/// struct members at BTF offsets; the classic backend reads the tracepoint's
/// own record. The same workload on a fresh loop ext4 (same inode numbers)
/// must give the same events, field for field, and the same counts as the
/// kernel's own trace of that run.
#[test]
fn backends_agree_with_each_other_and_the_kernel() {
    let _serial = serial();
    let mut runs: Vec<(&str, BTreeMap<String, u64>, Vec<String>)> = Vec::new();
    // fentry is refused on this host (EPERM): asking for it must say so and
    // fall back to tp_btf, with the same events.
    let fentry_refused = !std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists();
    for asked in ["tracepoint", "tp_btf", "raw_tp", "fentry"] {
        let fs = LoopFs::ext4(&format!("kt-be-{asked}"), 256);
        let (dev, kdev) = fs.dev();
        let s = Stream::start(&["--dev", &dev, "--backend", asked], Stdio::piped());
        let ready = s.stderr_lines.concat();
        let backend = if asked == "fentry" && fentry_refused {
            assert!(
                ready.contains("fentry dax_iomap_pte_fault failed (")
                    && ready.contains("Operation not permitted"),
                "{ready}"
            );
            assert!(
                ready.contains("not tried: this kernel refused fentry"),
                "refused once, not per function: {ready}"
            );
            // ... and told in two lines: the refusal, then the rest counted.
            let told = ready
                .lines()
                .filter(|l| l.contains("fentry") && l.contains(" failed ("))
                .count();
            assert!(
                told == 2 && ready.contains("fentry failed the same way on"),
                "{ready}"
            );
            "tp_btf"
        } else {
            asked
        };
        let (events, status, stderr, inst) = mixed_run(s, &fs, kdev);
        assert!(status.success(), "{backend}: {status:?}: {stderr}");
        // Every attach point went through the backend asked for: no fallback.
        let attached = ready.lines().find(|l| l.contains(" attached in ")).unwrap();
        // "(tp_btf 14; fault begin traced, ...)": that backend and no other.
        let used = attached
            .split_once('(')
            .and_then(|(_, r)| r.split_once(';'))
            .map(|(u, _)| u)
            .unwrap_or("");
        assert!(
            used.starts_with(&format!("{backend} ")) && !used.contains(','),
            "{asked}: {attached}"
        );
        let (kernel, overrun) = inst.counts();
        assert_eq!(overrun, 0);
        let lost: u64 = events
            .iter()
            .filter(|e| e["kind"] == "lost")
            .map(|e| u(e, "count"))
            .sum();
        assert_eq!(
            lost, 0,
            "{backend}: lost events make the comparison meaningless"
        );
        let mut per_probe: BTreeMap<String, u64> = BTreeMap::new();
        let mut per_kind: BTreeMap<String, u64> = BTreeMap::new();
        for e in events.iter().filter(|e| e["kind"] != "lost") {
            *per_kind
                .entry(e["kind"].as_str().unwrap().to_string())
                .or_insert(0) += 1;
            if e["inferred"] != true {
                let name = e["probe"]
                    .as_str()
                    .unwrap()
                    .split_once(':')
                    .unwrap()
                    .1
                    .to_string();
                *per_probe.entry(name).or_insert(0) += 1;
            }
        }
        for tp in COMPARED {
            let name = tp.split_once(':').unwrap().1;
            assert_eq!(
                kernel.get(name),
                per_probe.get(name),
                "{backend} {tp}: kernel {kernel:?} ours {per_probe:?}"
            );
        }
        assert!(
            per_kind.get("map_blocks").copied().unwrap_or(0) > 20,
            "{backend}: {per_kind:?}"
        );
        assert!(
            per_kind.get("invalidate").copied().unwrap_or(0) >= 32,
            "{backend}: {per_kind:?}"
        );
        let mut sigs: Vec<String> = events
            .iter()
            .filter(|e| e["kind"] != "lost")
            .map(signature)
            .collect();
        sigs.sort();
        eprintln!("{backend}: {per_kind:?}");
        runs.push((backend, per_kind, sigs));
    }
    let (b0, k0, s0) = &runs[0];
    for (b, k, s) in &runs[1..] {
        assert_eq!(k, k0, "counts per kind: {b} vs {b0}");
        if s != s0 {
            let only_a: Vec<_> = s.iter().filter(|x| !s0.contains(x)).take(5).collect();
            let only_b: Vec<_> = s0.iter().filter(|x| !s.contains(x)).take(5).collect();
            panic!("events differ: only in {b}: {only_a:?}; only in {b0}: {only_b:?}");
        }
    }
}

/// Run `setup` (shell commands) in a private mount namespace, then `cmd`
/// there: the host's own mounts are never touched.
fn in_mount_ns(setup: &str, cmd: &[&str]) -> std::process::Output {
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-ec"])
        .arg(format!("{setup}\nexec \"$@\""))
        .arg("sh")
        .args(cmd)
        .output()
        .unwrap()
}

/// Hide tracefs: unmount it (and debugfs, whose `tracing/` automounts it).
const NO_TRACEFS: &str = "umount -l /sys/kernel/tracing 2>/dev/null || true
umount -l /sys/kernel/debug 2>/dev/null || true
test ! -e /sys/kernel/tracing/events && test ! -e /sys/kernel/debug/tracing/events";

/// tracefs not mounted, as root: daxtrace mounts it itself and runs.
#[test]
fn tracefs_not_mounted_is_mounted_by_root() {
    let _serial = serial();
    let bin = env!("CARGO_BIN_EXE_daxtrace");
    let out = in_mount_ns(NO_TRACEFS, &[bin, "stream", "--json", "--duration", "1s"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("lost"), "the one-line summary: {err}");
}

/// tracefs not mounted, and the user may trace (CAP_BPF + CAP_PERFMON) but
/// not mount: one line naming the mount command, exit 2, nothing loaded.
#[test]
fn tracefs_not_mountable_is_a_one_line_error() {
    let _serial = serial();
    let bin = env!("CARGO_BIN_EXE_daxtrace");
    let out = in_mount_ns(
        NO_TRACEFS,
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all,+bpf,+perfmon",
            "--ambient-caps=-all,+bpf,+perfmon",
            bin,
            "stream",
            "--json",
            "--duration",
            "1s",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("tracefs is not mounted") && err.contains("Operation not permitted"),
        "{err}"
    );
    assert!(
        err.contains("mount -t tracefs nodev /sys/kernel/tracing"),
        "{err}"
    );
    assert!(
        !err.contains("needs root"),
        "CAP_BPF + CAP_PERFMON passed the privilege check: {err}"
    );
    assert!(out.stdout.is_empty());
    assert_eq!(
        our_programs(),
        Vec::<String>::new(),
        "nothing loaded before the error"
    );
}

/// A kernel without BTF (here: /sys/kernel/btf hidden): one line, exit 2;
/// the same kernel's BTF named with `--btf FILE` then gives a normal run.
#[test]
fn no_btf_is_a_one_line_error_and_btf_file_stands_in() {
    let _serial = serial();
    let bin = env!("CARGO_BIN_EXE_daxtrace");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("vmlinux");
    std::fs::copy("/sys/kernel/btf/vmlinux", &copy).unwrap();
    let hide = "mount -t tmpfs none /sys/kernel/btf\ntest ! -e /sys/kernel/btf/vmlinux";
    let out = in_mount_ns(hide, &[bin, "stream", "--json", "--duration", "1s"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("no BTF (/sys/kernel/btf/vmlinux is missing)") && err.contains("--btf FILE"),
        "{err}"
    );
    assert!(out.stdout.is_empty());

    let fs = LoopFs::ext4("kt-nobtf", 256);
    let (dev, _) = fs.dev();
    let (file, ino) = fs.sparse("f", 64);
    let copy = copy.to_str().unwrap();
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-ec"])
        .arg(format!("{hide}\nexec \"$@\""))
        .arg("sh");
    cmd.args([
        bin,
        "stream",
        "--json",
        "--btf",
        copy,
        "--dev",
        &dev,
        "--inode",
        &ino.to_string(),
    ]);
    let s = Stream::spawn(cmd, Stdio::piped());
    direct_write(&file, 8, 2);
    std::thread::sleep(Duration::from_millis(300));
    let (events, status, err) = s.stop(libc::SIGINT);
    assert!(status.success(), "{err}");
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "map_blocks" && e["new"] == true),
        "no allocation seen with --btf on a kernel without BTF: {err}"
    );
}

/// setrlimit(RLIMIT_MEMLOCK) refused (a low hard limit and no
/// CAP_SYS_RESOURCE): said in the log, and tracing goes on (this kernel
/// accounts BPF memory to the cgroup).
#[test]
fn refused_memlock_is_not_a_failure() {
    let _serial = serial();
    let out = Command::new("prlimit")
        .args([
            "--memlock=65536:65536",
            "setpriv",
            "--bounding-set=-sys_resource",
            "--inh-caps=-sys_resource",
        ])
        .arg(env!("CARGO_BIN_EXE_daxtrace"))
        .args(["stream", "--json", "--duration", "1s"])
        .env("DAXTRACE_LOG", "info")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("setrlimit(RLIMIT_MEMLOCK) refused"),
        "the limit was not refused, nothing tested: {err}"
    );
    assert_eq!(out.status.code(), Some(0), "{err}");
}

/// `probe` as root checks its plan by attaching (then detaches): a kernel
/// that lists an attach point but refuses it at load (fentry's EPERM here)
/// shows FAILED with the kernel's reason, where `--no-attach` predicts USED.
#[test]
fn probe_as_root_checks_the_plan_by_attaching() {
    let _serial = serial();
    let plan = |args: &[&str]| -> Value {
        let out = daxtrace()
            .arg("probe")
            .arg("--json")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let rows = |p: &Value, backend: &str, status: &str| -> Vec<String> {
        p["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["backend"] == backend && e["status"] == status)
            .map(|e| format!("{} {}", e["symbol"], e["detail"]))
            .collect()
    };
    let checked = plan(&[]);
    let predicted = plan(&["--no-attach"]);
    assert_eq!(checked["checked"], "attached");
    assert_eq!(predicted["checked"], "predicted");
    assert_eq!(
        our_programs(),
        Vec::<String>::new(),
        "probe left programs attached"
    );
    let used = |p: &Value| {
        p["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["status"] == "used")
            .count()
    };
    assert!(used(&checked) >= 10, "{checked}");
    let fentry_refused = !std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists();
    if fentry_refused {
        assert!(
            !rows(&predicted, "fentry", "used").is_empty(),
            "prediction: fentry is listed, so USED"
        );
        assert!(
            rows(&checked, "fentry", "used").is_empty(),
            "{:?}",
            rows(&checked, "fentry", "used")
        );
        let failed = rows(&checked, "fentry", "failed");
        assert!(
            failed.iter().any(|r| r.contains("Operation not permitted")),
            "{failed:?}"
        );
        // Their steps fell back to typed tracepoints, which attach here.
        assert!(!rows(&checked, "tp_btf", "used").is_empty());
    }
}

/// A DAX filesystem mounted after the start: `iomap:iomap_iter` (left out
/// while none is mounted) is attached once the mount appears. This host has
/// no DAX device, so inside a private mount namespace a stand-in `queue/`
/// whose `dax` says 1 is bound over the loop device's own; the program is
/// really loaded and attached, and detached at exit.
#[test]
fn iomap_iter_is_attached_when_a_dax_filesystem_is_mounted_later() {
    let _serial = serial();
    let dir = std::env::temp_dir().join(format!("daxtrace-latemount-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let script = r#"
d=$1; bin=$2
truncate -s 64M $d/img
mkfs.ext4 -q -F -b 4096 $d/img
loop=$(losetup -f --show $d/img)
name=${loop#/dev/}
mm=$(cat /sys/class/block/$name/dev)
"$bin" stream --json --dev $mm --plan-json $d/plan.json > $d/out 2> $d/err &
pid=$!
i=0; until grep -q " attached in " $d/err; do i=$((i+1)); [ $i -lt 240 ] || break; sleep 0.25; done
echo started
i=0; until [ -e $d/go ] || [ $i -ge 600 ]; do i=$((i+1)); sleep 0.1; done
mkdir -p $d/q $d/mnt
echo 1 > $d/q/dax
mount --bind $d/q $(realpath /sys/class/block/$name)/queue
mount $loop $d/mnt
i=0; until grep -q "mounted now" $d/err; do i=$((i+1)); [ $i -lt 80 ] || break; sleep 0.25; done
echo mounted
i=0; until [ -e $d/stop ] || [ $i -ge 600 ]; do i=$((i+1)); sleep 0.1; done
kill -INT $pid; wait $pid; echo "rc $?"
umount $d/mnt; losetup -d $loop
"#;
    let mut child = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(&dir)
        .arg(env!("CARGO_BIN_EXE_daxtrace"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = |want: &str| {
        let mut l = String::new();
        out.read_line(&mut l).unwrap();
        assert!(
            l.starts_with(want),
            "expected {want:?}, got {l:?}; daxtrace said: {}",
            std::fs::read_to_string(dir.join("err")).unwrap_or_default()
        );
        l
    };
    let iter_attached = || our_programs().iter().any(|p| p == "btf_iomap_iter");
    // `--plan-json`: is iomap:iomap_iter's tp_btf entry used?
    let plan_uses_iter = || {
        let p: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("plan.json")).unwrap()).unwrap();
        p["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["symbol"] == "iomap:iomap_iter" && e["status"] == "used")
    };
    line("started");
    assert!(
        !plan_uses_iter(),
        "--plan-json says iomap_iter is used before any DAX mount"
    );
    let err = std::fs::read_to_string(dir.join("err")).unwrap();
    assert!(err.contains("iomap:iomap_iter not attached yet"), "{err}");
    assert!(
        !iter_attached(),
        "attached before any DAX mount: {:?}",
        our_programs()
    );
    std::fs::write(dir.join("go"), "").unwrap();
    line("mounted");
    let err = std::fs::read_to_string(dir.join("err")).unwrap();
    assert!(
        err.contains("a DAX filesystem is mounted now: attached iomap:iomap_iter (tp_btf)"),
        "{err}"
    );
    assert!(iter_attached(), "{:?}", our_programs());
    assert!(
        plan_uses_iter(),
        "--plan-json not written again after the later attach"
    );
    std::fs::write(dir.join("stop"), "").unwrap();
    let rc = line("rc ");
    assert_eq!(
        rc.trim(),
        "rc 0",
        "{}",
        std::fs::read_to_string(dir.join("err")).unwrap_or_default()
    );
    assert!(child.wait().unwrap().success());
    // The kernel frees programs when the last fd closes; give RCU a moment.
    let t0 = Instant::now();
    while !our_programs().is_empty() && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        our_programs(),
        Vec::<String>::new(),
        "programs left after exit"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
