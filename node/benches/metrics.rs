//! Criterion benchmark of `/metrics`: rendering the request-latency histograms of a node that has
//! served a few hundred thousand requests. Part of the render holds the lock that every request
//! takes to record its latency (`cargo bench -p dynamo-node --bench metrics`).

use criterion::{criterion_group, criterion_main, Criterion};
use dynamo_node::metrics::{Metrics, NetStats};
use std::hint::black_box;

/// A node's metrics after `per_series` requests in each of six (operation, outcome) series, with
/// latencies spread from 50 us to about 50 ms (a fixed pseudo-random sequence).
fn populated(per_series: u64) -> Metrics {
    let m = Metrics::default();
    let series = [
        ("get", "ok"),
        ("get", "not_found"),
        ("get", "unavailable"),
        ("put", "ok"),
        ("put", "indeterminate"),
        ("delete", "ok"),
    ];
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for (op, outcome) in series {
        for _ in 0..per_series {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Mostly sub-millisecond, with a tail three orders of magnitude long.
            let us = 50 + (x % 1000) * (1 + (x >> 60)) * (1 + (x >> 62) * 15);
            m.record(op, outcome, us);
        }
        m.record_siblings((x % 3) as usize);
    }
    m
}

fn render(c: &mut Criterion) {
    let m = populated(50_000);
    let net = NetStats::default();
    c.bench_function("metrics/render", |b| b.iter(|| black_box(m.render(black_box(&net), None))));
}

criterion_group!(benches, render);
criterion_main!(benches);
