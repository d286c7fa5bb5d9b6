//! Expected discoveries, pinned with their counterexample paths:
//!
//! - under sloppy quorum a get that starts after an acknowledged put can miss it (the put was
//!   acknowledged by a fallback holding a hint, the get asked primaries that had not seen it yet);
//! - under strict quorum with R + W > N it cannot;
//! - the store is not linearizable: under sloppy quorum a read that starts after a write was
//!   acknowledged can return the initial value.

use dynamo_checker::properties::names::{LINEARIZABLE, READ_YOUR_WRITES};
use dynamo_checker::run::{check, RunOptions, Strategy};
use dynamo_checker::setup::Setup;
use dynamo_checker::trace;
use std::collections::BTreeSet;

fn bfs_until(name: &'static str) -> RunOptions {
    RunOptions {
        strategy: Strategy::Bfs,
        stop_at: Some(BTreeSet::from([name])),
        ..RunOptions::default()
    }
}

#[test]
fn sloppy_quorum_misses_read_your_writes() {
    let setup = Setup::named("tiny").expect("known configuration");
    let report = check(&setup, &bfs_until(READ_YOUR_WRITES)).expect("valid setup");
    let result = report.result(READ_YOUR_WRITES).expect("property present");
    let path = result.path.as_ref().expect("a counterexample path");
    let text = trace::render(&setup.model().expect("model"), path);
    eprintln!("{text}");
    // The pinned shape of the counterexample: a fallback took the write as a hint, the put was
    // acknowledged, and the get read nothing.
    assert!(text.contains("(hint for"), "the write went to a fallback:\n{text}");
    assert!(text.contains("Written"), "the put was acknowledged:\n{text}");
    assert!(text.contains("get \"\""), "the get missed it:\n{text}");
}

#[test]
fn strict_quorum_keeps_read_your_writes() {
    let mut setup = Setup::named("tiny").expect("known configuration");
    setup.sloppy = false;
    let report = check(&setup, &RunOptions::default()).expect("valid setup");
    assert!(report.complete);
    assert!(!report.result(READ_YOUR_WRITES).expect("property present").found);
}

#[test]
#[cfg_attr(debug_assertions, ignore = "model checking: run with --release")]
fn strict_canonical_keeps_read_your_writes() {
    let mut setup = Setup::named("canonical").expect("known configuration");
    setup.sloppy = false;
    setup.crashes = 0;
    let opts = RunOptions { threads: 2, ..RunOptions::default() };
    let report = check(&setup, &opts).expect("valid setup");
    assert!(report.complete);
    assert!(!report.result(READ_YOUR_WRITES).expect("property present").found);
}

#[test]
fn the_store_is_not_linearizable() {
    let mut setup = Setup::named("tiny").expect("known configuration");
    setup.linearizability = true;
    let report = check(&setup, &bfs_until(LINEARIZABLE)).expect("valid setup");
    let result = report.result(LINEARIZABLE).expect("property present");
    let path = result.path.as_ref().expect("a counterexample path");
    let text = trace::render(&setup.model().expect("model"), path);
    eprintln!("{text}");
    assert!(text.contains("Written"), "a put was acknowledged:\n{text}");
    assert!(text.contains("reply #1"), "a get answered:\n{text}");
}
