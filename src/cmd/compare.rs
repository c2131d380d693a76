//! `tokenq compare`: flags → [`pipeline::compare::CompareConfig`] → predicted against measured.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use pipeline::compare::CompareConfig;
use pipeline::replay::EngineFile;

/// Replay a measured load test (`tokenq bench --records FILE.jsonl`) through continuous
/// batching with a step model fitted from an endpoint profile of the same server, and print
/// predicted against measured TTFT, TPOT and E2E (mean, p50, p90, p99).
#[derive(Debug, Args)]
#[command(after_help = "Example (docs/usage.md \"Predict a load test\"):\n  \
tokenq profile --backend openai --url http://127.0.0.1:8011 --batch 1,2,4,8,16 --input 32,128,512 --out server.parquet\n  \
tokenq fit server.parquet --step-model -o server.toml\n  \
tokenq bench --url http://127.0.0.1:8011 --request-rate 4 --num-prompts 200 --records run.jsonl\n  \
tokenq compare run.jsonl --coefficients server.toml --max-num-seqs 16 --kv-blocks 4096")]
pub struct CompareArgs {
    /// The measured run: per-request JSONL written by `tokenq bench --records`.
    #[arg(value_name = "MEASURED.jsonl")]
    pub measured: PathBuf,
    /// Coefficients file with a [step_time] section fitted to a profile of the same server
    /// (`tokenq fit PROFILE --step-model`).
    #[arg(long, value_name = "FILE")]
    pub coefficients: PathBuf,
    /// The server's most requests running at once (vLLM `--max-num-seqs`) [default: 256].
    #[arg(long, value_name = "N")]
    pub max_num_seqs: Option<u32>,
    /// The server's per-iteration token budget (vLLM `max_num_batched_tokens`) [default: 2048].
    #[arg(long, value_name = "TOKENS")]
    pub max_batched_tokens: Option<u32>,
    /// The server's KV cache in blocks (vLLM logs "# GPU blocks", or on the CPU the "KV cache
    /// size" in tokens / block size).
    #[arg(long, value_name = "BLOCKS")]
    pub kv_blocks: Option<u32>,
    /// Tokens per KV block [default: 16].
    #[arg(long, value_name = "TOKENS")]
    pub block_size: Option<u32>,
    /// Host overhead added to every iteration, seconds [default: 0: a step model fitted to an
    /// endpoint profile already holds it].
    #[arg(long, value_name = "SECONDS")]
    pub iteration_overhead_s: Option<f64>,
    /// Engine settings file (TOML with the keys of `tokenq replay --engine-config`).
    #[arg(long, value_name = "FILE")]
    pub engine_config: Option<PathBuf>,
    /// Write the CDFs of predicted and measured TTFT, TPOT and E2E to this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Run `tokenq compare`.
pub fn run(a: CompareArgs) -> Result<()> {
    pipeline::compare::run(&CompareConfig {
        measured: a.measured,
        coefficients: a.coefficients,
        engine: EngineFile {
            max_num_seqs: a.max_num_seqs,
            max_batched_tokens: a.max_batched_tokens,
            kv_blocks: a.kv_blocks,
            block_size: a.block_size,
            iteration_overhead_s: a.iteration_overhead_s,
            ..EngineFile::default()
        },
        engine_config: a.engine_config,
        json: a.json,
        plot: a.plot,
    })
}
