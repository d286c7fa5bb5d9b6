//! Bad input gets a typed error or is dropped and counted; nothing panics and nothing changes.

use dynamo_model::clock::{ClockError, Context};
use dynamo_model::config::{Config, ConfigError, ConfigParams, PARTITIONS_MAX, TIMEOUT_MS_MAX};
use dynamo_model::ids::{ActorId, Key, NodeId, OpId, RequestId};
use dynamo_model::msg::{ClientOp, ClientReply, Msg, RequestError};
use dynamo_model::node::{Effect, Input, Node};
use dynamo_model::ring::Ring;
use dynamo_model::store::MemStore;
use dynamo_model::versioned::{PutError, Siblings};
use std::sync::Arc;

fn params() -> ConfigParams {
    ConfigParams::for_nodes((1..=3).map(NodeId))
}

#[test]
fn invalid_configs_are_typed_errors() {
    type Expect = fn(&ConfigError) -> bool;
    let cases: Vec<(ConfigParams, Expect)> = vec![
        (ConfigParams { nodes: Default::default(), ..params() }, |e| {
            matches!(e, ConfigError::NoNodes)
        }),
        (ConfigParams { n: 4, ..params() }, |e| matches!(e, ConfigError::BadN { n: 4, nodes: 3 })),
        (ConfigParams { n: 0, ..params() }, |e| matches!(e, ConfigError::BadN { .. })),
        (ConfigParams { r: 0, ..params() }, |e| {
            matches!(e, ConfigError::BadQuorum { which: "r", .. })
        }),
        (ConfigParams { w: 4, ..params() }, |e| {
            matches!(e, ConfigError::BadQuorum { which: "w", .. })
        }),
        (ConfigParams { partitions: 12, ..params() }, |e| {
            matches!(e, ConfigError::BadPartitions { .. })
        }),
        (ConfigParams { partitions: 2, ..params() }, |e| {
            matches!(e, ConfigError::BadPartitions { .. })
        }),
        (ConfigParams { clock_entries_max: Some(0), ..params() }, |e| {
            matches!(e, ConfigError::BadLimit { .. })
        }),
    ];
    for (p, expected) in cases {
        let err = Config::new(p.clone()).expect_err("config must be refused");
        assert!(expected(&err), "{p:?} gave {err}");
        assert!(!err.to_string().is_empty());
    }
    let mut p = params();
    p.timeouts.request_ms = 0;
    assert!(matches!(Config::new(p), Err(ConfigError::BadTimeout { which: "request_ms", .. })));
    let mut p = params();
    p.timeouts.sloppy_retry_ms = p.timeouts.request_ms + 1;
    assert!(matches!(
        Config::new(p),
        Err(ConfigError::BadTimeout { which: "sloppy_retry_ms", .. })
    ));
    let mut p = params();
    p.timeouts.tick_ms = TIMEOUT_MS_MAX + 1;
    assert!(matches!(Config::new(p), Err(ConfigError::BadTimeout { which: "tick_ms", .. })));
    let mut p = params();
    p.timeouts.request_ms = TIMEOUT_MS_MAX;
    assert!(Config::new(p).is_ok(), "the longest timeout is allowed");
    let mut p = params();
    p.partitions = PARTITIONS_MAX * 2;
    assert!(matches!(Config::new(p), Err(ConfigError::BadPartitions { .. })));
    let mut p = params();
    p.partitions = PARTITIONS_MAX;
    assert!(Config::new(p).is_ok(), "the most partitions are allowed");
    let mut p = params();
    p.limits.siblings_max = 0;
    assert!(matches!(Config::new(p), Err(ConfigError::BadLimit { which: "siblings_max", .. })));
    // A one-entry read context could resolve nothing: writing it back replaces one sibling and
    // adds one.
    let mut p = params();
    p.limits.context_entries_max = 1;
    let e = Config::new(p).expect_err("one entry is too few");
    assert_eq!(e, ConfigError::BadLimit { which: "context_entries_max", min: 2 });
    assert_eq!(e.to_string(), "limit context_entries_max must be at least 2");
    let mut p = params();
    p.limits.context_entries_max = 2;
    assert!(Config::new(p).is_ok(), "two entries are enough");
    assert!(Config::new(params()).is_ok());
}

fn node(id: u16) -> Node<MemStore> {
    let mut p = params();
    p.limits.value_bytes_max = 8;
    p.limits.key_bytes_max = 4;
    p.limits.siblings_max = 2;
    let config = Arc::new(Config::new(p).expect("valid"));
    let ring = Arc::new(Ring::new(config.partitions(), config.nodes()));
    Node::new(ActorId::new(NodeId(id), 0), config, ring, MemStore::default())
}

fn ask(node: &mut Node<MemStore>, op: ClientOp) -> Vec<Effect> {
    // Each call is a new request: the same id again would be ignored as a duplicate.
    static NEXT_REQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1_000);
    let req = RequestId(NEXT_REQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let mut effects = Vec::new();
    node.handle(0, Input::Client { req, op }, &mut effects);
    effects
}

fn rejected(effects: &[Effect]) -> RequestError {
    match effects {
        [Effect::Reply { reply: ClientReply::Rejected(e), .. }] => e.clone(),
        other => panic!("expected one rejection, got {other:?}"),
    }
}

#[test]
fn bad_client_requests_are_rejected_and_change_nothing() {
    let mut n = node(1);
    let e = rejected(&ask(&mut n, ClientOp::put(Key::from("k"), Context::new(), vec![0; 9])));
    assert_eq!(e, RequestError::Put(PutError::ValueTooLarge { bytes: 9, max: 8 }));
    let e = rejected(&ask(&mut n, ClientOp::get(Key::from("kkkkk"))));
    assert_eq!(e, RequestError::KeyTooLarge { bytes: 5, max: 4 });
    let e = rejected(&ask(&mut n, ClientOp::get(Key(Vec::new()))));
    assert_eq!(e, RequestError::EmptyKey);
    let mut op = ClientOp::get(Key::from("k"));
    op.r = Some(4);
    assert!(matches!(rejected(&ask(&mut n, op)), RequestError::BadQuorum { value: 4, .. }));
    let mut op = ClientOp::put(Key::from("k"), Context::new(), b"v".to_vec());
    op.w = Some(0);
    assert!(matches!(rejected(&ask(&mut n, op)), RequestError::BadQuorum { value: 0, .. }));
    let mut op = ClientOp::get(Key::from("k"));
    op.timeout_ms = Some(0);
    assert!(matches!(rejected(&ask(&mut n, op)), RequestError::BadTimeout { .. }));
    assert_eq!(n.store(), &MemStore::default());
    assert!(n.volatile().ops.is_empty() && n.volatile().forwards.is_empty());
    assert_eq!(n.stats().rejected, 6);
}

#[test]
fn too_many_siblings_is_rejected_at_the_coordinator() {
    // With three nodes and N = 3 every node coordinates every key.
    let mut n = node(1);
    for v in [b"a", b"b"] {
        let effects = ask(&mut n, ClientOp::put(Key::from("k"), Context::new(), v.to_vec()));
        assert!(effects.iter().any(|e| matches!(e, Effect::Send { msg: Msg::Store { .. }, .. })));
    }
    let before = n.store().clone();
    let e = rejected(&ask(&mut n, ClientOp::put(Key::from("k"), Context::new(), b"c".to_vec())));
    assert_eq!(e, RequestError::Put(PutError::TooManySiblings { siblings: 3, max: 2 }));
    assert_eq!(n.store(), &before);
}

#[test]
fn undecodable_or_oversized_contexts_are_typed_errors() {
    assert!(matches!(
        Context::from_bytes(&[0xff, 0xff, 0xff], 16),
        Err(ClockError::Undecodable(_))
    ));
    assert!(matches!(Context::from_bytes(&[], 16), Err(ClockError::Undecodable(_))));
    // A valid context followed by junk is not a context.
    let mut padded = Context::new().to_bytes();
    padded.push(0);
    assert!(matches!(Context::from_bytes(&padded, 16), Err(ClockError::Undecodable(_))));
    let mut c = Context::new();
    for i in 1..=5u16 {
        c.add_dot(&dynamo_model::Dot { actor: ActorId::new(NodeId(i), 0), counter: 1, ts_ms: 0 });
    }
    let bytes = c.to_bytes();
    assert_eq!(Context::from_bytes(&bytes, 16), Ok(c));
    assert!(matches!(
        Context::from_bytes(&bytes, 4),
        Err(ClockError::TooManyEntries { entries: 5, max: 4 })
    ));
    // An unsorted clock on the wire is refused rather than trusted.
    let entry = |n: u16| dynamo_model::clock::Entry {
        actor: ActorId::new(NodeId(n), 0),
        counter: 1,
        ts_ms: 0,
    };
    let unsorted =
        postcard::to_stdvec(&(vec![entry(2), entry(1)], Vec::<dynamo_model::Dot>::new()))
            .expect("encodes");
    assert!(matches!(Context::from_bytes(&unsorted, 16), Err(ClockError::Undecodable(_))));
    let zero = postcard::to_stdvec(&(
        vec![dynamo_model::clock::Entry { counter: 0, ..entry(1) }],
        Vec::<dynamo_model::Dot>::new(),
    ))
    .expect("encodes");
    assert!(matches!(Context::from_bytes(&zero, 16), Err(ClockError::Undecodable(_))));
    // Runs of dots on the wire: an empty or zero-based run is refused; overlapping, touching or
    // clock-covered runs decode to the one canonical context they mean.
    let a = ActorId::new(NodeId(1), 0);
    let run = |first, last| dynamo_model::DotRun { actor: a, first, last, ts_ms: last };
    let wire = |runs: Vec<dynamo_model::DotRun>| {
        postcard::to_stdvec(&(vec![entry(1)], runs)).expect("encodes")
    };
    for bad in [run(5, 4), run(0, 3)] {
        let refused = Context::from_bytes(&wire(vec![bad]), 16);
        assert!(matches!(refused, Err(ClockError::Undecodable(_))), "{bad:?}: {refused:?}");
    }
    let messy = Context::from_bytes(&wire(vec![run(6, 7), run(4, 5), run(9, 9), run(1, 1)]), 16);
    let mut canonical = Context::new();
    // Counter 1 as `entry(1)` has it (stamped 0); the others as their runs stamp them.
    for (counter, ts_ms) in [(1, 0), (4, 4), (5, 5), (6, 6), (7, 7), (9, 9)] {
        canonical.add_dot(&dynamo_model::Dot { actor: a, counter, ts_ms });
    }
    assert_eq!(messy, Ok(canonical.clone()));
    assert_eq!(canonical.cloud(), &[run(4, 7), run(9, 9)]);
    // Counters no real history reaches, in the clock or in a run, are refused; the limit is not.
    let max = dynamo_model::clock::CONTEXT_COUNTER_MAX;
    let high = |counter| dynamo_model::clock::Entry { counter, ..entry(1) };
    let at = |clock: Vec<dynamo_model::clock::Entry>, runs| {
        Context::from_bytes(&postcard::to_stdvec(&(clock, runs)).expect("encodes"), 16)
    };
    assert!(at(vec![high(max)], vec![]).is_ok());
    for too_high in [
        at(vec![high(max + 1)], vec![]),
        at(vec![high(u64::MAX)], vec![]),
        at(vec![entry(1)], vec![run(3, max + 1)]),
    ] {
        assert!(
            matches!(too_high, Err(ClockError::CounterTooLarge { counter, .. }) if counter > max),
            "{too_high:?}"
        );
    }
}

/// A context made of many runs that each fold into the clock under an actor of their own (the
/// shape that made decoding quadratic: each fold shifted the clock's entries) decodes to the
/// context those dots make one by one. Found by review; its cost is measured by the core
/// benchmark (`context_decode/many_folding_runs`).
#[test]
fn a_context_of_many_folding_runs_decodes_to_what_its_dots_make() {
    let entries: Vec<dynamo_model::clock::Entry> = (0..2_000u16)
        .map(|i| dynamo_model::clock::Entry {
            actor: ActorId::new(NodeId(2), u32::from(i)),
            counter: 1,
            ts_ms: 0,
        })
        .collect();
    // Runs starting at 1 under other actors (all sorted after the clock's): each folds.
    let runs: Vec<dynamo_model::DotRun> = (0..2_000u16)
        .map(|i| dynamo_model::DotRun {
            actor: ActorId::new(NodeId(1), u32::from(i)),
            first: 1,
            last: 3,
            ts_ms: 7,
        })
        .collect();
    let bytes = postcard::to_stdvec(&(&entries, &runs)).expect("encodes");
    let decoded = Context::from_bytes(&bytes, 10_000).expect("decodes");
    let mut built = Context::new();
    for e in &entries {
        built.add_dot(&dynamo_model::Dot { actor: e.actor, counter: 1, ts_ms: 0 });
    }
    for r in &runs {
        for counter in 1..=3 {
            built.add_dot(&dynamo_model::Dot { actor: r.actor, counter, ts_ms: 7 });
        }
    }
    assert_eq!(decoded, built);
    assert_eq!(decoded.len(), 4_000);
    assert!(decoded.cloud().is_empty());
}

/// A sibling set with more than `DAMAGED_VERSIONS_MAX` versions whose past holds their own dot
/// (which no real history makes; each costs decoding a look at every other one) does not decode,
/// in a peer's message or anywhere; up to that many decode to what inserting them one by one
/// makes. Found by review.
#[test]
fn a_set_of_many_self_holding_versions_does_not_decode() {
    use dynamo_model::versioned::{Payload, Version, DAMAGED_VERSIONS_MAX};
    let damaged = |i: u16| {
        let dot = dynamo_model::Dot {
            actor: ActorId::new(NodeId(1), u32::from(i)),
            counter: 1,
            ts_ms: 0,
        };
        let mut past = Context::new();
        past.add_dot(&dot);
        Version { dot, past, payload: Payload::Value(vec![1]) }
    };
    let set = |n: u16| -> Vec<Version> { (0..n).map(damaged).collect() };
    let store = |versions: Vec<Version>| {
        postcard::to_stdvec(&(
            // Msg::Store's fields in order, by hand: the variant, op, key, siblings, intended.
            2u8,
            None::<OpId>,
            Key::from("k"),
            versions,
            None::<NodeId>,
        ))
        .expect("encodes")
    };
    let at_max = DAMAGED_VERSIONS_MAX as u16;
    let decoded: Siblings =
        postcard::from_bytes(&postcard::to_stdvec(&set(at_max)).expect("encodes"))
            .expect("up to the bound, a set decodes");
    let mut one_by_one = Siblings::new();
    for v in set(at_max) {
        one_by_one.insert(v);
    }
    assert_eq!(decoded, one_by_one);
    assert_eq!(decoded.len(), DAMAGED_VERSIONS_MAX, "none supersedes another");
    let over = postcard::to_stdvec(&set(at_max + 1)).expect("encodes");
    assert!(postcard::from_bytes::<Siblings>(&over).is_err());
    assert!(
        postcard::from_bytes::<Msg>(&store(set(at_max))).is_ok(),
        "the hand-made Store decodes"
    );
    assert!(postcard::from_bytes::<Msg>(&store(set(at_max + 1))).is_err());
}

/// A version whose dot has counter 0 is covered by every context, so any write would replace it
/// unseen: it does not decode, wherever it comes from.
#[test]
fn a_dot_with_counter_zero_does_not_decode() {
    let version = |counter| dynamo_model::Version {
        dot: dynamo_model::Dot { actor: ActorId::new(NodeId(2), 9), counter, ts_ms: 0 },
        past: Context::new(),
        payload: dynamo_model::Payload::Value(b"v".to_vec()),
    };
    let store = |counter| Msg::Store {
        op: None,
        key: Key::from("k"),
        siblings: Siblings::from_versions([version(counter)]),
        intended: None,
    };
    let bytes = |m: &Msg| postcard::to_stdvec(m).expect("encodes");
    assert_eq!(postcard::from_bytes::<Msg>(&bytes(&store(1))).expect("decodes"), store(1));
    assert!(postcard::from_bytes::<Msg>(&bytes(&store(0))).is_err());
}

#[test]
fn messages_from_unknown_nodes_are_dropped_and_counted() {
    let mut n = node(1);
    let mut effects = Vec::new();
    let store =
        Msg::Store { op: None, key: Key::from("k"), siblings: Siblings::new(), intended: None };
    n.handle(0, Input::Peer { from: NodeId(99), msg: store }, &mut effects);
    n.handle(0, Input::Peer { from: NodeId(99), msg: Msg::Ping }, &mut effects);
    assert!(effects.is_empty());
    assert_eq!(n.stats().unknown_sender_dropped, 2);
    assert_eq!(n.store(), &MemStore::default());
}

/// Found by `peer_fuzz` (a `Store` whose `intended` byte was damaged): the hint was kept for a node
/// that does not exist, and every tick tried to hand it off there.
#[test]
fn messages_naming_a_node_outside_the_ring_are_dropped_and_counted() {
    let mut n = node(1);
    let mut effects = Vec::new();
    let siblings = match ask(&mut n, ClientOp::put(Key::from("k"), Context::new(), b"v".to_vec()))
        .into_iter()
        .find_map(|e| match e {
            Effect::Send { msg: Msg::Store { siblings, .. }, .. } => Some(siblings),
            _ => None,
        }) {
        Some(s) => s,
        None => panic!("the put sent no store"),
    };
    let before = n.store().clone();
    let op = OpId { origin: NodeId(2), req: RequestId(1) };
    for intended in [NodeId(0), NodeId(120)] {
        for msg in [
            Msg::Store {
                op: Some(op),
                key: Key::from("k"),
                siblings: siblings.clone(),
                intended: Some(intended),
            },
            Msg::Fetch { op, key: Key::from("k"), intended: Some(intended) },
        ] {
            n.handle(0, Input::Peer { from: NodeId(2), msg }, &mut effects);
        }
    }
    assert!(effects.is_empty(), "{effects:?}");
    assert_eq!(n.stats().malformed_dropped, 4);
    assert_eq!(n.store(), &before);
    n.handle(0, Input::Timer(dynamo_model::node::Timer::Tick), &mut effects);
    assert!(effects.iter().all(|e| !matches!(e, Effect::Send { msg: Msg::Handoff { .. }, .. })));
}

#[test]
fn responses_to_requests_that_no_longer_exist_are_dropped_and_counted() {
    let mut n = node(1);
    let mut effects = Vec::new();
    let op = OpId { origin: NodeId(1), req: RequestId(77) };
    for msg in [
        Msg::StoreAck { op },
        Msg::FetchReply { op, siblings: Siblings::new() },
        Msg::ForwardReply {
            req: RequestId(77),
            reply: ClientReply::Unavailable { replies: 0, needed: 2 },
        },
    ] {
        n.handle(0, Input::Peer { from: NodeId(2), msg }, &mut effects);
    }
    assert!(effects.is_empty(), "stale answers produced effects: {effects:?}");
    assert_eq!(n.stats().stale_responses_dropped, 3);
    assert!(n.volatile().ops.is_empty());
}

#[test]
fn a_duplicated_forward_is_not_applied_twice() {
    let mut n = node(1);
    let forward = || Input::Peer {
        from: NodeId(2),
        msg: Msg::Forward {
            req: RequestId(5),
            op: ClientOp::put(Key::from("k"), Context::new(), vec![0; 9]),
        },
    };
    let mut effects = Vec::new();
    n.handle(0, forward(), &mut effects);
    assert!(
        matches!(
            &effects[..],
            [Effect::Send { msg: Msg::ForwardReply { reply: ClientReply::Rejected(_), .. }, .. }]
        ),
        "{effects:?}"
    );
    effects.clear();
    n.handle(0, forward(), &mut effects);
    assert!(effects.is_empty(), "the duplicate was handled again: {effects:?}");
}

#[test]
fn a_duplicated_client_request_is_not_applied_twice() {
    let mut n = node(1);
    let mut op = ClientOp::put(Key::from("k"), Context::new(), b"v".to_vec());
    op.w = Some(1);
    let mut effects = Vec::new();
    n.handle(0, Input::Client { req: RequestId(9), op: op.clone() }, &mut effects);
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::Reply { reply: ClientReply::Written { .. }, .. })));
    effects.clear();
    n.handle(0, Input::Client { req: RequestId(9), op }, &mut effects);
    assert!(effects.is_empty(), "the duplicate was applied again: {effects:?}");
    assert_eq!(n.store().data.get(&Key::from("k")).map(Siblings::len), Some(1));
}

/// Found while reading the put path for client input: a context claiming the coordinator's counter
/// `u64::MAX` overflowed (a panic in a debug build; in a release build a version with counter 0).
#[test]
fn a_context_claiming_the_last_counter_is_refused_not_wrapped() {
    let mut n = node(1);
    let actor = ActorId::new(NodeId(1), 0);
    let mut clock = dynamo_model::clock::VClock::new();
    clock.witness(actor, u64::MAX, 0);
    let op = ClientOp::put(Key::from("k"), Context::from(clock), b"v".to_vec());
    let e = rejected(&ask(&mut n, op));
    assert_eq!(e, RequestError::Put(PutError::CounterExhausted { actor, counter: u64::MAX }));
    assert_eq!(n.store(), &MemStore::default());
    // Nor past the limit on what a client's context may claim: every context a read returns is
    // one the node takes back, so a made-up context cannot lock a key for every coordinator.
    let max = dynamo_model::clock::CONTEXT_COUNTER_MAX;
    let at = |counter| {
        let mut clock = dynamo_model::clock::VClock::new();
        clock.witness(actor, counter, 0);
        ClientOp::put(Key::from("k"), Context::from(clock), b"v".to_vec())
    };
    let e = rejected(&ask(&mut n, at(max)));
    assert_eq!(e, RequestError::Put(PutError::CounterExhausted { actor, counter: max }));
    assert!(ask(&mut n, at(max - 1)).iter().any(|e| matches!(e, Effect::Send { .. })));
    let stored = n.store().data.get(&Key::from("k")).expect("written").clone();
    let read_back = Context::from_bytes(&stored.context().to_bytes(), 16).expect("taken back");
    let mut via_another = stored.clone();
    let other = ActorId::new(NodeId(2), 0);
    let limits = dynamo_model::config::Limits::default();
    via_another
        .apply_put(other, &read_back, dynamo_model::Payload::Tombstone, 0, &limits, None)
        .expect("another coordinator supersedes it");
    assert_eq!(via_another.len(), 1);
}

/// The one stored set an input reads, which the driver holds answers built from it on: a get's
/// key, a `Fetch`'s hint for another node or its key's data (also when it names this node); a
/// put, and other messages, none.
#[test]
fn reads_names_the_one_set_a_get_or_fetch_reads() {
    use dynamo_model::node::Record;
    let n = node(1);
    let k = Key::from("k");
    let op = OpId { origin: NodeId(2), req: RequestId(1) };
    let fetch = |intended| Input::Peer {
        from: NodeId(2),
        msg: Msg::Fetch { op, key: k.clone(), intended },
    };
    let get = Input::Client { req: RequestId(1), op: ClientOp::get(k.clone()) };
    assert_eq!(n.reads(&get), Some(Record::Data(&k)));
    let (other, mine, none) = (fetch(Some(NodeId(3))), fetch(Some(NodeId(1))), fetch(None));
    assert_eq!(n.reads(&other), Some(Record::Hint(NodeId(3), &k)));
    assert_eq!(n.reads(&mine), Some(Record::Data(&k)));
    assert_eq!(n.reads(&none), Some(Record::Data(&k)));
    let put = Input::Client {
        req: RequestId(2),
        op: ClientOp::put(k.clone(), Context::new(), b"v".to_vec()),
    };
    assert_eq!(n.reads(&put), None);
    assert_eq!(n.reads(&Input::Peer { from: NodeId(2), msg: Msg::Ping }), None);
}

/// Found by the s25 audit: a replica stored whatever versions a peer's `Store` or `Handoff`
/// carried, past the limits a client's write is held to, and a set it then held could be larger
/// than any frame it may send on (dropped at every send, a hint at every tick). Such messages
/// are now dropped and counted; within the limits they are stored.
#[test]
fn peer_versions_outside_the_client_limits_are_dropped_and_counted() {
    let mut n = node(1); // value_bytes_max 8, key_bytes_max 4
    let max_counter = dynamo_model::clock::CONTEXT_COUNTER_MAX;
    let counted = |value: &[u8], past_entries: u32, past_counter: u64, counter: u64| {
        let mut past = dynamo_model::clock::VClock::new();
        for i in 0..past_entries {
            past.witness(ActorId::new(NodeId(2), 100 + i), past_counter, 0);
        }
        let dot = dynamo_model::clock::Dot { actor: ActorId::new(NodeId(2), 0), counter, ts_ms: 0 };
        let past = Context::from(past);
        let payload = dynamo_model::Payload::Value(value.to_vec());
        Siblings::from_versions([dynamo_model::Version { dot, past, payload }])
    };
    let versions = |value: &[u8], past_entries: u32| counted(value, past_entries, 1, 1);
    let max_entries = dynamo_model::config::Limits::default().context_entries_max as u32;
    let store = |key: &str, siblings| Msg::Store {
        op: None,
        key: Key::from(key),
        siblings,
        intended: None,
    };
    let handoff = |key: &str, siblings| Msg::Handoff { key: Key::from(key), siblings };
    // A version whose past holds its own dot (no real history makes one).
    let self_holding = {
        let dot =
            dynamo_model::clock::Dot { actor: ActorId::new(NodeId(2), 0), counter: 1, ts_ms: 0 };
        let mut past = Context::new();
        past.add_dot(&dot);
        let payload = dynamo_model::Payload::Value(b"v".to_vec());
        Siblings::from_versions([dynamo_model::Version { dot, past, payload }])
    };
    let mut effects = Vec::new();
    for msg in [
        store("k", versions(&[0; 9], 0)),
        store("kkkkk", versions(b"v", 0)),
        store("", versions(b"v", 0)),
        store("k", versions(b"v", max_entries + 1)),
        handoff("k", versions(&[0; 9], 0)),
        handoff("kkkkk", versions(b"v", 0)),
        // Counters no write can follow (a client's context may not claim them either).
        store("k", counted(b"v", 0, 1, max_counter + 1)),
        store("k", counted(b"v", 1, max_counter + 1, 1)),
        store("k", self_holding.clone()),
        handoff("k", self_holding),
        // A get's answer is merged, stored and repaired onto other replicas: held to the same.
        Msg::FetchReply {
            op: OpId { origin: NodeId(1), req: RequestId(5) },
            siblings: versions(&[0; 9], 0),
        },
    ] {
        n.handle(0, Input::Peer { from: NodeId(2), msg }, &mut effects);
    }
    assert!(effects.is_empty(), "{effects:?}");
    assert_eq!(n.stats().malformed_dropped, 11);
    assert_eq!(n.stats().stale_responses_dropped, 0, "dropped as malformed, not as stale");
    assert_eq!(n.store(), &MemStore::default());
    // At the limits, stored.
    n.handle(
        0,
        Input::Peer { from: NodeId(2), msg: store("kkkk", versions(&[0; 8], max_entries)) },
        &mut effects,
    );
    assert_eq!(n.stats().malformed_dropped, 11);
    assert_eq!(n.store().data.get(&Key::from("kkkk")).map(Siblings::len), Some(1));
}

/// Node `id` of the test cluster with contexts limited to `max` entries.
fn limited_node(id: u16, max: usize) -> Node<MemStore> {
    let mut p = params();
    p.limits.context_entries_max = max;
    let config = Arc::new(Config::new(p).expect("valid"));
    let ring = Arc::new(Ring::new(config.partitions(), config.nodes()));
    Node::new(ActorId::new(NodeId(id), 0), config, ring, MemStore::default())
}

/// A made-up context naming `entries` writers that do not exist (incarnations of `node` from
/// 100 up), one write each.
fn made_up(node: u16, entries: usize) -> Context {
    let mut clock = dynamo_model::clock::VClock::new();
    for inc in 0..entries as u32 {
        clock.witness(ActorId::new(NodeId(node), 100 + inc), 1, 0);
    }
    Context::from(clock)
}

/// A put of `key` on `context`, acknowledged by the coordinator alone.
fn put_on(key: &Key, context: Context) -> ClientOp {
    let mut op = ClientOp::put(key.clone(), context, b"v".to_vec());
    op.w = Some(1);
    op
}

/// The context a put's reply hands back, if it was taken.
fn written(effects: &[Effect]) -> Option<Context> {
    effects.iter().find_map(|e| match e {
        Effect::Reply { reply: ClientReply::Written { context, .. }, .. } => Some(context.clone()),
        _ => None,
    })
}

/// A read of `key` from `n` alone: its context, as the client sends it back (decoded with the
/// limit `max`, so one the node would not take back fails here), and its values.
fn read_back(n: &mut Node<MemStore>, key: &Key, max: usize) -> (Context, Vec<Vec<u8>>) {
    let mut get = ClientOp::get(key.clone());
    get.r = Some(1);
    let (context, values) = ask(n, get)
        .into_iter()
        .find_map(|e| match e {
            Effect::Reply { reply: ClientReply::Read { context, values }, .. } => {
                Some((context, values))
            }
            _ => None,
        })
        .expect("the read is answered");
    (Context::from_bytes(&context.to_bytes(), max).expect("the node takes it back"), values)
}

fn siblings_of(n: &Node<MemStore>, key: &Key) -> usize {
    n.store().data.get(key).map_or(0, Siblings::len)
}

/// Found while checking the s25 audit's unresolvable key: one client alone, with one made-up
/// context of `context_entries_max` entries, made a version whose own clock (the context plus
/// the new dot) was one entry over the limit. Every read of the key then answered with a context
/// no node took back, and blind writes only piled up siblings. The put is taken, and both its
/// returned context and a read's are cut to the limit, keep the dot, and replace the version.
#[test]
fn a_made_up_context_at_the_limit_leaves_a_key_that_can_be_read_back() {
    const MAX: usize = 4;
    let mut n = limited_node(1, MAX);
    let key = Key::from("k");
    let after = written(&ask(&mut n, put_on(&key, made_up(2, MAX)))).expect("the put is taken");
    let stored = n.store().data.get(&key).expect("stored").clone();
    assert_eq!(stored.context().len(), MAX + 1, "the version's own clock is over the limit");
    assert_eq!(after.len(), MAX, "its returned context is cut to the limit");
    assert!(stored.versions().iter().all(|v| after.contains(&v.dot)), "and keeps the dot");
    // A write on it is taken back and replaces the version.
    let context = Context::from_bytes(&after.to_bytes(), MAX).expect("taken back");
    assert!(written(&ask(&mut n, put_on(&key, context))).is_some());
    assert_eq!(siblings_of(&n, &key), 1);
    // So is a read's context, once a new made-up write has gone beside that one.
    assert!(written(&ask(&mut n, put_on(&key, made_up(2, MAX)))).is_some());
    assert_eq!(siblings_of(&n, &key), 2);
    let (context, _) = read_back(&mut n, &key, MAX);
    assert!(written(&ask(&mut n, put_on(&key, context))).is_some());
    assert_eq!(siblings_of(&n, &key), 1);
}

/// Found by a read-only audit: a client that makes up contexts naming many actors, writing
/// through two coordinators, got siblings whose pasts each fit `context_entries_max` but whose
/// joined read context did not. No node took that context back (400), blind writes piled up
/// siblings until the limit refused them, and the key could not be resolved. Every context a
/// node hands out (a read's, a write's) now fits, and writing it back resolves the siblings.
#[test]
fn made_up_contexts_through_two_coordinators_cannot_make_a_key_unresolvable() {
    const MAX: usize = 4;
    let mut nodes = [limited_node(1, MAX), limited_node(2, MAX)];
    let key = Key::from("k");
    // One made-up context through each coordinator: two concurrent versions.
    let via_1 = ask(&mut nodes[0], put_on(&key, made_up(1, MAX)));
    let after_1 = written(&via_1).expect("the first put is written");
    let via_2 = ask(&mut nodes[1], put_on(&key, made_up(2, MAX)));
    assert!(written(&via_2).is_some(), "the second put is written");
    // A write's own context fits too, and a write on it is taken.
    assert!(after_1.len() <= MAX, "a write's context has {} entries", after_1.len());
    // The second coordinator's store reaches the first: it now holds both.
    let store = via_2
        .into_iter()
        .find_map(|e| match e {
            Effect::Send { to: NodeId(1), msg: msg @ Msg::Store { .. } } => Some(msg),
            _ => None,
        })
        .expect("the second put is sent to node 1");
    nodes[0].handle(0, Input::Peer { from: NodeId(2), msg: store }, &mut Vec::new());
    let both = nodes[0].store().data.get(&key).expect("stored").clone();
    assert_eq!(both.len(), 2);
    assert!(both.context().len() > MAX, "the versions' pasts together exceed the limit");
    // A read answers with a context that fits, and writing it back resolves the siblings.
    let (context, values) = read_back(&mut nodes[0], &key, MAX);
    assert_eq!(values.len(), 2, "both siblings are read");
    let after = written(&ask(&mut nodes[0], put_on(&key, context))).expect("resolving put");
    assert_eq!(siblings_of(&nodes[0], &key), 1);
    // And a write on the write's context replaces it in turn.
    assert!(written(&ask(&mut nodes[0], put_on(&key, after))).is_some());
    assert_eq!(siblings_of(&nodes[0], &key), 1);
}

/// Found by the review of the cap: through one coordinator, a made-up context of
/// `context_entries_max` other writers and then contexts naming only lone counters of the
/// coordinator's own (each a single entry, so each taken) left siblings whose dots alone needed
/// more entries than the limit, and a read handed out all of them, a context no node took back.
/// A read's context now always fits; writing it back resolves the newest siblings, and a few
/// rounds of read and write resolve the key.
#[test]
fn siblings_whose_dots_alone_exceed_the_limit_are_resolved_in_rounds() {
    const MAX: usize = 4;
    let mut n = limited_node(1, MAX);
    let me = ActorId::new(NodeId(1), 0);
    let key = Key::from("k");
    let put = |n: &mut Node<MemStore>, context| {
        assert!(written(&ask(n, put_on(&key, context))).is_some(), "the put is taken");
    };
    put(&mut n, made_up(2, MAX));
    for counter in [3, 6, 9, 12] {
        let mut lone = Context::new();
        lone.add_dot(&dynamo_model::clock::Dot { actor: me, counter, ts_ms: 0 });
        put(&mut n, lone);
    }
    assert_eq!(siblings_of(&n, &key), MAX + 1, "five concurrent versions, one dot each");
    let mut rounds = 0;
    while siblings_of(&n, &key) > 1 {
        rounds += 1;
        let before = siblings_of(&n, &key);
        assert!(rounds <= MAX + 1, "still {before} siblings after {rounds} rounds");
        let (context, _) = read_back(&mut n, &key, MAX);
        put(&mut n, context);
        assert!(siblings_of(&n, &key) < before, "a round resolves some siblings");
    }
}

/// A forwarded put whose context claims a counter no client context may carry is dropped as
/// malformed: written, it would become the past of a version every replica refuses to store, and
/// whose read context no client could send back. (Found by review: only the client's own
/// decoding checked counters, not a forward.)
#[test]
fn a_forward_whose_context_claims_a_counter_past_the_bound_is_dropped() {
    use dynamo_model::clock::CONTEXT_COUNTER_MAX;
    use dynamo_model::VClock;
    let mut n = node(1);
    let mut clock = VClock::new();
    clock.witness(ActorId::new(NodeId(2), 7), CONTEXT_COUNTER_MAX + 1, 0);
    let forward = |context| Input::Peer {
        from: NodeId(2),
        msg: Msg::Forward {
            req: RequestId(5),
            op: ClientOp::put(Key::from("k"), context, b"v".to_vec()),
        },
    };
    let mut effects = Vec::new();
    n.handle(0, forward(Context::from(clock)), &mut effects);
    assert!(effects.is_empty(), "{effects:?}");
    assert_eq!(n.stats().malformed_dropped, 1);
    assert_eq!(n.store(), &MemStore::default());
    // At the bound it is taken.
    let mut clock = VClock::new();
    clock.witness(ActorId::new(NodeId(2), 7), CONTEXT_COUNTER_MAX, 0);
    n.handle(0, forward(Context::from(clock)), &mut effects);
    assert_eq!(n.stats().malformed_dropped, 1);
    assert!(!effects.is_empty(), "a forward within the bound is coordinated");
}

/// What a peer's frame becomes in memory stays near its size: each sequence of a message whose
/// items are small on the wire (a set's versions, a read's values, a clock's entries, a
/// context's runs) decodes under the peer bound only up to that many items, and a message of
/// more is one `longest_sequence` tells a sender not to send. Without the bound (the store's own
/// records) the same bytes decode.
#[test]
fn peer_messages_decode_only_within_the_sequence_bound() {
    use dynamo_model::clock::{DotRun, Entry, VClock};
    use dynamo_model::wire::with_sequence_max;
    use dynamo_model::{Dot, Limits, Payload, Version};

    let max = Limits::default().peer_sequence_max(3);
    let actor = |i: usize| ActorId::new(NodeId(1 + i as u16), 0);
    let key = || Key::from("k");
    let store = |versions: Vec<Version>| Msg::Store {
        op: None,
        key: key(),
        siblings: Siblings::from_versions(versions),
        intended: None,
    };
    let tombstone = |counter: u64, past: Context| Version {
        dot: Dot { actor: ActorId::new(NodeId(u16::MAX), 0), counter, ts_ms: 0 },
        past,
        payload: Payload::Tombstone,
    };
    let set = |n: usize| store((1..=n as u64).map(|c| tombstone(c, Context::new())).collect());
    let values = |n: usize| Msg::ForwardReply {
        req: RequestId(1),
        reply: ClientReply::Read { context: Context::new(), values: vec![Vec::new(); n] },
    };
    let clock = |n: usize| {
        let entries: Vec<Entry> =
            (0..n).map(|i| Entry { actor: actor(i), counter: 1, ts_ms: 0 }).collect();
        let clock = VClock::try_from(entries).expect("sorted");
        store(vec![tombstone(1, Context::from(clock))])
    };
    let runs = |n: usize| {
        #[derive(serde::Serialize)]
        struct RawContext {
            clock: Vec<Entry>,
            cloud: Vec<DotRun>,
        }
        let cloud = (0..n).map(|i| DotRun { actor: actor(i), first: 5, last: 5, ts_ms: 0 });
        let raw = RawContext { clock: Vec::new(), cloud: cloud.collect() };
        let bytes = postcard::to_stdvec(&raw).expect("encodes");
        let context: Context = postcard::from_bytes(&bytes).expect("unbounded, it decodes");
        assert_eq!(context.len(), n);
        let op = ClientOp::put(key(), context, b"v".to_vec());
        Msg::Forward { req: RequestId(1), op }
    };
    let cases: [(&str, &dyn Fn(usize) -> Msg); 4] =
        [("versions", &set), ("values", &values), ("clock entries", &clock), ("runs", &runs)];
    for (what, make) in cases {
        let (fits, over) = (make(max), make(max + 1));
        assert_eq!((fits.longest_sequence(), over.longest_sequence()), (max, max + 1), "{what}");
        let decode = |m: &Msg| {
            let bytes = postcard::to_stdvec(m).expect("encodes");
            let bounded = with_sequence_max(max, || postcard::from_bytes::<Msg>(&bytes));
            (bounded.ok(), postcard::from_bytes::<Msg>(&bytes).expect("unbounded, it decodes"))
        };
        assert_eq!(decode(&fits), (Some(fits.clone()), fits), "{max} {what} decode");
        assert_eq!(decode(&over), (None, over), "{} {what} do not", max + 1);
    }
}
