//! Criterion benchmarks of the history checkers on small generated histories (1,000
//! operations). The `history_bench` example covers the large sizes and peak memory.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use dynamo_checker::history::gen::{
    convergence_history, register_history, set_history, sibling_history, RegisterGen, WorkloadGen,
};
use dynamo_checker::history::linear::{self, Budget, Model};
use dynamo_checker::history::parse::{read_history_str, write_edn};
use dynamo_checker::history::siblings::Quorum;
use dynamo_checker::history::{convergence, set_full, siblings, History};

const OPS: usize = 1_000;

fn linearizability(c: &mut Criterion) {
    let mut group = c.benchmark_group("linearizability");
    for keys in [1usize, 10, 100] {
        let cfg =
            RegisterGen { seed: 1, ops: OPS, keys, processes: 10, info_percent: 5, cas: true };
        let history = History::new(register_history(&cfg));
        group.bench_with_input(BenchmarkId::new("cas-register", keys), &history, |b, h| {
            b.iter(|| linear::check(h, Model::CasRegister, Budget::default()).map(|r| r.validity))
        });
    }
    group.finish();
}

fn other_checkers(c: &mut Criterion) {
    let cfg = WorkloadGen {
        seed: 1,
        ops: OPS,
        keys: 10,
        processes: 10,
        info_percent: 5,
        read_percent: 20,
    };
    let set = History::new(set_history(&cfg));
    c.bench_function("set-full", |b| b.iter(|| set_full::check(&set).map(|r| r.validity)));
    let sib = History::new(sibling_history(&cfg));
    let quorum = Some(Quorum { n: 3, r: 2, w: 2, sloppy: false });
    c.bench_function("siblings", |b| b.iter(|| siblings::check(&sib, quorum).map(|r| r.validity)));
    let conv = History::new(convergence_history(&cfg, 5));
    c.bench_function("convergence", |b| b.iter(|| convergence::check(&conv).map(|r| r.validity)));
}

fn parsing(c: &mut Criterion) {
    let cfg =
        RegisterGen { seed: 1, ops: OPS, keys: 10, processes: 10, info_percent: 5, cas: true };
    let mut text = Vec::new();
    write_edn(&register_history(&cfg), &mut text).expect("write to memory");
    let text = String::from_utf8(text).expect("EDN is UTF-8");
    c.bench_function("parse-edn", |b| b.iter(|| read_history_str(&text).map(|h| h.len())));
}

criterion_group!(benches, linearizability, other_checkers, parsing);
criterion_main!(benches);
