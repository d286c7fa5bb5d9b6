//! Durable storage on sled: the only module that names sled.
//!
//! Three trees: `data` (key → postcard-encoded [`Siblings`]), `hints` (intended node id, big
//! endian, then key → siblings kept for that node, paper §4.6), and `meta` (the incarnation, and a
//! marker that a run is in progress).
//! A record that fails to decode is reported as [`StoreError::Corrupt`]; nothing here panics on
//! what it reads from disk.
//!
//! Writes go to sled's log at once; [`SledStore::sync`] makes them durable (fsync). The driver
//! calls it once per batch under the `always` sync policy, which is the group commit the core's
//! durability rule asks for.

use dynamo_model::store::Hint;
use dynamo_model::{Key, NodeId, Siblings, Store, StoreError};
use std::collections::BTreeSet;
use std::path::Path;

/// sled's page cache per node.
pub const CACHE_BYTES: u64 = 64 << 20;
/// How often sled flushes on its own when the driver does not (the `none` policy).
pub const BACKGROUND_FLUSH_MS: u64 = 500;
const INCARNATION_KEY: &[u8] = b"incarnation";
const NODE_ID_KEY: &[u8] = b"node_id";
/// Present while a node runs on the directory; removed by a clean shutdown.
const RUNNING_KEY: &[u8] = b"running";

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
}

impl Flusher {
    /// Flushes and fsyncs.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(io)
    }
}

/// A [`Store`] on sled.
#[derive(Debug)]
pub struct SledStore {
    db: sled::Db,
    data: sled::Tree,
    hints: sled::Tree,
    meta: sled::Tree,
    hint_count: usize,
    dirty: bool,
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

fn encode(s: &Siblings) -> Result<Vec<u8>, StoreError> {
    // Sized up front: growing a vector byte string by byte string copies a large value many times.
    let estimate: usize = s
        .versions()
        .iter()
        .map(|v| v.payload.value().map_or(0, <[u8]>::len) + VERSION_OVERHEAD_BYTES)
        .sum();
    postcard::to_extend(s, Vec::with_capacity(estimate + 8))
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

impl SledStore {
    /// Opens (or creates) the store of `node` in `dir`. Returns the store and the node's
    /// incarnation. A new directory gets a fresh random incarnation, so a node that lost its disk
    /// never writes clock entries under an actor it used before; a directory created by another
    /// node id is refused.
    ///
    /// `acks_durable` says whether the sync policy keeps every acknowledgement behind an fsync
    /// (`always`). When it does not, a run that ended without a clean shutdown may have lost
    /// counters locally that other nodes already hold; reissuing them would give two different
    /// writes the same dot. Such a restart therefore takes a new incarnation too.
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
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_BYTES)
            .flush_every_ms(background_flush.then_some(BACKGROUND_FLUSH_MS))
            .open()
            .map_err(fail)?;
        let data = db.open_tree("data").map_err(fail)?;
        let hints = db.open_tree("hints").map_err(fail)?;
        let meta = db.open_tree("meta").map_err(fail)?;
        let incarnation = match meta.get(INCARNATION_KEY).map_err(fail)? {
            Some(v) => {
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
                if !acks_durable && meta.get(RUNNING_KEY).map_err(fail)?.is_some() {
                    let fresh = fresh_incarnation(previous);
                    meta.insert(INCARNATION_KEY, &fresh.to_be_bytes()).map_err(fail)?;
                    tracing::warn!(
                        node = %node,
                        previous,
                        fresh,
                        "the last run did not shut down cleanly and acknowledgements could precede fsync: new incarnation"
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
                meta.insert(INCARNATION_KEY, &inc.to_be_bytes()).map_err(fail)?;
                db.flush().map_err(fail)?;
                inc
            }
        };
        meta.insert(RUNNING_KEY, &[1u8]).map_err(fail)?;
        db.flush().map_err(fail)?;
        let hint_count = hints.len();
        let store = SledStore { db, data, hints, meta, hint_count, dirty: false };
        Ok((store, incarnation))
    }

    /// Records a clean shutdown: every write is durable and the next open may keep the
    /// incarnation. Call it last, after the final sync.
    pub fn mark_clean_shutdown(&mut self) -> Result<(), StoreError> {
        self.meta.remove(RUNNING_KEY).map_err(io)?;
        self.db.flush().map(|_| ()).map_err(io)
    }

    /// Whether writes were made since the last sync.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Makes every write so far durable.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        if self.dirty {
            self.db.flush().map_err(io)?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Clears the dirty flag and says whether it was set: the caller is about to flush with
    /// [`SledStore::flusher`], which covers every write made before this call.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// Marks the store as holding writes not known to be durable (after a failed flush).
    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// A handle that flushes this store from another thread.
    pub fn flusher(&self) -> Flusher {
        Flusher { db: self.db.clone() }
    }

    /// Number of primary keys (a scan: for status, not hot paths).
    pub fn key_count(&self) -> usize {
        self.data.len()
    }
}

impl Store for SledStore {
    fn load(&self, key: &Key) -> Result<Siblings, StoreError> {
        match self.data.get(&key.0).map_err(io)? {
            Some(v) => decode(|| format!("key {key}"), &v),
            None => Ok(Siblings::new()),
        }
    }

    fn save(&mut self, key: &Key, siblings: &Siblings) -> Result<(), StoreError> {
        self.data.insert(&key.0, encode(siblings)?).map_err(io)?;
        self.dirty = true;
        Ok(())
    }

    fn load_hint(&self, intended: NodeId, key: &Key) -> Result<Siblings, StoreError> {
        match self.hints.get(hint_key(intended, key)).map_err(io)? {
            Some(v) => decode(|| format!("hint for {intended} key {key}"), &v),
            None => Ok(Siblings::new()),
        }
    }

    fn save_hint(
        &mut self,
        intended: NodeId,
        key: &Key,
        siblings: &Siblings,
    ) -> Result<(), StoreError> {
        let old = self.hints.insert(hint_key(intended, key), encode(siblings)?).map_err(io)?;
        if old.is_none() {
            self.hint_count += 1;
        }
        self.dirty = true;
        Ok(())
    }

    fn remove_hint(&mut self, intended: NodeId, key: &Key) -> Result<(), StoreError> {
        if self.hints.remove(hint_key(intended, key)).map_err(io)?.is_some() {
            self.hint_count = self.hint_count.saturating_sub(1);
        }
        self.dirty = true;
        Ok(())
    }

    fn hints(&self, skip: &BTreeSet<NodeId>, limit: usize) -> Result<Vec<Hint>, StoreError> {
        let mut out = Vec::new();
        let mut from: Vec<u8> = Vec::new();
        // Each skipped node's hints are jumped over with one range seek, so the walk costs at most
        // `limit` records plus one seek per skipped node.
        for _ in 0..=skip.len() {
            let mut jump = None;
            for item in self.hints.range(from.clone()..) {
                let (k, v) = item.map_err(io)?;
                let Some((node, key)) = split_hint_key(&k) else {
                    return Err(StoreError::Corrupt {
                        what: "hint key".into(),
                        detail: format!("{} bytes, shorter than a node id", k.len()),
                    });
                };
                if skip.contains(&node) {
                    jump = node.0.checked_add(1);
                    break;
                }
                if out.len() >= limit {
                    return Ok(out);
                }
                let siblings = decode(|| format!("hint for {node} key {key}"), &v)?;
                out.push((node, key, siblings));
            }
            match jump {
                Some(next) => from = next.to_be_bytes().to_vec(),
                None => break,
            }
        }
        Ok(out)
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

    #[test]
    fn an_unclean_restart_without_durable_acks_takes_a_new_incarnation() {
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
        // Under `always` every acknowledged counter was durable: the actor stays.
        let (_, fourth) = open(true).expect("reopen with durable acks");
        assert_eq!(third, fourth);
    }

    #[test]
    fn data_hints_and_incarnation_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut s, inc) = SledStore::open(dir.path(), NodeId(1), false, true).expect("open");
        s.save(&Key::from("a"), &sibs(b"x")).expect("save");
        s.save_hint(NodeId(2), &Key::from("b"), &sibs(b"y")).expect("hint");
        s.save_hint(NodeId(3), &Key::from("c"), &sibs(b"z")).expect("hint");
        s.sync().expect("sync");
        drop(s);
        let (s, inc2) = SledStore::open(dir.path(), NodeId(1), false, true).expect("reopen");
        assert_eq!(inc, inc2);
        assert_eq!(s.load(&Key::from("a")).expect("load"), sibs(b"x"));
        assert_eq!(s.hint_count().expect("count"), 2);
        let skip: BTreeSet<_> = [NodeId(2)].into();
        let hs = s.hints(&skip, 10).expect("hints");
        assert_eq!(hs.len(), 1);
        assert_eq!(hs[0].0, NodeId(3));
        assert_eq!(s.hints(&BTreeSet::new(), 1).expect("hints").len(), 1);
        assert!(SledStore::open(dir.path(), NodeId(2), false, true).is_err(), "another node's dir");
    }

    #[test]
    fn corrupt_records_are_errors_not_panics() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (s, _) = SledStore::open(dir.path(), NodeId(1), false, true).expect("open");
        s.data.insert(b"k", &[0xff, 0xff, 0xff][..]).expect("raw insert");
        assert!(matches!(s.load(&Key::from("k")), Err(StoreError::Corrupt { .. })));
    }
}
