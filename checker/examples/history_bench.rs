//! Throughput and peak memory of the history checkers on generated histories.
//!
//! `cargo run --release -p dynamo-checker --example history_bench` runs every case in a child
//! process (so each peak-memory figure is its own) and prints one row per case. Run one case
//! with `history_bench case CHECKER OPS KEYS PROCESSES`.
//!
//! Per case: the history is generated, written as EDN, then parsed and checked; `parse_ms` and
//! `check_ms` are timed separately, `ops/s` counts history records checked per second of
//! checking, and `peak_mb` is the process's peak resident set (VmHWM, reset after generation
//! where the kernel allows), which includes the history itself.

use std::process::Command;
use std::time::{Duration, Instant};

use dynamo_checker::history::gen::{
    convergence_history, register_history, set_history, sibling_history, RegisterGen, WorkloadGen,
};
use dynamo_checker::history::linear::{self, Budget, Model};
use dynamo_checker::history::parse::{read_history_str, write_edn};
use dynamo_checker::history::siblings::Quorum;
use dynamo_checker::history::{convergence, set_full, siblings, Op, Validity};

/// Each case's search gives up (answers unknown) after this long.
const CASE_TIME_LIMIT: Duration = Duration::from_secs(10);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("case") {
        let num = |i: usize| args.get(i).and_then(|s| s.parse::<usize>().ok()).unwrap_or(1);
        let checker = args.get(2).cloned().unwrap_or_default();
        run_case(&checker, num(3), num(4), num(5));
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let sizes: &[usize] = if quick { &[1_000, 10_000] } else { &[1_000, 10_000, 100_000] };
    let keys = [1usize, 10, 100, 1_000];
    println!(
        "{:<13} {:>7} {:>5} {:>5} {:>9} {:>9} {:>11} {:>8} {:>8}",
        "checker", "ops", "keys", "procs", "parse_ms", "check_ms", "ops/s", "peak_mb", "verdict"
    );
    let exe = std::env::current_exe().expect("own path");
    for checker in ["cas-register", "register", "set", "siblings", "convergence"] {
        for &ops in sizes {
            for &k in &keys {
                let procs: &[usize] = if checker == "cas-register" { &[5, 50] } else { &[20] };
                for &p in procs {
                    if checker == "set" && ops / k > 10_000 {
                        // Every read returns the whole set: the history itself grows
                        // quadratically, so one huge set is skipped.
                        continue;
                    }
                    let out = Command::new(&exe)
                        .args(["case", checker, &ops.to_string(), &k.to_string(), &p.to_string()])
                        .output()
                        .expect("child runs");
                    print!("{}", String::from_utf8_lossy(&out.stdout));
                }
            }
        }
    }
}

fn generate(checker: &str, ops: usize, keys: usize, processes: usize) -> Vec<Op> {
    let w = WorkloadGen { seed: 42, ops, keys, processes, info_percent: 5, read_percent: 30 };
    match checker {
        "cas-register" | "register" => register_history(&RegisterGen {
            seed: 42,
            ops,
            keys,
            processes,
            info_percent: 5,
            cas: checker == "cas-register",
        }),
        "set" => set_history(&WorkloadGen { read_percent: 10, ..w }),
        "siblings" => sibling_history(&w),
        _ => convergence_history(&w, 5),
    }
}

fn run_case(checker: &str, ops: usize, keys: usize, processes: usize) {
    let mut text = Vec::new();
    write_edn(&generate(checker, ops, keys, processes), &mut text).expect("write to memory");
    let text = String::from_utf8(text).expect("EDN is UTF-8");
    // Forget the peak reached while generating (Linux: writing 5 to clear_refs resets VmHWM).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let start = Instant::now();
    let history = read_history_str(&text).expect("generated history parses");
    drop(text);
    let parsed = Instant::now();
    let budget =
        Budget { deadline: Some(Instant::now() + CASE_TIME_LIMIT), cache_entries_max: None };
    let quorum = Quorum { n: 3, r: 2, w: 2, sloppy: false };
    let validity = match checker {
        "cas-register" => linear::check(&history, Model::CasRegister, budget).map(|r| r.validity),
        "register" => linear::check(&history, Model::Register, budget).map(|r| r.validity),
        "set" => set_full::check(&history).map(|r| r.validity).map_err(Into::into),
        "siblings" => {
            siblings::check(&history, Some(quorum)).map(|r| r.validity).map_err(Into::into)
        }
        _ => convergence::check(&history).map(|r| r.validity).map_err(Into::into),
    };
    let done = Instant::now();
    let check_s = (done - parsed).as_secs_f64();
    let verdict = match validity {
        Ok(Validity::Valid) => "valid",
        Ok(Validity::Invalid) => "INVALID",
        Ok(Validity::Unknown) => "unknown",
        Err(_) => "error",
    };
    println!(
        "{:<13} {:>7} {:>5} {:>5} {:>9.1} {:>9.1} {:>11.0} {:>8.1} {:>8}",
        checker,
        ops,
        keys,
        processes,
        (parsed - start).as_secs_f64() * 1e3,
        check_s * 1e3,
        history.len() as f64 / check_s.max(1e-9),
        peak_kb() as f64 / 1024.0,
        verdict
    );
}

fn peak_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
