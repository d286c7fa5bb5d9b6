//! The `dynamo-check` command line: subcommands and exit statuses.

use std::process::Command;

fn dynamo_check(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dynamo-check"))
        .args(args)
        .output()
        .expect("dynamo-check runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn mutants_lists_one_name_per_line() {
    let (code, out) = dynamo_check(&["mutants"]);
    assert_eq!(code, 0);
    let names: Vec<&str> = out.lines().collect();
    assert!(names.contains(&"ack-before-quorum"));
    assert_eq!(names.len(), dynamo_checker::Mutant::ALL.len());
}

#[test]
fn a_complete_passing_run_exits_0_and_prints_the_table() {
    let (code, out) = dynamo_check(&["model", "--config", "tiny", "--strict"]);
    assert_eq!(code, 0, "{out}");
    for needle in ["properties:", "every value read was written", "bounds:", "totals:", "PASS"] {
        assert!(out.contains(needle), "missing {needle:?} in\n{out}");
    }
}

#[test]
fn a_failed_property_exits_1_with_a_trace() {
    let (code, out) =
        dynamo_check(&["model", "--config", "tiny", "--mutant", "ack-before-quorum", "--strict"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("counterexample for"), "{out}");
    assert!(out.contains(" -> "), "{out}");
}

#[test]
fn an_incomplete_run_exits_2() {
    let (code, out) = dynamo_check(&["model", "--config", "tiny", "--max-depth", "3"]);
    assert_eq!(code, 2, "{out}");
}

#[test]
fn bad_flags_are_refused() {
    let (code, _) = dynamo_check(&["model", "--config", "nope"]);
    assert_eq!(code, 2);
    let (code, _) = dynamo_check(&["model", "--config", "tiny", "--mutant", "nope"]);
    assert_eq!(code, 2);
}
