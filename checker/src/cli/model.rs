//! `dynamo-check model | mutants | explore`: run the stateright model from the command line.
//!
//! `model` prints a progress line during long runs, then one row per property (expected and
//! observed outcome), the counterexample trace of every unexpected discovery, the run's bounds,
//! totals, time and peak memory. Its exit status is [`Report::exit_code`].

use crate::actors::Durability;
use crate::run::{check, Report, RunOptions, Strategy};
use crate::setup::{NetworkKind, Setup, NAMES, SYNC_FLAWS};
use crate::trace;
use clap::Args;
use dynamo_model::mutant::Mutant;
use stateright::{Checker, Expectation, Model};
use std::time::Duration;

/// Flags of `dynamo-check model` (and the model-shaping subset used by `explore`).
#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// Named configuration: tiny, canonical, twins (canonical with interchangeable clients), capped
    /// (contexts cut to 2 entries), forwarded (requests through a node outside the preference
    /// list) or large.
    #[arg(long, default_value = "tiny")]
    pub config: String,
    /// Sloppy quorum with hinted handoff (the default of every named configuration).
    #[arg(long, conflicts_with = "strict")]
    pub sloppy: bool,
    /// Strict quorum: only the preference list is used.
    #[arg(long)]
    pub strict: bool,
    /// Replicas per key.
    #[arg(long)]
    pub n: Option<usize>,
    /// Read quorum.
    #[arg(long)]
    pub r: Option<usize>,
    /// Write quorum.
    #[arg(long)]
    pub w: Option<usize>,
    /// Nodes that may be down at the same time.
    #[arg(long)]
    pub crashes: Option<usize>,
    /// Network: ordered, unordered, duplicating or lossy.
    #[arg(long)]
    pub network: Option<String>,
    /// Most messages in flight at once.
    #[arg(long)]
    pub in_flight_max: Option<usize>,
    /// Most entries a context handed to a client may have (at least 2). Below the default (256)
    /// contexts can be cut, and the properties follow lineage (see `checker/README.md`).
    #[arg(long)]
    pub context_entries_max: Option<usize>,
    /// Let ticks start a new ping or handoff while the previous round trip is in flight.
    #[arg(long)]
    pub overlapping_round_trips: bool,
    /// Run stateright's linearizability tester over a register view (it multiplies states by
    /// the interleavings of client invocations and returns, so it is off by default).
    #[arg(long)]
    pub linearizability: bool,
    /// Also crash nodes that have no volatile state to lose (equivalent to a delay; off by default).
    #[arg(long)]
    pub idle_crashes: bool,
    /// Send the liveness probe as Ping and Pong messages instead of the probe timer.
    #[arg(long)]
    pub ping_messages: bool,
    /// Drop replies their receiver can only ignore as soon as they are dead (sound, but frees
    /// in-flight slots, so it explores more under the same bound).
    #[arg(long)]
    pub drop_dead_replies: bool,
    /// Deliver client replies as ordinary messages instead of in the step that sends them.
    #[arg(long)]
    pub lazy_replies: bool,
    /// Do not merge states that differ only in a renaming of interchangeable clients.
    #[arg(long)]
    pub no_symmetry: bool,
    /// Search strategy: bfs, dfs or sim.
    #[arg(long, default_value = "dfs")]
    pub strategy: String,
    /// Seed of the simulation strategy.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Checker threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Depth bound (a run that reaches it is incomplete).
    #[arg(long)]
    pub max_depth: Option<usize>,
    /// Time bound in seconds (a run that reaches it is incomplete; simulation defaults to 30).
    #[arg(long)]
    pub timeout_s: Option<u64>,
    /// State budget (a run that reaches it is incomplete).
    #[arg(long)]
    pub max_states: Option<usize>,
    /// Writes become durable only at each node's syncs, as the node makes them under `always`:
    /// copies for peers leave at once, every other effect waits for what it depends on, a crash
    /// loses what no sync covered and the restart takes a new incarnation.
    #[arg(long)]
    pub unsynced: bool,
    /// With --unsynced, a flaw to run on purpose: keep-incarnation or answer-before-sync (stops
    /// at the first counterexample, as a mutant does).
    #[arg(long, requires = "unsynced")]
    pub sync_flaw: Option<String>,
    /// Seeded protocol bug to run (see `dynamo-check mutants`).
    #[arg(long)]
    pub mutant: Option<String>,
    /// Stop at the first counterexample to a property expected to hold (default with --mutant).
    #[arg(long)]
    pub fail_fast: bool,
    /// Print every discovery's trace, expected ones included.
    #[arg(long)]
    pub traces: bool,
}

/// Flags of `dynamo-check explore`.
#[derive(Args, Clone, Debug)]
pub struct ExploreArgs {
    /// The model to explore.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Address to serve on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub addr: String,
}

impl ModelArgs {
    /// The setup these flags describe.
    pub fn setup(&self) -> Result<Setup, String> {
        let mut s = Setup::named(&self.config).ok_or_else(|| {
            format!("unknown config {:?}; known: {}", self.config, NAMES.join(", "))
        })?;
        if self.strict {
            s.sloppy = false;
        }
        if self.sloppy {
            s.sloppy = true;
        }
        if let Some(n) = self.n {
            s.n = n;
        }
        if let Some(r) = self.r {
            s.r = r;
        }
        if let Some(w) = self.w {
            s.w = w;
        }
        if let Some(c) = self.crashes {
            s.crashes = c;
        }
        if let Some(m) = self.in_flight_max {
            s.in_flight_max = m;
        }
        if let Some(m) = self.context_entries_max {
            s.context_entries_max = m;
        }
        if let Some(net) = &self.network {
            s.network = NetworkKind::from_name(net).ok_or_else(|| {
                format!("unknown network {net:?}; known: ordered, unordered, duplicating, lossy")
            })?;
        }
        s.one_round_trip &= !self.overlapping_round_trips;
        s.linearizability |= self.linearizability;
        s.skip_idle_crashes &= !self.idle_crashes;
        s.probe_timers &= !self.ping_messages;
        s.drop_dead_replies |= self.drop_dead_replies;
        s.eager_replies &= !self.lazy_replies;
        s.symmetry &= !self.no_symmetry;
        if self.unsynced {
            let flaw = match &self.sync_flaw {
                None => None,
                Some(name) => {
                    Some(SYNC_FLAWS.iter().find(|(n, _)| n == name).map(|(_, f)| *f).ok_or_else(
                        || {
                            let known: Vec<&str> = SYNC_FLAWS.iter().map(|(n, _)| *n).collect();
                            format!("unknown sync flaw {name:?}; known: {}", known.join(", "))
                        },
                    )?)
                }
            };
            s.durability = Durability::Syncs(flaw);
        }
        if let Some(m) = &self.mutant {
            s.mutant = Some(
                Mutant::from_name(m)
                    .ok_or_else(|| format!("unknown mutant {m:?}; see `dynamo-check mutants`"))?,
            );
        }
        s.check().map_err(|e| e.to_string())?;
        Ok(s)
    }

    /// The run options these flags describe.
    pub fn options(&self) -> Result<RunOptions, String> {
        Ok(RunOptions {
            strategy: Strategy::from_name(&self.strategy)
                .ok_or_else(|| format!("unknown strategy {:?}", self.strategy))?,
            seed: self.seed,
            threads: self.threads,
            max_depth: self.max_depth,
            timeout: self.timeout_s.map(Duration::from_secs),
            progress: Some(Duration::from_secs(2)),
            fail_fast: self.fail_fast || self.mutant.is_some() || self.sync_flaw.is_some(),
            max_states: self.max_states,
            stop_at: None,
        })
    }
}

/// Runs `dynamo-check model`; returns the process exit status.
pub fn run_model(args: &ModelArgs) -> i32 {
    let (setup, opts) = match args.setup().and_then(|s| Ok((s, args.options()?))) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("dynamo-check model: {e}");
            return 2;
        }
    };
    println!("checking configuration {:?}:", setup.name);
    print!("{setup}");
    let report = match check(&setup, &opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dynamo-check model: {e}");
            return 2;
        }
    };
    print!("{}", render_report(&report, args.traces));
    report.exit_code()
}

/// The property table, unexpected traces, bounds and totals of a report.
pub fn render_report(report: &Report, all_traces: bool) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "\nproperties:");
    let _ =
        writeln!(out, "  {:<9} {:<56} {:<12} {:<12} ", "kind", "property", "expected", "observed");
    for r in &report.results {
        let kind = if r.expectation == Expectation::Sometimes { "sometimes" } else { "always" };
        let mark = if r.inconclusive() {
            "inconclusive"
        } else if r.ok() {
            "ok"
        } else {
            "UNEXPECTED"
        };
        let _ = writeln!(
            out,
            "  {kind:<9} {:<56} {:<12} {:<12} {mark}",
            r.name,
            r.expect.to_string(),
            r.observed()
        );
    }
    if let Ok(model) = report.setup.model() {
        for r in &report.results {
            // Traces of unexpected outcomes always; of every always-property with --traces.
            let show = !r.ok() || (all_traces && r.expectation != Expectation::Sometimes);
            if let (true, Some(path)) = (show, &r.path) {
                let _ = writeln!(out, "\ncounterexample for \"{}\":", r.name);
                out.push_str(&trace::render(&model, path));
            }
        }
    }
    if report.stopped_early {
        let _ = writeln!(
            out,
            "  (fail-fast: the search stopped at the first counterexample to a property expected \
             to hold; outcomes of the others are partial)"
        );
    }
    if !report.setup.linearizability {
        let _ = writeln!(out, "  (linearizability not tested in this run: add --linearizability)");
    }
    let _ = writeln!(out, "\nbounds:");
    out.push_str(&report.setup.to_string());
    let _ = writeln!(out, "\ntotals:");
    let _ = writeln!(
        out,
        "  {} states, {} unique, max depth {}, {:.2}s, {:.0} states/s, peak memory {}",
        report.states,
        report.unique_states,
        report.max_depth,
        report.elapsed.as_secs_f64(),
        report.rate(),
        report.peak_rss_kib.map(|k| format!("{:.1} MiB", k as f64 / 1024.0)).unwrap_or("?".into())
    );
    let verdict = match report.exit_code() {
        0 => "PASS: every property met its expectation; the search was complete",
        1 => "FAIL: a property did not meet its expectation",
        _ => "INCOMPLETE: a bound or timeout stopped the search",
    };
    let _ = writeln!(out, "  {verdict}");
    out
}

/// `dynamo-check mutants`: one mutant name per line.
pub fn list_mutants() -> String {
    Mutant::ALL.iter().map(|m| format!("{}\n", m.name())).collect()
}

/// `dynamo-check explore`: serves stateright's Explorer on `addr` until killed.
pub fn explore(args: &ExploreArgs) -> i32 {
    let setup = match args.model.setup() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dynamo-check explore: {e}");
            return 2;
        }
    };
    let model = match setup.model() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("dynamo-check explore: {e}");
            return 2;
        }
    };
    println!("Explorer for configuration {:?} at http://{}/", setup.name, args.addr);
    let checker = model.checker().threads(args.model.threads.max(1)).serve(args.addr.as_str());
    checker.join_handles_forever();
    0
}

/// Keeps the serving process alive.
trait Forever {
    fn join_handles_forever(self);
}

impl<C: Checker<crate::setup::DynamoModel>> Forever for std::sync::Arc<C> {
    fn join_handles_forever(self) {
        loop {
            std::thread::park();
        }
    }
}
