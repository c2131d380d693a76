//! One streamed request to an OpenAI-compatible server, timed chunk by chunk.
//!
//! What is measured: for each request, the time it was meant to be sent (its schedule), the
//! time it was actually handed to the HTTP client, the arrival time of every SSE chunk that
//! carries generated text, and the server's `usage` counts. Times are seconds since the run's
//! epoch (an [`Instant`] taken at run start), read with the monotonic clock right after each
//! chunk is parsed, so they include network and client parsing delay but no server clock.
//!
//! How: a `POST /v1/completions` (or `/v1/chat/completions`) with `stream: true` and
//! `stream_options.include_usage: true`, `temperature: 0`, and the length controls of the
//! [`RequestSpec`]. The body is parsed as server-sent events; every chunk whose first choice has
//! non-empty text is one token event. Every await on the network is bounded by the request
//! timeout and, once the response has started, by the stall timeout (the longest allowed gap
//! between two chunks). Any failure becomes a [`RequestRecord`] whose `error` says what went
//! wrong ([`RequestError`]); nothing here panics on a bad server.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventsource_stream::{EventStreamError, Eventsource};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant as TokioInstant;

use crate::sse::{self, ChunkKind, DONE};

/// Longest excerpt of a server's error body or of a bad SSE line kept in a [`RequestError`].
const EXCERPT_CHARS: usize = 200;

/// Which OpenAI-compatible endpoint the requests go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// `POST /v1/completions` with a `prompt` (text or token ids); text in `choices[0].text`.
    #[default]
    Completions,
    /// `POST /v1/chat/completions` with one user message (text prompts only); text in
    /// `choices[0].delta.content`.
    Chat,
}

impl Api {
    /// The request path, relative to the server's base URL.
    pub fn path(self) -> &'static str {
        match self {
            Api::Completions => "/v1/completions",
            Api::Chat => "/v1/chat/completions",
        }
    }
}

/// How to reach a server and how long to wait for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientConfig {
    /// Server root such as `http://127.0.0.1:8000`; a trailing `/` or `/v1` is removed.
    pub base_url: String,
    /// Model name sent in every request; `None`: the first id listed by `GET /v1/models`.
    pub model: Option<String>,
    /// Completions or chat endpoint.
    pub api: Api,
    /// Sent as `Authorization: Bearer <key>` when set.
    pub api_key: Option<String>,
    /// Longest a whole request may take, from send to `[DONE]`.
    pub request_timeout_s: f64,
    /// Longest allowed gap between the response headers and the first chunk, or between two
    /// consecutive chunks; longer is recorded as [`RequestError::Stalled`]. (Before the headers
    /// only the request timeout applies.)
    pub stall_timeout_s: f64,
    /// Longest a TCP connect may take.
    pub connect_timeout_s: f64,
    /// Worker threads of the client's tokio runtime; `None`: the number of CPUs.
    pub worker_threads: Option<usize>,
}

impl ClientConfig {
    /// A completions-API configuration for `base_url` with the model taken from the server,
    /// a 600 s request timeout, a 60 s stall timeout and a 10 s connect timeout.
    pub fn new(base_url: impl Into<String>) -> Self {
        ClientConfig {
            base_url: base_url.into(),
            model: None,
            api: Api::Completions,
            api_key: None,
            request_timeout_s: 600.0,
            stall_timeout_s: 60.0,
            connect_timeout_s: 10.0,
            worker_threads: None,
        }
    }
}

/// What a server says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// The base URL that was asked.
    pub base_url: String,
    /// Model ids from `GET /v1/models`, in the server's order.
    pub models: Vec<String>,
    /// `GET /version`: its `version` field, or its text; `None` when the server has no such
    /// route (TGI, llama.cpp).
    pub version: Option<String>,
}

impl ServerInfo {
    /// The model used when none is configured: the first one listed.
    pub fn default_model(&self) -> Option<&str> {
        self.models.first().map(String::as_str)
    }
}

/// Why a [`Client`] could not be built or could not read the server's description. Failures of
/// individual measured requests are [`RequestError`]s inside records instead.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    /// A configuration value is out of range.
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// The async runtime or the HTTP client could not be created.
    #[error("could not start the HTTP client: {0}")]
    Runtime(String),
    /// The server could not be reached.
    #[error("could not reach {url}: {message}; is the server running and are host and port right?")]
    Connect {
        /// The URL asked.
        url: String,
        /// The transport's description.
        message: String,
    },
    /// The server answered with an error status.
    #[error("{url} answered HTTP {status}: {body_excerpt}")]
    Http {
        /// The URL asked.
        url: String,
        /// HTTP status code.
        status: u16,
        /// The start of the response body.
        body_excerpt: String,
    },
    /// The server answered, but not with what an OpenAI-compatible server sends.
    #[error("{url} sent an unexpected response ({message}); is this an OpenAI-compatible server?")]
    BadResponse {
        /// The URL asked.
        url: String,
        /// What was wrong.
        message: String,
    },
    /// No model was configured and the server lists none.
    #[error("{url} lists no model; pass the model name explicitly")]
    NoModel {
        /// The `/v1/models` URL.
        url: String,
    },
}

/// The prompt of one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prompt {
    /// Token ids, sent as a JSON array in `prompt` (completions API only; vLLM and SGLang
    /// accept it); gives exact input lengths without a tokenizer.
    TokenIds(Vec<u32>),
    /// Text, sent as `prompt` (completions) or as one user message (chat).
    Text(String),
}

impl Prompt {
    /// The number of input tokens when known without a tokenizer (token-id prompts).
    pub fn known_tokens(&self) -> Option<u32> {
        match self {
            Prompt::TokenIds(ids) => Some(u32::try_from(ids.len()).unwrap_or(u32::MAX)),
            Prompt::Text(_) => None,
        }
    }
}

/// What to send in one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestSpec {
    /// The prompt.
    pub prompt: Prompt,
    /// `max_tokens`: the most output tokens.
    pub max_tokens: u32,
    /// `min_tokens` (vLLM, SGLang): the fewest output tokens; not sent when `None`.
    pub min_tokens: Option<u32>,
    /// `ignore_eos` (vLLM, SGLang): keep generating past end-of-sequence; sent only when true.
    pub ignore_eos: bool,
}

impl RequestSpec {
    /// A request that asks for exactly `output_tokens` tokens: `min_tokens = max_tokens` and
    /// `ignore_eos`, which servers that honour them turn into a fixed output length.
    pub fn fixed_length(prompt: Prompt, output_tokens: u32) -> Self {
        RequestSpec {
            prompt,
            max_tokens: output_tokens,
            min_tokens: Some(output_tokens),
            ignore_eos: true,
        }
    }

    /// Whether this request pins the output length (`min_tokens == max_tokens` and
    /// `ignore_eos`), so that a different `usage.completion_tokens` is an error.
    pub fn forces_length(&self) -> bool {
        self.ignore_eos && self.min_tokens == Some(self.max_tokens)
    }
}

/// Why one measured request failed. Serialised with a `kind` tag; its `Display` is one line
/// saying what happened and what to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RequestError {
    /// The TCP/TLS connection could not be opened.
    #[error(
        "connect failed: {message}; check that the server is up and the URL and port are right"
    )]
    Connect {
        /// The transport's description.
        message: String,
    },
    /// The server answered with a non-success status other than 429.
    #[error(
        "HTTP {status}: {body_excerpt}; check the model name and request parameters against the server log"
    )]
    Http {
        /// HTTP status code.
        status: u16,
        /// The start of the response body.
        body_excerpt: String,
    },
    /// HTTP 429: the server refused the request for load.
    #[error(
        "HTTP 429 rate limited: {body_excerpt}; lower the request rate or concurrency, or raise the server's limits"
    )]
    RateLimited {
        /// The start of the response body.
        body_excerpt: String,
    },
    /// The connection broke (or closed without `[DONE]` or a finish reason) mid-response.
    #[error(
        "connection dropped after {after_chunks} token chunks: {message}; check the server log for a crash, restart or proxy timeout"
    )]
    Reset {
        /// Token chunks received before the drop.
        after_chunks: u32,
        /// The transport's description.
        message: String,
    },
    /// No chunk (or no response header) arrived within the stall timeout.
    #[error(
        "stream stalled: nothing for {stall_s} s after {after_chunks} token chunks; the server is hung or overloaded: lower the load or raise the stall timeout"
    )]
    Stalled {
        /// The stall timeout that expired.
        stall_s: f64,
        /// Token chunks received before the stall.
        after_chunks: u32,
    },
    /// A `data:` line was not the JSON an OpenAI-compatible stream carries, or the byte stream
    /// was not valid SSE/UTF-8.
    #[error(
        "malformed SSE after {after_chunks} token chunks: `{line_excerpt}`; the server is not OpenAI-compatible on this route (wrong --api?)"
    )]
    MalformedSse {
        /// Token chunks received before the bad line.
        after_chunks: u32,
        /// The start of the bad payload.
        line_excerpt: String,
    },
    /// The server sent `{"error": ...}` inside the stream.
    #[error(
        "server error inside the stream after {after_chunks} token chunks: {message}; check the server log"
    )]
    ServerError {
        /// Token chunks received before the error.
        after_chunks: u32,
        /// The server's message.
        message: String,
    },
    /// Tokens went missing: either the response had no token chunk at all, or it had content
    /// chunks with empty text *and* fewer token chunks than `usage.completion_tokens`. (Empty
    /// chunks alone are legal, e.g. around special tokens; fewer chunks than tokens alone is
    /// legal too, when a server packs several tokens in one chunk. Both together mean text was
    /// lost, so per-token timing would be wrong.)
    #[error(
        "{token_chunks} token chunks, {empty_chunks} empty content chunks, usage says {}; the server streams chunks without text, so per-token timing is unreliable (check detokenization/streaming settings)",
        fmt_opt(.usage_completion_tokens)
    )]
    NoToken {
        /// Chunks with non-empty text.
        token_chunks: u32,
        /// Content chunks with empty text (no role, no finish reason).
        empty_chunks: u32,
        /// `usage.completion_tokens`, if the server sent usage.
        usage_completion_tokens: Option<u32>,
    },
    /// `min_tokens = max_tokens` and `ignore_eos` were sent but `usage.completion_tokens`
    /// differs from `max_tokens`: the server ignores them (or miscounts).
    #[error(
        "usage says {usage_completion_tokens} output tokens but {requested_tokens} were forced with min_tokens = max_tokens and ignore_eos; the server ignores min_tokens/ignore_eos: use one that honours them (vLLM, SGLang) or do not force lengths"
    )]
    UsageMismatch {
        /// `max_tokens` (= `min_tokens`) of the request.
        requested_tokens: u32,
        /// `usage.completion_tokens` reported.
        usage_completion_tokens: u32,
    },
    /// The whole request took longer than the request timeout.
    #[error(
        "request timed out after {timeout_s} s with {after_chunks} token chunks; raise the request timeout or shorten the outputs"
    )]
    Timeout {
        /// The request timeout that expired.
        timeout_s: f64,
        /// Token chunks received before the timeout.
        after_chunks: u32,
    },
    /// The run was cancelled and the request was still in flight after the grace period.
    #[error("cancelled in flight after {after_chunks} token chunks; the run was stopped")]
    Cancelled {
        /// Token chunks received before the cancellation.
        after_chunks: u32,
    },
    /// The request cannot be expressed for this API (token ids with the chat API).
    #[error("request not sent: {message}")]
    InvalidRequest {
        /// What is wrong with it.
        message: String,
    },
}

fn fmt_opt(v: &Option<u32>) -> String {
    v.map_or_else(|| "nothing (no usage chunk)".to_owned(), |n| n.to_string())
}

impl RequestError {
    /// A short stable name of the variant (the serialised `kind` tag), for counting errors.
    pub fn kind(&self) -> &'static str {
        match self {
            RequestError::Connect { .. } => "connect",
            RequestError::Http { .. } => "http",
            RequestError::RateLimited { .. } => "rate_limited",
            RequestError::Reset { .. } => "reset",
            RequestError::Stalled { .. } => "stalled",
            RequestError::MalformedSse { .. } => "malformed_sse",
            RequestError::ServerError { .. } => "server_error",
            RequestError::NoToken { .. } => "no_token",
            RequestError::UsageMismatch { .. } => "usage_mismatch",
            RequestError::Timeout { .. } => "timeout",
            RequestError::Cancelled { .. } => "cancelled",
            RequestError::InvalidRequest { .. } => "invalid_request",
        }
    }
}

/// The measurement of one request. Times are seconds since the run's epoch. Written one per
/// line by [`crate::jsonl`], with these field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Position of the request in the run's request list.
    pub id: u64,
    /// When the schedule said to send it. TTFT and E2EL are measured from here, so client
    /// lateness and waiting for a concurrency slot count as latency (no coordinated omission).
    pub scheduled_send_s: f64,
    /// When it was handed to the HTTP client.
    pub actual_send_s: f64,
    /// Arrival of the first chunk with text; `None` when there was none.
    pub first_token_s: Option<f64>,
    /// Arrival of the last chunk with text; `None` when there was none.
    pub last_token_s: Option<f64>,
    /// When the request ended: `[DONE]` read, or the error seen.
    pub end_s: f64,
    /// Arrival of every chunk with text, in order (`token_chunks` entries).
    pub token_times_s: Vec<f64>,
    /// Chunks with non-empty text.
    pub token_chunks: u32,
    /// Content chunks with empty text (no role announcement, no finish reason).
    pub empty_chunks: u32,
    /// Arrival of every content chunk with empty text (`empty_chunks` entries): a token whose
    /// text is empty (a special token, a partial UTF-8 sequence), still a step of the stream.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub empty_times_s: Vec<f64>,
    /// `usage.prompt_tokens` from the final chunk.
    pub usage_prompt_tokens: Option<u32>,
    /// `usage.completion_tokens` from the final chunk.
    pub usage_completion_tokens: Option<u32>,
    /// Input length known at send time (token-id prompts); `None` for text prompts.
    pub requested_input_tokens: Option<u32>,
    /// `max_tokens` of the request.
    pub requested_output_tokens: u32,
    /// Why it failed; `None` for a success.
    pub error: Option<RequestError>,
}

impl RequestRecord {
    /// A record for a request that is about to be sent.
    fn started(id: u64, spec: &RequestSpec, scheduled_send_s: f64) -> Self {
        RequestRecord {
            id,
            scheduled_send_s,
            actual_send_s: scheduled_send_s,
            first_token_s: None,
            last_token_s: None,
            end_s: scheduled_send_s,
            token_times_s: Vec::new(),
            token_chunks: 0,
            empty_chunks: 0,
            empty_times_s: Vec::new(),
            usage_prompt_tokens: None,
            usage_completion_tokens: None,
            requested_input_tokens: spec.prompt.known_tokens(),
            requested_output_tokens: spec.max_tokens,
            error: None,
        }
    }

    /// Whether the request succeeded.
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }

    /// Output tokens: `usage.completion_tokens`, else the number of token chunks.
    pub fn output_tokens(&self) -> u32 {
        self.usage_completion_tokens.unwrap_or(self.token_chunks)
    }

    /// Input tokens: `usage.prompt_tokens`, else the requested input length, else 0.
    pub fn input_tokens(&self) -> u32 {
        self.usage_prompt_tokens
            .or(self.requested_input_tokens)
            .unwrap_or(0)
    }

    /// Time to first token in seconds, from the scheduled send time.
    pub fn ttft_s(&self) -> Option<f64> {
        self.first_token_s.map(|t| t - self.scheduled_send_s)
    }

    /// End-to-end latency in seconds: last token minus scheduled send time.
    pub fn e2el_s(&self) -> Option<f64> {
        self.last_token_s.map(|t| t - self.scheduled_send_s)
    }

    /// Time per output token after the first in seconds, `(e2el − ttft) / (output_tokens − 1)`,
    /// for requests with more than one output token.
    pub fn tpot_s(&self) -> Option<f64> {
        let out = self.output_tokens();
        match (self.ttft_s(), self.e2el_s()) {
            (Some(ttft), Some(e2el)) if out > 1 => Some((e2el - ttft) / f64::from(out - 1)),
            _ => None,
        }
    }

    /// Client lateness in seconds: actual minus scheduled send time.
    pub fn lateness_s(&self) -> f64 {
        self.actual_send_s - self.scheduled_send_s
    }

    fn push_token(&mut self, t_s: f64) {
        if self.first_token_s.is_none() {
            self.first_token_s = Some(t_s);
        }
        self.last_token_s = Some(t_s);
        self.token_times_s.push(t_s);
        self.token_chunks += 1;
    }
}

/// Owns the runtime; shuts it down without blocking, so a [`Client`] may be dropped anywhere,
/// even inside another async context.
struct RuntimeBox(Option<tokio::runtime::Runtime>);

impl RuntimeBox {
    fn get(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().expect("runtime is present until drop")
    }
}

impl Drop for RuntimeBox {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl fmt::Debug for RuntimeBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RuntimeBox")
    }
}

/// State shared by the tasks of one client.
#[derive(Debug)]
pub(crate) struct Inner {
    http: reqwest::Client,
    base_url: String,
    model: String,
    api: Api,
    api_key: Option<String>,
    request_timeout: Duration,
    stall_timeout: Duration,
}

/// A client for one server and model. Its methods are blocking: it owns a multi-thread tokio
/// runtime that runs the requests; call it from synchronous code (not from inside an async
/// task). Cheap to clone; clones share the runtime and the connection pool.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
    runtime: Arc<RuntimeBox>,
}

fn positive_duration(name: &str, s: f64) -> Result<Duration, ClientError> {
    if s.is_finite() && s > 0.0 {
        Duration::try_from_secs_f64(s).map_err(|e| ClientError::Config(format!("{name}: {e}")))
    } else {
        Err(ClientError::Config(format!(
            "{name} must be a positive number of seconds, got {s}"
        )))
    }
}

/// `http://h:p/v1/` → `http://h:p`.
fn normalise_base_url(url: &str) -> Result<String, ClientError> {
    let mut s = url.trim().trim_end_matches('/');
    if let Some(stripped) = s.strip_suffix("/v1") {
        s = stripped;
    }
    if !(s.starts_with("http://") || s.starts_with("https://")) {
        return Err(ClientError::Config(format!(
            "base URL must start with http:// or https://, got {url:?}"
        )));
    }
    Ok(s.to_owned())
}

/// The error and all its sources, joined with `: `.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

impl Client {
    /// Builds the runtime and HTTP client. When `config.model` is `None`, asks the server
    /// (`GET /v1/models`) and uses the first model listed.
    pub fn new(config: ClientConfig) -> Result<Client, ClientError> {
        let request_timeout = positive_duration("request_timeout_s", config.request_timeout_s)?;
        let stall_timeout = positive_duration("stall_timeout_s", config.stall_timeout_s)?;
        let connect_timeout = positive_duration("connect_timeout_s", config.connect_timeout_s)?;
        let base_url = normalise_base_url(&config.base_url)?;
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.enable_all().thread_name("endpoint-client");
        if let Some(n) = config.worker_threads {
            builder.worker_threads(n.max(1));
        }
        let runtime = builder
            .build()
            .map_err(|e| ClientError::Runtime(e.to_string()))?;
        let runtime = Arc::new(RuntimeBox(Some(runtime)));
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| ClientError::Runtime(error_chain(&e)))?;
        let mut inner = Inner {
            http,
            base_url,
            model: config.model.clone().unwrap_or_default(),
            api: config.api,
            api_key: config.api_key.clone(),
            request_timeout,
            stall_timeout,
        };
        if config.model.is_none() {
            let info = runtime.get().block_on(server_info(&inner))?;
            inner.model = info
                .default_model()
                .ok_or_else(|| ClientError::NoModel {
                    url: format!("{}/v1/models", inner.base_url),
                })?
                .to_owned();
        }
        Ok(Client {
            inner: Arc::new(inner),
            runtime,
        })
    }

    /// The model name sent in requests.
    pub fn model(&self) -> &str {
        &self.inner.model
    }

    /// The normalised base URL.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// The API used.
    pub fn api(&self) -> Api {
        self.inner.api
    }

    /// `GET /v1/models` and `GET /version` (the latter optional).
    pub fn server_info(&self) -> Result<ServerInfo, ClientError> {
        self.runtime.get().block_on(server_info(&self.inner))
    }

    /// Sends one request now and waits for it; the record's epoch is the call.
    pub fn send(&self, spec: &RequestSpec) -> RequestRecord {
        let epoch = Instant::now();
        let inner = Arc::clone(&self.inner);
        let spec = spec.clone();
        self.runtime.get().block_on(async move {
            execute(&inner, 0, &spec, epoch, 0.0, &mut Abort::never()).await
        })
    }

    pub(crate) fn shared(&self) -> Arc<Inner> {
        Arc::clone(&self.inner)
    }

    pub(crate) fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.get()
    }
}

impl Inner {
    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        let mut req = self.http.get(format!("{}{path}", self.base_url));
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        req
    }
}

#[derive(Deserialize)]
struct ModelList {
    data: Vec<ModelEntry>,
}

#[derive(Deserialize)]
struct ModelEntry {
    id: String,
}

async fn server_info(inner: &Inner) -> Result<ServerInfo, ClientError> {
    let url = format!("{}/v1/models", inner.base_url);
    let deadline = TokioInstant::now() + inner.request_timeout.min(inner.stall_timeout);
    let timeout = |url: &str| ClientError::Connect {
        url: url.to_owned(),
        message: "timed out".into(),
    };
    let resp = tokio::time::timeout_at(deadline, inner.get("/v1/models").send())
        .await
        .map_err(|_| timeout(&url))?
        .map_err(|e| ClientError::Connect {
            url: url.clone(),
            message: error_chain(&e),
        })?;
    let status = resp.status();
    let body = tokio::time::timeout_at(deadline, resp.text())
        .await
        .map_err(|_| timeout(&url))?
        .map_err(|e| ClientError::Connect {
            url: url.clone(),
            message: error_chain(&e),
        })?;
    if !status.is_success() {
        return Err(ClientError::Http {
            url,
            status: status.as_u16(),
            body_excerpt: sse::excerpt(&body, EXCERPT_CHARS),
        });
    }
    let list: ModelList = serde_json::from_str(&body).map_err(|e| ClientError::BadResponse {
        url: url.clone(),
        message: format!("{e} in {}", sse::excerpt(&body, EXCERPT_CHARS)),
    })?;
    let models = list.data.into_iter().map(|m| m.id).collect();

    // `/version` is optional: any failure means "no version".
    let version = async {
        let resp = inner.get("/version").send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let text = resp.text().await.ok()?;
        let parsed = serde_json::from_str::<serde_json::Value>(&text).ok();
        match parsed.as_ref().and_then(|v| v.get("version")) {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(v) => Some(v.to_string()),
            None => Some(sse::excerpt(text.trim(), 100)),
        }
    };
    let version = tokio::time::timeout_at(deadline, version)
        .await
        .ok()
        .flatten();
    Ok(ServerInfo {
        base_url: inner.base_url.clone(),
        models,
        version,
    })
}

/// An optional signal that in-flight requests must stop (end of a cancellation grace period).
#[derive(Debug)]
pub(crate) struct Abort(Option<watch::Receiver<bool>>);

impl Abort {
    /// A signal that never fires.
    pub(crate) fn never() -> Self {
        Abort(None)
    }

    /// Fires when `rx` holds `true`.
    pub(crate) fn on(rx: watch::Receiver<bool>) -> Self {
        Abort(Some(rx))
    }

    async fn fired(&mut self) {
        if let Some(rx) = &mut self.0 {
            if rx.wait_for(|v| *v).await.is_ok() {
                return;
            }
        }
        // No signal, or its sender is gone: never fires.
        std::future::pending::<()>().await;
    }
}

/// How a bounded wait ended.
enum Wait<T> {
    Ready(T),
    Stalled,
    TimedOut,
    Aborted,
}

/// Waits for `fut`, at most until the earlier of `stall_at` and `deadline`, or until `abort`.
async fn bounded<F: Future>(
    fut: F,
    stall_at: TokioInstant,
    deadline: TokioInstant,
    abort: &mut Abort,
) -> Wait<F::Output> {
    let until = stall_at.min(deadline);
    tokio::select! {
        biased;
        v = fut => Wait::Ready(v),
        () = abort.fired() => Wait::Aborted,
        () = tokio::time::sleep_until(until) => {
            if until >= deadline { Wait::TimedOut } else { Wait::Stalled }
        }
    }
}

fn request_body(
    model: &str,
    api: Api,
    spec: &RequestSpec,
) -> Result<serde_json::Value, RequestError> {
    let mut body = serde_json::json!({
        "model": model,
        "max_tokens": spec.max_tokens,
        "temperature": 0,
        "stream": true,
        "stream_options": { "include_usage": true },
    });
    let obj = body.as_object_mut().expect("json! object");
    match (api, &spec.prompt) {
        (Api::Completions, Prompt::TokenIds(ids)) => {
            obj.insert("prompt".into(), serde_json::json!(ids));
        }
        (Api::Completions, Prompt::Text(text)) => {
            obj.insert("prompt".into(), serde_json::json!(text));
        }
        (Api::Chat, Prompt::Text(text)) => {
            obj.insert(
                "messages".into(),
                serde_json::json!([{ "role": "user", "content": text }]),
            );
        }
        (Api::Chat, Prompt::TokenIds(_)) => {
            return Err(RequestError::InvalidRequest {
                message:
                    "the chat API takes text prompts only; use the completions API for token ids"
                        .into(),
            });
        }
    }
    if let Some(min) = spec.min_tokens {
        obj.insert("min_tokens".into(), serde_json::json!(min));
    }
    if spec.ignore_eos {
        obj.insert("ignore_eos".into(), serde_json::json!(true));
    }
    Ok(body)
}

fn seconds_since(epoch: Instant, t: Instant) -> f64 {
    t.saturating_duration_since(epoch).as_secs_f64()
}

/// Sends `spec` and measures it. Never panics on server behaviour; every failure is in the
/// returned record's `error`.
pub(crate) async fn execute(
    inner: &Inner,
    id: u64,
    spec: &RequestSpec,
    epoch: Instant,
    scheduled_send_s: f64,
    abort: &mut Abort,
) -> RequestRecord {
    let mut rec = RequestRecord::started(id, spec, scheduled_send_s);
    let sent = Instant::now();
    rec.actual_send_s = seconds_since(epoch, sent);
    let outcome = stream_response(inner, spec, epoch, sent, abort, &mut rec).await;
    rec.end_s = seconds_since(epoch, Instant::now());
    rec.error = match outcome {
        Err(e) => Some(e),
        Ok(()) => check_counts(spec, &rec),
    };
    rec
}

/// The checks made on a stream that ended normally (see [`RequestError::NoToken`] and
/// [`RequestError::UsageMismatch`]).
fn check_counts(spec: &RequestSpec, rec: &RequestRecord) -> Option<RequestError> {
    let usage = rec.usage_completion_tokens;
    let lost_text = rec.empty_chunks > 0 && usage.is_some_and(|u| u > rec.token_chunks);
    if (rec.token_chunks == 0 && spec.max_tokens > 0) || lost_text {
        return Some(RequestError::NoToken {
            token_chunks: rec.token_chunks,
            empty_chunks: rec.empty_chunks,
            usage_completion_tokens: usage,
        });
    }
    match usage {
        Some(u) if spec.forces_length() && u != spec.max_tokens => {
            Some(RequestError::UsageMismatch {
                requested_tokens: spec.max_tokens,
                usage_completion_tokens: u,
            })
        }
        _ => None,
    }
}

async fn stream_response(
    inner: &Inner,
    spec: &RequestSpec,
    epoch: Instant,
    sent: Instant,
    abort: &mut Abort,
    rec: &mut RequestRecord,
) -> Result<(), RequestError> {
    let body = request_body(&inner.model, inner.api, spec)?;
    let deadline = TokioInstant::from_std(sent) + inner.request_timeout;
    let stall = inner.stall_timeout;
    let timeout_s = inner.request_timeout.as_secs_f64();
    let stall_s = stall.as_secs_f64();
    let mut req = inner
        .http
        .post(format!("{}{}", inner.base_url, inner.api.path()))
        .json(&body);
    if let Some(key) = &inner.api_key {
        req = req.bearer_auth(key);
    }

    let fail = |w: &Wait<()>, after_chunks: u32| match w {
        Wait::Stalled => RequestError::Stalled {
            stall_s,
            after_chunks,
        },
        Wait::Aborted => RequestError::Cancelled { after_chunks },
        _ => RequestError::Timeout {
            timeout_s,
            after_chunks,
        },
    };
    // Until the response headers arrive, only the request timeout applies: a long queue
    // inside the server before the first byte is latency to measure, not a stall.
    let resp = match bounded(req.send(), deadline, deadline, abort).await {
        Wait::Ready(Ok(r)) => r,
        Wait::Ready(Err(e)) => {
            let message = error_chain(&e);
            return Err(if e.is_connect() {
                RequestError::Connect { message }
            } else if e.is_timeout() {
                RequestError::Timeout {
                    timeout_s,
                    after_chunks: 0,
                }
            } else {
                RequestError::Reset {
                    after_chunks: 0,
                    message,
                }
            });
        }
        Wait::Stalled => return Err(fail(&Wait::Stalled, 0)),
        Wait::TimedOut => return Err(fail(&Wait::TimedOut, 0)),
        Wait::Aborted => return Err(fail(&Wait::Aborted, 0)),
    };

    let status = resp.status();
    if !status.is_success() {
        let stall_at = TokioInstant::now() + stall;
        let text = match bounded(resp.text(), stall_at, deadline, abort).await {
            Wait::Ready(Ok(t)) => t,
            _ => String::new(),
        };
        let body_excerpt = sse::excerpt(text.trim(), EXCERPT_CHARS);
        return Err(if status.as_u16() == 429 {
            RequestError::RateLimited { body_excerpt }
        } else {
            RequestError::Http {
                status: status.as_u16(),
                body_excerpt,
            }
        });
    }

    let mut events = resp.bytes_stream().eventsource();
    let mut finished = false;
    loop {
        let stall_at = TokioInstant::now() + stall;
        let next = match bounded(events.next(), stall_at, deadline, abort).await {
            Wait::Ready(v) => v,
            Wait::Stalled => return Err(fail(&Wait::Stalled, rec.token_chunks)),
            Wait::TimedOut => return Err(fail(&Wait::TimedOut, rec.token_chunks)),
            Wait::Aborted => return Err(fail(&Wait::Aborted, rec.token_chunks)),
        };
        let t_s = seconds_since(epoch, Instant::now());
        let event = match next {
            None if finished => return Ok(()),
            None => {
                return Err(RequestError::Reset {
                    after_chunks: rec.token_chunks,
                    message: "stream closed before `data: [DONE]` or a finish reason".into(),
                });
            }
            Some(Err(EventStreamError::Transport(e))) => {
                return Err(RequestError::Reset {
                    after_chunks: rec.token_chunks,
                    message: error_chain(&e),
                });
            }
            Some(Err(e)) => {
                return Err(RequestError::MalformedSse {
                    after_chunks: rec.token_chunks,
                    line_excerpt: sse::excerpt(&e.to_string(), EXCERPT_CHARS),
                });
            }
            Some(Ok(event)) => event,
        };
        let data = event.data.trim();
        if data == DONE {
            return Ok(());
        }
        let chunk = sse::parse_chunk(data).map_err(|_| RequestError::MalformedSse {
            after_chunks: rec.token_chunks,
            line_excerpt: sse::excerpt(data, EXCERPT_CHARS),
        })?;
        if let Some((prompt, completion)) = chunk.usage {
            rec.usage_prompt_tokens = Some(prompt);
            rec.usage_completion_tokens = Some(completion);
            finished = true;
        }
        finished |= chunk.finished;
        match chunk.kind {
            ChunkKind::Token => rec.push_token(t_s),
            ChunkKind::Empty => {
                rec.empty_chunks += 1;
                rec.empty_times_s.push(t_s);
            }
            ChunkKind::Other => {}
            ChunkKind::ServerError(message) => {
                return Err(RequestError::ServerError {
                    after_chunks: rec.token_chunks,
                    message: sse::excerpt(&message, EXCERPT_CHARS),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(prompt: Prompt) -> RequestSpec {
        RequestSpec::fixed_length(prompt, 5)
    }

    #[test]
    fn body_for_completions_with_token_ids() {
        let b = request_body("m", Api::Completions, &spec(Prompt::TokenIds(vec![1, 2]))).unwrap();
        assert_eq!(
            b,
            serde_json::json!({
                "model": "m", "prompt": [1, 2], "max_tokens": 5, "min_tokens": 5,
                "ignore_eos": true, "temperature": 0, "stream": true,
                "stream_options": {"include_usage": true}
            })
        );
    }

    #[test]
    fn body_for_chat_and_unforced() {
        let s = RequestSpec {
            prompt: Prompt::Text("hi".into()),
            max_tokens: 3,
            min_tokens: None,
            ignore_eos: false,
        };
        let b = request_body("m", Api::Chat, &s).unwrap();
        assert_eq!(
            b["messages"],
            serde_json::json!([{"role": "user", "content": "hi"}])
        );
        assert!(b.get("min_tokens").is_none() && b.get("ignore_eos").is_none());
        assert!(b.get("prompt").is_none());
        let err = request_body("m", Api::Chat, &spec(Prompt::TokenIds(vec![1]))).unwrap_err();
        assert_eq!(err.kind(), "invalid_request");
    }

    #[test]
    fn base_url_is_normalised() {
        assert_eq!(
            normalise_base_url("http://h:1/v1/").unwrap(),
            "http://h:1".to_owned()
        );
        assert!(normalise_base_url("h:1").is_err());
    }

    #[test]
    fn count_checks() {
        let s = spec(Prompt::TokenIds(vec![1]));
        let mut rec = RequestRecord::started(0, &s, 0.0);
        assert_eq!(check_counts(&s, &rec).unwrap().kind(), "no_token");
        for i in 0..5 {
            rec.push_token(f64::from(i));
        }
        rec.usage_completion_tokens = Some(5);
        assert_eq!(check_counts(&s, &rec), None);
        // Several tokens per chunk without empty chunks is fine.
        rec.usage_completion_tokens = Some(9);
        let loose = RequestSpec {
            min_tokens: None,
            ..s.clone()
        };
        assert_eq!(check_counts(&loose, &rec), None);
        // ... but with the length forced, 9 ≠ 5 is a usage mismatch.
        assert_eq!(check_counts(&s, &rec).unwrap().kind(), "usage_mismatch");
        // Empty chunks and missing tokens together: text was lost.
        rec.empty_chunks = 1;
        rec.usage_completion_tokens = Some(6);
        assert_eq!(check_counts(&loose, &rec).unwrap().kind(), "no_token");
    }

    #[test]
    fn errors_display_on_one_line_and_round_trip() {
        let errors = [
            RequestError::Connect {
                message: "refused".into(),
            },
            RequestError::NoToken {
                token_chunks: 1,
                empty_chunks: 2,
                usage_completion_tokens: None,
            },
            RequestError::Stalled {
                stall_s: 0.5,
                after_chunks: 3,
            },
        ];
        for e in errors {
            let text = e.to_string();
            assert!(!text.contains('\n'), "{text}");
            let json = serde_json::to_string(&e).unwrap();
            assert!(
                json.contains(&format!("\"kind\":\"{}\"", e.kind())),
                "{json}"
            );
            assert_eq!(serde_json::from_str::<RequestError>(&json).unwrap(), e);
        }
    }
}
