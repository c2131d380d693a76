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
            "Least-squares fits ({}; time column {}). R² and MAPE on the fitted points; held-out MAPE on points left out of the fit.",
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
            Quantity::new(
                "mean wait E[W_q] at L*",
                a.wait_at_best_s,
                "s",
                Method::Exact,
            )
            .note("Pollaczek–Khinchine, docs/models.md §1"),
            Quantity::new(
                "mean latency (wait + service) at L*",
                a.sojourn_at_best_s,
                "s",
                Method::Exact,
            ),
            Quantity::new(
                "utilisation ρ at L*",
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
            Quantity::new(
                "mean wait without a limit",
                a.wait_without_limit_s,
                "s",
                Method::Exact,
            ),
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
                 a single server, FCFS, service S = a·min(N, L) + c, Poisson arrivals, patient users.",
                plots::sig(cfg.beta),
                l.grid.len()
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
                 (docs/models.md §3, paper eq 11); a user whose wait would exceed τ leaves (reneging, paper eq 9).",
                plots::sig(cfg.beta),
                plots::sig(i.loss_cost)
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
            Quantity::new(
                "fixed batching: mean latency at K*",
                a.fixed_latency_s,
                "s",
                Method::Exact,
            )
            .note(with_unsolved(
                "embedded chain, random T_K (docs/models.md §6)".into(),
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
            Quantity::new(
                "dynamic batching: mean latency with cap K*",
                a.cap_latency_s,
                "s",
                Method::Exact,
            )
            .note("embedded chain (docs/models.md §7)"),
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
                 T_b = t1(b) + t2(b)·M_b with M_b the longest of b replies (docs/models.md §5, paper eq 18).",
                cfg.max_batch
            ),
        });
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
