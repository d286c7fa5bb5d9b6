//! Model tests of a peer link's send buffer ([`dynamo_node::outbox`]) under loom: the driver's
//! pushes and writes against the connection task's writes, connection changes and breakages, in
//! every interleaving loom can produce. The sockets are stand-ins whose room and breakage each
//! test sets; the waking between the two sides is one permit, the semantics of the tokio
//! `Notify::notify_one` the node uses (a wake-up given while nobody waits is kept, and two such
//! wake-ups are one). The connection task is modelled by its loop (`Link::task`): the async
//! waiting of `PeerLink::serve` around the same `Outbox` calls is not under loom.
//!
//! Run with `RUSTFLAGS="--cfg dynamo_loom" cargo test -p dynamo-node --release --test
//! loom_outbox` (`scripts/test-all.sh` does, in a target directory of its own).
#![cfg(dynamo_loom)]

use dynamo_model::{Msg, NodeId, OpId, RequestId};
use dynamo_node::metrics::NetStats;
use dynamo_node::outbox::{Bounds, Flushed, Mutant, Outbox, TryWrite, FRAME_HEADER_BYTES};
use std::io;
use std::sync::{Arc, Mutex};

/// Runs the model named `name` (in [`MODELS`]), with the seeded fault `m` if any, under loom
/// over every interleaving, and checks that there was more than one to run (a model that ran
/// once would prove nothing about concurrency).
fn check(name: &str, m: Option<Mutant>) {
    let (_, f) = *MODELS.iter().find(|(n, _)| *n == name).expect("a model of that name");
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = runs.clone();
    loom::model(move || {
        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f(m);
    });
    let runs = runs.load(std::sync::atomic::Ordering::Relaxed);
    println!("{name}: {runs} interleavings");
    assert!(runs > 1, "{name}: loom explored one interleaving only");
}

/// Steps the modelled connection task takes at most before it must have settled.
const TASK_STEPS_MAX: usize = 32;
/// Bytes a full socket takes each time its reader drains it: less than a frame, so that frames
/// straddle drains and a socket can fill up again.
const DRAIN_BYTES: usize = 5;

fn msg(i: u64) -> Msg {
    Msg::StoreAck { op: OpId { origin: NodeId(1), req: RequestId(i) } }
}

fn frame_bytes(i: u64) -> usize {
    FRAME_HEADER_BYTES + postcard::to_stdvec(&msg(i)).expect("encodes").len()
}

/// How a socket's connection ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ends {
    /// It does not: a full socket blocks until its reader drains it.
    Never,
    /// The peer is gone by the time the socket fills: the write that finds it full fails.
    WhenFull,
    /// The peer goes while the task waits for room: the socket blocks, and once "writable" its
    /// writes fail.
    WhileWaiting,
}

/// A socket that takes `room` bytes, then blocks (or fails, as `ends` says).
#[derive(Debug)]
struct Socket {
    // A plain mutex: no loom operation happens while it is held, so it never blocks a loom
    // thread and adds no interleaving loom would need to explore.
    wire: Mutex<Wire>,
}

#[derive(Debug)]
struct Wire {
    bytes: Vec<u8>,
    room: usize,
    ends: Ends,
    broken: bool,
}

impl Socket {
    fn new(room: usize, ends: Ends) -> Arc<Socket> {
        let wire = Wire { bytes: Vec::new(), room, ends, broken: false };
        Arc::new(Socket { wire: Mutex::new(wire) })
    }

    /// What ends the task's wait for room (`writable()`): the reader drained some of the
    /// socket, or the connection broke.
    fn drain(&self) {
        let mut wire = self.wire.lock().expect("wire");
        match wire.ends {
            Ends::WhileWaiting => wire.broken = true,
            _ => wire.room = wire.room.saturating_add(DRAIN_BYTES),
        }
    }

    /// The whole frames received, and whether a part of one follows them.
    fn frames(&self) -> (Vec<Msg>, bool) {
        let wire = self.wire.lock().expect("wire");
        let mut rest = &wire.bytes[..];
        let mut frames = Vec::new();
        while rest.len() >= FRAME_HEADER_BYTES {
            let header = rest[..FRAME_HEADER_BYTES].try_into().expect("a frame header");
            let len = u32::from_be_bytes(header) as usize;
            let Some(body) = rest.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len) else { break };
            frames.push(postcard::from_bytes(body).expect("a whole frame decodes"));
            rest = &rest[FRAME_HEADER_BYTES + len..];
        }
        (frames, !rest.is_empty())
    }
}

impl TryWrite for Socket {
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        let mut wire = self.wire.lock().expect("wire");
        if wire.broken {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        if wire.room == 0 {
            return Err(if wire.ends == Ends::WhenFull {
                io::ErrorKind::BrokenPipe.into()
            } else {
                io::ErrorKind::WouldBlock.into()
            });
        }
        let n = wire.room.min(buf.len());
        wire.bytes.extend_from_slice(&buf[..n]);
        wire.room -= n;
        Ok(n)
    }
}

/// One link: the outbox, the wake-up permit, and the connections its task will attach in turn.
struct Link {
    outbox: Outbox<Socket>,
    net: Arc<NetStats>,
    /// The stored wake-up. A mutex rather than an atomic flag: loom 0.7 can let a plain store
    /// land inside another thread's swap (tokio-rs/loom#254), which loses the wake-up in the
    /// model though no real machine would.
    permit: loom::sync::Mutex<bool>,
    sockets: Vec<Arc<Socket>>,
    /// How many connections the task has attached (only the task's side moves it).
    attached: std::sync::atomic::AtomicUsize,
}

impl Link {
    fn new(bounds: Bounds, sockets: Vec<Arc<Socket>>, m: Option<Mutant>) -> loom::sync::Arc<Link> {
        let net = Arc::new(NetStats::default());
        loom::sync::Arc::new(Link {
            outbox: Outbox::new(bounds, net.clone()).with_mutant(m),
            net,
            permit: loom::sync::Mutex::new(false),
            sockets,
            attached: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// What the driver does with one batch's sends: queue each peer-message group as it comes,
    /// then write once, and wake the task if told to.
    fn send(&self, pushes: Vec<Vec<u64>>) {
        for ids in pushes {
            self.outbox.push(ids.into_iter().map(msg));
        }
        if self.outbox.flush() {
            *self.permit.lock().expect("permit") = true;
        }
    }

    /// Attaches the next connection; false when there are no more.
    fn connect(&self) -> bool {
        let i = self.attached.load(std::sync::atomic::Ordering::Relaxed);
        match self.sockets.get(i) {
            Some(s) => {
                self.attached.store(i + 1, std::sync::atomic::Ordering::Relaxed);
                self.outbox.attach(s.clone());
                true
            }
            None => false,
        }
    }

    /// The connection attached last.
    fn current(&self) -> &Socket {
        let attached = self.attached.load(std::sync::atomic::Ordering::Relaxed);
        &self.sockets[attached.checked_sub(1).expect("a connection was attached")]
    }

    /// The connection task from where it waits for a wake-up (`waiting`) or has just attached a
    /// connection, until it waits with no wake-up given: it writes, waits for room when the
    /// socket is full, and gives a broken connection up for the next one.
    fn task(&self, mut waiting: bool) {
        for _ in 0..TASK_STEPS_MAX {
            if waiting && !std::mem::take(&mut *self.permit.lock().expect("permit")) {
                return;
            }
            match self.outbox.serve() {
                Flushed::Done => waiting = true,
                Flushed::Blocked => {
                    self.current().drain();
                    waiting = false;
                }
                Flushed::Failed(_) => {
                    self.outbox.detach();
                    if !self.connect() {
                        return;
                    }
                    waiting = false;
                }
            }
        }
        panic!("the connection task did not settle in {TASK_STEPS_MAX} steps");
    }

    fn counts(&self) -> (u64, u64) {
        let sent = self.net.frames_sent.load(std::sync::atomic::Ordering::Relaxed);
        let dropped = self.net.outbound_dropped.load(std::sync::atomic::Ordering::Relaxed);
        (sent, dropped)
    }
}

/// Runs the driver's `batches` (each a list of pushes, then one write) against the connection
/// task, lets the task finish what it was woken for, and returns the link to be judged.
fn run(link: loom::sync::Arc<Link>, batches: Vec<Vec<Vec<u64>>>) -> loom::sync::Arc<Link> {
    let driver = {
        let link = link.clone();
        loom::thread::spawn(move || {
            for batch in batches {
                link.send(batch);
            }
        })
    };
    let task = {
        let link = link.clone();
        loom::thread::spawn(move || {
            assert!(link.connect());
            link.task(false);
        })
    };
    driver.join().expect("driver");
    task.join().expect("task");
    // Whatever the driver asked for after the task last looked is still owed to it.
    link.task(true);
    link
}

/// The messages with these request ids, in this order.
fn msgs(ids: &[u64]) -> Vec<Msg> {
    ids.iter().map(|&i| msg(i)).collect()
}

/// With a socket that fills up in the middle of a frame, the driver's and the task's writes
/// still put every frame on the wire whole, once, in order, and all are counted as sent.
fn both_sides_write(m: Option<Mutant>) {
    let room = frame_bytes(0) + frame_bytes(1) / 2;
    let link = Link::new(Bounds::new(1 << 10, 4), vec![Socket::new(room, Ends::Never)], m);
    let link = run(link, vec![vec![vec![0], vec![1]], vec![vec![2]]]);
    let (frames, torn) = link.sockets[0].frames();
    assert_eq!(frames, msgs(&[0, 1, 2]), "every frame arrives, whole and in order");
    assert!(!torn);
    assert_eq!(link.counts(), (3, 0));
    assert_eq!(link.outbox.queued(), 0);
}

/// A connection that breaks in the middle of a frame, as it fills up: what it received is whole
/// frames then at most part of one; the next connection starts at a frame boundary; nothing
/// arrives twice or out of order; every message is counted once, as sent or as dropped.
fn connection_breaks(m: Option<Mutant>) {
    breaks(Ends::WhenFull, m);
}

/// The same, for a connection that breaks while the task waits for it to have room.
fn connection_breaks_while_waiting(m: Option<Mutant>) {
    breaks(Ends::WhileWaiting, m);
}

fn breaks(ends: Ends, m: Option<Mutant>) {
    let room = frame_bytes(0) + frame_bytes(1) / 2;
    let sockets = vec![Socket::new(room, ends), Socket::new(usize::MAX, Ends::Never)];
    let link = Link::new(Bounds::new(1 << 10, 4), sockets, m);
    let link = run(link, vec![vec![vec![0], vec![1]], vec![vec![2]]]);
    let (mut arrived, _) = link.sockets[0].frames();
    let (second, torn) = link.sockets[1].frames();
    assert!(!torn, "the second connection never breaks, so it ends on a frame boundary");
    arrived.extend(second);
    let all = msgs(&[0, 1, 2]);
    let mut rest = all.iter();
    for m in &arrived {
        assert!(rest.any(|x| x == m), "{m:?} arrived twice or out of order: {arrived:?}");
    }
    let (sent, dropped) = link.counts();
    assert_eq!(sent as usize, arrived.len(), "sent counts exactly the whole frames written");
    assert_eq!(sent + dropped, 3, "every message is sent or dropped, once");
    assert_eq!(link.outbox.queued(), 0);
}

/// A queue bounded at two frames, in front of a socket with no room: the push that overflows it
/// drops and counts; what was taken arrives in order once the socket drains.
fn queue_fills(m: Option<Mutant>) {
    let bounds =
        Bounds { frame_bytes_max: 1 << 10, sequence_max: 4, queue_max: 2, bytes_max: 1 << 10 };
    let link = Link::new(bounds, vec![Socket::new(0, Ends::Never)], m);
    let link = run(link, vec![vec![vec![0, 1, 2]], vec![vec![3]]]);
    let (frames, torn) = link.sockets[0].frames();
    assert!(!torn);
    let (sent, dropped) = link.counts();
    // The first push meets an empty socket: the bound alone decides, in every interleaving.
    assert!(dropped >= 1, "three frames into a queue of two, with nothing written yet");
    assert_eq!(sent as usize, frames.len());
    assert_eq!(sent + dropped, 4);
    assert_eq!(&frames[..2], &msgs(&[0, 1])[..], "the first two were taken");
    assert!(frames.len() == 2 || frames[2] == msg(3), "then 3, if it found room");
    assert_eq!(link.outbox.queued(), 0);
}

/// A model: one interleaving's run and checks, with or without a seeded fault.
type Model = fn(Option<Mutant>);

/// Every model, named.
const MODELS: [(&str, Model); 4] = [
    ("both sides write", both_sides_write),
    ("a connection breaks", connection_breaks),
    ("a connection breaks while the task waits", connection_breaks_while_waiting),
    ("the queue fills", queue_fills),
];

#[test]
fn frames_stay_whole_and_in_order_while_both_sides_write() {
    check("both sides write", None);
}

#[test]
fn a_broken_connection_loses_only_what_was_meant_for_it() {
    check("a connection breaks", None);
}

#[test]
fn a_connection_that_breaks_while_the_task_waits_for_room_is_given_up() {
    check("a connection breaks while the task waits", None);
}

#[test]
fn a_full_queue_drops_and_counts_and_the_rest_arrive() {
    check("the queue fills", None);
}

/// Each seeded fault of the outbox fails at least one model: the models have teeth. (Run with
/// one test thread: the failures' panic messages are silenced while this runs.)
#[test]
fn every_seeded_fault_is_caught() {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let caught: Vec<(Mutant, Vec<String>)> = Mutant::ALL
        .iter()
        .map(|&m| {
            let by = MODELS
                .iter()
                .filter_map(|(name, _)| {
                    let failed = std::panic::catch_unwind(|| check(name, Some(m))).err()?;
                    let why = failed
                        .downcast_ref::<String>()
                        .map(String::as_str)
                        .or_else(|| failed.downcast_ref::<&str>().copied())
                        .unwrap_or("(no message)");
                    Some(format!("{name}: {}", why.lines().next().unwrap_or("")))
                })
                .collect();
            (m, by)
        })
        .collect();
    std::panic::set_hook(hook);
    for (m, by) in &caught {
        println!("{m:?} caught by {by:#?}");
    }
    let missed: Vec<_> = caught.iter().filter(|(_, by)| by.is_empty()).map(|(m, _)| m).collect();
    assert!(missed.is_empty(), "seeded faults no model caught: {missed:?}");
}
