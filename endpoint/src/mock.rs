//! An in-process OpenAI-compatible streaming server with known latency and injectable faults,
//! for testing the client, the load generator and the metrics against closed forms.
//!
//! What it serves (HTTP/1.1 on `127.0.0.1`, an ephemeral port): `GET /v1/models`,
//! `GET /version`, and `POST /v1/completions` / `POST /v1/chat/completions` with
//! `stream: true`. A generation request waits `ttft_s + prefill_per_token_s × prompt_tokens`
//! from its arrival, then sends one chunk of one token every `tpot_s` (token `k` at
//! `arrival + ttft + prefill + k·tpot`: absolute deadlines, so no drift), the last with its
//! `finish_reason`, then the usage chunk (when `stream_options.include_usage`) and
//! `data: [DONE]`. Prompt tokens are the length of a token-id array, or the number of
//! whitespace-separated words of a text prompt or of the chat messages' contents.
//!
//! Output length: `max_tokens` (default 16), unless `eos_after_tokens` is set: then the "model"
//! stops after that many tokens, unless the request forces more (`ignore_eos`: `max_tokens`;
//! `min_tokens`: at least that) and `honour_length_controls` is on. With it off, a forced
//! request stops early and the client records a usage mismatch.
//!
//! Faults ([`Fault`]) are chosen per request, by arrival order ([`MockConfig::faults_by_arrival`],
//! counting generation requests from 0) or by a marker in a text prompt ([`Fault::marker`]).
//!
//! Cost: one tokio task per connection, chunks pre-formatted with `format!`, no allocation per
//! token beyond the chunk itself; a single worker thread serves thousands of short streams a
//! second.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{Stream, stream};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::time::Instant as TokioInstant;

/// A failure the mock injects into one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Send `after_tokens` token chunks, then break the connection (no chunked-encoding end).
    Reset {
        /// Token chunks sent before the break.
        after_tokens: u32,
    },
    /// Answer HTTP 500 with a JSON error body.
    Http500,
    /// Answer HTTP 429 with a JSON error body.
    RateLimited,
    /// Send `after_tokens` token chunks, then nothing (connection kept open) for the
    /// configured `stall_s`, then break the connection.
    Stall {
        /// Token chunks sent before the stall.
        after_tokens: u32,
    },
    /// Send `after_tokens` token chunks, then a `data:` line that is not valid JSON.
    MalformedSse {
        /// Token chunks sent before the bad line.
        after_tokens: u32,
    },
    /// Token `at_token` (0-based) is sent as a chunk with empty text; usage still counts it.
    EmptyChunk {
        /// Which token's chunk is empty.
        at_token: u32,
    },
    /// Usage reports `extra_tokens` more completion tokens than were sent (may be negative).
    WrongUsage {
        /// Added to the true completion token count in the usage chunk.
        extra_tokens: i32,
    },
}

const MARKER_PREFIX: &str = "[mock-fault:";

impl Fault {
    /// A marker that, anywhere in a text prompt, makes the mock inject this fault into that
    /// request: `[mock-fault:<name>:<n>]`.
    pub fn marker(&self) -> String {
        let (name, n) = match *self {
            Fault::Reset { after_tokens } => ("reset", i64::from(after_tokens)),
            Fault::Http500 => ("http500", 0),
            Fault::RateLimited => ("rate_limited", 0),
            Fault::Stall { after_tokens } => ("stall", i64::from(after_tokens)),
            Fault::MalformedSse { after_tokens } => ("malformed_sse", i64::from(after_tokens)),
            Fault::EmptyChunk { at_token } => ("empty_chunk", i64::from(at_token)),
            Fault::WrongUsage { extra_tokens } => ("wrong_usage", i64::from(extra_tokens)),
        };
        format!("{MARKER_PREFIX}{name}:{n}]")
    }

    /// The fault named by the first marker in `text`, if any.
    pub fn from_prompt(text: &str) -> Option<Fault> {
        let start = text.find(MARKER_PREFIX)? + MARKER_PREFIX.len();
        let rest = &text[start..];
        let body = &rest[..rest.find(']')?];
        let (name, n) = body.split_once(':')?;
        let n: i64 = n.parse().ok()?;
        let u = || u32::try_from(n).ok();
        Some(match name {
            "reset" => Fault::Reset { after_tokens: u()? },
            "http500" => Fault::Http500,
            "rate_limited" => Fault::RateLimited,
            "stall" => Fault::Stall { after_tokens: u()? },
            "malformed_sse" => Fault::MalformedSse { after_tokens: u()? },
            "empty_chunk" => Fault::EmptyChunk { at_token: u()? },
            "wrong_usage" => Fault::WrongUsage {
                extra_tokens: i32::try_from(n).ok()?,
            },
            _ => return None,
        })
    }
}

/// Latency, lengths and faults of the mock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MockConfig {
    /// Fixed delay from a request's arrival to its first token.
    pub ttft_s: f64,
    /// Extra delay before the first token per prompt token.
    pub prefill_per_token_s: f64,
    /// Delay between consecutive tokens.
    pub tpot_s: f64,
    /// Natural output length (an end-of-sequence after this many tokens); `None`: never.
    pub eos_after_tokens: Option<u32>,
    /// Whether `min_tokens` / `ignore_eos` override `eos_after_tokens`.
    pub honour_length_controls: bool,
    /// Model ids listed by `/v1/models`.
    pub models: Vec<String>,
    /// `/version`'s `version`; `None`: `/version` answers 404.
    pub version: Option<String>,
    /// Faults by arrival index of generation requests (0 = first to arrive).
    pub faults_by_arrival: BTreeMap<u64, Fault>,
    /// How long a [`Fault::Stall`] keeps the connection silent.
    pub stall_s: f64,
    /// Worker threads of the mock's own runtime.
    pub worker_threads: usize,
}

impl Default for MockConfig {
    /// No delays, no EOS, length controls honoured, one model `mock-model`, version
    /// `mock-0.1`, no faults, 30 s stalls, one worker thread.
    fn default() -> Self {
        MockConfig {
            ttft_s: 0.0,
            prefill_per_token_s: 0.0,
            tpot_s: 0.0,
            eos_after_tokens: None,
            honour_length_controls: true,
            models: vec!["mock-model".into()],
            version: Some("mock-0.1".into()),
            faults_by_arrival: BTreeMap::new(),
            stall_s: 30.0,
            worker_threads: 1,
        }
    }
}

/// A running mock server; dropping it (or [`MockServer::shutdown`]) stops it.
#[derive(Debug)]
pub struct MockServer {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug)]
struct State {
    config: MockConfig,
    arrivals: AtomicU64,
}

impl MockServer {
    /// Binds `127.0.0.1:0` and serves on a background thread with its own tokio runtime.
    /// Returns the bound address and the handle.
    pub fn start(config: MockConfig) -> io::Result<(SocketAddr, MockServer)> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.worker_threads.max(1))
            .thread_name("endpoint-mock")
            .enable_all()
            .build()?;
        let state = Arc::new(State {
            config,
            arrivals: AtomicU64::new(0),
        });
        let (stop_tx, stop_rx) = oneshot::channel();
        let served = Arc::clone(&state);
        let listener = {
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let thread = std::thread::Builder::new()
            .name("endpoint-mock-accept".into())
            .spawn(move || {
                runtime.block_on(accept_loop(listener, served, stop_rx));
                runtime.shutdown_background();
            })?;
        Ok((
            addr,
            MockServer {
                addr,
                state,
                stop: Some(stop_tx),
                thread: Some(thread),
            },
        ))
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`, a base URL for [`crate::ClientConfig`].
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Generation requests received so far.
    pub fn requests_received(&self) -> u64 {
        self.state.arrivals.load(Ordering::Relaxed)
    }

    /// Stops accepting, drops open connections and joins the server thread.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.stop_now();
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    state: Arc<State>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                let _ = tcp.set_nodelay(true);
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(req, Arc::clone(&state)));
                    // A client that goes away mid-response is normal here.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        }
    }
}

type BodyStream = Pin<Box<dyn Stream<Item = Result<Frame<Bytes>, io::Error>> + Send>>;
type Body = StreamBody<BodyStream>;

fn full(status: StatusCode, content_type: &str, text: String) -> Response<Body> {
    let body: BodyStream = Box::pin(stream::once(
        async move { Ok(Frame::data(Bytes::from(text))) },
    ));
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(StreamBody::new(body))
        .expect("static response parts are valid")
}

fn json_error(status: StatusCode, message: &str) -> Response<Body> {
    let text = serde_json::json!({
        "object": "error",
        "message": message,
        "type": "mock",
        "code": status.as_u16(),
    })
    .to_string();
    full(status, "application/json", text)
}

async fn handle(req: Request<Incoming>, state: Arc<State>) -> Result<Response<Body>, Infallible> {
    let arrived = TokioInstant::now();
    let config = &state.config;
    let response = match (req.method(), req.uri().path()) {
        (&Method::GET, "/v1/models") => {
            let data: Vec<_> = config
                .models
                .iter()
                .map(|id| serde_json::json!({"id": id, "object": "model", "created": 0, "owned_by": "mock"}))
                .collect();
            let text = serde_json::json!({"object": "list", "data": data}).to_string();
            full(StatusCode::OK, "application/json", text)
        }
        (&Method::GET, "/version") => match &config.version {
            Some(v) => full(
                StatusCode::OK,
                "application/json",
                serde_json::json!({ "version": v }).to_string(),
            ),
            None => json_error(StatusCode::NOT_FOUND, "no /version here"),
        },
        (&Method::POST, "/v1/completions") => generate(req, &state, arrived, false).await,
        (&Method::POST, "/v1/chat/completions") => generate(req, &state, arrived, true).await,
        _ => json_error(StatusCode::NOT_FOUND, "unknown route"),
    };
    Ok(response)
}

/// The request fields the mock reads.
#[derive(Deserialize)]
struct GenRequest {
    #[serde(default)]
    model: String,
    #[serde(default)]
    prompt: Option<serde_json::Value>,
    #[serde(default)]
    messages: Option<Vec<ChatMessage>>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    min_tokens: Option<u32>,
    #[serde(default)]
    ignore_eos: bool,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
struct ChatMessage {
    #[serde(default)]
    content: String,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

async fn generate(
    req: Request<Incoming>,
    state: &Arc<State>,
    arrived: TokioInstant,
    chat: bool,
) -> Response<Body> {
    let config = &state.config;
    let bytes = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return json_error(StatusCode::BAD_REQUEST, "could not read the body"),
    };
    let request: GenRequest = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &format!("bad JSON: {e}")),
    };
    let arrival = state.arrivals.fetch_add(1, Ordering::Relaxed);
    if !request.stream {
        return json_error(StatusCode::BAD_REQUEST, "the mock serves stream=true only");
    }
    let (prompt_tokens, prompt_text) = match (&request.prompt, &request.messages) {
        (_, Some(messages)) if chat => {
            let words = messages
                .iter()
                .map(|m| m.content.split_whitespace().count())
                .sum::<usize>();
            let text = messages
                .iter()
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join("\n");
            (words, text)
        }
        (Some(serde_json::Value::Array(ids)), _) if !chat => (ids.len(), String::new()),
        (Some(serde_json::Value::String(text)), _) if !chat => {
            (text.split_whitespace().count(), text.clone())
        }
        _ => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "need `prompt` (completions) or `messages` (chat)",
            );
        }
    };
    let fault = config
        .faults_by_arrival
        .get(&arrival)
        .copied()
        .or_else(|| Fault::from_prompt(&prompt_text));
    match fault {
        Some(Fault::Http500) => {
            return json_error(StatusCode::INTERNAL_SERVER_ERROR, "mock internal error");
        }
        Some(Fault::RateLimited) => {
            return json_error(StatusCode::TOO_MANY_REQUESTS, "mock rate limit");
        }
        _ => {}
    }

    let max_tokens = request.max_tokens.unwrap_or(16);
    let output_tokens = match config.eos_after_tokens {
        None => max_tokens,
        Some(eos) => {
            let floor = match (config.honour_length_controls, request.ignore_eos) {
                (false, _) => 0,
                (true, true) => max_tokens,
                (true, false) => request.min_tokens.unwrap_or(0),
            };
            max_tokens.min(eos.max(floor))
        }
    };
    let secs = |s: f64| Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::ZERO);
    let first_at =
        arrived + secs(config.ttft_s) + secs(config.prefill_per_token_s * prompt_tokens as f64);
    let model_json = serde_json::to_string(&request.model).unwrap_or_else(|_| "\"\"".into());
    let generation = Generation {
        chat,
        model_json,
        first_at,
        tpot: secs(config.tpot_s),
        stall: secs(config.stall_s),
        output_tokens,
        finish_reason: if output_tokens == max_tokens {
            "length"
        } else {
            "stop"
        },
        prompt_tokens: u32::try_from(prompt_tokens).unwrap_or(u32::MAX),
        include_usage: request.stream_options.is_some_and(|o| o.include_usage),
        fault,
        step: Step::Start,
    };
    let body: BodyStream = Box::pin(stream::unfold(generation, Generation::next_frame));
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(StreamBody::new(body))
        .expect("static response parts are valid")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Start,
    Token(u32),
    Usage,
    Done,
    End,
}

/// The state of one streamed response.
struct Generation {
    chat: bool,
    model_json: String,
    first_at: TokioInstant,
    tpot: Duration,
    stall: Duration,
    output_tokens: u32,
    finish_reason: &'static str,
    prompt_tokens: u32,
    include_usage: bool,
    fault: Option<Fault>,
    step: Step,
}

fn data(payload: &str) -> String {
    format!("data: {payload}\n\n")
}

async fn sleep_until(at: TokioInstant) {
    if at > TokioInstant::now() {
        tokio::time::sleep_until(at).await;
    }
}

impl Generation {
    fn head(&self) -> String {
        let (id, object) = if self.chat {
            ("chatcmpl-mock", "chat.completion.chunk")
        } else {
            ("cmpl-mock", "text_completion")
        };
        format!(
            r#""id":"{id}","object":"{object}","created":0,"model":{}"#,
            self.model_json
        )
    }

    fn choice_chunk(&self, text: &str, finish: Option<&str>) -> String {
        let finish = finish.map_or_else(|| "null".to_owned(), |f| format!("\"{f}\""));
        let choice = if self.chat {
            format!(
                r#"{{"index":0,"delta":{{"content":"{text}"}},"logprobs":null,"finish_reason":{finish}}}"#
            )
        } else {
            format!(r#"{{"index":0,"text":"{text}","logprobs":null,"finish_reason":{finish}}}"#)
        };
        data(&format!(r#"{{{},"choices":[{choice}]}}"#, self.head()))
    }

    /// The body's next frame; `None` ends the body cleanly, `Some(Err)` breaks the connection.
    async fn next_frame(mut self) -> Option<(Result<Frame<Bytes>, io::Error>, Self)> {
        loop {
            let frame = match self.step {
                Step::Start => {
                    sleep_until(self.first_at).await;
                    self.step = if self.output_tokens > 0 {
                        Step::Token(0)
                    } else {
                        Step::Usage
                    };
                    if !self.chat {
                        continue;
                    }
                    data(&format!(
                        r#"{{{},"choices":[{{"index":0,"delta":{{"role":"assistant","content":""}},"logprobs":null,"finish_reason":null}}]}}"#,
                        self.head()
                    ))
                }
                Step::Token(k) => {
                    match self.fault {
                        Some(Fault::Reset { after_tokens }) if k == after_tokens => {
                            // Let hyper flush the chunks already queued, so the client sees
                            // exactly `after_tokens` of them before the break.
                            tokio::time::sleep(Duration::from_millis(2)).await;
                            self.step = Step::End;
                            return Some((Err(io::Error::other("mock reset")), self));
                        }
                        Some(Fault::Stall { after_tokens }) if k == after_tokens => {
                            tokio::time::sleep(self.stall).await;
                            self.step = Step::End;
                            return Some((Err(io::Error::other("mock stall ended")), self));
                        }
                        Some(Fault::MalformedSse { after_tokens }) if k == after_tokens => {
                            self.fault = None;
                            data(r#"{"choices": [{"text": "oops""#)
                        }
                        _ => {
                            sleep_until(self.first_at + self.tpot * k).await;
                            let last = k + 1 == self.output_tokens;
                            self.step = if last {
                                Step::Usage
                            } else {
                                Step::Token(k + 1)
                            };
                            let empty = self.fault == Some(Fault::EmptyChunk { at_token: k });
                            let finish = last.then_some(self.finish_reason);
                            match (empty, last) {
                                (false, _) => self.choice_chunk(" t", finish),
                                (true, false) => self.choice_chunk("", None),
                                // An empty chunk must not carry the finish reason (that would
                                // make it a legal bookkeeping chunk): send the reason apart.
                                (true, true) => {
                                    self.choice_chunk("", None) + &self.choice_chunk("", finish)
                                }
                            }
                        }
                    }
                }
                Step::Usage => {
                    self.step = Step::Done;
                    if !self.include_usage {
                        continue;
                    }
                    let extra = match self.fault {
                        Some(Fault::WrongUsage { extra_tokens }) => i64::from(extra_tokens),
                        _ => 0,
                    };
                    let completion = (i64::from(self.output_tokens) + extra).max(0);
                    let prompt = self.prompt_tokens;
                    data(&format!(
                        r#"{{{},"choices":[],"usage":{{"prompt_tokens":{prompt},"completion_tokens":{completion},"total_tokens":{}}}}}"#,
                        self.head(),
                        i64::from(prompt) + completion
                    ))
                }
                Step::Done => {
                    self.step = Step::End;
                    data("[DONE]")
                }
                Step::End => return None,
            };
            return Some((Ok(Frame::data(Bytes::from(frame))), self));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip() {
        for f in [
            Fault::Reset { after_tokens: 3 },
            Fault::Http500,
            Fault::RateLimited,
            Fault::Stall { after_tokens: 0 },
            Fault::MalformedSse { after_tokens: 2 },
            Fault::EmptyChunk { at_token: 4 },
            Fault::WrongUsage { extra_tokens: -2 },
        ] {
            let prompt = format!("some words {} more", f.marker());
            assert_eq!(Fault::from_prompt(&prompt), Some(f));
        }
        assert_eq!(Fault::from_prompt("no marker"), None);
        assert_eq!(Fault::from_prompt("[mock-fault:bogus:1]"), None);
    }
}
