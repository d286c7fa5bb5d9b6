//! Counters and latency histograms, rendered in the Prometheus text format for `/metrics`.
//!
//! HTTP request latencies are counted per (operation, outcome) straight into the fixed buckets
//! they are exported in as Prometheus histograms, so that recording one is a few additions and a
//! scrape copies a few counters under the lock the requests share. Transport counters are atomics
//! the connection tasks bump; the protocol's own counters come from the core's `Stats` through a
//! driver snapshot.

use crate::driver::NodeStatus;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Highest latency recorded, in microseconds (larger values are clamped).
pub const LATENCY_US_MAX: u64 = 120_000_000;
/// Prometheus bucket bounds, in microseconds (exported in seconds).
const BUCKETS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];
/// Sibling-count buckets for reads.
const SIBLING_BUCKETS: [u64; 6] = [0, 1, 2, 3, 5, 10];

/// Transport counters, shared by the connection tasks and the driver.
#[derive(Debug, Default)]
pub struct NetStats {
    /// Frames written to peers.
    pub frames_sent: AtomicU64,
    /// Frames read from peers.
    pub frames_received: AtomicU64,
    /// Messages dropped on the way to a peer: its outbound queue was full, the peer was unknown,
    /// the connection broke before they were written, or they were oversized (below).
    pub outbound_dropped: AtomicU64,
    /// Of those, messages that encode larger than the peer frame bound: a key whose siblings,
    /// merged from concurrent writes, outgrew what one frame carries (`siblings_max` versions of
    /// the largest value). Such a key cannot be replicated or handed off until a write resolves
    /// its siblings.
    pub outbound_oversized: AtomicU64,
    /// Peer messages dropped because the driver's input queue was full.
    pub inbound_dropped: AtomicU64,
    /// Handshakes refused (cluster, version, node id, ring or limits mismatch, a wrong proof of
    /// the secret, a hello that does not decode, or one that did not come in time).
    pub handshakes_refused: AtomicU64,
    /// Peer connections closed unheard: their address had too many in their handshake.
    pub handshakes_busy_address: AtomicU64,
    /// Connections dropped for an oversized or undecodable frame.
    pub bad_frames: AtomicU64,
    /// Outbound connections established.
    pub connects: AtomicU64,
    /// Outbound connection attempts that failed.
    pub connect_failures: AtomicU64,
}

/// HTTP-side metrics of one node.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, &'static str), LatencyBuckets>>,
    siblings: Mutex<BTreeMap<u64, u64>>,
}

impl Metrics {
    /// Records one HTTP request of `op` ending in `outcome` after `latency_us`.
    pub fn record(&self, op: &'static str, outcome: &'static str, latency_us: u64) {
        let Ok(mut map) = self.requests.lock() else { return };
        map.entry((op, outcome)).or_default().record(latency_us);
    }

    /// Records how many siblings a successful read returned.
    pub fn record_siblings(&self, count: usize) {
        if let Ok(mut m) = self.siblings.lock() {
            *m.entry(count as u64).or_default() += 1;
        }
    }

    /// The Prometheus text exposition of everything.
    pub fn render(&self, net: &NetStats, status: Option<&NodeStatus>) -> String {
        let mut out = String::new();
        self.render_requests(&mut out);
        self.render_siblings(&mut out);
        let counters: [(&str, &str, &AtomicU64); 10] = [
            ("dynamo_peer_frames_sent_total", "Frames written to peers.", &net.frames_sent),
            ("dynamo_peer_frames_received_total", "Frames read from peers.", &net.frames_received),
            (
                "dynamo_peer_outbound_dropped_total",
                "Peer messages dropped: queue full, peer unknown, connection broken or oversized.",
                &net.outbound_dropped,
            ),
            (
                "dynamo_peer_outbound_oversized_total",
                "Peer messages dropped for being larger than peers take: over the frame bound, or \
                 a sequence over the peer sequence bound (a key's merged siblings outgrew them).",
                &net.outbound_oversized,
            ),
            (
                "dynamo_peer_inbound_dropped_total",
                "Peer messages dropped: the driver's input queue was full, by count or by bytes.",
                &net.inbound_dropped,
            ),
            (
                "dynamo_peer_handshakes_refused_total",
                "Peer handshakes refused.",
                &net.handshakes_refused,
            ),
            (
                "dynamo_peer_connections_busy_address_total",
                "Peer connections closed unheard: their address had too many in their handshake.",
                &net.handshakes_busy_address,
            ),
            (
                "dynamo_peer_bad_frames_total",
                "Connections dropped for bad frames.",
                &net.bad_frames,
            ),
            ("dynamo_peer_connects_total", "Outbound peer connections made.", &net.connects),
            (
                "dynamo_peer_connect_failures_total",
                "Outbound connection attempts failed.",
                &net.connect_failures,
            ),
        ];
        for (name, help, c) in counters {
            counter(&mut out, name, help, c.load(Ordering::Relaxed));
        }
        // Whether the driver answered this scrape in time: without it every metric below is
        // missing, which a dashboard would otherwise show as a quiet node rather than a stuck one.
        let name = "dynamo_driver_answered";
        let help = "1 if the driver answered this scrape in time (the metrics below need it).";
        let up = u8::from(status.is_some());
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {up}");
        if let Some(s) = status {
            let name = "dynamo_sync_duration_seconds";
            let _ = writeln!(out, "# HELP {name} Store sync (fsync) duration.");
            let _ = writeln!(out, "# TYPE {name} histogram");
            s.sync_us.write(&mut out, name, "");
            let st = &s.stats;
            for (name, help, v) in [
                (
                    "dynamo_hints_stored_total",
                    "Hint writes: as a fallback, or handing on a hint for a removed node.",
                    st.hints_stored,
                ),
                (
                    "dynamo_hints_delivered_total",
                    "Hints delivered and removed.",
                    st.hints_delivered,
                ),
                (
                    "dynamo_hints_rehomed_total",
                    "Hints for a node no longer in the cluster, handed to their key's replicas.",
                    st.hints_rehomed,
                ),
                ("dynamo_read_repairs_total", "Read-repair writes.", st.read_repairs),
                ("dynamo_forwarded_total", "Client requests forwarded.", st.forwarded),
                ("dynamo_rejected_total", "Client requests refused by the core.", st.rejected),
                (
                    "dynamo_store_errors_total",
                    "Store reads or writes that failed.",
                    st.store_errors,
                ),
                (
                    "dynamo_stale_responses_total",
                    "Stale peer answers dropped.",
                    st.stale_responses_dropped,
                ),
                (
                    "dynamo_malformed_peer_messages_total",
                    "Peer messages naming a node outside the ring, or carrying versions outside the client limits, dropped.",
                    st.malformed_dropped,
                ),
                ("dynamo_syncs_total", "Store syncs (fsync).", s.syncs),
                ("dynamo_sync_failures_total", "Store syncs that failed.", s.sync_failures),
                ("dynamo_driver_batches_total", "Driver batches.", s.batches),
                ("dynamo_driver_inputs_total", "Driver inputs.", s.inputs),
            ] {
                counter(&mut out, name, help, v);
            }
            for (name, help, v) in [
                ("dynamo_hints_pending", "Hints held for other nodes.", s.hints_pending),
                ("dynamo_ops_in_progress", "Operations being coordinated.", s.ops_in_progress),
                (
                    "dynamo_forwards_in_progress",
                    "Client requests forwarded to a coordinator and not yet finished.",
                    s.forwards_in_progress,
                ),
                ("dynamo_suspected_nodes", "Nodes currently suspected.", s.suspected.len()),
            ] {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
            }
        }
        out
    }

    fn render_requests(&self, out: &mut String) {
        let name = "dynamo_request_duration_seconds";
        let _ = writeln!(out, "# HELP {name} HTTP request latency by operation and outcome.");
        let _ = writeln!(out, "# TYPE {name} histogram");
        // Every request takes this lock to record its latency: copy the counters, and write the
        // text after letting go.
        let series: Vec<_> = {
            let Ok(map) = self.requests.lock() else { return };
            map.iter().map(|(key, buckets)| (*key, buckets.clone())).collect()
        };
        for ((op, outcome), buckets) in series {
            let labels = format!("op=\"{op}\",outcome=\"{outcome}\",");
            buckets.write(out, name, &labels);
        }
    }

    fn render_siblings(&self, out: &mut String) {
        let name = "dynamo_read_siblings";
        let _ = writeln!(out, "# HELP {name} Values returned per successful read.");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let Ok(m) = self.siblings.lock() else { return };
        let total: u64 = m.values().sum();
        let sum: u64 = m.iter().map(|(k, v)| k * v).sum();
        for b in SIBLING_BUCKETS {
            let n: u64 = m.range(..=b).map(|(_, v)| v).sum();
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {total}\n{name}_sum {sum}\n{name}_count {total}"
        );
    }
}

/// Latencies counted into the fixed Prometheus buckets (0.5 ms to 10 s), with their count and
/// sum.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LatencyBuckets {
    /// How many latencies fell in each bucket: above the previous bound, at most this one.
    within: [u64; BUCKETS_US.len()],
    /// How many latencies were recorded, the ones above every bound included.
    count: u64,
    /// Their sum, in microseconds.
    sum_us: u64,
}

impl LatencyBuckets {
    /// Counts one latency of `us` microseconds (clamped to 1..=[`LATENCY_US_MAX`]).
    pub fn record(&mut self, us: u64) {
        let us = us.clamp(1, LATENCY_US_MAX);
        let i = BUCKETS_US.partition_point(|&bound| bound < us);
        if let Some(n) = self.within.get_mut(i) {
            *n += 1;
        }
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }

    /// Writes the histogram `name`, in seconds, with `labels` (empty, or ending with a comma).
    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let mut at_most = 0;
        for (bound, n) in BUCKETS_US.iter().zip(self.within) {
            at_most += n;
            let le = *bound as f64 / 1e6;
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{le}\"}} {at_most}");
        }
        let count = self.count;
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {count}");
        let bare = labels.trim_end_matches(',');
        let braces = if bare.is_empty() { String::new() } else { format!("{{{bare}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum_us as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_cumulative_buckets() {
        let m = Metrics::default();
        m.record("get", "ok", 300);
        m.record("get", "ok", 3_000);
        m.record_siblings(2);
        let text = m.render(&NetStats::default(), None);
        assert!(text.contains(
            "dynamo_request_duration_seconds_bucket{op=\"get\",outcome=\"ok\",le=\"0.0005\"} 1"
        ));
        assert!(text.contains("dynamo_request_duration_seconds_count{op=\"get\",outcome=\"ok\"} 2"));
        assert!(text.contains("dynamo_read_siblings_bucket{le=\"2\"} 1"));
        assert!(text.contains("\ndynamo_driver_answered 0\n"), "no status: the driver is stuck");
        assert!(!text.contains("dynamo_syncs_total"), "{text}");
    }

    #[test]
    fn renders_sync_durations_without_labels() {
        let mut h = LatencyBuckets::default();
        h.record(400);
        h.record(7_000);
        let status = NodeStatus {
            node: 1,
            incarnation: 1,
            members: vec![1],
            suspected: vec![],
            ops_in_progress: 0,
            forwards_in_progress: 3,
            hints_pending: 0,
            sync: "always".into(),
            syncs: 2,
            sync_failures: 0,
            batches: 2,
            inputs: 2,
            sync_us: h,
            stats: Default::default(),
        };
        let text = Metrics::default().render(&NetStats::default(), Some(&status));
        assert!(text.contains("dynamo_sync_duration_seconds_bucket{le=\"0.0005\"} 1"), "{text}");
        assert!(text.contains("dynamo_sync_duration_seconds_bucket{le=\"0.01\"} 2"), "{text}");
        assert!(text.contains("dynamo_sync_duration_seconds_count 2"), "{text}");
        assert!(text.contains("\ndynamo_driver_answered 1\n"), "{text}");
        assert!(text.contains("# TYPE dynamo_forwards_in_progress gauge\n"), "{text}");
        assert!(text.contains("\ndynamo_forwards_in_progress 3\n"), "{text}");
    }

    /// A latency equal to a bound counts in that bound's bucket; one microsecond more, in the
    /// next; one above every bound only in `+Inf`; zero and huge latencies are clamped.
    #[test]
    fn a_bound_belongs_to_its_own_bucket() {
        let mut b = LatencyBuckets::default();
        for us in [0, 500, 501, 1_000, 10_000_000, 10_000_001, u64::MAX] {
            b.record(us);
        }
        let mut text = String::new();
        b.write(&mut text, "x", "");
        for line in [
            "x_bucket{le=\"0.0005\"} 2\n",
            "x_bucket{le=\"0.001\"} 4\n",
            "x_bucket{le=\"0.0025\"} 4\n",
            "x_bucket{le=\"10\"} 5\n",
            "x_bucket{le=\"+Inf\"} 7\n",
            "x_count 7\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        let sum_us = 1 + 500 + 501 + 1_000 + 10_000_000 + 10_000_001 + LATENCY_US_MAX;
        assert!(text.contains(&format!("x_sum {}\n", sum_us as f64 / 1e6)), "{text}");
    }
}
