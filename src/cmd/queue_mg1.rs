//! `tokenq queue mg1`: M/G/1 FCFS with a max-token limit (docs/models.md §1) and, with `--patience`,
//! impatient users (docs/models.md §2): exact level crossing by default, De Kok–Tijms on request.
//! The service line comes from `--per-token-s/--intercept-s` or from `--coefficients FILE`
//! (its `[single_request]` line, written by `tokenq fit`), never both.
//! `--validate` simulates the same system (docs/models.md §11) with continuous token counts
//! `n = min(X, L)`, the reading of the analytic laws, and prints both side by side.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use queueing::Method;
use queueing::impatience::{self, Abandonment, DEFAULT_GRID, ImpatienceResult, ServiceLaw};
use queueing::mg1::{self, LinearService, Mg1Result, QueueError};
use serde::Serialize;

use pipeline::check::{Comparison, Validation};
use pipeline::text::{Table, num};

use super::common::{ValidateArgs, max_tokens, parse_tokens, positive, print_json};

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

/// Validated workload.
#[derive(Debug, Clone)]
pub struct Workload {
    pub tokens: queueing::dist::TokenDist,
    pub tokens_spec: String,
    pub arrival_rate: f64,
    pub service: LinearService,
    pub patience: Option<f64>,
    pub approx: ApproxArg,
    pub abandonment: Abandonment,
    pub grid_cells: usize,
}

impl Mg1WorkloadArgs {
    pub fn validate(&self) -> Result<Workload> {
        let tokens = parse_tokens("--tokens", &self.tokens)?;
        let arrival_rate = positive("--arrival-rate", self.arrival_rate, "req/s")?;
        let (per_token_s, intercept_s) =
            match (&self.coefficients, self.per_token_s, self.intercept_s) {
                // Raw flags: a = 0 (token-independent service) stays allowed, as before.
                (None, Some(a), Some(c)) => (a, c),
                // A file, or an incomplete/doubled choice: the shared resolver reads the file or
                // gives its one-line error.
                (file, a, c) => {
                    let line =
                        super::coefficients_args::resolve_single_request(file.as_deref(), a, c)?;
                    (line.per_token_s, line.intercept_s)
                }
            };
        let service = LinearService {
            per_token_s: super::common::non_negative("--per-token-s", per_token_s, "s/token")?,
            intercept_s: super::common::non_negative("--intercept-s", intercept_s, "s")?,
        };
        if service.per_token_s == 0.0 && service.intercept_s == 0.0 {
            bail!("--per-token-s and --intercept-s are both 0: the service time would be 0 s");
        }
        let patience = self
            .patience
            .map(|t| positive("--patience", t, "s"))
            .transpose()?;
        if patience.is_none() && (self.balking || self.approx != ApproxArg::Exact) {
            bail!("--balking and --approx need --patience (they describe impatient users)");
        }
        if self.grid_cells < 10 {
            bail!("--grid-cells must be >= 10, got {}", self.grid_cells);
        }
        Ok(Workload {
            tokens,
            tokens_spec: self.tokens.clone(),
            arrival_rate,
            service,
            patience,
            approx: self.approx,
            abandonment: if self.balking {
                Abandonment::Balk
            } else {
                Abandonment::Renege
            },
            grid_cells: self.grid_cells,
        })
    }
}

/// `tokenq queue mg1`.
#[derive(Debug, Clone, Args)]
pub struct QueueMg1Args {
    #[command(flatten)]
    pub workload: Mg1WorkloadArgs,
    /// Max-token limit L (tokens); omit for no limit.
    #[arg(long, value_name = "L", allow_hyphen_values = true)]
    pub max_tokens: Option<f64>,
    #[command(flatten)]
    pub validate: ValidateArgs,
    /// Machine-readable output (fields in README, "Single-server models").
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Inputs<'a> {
    tokens: &'a str,
    tokens_description: String,
    max_tokens: Option<f64>,
    arrival_rate_per_s: f64,
    per_token_s: f64,
    intercept_s: f64,
    patience_s: Option<f64>,
    abandonment: Option<Abandonment>,
    approx: Option<ApproxArg>,
}

#[derive(Debug, Serialize)]
struct DktParts {
    exponential: ImpatienceResult,
    deterministic: ImpatienceResult,
    mean_wait_all_direct_s: f64,
}

#[derive(Debug, Serialize)]
struct Output<'a> {
    model: &'static str,
    inputs: Inputs<'a>,
    /// Patient M/G/1; null when unstable (only possible with --patience).
    mg1: Option<Mg1Result>,
    /// Set when the patient queue is unstable.
    mg1_unstable: Option<String>,
    impatience: Option<ImpatienceResult>,
    dekok_tijms_parts: Option<DktParts>,
    /// With --validate: the simulation beside the analytic values; null otherwise.
    validation: Option<Validation>,
}

pub fn run(a: QueueMg1Args) -> Result<()> {
    let w = a.workload.validate()?;
    let l = max_tokens("--max-tokens", a.max_tokens)?;
    let (mg1, unstable) = match mg1::solve(&w.tokens, l, w.arrival_rate, w.service) {
        Ok(r) => (Some(r), None),
        Err(e @ QueueError::Unstable { .. }) if w.patience.is_some() => (None, Some(e.to_string())),
        Err(e) => bail!("{e}"),
    };
    let mut imp = None;
    let mut parts = None;
    if let Some(tau) = w.patience {
        let law = ServiceLaw::Tokens {
            tokens: w.tokens.clone(),
            max_tokens: l,
            service: w.service,
        };
        match w.approx {
            ApproxArg::Exact => {
                imp = Some(impatience::exact(
                    &law,
                    w.arrival_rate,
                    tau,
                    w.grid_cells,
                    w.abandonment,
                )?);
            }
            ApproxArg::DekokTijms => {
                let d = impatience::dekok_tijms(&law, w.arrival_rate, tau, w.abandonment)
                    .map_err(|e| anyhow::anyhow!("--approx dekok-tijms: {e}"))?;
                imp = Some(d.combined);
                parts = Some(DktParts {
                    exponential: d.exponential,
                    deterministic: d.deterministic,
                    mean_wait_all_direct_s: d.mean_wait_all_direct_s,
                });
            }
        }
    }
    let validation = if a.validate.validate {
        Some(validate(&a.validate, &w, l, mg1.as_ref(), imp.as_ref())?)
    } else {
        None
    };
    let out = Output {
        model: "mg1",
        inputs: Inputs {
            tokens: &w.tokens_spec,
            tokens_description: w.tokens.describe(),
            max_tokens: a.max_tokens,
            arrival_rate_per_s: w.arrival_rate,
            per_token_s: w.service.per_token_s,
            intercept_s: w.service.intercept_s,
            patience_s: w.patience,
            abandonment: w.patience.map(|_| w.abandonment),
            approx: w.patience.map(|_| w.approx),
        },
        mg1,
        mg1_unstable: unstable,
        impatience: imp,
        dekok_tijms_parts: parts,
        validation,
    };
    if a.json {
        return print_json(&out);
    }
    print_human(&out);
    if let Some(v) = &out.validation {
        print!("{}", v.render());
    }
    Ok(())
}

/// Simulate the same M/G/1 (with its patience, if any) and compare each analytic mean.
fn validate(
    v: &ValidateArgs,
    w: &Workload,
    l: f64,
    mg1: Option<&Mg1Result>,
    imp: Option<&ImpatienceResult>,
) -> Result<Validation> {
    let token_mode = sim::TokenMode::Continuous;
    let scenario = sim::Scenario {
        policy: sim::Policy::Mg1 {
            service: sim::LinearService {
                per_token_s: w.service.per_token_s,
                intercept_s: w.service.intercept_s,
            },
            patience: w.patience.map(|tau| sim::Patience {
                patience_s: tau,
                mode: match w.abandonment {
                    Abandonment::Renege => sim::Abandonment::Renege,
                    Abandonment::Balk => sim::Abandonment::Balk,
                },
            }),
        },
        arrivals: sim::Arrivals::Poisson {
            rate_rps: w.arrival_rate,
        },
        tokens: sim::Tokens::Law(sim::TokenLaw::Dist(w.tokens.clone())),
        max_tokens: l.is_finite().then_some(l),
        token_mode,
    };
    let r = v.simulate(&scenario)?;
    let mut c = Vec::new();
    match (imp, mg1) {
        (Some(i), _) => {
            let m = i.method;
            c.push(Comparison::new(
                "pi loss fraction".into(),
                "fraction",
                i.loss_fraction,
                m,
                r.loss_fraction,
            ));
            c.push(Comparison::new(
                "E[W_qs] wait of served".into(),
                "s",
                i.mean_wait_served_s,
                m,
                r.wait_s.mean,
            ));
            if let Some(all) = r.wait_all_s {
                c.push(Comparison::new(
                    "E[W_q] wait of all users".into(),
                    "s",
                    i.mean_wait_all_s,
                    m,
                    all,
                ));
            }
            c.push(Comparison::new(
                "sojourn of served".into(),
                "s",
                i.mean_sojourn_served_s,
                m,
                r.latency_s.mean,
            ));
        }
        (None, Some(g)) => {
            let m = g.method;
            c.push(Comparison::new(
                "rho utilisation".into(),
                "fraction",
                g.utilisation,
                m,
                r.utilisation,
            ));
            c.push(Comparison::new(
                "E[W_q] mean wait".into(),
                "s",
                g.mean_wait_s,
                m,
                r.wait_s.mean,
            ));
            c.push(Comparison::new(
                "mean sojourn".into(),
                "s",
                g.mean_sojourn_s,
                m,
                r.latency_s.mean,
            ));
        }
        (None, None) => {}
    }
    Ok(v.validation(&r, token_mode, c))
}

fn print_human(o: &Output<'_>) {
    let i = &o.inputs;
    println!(
        "M/G/1 FCFS: tokens {}, max tokens {}, λ = {} req/s, S = {} s/token × min(N, L) + {} s",
        i.tokens_description,
        i.max_tokens.map_or("none".into(), |l| l.to_string()),
        i.arrival_rate_per_s,
        i.per_token_s,
        i.intercept_s,
    );
    let mut t = Table::new();
    if let Some(m) = &o.mg1 {
        t.row("E[min(N, L)]", num(m.mean_tokens, 7), "tokens", m.method)
            .row(
                "E[min(N, L)^2]",
                num(m.second_moment_tokens, 7),
                "tokens^2",
                m.method,
            )
            .row("E[S] mean service", num(m.mean_service_s, 7), "s", m.method)
            .row(
                "E[S^2]",
                num(m.second_moment_service_s2, 7),
                "s^2",
                m.method,
            )
            .row("c_S^2", num(m.service_scv, 6), "1", m.method)
            .row("rho utilisation", num(m.utilisation, 7), "1", m.method)
            .row(
                "largest stable rate",
                num(m.max_stable_rate, 6),
                "req/s",
                m.method,
            );
        if o.impatience.is_none() {
            t.row("E[W_q] mean wait", num(m.mean_wait_s, 7), "s", m.method)
                .row("mean sojourn", num(m.mean_sojourn_s, 7), "s", m.method);
        } else {
            t.row(
                "E[W_q] if users were patient",
                num(m.mean_wait_s, 7),
                "s",
                m.method,
            );
        }
    }
    if let Some(u) = &o.mg1_unstable {
        println!("patient queue: {u}");
    }
    if let Some(r) = &o.impatience {
        let tau = i.patience_s.unwrap_or(f64::NAN);
        println!(
            "impatient users: patience τ = {} s, lost users {}, solver {}",
            tau,
            match r.abandonment {
                Abandonment::Renege => "renege after τ (paper eq. 9)",
                Abandonment::Balk => "balk (leave at once)",
            },
            r.solver
        );
        let m = r.method;
        t.row(
            "offered load rho",
            num(r.offered_load, 7),
            "1",
            Method::Exact,
        )
        .row("pi loss fraction", num(r.loss_fraction, 7), "1", m)
        .row(
            "E[W_qs] wait of served",
            num(r.mean_wait_served_s, 7),
            "s",
            m,
        )
        .row(
            "E[W_q] wait of all users",
            num(r.mean_wait_all_s, 7),
            "s",
            m,
        )
        .row("sojourn of served", num(r.mean_sojourn_served_s, 7), "s", m);
        if let Some(p0) = r.prob_idle {
            t.row("P(server idle)", num(p0, 7), "1", m);
        }
    }
    print!("{}", t.render());
}
