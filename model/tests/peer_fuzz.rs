//! Peer messages as they arrive off the wire, damaged: every kind of message the protocol sends,
//! encoded with postcard as the node's transport encodes it, then with bytes changed, cut off or
//! appended. Whatever still decodes is handed to a node that has operations in progress, data and
//! a hint. The node must not panic, its state must keep its invariants
//! ([`dynamo_model::invariants::check_node`]), and it must never address a node outside its ring
//! or itself, then or when its timers fire afterwards. Contexts that clients send back get the
//! same treatment: a damaged context that still decodes is put on.
//!
//! A failing case is printed by quickcheck as the damage that caused it (shrunk), and replays
//! from that alone: the node and the messages it starts from are built the same way every time.

use dynamo_model::clock::Context;
use dynamo_model::config::{Config, ConfigParams};
use dynamo_model::ids::{ActorId, Key, NodeId, OpId, RequestId};
use dynamo_model::invariants::check_node;
use dynamo_model::msg::{ClientOp, ClientReply, Msg};
use dynamo_model::node::{Effect, Input, Node, Timer};
use dynamo_model::ring::Ring;
use dynamo_model::store::MemStore;
use quickcheck::{Arbitrary, Gen, QuickCheck};
use std::sync::{Arc, OnceLock};

const CASES: u64 = 20_000;
const CONTEXT_ENTRIES_MAX: usize = 64;
const PEERS: [NodeId; 3] = [NodeId(2), NodeId(3), NodeId(4)];

/// Node 1 of four (N = 3), the operations it has in progress (a put and a get it coordinates, a
/// get it forwarded), and one valid message of every kind, built from what that node and its
/// peers really send.
struct Primed {
    node: Node<MemStore>,
    ops: Vec<OpId>,
    messages: Vec<Msg>,
    /// Contexts clients got back, and a key node 1 coordinates.
    contexts: Vec<Context>,
    key: Key,
}

fn handle(node: &mut Node<MemStore>, input: Input) -> Vec<Effect> {
    let mut effects = Vec::new();
    node.handle(10, input, &mut effects);
    effects
}

fn sent(effects: &[Effect]) -> impl Iterator<Item = &Msg> {
    effects.iter().filter_map(|e| match e {
        Effect::Send { msg, .. } => Some(msg),
        _ => None,
    })
}

fn primed() -> Primed {
    let config =
        Arc::new(Config::new(ConfigParams::for_nodes((1..=4).map(NodeId))).expect("valid"));
    let ring = Arc::new(Ring::new(config.partitions(), config.nodes()));
    let mut node =
        Node::new(ActorId::new(NodeId(1), 7), config.clone(), ring.clone(), MemStore::default());
    let mut peer =
        Node::new(ActorId::new(NodeId(2), 9), config.clone(), ring.clone(), MemStore::default());
    handle(&mut node, Input::Start);
    let mut messages = Vec::new();
    // Keys node 1 coordinates, and one it must forward.
    let (mine, theirs_key): (Vec<Key>, Vec<Key>) = (0..64)
        .map(|i| Key::from(format!("k{i}").as_str()))
        .partition(|k| ring.preference_list(k, config.n()).contains(&NodeId(1)));
    let (a, f) = (mine[0].clone(), theirs_key[0].clone());
    // A put in progress on node 1 (its Stores went out, no acknowledgement yet).
    let put = ClientOp::put(a.clone(), Context::new(), b"one".to_vec());
    let effects = handle(&mut node, Input::Client { req: RequestId(1), op: put.clone() });
    let store = sent(&effects).find(|m| matches!(m, Msg::Store { .. })).expect("a store").clone();
    let Msg::Store { op: Some(put_op), siblings, .. } = &store else { panic!("{store:?}") };
    let (put_op, written) = (*put_op, siblings.clone());
    // A get in progress on node 1.
    let effects =
        handle(&mut node, Input::Client { req: RequestId(2), op: ClientOp::get(a.clone()) });
    let fetch = sent(&effects).find(|m| matches!(m, Msg::Fetch { .. })).expect("a fetch").clone();
    let Msg::Fetch { op: get_op, .. } = fetch else { panic!("{fetch:?}") };
    // A hint node 1 keeps for node 3, and a write of node 2's own, concurrent with node 1's.
    let hinted = Msg::Store {
        op: None,
        key: mine[1].clone(),
        siblings: written.clone(),
        intended: Some(NodeId(3)),
    };
    handle(&mut node, Input::Peer { from: NodeId(2), msg: hinted.clone() });
    let effects = handle(&mut peer, Input::Client { req: RequestId(1), op: put });
    let theirs = sent(&effects).find(|m| matches!(m, Msg::Store { .. })).expect("a store").clone();
    let Msg::Store { siblings: concurrent, .. } = &theirs else { panic!("{theirs:?}") };
    // A get node 1 forwarded, and a tombstone from node 2.
    let effects = handle(&mut node, Input::Client { req: RequestId(3), op: ClientOp::get(f) });
    assert!(sent(&effects).any(|m| matches!(m, Msg::Forward { .. })), "{effects:?}");
    let effects = handle(
        &mut peer,
        Input::Client { req: RequestId(2), op: ClientOp::delete(a.clone(), Context::new()) },
    );
    let deleted = effects
        .iter()
        .find_map(|e| match e {
            Effect::Send { msg: Msg::Store { siblings, .. }, .. } => Some(siblings.clone()),
            _ => None,
        })
        .expect("a store");
    // A context that has seen both writes, as a client's next put would carry.
    let mut both = written.context();
    both.merge(&concurrent.context());
    messages.extend([
        store,
        theirs.clone(),
        hinted,
        Msg::Store { op: None, key: a.clone(), siblings: concurrent.clone(), intended: None },
        Msg::StoreAck { op: put_op },
        Msg::Fetch {
            op: OpId { origin: NodeId(2), req: RequestId(5) },
            key: a.clone(),
            intended: None,
        },
        Msg::Fetch {
            op: OpId { origin: NodeId(2), req: RequestId(6) },
            key: mine[1].clone(),
            intended: Some(NodeId(3)),
        },
        Msg::FetchReply { op: get_op, siblings: concurrent.clone() },
        Msg::Handoff { key: a.clone(), siblings: deleted.clone() },
        Msg::HandoffAck { key: mine[1].clone(), siblings: written.clone() },
        Msg::Forward {
            req: RequestId(8),
            op: ClientOp::put(a.clone(), both.clone(), b"fwd".to_vec()),
        },
        Msg::Forward { req: RequestId(9), op: ClientOp::get(a.clone()) },
        Msg::ForwardReply {
            req: RequestId(3),
            reply: ClientReply::Read { context: both.clone(), values: vec![] },
        },
        Msg::Ping,
        Msg::Pong,
    ]);
    let contexts = vec![written.context(), concurrent.context(), deleted.context(), both];
    Primed { node, ops: vec![put_op, get_op], messages, contexts, key: a }
}

/// How one message is damaged.
#[derive(Clone, Debug)]
struct Damage {
    /// Which of the primed messages.
    which: usize,
    /// Bytes changed: position (modulo the length), and the bits flipped there.
    flipped: Vec<(u16, u8)>,
    /// Keep only this many bytes, if given (modulo the length plus one).
    cut: Option<u16>,
    /// Bytes appended.
    appended: Vec<u8>,
    /// The sender: a peer, or a node outside the ring.
    from: u8,
}

impl Damage {
    /// Draws a damage from `next`, a source of random numbers (quickcheck's, or a seeded one).
    fn draw(next: &mut impl FnMut() -> u64) -> Damage {
        // Bits to flip in a byte: mostly one low bit (a nearby tag, length or count, which often
        // still decodes), sometimes any.
        fn flip(next: &mut dyn FnMut() -> u64) -> u8 {
            match next() % 4 {
                0 => next() as u8 | 1,
                k => 1 << (k - 1),
            }
        }
        let n = next() % 4;
        Damage {
            which: next() as usize,
            flipped: (0..=n).map(|_| (next() as u16, flip(next))).collect(),
            cut: next().is_multiple_of(4).then(|| next() as u16),
            appended: if next().is_multiple_of(4) {
                (0..next() % 64).map(|_| next() as u8).collect()
            } else {
                Vec::new()
            },
            from: next() as u8,
        }
    }
}

impl Arbitrary for Damage {
    fn arbitrary(g: &mut Gen) -> Self {
        Damage::draw(&mut || u64::arbitrary(g))
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        let me = self.clone();
        let fewer = self.flipped.shrink().map(move |flipped| Damage { flipped, ..me.clone() });
        let me = self.clone();
        let no_cut = self.cut.map(|_| Damage { cut: None, ..me });
        let me = self.clone();
        let no_tail = (!self.appended.is_empty()).then(|| Damage { appended: Vec::new(), ..me });
        Box::new(fewer.chain(no_cut).chain(no_tail))
    }
}

fn damaged(messages: &[Msg], d: &Damage) -> Vec<u8> {
    damage(postcard::to_allocvec(&messages[d.which % messages.len()]).expect("encodes"), d)
}

fn damage(mut bytes: Vec<u8>, d: &Damage) -> Vec<u8> {
    for &(at, bits) in &d.flipped {
        let at = usize::from(at) % bytes.len();
        bytes[at] ^= bits;
    }
    if let Some(cut) = d.cut {
        bytes.truncate(usize::from(cut) % (bytes.len() + 1));
    }
    bytes.extend_from_slice(&d.appended);
    bytes
}

fn sender(d: &Damage) -> NodeId {
    match d.from % 5 {
        0 => NodeId(200),
        k => PEERS[usize::from(k) % PEERS.len()],
    }
}

/// Runs `input` and checks the node afterwards.
fn step(node: &mut Node<MemStore>, input: Input) -> Result<(), String> {
    let what = format!("{input:?}");
    for e in handle(node, input) {
        if let Effect::Send { to, msg } = &e {
            if !PEERS.contains(to) {
                return Err(format!("after {what}: sends {msg:?} to {to}, not a peer"));
            }
        }
    }
    check_node(node).map_err(|e| format!("after {what}: {e}"))
}

/// Hands the decoded message to the node, then fires every timer it may have running.
fn survives(primed: &Primed, d: &Damage) -> Result<(), String> {
    let Ok(msg) = postcard::from_bytes::<Msg>(&damaged(&primed.messages, d)) else {
        return Ok(()); // the transport drops a frame that does not decode
    };
    survives_input(primed, Input::Peer { from: sender(d), msg })
}

/// A client's put on a damaged context, as the HTTP API decodes it from its header.
fn survives_context(primed: &Primed, d: &Damage) -> Result<(), String> {
    let bytes = damage(primed.contexts[d.which % primed.contexts.len()].to_bytes(), d);
    let Ok(context) = Context::from_bytes(&bytes, CONTEXT_ENTRIES_MAX) else {
        return Ok(()); // the API answers 400 and the node never sees it
    };
    let op = ClientOp::put(primed.key.clone(), context, b"new".to_vec());
    survives_input(primed, Input::Client { req: RequestId(100), op })
}

fn survives_input(primed: &Primed, input: Input) -> Result<(), String> {
    let mut node = primed.node.clone();
    step(&mut node, input)?;
    for op in &primed.ops {
        step(&mut node, Input::Timer(Timer::Op(*op)))?;
    }
    for req in [RequestId(3), RequestId(8), RequestId(9)] {
        step(&mut node, Input::Timer(Timer::Forward(req)))?;
    }
    step(&mut node, Input::Timer(Timer::Tick))
}

static PRIMED: OnceLock<Primed> = OnceLock::new();

fn prop(d: Damage) -> bool {
    judge(&d, survives(PRIMED.get_or_init(primed), &d))
}

fn prop_context(d: Damage) -> bool {
    judge(&d, survives_context(PRIMED.get_or_init(primed), &d))
}

fn judge(d: &Damage, outcome: Result<(), String>) -> bool {
    match outcome {
        Ok(()) => true,
        Err(e) => {
            eprintln!("{d:?}: {e}");
            false
        }
    }
}

#[test]
fn damaged_peer_messages_never_break_a_node() {
    check_node(&primed().node).expect("the primed node is sound");
    QuickCheck::new()
        .tests(CASES)
        .max_tests(CASES)
        .min_tests_passed(CASES)
        .quickcheck(prop as fn(Damage) -> bool);
}

#[test]
fn puts_on_damaged_contexts_never_break_a_node() {
    QuickCheck::new()
        .tests(CASES)
        .max_tests(CASES)
        .min_tests_passed(CASES)
        .quickcheck(prop_context as fn(Damage) -> bool);
}

/// The damage above must reach the node: enough of it still decodes (about a fifth of it), and
/// as every kind of message, or the property would pass by never calling `handle`. Drawn from a
/// fixed seed, so the counts are the same on every run.
#[test]
fn damaged_messages_still_decode_often_and_as_every_kind() {
    use rand::{RngCore, SeedableRng};
    let primed = primed();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(25);
    let mut next = || rng.next_u64();
    let mut decoded = 0;
    let mut kinds = std::collections::HashSet::new();
    for _ in 0..CASES {
        let d = Damage::draw(&mut next);
        if let Ok(msg) = postcard::from_bytes::<Msg>(&damaged(&primed.messages, &d)) {
            decoded += 1;
            kinds.insert(std::mem::discriminant(&msg));
        }
    }
    assert!(decoded * 10 >= CASES, "only {decoded} of {CASES} damaged messages decoded");
    let contexts = (0..CASES)
        .map(|_| Damage::draw(&mut next))
        .filter(|d| {
            let bytes = damage(primed.contexts[d.which % primed.contexts.len()].to_bytes(), d);
            Context::from_bytes(&bytes, CONTEXT_ENTRIES_MAX).is_ok()
        })
        .count() as u64;
    assert!(contexts * 10 >= CASES, "only {contexts} of {CASES} damaged contexts decoded");
    let all: std::collections::HashSet<_> =
        primed.messages.iter().map(std::mem::discriminant).collect();
    assert_eq!(kinds, all, "some kinds never decoded");
}
