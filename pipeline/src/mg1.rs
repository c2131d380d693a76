//! `tokenq queue mg1`: M/G/1 FCFS with a max-token limit (docs/models.md §1) and, with a
//! patience, impatient users (docs/models.md §2): exact level crossing by default, De
//! Kok–Tijms on request. With simulation settings, the same system is simulated
//! (docs/models.md §11) with continuous token counts `n = min(X, L)`, the reading of the
//! analytic laws, and each analytic mean is compared with the simulation's interval.

use anyhow::{Result, bail};
use queueing::Method;
use queueing::dist::TokenDist;
use queueing::impatience::{
    self, Abandonment, DEFAULT_GRID, DEFAULT_SERVED_GRID, ImpatienceResult, MAX_GRID_CELLS,
    ServiceLaw, served_wait_distribution,
};
use queueing::mg1::{self, LinearService, Mg1Result, QueueError};
use queueing::waiting::{WaitOptions, waiting_distribution};
use serde::Serialize;
use std::collections::BTreeMap;

use crate::check::{Comparison, SimSettings, Validation};
use crate::text::percentile_key as pkey;
use crate::text::{Table, num};

/// How to solve the impatience model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Approx {
    /// Exact level-crossing solution.
    Exact,
    /// The paper's De Kok–Tijms two-moment interpolation (needs c_S² ≤ 1).
    DekokTijms,
}

/// A validated single-server workload.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Output-token law.
    pub tokens: TokenDist,
    /// The law as the user wrote it.
    pub tokens_spec: String,
    /// Poisson arrival rate λ (req/s).
    pub arrival_rate: f64,
    /// Service line `S = a·min(N, L) + c`.
    pub service: LinearService,
    /// Patience τ (s), if users are impatient.
    pub patience: Option<f64>,
    /// Impatience solver.
    pub approx: Approx,
    /// What a lost user does.
    pub abandonment: Abandonment,
    /// Grid cells of the exact level-crossing solve.
    pub grid_cells: usize,
}

impl Workload {
    /// Check the service line, the patience and the solver settings against their flags'
    /// domains; each error names the flag and the fix.
    pub fn validated(self) -> Result<Workload> {
        use crate::values::{MAX_SECONDS, at_most, non_negative, positive};
        let s = self.service;
        at_most(
            "--per-token-s",
            non_negative("--per-token-s", s.per_token_s, "s/token")?,
            MAX_SECONDS,
            "s/token",
        )?;
        at_most(
            "--intercept-s",
            non_negative("--intercept-s", s.intercept_s, "s")?,
            MAX_SECONDS,
            "s",
        )?;
        if s.per_token_s == 0.0 && s.intercept_s == 0.0 {
            bail!("--per-token-s and --intercept-s are both 0: the service time would be 0 s");
        }
        if let Some(t) = self.patience {
            at_most(
                "--patience",
                positive("--patience", t, "s")?,
                MAX_SECONDS,
                "s",
            )?;
        }
        if self.patience.is_none()
            && (self.abandonment == Abandonment::Balk || self.approx != Approx::Exact)
        {
            bail!("--balking and --approx need --patience (they describe impatient users)");
        }
        if self.grid_cells < 10 {
            bail!("--grid-cells must be >= 10, got {}", self.grid_cells);
        }
        if self.grid_cells > MAX_GRID_CELLS {
            bail!(
                "--grid-cells {}: at most {MAX_GRID_CELLS} (the default {DEFAULT_GRID} is about 1e-8 relative; the solve's memory and time grow with the cells)",
                self.grid_cells
            );
        }
        Ok(self)
    }
}

#[derive(Debug, Serialize)]
struct Inputs {
    tokens: String,
    tokens_description: String,
    max_tokens: Option<f64>,
    arrival_rate_per_s: f64,
    per_token_s: f64,
    intercept_s: f64,
    patience_s: Option<f64>,
    abandonment: Option<Abandonment>,
    approx: Option<Approx>,
}

#[derive(Debug, Serialize)]
struct DktParts {
    exponential: ImpatienceResult,
    deterministic: ImpatienceResult,
    mean_wait_all_direct_s: f64,
}

/// Everything `queue mg1` prints (its `--json` object).
#[derive(Debug, Serialize)]
pub struct Mg1Answer {
    model: &'static str,
    inputs: Inputs,
    /// Patient M/G/1; null when unstable (only possible with --patience).
    mg1: Option<Mg1Result>,
    /// Set when the patient queue is unstable.
    mg1_unstable: Option<String>,
    impatience: Option<ImpatienceResult>,
    dekok_tijms_parts: Option<DktParts>,
    /// With --validate: the simulation beside the analytic values; null otherwise.
    validation: Option<Validation>,
    /// With --percentiles: quantiles of the wait and of the latency (sojourn), seconds.
    percentiles: Option<Percentiles>,
}

/// Quantiles of the wait and latency (docs/models.md §1, `queueing::waiting`; with a patience,
/// of **served** users, §2.5, `queueing::impatience::served`).
#[derive(Debug, Serialize)]
pub struct Percentiles {
    /// `p50`, `p90`, … → seconds from arrival to the start of service.
    pub wait: BTreeMap<String, f64>,
    /// The same for arrival to completion (wait + service).
    pub latency: BTreeMap<String, f64>,
    /// Whose times these are: `all users` (patient queue) or `served users` (with a patience:
    /// lost users are left out, as in the simulator's percentiles).
    pub population: &'static str,
    /// How they were obtained.
    pub method: Method,
    /// Absolute accuracy of the CDF values they invert.
    pub tolerance: f64,
    /// With a patience: each quantile's error estimate (s), the difference between the n- and
    /// 2n-cell solves; null for the patient queue (its tolerance covers the CDF).
    pub error_s: Option<QuantileErrors>,
}

/// Error estimates of impatient quantiles (s), keyed like [`Percentiles::wait`].
#[derive(Debug, Serialize)]
pub struct QuantileErrors {
    /// Of the wait quantiles (s).
    pub wait: BTreeMap<String, f64>,
    /// Of the latency quantiles (s).
    pub latency: BTreeMap<String, f64>,
}

fn percentiles(w: &Workload, l: f64, ps: &[f64]) -> Result<Option<Percentiles>> {
    if ps.is_empty() {
        return Ok(None);
    }
    let mut wait = BTreeMap::new();
    let mut latency = BTreeMap::new();
    if let Some(tau) = w.patience {
        // Served users: W = V | V < τ (docs/models.md §2.5), for balking and reneging alike.
        let law = ServiceLaw::Tokens {
            tokens: w.tokens.clone(),
            max_tokens: l,
            service: w.service,
        };
        let d = served_wait_distribution(&law, w.arrival_rate, tau, DEFAULT_SERVED_GRID)
            .map_err(|e| anyhow::anyhow!("--percentiles with --patience {tau}: {e}"))?;
        let mut errors = QuantileErrors {
            wait: BTreeMap::new(),
            latency: BTreeMap::new(),
        };
        for &p in ps {
            wait.insert(pkey(p), d.quantile_wait(p)?);
            latency.insert(pkey(p), d.quantile_sojourn(p)?);
            errors.wait.insert(pkey(p), d.quantile_wait_error(p)?);
            errors.latency.insert(pkey(p), d.quantile_sojourn_error(p)?);
        }
        return Ok(Some(Percentiles {
            wait,
            latency,
            population: "served users",
            method: d.method,
            tolerance: d.tolerance,
            error_s: Some(errors),
        }));
    }
    let d = waiting_distribution(
        &w.tokens,
        l,
        w.arrival_rate,
        w.service,
        &WaitOptions::default(),
    )?;
    for &p in ps {
        wait.insert(pkey(p), d.quantile_wait(p)?);
        latency.insert(pkey(p), d.quantile_sojourn(p)?);
    }
    Ok(Some(Percentiles {
        wait,
        latency,
        population: "all users",
        method: d.method,
        tolerance: d.tolerance,
        error_s: None,
    }))
}

/// Solve the model for `w` at limit `l` (`max_tokens` as given: `None` = no limit), and
/// simulate it too when `sim` is given.
pub fn answer(
    w: &Workload,
    max_tokens: Option<f64>,
    l: f64,
    sim: Option<&SimSettings>,
    quantiles: &[f64],
) -> Result<Mg1Answer> {
    let pct = percentiles(w, l, quantiles)?;
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
            Approx::Exact => {
                imp = Some(impatience::exact(
                    &law,
                    w.arrival_rate,
                    tau,
                    w.grid_cells,
                    w.abandonment,
                )?);
            }
            Approx::DekokTijms => {
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
    let validation = match sim {
        Some(v) => Some(validate(v, w, l, mg1.as_ref(), imp.as_ref(), pct.as_ref())?),
        None => None,
    };
    Ok(Mg1Answer {
        model: "mg1",
        inputs: Inputs {
            tokens: w.tokens_spec.clone(),
            tokens_description: w.tokens.describe(),
            max_tokens,
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
        percentiles: pct,
    })
}

/// Simulate the same M/G/1 (with its patience, if any) and compare each analytic mean.
fn validate(
    v: &SimSettings,
    w: &Workload,
    l: f64,
    mg1: Option<&Mg1Result>,
    imp: Option<&ImpatienceResult>,
    pct: Option<&Percentiles>,
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
    // The simulator estimates p50, p90 and p99 (batch means of per-section quantiles), of
    // served users' waits and latencies: the same population as the impatient quantiles.
    if let Some(p) = pct {
        let served = if w.patience.is_some() { "served " } else { "" };
        for (what, map, sim) in [
            ("wait", &p.wait, &r.wait_s),
            ("latency", &p.latency, &r.latency_s),
        ] {
            for (key, est) in [("p50", sim.p50), ("p90", sim.p90), ("p99", sim.p99)] {
                if let Some(&exact) = map.get(key) {
                    c.push(Comparison::new(
                        format!("{served}{what} {key}"),
                        "s",
                        exact,
                        p.method,
                        est,
                    ));
                }
            }
        }
    }
    Ok(v.validation(&r, token_mode, c))
}

/// The human-readable form: the model table, then the validation, if any.
pub fn render(o: &Mg1Answer) -> String {
    let mut out = String::new();
    let i = &o.inputs;
    out.push_str(&format!(
        "M/G/1 FCFS: tokens {}, max tokens {}, λ = {} req/s, S = {} s/token × min(N, L) + {} s\n",
        i.tokens_description,
        i.max_tokens.map_or("none".into(), |l| l.to_string()),
        i.arrival_rate_per_s,
        i.per_token_s,
        i.intercept_s,
    ));
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
        out.push_str(&format!("patient queue: {u}\n"));
    }
    if let Some(r) = &o.impatience {
        let tau = i.patience_s.unwrap_or(f64::NAN);
        out.push_str(&format!(
            "impatient users: patience τ = {} s, lost users {}, solver {}\n",
            tau,
            match r.abandonment {
                Abandonment::Renege => "renege after τ (paper eq. 9)",
                Abandonment::Balk => "balk (leave at once)",
            },
            r.solver
        ));
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
    if let Some(p) = &o.percentiles {
        let served = if p.error_s.is_some() { "served " } else { "" };
        for (what, map) in [("wait", &p.wait), ("latency", &p.latency)] {
            for (k, v) in map {
                t.row(&format!("{served}{what} {k}"), num(*v, 7), "s", p.method);
            }
        }
    }
    out.push_str(&t.render());
    if let Some(p) = &o.percentiles {
        if let Some(e) = &p.error_s {
            let worst = e
                .wait
                .values()
                .chain(e.latency.values())
                .fold(0.0f64, |a, &b| a.max(b));
            out.push_str(&format!(
                "percentiles of served users only (lost users have no wait to the start of \
                 service); CDF tolerance {:.1e}, quantile error estimate ≤ {:.1e} s\n",
                p.tolerance, worst
            ));
        }
    }
    if let Some(v) = &o.validation {
        out.push_str(&v.render());
    }
    out
}

#[cfg(test)]
mod tests;
