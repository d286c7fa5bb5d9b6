//! Every seeded protocol bug is caught by at least one property (the one named here), which shows
//! the properties have teeth. The unmutated protocol meets every expectation (`configs.rs`).

use dynamo_checker::actors::Durability;
use dynamo_checker::properties::names::*;
use dynamo_checker::run::{check, RunOptions, Strategy};
use dynamo_checker::setup::Setup;
use dynamo_checker::Mutant;
use dynamo_model::sim::SyncFlaw;

/// Which property catches which mutant, in which configuration and quorum mode.
const CATCHES: [(Mutant, &str, bool, &[&str]); 9] = [
    (Mutant::AckBeforeQuorum, "canonical", false, &[ACKED_DURABLE]),
    (Mutant::ReadBeforeQuorum, "canonical", false, &[READ_YOUR_WRITES]),
    (Mutant::PutNoIncrement, "canonical", false, &[ACKED_DURABLE]),
    (Mutant::ReconcileDropsSibling, "canonical", false, &[ACKED_DURABLE, CLOCK_MONOTONIC]),
    (Mutant::HintDeletedEarly, "canonical", true, &[ACKED_DURABLE]),
    (Mutant::ReadRepairOverwrites, "canonical", false, &[CLOCK_MONOTONIC]),
    (Mutant::FallbackWritesPrimary, "canonical", true, &[PRIMARY_DATA]),
    // Only a cut context makes a key's versions forget a counter of their coordinator's.
    (Mutant::IssuedNotRecorded, "capped", false, &[NO_DOT_REUSE]),
    (Mutant::ReadContextUncapped, "capped", false, &[CONTEXTS_FIT]),
];

/// Checks `mutant` on `config` and asserts that one of `expected` is among what it violated.
fn assert_caught(mutant: Mutant, config: &str, sloppy: bool, expected: &[&str]) {
    let violated = caught_by(mutant, config, sloppy);
    eprintln!("{:<26} caught on {config} by {violated:?}", mutant.name());
    assert!(
        violated.iter().any(|v| expected.contains(v)),
        "{} was caught on {config} by {violated:?}, expected one of {expected:?}",
        mutant.name()
    );
}

fn caught_by(mutant: Mutant, config: &str, sloppy: bool) -> Vec<&'static str> {
    let mut setup = Setup::named(config).expect("known configuration");
    setup.sloppy = sloppy;
    setup.crashes = 0;
    setup.mutant = Some(mutant);
    violations(&setup, mutant.name())
}

/// The properties `setup`, which carries a bug, violates; it must fail the check.
fn violations(setup: &Setup, bug: &str) -> Vec<&'static str> {
    // Breadth-first finds the shortest counterexample, and fail-fast stops there.
    let opts = RunOptions { strategy: Strategy::Bfs, fail_fast: true, ..RunOptions::default() };
    let report = check(setup, &opts).expect("valid setup");
    assert_eq!(report.exit_code(), 1, "{bug} must fail the check");
    report.violated()
}

#[test]
fn every_mutant_is_listed() {
    for (m, _, _, _) in CATCHES {
        assert_eq!(Mutant::from_name(m.name()), Some(m));
    }
    assert_eq!(CATCHES.len(), Mutant::ALL.len());
}

#[test]
#[cfg_attr(debug_assertions, ignore = "model checking: run with --release")]
fn every_mutant_is_caught() {
    for (mutant, config, sloppy, expected) in CATCHES {
        assert_caught(mutant, config, sloppy, expected);
    }
}

/// Under cut contexts the properties are restated over the lineage (see `checker/README.md`);
/// these mutants show the restated ones still catch lost, unreplicated and unseen writes on
/// `capped`.
const CAPPED_CATCHES: [(Mutant, &[&str]); 3] = [
    (Mutant::AckBeforeQuorum, &[ACKED_DURABLE]),
    (Mutant::ReadBeforeQuorum, &[READ_YOUR_WRITES]),
    (Mutant::ReconcileDropsSibling, &[VERSIONS_REPLACED]),
];

#[test]
#[cfg_attr(debug_assertions, ignore = "model checking: run with --release")]
fn the_restated_properties_catch_mutants_under_cuts() {
    for (mutant, expected) in CAPPED_CATCHES {
        assert_caught(mutant, "capped", false, expected);
    }
}

/// The mistakes writes durable only at syncs could be made with (`--unsynced --sync-flaw`, the
/// simulator's `SyncFlaw`), each with the configuration and a property that catches it: keeping
/// the incarnation after a crash lets the second put through the crashed coordinator take the
/// lost put's counter, and answering before the sync acknowledges a write on fewer than W durable
/// stores.
const FLAW_CATCHES: [(SyncFlaw, &str, &[&str]); 2] = [
    (SyncFlaw::KeepIncarnation, "canonical", &[NO_DOT_REUSE]),
    (SyncFlaw::AnswerBeforeSync, "tiny", &[ACKED_DURABLE]),
];

#[test]
#[cfg_attr(debug_assertions, ignore = "model checking: run with --release")]
fn every_sync_flaw_is_caught() {
    for (flaw, config, expected) in FLAW_CATCHES {
        for sloppy in [false, true] {
            let mut setup = Setup::named(config).expect("known configuration");
            setup.sloppy = sloppy;
            setup.crashes = 1;
            setup.durability = Durability::Syncs(Some(flaw));
            let violated = violations(&setup, &format!("{flaw:?}"));
            eprintln!("{flaw:?} caught on {config} (sloppy={sloppy}) by {violated:?}");
            assert!(
                violated.iter().any(|v| expected.contains(v)),
                "{flaw:?} was caught on {config} by {violated:?}, expected one of {expected:?}"
            );
        }
    }
}
