//! Soundness properties of the linearizability checker on generated histories.
//!
//! Histories produced by running a correct sequential register with random overlapping
//! invocation windows and random `info` outcomes must be judged valid. Changing one `ok` read to
//! a value that every linearization rules out (a value overwritten before the read began) must
//! be judged invalid.

use dynamo_checker::history::gen::{register_history, RegisterGen};
use dynamo_checker::history::linear::{check, Budget, Model};
use dynamo_checker::history::{History, Op, OpType, Outcome, Pair, Validity, Value};
use quickcheck::{QuickCheck, TestResult};

/// Passed cases each property must reach; discards do not count.
const CASES: u64 = 300;

fn config(seed: u64, ops: u8, keys: u8, procs: u8, info: u8, cas: bool) -> RegisterGen {
    RegisterGen {
        seed,
        ops: 1 + usize::from(ops) % 120,
        keys: 1 + usize::from(keys) % 4,
        processes: 1 + usize::from(procs) % 8,
        info_percent: u32::from(info) % 30,
        cas,
    }
}

fn model(cas: bool) -> Model {
    if cas {
        Model::CasRegister
    } else {
        Model::Register
    }
}

fn generated_histories_are_valid(
    seed: u64,
    ops: u8,
    keys: u8,
    procs: u8,
    info: u8,
    cas: bool,
) -> TestResult {
    let cfg = config(seed, ops, keys, procs, info, cas);
    let history = History::new(register_history(&cfg));
    let result =
        check(&history, model(cas), Budget::default()).expect("generated history is well formed");
    if result.validity != Validity::Valid {
        eprintln!("seed {seed} config {cfg:?}\n{}", result.verdict(&history).explanation);
        return TestResult::failed();
    }
    TestResult::passed()
}

/// A writer whose effect is certain: an ok write or an ok (hence successful) cas.
fn written_value(p: &Pair) -> Option<Value> {
    if p.outcome != Outcome::Ok {
        return None;
    }
    match (p.f.as_str(), p.effective_value()) {
        ("write", v) => Some(v.clone()),
        ("cas", Value::Vector(items)) => items.get(1).cloned(),
        _ => None,
    }
}

/// Find an ok read and a value it cannot have returned: nil once some write has been
/// acknowledged before the read began, or the value of an acknowledged writer `w1` when another
/// acknowledged writer `w2` began after `w1` completed and completed before the read began.
/// Written values are unique, so nothing can write the stale value again.
fn stale_mutation(pairs: &[Pair]) -> Option<(usize, Value)> {
    for r in pairs.iter().filter(|p| p.f == "read" && p.outcome == Outcome::Ok) {
        let completion = r.complete_pos?;
        let same_key = || pairs.iter().filter(|p| p.key == r.key);
        let done_before_read = |w: &&Pair| w.complete_pos.is_some_and(|c| c < r.invoke_pos);
        let writers: Vec<&Pair> =
            same_key().filter(|w| written_value(w).is_some()).filter(done_before_read).collect();
        let current = r.complete_value.clone().unwrap_or(Value::Nil);
        if !writers.is_empty() && current != Value::Nil {
            return Some((completion, Value::Nil));
        }
        for w1 in &writers {
            let w1_done = w1.complete_pos?;
            let superseded = writers.iter().any(|w2| w2.invoke_pos > w1_done);
            let stale = written_value(w1)?;
            if superseded && stale != current {
                return Some((completion, stale));
            }
        }
    }
    None
}

fn stale_read_is_invalid(
    seed: u64,
    ops: u8,
    keys: u8,
    procs: u8,
    info: u8,
    cas: bool,
) -> TestResult {
    let mut cfg = config(seed, ops, keys, procs, info, cas);
    cfg.ops = cfg.ops.max(20);
    let mut ops: Vec<Op> = register_history(&cfg);
    let pairs = History::new(ops.clone()).pairs().expect("generated history is well formed");
    let Some((pos, stale)) = stale_mutation(&pairs) else { return TestResult::discard() };
    let Some(op) = ops.get_mut(pos) else { return TestResult::error("bad position") };
    assert_eq!(op.kind, OpType::Ok);
    op.value = stale.clone();
    let history = History::new(ops);
    let result = check(&history, model(cas), Budget::default()).expect("still well formed");
    if result.validity != Validity::Invalid {
        eprintln!(
            "seed {seed} config {cfg:?}: read at position {pos} changed to {stale} judged {:?}",
            result.validity
        );
        return TestResult::failed();
    }
    TestResult::passed()
}

#[test]
fn soundness_valid_histories() {
    QuickCheck::new()
        .tests(CASES)
        .min_tests_passed(CASES)
        .quickcheck(generated_histories_are_valid as fn(u64, u8, u8, u8, u8, bool) -> TestResult);
}

#[test]
fn soundness_stale_reads_are_caught() {
    QuickCheck::new()
        .tests(CASES)
        .max_tests(CASES * 10)
        .min_tests_passed(CASES)
        .quickcheck(stale_read_is_invalid as fn(u64, u8, u8, u8, u8, bool) -> TestResult);
}

#[test]
fn large_generated_history_is_valid() {
    let cfg =
        RegisterGen { seed: 7, ops: 5_000, keys: 3, processes: 20, info_percent: 10, cas: true };
    let history = History::new(register_history(&cfg));
    let result = check(&history, Model::CasRegister, Budget::default()).expect("well formed");
    assert_eq!(result.validity, Validity::Valid, "{}", result.verdict(&history).explanation);
}

#[test]
fn tuple_keys_match_field_keys() {
    let cfg = RegisterGen { seed: 3, ops: 300, keys: 4, processes: 6, info_percent: 5, cas: true };
    let ops = register_history(&cfg);
    let tupled: Vec<Op> = ops
        .iter()
        .cloned()
        .map(|mut op| {
            let key = op.key.take().unwrap_or(Value::Nil);
            op.value = Value::Vector(vec![key, op.value]);
            op
        })
        .collect();
    let a = check(&History::new(ops), Model::CasRegister, Budget::default()).expect("well formed");
    let b = check(
        &History::new(tupled).keyed(dynamo_checker::history::KeyMode::Auto),
        Model::CasRegister,
        Budget::default(),
    )
    .expect("well formed");
    assert_eq!(a.validity, Validity::Valid);
    assert_eq!(a.keys.len(), b.keys.len());
    assert_eq!(b.validity, Validity::Valid);
}
