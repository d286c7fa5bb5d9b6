//! Running one check of a [`Setup`] and judging each property against its expected outcome.
//!
//! A run is *complete* when the strategy is exhaustive (BFS or DFS), no depth bound cut the
//! search and no timeout stopped it. The exit status follows from the report: 0 when every
//! property met its expectation and the run was complete, 1 when a property did not, 2 when the
//! run was incomplete.

use crate::properties::{specs, Expect};
use crate::setup::{DynamoAction, DynamoModel, DynamoState, Setup};
use stateright::{Checker, Expectation, HasDiscoveries, Model, Path};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// How the state space is searched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Breadth-first: shortest counterexamples, most memory.
    Bfs,
    /// Depth-first: least memory.
    Dfs,
    /// Random walks: never complete, for configurations too large to exhaust.
    Sim,
}

impl Strategy {
    /// Parses a command-line name.
    pub fn from_name(s: &str) -> Option<Strategy> {
        match s {
            "bfs" => Some(Strategy::Bfs),
            "dfs" => Some(Strategy::Dfs),
            "sim" => Some(Strategy::Sim),
            _ => None,
        }
    }
}

/// Options of a run that are not bounds of the model.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Search strategy.
    pub strategy: Strategy,
    /// Seed of the simulation strategy.
    pub seed: u64,
    /// Checker threads.
    pub threads: usize,
    /// Depth bound, if any (a run that reaches it is incomplete).
    pub max_depth: Option<usize>,
    /// Wall-clock bound, if any (a run that reaches it is incomplete).
    pub timeout: Option<Duration>,
    /// Print a progress line to stderr every this often, if set.
    pub progress: Option<Duration>,
    /// State budget, if any (a run that reaches it is incomplete).
    pub max_states: Option<usize>,
    /// Stop at the first counterexample to a property expected to hold.
    pub fail_fast: bool,
    /// Stop as soon as any of these properties has a discovery.
    pub stop_at: Option<BTreeSet<&'static str>>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            strategy: Strategy::Dfs,
            seed: 0,
            threads: 1,
            max_depth: None,
            timeout: None,
            progress: None,
            fail_fast: false,
            stop_at: None,
            max_states: None,
        }
    }
}

/// A discovery path.
pub type Trace = Path<DynamoState, DynamoAction>;

/// One property's result.
#[derive(Clone, Debug)]
pub struct PropertyResult {
    /// The property.
    pub name: &'static str,
    /// Always or sometimes.
    pub expectation: Expectation,
    /// What was expected.
    pub expect: Expect,
    /// Whether a discovery (counterexample or example) was found.
    pub found: bool,
    /// The discovery's path.
    pub path: Option<Trace>,
    /// Whether the search was exhaustive (otherwise a missing discovery proves nothing).
    pub complete: bool,
}

impl PropertyResult {
    /// Whether the outcome met the expectation. An incomplete search that has not (yet) found an
    /// expected discovery is inconclusive, not a failure; the run then exits 2, not 1.
    pub fn ok(&self) -> bool {
        self.expect.met_by(self.found) || self.inconclusive()
    }

    /// Whether an expected discovery is missing only because the search was cut short.
    pub fn inconclusive(&self) -> bool {
        !self.complete && !self.found && matches!(self.expect, Expect::Reached | Expect::Violated)
    }

    /// The observed outcome, in words.
    pub fn observed(&self) -> &'static str {
        match (&self.expectation, self.found) {
            (Expectation::Sometimes, true) => "reached",
            (Expectation::Sometimes, false) => "not reached",
            (_, true) => "violated",
            (_, false) => "holds",
        }
    }
}

/// Everything a run produced.
#[derive(Debug)]
pub struct Report {
    /// What was checked.
    pub setup: Setup,
    /// Per property, in specification order.
    pub results: Vec<PropertyResult>,
    /// States generated, repeats included.
    pub states: usize,
    /// Distinct states.
    pub unique_states: usize,
    /// Deepest path explored.
    pub max_depth: usize,
    /// Wall-clock time.
    pub elapsed: Duration,
    /// Whether the search was exhaustive.
    pub complete: bool,
    /// Peak resident memory of this process so far, in KiB (Linux only).
    pub peak_rss_kib: Option<u64>,
    /// Whether the run was told to stop at a first discovery (outcomes of the other properties
    /// are then partial).
    pub stopped_early: bool,
}

impl Report {
    /// Whether every property met its expectation.
    pub fn all_met(&self) -> bool {
        self.results.iter().all(PropertyResult::ok)
    }

    /// 0: all expectations met and complete; 1: some expectation failed; 2: incomplete.
    pub fn exit_code(&self) -> i32 {
        if !self.all_met() {
            1
        } else if !self.complete {
            2
        } else {
            0
        }
    }

    /// The result of `name`.
    pub fn result(&self, name: &str) -> Option<&PropertyResult> {
        self.results.iter().find(|r| r.name == name)
    }

    /// Names of the always-properties that were violated.
    pub fn violated(&self) -> Vec<&'static str> {
        self.results
            .iter()
            .filter(|r| r.expectation == Expectation::Always && r.found)
            .map(|r| r.name)
            .collect()
    }

    /// States per second.
    pub fn rate(&self) -> f64 {
        self.states as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Cuts a discovery path at its first discovering state. Stateright records the path of the
/// latest state that violated (or met) a property, which for an always-property that stays
/// violated is usually far past the step that broke it.
fn first_discovery(model: &DynamoModel, spec: &crate::properties::Spec, path: Trace) -> Trace {
    let steps = path.clone().into_vec();
    let Some(at) = steps.iter().position(|(state, _)| spec.discovered(model, state)) else {
        return path;
    };
    let Some((init, _)) = steps.first() else { return path };
    let actions: Vec<_> = steps[..at].iter().filter_map(|(_, a)| a.clone()).collect();
    Path::from_actions(model, init.clone(), &actions).unwrap_or(path)
}

/// Peak resident set size of this process (VmHWM), in KiB.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Checks `setup` with `opts`.
pub fn check(setup: &Setup, opts: &RunOptions) -> anyhow::Result<Report> {
    let model = setup.model()?;
    let symmetric = model.init_states().iter().any(|s| s.history.symmetry.is_some());
    let mut builder = model.checker().threads(opts.threads.max(1));
    if let Some(d) = opts.max_depth {
        builder = builder.target_max_depth(d);
    }
    let timeout = match (opts.strategy, opts.timeout) {
        (_, Some(t)) => Some(t),
        (Strategy::Sim, None) => Some(Duration::from_secs(30)),
        _ => None,
    };
    if let Some(t) = timeout {
        builder = builder.timeout(t);
    }
    if let Some(n) = opts.max_states {
        builder = builder.target_state_count(n);
    }
    if symmetric {
        // Used by DFS only; stateright's BFS ignores it.
        builder = builder.symmetry_fn(crate::symmetry::representative);
    }
    let mut stop_at = opts.stop_at.clone().unwrap_or_default();
    if opts.fail_fast {
        stop_at
            .extend(specs(setup).into_iter().filter(|s| s.expect == Expect::Holds).map(|s| s.name));
    }
    if !stop_at.is_empty() {
        builder = builder.finish_when(HasDiscoveries::AnyOf(stop_at.clone()));
    }
    let start = Instant::now();
    let (states, unique, depth, discoveries) = match opts.strategy {
        Strategy::Bfs => drive(builder.spawn_bfs(), start, timeout, opts),
        Strategy::Dfs => drive(builder.spawn_dfs(), start, timeout, opts),
        Strategy::Sim => simulate(&setup.model()?, opts, start, timeout),
    };
    let elapsed = start.elapsed();
    let stopped_early = stop_at.iter().any(|n| discoveries.contains_key(n));
    let timed_out = timeout.is_some_and(|t| elapsed + Duration::from_millis(50) >= t)
        || opts.max_states.is_some_and(|n| states >= n);
    let depth_cut = opts.max_depth.is_some_and(|d| depth >= d);
    let complete = opts.strategy != Strategy::Sim && !timed_out && !depth_cut && !stopped_early;
    let mut discoveries = discoveries;
    let model = setup.model()?;
    let results = specs(setup)
        .into_iter()
        .map(|s| {
            let found =
                discoveries.remove(s.name).map(|path| path.map(|p| first_discovery(&model, &s, p)));
            PropertyResult {
                name: s.name,
                expectation: s.expectation,
                expect: s.expect,
                found: found.is_some(),
                path: found.flatten(),
                complete,
            }
        })
        .collect();
    Ok(Report {
        setup: setup.clone(),
        results,
        states,
        unique_states: unique,
        max_depth: depth,
        elapsed,
        complete,
        peak_rss_kib: peak_rss_kib(),
        stopped_early,
    })
}

type Discoveries = std::collections::HashMap<&'static str, Option<Trace>>;
type Outcome = (usize, usize, usize, Discoveries);

fn drive(
    mut checker: impl Checker<DynamoModel>,
    start: Instant,
    timeout: Option<Duration>,
    opts: &RunOptions,
) -> Outcome {
    // Poll the worker threads rather than `is_done`, which stays false after a timeout. A
    // single-threaded DFS only looks at its timeout when it runs out of work, so past the deadline
    // this stops waiting and leaves the workers to die with the process.
    let handles = checker.handles();
    let mut last = Instant::now();
    while handles.iter().any(|h| !h.is_finished()) {
        if timeout.is_some_and(|t| start.elapsed() >= t) {
            return (
                checker.state_count(),
                checker.unique_state_count(),
                checker.max_depth(),
                discoveries(&checker),
            );
        }
        std::thread::sleep(Duration::from_millis(20));
        let Some(every) = opts.progress else { continue };
        if last.elapsed() >= every {
            last = Instant::now();
            let secs = start.elapsed().as_secs_f64().max(1e-9);
            eprintln!(
                "  progress: {:>10} states  {:>10} unique  {:>9.0} states/s  depth {:>3}  {:>6.1}s",
                checker.state_count(),
                checker.unique_state_count(),
                checker.state_count() as f64 / secs,
                checker.max_depth(),
                secs
            );
        }
    }
    for h in handles {
        let _ = h.join();
    }
    (
        checker.state_count(),
        checker.unique_state_count(),
        checker.max_depth(),
        discoveries(&checker),
    )
}

/// The discoveries with their paths. Stateright 0.31's simulation checker can fail to rebuild a
/// path from its action indices (it panics); such a discovery is kept, without a path.
fn discoveries(checker: &impl Checker<DynamoModel>) -> Discoveries {
    let model = checker.model();
    let names: Vec<&'static str> = model.properties().iter().map(|p| p.name).collect();
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut out = Discoveries::new();
    for name in names {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| checker.discovery(name))) {
            Ok(Some(path)) => {
                out.insert(name, Some(path));
            }
            Ok(None) => {}
            Err(_) => {
                out.insert(name, None);
            }
        }
    }
    std::panic::set_hook(hook);
    out
}

/// Random walks over the model with a seeded generator: each walk starts from the initial state
/// and follows uniformly chosen enabled actions within the boundary until a dead end, a repeated
/// state on the walk, or the depth bound (100 unless `max_depth` says otherwise); every state
/// visited is checked against every property. Stateright's own simulation checker is not used
/// because, in 0.31, it can fail to rebuild a discovery's path from its action indices.
fn simulate(
    model: &DynamoModel,
    opts: &RunOptions,
    start: Instant,
    timeout: Option<Duration>,
) -> Outcome {
    use std::hash::BuildHasher;
    let depth_max = opts.max_depth.unwrap_or(100);
    let deadline = timeout.unwrap_or(Duration::from_secs(30));
    let properties = model.properties();
    let mut rng = opts.seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut next_random = move || {
        // splitmix64
        rng = rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let hasher = std::collections::hash_map::RandomState::new();
    let fingerprint = |s: &DynamoState| hasher.hash_one(s);
    let mut seen = std::collections::HashSet::new();
    let mut found: std::collections::HashMap<&'static str, Option<Trace>> = Default::default();
    let (mut states, mut depth_seen) = (0usize, 0usize);
    let mut last = Instant::now();
    let inits = model.init_states();
    while start.elapsed() < deadline && opts.max_states.is_none_or(|n| states < n) {
        let Some(init) = inits.first().cloned() else { break };
        let mut state = init.clone();
        let mut taken = Vec::new();
        let mut on_walk = std::collections::HashSet::new();
        loop {
            states += 1;
            seen.insert(fingerprint(&state));
            depth_seen = depth_seen.max(taken.len());
            for p in properties.iter() {
                if found.contains_key(p.name) {
                    continue;
                }
                let hit = match p.expectation {
                    Expectation::Always => !(p.condition)(model, &state),
                    _ => (p.condition)(model, &state),
                };
                if hit {
                    found.insert(p.name, Path::from_actions(model, init.clone(), &taken));
                }
            }
            if taken.len() >= depth_max || !on_walk.insert(fingerprint(&state)) {
                break;
            }
            let mut actions = Vec::new();
            model.actions(&state, &mut actions);
            let mut next = None;
            while !actions.is_empty() {
                let i = (next_random() % actions.len() as u64) as usize;
                let a = actions.swap_remove(i);
                if let Some(s) = model.next_state(&state, a.clone()) {
                    if model.within_boundary(&s) {
                        next = Some((a, s));
                        break;
                    }
                }
            }
            let Some((a, s)) = next else { break };
            taken.push(a);
            state = s;
        }
        if let Some(every) = opts.progress {
            if last.elapsed() >= every {
                last = Instant::now();
                eprintln!(
                    "  progress: {states:>10} states  {:>10} unique  depth {depth_seen:>3}  {:>6.1}s",
                    seen.len(),
                    start.elapsed().as_secs_f64()
                );
            }
        }
        if opts.stop_at.as_ref().is_some_and(|s| s.iter().any(|n| found.contains_key(n))) {
            break;
        }
    }
    (states, seen.len(), depth_seen, found)
}
