//! `tokenq profile --backend openai`: an OpenAI-compatible streaming server (vLLM, SGLang, TGI,
//! llama.cpp) driven over the same grid as a candle model, written to the same timings table
//! (docs/design.md "Contracts"), so `tokenq fit` works unchanged.
//!
//! A grid point `(batch b, input n, output N)` is `b` streamed requests sent at the same instant,
//! each with a random token-id prompt of exactly `n` tokens, `max_tokens = min_tokens = N` and
//! `ignore_eos` (see `endpoint::RequestSpec::fixed_length`). The server batches them as it
//! likes; the profile reads the batch as the candle backend runs it, in lockstep: with
//! `t_k = max_i (arrival of token k of request i)` (the moment the whole batch has its k-th
//! token, measured from the common send time), step 0 is `t_0` (the batch's time to first
//! token) and step `k ≥ 1` is `t_k − t_{k−1}`. The steps sum to the batch's end-to-end time.
//! These are client-side times: they include the network and the server's host overhead
//! between engine steps, which is what a user of the server waits for.
//!
//! The prompts are the profiler's seeded ones except for their first two tokens, drawn anew in
//! every run, so that a server with prefix caching (vLLM's default) cannot serve a pass from the
//! cache of an earlier run.
//!
//! A server's output path can fall behind its engine and merge the pending tokens of a stream
//! into one chunk (vLLM's API process does under load): such a request is left out of the
//! lockstep, its batch-mates carry the step times. A batch in which every stream merged, or
//! one of whose requests failed, is sent again (twice at most). A server that ignores
//! `min_tokens`/`ignore_eos` (fewer tokens than asked), or a batch that fails three times, fails
//! the point with a one-line reason; the runner records it and goes on.

use std::collections::VecDeque;

use endpoint::{Api, Client, ClientConfig, Prompt, RequestRecord, RequestSpec, ServerInfo};
use profiler::{
    Backend, BackendError, BackendInfo, ExternalSpec, PointShape, PromptBatch, StepTiming,
};

/// A number new to every run (clock and process id): the first prompt tokens drawn from it
/// keep a rerun from being served by the server's prefix cache of an earlier run (prefix
/// caching hashes blocks from the first token on, so one differing leading token is enough).
pub fn run_salt() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// Leading prompt tokens drawn from the run's salt.
const SALTED_TOKENS: usize = 2;

/// Times a batch is sent again when every one of its streams merged tokens (a passing stall
/// of the server's output path) or a request failed (a dropped connection, a timeout) before
/// the point fails.
const RETRIES: u32 = 2;

/// A guess of one step of a small server, for the `--dry-run` estimate.
const STEP_S_GUESS: f64 = 0.03;

/// Where the server is and how to talk to it.
#[derive(Debug, Clone)]
pub struct OpenAiSpec {
    /// The server's root URL, e.g. `http://127.0.0.1:8000`.
    pub url: String,
    /// The model to ask for; `None`: the first one the server lists.
    pub model: Option<String>,
    /// Completions (token-id prompts) or chat.
    pub api: Api,
    /// Prompt token ids are drawn from `0..vocab_size`.
    pub vocab_size: usize,
    /// Longest a request may take, seconds.
    pub request_timeout_s: f64,
}

/// An OpenAI-compatible server as a profiler backend.
#[derive(Debug)]
pub struct OpenAiBackend {
    client: Client,
    server: ServerInfo,
    spec: OpenAiSpec,
    shape: Option<PointShape>,
    decode: VecDeque<f64>,
    forward_calls: u64,
    salt: rand::rngs::StdRng,
}

impl OpenAiBackend {
    /// Connect: read `/v1/models` (and `/version` where present) and choose the model.
    pub fn connect(spec: OpenAiSpec) -> anyhow::Result<OpenAiBackend> {
        if spec.api == Api::Chat {
            anyhow::bail!(
                "--api chat cannot send prompts of an exact token count; profile with --api completions (the server's chat endpoint adds a template to every prompt)"
            );
        }
        let mut cfg = ClientConfig::new(spec.url.clone());
        cfg.model = spec.model.clone();
        cfg.api = spec.api;
        cfg.request_timeout_s = spec.request_timeout_s;
        let client = Client::new(cfg).map_err(|e| anyhow::anyhow!("--url {}: {e}", spec.url))?;
        let server = client
            .server_info()
            .map_err(|e| anyhow::anyhow!("--url {}: {e}", spec.url))?;
        if let Some(m) = &spec.model
            && !server.models.iter().any(|s| s == m)
        {
            anyhow::bail!(
                "--model {m}: {} serves {}; pass one of those",
                spec.url,
                server.models.join(", ")
            );
        }
        Ok(OpenAiBackend {
            client,
            server,
            spec,
            shape: None,
            decode: VecDeque::new(),
            forward_calls: 0,
            salt: rand::SeedableRng::seed_from_u64(run_salt()),
        })
    }

    /// Send the batch's `b` prompts at once, each forced to `output` tokens, and wait for all.
    fn send_batch(&mut self, prompts: &PromptBatch, output: u32) -> Vec<RequestRecord> {
        let n = prompts.input_tokens;
        let vocab = self.spec.vocab_size.max(1) as u32;
        let specs: Vec<RequestSpec> = (0..prompts.batch_size)
            .map(|i| {
                let mut ids = prompts.ids[i * n..(i + 1) * n].to_vec();
                // The profile's prompts are seeded (the same in every run); their first tokens
                // are the run's own, so no pass is served from an earlier run's prefix cache.
                for id in ids.iter_mut().take(SALTED_TOKENS) {
                    *id = rand::RngExt::random_range(&mut self.salt, 0..vocab);
                }
                RequestSpec::fixed_length(Prompt::TokenIds(ids), output)
            })
            .collect();
        endpoint::run_batch(&self.client, specs)
    }

    /// What the plan, the labels and the resume fingerprint know of this server.
    pub fn external_spec(&self) -> ExternalSpec {
        ExternalSpec {
            backend: "openai".into(),
            model: self.client.model().to_string(),
            device: format!("server {}", self.client.base_url()),
            dtype: "server".into(),
            identity: self.identity(),
            step_s_estimate: STEP_S_GUESS,
        }
    }

    /// The server, URL, model and API: what must agree for parts to be resumed.
    fn identity(&self) -> String {
        format!(
            "{} model={} api={:?} version={}",
            self.client.base_url(),
            self.client.model(),
            self.spec.api,
            self.server.version.as_deref().unwrap_or("unknown")
        )
    }

    /// The server's description, for the run metadata.
    pub fn server(&self) -> &ServerInfo {
        &self.server
    }
}

/// Why a batch's streams gave no step times.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LockstepError {
    /// A request failed (HTTP, timeout, a broken stream).
    #[error("request {id}: {message}")]
    Request {
        /// The request's id in the batch.
        id: u64,
        /// What went wrong.
        message: String,
    },
    /// Fewer tokens came back than were forced.
    #[error(
        "asked for exactly {asked} tokens (min_tokens = max_tokens, ignore_eos) and got {got}: the server ignores min_tokens/ignore_eos, so step times cannot be measured at fixed lengths"
    )]
    Short {
        /// Tokens asked for.
        asked: u32,
        /// Tokens received.
        got: u32,
    },
    /// Every request of the batch received some chunk holding several tokens.
    #[error(
        "{got} tokens arrived in {chunks} chunks in every request of the batch: the server streamed several tokens per chunk, so step times cannot be read"
    )]
    Merged {
        /// Tokens of the request with the fewest chunks.
        got: u32,
        /// Its chunks.
        chunks: usize,
    },
}

impl From<LockstepError> for BackendError {
    fn from(e: LockstepError) -> Self {
        BackendError::Server(e.to_string())
    }
}

/// The batch's lockstep step times from its requests' token arrival times (module docs).
///
/// A request whose stream merged tokens into one chunk (a server whose output path falls
/// behind the engine coalesces the pending tokens: vLLM's API process does so under load) has
/// no arrival time for some of its tokens; it is left out, and its batch-mates, stepped by
/// the same engine steps, carry the times. Only a batch in which every request merged fails
/// ([`LockstepError::Merged`]).
pub fn lockstep_steps(records: &[RequestRecord], output: u32) -> Result<Vec<f64>, LockstepError> {
    let n = output as usize;
    // Every content chunk is one token step, whether its text is empty (a special token, a
    // partial UTF-8 sequence: `endpoint` flags those as `NoToken`) or not.
    let mut times: Vec<Vec<f64>> = Vec::with_capacity(records.len());
    let mut fewest: Option<(u32, usize)> = None;
    for r in records {
        let mut t = r.token_times_s.clone();
        t.extend(&r.empty_times_s);
        t.sort_by(f64::total_cmp);
        match &r.error {
            // Empty chunks are tokens too; whether every token had its chunk is read below.
            Some(endpoint::RequestError::NoToken { .. }) | None => {}
            Some(e) => {
                return Err(LockstepError::Request {
                    id: r.id,
                    message: e.to_string(),
                });
            }
        }
        let got = r.output_tokens();
        if got < output {
            return Err(LockstepError::Short { asked: output, got });
        }
        if t.len() < n
            || r.usage_completion_tokens
                .is_some_and(|u| (t.len() as u32) < u)
        {
            if fewest.is_none_or(|(_, c)| t.len() < c) {
                fewest = Some((got, t.len()));
            }
            continue;
        }
        times.push(t);
    }
    if times.is_empty() {
        let (got, chunks) = fewest.unwrap_or((0, 0));
        return Err(LockstepError::Merged { got, chunks });
    }
    let send = records
        .iter()
        .map(|r| r.scheduled_send_s)
        .fold(f64::INFINITY, f64::min);
    let mut steps = Vec::with_capacity(n);
    let mut prev = send;
    for k in 0..n {
        let t = times.iter().map(|t| t[k]).fold(f64::NEG_INFINITY, f64::max);
        steps.push((t - prev).max(0.0));
        prev = t;
    }
    Ok(steps)
}

impl Backend for OpenAiBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            backend: "openai".into(),
            device: format!("server {}", self.client.base_url()),
            driver: self.server.version.clone(),
            dtype: "server".into(),
            model: self.client.model().to_string(),
            config_hash: format!(
                "api={:?}; /v1/models: {}",
                self.spec.api,
                self.server.models.join(", ")
            ),
            weights: self.identity(),
        }
    }

    fn vocab_size(&self) -> usize {
        self.spec.vocab_size
    }

    fn prepare(&mut self, shape: PointShape) -> Result<(), BackendError> {
        self.shape = Some(shape);
        self.decode.clear();
        Ok(())
    }

    fn prefill(&mut self, prompts: &PromptBatch) -> Result<StepTiming, BackendError> {
        let shape = self
            .shape
            .ok_or_else(|| BackendError::Server("prefill before prepare".into()))?;
        let mut attempt = 0;
        let steps = loop {
            let records = self.send_batch(prompts, shape.max_output);
            if records.len() != prompts.batch_size {
                return Err(BackendError::Server(format!(
                    "{} of {} requests came back",
                    records.len(),
                    prompts.batch_size
                )));
            }
            match lockstep_steps(&records, shape.max_output) {
                Err(LockstepError::Merged { .. } | LockstepError::Request { .. })
                    if attempt < RETRIES =>
                {
                    attempt += 1
                }
                other => break other?,
            }
        };
        self.forward_calls += u64::from(shape.max_output);
        self.decode = steps[1..].iter().copied().collect();
        Ok(StepTiming {
            wall_s: steps[0],
            device_s: None,
        })
    }

    fn decode_step(&mut self) -> Result<StepTiming, BackendError> {
        let wall_s = self.decode.pop_front().ok_or_else(|| {
            BackendError::Server("more decode steps asked than tokens streamed".into())
        })?;
        Ok(StepTiming {
            wall_s,
            device_s: None,
        })
    }

    fn synchronize(&mut self) -> Result<(), BackendError> {
        Ok(())
    }

    fn forward_calls(&self) -> u64 {
        self.forward_calls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: u64, times: &[f64]) -> RequestRecord {
        let mut r: RequestRecord = serde_json::from_value(serde_json::json!({
            "id": id, "scheduled_send_s": 0.0, "actual_send_s": 0.0,
            "first_token_s": times.first(), "last_token_s": times.last(), "end_s": 1.0,
            "token_times_s": times, "token_chunks": times.len(), "empty_chunks": 0,
            "usage_prompt_tokens": 4, "usage_completion_tokens": times.len(),
            "requested_input_tokens": 4, "requested_output_tokens": times.len(), "error": null
        }))
        .unwrap();
        r.id = id;
        r
    }

    #[test]
    fn lockstep_takes_the_batch_maximum_per_token() {
        // Two requests: the batch has token k when both have it.
        let a = rec(0, &[0.10, 0.12, 0.15]);
        let b = rec(1, &[0.11, 0.13, 0.14]);
        let s = lockstep_steps(&[a, b], 3).unwrap();
        let want = [0.11, 0.13 - 0.11, 0.15 - 0.13];
        for (x, w) in s.iter().zip(want) {
            assert!((x - w).abs() < 1e-12, "{s:?}");
        }
        // The steps sum to the batch's end-to-end time.
        assert!((s.iter().sum::<f64>() - 0.15).abs() < 1e-12);
    }

    #[test]
    fn a_token_with_empty_text_is_still_a_step() {
        let mut r = rec(0, &[0.10, 0.30]);
        r.empty_chunks = 1;
        r.empty_times_s = vec![0.20];
        r.usage_completion_tokens = Some(3);
        r.error = Some(endpoint::RequestError::NoToken {
            token_chunks: 2,
            empty_chunks: 1,
            usage_completion_tokens: Some(3),
        });
        let s = lockstep_steps(&[r], 3).unwrap();
        assert!(
            (s[1] - 0.10).abs() < 1e-12 && (s[2] - 0.10).abs() < 1e-12,
            "{s:?}"
        );
    }

    #[test]
    fn short_or_merged_streams_are_named() {
        let short = rec(0, &[0.1, 0.2]);
        let e = lockstep_steps(&[short], 3).unwrap_err();
        assert_eq!(e, LockstepError::Short { asked: 3, got: 2 });
        assert!(
            e.to_string().contains("ignores min_tokens/ignore_eos"),
            "{e}"
        );
        let mut merged = rec(0, &[0.1, 0.2]);
        merged.usage_completion_tokens = Some(3);
        let e = lockstep_steps(&[merged], 3).unwrap_err();
        assert_eq!(e, LockstepError::Merged { got: 3, chunks: 2 });
        assert!(e.to_string().contains("several tokens per chunk"), "{e}");
    }

    #[test]
    fn a_merged_stream_is_left_to_its_batch_mates() {
        // Request 1's second and third tokens came in one chunk at 0.30: the batch's steps are
        // read from request 0 alone, and request 1's late chunk does not stretch them.
        let a = rec(0, &[0.10, 0.20, 0.30]);
        let mut b = rec(1, &[0.11, 0.31]);
        b.usage_completion_tokens = Some(3);
        let s = lockstep_steps(&[a.clone(), b], 3).unwrap();
        let want = [0.10, 0.10, 0.10];
        for (x, w) in s.iter().zip(want) {
            assert!((x - w).abs() < 1e-12, "{s:?}");
        }
        // A failed request still fails the batch.
        let mut c = rec(2, &[0.12, 0.22, 0.32]);
        c.error = Some(endpoint::RequestError::Http {
            status: 500,
            body_excerpt: "boom".into(),
        });
        let e = lockstep_steps(&[a, c], 3).unwrap_err();
        assert!(matches!(e, LockstepError::Request { id: 2, .. }), "{e}");
    }
}
