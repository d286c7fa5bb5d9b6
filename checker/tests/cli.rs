//! The `dynamo-check history` binary: verdicts, exit codes and input errors.

use std::path::PathBuf;
use std::process::Command;

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dynamo-check"))
}

/// Writes `text` to `name` in `dir`, a directory the test removes when it ends.
fn write_temp(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write temp file");
    path
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = bin().args(args).output().expect("binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const STALE: &str = "\
{:type :invoke, :f :write, :value 1, :process 0, :time 0, :index 0}
{:type :ok, :f :write, :value 1, :process 0, :time 10, :index 1}
{:type :invoke, :f :write, :value 2, :process 0, :time 20, :index 2}
{:type :ok, :f :write, :value 2, :process 0, :time 30, :index 3}
{:type :invoke, :f :read, :value nil, :process 1, :time 40, :index 4}
{:type :ok, :f :read, :value 1, :process 1, :time 50, :index 5}
";

#[test]
fn valid_history_exits_zero() {
    let dir = temp_dir();
    let text = STALE.replace(":value 1, :process 1", ":value 2, :process 1");
    let path = write_temp(&dir, "valid.edn", &text);
    let (code, out, _) =
        run(&["history", path.to_str().expect("utf-8"), "--model", "cas-register"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("valid"));
}

#[test]
fn invalid_history_exits_one_and_writes_html() {
    let dir = temp_dir();
    let path = write_temp(&dir, "stale.edn", STALE);
    let html = path.with_extension("html");
    let (code, out, _) = run(&[
        "history",
        path.to_str().expect("utf-8"),
        "--model",
        "register",
        "--html",
        html.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("line 5"), "{out}");
    let report = std::fs::read_to_string(&html).expect("report written");
    assert!(report.contains("<svg") && report.contains("blamed"));
}

#[test]
fn budget_exhaustion_exits_two() {
    let dir = temp_dir();
    let mut text = String::new();
    for p in 0..8 {
        text.push_str(&format!(
            "{{\"type\":\"invoke\",\"f\":\"write\",\"value\":{p},\"process\":{p}}}\n"
        ));
    }
    for p in 0..8 {
        text.push_str(&format!(
            "{{\"type\":\"ok\",\"f\":\"write\",\"value\":{p},\"process\":{p}}}\n"
        ));
    }
    text.push_str("{\"type\":\"invoke\",\"f\":\"read\",\"value\":null,\"process\":0}\n");
    text.push_str("{\"type\":\"ok\",\"f\":\"read\",\"value\":99,\"process\":0}\n");
    let path = write_temp(&dir, "budget.jsonl", &text);
    let p = path.to_str().expect("utf-8");
    let (code, out, _) = run(&["history", p, "--model", "register", "--configurations-max", "10"]);
    assert_eq!(code, 2, "{out}");
    let (code, _, _) = run(&["history", p, "--model", "register", "--time-limit", "0"]);
    assert!(code == 2 || code == 1, "a zero time limit may still finish a tiny search");
    let (code, out, _) = run(&["history", p, "--model", "register"]);
    assert_eq!(code, 1, "{out}");
}

#[test]
fn bad_input_exits_254_with_line_number() {
    let dir = temp_dir();
    let cases = [
        ("trunc.edn", "{:type :invoke, :f :read, :value nil, :process 0}\n{:type :ok, :f :read, :value [1 2\n", "line 2"),
        ("type.edn", "{:type :invoke, :f :read, :value nil, :process 0}\n{:type :done, :f :read, :process 0}\n", "line 2"),
        ("orphan.jsonl", "{\"type\":\"ok\",\"f\":\"read\",\"value\":null,\"process\":3}\n", "line 1"),
        ("garbage.jsonl", "\u{0}\u{1}not json at all", "line 1"),
    ];
    for (name, text, needle) in cases {
        let path = write_temp(&dir, name, text);
        let (code, _, err) =
            run(&["history", path.to_str().expect("utf-8"), "--model", "register"]);
        assert_eq!(code, 254, "{name}: {err}");
        assert!(err.contains(needle), "{name}: {err}");
    }
    let (code, _, _) = run(&["history", "/nonexistent/history.edn", "--model", "set"]);
    assert_eq!(code, 254);
    let (code, _, _) = run(&["history", "x", "--model", "nonsense"]);
    assert_eq!(code, 254);
    let (code, _, _) = run(&["history", "x", "--model", "siblings", "--n", "3"]);
    assert_eq!(code, 254);
}
