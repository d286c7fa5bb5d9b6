//! In-process clusters on loopback: round trips, siblings, sloppy quorum with hinted handoff, and
//! every bad-input case of the HTTP API.

mod common;

use bytes::Bytes;
use common::{configs, eventually, Cluster};
use dynamo_node::client::{HttpClient, Overrides};
use hyper::Method;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A bad request: what it is, its URL, headers, body, and the status it must get.
type Case = (&'static str, String, Vec<(&'static str, String)>, Vec<u8>, u16);
/// A refused request of any method: what it tests, the method, the URL and the headers.
type MethodCase<'a> = (&'static str, Method, String, Vec<(&'static str, &'a str)>);

const NO: Overrides = Overrides { r: None, w: None, timeout_ms: None };

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_delete_round_trip_from_any_node() {
    // Each way a node can run: its own one-thread runtime, its own pool, the caller's runtime.
    let c = Cluster::start(3, |cfg| cfg.threads = [1, 2, 0][usize::from(cfg.id.0 - 1)]).await;
    let r = c.client.get(&c.url(1), b"k", NO).await.expect("get");
    assert_eq!(r.status, 404);
    let w = c.client.put(&c.url(1), b"k", None, Bytes::from("v1"), NO).await.expect("put");
    assert_eq!(w.status, 204, "{}", w.text());
    assert!(w.context.is_some());
    for i in 1..=3 {
        let r = c.client.get(&c.url(i), b"k", NO).await.expect("get");
        assert_eq!((r.status, r.values.clone()), (200, vec![b"v1".to_vec()]), "node {i}");
    }
    // Overwrite with the read's context: no siblings.
    let r = c.client.get(&c.url(2), b"k", NO).await.expect("get");
    let w = c
        .client
        .put(&c.url(2), b"k", r.context.as_deref(), Bytes::from("v2"), NO)
        .await
        .expect("put");
    assert_eq!(w.status, 204);
    let r = c.client.get(&c.url(3), b"k", NO).await.expect("get");
    assert_eq!(r.values, vec![b"v2".to_vec()]);
    // Plain (non-JSON) GET returns the raw value and the context header.
    let raw = c
        .client
        .send(Method::GET, &format!("{}/kv/k", c.url(1)), &[], Bytes::new())
        .await
        .expect("raw");
    assert_eq!((raw.status, &raw.body[..]), (200, &b"v2"[..]));
    assert!(raw.context.is_some());
    // Delete with the context, then it is gone.
    let d = c.client.delete(&c.url(3), b"k", r.context.as_deref(), NO).await.expect("delete");
    assert_eq!(d.status, 204);
    let r = c.client.get(&c.url(1), b"k", NO).await.expect("get");
    assert_eq!(r.status, 404);
    // Keys with awkward bytes survive the path encoding.
    let key = "a key/with ünïcode?&";
    let w = c.client.put(&c.url(1), key.as_bytes(), None, Bytes::from("x"), NO).await.expect("put");
    assert_eq!(w.status, 204);
    let r = c.client.get(&c.url(2), key.as_bytes(), NO).await.expect("get");
    assert_eq!(r.values, vec![b"x".to_vec()]);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_puts_make_siblings_and_merged_context_resolves_them() {
    let c = Cluster::start(3, |_| {}).await;
    let w = c.client.put(&c.url(1), b"s", None, Bytes::from("base"), NO).await.expect("put");
    let base = w.context;
    // Two clients write on the same context through different coordinators, at the same time.
    let (u2, u3) = (c.url(2), c.url(3));
    let (a, b) = tokio::join!(
        c.client.put(&u2, b"s", base.as_deref(), Bytes::from("left"), NO),
        c.client.put(&u3, b"s", base.as_deref(), Bytes::from("right"), NO),
    );
    assert_eq!(a.expect("a").status, 204);
    assert_eq!(b.expect("b").status, 204);
    let r = c.client.get(&c.url(1), b"s", Overrides { r: Some(3), ..NO }).await.expect("get");
    assert_eq!(r.status, 300, "siblings expected: {:?}", r.values);
    let mut vals = r.values.clone();
    vals.sort();
    assert_eq!(vals, vec![b"left".to_vec(), b"right".to_vec()]);
    // The multipart form lists both too.
    let raw = c
        .client
        .send(Method::GET, &format!("{}/kv/s?r=3", c.url(1)), &[], Bytes::new())
        .await
        .expect("raw");
    assert_eq!(raw.status, 300);
    let body = String::from_utf8_lossy(&raw.body);
    assert!(body.contains("left") && body.contains("right"));
    // A put with the merged context supersedes both.
    let w = c
        .client
        .put(&c.url(2), b"s", r.context.as_deref(), Bytes::from("merged"), NO)
        .await
        .expect("put");
    assert_eq!(w.status, 204);
    for i in 1..=3 {
        let r = c.client.get(&c.url(i), b"s", Overrides { r: Some(3), ..NO }).await.expect("get");
        assert_eq!((r.status, r.values), (200, vec![b"merged".to_vec()]), "node {i}");
    }
    c.shutdown().await;
}

/// A four-node cluster (short ticks) with node 4 stopped, and the keys written through node 1
/// with W = 3 meanwhile (each its own name as value); checks that some fallback then holds a
/// hint for node 4.
async fn hints_kept_for_node_4() -> (Cluster, Vec<String>) {
    let mut c = Cluster::start(4, |cfg| {
        cfg.params.timeouts.tick_ms = 200;
        cfg.params.timeouts.sloppy_retry_ms = 200;
    })
    .await;
    c.stop(4).await;
    let keys: Vec<String> = (0..16).map(|i| format!("h{i}")).collect();
    // Patient: on a busy machine, four nodes fsyncing may take more than a second for W = 3.
    let all = Overrides { w: Some(3), timeout_ms: Some(5_000), ..NO };
    // Node 1 coordinates the keys whose preference list holds it and forwards the others to the
    // list's first node it does not suspect. It suspects node 4 once a request forwarded there
    // goes unanswered, so a first round of writes (short timeouts; their outcome is not checked)
    // teaches it that node 4 is down. The same keys forward to the same nodes in both rounds.
    let short = Overrides { w: Some(3), timeout_ms: Some(300), ..NO };
    for k in &keys {
        let v = Bytes::from(k.clone());
        c.client.put(&c.url(1), k.as_bytes(), None, v, short).await.expect("answer");
    }
    // From then on, with a primary down, every write reaches W = 3 at the first try.
    for k in &keys {
        let (u, v) = (c.url(1), Bytes::from(k.clone()));
        let w = c.client.put(&u, k.as_bytes(), None, v, all).await.expect("put");
        assert_eq!(w.status, 204, "write {k} with node 4 down: {}", w.text());
    }
    let mut pending = 0;
    for i in 1..=3 {
        pending += c.metric(i, "dynamo_hints_pending").await.expect("metric");
    }
    assert!(pending > 0, "some write had node 4 as a primary, so a fallback holds a hint");
    (c, keys)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sloppy_quorum_stores_hints_and_handoff_delivers_them_after_restart() {
    let (mut c, keys) = hints_kept_for_node_4().await;
    c.restart(4).await;
    eventually("hints delivered and removed", || async {
        let mut pending = 0;
        let mut delivered = 0;
        for i in 1..=3 {
            pending += c.metric(i, "dynamo_hints_pending").await?;
            delivered += c.metric(i, "dynamo_hints_delivered_total").await?;
        }
        (pending == 0 && delivered > 0).then_some(())
    })
    .await;
    // Node 4 now holds, on its own, every key it is a primary for.
    for k in &keys {
        let ring = c
            .client
            .send(Method::GET, &format!("{}/ring?key={k}", c.url(1)), &[], Bytes::new())
            .await
            .expect("ring");
        let ring: serde_json::Value = serde_json::from_slice(&ring.body).expect("json");
        let prefs = ring["key"]["preference_list"].as_array().expect("prefs").clone();
        if prefs.iter().any(|p| p.as_u64() == Some(4)) {
            let r = c
                .client
                .get(&c.url(4), k.as_bytes(), Overrides { r: Some(1), ..NO })
                .await
                .expect("get");
            assert!(!r.values.is_empty(), "node 4 holds {k}");
            assert!(r.values.iter().all(|v| v == k.as_bytes()), "node 4 holds {k}");
        }
    }
    c.shutdown().await;
}

/// A node that stays down is taken out of the cluster: the others restart without it. The hints
/// they kept for it go to their keys' replicas instead (the key gets back the copy it lacked), and
/// none waits for the gone node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hints_for_a_node_taken_out_of_the_cluster_go_to_the_keys_replicas() {
    let (mut c, keys) = hints_kept_for_node_4().await;
    for i in 1..=3 {
        c.stop(i).await;
    }
    let Cluster { cfgs, dir, .. } = c;
    let gone = dynamo_model::ids::NodeId(4);
    let cfgs: Vec<_> = cfgs[..3]
        .iter()
        .cloned()
        .map(|mut cfg| {
            cfg.peers.remove(&gone);
            cfg.params.nodes.remove(&gone);
            cfg
        })
        .collect();
    let c = Cluster::launch(cfgs, dir, 3).await;
    c.wait_connected().await;
    eventually("hints rehomed, delivered and removed", || async {
        let (mut pending, mut rehomed) = (0, 0);
        for i in 1..=3 {
            pending += c.metric(i, "dynamo_hints_pending").await?;
            rehomed += c.metric(i, "dynamo_hints_rehomed_total").await?;
        }
        (pending == 0 && rehomed > 0).then_some(())
    })
    .await;
    // N = 3 of three nodes: each holds every key on its own (two blind writes of the same value
    // may stand as two siblings).
    for k in &keys {
        for i in 1..=3 {
            let one = Overrides { r: Some(1), ..NO };
            let r = c.client.get(&c.url(i), k.as_bytes(), one).await.expect("get");
            assert!(!r.values.is_empty(), "node {i} holds {k}");
            assert!(r.values.iter().all(|v| v == k.as_bytes()), "node {i} holds {k}");
        }
    }
    c.shutdown().await;
}

/// A key whose siblings, written on both sides of a partition, merge past what one peer frame
/// carries (`siblings_max` versions of the largest value): the messages that would carry them
/// are dropped and counted as oversized, not lost silently; a get with `r = 1` still answers from
/// the coordinator, and a put on its context resolves the key, which replicates again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn siblings_that_outgrow_a_peer_frame_are_counted_and_a_put_resolves_them() {
    // Frames of 2 x 64 KiB versions (and slack): three 60 KB values fit, four do not.
    let mut c = Cluster::start(3, |cfg| {
        cfg.params.limits.siblings_max = 2;
        cfg.params.limits.value_bytes_max = 64 << 10;
    })
    .await;
    let one = Overrides { w: Some(1), r: Some(1), ..NO };
    let value = |b: u8| Bytes::from(vec![b; 60_000]);
    // Two siblings written on node 1 alone, two on node 2 alone.
    c.stop(2).await;
    c.stop(3).await;
    for b in [b'a', b'b'] {
        let w = c.client.put(&c.url(1), b"big", None, value(b), one).await.expect("put");
        assert_eq!(w.status, 204, "{}", w.text());
    }
    c.stop(1).await;
    c.restart(2).await;
    for b in [b'c', b'd'] {
        let w = c.client.put(&c.url(2), b"big", None, value(b), one).await.expect("put");
        assert_eq!(w.status, 204, "{}", w.text());
    }
    c.restart(1).await;
    c.restart(3).await;
    c.wait_connected().await;
    // Node 1 merges all four; its read repair cannot carry them to the others.
    let all = Overrides { r: Some(3), ..NO };
    let r = c.client.get(&c.url(1), b"big", all).await.expect("get");
    assert_eq!((r.status, r.values.len()), (300, 4), "four siblings");
    eventually("oversized repairs counted", || async {
        (c.metric(1, "dynamo_peer_outbound_oversized_total").await? > 0).then_some(())
    })
    .await;
    let r = c.client.get(&c.url(1), b"big", one).await.expect("get");
    assert_eq!((r.status, r.values.len()), (300, 4), "node 1 holds all four");
    let w = c
        .client
        .put(
            &c.url(1),
            b"big",
            r.context.as_deref(),
            Bytes::from("one"),
            Overrides { w: Some(3), ..NO },
        )
        .await
        .expect("put");
    assert_eq!(w.status, 204, "the resolving write reaches every replica: {}", w.text());
    for i in 1..=3 {
        let r = c.client.get(&c.url(i), b"big", one).await.expect("get");
        assert_eq!((r.status, r.values), (200, vec![b"one".to_vec()]), "node {i}");
    }
    c.shutdown().await;
}

/// Writes in flight when a node is told to stop are answered, not left to time out: the node's
/// peer links stay up until its HTTP server has drained, so the replicas' acknowledgements
/// still arrive. (Before, the links closed at once and every write in flight ended 503 after its
/// timeout.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_in_flight_at_shutdown_are_answered() {
    let mut c = Cluster::start(3, |_| {}).await;
    // Longer than any healthy write, shorter than the shutdown grace (5 s).
    let patient = Overrides { timeout_ms: Some(4_500), ..NO };
    let answers = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for t in 0..16 {
        let (client, url, answers) = (c.client.clone(), c.url(1), answers.clone());
        writers.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..2_000 {
                let key = format!("s{t}-{i}");
                let v = Bytes::from_static(b"v");
                match client.put(&url, key.as_bytes(), None, v, patient).await {
                    Ok(w) => statuses.push((key, w.status, w.text())),
                    // The node no longer takes connections.
                    Err(_) => break,
                }
                answers.fetch_add(1, Ordering::Relaxed);
            }
            statuses
        }));
    }
    // Stop once the writers are well under way (each has a write out at any moment).
    eventually("writes under way", || async {
        (answers.load(Ordering::Relaxed) >= 64).then_some(())
    })
    .await;
    c.stop(1).await;
    let mut answered = 0;
    for w in writers {
        for (key, status, text) in w.await.expect("writer") {
            assert_eq!(status, 204, "write of {key}: {text}");
            answered += 1;
        }
    }
    assert!(answered >= 64, "the writers ran before the stop ({answered} answers)");
    c.shutdown().await;
}

/// Requests that would outlast the shutdown's grace period are answered 503 before it ends,
/// not cut off with the connection: a write that waits for replicas that are down (saying it may
/// or may not have happened), a read that waits likewise, a put whose body is still arriving
/// (nothing written; the connection closes), and a put whose body arrives late in the grace
/// period and then waits for the replicas (answered by the same deadline, counted from the
/// signal, not from when it began to wait).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_outlasting_the_shutdown_grace_are_answered_503() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = Cluster::start(3, |_| {}).await;
    c.stop(2).await;
    c.stop(3).await;
    // Far longer than the grace period: only the shutdown can end them in time.
    let patient = |n| Overrides { r: Some(n), w: Some(n), timeout_ms: Some(30_000) };
    let addr = c.cfgs[0].http_listen;
    // A put with a head and part of a body; once `rest_at` has a time, the rest is sent then.
    // Returns what came back.
    let slow_put = |path: &'static str, rest_at: tokio::sync::watch::Receiver<Option<Instant>>| {
        tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let head = format!("PUT {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n\r\nab");
            s.write_all(head.as_bytes()).await.expect("send a head and half the body");
            let mut rest_at = rest_at;
            let at = rest_at.wait_for(Option::is_some).await.ok().and_then(|at| *at);
            if let Some(at) = at {
                tokio::time::sleep_until(at.into()).await;
                let _ = s.write_all(b"cd").await;
            }
            let mut answer = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut answer)).await;
            String::from_utf8_lossy(&answer).to_string()
        })
    };
    let (never, never_rx) = tokio::sync::watch::channel(None);
    let (late, late_rx) = tokio::sync::watch::channel(None);
    let body_never = slow_put("/kv/never", never_rx);
    let body_late = slow_put("/kv/late?w=3&timeout_ms=30000", late_rx);
    let (client, url) = (c.client.clone(), c.url(1));
    let put =
        tokio::spawn(
            async move { client.put(&url, b"k", None, Bytes::from("v"), patient(3)).await },
        );
    let (client, url) = (c.client.clone(), c.url(1));
    let get = tokio::spawn(async move { client.get(&url, b"k", patient(3)).await });
    // Both the put and the get wait in the node for replicas; the raw connections, begun
    // first, are in by then (and get a moment more).
    eventually("the put and the get under way", || async {
        (c.metric(1, "dynamo_ops_in_progress").await? >= 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!put.is_finished() && !get.is_finished() && !body_never.is_finished());
    let stopped = Instant::now();
    // The late body arrives 3.5 s into the grace period, half a second before the deadline.
    late.send_replace(Some(stopped + Duration::from_millis(3_500)));
    c.stop(1).await;
    let waited = stopped.elapsed();
    drop(never);
    let shutting_down = "node shutting down before the answer";
    let put = put.await.expect("put task").expect("the put is answered");
    assert_eq!(put.status, 503, "{}", put.text());
    assert!(put.text().contains(shutting_down), "{}", put.text());
    assert!(put.text().contains("may or may not have happened"), "{}", put.text());
    let get = get.await.expect("get task").expect("the get is answered");
    assert_eq!(get.status, 503);
    let answer = body_never.await.expect("body task");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    assert!(answer.contains("shutting down before the body arrived"), "{answer:?}");
    // Whether its body made it before the deadline (then the answer is the put's) or not (a
    // slow machine: then it is the body's), a 503, not a cut connection.
    let answer = body_late.await.expect("late body task");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    assert!(answer.contains("node shutting down before the"), "{answer:?}");
    eprintln!("the stop took {waited:?}");
    c.shutdown().await;
}

/// With three nodes and one stopped, a write asking for W = 3 has no fallback to reach: it ends
/// 503, saying the write may or may not have happened (it did happen on the two live nodes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_short_of_w_is_indeterminate() {
    let mut c = Cluster::start(3, |_| {}).await;
    c.stop(3).await;
    let three = Overrides { w: Some(3), timeout_ms: Some(300), ..NO };
    let w = c.client.put(&c.url(1), b"k", None, Bytes::from("v"), three).await.expect("answer");
    assert_eq!(w.status, 503, "{}", w.text());
    assert!(w.text().contains("may or may not have happened"), "{}", w.text());
    let r = c.client.get(&c.url(2), b"k", Overrides { r: Some(2), ..NO }).await.expect("get");
    assert_eq!((r.status, r.values), (200, vec![b"v".to_vec()]), "the live replicas took it");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_4xx_and_changes_nothing() {
    let c = Cluster::start(3, |cfg| {
        cfg.params.limits.value_bytes_max = 1024;
        cfg.params.limits.key_bytes_max = 64;
    })
    .await;
    let u = c.url(1);
    let put = |path: String, headers: Vec<(&'static str, String)>, body: Vec<u8>| {
        let client = c.client.clone();
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            client.send(Method::PUT, &path, &h, Bytes::from(body)).await.expect("answer")
        }
    };
    let ctx = "x-dynamo-context";
    let cases: Vec<Case> = vec![
        ("context not base64", format!("{u}/kv/b"), vec![(ctx, "!!!".into())], b"v".to_vec(), 400),
        (
            "context not a context",
            format!("{u}/kv/b"),
            vec![(ctx, "//////////////////8=".into())],
            b"v".to_vec(),
            400,
        ),
        ("w zero", format!("{u}/kv/b?w=0"), vec![], b"v".to_vec(), 400),
        ("w above n", format!("{u}/kv/b?w=4"), vec![], b"v".to_vec(), 400),
        ("w not a number", format!("{u}/kv/b?w=two"), vec![], b"v".to_vec(), 400),
        ("timeout zero", format!("{u}/kv/b?timeout_ms=0"), vec![], b"v".to_vec(), 400),
        ("timeout huge", format!("{u}/kv/b?timeout_ms=99999999"), vec![], b"v".to_vec(), 400),
        ("unknown parameter", format!("{u}/kv/b?x=1"), vec![], b"v".to_vec(), 400),
        ("key too long", format!("{u}/kv/{}", "k".repeat(65)), vec![], b"v".to_vec(), 400),
        ("value too large", format!("{u}/kv/b"), vec![], vec![b'v'; 1025], 413),
        ("body far too large", format!("{u}/kv/b"), vec![], vec![b'v'; 64 * 1024], 413),
    ];
    // Every refused request is counted in the metrics, under its operation, as rejected.
    let mut refused_puts = 0;
    for (what, path, headers, body, want) in cases {
        refused_puts += 1;
        let r = put(path, headers, body).await;
        assert_eq!(r.status, want, "{what}: {}", r.text());
        assert!(!r.body.is_empty(), "{what}: a message explains the refusal");
    }
    // The messages speak of the request, not of the libraries that parsed it.
    for (path, headers, says) in [
        (format!("{u}/kv/b?x=1"), vec![], "query string: unknown field `x`, expected one of"),
        (format!("{u}/kv/b"), vec![(ctx, "ab!=".into())], "not valid base64 ('!' at offset 2)"),
        (format!("{u}/kv/b"), vec![(ctx, "QQ".into())], "its '=' padding is missing or wrong"),
        (format!("{u}/kv/b?w=-1"), vec![], "w=\"-1\" must be a whole number, in digits"),
    ] {
        refused_puts += 1;
        let r = put(path, headers, b"v".to_vec()).await;
        assert!(r.status == 400 && r.text().contains(says), "{}: {}", r.status, r.text());
    }
    for (what, q) in [("r zero", "r=0"), ("r above n", "r=9"), ("r negative", "r=-1")] {
        let r = c
            .client
            .send(Method::GET, &format!("{u}/kv/b?{q}"), &[], Bytes::new())
            .await
            .expect("answer");
        assert_eq!(r.status, 400, "{what}: {}", r.text());
    }
    let huge = format!("timeout_ms={}", u64::MAX);
    // A real context (of another key), so that only the named fault is wrong.
    let w = c.client.put(&u, b"other", None, Bytes::from_static(b"v"), NO).await.expect("put");
    let good_ctx = w.context.expect("a write returns its context");
    let good_ctx = good_ctx.as_str();
    // The same context, but claiming node 1's last possible counter: no put can follow it.
    let last_ctx = {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let bytes = b64.decode(good_ctx).expect("base64");
        let good = dynamo_model::Context::from_bytes(&bytes, 64).expect("a context");
        let mut clock = good.clock().clone();
        clock.witness(good.clock().entries()[0].actor, u64::MAX, 0);
        b64.encode(dynamo_model::Context::from(clock).to_bytes())
    };
    let other: Vec<MethodCase> = vec![
        ("delete with w zero", Method::DELETE, format!("{u}/kv/b?w=0"), vec![(ctx, good_ctx)]),
        ("delete without a context", Method::DELETE, format!("{u}/kv/b"), vec![]),
        ("delete, context not base64", Method::DELETE, format!("{u}/kv/b"), vec![(ctx, "!!!")]),
        (
            "get, timeout past u64",
            Method::GET,
            format!("{u}/kv/b?timeout_ms=1{}", u64::MAX),
            vec![],
        ),
        ("get, timeout u64::MAX", Method::GET, format!("{u}/kv/b?{huge}"), vec![]),
        ("put, timeout u64::MAX", Method::PUT, format!("{u}/kv/b?{huge}"), vec![]),
        ("get, key too long", Method::GET, format!("{u}/kv/{}", "k".repeat(65)), vec![]),
        ("get, empty key", Method::GET, format!("{u}/kv/"), vec![]),
        ("put, empty key", Method::PUT, format!("{u}/kv"), vec![]),
        ("put, context not ASCII", Method::PUT, format!("{u}/kv/b"), vec![(ctx, "é")]),
        (
            "put, context claiming the last counter",
            Method::PUT,
            format!("{u}/kv/b"),
            vec![(ctx, last_ctx.as_str())],
        ),
    ];
    for (what, method, path, headers) in other {
        refused_puts += u64::from(method == Method::PUT);
        let r = c.client.send(method, &path, &headers, Bytes::from_static(b"v")).await;
        let r = r.unwrap_or_else(|e| panic!("{what}: no answer: {e}"));
        assert_eq!(r.status, 400, "{what}: {}", r.text());
        assert!(!r.body.is_empty(), "{what}: a message explains the refusal");
    }
    let r = c.client.send(Method::DELETE, &format!("{u}/kv/b"), &[], Bytes::new()).await;
    assert!(r.expect("answer").text().contains("needs the x-dynamo-context"));
    // The context of a GET that found nothing is sent back, so the client is told there is
    // nothing to delete (404), not that it sent no context.
    let missing = c.client.get(&u, b"never-written", NO).await.expect("get");
    assert_eq!(missing.status, 404, "{}", missing.message);
    let empty = missing.context.expect("a 404 hands out a context too");
    let r = c.client.delete(&u, b"never-written", Some(&empty), NO).await.expect("answer");
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.text().contains("nothing this DELETE could remove"), "{}", r.text());
    // Paths and methods the API does not have: refused with a message, and a key with an
    // unencoded '/' refused as such (an empty 404 would read as "no such key").
    let routes: Vec<(&str, Method, String, u16)> = vec![
        ("put, a key with an unencoded slash", Method::PUT, format!("{u}/kv/a/b"), 400),
        ("get, a key with an unencoded slash", Method::GET, format!("{u}/kv/a/b"), 400),
        ("post on a key", Method::POST, format!("{u}/kv/b"), 405),
        ("put on /status", Method::PUT, format!("{u}/status"), 405),
        ("no such path", Method::GET, format!("{u}/nope"), 404),
        ("ring, unknown parameter", Method::GET, format!("{u}/ring?kye=b"), 400),
        ("ring, empty key", Method::GET, format!("{u}/ring?key="), 400),
    ];
    for (what, method, path, want) in routes {
        let r = c.client.send(method, &path, &[], Bytes::new()).await;
        let r = r.unwrap_or_else(|e| panic!("{what}: no answer: {e}"));
        assert_eq!(r.status, want, "{what}: {}", r.text());
        assert!(!r.body.is_empty(), "{what}: a message explains the refusal");
    }
    // A body refused for its size is left unread, so its 413 closes the connection and says so.
    let head = format!(
        "PUT /kv/b HTTP/1.1\r\nhost: {}\r\ncontent-length: {}\r\n\r\n",
        c.url(1).trim_start_matches("http://"),
        64 * 1024
    );
    let answer = tokio::time::timeout(Duration::from_secs(10), async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(u.trim_start_matches("http://")).await?;
        s.write_all(head.as_bytes()).await?;
        // The server may stop reading part-way; a failed write is expected then.
        let _ = s.write_all(&vec![b'v'; 64 * 1024]).await;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut chunk).await? {
                0 => break,
                n => buf.extend_from_slice(&chunk[..n]),
            }
        }
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf).to_ascii_lowercase())
    })
    .await
    .expect("answered in time")
    .expect("raw exchange");
    assert!(answer.starts_with("http/1.1 413"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    refused_puts += 1;
    let rejected = "dynamo_request_duration_seconds_count{op=\"put\",outcome=\"rejected\"}";
    assert_eq!(c.metric(1, rejected).await, Some(refused_puts), "every refused put counted");
    // Nothing was written by any refused request.
    let r = c.client.get(&u, b"b", NO).await.expect("get");
    assert_eq!(r.status, 404);
    // A value exactly at the limit is fine.
    let w = c.client.put(&u, b"b", None, Bytes::from(vec![b'v'; 1024]), NO).await.expect("put");
    assert_eq!(w.status, 204);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_port_is_named_and_leaves_no_data_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    for what in ["peers", "HTTP"] {
        let mut cfg = configs(1, dir.path(), dynamo_node::SyncPolicy::Always).remove(0);
        let busy = common::hold_free_port();
        let addr = busy.local_addr().expect("local addr");
        match what {
            "peers" => cfg.peer_listen = addr,
            _ => cfg.http_listen = addr,
        }
        let Err(e) = dynamo_node::server::start(cfg.clone()).await else {
            panic!("started on a port in use")
        };
        let says = format!("cannot listen on {addr} ({what})");
        assert!(e.to_string().contains(&says), "{e}");
        assert!(!cfg.data_dir.exists(), "{what}: {} was made", cfg.data_dir.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_ring_and_metrics_answer() {
    let c = Cluster::start(3, |_| {}).await;
    // Retried: a driver slow to answer makes /status 503.
    let s = eventually("status", || async { c.client.status(&c.url(2)).await.ok() }).await;
    assert_eq!(s["node"]["node"], 2);
    assert_eq!(s["node"]["members"].as_array().map(Vec::len), Some(3));
    assert_eq!(s["peer_secret"], true, "the test clusters share a secret");
    assert_eq!(s["stats"]["malformed_dropped"], 0);
    let r = c
        .client
        .send(Method::GET, &format!("{}/ring", c.url(1)), &[], Bytes::new())
        .await
        .expect("ring");
    let ring: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(ring["owners"].as_array().map(Vec::len), Some(64));
    let w = c.client.put(&c.url(1), b"m", None, Bytes::from("v"), NO).await.expect("put");
    assert_eq!(w.status, 204, "{}", w.text());
    let m = c
        .client
        .send(Method::GET, &format!("{}/metrics", c.url(1)), &[], Bytes::new())
        .await
        .expect("metrics");
    let text = String::from_utf8_lossy(&m.body);
    assert!(
        text.contains("dynamo_request_duration_seconds_count{op=\"put\",outcome=\"ok\"} 1"),
        "{text}"
    );
    // The put was made durable (the default policy syncs before acknowledging), and timed.
    let syncs: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("dynamo_sync_duration_seconds_count "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(syncs >= 1, "{text}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_and_none_sync_policies_serve_and_survive_a_clean_restart() {
    for policy in [dynamo_node::SyncPolicy::Interval, dynamo_node::SyncPolicy::None] {
        let mut c = Cluster::start(3, |cfg| cfg.sync = policy).await;
        // W=3, so node 2 holds the write before it stops (with W=2 the put may be acknowledged
        // by nodes 1 and 3 while node 2's copy is still on its way, and is lost with the stop).
        let all = Overrides { w: Some(3), ..NO };
        let w = c.client.put(&c.url(1), b"p", None, Bytes::from("v"), all).await.expect("put");
        assert_eq!(w.status, 204, "{policy:?}");
        // A clean stop syncs, whatever the policy.
        c.stop(2).await;
        c.restart(2).await;
        let r = c.client.get(&c.url(2), b"p", Overrides { r: Some(1), ..NO }).await.expect("get");
        assert_eq!(r.values, vec![b"v".to_vec()], "{policy:?}");
        c.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_generator_runs_against_a_cluster_without_errors() {
    let c = Cluster::start(3, |_| {}).await;
    let args = dynamo_node::bench::BenchArgs {
        targets: (1..=3).map(|i| c.url(i)).collect(),
        protocol: dynamo_node::bench::Protocol::Http,
        concurrency: 4,
        keys: 50,
        value_bytes: 1024,
        read_ratio: 0.5,
        duration_s: 1,
        warmup_s: 1,
        rate: None,
        pace_quantum_us: dynamo_node::bench::DEFAULT_PACE_QUANTUM_US,
        no_prime: false,
        seed: 7,
        slow_ms: 0.0,
    };
    let report = dynamo_node::bench::run(args.clone()).await.expect("bench runs");
    assert!(!report.reads.is_empty() && !report.writes.is_empty(), "{report}");
    assert!(report.errors.is_empty(), "{report}");
    assert!(report.wakeups.is_none(), "a closed loop has no pacer");
    // Writes carried contexts, so keys did not pile up siblings: only writes that raced on a
    // key left a sibling beside each other, until a read resolved it (about 8 % of the reads
    // here, 4 workers on 50 keys; blind writes would leave one per write, on nearly every read).
    let (siblings, reads) = (report.sibling_reads, report.reads.len());
    assert!(siblings * 3 < reads, "{siblings} of {reads} reads with siblings");
    // And they are counted (by chance none might race in a very short run).
    assert!(reads < 500 || siblings > 0, "{siblings} of {reads} reads with siblings");
    assert!(report.slow.is_empty(), "--slow-ms off counts nothing");
    // Open loop: the pacer hands out exactly one ticket per 1/rate, so a run never sends more
    // than rate x (warm-up + duration) requests, and it sends some.
    let args = dynamo_node::bench::BenchArgs { warmup_s: 0, rate: Some(200.0), ..args };
    // Every request takes longer than a microsecond: each is counted once, in the window of
    // the second's tenth it was due in.
    let timed = dynamo_node::bench::BenchArgs { slow_ms: 0.001, ..args.clone() };
    let report = dynamo_node::bench::run(timed).await.expect("open-loop bench runs");
    let sent = report.reads.len() + report.writes.len();
    assert!(sent > 0 && sent <= 200, "{sent} requests at 200 ops/s for 1 s: {report}");
    assert_eq!(report.slow_requests(), sent, "{report}");
    assert!(report.slow.keys().all(|w| *w < 10), "1 s is 10 windows of 100 ms: {report}");
    // A machine too busy to keep up leaves tickets unsent at the deadline, in the last windows.
    if sent >= 150 {
        assert!(report.slow.len() >= 5, "requests paced over 1 s fill most windows: {report}");
    }
    assert!(
        report.slow.values().all(|s| s.requests > 0 && s.longest_unsent_us <= s.longest_us),
        "{report}"
    );
    let crowded = report.crowded_slow_windows();
    assert!(crowded.windows(2).all(|p| p[0].1.requests >= p[1].1.requests), "{report}");
    assert!(report.to_string().contains(&format!(" slow={sent} ")), "{report}");
    let top: u64 = crowded.iter().take(dynamo_node::bench::SLOW_TOP).map(|(_, s)| s.requests).sum();
    assert_eq!(report.slow_top_pct(), 100.0 * top as f64 / sent as f64, "{report}");
    if report.slow.len() > dynamo_node::bench::SLOW_TOP {
        assert!(report.slow_top_pct() < 100.0, "the top windows cannot hold all: {report}");
    }
    // The pacer timed its own wake-ups: at most one sleep per ticket.
    let woke = report.wakeups.as_ref().map_or(0, |w| w.len());
    assert!(woke > 0 && woke <= 200, "{woke} pacer wake-ups for at most 200 tickets: {report}");
    // Two blind writes leave two siblings, and a read-only run over that one key counts every
    // read as answered with siblings.
    for v in ["left", "right"] {
        c.client.put(&c.url(1), b"bench-0", None, Bytes::from(v), NO).await.expect("blind put");
    }
    let args = dynamo_node::bench::BenchArgs { keys: 1, read_ratio: 1.0, rate: None, ..args };
    let report = dynamo_node::bench::run(args.clone()).await.expect("read-only bench runs");
    assert!(!report.reads.is_empty(), "{report}");
    assert_eq!(report.sibling_reads, report.reads.len(), "{report}");
    assert!(report.errors.is_empty(), "{report}");
    // A fresh load generator reads every key before it writes, so its first write to a key
    // that another client stored supersedes that value; without those reads it writes blind and
    // the stored value stays beside its own for good.
    let all = Overrides { r: Some(3), w: Some(3), ..NO };
    for (no_prime, left) in [(false, 1), (true, 2)] {
        let read = c.client.get(&c.url(1), b"bench-0", all).await.expect("get");
        let ctx = read.context.as_deref();
        let put = c.client.put(&c.url(1), b"bench-0", ctx, Bytes::from("stored"), all).await;
        assert_eq!(put.expect("put").status, 204);
        let only = c.client.get(&c.url(1), b"bench-0", all).await.expect("get");
        assert_eq!(only.values, vec![b"stored".to_vec()]);
        let writes = dynamo_node::bench::BenchArgs {
            targets: vec![c.url(1)],
            concurrency: 1,
            keys: 1,
            read_ratio: 0.0,
            // Closed loop: thousands of writes in the second, each on the context the one before
            // returned. Unprimed, they chain above a gap (the stored value they never saw), and
            // that chain's context must not grow per write until it is refused.
            rate: None,
            no_prime,
            ..args.clone()
        };
        let report = dynamo_node::bench::run(writes).await.expect("write-only bench runs");
        assert!(!report.writes.is_empty() && report.errors.is_empty(), "{report}");
        let after = c.client.get(&c.url(1), b"bench-0", all).await.expect("get");
        assert_eq!(after.values.len(), left, "no_prime={no_prime}: {:?}", after.values);
        assert_eq!(after.values.contains(&b"stored".to_vec()), no_prime);
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_slow_http_clients_are_cut_off_and_change_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let c = Cluster::start(3, |cfg| cfg.http_idle_timeout_ms = 300).await;
    let addr = c.cfgs[0].http_listen;
    // Reads what the server sends until it closes the connection; panics if it has not closed
    // within 5 s (the bound is 300 ms).
    let until_closed = |mut s: tokio::net::TcpStream| async move {
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got))
            .await
            .expect("the server closed the connection")
            .expect("read");
        String::from_utf8_lossy(&got).into_owned()
    };
    // A connection that never sends anything.
    let silent = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // Half a request head.
    let mut half = tokio::net::TcpStream::connect(addr).await.expect("connect");
    half.write_all(b"GET /kv/k HTTP/1.1\r\nhost: x\r\n").await.expect("write");
    // A complete head whose announced body never arrives in full.
    let mut slow = tokio::net::TcpStream::connect(addr).await.expect("connect");
    slow.write_all(b"PUT /kv/slow HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nonly part")
        .await
        .expect("write");
    // A keep-alive connection left idle after one answered request.
    let mut idle = tokio::net::TcpStream::connect(addr).await.expect("connect");
    idle.write_all(b"GET /status HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("write");
    let (silent, half, slow, idle) = tokio::join!(
        until_closed(silent),
        until_closed(half),
        until_closed(slow),
        until_closed(idle)
    );
    assert_eq!(silent, "", "nothing is owed to a client that sent nothing");
    assert!(!half.starts_with("HTTP/1.1 2"), "{half}");
    assert!(slow.starts_with("HTTP/1.1 408"), "{slow}");
    assert!(slow.contains("nothing was written"), "{slow}");
    assert!(
        idle.starts_with("HTTP/1.1 200"),
        "the request before the idle time was answered: {idle}"
    );
    // The refused put wrote nothing, and the node still serves. (On a connection of its own:
    // the node may just be closing the pooled one, idle since the start.)
    let r = HttpClient::new().get(&c.url(2), b"slow", NO).await.expect("answer");
    assert_eq!(r.status, 404, "{r:?}");
    // A client that asks for more answers than the connection's buffers hold and reads none of
    // them: once its window has stayed shut for the idle time the node cuts it off, and the
    // client, reading at last, finds the connection reset before the last answer.
    #[cfg(target_os = "linux")]
    {
        const ASKED: usize = 2_000;
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("rcvbuf");
        let mut deaf = socket.connect(addr).await.expect("connect");
        let asks = "GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n".repeat(ASKED);
        // The node stops reading too once its answers back up: a partial write is expected.
        let _ = tokio::time::timeout(Duration::from_secs(5), deaf.write_all(asks.as_bytes())).await;
        // The bound is the idle time but at least a second; zero-window probes come at most
        // a few hundred milliseconds apart on loopback.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let mut got = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(20), deaf.read_to_end(&mut got))
            .await
            .expect("the connection ended");
        let answers = String::from_utf8_lossy(&got).matches("HTTP/1.1 200").count();
        assert!(
            read.is_err() && answers < ASKED,
            "{answers} of {ASKED} answers, then {read:?}: the node kept writing to a client that \
             did not read"
        );
    }
    c.shutdown().await;
}
