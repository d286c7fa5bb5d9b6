//! `checker-bench`: the model checker's benchmark.
//!
//! Runs, each in its own child process so that peak memory (VmHWM) is measured separately:
//! the canonical Dynamo configuration exhaustively under strict and under sloppy quorum, and a
//! register model in the shape of stateright's linearizable-register example (an ABD-style
//! quorum register: 2 servers, 2 clients, each client one put then one get). Prints unique
//! states, states/s, time and peak memory for each.
//!
//! `checker-bench [--timeout-s S] [--crashes K]` (S defaults to 900: canonical sloppy takes about
//! a minute on 2 cores); `checker-bench --child NAME` runs one case.

/// mimalloc: a model check clones and drops millions of small states (sibling sets, clocks,
/// maps), and the system allocator spent about a third of the run's time on it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use dynamo_checker::run::{check, peak_rss_kib, RunOptions, Strategy};
use dynamo_checker::setup::Setup;
use std::process::Command;
use std::time::{Duration, Instant};

mod abd {
    //! A small majority-quorum register (after Attiya, Bar-Noy and Dolev) written for this
    //! benchmark: a write asks a majority for their latest sequence numbers, picks a higher one,
    //! and stores it on a majority; a read asks a majority, then writes back what it returns.
    use stateright::actor::register::{RegisterActor, RegisterMsg};
    use stateright::actor::{majority, model_peers, Actor, ActorModel, Id, Network, Out};
    use stateright::semantics::register::Register;
    use stateright::semantics::LinearizabilityTester;
    use stateright::{Expectation, Model};
    use std::borrow::Cow;

    type Req = u64;
    type Stamp = (u64, Id);

    #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum Peer {
        Ask(Req),
        Tell(Req, Stamp, char),
        Store(Req, Stamp, char),
        Stored(Req),
    }

    #[derive(Clone, Debug, PartialEq, Eq, Hash)]
    pub enum Phase {
        Idle,
        Gather { req: Req, client: Id, write: Option<char>, seen: Vec<(Id, Stamp, char)> },
        Spread { req: Req, client: Id, read: Option<char>, acks: Vec<Id> },
    }

    #[derive(Clone, Debug, PartialEq, Eq, Hash)]
    pub struct Server {
        stamp: Stamp,
        value: char,
        phase: Phase,
    }

    #[derive(Clone)]
    pub struct Replica {
        peers: Vec<Id>,
    }

    impl Replica {
        fn quorum(&self) -> usize {
            majority(self.peers.len() + 1)
        }
    }

    impl Actor for Replica {
        type Msg = RegisterMsg<Req, char, Peer>;
        type State = Server;
        type Timer = ();
        type Random = ();
        type Storage = ();

        fn on_start(&self, id: Id, _: &Option<()>, _: &mut Out<Self>) -> Server {
            Server { stamp: (0, id), value: '?', phase: Phase::Idle }
        }

        fn on_msg(
            &self,
            id: Id,
            state: &mut Cow<Server>,
            src: Id,
            msg: Self::Msg,
            o: &mut Out<Self>,
        ) {
            use RegisterMsg::*;
            match msg {
                Put(req, v) if state.phase == Phase::Idle => {
                    o.broadcast(&self.peers, &Internal(Peer::Ask(req)));
                    let seen = vec![(id, state.stamp, state.value)];
                    state.to_mut().phase = Phase::Gather { req, client: src, write: Some(v), seen };
                }
                Get(req) if state.phase == Phase::Idle => {
                    o.broadcast(&self.peers, &Internal(Peer::Ask(req)));
                    let seen = vec![(id, state.stamp, state.value)];
                    state.to_mut().phase = Phase::Gather { req, client: src, write: None, seen };
                }
                Internal(Peer::Ask(req)) => {
                    o.send(src, Internal(Peer::Tell(req, state.stamp, state.value)));
                }
                Internal(Peer::Tell(r, stamp, v)) => self.on_tell(id, state, src, r, stamp, v, o),
                Internal(Peer::Store(req, stamp, v)) => {
                    o.send(src, Internal(Peer::Stored(req)));
                    if stamp > state.stamp {
                        let s = state.to_mut();
                        s.stamp = stamp;
                        s.value = v;
                    }
                }
                Internal(Peer::Stored(r)) => self.on_stored(state, src, r, o),
                _ => {}
            }
        }
    }

    impl Replica {
        #[allow(clippy::too_many_arguments)]
        fn on_tell(
            &self,
            id: Id,
            state: &mut Cow<Server>,
            src: Id,
            r: Req,
            stamp: Stamp,
            v: char,
            o: &mut Out<Self>,
        ) {
            let Phase::Gather { req, .. } = &state.phase else { return };
            if *req != r {
                return;
            }
            let quorum = self.quorum();
            let s = state.to_mut();
            let Phase::Gather { req, client, write, seen } = &mut s.phase else { return };
            if seen.iter().any(|(p, _, _)| *p == src) {
                return;
            }
            seen.push((src, stamp, v));
            if seen.len() < quorum {
                return;
            }
            let Some(&(_, best, best_v)) = seen.iter().max_by_key(|(_, st, _)| *st) else { return };
            let (stamp, value, read) = match write.take() {
                Some(w) => ((best.0 + 1, id), w, None),
                None => (best, best_v, Some(best_v)),
            };
            let (req, client) = (*req, *client);
            o.broadcast(&self.peers, &RegisterMsg::Internal(Peer::Store(req, stamp, value)));
            if stamp > s.stamp {
                s.stamp = stamp;
                s.value = value;
            }
            s.phase = Phase::Spread { req, client, read, acks: vec![id] };
        }

        fn on_stored(&self, state: &mut Cow<Server>, src: Id, r: Req, o: &mut Out<Self>) {
            let Phase::Spread { req, acks, .. } = &state.phase else { return };
            if *req != r || acks.contains(&src) {
                return;
            }
            let quorum = self.quorum();
            let s = state.to_mut();
            let Phase::Spread { req, client, read, acks } = &mut s.phase else { return };
            acks.push(src);
            if acks.len() >= quorum {
                let reply = match read {
                    Some(v) => RegisterMsg::GetOk(*req, *v),
                    None => RegisterMsg::PutOk(*req),
                };
                o.send(*client, reply);
                s.phase = Phase::Idle;
            }
        }
    }

    pub type Abd =
        ActorModel<RegisterActor<Replica>, (), LinearizabilityTester<Id, Register<char>>>;

    /// 2 servers, 2 clients (one put and one get each), unordered non-duplicating network.
    pub fn model() -> Abd {
        let servers = 2;
        ActorModel::new((), LinearizabilityTester::new(Register('?')))
            .actors(
                (0..servers)
                    .map(|i| RegisterActor::Server(Replica { peers: model_peers(i, servers) })),
            )
            .actors((0..2).map(|_| RegisterActor::Client { put_count: 1, server_count: servers }))
            .init_network(Network::new_unordered_nonduplicating([]))
            .property(Expectation::Always, "linearizable", |_, s| {
                s.history.serialized_history().is_some()
            })
            .record_msg_in(RegisterMsg::record_returns)
            .record_msg_out(RegisterMsg::record_invocations)
    }

    /// Checks the model exhaustively; returns (states, unique states, linearizable).
    pub fn run() -> (usize, usize, bool) {
        use stateright::Checker;
        let c = model().checker().threads(2).spawn_bfs().join();
        (c.state_count(), c.unique_state_count(), c.discovery("linearizable").is_none())
    }
}

fn child(name: &str, timeout: Duration, crashes: Option<usize>) -> i32 {
    let start = Instant::now();
    let (states, unique, verdict) = match name {
        "abd-register" => {
            let (s, u, ok) = abd::run();
            (s, u, if ok { "linearizable".to_string() } else { "NOT linearizable".into() })
        }
        _ => {
            let Some(mut setup) = Setup::named("canonical") else { return 2 };
            setup.sloppy = name == "canonical-sloppy";
            if let Some(c) = crashes {
                setup.crashes = c;
            }
            let opts = RunOptions {
                strategy: Strategy::Dfs,
                threads: 2,
                timeout: Some(timeout),
                ..RunOptions::default()
            };
            match check(&setup, &opts) {
                Ok(r) => {
                    let v = match r.exit_code() {
                        0 => "complete, all expectations met",
                        1 => "complete, EXPECTATION FAILED",
                        _ => "INCOMPLETE (timeout)",
                    };
                    (r.states, r.unique_states, v.to_string())
                }
                Err(e) => {
                    eprintln!("{e}");
                    return 2;
                }
            }
        }
    };
    let secs = start.elapsed().as_secs_f64();
    let mib = peak_rss_kib().map(|k| k as f64 / 1024.0).unwrap_or(f64::NAN);
    println!(
        "{name:<18} {unique:>11} {states:>12} {:>11.0} {secs:>9.2} {mib:>10.1}  {verdict}",
        states as f64 / secs.max(1e-9)
    );
    0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag =
        |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let timeout =
        Duration::from_secs(flag("--timeout-s").and_then(|s| s.parse().ok()).unwrap_or(900));
    let crashes = flag("--crashes").and_then(|s| s.parse().ok());
    if let Some(name) = flag("--child") {
        std::process::exit(child(&name, timeout, crashes));
    }
    println!(
        "{:<18} {:>11} {:>12} {:>11} {:>9} {:>10}  verdict",
        "case", "unique", "states", "states/s", "time s", "peak MiB"
    );
    let Ok(me) = std::env::current_exe() else { std::process::exit(2) };
    for case in ["canonical-strict", "canonical-sloppy", "abd-register"] {
        let mut cmd = Command::new(&me);
        cmd.args(["--child", case, "--timeout-s", &timeout.as_secs().to_string()]);
        if let Some(c) = crashes {
            cmd.args(["--crashes", &c.to_string()]);
        }
        if let Err(e) = cmd.status() {
            eprintln!("{case}: {e}");
        }
    }
}
