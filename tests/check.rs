//! `stampede check`, and what `stampede run` says about a scenario it cannot load.

use std::time::Duration;

use crate::util::{Proc, TestDir, workspace_root};

/// A scenario with a typo in `[load]`: `usres` on line [`TYPO_LINE`].
const TYPO_SCENARIO: &str = r#"name = "typo"
target = "http://127.0.0.1:1"
duration = "2s"

[load]
model = "closed"
usres = 5

[[requests]]
name = "index"
path = "/"
"#;

/// The line of `usres = 5` in [`TYPO_SCENARIO`], 1-based.
const TYPO_LINE: usize = 7;

const LIMIT: Duration = Duration::from_secs(10);

#[test]
fn invalid_scenario_names_file_line_field() {
    assert_eq!(
        TYPO_SCENARIO.lines().nth(TYPO_LINE - 1),
        Some("usres = 5"),
        "the fixture moved"
    );
    let dir = TestDir::new();
    dir.write("typo.toml", TYPO_SCENARIO);
    let expected = format!("typo.toml:{TYPO_LINE}: usres: unknown field");
    check_and_run_refuse(&dir, "typo.toml", &expected);
}

/// `check FILE` and `run FILE` in `dir` both refuse it, `check` with `error: {expected}...` on
/// its first line and without saying ok, `run` naming the same cause, neither panicking.
fn check_and_run_refuse(dir: &TestDir, file: &str, expected: &str) {
    let check = Proc::run(&["check", file], dir.path(), LIMIT);
    check.assert_code(1);
    let first = check.stderr.lines().next().unwrap_or("");
    assert!(
        first.starts_with(&format!("error: {expected}")),
        "want `error: {expected}...`\n{}",
        check.show()
    );
    assert!(!check.stdout.contains(": ok"), "{}", check.show());

    let run = Proc::run(&["run", file, "--duration", "1s"], dir.path(), LIMIT);
    run.assert_code(1);
    assert!(run.stderr.contains(expected), "{}", run.show());
    assert!(!run.stderr.contains("panicked"), "{}", run.show());
}

#[test]
fn check_accepts_the_example() {
    let done = Proc::run(
        &["check", "scenarios/examples/http.toml"],
        workspace_root(),
        LIMIT,
    );
    done.assert_code(0);
    assert_eq!(
        done.stdout.lines().next(),
        Some("scenarios/examples/http.toml: ok"),
        "{}",
        done.show()
    );
    for line in ["request:  GET index", "threshold: p99_ms < 250"] {
        assert!(done.stdout.contains(line), "no {line:?}\n{}", done.show());
    }
}

/// An llm scenario whose prompts are the lines of `{path}` (relative to the scenario's folder).
const LLM_SCENARIO: &str = r#"name = "chat"
target = "http://127.0.0.1:1"
kind = "llm"
duration = "1s"

[load]
model = "closed"
users = 1

[llm]
model = "m"

[llm.prompts]
source = "lines"
path = "{path}"
"#;

#[test]
fn check_reads_the_prompts_as_run_does() {
    let dir = TestDir::new();
    dir.write("bad.toml", &LLM_SCENARIO.replace("{path}", "nope.txt"));
    check_and_run_refuse(&dir, "bad.toml", "bad.toml: llm.prompts.path: nope.txt: ");

    // Relative to the scenario's folder, not the working directory, for both.
    std::fs::create_dir(dir.join("sub")).unwrap();
    dir.write("sub/ok.toml", &LLM_SCENARIO.replace("{path}", "p.txt"));
    dir.write("sub/p.txt", "one two three four five\n");
    let check = Proc::run(&["check", "sub/ok.toml"], dir.path(), LIMIT);
    check.assert_code(0);
    assert!(check.stdout.contains("  prompts:  1"), "{}", check.show());
}

/// Checking a scenario is linear in its size: 100,000 requests (and a duplicate name at the
/// end, found) are checked well inside the limit, where a check quadratic in the requests took
/// minutes for 20,000. The time is printed; the limit only catches a quadratic check.
#[test]
fn a_hundred_thousand_requests_are_checked_in_linear_time() {
    let dir = TestDir::new();
    let mut text = String::from(
        "name = \"big\"\ntarget = \"http://127.0.0.1:1\"\nduration = \"2s\"\n\
         [load]\nmodel = \"closed\"\nusers = 5\n",
    );
    for i in 0..100_000 {
        text.push_str(&format!(
            "[[requests]]\nname = \"r{i}\"\npath = \"/p/{i}\"\n"
        ));
    }
    let ok = dir.write("big.toml", &text);
    text.push_str("[[requests]]\nname = \"r7\"\npath = \"/again\"\n");
    let dup = dir.write("dup.toml", &text);
    for (file, code, says) in [
        (&ok, 0, "request:  GET r99999"),
        (&dup, 1, "`r7` is already the name of requests[7]"),
    ] {
        let started = std::time::Instant::now();
        let done = Proc::run(
            &["check", file.to_str().unwrap()],
            workspace_root(),
            Duration::from_secs(60),
        );
        println!(
            "stampede check of {}: {:.2} s",
            file.display(),
            started.elapsed().as_secs_f64()
        );
        done.assert_code(code);
        assert!(
            done.stdout.contains(says) || done.stderr.contains(says),
            "{}",
            done.show()
        );
    }
}

/// `users = 1e9` is refused before the run starts, saying which limit with the numbers,
/// instead of making the worker allocate until the kernel kills it.
#[test]
fn a_load_that_cannot_fit_is_refused_with_the_numbers() {
    let done = Proc::run(
        &[
            "run",
            "scenarios/examples/http.toml",
            "--users",
            "1000000000",
            "--workers",
            "1",
            "--headless",
        ],
        workspace_root(),
        Duration::from_secs(30),
    );
    done.assert_code(4);
    assert!(
        done.stderr.contains(
            "the load does not fit this worker's memory: 1000000000 users here need about"
        ),
        "{}",
        done.show()
    );
}
