//! Durable storage on sled: the only module that names sled.
//!
//! Four trees: `data` (key → postcard-encoded [`Siblings`]), `hints` (intended node id, big
//! endian, then key → siblings kept for that node, paper §4.6), `meta` (the incarnation, and a
//! marker that a run is in progress), and `issued` (key → a counter this node issued for it that
//! the key's versions forgot, a big-endian `u64`, written only when a cut past (a capped
//! context or a truncated clock) makes a merge forget one: see [`Store::issued`]; held in
//! memory too, so a put reads no tree for it). A record is written to `issued` before the merge
//! that needs it is written to `data`; both are in sled's one log, and the node relies on sled
//! recovering a prefix of that log after a crash, so that the merge is never found without its
//! record.
//! A record that fails to decode is reported as [`StoreError::Corrupt`]; nothing here panics on
//! what it reads from disk.
//!
//! Primary data is read through a cache of decoded sibling sets ([`READ_CACHE_BYTES`]), written
//! through on every save: a replica reads a key before each write to merge into it, and decoding
//! a record from sled's pages cost more than the write itself. The cache only ever holds what sled
//! holds (a failed write evicts the key).
//!
//! Writes go to sled's log at once; [`SledStore::sync`] makes them durable (fsync). The driver
//! calls it once per batch under the `always` sync policy, which is the group commit the core's
//! durability rule asks for.

use dynamo_model::store::Hint;
use dynamo_model::{ActorId, Key, NodeId, Siblings, Store, StoreError};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
#[cfg(test)]
use std::sync::atomic::Ordering;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;

/// sled's page cache per node.
pub const CACHE_BYTES: u64 = 64 << 20;
/// Bytes of decoded primary data kept in memory per node, besides sled's page cache.
pub const READ_CACHE_BYTES: u64 = 64 << 20;
/// Expected keys in the read cache (sizes its tables; the byte bound is what limits it).
const READ_CACHE_KEYS: usize = 64 * 1024;
/// Times a locked data directory is retried before opening fails (see [`SledStore::open`]).
const LOCK_RETRIES: u32 = 100;
/// Pause between those retries.
const LOCK_RETRY_MS: u64 = 50;
/// How often sled flushes on its own when the driver does not (the `none` policy).
pub const BACKGROUND_FLUSH_MS: u64 = 500;
const INCARNATION_KEY: &[u8] = b"incarnation";
/// The encoding of what the store holds; a directory written in another one is refused.
const FORMAT_KEY: &[u8] = b"format";
/// This build's store format. 2: contexts hold runs of dots (format 1, single dots, has no
/// record of its own: a directory without one is format 1).
pub const STORE_FORMAT: u32 = 2;
const NODE_ID_KEY: &[u8] = b"node_id";
/// Present while a node runs on the directory; removed by a clean shutdown. A restart that finds
/// it takes a new incarnation (see [`SledStore::open`]).
const RUNNING_KEY: &[u8] = b"running";
/// The running record of a run under `always` by a build that held every message behind the
/// fsync of what it carried (before copies for peers to keep left at once): a crash after such a
/// run lost no counter another node holds, and keeps the incarnation. No build writes it now.
const RUNNING_SENT_DURABLE: u8 = 2;
/// The running record this build writes, under every policy: counters may leave before they are
/// durable. (Builds before the record had values wrote 1, read the same way.)
const RUNNING_SENT_UNSYNCED: u8 = 3;

/// Whether sled failed to open because another handle still holds the directory's lock. sled
/// reports it as an `io::Error` of kind `Other` whose message names the lock (the `WouldBlock`
/// from `flock` survives only in that text), so both forms are recognised.
fn is_lock_contention(e: &sled::Error) -> bool {
    match e {
        sled::Error::Io(io) => {
            io.kind() == std::io::ErrorKind::WouldBlock
                || io.to_string().contains("could not acquire lock")
        }
        _ => false,
    }
}

/// A random incarnation, never 0 and never `previous`.
fn fresh_incarnation(previous: u32) -> u32 {
    loop {
        let inc = rand::random::<u32>();
        if inc != 0 && inc != previous {
            return inc;
        }
    }
}

/// Makes every write made to a [`SledStore`] before the call durable; usable from any thread, so
/// that the driver can keep working while an fsync runs.
#[derive(Clone, Debug)]
pub struct Flusher {
    db: sled::Db,
    /// sled's log file, whose data and size `fdatasync` makes durable.
    log: Arc<std::fs::File>,
    /// Where sled keeps records too large for its log, one file each ("blobs").
    blobs_dir: Arc<Path>,
    /// The blob files made durable so far, with the length each had then.
    blobs_synced: Arc<std::sync::Mutex<std::collections::HashMap<std::ffi::OsString, u64>>>,
    /// The driver's unit tests make every flush fail while this is set.
    #[cfg(test)]
    pub(crate) fault: Arc<AtomicBool>,
    /// The driver's unit tests hold every flush back while this is set (see `stalled`).
    #[cfg(test)]
    pub(crate) stall: Arc<AtomicBool>,
    /// How many flushes began while `stall` was set.
    #[cfg(test)]
    pub(crate) stalled: Arc<std::sync::atomic::AtomicU64>,
}

impl Flusher {
    fn new(db: &sled::Db, dir: &Path) -> std::io::Result<Flusher> {
        Ok(Flusher {
            db: db.clone(),
            log: Arc::new(std::fs::File::open(dir.join("db"))?),
            blobs_dir: dir.join("blobs").into(),
            blobs_synced: Default::default(),
            #[cfg(test)]
            fault: Default::default(),
            #[cfg(test)]
            stall: Default::default(),
            #[cfg(test)]
            stalled: Default::default(),
        })
    }

    /// Makes every write made before the call durable. sled writes its log out and waits for the
    /// device (`sync_file_range`, which on Linux is all its flush does); then every blob file
    /// that is new or has grown since it was last made durable is fsynced, with the directory
    /// when one is new (sled writes a blob before the log record that points to it, and never
    /// fsyncs it; blobs come of large values and of large tree nodes alike); last, `fdatasync`
    /// of the log makes the device keep it (its volatile cache flushed) and records its length.
    pub fn flush(&self) -> Result<(), StoreError> {
        #[cfg(test)]
        {
            if self.stall.load(Ordering::SeqCst) {
                self.stalled.fetch_add(1, Ordering::SeqCst);
                while self.stall.load(Ordering::SeqCst) {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
            if self.fault.load(Ordering::SeqCst) {
                return Err(StoreError::Io("injected sync failure".into()));
            }
        }
        self.db.flush().map_err(io)?;
        self.sync_blobs().map_err(|e| StoreError::Io(format!("syncing sled's blobs: {e}")))?;
        self.log.sync_data().map_err(|e| StoreError::Io(format!("fdatasync: {e}")))
    }

    /// Fsyncs the blob files that are new or longer than when they were last fsynced (one may
    /// be half written by a write this flush does not cover: it is fsynced again once it has
    /// grown), then the directory if any was new. Returns how many files it fsynced.
    fn sync_blobs(&self) -> std::io::Result<usize> {
        let entries = match open_retrying(|| std::fs::read_dir(&self.blobs_dir)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut synced = self.blobs_synced.lock().unwrap_or_else(|e| e.into_inner());
        let mut present = std::collections::HashSet::new();
        let (mut files, mut new) = (0, false);
        // sled removes blobs it no longer needs, at any moment: a vanished one is not owed.
        let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let len = match entry.metadata() {
                Ok(m) => m.len(),
                Err(e) if gone(&e) => continue,
                Err(e) => return Err(e),
            };
            present.insert(name.clone());
            let before = synced.get(&name).copied();
            if before != Some(len) {
                // Opened only when owed an fsync: a sync looks at the others' lengths alone.
                let file = match open_retrying(|| std::fs::File::open(entry.path())) {
                    Ok(f) => f,
                    Err(e) if gone(&e) => continue,
                    Err(e) => return Err(e),
                };
                file.sync_data()?;
                new |= before.is_none();
                files += 1;
                synced.insert(name, len);
            }
        }
        synced.retain(|name, _| present.contains(name));
        if new {
            open_retrying(|| std::fs::File::open(&*self.blobs_dir))?.sync_all()?;
        }
        Ok(files)
    }
}

#[cfg(test)]
thread_local! {
    /// Makes the next open on this thread panic inside sled's place (tests of the catch).
    static PANIC_IN_OPEN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Opens sled, turning a panic inside it (sled 0.34 can panic on some damaged files rather than
/// return an error), or in one of its threads meanwhile, into an error that says what panicked.
fn open_catching_panics(config: &sled::Config) -> Result<sled::Result<sled::Db>, String> {
    let _opening = Counted::new(&OPENING);
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        #[cfg(test)]
        if PANIC_IN_OPEN.with(|p| p.replace(false)) {
            panic!("injected panic in open");
        }
        config.open()
    }))
    .map_err(|panic| {
        panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into())
    });
    // Taken whatever the outcome, so that it never outlives this open.
    let panicked = PANICKED_WHILE_OPENING.swap(false, SeqCst);
    let opened = opened?;
    if panicked {
        // Caught by sled itself (a worker it did not wait for, or its flusher): the store would
        // open without that thread's work.
        return Err("one of its threads panicked meanwhile".into());
    }
    Ok(opened)
}

/// One more of what `count` counts while it lives.
struct Counted(&'static AtomicUsize);

impl Counted {
    fn new(count: &'static AtomicUsize) -> Counted {
        count.fetch_add(1, SeqCst);
        Counted(count)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

/// Whether a thread of this name is one of sled's own: its I/O pool (`sled-io-N`) or its
/// periodic flusher.
pub fn is_storage_thread(name: &str) -> bool {
    name.starts_with("sled-io-") || name == "log flusher"
}

/// Stores being opened in this process right now (see [`stop_on_storage_thread_panic`]).
static OPENING: AtomicUsize = AtomicUsize::new(0);
/// Stores open in this process right now.
static OPEN: AtomicUsize = AtomicUsize::new(0);
/// Whether one of sled's threads panicked while a store was being opened and none was open:
/// that open then fails ([`open_catching_panics`]).
static PANICKED_WHILE_OPENING: AtomicBool = AtomicBool::new(false);

/// Makes a panic in one of sled's own threads ([`is_storage_thread`]) stop the process at once
/// (abort), after the usual panic message and an error log; unless a store is being opened and
/// none is open yet, when the panic can only be that open's: the open then fails with advice
/// instead (sled's threads serve every store of the process, so once one is open a panic could
/// be its). sled 0.34 carries on after such a panic without its
/// work: an I/O thread's panic is caught by its pool, and the log write it held never completes,
/// so every later flush waits for it forever (under `always`, every write would hang); a panic
/// of its periodic flusher ends that thread, and closing the store then waits for it forever.
/// Stopped at once instead, the node restarts as after a crash (kill -9), which loses no
/// acknowledged write under `always`. A panic anywhere else is left to the previous hook and the
/// unwinding (a request's task ends; the driver's ends the node). For the binary: call once, at
/// start.
pub fn stop_on_storage_thread_panic() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("");
        if !is_storage_thread(name) {
            return;
        }
        if OPENING.load(SeqCst) > 0 && OPEN.load(SeqCst) == 0 {
            PANICKED_WHILE_OPENING.store(true, SeqCst);
        } else {
            tracing::error!(
                "the storage engine's thread {name:?} panicked; stopping at once: restart the \
                 node, it recovers as after a crash"
            );
            std::process::abort();
        }
    }));
}

/// Attempts of an open that fails for want of file descriptors or kernel memory.
const OPEN_TRIES: u32 = 6;
/// The first pause between them (doubling: 310 ms in all).
const OPEN_RETRY_PAUSE_MS: u64 = 10;

/// Runs `open`, again after a growing pause while it fails for want of file descriptors or
/// kernel memory (`EMFILE`, `ENFILE`, `ENOMEM`), up to [`OPEN_TRIES`] times. A passing shortage
/// says nothing about the data, unlike a failed fsync, so it should not stop a node under
/// `always`; other errors return at once.
fn open_retrying<T>(mut open: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    let mut pause = std::time::Duration::from_millis(OPEN_RETRY_PAUSE_MS);
    for _ in 1..OPEN_TRIES {
        match open() {
            Err(e)
                if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM)) =>
            {
                std::thread::sleep(pause);
                pause *= 2;
            }
            done => return done,
        }
    }
    open()
}

/// Weighs a cached sibling set by the bytes it holds.
#[derive(Clone, Debug)]
struct SiblingsWeight;

impl quick_cache::Weighter<Vec<u8>, Siblings> for SiblingsWeight {
    fn weight(&self, key: &Vec<u8>, s: &Siblings) -> u64 {
        (key.len() + size_estimate(s) + 1) as u64
    }
}

type ReadCache = quick_cache::sync::Cache<Vec<u8>, Siblings, SiblingsWeight>;

/// A [`Store`] on sled.
pub struct SledStore {
    dir: PathBuf,
    /// Makes the store's writes durable (see [`Flusher::flush`]).
    flusher: Flusher,
    data: sled::Tree,
    cache: ReadCache,
    hints: sled::Tree,
    meta: sled::Tree,
    /// Key → the highest counter this node issued for it that its versions forgot, big-endian
    /// (see [`Store::issued`]).
    issued: sled::Tree,
    /// The whole `issued` tree, read at open: every put asks it, and it is almost always empty
    /// (only made-up contexts or truncated clocks cut pasts).
    /// A record that did not decode is kept as `None`.
    issued_mem: std::collections::HashMap<Vec<u8>, Option<u64>>,
    hint_count: usize,
    /// Writes made so far (attempted ones included): the store's write mark.
    written: u64,
    /// The write mark a finished sync is known to cover.
    durable: u64,
    /// With `acks_durable`: the primary keys written above the durable mark, each with the mark
    /// of its last write (see [`SledStore::key_mark`]); pruned as syncs finish.
    unsynced: Option<std::collections::HashMap<Vec<u8>, u64>>,
    /// The mark of the last hint write.
    hints_written: u64,
    /// With `acks_durable`: hints to remove once a sync covers the mark each was first asked at
    /// ([`Store::remove_hint_once_durable`]); done as syncs finish. [`Store::hints`] passes over
    /// them meanwhile, so each is asked once: they are at most the hints kept for nodes no longer
    /// in the cluster.
    removals_owed: BTreeMap<(NodeId, Key), u64>,
    /// Hint records that did not decode, each reported once: [`Store::hints`] walks past them
    /// (and leaves them on disk, for an operator to inspect) so that they cannot stop the handoff
    /// of every other hint.
    corrupt_hints: RefCell<BTreeSet<Vec<u8>>>,
    /// The actor this store's node writes as in this run (its id and incarnation).
    actor: ActorId,
    /// Records found holding damaged versions, each reported once (see
    /// [`SledStore::decode_stored`]).
    damaged_seen: RefCell<BTreeSet<Vec<u8>>>,
    /// Primary records that do not decode, each reported once (see
    /// [`SledStore::decode_stored`]).
    undecodable_seen: RefCell<BTreeSet<Vec<u8>>>,
    /// Key → the highest counter of this node's actor that the damaged versions left out of its
    /// record named (in their dots or pasts) and the rest do not, until the key's next save
    /// writes it to `issued`.
    forgotten: RefCell<std::collections::HashMap<Vec<u8>, u64>>,
    /// Counts this store among those open in the process (see [`stop_on_storage_thread_panic`]).
    _open: Counted,
}

/// Why the data directory could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// sled refused to open or write the directory.
    #[error("cannot open {dir}: {detail}")]
    Io {
        /// The directory.
        dir: String,
        /// What failed.
        detail: String,
    },
    /// The directory belongs to another node, or its metadata is unreadable.
    #[error("{0}")]
    Mismatch(String),
    /// The store holds other record counts than at its last clean shutdown: its files were
    /// damaged since, and sled's recovery kept only what preceded the damage. The node refuses
    /// to serve from it (it would answer "not found" for acknowledged writes, and go on doing so
    /// on every restart); the operator restores the directory or moves it away (the node then
    /// starts empty under a new incarnation, and read repair refills each key as it is read).
    #[error(
        "{dir} is damaged: at its last clean shutdown it held {expected}, now {found} (sled keeps \
         only what precedes damage to its log); refusing to serve from it: restore the directory \
         from a backup, or move it away to start this node empty (read repair refills each key as \
         it is read)"
    )]
    Damaged {
        /// The directory.
        dir: String,
        /// What the clean-shutdown record says.
        expected: String,
        /// What the store holds now.
        found: String,
    },
}

/// The file, beside sled's own, that a clean shutdown leaves with the number of records in the
/// store; the next start compares and removes it. It lives outside sled on purpose: when sled
/// finds a damaged record in its log it keeps what came before and silently drops the rest (it
/// cannot tell damage from a write torn by a crash; it also clears the dropped part of the file
/// as it opens), and a record kept inside sled would be rolled back with the rest. So damage to
/// a cleanly stopped node's files is reported instead of served; after a crash the counts are
/// unknown and sled's recovery is all there is.
pub(crate) const SHUTDOWN_RECORD: &str = "dynamo-clean-shutdown";

/// The record counts a clean shutdown writes into [`SHUTDOWN_RECORD`].
fn shutdown_record(data: usize, hints: usize) -> String {
    format!("data={data} hints={hints}\n")
}

/// Writes `contents` to `path` and makes it and its directory entry durable.
fn write_durably(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    sync_dir(path)
}

/// Makes the directory entries of `path`'s directory durable (a created or removed file).
fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

fn io(e: sled::Error) -> StoreError {
    StoreError::Io(e.to_string())
}

fn decode(what: impl FnOnce() -> String, bytes: &[u8]) -> Result<Siblings, StoreError> {
    postcard::from_bytes(bytes)
        .map_err(|e| StoreError::Corrupt { what: what(), detail: e.to_string() })
}

/// Room per version for its dot and clock, besides the value, when sizing an encoding buffer.
const VERSION_OVERHEAD_BYTES: usize = 64;

/// Room per entry of a version's past (a clock entry or a run of dots) in memory.
const PAST_ENTRY_BYTES: usize = 32;

/// Roughly the bytes `s` takes in memory, and about as many encoded: its values, room for each
/// version's dot, and its past entry by entry (a client's context can give a version hundreds,
/// and the read cache is bounded by this).
fn size_estimate(s: &Siblings) -> usize {
    s.versions()
        .iter()
        .map(|v| {
            v.payload.value().map_or(0, <[u8]>::len)
                + VERSION_OVERHEAD_BYTES
                + PAST_ENTRY_BYTES * v.past.len()
        })
        .sum()
}

fn encode(s: &Siblings) -> Result<Vec<u8>, StoreError> {
    // Sized up front: growing a vector byte string by byte string copies a large value many times.
    postcard::to_extend(s, Vec::with_capacity(size_estimate(s) + 8))
        .map_err(|e| StoreError::Io(format!("encode: {e}")))
}

fn hint_key(intended: NodeId, key: &Key) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + key.0.len());
    k.extend_from_slice(&intended.0.to_be_bytes());
    k.extend_from_slice(&key.0);
    k
}

fn split_hint_key(k: &[u8]) -> Option<(NodeId, Key)> {
    let (id, key) = k.split_at_checked(2)?;
    Some((NodeId(u16::from_be_bytes([id[0], id[1]])), Key(key.to_vec())))
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("cached_keys", &self.cache.len())
            .field("hint_count", &self.hint_count)
            .field("written", &self.written)
            .field("durable", &self.durable)
            .finish_non_exhaustive()
    }
}

impl SledStore {
    /// Opens (or creates) the store of `node` in `dir`. Returns the store and the node's
    /// incarnation. A new directory gets a fresh random incarnation, so a node that lost its disk
    /// never writes clock entries under an actor it used before; a directory created by another
    /// node id is refused. A directory whose lock is still held (sled lets go of it a moment after
    /// a store is dropped) is retried for up to 5 s before opening fails.
    ///
    /// `acks_durable` says whether the sync policy keeps every acknowledgement behind an fsync
    /// (`always`): the store then tracks each key's last write until a sync covers it
    /// ([`SledStore::key_mark`]).
    ///
    /// A run that ended without a clean shutdown may have lost counters locally that other nodes
    /// already hold: under every policy a copy of a new version leaves for its replicas before
    /// the version is durable (see [`crate::driver`]), and under `interval` and `none`
    /// acknowledgements do too. Reissuing such a counter would give two different writes the
    /// same dot, so the next open takes a new incarnation.
    pub fn open(
        dir: &Path,
        node: NodeId,
        background_flush: bool,
        acks_durable: bool,
    ) -> Result<(SledStore, u32), OpenError> {
        let fail = |e: sled::Error| OpenError::Io {
            dir: dir.display().to_string(),
            detail: e.to_string(),
        };
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_BYTES)
            .flush_every_ms(background_flush.then_some(BACKGROUND_FLUSH_MS));
        // sled releases a directory's lock when its last background job lets go of the database,
        // a moment after the store is dropped: a quick reopen (a restart in-process) waits for it.
        let mut attempts = 0;
        let db = loop {
            match open_catching_panics(&config).map_err(|why| OpenError::Io {
                dir: dir.display().to_string(),
                detail: format!(
                    "sled panicked while opening it ({why}): its files are likely damaged; \
                     restore the directory from a backup, or move it away to start this node \
                     empty (read repair refills each key as it is read)"
                ),
            })? {
                Err(e) if is_lock_contention(&e) && attempts < LOCK_RETRIES => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(LOCK_RETRY_MS));
                }
                other => break other.map_err(fail)?,
            }
        };
        let open = Counted::new(&OPEN);
        let flusher = Flusher::new(&db, dir).map_err(|e| OpenError::Io {
            dir: dir.display().to_string(),
            detail: format!("sled's log file: {e}"),
        })?;
        let flush = || {
            flusher.flush().map_err(|e| OpenError::Io {
                dir: dir.display().to_string(),
                detail: e.to_string(),
            })
        };
        let data = db.open_tree("data").map_err(fail)?;
        let hints = db.open_tree("hints").map_err(fail)?;
        let meta = db.open_tree("meta").map_err(fail)?;
        let issued = db.open_tree("issued").map_err(fail)?;
        // A record that does not decode fails the puts of its key (as a corrupt data record
        // fails its reads), not the whole store.
        let mut issued_mem = std::collections::HashMap::new();
        for item in issued.iter() {
            let (k, v) = item.map_err(fail)?;
            let counter = <[u8; 8]>::try_from(v.as_ref()).ok().map(u64::from_be_bytes);
            issued_mem.insert(k.to_vec(), counter);
        }
        let hint_count = hints.len();
        // After a clean shutdown the store must hold exactly what it held then.
        let record = dir.join(SHUTDOWN_RECORD);
        let io_fail = |e: std::io::Error| OpenError::Io {
            dir: dir.display().to_string(),
            detail: format!("{}: {e}", SHUTDOWN_RECORD),
        };
        let recorded = match std::fs::read(&record) {
            Ok(bytes) => {
                let expected = String::from_utf8_lossy(&bytes).trim().to_string();
                let found = shutdown_record(data.len(), hint_count).trim().to_string();
                if expected != found {
                    return Err(OpenError::Damaged {
                        dir: dir.display().to_string(),
                        expected,
                        found,
                    });
                }
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(io_fail(e)),
        };
        let incarnation = match meta.get(INCARNATION_KEY).map_err(fail)? {
            Some(v) => {
                let format = match meta.get(FORMAT_KEY).map_err(fail)? {
                    None => Some(1),
                    Some(f) => <[u8; 4]>::try_from(f.as_ref()).ok().map(u32::from_be_bytes),
                };
                if format != Some(STORE_FORMAT) {
                    let found =
                        format.map_or("an unreadable format".into(), |f| format!("format {f}"));
                    return Err(OpenError::Mismatch(format!(
                        "{} holds store {found}, and this build reads format {STORE_FORMAT} only: \
                         move it away (the node then starts empty under a new incarnation and \
                         read repair restores each key from its peers as it is read)",
                        dir.display()
                    )));
                }
                let bytes: [u8; 4] = v.as_ref().try_into().map_err(|_| {
                    OpenError::Mismatch(format!("{}: incarnation record is corrupt", dir.display()))
                })?;
                let owner = meta.get(NODE_ID_KEY).map_err(fail)?;
                let owner = owner
                    .and_then(|o| <[u8; 2]>::try_from(o.as_ref()).ok())
                    .map(u16::from_be_bytes);
                if owner != Some(node.0) {
                    return Err(OpenError::Mismatch(format!(
                        "{} belongs to node {:?}, not {}",
                        dir.display(),
                        owner,
                        node.0
                    )));
                }
                let previous = u32::from_be_bytes(bytes);
                let crashed = meta.get(RUNNING_KEY).map_err(fail)?;
                if crashed.is_some_and(|run| run.as_ref() != [RUNNING_SENT_DURABLE]) {
                    let fresh = fresh_incarnation(previous);
                    meta.insert(INCARNATION_KEY, &fresh.to_be_bytes()).map_err(fail)?;
                    tracing::warn!(
                        node = %node,
                        previous,
                        fresh,
                        "the last run did not shut down cleanly: writing under a new incarnation, since it may have sent counters it had not made durable (the usual recovery after a crash)"
                    );
                    fresh
                } else {
                    previous
                }
            }
            None => {
                // A new directory: a new incarnation, durable before the node says anything.
                let inc = fresh_incarnation(0);
                meta.insert(NODE_ID_KEY, &node.0.to_be_bytes()).map_err(fail)?;
                meta.insert(FORMAT_KEY, &STORE_FORMAT.to_be_bytes()).map_err(fail)?;
                meta.insert(INCARNATION_KEY, &inc.to_be_bytes()).map_err(fail)?;
                flush()?;
                inc
            }
        };
        meta.insert(RUNNING_KEY, &[RUNNING_SENT_UNSYNCED]).map_err(fail)?;
        flush()?;
        if recorded {
            // The store is about to change; a stale record must not survive a crash. (Until here
            // only metadata changed, which the record does not count, so a refusal above left it
            // in place for the right node.)
            std::fs::remove_file(&record).map_err(io_fail)?;
            sync_dir(&record).map_err(io_fail)?;
        }
        let cache = ReadCache::with_weighter(READ_CACHE_KEYS, READ_CACHE_BYTES, SiblingsWeight);
        let dir = dir.to_path_buf();
        let store = SledStore {
            dir,
            flusher,
            data,
            cache,
            hints,
            meta,
            issued,
            issued_mem,
            hint_count,
            written: 0,
            durable: 0,
            unsynced: acks_durable.then(Default::default),
            hints_written: 0,
            removals_owed: BTreeMap::new(),
            corrupt_hints: RefCell::default(),
            actor: ActorId::new(node, incarnation),
            damaged_seen: RefCell::default(),
            undecodable_seen: RefCell::default(),
            forgotten: RefCell::default(),
            _open: open,
        };
        Ok((store, incarnation))
    }

    /// Records a clean shutdown: every write is durable and the next open may keep the
    /// incarnation; the record counts left beside the store let the next open notice damage
    /// done to its files meanwhile ([`OpenError::Damaged`]). Call it last, after the final sync.
    pub fn mark_clean_shutdown(&mut self) -> Result<(), StoreError> {
        self.meta.remove(RUNNING_KEY).map_err(io)?;
        self.flusher.flush()?;
        let record = shutdown_record(self.data.len(), self.hints.len());
        write_durably(&self.dir.join(SHUTDOWN_RECORD), &record)
            .map_err(|e| StoreError::Io(format!("writing {SHUTDOWN_RECORD}: {e}")))
    }

    /// Whether writes were made that no finished sync is known to cover.
    pub fn is_dirty(&self) -> bool {
        self.written > self.durable
    }

    /// The write mark: how many writes were made (or attempted) so far. A flush started after
    /// reading it covers every write up to it.
    pub fn write_mark(&self) -> u64 {
        self.written
    }

    /// The write mark that finished syncs are known to cover.
    pub fn durable_mark(&self) -> u64 {
        self.durable
    }

    /// Records that a sync covering the writes up to `mark` (a [`SledStore::write_mark`] read
    /// before that sync started) has finished.
    pub fn mark_durable(&mut self, mark: u64) {
        self.durable = self.durable.max(mark.min(self.written));
        let durable = self.durable;
        if let Some(keys) = &mut self.unsynced {
            keys.retain(|_, m| *m > durable);
        }
        let mut due = Vec::new();
        self.removals_owed.retain(|hint, &mut mark| {
            let covered = mark <= durable;
            if covered {
                due.push(hint.clone());
            }
            !covered
        });
        for (intended, key) in due {
            // A removal that fails leaves the hint, which its holder hands on again later.
            if let Err(e) = self.remove_hint(intended, &key) {
                tracing::warn!("removing the hint for {intended} under {key} failed: {e}");
            }
        }
    }

    /// The write mark that must be durable before what this store holds for primary `key` is:
    /// that of the key's last write, or 0 when it is durable already. Tracked only for a store
    /// opened with `acks_durable`; otherwise every write so far.
    pub fn key_mark(&self, key: &Key) -> u64 {
        match &self.unsynced {
            Some(keys) => keys.get(&key.0).copied().unwrap_or(0),
            None => self.written,
        }
    }

    /// The mark of the last hint write: what must be durable before any hint read now is.
    pub fn hints_mark(&self) -> u64 {
        self.hints_written
    }

    /// Makes every write so far durable.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        if self.is_dirty() {
            let mark = self.written;
            self.flusher.flush()?;
            self.mark_durable(mark);
        }
        Ok(())
    }

    /// A handle that flushes this store from another thread.
    pub fn flusher(&self) -> Flusher {
        self.flusher.clone()
    }

    /// Number of primary keys (a scan: for status, not hot paths).
    pub fn key_count(&self) -> usize {
        self.data.len()
    }

    /// Decodes the stored sibling set of record `raw` (of primary `key`, if it is one), leaving
    /// out its damaged versions ([`dynamo_model::Version::is_damaged`]), said once per record:
    /// builds before peers' damaged versions were refused could store one, and every peer
    /// refuses a message that carries one, which would stop the key's replication for good.
    /// The highest counter of this node's actor that they name (in a dot or a past) and the rest
    /// of the set does not is kept as issued for `key` ([`Store::issued`]) until the key's next
    /// save records it: a put's counter is above what the key's versions name, so dropped from
    /// the set it could otherwise be handed out again.
    fn decode_stored(
        &self,
        raw: &[u8],
        key: Option<&Key>,
        what: impl Fn() -> String,
        bytes: &[u8],
    ) -> Result<Siblings, StoreError> {
        let siblings = decode(&what, bytes).inspect_err(|e| {
            // A hint that does not decode is walked past and reported by `skip_corrupt_hint`.
            if key.is_some() && self.undecodable_seen.borrow_mut().insert(raw.to_vec()) {
                tracing::error!(
                    dir = %self.dir.display(),
                    "{e}; it stays on disk, and this node can neither serve the key nor store \
                     copies of it until the record is repaired"
                );
            }
        })?;
        let Some((kept, dropped)) = siblings.without_damaged() else { return Ok(siblings) };
        if self.damaged_seen.borrow_mut().insert(raw.to_vec()) {
            tracing::warn!("{}: left out {dropped} damaged stored versions", what());
        }
        if let (Some(key), Some(counter)) = (key, siblings.forgotten_in(&kept, self.actor)) {
            let mut forgotten = self.forgotten.borrow_mut();
            let held = forgotten.entry(key.0.clone()).or_insert(counter);
            *held = (*held).max(counter);
        }
        Ok(kept)
    }

    /// Notes (once per record) a hint that [`Store::hints`] walks past.
    fn skip_corrupt_hint(&self, raw_key: &[u8], why: &str) {
        if self.corrupt_hints.borrow_mut().insert(raw_key.to_vec()) {
            tracing::warn!(
                dir = %self.dir.display(),
                "skipping a hint record that does not decode ({why}); it stays on disk"
            );
        }
    }
}

impl Store for SledStore {
    fn load(&self, key: &Key) -> Result<Siblings, StoreError> {
        if let Some(s) = self.cache.get(&key.0) {
            return Ok(s);
        }
        let siblings = match self.data.get(&key.0).map_err(io)? {
            Some(v) => self.decode_stored(&key.0, Some(key), || format!("key {key}"), &v)?,
            None => Siblings::new(),
        };
        self.cache.insert(key.0.clone(), siblings.clone());
        Ok(siblings)
    }

    fn save(&mut self, key: &Key, siblings: &Siblings) -> Result<(), StoreError> {
        // A counter of a damaged version left out when read is recorded before the write that
        // drops that version for good.
        let forgotten = self.forgotten.borrow().get(&key.0).copied();
        if let Some(counter) = forgotten {
            self.save_issued(key, counter)?;
            self.forgotten.borrow_mut().remove(&key.0);
        }
        let encoded = encode(siblings)?;
        // Set before the write: a write that fails may still have been applied, and until a
        // sync covers it nothing that could have read it may be let out as settled.
        self.written += 1;
        if let Some(keys) = &mut self.unsynced {
            keys.insert(key.0.clone(), self.written);
        }
        if let Err(e) = self.data.insert(&key.0, encoded) {
            // Whether sled kept the write is unknown: the next load asks sled.
            self.cache.remove(&key.0);
            return Err(io(e));
        }
        self.cache.insert(key.0.clone(), siblings.clone());
        Ok(())
    }

    fn issued(&self, key: &Key) -> Result<u64, StoreError> {
        let forgotten = self.forgotten.borrow().get(&key.0).copied().unwrap_or(0);
        match self.issued_mem.get(&key.0) {
            None => Ok(forgotten),
            Some(Some(counter)) => Ok(forgotten.max(*counter)),
            Some(None) => Err(StoreError::Corrupt {
                what: format!("issued-counter record of key {key}"),
                detail: "not 8 bytes".into(),
            }),
        }
    }

    fn save_issued(&mut self, key: &Key, counter: u64) -> Result<(), StoreError> {
        // Before the write, as in `save`.
        self.written += 1;
        // Kept in memory even if the write fails: a counter believed issued is only skipped. A
        // corrupt record is replaced.
        let held = self.issued_mem.entry(key.0.clone()).or_insert(Some(0));
        let counter = held.map_or(counter, |h| h.max(counter));
        *held = Some(counter);
        self.issued.insert(&key.0, &counter.to_be_bytes()).map_err(io)?;
        Ok(())
    }

    fn load_hint(&self, intended: NodeId, key: &Key) -> Result<Siblings, StoreError> {
        let raw = hint_key(intended, key);
        match self.hints.get(&raw).map_err(io)? {
            Some(v) => {
                self.decode_stored(&raw, None, || format!("hint for {intended} key {key}"), &v)
            }
            None => Ok(Siblings::new()),
        }
    }

    fn save_hint(
        &mut self,
        intended: NodeId,
        key: &Key,
        siblings: &Siblings,
    ) -> Result<(), StoreError> {
        let encoded = encode(siblings)?;
        self.written += 1; // before the write, as in `save`
        self.hints_written = self.written;
        let old = self.hints.insert(hint_key(intended, key), encoded).map_err(io)?;
        if old.is_none() {
            self.hint_count += 1;
        }
        Ok(())
    }

    fn remove_hint(&mut self, intended: NodeId, key: &Key) -> Result<(), StoreError> {
        self.written += 1; // before the write, as in `save`
        self.hints_written = self.written;
        if self.hints.remove(hint_key(intended, key)).map_err(io)?.is_some() {
            self.hint_count = self.hint_count.saturating_sub(1);
        }
        Ok(())
    }

    /// Without `acks_durable` (the `interval` and `none` policies) no sync is awaited, and the
    /// hint goes at once, as every other write is made.
    fn remove_hint_once_durable(&mut self, intended: NodeId, key: &Key) -> Result<(), StoreError> {
        if self.unsynced.is_none() || self.durable >= self.written {
            return self.remove_hint(intended, key);
        }
        self.removals_owed.entry((intended, key.clone())).or_insert(self.written);
        Ok(())
    }

    fn hints(&self, skip: &BTreeSet<NodeId>, limit: usize) -> Result<Vec<Hint>, StoreError> {
        // The nodes that hints are kept for, one range seek each (a skipped node's hints are
        // jumped over whole), then their hints in turns.
        let mut nodes = Vec::new();
        let mut from: Vec<u8> = Vec::new();
        while let Some(item) = self.hints.range(from.clone()..).next() {
            let (k, _) = item.map_err(io)?;
            let Some((node, _)) = split_hint_key(&k) else {
                self.skip_corrupt_hint(&k, "its key is shorter than a node id");
                from = [&k[..], &[0]].concat();
                continue;
            };
            if !skip.contains(&node) {
                nodes.push(node);
            }
            match node.0.checked_add(1) {
                Some(next) => from = next.to_be_bytes().to_vec(),
                None => break,
            }
        }
        let walks = nodes.iter().map(|n| {
            self.hints.scan_prefix(n.0.to_be_bytes()).map(|item| {
                let (k, v) = item.map_err(io)?;
                // The prefix is the node's id: the key splits.
                let Some((node, key)) = split_hint_key(&k) else { return Ok(None) };
                if !self.removals_owed.is_empty()
                    && self.removals_owed.contains_key(&(node, key.clone()))
                {
                    return Ok(None); // handed on already; removed at the next sync
                }
                match self.decode_stored(&k, None, || format!("hint for {node} key {key}"), &v) {
                    Ok(siblings) => Ok(Some((node, key, siblings))),
                    Err(e) => {
                        self.skip_corrupt_hint(&k, &e.to_string());
                        Ok(None)
                    }
                }
            })
        });
        dynamo_model::store::take_in_turns(walks.collect(), limit)
    }

    fn hint_count(&self) -> Result<usize, StoreError> {
        Ok(self.hint_count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynamo_model::{ActorId, Context, Dot, Payload, Version};

    fn sibs(v: &[u8]) -> Siblings {
        let actor = ActorId::new(NodeId(1), 1);
        Siblings::from_versions([Version {
            dot: Dot { actor, counter: 1, ts_ms: 0 },
            past: Context::new(),
            payload: Payload::Value(v.to_vec()),
        }])
    }

    /// The read cache's bound counts a version's past: a context of hundreds of entries (made up
    /// by a client, or many coordinators') is not taken for a few bytes.
    #[test]
    fn a_long_past_weighs_in_the_size_estimate() {
        let mut past = Context::new();
        for i in 1..=256u16 {
            past.add_dot(&Dot { actor: ActorId::new(NodeId(i), 1), counter: 1, ts_ms: 0 });
        }
        let actor = ActorId::new(NodeId(1), 1);
        let long = Siblings::from_versions([Version {
            dot: Dot { actor, counter: 2, ts_ms: 0 },
            past,
            payload: Payload::Value(b"v".to_vec()),
        }]);
        // 256 entries of 24 bytes at least (actor, counter, time) in memory.
        assert!(size_estimate(&long) >= 256 * 24, "{}", size_estimate(&long));
        assert!(size_estimate(&sibs(b"v")) < 256, "a short past stays small");
        // And it is about the encoding's size too (it sizes the encoding's buffer).
        assert!(encode(&long).expect("encodes").len() <= size_estimate(&long) + 8);
    }

    #[test]
    fn each_key_remembers_its_last_write_until_a_sync_covers_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut s, _) = SledStore::open(dir.path(), NodeId(1), false, true).expect("open");
        let (a, b) = (Key(b"a".to_vec()), Key(b"b".to_vec()));
        s.save(&a, &sibs(b"1")).expect("save");
        let covered = s.write_mark();
        s.save(&b, &sibs(b"2")).expect("save");
        s.save(&a, &sibs(b"3")).expect("save");
        assert_eq!((s.key_mark(&a), s.key_mark(&b)), (3, 2));
        assert_eq!(s.key_mark(&Key(b"never".to_vec())), 0, "nothing to wait for");
        s.mark_durable(covered);
        assert_eq!((s.key_mark(&a), s.key_mark(&b)), (3, 2), "a sync up to mark 1 covers neither");
        s.mark_durable(2);
        assert_eq!((s.key_mark(&a), s.key_mark(&b)), (3, 0));
        s.save_hint(NodeId(2), &b, &sibs(b"4")).expect("hint");
        assert_eq!(s.hints_mark(), 4);
        s.sync().expect("sync");
        assert_eq!((s.key_mark(&a), s.durable_mark()), (0, 4));
        // Without durable acknowledgements nothing is tracked: every write counts.
        drop(s);
        let (mut s, _) = SledStore::open(dir.path(), NodeId(1), false, false).expect("reopen");
        s.save(&a, &sibs(b"5")).expect("save");
        assert_eq!(s.key_mark(&b), s.write_mark());
    }

    /// Under `always`, a hint removed once durable stays until a sync covers the writes made
    /// before the removal was asked (the copies it relies on); under the other policies it goes at
    /// once.
    #[test]
    fn a_removal_once_durable_waits_for_the_sync_that_covers_the_writes_before_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (gone, key) = (NodeId(9), Key(b"k".to_vec()));
        let (mut s, _) = SledStore::open(dir.path(), NodeId(1), false, true).expect("open");
        s.save_hint(gone, &key, &sibs(b"1")).expect("hint");
        s.sync().expect("sync");
        s.save_hint(NodeId(2), &key, &sibs(b"1")).expect("the copy");
        let copied = s.write_mark();
        s.remove_hint_once_durable(gone, &key).expect("asked");
        assert_eq!(s.load_hint(gone, &key).expect("load"), sibs(b"1"), "kept until synced");
        let listed = s.hints(&BTreeSet::new(), 10).expect("hints");
        assert_eq!(listed.len(), 1, "a hint owed its removal is passed over: {listed:?}");
        s.remove_hint_once_durable(gone, &key).expect("asked again");
        assert_eq!(s.removals_owed.len(), 1, "and asked once");
        s.mark_durable(copied - 1);
        assert_eq!(s.hint_count().expect("count"), 2, "a sync short of the copy keeps it");
        s.mark_durable(copied);
        assert_eq!(s.load_hint(gone, &key).expect("load"), Siblings::new(), "removed");
        assert_eq!(s.hint_count().expect("count"), 1);
        drop(s);
        let (mut s, _) = SledStore::open(dir.path(), NodeId(1), false, false).expect("reopen");
        s.save_hint(gone, &key, &sibs(b"2")).expect("hint");
        s.remove_hint_once_durable(gone, &key).expect("removed");
        assert_eq!(s.load_hint(gone, &key).expect("load"), Siblings::new(), "at once");
    }

    #[test]
    fn an_unclean_restart_takes_a_new_incarnation_under_every_policy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let open = |durable| SledStore::open(dir.path(), NodeId(1), false, durable);
        let (s, first) = open(false).expect("open");
        drop(s); // no clean shutdown: as after kill -9
        let (mut s, second) = open(false).expect("reopen");
        assert_ne!(first, second, "acks could precede fsync, so counters may have been lost");
        s.mark_clean_shutdown().expect("clean shutdown");
        drop(s);
        let (s, third) = open(false).expect("reopen after a clean shutdown");
        assert_eq!(second, third);
        drop(s);
        let (mut s, fourth) = open(true).expect("reopen under always after a crash under none");
        assert_ne!(third, fourth, "the crashed run's acks could precede fsync");
        s.mark_clean_shutdown().expect("clean shutdown");
        drop(s);
        let (s, fifth) = open(true).expect("reopen under always after a clean shutdown");
        assert_eq!(fourth, fifth);
        // A crash under `always`: copies of new versions left before their fsync, so the actor
        // goes, whatever the policy of the restart.
        drop(s);
        let (s, sixth) = open(false).expect("reopen under none after a crash under always");
        assert_ne!(fifth, sixth, "copies could precede fsync under always too");
        // The record of a build that held every message behind its fsync under `always`: a
        // crash after it lost nothing sent, and keeps the actor.
        s.meta.insert(RUNNING_KEY, &[RUNNING_SENT_DURABLE]).expect("insert");
        s.flusher.flush().expect("flush"); // a raw write: no write mark says the store is dirty
        drop(s);
        let (s, seventh) = open(true).expect("reopen after such a run's crash");
        assert_eq!(sixth, seventh);
        // The record of a build before it had values: read as counters sent before fsync.
        s.meta.insert(RUNNING_KEY, &[1u8]).expect("insert");
        s.flusher.flush().expect("flush");
        drop(s);
        let (_, eighth) = open(true).expect("reopen after an old build's crash");
        assert_ne!(seventh, eighth);
    }

    #[test]
    fn a_store_of_another_format_is_refused_and_left_as_it_is() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut s, _) = SledStore::open(dir.path(), NodeId(1), false, true).expect("open");
        s.save(&Key::from("a"), &sibs(b"x")).expect("save");
        // As a directory written before formats were recorded (format 1) looks.
        s.meta.remove(FORMAT_KEY).expect("remove");
        s.sync().expect("sync");
        drop(s);
        for _ in 0..2 {
            match SledStore::open(dir.path(), NodeId(1), false, true) {
                Err(OpenError::Mismatch(m)) => assert!(m.contains("store format 1"), "{m}"),
                other => panic!("a format 1 store opened: {other:?}"),
            }
        }
        let db = sled::open(dir.path()).expect("sled opens it");
        let data = db.open_tree("data").expect("tree");
        assert!(data.get(b"a").expect("get").is_some(), "the refusal changed nothing");
        assert!(db.open_tree("meta").expect("tree").get(FORMAT_KEY).expect("get").is_none());
    }

    /// A damaged issued-counter record fails the puts of its key (their coordinator cannot know
    /// its floor), not the opening of the store; the next record written for the key replaces it.
    #[test]
    fn a_corrupt_issued_record_fails_its_key_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut s, _) = SledStore::open(dir.path(), NodeId(1), false, true).expect("open");
        s.issued.insert(b"k", &[1u8, 2, 3][..]).expect("insert");
        s.save_issued(&Key::from("other"), 7).expect("issued");
        s.sync().expect("sync");
        drop(s);
        let (mut s, _) = SledStore::open(dir.path(), NodeId(1), false, true).expect("reopens");
        let err = s.issued(&Key::from("k")).expect_err("corrupt");
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert_eq!(s.issued(&Key::from("other")).expect("intact"), 7);
        s.save_issued(&Key::from("k"), 5).expect("replaces it");
        assert_eq!(s.issued(&Key::from("k")).expect("now intact"), 5);
    }

    #[test]
    fn reads_through_the_cache_see_the_latest_save_and_match_sled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut s, _) = SledStore::open(dir.path(), NodeId(1), false, true).expect("open");
        let k = Key::from("k");
        assert!(s.load(&k).expect("load").is_empty(), "absent key (now cached as absent)");
        s.save(&k, &sibs(b"one")).expect("save");
        assert_eq!(s.load(&k).expect("load"), sibs(b"one"));
        s.save(&k, &sibs(b"two")).expect("save");
        assert_eq!(s.load(&k).expect("load"), sibs(b"two"));
        let raw = s.data.get(&k.0).expect("sled get").expect("present");
        assert_eq!(decode(|| "k".into(), &raw).expect("decode"), sibs(b"two"), "sled agrees");
    }

    #[test]
    fn data_hints_issued_counters_and_incarnation_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut s, inc) = SledStore::open(dir.path(), NodeId(1), false, true).expect("open");
        s.save(&Key::from("a"), &sibs(b"x")).expect("save");
        s.save_hint(NodeId(2), &Key::from("b"), &sibs(b"y")).expect("hint");
        s.save_hint(NodeId(3), &Key::from("c"), &sibs(b"z")).expect("hint");
        assert_eq!(s.issued(&Key::from("a")).expect("issued"), 0, "none recorded");
        s.save_issued(&Key::from("a"), 1 << 40).expect("issued");
        s.sync().expect("sync");
        s.mark_clean_shutdown().expect("clean shutdown");
        drop(s);
        let (s, inc2) = SledStore::open(dir.path(), NodeId(1), false, true).expect("reopen");
        assert_eq!(inc, inc2);
        assert_eq!(s.load(&Key::from("a")).expect("load"), sibs(b"x"));
        assert_eq!(s.issued(&Key::from("a")).expect("issued"), 1 << 40);
        assert_eq!(s.hint_count().expect("count"), 2);
        let skip: BTreeSet<_> = [NodeId(2)].into();
        let hs = s.hints(&skip, 10).expect("hints");
        assert_eq!(hs.len(), 1);
        assert_eq!(hs[0].0, NodeId(3));
        assert_eq!(s.hints(&BTreeSet::new(), 1).expect("hints").len(), 1);
        drop(s);
        assert!(
            matches!(
                SledStore::open(dir.path(), NodeId(2), false, true),
                Err(OpenError::Mismatch(_))
            ),
            "another node's dir"
        );
    }

    #[test]
    fn a_held_directory_lock_is_recognised_and_waited_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (s, _) = SledStore::open(dir.path(), NodeId(1), false, true).expect("open");
        // sled's own error for a locked directory must be the one the retry recognises.
        let Err(err) = sled::Config::new().path(dir.path()).open() else {
            panic!("a second handle on a locked directory must be refused");
        };
        assert!(is_lock_contention(&err), "not recognised as lock contention: {err}");
        // A store that lets go while `open` waits is opened, not reported as an error.
        let holder = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            drop(s);
        });
        let reopened = SledStore::open(dir.path(), NodeId(1), false, true);
        holder.join().expect("holder thread");
        assert!(reopened.is_ok(), "{:?}", reopened.err());
    }

    /// Copies sled's directory as it lies (files and one level of subdirectories).
    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("mkdir");
        for entry in std::fs::read_dir(from).expect("read dir") {
            let entry = entry.expect("entry");
            let target = to.join(entry.file_name());
            if entry.file_type().expect("type").is_dir() {
                copy_dir(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).expect("copy");
            }
        }
    }

    #[test]
    fn damage_to_a_cleanly_stopped_store_is_refused_not_served() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut s, _) = SledStore::open(dir.path(), NodeId(1), false, true).expect("open");
        for i in 0..200 {
            s.save(&Key::from(format!("k{i}").as_str()), &sibs(b"some value")).expect("save");
        }
        s.sync().expect("sync");
        s.mark_clean_shutdown().expect("clean shutdown");
        drop(s);
        let damaged = tempfile::tempdir().expect("tempdir");
        copy_dir(dir.path(), damaged.path());
        // Another node's start is refused and leaves the record for the right one.
        assert!(matches!(
            SledStore::open(dir.path(), NodeId(2), false, true),
            Err(OpenError::Mismatch(_))
        ));
        assert!(dir.path().join(SHUTDOWN_RECORD).exists(), "the record stays");
        // The undamaged store reopens after a clean shutdown, and again after the next one.
        let (mut s, _) = SledStore::open(dir.path(), NodeId(1), false, true).expect("reopen");
        assert!(!dir.path().join(SHUTDOWN_RECORD).exists(), "the record is consumed");
        assert_eq!(s.load(&Key::from("k7")).expect("load"), sibs(b"some value"));
        s.mark_clean_shutdown().expect("clean shutdown");
        drop(s);
        assert!(SledStore::open(dir.path(), NodeId(1), false, true).is_ok());
        // The copy, damaged in the middle of sled's log: sled alone opens it with the records
        // after the damage gone; the store says so instead, and keeps saying so.
        let log = damaged.path().join("db");
        let mut bytes = std::fs::read(&log).expect("read log");
        let mid = bytes.len() / 2;
        bytes[mid..mid + 16].fill(0xa5);
        std::fs::write(&log, bytes).expect("damage log");
        for _ in 0..2 {
            match SledStore::open(damaged.path(), NodeId(1), false, true) {
                Err(OpenError::Damaged { expected, found, .. }) => {
                    assert_eq!(expected, "data=200 hints=0");
                    assert_ne!(found, expected);
                }
                other => panic!("damage not reported: {:?}", other.map(|(_, inc)| inc)),
            }
        }
    }

    /// A damaged version stored by an older build (one whose past holds its own dot) is left
    /// out when read, data and hint alike, and the rest of the set is kept. The highest counter
    /// of this node's actor that the dropped versions named, in a dot or a past, stays issued,
    /// so it is never handed out again, and the key's next save makes that durable.
    #[test]
    fn damaged_stored_versions_are_left_out_when_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = Key(b"k".to_vec());
        let (mut s, inc) = SledStore::open(dir.path(), NodeId(1), false, true).expect("open");
        let me = ActorId::new(NodeId(1), inc);
        let other = ActorId::new(NodeId(2), 1);
        let damaged = |actor, counter, also: Option<Dot>| {
            let dot = Dot { actor, counter, ts_ms: 0 };
            let mut past = Context::new();
            past.add_dot(&dot);
            if let Some(d) = also {
                past.add_dot(&d);
            }
            Version { dot, past, payload: Payload::Value(b"bad".to_vec()) }
        };
        // This node's counter 30 is named only in the past of another node's damaged version.
        let mine_30 = Dot { actor: me, counter: 30, ts_ms: 0 };
        let dot = Dot { actor: other, counter: 60, ts_ms: 0 };
        let good = Version { dot, past: Context::new(), payload: Payload::Value(b"ok".to_vec()) };
        let stored = Siblings::from_versions([
            damaged(other, 50, Some(mine_30)),
            damaged(me, 9, None),
            good.clone(),
        ]);
        assert_eq!(stored.len(), 3, "all kept, as an older build would have");
        s.data.insert(&key.0, encode(&stored).expect("encode")).expect("insert");
        let hint = encode(&stored).expect("encode");
        s.hints.insert(hint_key(NodeId(3), &key), hint).expect("insert");
        s.mark_clean_shutdown().expect("clean shutdown");
        drop(s);
        let (mut s, again) = SledStore::open(dir.path(), NodeId(1), false, true).expect("reopen");
        assert_eq!(again, inc, "a clean shutdown keeps the incarnation");
        assert_eq!(s.issued(&key).expect("issued"), 0, "nothing known before the read");
        let only_good = std::slice::from_ref(&good);
        assert_eq!(s.load(&key).expect("load").versions(), only_good);
        assert_eq!(s.issued(&key).expect("issued"), 30, "this node's highest dropped counter");
        assert_eq!(s.load_hint(NodeId(3), &key).expect("load").versions(), only_good);
        let hints = s.hints(&BTreeSet::new(), 10).expect("hints");
        assert_eq!(hints.len(), 1);
        assert_eq!(hints[0].2.versions(), only_good);
        assert_eq!(s.damaged_seen.borrow().len(), 2, "one report per record");
        s.save(&key, &sibs(b"new")).expect("save");
        s.mark_clean_shutdown().expect("clean");
        drop(s);
        let (s, _) = SledStore::open(dir.path(), NodeId(1), false, true).expect("reopen");
        assert_eq!(s.issued(&key).expect("issued"), 30, "recorded by the save");
    }

    #[test]
    fn corrupt_records_are_errors_not_panics() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (s, _) = SledStore::open(dir.path(), NodeId(1), false, true).expect("open");
        s.data.insert(b"k", &[0xff, 0xff, 0xff][..]).expect("raw insert");
        assert!(matches!(s.load(&Key::from("k")), Err(StoreError::Corrupt { .. })));
        assert!(matches!(s.load(&Key::from("k")), Err(StoreError::Corrupt { .. })), "still");
        assert_eq!(s.undecodable_seen.borrow().len(), 1, "recorded as reported");
    }

    /// A flush fsyncs the files sled keeps large records in (it never does): each new or grown
    /// one once, none again while they stay as they are.
    #[test]
    fn a_flush_fsyncs_new_blob_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut s, _) = SledStore::open(dir.path(), NodeId(1), false, true).expect("open");
        let flusher = s.flusher();
        assert_eq!(flusher.sync_blobs().expect("no blobs yet"), 0);
        s.save(&Key::from("small"), &sibs(b"v")).expect("save");
        s.sync().expect("sync");
        assert_eq!(flusher.sync_blobs().expect("sync"), 0, "a small record stays in the log");
        s.save(&Key::from("large"), &sibs(&vec![7; 300 << 10])).expect("save");
        let blobs = std::fs::read_dir(dir.path().join("blobs")).expect("blobs").count();
        assert!(blobs >= 1, "sled kept the 300 KiB record in a file of its own");
        s.sync().expect("sync"); // fsyncs it, through the store's own flusher
        assert_eq!(flusher.sync_blobs().expect("sync"), 0, "already durable");
        s.save(&Key::from("large2"), &sibs(&vec![8; 300 << 10])).expect("save");
        assert!(flusher.sync_blobs().expect("sync") >= 1, "a new one is fsynced");
        assert_eq!(flusher.sync_blobs().expect("sync"), 0);
    }

    /// [`is_storage_thread`] knows sled's threads by their real names: a store that flushes in
    /// the background has both kinds once it has written.
    #[test]
    fn sleds_threads_are_known_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut s, _) = SledStore::open(dir.path(), NodeId(1), true, false).expect("open");
        s.save(&Key::from("k"), &sibs(b"v")).expect("save");
        s.sync().expect("sync");
        let names: Vec<String> = std::fs::read_dir("/proc/self/task")
            .expect("tasks")
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .map(|n| n.trim_end().to_string())
            .collect();
        assert!(
            names.iter().any(|n| n.starts_with("sled-io-") && is_storage_thread(n)),
            "{names:?}"
        );
        assert!(names.iter().any(|n| n == "log flusher" && is_storage_thread(n)), "{names:?}");
        assert!(!is_storage_thread("tokio-runtime-worker") && !is_storage_thread("node-1"));
    }

    /// A panic inside sled while it opens a store (it panics on some damaged files) is an error
    /// that says so, not a crash of the node; the directory opens again afterwards.
    #[test]
    fn a_panic_inside_sled_at_open_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(SledStore::open(dir.path(), NodeId(1), false, true).expect("open"));
        PANIC_IN_OPEN.with(|p| p.set(true));
        let err = SledStore::open(dir.path(), NodeId(1), false, true).expect_err("refused");
        let text = err.to_string();
        assert!(text.contains("sled panicked") && text.contains("injected panic"), "{text}");
        assert!(SledStore::open(dir.path(), NodeId(1), false, true).is_ok(), "opens again");
    }

    /// An open that fails for want of file descriptors (or memory) is tried again, up to
    /// `OPEN_TRIES` times in all; other errors are returned at once.
    #[test]
    fn opens_short_of_descriptors_are_retried() {
        let short = |errno| std::io::Error::from_raw_os_error(errno);
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOMEM] {
            let mut calls = 0;
            let got = open_retrying(|| {
                calls += 1;
                if calls < 3 {
                    Err(short(errno))
                } else {
                    Ok(calls)
                }
            });
            assert_eq!(got.expect("the third attempt succeeds"), 3);
        }
        let mut calls = 0;
        let got: std::io::Result<()> = open_retrying(|| {
            calls += 1;
            Err(short(libc::EMFILE))
        });
        assert_eq!(got.expect_err("never succeeds").raw_os_error(), Some(libc::EMFILE));
        assert_eq!(calls, OPEN_TRIES);
        let mut calls = 0;
        let got: std::io::Result<()> = open_retrying(|| {
            calls += 1;
            Err(short(libc::EACCES))
        });
        assert!(got.is_err());
        assert_eq!(calls, 1, "other errors are not retried");
    }

    /// Hints are handed out in turns among the nodes they are for, so that one node's many hints
    /// cannot fill every batch; skipped nodes' hints are left out.
    #[test]
    fn hints_are_taken_in_turns_among_their_nodes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut s, _) = SledStore::open(dir.path(), NodeId(1), false, true).expect("open");
        for (n, k) in [(2, "a"), (2, "b"), (2, "c"), (3, "d"), (4, "e"), (4, "f")] {
            s.save_hint(NodeId(n), &Key::from(k), &sibs(b"v")).expect("hint");
        }
        let taken = |skip: &[u16], limit| {
            let skip: BTreeSet<NodeId> = skip.iter().map(|&n| NodeId(n)).collect();
            let hs = s.hints(&skip, limit).expect("hints");
            hs.into_iter().map(|(n, k, _)| (n.0, String::from_utf8(k.0).expect("utf8"))).collect()
        };
        let turns: Vec<(u16, String)> = taken(&[], 4);
        let want = [(2, "a"), (3, "d"), (4, "e"), (2, "b")];
        assert_eq!(turns, want.map(|(n, k)| (n, k.to_string())));
        let all: Vec<(u16, String)> = taken(&[], 10);
        assert_eq!(all.len(), 6);
        let skipped: Vec<(u16, String)> = taken(&[3], 3);
        let want = [(2, "a"), (4, "e"), (2, "b")];
        assert_eq!(skipped, want.map(|(n, k)| (n, k.to_string())));
    }

    /// A hint record that does not decode (or whose key is too short to name a node) is walked
    /// past and left on disk; it cannot stop the handoff of the hints around it.
    #[test]
    fn corrupt_hints_are_skipped_and_the_rest_still_handed_off() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut s, _) = SledStore::open(dir.path(), NodeId(1), false, true).expect("open");
        s.save_hint(NodeId(2), &Key::from("a"), &sibs(b"1")).expect("hint");
        s.save_hint(NodeId(3), &Key::from("c"), &sibs(b"3")).expect("hint");
        s.hints.insert(hint_key(NodeId(2), &Key::from("b")), &[0xff, 0xff][..]).expect("raw");
        s.hints.insert([7u8], &[0u8][..]).expect("raw");
        for _ in 0..2 {
            let got = s.hints(&BTreeSet::new(), 10).expect("hints");
            let got: Vec<_> = got.into_iter().map(|(n, k, _)| (n, k)).collect();
            assert_eq!(got, vec![(NodeId(2), Key::from("a")), (NodeId(3), Key::from("c"))]);
        }
        assert_eq!(s.corrupt_hints.borrow().len(), 2, "each reported once");
        assert_eq!(s.hints.len(), 4, "the corrupt records stay on disk");
    }
}
