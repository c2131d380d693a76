//! `tokenq bench`: flags → [`BenchConfig`] → [`pipeline::bench::run`]: scheduled load on an
//! OpenAI-compatible streaming server, summarised as `vllm bench serve` does. Every check of
//! the flags is `BenchConfig::validate`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use endpoint::Api;
use pipeline::bench::{BenchConfig, parse_api};

const EXAMPLES: &str = "\
Examples (URL such as http://127.0.0.1:8000):
  tokenq bench --url $URL --request-rate 4 --num-prompts 200 --input sharegpt --output const:128
  tokenq bench --url $URL --trace azure-conv --num-prompts 500 --goodput ttft:500 tpot:50
  tokenq bench --url $URL --max-concurrency 8 --num-prompts 100 --records runs.jsonl

Metrics (ms): TTFT and E2EL from each request's scheduled send time (client lateness and waits for
a --max-concurrency slot count); TPOT = (E2EL - TTFT)/(output tokens - 1); ITL = every gap between
token chunks, pooled; lateness = actual - scheduled send time. JSON keys as vllm bench serve.
The server's key, if it needs one, is read from OPENAI_API_KEY.";

/// Load an OpenAI-compatible streaming server (vLLM, SGLang, TGI, llama.cpp) on a schedule
/// fixed in advance and report TTFT, TPOT, ITL, E2EL, throughput and goodput.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct BenchArgs {
    /// The server's root URL, e.g. http://127.0.0.1:8000; checked before anything is sent.
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// Served model name [default: the first one the server lists].
    #[arg(long)]
    pub model: Option<String>,
    /// completions: prompts of exactly the drawn input length, in token ids; chat: prompts of
    /// that many words (input lengths approximate: tokenizer and chat template).
    #[arg(long, default_value = "completions",
          value_parser = PossibleValuesParser::new(["completions", "chat"]).try_map(|s| parse_api(&s)))]
    pub api: Api,
    /// Open loop: mean arrival rate, requests per second (Poisson gaps; see --burstiness). With
    /// --trace: rescale the trace's times to this mean rate.
    #[arg(long, value_name = "REQ_PER_S")]
    pub request_rate: Option<f64>,
    /// Gamma shape of the gaps of --request-rate arrivals: 1 Poisson, below 1 burstier.
    #[arg(long, value_name = "B")]
    pub burstiness: Option<f64>,
    /// Send at a trace's arrival times (shifted to start at 0) with its token counts: a CSV
    /// arrival_s,input_tokens,output_tokens, an Azure trace, or azure-conv / azure-code.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<String>,
    /// Alone: a closed loop of C requests always in flight. With a rate or trace: at most C in
    /// flight (a due request waits for a slot; the wait counts in its latency).
    #[arg(long, value_name = "C")]
    pub max_concurrency: Option<usize>,
    /// Requests to send (with --trace: its first N) [default with --trace: the whole trace].
    #[arg(long, value_name = "N")]
    pub num_prompts: Option<usize>,
    /// Input-length law: const:N, uniform:LO,HI, lognormal:MU,SIGMA, normal:..., sharegpt, ...
    /// (draws rounded to whole tokens >= 1) [default: const:256].
    #[arg(long, value_name = "DIST")]
    pub input: Option<String>,
    /// Output-length law, same forms; forced with min_tokens = max_tokens and ignore_eos
    /// [default: const:128].
    #[arg(long, value_name = "DIST")]
    pub output: Option<String>,
    /// Goodput SLOs in ms, e.g. --goodput ttft:500 tpot:50 e2el:10000: requests meeting all
    /// of them per second.
    #[arg(long, value_name = "KEY:MS", num_args = 1..)]
    pub goodput: Vec<String>,
    /// Percentiles reported, comma-separated [default: 50,90,99].
    #[arg(long, value_name = "LIST")]
    pub metric_percentiles: Option<String>,
    /// Seed of the send times, lengths and prompts (same seed, same requests at the same times).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Prompt token ids are drawn uniformly from 0..V (keep V below the model's vocabulary).
    #[arg(long, value_name = "V", default_value_t = 1000)]
    pub vocab_size: u32,
    /// Print the result as JSON (run header plus vllm bench serve's keys) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Write the result JSON to this file.
    #[arg(long, value_name = "FILE.json")]
    pub save_result: Option<PathBuf>,
    /// Write one JSON line per request (send, token and end times; usage; error) to this file.
    #[arg(long, value_name = "FILE.jsonl")]
    pub records: Option<PathBuf>,
    /// Overwrite existing output files.
    #[arg(long)]
    pub force: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Run `tokenq bench`.
pub fn run(a: BenchArgs) -> Result<()> {
    let cfg = BenchConfig {
        url: a.url,
        model: a.model,
        api: a.api,
        api_key: std::env::var("OPENAI_API_KEY")
            .ok()
            .filter(|k| !k.is_empty()),
        request_rate: a.request_rate,
        burstiness: a.burstiness,
        trace: a.trace,
        max_concurrency: a.max_concurrency,
        num_prompts: a.num_prompts,
        input: a.input,
        output: a.output,
        goodput: a.goodput,
        metric_percentiles: a.metric_percentiles,
        seed: a.seed,
        vocab_size: a.vocab_size,
        json: a.json,
        save_result: a.save_result,
        records: a.records,
        force: a.force,
        quiet: a.quiet,
    };
    pipeline::bench::run(&cfg).map(drop)
}
