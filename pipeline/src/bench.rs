//! `tokenq bench`: load an OpenAI-compatible streaming server (vLLM, SGLang, TGI, llama.cpp)
//! on a schedule fixed in advance and report what its users wait, as `vllm bench serve` does.
//!
//! What is sent: `num_prompts` streamed requests, each with an output length forced by
//! `min_tokens = max_tokens` and `ignore_eos` ([`RequestSpec::fixed_length`]). Completions API:
//! a prompt of exactly the input length in token ids drawn uniformly from `0..vocab_size`; chat
//! API: a text of that many words (the server's tokenizer and chat template make the input
//! length approximate). Lengths come from two token laws (`--input`, `--output`: draws rounded
//! to whole tokens ≥ 1) or from a trace's own counts (a count of 0 is sent as 1).
//!
//! When: Poisson or gamma (`--burstiness`) arrivals at `--request-rate`, a trace's arrival times
//! (shifted to start at 0; with a rate, scaled so the requests sent have that mean rate), or a
//! closed loop of `--max-concurrency` requests always in flight. With a schedule,
//! `--max-concurrency` caps the requests in flight; a request waiting for a slot is late, and its
//! TTFT counts the wait. Every send time and every length is drawn from `--seed` before the run
//! (endpoint::load), so two runs with the same flags send the same requests at the same times.
//!
//! Metrics: [`Summary`] (TTFT and E2EL from the *scheduled* send time, TPOT = (E2EL − TTFT) /
//! (output tokens − 1), ITL pooled over every gap between token chunks, the client's send
//! lateness), with `vllm bench serve`'s JSON keys.
//!
//! Outputs are written whole (a temporary file beside the target, then a rename) after the run;
//! Ctrl-C stops sending, lets the requests in flight finish (5 s grace) and writes what finished.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use endpoint::{
    Api, Client, ClientConfig, DEFAULT_PERCENTILES, LoadConfig, Prompt, RequestRecord, RequestSpec,
    Schedule, ServerInfo, Slo, Summary,
};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

use crate::{interrupt, values};

/// `--input` when neither it nor `--trace` is given.
pub const DEFAULT_INPUT: &str = "const:256";
/// `--output` when neither it nor `--trace` is given.
pub const DEFAULT_OUTPUT: &str = "const:128";
/// Token ids of completions prompts are drawn from `0..DEFAULT_VOCAB_SIZE` by default.
pub const DEFAULT_VOCAB_SIZE: u32 = 1000;
/// Longest input or output of one request, tokens (no server has a longer context).
pub const MAX_REQUEST_TOKENS: u32 = 1 << 20;
/// A client send lateness p99 above this (ms) gets a warning.
pub const LATENESS_WARN_MS: f64 = 10.0;

/// Words of chat prompts (one word is roughly one token).
const WORDS: [&str; 16] = [
    "the", "model", "serves", "tokens", "while", "users", "wait", "for", "a", "queue", "of",
    "requests", "and", "every", "batch", "runs",
];

/// `tokenq bench`'s settings, as the flags give them; [`BenchConfig::validate`] checks them.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// `--url`: the server's root URL.
    pub url: String,
    /// `--model`; `None`: the first model the server lists.
    pub model: Option<String>,
    /// `--api`.
    pub api: Api,
    /// `OPENAI_API_KEY`, sent as a bearer token.
    pub api_key: Option<String>,
    /// `--request-rate`, requests per second.
    pub request_rate: Option<f64>,
    /// `--burstiness`: gamma shape of the inter-arrival times (1: Poisson).
    pub burstiness: Option<f64>,
    /// `--trace`: a trace file or built-in name.
    pub trace: Option<String>,
    /// `--max-concurrency`.
    pub max_concurrency: Option<usize>,
    /// `--num-prompts`; required unless `--trace` (then: the whole trace).
    pub num_prompts: Option<usize>,
    /// `--input` token law spec.
    pub input: Option<String>,
    /// `--output` token law spec.
    pub output: Option<String>,
    /// `--goodput` items, `ttft:MS`, `tpot:MS`, `e2el:MS` (commas also separate items).
    pub goodput: Vec<String>,
    /// `--metric-percentiles`, e.g. `50,90,99`.
    pub metric_percentiles: Option<String>,
    /// `--seed` of send times, lengths and prompts.
    pub seed: u64,
    /// `--vocab-size`.
    pub vocab_size: u32,
    /// `--json`: the summary as JSON on stdout.
    pub json: bool,
    /// `--save-result FILE.json`.
    pub save_result: Option<PathBuf>,
    /// `--records FILE.jsonl`.
    pub records: Option<PathBuf>,
    /// `--force`: overwrite existing output files.
    pub force: bool,
    /// `--quiet`: no progress bar.
    pub quiet: bool,
}

impl BenchConfig {
    /// The defaults of every optional flag, for `url` (no schedule).
    pub fn new(url: impl Into<String>) -> Self {
        BenchConfig {
            url: url.into(),
            model: None,
            api: Api::Completions,
            api_key: None,
            request_rate: None,
            burstiness: None,
            trace: None,
            max_concurrency: None,
            num_prompts: None,
            input: None,
            output: None,
            goodput: Vec::new(),
            metric_percentiles: None,
            seed: 0,
            vocab_size: DEFAULT_VOCAB_SIZE,
            json: false,
            save_result: None,
            records: None,
            force: false,
            quiet: false,
        }
    }
}

/// A checked configuration: what is sent, when, and how it is summarised.
#[derive(Debug, Clone)]
pub struct BenchPlan {
    /// When requests are sent.
    pub load: LoadConfig,
    /// `(input, output)` tokens of each request, in send order.
    pub lengths: Vec<(u32, u32)>,
    /// Goodput SLOs, when `--goodput` is given.
    pub slo: Option<Slo>,
    /// Reported percentiles.
    pub percentiles: Vec<f64>,
    /// The schedule in words, for the text header.
    pub schedule_text: String,
    /// The schedule as JSON, for the result header.
    pub schedule_json: Value,
}

/// `completions` / `chat`, for the `--api` flag.
pub fn parse_api(s: &str) -> Result<Api, String> {
    match s {
        "completions" => Ok(Api::Completions),
        "chat" => Ok(Api::Chat),
        _ => Err(format!("`{s}`: expected completions or chat")),
    }
}

fn api_name(api: Api) -> &'static str {
    match api {
        Api::Completions => "completions",
        Api::Chat => "chat",
    }
}

impl BenchConfig {
    /// Check every flag (no network): the schedule, the lengths (drawn here, from the seed),
    /// the goodput SLOs, the percentiles and the output files. Each error is one line naming
    /// the flag and the fix.
    pub fn validate(&self) -> Result<BenchPlan> {
        if self.url.trim().is_empty() {
            bail!("--url is empty: give the server's root URL, e.g. http://127.0.0.1:8000");
        }
        if self.num_prompts == Some(0) {
            bail!("--num-prompts 0: send at least 1 request");
        }
        if self.vocab_size == 0 {
            bail!("--vocab-size 0: token ids are drawn from 0..V; give V >= 1");
        }
        if self.max_concurrency == Some(0) {
            bail!("--max-concurrency 0: allow at least 1 request in flight");
        }
        if let Some(r) = self.request_rate {
            values::rate("--request-rate", r)?;
        }
        if let Some(b) = self.burstiness {
            values::positive("--burstiness", b, "(gamma shape; 1 is Poisson)")?;
            if self.request_rate.is_none() {
                bail!(
                    "--burstiness {b} shapes the gaps of --request-rate arrivals; give --request-rate R too"
                );
            }
            if self.trace.is_some() {
                bail!("--burstiness {b}: a --trace has its own arrival times; drop --burstiness");
            }
        }
        let mut plan = match &self.trace {
            Some(t) => self.trace_plan(t)?,
            None => self.law_plan()?,
        };
        plan.load.seed = self.seed;
        for (i, &(inp, out)) in plan.lengths.iter().enumerate() {
            for (flag, n) in [("--input", inp), ("--output", out)] {
                if n > MAX_REQUEST_TOKENS {
                    let flag = if self.trace.is_some() {
                        "--trace"
                    } else {
                        flag
                    };
                    bail!(
                        "{flag}: request {i} would have {n} tokens, more than {MAX_REQUEST_TOKENS}; use a law with a lighter tail (e.g. normal:MEAN,SD,LO,HI)"
                    );
                }
            }
        }
        plan.slo = parse_goodput(&self.goodput)?;
        if let Some(s) = &self.metric_percentiles {
            plan.percentiles = parse_percentiles(s)?;
        }
        self.check_outputs()?;
        Ok(plan)
    }

    /// Lengths from the laws; Poisson, gamma or closed-loop sending.
    fn law_plan(&self) -> Result<BenchPlan> {
        let n = self.num_prompts.ok_or_else(|| {
            anyhow!(
                "--num-prompts N is required (it defaults to the whole trace only with --trace)"
            )
        })?;
        let cap = self.max_concurrency;
        let burstiness = self.burstiness.filter(|&b| b != 1.0);
        let (schedule, text, js) = match (self.request_rate, burstiness) {
            (Some(rate), None) => (
                Schedule::Poisson { rate_rps: rate },
                format!("Poisson arrivals at {rate} req/s"),
                json!({"kind": "poisson", "rate_rps": rate, "max_concurrency": cap}),
            ),
            (Some(rate), Some(b)) => (
                Schedule::Gamma {
                    rate_rps: rate,
                    burstiness: b,
                },
                format!("gamma arrivals at {rate} req/s, burstiness {b}"),
                json!({"kind": "gamma", "rate_rps": rate, "burstiness": b, "max_concurrency": cap}),
            ),
            (None, _) => match cap {
                Some(c) => (
                    Schedule::ClosedLoop { concurrency: c },
                    format!("closed loop, {c} requests in flight"),
                    json!({"kind": "closed_loop", "concurrency": c}),
                ),
                None => bail!(
                    "no schedule: give --request-rate R (open loop), --trace FILE (its arrival times) or --max-concurrency C alone (closed loop)"
                ),
            },
        };
        let text = match (cap, &schedule) {
            (Some(c), Schedule::Poisson { .. } | Schedule::Gamma { .. }) => {
                format!("{text}, at most {c} in flight")
            }
            _ => text,
        };
        let input =
            values::parse_tokens("--input", self.input.as_deref().unwrap_or(DEFAULT_INPUT))?;
        let output =
            values::parse_tokens("--output", self.output.as_deref().unwrap_or(DEFAULT_OUTPUT))?;
        let mut rng_in = StdRng::seed_from_u64(self.seed ^ 0x1a2b_3c4d);
        let mut rng_out = StdRng::seed_from_u64(self.seed ^ 0x5e6f_7081);
        let lengths = (0..n)
            .map(|_| {
                (
                    tokens(input.sample(&mut rng_in)),
                    tokens(output.sample(&mut rng_out)),
                )
            })
            .collect();
        let mut load = LoadConfig::new(schedule);
        if self.request_rate.is_some() {
            load.max_concurrency = cap;
        }
        Ok(BenchPlan::new(load, lengths, text, js))
    }

    /// Send times and lengths from a trace.
    fn trace_plan(&self, spec: &str) -> Result<BenchPlan> {
        for (flag, given) in [("--input", &self.input), ("--output", &self.output)] {
            if given.is_some() {
                bail!(
                    "--trace {spec} supplies the token counts; drop {flag} (or drop --trace and give --request-rate)"
                );
            }
        }
        let trace = sim::Trace::load(spec).with_context(|| format!("--trace {spec}"))?;
        let have = trace.requests.len();
        let n = self.num_prompts.unwrap_or(have);
        if n > have {
            bail!("--num-prompts {n}: the trace {spec} has {have} requests; give at most {have}");
        }
        let reqs = &trace.requests[..n];
        let t0 = reqs[0].arrival_s;
        let span = reqs[n - 1].arrival_s - t0;
        let scale = match self.request_rate {
            None => 1.0,
            Some(r) if n > 1 && span > 0.0 => (n - 1) as f64 / span / r,
            Some(r) => bail!(
                "--request-rate {r} rescales the trace's times, but its first {n} requests arrive at one instant; drop --request-rate"
            ),
        };
        let times_s: Vec<f64> = reqs.iter().map(|q| (q.arrival_s - t0) * scale).collect();
        let count = |v: u64| u32::try_from(v.max(1)).unwrap_or(u32::MAX);
        let lengths = reqs
            .iter()
            .map(|q| (count(q.input_tokens), count(q.output_tokens)))
            .collect();
        let mean_rate = (n > 1 && span > 0.0).then(|| (n - 1) as f64 / (span * scale));
        let mut text = format!("trace {spec} ({n} requests");
        if let Some(m) = mean_rate {
            let _ = write!(text, ", {m:.4} req/s");
        }
        if self.request_rate.is_some() {
            text.push_str(", rescaled");
        }
        text.push(')');
        if let Some(c) = self.max_concurrency {
            let _ = write!(text, ", at most {c} in flight");
        }
        let js = json!({
            "kind": "trace", "source": spec, "rate_rps": mean_rate,
            "rescaled": self.request_rate.is_some(), "max_concurrency": self.max_concurrency,
        });
        let mut load = LoadConfig::new(Schedule::Trace { times_s });
        load.max_concurrency = self.max_concurrency;
        Ok(BenchPlan::new(load, lengths, text, js))
    }

    /// Output files: distinct, in existing directories, not already there unless `--force`.
    fn check_outputs(&self) -> Result<()> {
        let outs = [
            ("--save-result", &self.save_result),
            ("--records", &self.records),
        ];
        if let (Some(a), Some(b)) = (&self.save_result, &self.records)
            && a == b
        {
            bail!(
                "--save-result and --records are both {}: give two files",
                a.display()
            );
        }
        for (flag, path) in outs {
            let Some(p) = path else { continue };
            if p.is_dir() {
                bail!("{flag} {}: is a directory; give a file name", p.display());
            }
            if p.exists() && !self.force {
                bail!(
                    "{flag} {}: already exists: choose another file, or pass --force to overwrite it",
                    p.display()
                );
            }
            let dir = parent(p);
            if !dir.is_dir() {
                bail!(
                    "{flag} {}: the directory {} does not exist; create it first",
                    p.display(),
                    dir.display()
                );
            }
        }
        Ok(())
    }
}

/// A drawn length as whole tokens ≥ 1 (saturating).
fn tokens(x: f64) -> u32 {
    if x.is_nan() {
        return 1;
    }
    x.round().clamp(1.0, f64::from(u32::MAX)) as u32
}

fn parent(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// `--goodput ttft:MS tpot:MS e2el:MS` → SLOs; `None` when no item is given.
pub fn parse_goodput(items: &[String]) -> Result<Option<Slo>> {
    let mut slo = Slo::default();
    let mut any = false;
    for item in items.iter().flat_map(|s| s.split(',')).map(str::trim) {
        if item.is_empty() {
            continue;
        }
        let fix = "give KEY:MS with KEY ttft, tpot or e2el and MS milliseconds > 0, e.g. --goodput ttft:500 tpot:50";
        let (key, ms) = item
            .split_once(':')
            .ok_or_else(|| anyhow!("--goodput {item}: {fix}"))?;
        let ms: f64 = match ms.trim().parse() {
            Ok(v) if f64::is_finite(v) && v > 0.0 => v,
            _ => bail!("--goodput {item}: `{ms}` is not a number of milliseconds > 0; {fix}"),
        };
        let field = match key.trim() {
            "ttft" => &mut slo.ttft_ms,
            "tpot" => &mut slo.tpot_ms,
            "e2el" => &mut slo.e2el_ms,
            other => bail!("--goodput {item}: unknown metric `{other}`; {fix}"),
        };
        if field.replace(ms).is_some() {
            bail!(
                "--goodput {item}: {} is given twice; give each metric once",
                key.trim()
            );
        }
        any = true;
    }
    Ok(any.then_some(slo))
}

/// `50,90,99` → percentiles in `(0, 100]`.
pub fn parse_percentiles(s: &str) -> Result<Vec<f64>> {
    let ps = s
        .split(',')
        .map(|p| match p.trim().parse::<f64>() {
            Ok(v) if v > 0.0 && v <= 100.0 => Ok(v),
            _ => Err(anyhow!(
                "--metric-percentiles {s}: `{}` is not a percentile in (0, 100]; give e.g. 50,90,99",
                p.trim()
            )),
        })
        .collect::<Result<Vec<f64>>>()?;
    Ok(ps)
}

impl BenchPlan {
    /// A plan without goodput SLOs, with the default percentiles.
    fn new(load: LoadConfig, lengths: Vec<(u32, u32)>, text: String, js: Value) -> Self {
        BenchPlan {
            load,
            lengths,
            slo: None,
            percentiles: DEFAULT_PERCENTILES.to_vec(),
            schedule_text: text,
            schedule_json: js,
        }
    }

    /// The requests: prompts of the drawn lengths (token ids from `0..vocab_size`, or words for
    /// the chat API), outputs forced to their drawn lengths. Seeded, except that the first two
    /// tokens of every prompt come from `salt` (a new one per run: [`crate::openai_profile::
    /// run_salt`]), so a rerun is not served from the server's prefix cache of an earlier run.
    pub fn requests(&self, api: Api, vocab_size: u32, seed: u64, salt: u64) -> Vec<RequestSpec> {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x9abc_def0);
        let mut salted = StdRng::seed_from_u64(salt);
        self.lengths
            .iter()
            .map(|&(inp, out)| {
                let prompt = match api {
                    Api::Completions => Prompt::TokenIds(
                        (0..inp)
                            .map(|k| {
                                let r = if k < SALTED_TOKENS {
                                    &mut salted
                                } else {
                                    &mut rng
                                };
                                r.random_range(0..vocab_size.max(1))
                            })
                            .collect(),
                    ),
                    Api::Chat => Prompt::Text(
                        (0..inp)
                            .map(|k| {
                                let r = if k < SALTED_TOKENS {
                                    &mut salted
                                } else {
                                    &mut rng
                                };
                                WORDS[r.random_range(0..WORDS.len())]
                            })
                            .collect::<Vec<_>>()
                            .join(" "),
                    ),
                };
                RequestSpec::fixed_length(prompt, out)
            })
            .collect()
    }
}

/// Leading prompt tokens drawn from the run's salt.
const SALTED_TOKENS: u32 = 2;

/// The result of a run.
#[derive(Debug, Clone)]
pub struct BenchOutcome {
    /// The summary of every sent request.
    pub summary: Summary,
    /// The result JSON (header and summary) as printed by `--json` and saved by `--save-result`.
    pub result: Value,
    /// Every sent request's record, by id.
    pub records: Vec<RequestRecord>,
}

/// Connect (the server must answer `/v1/models` before anything is sent), run the load, print
/// the summary (text, or JSON with `--json`) and write the output files. Ctrl-C writes what
/// finished, then returns [`interrupt::Interrupted`].
pub fn run(cfg: &BenchConfig) -> Result<BenchOutcome> {
    let plan = cfg.validate()?;
    let (client, server) = connect(cfg)?;
    let requests = plan.requests(
        cfg.api,
        cfg.vocab_size,
        cfg.seed,
        crate::openai_profile::run_salt(),
    );
    let n = requests.len();

    let bar = (!cfg.quiet && !cfg.json && std::io::stderr().is_terminal()).then(|| {
        let b = ProgressBar::new(n as u64);
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} requests {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    });
    interrupt::install();
    let cancel = Arc::new(AtomicBool::new(false));
    let finished = AtomicBool::new(false);
    let mut failed = 0usize;
    let loaded = std::thread::scope(|s| {
        s.spawn(|| {
            while !finished.load(Ordering::Relaxed) {
                if interrupt::interrupted() {
                    cancel.store(true, Ordering::Relaxed);
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let on_done = |r: &RequestRecord| {
            if let Some(b) = &bar {
                if r.error.is_some() {
                    failed += 1;
                    b.set_message(format!("({failed} failed)"));
                }
                b.inc(1);
            }
        };
        let out = endpoint::run_load(&client, requests, &plan.load, on_done, Arc::clone(&cancel));
        finished.store(true, Ordering::Relaxed);
        out
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let records = loaded.map_err(|e| anyhow!("the schedule: {e}"))?;
    let interrupted = cancel.load(Ordering::Relaxed);

    let summary = Summary::from_records(&records, &plan.percentiles, plan.slo.as_ref());
    let examples = first_errors(&records);
    let info = RunInfo {
        url: client.base_url().to_owned(),
        model: client.model().to_owned(),
        api: cfg.api,
        server_version: server.version.clone(),
        schedule_text: plan.schedule_text.clone(),
        seed: cfg.seed,
        num_prompts: n,
        sent: records.len(),
        interrupted,
    };
    let result = result_json(&info, cfg, &plan, &summary, &examples);

    if cfg.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        print!(
            "{}",
            render_text(&info, &summary, &examples, plan.slo.as_ref())
        );
    }
    if summary.lateness.p99_ms > LATENESS_WARN_MS {
        let why = if plan.load.max_concurrency.is_some() {
            "requests waited for a --max-concurrency slot or the client fell behind"
        } else {
            "the client could not keep the schedule (an overloaded machine, or a rate too high for one client)"
        };
        eprintln!(
            "warning: send lateness p99 {:.1} ms (max {:.1} ms): {why}; TTFT and E2EL include it",
            summary.lateness.p99_ms, summary.lateness.max_ms
        );
    }
    if summary.completed == 0 && !records.is_empty() {
        eprintln!("warning: no request succeeded; the summary's failures say why");
    }
    if let Some(p) = &cfg.records {
        write_atomic(p, "--records", |w| {
            endpoint::write_jsonl(w, &records).map_err(Into::into)
        })?;
    }
    if let Some(p) = &cfg.save_result {
        write_atomic(p, "--save-result", |w| {
            serde_json::to_writer_pretty(&mut *w, &result)?;
            writeln!(w)?;
            Ok(())
        })?;
    }
    if interrupted {
        let mut kept = Vec::new();
        if let Some(p) = &cfg.records {
            kept.push(format!("records in {}", p.display()));
        }
        if let Some(p) = &cfg.save_result {
            kept.push(format!("summary in {}", p.display()));
        }
        let kept = if kept.is_empty() {
            "the summary above (no output file was asked for)".to_owned()
        } else {
            kept.join(", ")
        };
        return Err(interrupt::Interrupted(format!(
            "interrupted: {} of {n} requests were sent ({} finished ok); kept {kept}",
            records.len(),
            summary.completed
        ))
        .into());
    }
    Ok(BenchOutcome {
        summary,
        result,
        records,
    })
}

/// The client, and the server's description; fails (naming `--url` or `--model`) before
/// anything is sent.
fn connect(cfg: &BenchConfig) -> Result<(Client, ServerInfo)> {
    let mut cc = ClientConfig::new(cfg.url.clone());
    cc.model = cfg.model.clone();
    cc.api = cfg.api;
    cc.api_key = cfg.api_key.clone();
    let client = Client::new(cc).map_err(|e| anyhow!("--url {}: {e}", cfg.url))?;
    let server = client
        .server_info()
        .map_err(|e| anyhow!("--url {}: {e}", cfg.url))?;
    if let Some(m) = &cfg.model
        && !server.models.iter().any(|s| s == m)
    {
        bail!(
            "--model {m}: {} serves {}; pass one of those",
            cfg.url,
            server.models.join(", ")
        );
    }
    Ok((client, server))
}

/// What the header of the results says about the run.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// The server's normalised URL.
    pub url: String,
    /// The model asked for.
    pub model: String,
    /// Completions or chat.
    pub api: Api,
    /// The server's `/version`, when it has one.
    pub server_version: Option<String>,
    /// The schedule in words.
    pub schedule_text: String,
    /// `--seed`.
    pub seed: u64,
    /// Requests planned.
    pub num_prompts: usize,
    /// Requests sent (fewer when interrupted).
    pub sent: usize,
    /// Whether Ctrl-C stopped the run.
    pub interrupted: bool,
}

/// The first error message of each failed kind (by request id).
fn first_errors(records: &[RequestRecord]) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for e in records.iter().filter_map(|r| r.error.as_ref()) {
        m.entry(e.kind().to_owned())
            .or_insert_with(|| e.to_string());
    }
    m
}

fn result_json(
    info: &RunInfo,
    cfg: &BenchConfig,
    plan: &BenchPlan,
    summary: &Summary,
    examples: &BTreeMap<String, String>,
) -> Value {
    let mut m = serde_json::Map::new();
    let lengths = match &cfg.trace {
        Some(_) => json!("from the trace"),
        None => json!({
            "input": cfg.input.as_deref().unwrap_or(DEFAULT_INPUT),
            "output": cfg.output.as_deref().unwrap_or(DEFAULT_OUTPUT),
        }),
    };
    for (k, v) in [
        ("url", json!(info.url)),
        ("model", json!(info.model)),
        ("api", json!(api_name(info.api))),
        ("server_version", json!(info.server_version)),
        ("schedule", plan.schedule_json.clone()),
        ("lengths", lengths),
        ("seed", json!(info.seed)),
        ("num_prompts", json!(info.num_prompts)),
        ("sent", json!(info.sent)),
        ("interrupted", json!(info.interrupted)),
        ("goodput_slo", json!(plan.slo)),
        ("error_examples", json!(examples)),
    ] {
        m.insert(k.to_owned(), v);
    }
    if let Value::Object(s) = summary.to_json() {
        m.extend(s);
    }
    Value::Object(m)
}

/// The `vllm bench serve`-style text summary.
pub fn render_text(
    info: &RunInfo,
    s: &Summary,
    examples: &BTreeMap<String, String>,
    slo: Option<&Slo>,
) -> String {
    let mut o = format!(
        "tokenq bench: {} {} ({} API) — {}, seed {}\n",
        info.url,
        info.model,
        api_name(info.api),
        info.schedule_text,
        info.seed
    );
    if info.interrupted {
        let _ = writeln!(
            o,
            "interrupted: {} of {} requests sent",
            info.sent, info.num_prompts
        );
    }
    // (label, value) rows; a label starting with ' ' is a section rule.
    let f2 = |x: f64| format!("{x:.2}");
    let mut rows: Vec<(String, String)> = vec![
        ("Successful requests".into(), s.completed.to_string()),
        ("Failed requests".into(), s.failed.to_string()),
        ("Benchmark duration (s)".into(), f2(s.duration_s)),
        (
            "Total input tokens".into(),
            s.total_input_tokens.to_string(),
        ),
        (
            "Total generated tokens".into(),
            s.total_output_tokens.to_string(),
        ),
        (
            "Request throughput (req/s)".into(),
            f2(s.request_throughput),
        ),
    ];
    if let Some(g) = s.request_goodput {
        rows.push(("Request goodput (req/s)".into(), f2(g)));
    }
    rows.push((
        "Output token throughput (tok/s)".into(),
        f2(s.output_throughput),
    ));
    rows.push((
        "Total token throughput (tok/s)".into(),
        f2(s.total_token_throughput),
    ));
    for (title, name, st) in [
        (" Time to First Token ", "TTFT", &s.ttft),
        (" Time per Output Token (excl. 1st token) ", "TPOT", &s.tpot),
        (" Inter-token Latency ", "ITL", &s.itl),
        (" End-to-end Latency ", "E2EL", &s.e2el),
    ] {
        rows.push((title.into(), String::new()));
        rows.push((format!("Mean {name} (ms)"), f2(st.mean_ms)));
        rows.push((format!("Median {name} (ms)"), f2(st.median_ms)));
        for &(p, v) in st.percentiles_ms.iter().filter(|(p, _)| *p != 50.0) {
            rows.push((format!("P{p} {name} (ms)"), f2(v)));
        }
    }
    rows.push((" Client Send Lateness ".into(), String::new()));
    rows.push(("Mean lateness (ms)".into(), f2(s.lateness.mean_ms)));
    rows.push(("P99 lateness (ms)".into(), f2(s.lateness.p99_ms)));
    rows.push(("Max lateness (ms)".into(), f2(s.lateness.max_ms)));
    let _ = writeln!(o, "{:=^50}", " Serving Benchmark Result ");
    for (label, value) in rows {
        if label.starts_with(' ') {
            let _ = writeln!(o, "{label:-^50}");
        } else {
            let _ = writeln!(o, "{:<40} {value:>9}", format!("{label}:"));
        }
    }
    let _ = writeln!(o, "{}", "=".repeat(50));
    if let Some(slo) = slo {
        let parts: Vec<String> = [
            ("TTFT", slo.ttft_ms),
            ("TPOT", slo.tpot_ms),
            ("E2EL", slo.e2el_ms),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k} <= {v} ms")))
        .collect();
        let _ = writeln!(o, "goodput SLO: {}", parts.join(", "));
    }
    for (kind, count) in &s.errors {
        let msg = examples.get(kind).map_or("", String::as_str);
        let _ = writeln!(o, "failed: {count} × {kind}, first: {msg}");
    }
    o.push_str(
        "TTFT and E2EL are measured from each request's scheduled send time (client lateness included); \
TPOT = (E2EL − TTFT)/(output tokens − 1); ITL pools every gap between token chunks.\n",
    );
    o
}

/// Write `path` whole (`reports::write_atomic`: a temporary sibling, then a rename over the
/// target), its contents filled in memory first; the error names `flag`.
pub(crate) fn write_atomic(
    path: &Path,
    flag: &str,
    fill: impl FnOnce(&mut Vec<u8>) -> Result<()>,
) -> Result<()> {
    let mut buf = Vec::new();
    fill(&mut buf)?;
    reports::write_atomic(path, &buf)
        .map_err(|e| anyhow!("{flag} {}: could not write it: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BenchConfig {
        BenchConfig {
            request_rate: Some(10.0),
            num_prompts: Some(50),
            ..BenchConfig::new("http://127.0.0.1:9")
        }
    }

    fn err(c: &BenchConfig) -> String {
        format!("{:#}", c.validate().unwrap_err())
    }

    #[test]
    fn bench_lengths_are_seeded_whole_and_at_least_one() {
        let c = BenchConfig {
            input: Some("uniform:0.2,40".into()),
            output: Some("lognormal:3,0.5".into()),
            ..cfg()
        };
        let a = c.validate().unwrap();
        assert_eq!(a.lengths.len(), 50);
        assert!(
            a.lengths
                .iter()
                .all(|&(i, o)| (1..=40).contains(&i) && o >= 1)
        );
        // Not all the same: really drawn.
        assert!(a.lengths.iter().any(|l| l.0 != a.lengths[0].0));
        assert_eq!(a.lengths, c.validate().unwrap().lengths);
        let other = BenchConfig {
            seed: 1,
            ..c.clone()
        }
        .validate()
        .unwrap();
        assert_ne!(a.lengths, other.lengths);
        assert_eq!(a.load.schedule, Schedule::Poisson { rate_rps: 10.0 });

        let reqs = a.requests(Api::Completions, 7, 0, 1);
        for (r, &(i, o)) in reqs.iter().zip(&a.lengths) {
            let Prompt::TokenIds(ids) = &r.prompt else {
                panic!()
            };
            assert_eq!(ids.len(), i as usize);
            assert!(ids.iter().all(|&t| t < 7));
            assert!(r.forces_length() && r.max_tokens == o);
        }
        let chat = a.requests(Api::Chat, 7, 0, 1);
        let Prompt::Text(t) = &chat[0].prompt else {
            panic!()
        };
        assert_eq!(t.split_whitespace().count(), a.lengths[0].0 as usize);
    }

    #[test]
    fn bench_schedules() {
        let gamma = BenchConfig {
            burstiness: Some(0.5),
            max_concurrency: Some(4),
            ..cfg()
        };
        let p = gamma.validate().unwrap();
        assert_eq!(
            p.load.schedule,
            Schedule::Gamma {
                rate_rps: 10.0,
                burstiness: 0.5
            }
        );
        assert_eq!(p.load.max_concurrency, Some(4));
        let closed = BenchConfig {
            request_rate: None,
            max_concurrency: Some(3),
            ..cfg()
        };
        let p = closed.validate().unwrap();
        assert_eq!(p.load.schedule, Schedule::ClosedLoop { concurrency: 3 });
        assert_eq!(p.load.max_concurrency, None);
    }

    #[test]
    fn bench_trace_times_shifted_and_rescaled() {
        let dir = std::env::temp_dir().join(format!("tokenq-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("t.csv");
        std::fs::write(
            &f,
            "arrival_s,input_tokens,output_tokens\n5,8,3\n5.5,0,5\n6,4,7\n",
        )
        .unwrap();
        let c = BenchConfig {
            request_rate: None,
            num_prompts: None,
            trace: Some(f.display().to_string()),
            ..cfg()
        };
        let p = c.validate().unwrap();
        let Schedule::Trace { times_s } = &p.load.schedule else {
            panic!()
        };
        assert_eq!(times_s, &vec![0.0, 0.5, 1.0]);
        assert_eq!(p.lengths, vec![(8, 3), (1, 5), (4, 7)]);
        // Mean rate of the trace is 2 req/s; at 8 req/s the times shrink fourfold.
        let fast = BenchConfig {
            request_rate: Some(8.0),
            num_prompts: Some(2),
            ..c.clone()
        };
        let Schedule::Trace { times_s } = fast.validate().unwrap().load.schedule else {
            panic!()
        };
        assert_eq!(times_s, vec![0.0, 0.125]);
        assert!(
            err(&BenchConfig {
                num_prompts: Some(4),
                ..c.clone()
            })
            .contains("at most 3")
        );
        assert!(
            err(&BenchConfig {
                input: Some("const:3".into()),
                ..c
            })
            .starts_with("--trace")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bench_bad_flags_name_the_flag() {
        assert!(
            err(&BenchConfig {
                request_rate: Some(0.0),
                ..cfg()
            })
            .starts_with("--request-rate")
        );
        assert!(
            err(&BenchConfig {
                request_rate: None,
                ..cfg()
            })
            .starts_with("no schedule")
        );
        assert!(
            err(&BenchConfig {
                num_prompts: None,
                ..cfg()
            })
            .starts_with("--num-prompts")
        );
        assert!(
            err(&BenchConfig {
                burstiness: Some(-1.0),
                ..cfg()
            })
            .starts_with("--burstiness")
        );
        assert!(
            err(&BenchConfig {
                input: Some("lognormal:7".into()),
                ..cfg()
            })
            .starts_with("--input")
        );
        assert!(
            err(&BenchConfig {
                goodput: vec!["ttft:abc".into()],
                ..cfg()
            })
            .starts_with("--goodput ttft:abc")
        );
        assert!(
            err(&BenchConfig {
                metric_percentiles: Some("50,101".into()),
                ..cfg()
            })
            .starts_with("--metric-percentiles")
        );
        assert!(
            err(&BenchConfig {
                output: Some("const:2000000".into()),
                ..cfg()
            })
            .starts_with("--output")
        );
        let slo = parse_goodput(&["ttft:500,tpot:50".into(), "e2el:2000".into()])
            .unwrap()
            .unwrap();
        assert_eq!(
            (slo.ttft_ms, slo.tpot_ms, slo.e2el_ms),
            (Some(500.0), Some(50.0), Some(2000.0))
        );
        assert!(parse_goodput(&["tpot:5".into(), "tpot:6".into()]).is_err());
        assert_eq!(parse_goodput(&[]).unwrap(), None);
    }
}
