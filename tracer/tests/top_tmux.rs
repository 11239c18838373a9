//! `daxtrace top` in a real terminal: tmux runs a replay of a racing trace,
//! the captured screen must show the finding, Enter must open its timeline,
//! and q must exit with status 0 leaving the terminal restored (primary
//! screen, canonical mode, cursor visible).
//!
//! Needs the `tmux` binary (`cargo xtask setup` installs it).

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("running tmux")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "top"]).stdout).into_owned()
    }

    fn var(&self, name: &str) -> String {
        let out = self.run(&[
            "display-message",
            "-p",
            "-t",
            "top",
            &format!("#{{{name}}}"),
        ]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Poll the screen until `want` holds; the last screen is in the panic message.
    fn wait_for(&self, what: &str, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.screen();
            if want(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

#[test]
fn top_replay_shows_the_finding_drills_down_and_quits_cleanly() {
    assert!(
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success()),
        "tmux is not installed: run `cargo xtask setup` (or apt-get install -y tmux)"
    );
    let bin = env!("CARGO_BIN_EXE_daxtrace");
    let trace = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/top-race.jsonl");
    let tmux = Tmux {
        socket: format!("daxtrace-top-test-{}", std::process::id()),
    };
    // After daxtrace exits, the shell prints its status and the terminal's
    // canonical-mode flag ("icanon", or "-icanon" if raw mode leaked) and END, then waits.
    let script = format!(
        "{bin} top --replay {} --speed 0; echo \"exit=$?\"; stty -a | tr ' ' '\\n' | grep -x -- '-*icanon'; echo END; sleep 600",
        trace.display()
    );
    let out = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "120",
        "-y",
        "34",
        &script,
    ]);
    assert!(
        out.status.success(),
        "tmux new-session: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let s = tmux.wait_for("the finding", |s| s.contains("hole_load_after_allocate"));
    assert!(s.contains("corruption"), "{s}");
    assert!(s.contains("findings 1"), "{s}");
    assert_eq!(
        tmux.var("alternate_on"),
        "1",
        "the dashboard draws on the alternate screen"
    );

    tmux.run(&["send-keys", "-t", "top", "Enter"]);
    let s = tmux.wait_for("the timeline", |s| {
        s.contains("Timeline of page 259:0 ino 12 pgoff 0") && s.contains("load_hole")
    });
    // The ordering, spelled out, and the events of the page with their roles.
    assert!(
        s.contains("lookup reader(101) F1 -> alloc writer(102) F2"),
        "{s}"
    );
    assert!(s.contains("hole load"), "{s}");

    tmux.run(&["send-keys", "-t", "top", "q"]);
    let s = tmux.wait_for("daxtrace to exit", |s| s.lines().any(|l| l.trim() == "END"));
    assert!(s.lines().any(|l| l.trim() == "exit=0"), "{s}");
    assert!(
        s.lines().any(|l| l.trim() == "icanon"),
        "terminal left in raw mode:\n{s}"
    );
    assert_eq!(tmux.var("alternate_on"), "0", "alternate screen left on");
    assert_eq!(tmux.var("cursor_flag"), "1", "cursor left hidden");
}
