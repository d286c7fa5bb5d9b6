//! The HTTP client API, shaped like Riak's.
//!
//! - `GET /kv/{key}`: 200 with the value, 300 Multiple Choices with every sibling
//!   (`multipart/mixed` by default, JSON with base64 values on `Accept: application/json`), or
//!   404. The response carries the key's context in [`CONTEXT_HEADER`] (base64).
//! - `PUT /kv/{key}` (body = value) and `DELETE /kv/{key}`: send back the context of the read the
//!   write supersedes; 204 with the new version's context when W replicas acknowledged, 503 when
//!   the outcome is indeterminate (the write may or may not have happened). A PUT without a
//!   context adds a sibling; a DELETE without one is refused (it would remove nothing).
//! - Query parameters `r`, `w`, `timeout_ms` override the configured quorums and timeout.
//! - `/status` (JSON), `/ring` (JSON; `?key=K` shows a key's preference list), `/metrics`
//!   (Prometheus text).
//!
//! Bad input gets 400 (413 for a value over the limit, 409 for a write that would make more
//! siblings than the limit) with a message, and changes nothing; 500 means the node could not
//! read its store, and changed nothing either.
//! Every decision about the data is the core's; this module only translates.

use crate::driver::{DriverHandle, SubmitError};
use crate::metrics::{Metrics, NetStats};
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use dynamo_model::{
    ClientOp, ClientReply, Config, Context, Key, Limits, NodeId, RequestError, Ring,
};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The header that carries a key's context, base64-encoded.
pub const CONTEXT_HEADER: &str = "x-dynamo-context";
/// Bodies this much over `value_bytes_max` still reach the core (which answers 413 with the exact
/// limit); larger ones are refused unread, with a 413 that closes the connection.
pub const BODY_SLACK_BYTES: usize = 4 * 1024;
/// Bytes of put bodies read or waiting for their answer at once, over all connections, besides
/// one body of the largest size: a put finds its share (its `Content-Length`, or the largest body
/// when it sends none) or is answered 503 unread. Without it, slow senders (or slow quorums) on
/// every connection could hold a largest body each, gigabytes at the defaults.
pub const BODY_BYTES_IN_FLIGHT_MAX: usize = 256 << 20;
/// Extra time the HTTP handler waits past the request timeout before giving up on the core.
pub const REPLY_SLACK_MS: u64 = 2_000;
/// Attempts at a multipart boundary that occurs in no value.
const BOUNDARY_TRIES_MAX: u32 = 16;
/// Why a DELETE without a context is refused.
const BLIND_DELETE: &str = "a DELETE needs the x-dynamo-context header of a GET of the key: \
     it removes only the versions that context covers, so without one it would remove nothing";
const EMPTY_CONTEXT_DELETE: &str = "the x-dynamo-context header names no version (it is the \
     context of a GET that found nothing): there is nothing this DELETE could remove";
/// Longest a metrics or status scrape waits for the driver.
const STATUS_WAIT_MS: u64 = 2_000;

/// What every handler can reach (behind one `Arc`: each request clones the handlers' state, and
/// a clone of this struct was five reference counts and a channel sender's, contended across the
/// runtime's threads).
#[derive(Debug)]
pub struct ApiState {
    /// The driver.
    pub driver: DriverHandle,
    /// HTTP metrics.
    pub metrics: Arc<Metrics>,
    /// Transport counters.
    pub net: Arc<NetStats>,
    /// The validated protocol configuration.
    pub config: Arc<Config>,
    /// The ring.
    pub ring: Arc<Ring>,
    /// Peers' addresses, for `/status`.
    pub peers: Arc<BTreeMap<NodeId, SocketAddr>>,
    /// Whether peers must prove a cluster secret, for `/status`.
    pub peer_secret: bool,
    /// How long a put's body may take to arrive.
    pub body_timeout: std::time::Duration,
    /// The byte budget of the put bodies being read (see [`body_budget`]).
    pub bodies: Arc<Semaphore>,
    /// The node's shutdown signal: requests still waiting [`crate::shutdown::ANSWER_BY_MS`]
    /// after it are answered 503.
    pub stopping: crate::shutdown::ShutdownRx,
}

/// The byte budget of put bodies being read, one permit a byte: [`BODY_BYTES_IN_FLIGHT_MAX`]
/// besides one largest body.
pub fn body_budget(limits: &Limits) -> Arc<Semaphore> {
    let bytes = BODY_BYTES_IN_FLIGHT_MAX.saturating_add(body_max(limits));
    Arc::new(Semaphore::new(bytes.min(u32::MAX as usize).min(Semaphore::MAX_PERMITS)))
}

/// A put body's share of `budget`: the length it announces, or `max` (what [`read_body`] reads
/// at most) when it announces none; taken without waiting. None when the budget is spent.
fn reserve_body(
    budget: &Arc<Semaphore>,
    announced: Option<u64>,
    max: usize,
) -> Option<OwnedSemaphorePermit> {
    let bytes = announced.map_or(max, |n| usize::try_from(n).unwrap_or(usize::MAX).min(max));
    let permits = u32::try_from(bytes).unwrap_or(u32::MAX);
    budget.clone().try_acquire_many_owned(permits).ok()
}

/// The answer to a put that found the body budget spent: 503, its body unread, so the
/// connection closes (as after a 413).
fn bodies_in_flight() -> Response {
    let mut r = text(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "the node is reading as many put bodies as it takes at once \
             ({BODY_BYTES_IN_FLIGHT_MAX} bytes); nothing was written, retry later; the \
             connection closes"
        ),
    );
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// The router of the API.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/kv/{key}", get(get_kv).put(put_kv).delete(delete_kv))
        .route("/kv", any(empty_key))
        .route("/kv/", any(empty_key))
        .route("/status", get(status))
        .route("/ring", get(ring))
        .route("/metrics", get(metrics))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .with_state(Arc::new(state))
}

/// A path the API does not have. Under `/kv/` that can only be a key with an unencoded `/`,
/// which is refused as such rather than answered 404 (which would read as "no such key").
async fn no_route(uri: axum::http::Uri) -> Response {
    let path = uri.path();
    if path.starts_with("/kv/") {
        return bad_request(format!(
            "{path}: a key is one path segment; encode a '/' in a key as %2F"
        ))
        .into_response();
    }
    text(
        StatusCode::NOT_FOUND,
        format!("no such path {path}: the API is /kv/{{key}}, /status, /ring and /metrics"),
    )
}

/// A method a path does not take.
async fn wrong_method(method: Method, uri: axum::http::Uri) -> Response {
    let path = uri.path();
    let allow = if path.starts_with("/kv") { "GET, PUT, DELETE" } else { "GET" };
    let mut r = text(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {path}; it takes {allow}"),
    );
    r.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// The most body bytes a put reads. Saturating: the limit comes from the operator's
/// configuration, and a huge `value_bytes_max` must mean "no cut-off", not an overflow.
fn body_max(limits: &Limits) -> usize {
    limits.value_bytes_max.saturating_add(BODY_SLACK_BYTES)
}

/// The answer to a put whose body was still arriving when the node, stopping, had to answer
/// ([`crate::shutdown::ANSWER_BY_MS`]): 503, and the connection closes (the body is unread).
fn stopping_before_body() -> Response {
    let mut r = text(
        StatusCode::SERVICE_UNAVAILABLE,
        "node shutting down before the body arrived; nothing was written and the connection closes",
    );
    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// A put's body, read up to `max` bytes. A larger one is refused with 413 and left unread, so
/// the connection cannot carry another request: the answer says so (`Connection: close`), or a
/// client that pools connections would send its next request into a connection the server is
/// closing. (Read here rather than by a body-limit layer and a response-rewriting layer around
/// every route: each layer cost every request a clone of the boxed route.)
///
/// A body that has not arrived within `timeout` is refused with 408, and the connection closes
/// for the same reason: a client that announces a body and sends it slowly, or not at all,
/// would otherwise hold its connection (and a connection slot) for good.
async fn read_body(
    body: Body,
    max: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, Response> {
    let read = match tokio::time::timeout(timeout, Limited::new(body, max).collect()).await {
        Ok(read) => read,
        Err(_) => {
            let mut r = text(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within {} ms; nothing was written and the \
                     connection closes",
                    timeout.as_millis()
                ),
            );
            r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            return Err(r);
        }
    };
    match read {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            let mut r = text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body larger than {max} bytes; the connection closes"),
            );
            r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            Err(r)
        }
        Err(e) => Err(bad_request(format!("cannot read the body: {e}")).into_response()),
    }
}

/// Per-request overrides, kept as text so that bad numbers get our own message.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvParams {
    r: Option<String>,
    w: Option<String>,
    timeout_ms: Option<String>,
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    let mut body = msg.into();
    body.push('\n');
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// A request refused before it reached the core: 400 with a message.
#[derive(Debug)]
pub struct BadRequest(String);

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        text(StatusCode::BAD_REQUEST, self.0)
    }
}

fn bad_request(msg: impl Into<String>) -> BadRequest {
    BadRequest(msg.into())
}

/// A numeric query parameter: digits only (the quorums and the timeout are checked against
/// their bounds afterwards, with messages of their own).
fn parse_num(name: &str, v: &Option<String>) -> Result<Option<u64>, BadRequest> {
    match v {
        None => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|_| {
            bad_request(format!("query parameter {name}={s:?} must be a whole number, in digits"))
        }),
    }
}

fn apply_params(mut op: ClientOp, p: &KvParams) -> Result<ClientOp, BadRequest> {
    let quorum = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    op.r = parse_num("r", &p.r)?.map(quorum);
    op.w = parse_num("w", &p.w)?.map(quorum);
    op.timeout_ms = parse_num("timeout_ms", &p.timeout_ms)?;
    Ok(op)
}

/// The request headers the key-value handlers read, picked out of the request rather than
/// copying its whole header map.
struct KvHeaders {
    context: Option<HeaderValue>,
    json: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for KvHeaders {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(KvHeaders {
            context: parts.headers.get(CONTEXT_HEADER).cloned(),
            json: wants_json(&parts.headers),
        })
    }
}

fn parse_context(header: Option<&HeaderValue>, entries_max: usize) -> Result<Context, BadRequest> {
    let Some(v) = header else { return Ok(Context::new()) };
    let s = v.to_str().map_err(|_| bad_request(format!("{CONTEXT_HEADER} is not ASCII")))?;
    if s.trim().is_empty() {
        return Ok(Context::new());
    }
    let bytes = B64.decode(s.trim()).map_err(|e| {
        let why = match e {
            base64::DecodeError::InvalidByte(at, b) => {
                format!("{:?} at offset {at}", char::from(b))
            }
            base64::DecodeError::InvalidLastSymbol(at, b) => format!(
                "its last character {:?}, at offset {at}, ends it mid-byte: cut short?",
                char::from(b)
            ),
            base64::DecodeError::InvalidLength(n) => {
                format!("{n} characters besides padding, which no encoding has: cut short?")
            }
            base64::DecodeError::InvalidPadding => {
                "its '=' padding is missing or wrong".to_string()
            }
        };
        bad_request(format!(
            "{CONTEXT_HEADER} is not valid base64 ({why}): send back the header a read or write \
             returned, unchanged"
        ))
    })?;
    Context::from_bytes(&bytes, entries_max)
        .map_err(|e| bad_request(format!("{CONTEXT_HEADER} is not a valid context: {e}")))
}

fn encode_context(c: &Context) -> Option<HeaderValue> {
    HeaderValue::from_str(&B64.encode(c.to_bytes())).ok()
}

/// Whether a read should answer JSON: the client's `Accept` names `application/json` (in any
/// case) with a quality above 0, and no lower than any `multipart/mixed` it names. Anything else,
/// wildcards included, gets the default, multipart. A range whose quality does not parse is
/// ignored.
fn wants_json(headers: &HeaderMap) -> bool {
    let (mut json, mut multipart) = (None::<f32>, None::<f32>);
    for value in headers.get_all(header::ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for range in value.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or_default().trim();
            let slot = if media.eq_ignore_ascii_case("application/json") {
                &mut json
            } else if media.eq_ignore_ascii_case("multipart/mixed") {
                &mut multipart
            } else {
                continue;
            };
            let q = parts
                .filter_map(|p| p.split_once('='))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
                .map_or(Some(1.0), |(_, q)| q.trim().parse::<f32>().ok())
                .filter(|q| (0.0..=1.0).contains(q));
            if let Some(q) = q {
                *slot = Some(slot.map_or(q, |held| held.max(q)));
            }
        }
    }
    json.is_some_and(|j| j > 0.0 && multipart.is_none_or(|m| j >= m))
}

fn key_of(raw: String, max: usize) -> Result<Key, BadRequest> {
    // Checked here too so that an absurd key never reaches the driver's queue.
    if raw.len() > max {
        return Err(bad_request(format!(
            "key of {} bytes exceeds the limit of {max} bytes",
            raw.len()
        )));
    }
    Ok(Key(raw.into_bytes()))
}

fn rejected(e: &RequestError) -> (StatusCode, &'static str) {
    use dynamo_model::PutError;
    match e {
        RequestError::Put(PutError::ValueTooLarge { .. }) => {
            (StatusCode::PAYLOAD_TOO_LARGE, "rejected")
        }
        RequestError::Put(PutError::TooManySiblings { .. }) => (StatusCode::CONFLICT, "rejected"),
        RequestError::Overloaded { .. } => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
        RequestError::NotCoordinator { .. } => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        RequestError::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "error"),
        _ => (StatusCode::BAD_REQUEST, "rejected"),
    }
}

/// Sends `op` to the core and waits (bounded) for its answer.
async fn run(st: &ApiState, op: ClientOp) -> Result<ClientReply, Response> {
    // The core answers by the request's timeout, forwarded or not; the slack covers a busy
    // driver. Saturating: a `timeout_ms` from the query is only range-checked by the core, after
    // this.
    let wait_ms =
        op.timeout_ms.unwrap_or(st.config.timeouts().request_ms).saturating_add(REPLY_SLACK_MS);
    // A 503 for a request left without the core's answer, which for a write says the write may
    // or may not have happened.
    let is_write = op.is_write();
    let unanswered = |why: &str| {
        let text_of = if is_write {
            format!("{why}: the write may or may not have happened")
        } else {
            why.to_string()
        };
        text(StatusCode::SERVICE_UNAVAILABLE, text_of)
    };
    let answer = tokio::time::timeout(Duration::from_millis(wait_ms), st.driver.request(op));
    // A node that is stopping answers what still waits before its grace period ends, rather
    // than letting the connection be cut.
    let answer = tokio::select! {
        a = answer => a,
        _ = st.stopping.clone().answer_by() => {
            return Err(unanswered("node shutting down before the answer"));
        }
    };
    match answer {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(SubmitError::Overloaded)) => {
            let mut r = text(StatusCode::SERVICE_UNAVAILABLE, "node overloaded, retry later");
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            Err(r)
        }
        Ok(Err(SubmitError::Stopped)) => Err(unanswered("node stopped before answering")),
        Err(_) => Err(unanswered("no answer in time")),
    }
}

fn outcome_of(status: StatusCode) -> &'static str {
    match status.as_u16() {
        200 | 204 => "ok",
        300 => "siblings",
        404 => "not_found",
        400 | 409 | 413 => "rejected",
        503 => "unavailable",
        _ => "error",
    }
}

/// The key and the query parameters of a `/kv/{key}` request, or the 400 for a path that does
/// not decode or an unknown parameter: taken as results so that those refusals are counted in
/// the metrics too, not answered by the extractors unseen.
type KvTarget = Result<(Path<String>, Query<KvParams>), BadRequest>;

fn kv_target(
    key: Result<Path<String>, PathRejection>,
    query: Result<Query<KvParams>, QueryRejection>,
) -> KvTarget {
    let key = key.map_err(|e| bad_request(e.body_text()))?;
    let query = query.map_err(|e| {
        // Every parameter is taken as text, so the only refusals here are an unknown or a repeated
        // parameter, which the deserializer's own words name (with the known ones); the
        // extractor's prefix adds nothing. (A "name: " before the words, which it puts before
        // an error inside a value, would be dropped too: a typed parameter would lose its name.)
        let text = e.body_text();
        let why = text.strip_prefix("Failed to deserialize query string: ").unwrap_or(&text);
        let why = why.split_once(": ").filter(|(at, _)| !at.contains(' ')).map_or(why, |(_, r)| r);
        bad_request(format!("query string: {why}"))
    })?;
    Ok((key, query))
}

async fn get_kv(
    State(st): State<Arc<ApiState>>,
    key: Result<Path<String>, PathRejection>,
    query: Result<Query<KvParams>, QueryRejection>,
    headers: KvHeaders,
) -> Response {
    let started = Instant::now();
    let resp = match kv_target(key, query) {
        Ok((Path(key), Query(p))) => get_inner(&st, key, &p, headers.json).await,
        Err(r) => r.into_response(),
    };
    st.metrics.record("get", outcome_of(resp.status()), started.elapsed().as_micros() as u64);
    resp
}

async fn get_inner(st: &ApiState, key: String, p: &KvParams, json: bool) -> Response {
    let key = match key_of(key, st.config.limits().key_bytes_max) {
        Ok(k) => k,
        Err(r) => return r.into_response(),
    };
    let op = match apply_params(ClientOp::get(key), p) {
        Ok(op) => op,
        Err(r) => return r.into_response(),
    };
    let reply = match run(st, op).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    match reply {
        ClientReply::Read { context, values } => {
            st.metrics.record_siblings(values.len());
            read_response(&context, values, json)
        }
        other => reply_response(other),
    }
}

fn read_response(context: &Context, values: Vec<Vec<u8>>, json: bool) -> Response {
    let status = match values.len() {
        0 => StatusCode::NOT_FOUND,
        1 => StatusCode::OK,
        _ => StatusCode::MULTIPLE_CHOICES,
    };
    let mut resp = if json {
        let body = serde_json::json!({
            "context": B64.encode(context.to_bytes()),
            "values": values.iter().map(|v| B64.encode(v)).collect::<Vec<_>>(),
        });
        (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
    } else {
        match values.len() {
            0 => text(status, "not found"),
            1 => {
                let v = values.into_iter().next().unwrap_or_default();
                (status, [(header::CONTENT_TYPE, "application/octet-stream")], v).into_response()
            }
            _ => multipart(status, &values),
        }
    };
    if let Some(v) = encode_context(context) {
        resp.headers_mut().insert(CONTEXT_HEADER, v);
    }
    resp
}

fn multipart(status: StatusCode, values: &[Vec<u8>]) -> Response {
    let mut boundary = String::new();
    for attempt in 0..BOUNDARY_TRIES_MAX {
        let b = format!("dynamo-{:016x}{attempt}", rand::random::<u64>());
        if !values.iter().any(|v| v.windows(b.len()).any(|w| w == b.as_bytes())) {
            boundary = b;
            break;
        }
    }
    if boundary.is_empty() {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "no multipart boundary found");
    }
    let mut body = Vec::new();
    for v in values {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        body.extend_from_slice(b"Content-Type: application/octet-stream\r\n\r\n");
        body.extend_from_slice(v);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let ct = format!("multipart/mixed; boundary={boundary}");
    (status, [(header::CONTENT_TYPE, ct)], body).into_response()
}

fn reply_response(reply: ClientReply) -> Response {
    match reply {
        ClientReply::Read { context, values } => read_response(&context, values, false),
        ClientReply::Written { dot, context } => {
            let mut resp = StatusCode::NO_CONTENT.into_response();
            if let Some(v) = encode_context(&context) {
                resp.headers_mut().insert(CONTEXT_HEADER, v);
            }
            if let Ok(v) = HeaderValue::from_str(&dot.to_string()) {
                resp.headers_mut().insert("x-dynamo-dot", v);
            }
            resp
        }
        ClientReply::Indeterminate { acks, needed } => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "indeterminate: {acks} of {needed} acknowledgements before the timeout; \
                 the write may or may not have happened"
            ),
        ),
        ClientReply::Unavailable { replies, needed } => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unavailable: {replies} of {needed} replies before the timeout"),
        ),
        ClientReply::Rejected(e) => {
            let (status, _) = rejected(&e);
            let mut r = text(status, e.to_string());
            if status == StatusCode::SERVICE_UNAVAILABLE {
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            r
        }
    }
}

async fn write(
    st: &ApiState,
    key: String,
    p: &KvParams,
    headers: &KvHeaders,
    // A put's body, with its share of the body budget (see `reserve_body`).
    value: Option<(Bytes, OwnedSemaphorePermit)>,
) -> Response {
    let key = match key_of(key, st.config.limits().key_bytes_max) {
        Ok(k) => k,
        Err(r) => return r.into_response(),
    };
    let context =
        match parse_context(headers.context.as_ref(), st.config.limits().context_entries_max) {
            Ok(c) => c,
            Err(r) => return r.into_response(),
        };
    let (op, share) = match value {
        Some((v, share)) => (ClientOp::put(key, context, v.to_vec()), Some(share)),
        // A delete removes only the versions its context covers: without one it would answer
        // 204 and remove nothing (its tombstone would stand beside the value as a sibling). The
        // core accepts such a delete, as the harmless no-op it is (the simulator sends them);
        // over HTTP a 204 for it would mislead, so this surface refuses it.
        None if context.is_empty() => {
            // A context that names nothing (a GET of a missing key hands one out) is not a blind
            // delete: it says the client saw no version, and there is none it could remove.
            let sent =
                headers.context.as_ref().is_some_and(|c| !c.as_bytes().trim_ascii().is_empty());
            return if sent {
                text(StatusCode::NOT_FOUND, EMPTY_CONTEXT_DELETE)
            } else {
                bad_request(BLIND_DELETE).into_response()
            };
        }
        None => (ClientOp::delete(key, context), None),
    };
    let op = match apply_params(op, p) {
        Ok(op) => op,
        Err(r) => return r.into_response(),
    };
    // The body's share is held until the answer: the value stays in memory meanwhile (in the
    // driver's queue, then in the coordinator's state until its quorum or deadline), so the
    // budget bounds the put values in flight, not only the bodies being read.
    let answer = run(st, op).await;
    drop(share);
    match answer {
        Ok(reply) => reply_response(reply),
        Err(r) => r,
    }
}

async fn put_kv(
    State(st): State<Arc<ApiState>>,
    key: Result<Path<String>, PathRejection>,
    query: Result<Query<KvParams>, QueryRejection>,
    headers: KvHeaders,
    body: Body,
) -> Response {
    let started = Instant::now();
    let resp = match kv_target(key, query) {
        Ok((Path(key), Query(p))) => {
            let max = body_max(st.config.limits());
            match reserve_body(&st.bodies, HttpBody::size_hint(&body).exact(), max) {
                Some(share) => {
                    let read = tokio::select! {
                        read = read_body(body, max, st.body_timeout) => read,
                        _ = st.stopping.clone().answer_by() => Err(stopping_before_body()),
                    };
                    match read {
                        Ok(value) => write(&st, key, &p, &headers, Some((value, share))).await,
                        Err(r) => r,
                    }
                }
                None => bodies_in_flight(),
            }
        }
        Err(r) => r.into_response(),
    };
    st.metrics.record("put", outcome_of(resp.status()), started.elapsed().as_micros() as u64);
    resp
}

/// `/kv` and `/kv/`: a request that names no key.
async fn empty_key(State(st): State<Arc<ApiState>>, method: Method) -> Response {
    let resp = bad_request("the key is empty: use /kv/{key}").into_response();
    let op = match method {
        Method::GET => "get",
        Method::PUT => "put",
        Method::DELETE => "delete",
        _ => "other",
    };
    st.metrics.record(op, outcome_of(resp.status()), 0);
    resp
}

async fn delete_kv(
    State(st): State<Arc<ApiState>>,
    key: Result<Path<String>, PathRejection>,
    query: Result<Query<KvParams>, QueryRejection>,
    headers: KvHeaders,
) -> Response {
    let started = Instant::now();
    let resp = match kv_target(key, query) {
        Ok((Path(key), Query(p))) => write(&st, key, &p, &headers, None).await,
        Err(r) => r.into_response(),
    };
    st.metrics.record("delete", outcome_of(resp.status()), started.elapsed().as_micros() as u64);
    resp
}

async fn snapshot(st: &ApiState) -> Option<crate::driver::NodeStatus> {
    tokio::time::timeout(Duration::from_millis(STATUS_WAIT_MS), st.driver.status())
        .await
        .ok()
        .and_then(Result::ok)
}

async fn status(State(st): State<Arc<ApiState>>) -> Response {
    let Some(s) = snapshot(&st).await else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "driver did not answer");
    };
    let peers: BTreeMap<String, String> =
        st.peers.iter().map(|(id, a)| (id.0.to_string(), a.to_string())).collect();
    let c = &st.config;
    let body = serde_json::json!({
        "node": s,
        "peers": peers,
        "peer_secret": st.peer_secret,
        "n": c.n(), "r": c.r(), "w": c.w(),
        "partitions": c.partitions(),
        "sloppy_quorum": c.sloppy_quorum(),
        "stats": {
            "hints_stored": s.stats.hints_stored,
            "hints_delivered": s.stats.hints_delivered,
            "hints_rehomed": s.stats.hints_rehomed,
            "read_repairs": s.stats.read_repairs,
            "forwarded": s.stats.forwarded,
            "rejected": s.stats.rejected,
            "store_errors": s.stats.store_errors,
            "malformed_dropped": s.stats.malformed_dropped,
        },
    });
    ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// `?key=K` on `/ring`; any other parameter is refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RingParams {
    key: Option<String>,
}

async fn ring(State(st): State<Arc<ApiState>>, Query(p): Query<RingParams>) -> Response {
    let owners: Vec<u16> = st.ring.owners().iter().map(|n| n.0).collect();
    let mut body = serde_json::json!({
        "partitions": st.ring.partitions(),
        "n": st.config.n(),
        "owners": owners,
    });
    if let Some(k) = p.key {
        if k.is_empty() {
            return bad_request("the key is empty: use /ring?key=KEY").into_response();
        }
        let key = Key(k.clone().into_bytes());
        let walk: Vec<u16> = st.ring.walk(&key).iter().map(|n| n.0).collect();
        let n = st.config.n().min(walk.len());
        body["key"] = serde_json::json!({
            "key": k,
            "partition": st.ring.partition_of(&key).0,
            "preference_list": walk[..n],
            "fallbacks": walk[n..],
        });
    }
    ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

async fn metrics(State(st): State<Arc<ApiState>>) -> Response {
    let s = snapshot(&st).await;
    let body = st.metrics.render(&st.net, s.as_ref());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_limit_is_the_value_limit_plus_slack_and_never_overflows() {
        let small = Limits { value_bytes_max: 1024, ..Limits::default() };
        assert_eq!(body_max(&small), 1024 + BODY_SLACK_BYTES);
        let huge = Limits { value_bytes_max: usize::MAX, ..Limits::default() };
        assert_eq!(body_max(&huge), usize::MAX);
    }

    /// A put body takes its announced length from the budget, or the largest body when it
    /// announces none, and gives it back when done; past the budget it is answered 503 and closes
    /// its connection.
    #[test]
    fn put_bodies_share_a_byte_budget() {
        let budget = Arc::new(Semaphore::new(1_000));
        let announced = reserve_body(&budget, Some(300), 600).expect("fits");
        assert_eq!(budget.available_permits(), 700);
        let unannounced = reserve_body(&budget, None, 600).expect("fits");
        assert_eq!(budget.available_permits(), 100);
        assert!(reserve_body(&budget, Some(101), 600).is_none(), "past the budget");
        let refused = bodies_in_flight();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers()[header::CONNECTION], "close");
        assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
        let overlong = reserve_body(&budget, Some(u64::MAX), 100).expect("counted as the largest");
        assert_eq!(budget.available_permits(), 0);
        drop((announced, unannounced, overlong));
        assert_eq!(budget.available_permits(), 1_000);
        // One largest body fits besides the whole in-flight bound.
        let limits = Limits::default();
        let most = body_budget(&limits).available_permits();
        assert_eq!(most, BODY_BYTES_IN_FLIGHT_MAX + body_max(&limits));
    }

    #[test]
    fn json_is_chosen_by_media_range_and_quality() {
        let wants = |accepts: &[&str]| {
            let mut h = HeaderMap::new();
            for a in accepts {
                h.append(header::ACCEPT, HeaderValue::from_str(a).expect("header"));
            }
            wants_json(&h)
        };
        for json in [
            &["application/json"][..],
            &["Application/JSON"],
            &["text/plain, application/json;q=0.5"],
            &["multipart/mixed;q=0.2, application/json;q=0.9"],
            &["multipart/mixed; q=0.5", "application/json"],
            &["application/json ; charset=utf-8"],
        ] {
            assert!(wants(json), "{json:?} asks for JSON");
        }
        for multipart in [
            &[][..],
            &["*/*"],
            &["application/*"],
            &["application/json;q=0"],
            &["multipart/mixed, application/json;q=0.1"],
            &["application/json;q=high"],
            &["application/jsonx"],
        ] {
            assert!(!wants(multipart), "{multipart:?} does not ask for JSON");
        }
    }
}
