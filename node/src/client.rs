//! A small HTTP client for the node's API, used by the CLI and the load generator.
//!
//! Built on hyper's pooled client (plain HTTP/1.1 over TCP, keep-alive). Keys are
//! percent-encoded into the path; contexts travel base64-encoded in the context header exactly as
//! the server sent them.

use crate::api::CONTEXT_HEADER;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use std::time::Duration;

/// Idle keep-alive connections kept per node.
pub const IDLE_CONNECTIONS_PER_HOST_MAX: usize = 256;
/// Longest body the client accepts.
pub const RESPONSE_BYTES_MAX: usize = 128 << 20;
/// The longest a request waits for its whole answer: the longest timeout a request may ask a
/// node for, and five seconds for the node to answer after it. A node that accepts the
/// connection and never answers cannot hold a client for good.
pub const ANSWER_WAIT_MS: u64 = dynamo_model::node::REQUEST_TIMEOUT_MS_MAX + 5_000;

/// Why a request got no HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL or a header could not be built.
    #[error("bad request: {0}")]
    Build(String),
    /// Connecting or exchanging the request failed.
    #[error("transport: {0}")]
    Transport(String),
    /// The answer was not what the API promises.
    #[error("unexpected answer: {0}")]
    Protocol(String),
}

/// An HTTP answer.
#[derive(Clone, Debug)]
pub struct HttpReply {
    /// Status code.
    pub status: u16,
    /// The context header, if any.
    pub context: Option<String>,
    /// The body.
    pub body: Bytes,
}

impl HttpReply {
    /// The body as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).trim_end().to_string()
    }
}

/// The result of a read.
#[derive(Clone, Debug)]
pub struct ReadReply {
    /// 200, 300 or 404 on success; anything else is an error answer.
    pub status: u16,
    /// The context to send back with a write that supersedes this read.
    pub context: Option<String>,
    /// The values (siblings).
    pub values: Vec<Vec<u8>>,
    /// The body, when the answer is an error.
    pub message: String,
}

#[derive(Deserialize)]
struct JsonRead {
    context: String,
    values: Vec<String>,
}

/// Per-request overrides.
#[derive(Clone, Copy, Debug, Default)]
pub struct Overrides {
    /// Read quorum.
    pub r: Option<usize>,
    /// Write quorum.
    pub w: Option<usize>,
    /// Timeout.
    pub timeout_ms: Option<u64>,
}

impl Overrides {
    fn query(&self) -> String {
        let mut q = Vec::new();
        if let Some(r) = self.r {
            q.push(format!("r={r}"));
        }
        if let Some(w) = self.w {
            q.push(format!("w={w}"));
        }
        if let Some(t) = self.timeout_ms {
            q.push(format!("timeout_ms={t}"));
        }
        if q.is_empty() {
            String::new()
        } else {
            format!("?{}", q.join("&"))
        }
    }
}

/// The base URL of a node from what a user gave: `http://HOST:PORT` (a trailing `/` is dropped)
/// or just `HOST:PORT`, which means the same. Anything else is refused with the reason.
///
/// ```
/// use dynamo_node::client::node_base_url;
/// assert_eq!(node_base_url("127.0.0.1:8082").as_deref(), Ok("http://127.0.0.1:8082"));
/// assert_eq!(node_base_url("http://db1:8080/").as_deref(), Ok("http://db1:8080"));
/// assert!(node_base_url("https://db1:8080").is_err());
/// assert!(node_base_url("http://db1:8080/kv/x").is_err());
/// // The port is required: no silent port 80, and a bare port is not a host.
/// assert!(node_base_url("localhost").is_err());
/// assert!(node_base_url("8081").unwrap_err().contains("127.0.0.1:8081"));
/// ```
pub fn node_base_url(given: &str) -> Result<String, String> {
    let expected = "expected http://HOST:PORT or HOST:PORT";
    let trimmed = given.trim().trim_end_matches('/');
    let base =
        if trimmed.contains("://") { trimmed.to_string() } else { format!("http://{trimmed}") };
    let uri: hyper::Uri =
        base.parse().map_err(|e| format!("{given:?} is not a URL ({e}); {expected}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => return Err(format!("{given:?}: the node speaks plain HTTP, not https")),
        _ => return Err(format!("{given:?}: {expected}")),
    }
    let host_given = uri.authority().is_some_and(|a| !a.host().is_empty());
    if !host_given || !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!("{given:?}: {expected}, with no path or query"));
    }
    if uri.port_u16().is_none() {
        let bare_port = !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit());
        let hint = if bare_port {
            format!(" (for a node on this machine: 127.0.0.1:{trimmed})")
        } else {
            String::new()
        };
        return Err(format!("{given:?} names no port; {expected}{hint}"));
    }
    Ok(base)
}

/// An error and what caused it, outermost first: hyper's own messages ("client error
/// (Connect)") name the step, their causes say what went wrong.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Percent-encodes a key for use as one path segment.
///
/// ```
/// assert_eq!(dynamo_node::client::encode_key(b"user/42 x"), "user%2F42%20x");
/// ```
pub fn encode_key(key: &[u8]) -> String {
    let mut s = String::with_capacity(key.len());
    for &b in key {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// A client of one or more nodes (the base URL is given per call).
#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: Client<HttpConnector, Full<Bytes>>,
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient {
    /// A client with a keep-alive pool.
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        let inner = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(IDLE_CONNECTIONS_PER_HOST_MAX)
            .build(connector);
        HttpClient { inner }
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<HttpReply, ClientError> {
        let mut req = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body)).map_err(|e| ClientError::Build(e.to_string()))?;
        let exchange = async {
            let resp = self
                .inner
                .request(req)
                .await
                .map_err(|e| ClientError::Transport(format!("{url}: {}", with_causes(&e))))?;
            let status = resp.status().as_u16();
            let context = resp
                .headers()
                .get(CONTEXT_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = http_body_util::Limited::new(resp.into_body(), RESPONSE_BYTES_MAX)
                .collect()
                .await
                .map_err(|e| ClientError::Transport(e.to_string()))?
                .to_bytes();
            Ok(HttpReply { status, context, body })
        };
        match tokio::time::timeout(Duration::from_millis(ANSWER_WAIT_MS), exchange).await {
            Ok(answer) => answer,
            Err(_) => Err(ClientError::Transport(format!(
                "{url}: no answer within {ANSWER_WAIT_MS} ms (for a write: it may or may not \
                 have happened)"
            ))),
        }
    }

    /// `GET /kv/{key}` asking for JSON, so that siblings come back decoded.
    pub async fn get(
        &self,
        base: &str,
        key: &[u8],
        o: Overrides,
    ) -> Result<ReadReply, ClientError> {
        let url = format!("{base}/kv/{}{}", encode_key(key), o.query());
        let r =
            self.send(Method::GET, &url, &[("accept", "application/json")], Bytes::new()).await?;
        if !matches!(r.status, 200 | 300 | 404) {
            let message = r.text();
            return Ok(ReadReply { status: r.status, context: r.context, values: vec![], message });
        }
        let j: JsonRead = serde_json::from_slice(&r.body)
            .map_err(|e| ClientError::Protocol(format!("read body: {e}")))?;
        let values = j
            .values
            .iter()
            .map(|v| B64.decode(v))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ClientError::Protocol(format!("value: {e}")))?;
        Ok(ReadReply { status: r.status, context: Some(j.context), values, message: String::new() })
    }

    /// `PUT /kv/{key}` with `value`, superseding `context`.
    pub async fn put(
        &self,
        base: &str,
        key: &[u8],
        context: Option<&str>,
        value: Bytes,
        o: Overrides,
    ) -> Result<HttpReply, ClientError> {
        let url = format!("{base}/kv/{}{}", encode_key(key), o.query());
        let headers: Vec<(&str, &str)> = context.map(|c| (CONTEXT_HEADER, c)).into_iter().collect();
        self.send(Method::PUT, &url, &headers, value).await
    }

    /// `DELETE /kv/{key}`, superseding `context`.
    pub async fn delete(
        &self,
        base: &str,
        key: &[u8],
        context: Option<&str>,
        o: Overrides,
    ) -> Result<HttpReply, ClientError> {
        let url = format!("{base}/kv/{}{}", encode_key(key), o.query());
        let headers: Vec<(&str, &str)> = context.map(|c| (CONTEXT_HEADER, c)).into_iter().collect();
        self.send(Method::DELETE, &url, &headers, Bytes::new()).await
    }

    /// `GET /status` as JSON.
    pub async fn status(&self, base: &str) -> Result<serde_json::Value, ClientError> {
        let r = self.send(Method::GET, &format!("{base}/status"), &[], Bytes::new()).await?;
        if r.status != 200 {
            return Err(ClientError::Protocol(format!("status {}: {}", r.status, r.text())));
        }
        serde_json::from_slice(&r.body).map_err(|e| ClientError::Protocol(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_percent_encoded() {
        assert_eq!(super::encode_key(b"a b/c~"), "a%20b%2Fc~");
    }
}
