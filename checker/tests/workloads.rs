//! Generated set, sibling and convergence histories are judged valid; breaking them is caught.

use dynamo_checker::history::gen::{
    convergence_history, set_history, sibling_history, WorkloadGen,
};
use dynamo_checker::history::siblings::Quorum;
use dynamo_checker::history::{convergence, set_full, siblings, History, OpType, Validity, Value};

const STRICT: Quorum = Quorum { n: 3, r: 2, w: 2, sloppy: false };

fn cfg(seed: u64) -> WorkloadGen {
    WorkloadGen { seed, ops: 2_000, keys: 7, processes: 10, info_percent: 10, read_percent: 30 }
}

#[test]
fn generated_workloads_are_valid() {
    for seed in 0..20 {
        let h = History::new(set_history(&cfg(seed)));
        let r = set_full::check(&h).expect("well formed");
        assert_eq!(r.validity, Validity::Valid, "seed {seed}: {}", r.verdict(&h).explanation);
        assert!(r.stable > 0, "seed {seed}");

        let h = History::new(sibling_history(&cfg(seed)));
        let r = siblings::check(&h, Some(STRICT)).expect("well formed");
        assert_eq!(r.validity, Validity::Valid, "seed {seed}: {}", r.verdict(&h).explanation);

        let h = History::new(convergence_history(&cfg(seed), 3));
        let r = convergence::check(&h).expect("well formed");
        assert_eq!(r.validity, Validity::Valid, "seed {seed}: {}", r.verdict(&h).explanation);
        assert_eq!(r.nodes.len(), 3);
    }
}

#[test]
fn dropping_an_acknowledged_element_from_later_reads_is_lost() {
    let mut ops = set_history(&cfg(1));
    // The first acknowledged add; remove its element from every read that completes later.
    let acked = ops
        .iter()
        .position(|op| op.f == "add" && op.kind == OpType::Ok)
        .expect("some add is acknowledged");
    let (key, element) = (ops[acked].key.clone(), ops[acked].value.clone());
    for op in ops.iter_mut().skip(acked) {
        if op.f == "read" && op.kind == OpType::Ok && op.key == key {
            if let Value::Set(items) = &mut op.value {
                items.retain(|v| *v != element);
            }
        }
    }
    let h = History::new(ops);
    let r = set_full::check(&h).expect("well formed");
    assert_eq!(r.validity, Validity::Invalid);
    assert!(r.verdict(&h).explanation.contains("lost acknowledged element"));
}

#[test]
fn a_node_missing_a_value_does_not_converge() {
    let mut ops = convergence_history(&cfg(2), 3);
    let last = ops.last_mut().expect("final reads exist");
    last.value = Value::Vector(Vec::new());
    let r = convergence::check(&History::new(ops)).expect("well formed");
    assert_eq!(r.validity, Validity::Invalid);
}
