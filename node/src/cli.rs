//! The `dynamo` command line: `serve`, `dev`, `get`, `put`, `delete`, `status`, `bench`.

use crate::bench::{self, BenchArgs};
use crate::client::{HttpClient, Overrides};
use crate::config::{NodeConfig, ServeArgs};
use crate::dev::{self, DevArgs};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use std::process::ExitCode;

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
    Serve(ServeArgs),
    /// Run a local 3-node cluster on 127.0.0.1 (data under ./dev-data).
    Dev(DevArgs),
    /// Read a key: every sibling, and the context to write back.
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
    /// Base URL of any node.
    #[arg(long, env = "DYNAMO_NODE", default_value = "http://127.0.0.1:8081")]
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
    /// Context printed by `dynamo get`; omit for a blind write (it becomes a sibling of anything
    /// already there).
    #[arg(long)]
    context: Option<String>,
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    q: Quorum,
}

#[derive(Args, Debug)]
struct DeleteArgs {
    key: String,
    /// Context printed by `dynamo get`.
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
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
            let node = crate::server::start(cfg).await?;
            tokio::select! {
                _ = crate::shutdown::signal() => {}
                _ = node.stopping() => {}
            }
            node.shutdown().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Dev(args) => {
            dev::run(args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Get(a) => {
            let r = client.get(&a.target.node, a.key.as_bytes(), a.q.overrides()).await?;
            match r.status {
                404 => println!("not found"),
                200 | 300 => {
                    if r.values.len() > 1 {
                        println!("{} siblings:", r.values.len());
                    }
                    for (i, v) in r.values.iter().enumerate() {
                        if r.values.len() > 1 {
                            println!("  [{}] {}", i + 1, show(v));
                        } else {
                            println!("{}", show(v));
                        }
                    }
                }
                s => {
                    eprintln!("{s}: {}", r.message);
                    return Ok(ExitCode::FAILURE);
                }
            }
            if let Some(c) = r.context {
                println!("context: {c}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Put(a) => {
            let r = client
                .put(
                    &a.target.node,
                    a.key.as_bytes(),
                    a.context.as_deref(),
                    Bytes::from(a.value.into_bytes()),
                    a.q.overrides(),
                )
                .await?;
            Ok(write_outcome(r))
        }
        Command::Delete(a) => {
            let r = client
                .delete(&a.target.node, a.key.as_bytes(), a.context.as_deref(), a.q.overrides())
                .await?;
            Ok(write_outcome(r))
        }
        Command::Status(t) => {
            let s = client.status(&t.node).await?;
            println!("{}", serde_json::to_string_pretty(&s)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => {
            let report = bench::run(args).await?;
            println!("{report}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn write_outcome(r: crate::client::HttpReply) -> ExitCode {
    if r.status == 204 {
        println!("ok");
        if let Some(c) = r.context {
            println!("context: {c}");
        }
        ExitCode::SUCCESS
    } else {
        eprintln!("{}: {}", r.status, r.text());
        ExitCode::FAILURE
    }
}
