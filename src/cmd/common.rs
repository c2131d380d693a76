//! Flag helpers shared by the analytic commands (`queue …`, `optimize …`): parsing of
//! `--tokens`, checks of numeric flags with one-line errors naming the flag, JSON printing, and
//! `--validate` ([`ValidateArgs`]): simulate the same system (`sim`, docs/models.md §11) and
//! compare each analytic mean with the simulation's interval (`pipeline::check`).

use anyhow::{Result, bail};
use clap::Args;
use std::path::PathBuf;

use clap::ValueEnum;
use pipeline::check::SimSettings;
use pipeline::mg1::{Approx, Workload};
use queueing::batch::{BatchTime, LlmBatch, Policy};
use queueing::impatience::{Abandonment, DEFAULT_GRID};
use queueing::mg1::LinearService;
use serde::Serialize;

pub use pipeline::values::{
    MAX_SECONDS, at_most, max_tokens, parse_count, parse_fraction, parse_tokens, rate,
};

/// Print a value as pretty JSON on stdout.
pub fn print_json<T: Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Most simulated arrivals per replication of a `--validate` run (about a minute).
pub const MAX_VALIDATE_REQUESTS: u64 = 1_000_000_000;

/// Default arrivals per replication of a `--validate` run.
pub const DEFAULT_VALIDATE_REQUESTS: &str = "2e5";

/// `--validate` and its simulation settings, shared by `queue mg1` and `queue batch`.
#[derive(Debug, Clone, Args)]
pub struct ValidateArgs {
    /// Also simulate the same system (event-driven simulator, docs/models.md §11) and print each
    /// analytic mean beside the simulation's 95% CI, the difference in CI half-widths.
    #[arg(long)]
    pub validate: bool,
    /// With --validate: arrivals per replication (accepts 2e5).
    #[arg(long, value_name = "N", default_value = DEFAULT_VALIDATE_REQUESTS, requires = "validate", allow_hyphen_values = true)]
    pub requests: String,
    /// With --validate: master seed of the simulation.
    #[arg(long, default_value_t = 1, requires = "validate")]
    pub seed: u64,
    /// With --validate: independent replications (CI across them); 1 = one run, 30 batch means.
    #[arg(long, default_value_t = 1, value_name = "R", requires = "validate")]
    pub replications: u32,
}

impl ValidateArgs {
    /// The simulation settings, when `--validate` is given.
    pub fn settings(&self) -> Result<Option<SimSettings>> {
        if !self.validate {
            return Ok(None);
        }
        let requests = parse_count(&self.requests)?;
        if requests > MAX_VALIDATE_REQUESTS {
            bail!(
                "--requests {requests}: at most {MAX_VALIDATE_REQUESTS} per replication (about a minute of simulation); use --replications for more"
            );
        }
        if self.replications == 0 {
            bail!("--replications 0: give at least 1 (1 = one run with 30 batch means)");
        }
        Ok(Some(SimSettings {
            requests,
            seed: self.seed,
            replications: self.replications,
        }))
    }
}

/// How to solve the impatience model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApproxArg {
    /// Exact level-crossing solution (default).
    Exact,
    /// The paper's De Kok–Tijms two-moment interpolation (needs c_S² ≤ 1).
    DekokTijms,
}

/// Workload and service flags shared by `queue mg1` and `optimize token-limit`.
#[derive(Debug, Clone, Args)]
pub struct Mg1WorkloadArgs {
    /// Output-token distribution: uniform:LO,HI | duniform:LO,HI | normal:MEAN,SD[,LO,HI] |
    /// lognormal:MU,SIGMA | const:N | empirical:PATH[:COLUMN] | a built-in name (sharegpt,
    /// azure-conv, azure-code, arxiv, …).
    #[arg(long, value_name = "DIST")]
    pub tokens: String,
    /// Poisson arrival rate λ, requests per second.
    #[arg(long, value_name = "REQ_PER_S", allow_hyphen_values = true)]
    pub arrival_rate: f64,
    /// Service slope a in S = a·min(N, L) + c, seconds per token (or --coefficients).
    #[arg(long, value_name = "S", allow_hyphen_values = true)]
    pub per_token_s: Option<f64>,
    /// Service intercept c, seconds (or --coefficients).
    #[arg(long, value_name = "S", allow_hyphen_values = true)]
    pub intercept_s: Option<f64>,
    /// Coefficients file written by `tokenq fit` (e.g.
    /// datasets/coefficients/a100-llama-2-7b-table1.toml): its single-request line gives a and
    /// c, instead of --per-token-s/--intercept-s.
    #[arg(long, value_name = "FILE")]
    pub coefficients: Option<PathBuf>,
    /// Patience τ in seconds: users who would wait longer in queue are lost (docs/models.md §2).
    #[arg(long, value_name = "S", allow_hyphen_values = true)]
    pub patience: Option<f64>,
    /// Impatience solver.
    #[arg(long, value_enum, default_value = "exact")]
    pub approx: ApproxArg,
    /// Lost users leave at once (wait 0) instead of reneging after τ (paper eq. 9).
    #[arg(long)]
    pub balking: bool,
    /// Grid cells of the exact level-crossing solve.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_GRID)]
    pub grid_cells: usize,
}

impl Mg1WorkloadArgs {
    /// Validate into the library's workload.
    pub fn validate(&self) -> Result<Workload> {
        let tokens = parse_tokens("--tokens", &self.tokens)?;
        let arrival_rate = rate("--arrival-rate", self.arrival_rate)?;
        let (per_token_s, intercept_s) =
            match (&self.coefficients, self.per_token_s, self.intercept_s) {
                // Raw flags: a = 0 (token-independent service) stays allowed, as before.
                (None, Some(a), Some(c)) => (a, c),
                // A file, or an incomplete/doubled choice: the shared resolver reads the file or
                // gives its one-line error.
                (file, a, c) => {
                    let line =
                        pipeline::coefficients::resolve_single_request(file.as_deref(), a, c)?;
                    (line.per_token_s, line.intercept_s)
                }
            };
        let service = LinearService {
            per_token_s,
            intercept_s,
        };
        let patience = self.patience;
        Workload {
            tokens,
            tokens_spec: self.tokens.clone(),
            arrival_rate,
            service,
            patience,
            approx: match self.approx {
                ApproxArg::Exact => Approx::Exact,
                ApproxArg::DekokTijms => Approx::DekokTijms,
            },
            abandonment: if self.balking {
                Abandonment::Balk
            } else {
                Abandonment::Renege
            },
            grid_cells: self.grid_cells,
        }
        .validated()
    }
}

/// The batch-time model flags shared by `queue batch` and `optimize batch-size`.
#[derive(Debug, Clone, Args)]
pub struct BatchModelArgs {
    /// Decode-token distribution (tokens after the first): uniform:LO,HI | duniform:LO,HI |
    /// normal:MEAN,SD[,LO,HI] | lognormal:MU,SIGMA | const:N | empirical:PATH[:COLUMN] | a
    /// built-in dataset name.
    #[arg(long, value_name = "DIST")]
    pub tokens: String,
    /// First-token time t1(b) = K1·b + K2 in seconds (K1 per request in the batch).
    #[arg(
        long,
        value_name = "K1,K2",
        value_delimiter = ',',
        allow_hyphen_values = true
    )]
    pub first_token_s: Vec<f64>,
    /// Per-decode-token time t2(b) = K3·b + K4 in seconds (K3 per request in the batch).
    #[arg(
        long,
        value_name = "K3,K4",
        value_delimiter = ',',
        allow_hyphen_values = true
    )]
    pub decode_step_s: Vec<f64>,
    /// Coefficients file written by `tokenq fit` (e.g.
    /// datasets/coefficients/a100-llama-2-7b-vidur.toml): K1..K4 from its batch lines, instead of
    /// --first-token-s/--decode-step-s.
    #[arg(long, value_name = "FILE")]
    pub coefficients: Option<PathBuf>,
    /// Max-token limit L: decode lengths become integers n = min(max(1, round(X)), L), as the
    /// simulator draws them (docs/models.md §11).
    #[arg(long, value_name = "L")]
    pub max_tokens: Option<u64>,
}

impl BatchModelArgs {
    /// Validate into the library's batch model.
    pub fn model(&self) -> Result<LlmBatch> {
        let [k1, k2, k3, k4] = pipeline::coefficients::resolve_batch_k(
            self.coefficients.as_deref(),
            &self.first_token_s,
            &self.decode_step_s,
        )?;
        let coeffs = BatchTime::new(k1, k2, k3, k4).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut dist = parse_tokens("--tokens", &self.tokens)?;
        if let Some(l) = self.max_tokens {
            if l == 0 {
                bail!("--max-tokens 0: the limit L must be at least 1 token");
            }
            dist = queueing::batch::integer_tokens(&dist, Some(l))
                .map_err(|e| anyhow::anyhow!("--max-tokens {l}: {e}"))?;
        }
        LlmBatch::new(coeffs, dist).map_err(|e| anyhow::anyhow!("--tokens: {e}"))
    }
}

/// `--policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyArg {
    /// Take every waiting request (at most --max-batch).
    Dynamic,
    /// Start only with exactly --max-batch requests (M/D^K/1).
    Fixed,
    /// Dynamic batch, each request returns at its own length.
    Elastic,
}

impl From<PolicyArg> for Policy {
    fn from(p: PolicyArg) -> Self {
        match p {
            PolicyArg::Dynamic => Policy::Dynamic,
            PolicyArg::Fixed => Policy::Fixed,
            PolicyArg::Elastic => Policy::Elastic,
        }
    }
}
