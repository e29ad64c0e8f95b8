//! `--tui`: the real binary in a real terminal (tmux): workers join and are listed, `s`
//! starts, the figures move, `+` raises the load, `x` stops, `q` stops a run, writes results
//! and quits, and the terminal comes back (after a panic too). Without a terminal, `--tui`
//! says so and the run goes on headless. A `priority` run's per-class table comes after the
//! UI closes.
//!
//! The tmux tests skip, saying why, when tmux is not installed (`.ci/run` installs it).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::util::{Proc, Scenario, Target, TestDir, WorkerProc, wait_until};

/// Long enough for a debug build on a busy 2-core machine; no test passes or fails on time.
const SCREEN: Duration = Duration::from_secs(30);

/// A tmux server of its own (socket in a test directory) with one session running `sh`;
/// killed on drop.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    /// A session of `w` × `h` cells, or `None` (with the reason printed) without tmux.
    fn start(dir: &TestDir, w: u16, h: u16) -> Option<Tmux> {
        let found = Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            eprintln!("skipping: tmux is not installed (apt-get install tmux)");
            return None;
        }
        let tmux = Tmux {
            socket: dir.join("tmux.sock"),
        };
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            &w.to_string(),
            "-y",
            &h.to_string(),
            "sh",
        ]);
        Some(tmux)
    }

    /// `tmux ARGS` on this server; its stdout.
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            // tmux wants a terminal type even for detached sessions; CI has none.
            .env("TERM", "xterm-256color")
            .output()
            .expect("run tmux");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Type a shell command line and press Enter.
    fn type_line(&self, line: &str) {
        self.run(&["send-keys", "-t", "t", "-l", line]);
        self.run(&["send-keys", "-t", "t", "Enter"]);
    }

    /// Press a key (`s`, `+`, `Tab`, ...).
    fn press(&self, key: &str) {
        self.run(&["send-keys", "-t", "t", key]);
    }

    /// What the pane shows now.
    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "t"])
    }

    /// A tmux format of the pane (`#{alternate_on}`, ...).
    fn format(&self, f: &str) -> String {
        self.run(&["display-message", "-p", "-t", "t", f])
            .trim()
            .to_string()
    }

    /// Wait until the screen satisfies `pred`; panics showing the screen after [`SCREEN`].
    fn wait<T>(&self, what: &str, mut pred: impl FnMut(&str) -> Option<T>) -> T {
        let mut last = String::new();
        let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_until(SCREEN, what, || {
                last = self.screen();
                pred(&last)
            })
        }));
        found.unwrap_or_else(|_| panic!("timed out waiting for {what}; the screen:\n{last}"))
    }

    /// Wait until the screen contains every one of `needles`.
    fn wait_for(&self, needles: &[&str]) -> String {
        self.wait(&format!("{needles:?} on screen"), |s| {
            needles.iter().all(|n| s.contains(n)).then(|| s.to_string())
        })
    }

    /// Assert the terminal is back to normal: main screen, cursor shown, line discipline
    /// cooked with echo (raw mode undone).
    fn assert_terminal_back(&self) {
        assert_eq!(
            self.format("#{alternate_on}"),
            "0",
            "still on the alternate screen"
        );
        assert_eq!(self.format("#{cursor_flag}"), "1", "cursor still hidden");
        let tty = self.format("#{pane_tty}");
        let out = Command::new("stty")
            .args(["-a", "-F", &tty])
            .output()
            .expect("run stty");
        let modes = String::from_utf8_lossy(&out.stdout);
        let words: Vec<&str> = modes.split([' ', ';', '\n']).collect();
        for mode in ["icanon", "echo", "isig"] {
            assert!(
                words.contains(&mode),
                "{mode} still off (raw mode):\n{modes}"
            );
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

/// The shell command that runs `stampede ARGS` in the pane with a clean environment, its
/// stderr to `err`, then prints `EXIT-<code>`.
fn command_line(args: &[&str], err: &Path, extra_env: &str) -> String {
    format!(
        "env -u RUST_LOG -u STAMPEDE_LOG -u STAMPEDE_TOKEN NO_COLOR=1 {extra_env} '{}' {} 2>'{}'; echo EXIT-$?",
        env!("CARGO_BIN_EXE_stampede"),
        args.iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" "),
        err.display()
    )
}

/// The request count of the `Aggregated` row on screen.
fn aggregated(screen: &str) -> Option<u64> {
    let row = screen.lines().find(|l| l.contains("│Aggregated"))?;
    row.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn tui_watches_and_steers_a_distributed_run() {
    let dir = TestDir::new();
    let Some(tmux) = Tmux::start(&dir, 100, 30) else {
        return;
    };
    let target = Target::start_with(&["--delay", "20ms"]);
    let scenario = Scenario::closed(&target.url, 10)
        .duration("5m")
        .write_to(&dir);
    let (err, out) = (dir.join("master.err"), dir.join("out"));
    tmux.type_line(&command_line(
        &[
            "master",
            "--bind",
            "127.0.0.1:0",
            "--token",
            "tui-test-token-16",
            "--scenario",
            &scenario.display().to_string(),
            "--tui",
            "--out",
            &out.display().to_string(),
        ],
        &err,
        "",
    ));
    // The address workers join is on the screen (and in the log before the UI took it).
    let screen = tmux.wait_for(&["STAMPEDE", "waiting", "0 worker(s)", "q quit"]);
    let quic: std::net::SocketAddr = wait_until(SCREEN, "the master's address", || {
        let text = std::fs::read_to_string(&err).ok()?;
        let at = text.find("master listening for workers on ")?;
        text[at..].split_whitespace().nth(5)?.parse().ok()
    });
    assert!(screen.contains(&quic.to_string()), "{screen}");

    let _w1 = WorkerProc::start(quic, "tui-test-token-16", "w-one");
    let _w2 = WorkerProc::start(quic, "tui-test-token-16", "w-two");
    tmux.wait_for(&["w-one", "w-two", "2 worker(s) joined", "ready"]);

    tmux.press("s");
    let first = tmux.wait("requests counted", |s| {
        (s.contains("STAMPEDE  running") && s.contains("10 users")).then_some(())?;
        aggregated(s).filter(|n| *n > 0)
    });
    tmux.wait("the count to move", |s| {
        aggregated(s).filter(|n| *n > first)
    });

    tmux.press("+");
    tmux.wait_for(&["load ×1.10", "11 users"]);

    // 80 × 24 still shows the figures, the workers and the keys.
    tmux.run(&["resize-window", "-t", "t", "-x", "80", "-y", "24"]);
    let small = tmux.wait("the 80 × 24 layout", |s| {
        // Redrawn for the new size: the workers' box spans exactly 80 cells.
        let redrawn = s
            .lines()
            .any(|l| l.starts_with("┌ Workers") && l.ends_with('┐') && l.chars().count() == 80);
        (redrawn && s.lines().count() <= 24).then(|| s.to_string())
    });
    for needle in ["w-one", "w-two", "│Aggregated", "req/s", "q quit"] {
        assert!(
            small.contains(needle),
            "{needle} missing at 80 × 24:\n{small}"
        );
    }
    tmux.press("Tab");
    tmux.press("Tab");
    tmux.press("Tab");
    tmux.wait_for(&["Throughput per second", "Latency of each second"]);
    tmux.press("Tab");
    tmux.wait_for(&["Failures (", "Events", "Log"]);
    tmux.press("Tab");

    tmux.press("x");
    tmux.wait_for(&["STAMPEDE  finished", "w-one"]);

    // A second run, ended by `q`: it is stopped and its results written before quitting.
    tmux.press("s");
    tmux.wait("the second run's requests", |s| {
        s.contains("STAMPEDE  running").then_some(())?;
        aggregated(s).filter(|n| *n > 0)
    });
    tmux.press("q");
    // The last run was stopped before its end: exit 5.
    let after = tmux.wait_for(&["EXIT-5"]);
    tmux.assert_terminal_back();
    assert!(!after.contains("q quit"), "the UI is still drawn:\n{after}");
    assert_eq!(
        after.matches("Aggregated").count(),
        2,
        "one table per run:\n{after}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["stop_reason"], "stopped by user");
    assert!(
        summary["total"]["requests"].as_u64().unwrap() > 0,
        "{summary}"
    );
}

/// A `priority` run under `--tui`: once the UI closes, the priority runner's per-class table is
/// printed on the terminal after the run's table, and the LoadGen folders are written.
#[test]
fn tui_prints_the_priority_table_after_closing() {
    let dir = TestDir::new();
    let Some(tmux) = Tmux::start(&dir, 120, 60) else {
        return;
    };
    let scenario = dir.write(
        "p.toml",
        "name = \"p\"\nkind = \"priority\"\ntarget = \"builtin:scheduler\"\nduration = \"2s\"\n\
         [load]\nmodel = \"open\"\nrate = 20\n",
    );
    let (err, out) = (dir.join("run.err"), dir.join("out"));
    tmux.type_line(&command_line(
        &[
            "run",
            "--tui",
            "--workers",
            "1",
            "--out",
            &out.display().to_string(),
            &scenario.display().to_string(),
        ],
        &err,
        "",
    ));
    tmux.wait_for(&["STAMPEDE  finished", "q quit"]);
    tmux.press("q");
    tmux.wait_for(&["EXIT-0"]);
    tmux.assert_terminal_back();
    // The whole pane, scrollback included.
    let after = tmux.run(&["capture-pane", "-p", "-t", "t", "-S", "-"]);
    assert!(after.contains("Aggregated"), "{after}");
    let head = after
        .lines()
        .find(|l| l.contains("slo_attainment_%"))
        .unwrap_or_else(|| panic!("no per-class table after the UI closed:\n{after}"));
    assert!(
        head.contains("p99_ms") && head.contains("loadgen"),
        "{head}"
    );
    assert!(after.contains("relaxed"), "{after}");
    assert!(
        out.join("tier1_urgent")
            .join("mlperf_log_summary.txt")
            .exists()
    );
}

#[test]
fn tui_gives_the_terminal_back_after_a_panic() {
    let dir = TestDir::new();
    let Some(tmux) = Tmux::start(&dir, 80, 24) else {
        return;
    };
    let err = dir.join("master.err");
    tmux.type_line(&command_line(
        &["master", "--bind", "127.0.0.1:0", "--tui"],
        &err,
        "STAMPEDE_TEST_PANIC_KEY=1",
    ));
    tmux.wait_for(&["STAMPEDE", "no scenario", "q quit"]);
    tmux.press("!");
    tmux.wait_for(&["EXIT-101"]);
    tmux.assert_terminal_back();
    let text = std::fs::read_to_string(&err).unwrap();
    assert!(text.contains("panic key pressed"), "{text}");
}

#[test]
fn tui_without_a_terminal_goes_on_headless() {
    let dir = TestDir::new();
    let target = Target::start();
    let scenario = Scenario::closed(&target.url, 2)
        .duration("1s")
        .write_to(&dir);
    let done = Proc::run(
        &[
            "run",
            "--tui",
            "--workers",
            "1",
            &scenario.display().to_string(),
        ],
        dir.path(),
        Duration::from_secs(60),
    );
    done.assert_code(0);
    let said: Vec<&str> = done
        .stderr
        .lines()
        .filter(|l| l.contains("--tui"))
        .collect();
    assert_eq!(
        said,
        ["--tui needs a terminal (stdin and stdout are not both a TTY): going on headless"],
        "{}",
        done.show()
    );
    assert!(done.stdout.contains("Aggregated"), "{}", done.show());
}
