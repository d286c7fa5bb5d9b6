//! quickcheck laws of the core's data types: vector clocks (partial order, merge is the least
//! upper bound), contexts, sibling sets (antichain, nothing lost, order-insensitive reconcile),
//! the ring (distinct preference lists, balance, movement on join) and postcard round trips of
//! every message. Domains are small so that equal, ordered and concurrent cases all occur; every
//! property demands a minimum of passed cases so none can pass by discarding.

use dynamo_model::clock::{CausalOrder, Context, Dot, Entry, RawContext, VClock};
use dynamo_model::config::Limits;
use dynamo_model::ids::{ActorId, Key, NodeId, OpId, RequestId};
use dynamo_model::msg::{ClientOp, ClientReply, Msg, RequestError};
use dynamo_model::ring::Ring;
use dynamo_model::versioned::{Payload, PutError, Siblings, Version, Writer};
use quickcheck::{Arbitrary, Gen, QuickCheck};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;

const CASES: u64 = 2_000;

fn check<A: quickcheck::Testable>(prop: A) {
    check_cases(CASES, prop);
}

/// Checks `prop` on `cases` cases, every one of which must pass (none discarded beyond
/// quickcheck's usual allowance of 10,000 tries).
fn check_cases<A: quickcheck::Testable>(cases: u64, prop: A) {
    QuickCheck::new()
        .tests(cases)
        .max_tests(cases.max(10_000))
        .min_tests_passed(cases)
        .quickcheck(prop);
}

fn actor(i: u8) -> ActorId {
    ActorId::new(NodeId(u16::from(i % 3) + 1), u32::from(i / 3 % 2))
}

/// A clock over 4 actors with counters 0..=3 (0 = no entry).
#[derive(Clone, Debug)]
struct Small(VClock);

impl Arbitrary for Small {
    fn arbitrary(g: &mut Gen) -> Self {
        let mut c = VClock::new();
        for i in 0..4u8 {
            let counter = u64::from(u8::arbitrary(g) % 4);
            // A counter's issue time is a function of it, as it is for a real actor.
            c.witness(actor(i), counter, counter * 10 + u64::from(i));
        }
        Small(c)
    }
}

#[test]
fn clock_order_is_reflexive_and_antisymmetric() {
    fn prop(a: Small, b: Small) -> bool {
        let (a, b) = (a.0, b.0);
        let flipped = match a.causal_cmp(&b) {
            CausalOrder::Before => CausalOrder::After,
            CausalOrder::After => CausalOrder::Before,
            o => o,
        };
        a.causal_cmp(&a) == CausalOrder::Equal
            && b.causal_cmp(&a) == flipped
            && (a.causal_cmp(&b) == CausalOrder::Equal) == (a == b)
    }
    check(prop as fn(Small, Small) -> bool);
}

#[test]
fn clock_descends_agrees_with_causal_cmp() {
    fn prop(a: Small, b: Small) -> bool {
        let (a, b) = (a.0, b.0);
        let o = a.causal_cmp(&b);
        a.descends(&b) == matches!(o, CausalOrder::After | CausalOrder::Equal)
            && b.descends(&a) == matches!(o, CausalOrder::Before | CausalOrder::Equal)
    }
    check(prop as fn(Small, Small) -> bool);
}

#[test]
fn clock_order_is_transitive() {
    // b and c are built to descend a and b, so the premise always holds.
    fn prop(a: Small, x: Small, y: Small) -> bool {
        let a = a.0;
        let b = a.merged(&x.0);
        let c = b.merged(&y.0);
        b.descends(&a) && c.descends(&b) && c.descends(&a)
    }
    check(prop as fn(Small, Small, Small) -> bool);
}

#[test]
fn clock_merge_is_commutative_associative_idempotent() {
    fn prop(a: Small, b: Small, c: Small) -> bool {
        let (a, b, c) = (a.0, b.0, c.0);
        a.merged(&b) == b.merged(&a)
            && a.merged(&b).merged(&c) == a.merged(&b.merged(&c))
            && a.merged(&a) == a
    }
    check(prop as fn(Small, Small, Small) -> bool);
}

#[test]
fn clock_merge_is_the_least_upper_bound() {
    fn prop(a: Small, b: Small, c: Small) -> bool {
        let (a, b, c) = (a.0, b.0, c.0);
        let m = a.merged(&b);
        let upper = m.descends(&a) && m.descends(&b);
        let least = !(c.descends(&a) && c.descends(&b)) || c.descends(&m);
        upper && least
    }
    check(prop as fn(Small, Small, Small) -> bool);
}

#[test]
fn equal_clocks_hash_equally_and_have_no_zero_entries() {
    use std::hash::{Hash, Hasher};
    fn h(c: &VClock) -> u64 {
        let mut s = std::collections::hash_map::DefaultHasher::new();
        c.hash(&mut s);
        s.finish()
    }
    fn prop(a: Small, b: Small) -> bool {
        let (a, b) = (a.0, b.0);
        let zero_free = a.entries().iter().all(|e| e.counter > 0);
        let same = a.causal_cmp(&b) == CausalOrder::Equal;
        zero_free && (!same || h(&a) == h(&b))
    }
    check(prop as fn(Small, Small) -> bool);
}

#[test]
fn clock_increment_moves_strictly_after() {
    fn prop(a: Small, i: u8) -> bool {
        let mut b = a.0.clone();
        let dot = b.increment(actor(i), 9);
        b.causal_cmp(&a.0) == CausalOrder::After && b.contains(&dot) && !a.0.contains(&dot)
    }
    check(prop as fn(Small, u8) -> bool);
}

#[test]
fn truncation_keeps_the_newest_entries() {
    fn prop(a: Small, max: u8) -> bool {
        let max = usize::from(max % 4) + 1;
        let mut t = a.0.clone();
        t.truncate(max);
        let dropped: Vec<_> = a.0.entries().iter().filter(|e| t.get(e.actor) == 0).collect();
        t.len() == a.0.len().min(max)
            && a.0.descends(&t)
            && dropped
                .iter()
                .all(|d| t.entries().iter().all(|k| (d.ts_ms, d.actor) <= (k.ts_ms, k.actor)))
    }
    check(prop as fn(Small, u8) -> bool);
}

/// A context: a clock plus up to three loose dots (which may join into runs).
#[derive(Clone, Debug)]
struct Ctx(Context);

impl Arbitrary for Ctx {
    fn arbitrary(g: &mut Gen) -> Self {
        let mut c = Context::from(Small::arbitrary(g).0);
        for _ in 0..u8::arbitrary(g) % 4 {
            let i = u8::arbitrary(g) % 4;
            let counter = u64::from(u8::arbitrary(g) % 6) + 1;
            let dot = Dot { actor: actor(i), counter, ts_ms: counter * 10 + u64::from(i) };
            c.add_dot(&dot);
        }
        Ctx(c)
    }
}

/// A context capped for a client (`Context::capped`) is the context itself when it fits; else it
/// fits, claims no write the context did not (a write on it can only replace less), holds every
/// dot it must keep whenever those alone fit, and then the most recently issued of the context's
/// other entries as well whenever both fit; when they alone do not fit, it holds only dots to
/// keep, at least `max` of them.
#[test]
fn a_capped_context_fits_keeps_its_dots_and_claims_nothing_new() {
    fn prop(a: Ctx, max: u8, picks: Vec<(u8, u8)>) -> bool {
        let (a, max) = (a.0, usize::from(max % 6) + 1);
        let dot = |i: u8, k: u64| Dot { actor: actor(i % 4), counter: k, ts_ms: 0 };
        let keep: Vec<Dot> = picks
            .iter()
            .map(|&(i, k)| dot(i, u64::from(k % 7) + 1))
            .filter(|d| a.contains(d))
            .take(3)
            .collect();
        let capped = a.clone().capped(max, keep.iter().copied());
        if a.len() <= max {
            return capped == a;
        }
        let mut alone = Context::new();
        keep.iter().for_each(|d| alone.add_dot(d));
        let domain = (0..4u8).flat_map(|i| (1..=8).map(move |k| dot(i, k)));
        let claims_nothing_new = domain.clone().all(|d| !capped.contains(&d) || a.contains(&d));
        let keeps = if alone.len() <= max {
            keep.iter().all(|d| capped.contains(d))
        } else {
            // Not all of `keep` fits: the cut holds `keep`'s dots only, at least `max` of them.
            let distinct: BTreeSet<(ActorId, u64)> =
                keep.iter().map(|d| (d.actor, d.counter)).collect();
            let held = distinct
                .iter()
                .filter(|&&(actor, counter)| capped.contains(&Dot { actor, counter, ts_ms: 0 }))
                .count();
            domain.clone().all(|d| !capped.contains(&d) || distinct.contains(&(d.actor, d.counter)))
                && held >= max.min(distinct.len())
        };
        // The newest entry of the context besides `keep`, as a run, is kept when it fits beside.
        let newest = a
            .clock()
            .entries()
            .iter()
            .map(|e| (e.ts_ms, e.actor, 1, e.counter))
            .chain(a.cloud().iter().map(|r| (r.ts_ms, r.actor, r.first, r.last)))
            .filter(|&(_, actor, first, last)| {
                !(first..=last).all(|k| alone.contains(&Dot { actor, counter: k, ts_ms: 0 }))
            })
            .max_by(|x, y| x.0.cmp(&y.0).then(y.cmp(x)));
        let next = newest.is_none_or(|(_, actor, first, last)| {
            let mut both = alone.clone();
            (first..=last).for_each(|k| both.add_dot(&Dot { actor, counter: k, ts_ms: 0 }));
            alone.len() > max
                || both.len() > max
                || (first..=last).all(|k| capped.contains(&Dot { actor, counter: k, ts_ms: 0 }))
        });
        capped.len() <= max && claims_nothing_new && keeps && next
    }
    check(prop as fn(Ctx, u8, Vec<(u8, u8)>) -> bool);
}

#[test]
fn context_merge_is_set_union_of_histories() {
    fn prop(a: Ctx, b: Ctx, i: u8, k: u8) -> bool {
        let dot = Dot { actor: actor(i % 4), counter: u64::from(k % 7) + 1, ts_ms: 0 };
        let mut m = a.0.clone();
        m.merge(&b.0);
        let mut m2 = b.0.clone();
        m2.merge(&a.0);
        m == m2 && m.contains(&dot) == (a.0.contains(&dot) || b.0.contains(&dot))
    }
    check(prop as fn(Ctx, Ctx, u8, u8) -> bool);
}

/// Joining many contexts at once is merging them one at a time (their counters and runs; of
/// equal counters the times kept may differ); and `contains`, which binary-searches the cloud,
/// agrees with a scan of it.
#[test]
fn join_all_is_merge_and_contains_agrees_with_a_scan() {
    fn prop(a: Ctx, b: Ctx, c: Ctx, i: u8, k: u8) -> bool {
        let mut merged = a.0.clone();
        merged.merge(&b.0);
        merged.merge(&c.0);
        let joined = Context::join_all([&a.0, &b.0, &c.0]);
        let dot = Dot { actor: actor(i % 4), counter: u64::from(k % 8) + 1, ts_ms: 0 };
        let scan = |x: &Context| {
            x.clock().contains(&dot)
                || x.cloud().iter().any(|r| {
                    r.actor == dot.actor && r.first <= dot.counter && dot.counter <= r.last
                })
        };
        joined.contains(&dot) == merged.contains(&dot)
            && joined.clock().entries().iter().map(|e| (e.actor, e.counter)).eq(merged
                .clock()
                .entries()
                .iter()
                .map(|e| (e.actor, e.counter)))
            && joined
                .cloud()
                .iter()
                .map(|r| (r.actor, r.first, r.last))
                .eq(merged.cloud().iter().map(|r| (r.actor, r.first, r.last)))
            && [&a.0, &b.0, &c.0, &joined].iter().all(|x| x.contains(&dot) == scan(x))
    }
    check(prop as fn(Ctx, Ctx, Ctx, u8, u8) -> bool);
}

#[test]
fn context_is_canonical() {
    // However a context is reached, dots below or next to the clock are folded into it.
    fn prop(a: Ctx) -> bool {
        let runs = a.0.cloud();
        runs.iter().all(|r| r.first > a.0.clock().get(r.actor) + 1 && r.first <= r.last)
            && runs.windows(2).all(|w| w[0].actor < w[1].actor || w[0].last + 1 < w[1].first)
    }
    check(prop as fn(Ctx) -> bool);
}

/// A set's context as its former definition built it: its versions' pasts and dots merged one
/// at a time.
fn context_one_at_a_time(s: &Siblings) -> Context {
    let mut c = Context::new();
    for v in s.versions() {
        c.merge(&v.past);
        c.add_dot(&v.dot);
    }
    c
}

/// A set's context (built in one pass: `Context::join_all` of the pasts, then `add_dots`) is
/// what merging its versions' pasts and dots one at a time gives, times included, for the sets
/// random runs of puts and merges make (where each dot has one time), with and without truncated
/// clocks and cut contexts, and their union.
#[test]
fn a_sets_context_is_its_versions_merged_one_at_a_time() {
    fn prop(seed: u64) -> bool {
        let fold = context_one_at_a_time;
        let runs = [
            random_replicas(seed).0,
            random_replicas_truncating(seed, Some(2)).0,
            random_replicas_forgetting(seed, None, Some(2)).0,
        ];
        runs.iter().all(|replicas| {
            let mut all = Siblings::new();
            for r in replicas {
                all.reconcile(r);
            }
            all.context() == fold(&all) && replicas.iter().all(|s| s.context() == fold(s))
        })
    }
    check(prop as fn(u64) -> bool);
}

/// Where pasts name one dot with different times (a client may make up the times in a context
/// it sends), a set's context still holds exactly the writes the one-at-a-time merge holds, in
/// the same clock entries and runs; only the time kept for such a dot may differ.
#[test]
fn a_sets_context_holds_what_the_fold_holds_whatever_the_times() {
    /// A version: its dot's actor and counter, and the (actor, counter) dots its past names.
    type Made = (u8, u8, Vec<(u8, u8)>);
    fn prop(versions: Vec<Made>) -> bool {
        let versions = versions.into_iter().take(4).enumerate().map(|(n, (i, k, past))| {
            let n = n as u64;
            let mut p = Context::new();
            for (pi, pk) in past.into_iter().take(5) {
                let counter = u64::from(pk % 8) + 1;
                // The same dot gets another time in each version's past.
                p.add_dot(&Dot { actor: actor(pi % 4), counter, ts_ms: counter * 10 + n * 3 });
            }
            let counter = u64::from(k % 8) + 1;
            let dot = Dot { actor: actor(i % 4), counter, ts_ms: 100 + n };
            Version { dot, past: p, payload: Payload::Tombstone }
        });
        let set = Siblings::from_versions(versions.collect::<Vec<_>>());
        let (at_once, fold) = (set.context(), context_one_at_a_time(&set));
        let shape = |c: &Context| {
            let clock: Vec<(ActorId, u64)> =
                c.clock().entries().iter().map(|e| (e.actor, e.counter)).collect();
            let cloud: Vec<(ActorId, u64, u64)> =
                c.cloud().iter().map(|r| (r.actor, r.first, r.last)).collect();
            (clock, cloud)
        };
        let domain = (0..4u8).flat_map(|i| (1..=9).map(move |k| (i, k)));
        shape(&at_once) == shape(&fold)
            && domain.into_iter().all(|(i, k)| {
                let d = Dot { actor: actor(i), counter: k, ts_ms: 0 };
                at_once.contains(&d) == fold.contains(&d)
            })
    }
    check(prop as fn(Vec<Made>) -> bool);
}

/// Replica sets produced by a random run of puts (each coordinated by its replica's actor, on a
/// context read from some replica or blind) and pairwise syncs, from a seed.
fn random_replicas(seed: u64) -> (Vec<Siblings>, Vec<Dot>) {
    random_replicas_truncating(seed, None)
}

/// As [`random_replicas`], with the puts' contexts truncated to `clock_entries_max` entries (the
/// supersedes relation is then not transitive: a write may know a version but not its past).
/// Replica `i` writes as actor `i` and, as a node does, records apart the counter of its own
/// that a merge would make its set forget ([`Siblings::forgotten_in`]).
fn random_replicas_truncating(
    seed: u64,
    clock_entries_max: Option<usize>,
) -> (Vec<Siblings>, Vec<Dot>) {
    random_replicas_forgetting(seed, clock_entries_max, None)
}

/// As [`random_replicas_truncating`], and with every read context capped to `cap` entries, as a
/// coordinator hands it to a client ([`Context::capped`], keeping the dots read).
fn random_replicas_forgetting(
    seed: u64,
    clock_entries_max: Option<usize>,
    cap: Option<usize>,
) -> (Vec<Siblings>, Vec<Dot>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut replicas = vec![Siblings::new(); 3];
    let mut issued = [0u64; 3];
    let mut dots = Vec::new();
    let limits = Limits::default();
    for step in 0..rng.random_range(1..12u64) {
        let i = rng.random_range(0..3usize);
        let j = rng.random_range(0..3usize);
        if rng.random_bool(0.6) {
            let read = |r: &Siblings| match cap {
                Some(max) => r.context().capped(max, r.versions().iter().map(|v| v.dot)),
                None => r.context(),
            };
            let context = if rng.random_bool(0.7) { read(&replicas[j]) } else { Context::new() };
            let payload = if rng.random_bool(0.15) {
                Payload::Tombstone
            } else {
                Payload::Value(format!("v{step}").into_bytes())
            };
            let writer = Writer { actor: actor(i as u8), issued: issued[i] };
            let dot = replicas[i]
                .apply_put(writer, &context, payload, step, &limits, clock_entries_max)
                .expect("within limits");
            dots.push(dot);
        } else {
            let other = replicas[j].clone();
            merge_remembering(&mut replicas[i], &other, actor(i as u8), &mut issued[i]);
        }
    }
    (replicas, dots)
}

/// Reconciles `other` into `mine`, the set of `me`, recording in `issued` a counter of `me`'s
/// the merge forgets, as a node's replica does before it saves the merge.
fn merge_remembering(mine: &mut Siblings, other: &Siblings, me: ActorId, issued: &mut u64) {
    let before = mine.clone();
    mine.reconcile(other);
    if let Some(counter) = before.forgotten_in(mine, me) {
        *issued = (*issued).max(counter);
    }
}

#[test]
fn reconcile_keeps_an_antichain_and_loses_nothing() {
    fn prop(seed: u64) -> bool {
        let (replicas, _) = random_replicas(seed);
        let mut all = Siblings::new();
        for r in &replicas {
            all.reconcile(r);
        }
        let ok = all.check().is_ok() && replicas.iter().all(|r| r.check().is_ok());
        let nothing_lost = replicas.iter().flat_map(|r| r.versions()).all(|v| all.covers(&v.dot));
        let nothing_invented =
            all.versions().iter().all(|v| replicas.iter().any(|r| r.versions().contains(v)));
        if !(ok && nothing_lost && nothing_invented) {
            eprintln!("failing seed {seed}: replicas {replicas:?} merged {all:?}");
        }
        ok && nothing_lost && nothing_invented
    }
    check(prop as fn(u64) -> bool);
}

/// Merging a whole set gives what merging its versions one at a time gives, and the merge says
/// whether it changed anything; also when contexts were truncated.
#[test]
fn reconcile_of_a_set_is_reconcile_of_its_versions_one_by_one() {
    fn prop(seed: u64, truncate: u8) -> bool {
        let max = [None, Some(1), Some(2)][usize::from(truncate % 3)];
        let (r, _) = random_replicas_truncating(seed, max);
        let mut ok = true;
        for (a, b) in [(0, 1), (1, 2), (2, 0), (0, 0)] {
            let mut whole = r[a].clone();
            let changed = whole.reconcile(&r[b]);
            let mut piecewise = r[a].clone();
            for v in r[b].versions() {
                piecewise.reconcile(&Siblings::from_versions([v.clone()]));
            }
            ok &= whole == piecewise && changed == (whole != r[a]) && whole.check().is_ok();
        }
        if !ok {
            eprintln!("failing seed {seed}, truncation {max:?}: {r:?}");
        }
        ok
    }
    check(prop as fn(u64, u8) -> bool);
}

/// Found by the law above (seed 7772218318272483511, clocks truncated to one entry) while merges
/// were being made whole-set: a version whose past was cut (`b`, written over `a`, which had
/// replaced `c`, but naming only `a`) arrives beside `c`. `a` leaves for `b`; `c` stays, since a
/// replica drops a version only for one it keeps that names it (the model checker's "a replica
/// drops a version only for one that names it"): the stale copy a cut lets come back.
#[test]
fn a_merge_drops_a_version_only_for_one_it_keeps() {
    let dot = |i: u8, counter| Dot { actor: actor(i), counter, ts_ms: 0 };
    let version = |d: Dot, past: &[Dot]| {
        let mut p = Context::new();
        past.iter().for_each(|d| p.add_dot(d));
        Version { dot: d, past: p, payload: Payload::Value(vec![1]) }
    };
    let a = version(dot(1, 1), &[dot(2, 1)]);
    let b = version(dot(1, 2), &[dot(1, 1)]);
    let c = version(dot(2, 1), &[]);
    let mut held = Siblings::from_versions([a]);
    assert!(held.reconcile(&Siblings::from_versions([b.clone(), c.clone()])));
    assert_eq!(held.versions(), [b, c]);
}

/// With truncated clocks no actor issues a counter twice: once the versions a replica holds name
/// none of its counters, the counter it recorded as issued still keeps the next one above.
#[test]
fn truncation_never_issues_a_dot_twice() {
    fn prop(seed: u64, max: u8) -> bool {
        let (_, dots) = random_replicas_truncating(seed, Some(usize::from(max % 3) + 1));
        let issued: BTreeSet<(ActorId, u64)> = dots.iter().map(|d| (d.actor, d.counter)).collect();
        let ok = issued.len() == dots.len();
        if !ok {
            eprintln!("failing seed {seed}, truncation {}: {dots:?}", max % 3 + 1);
        }
        ok
    }
    // Reuse needs a rare run of puts and merges (about one case in 10,000 reused a counter
    // without the record), so this law draws more cases than the others; each takes
    // microseconds.
    check_cases(200_000, prop as fn(u64, u8) -> bool);
    // Pinned: the case it found, which issued n2's counter 1 twice.
    assert!(prop(9_333_445_625_358_685_173, 0));
}

/// The shortest run found that reuses a counter when clocks truncate to one entry of past,
/// written out so that it does not depend on the random generator: replica 0 writes, replica 1
/// writes over it twice (its second past, truncated, forgets replica 0), replica 0 takes that in
/// and writes again. Without the record of issued counters its second write takes counter 1 again.
#[test]
fn a_forgotten_counter_is_not_issued_again() {
    let limits = Limits::default();
    let run = |record: bool| {
        let mut r = [Siblings::new(), Siblings::new()];
        let issued = [std::cell::Cell::new(0u64), std::cell::Cell::new(0u64)];
        let mut dots = Vec::new();
        let mut put = |r: &mut [Siblings; 2], i: usize, context: Context, now: u64| {
            let writer = Writer { actor: actor(i as u8), issued: issued[i].get() };
            let payload = Payload::Value(vec![now as u8]);
            let dot =
                r[i].apply_put(writer, &context, payload, now, &limits, Some(1)).expect("fits");
            dots.push((dot.actor, dot.counter));
        };
        let merge = |r: &mut [Siblings; 2], into: usize| {
            let other = r[1 - into].clone();
            let mut forgotten = 0;
            merge_remembering(&mut r[into], &other, actor(into as u8), &mut forgotten);
            if record {
                issued[into].set(issued[into].get().max(forgotten));
            }
        };
        put(&mut r, 0, Context::new(), 1);
        merge(&mut r, 1);
        let seen = r[1].context();
        put(&mut r, 1, seen, 2);
        merge(&mut r, 0);
        let seen = r[1].context();
        put(&mut r, 1, seen, 3);
        merge(&mut r, 0);
        put(&mut r, 0, Context::new(), 4);
        dots
    };
    let unique = |dots: &[(ActorId, u64)]| dots.iter().collect::<BTreeSet<_>>().len() == dots.len();
    assert!(!unique(&run(false)), "the run no longer forgets a counter: {:?}", run(false));
    assert!(unique(&run(true)), "{:?}", run(true));
}

/// A set built from versions in any order, with repeats, is the merge of the sets they came from
/// (as a set decoded from the network or disk is rebuilt).
#[test]
fn from_versions_in_any_order_with_repeats_is_the_merge() {
    fn prop(seed: u64) -> bool {
        let (r, _) = random_replicas(seed);
        let merged = r[0].reconciled(&r[1]).reconciled(&r[2]);
        let mut all: Vec<Version> = r.iter().flat_map(|s| s.versions().iter().cloned()).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
        for i in (1..all.len()).rev() {
            all.swap(i, rng.random_range(0..=i));
        }
        let repeats: Vec<Version> = all.iter().filter(|_| rng.random_bool(0.3)).cloned().collect();
        all.extend(repeats);
        let built = Siblings::from_versions(all);
        let round_trip: Vec<bool> =
            r.iter().map(|s| Siblings::from_versions(s.versions().iter().cloned()) == *s).collect();
        let ok = built == merged && built.check().is_ok() && round_trip.iter().all(|&b| b);
        if !ok {
            eprintln!("failing seed {seed}: {r:?} built {built:?} merged {merged:?}");
        }
        ok
    }
    check(prop as fn(u64) -> bool);
}

/// A damaged version whose past holds its own dot is not superseded by itself: built into a set
/// it stays as inserting it would keep it, beside a concurrent version, and goes when another
/// version supersedes it.
#[test]
fn a_version_is_never_superseded_by_its_own_past() {
    let version = |i: u8, counter, past: &[(u8, u64)]| {
        let mut p = Context::new();
        for &(a, c) in past {
            p.add_dot(&Dot { actor: actor(a), counter: c, ts_ms: 0 });
        }
        Version {
            dot: Dot { actor: actor(i), counter, ts_ms: 0 },
            past: p,
            payload: Payload::Value(vec![i]),
        }
    };
    let odd = version(0, 2, &[(0, 2)]);
    let other = version(1, 1, &[]);
    let above = version(1, 2, &[(0, 2)]);
    let one_by_one = |vs: &[Version]| {
        let mut s = Siblings::new();
        for v in vs {
            s.insert(v.clone());
        }
        s
    };
    for set in [vec![odd.clone()], vec![odd.clone(), other], vec![odd, above]] {
        let built = Siblings::from_versions(set.iter().cloned());
        assert_eq!(built, one_by_one(&set), "{set:?}");
    }
}

/// A made-up version: a dot of one of 4 actors with counter 1..=8, no past or one from [`Ctx`]
/// (which may hold the version's own dot: a damaged version), and one of two values or a
/// tombstone, so that versions with one dot and different contents occur too.
#[derive(Clone, Debug)]
struct AnyVersion(Version);

impl Arbitrary for AnyVersion {
    fn arbitrary(g: &mut Gen) -> Self {
        let i = u8::arbitrary(g) % 4;
        let counter = u64::from(u8::arbitrary(g) % 8) + 1;
        let payload = match u8::arbitrary(g) % 3 {
            0 => Payload::Tombstone,
            v => Payload::Value(vec![v]),
        };
        // Half of them with no past, so that sets of many concurrent versions occur too.
        let past = if bool::arbitrary(g) { Ctx::arbitrary(g).0 } else { Context::new() };
        AnyVersion(Version {
            dot: Dot { actor: actor(i), counter, ts_ms: counter * 10 + u64::from(i) },
            past,
            payload,
        })
    }
}

/// The maximal versions of `versions` by the definition: of versions with one dot the first,
/// then those no other version's past holds the dot of, in dot order.
fn maximal_by_definition(versions: &[Version]) -> Vec<Version> {
    let mut firsts: Vec<Version> = Vec::new();
    for v in versions {
        if !firsts.iter().any(|f| f.dot == v.dot) {
            firsts.push(v.clone());
        }
    }
    let mut kept: Vec<Version> =
        firsts.iter().filter(|v| !firsts.iter().any(|w| w.supersedes(v))).cloned().collect();
    kept.sort_by_key(|v| v.dot);
    kept
}

/// `b`'s versions merged into `a` one at a time, in dot order, by the definition: one is dropped
/// if a version held names it or holds its dot, and else drops what it names.
fn merged_one_at_a_time(a: &Siblings, b: &Siblings) -> Siblings {
    let mut s = a.clone();
    for v in b.versions() {
        if !s.versions().iter().any(|w| w.dot == v.dot || w.supersedes(v)) {
            s.insert(v.clone());
        }
    }
    s
}

/// A set built from versions keeps exactly the maximal ones by the definition, and a merge keeps
/// what merging the versions one at a time by the definition keeps, for made-up versions as a
/// peer or a damaged disk may send (damaged ones among them, pasts that name out of order), and
/// for sets large enough that pasts are joined rather than compared pair by pair; a merge says
/// whether it changed the set and keeps an antichain.
#[test]
fn sets_keep_exactly_the_versions_the_definitions_keep() {
    fn prop(a: Vec<AnyVersion>, b: Vec<AnyVersion>) -> bool {
        let a: Vec<Version> = a.into_iter().map(|v| v.0).collect();
        let b: Vec<Version> = b.into_iter().map(|v| v.0).collect();
        let (sa, sb) = (Siblings::from_versions(a.clone()), Siblings::from_versions(b));
        let built = sa.versions() == maximal_by_definition(&a);
        let mut merged = sa.clone();
        let changed = merged.reconcile(&sb);
        let kept = merged.versions();
        let antichain = kept.iter().all(|v| !kept.iter().any(|w| w.supersedes(v)));
        let ok = built
            && merged == merged_one_at_a_time(&sa, &sb)
            && changed == (merged != sa)
            && antichain;
        if !ok {
            eprintln!("failing: {a:?} and {sb:?} merged {merged:?}");
        }
        ok
    }
    check(prop as fn(Vec<AnyVersion>, Vec<AnyVersion>) -> bool);
}

/// Of two versions with one dot and different contents (only a damaged or made-up history has
/// them), a merge keeps the receiving set's, also when everything else it keeps is the other
/// set's.
#[test]
fn of_two_versions_with_one_dot_a_merge_keeps_its_own() {
    let version = |i: u8, past: &[u8], value: u8| {
        let mut p = Context::new();
        for &a in past {
            p.add_dot(&Dot { actor: actor(a), counter: 1, ts_ms: 0 });
        }
        let dot = Dot { actor: actor(i), counter: 1, ts_ms: 0 };
        Version { dot, past: p, payload: Payload::Value(vec![value]) }
    };
    let (x, y) = (version(0, &[], 1), version(1, &[], 1));
    let (other_x, above_y) = (version(0, &[], 2), version(2, &[1], 1));
    let mine = Siblings::from_versions([x.clone(), y]);
    let theirs = Siblings::from_versions([other_x, above_y.clone()]);
    let mut merged = mine.clone();
    assert!(merged.reconcile(&theirs));
    assert_eq!(merged.versions(), [x, above_y]);
    let mut again = merged.clone();
    assert!(!again.reconcile(&theirs), "nothing new the second time");
}

#[test]
fn reconcile_is_order_insensitive() {
    fn prop(seed: u64) -> bool {
        let (r, _) = random_replicas(seed);
        let ab_c = r[0].reconciled(&r[1]).reconciled(&r[2]);
        let c_ba = r[2].reconciled(&r[1].reconciled(&r[0]));
        let b_ca = r[1].reconciled(&r[2]).reconciled(&r[0]);
        let idem = ab_c.reconciled(&ab_c) == ab_c;
        let ok = ab_c == c_ba && c_ba == b_ca && idem;
        if !ok {
            eprintln!("failing seed {seed}: {r:?}");
        }
        ok
    }
    check(prop as fn(u64) -> bool);
}

#[test]
fn a_put_supersedes_exactly_what_its_context_covers() {
    fn prop(seed: u64, blind: bool) -> bool {
        let (replicas, _) = random_replicas(seed);
        let mut target = replicas[0].clone();
        let context = if blind { Context::new() } else { replicas[1].context() };
        let before = target.clone();
        let dot = target
            .apply_put(
                actor(0),
                &context,
                Payload::Value(b"new".to_vec()),
                99,
                &Limits::default(),
                None,
            )
            .expect("within limits");
        let kept_concurrent = before
            .versions()
            .iter()
            .filter(|v| !context.contains(&v.dot))
            .all(|v| target.versions().contains(v));
        let dropped_covered =
            target.versions().iter().all(|v| v.dot == dot || !context.contains(&v.dot));
        let ok =
            kept_concurrent && dropped_covered && target.check().is_ok() && target.covers(&dot);
        if !ok {
            eprintln!("failing seed {seed} blind {blind}: before {before:?} after {target:?}");
        }
        ok
    }
    check(prop as fn(u64, bool) -> bool);
}

/// With read contexts capped no actor issues a counter twice, and a capped read context fits and,
/// written back, replaces every version it was read from whenever their dots alone fit the cap.
#[test]
fn capped_contexts_never_issue_a_dot_twice_and_resolve_what_they_read() {
    fn prop(seed: u64, max: u8) -> bool {
        let cap = usize::from(max % 4) + 1;
        let (replicas, dots) = random_replicas_forgetting(seed, None, Some(cap));
        let issued: BTreeSet<(ActorId, u64)> = dots.iter().map(|d| (d.actor, d.counter)).collect();
        let unique = issued.len() == dots.len();
        let mut all = Siblings::new();
        for r in &replicas {
            all.reconcile(r);
        }
        let read = all.context().capped(cap, all.versions().iter().map(|v| v.dot));
        let mut resolved = all.clone();
        // A writer that never wrote the key, so that no counter of its own is in question here.
        let writer = ActorId::new(NodeId(9), 0);
        // The read context always fits; when the versions' dots alone do, it covers them all.
        let resolves = read.len() <= cap
            && (all.len() > cap
                || resolved
                    .apply_put(writer, &read, Payload::Tombstone, 99, &Limits::default(), None)
                    .is_ok()
                    && resolved.len() == 1);
        if !(unique && resolves) {
            eprintln!("failing seed {seed}, cap {cap}: {dots:?} {all:?}");
        }
        unique && resolves
    }
    check_cases(100_000, prop as fn(u64, u8) -> bool);
    // Pinned: a case it found with the record of issued counters turned off, where n3 issued its
    // counter 1 twice after a capped context made the set forget it.
    assert!(prop(7_705_297_104_532_103_031, 0));
}

#[test]
fn sibling_and_value_bounds_refuse_the_put_and_change_nothing() {
    let limits = Limits { siblings_max: 2, value_bytes_max: 4, ..Limits::default() };
    let mut s = Siblings::new();
    let blind = Context::new();
    for v in [b"a".to_vec(), b"b".to_vec()] {
        s.apply_put(actor(0), &blind, Payload::Value(v), 0, &limits, None).expect("fits");
    }
    let before = s.clone();
    let too_many = s.apply_put(actor(0), &blind, Payload::Value(b"c".to_vec()), 0, &limits, None);
    assert_eq!(too_many, Err(PutError::TooManySiblings { siblings: 3, max: 2 }));
    let too_big = s.apply_put(actor(0), &s.context(), Payload::Value(vec![0; 5]), 0, &limits, None);
    assert_eq!(too_big, Err(PutError::ValueTooLarge { bytes: 5, max: 4 }));
    assert_eq!(s, before);
    // Resolving with the merged context is still allowed.
    s.apply_put(actor(0), &s.context(), Payload::Value(b"ab".to_vec()), 0, &limits, None)
        .expect("resolving put fits");
    assert_eq!(s.len(), 1);
}

#[derive(Clone, Debug)]
struct RingCase {
    nodes: u16,
    q: u32,
    n: usize,
}

impl Arbitrary for RingCase {
    fn arbitrary(g: &mut Gen) -> Self {
        let nodes = u16::from(u8::arbitrary(g) % 12) + 1;
        let min_q = u32::from(nodes).next_power_of_two();
        let q = min_q << (u8::arbitrary(g) % 5);
        let n = usize::from(u8::arbitrary(g)) % usize::from(nodes) + 1;
        RingCase { nodes, q, n }
    }
}

fn node_set(k: u16) -> BTreeSet<NodeId> {
    // Spread ids so that joins do not only happen in increasing order of position.
    (1..=k).map(|i| NodeId(i * 7 % 31)).collect()
}

#[test]
fn preference_lists_have_n_distinct_nodes() {
    fn prop(c: RingCase, key: Vec<u8>) -> bool {
        let ring = Ring::new(c.q, &node_set(c.nodes));
        let key = Key(key);
        let prefs = ring.preference_list(&key, c.n);
        let walk = ring.walk(&key);
        let distinct: BTreeSet<_> = walk.iter().collect();
        prefs.len() == c.n
            && walk.len() == usize::from(c.nodes)
            && distinct.len() == walk.len()
            && walk.starts_with(prefs)
            && prefs[0] == ring.owners()[ring.partition_of(&key).0 as usize]
    }
    check(prop as fn(RingCase, Vec<u8>) -> bool);
}

#[test]
fn ownership_is_balanced_within_one_partition() {
    fn prop(c: RingCase) -> bool {
        let nodes = node_set(c.nodes);
        let ring = Ring::new(c.q, &nodes);
        let counts: Vec<usize> =
            nodes.iter().map(|n| ring.owners().iter().filter(|o| *o == n).count()).collect();
        let (min, max) = (counts.iter().min(), counts.iter().max());
        matches!((min, max), (Some(a), Some(b)) if b - a <= 1)
    }
    check(prop as fn(RingCase) -> bool);
}

#[test]
fn a_join_moves_about_one_share_and_only_to_the_joiner() {
    fn prop(c: RingCase) -> bool {
        let nodes = node_set(c.nodes);
        let before = Ring::new(c.q, &nodes);
        let joiner = NodeId(1000);
        let after = before.with_node(joiner);
        let moved: Vec<usize> =
            (0..c.q as usize).filter(|&p| before.owners()[p] != after.owners()[p]).collect();
        let s = nodes.len();
        let share = c.q as usize / (s + 1);
        moved.len() == share && moved.iter().all(|&p| after.owners()[p] == joiner)
    }
    check(prop as fn(RingCase) -> bool);
}

#[test]
fn key_hash_is_pinned() {
    // XXH3-64, seed 0. Changing these moves every key in every cluster.
    assert_eq!(dynamo_model::ring::key_hash(b""), 0x2D06_8005_38D3_94C2);
    assert_eq!(dynamo_model::ring::key_hash(b"hello"), 0x9555_E855_5C62_DCFD);
    assert_eq!(dynamo_model::ring::key_hash(b"dynamo"), PINNED_DYNAMO);
    let ring = Ring::new(8, &[NodeId(1), NodeId(2), NodeId(3)].into_iter().collect());
    assert_eq!(ring.owners(), PINNED_OWNERS.map(NodeId));
    assert_eq!(ring.partition_of(&Key::from("hello")).0, (0x9555_E855_5C62_DCFDu64 >> 61) as u32);
}

const PINNED_DYNAMO: u64 = 13_293_944_135_976_245_242;
const PINNED_OWNERS: [u16; 8] = [3, 1, 2, 3, 2, 1, 2, 1];

// ---- postcard round trips of every message ----

#[derive(Clone, Debug)]
struct AnyMsg(Msg);

fn small_siblings(g: &mut Gen) -> Siblings {
    let (replicas, _) = random_replicas(u64::arbitrary(g));
    replicas[usize::from(u8::arbitrary(g) % 3)].clone()
}

fn any_reply(g: &mut Gen) -> ClientReply {
    let dot = Dot { actor: actor(u8::arbitrary(g)), counter: u64::arbitrary(g) | 1, ts_ms: 3 };
    match u8::arbitrary(g) % 5 {
        0 => ClientReply::Read { context: Ctx::arbitrary(g).0, values: Vec::arbitrary(g) },
        1 => ClientReply::Written { dot, context: Ctx::arbitrary(g).0 },
        2 => ClientReply::Indeterminate { acks: 1, needed: 2 },
        3 => ClientReply::Unavailable { replies: 0, needed: 3 },
        _ => ClientReply::Rejected(RequestError::Put(PutError::TooManySiblings {
            siblings: 9,
            max: 8,
        })),
    }
}

impl Arbitrary for AnyMsg {
    fn arbitrary(g: &mut Gen) -> Self {
        let op = OpId { origin: NodeId(u16::arbitrary(g)), req: RequestId(u64::arbitrary(g)) };
        let key = Key(Vec::arbitrary(g));
        let intended = Option::<u16>::arbitrary(g).map(NodeId);
        let client_op = match u8::arbitrary(g) % 3 {
            0 => ClientOp::get(key.clone()),
            1 => ClientOp::put(key.clone(), Ctx::arbitrary(g).0, Vec::arbitrary(g)),
            _ => ClientOp::delete(key.clone(), Ctx::arbitrary(g).0),
        };
        let msg = match u8::arbitrary(g) % 10 {
            0 => Msg::Forward { req: op.req, op: client_op },
            1 => Msg::ForwardReply { req: op.req, reply: any_reply(g) },
            2 => Msg::Store { op: Some(op), key, siblings: small_siblings(g), intended },
            3 => Msg::StoreAck { op },
            4 => Msg::Fetch { op, key, intended },
            5 => Msg::FetchReply { op, siblings: small_siblings(g) },
            6 => Msg::Handoff { key, siblings: small_siblings(g) },
            7 => Msg::HandoffAck { key, siblings: small_siblings(g) },
            8 => Msg::Ping,
            _ => Msg::Pong,
        };
        AnyMsg(msg)
    }
}

#[test]
fn every_message_round_trips_through_postcard() {
    fn prop(m: AnyMsg) -> bool {
        let bytes = postcard::to_stdvec(&m.0).expect("encodes");
        let back: Msg = postcard::from_bytes(&bytes).expect("decodes");
        back == m.0
    }
    check(prop as fn(AnyMsg) -> bool);
}

/// Contexts, clocks and sibling sets encode straight from their fields; the bytes must be those of
/// the owned wire forms they decode from (the store format and the peer protocol depend on it).
#[test]
fn borrowed_encodings_are_the_wire_forms() {
    fn bytes<T: serde::Serialize>(v: &T) -> Vec<u8> {
        postcard::to_stdvec(v).expect("encodes")
    }
    fn prop(c: Ctx, seed: u64, which: u8) -> bool {
        let (replicas, _) = random_replicas(seed);
        let s = replicas[usize::from(which % 3)].clone();
        let clock = c.0.clock().clone();
        bytes(&c.0) == bytes(&RawContext::from(c.0.clone()))
            && bytes(&clock) == bytes(&Vec::<Entry>::from(clock.clone()))
            && bytes(&s) == bytes(&Vec::<Version>::from(s.clone()))
    }
    check(prop as fn(Ctx, u64, u8) -> bool);
}

#[test]
fn garbage_never_panics_the_decoders() {
    fn prop(bytes: Vec<u8>) -> bool {
        let _ = postcard::from_bytes::<Msg>(&bytes);
        let _ = Context::from_bytes(&bytes, 16);
        true
    }
    check(prop as fn(Vec<u8>) -> bool);
}
