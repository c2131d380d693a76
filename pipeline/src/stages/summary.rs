//! The report's parts: profile figures (paper Figs 2a/2b), the fit table, the coefficients,
//! the simulation checks and the recommendations.

use super::*;

/// Figs. 2a and 2b from the profile rows and the fitted lines.
pub(crate) fn profile_figures(
    rows: &[StepRow],
    c: &CoefficientsFile,
    model: &str,
) -> Result<Vec<Figure>> {
    let mut out = Vec::new();
    if let Some(s) = &c.single_request {
        // e2e(n) per output length at batch 1 and the line's reference prompt length.
        let e2e = fit::profile::e2e_curves(rows, 64);
        let measured: Vec<Point> = e2e
            .iter()
            .filter(|p| u64::from(p.input_tokens) == s.input_tokens)
            .map(|p| {
                let sd = fit::profile::sample_sd(&p.per_rep_s).unwrap_or(0.0);
                Point::with_ci(
                    f64::from(p.output_tokens),
                    p.mean_s(),
                    1.96 * sd / (p.per_rep_s.len() as f64).sqrt(),
                )
            })
            .collect();
        if !measured.is_empty() {
            out.push(plots::latency_vs_tokens(&LatencyFitInput {
                model: model.to_string(),
                measured,
                per_token_s: s.per_token_s,
                intercept_s: s.intercept_s,
                r2: Some(s.quality.r2),
            })?);
        }
    }
    if c.first_token.is_some() || c.decode_step.is_some() {
        let agg = fit::profile::aggregate_steps(rows);
        // First token: step 0 at the reference prompt length; per token: median decode step
        // per batch size at the smallest prompt.
        let ref_input = c.first_token.as_ref().map(|f| f.input_tokens).unwrap_or(0);
        let mut first: Vec<Point> = agg
            .iter()
            .filter(|p| p.step == 0 && u64::from(p.input_tokens) == ref_input)
            .map(|p| Point::new(f64::from(p.batch_size), p.median_s))
            .collect();
        first.sort_by(|a, b| a.x.total_cmp(&b.x));
        let min_input = agg.iter().map(|p| p.input_tokens).min().unwrap_or(0);
        let mut per: std::collections::BTreeMap<u32, Vec<f64>> = Default::default();
        for p in agg
            .iter()
            .filter(|p| p.step > 0 && p.input_tokens == min_input)
        {
            per.entry(p.batch_size).or_default().push(p.median_s);
        }
        let per_token: Vec<Point> = per
            .iter()
            .map(|(b, v)| {
                let m = fit::profile::median(v);
                let sd = fit::profile::sample_sd(v).unwrap_or(0.0);
                Point::with_ci(f64::from(*b), m, 1.96 * sd / (v.len() as f64).sqrt())
            })
            .collect();
        if !first.is_empty() || !per_token.is_empty() {
            out.push(plots::batch_timing(&BatchTimingInput {
                model: model.to_string(),
                first_token: first,
                per_token,
                first_token_fit: c
                    .first_token
                    .as_ref()
                    .map(|f| (f.slope_s_per_req, f.intercept_s)),
                per_token_fit: c
                    .decode_step
                    .as_ref()
                    .map(|d| (d.slope_s_per_req, d.intercept_s)),
            })?);
        }
    }
    Ok(out)
}

/// A fit is flagged below this R² on its fitted points.
pub(crate) const R2_WARN: f64 = 0.9;
/// A fit is flagged above this held-out MAPE (%).
pub(crate) const HOLDOUT_WARN_PCT: f64 = 10.0;

/// What is wrong with a fit, with its numbers ("R² 0.330 < 0.9; held-out MAPE 98.4% > 10%"),
/// or `None` for a fit good enough to use.
pub(crate) fn fit_flag(q: &FitQuality) -> Option<String> {
    let mut why = Vec::new();
    if q.r2.is_nan() || q.r2 < R2_WARN {
        why.push(format!("R² {:.3} < {R2_WARN}", q.r2));
    }
    if let Some(h) = q.holdout_mape_pct
        && (h.is_nan() || h > HOLDOUT_WARN_PCT)
    {
        why.push(format!("held-out MAPE {h:.1}% > {HOLDOUT_WARN_PCT}%"));
    }
    (!why.is_empty()).then(|| why.join("; "))
}

/// One warning per poor fit (R² < 0.9 or held-out MAPE > 10 %), with its numbers and the fix.
pub(crate) fn poor_fit_warnings(c: &CoefficientsFile) -> Vec<String> {
    let sections = [
        (
            "T(n) single request (a, c)",
            c.single_request.as_ref().map(|s| &s.quality),
        ),
        (
            "t1(b) first token (k1, k2)",
            c.first_token.as_ref().map(|s| &s.quality),
        ),
        (
            "t2(b) per token (k3, k4)",
            c.decode_step.as_ref().map(|s| &s.quality),
        ),
    ];
    sections
        .into_iter()
        .filter_map(|(name, q)| {
            let flag = fit_flag(q?)?;
            Some(format!(
                "poor fit of {name}: {flag}. The line describes the measurements badly, so the \
                 answers built on it are doubtful; profile again with more repetitions and \
                 warm-up (tokenq profile --reps, --warmup) or more grid points (--batch, --input), \
                 then tokenq pipeline --profile FILE"
            ))
        })
        .collect()
}

pub(crate) fn quality_cells(q: &FitQuality) -> [String; 4] {
    [
        format!("{:.5}", q.r2),
        format!("{:.2}%", q.mape_pct),
        q.holdout_mape_pct.map_or("-".into(), |v| {
            format!("{v:.2}% ({} points)", q.holdout_points)
        }),
        q.points_fitted.to_string(),
    ]
}

pub(crate) fn ci_cell(
    ci: &std::collections::BTreeMap<String, [f64; 2]>,
    key: &str,
    unit: &str,
) -> String {
    ci.get(key).map_or("-".into(), |[lo, hi]| {
        format!("[{}, {}] {unit}", plots::sig(*lo), plots::sig(*hi))
    })
}

pub(crate) fn fit_table(c: &CoefficientsFile) -> Table {
    let mut rows = Vec::new();
    let mut push = |quantity: &str, name: &str, v: f64, unit: &str, ci: String, q: &FitQuality| {
        let [r2, mape, held, n] = quality_cells(q);
        let flag = fit_flag(q).map_or("ok".to_string(), |f| format!("⚠ poor fit: {f}"));
        rows.push(vec![
            quantity.to_string(),
            name.to_string(),
            format!("{} {unit}", plots::sig(v)),
            ci,
            q.model.clone(),
            r2,
            mape,
            held,
            n,
            flag,
        ]);
    };
    if let Some(s) = &c.single_request {
        push(
            "T(n) single request",
            "a = per_token_s",
            s.per_token_s,
            "s/token",
            ci_cell(&s.ci95, "per_token_s", "s/token"),
            &s.quality,
        );
        push(
            "T(n) single request",
            "c = intercept_s",
            s.intercept_s,
            "s",
            ci_cell(&s.ci95, "intercept_s", "s"),
            &s.quality,
        );
    }
    if let Some(f) = &c.first_token {
        push(
            "t1(b) first token",
            "k1 = slope_s_per_req",
            f.slope_s_per_req,
            "s/req",
            ci_cell(&f.ci95, "slope_s_per_req", "s/req"),
            &f.quality,
        );
        push(
            "t1(b) first token",
            "k2 = intercept_s",
            f.intercept_s,
            "s",
            ci_cell(&f.ci95, "intercept_s", "s"),
            &f.quality,
        );
    }
    if let Some(d) = &c.decode_step {
        push(
            "t2(b) per token",
            "k3 = slope_s_per_req",
            d.slope_s_per_req,
            "s/req",
            ci_cell(&d.ci95, "slope_s_per_req", "s/req"),
            &d.quality,
        );
        push(
            "t2(b) per token",
            "k4 = intercept_s",
            d.intercept_s,
            "s",
            ci_cell(&d.ci95, "intercept_s", "s"),
            &d.quality,
        );
    }
    Table {
        caption: format!(
            "Least-squares fits ({}; time column {}). R² and MAPE on the fitted points; held-out MAPE on points left out of the fit. A fit with R² below {R2_WARN} or a held-out MAPE above {HOLDOUT_WARN_PCT}% is flagged.",
            c.provenance.method, c.provenance.time_column
        ),
        columns: [
            "quantity",
            "coefficient",
            "value",
            "95% interval",
            "model",
            "R²",
            "MAPE",
            "held-out MAPE",
            "points",
            "quality",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}

pub(crate) fn coefficient_quantities(c: &CoefficientsFile) -> Vec<Quantity> {
    let mut q = Vec::new();
    if let Some(s) = &c.single_request {
        q.push(Quantity::new(
            "a: time per output token (single request)",
            s.per_token_s,
            "s/token",
            Method::Fitted,
        ));
        q.push(
            Quantity::new(
                "c: fixed time per request",
                s.intercept_s,
                "s",
                Method::Fitted,
            )
            .note(format!("at {} prompt tokens", s.input_tokens)),
        );
    }
    if let Some(f) = &c.first_token {
        q.push(Quantity::new(
            "k1: first-token time per request in the batch",
            f.slope_s_per_req,
            "s/req",
            Method::Fitted,
        ));
        q.push(
            Quantity::new(
                "k2: first-token time intercept",
                f.intercept_s,
                "s",
                Method::Fitted,
            )
            .note(format!("at {} prompt tokens", f.input_tokens)),
        );
    }
    if let Some(d) = &c.decode_step {
        q.push(Quantity::new(
            "k3: decode-step time per request in the batch",
            d.slope_s_per_req,
            "s/req",
            Method::Fitted,
        ));
        q.push(
            Quantity::new(
                "k4: decode-step time intercept",
                d.intercept_s,
                "s",
                Method::Fitted,
            )
            .note(format!("at {} context tokens", d.context_tokens)),
        );
    }
    q
}

pub(crate) fn check_quantity(c: &Comparison) -> Quantity {
    let unit = if c.unit == "1" {
        String::new()
    } else {
        format!(" {}", c.unit)
    };
    Quantity::new(
        format!("{} (simulation)", c.quantity),
        c.sim,
        c.unit,
        Method::Simulation,
    )
    .with_ci(c.sim_half_width)
    .note(format!(
        "model value {}{}: {} ({:+.2}%)",
        plots::sig(c.analytic),
        unit,
        c.verdict(),
        100.0 * c.rel_diff()
    ))
}

pub(crate) fn recommendations(
    cfg: &PipelineConfig,
    l: Option<&LimitAnalysis>,
    b: Option<&BatchAnalysis>,
) -> Vec<Recommendation> {
    let mut out = Vec::new();
    if let Some(l) = l {
        let a = &l.answer;
        let mut basis = vec![
            Quantity::new("arrival rate λ", a.arrival_rate_rps, "req/s", Method::Exact).note(
                match cfg.rate {
                    Some(_) => "given by --rate".to_string(),
                    None => format!(
                        "{} × the capacity 1/E[S] without a limit",
                        plots::sig(cfg.load)
                    ),
                },
            ),
            with_pct(
                Quantity::new(
                    "mean wait E[W_q] at L*",
                    a.wait_at_best_s,
                    "s",
                    Method::Exact,
                )
                .note("Pollaczek–Khinchine; percentiles from the exact law of the wait, docs/models.md §1"),
                a.wait_percentiles_at_best_s,
            ),
            with_pct(
                Quantity::new(
                    "mean latency (wait + service) at L*",
                    a.sojourn_at_best_s,
                    "s",
                    Method::Exact,
                ),
                a.sojourn_percentiles_at_best_s,
            ),
            Quantity::new(
                "utilisation ρ = λ·E[S] at L*",
                a.utilisation_at_best,
                "1",
                Method::Exact,
            ),
            Quantity::new(
                "requests served in full, P(N ≤ L*)",
                a.served_whole_at_best,
                "1",
                Method::Exact,
            ),
            without_limit(a),
            Quantity::new(
                "objective F(L*)",
                a.objective_at_best,
                "utility",
                Method::Exact,
            ),
        ];
        basis.extend(
            a.checks
                .iter()
                .filter(|c| !c.quantity.starts_with("M/G/1+D"))
                .map(check_quantity),
        );
        out.push(Recommendation {
            question: "Which max-token limit?".into(),
            answer: Quantity::new("max-token limit L*", a.best_limit_tokens, "tokens", Method::Exact),
            basis,
            note: format!(
                "Maximises F(L) = β·P(N ≤ L) − (1 − β)·E[W_q](L) with β = {} over {} limits (docs/models.md §3, paper eq 10): \
                 a single server, FCFS, service S = a·min(N, L) + c, Poisson arrivals, patient users. {}",
                plots::sig(cfg.beta),
                l.grid.len(),
                tie_note("limit", "objective", a.best_limit_tokens, a.argmax_limit_tokens)
            ),
        });
    }
    if let Some(i) = l.and_then(|l| l.answer.impatient.as_ref()) {
        let mut basis = vec![
            Quantity::new("patience τ", i.patience_s, "s", Method::Exact).note(
                match cfg.patience {
                    Some(_) => "given by --patience".to_string(),
                    None => {
                        format!("{DEFAULT_PATIENCE_FACTOR} × the mean service time without a limit")
                    }
                },
            ),
            Quantity::new(
                "users lost π(τ) at L*",
                i.loss_fraction_at_best,
                "1",
                Method::Exact,
            )
            .note("level crossing, docs/models.md §2.2"),
            Quantity::new(
                "users lost at the largest limit of the sweep",
                i.loss_fraction_at_top_limit,
                "1",
                Method::Exact,
            ),
            Quantity::new(
                "mean wait of all users at L* (eq 9)",
                i.wait_all_at_best_s,
                "s",
                Method::Exact,
            ),
            Quantity::new(
                "objective at L*",
                i.objective_at_best,
                "utility",
                Method::Exact,
            ),
        ];
        basis.extend(
            l.iter()
                .flat_map(|l| &l.answer.checks)
                .filter(|c| c.quantity.starts_with("M/G/1+D"))
                .map(check_quantity),
        );
        out.push(Recommendation {
            question: "Which max-token limit if users give up after τ?".into(),
            answer: Quantity::new("max-token limit L* (impatient)", i.best_limit_tokens, "tokens", Method::Exact),
            basis,
            note: format!(
                "Maximises β·P(N ≤ L) − (1 − β)·E[W_q](L) − c·π(τ; L) with β = {}, c = {} per lost user \
                 (docs/models.md §3, paper eq 11); a user whose wait would exceed τ leaves (reneging, paper eq 9). {}",
                plots::sig(cfg.beta),
                plots::sig(i.loss_cost),
                tie_note("limit", "objective", i.best_limit_tokens, i.argmax_limit_tokens)
            ),
        });
    }
    if let Some(b) = b {
        let a = &b.answer;
        let mut basis = vec![
            Quantity::new("arrival rate λ", a.arrival_rate_rps, "req/s", Method::Exact).note(
                match cfg.rate {
                    Some(_) => "given by --rate".to_string(),
                    None => format!(
                        "{} × the best fixed-batching throughput",
                        plots::sig(cfg.load)
                    ),
                },
            ),
            Quantity::new(
                "speed-optimal batch size K_v = argmax K/E[T_K]",
                a.speed_optimal_k as f64,
                "requests",
                Method::Exact,
            ),
            Quantity::new(
                "throughput at K_v",
                a.speed_optimal_rps,
                "req/s",
                Method::Exact,
            ),
            with_pct(
                Quantity::new(
                    "fixed batching: mean latency at K*",
                    a.fixed_latency_s,
                    "s",
                    Method::Exact,
                ),
                a.fixed_latency_percentiles_s,
            )
            .note(with_unsolved(
                "embedded chain, random T_K (docs/models.md §6); percentiles simulated".into(),
                "sizes",
                &a.fixed_not_converged,
            )),
            Quantity::new(
                "fixed batching: mean wait at K*",
                a.fixed_wait_s,
                "s",
                Method::Exact,
            ),
            Quantity::new(
                "dynamic batching: best cap K*",
                a.cap_k as f64,
                "requests",
                Method::Exact,
            )
            .note(cap_note(a)),
            with_pct(
                Quantity::new(
                    "dynamic batching: mean latency with cap K*",
                    a.cap_latency_s,
                    "s",
                    Method::Exact,
                ),
                a.cap_latency_percentiles_s,
            )
            .note("embedded chain (docs/models.md §7); percentiles simulated"),
            Quantity::new(
                "dynamic batching: mean wait with cap K*",
                a.cap_wait_s,
                "s",
                Method::Exact,
            ),
        ];
        basis.extend(a.checks.iter().map(check_quantity));
        out.push(Recommendation {
            question: "Which batch size?".into(),
            answer: Quantity::new("fixed batch size K*", a.fixed_k as f64, "requests", Method::Exact),
            basis,
            note: format!(
                "Minimises the mean latency (arrival to the end of the request's batch) over K ≤ {}; batch time \
                 T_b = t1(b) + t2(b)·M_b with M_b the longest of b replies (docs/models.md §5, paper eq 18). {} {}",
                cfg.max_batch,
                tie_note("batch size", "mean latency", a.fixed_k as f64, a.fixed_argmin_k as f64),
                if a.cap_k == a.cap_argmin_k {
                    String::new()
                } else {
                    format!(
                        "Dynamic cap: {}",
                        tie_note("cap", "mean latency", a.cap_k as f64, a.cap_argmin_k as f64)
                    )
                }
            ),
        });
    }
    out
}

/// Attach the percentiles an answer carries, if any.
fn with_pct(q: Quantity, p: Option<Percentiles>) -> Quantity {
    match p {
        Some(p) => q.with_percentiles(p.for_report()),
        None => q,
    }
}

/// The reference without a limit: its mean wait when stable; its offered load, named as such,
/// when λ·E[S] ≥ 1 (a utilisation cannot exceed 1; an offered load can, and then the queue
/// without a limit grows without bound).
fn without_limit(a: &LimitAnswer) -> Quantity {
    let rho = a.offered_load_without_limit;
    if rho < 1.0 && a.wait_without_limit_s.is_finite() {
        Quantity::new(
            "mean wait without a limit",
            a.wait_without_limit_s,
            "s",
            Method::Exact,
        )
        .note(format!("utilisation ρ = λ·E[S] = {}", plots::sig(rho)))
    } else {
        Quantity::new(
            "offered load without a limit, ρ = λ·E[S]",
            rho,
            "1",
            Method::Exact,
        )
        .note(format!(
            "offered load ρ = {} (unstable): without a limit the queue grows without bound, so its mean wait is infinite",
            plots::sig(rho)
        ))
    }
}

/// The tie rule, and the strict optimum when it differs from the reported one.
fn tie_note(what: &str, objective: &str, chosen: f64, strict: f64) -> String {
    let rule = format!(
        "Ties: the smallest {what} whose {objective} is within {}% of the best is reported (closer values are rounding noise).",
        plots::sig(100.0 * TIE_REL)
    );
    if chosen == strict {
        rule
    } else {
        format!(
            "{rule} The strict optimum, {}, is within that margin.",
            plots::sig(strict)
        )
    }
}

/// " (p50 …, p90 …, p99 … s)" after a mean, `how` naming where percentiles come from when
/// given ("simulated: p50 …"), or nothing.
fn pct_text(p: Option<Percentiles>, how: &str) -> String {
    match p {
        Some(p) => format!(" ({how}{})", p.for_report().text("s")),
        None => String::new(),
    }
}

/// The report's opening summary: what the run found, in a few sentences.
pub(crate) fn summary_sentences(
    cfg: &PipelineConfig,
    l: Option<&LimitAnalysis>,
    b: Option<&BatchAnalysis>,
) -> Vec<String> {
    let sig = plots::sig;
    let rate_how = |what: &str| match cfg.rate {
        Some(_) => "given by --rate".to_string(),
        None => format!("{} × {what}", sig(cfg.load)),
    };
    let mut out = Vec::new();
    if let Some(l) = l {
        let a = &l.answer;
        let mut s = format!(
            "Max-token limit: set max_tokens = {} tokens. At λ = {} req/s ({}), a single server \
             then serves {}% of requests in full. Exact M/G/1: mean wait {} s{}, mean latency {} s{}.",
            sig(a.best_limit_tokens),
            sig(a.arrival_rate_rps),
            rate_how("the capacity without a limit"),
            sig(100.0 * a.served_whole_at_best),
            sig(a.wait_at_best_s),
            pct_text(a.wait_percentiles_at_best_s, ""),
            sig(a.sojourn_at_best_s),
            pct_text(a.sojourn_percentiles_at_best_s, ""),
        );
        if a.offered_load_without_limit >= 1.0 {
            s.push_str(&format!(
                " Without a limit the offered load would be ρ = {} (unstable).",
                sig(a.offered_load_without_limit)
            ));
        }
        out.push(s);
        if let Some(i) = &a.impatient {
            out.push(format!(
                "If users give up after τ = {} s, set max_tokens = {} tokens: {}% of users are lost, \
                 mean wait of all users {} s (exact M/G/1+D).",
                sig(i.patience_s),
                sig(i.best_limit_tokens),
                sig(100.0 * i.loss_fraction_at_best),
                sig(i.wait_all_at_best_s),
            ));
        }
    }
    if let Some(b) = b {
        let a = &b.answer;
        out.push(format!(
            "Batch size: at λ = {} req/s ({}), fixed batching is best with K* = {}: mean latency \
             {} s{}; dynamic batching with a cap of K* = {} gives mean latency {} s{}. Means from \
             the exact embedded chains; percentiles simulated, with 95% intervals.",
            sig(a.arrival_rate_rps),
            rate_how("the best fixed-batching throughput"),
            a.fixed_k,
            sig(a.fixed_latency_s),
            pct_text(a.fixed_latency_percentiles_s, "simulated "),
            a.cap_k,
            sig(a.cap_latency_s),
            pct_text(a.cap_latency_percentiles_s, "simulated "),
        ));
    }
    let checks: Vec<&Comparison> = l
        .iter()
        .flat_map(|l| &l.answer.checks)
        .chain(b.iter().flat_map(|b| &b.answer.checks))
        .collect();
    if !checks.is_empty() {
        let inside = checks.iter().filter(|c| c.agrees()).count();
        out.push(format!(
            "Simulation checks: {inside} of {} model values lie inside the simulation's 95% interval \
             (see Recommendations).",
            checks.len()
        ));
    }
    out
}

/// One row per grid point: the median prefill and decode step against the device's roofline.
pub(crate) fn roofline_table(rows: &[StepRow], r: &Roofline) -> Table {
    use std::collections::BTreeMap;
    // (batch, input) → (prefill times, (decode step time, context) pairs)
    type Steps = (Vec<f64>, Vec<(f64, u64)>);
    let mut by_point: BTreeMap<(u32, u32), Steps> = BTreeMap::new();
    for row in rows {
        let e = by_point
            .entry((row.batch_size, row.input_tokens))
            .or_default();
        if row.step == 0 {
            e.0.push(row.time_s);
        } else {
            e.1.push((row.time_s, row.context_tokens));
        }
    }
    use profiler::runner::median;
    let ms = |s: f64| format!("{:.3}", s * 1e3);
    let pct = |roof: f64, t: f64| format!("{:.0}%", 100.0 * roof / t);
    let table_rows = by_point
        .into_iter()
        .map(|((b, p), (prefill, decode))| {
            let (b64, p64) = (u64::from(b), u64::from(p));
            let pre = median(prefill);
            let roof_pre = r.prefill_s(b64, p64);
            let dec = median(decode.iter().map(|d| d.0).collect());
            let mean_ctx = if decode.is_empty() {
                p64
            } else {
                decode.iter().map(|d| d.1).sum::<u64>() / decode.len() as u64
            };
            let roof_dec = r.decode_s(b64, mean_ctx);
            vec![
                b.to_string(),
                p.to_string(),
                ms(pre),
                ms(roof_pre),
                pct(roof_pre, pre),
                ms(dec),
                ms(roof_dec),
                pct(roof_dec, dec),
            ]
        })
        .collect();
    Table {
        caption: format!(
            "Roofline = max(FLOPs / peak, bytes / bandwidth) of the step from the model's shape and \
             dtype on {} ({} TFLOP/s dense 16-bit, {} GB/s); achieved = roofline / measured \
             (100% is the device's limit). Decode steps at the point's mean context.",
            r.peaks.device, r.peaks.tflops, r.peaks.bandwidth_gbs
        ),
        columns: [
            "batch (req)",
            "input (tokens)",
            "prefill (ms)",
            "prefill roofline (ms)",
            "prefill achieved",
            "decode step (ms)",
            "decode roofline (ms)",
            "decode achieved",
        ]
        .map(String::from)
        .to_vec(),
        rows: table_rows,
    }
}

/// The note on the best cap: whether the cap still binds, and which caps could not be solved.
fn cap_note(a: &BatchAnswer) -> String {
    let binds = if a.cap_stops_binding {
        "larger caps give the same latency: the cap no longer binds"
    } else {
        ""
    };
    with_unsolved(binds.to_string(), "caps", &a.cap_not_converged)
}

/// Appends "caps 1–3 left out: too close to instability to solve" when any were.
fn with_unsolved(note: String, what: &str, ks: &[usize]) -> String {
    if ks.is_empty() {
        return note;
    }
    let left = format!(
        "{what} {} left out: too close to instability to solve at this rate",
        queueing::batch::optimize::ranges(ks)
    );
    if note.is_empty() {
        left
    } else {
        format!("{note}; {left}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quality(r2: f64, holdout: Option<f64>) -> FitQuality {
        FitQuality {
            model: "t = k·b + c".into(),
            weighting: "none".into(),
            interval_method: "t".into(),
            points_fitted: 10,
            r2,
            mape_pct: 1.0,
            worst_error_pct: 2.0,
            holdout_points: holdout.map_or(0, |_| 3),
            holdout_mape_pct: holdout,
            holdout_worst_error_pct: holdout,
            model_selection: Vec::new(),
        }
    }

    #[test]
    fn poor_fits_are_flagged_with_their_numbers() {
        assert_eq!(fit_flag(&quality(0.99, Some(2.0))), None);
        assert_eq!(fit_flag(&quality(0.99, None)), None);
        let low = fit_flag(&quality(0.5, Some(2.0))).expect("R² 0.5 is flagged");
        assert!(
            low.contains("R² 0.500 < 0.9") && !low.contains("held-out"),
            "{low}"
        );
        let noisy = fit_flag(&quality(0.99, Some(12.0))).expect("12% held-out is flagged");
        assert!(noisy.contains("held-out MAPE 12.0% > 10%") && !noisy.contains("R²"));
        let both = fit_flag(&quality(-1.4, Some(98.4))).unwrap();
        assert!(
            both.contains("R² -1.400") && both.contains("98.4%"),
            "{both}"
        );
        // A NaN R² is no evidence of a good fit.
        assert!(fit_flag(&quality(f64::NAN, None)).is_some());
    }

    #[test]
    fn offered_load_above_one_is_not_called_utilisation() {
        let mut a = LimitAnswer {
            arrival_rate_rps: 0.3,
            best_limit_tokens: 393.0,
            argmax_limit_tokens: 393.0,
            wait_percentiles_at_best_s: None,
            sojourn_percentiles_at_best_s: None,
            offered_load_without_limit: 1.3,
            wait_at_best_s: 10.0,
            sojourn_at_best_s: 13.0,
            utilisation_at_best: 0.86,
            served_whole_at_best: 0.5,
            wait_without_limit_s: f64::INFINITY,
            objective_at_best: 0.4,
            impatient: None,
            checks: Vec::new(),
        };
        let q = without_limit(&a);
        assert!(q.name.starts_with("offered load"), "{}", q.name);
        assert!(!q.name.contains("utilisation"));
        assert!(
            q.note.contains("offered load ρ = 1.3 (unstable)"),
            "{}",
            q.note
        );
        a.offered_load_without_limit = 0.7;
        a.wait_without_limit_s = 2.0;
        let q = without_limit(&a);
        assert_eq!(q.name, "mean wait without a limit");
        assert_eq!(q.unit, "s");
    }

    #[test]
    fn tie_note_names_the_strict_optimum_only_when_it_differs() {
        let same = tie_note("cap", "mean latency", 7.0, 7.0);
        assert!(same.contains("within 0.1% of the best") && !same.contains("strict"));
        let differs = tie_note("cap", "mean latency", 7.0, 19.0);
        assert!(differs.contains("The strict optimum, 19,"), "{differs}");
    }
}
