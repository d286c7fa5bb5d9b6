//! The send buffer of one peer link: the part of the transport that two threads share.
//!
//! The driver encodes its messages for a peer into the link's [`Outbox`] and writes them to the
//! socket itself with one non-blocking call ([`Outbox::flush`]); the link's connection task
//! attaches each new connection ([`Outbox::attach`]), writes what the socket would not take at
//! once ([`Outbox::serve`]) and detaches a connection that broke ([`Outbox::detach`]). On a
//! multi-threaded runtime the two run at the same time, so everything here happens under one
//! lock, which is what keeps frames whole and in order on the wire; the waking (a tokio `Notify`)
//! and the waiting for the socket stay with the caller, [`crate::connection::PeerLink`].
//!
//! What the lock protects, and what the loom tests (`tests/loom_outbox.rs`, run with
//! `--cfg dynamo_loom`) check over every interleaving of the two sides:
//!
//! - each connection receives whole frames, in the order they were pushed, and only a
//!   connection that then breaks may end with part of one;
//! - no message is written twice, or on two connections;
//! - every pushed message ends counted once: sent (written whole), dropped (over a bound, or
//!   unwritten when its connection broke), or still queued;
//! - whenever the driver leaves bytes behind on a connection (the socket was full, or it broke),
//!   it asks for the connection task to be woken, so nothing is left waiting for nobody.
//!
//! The loom tests also run each seeded fault of [`Mutant`] (which only a `--cfg dynamo_loom` build
//! can turn on) and require every one to be caught.
//!
//! The buffer is bounded in frames and in bytes; past either bound a push drops and counts the
//! message (one frame, however large, is always taken into an empty buffer).

use crate::metrics::NetStats;
use dynamo_model::{Key, Msg};
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

#[cfg(dynamo_loom)]
use loom::sync::{Mutex, MutexGuard};
#[cfg(not(dynamo_loom))]
use std::sync::{Mutex, MutexGuard};

/// A message dropped for being larger than a peer takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Oversized {
    /// The message's kind (`Msg::kind`).
    pub kind: &'static str,
    /// The key it was about, if any.
    pub key: Option<Key>,
    /// Which bound it is over.
    pub over: Over,
}

/// The bound a dropped message is over, and its size by that measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Over {
    /// The frame bound: what it encoded to, in bytes.
    Bytes(usize),
    /// The sequence bound (`Limits::peer_sequence_max`): its longest sequence's items.
    Items(usize),
}

/// Frames buffered per peer (unwritten) before the driver starts dropping.
pub const OUTBOUND_QUEUE_MAX: usize = 8 * 1024;
/// Bytes buffered per peer before the driver starts dropping.
pub const OUTBOUND_BYTES_MAX: usize = 64 << 20;
/// Bytes of a frame's length prefix.
pub const FRAME_HEADER_BYTES: usize = 4;
/// A write buffer grown past this by a burst of large messages is released once empty.
const WRITE_BUFFER_KEEP_BYTES: usize = 4 << 20;
/// Written bytes a buffer that has not emptied keeps before they are cut off its front, once
/// they are at least half of it (a link whose peer reads about as fast as frames come may never
/// empty it).
const WRITTEN_BYTES_KEPT_MAX: usize = 1 << 20;

/// A socket that can be written without blocking.
pub trait TryWrite {
    /// Writes some of `buf`, or fails with `WouldBlock` when the socket has no room now.
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
}

impl TryWrite for tokio::net::TcpStream {
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        tokio::net::TcpStream::try_write(self, buf)
    }
}

/// How far writing the buffer got.
#[derive(Debug, PartialEq, Eq)]
pub enum Flushed {
    /// Nothing is left (or there is no connection to write to).
    Done,
    /// The socket would take no more for now.
    Blocked,
    /// The connection is broken.
    Failed(String),
}

/// Seeded faults, each of which the loom tests must catch. Only a `--cfg dynamo_loom` build can
/// turn one on (`Outbox::with_mutant`, which exists only in that build); elsewhere none is ever
/// active.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutant {
    /// The driver leaves bytes on a full socket without waking the connection task.
    NoWakeWhenFull,
    /// A broken connection's partly written buffer is kept for the next connection.
    DetachKeepsOffset,
    /// The driver copies what is queued and writes it after letting the lock go.
    WriteOutsideLock,
    /// A new connection inherits the broken mark of the one before (neither detaching nor
    /// attaching clears it).
    AttachKeepsBroken,
}

impl Mutant {
    /// Every seeded fault.
    pub const ALL: [Mutant; 4] = [
        Mutant::NoWakeWhenFull,
        Mutant::DetachKeepsOffset,
        Mutant::WriteOutsideLock,
        Mutant::AttachKeepsBroken,
    ];
}

/// Bounds of one outbox.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Largest frame sent; a larger message is dropped.
    pub frame_bytes_max: usize,
    /// Most items of a message's longest sequence (`Msg::longest_sequence`); a message with a
    /// longer one is dropped.
    pub sequence_max: usize,
    /// Unwritten frames held at most.
    pub queue_max: usize,
    /// Unwritten bytes held at most (checked before each push).
    pub bytes_max: usize,
}

impl Bounds {
    /// The production bounds for frames of at most `frame_bytes_max` bytes and sequences of at
    /// most `sequence_max` items.
    pub fn new(frame_bytes_max: usize, sequence_max: usize) -> Bounds {
        Bounds {
            frame_bytes_max,
            sequence_max,
            queue_max: OUTBOUND_QUEUE_MAX,
            bytes_max: OUTBOUND_BYTES_MAX,
        }
    }
}

/// The encoded, unwritten frames for one peer and the connection they go out on.
#[derive(Debug)]
pub struct Outbox<S> {
    bounds: Bounds,
    net: Arc<NetStats>,
    state: Mutex<State<S>>,
    #[cfg(dynamo_loom)]
    mutant: Option<Mutant>,
}

#[derive(Debug)]
struct State<S> {
    /// The connection, while one is up and past its handshake.
    stream: Option<Arc<S>>,
    /// Encoded frames; `buf[written..]` is still to be written.
    buf: Vec<u8>,
    written: usize,
    /// Where each unwritten (or partly written) frame ends in `buf`.
    ends: VecDeque<usize>,
    /// Why the driver's last write failed, for the connection task to give the connection up.
    broken: Option<String>,
}

impl<S: TryWrite> State<S> {
    /// Writes as much of the buffer as the socket takes without blocking.
    fn flush(&mut self, net: &NetStats) -> Flushed {
        let Some(stream) = self.stream.clone() else { return Flushed::Done };
        while self.written < self.buf.len() {
            match stream.try_write(&self.buf[self.written..]) {
                Ok(0) => return Flushed::Failed("the connection wrote nothing".into()),
                Ok(n) => self.advance(n, net),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Flushed::Blocked,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Flushed::Failed(e.to_string()),
            }
        }
        Flushed::Done
    }

    /// Counts the frames `n` more written bytes complete, and empties the buffer once all is out.
    fn advance(&mut self, n: usize, net: &NetStats) {
        // A socket never reports more than it was given; if one did, what it claims beyond the
        // buffer is not counted as sent.
        debug_assert!(self.written + n <= self.buf.len(), "wrote more than was given");
        self.written = (self.written + n).min(self.buf.len());
        let mut done = 0u64;
        while self.ends.front().is_some_and(|&end| end <= self.written) {
            self.ends.pop_front();
            done += 1;
        }
        net.frames_sent.fetch_add(done, Ordering::Relaxed);
        if self.written == self.buf.len() {
            self.written = 0;
            self.buf.clear();
            if self.buf.capacity() > WRITE_BUFFER_KEEP_BYTES {
                self.buf = Vec::new();
            }
        } else if self.written > WRITTEN_BYTES_KEPT_MAX && self.written >= self.buf.len() / 2 {
            // At least as many written bytes as unwritten ones are dropped each time, so the
            // copying costs at most one move per byte written. Every frame end left lies past
            // the written bytes (the written ones were popped).
            let written = self.written;
            self.buf.drain(..written);
            self.ends.iter_mut().for_each(|end| *end -= written);
            self.written = 0;
        }
    }

    /// Drops every unwritten frame (the connection they were meant for is gone), counting them.
    fn discard(&mut self, net: &NetStats) {
        net.outbound_dropped.fetch_add(self.ends.len() as u64, Ordering::Relaxed);
        self.ends.clear();
        self.buf.clear();
        self.written = 0;
    }

    /// Appends `msg` as one frame: its 4-byte big-endian length, then its postcard encoding (the
    /// framing the reader's `LengthDelimitedCodec` expects). If it was dropped: the bound it is
    /// over, `None` when it did not encode.
    fn encode(&mut self, msg: &Msg, bounds: &Bounds) -> Result<(), Option<Over>> {
        let items = msg.longest_sequence();
        if items > bounds.sequence_max {
            return Err(Some(Over::Items(items)));
        }
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
        // Encoded in place, so that a failure (never expected: every message type encodes)
        // takes back only this frame's bytes and leaves the frames before it intact.
        let encoded = postcard::to_io(msg, &mut self.buf).is_ok();
        let len = self.buf.len() - start - FRAME_HEADER_BYTES;
        match u32::try_from(len) {
            Ok(l) if encoded && len <= bounds.frame_bytes_max => {
                self.buf[start..start + FRAME_HEADER_BYTES].copy_from_slice(&l.to_be_bytes());
                self.ends.push_back(self.buf.len());
                Ok(())
            }
            _ => {
                self.buf.truncate(start);
                Err((encoded && len > bounds.frame_bytes_max).then_some(Over::Bytes(len)))
            }
        }
    }
}

impl<S: TryWrite> Outbox<S> {
    /// An empty outbox with no connection.
    pub fn new(bounds: Bounds, net: Arc<NetStats>) -> Outbox<S> {
        let state = State {
            stream: None,
            buf: Vec::new(),
            written: 0,
            ends: VecDeque::new(),
            broken: None,
        };
        Outbox {
            bounds,
            net,
            state: Mutex::new(state),
            #[cfg(dynamo_loom)]
            mutant: None,
        }
    }

    /// This outbox with the seeded fault `mutant` (loom tests only).
    #[cfg(dynamo_loom)]
    pub fn with_mutant(mut self, mutant: Option<Mutant>) -> Outbox<S> {
        self.mutant = mutant;
        self
    }

    /// Whether the seeded fault `m` is on: never, outside a loom build.
    fn mutant(&self, m: Mutant) -> bool {
        #[cfg(dynamo_loom)]
        return self.mutant == Some(m);
        #[cfg(not(dynamo_loom))]
        {
            let _ = m;
            false
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<S>> {
        // A panic while holding the lock cannot leave the buffer worse than torn frames, which
        // the next connection never sees (a broken connection's buffer is discarded).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `msgs` in order behind what is buffered, encoded; [`Outbox::flush`] writes them.
    /// Messages over the frame bound, or that find the buffer full, are dropped and counted. The
    /// first message dropped for its size is described in the answer, for the caller to log
    /// (outside the lock).
    pub fn push(&self, msgs: impl IntoIterator<Item = Msg>) -> Option<Oversized> {
        let net = &self.net;
        let mut oversized = None;
        let mut st = self.lock();
        for msg in msgs {
            let full = !st.ends.is_empty()
                && (st.ends.len() >= self.bounds.queue_max
                    || st.buf.len() - st.written >= self.bounds.bytes_max);
            if full {
                net.outbound_dropped.fetch_add(1, Ordering::Relaxed);
            } else if let Err(too_large) = st.encode(&msg, &self.bounds) {
                net.outbound_dropped.fetch_add(1, Ordering::Relaxed);
                if let Some(over) = too_large {
                    net.outbound_oversized.fetch_add(1, Ordering::Relaxed);
                    oversized.get_or_insert_with(|| Oversized {
                        kind: msg.kind(),
                        key: msg.key().cloned(),
                        over,
                    });
                }
            }
        }
        oversized
    }

    /// The driver's write: as much of the queue as the socket takes without blocking. True when
    /// the connection task must be woken, because bytes were left behind on a connection that
    /// is full or broken. Without a connection it writes nothing and asks for nothing: the
    /// connection task writes the queue once it has attached one.
    #[must_use = "the connection task must be woken when this says so"]
    pub fn flush(&self) -> bool {
        let mut st = self.lock();
        if st.stream.is_none() || st.broken.is_some() || st.ends.is_empty() {
            return false;
        }
        if self.mutant(Mutant::WriteOutsideLock) {
            let (stream, pending) = (st.stream.clone(), st.buf[st.written..].to_vec());
            drop(st);
            let n = stream.map_or(0, |s| s.try_write(&pending).unwrap_or(0));
            st = self.lock();
            if n > 0 && st.written + n <= st.buf.len() {
                st.advance(n, &self.net);
            }
        }
        match st.flush(&self.net) {
            Flushed::Done => false,
            Flushed::Blocked => !self.mutant(Mutant::NoWakeWhenFull),
            Flushed::Failed(why) => {
                st.broken = Some(why);
                true
            }
        }
    }

    /// The connection task's write, each time it is woken or the socket has room: `Failed` if
    /// the driver found the connection broken, else as much as the socket takes.
    pub fn serve(&self) -> Flushed {
        let mut st = self.lock();
        match st.broken.take() {
            Some(why) => Flushed::Failed(why),
            None => st.flush(&self.net),
        }
    }

    /// Takes `stream` (connected and past its handshake) as the connection to write to. What is
    /// queued goes on it from the start of a frame.
    pub fn attach(&self, stream: Arc<S>) {
        let mut st = self.lock();
        // The connection before, if any, was detached, and its partly written frame with it.
        debug_assert_eq!(st.written, 0, "a new connection starts on a frame boundary");
        st.stream = Some(stream);
        if !self.mutant(Mutant::AttachKeepsBroken) {
            st.broken = None;
        }
    }

    /// Forgets the connection and the frames that were meant for it, counting them as dropped.
    pub fn detach(&self) {
        let mut st = self.lock();
        st.stream = None;
        if !self.mutant(Mutant::AttachKeepsBroken) {
            st.broken = None;
        }
        if !self.mutant(Mutant::DetachKeepsOffset) {
            st.discard(&self.net);
        }
    }

    /// Whether a connection is attached.
    pub fn is_attached(&self) -> bool {
        self.lock().stream.is_some()
    }

    /// Messages waiting for the connection.
    pub fn queued(&self) -> usize {
        self.lock().ends.len()
    }
}

#[cfg(all(test, not(dynamo_loom)))]
mod tests {
    use super::*;
    use dynamo_model::{NodeId, OpId, RequestId};

    /// A socket that takes `per_try` bytes at the first try of each flush and then has no room.
    #[derive(Debug, Default)]
    struct Trickle {
        got: Mutex<Vec<u8>>,
        room: std::sync::atomic::AtomicBool,
    }

    const PER_TRY: usize = 300;

    impl TryWrite for Trickle {
        fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
            if !self.room.swap(false, Ordering::SeqCst) {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(PER_TRY);
            self.got.lock().expect("lock").extend_from_slice(&buf[..n]);
            Ok(n)
        }
    }

    /// The byte bound counts the bytes not yet written, and a buffer that never empties keeps
    /// only a bounded prefix of written ones. (Before, it counted every byte since the buffer
    /// last emptied: a link whose socket kept up but never drained it whole dropped frames once
    /// that many had gone out.)
    #[test]
    fn a_link_that_never_drains_whole_drops_nothing_and_keeps_little() {
        let bounds = Bounds {
            frame_bytes_max: 1 << 10,
            sequence_max: 4,
            queue_max: 1 << 20,
            bytes_max: 4 << 10,
        };
        let net = Arc::new(NetStats::default());
        let outbox: Outbox<Trickle> = Outbox::new(bounds, net.clone());
        let socket = Arc::new(Trickle::default());
        outbox.attach(socket.clone());
        let ack = |i| Msg::StoreAck { op: OpId { origin: NodeId(1), req: RequestId(i) } };
        let frame_bytes = |i| postcard::to_stdvec(&ack(i)).expect("encodes").len() + 4;
        // Each round tops the unwritten bytes up to half the bound, then the socket takes a
        // little: the buffer never empties, and twice the written bytes it may keep go out.
        let (mut sent, mut pushed) = (0u64, 0usize);
        while socket.got.lock().expect("lock").len() < 2 * WRITTEN_BYTES_KEPT_MAX {
            let written = socket.got.lock().expect("lock").len();
            let mut round = Vec::new();
            while pushed - written < bounds.bytes_max / 2 {
                sent += 1;
                pushed += frame_bytes(sent);
                round.push(ack(sent));
            }
            outbox.push(round);
            socket.room.store(true, Ordering::SeqCst);
            let _ = outbox.flush();
            assert!(outbox.lock().buf.len() <= WRITTEN_BYTES_KEPT_MAX + PER_TRY + bounds.bytes_max);
            assert!(outbox.queued() > 0, "the buffer never empties");
        }
        assert_eq!(net.outbound_dropped.load(Ordering::Relaxed), 0);
        // What arrived is the frames, in order.
        while outbox.queued() > 0 {
            socket.room.store(true, Ordering::SeqCst);
            let _ = outbox.flush();
        }
        let got = socket.got.lock().expect("lock").clone();
        let mut rest = &got[..];
        for i in 1..=sent {
            let (len, tail) = rest.split_at(4);
            let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
            let (frame, tail) = tail.split_at(len);
            assert_eq!(postcard::from_bytes::<Msg>(frame).expect("decodes"), ack(i));
            rest = tail;
        }
        assert!(rest.is_empty());
    }
}
