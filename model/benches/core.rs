//! Criterion benchmarks of the core's hot paths: clock compare and merge; reconcile with 1-16
//! siblings, with 1024 (a peer's large set), of a newer write and of two sets of 1024 with a cut
//! past, each beside the former quadratic merge; decoding a sibling set of 1-4096 versions; decoding a made-up context of
//! many folding runs; preference-list lookup; and one put handled end to end in the simulator.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use dynamo_model::clock::{Context, Dot, VClock};
use dynamo_model::config::Limits;
use dynamo_model::ids::{ActorId, Key, NodeId};
use dynamo_model::msg::{ClientOp, ClientReply};
use dynamo_model::ring::Ring;
use dynamo_model::sim::{Faults, Sim, SimConfig};
use dynamo_model::versioned::{Payload, Siblings, Version};
use std::hint::black_box;

fn clock(entries: u16, bump: u64) -> VClock {
    let mut c = VClock::new();
    for i in 0..entries {
        c.witness(ActorId::new(NodeId(i), 0), u64::from(i) + 1 + bump * u64::from(i % 2), 0);
    }
    c
}

fn clocks(c: &mut Criterion) {
    let mut g = c.benchmark_group("clock");
    for entries in [3u16, 16] {
        let (a, b) = (clock(entries, 0), clock(entries, 1));
        g.bench_with_input(BenchmarkId::new("causal_cmp", entries), &entries, |bch, _| {
            bch.iter(|| black_box(&a).causal_cmp(black_box(&b)))
        });
        g.bench_with_input(BenchmarkId::new("merge", entries), &entries, |bch, _| {
            bch.iter(|| black_box(&a).merged(black_box(&b)))
        });
    }
    g.finish();
}

/// Two replicas' sets of `k` concurrent siblings each, half of them shared.
fn sibling_pair(k: usize) -> (Siblings, Siblings) {
    let limits = Limits::default();
    let mut all = Vec::new();
    for i in 0..(k + k / 2) {
        let mut s = Siblings::new();
        let actor = ActorId::new(NodeId(i as u16), 0);
        s.apply_put(actor, &Context::new(), Payload::Value(vec![1; 64]), 0, &limits, None)
            .expect("fits");
        all.extend(s.versions().iter().cloned());
    }
    let a = Siblings::from_versions(all[..k].iter().cloned());
    let b = Siblings::from_versions(all[k / 2..k / 2 + k].iter().cloned());
    (a, b)
}

/// `Siblings::reconcile` as it was before it became a linear merge, the baseline measured in the
/// same run: when every version of `a` is one of `b`'s or superseded by one and supersedes none,
/// the result is `b`, shared; else `b`'s versions are merged one at a time, each checked against
/// every held one.
fn reconciled_formerly(a: &Siblings, b: &Siblings) -> Siblings {
    let covered = a.versions().iter().all(|mine| {
        b.versions().iter().any(|o| o == mine || o.supersedes(mine))
            && !b.versions().iter().any(|o| mine.supersedes(o))
    });
    if covered {
        return b.clone();
    }
    let mut s = a.clone();
    for v in b.versions() {
        if !s.versions().iter().any(|mine| mine.dot == v.dot || mine.supersedes(v)) {
            s.insert(v.clone());
        }
    }
    s
}

fn reconcile(c: &mut Criterion) {
    let mut g = c.benchmark_group("reconcile");
    for k in [1usize, 2, 4, 8, 16, 1024] {
        let (a, b) = sibling_pair(k);
        g.bench_with_input(BenchmarkId::from_parameter(k), &k, |bch, _| {
            bch.iter(|| black_box(&a).reconciled(black_box(&b)))
        });
        g.bench_with_input(BenchmarkId::new("formerly", k), &k, |bch, _| {
            bch.iter(|| reconciled_formerly(black_box(&a), black_box(&b)))
        });
    }
    // A replica's usual merge: the incoming version supersedes the one held.
    let limits = Limits::default();
    let actor = ActorId::new(NodeId(1), 0);
    let mut held = Siblings::new();
    held.apply_put(actor, &Context::new(), Payload::Value(vec![1; 1024]), 0, &limits, None)
        .expect("fits");
    let mut newer = held.clone();
    newer
        .apply_put(actor, &held.context(), Payload::Value(vec![2; 1024]), 1, &limits, None)
        .expect("fits");
    g.bench_function("newer_write", |bch| {
        bch.iter(|| black_box(&held).reconciled(black_box(&newer)))
    });
    g.bench_function("formerly/newer_write", |bch| {
        bch.iter(|| reconciled_formerly(black_box(&held), black_box(&newer)))
    });
    // Two sets of 1024 versions where a cut past leaves a version named only by one that goes
    // (held `s` names incoming `c`; incoming `o` names `s`), so the merge goes one at a time.
    let (held, incoming) = cut_pair(1024);
    g.bench_function("cut/1024", |bch| {
        bch.iter(|| black_box(&held).reconciled(black_box(&incoming)))
    });
    g.bench_function("formerly/cut/1024", |bch| {
        bch.iter(|| reconciled_formerly(black_box(&held), black_box(&incoming)))
    });
    g.finish();
}

/// A held set and an incoming one of `k` versions each (concurrent tombstones besides): held `s`
/// names incoming `c`, and incoming `o`, whose past was cut, names `s` only.
fn cut_pair(k: usize) -> (Siblings, Siblings) {
    let dot = |node: u16, counter| Dot { actor: ActorId::new(NodeId(node), 0), counter, ts_ms: 0 };
    let version = |d: Dot, past: &[Dot]| {
        let mut p = Context::new();
        past.iter().for_each(|d| p.add_dot(d));
        Version { dot: d, past: p, payload: Payload::Tombstone }
    };
    let (s, o, c) = (dot(1, 1), dot(2, 1), dot(3, 1));
    let others = |from: u16| (0..k as u16 - 1).map(move |i| version(dot(from + i, 1), &[]));
    let held = Siblings::from_versions(others(10).chain([version(s, &[c])]));
    let incoming =
        Siblings::from_versions(others(5_000).chain([version(o, &[s]), version(c, &[])]));
    (held, incoming)
}

/// Decoding a set of `k` concurrent siblings as it arrives from a peer or from disk (the set is
/// rebuilt and checked to be an antichain).
fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("siblings_decode");
    for k in [1usize, 3, 64, 4096] {
        let (set, _) = sibling_pair(k);
        let bytes = postcard::to_stdvec(&set).expect("encodes");
        g.bench_with_input(BenchmarkId::from_parameter(k), &k, |bch, _| {
            bch.iter(|| postcard::from_bytes::<Siblings>(black_box(&bytes)).expect("decodes"))
        });
    }
    g.finish();
}

/// A get's context over a set of `k` concurrent siblings: `Siblings::context` (one join of the
/// pasts, then the dots added at once) against merging one version at a time, its former
/// definition, as the baseline measured in the same run.
fn context(c: &mut Criterion) {
    let mut g = c.benchmark_group("siblings_context");
    for k in [1usize, 4, 16, 64] {
        let (set, _) = sibling_pair(k);
        g.bench_with_input(BenchmarkId::new("at_once", k), &k, |bch, _| {
            bch.iter(|| black_box(&set).context())
        });
        g.bench_with_input(BenchmarkId::new("one_at_a_time", k), &k, |bch, _| {
            bch.iter(|| {
                let mut c = Context::new();
                for v in black_box(&set).versions() {
                    c.merge(&v.past);
                    c.add_dot(&v.dot);
                }
                c
            })
        });
    }
    g.finish();
}

fn ring(c: &mut Criterion) {
    let nodes = (1..=16).map(NodeId).collect();
    let ring = Ring::new(1024, &nodes);
    let keys: Vec<Key> = (0..1024).map(|i| Key(format!("user:{i}").into_bytes())).collect();
    let mut i = 0;
    c.bench_function("ring/preference_list/q1024_s16_n3", |bch| {
        bch.iter(|| {
            i = (i + 1) % keys.len();
            black_box(ring.preference_list(black_box(&keys[i]), 3).len())
        })
    });
}

fn sim_put(c: &mut Criterion) {
    // One simulation makes every put of the run: it keeps no record of the versions sent.
    let mut cfg = SimConfig {
        faults: Faults::none(),
        delay_ms: (1, 1),
        track_lineage: false,
        ..SimConfig::default()
    };
    cfg.params.sloppy_quorum = false;
    let mut sim = Sim::new(cfg).expect("valid");
    let key = Key::from("bench");
    let coordinator = sim.primaries(&key)[0];
    let mut context = Context::new();
    c.bench_function("sim/put_end_to_end_n3_w2", |bch| {
        bch.iter(|| {
            let op = ClientOp::put(key.clone(), context.clone(), vec![7; 1024]);
            match sim.request(coordinator, op) {
                Some(ClientReply::Written { context: next, .. }) => context = next,
                other => panic!("bench put failed: {other:?}"),
            }
        })
    });
}

/// Decoding a context of `n` clock entries and `n` runs that each fold into the clock under an
/// actor of its own (what a client can send in one header), against a context of `2n` clock
/// entries alone, the baseline measured in the same run: folding must cost about what plain
/// entries do, not time quadratic in `n`.
fn context_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("context_decode");
    for n in [256u32, 4_096, 28_000] {
        let actor = |node: u16, i: u32| ActorId::new(NodeId(node), i);
        let entry =
            |node, i| dynamo_model::clock::Entry { actor: actor(node, i), counter: 1, ts_ms: 0 };
        let entries: Vec<_> = (0..n).map(|i| entry(2, i)).collect();
        let runs: Vec<_> = (0..n)
            .map(|i| dynamo_model::DotRun { actor: actor(1, i), first: 1, last: 3, ts_ms: 0 })
            .collect();
        let folding = postcard::to_stdvec(&(&entries, &runs)).expect("encodes");
        let plain: Vec<_> = (0..2 * n).map(|i| entry(2, i)).collect();
        let plain =
            postcard::to_stdvec(&(&plain, Vec::<dynamo_model::DotRun>::new())).expect("encodes");
        g.bench_with_input(BenchmarkId::new("many_folding_runs", n), &n, |bch, _| {
            bch.iter(|| Context::from_bytes(black_box(&folding), usize::MAX).expect("decodes"))
        });
        g.bench_with_input(BenchmarkId::new("clock_entries_only", n), &n, |bch, _| {
            bch.iter(|| Context::from_bytes(black_box(&plain), usize::MAX).expect("decodes"))
        });
    }
    g.finish();
}

criterion_group!(benches, clocks, reconcile, decode, context, context_decode, ring, sim_put);
criterion_main!(benches);
