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

#[test]
fn unsynced_runs_say_so_and_a_sync_flaw_fails_with_a_trace() {
    let (code, out) = dynamo_check(&["model", "--config", "tiny", "--strict", "--unsynced"]);
    assert_eq!(code, 0, "{out}");
    for needle in ["durable at the node's next sync", "a copy is durable elsewhere", "PASS"] {
        assert!(out.contains(needle), "missing {needle:?} in\n{out}");
    }
    let flaw = ["model", "--config", "tiny", "--unsynced", "--sync-flaw", "answer-before-sync"];
    let (code, out) = dynamo_check(&flaw);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("counterexample for \"acked put present"), "{out}");
    assert!(out.contains("sync (its writes durable, held effects leave)"), "{out}");
    let (code, _) = dynamo_check(&["model", "--config", "tiny", "--unsynced", "--sync-flaw", "x"]);
    assert_eq!(code, 2);
    // A flaw needs the mode it is a flaw of: refused as a bad argument.
    let (code, _) = dynamo_check(&["model", "--config", "tiny", "--sync-flaw", "keep-incarnation"]);
    assert_eq!(code, i32::from(dynamo_checker::cli::EXIT_BAD_INPUT));
}
