//! Exploratory: a depth-first walk of a configuration that counts how its reachable states spread
//! over their parts (suspicions, ping traffic, handoff traffic, dead replies), to see where a state
//! space comes from before reducing it. Not part of CI.
//!
//! `cargo run --release --example state_stats -- CONFIG sloppy|strict CRASHES IN_FLIGHT [LIMIT]
//! [probes]` (ping messages unless `probes` is given).
use dynamo_checker::actors::{RoleState, Wire};
use dynamo_checker::setup::{DynamoState, Setup};
use dynamo_model::Msg;
use stateright::actor::Network;
use stateright::Model;
use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasher, Hash, Hasher};

fn kind(w: &Wire) -> &'static str {
    match w {
        Wire::Peer(Msg::Forward { .. }) => "forward",
        Wire::Peer(Msg::ForwardReply { .. }) => "forward-reply",
        Wire::Peer(Msg::Store { op: Some(_), .. }) => "store",
        Wire::Peer(Msg::Store { op: None, .. }) => "repair",
        Wire::Peer(Msg::StoreAck { .. }) => "store-ack",
        Wire::Peer(Msg::Fetch { .. }) => "fetch",
        Wire::Peer(Msg::FetchReply { .. }) => "fetch-reply",
        Wire::Peer(Msg::Handoff { .. }) => "handoff",
        Wire::Peer(Msg::HandoffAck { .. }) => "handoff-ack",
        Wire::Peer(Msg::Ping) => "ping",
        Wire::Peer(Msg::Pong) => "pong",
        Wire::Request { .. } => "request",
        Wire::Reply { .. } => "reply",
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut setup = Setup::named(&args[1]).expect("known configuration");
    setup.sloppy = args[2] == "sloppy";
    setup.crashes = args[3].parse().expect("crash count");
    setup.in_flight_max = args[4].parse().expect("in-flight bound");
    setup.probe_timers = args.get(6).is_some_and(|a| a == "probes");
    let limit: usize = args.get(5).map(|s| s.parse().expect("state limit")).unwrap_or(usize::MAX);
    let model = setup.model().expect("valid setup");
    let rs = std::collections::hash_map::RandomState::new();
    let fp = |s: &DynamoState| rs.hash_one(s);
    let mut seen = HashSet::new();
    let mut queue = Vec::new();
    for s in model.init_states() {
        seen.insert(fp(&s));
        queue.push(s);
    }
    let mut no_susp = HashSet::new();
    let mut no_susp_no_ping = HashSet::new();
    let mut observable = HashSet::new();
    let mut no_bg = HashSet::new();
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    let mut susp_hist: BTreeMap<String, usize> = BTreeMap::new();
    let mut timers_hist: BTreeMap<String, usize> = BTreeMap::new();
    let mut n = 0usize;
    let mut dead_hist: BTreeMap<usize, usize> = BTreeMap::new();
    while let Some(s) = queue.pop() {
        n += 1;
        // projections
        let mut h1 = rs.build_hasher();
        let mut h2 = rs.build_hasher();
        let mut h3 = rs.build_hasher();
        let mut h4 = rs.build_hasher();
        let mut susp = String::new();
        for a in s.actor_states.iter() {
            match &**a {
                RoleState::Node(ns) => {
                    let v = ns.node.volatile();
                    for h in [&mut h1, &mut h2, &mut h4] {
                        ns.node.store().hash(h);
                        v.ops.hash(h);
                        v.forwards.hash(h);
                        v.done.hash(h);
                    }
                    susp.push_str(&format!("{:?}", v.suspected));
                }
                RoleState::Client(c) => {
                    c.hash(&mut h1);
                    c.hash(&mut h2);
                    c.hash(&mut h3);
                    c.hash(&mut h4);
                }
            }
        }
        s.actor_storages.hash(&mut h3);
        s.crashed.hash(&mut h1);
        s.crashed.hash(&mut h2);
        s.crashed.hash(&mut h4);
        s.actor_storages.hash(&mut h4);
        let envs: Vec<_> = match &s.network {
            Network::UnorderedNonDuplicating(m) => m.keys().cloned().collect(),
            _ => vec![],
        };
        let ops_of = |i: usize| match &*s.actor_states[i] {
            RoleState::Node(ns) => Some(ns.node.volatile().ops.clone()),
            _ => None,
        };
        let mut dead = 0;
        for e in &envs {
            let (node, op) = match &e.msg {
                Wire::Peer(Msg::StoreAck { op }) | Wire::Peer(Msg::FetchReply { op, .. }) => {
                    (usize::from(e.dst), *op)
                }
                Wire::Peer(Msg::Fetch { op, .. }) => (usize::from(e.src), *op),
                _ => (usize::MAX, Default::default()),
            };
            if node != usize::MAX
                && !s.crashed[node]
                && !ops_of(node).is_some_and(|ops| ops.contains_key(&op))
            {
                dead += 1;
            }
        }
        *dead_hist.entry(dead).or_default() += 1;
        for e in &envs {
            *kinds.entry(kind(&e.msg)).or_default() += 1;
            e.hash(&mut h1);
            if !matches!(e.msg, Wire::Peer(Msg::Ping) | Wire::Peer(Msg::Pong)) {
                e.hash(&mut h2);
            }
            if !matches!(
                e.msg,
                Wire::Peer(Msg::Ping)
                    | Wire::Peer(Msg::Pong)
                    | Wire::Peer(Msg::Handoff { .. })
                    | Wire::Peer(Msg::HandoffAck { .. })
            ) {
                e.hash(&mut h4);
            }
        }
        s.timers_set.hash(&mut h1);
        s.timers_set.hash(&mut h2);
        let tdesc =
            format!("{:?}", s.timers_set.iter().map(|t| t.iter().count()).collect::<Vec<_>>());
        *timers_hist.entry(tdesc).or_default() += 1;
        *susp_hist.entry(susp).or_default() += 1;
        no_susp.insert(h1.finish());
        no_susp_no_ping.insert(h2.finish());
        observable.insert(h3.finish());
        no_bg.insert(h4.finish());
        if n >= limit {
            break;
        }
        let mut actions = Vec::new();
        model.actions(&s, &mut actions);
        for a in actions {
            if let Some(next) = model.next_state(&s, a) {
                if Model::within_boundary(&model, &next) && seen.insert(fp(&next)) {
                    queue.push(next);
                }
            }
        }
    }
    println!("states {n}");
    println!("without suspicion sets {}", no_susp.len());
    println!("without suspicion, pings, pongs {}", no_susp_no_ping.len());
    println!("clients + durable stores only {}", observable.len());
    println!("no suspicion, ping/pong, handoff traffic, timers {}", no_bg.len());
    println!("states by dead responses in flight {dead_hist:?}");
    println!("message kinds (envelope-states): {kinds:?}");
    let mut sh: Vec<_> = susp_hist.into_iter().collect();
    sh.sort_by_key(|(_, c)| std::cmp::Reverse(*c));
    println!("distinct suspicion vectors {}", sh.len());
    for (k, c) in sh.iter().take(15) {
        println!("  {c:>9} {k}");
    }
    let mut th: Vec<_> = timers_hist.into_iter().collect();
    th.sort_by_key(|(_, c)| std::cmp::Reverse(*c));
    for (k, c) in th.iter().take(10) {
        println!("  timers {c:>9} {k}");
    }
}
