//! `dynamo bench`: a load generator for the HTTP API.
//!
//! `concurrency` workers each loop until the deadline, picking a random key from `keys`, reading
//! with probability `read_ratio` and otherwise writing a `value_bytes` value, spread round-robin
//! over the target nodes. Writes carry the last context seen for their key (from an earlier read
//! or write), as a real client would, so keys do not pile up siblings. Latencies go into HDR
//! histograms; with `--rate` the load is open-loop (each request is timed from when it was due,
//! which avoids coordinated omission; see `pace`).
//!
//! The load generator speaks just enough HTTP/1.1 itself (one keep-alive connection per worker
//! and node, `content-length` bodies) so that it costs the machine little: it shares the cores
//! with the cluster it measures, as `redis-benchmark` does with Redis. With `--protocol redis` it
//! speaks just enough RESP instead (`GET` and `SET` of the same keys and values) to drive a
//! `redis-server` through the very same pacer, workers and histograms: the baseline that tells
//! what this machine's scheduling alone does to a tail at a given rate.

use crate::api::CONTEXT_HEADER;
use bytes::{Buf, Bytes, BytesMut};
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most workers.
pub const CONCURRENCY_MAX: usize = 4096;
/// Largest key space.
pub const KEYS_MAX: usize = 10_000_000;
/// Longest run.
pub const DURATION_S_MAX: u64 = 3_600;
/// Longest a single request may take before it counts as a timeout error.
pub const REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Largest response head the load generator accepts.
const RESPONSE_HEAD_BYTES_MAX: usize = 16 * 1024;
/// Largest response body the load generator accepts.
const RESPONSE_BODY_BYTES_MAX: usize = 64 << 20;
/// Default shortest time between two wake-ups of the open-loop pacer, microseconds.
pub const DEFAULT_PACE_QUANTUM_US: u64 = 200;
/// Longest allowed time between two wake-ups of the pacer, microseconds.
pub const PACE_QUANTUM_US_MAX: u64 = 100_000;
/// Longest the reads before a run (see `prime`) may take, seconds.
pub const PRIME_S_MAX: u64 = 60;
/// Highest latency recorded, microseconds.
const LATENCY_US_MAX: u64 = 60_000_000;
/// Width of the windows `--slow-ms` counts slow requests in, milliseconds.
pub const SLOW_WINDOW_MS: u64 = 100;
/// Most windows `--slow-ms` prints (the most crowded ones).
const SLOW_WINDOWS_SHOWN: usize = 20;

/// What the targets speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// This project's HTTP API (`GET`/`PUT /kv/{key}`, contexts carried).
    Http,
    /// Redis's RESP (`GET`/`SET`): a `redis-server` as the baseline, driven the same way.
    Redis,
}

/// Flags of `dynamo bench`.
#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// Base URLs of the nodes to spread requests over, comma separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8081,http://127.0.0.1:8082,http://127.0.0.1:8083"
    )]
    pub targets: Vec<String>,
    /// What the targets speak; `redis` targets are `host:port` of a redis-server.
    #[arg(long, value_enum, default_value_t = Protocol::Http)]
    pub protocol: Protocol,
    /// Requests in flight.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 10_000)]
    pub keys: usize,
    /// Value size of writes.
    #[arg(long, default_value_t = 1024)]
    pub value_bytes: usize,
    /// Fraction of requests that are reads (0..=1).
    #[arg(long, default_value_t = 0.5)]
    pub read_ratio: f64,
    /// How long to run.
    #[arg(long, default_value_t = 10)]
    pub duration_s: u64,
    /// Load applied before measuring starts (connections open, caches fill); not counted.
    #[arg(long, default_value_t = 1)]
    pub warmup_s: u64,
    /// Total request rate (ops/s), open loop; omit to go as fast as possible.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Skip reading every key once before the run (see `prime`): the first write to each key
    /// then carries no context and leaves a sibling beside whatever an earlier run stored.
    #[arg(long)]
    pub no_prime: bool,
    /// Open loop: the pacer wakes at most once per this many microseconds and hands out every
    /// ticket due by then (each still counts from when it was due); 0 wakes it per ticket.
    #[arg(long, default_value_t = DEFAULT_PACE_QUANTUM_US)]
    pub pace_quantum_us: u64,
    /// Seed of the key and operation choice.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Also report when the requests slower than this many milliseconds were due, per
    /// [`SLOW_WINDOW_MS`] window of the measured run (0: off): a tail made of a few stalls shows
    /// as a few crowded windows, one made of steady queueing as many sparse ones.
    #[arg(long, default_value_t = 0.0)]
    pub slow_ms: f64,
}

impl BenchArgs {
    /// `--slow-ms` in microseconds, or `None` when it is off (0). [`run`] refuses a negative or
    /// non-finite value before any request.
    pub fn slow_threshold_us(&self) -> Option<u64> {
        (self.slow_ms > 0.0).then_some((self.slow_ms * 1000.0) as u64)
    }
}

/// What a run measured.
#[derive(Debug)]
pub struct BenchReport {
    /// The run's settings.
    pub args: BenchArgs,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// All successful requests.
    pub all: Histogram<u64>,
    /// Successful reads.
    pub reads: Histogram<u64>,
    /// Successful writes.
    pub writes: Histogram<u64>,
    /// Failed requests by kind.
    pub errors: BTreeMap<String, u64>,
    /// Reads answered with siblings (300). A write supersedes only what its context covers, so
    /// concurrent writes to a key leave siblings that only a read's merged context resolves: in a
    /// write-only run they pile up and values grow.
    pub sibling_reads: u64,
    /// Open loop only: how late the pacer thread woke from each of its sleeps (microseconds),
    /// over the measured part of the run. This is the scheduling delay a thread of this machine
    /// sees under this very load, a baseline taken in the same run: every request waits for
    /// several such wake-ups (generator, coordinator, replicas, coordinator, generator).
    pub wakeups: Option<Histogram<u64>>,
    /// With `--slow-ms`: the successful requests that took longer, by the window of
    /// [`SLOW_WINDOW_MS`] they were due in (numbered from the measured start).
    pub slow: Slow,
}

/// Slow requests by window number (see [`BenchReport::slow`]).
pub type Slow = BTreeMap<u64, SlowWindow>;

/// The requests over `--slow-ms` that were due in one window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlowWindow {
    /// How many.
    pub requests: u64,
    /// The longest of them, microseconds.
    pub longest_us: u64,
    /// The longest any of them waited before it was written: for a free connection, and for the
    /// load generator's own thread to run. The rest of its time was the system's answer.
    pub longest_unsent_us: u64,
}

impl SlowWindow {
    fn add(&mut self, other: SlowWindow) {
        self.requests += other.requests;
        self.longest_us = self.longest_us.max(other.longest_us);
        self.longest_unsent_us = self.longest_unsent_us.max(other.longest_unsent_us);
    }
}

/// How many of the most crowded windows [`BenchReport::slow_top_pct`] (the `RESULT` line's
/// `slow_top3_pct`) sums.
pub const SLOW_TOP: usize = 3;

impl BenchReport {
    /// Successful requests per second.
    pub fn ops_per_s(&self) -> f64 {
        self.all.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Requests over `--slow-ms`.
    pub fn slow_requests(&self) -> u64 {
        self.slow.values().map(|s| s.requests).sum()
    }

    /// The windows holding slow requests, the most crowded first (ties: the earlier first).
    pub fn crowded_slow_windows(&self) -> Vec<(u64, SlowWindow)> {
        let mut v: Vec<_> = self.slow.iter().map(|(w, s)| (*w, *s)).collect();
        v.sort_by_key(|(w, s)| (std::cmp::Reverse(s.requests), *w));
        v
    }

    /// The share of the slow requests (percent) that the [`SLOW_TOP`] most crowded windows hold.
    pub fn slow_top_pct(&self) -> f64 {
        let top: u64 =
            self.crowded_slow_windows().iter().take(SLOW_TOP).map(|(_, s)| s.requests).sum();
        100.0 * top as f64 / self.slow_requests().max(1) as f64
    }
}

fn line(f: &mut fmt::Formatter<'_>, name: &str, h: &Histogram<u64>, secs: f64) -> fmt::Result {
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    writeln!(
        f,
        "  {name:<6} {:>9} ok  {:>10.1} ops/s  p50 {:>7.3} ms  p99 {:>7.3} ms  p99.9 {:>7.3} ms  max {:>8.3} ms",
        h.len(),
        h.len() as f64 / secs.max(1e-9),
        ms(0.5),
        ms(0.99),
        ms(0.999),
        h.max() as f64 / 1000.0
    )
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = &self.args;
        let secs = self.elapsed.as_secs_f64();
        writeln!(
            f,
            "bench: {} {} targets, concurrency {}, {} keys, {} B values, read ratio {}, {:.1} s{}",
            a.targets.len(),
            match a.protocol {
                Protocol::Http => "http",
                Protocol::Redis => "redis",
            },
            a.concurrency,
            a.keys,
            a.value_bytes,
            a.read_ratio,
            secs,
            a.rate.map(|r| format!(", rate {r} ops/s")).unwrap_or_default()
        )?;
        line(f, "all", &self.all, secs)?;
        line(f, "read", &self.reads, secs)?;
        line(f, "write", &self.writes, secs)?;
        if let Some(w) = &self.wakeups {
            let ms = |q: f64| w.value_at_quantile(q) as f64 / 1000.0;
            writeln!(
                f,
                "  pacer  {:>9} wake-ups, late by p50 {:>7.3} ms  p99 {:>7.3} ms  p99.9 {:>7.3} ms  max {:>8.3} ms",
                w.len(),
                ms(0.5),
                ms(0.99),
                ms(0.999),
                w.max() as f64 / 1000.0
            )?;
        }
        if a.slow_threshold_us().is_some() {
            let mut crowded = self.crowded_slow_windows();
            crowded.truncate(SLOW_WINDOWS_SHOWN);
            crowded.sort_by_key(|(w, _)| *w);
            writeln!(
                f,
                "  slower than {} ms: {} requests in {} windows of {SLOW_WINDOW_MS} ms{}",
                a.slow_ms,
                self.slow_requests(),
                self.slow.len(),
                if self.slow.len() > crowded.len() { " (the most crowded shown)" } else { "" }
            )?;
            for (w, s) in crowded {
                let ms = |us: u64| us as f64 / 1000.0;
                writeln!(
                    f,
                    "    at {:>6.1} s: {:>6} (longest {:.1} ms; longest wait before being written {:.1} ms)",
                    (w * SLOW_WINDOW_MS) as f64 / 1000.0,
                    s.requests,
                    ms(s.longest_us),
                    ms(s.longest_unsent_us)
                )?;
            }
        }
        writeln!(f, "  reads answered with siblings {}", self.sibling_reads)?;
        let errs: u64 = self.errors.values().sum();
        write!(f, "  errors {errs}")?;
        for (k, v) in &self.errors {
            write!(f, "  {k}={v}")?;
        }
        writeln!(f)?;
        write!(
            f,
            "RESULT ops_per_s={:.1} p50_ms={:.3} p99_ms={:.3} p999_ms={:.3} errors={errs}",
            self.ops_per_s(),
            self.all.value_at_quantile(0.5) as f64 / 1000.0,
            self.all.value_at_quantile(0.99) as f64 / 1000.0,
            self.all.value_at_quantile(0.999) as f64 / 1000.0,
        )?;
        if let Some(w) = &self.wakeups {
            write!(f, " wakeup_late_p999_ms={:.3}", w.value_at_quantile(0.999) as f64 / 1000.0)?;
        }
        if a.slow_threshold_us().is_some() {
            write!(
                f,
                " slow={} slow_windows={} slow_top3_pct={:.1}",
                self.slow_requests(),
                self.slow.len(),
                self.slow_top_pct()
            )?;
        }
        Ok(())
    }
}

struct WorkerResult {
    all: Histogram<u64>,
    reads: Histogram<u64>,
    writes: Histogram<u64>,
    errors: BTreeMap<String, u64>,
    sibling_reads: u64,
    slow: Slow,
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, LATENCY_US_MAX, 3)?)
}

/// Runs the load and reports.
pub async fn run(args: BenchArgs) -> anyhow::Result<BenchReport> {
    anyhow::ensure!(!args.targets.is_empty(), "no targets");
    anyhow::ensure!(
        (1..=CONCURRENCY_MAX).contains(&args.concurrency),
        "concurrency 1..={CONCURRENCY_MAX}"
    );
    anyhow::ensure!((1..=KEYS_MAX).contains(&args.keys), "keys 1..={KEYS_MAX}");
    anyhow::ensure!(
        (1..=DURATION_S_MAX).contains(&args.duration_s),
        "duration 1..={DURATION_S_MAX} s"
    );
    anyhow::ensure!((0.0..=1.0).contains(&args.read_ratio), "read ratio 0..=1");
    if let Some(r) = args.rate {
        anyhow::ensure!(r > 0.0, "rate must be positive");
    }
    anyhow::ensure!(
        args.slow_ms.is_finite() && args.slow_ms >= 0.0,
        "slow-ms must be 0 (off) or a positive number of milliseconds"
    );
    anyhow::ensure!(
        args.pace_quantum_us <= PACE_QUANTUM_US_MAX,
        "pace quantum 0..={PACE_QUANTUM_US_MAX} us"
    );
    let contexts: Arc<Vec<Mutex<Option<String>>>> =
        Arc::new((0..args.keys).map(|_| Mutex::new(None)).collect());
    let value = Bytes::from(vec![b'x'; args.value_bytes]);
    anyhow::ensure!(args.warmup_s <= DURATION_S_MAX, "warm-up 0..={DURATION_S_MAX} s");
    // Redis keeps no contexts: there is nothing to prime.
    if !args.no_prime && args.protocol == Protocol::Http {
        prime(&args, &contexts).await?;
    }
    let started = Instant::now();
    let measured = started + Duration::from_secs(args.warmup_s);
    let deadline = measured + Duration::from_secs(args.duration_s);
    let mut tasks = Vec::new();
    let (tickets, queue) = tokio::sync::mpsc::unbounded_channel();
    let queue = args.rate.is_some().then(|| Arc::new(tokio::sync::Mutex::new(queue)));
    for w in 0..args.concurrency {
        let (contexts, value, args) = (contexts.clone(), value.clone(), args.clone());
        let queue = queue.clone();
        tasks.push(tokio::spawn(async move {
            worker(w, contexts, value, args, queue, measured, deadline).await
        }));
    }
    let mut pacer = None;
    if let Some(rate) = args.rate {
        let interval = Duration::try_from_secs_f64(1.0 / rate)
            .map_err(|_| anyhow::anyhow!("rate {rate} ops/s is too low"))?;
        let (done, wakeups) = tokio::sync::oneshot::channel();
        let late = histogram()?;
        std::thread::Builder::new().name("bench-pacer".into()).spawn(move || {
            let quantum = Duration::from_micros(args.pace_quantum_us);
            let _ = done.send(pace(started, measured, interval, quantum, deadline, tickets, late));
        })?;
        pacer = Some(wakeups);
    } else {
        drop(tickets);
    }
    let mut all = histogram()?;
    let mut reads = histogram()?;
    let mut writes = histogram()?;
    let mut errors = BTreeMap::new();
    let mut sibling_reads = 0;
    let mut slow = Slow::new();
    for t in tasks {
        let r = t.await??;
        all.add(&r.all)?;
        reads.add(&r.reads)?;
        writes.add(&r.writes)?;
        for (k, v) in r.errors {
            *errors.entry(k).or_insert(0) += v;
        }
        sibling_reads += r.sibling_reads;
        for (w, s) in r.slow {
            slow.entry(w).or_default().add(s);
        }
    }
    let elapsed = Instant::now().saturating_duration_since(measured);
    let wakeups = match pacer {
        Some(w) => Some(w.await?),
        None => None,
    };
    Ok(BenchReport { args, elapsed, all, reads, writes, errors, sibling_reads, wakeups, slow })
}

/// Reads every key once, `concurrency` at a time, and keeps the contexts the reads return, so
/// that the run's first write to each key supersedes what the store already holds, as a client
/// that reads before it writes would. Without it a fresh load generator against a store that an
/// earlier run filled writes blind: every key it touches gets a sibling, and the run measures a
/// heavier workload (a half-rate run after a peak run answered 18% of its reads with siblings,
/// against 0.3% in the peak run). Not counted; stops after [`PRIME_S_MAX`] seconds, leaving the
/// keys it did not reach without a context.
async fn prime(args: &BenchArgs, contexts: &Arc<Vec<Mutex<Option<String>>>>) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(PRIME_S_MAX);
    let hosts = hosts(args);
    let mut tasks = Vec::new();
    for w in 0..args.concurrency.min(args.keys) {
        let (contexts, hosts, step) = (contexts.clone(), hosts.clone(), args.concurrency);
        tasks.push(tokio::spawn(async move {
            let mut conns: Vec<Option<RawConn>> = hosts.iter().map(|_| None).collect();
            for k in (w..contexts.len()).step_by(step) {
                if Instant::now() >= deadline {
                    break;
                }
                let slot = k % hosts.len();
                let request = get_request(k, &hosts[slot]);
                let outcome =
                    send(Protocol::Http, &mut conns[slot], &hosts[slot], request.as_bytes(), &[])
                        .await;
                remember(&contexts[k], &outcome);
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(())
}

/// What one request came to: the status and the context header, or the kind of failure.
type Outcome = Result<(u16, Option<String>), String>;

/// Sends one request within [`REQUEST_TIMEOUT_MS`]; a connection that failed or timed out is
/// dropped, so the next request on it dials afresh. A Redis answer's status is 200 for a value,
/// 404 for none, 204 for `+OK` and 500 for an error reply.
async fn send(
    protocol: Protocol,
    conn: &mut Option<RawConn>,
    host: &str,
    head: &[u8],
    body: &[u8],
) -> Outcome {
    let timeout = Duration::from_millis(REQUEST_TIMEOUT_MS);
    let answer = async {
        match protocol {
            Protocol::Http => exchange(conn, host, head, body).await,
            Protocol::Redis => exchange_redis(conn, host, head, body).await.map(|s| (s, None)),
        }
    };
    let outcome = match tokio::time::timeout(timeout, answer).await {
        Ok(Ok(r)) => return Ok(r),
        Ok(Err(e)) => Err(format!("transport:{}", kind(&e.to_string()))),
        Err(_) => Err("timeout".to_string()),
    };
    *conn = None;
    outcome
}

/// Keeps the context an answer carried for its key, as the next write to that key will send.
fn remember(context: &Mutex<Option<String>>, outcome: &Outcome) {
    if let Ok((200 | 204 | 300 | 404, Some(c))) = outcome {
        if let Ok(mut slot) = context.lock() {
            *slot = Some(c.clone());
        }
    }
}

/// The targets as `host:port`.
fn hosts(args: &BenchArgs) -> Vec<String> {
    args.targets
        .iter()
        .map(|t| t.trim_start_matches("http://").trim_end_matches('/').to_string())
        .collect()
}

/// The request head of a read of key number `k`.
fn get_request(k: usize, host: &str) -> String {
    format!("GET /kv/bench-{k} HTTP/1.1\r\nhost: {host}\r\n\r\n")
}

/// Open loop: hands out one ticket per request, each stamped with the moment it was due, into
/// one queue that every idle worker takes from (a pool of connections, as a client population
/// uses: a request goes out on whichever connection is free, so one slow answer holds up only its
/// own request), from a thread of its own. A request counts from its due moment, so everything
/// after it is charged to the run: the pacer's own lateness, waiting for a free connection, the
/// system's answer (the intended-start accounting that avoids coordinated omission).
///
/// The pacer sleeps on the operating system's timer (tens of microseconds), not tokio's (whole
/// milliseconds, which would release each millisecond's requests together), but no more often
/// than once per `quantum`: each wake-up hands out every ticket that has fallen due. At high
/// rates a wake-up per ticket would cost the machine two thread switches per request in the load
/// generator alone (at 10 k ops/s a quarter of a CPU on this project's 2-core machine, taken
/// from the cluster it measures); a ticket held back by the quantum still counts from when it was
/// due. How late each sleep ended (from `measured` on) goes into `late`. Ends at the deadline,
/// which also ends the workers, and returns `late`.
fn pace(
    started: Instant,
    measured: Instant,
    interval: Duration,
    quantum: Duration,
    deadline: Instant,
    tickets: tokio::sync::mpsc::UnboundedSender<Instant>,
    mut late: Histogram<u64>,
) -> Histogram<u64> {
    let mut due = started;
    let mut woke = started;
    while due < deadline {
        let now = Instant::now();
        if now < due {
            let target = due.max(woke + quantum);
            std::thread::sleep(target.saturating_duration_since(now));
            woke = Instant::now();
            if target >= measured {
                let us = woke.saturating_duration_since(target).as_micros() as u64;
                late.saturating_record(us.clamp(1, LATENCY_US_MAX));
            }
        }
        let now = Instant::now();
        while due <= now && due < deadline {
            if tickets.send(due).is_err() {
                return late;
            }
            due += interval;
        }
    }
    late
}

/// The queue of tickets the workers share.
type Tickets = Arc<tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<Instant>>>;

async fn worker(
    w: usize,
    contexts: Arc<Vec<Mutex<Option<String>>>>,
    value: Bytes,
    args: BenchArgs,
    tickets: Option<Tickets>,
    measured: Instant,
    deadline: Instant,
) -> anyhow::Result<WorkerResult> {
    let mut rng = SmallRng::seed_from_u64(args.seed.wrapping_mul(1_000_003).wrapping_add(w as u64));
    let mut res = WorkerResult {
        all: histogram()?,
        reads: histogram()?,
        writes: histogram()?,
        errors: BTreeMap::new(),
        sibling_reads: 0,
        slow: Slow::new(),
    };
    let slow_us = args.slow_threshold_us();
    let mut i = w;
    let hosts = hosts(&args);
    let mut conns: Vec<Option<RawConn>> = hosts.iter().map(|_| None).collect();
    loop {
        // Open loop: a request counts from its ticket (see `pace`); closed loop: from now.
        let begin = match &tickets {
            Some(queue) => match queue.lock().await.recv().await {
                Some(ticket) => ticket,
                None => break,
            },
            None => Instant::now(),
        };
        if Instant::now() >= deadline {
            break;
        }
        i = i.wrapping_add(1);
        let k = rng.random_range(0..args.keys);
        let is_read = rng.random_bool(args.read_ratio);
        let slot = i % args.targets.len();
        let request = if args.protocol == Protocol::Redis {
            redis_request(k, is_read, value.len())
        } else if is_read {
            get_request(k, &hosts[slot])
        } else {
            let ctx = contexts[k].lock().ok().and_then(|c| c.clone());
            let ctx = ctx.map(|c| format!("{CONTEXT_HEADER}: {c}\r\n")).unwrap_or_default();
            format!(
                "PUT /kv/bench-{k} HTTP/1.1\r\nhost: {}\r\ncontent-length: {}\r\n{ctx}\r\n",
                hosts[slot],
                value.len()
            )
        };
        let body: &[u8] = if is_read { &[] } else { &value };
        let unsent = begin.elapsed().as_micros() as u64;
        let outcome =
            send(args.protocol, &mut conns[slot], &hosts[slot], request.as_bytes(), body).await;
        let us = begin.elapsed().as_micros() as u64;
        remember(&contexts[k], &outcome);
        // Warm-up requests keep contexts current but are not counted.
        if begin < measured {
            continue;
        }
        match outcome {
            Ok((200 | 204 | 300 | 404, _)) => {
                let us = us.clamp(1, LATENCY_US_MAX);
                res.all.saturating_record(us);
                if slow_us.is_some_and(|t| us > t) {
                    let window = begin.saturating_duration_since(measured).as_millis() as u64
                        / SLOW_WINDOW_MS;
                    res.slow.entry(window).or_default().add(SlowWindow {
                        requests: 1,
                        longest_us: us,
                        longest_unsent_us: unsent,
                    });
                }
                if is_read {
                    res.reads.saturating_record(us);
                    res.sibling_reads += u64::from(matches!(outcome, Ok((300, _))));
                } else {
                    res.writes.saturating_record(us);
                }
            }
            Ok((status, _)) => {
                let kind = match args.protocol {
                    Protocol::Http => format!("http_{status}"),
                    Protocol::Redis => "redis_error".to_string(),
                };
                *res.errors.entry(kind).or_insert(0) += 1
            }
            Err(k) => *res.errors.entry(k).or_insert(0) += 1,
        }
    }
    Ok(res)
}

fn kind(e: &str) -> &'static str {
    if e.contains("refused") {
        "refused"
    } else if e.contains("reset") {
        "reset"
    } else {
        "other"
    }
}

/// One keep-alive connection of the load generator.
struct RawConn {
    stream: tokio::net::TcpStream,
    buf: BytesMut,
}

/// Connects `conn` to `host` unless it is connected, and writes `parts` with one call.
async fn connect_and_write<'c>(
    conn: &'c mut Option<RawConn>,
    host: &str,
    parts: &[&[u8]],
) -> std::io::Result<&'c mut RawConn> {
    use tokio::io::AsyncWriteExt;
    if conn.is_none() {
        let stream = tokio::net::TcpStream::connect(host).await?;
        stream.set_nodelay(true)?;
        *conn = Some(RawConn { stream, buf: BytesMut::with_capacity(8 * 1024) });
    }
    let Some(c) = conn.as_mut() else {
        return Err(std::io::Error::new(std::io::ErrorKind::NotConnected, "no connection"));
    };
    let mut filled = parts.iter().filter(|p| !p.is_empty());
    match (filled.next(), filled.next()) {
        (None, _) => {}
        (Some(only), None) => c.stream.write_all(only).await?,
        _ => c.stream.write_all(&parts.concat()).await?,
    }
    Ok(c)
}

/// Sends one request on `conn` (connecting first if needed) and reads the answer's status and
/// context header; the body is read and dropped.
async fn exchange(
    conn: &mut Option<RawConn>,
    host: &str,
    head: &[u8],
    body: &[u8],
) -> std::io::Result<(u16, Option<String>)> {
    use tokio::io::AsyncReadExt;
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let c = connect_and_write(conn, host, &[head, body]).await?;
    let head_end = loop {
        if let Some(p) = c.buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        if c.buf.len() > RESPONSE_HEAD_BYTES_MAX {
            return Err(bad("response head too large"));
        }
        if c.stream.read_buf(&mut c.buf).await? == 0 {
            return Err(bad("connection closed"));
        }
    };
    let text = std::str::from_utf8(&c.buf[..head_end]).map_err(|_| bad("head not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad("no status"))?;
    let mut length = 0usize;
    let mut context = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().map_err(|_| bad("bad content-length"))?;
        } else if name.eq_ignore_ascii_case(CONTEXT_HEADER) {
            context = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(bad("chunked responses are not supported"));
        }
    }
    if length > RESPONSE_BODY_BYTES_MAX {
        return Err(bad("response body too large"));
    }
    while c.buf.len() < head_end + length {
        if c.stream.read_buf(&mut c.buf).await? == 0 {
            return Err(bad("connection closed mid-body"));
        }
    }
    c.buf.advance(head_end + length);
    Ok((status, context))
}

/// The RESP command for key number `k`: `GET`, or the head of a `SET` whose `value_bytes`-long
/// value follows it (then `\r\n`, see [`exchange_redis`]).
fn redis_request(k: usize, is_read: bool, value_bytes: usize) -> String {
    let key = format!("bench-{k}");
    if is_read {
        format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len())
    } else {
        format!("*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${value_bytes}\r\n", key.len())
    }
}

/// Sends one RESP command on `conn` (connecting first if needed; a non-empty `body` is a `SET`'s
/// value and is followed by its `\r\n`) and reads the one answer: `+OK` (204), a bulk string
/// (200, read and dropped), a null bulk string (404) or an error reply (500). Anything else, or
/// an answer over [`RESPONSE_BODY_BYTES_MAX`], is an error and the connection is dropped.
async fn exchange_redis(
    conn: &mut Option<RawConn>,
    host: &str,
    head: &[u8],
    body: &[u8],
) -> std::io::Result<u16> {
    use tokio::io::AsyncReadExt;
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let tail: &[u8] = if body.is_empty() { &[] } else { b"\r\n" };
    let c = connect_and_write(conn, host, &[head, body, tail]).await?;
    let line_end = loop {
        if let Some(p) = c.buf.windows(2).position(|w| w == b"\r\n") {
            break p;
        }
        if c.buf.len() > RESPONSE_HEAD_BYTES_MAX {
            return Err(bad("reply line too long"));
        }
        if c.stream.read_buf(&mut c.buf).await? == 0 {
            return Err(bad("connection closed"));
        }
    };
    let (status, payload) = match c.buf.first() {
        Some(b'+') => (204, 0),
        Some(b'-') => (500, 0),
        Some(b'$') => {
            let len = std::str::from_utf8(&c.buf[1..line_end])
                .ok()
                .and_then(|l| l.parse::<i64>().ok())
                .ok_or_else(|| bad("bad bulk length"))?;
            match usize::try_from(len) {
                Ok(n) if n <= RESPONSE_BODY_BYTES_MAX => (200, n + 2),
                Ok(_) => return Err(bad("reply too large")),
                Err(_) if len == -1 => (404, 0),
                Err(_) => return Err(bad("bad bulk length")),
            }
        }
        _ => return Err(bad("unexpected reply type")),
    };
    let end = line_end + 2 + payload;
    while c.buf.len() < end {
        if c.stream.read_buf(&mut c.buf).await? == 0 {
            return Err(bad("connection closed mid-reply"));
        }
    }
    c.buf.advance(end);
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Reads one RESP array of bulk strings from `buf`/`s`; None when the peer closed.
    async fn read_command(
        s: &mut tokio::net::TcpStream,
        buf: &mut BytesMut,
    ) -> Option<Vec<Vec<u8>>> {
        async fn line(s: &mut tokio::net::TcpStream, buf: &mut BytesMut) -> Option<String> {
            loop {
                if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
                    let l = String::from_utf8(buf[..p].to_vec()).ok()?;
                    buf.advance(p + 2);
                    return Some(l);
                }
                if s.read_buf(buf).await.ok()? == 0 {
                    return None;
                }
            }
        }
        let n: usize = line(s, buf).await?.strip_prefix('*')?.parse().ok()?;
        let mut parts = Vec::new();
        for _ in 0..n {
            let len: usize = line(s, buf).await?.strip_prefix('$')?.parse().ok()?;
            while buf.len() < len + 2 {
                if s.read_buf(buf).await.ok()? == 0 {
                    return None;
                }
            }
            parts.push(buf[..len].to_vec());
            buf.advance(len + 2);
        }
        Some(parts)
    }

    /// A tiny in-memory RESP server (GET and SET only), standing in for redis-server.
    async fn fake_redis() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let store: Arc<Mutex<HashMap<Vec<u8>, Vec<u8>>>> = Arc::default();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut buf = BytesMut::new();
                    while let Some(cmd) = read_command(&mut s, &mut buf).await {
                        let reply = match cmd.as_slice() {
                            [c, k] if c == b"GET" => match store.lock().expect("store lock").get(k)
                            {
                                Some(v) => {
                                    let mut r = format!("${}\r\n", v.len()).into_bytes();
                                    r.extend_from_slice(v);
                                    r.extend_from_slice(b"\r\n");
                                    r
                                }
                                None => b"$-1\r\n".to_vec(),
                            },
                            [c, k, v] if c == b"SET" => {
                                store.lock().expect("store lock").insert(k.clone(), v.clone());
                                b"+OK\r\n".to_vec()
                            }
                            _ => b"-ERR unknown command\r\n".to_vec(),
                        };
                        if s.write_all(&reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    /// A server that answers every command with `reply`, once per connection.
    async fn canned(reply: &'static [u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = BytesMut::new();
                    if read_command(&mut s, &mut buf).await.is_some() {
                        let _ = s.write_all(reply).await;
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn redis_answers_map_to_statuses() {
        let addr = fake_redis().await;
        let mut conn = None;
        let get = redis_request(7, true, 0);
        let set = redis_request(7, false, 3);
        let missing = exchange_redis(&mut conn, &addr, get.as_bytes(), &[]).await.expect("get");
        assert_eq!(missing, 404);
        let stored = exchange_redis(&mut conn, &addr, set.as_bytes(), b"abc").await.expect("set");
        assert_eq!(stored, 204);
        let found = exchange_redis(&mut conn, &addr, get.as_bytes(), &[]).await.expect("get");
        assert_eq!(found, 200);
        // The bulk string was consumed whole: the connection is still in step.
        let again = exchange_redis(&mut conn, &addr, get.as_bytes(), &[]).await.expect("get");
        assert_eq!(again, 200);
        let err = canned(b"-ERR wrong\r\n").await;
        let status = exchange_redis(&mut None, &err, get.as_bytes(), &[]).await.expect("answer");
        assert_eq!(status, 500);
    }

    #[tokio::test]
    async fn malformed_redis_replies_are_errors_not_panics() {
        let get = redis_request(1, true, 0);
        for reply in [
            &b":1\r\n"[..],
            b"$x\r\n",
            b"$-2\r\n",
            b"$99999999999999999999\r\n",
            b"$1000000000\r\n",
            b"$5\r\nab",
        ] {
            let addr = canned(reply).await;
            let got = exchange_redis(&mut None, &addr, get.as_bytes(), &[]).await;
            assert!(got.is_err(), "{:?} gave {got:?}", String::from_utf8_lossy(reply));
        }
        // And through `send`, which drops the broken connection.
        let addr = canned(b"?\r\n").await;
        let mut conn = None;
        let outcome = send(Protocol::Redis, &mut conn, &addr, get.as_bytes(), &[]).await;
        assert_eq!(outcome, Err("transport:other".to_string()));
        assert!(conn.is_none());
    }

    #[tokio::test]
    async fn load_generator_drives_a_redis_target_open_loop() {
        let addr = fake_redis().await;
        let args = BenchArgs {
            targets: vec![addr],
            protocol: Protocol::Redis,
            concurrency: 4,
            keys: 20,
            value_bytes: 100,
            read_ratio: 0.5,
            duration_s: 1,
            warmup_s: 0,
            rate: Some(300.0),
            no_prime: false,
            pace_quantum_us: DEFAULT_PACE_QUANTUM_US,
            seed: 3,
            slow_ms: 0.0,
        };
        // A slow threshold that is not a number of milliseconds is refused before any request.
        for slow_ms in [-1.0, f64::NAN, f64::INFINITY] {
            let bad = BenchArgs { slow_ms, ..args.clone() };
            let err = run(bad).await.expect_err("a bad --slow-ms is refused");
            assert!(err.to_string().contains("slow-ms"), "{err}");
        }
        let report = run(args).await.expect("bench runs");
        assert!(report.errors.is_empty(), "{report}");
        assert!(!report.reads.is_empty() && !report.writes.is_empty(), "{report}");
        assert!(!report.to_string().contains("slow="), "--slow-ms off adds nothing: {report}");
        // Open loop at 300 ops/s for 1 s: one ticket per 1/rate, so some requests and never
        // more than 300, and a pacer histogram.
        let sent = report.all.len();
        assert!(sent > 0 && sent <= 300, "{sent} requests at 300 ops/s for 1 s: {report}");
        assert!(report.wakeups.is_some(), "{report}");
        assert!(report.to_string().contains("redis targets"), "{report}");
    }
}
