//! Scenario tests over the simulator with a fault-free network, each citing the paper section
//! (DeCandia et al., SOSP 2007) whose behaviour it shows, plus pinned regressions (one drives
//! nodes directly, to choose which replica hears of which write).

use dynamo_model::clock::Context;
use dynamo_model::ids::{Key, NodeId};
use dynamo_model::msg::{ClientOp, ClientReply};
use dynamo_model::sim::{Faults, Sim, SimConfig};
use dynamo_model::store::{Hint, Store, StoreError};
use dynamo_model::versioned::Siblings;
use std::collections::BTreeSet;

fn quiet(sloppy: bool) -> Sim {
    let mut cfg = SimConfig { faults: Faults::none(), ..SimConfig::default() };
    cfg.params.sloppy_quorum = sloppy;
    Sim::new(cfg).expect("valid config")
}

fn key() -> Key {
    Key::from("cart")
}

fn read(sim: &mut Sim, at: NodeId, r: Option<usize>) -> (Context, Vec<String>) {
    let mut op = ClientOp::get(key());
    op.r = r;
    match sim.request(at, op) {
        Some(ClientReply::Read { context, values }) => {
            let mut vs: Vec<String> =
                values.into_iter().map(|v| String::from_utf8_lossy(&v).into_owned()).collect();
            vs.sort();
            (context, vs)
        }
        other => panic!("get at {at} answered {other:?}"),
    }
}

fn write(sim: &mut Sim, at: NodeId, context: Context, value: &str) -> Context {
    match sim.request(at, ClientOp::put(key(), context, value.as_bytes().to_vec())) {
        Some(ClientReply::Written { context, .. }) => context,
        other => panic!("put at {at} answered {other:?}"),
    }
}

/// §4.4: puts on the same context at different coordinators become siblings; a put with the
/// merged context resolves them.
#[test]
fn concurrent_puts_create_siblings_and_a_merged_put_resolves_them() {
    let mut sim = quiet(true);
    let p = sim.primaries(&key());
    let a = sim.submit(p[0], ClientOp::put(key(), Context::new(), b"milk".to_vec()));
    let b = sim.submit(p[1], ClientOp::put(key(), Context::new(), b"eggs".to_vec()));
    assert!(matches!(sim.run_until_reply(a, 5_000), Some(ClientReply::Written { .. })));
    assert!(matches!(sim.run_until_reply(b, 5_000), Some(ClientReply::Written { .. })));
    let (ctx, values) = read(&mut sim, p[2], Some(3));
    assert_eq!(values, ["eggs", "milk"]);
    write(&mut sim, p[2], ctx, "eggs+milk");
    let (_, values) = read(&mut sim, p[0], Some(3));
    assert_eq!(values, ["eggs+milk"]);
}

/// §4.4 refined: two blind puts through the same coordinator stay concurrent too, and a put on
/// the context returned by the second one must not supersede the first, which its client never
/// saw. Pinned from simulator seed 0 (strict and sloppy), which lost an acknowledged write when
/// contexts were plain vector clocks.
#[test]
fn same_coordinator_puts_stay_concurrent_and_contexts_do_not_overreach() {
    let mut sim = quiet(false);
    let c = sim.primaries(&key())[0];
    write(&mut sim, c, Context::new(), "first");
    let second = write(&mut sim, c, Context::new(), "second");
    let (_, values) = read(&mut sim, c, Some(3));
    assert_eq!(values, ["first", "second"]);
    // `second`'s context covers only `second`, although its counter is above `first`'s.
    write(&mut sim, c, second, "third");
    let (_, values) = read(&mut sim, c, Some(3));
    assert_eq!(values, ["first", "third"]);
}

/// A client that writes once without a context and then keeps writing on the context each put
/// returns (never reading) builds a chain above a gap that never fills: the version it did not
/// see is still there. The chain's context must stay small, or it passes
/// `context_entries_max` and every further write is refused. Pinned from a cluster run (a
/// write-only `dynamo bench` on a key that already held a value), in which the context grew by
/// one dot per write and the 257th write and all after it were answered 400.
#[test]
fn a_chain_of_writes_above_a_gap_keeps_a_small_context() {
    let mut sim = quiet(false);
    let c = sim.primaries(&key())[0];
    write(&mut sim, c, Context::new(), "stored");
    let mut context = write(&mut sim, c, Context::new(), "w0");
    for i in 1..=300 {
        context = write(&mut sim, c, context, &format!("w{i}"));
        assert!(context.len() <= 2, "after {i} writes the context is {context}");
    }
    let (_, values) = read(&mut sim, c, Some(3));
    assert_eq!(values, ["stored", "w300"]);
}

/// §4.6: with a primary down, a sloppy write lands on the first fallback as a hint naming the
/// primary; once the primary is back, the hint is handed off and removed.
#[test]
fn sloppy_write_goes_to_a_fallback_as_a_hint_and_is_handed_off() {
    let mut sim = quiet(true);
    let walk = sim.ring().walk(&key()).to_vec();
    let (coordinator, down, fallback) = (walk[0], walk[2], walk[3]);
    sim.crash(down);
    write(&mut sim, coordinator, Context::new(), "v1");
    sim.run_for(1_000); // the sloppy retry sends the copy to the fallback
    let hints = &sim.store(fallback).expect("fallback exists").hints;
    assert!(hints.contains_key(&(down, key())), "fallback {fallback} holds no hint: {hints:?}");
    assert!(
        !sim.store(fallback).expect("exists").data.contains_key(&key()),
        "hint leaked into data"
    );
    assert!(!sim.store(down).expect("exists").data.contains_key(&key()));
    sim.restart(down);
    sim.run_for(3_000);
    assert!(sim.store(fallback).expect("exists").hints.is_empty(), "hint was not removed");
    let held = sim.store(down).expect("exists").data.get(&key()).cloned().unwrap_or_default();
    assert_eq!(held.values().collect::<Vec<_>>(), [b"v1".as_slice()]);
}

/// §4.5, §5: a replica that missed a write is repaired by the next get that reads it.
#[test]
fn read_repair_fixes_a_stale_replica() {
    let mut sim = quiet(false);
    let p = sim.primaries(&key());
    sim.crash(p[2]);
    write(&mut sim, p[0], Context::new(), "v1");
    sim.restart(p[2]);
    sim.run_for(1_000);
    assert!(!sim.store(p[2]).expect("exists").data.contains_key(&key()), "strict mode: no hint");
    let (_, values) = read(&mut sim, p[0], Some(3));
    assert_eq!(values, ["v1"]);
    sim.run_for(100);
    let held = sim.store(p[2]).expect("exists").data.get(&key()).cloned().unwrap_or_default();
    assert_eq!(held.values().collect::<Vec<_>>(), [b"v1".as_slice()]);
    assert!(sim.node(p[0]).expect("up").stats().read_repairs > 0);
}

/// §4.4: a delete is a tombstone put; the key reads as not found with a context, and a put on that
/// context re-creates it without resurrecting the old value.
#[test]
fn delete_then_recreate() {
    let mut sim = quiet(true);
    let p = sim.primaries(&key());
    write(&mut sim, p[0], Context::new(), "old");
    let (ctx, _) = read(&mut sim, p[1], None);
    match sim.request(p[1], ClientOp::delete(key(), ctx)) {
        Some(ClientReply::Written { .. }) => {}
        other => panic!("delete answered {other:?}"),
    }
    let (ctx, values) = read(&mut sim, p[2], Some(3));
    assert!(values.is_empty(), "deleted key still reads {values:?}");
    assert!(!ctx.is_empty(), "a deleted key's context must cover the tombstone");
    write(&mut sim, p[2], ctx, "new");
    let (_, values) = read(&mut sim, p[0], Some(3));
    assert_eq!(values, ["new"]);
}

/// §4.5: a request that reaches a node outside the preference list is forwarded to a coordinator.
#[test]
fn requests_at_other_nodes_are_forwarded() {
    let mut sim = quiet(true);
    let walk = sim.ring().walk(&key()).to_vec();
    let outsider = walk[3];
    write(&mut sim, outsider, Context::new(), "via-forward");
    let (_, values) = read(&mut sim, walk[4], None);
    assert_eq!(values, ["via-forward"]);
    assert!(sim.node(outsider).expect("up").stats().forwarded >= 1);
}

/// A forwarded request is answered within its own timeout: when the coordinator is down (and not
/// yet suspected) the forwarding node answers at the deadline, with the W the request asked for;
/// when the coordinator times out itself, its answer (here a put with one acknowledgement)
/// arrives first and is the one relayed.
#[test]
fn forwarded_requests_are_answered_within_their_timeout() {
    let mut sim = quiet(false);
    let walk = sim.ring().walk(&key()).to_vec();
    let put = |value: &str| {
        let mut op = ClientOp::put(key(), Context::new(), value.as_bytes().to_vec());
        op.timeout_ms = Some(500);
        op
    };
    sim.crash(walk[0]);
    let start = sim.now_ms();
    let mut all = put("a");
    all.w = Some(3);
    let req = sim.submit(walk[3], all);
    let reply = sim.run_until_reply(req, 10_000);
    assert_eq!(reply, Some(ClientReply::Indeterminate { acks: 0, needed: 3 }), "the request's W");
    assert!(sim.now_ms() - start <= 500, "answered after {} ms", sim.now_ms() - start);

    sim.restart(walk[0]);
    sim.crash(walk[1]);
    sim.crash(walk[2]);
    let start = sim.now_ms();
    let req = sim.submit(walk[4], put("b"));
    let reply = sim.run_until_reply(req, 10_000);
    assert_eq!(reply, Some(ClientReply::Indeterminate { acks: 1, needed: 2 }), "the coordinator's");
    assert!(sim.now_ms() - start <= 500, "answered after {} ms", sim.now_ms() - start);
}

/// A put that cannot gather W acknowledgements is indeterminate, never failed, and it may
/// survive: here it does, on the coordinator, and shows up once the cluster heals.
#[test]
fn a_put_without_quorum_is_indeterminate_and_may_survive() {
    let mut sim = quiet(false);
    let p = sim.primaries(&key());
    sim.crash(p[1]);
    sim.crash(p[2]);
    match sim.request(p[0], ClientOp::put(key(), Context::new(), b"maybe".to_vec())) {
        Some(ClientReply::Indeterminate { acks: 1, needed: 2 }) => {}
        other => panic!("expected indeterminate, got {other:?}"),
    }
    sim.restart(p[1]);
    sim.restart(p[2]);
    sim.run_for(1_000);
    let (_, values) = read(&mut sim, p[1], Some(3));
    assert_eq!(values, ["maybe"]);
}

/// Under strict quorum with R + W > N, a get that starts after an acknowledged put sees it even
/// when one primary missed the put.
#[test]
fn strict_quorum_reads_see_acknowledged_writes() {
    let mut sim = quiet(false);
    let p = sim.primaries(&key());
    sim.crash(p[2]);
    write(&mut sim, p[0], Context::new(), "v1");
    sim.restart(p[2]);
    sim.crash(p[0]);
    let (_, values) = read(&mut sim, p[2], Some(2));
    assert_eq!(values, ["v1"]);
}

/// §4.4's clock truncation must not make a coordinator issue a counter twice. A coordinator
/// takes its next counter for a key from the key's versions; truncation drops the oldest entry of
/// a new version's past, and once no version of the key names the dropped actor, that actor's
/// next write of the key took the counter of its first write again. A replica still holding that
/// first write then took the acknowledged new write for it (same dot) and kept the old value.
/// Found by reading the code (a review of s26's context capping); a node now records its highest
/// counter for a key apart from the key's versions before it saves a merge that forgets it.
#[test]
fn truncation_never_makes_a_coordinator_reuse_a_counter() {
    use dynamo_model::config::{Config, ConfigParams};
    use dynamo_model::ids::{ActorId, RequestId};
    use dynamo_model::msg::Msg;
    use dynamo_model::node::{Effect, Input, Node};
    use dynamo_model::ring::Ring;
    use dynamo_model::store::MemStore;
    use std::sync::Arc;

    let mut p = ConfigParams::for_nodes((1..=3).map(NodeId));
    p.clock_entries_max = Some(2); // a new version's past keeps one entry
    let config = Arc::new(Config::new(p).expect("valid"));
    let ring = Arc::new(Ring::new(config.partitions(), config.nodes()));
    let mut nodes: Vec<Node<MemStore>> = (1..=3u16)
        .map(|i| {
            Node::new(ActorId::new(NodeId(i), 0), config.clone(), ring.clone(), MemStore::default())
        })
        .collect();
    let mut next_req = 0;
    // Runs `op` at `via` at time `now`; returns its reply and the stores it sent, by target.
    let mut run = |nodes: &mut Vec<Node<MemStore>>, via: u16, now: u64, op: ClientOp| {
        next_req += 1;
        let mut effects = Vec::new();
        let input = Input::Client { req: RequestId(next_req), op };
        nodes[usize::from(via - 1)].handle(now, input, &mut effects);
        let mut reply = None;
        let mut stores = Vec::new();
        for e in effects {
            match e {
                Effect::Reply { reply: r, .. } => reply = Some(r),
                Effect::Send { to, msg: msg @ Msg::Store { .. } } => stores.push((to, msg)),
                _ => {}
            }
        }
        (reply.expect("answered at once with R = W = 1"), stores)
    };
    let deliver =
        |nodes: &mut Vec<Node<MemStore>>, from: u16, stores: &[(NodeId, Msg)], to: u16| {
            for (target, msg) in stores.iter().filter(|(t, _)| *t == NodeId(to)) {
                let input = Input::Peer { from: NodeId(from), msg: msg.clone() };
                nodes[usize::from(target.0 - 1)].handle(0, input, &mut Vec::new());
            }
        };
    let put = |context, value: &str| {
        let mut op = ClientOp::put(key(), context, value.as_bytes().to_vec());
        op.w = Some(1);
        op
    };
    let get = || {
        let mut op = ClientOp::get(key());
        op.r = Some(1);
        op
    };
    let context_of = |reply: ClientReply| match reply {
        ClientReply::Read { context, .. } => context,
        other => panic!("a read answered {other:?}"),
    };
    // n2 writes v1; every replica has it.
    let (_, stores) = run(&mut nodes, 2, 1_000, put(Context::new(), "v1"));
    deliver(&mut nodes, 2, &stores, 1);
    deliver(&mut nodes, 2, &stores, 3);
    // A client reads v1 and keeps the context.
    let c0 = context_of(run(&mut nodes, 3, 1_200, get()).0);
    // n1 writes v2 over it, then v3 over v2 (whose past, truncated, no longer names n2); n3
    // hears of neither.
    let c1 = context_of(run(&mut nodes, 1, 1_500, get()).0);
    let (_, stores) = run(&mut nodes, 1, 2_000, put(c1, "v2"));
    deliver(&mut nodes, 1, &stores, 2);
    let c2 = context_of(run(&mut nodes, 1, 2_500, get()).0);
    let (_, stores) = run(&mut nodes, 1, 3_000, put(c2, "v3"));
    deliver(&mut nodes, 1, &stores, 2);
    // n2 writes v4 over v3, acknowledged, and its store reaches n3.
    let c3 = context_of(run(&mut nodes, 2, 3_500, get()).0);
    let (reply, stores) = run(&mut nodes, 2, 4_000, put(c3, "v4"));
    assert!(matches!(reply, ClientReply::Written { .. }), "{reply:?}");
    deliver(&mut nodes, 2, &stores, 3);
    // The client that read v1 writes v5 over what it saw, at n3: v4, which it never saw, must
    // stay beside it.
    let (reply, _) = run(&mut nodes, 3, 5_000, put(c0, "v5"));
    assert!(matches!(reply, ClientReply::Written { .. }), "{reply:?}");
    let at_n3 = nodes[2].store().data.get(&key()).expect("n3 holds the key").clone();
    assert!(at_n3.values().any(|v| v == b"v4"), "n3 lost the acknowledged v4: {at_n3:?}");
}

/// A store whose writes are applied and then reported failed: the worst case of a failed write,
/// which a node cannot tell from one that changed nothing.
#[derive(Default)]
struct WritesReportedFailed(dynamo_model::store::MemStore);

impl Store for WritesReportedFailed {
    fn load(&self, key: &Key) -> Result<Siblings, StoreError> {
        self.0.load(key)
    }
    fn save(&mut self, key: &Key, siblings: &Siblings) -> Result<(), StoreError> {
        self.0.save(key, siblings)?;
        Err(StoreError::Io("reported failed after it was applied".into()))
    }
    fn load_hint(&self, intended: NodeId, key: &Key) -> Result<Siblings, StoreError> {
        self.0.load_hint(intended, key)
    }
    fn save_hint(&mut self, i: NodeId, key: &Key, s: &Siblings) -> Result<(), StoreError> {
        self.0.save_hint(i, key, s)
    }
    fn remove_hint(&mut self, intended: NodeId, key: &Key) -> Result<(), StoreError> {
        self.0.remove_hint(intended, key)
    }
    fn hints(&self, skip: &BTreeSet<NodeId>, limit: usize) -> Result<Vec<Hint>, StoreError> {
        self.0.hints(skip, limit)
    }
    fn hint_count(&self) -> Result<usize, StoreError> {
        self.0.hint_count()
    }
    fn issued(&self, key: &Key) -> Result<u64, StoreError> {
        self.0.issued(key)
    }
    fn save_issued(&mut self, key: &Key, counter: u64) -> Result<(), StoreError> {
        self.0.save_issued(key, counter)
    }
}

/// A coordinator whose own write of a put fails cannot know whether the write was applied (a
/// later read may find it, and repair it onto the replicas): it answers the put indeterminate,
/// never refused, and sends it to no replica.
#[test]
fn a_put_whose_own_write_fails_is_indeterminate() {
    use dynamo_model::config::{Config, ConfigParams};
    use dynamo_model::ids::{ActorId, RequestId};
    use dynamo_model::node::{Effect, Input, Node};
    use dynamo_model::ring::Ring;
    use std::sync::Arc;

    let config = Arc::new(Config::new(ConfigParams::for_nodes((1..=3).map(NodeId))).expect("ok"));
    let ring = Arc::new(Ring::new(config.partitions(), config.nodes()));
    let actor = ActorId::new(NodeId(1), 0);
    let mut node = Node::new(actor, config, ring, WritesReportedFailed::default());
    let mut effects = Vec::new();
    let op = ClientOp::put(key(), Context::new(), b"v".to_vec());
    node.handle(0, Input::Client { req: RequestId(1), op }, &mut effects);
    let replies: Vec<&ClientReply> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Reply { reply, .. } => Some(reply),
            _ => None,
        })
        .collect();
    assert_eq!(replies, [&ClientReply::Indeterminate { acks: 0, needed: 2 }], "{effects:?}");
    assert!(!effects.iter().any(|e| matches!(e, Effect::Send { .. })), "{effects:?}");
    assert_eq!(node.stats().store_errors, 1);
    // And it did happen here: the failed write was applied.
    let held = node.store().load(&key()).expect("load");
    assert_eq!(held.values().collect::<Vec<_>>(), [b"v".as_slice()]);
}

/// A client's timeout shorter than the coordinator's own first deadline (`sloppy_retry_ms`) is
/// answered at that timeout, but the targets still silent then are judged only once they had
/// `sloppy_retry_ms`: one that answers meanwhile is not suspected, one that never answers is
/// (so a node that is down is suspected whatever timeouts clients choose). With the default
/// timeout, silent targets are suspected at the first deadline as before. Found by review.
#[test]
fn a_short_client_timeout_is_answered_in_time_and_suspects_only_the_silent() {
    use dynamo_model::config::{Config, ConfigParams};
    use dynamo_model::ids::{ActorId, OpId, RequestId};
    use dynamo_model::msg::Msg;
    use dynamo_model::node::{Effect, Input, Node, Timer};
    use dynamo_model::ring::Ring;
    use dynamo_model::store::MemStore;
    use std::sync::Arc;

    let replies = |effects: &[Effect]| -> Vec<ClientReply> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Reply { reply, .. } => Some(reply.clone()),
                _ => None,
            })
            .collect()
    };
    let op_timer = |effects: &[Effect]| {
        effects.iter().find_map(|e| match e {
            Effect::SetTimer { timer: t @ Timer::Op(_), after_ms } => Some((*t, *after_ms)),
            _ => None,
        })
    };
    for sloppy in [true, false] {
        let mut params = ConfigParams::for_nodes((1..=3).map(NodeId));
        params.sloppy_quorum = sloppy;
        let patience = params.timeouts.sloppy_retry_ms;
        let config = Arc::new(Config::new(params).expect("ok"));
        let ring = Arc::new(Ring::new(config.partitions(), config.nodes()));
        let node = || {
            let actor = ActorId::new(NodeId(1), 1);
            Node::new(actor, config.clone(), ring.clone(), MemStore::default())
        };
        // A 20 ms timeout: answered at 20 ms, nobody suspected yet.
        let mut n = node();
        let mut op = ClientOp::put(key(), Context::new(), b"v".to_vec());
        op.timeout_ms = Some(20);
        let mut effects = Vec::new();
        n.handle(0, Input::Client { req: RequestId(1), op }, &mut effects);
        let (timer, after) = op_timer(&effects).expect("a deadline");
        assert_eq!(after, 20);
        effects.clear();
        n.handle(20, Input::Timer(timer), &mut effects);
        let answered = replies(&effects);
        assert!(
            matches!(answered[..], [ClientReply::Indeterminate { acks: 1, needed: 2 }]),
            "sloppy {sloppy}: {effects:?}"
        );
        assert!(n.volatile().suspected.is_empty(), "sloppy {sloppy}: suspected at 20 ms");
        let (linger, after) = op_timer(&effects).expect("the operation stays to judge the targets");
        assert_eq!(after, patience - 20);
        // Node 2 answers late; node 3 never does.
        effects.clear();
        let op = OpId { origin: NodeId(1), req: RequestId(1) };
        n.handle(100, Input::Peer { from: NodeId(2), msg: Msg::StoreAck { op } }, &mut effects);
        assert!(replies(&effects).is_empty(), "answered once only: {effects:?}");
        effects.clear();
        n.handle(patience, Input::Timer(linger), &mut effects);
        assert!(replies(&effects).is_empty(), "answered once only: {effects:?}");
        assert_eq!(n.volatile().suspected, BTreeSet::from([NodeId(3)]), "sloppy {sloppy}");
        assert!(n.volatile().ops.is_empty(), "sloppy {sloppy}: the operation is done");
        // The default timeout: both silent targets suspected at the first deadline.
        let mut n = node();
        let mut effects = Vec::new();
        let op = ClientOp::put(key(), Context::new(), b"v".to_vec());
        n.handle(0, Input::Client { req: RequestId(1), op }, &mut effects);
        let (timer, after) = op_timer(&effects).expect("a deadline");
        effects.clear();
        n.handle(after, Input::Timer(timer), &mut effects);
        assert_eq!(n.volatile().suspected, BTreeSet::from([NodeId(2), NodeId(3)]));
    }
}

/// A forwarded request with a client timeout shorter than the node's own first deadline is
/// answered at that timeout, and the coordinator is suspected only if it is still silent once it
/// has had `sloppy_retry_ms`, as a coordinator judges its targets.
#[test]
fn a_short_forwarded_timeout_is_answered_in_time_and_suspects_only_a_silent_coordinator() {
    use dynamo_model::config::{Config, ConfigParams};
    use dynamo_model::ids::{ActorId, RequestId};
    use dynamo_model::msg::Msg;
    use dynamo_model::node::{Effect, Input, Node, Timer};
    use dynamo_model::ring::Ring;
    use dynamo_model::store::MemStore;
    use std::sync::Arc;

    let mut params = ConfigParams::for_nodes((1..=3).map(NodeId));
    params.n = 2;
    params.r = 1;
    params.w = 1;
    let patience = params.timeouts.sloppy_retry_ms;
    let config = Arc::new(Config::new(params).expect("ok"));
    let ring = Arc::new(Ring::new(config.partitions(), config.nodes()));
    // A key node 1 does not hold, so that it forwards.
    let k = (0..1_000)
        .map(|i| Key::from(format!("k{i}").as_str()))
        .find(|k| !ring.preference_list(k, 2).contains(&NodeId(1)))
        .expect("a key elsewhere");
    let node =
        || Node::new(ActorId::new(NodeId(1), 1), config.clone(), ring.clone(), MemStore::default());
    let forwarded = |timeout_ms: Option<u64>| {
        let mut n = node();
        let mut op = ClientOp::put(k.clone(), Context::new(), b"v".to_vec());
        op.timeout_ms = timeout_ms;
        let mut effects = Vec::new();
        n.handle(0, Input::Client { req: RequestId(1), op }, &mut effects);
        let to = effects.iter().find_map(|e| match e {
            Effect::Send { to, msg: Msg::Forward { .. } } => Some(*to),
            _ => None,
        });
        (n, to.expect("forwarded"))
    };
    let replies =
        |effects: &[Effect]| effects.iter().filter(|e| matches!(e, Effect::Reply { .. })).count();
    let rearmed = |effects: &[Effect]| {
        effects.iter().find_map(|e| match e {
            Effect::SetTimer { timer: Timer::Forward(_), after_ms } => Some(*after_ms),
            _ => None,
        })
    };
    let timer = Timer::Forward(RequestId(1));
    for late_answer in [true, false] {
        let (mut n, to) = forwarded(Some(20));
        let mut effects = Vec::new();
        n.handle(20, Input::Timer(timer), &mut effects);
        assert_eq!(replies(&effects), 1, "answered at 20 ms: {effects:?}");
        assert!(n.volatile().suspected.is_empty(), "suspected at 20 ms");
        assert_eq!(rearmed(&effects), Some(patience - 20));
        effects.clear();
        if late_answer {
            let reply = ClientReply::Indeterminate { acks: 0, needed: 1 };
            let msg = Msg::ForwardReply { req: RequestId(1), reply };
            n.handle(100, Input::Peer { from: to, msg }, &mut effects);
            assert_eq!(replies(&effects), 0, "answered once only: {effects:?}");
            assert!(n.volatile().forwards.is_empty(), "done once the coordinator answered");
            n.handle(patience, Input::Timer(timer), &mut effects);
            assert!(n.volatile().suspected.is_empty(), "a coordinator that answered late");
        } else {
            n.handle(patience, Input::Timer(timer), &mut effects);
            assert_eq!(replies(&effects), 0, "answered once only: {effects:?}");
            assert_eq!(n.volatile().suspected, BTreeSet::from([to]), "a silent coordinator");
            assert!(n.volatile().forwards.is_empty());
        }
    }
    // The default timeout: answered and the coordinator suspected at once.
    let (mut n, to) = forwarded(None);
    let mut effects = Vec::new();
    let after = config.timeouts().request_ms;
    n.handle(after, Input::Timer(timer), &mut effects);
    assert_eq!(replies(&effects), 1);
    assert_eq!(n.volatile().suspected, BTreeSet::from([to]));
    assert!(n.volatile().forwards.is_empty() && rearmed(&effects).is_none());
}

/// With truncation on, a context far within the bound is kept whole. A chain of writes through one
/// coordinator that starts above a gap (a client wrote blind after another client's blind write,
/// so its context is a run of dots with no clock entry) supersedes each predecessor on every
/// replica. (Before, truncation dropped every run of an actor without a clock entry, however
/// small the context: the chain's versions had empty pasts, and each predecessor came back from
/// the other replicas as a false sibling.) Found by review.
#[test]
fn truncation_keeps_a_context_within_its_bound_whole() {
    use dynamo_model::{ActorId, Limits, Payload, Writer};
    let writer = Writer { actor: ActorId::new(NodeId(1), 0), issued: 0 };
    let limits = Limits::default();
    let value = |v: &str| Payload::Value(v.as_bytes().to_vec());
    let mut at_n1 = Siblings::new();
    let put = |at: &mut Siblings, context: &Context, v: &str, now: u64| {
        at.apply_put(writer, context, value(v), now, &limits, Some(8)).expect("put")
    };
    put(&mut at_n1, &Context::new(), "x", 1);
    let y1 = put(&mut at_n1, &Context::new(), "y1", 2);
    // Another replica has both blind writes.
    let mut at_n2 = at_n1.clone();
    // The writer of y1 writes y2 on the context its write returned: y1 alone.
    let mut seen = Context::new();
    seen.add_dot(&y1);
    assert!(seen.clock().is_empty(), "a run above a gap: {seen:?}");
    put(&mut at_n1, &seen, "y2", 3);
    at_n2.reconcile(&at_n1);
    for held in [&at_n1, &at_n2] {
        let mut values: Vec<&[u8]> = held.values().collect();
        values.sort();
        assert_eq!(values, [b"x".as_slice(), b"y2"], "y1 was superseded: {held:?}");
    }
}

/// The set one blind write of `v` through `coordinator` makes.
fn one_write(coordinator: NodeId) -> Siblings {
    let mut held = Siblings::new();
    let writer =
        dynamo_model::Writer { actor: dynamo_model::ActorId::new(coordinator, 0), issued: 0 };
    let value = dynamo_model::Payload::Value(b"v".to_vec());
    let limits = dynamo_model::Limits::default();
    held.apply_put(writer, &Context::new(), value, 1, &limits, None).expect("put");
    held
}

/// Hinted handoff shares each batch among the nodes hints are kept for: a node that does not take
/// its hints (down, and not suspected by this node, which has not tried to reach it since it
/// restarted) cannot hold up the others'. (Found by review: the batch was the first
/// `handoff_batch_max` hints in key order, the same ones every tick, so the lowest node's hints
/// could starve every other node's.)
#[test]
fn a_handoff_batch_is_shared_among_the_intended_nodes() {
    use dynamo_model::config::{Config, ConfigParams};
    use dynamo_model::ids::ActorId;
    use dynamo_model::node::{Effect, Input, Node, Timer};
    use dynamo_model::ring::Ring;
    use dynamo_model::store::MemStore;
    use dynamo_model::Msg;
    use std::sync::Arc;

    let mut p = ConfigParams::for_nodes((1..=4).map(NodeId));
    p.limits.handoff_batch_max = 2;
    let config = Arc::new(Config::new(p).expect("valid"));
    let ring = Arc::new(Ring::new(config.partitions(), config.nodes()));
    let mut node = Node::new(ActorId::new(NodeId(4), 0), config, ring, MemStore::default());
    let held = one_write(NodeId(1));
    for (intended, key) in [(1, "a"), (1, "b"), (1, "c"), (2, "d")] {
        node.store_mut().save_hint(NodeId(intended), &Key::from(key), &held).expect("hint");
    }
    let mut effects = Vec::new();
    node.handle(0, Input::Timer(Timer::Tick), &mut effects);
    let handed: Vec<(u16, String)> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { to, msg: Msg::Handoff { key, .. } } => {
                Some((to.0, String::from_utf8_lossy(&key.0).into_owned()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(handed, [(1, "a".to_string()), (2, "d".to_string())]);
}

/// A hint kept for a node that has left the cluster (it stayed down and every node restarted
/// without it) is rehomed: merged into the primary data of this node, now a replica of the key,
/// and kept as a hint for each other replica, then removed; it is not sent to the gone node, tick
/// after tick, for ever. (Found by review: such hints were sent each tick to a node the transport
/// no longer knows, and dropped, and the key kept a replica short.)
#[test]
fn a_hint_for_a_node_no_longer_in_the_cluster_goes_to_the_keys_replicas() {
    use dynamo_model::config::{Config, ConfigParams};
    use dynamo_model::ids::ActorId;
    use dynamo_model::node::{Effect, Input, Node, Timer};
    use dynamo_model::ring::Ring;
    use dynamo_model::store::MemStore;
    use dynamo_model::Msg;
    use std::sync::Arc;

    // Node 4 left; three nodes remain, with N = 3, so every key's list is all of them.
    let config = Arc::new(Config::new(ConfigParams::for_nodes((1..=3).map(NodeId))).expect("ok"));
    let ring = Arc::new(Ring::new(config.partitions(), config.nodes()));
    let mut node = Node::new(ActorId::new(NodeId(1), 0), config, ring, MemStore::default());
    let held = one_write(NodeId(2));
    let (gone, kept) = (NodeId(4), NodeId(3));
    node.store_mut().save_hint(gone, &key(), &held).expect("hint");
    node.store_mut().save_hint(kept, &Key::from("other"), &held).expect("hint");
    let mut effects = Vec::new();
    node.handle(0, Input::Timer(Timer::Tick), &mut effects);
    let sent: Vec<NodeId> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { to, msg: Msg::Handoff { .. } } => Some(*to),
            _ => None,
        })
        .collect();
    assert_eq!(sent, [kept], "the member's hint goes out; nothing goes to the gone node");
    let store = node.store();
    assert_eq!(store.load(&key()).expect("load"), held, "merged into this replica's data");
    assert_eq!(store.load_hint(NodeId(2), &key()).expect("hint"), held, "kept for node 2");
    assert_eq!(store.load_hint(kept, &key()).expect("hint"), held, "kept for node 3");
    assert_eq!(store.load_hint(gone, &key()).expect("hint"), Siblings::new(), "removed");
    assert_eq!(store.hint_count().expect("count"), 3);
    assert_eq!(node.stats().hints_rehomed, 1);
    // The next tick hands the rehomed copies to their nodes.
    effects.clear();
    node.handle(1, Input::Timer(Timer::Tick), &mut effects);
    let mut sent: Vec<(NodeId, Key)> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { to, msg: Msg::Handoff { key, .. } } => Some((*to, key.clone())),
            _ => None,
        })
        .collect();
    sent.sort();
    assert_eq!(sent, [(NodeId(2), key()), (kept, key()), (kept, Key::from("other"))]);
}
