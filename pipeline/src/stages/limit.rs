//! The max-token-limit question: the exact M/G/1 curve over L, the impatient variant, and
//! their simulation checks (docs/models.md §1–§3).

use super::*;
use queueing::waiting::waiting_distribution;

pub(crate) struct LimitAnalysis {
    pub(crate) answer: LimitAnswer,
    pub(crate) figure: Figure,
    pub(crate) input: TokenLimitInput,
    pub(crate) grid: Vec<f64>,
}

/// The sweep of limits: a linear grid from the workload's low quantile to its top.
pub(crate) fn limit_grid(d: &TokenDist) -> Vec<f64> {
    let (lo, hi) = d.support();
    let top = if hi.is_finite() {
        hi
    } else {
        d.quantile(UNBOUNDED_TOP_QUANTILE)
    };
    let bottom = d.quantile(0.05).max(lo).max(1.0);
    let step = ((top - bottom) / (LIMIT_POINTS - 1) as f64).max(1.0);
    let mut g: Vec<f64> = (0..LIMIT_POINTS)
        .map(|i| (bottom + step * i as f64).round().min(top.round()))
        .collect();
    g.dedup();
    g
}

pub(crate) fn limit_analysis(cfg: &PipelineConfig, svc: LinearService) -> Result<LimitAnalysis> {
    let d = &cfg.workload;
    let unclipped = mg1::solve(d, f64::INFINITY, 1e-9, svc)
        .map_err(|e| anyhow::anyhow!("service model: {e}"))?;
    let lambda = cfg.rate.unwrap_or(cfg.load / unclipped.mean_service_s);
    let grid = limit_grid(d);
    let mut wait = Vec::new();
    let mut objective = Vec::new();
    for &l in &grid {
        match mg1::solve(d, l, lambda, svc) {
            Ok(r) => {
                wait.push((l, r.mean_wait_s));
                objective.push((l, cfg.beta * d.cdf(l) - (1.0 - cfg.beta) * r.mean_wait_s));
            }
            Err(mg1::QueueError::Unstable { .. }) => {}
            Err(e) => bail!("M/G/1 at L = {l}: {e}"),
        }
    }
    let Some(&(argmax_l, top_f)) = objective.iter().max_by(|a, b| a.1.total_cmp(&b.1)) else {
        // Unstable at every limit: say how far off.
        let r = mg1::solve(d, grid[0], lambda, svc).unwrap_err();
        bail!(
            "--rate {lambda:.6} req/s: every max-token limit from {} tokens up is unstable: {r}",
            grid[0]
        );
    };
    // Ties: the smallest limit within 0.1 % of the best objective (the grid ascends).
    let &(best_l, best_f) = objective
        .iter()
        .find(|p| p.1 >= top_f - TIE_REL * top_f.abs())
        .unwrap_or(&(argmax_l, top_f));
    let best = mg1::solve(d, best_l, lambda, svc)?;
    // Exact percentiles of the wait and the latency at L* (docs/models.md §1).
    let (wait_pct, sojourn_pct) = match waiting_distribution(
        d,
        best_l,
        lambda,
        svc,
        &queueing::waiting::WaitOptions::default(),
    ) {
        Ok(w) => {
            let q = |f: &dyn Fn(f64) -> Result<f64, queueing::mg1::QueueError>| {
                Some(Percentiles {
                    p50: f(0.5).ok()?,
                    p90: f(0.9).ok()?,
                    p99: f(0.99).ok()?,
                    half_widths: None,
                })
            };
            (q(&|p| w.quantile_wait(p)), q(&|p| w.quantile_sojourn(p)))
        }
        Err(_) => (None, None),
    };

    // Impatient users (docs/models.md §2, paper eqs 6–9 and 11): exact level crossing and the
    // De Kok–Tijms approximation, at the same λ.
    let tau = cfg
        .patience
        .unwrap_or(DEFAULT_PATIENCE_FACTOR * unclipped.mean_service_s);
    // Exact curve and argmax of eq. 11 through the library's optimiser (rayon over limits, one
    // shared level-crossing solve for the limits with a·L + c ≥ τ).
    let exact_imp = token_limit::optimize(
        &token_limit::Problem {
            tokens: d,
            arrival_rate: lambda,
            service: svc,
            weight: cfg.beta,
            utility: &token_limit::StepUtility,
            impatience: Some(token_limit::Impatience {
                patience_s: tau,
                lost_cost: cfg.loss_cost,
                abandonment: Abandonment::Renege,
                dekok_tijms: false,
                grid: IMPATIENCE_GRID,
            }),
        },
        &grid,
    )
    .map_err(|e| anyhow::anyhow!("M/G/1+D, τ = {tau} s: {e}"))?;
    let point = |p: &token_limit::CurvePoint| {
        (
            p.max_tokens,
            p.mean_wait_s.unwrap_or(f64::NAN),
            p.loss_fraction.unwrap_or(f64::NAN),
        )
    };
    let imp_wait: Vec<(f64, f64)> = exact_imp
        .curve
        .iter()
        .map(|p| (point(p).0, point(p).1))
        .collect();
    let imp_loss: Vec<(f64, f64)> = exact_imp
        .curve
        .iter()
        .map(|p| (point(p).0, point(p).2))
        .collect();
    let mut dkt_wait = Vec::new();
    let mut dkt_loss = Vec::new();
    for &l in &grid {
        let law = ServiceLaw::Tokens {
            tokens: d.clone(),
            max_tokens: l,
            service: svc,
        };
        if let Ok(k) = impatience::dekok_tijms(&law, lambda, tau, Abandonment::Renege) {
            dkt_wait.push((l, k.combined.mean_wait_all_s));
            dkt_loss.push((l, k.combined.loss_fraction));
        }
    }
    let imp_obj: Vec<(f64, f64)> = exact_imp
        .curve
        .iter()
        .filter_map(|p| Some((p.max_tokens, p.objective?)))
        .collect();
    // Ties as for patient users: the smallest limit within 0.1 % of the best objective.
    let top_imp = exact_imp.best.objective.unwrap_or(f64::NAN);
    let chosen_imp = exact_imp
        .curve
        .iter()
        .filter(|p| {
            p.objective
                .is_some_and(|f| f >= top_imp - TIE_REL * top_imp.abs())
        })
        .min_by(|a, b| a.max_tokens.total_cmp(&b.max_tokens))
        .unwrap_or(&exact_imp.best);
    let (best_imp_l, best_imp_w, best_imp_p) = point(chosen_imp);
    let impatient = Some(ImpatientAnswer {
        patience_s: tau,
        loss_cost: cfg.loss_cost,
        best_limit_tokens: best_imp_l,
        argmax_limit_tokens: exact_imp.best.max_tokens,
        loss_fraction_at_best: best_imp_p,
        wait_all_at_best_s: best_imp_w,
        loss_fraction_at_top_limit: imp_loss.last().map_or(f64::NAN, |x| x.1),
        objective_at_best: chosen_imp.objective.unwrap_or(f64::NAN),
    });
    let no_limit = mg1::solve(d, f64::INFINITY, lambda, svc)
        .map(|r| r.mean_wait_s)
        .unwrap_or(f64::INFINITY);
    let answer = LimitAnswer {
        arrival_rate_rps: lambda,
        best_limit_tokens: best_l,
        argmax_limit_tokens: argmax_l,
        wait_percentiles_at_best_s: wait_pct,
        sojourn_percentiles_at_best_s: sojourn_pct,
        offered_load_without_limit: lambda * unclipped.mean_service_s,
        wait_at_best_s: best.mean_wait_s,
        sojourn_at_best_s: best.mean_sojourn_s,
        utilisation_at_best: best.utilisation,
        served_whole_at_best: d.cdf(best_l),
        wait_without_limit_s: no_limit,
        objective_at_best: best_f,
        impatient: impatient.clone(),
        checks: Vec::new(),
    };
    let tau_label = format!("impatient, τ = {} s", plots::sig(tau));
    let input = TokenLimitInput {
        setting: format!("{}, λ = {} req/s", cfg.workload_spec, plots::sig(lambda)),
        wait: vec![
            Series::from_xy("M/G/1, patient users", Method::Exact, wait).in_group("patient"),
            Series::from_xy(
                format!("{tau_label}, all users (eq 9)"),
                Method::Exact,
                imp_wait,
            )
            .in_group("impatient"),
            Series::from_xy("impatient, De Kok–Tijms", Method::Approximation, dkt_wait)
                .in_group("impatient"),
        ],
        loss: vec![
            Series::from_xy(tau_label.clone(), Method::Exact, imp_loss).in_group("impatient"),
            Series::from_xy("De Kok–Tijms", Method::Approximation, dkt_loss).in_group("impatient"),
        ],
        objective_patient: vec![
            Series::from_xy(
                format!("F(L), U = 1{{n ≤ L}}, β = {}", plots::sig(cfg.beta)),
                Method::Exact,
                objective,
            )
            .in_group("patient"),
        ],
        objective_impatient: vec![
            Series::from_xy(
                format!(
                    "F(L) − {}·π, β = {}",
                    plots::sig(cfg.loss_cost),
                    plots::sig(cfg.beta)
                ),
                Method::Exact,
                imp_obj,
            )
            .in_group("impatient"),
        ],
        best_patient: Some(best_l),
        best_impatient: impatient.as_ref().map(|i| i.best_limit_tokens),
    };
    let figure = plots::token_limit(&input)?;
    Ok(LimitAnalysis {
        answer,
        figure,
        input,
        grid,
    })
}

pub(crate) fn run_sim(
    cfg: &PipelineConfig,
    scenario: &sim::Scenario,
    salt: u64,
) -> Result<sim::Report> {
    let rc = sim::RunConfig {
        requests: cfg.sim_requests,
        seed: cfg.seed.wrapping_mul(1_000_003).wrapping_add(salt),
        ..sim::RunConfig::default()
    };
    Ok(sim::run(scenario, &rc)?)
}

pub(crate) fn simulate_limit(
    cfg: &PipelineConfig,
    svc: LinearService,
    l: &mut LimitAnalysis,
) -> Result<()> {
    let lambda = l.answer.arrival_rate_rps;
    let mut limits: Vec<f64> = SIM_LIMIT_FRACTIONS
        .iter()
        .map(|f| l.grid[((l.grid.len() - 1) as f64 * f).round() as usize])
        .collect();
    limits.push(l.answer.best_limit_tokens);
    limits.sort_by(f64::total_cmp);
    limits.dedup();
    let mut pts = Vec::new();
    for (i, &lim) in limits.iter().enumerate() {
        let Ok(exact) = mg1::solve(&cfg.workload, lim, lambda, svc) else {
            continue;
        };
        let scenario = sim::Scenario {
            policy: sim::Policy::Mg1 {
                service: sim::LinearService {
                    per_token_s: svc.per_token_s,
                    intercept_s: svc.intercept_s,
                },
                patience: None,
            },
            arrivals: sim::Arrivals::Poisson { rate_rps: lambda },
            tokens: sim::Tokens::Law(sim::TokenLaw::Dist(cfg.workload.clone())),
            max_tokens: Some(lim),
            token_mode: TOKEN_MODE,
        };
        let r = run_sim(cfg, &scenario, 100 + i as u64)?;
        let w = r.wait_s.mean;
        pts.push(Point::with_ci(lim, w.value, w.half_width));
        if lim == l.answer.best_limit_tokens {
            l.answer.checks.push(Comparison::new(
                format!("M/G/1 mean wait at L* = {lim}"),
                "s",
                exact.mean_wait_s,
                Method::Exact,
                Estimate {
                    value: w.value,
                    half_width: w.half_width,
                },
            ));
        }
    }
    if let Some(imp) = l.answer.impatient.clone() {
        let scenario = sim::Scenario {
            policy: sim::Policy::Mg1 {
                service: sim::LinearService {
                    per_token_s: svc.per_token_s,
                    intercept_s: svc.intercept_s,
                },
                patience: Some(sim::Patience {
                    patience_s: imp.patience_s,
                    mode: sim::Abandonment::Renege,
                }),
            },
            arrivals: sim::Arrivals::Poisson { rate_rps: lambda },
            tokens: sim::Tokens::Law(sim::TokenLaw::Dist(cfg.workload.clone())),
            max_tokens: Some(imp.best_limit_tokens),
            token_mode: TOKEN_MODE,
        };
        let r = run_sim(cfg, &scenario, 150)?;
        let p = r.loss_fraction;
        l.answer.checks.push(Comparison::new(
            format!(
                "M/G/1+D loss fraction at L* = {} (τ = {} s)",
                imp.best_limit_tokens,
                plots::sig(imp.patience_s)
            ),
            "1",
            imp.loss_fraction_at_best,
            Method::Exact,
            Estimate {
                value: p.value,
                half_width: p.half_width,
            },
        ));
        let pt = Point::with_ci(imp.best_limit_tokens, p.value, p.half_width);
        l.input
            .loss
            .push(Series::new("impatient", Method::Simulation, [pt]).in_group("impatient"));
        if let Some(w) = r.wait_all_s {
            let pt = Point::with_ci(imp.best_limit_tokens, w.value, w.half_width);
            l.input.wait.push(
                Series::new("impatient, all users", Method::Simulation, [pt]).in_group("impatient"),
            );
        }
    }
    l.input
        .wait
        .push(Series::new("M/G/1, patient users", Method::Simulation, pts).in_group("patient"));
    l.figure = plots::token_limit(&l.input)?;
    Ok(())
}
