//! The tracers compared: daxtrace (record and stream, per backend),
//! Debian's trace-cmd recording the same tracepoints, and Debian's bpftrace
//! counting them. How each is started, when it is ready, how it is stopped,
//! and what its output says (the parsers are pure and unit-tested).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use serde::Serialize;

use super::proc::{line_with, perf_event_fds, Finished, Running};

/// trace-cmd and bpftrace, unpacked from Debian's packages (never installed).
pub struct Unpacked {
    pub trace_cmd: PathBuf,
    pub bpftrace: PathBuf,
    pub lib_path: String,
}

pub fn fetch() -> Result<Unpacked> {
    let mut f = crate::lab::fetch::Fetcher::new(&crate::lab::fetch::cache_dir())?;
    let (root, lib_path) = f.unpacked("bench-tracers", &["trace-cmd", "bpftrace"])?;
    let u = Unpacked {
        trace_cmd: root.join("usr/bin/trace-cmd"),
        bpftrace: root.join("usr/bin/bpftrace"),
        lib_path,
    };
    for p in [&u.trace_cmd, &u.bpftrace] {
        if !p.exists() {
            bail!(
                "{} is missing after unpacking; delete {} and run again",
                p.display(),
                root.display()
            );
        }
    }
    Ok(u)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DxMode {
    /// `daxtrace record -o FILE`: binary, zstd-compressed trace file.
    Record,
    /// `daxtrace stream --json > /dev/null`: every event formatted as JSON.
    Stream,
}

/// One column of the comparison.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "tool", rename_all = "kebab-case")]
pub enum Tracer {
    Untraced,
    /// `before`: the `--daxtrace-before` binary (A/B in one run).
    Daxtrace {
        mode: DxMode,
        backend: Option<String>,
        before: bool,
    },
    TraceCmd,
    Bpftrace,
    /// bpftrace with empty probes on the same tracepoints: the floor any
    /// BPF program on a classic tracepoint pays here.
    BpftraceEmpty,
}

impl Tracer {
    pub fn name(&self) -> String {
        match self {
            Tracer::Untraced => "untraced".into(),
            Tracer::Daxtrace {
                mode,
                backend,
                before,
            } => format!(
                "daxtrace {}{}{}",
                match mode {
                    DxMode::Record => "record",
                    DxMode::Stream => "stream",
                },
                backend
                    .as_ref()
                    .map(|b| format!(" --backend {b}"))
                    .unwrap_or_default(),
                if *before { " (before)" } else { "" }
            ),
            Tracer::TraceCmd => "trace-cmd record".into(),
            Tracer::Bpftrace => "bpftrace count()".into(),
            Tracer::BpftraceEmpty => "bpftrace empty probe".into(),
        }
    }
}

/// What one traced run reports besides the workload's timing.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ToolRun {
    /// Spawn to ready (programs loaded and attached, or recording), wall.
    pub ready_s: f64,
    /// daxtrace's own "attached in" figure; bpftrace's "Attaching" line.
    pub reported_s: Option<f64>,
    /// CPU time of the tool (and its reaped children) for the whole run.
    pub tool_cpu_ns: u64,
    /// Events the tool saw (every source, not only the workload).
    pub events: u64,
    pub lost: u64,
    /// Size of what it wrote (trace file, trace.dat).
    pub file_bytes: Option<u64>,
    /// trace.dat without its fixed header (the per-CPU data sections).
    pub data_bytes: Option<u64>,
    /// The command line, for the report.
    pub command: String,
    /// `--bpf-stats`: the tool's eBPF programs that ran in the timed loop.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub progs: Vec<super::bpfstats::ProgStat>,
}

/// Everything a run needs to start a tracer.
pub struct Env<'a> {
    pub daxtrace: &'a Path,
    /// `--daxtrace-before`: the binary of the `(before)` configs.
    pub daxtrace_before: Option<&'a Path>,
    pub tools: &'a Unpacked,
    /// `category:event` names, the ones daxtrace attaches that exist here.
    pub tracepoints: &'a [String],
    pub tracefs: &'a Path,
    /// Scratch folder for output files (not on the traced filesystem).
    pub scratch: &'a Path,
    pub ready_timeout: Duration,
}

/// A started tracer, ready (or the untraced placeholder).
pub struct Started {
    tracer: Tracer,
    run: Option<Running>,
    ready: Duration,
    reported: Option<f64>,
    out: Option<PathBuf>,
    command: String,
    /// tracefs files trace-cmd changes and leaves changed (events stay
    /// enabled after it exits: every later run would pay for them), with
    /// their values from before; written back on drop.
    restore: Vec<(PathBuf, String)>,
}

impl Drop for Started {
    fn drop(&mut self) {
        // The tool is stopped first (`run` is dropped or reaped by now).
        if let Some(r) = self.run.take() {
            drop(r);
        }
        for (p, v) in &self.restore {
            if let Err(e) = fs::write(p, v) {
                eprintln!("bench: cannot restore {} to {v:?}: {e}", p.display());
            }
        }
    }
}

pub fn start(t: &Tracer, env: &Env) -> Result<Started> {
    let mut s = Started {
        tracer: t.clone(),
        run: None,
        ready: Duration::ZERO,
        reported: None,
        out: None,
        command: String::new(),
        restore: Vec::new(),
    };
    match t {
        Tracer::Untraced => {}
        Tracer::Daxtrace {
            mode,
            backend,
            before,
        } => {
            let bin = if *before {
                env.daxtrace_before
                    .context("a (before) config without --daxtrace-before")?
            } else {
                env.daxtrace
            };
            let mut c = Command::new(bin);
            match mode {
                DxMode::Record => {
                    let out = env.scratch.join("daxtrace.dxt");
                    c.arg("record").arg("-o").arg(&out);
                    s.out = Some(out);
                    c.stdout(Stdio::null());
                }
                DxMode::Stream => {
                    c.args(["stream", "--json"]).stdout(Stdio::null());
                }
            }
            if let Some(b) = backend {
                c.args(["--backend", b]);
            }
            s.command = command_line(&c);
            let mut r = Running::spawn(&mut c, false)?;
            s.ready = r
                .wait_ready(env.ready_timeout, |ls, _| line_with(ls, "attached in"))
                .with_context(|| format!("{} did not attach", s.command))?;
            s.reported = r.lines.iter().find_map(|l| parse_daxtrace_ready(&l.text));
            s.run = Some(r);
        }
        Tracer::TraceCmd => {
            let out = env.scratch.join("trace.dat");
            let mut files = vec![env.tracefs.join("tracing_on")];
            files.extend(
                env.tracepoints
                    .iter()
                    .filter_map(|tp| tp.split_once(':'))
                    .map(|(c, e)| env.tracefs.join("events").join(c).join(e).join("enable")),
            );
            s.restore = files
                .into_iter()
                .filter_map(|f| Some((f.clone(), fs::read_to_string(&f).ok()?.trim().to_string())))
                .collect();
            let mut c = trace_cmd(env)?;
            // Line-buffered, or "Hit Ctrl^C" (its ready line) only comes at exit.
            c.args(["-oL", "-eL"]);
            c.arg(&env.tools.trace_cmd);
            c.arg("record");
            for tp in env.tracepoints {
                c.args(["-e", tp]);
            }
            c.arg("-o").arg(&out);
            s.command = format!(
                "unshare -m (stand-ins over ftrace_enabled, set_ftrace_*) {}",
                command_line(&c)
            );
            let mut r = Running::spawn(&mut c, true)?;
            s.ready = r
                .wait_ready(env.ready_timeout, |ls, _| {
                    line_with(ls, "Hit Ctrl^C to stop recording")
                })
                .with_context(|| format!("{} did not start", s.command))?;
            s.out = Some(out);
            s.run = Some(r);
        }
        Tracer::Bpftrace | Tracer::BpftraceEmpty => {
            let mut c = Command::new(&env.tools.bpftrace);
            c.env("LD_LIBRARY_PATH", &env.tools.lib_path);
            let script = bpftrace_script(env.tracepoints);
            c.arg("-e").arg(if *t == Tracer::Bpftrace {
                script
            } else {
                script.replace("@[probe] = count();", "")
            });
            s.command = command_line(&c);
            let mut r = Running::spawn(&mut c, true)?;
            let want = env.tracepoints.len() + online_cpus();
            // Ready once every probe's perf event is open (after one per CPU
            // for the output buffer); its "Attaching" line comes before that.
            let t0 = r.started;
            s.ready = r
                .wait_ready(env.ready_timeout, |ls, pid| {
                    line_with(ls, "Attaching")
                        .filter(|_| perf_event_fds(pid) >= want)
                        .map(|_| t0.elapsed())
                })
                .with_context(|| format!("{} did not attach", s.command))?;
            s.reported = line_with(&r.lines, "Attaching").map(|d| d.as_secs_f64());
            s.run = Some(r);
        }
    }
    Ok(s)
}

impl Started {
    /// The tool's process (None: untraced).
    pub fn pid(&self) -> Option<i32> {
        self.run.as_ref().map(Running::pid)
    }

    /// Stop the tracer (SIGINT, as a user would) and read what it says.
    pub fn finish(mut self, env: &Env) -> Result<Option<ToolRun>> {
        let Some(r) = self.run.take() else {
            return Ok(None);
        };
        let name = self.tracer.name();
        let f: Finished = r
            .stop(libc::SIGINT, Duration::from_secs(120))
            .with_context(|| name.clone())?;
        let text = f.text();
        if f.code != 0 {
            bail!(
                "{name} exited with {}:\n{}",
                f.code,
                super::proc::tail(&f.lines, 15)
            );
        }
        let mut t = ToolRun {
            ready_s: self.ready.as_secs_f64(),
            reported_s: self.reported,
            tool_cpu_ns: super::workload::nanos(f.cpu),
            command: self.command.clone(),
            ..ToolRun::default()
        };
        match &self.tracer {
            Tracer::Untraced => {}
            Tracer::Daxtrace {
                mode: DxMode::Record,
                ..
            } => {
                let (events, bytes, lost) = parse_daxtrace_record(&text)
                    .with_context(|| format!("{name}: no summary line in:\n{text}"))?;
                t.events = events;
                t.lost = lost;
                t.file_bytes = Some(bytes);
            }
            Tracer::Daxtrace {
                mode: DxMode::Stream,
                ..
            } => {
                let (events, lost) = parse_daxtrace_stream(&text)
                    .with_context(|| format!("{name}: no summary line in:\n{text}"))?;
                t.events = events;
                t.lost = lost;
            }
            Tracer::TraceCmd => {
                let out = self.out.as_deref().context("trace.dat path")?;
                t.file_bytes = Some(
                    fs::metadata(out)
                        .with_context(|| format!("{name} wrote no {}", out.display()))?
                        .len(),
                );
                t.data_bytes = Some(parse_tracecmd_data_bytes(&text));
                let stat = Command::new(&env.tools.trace_cmd)
                    .env("LD_LIBRARY_PATH", &env.tools.lib_path)
                    .args(["report", "--stat", "-i"])
                    .arg(out)
                    .output()
                    .context("trace-cmd report --stat")?;
                let (events, lost) = parse_tracecmd_stat(&String::from_utf8_lossy(&stat.stdout))
                    .with_context(|| {
                        format!(
                            "trace-cmd report --stat gave no 'read events':\n{}",
                            String::from_utf8_lossy(&stat.stderr)
                        )
                    })?;
                t.events = events;
                t.lost = lost;
            }
            Tracer::BpftraceEmpty => {}
            Tracer::Bpftrace => {
                let counts = parse_bpftrace_counts(&text);
                t.events = counts.values().sum();
            }
        }
        Ok(Some(t))
    }
}

/// `cmd` as a shell-ish line for the report.
pub fn command_line(c: &Command) -> String {
    std::iter::once(c.get_program())
        .chain(c.get_args())
        .map(|a| {
            let s = a.to_string_lossy();
            if s.contains(|ch: char| ch.is_whitespace() || ch == '{' || ch == '@') {
                format!("'{s}'")
            } else {
                s.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }).unwrap_or(1)
}

/// A script that counts every given tracepoint per probe, nothing else.
pub fn bpftrace_script(tracepoints: &[String]) -> String {
    let probes: Vec<String> = tracepoints
        .iter()
        .map(|t| format!("tracepoint:{t}"))
        .collect();
    format!("{} {{ @[probe] = count(); }}", probes.join(", "))
}

/// trace-cmd in its own mount namespace. This host refuses writes to
/// /proc/sys/kernel/ftrace_enabled and tracefs' set_ftrace_* files, which
/// trace-cmd insists on making; writable stand-ins are bind-mounted over
/// them in the child's private namespace (DESIGN.md §5), so nothing outside
/// it changes. The command is `stdbuf`: callers add its flags, then
/// trace-cmd's path and arguments.
pub fn trace_cmd(env: &Env) -> Result<Command> {
    let stand = env.scratch.join("ftrace-stand-ins");
    fs::create_dir_all(&stand)?;
    let mut pairs = Vec::new();
    let mut targets = vec![PathBuf::from("/proc/sys/kernel/ftrace_enabled")];
    for name in [
        "set_ftrace_filter",
        "set_ftrace_notrace",
        "set_ftrace_pid",
        "set_ftrace_notrace_pid",
        "set_graph_function",
        "set_graph_notrace",
    ] {
        targets.push(env.tracefs.join(name));
    }
    for t in targets.into_iter().filter(|t| t.exists()) {
        let s = stand.join(t.file_name().unwrap_or_default());
        fs::write(&s, fs::read(&t).unwrap_or_default())
            .with_context(|| format!("cannot write {}", s.display()))?;
        pairs.push((
            CString::new(s.as_os_str().as_bytes())?,
            CString::new(t.as_os_str().as_bytes())?,
        ));
    }
    // stdbuf's arguments come first; callers add the trace-cmd path.
    let mut c = Command::new("stdbuf");
    c.env("LD_LIBRARY_PATH", &env.tools.lib_path);
    // SAFETY: only async-signal-safe syscalls (unshare, mount) between fork
    // and exec, on C strings made before the fork.
    unsafe {
        c.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Private, so the bind mounts never propagate back to the host.
            let root = c"/";
            if libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            for (src, dst) in &pairs {
                if libc::mount(
                    src.as_ptr(),
                    dst.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    Ok(c)
}

/// The `--backend` values `daxtrace stream --help` lists (none: the
/// flag does not exist yet, one default backend).
pub fn parse_backends(help: &str) -> Vec<String> {
    let Some(at) = help.find("--backend") else {
        return Vec::new();
    };
    let rest = &help[at..];
    // `-h` style: "[possible values: a, b]".
    if let Some(pv) = rest.find("[possible values:") {
        let list = &rest[pv + "[possible values:".len()..];
        let list = &list[..list.find(']').unwrap_or(list.len())];
        return list
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty() && v != "auto")
            .collect();
    }
    // `--help` style (values with docs): "Possible values:" then "- name: doc" lines.
    let Some(pv) = rest.find("Possible values:") else {
        return Vec::new();
    };
    rest[pv..]
        .lines()
        .skip(1)
        .map(str::trim)
        .take_while(|l| l.starts_with("- "))
        .filter_map(|l| l[2..].split(':').next().map(|v| v.trim().to_string()))
        .filter(|v| !v.is_empty() && v != "auto")
        .collect()
}

/// "daxtrace: 3 tracepoints attached in 0.12s (...)" -> 0.12.
pub fn parse_daxtrace_ready(line: &str) -> Option<f64> {
    let rest = &line[line.find("attached in ")? + "attached in ".len()..];
    let num: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    num.parse().ok()
}

/// `stream`'s last line: "daxtrace: N events (...), lost L" -> (N, L).
pub fn parse_daxtrace_stream(text: &str) -> Option<(u64, u64)> {
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with("daxtrace: ") && l.contains(" events ") && l.contains(", lost "))?;
    let events = first_number(&line["daxtrace: ".len()..])?;
    let lost = first_number(&line[line.rfind(", lost ")? + ", lost ".len()..])?;
    Some((events, lost))
}

/// `record`'s last line: "daxtrace: recorded N events to F (B bytes, ...); lost L (...)" -> (N, B, L).
pub fn parse_daxtrace_record(text: &str) -> Option<(u64, u64, u64)> {
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with("daxtrace: recorded "))?;
    let events = first_number(&line["daxtrace: recorded ".len()..])?;
    let open = line.rfind(" bytes, ")?;
    let bytes = line[..open]
        .rsplit('(')
        .next()
        .and_then(|s| s.trim().parse().ok())?;
    let lost = first_number(&line[line.rfind("; lost ")? + "; lost ".len()..])?;
    Some((events, bytes, lost))
}

/// bpftrace's map dump at exit: "@[tracepoint:a:b]: N" lines.
pub fn parse_bpftrace_counts(text: &str) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for l in text.lines() {
        let Some(rest) = l.trim().strip_prefix("@[") else {
            continue;
        };
        let Some((key, n)) = rest.split_once("]: ") else {
            continue;
        };
        if let Ok(n) = n.trim().parse::<u64>() {
            *m.entry(key.to_string()).or_insert(0) += n;
        }
    }
    m
}

/// trace-cmd record's "    N bytes in size (M uncompressed)" lines, summed.
pub fn parse_tracecmd_data_bytes(text: &str) -> u64 {
    text.lines()
        .filter_map(|l| {
            l.trim()
                .split_once(" bytes in size")
                .and_then(|(n, _)| n.trim().parse::<u64>().ok())
        })
        .sum()
}

/// `trace-cmd report --stat`: ("read events" summed over CPUs, "overrun" +
/// "dropped events" summed).
pub fn parse_tracecmd_stat(text: &str) -> Option<(u64, u64)> {
    let mut read = None;
    let mut lost = 0;
    for l in text.lines() {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let Ok(v) = v.trim().parse::<u64>() else {
            continue;
        };
        match k.trim() {
            "read events" => *read.get_or_insert(0) += v,
            "overrun" | "dropped events" => lost += v,
            _ => {}
        }
    }
    read.map(|r| (r, lost))
}

fn first_number(s: &str) -> Option<u64> {
    let d: String = s
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    d.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_from_help() {
        let help = "Options:\n      --backend <BACKEND>\n          Attach backend [default: auto] [possible values: auto, tracepoint, tp_btf, kprobe,\n          fentry]\n      --dev <MAJ:MIN>\n";
        assert_eq!(
            parse_backends(help),
            ["tracepoint", "tp_btf", "kprobe", "fentry"]
        );
        assert!(parse_backends("Options:\n      --dev <MAJ:MIN>\n").is_empty());
        let long = "      --backend <BACKEND>\n          Attach backend\n\n          Possible values:\n          - auto:       Cheapest\n          - tracepoint: Classic\n          - tp_btf:     Typed\n          \n          [default: auto]\n";
        assert_eq!(parse_backends(long), ["tracepoint", "tp_btf"]);
    }

    #[test]
    fn daxtrace_lines() {
        assert_eq!(
            parse_daxtrace_ready("daxtrace: 13 tracepoints attached in 0.08s (fs_dax 8/8, ...)"),
            Some(0.08)
        );
        assert_eq!(parse_daxtrace_ready("daxtrace: something else"), None);
        let s = "daxtrace: 13 tracepoints attached in 0.08s\ndaxtrace: 2000123 events (map_blocks 2000000, lost 123), lost 5\n";
        assert_eq!(parse_daxtrace_stream(s), Some((2_000_123, 5)));
        let r = "daxtrace: recorded 1999 events to /x/daxtrace.dxt (9876 bytes, 4.94 bytes/event, 100 events/s); lost 7 (0 by the writer queue); stopped: signal";
        assert_eq!(parse_daxtrace_record(r), Some((1999, 9876, 7)));
        assert_eq!(parse_daxtrace_record("daxtrace: recorded"), None);
    }

    #[test]
    fn bpftrace_and_tracecmd() {
        let b = "Attaching 2 probes...\n\n\n@[tracepoint:ext4:ext4_ext_map_blocks_exit]: 258\n@[tracepoint:iomap:iomap_iter_dstmap]: 20000\n";
        let m = parse_bpftrace_counts(b);
        assert_eq!(m.len(), 2);
        assert_eq!(m["tracepoint:iomap:iomap_iter_dstmap"], 20_000);
        let rec = "CPU0 data recorded at offset=0xf9000\n    399714 bytes in size (6094848 uncompressed)\nCPU1 data recorded at offset=0x15b000\n    448438 bytes in size (5976064 uncompressed)\n";
        assert_eq!(parse_tracecmd_data_bytes(rec), 399_714 + 448_438);
        let stat = "cpus=2\n\nCPU: 0\nentries: 0\noverrun: 2\ncommit overrun: 0\nbytes: 0\ndropped events: 1\nread events: 101129\n\nCPU: 1\noverrun: 0\nread events: 99183\n";
        assert_eq!(parse_tracecmd_stat(stat), Some((200_312, 3)));
        assert_eq!(parse_tracecmd_stat("cpus=2\n"), None);
    }

    #[test]
    fn script_counts_every_tracepoint() {
        let s = bpftrace_script(&[
            "iomap:iomap_iter_dstmap".into(),
            "ext4:ext4_punch_hole".into(),
        ]);
        assert_eq!(s, "tracepoint:iomap:iomap_iter_dstmap, tracepoint:ext4:ext4_punch_hole { @[probe] = count(); }");
    }
}
