//! The `dynamo` command line: `serve`, `dev`, `get`, `put`, `delete`, `status`, `bench`.
//!
//! The client commands carry the context between calls the way a library client would: `get`
//! (and every successful `put` or `delete`) remembers the key's context in a small file, and a
//! later `put` or `delete` of that key sends it back, so it supersedes what was read. `--context`
//! overrides it; `put --blind` sends none (the value then becomes a sibling of what is there). A
//! `delete` with no context given or remembered reads the key first and sends that read's.

/// `println!` that ends the process quietly when stdout is gone (`dynamo status | head`), as a
/// command-line tool killed by SIGPIPE would, instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout().lock(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

use crate::bench::{self, BenchArgs};
use crate::client::{HttpClient, Overrides};
use crate::config::{NodeConfig, ServeArgs};
use crate::dev::{self, DevArgs};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

/// `dynamo get`'s exit status for a key with no value, so that a script tells it from a value
/// (0) and from an error (1; 2 is the argument parser's).
pub const NOT_FOUND: u8 = 3;

/// Most keys whose context the CLI remembers; the least recently used are forgotten first.
pub const CONTEXT_JAR_KEYS_MAX: usize = 1_000;

/// The contexts the CLI remembers, by key, in a JSON file.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ContextJar {
    /// Key → (use stamp, base64 context). A new use is stamped above every stamp held. (A jar
    /// written by an older build also has the last stamp handed out: left unread.)
    entries: BTreeMap<String, (u64, String)>,
}

impl ContextJar {
    /// Where the jar lives: `$DYNAMO_CONTEXT_FILE`, else `$HOME/.cache/dynamo/contexts.json`.
    pub fn path() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("DYNAMO_CONTEXT_FILE") {
            return Some(PathBuf::from(p));
        }
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/dynamo/contexts.json"))
    }

    /// Reads the jar; a missing or unreadable file is an empty jar.
    pub fn load(path: &std::path::Path) -> ContextJar {
        std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    /// Writes the jar (best effort: the CLI works without it) through a file of its own renamed
    /// over the jar, so that a `dynamo` running at the same time reads the old jar or the new
    /// one, never half of one (which it would take for an empty jar, and then save as such).
    pub fn save(&self, path: &std::path::Path) {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let Ok(b) = serde_json::to_vec(self) else { return };
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".{}.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp);
        if std::fs::write(&tmp, b).is_err() || std::fs::rename(&tmp, path).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }

    /// The remembered context of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(|(_, c)| c.as_str())
    }

    /// Remembers `context` for `key`, forgetting the least recently used keys beyond the bound
    /// (in one pass, however many a jar edited by hand holds; of equal stamps, the first in key
    /// order go first; stamps stop at `u64::MAX` rather than wrap).
    pub fn put(&mut self, key: &str, context: String) {
        let newest = self.entries.values().map(|(s, _)| *s).max().unwrap_or(0);
        self.entries.insert(key.to_string(), (newest.saturating_add(1), context));
        if self.entries.len() > CONTEXT_JAR_KEYS_MAX {
            let mut by_age: Vec<(u64, String)> = self
                .entries
                .iter()
                .filter(|(k, _)| k.as_str() != key)
                .map(|(k, (s, _))| (*s, k.clone()))
                .collect();
            by_age.sort_unstable();
            let excess = self.entries.len() - CONTEXT_JAR_KEYS_MAX;
            for (_, k) in by_age.into_iter().take(excess) {
                self.entries.remove(&k);
            }
        }
    }
}

fn remember(key: &str, context: Option<&str>) {
    let (Some(path), Some(c)) = (ContextJar::path(), context) else { return };
    let mut jar = ContextJar::load(&path);
    jar.put(key, c.to_string());
    jar.save(&path);
}

/// The context a write of `key` sends: the flag's, none if blind, else the remembered one.
fn context_for(key: &str, flag: Option<String>, blind: bool) -> Option<String> {
    if blind {
        return None;
    }
    flag.or_else(|| {
        let path = ContextJar::path()?;
        ContextJar::load(&path).get(key).map(str::to_string)
    })
}

/// A Dynamo-style key-value store.
#[derive(Debug, Parser)]
#[command(name = "dynamo", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one node.
    Serve(Box<ServeArgs>),
    /// Run a local 3-node cluster on 127.0.0.1 (data under ./dev-data).
    Dev(DevArgs),
    /// Read a key: every sibling, and the context to write back.
    ///
    /// Exits 0 with a value, 3 when the key has none (missing or deleted), 1 on an error.
    Get(GetArgs),
    /// Write a key, superseding what the given context covers.
    Put(PutArgs),
    /// Delete a key, superseding what the given context covers.
    Delete(DeleteArgs),
    /// Show a node's status.
    Status(Target),
    /// Load generator: throughput and latency percentiles.
    Bench(BenchArgs),
}

#[derive(Args, Debug)]
struct Target {
    /// Any node: its base URL, `http://HOST:PORT`, or just `HOST:PORT`.
    #[arg(long, env = "DYNAMO_NODE", default_value = "http://127.0.0.1:8081",
          value_parser = crate::client::node_base_url)]
    node: String,
}

#[derive(Args, Debug)]
struct Quorum {
    /// Read quorum for this request.
    #[arg(long)]
    r: Option<usize>,
    /// Write quorum for this request.
    #[arg(long)]
    w: Option<usize>,
    /// Timeout for this request.
    #[arg(long)]
    timeout_ms: Option<u64>,
}

impl Quorum {
    fn overrides(&self) -> Overrides {
        Overrides { r: self.r, w: self.w, timeout_ms: self.timeout_ms }
    }
}

#[derive(Args, Debug)]
struct GetArgs {
    key: String,
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    q: Quorum,
}

#[derive(Args, Debug)]
struct PutArgs {
    key: String,
    value: String,
    /// Context to supersede (default: the one remembered from the last get or write of the key).
    #[arg(long)]
    context: Option<String>,
    /// Send no context: the write becomes a sibling of whatever is there.
    #[arg(long, conflicts_with = "context")]
    blind: bool,
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    q: Quorum,
}

#[derive(Args, Debug)]
struct DeleteArgs {
    key: String,
    /// Context to supersede (default: the one remembered from the last get or write of the key,
    /// or, with none remembered, the context of a read made first).
    #[arg(long)]
    context: Option<String>,
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    q: Quorum,
}

/// Runs the command line; the binary's whole `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Serve(_) | Command::Dev(_)) {
        crate::storage::stop_on_storage_thread_panic();
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal: not in a file or a pipe, nor under `NO_COLOR`.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )
        .init();
    // `serve` runs its node on a runtime of its own (see `server::start`) and this one only waits
    // for signals; client commands and the load generator need one thread. `dev` shares this
    // runtime among its nodes unless told otherwise, so it gets a worker per core.
    let mut builder = match &cli.command {
        Command::Dev(d) if d.threads == 0 => tokio::runtime::Builder::new_multi_thread(),
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn show(v: &[u8]) -> String {
    match std::str::from_utf8(v) {
        Ok(s) => s.to_string(),
        Err(_) => format!("base64:{}", B64.encode(v)),
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let client = HttpClient::new();
    match cli.command {
        Command::Serve(args) => {
            let cfg = NodeConfig::from_args(&args)?;
            // Caught from here on, so that a signal during the start stops the node cleanly.
            let mut signals = crate::shutdown::Signals::install();
            let node = crate::server::start(cfg).await?;
            tokio::select! {
                _ = signals.recv() => {}
                _ = node.stopping() => {}
            }
            crate::shutdown::unless_signalled_again(&mut signals, node.shutdown()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Dev(args) => {
            dev::run(args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Get(a) => {
            let r = client.get(&a.target.node, a.key.as_bytes(), a.q.overrides()).await?;
            let mut code = ExitCode::SUCCESS;
            match r.status {
                404 => {
                    outln!("not found");
                    code = ExitCode::from(NOT_FOUND);
                }
                200 | 300 => {
                    if r.values.len() > 1 {
                        outln!("{} siblings:", r.values.len());
                    }
                    for (i, v) in r.values.iter().enumerate() {
                        if r.values.len() > 1 {
                            outln!("  [{}] {}", i + 1, show(v));
                        } else {
                            outln!("{}", show(v));
                        }
                    }
                }
                s => {
                    eprintln!("{s}: {}", r.message);
                    return Ok(ExitCode::FAILURE);
                }
            }
            if let Some(c) = &r.context {
                outln!("context: {c}");
            }
            remember(&a.key, r.context.as_deref());
            Ok(code)
        }
        Command::Put(a) => {
            let context = context_for(&a.key, a.context, a.blind);
            let r = client
                .put(
                    &a.target.node,
                    a.key.as_bytes(),
                    context.as_deref(),
                    Bytes::from(a.value.into_bytes()),
                    a.q.overrides(),
                )
                .await?;
            Ok(write_outcome(&a.key, r))
        }
        Command::Delete(a) => {
            // A delete removes only what its context covers (the API refuses one without): with
            // none given or remembered, read the key for its context first.
            let mut context = context_for(&a.key, a.context, false);
            if context.is_none() {
                let r = client.get(&a.target.node, a.key.as_bytes(), a.q.overrides()).await?;
                match (r.status, r.context) {
                    (200 | 300, Some(c)) => context = Some(c),
                    (404, _) => {
                        outln!("not found");
                        return Ok(ExitCode::SUCCESS);
                    }
                    (s, _) => {
                        eprintln!("{s}: reading the key for its context: {}", r.message);
                        return Ok(ExitCode::FAILURE);
                    }
                }
            }
            let r = client
                .delete(&a.target.node, a.key.as_bytes(), context.as_deref(), a.q.overrides())
                .await?;
            if r.status == 404 {
                // The context named no version: the key was missing when it was read.
                outln!("not found");
                return Ok(ExitCode::SUCCESS);
            }
            Ok(write_outcome(&a.key, r))
        }
        Command::Status(t) => {
            let s = client.status(&t.node).await?;
            outln!("{}", serde_json::to_string_pretty(&s)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => {
            let report = bench::run(args).await?;
            outln!("{report}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn write_outcome(key: &str, r: crate::client::HttpReply) -> ExitCode {
    if r.status == 204 {
        outln!("ok");
        if let Some(c) = &r.context {
            outln!("context: {c}");
        }
        remember(key, r.context.as_deref());
        ExitCode::SUCCESS
    } else {
        eprintln!("{}: {}", r.status, r.text());
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jar_round_trips_and_stays_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/contexts.json");
        let mut jar = ContextJar::load(&path);
        for i in 0..CONTEXT_JAR_KEYS_MAX + 5 {
            jar.put(&format!("k{i}"), format!("c{i}"));
        }
        jar.put("k10", "newer".into());
        jar.save(&path);
        let jar = ContextJar::load(&path);
        assert_eq!(jar.entries.len(), CONTEXT_JAR_KEYS_MAX);
        assert_eq!(jar.get("k0"), None, "least recently used is forgotten");
        assert_eq!(jar.get("k10"), Some("newer"));
    }

    /// A jar edited by hand (far over the bound, stamps at the top, or all equal) is cut to the
    /// bound in one put, keeps the key just put, and its stamps do not wrap around.
    #[test]
    fn a_hand_edited_jar_is_cut_at_once_and_keeps_the_key_put() {
        let many = 20 * CONTEXT_JAR_KEYS_MAX;
        for stamp_of in [|i: usize| i as u64, |_| u64::MAX, |_| 7] {
            let mut jar = ContextJar::default();
            for i in 0..many {
                jar.entries.insert(format!("k{i:06}"), (stamp_of(i), format!("c{i}")));
            }
            jar.put("fresh", "new".into());
            assert_eq!(jar.entries.len(), CONTEXT_JAR_KEYS_MAX);
            assert_eq!(jar.get("fresh"), Some("new"));
            let newest = jar.entries.get("fresh").map(|(s, _)| *s).expect("kept");
            assert!(jar.entries.values().all(|(s, _)| *s <= newest), "the key put is the newest");
        }
        // With distinct stamps, the most recent ones stay.
        let mut jar = ContextJar::default();
        for i in 0..many {
            jar.entries.insert(format!("k{i:06}"), (i as u64, String::new()));
        }
        jar.put("fresh", "new".into());
        assert_eq!(jar.get(&format!("k{:06}", many - 1)), Some(""));
        assert_eq!(jar.get(&format!("k{:06}", many - CONTEXT_JAR_KEYS_MAX)), None);
    }
}
