//! The README's sample-trace block runs as written on `examples/race.dxt`:
//! every `$ daxtrace ...` command in it succeeds (exit 1 = findings where
//! the README says so), every output line it shows is printed, in order, and
//! the sample holds findings. Keeps the sample and the README from rotting.

use std::path::{Path, PathBuf};
use std::process::Command;

use tracer::event::Event;
use tracer::source::tracefile::TraceReader;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// (command line, output lines shown) of the README's sample-trace block.
fn readme_block() -> Vec<(String, Vec<String>)> {
    let text = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = text
        .split("## A sample trace")
        .nth(1)
        .expect("README has the sample-trace section");
    let block = section
        .split("```console\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a console block");
    let mut cmds: Vec<(String, Vec<String>)> = Vec::new();
    for line in block.lines() {
        if let Some(cmd) = line.strip_prefix("$ ") {
            cmds.push((cmd.to_owned(), Vec::new()));
        } else {
            cmds.last_mut()
                .expect("output before any command")
                .1
                .push(line.to_owned());
        }
    }
    cmds
}

#[test]
fn readme_sample_commands_run_and_print_what_the_readme_shows() {
    let cmds = readme_block();
    let names: Vec<&str> = cmds
        .iter()
        .map(|(c, _)| c.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(
        names,
        ["analyze", "summary", "timeline", "export"],
        "the README shows these four"
    );
    // Run where `examples/` resolves as in the repository, writing outputs to a temp dir.
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(repo().join("examples"), dir.path().join("examples")).unwrap();
    for (cmd, shown) in &cmds {
        let args: Vec<&str> = cmd.split_whitespace().collect();
        assert_eq!(args[0], "daxtrace");
        let out = Command::new(env!("CARGO_BIN_EXE_daxtrace"))
            .args(&args[1..])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // analyze and timeline report the findings by exit status 1 (DESIGN.md §3).
        let want = if matches!(args[1], "analyze" | "timeline") {
            1
        } else {
            0
        };
        assert_eq!(out.status.code(), Some(want), "{cmd}\n{text}");
        let mut actual = text.lines().map(str::trim_end);
        for line in shown.iter().filter(|l| l.as_str() != "...") {
            assert!(
                actual.any(|a| a == line.trim_end()),
                "`{cmd}` did not print, in this order:\n{line}\n--- it printed:\n{text}"
            );
        }
        if args[1] != "export" {
            assert!(
                text.contains("hole_load_after_allocate") || text.contains("findings:  3"),
                "{cmd}: no finding\n{text}"
            );
        }
    }
    let perfetto = dir.path().join("race.perfetto-trace");
    assert!(std::fs::metadata(&perfetto).unwrap().len() > 1000);
    #[cfg(feature = "perfetto")]
    {
        use protobuf::Message;
        let trace =
            perfetto_protos::trace::Trace::parse_from_bytes(&std::fs::read(&perfetto).unwrap())
                .unwrap();
        let findings = trace
            .packet
            .iter()
            .filter(|p| p.has_track_event() && p.track_event().name().starts_with("FINDING"))
            .count();
        assert!(
            findings >= 3,
            "{findings} findings marked in the Perfetto trace"
        );
    }
}

#[test]
fn sample_trace_file_holds_the_sample_jsonl() {
    let jsonl = std::fs::read_to_string(repo().join("examples/race.jsonl")).unwrap();
    let want: Vec<Event> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut r = TraceReader::open(&repo().join("examples/race.dxt")).unwrap();
    let got: Vec<Event> = r.by_ref().collect();
    assert_eq!(
        got, want,
        "examples/race.dxt is no longer `export --format daxtrace` of examples/race.jsonl"
    );
    assert!(r.report().damage.is_empty() && r.report().footer.is_some());
    // Both forms give the same findings.
    let run = |p: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_daxtrace"))
            .args(["analyze", "--json", p])
            .current_dir(repo())
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap())
    };
    let (a, b) = (run("examples/race.jsonl"), run("examples/race.dxt"));
    assert_eq!(a, b);
    assert_eq!(a.0, Some(1));
    assert_eq!(
        a.1.lines()
            .filter(|l| l.contains(r#""kind":"finding""#))
            .count(),
        3,
        "{}",
        a.1
    );
}
