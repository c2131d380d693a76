//! The batch-size question: fixed batching K*, the dynamic cap K*, latency against arrival rate
//! per policy, and their simulation checks (docs/models.md §4–§8).

use super::*;

/// The analytic models read the workload law as it is (a built-in histogram's atoms are bin means,
/// not integers), so the simulation must too: rounding them to integers (docs/models.md §11's semantics)
/// shifts the loss fraction by several confidence half-widths at 2e6 requests.
pub(crate) const TOKEN_MODE: sim::TokenMode = sim::TokenMode::Continuous;

pub(crate) struct BatchAnalysis {
    pub(crate) answer: BatchAnswer,
    pub(crate) figures: Vec<Figure>,
    pub(crate) sizes: BatchSizeInput,
    pub(crate) rates: RateSweepInput,
    pub(crate) rate_grid: Vec<f64>,
    pub(crate) dynamic_cap: Option<usize>,
}

pub(crate) fn batch_analysis(cfg: &PipelineConfig, k: BatchTime) -> Result<BatchAnalysis> {
    let model =
        LlmBatch::new(k, cfg.workload.clone()).map_err(|e| anyhow::anyhow!("batch model: {e}"))?;
    let opts = ChainOptions::default();
    let (kv, v) = model.speed_optimum(cfg.max_batch);
    let lambda = cfg.rate.unwrap_or(cfg.load * v);
    let fixed = optimize_fixed(
        &model,
        lambda,
        cfg.max_batch,
        Objective::Latency,
        PaddedTreatment::Random,
        &opts,
    )
    .map_err(|e| anyhow::anyhow!("fixed batching at λ = {lambda:.6} req/s: {e}"))?;
    let fixed_det = optimize_fixed(
        &model,
        lambda,
        cfg.max_batch,
        Objective::Latency,
        PaddedTreatment::MeanOnly,
        &opts,
    )
    .ok();
    let cap = optimize_cap(
        &model,
        lambda,
        cfg.max_batch,
        Objective::Latency,
        false,
        &opts,
    )
    .map_err(|e| anyhow::anyhow!("dynamic batching at λ = {lambda:.6} req/s: {e}"))?;

    // Fig. 3: E[M_b], E[T_b], speed for the workload and two laws with the same mean.
    let mean = cfg.workload.mean();
    let sd = cfg.workload.variance().sqrt();
    let sigma2 = (1.0 + (sd / mean).powi(2)).ln();
    let comparators = [
        (cfg.workload_spec.clone(), cfg.workload.clone()),
        (
            format!("uniform(0, {})", plots::sig(2.0 * mean)),
            TokenDist::Uniform {
                lo: 0.0,
                hi: 2.0 * mean,
            },
        ),
        (
            "lognormal, same mean and sd".to_string(),
            TokenDist::Lognormal {
                mu: mean.ln() - sigma2 / 2.0,
                sigma: sigma2.sqrt(),
            },
        ),
    ];
    let mut curves = Vec::new();
    for (name, d) in comparators {
        let m = LlmBatch::new(k, d).map_err(|e| anyhow::anyhow!("batch model for {name}: {e}"))?;
        let bs: Vec<usize> = MOMENT_BATCHES
            .iter()
            .copied()
            .filter(|&b| b <= cfg.max_batch.max(2))
            .collect();
        curves.push(DistributionMoments {
            distribution: name,
            e_max_tokens: bs
                .iter()
                .map(|&b| (b as f64, m.tokens.max_moments(b).0))
                .collect(),
            e_batch_time_s: bs
                .iter()
                .map(|&b| (b as f64, m.padded_moments(b).0))
                .collect(),
            sim_e_max_tokens: Vec::new(),
            sim_e_batch_time_s: Vec::new(),
        });
    }
    let fig3 = plots::batch_moments(
        &curves,
        &format!(
            "k1..k4 = {}, {}, {}, {} s",
            plots::sig(k.k1),
            plots::sig(k.k2),
            plots::sig(k.k3),
            plots::sig(k.k4)
        ),
    )?;

    // Fig. 6 inputs (simulation points added later).
    let fixed_pts: Vec<(f64, f64)> = fixed
        .candidates
        .iter()
        .map(|c| (c.k as f64, c.latency_s))
        .collect();
    let mut fixed_series =
        vec![Series::from_xy("fixed K", Method::Exact, fixed_pts).in_group("fixed")];
    if let Some(fd) = &fixed_det {
        fixed_series.push(
            Series::from_xy(
                "fixed K, T_K := E[T_K] (paper eq 25)",
                Method::Approximation,
                fd.candidates.iter().map(|c| (c.k as f64, c.latency_s)),
            )
            .in_group("fixed"),
        );
    }
    let sizes = BatchSizeInput {
        setting: format!("{}, λ = {} req/s", cfg.workload_spec, plots::sig(lambda)),
        fixed: fixed_series,
        capped: vec![
            Series::from_xy(
                "dynamic, cap K",
                Method::Exact,
                cap.candidates.iter().map(|c| (c.k as f64, c.latency_s)),
            )
            .in_group("cap"),
        ],
        best_fixed: Some(fixed.best.k as f64),
        best_cap: Some(cap.best.k as f64),
        range_note: String::new(),
    };

    // Fig. 5: latency against λ, dynamic (unbounded when stable, else capped) and elastic.
    let dynamic_cap = if model.padded_slope().is_some() {
        None
    } else {
        Some(cfg.max_batch)
    };
    let max_rate = match dynamic_cap {
        None => 1.0 / model.padded_slope().unwrap_or(f64::INFINITY),
        Some(kc) => kc as f64 / model.padded_moments(kc).0,
    };
    let rate_grid: Vec<f64> = RATE_FRACTIONS.iter().map(|f| f * max_rate).collect();
    let mut dyn_pts = Vec::new();
    let mut el_pts = Vec::new();
    let mut bound_pts = Vec::new();
    for &r in &rate_grid {
        let d = analyze(&BatchConfig {
            policy: Policy::Dynamic,
            max_batch: dynamic_cap,
            arrival_rate: r,
            model: model.clone(),
            chain: opts.clone(),
        });
        if let Ok(rep) = d {
            dyn_pts.push((r, rep.estimates[0].latency_s));
        }
        if dynamic_cap.is_none()
            && let Some((alpha, tau0)) = model.linearisation()
            && let Ok(b) = inoue_bound(r, alpha, tau0)
        {
            bound_pts.push((r, b.bound));
        }
        let e = analyze(&BatchConfig {
            policy: Policy::Elastic,
            max_batch: dynamic_cap,
            arrival_rate: r,
            model: model.clone(),
            chain: opts.clone(),
        });
        if let Ok(rep) = e {
            el_pts.push((r, rep.estimates[0].latency_s, rep.estimates[0].method));
        }
    }
    let el_method = el_pts.first().map_or(Method::Approximation, |p| p.2);
    let dyn_label = match dynamic_cap {
        None => "dynamic".to_string(),
        Some(kc) => format!("dynamic, cap {kc}"),
    };
    let el_label = match dynamic_cap {
        None => "elastic".to_string(),
        Some(kc) => format!("elastic, cap {kc}"),
    };
    let mut latency = vec![
        Series::from_xy(dyn_label.clone(), Method::Exact, dyn_pts).in_group("dynamic"),
        Series::from_xy(
            el_label.clone(),
            el_method,
            el_pts.iter().map(|p| (p.0, p.1)),
        )
        .in_group("elastic"),
    ];
    if !bound_pts.is_empty() {
        latency.push(
            Series::from_xy("Inoue eq 16 (linearised E[T_b])", Method::Bound, bound_pts)
                .in_group("dynamic"),
        );
    }
    let rates = RateSweepInput {
        setting: cfg.workload_spec.clone(),
        latency,
        stability_limits: vec![(dyn_label, max_rate)],
        batch_cap: dynamic_cap,
    };
    let answer = BatchAnswer {
        arrival_rate_rps: lambda,
        speed_optimal_k: kv,
        speed_optimal_rps: v,
        fixed_k: fixed.best.k,
        fixed_latency_s: fixed.best.latency_s,
        fixed_wait_s: fixed.best.wait_s,
        cap_k: cap.best.k,
        cap_latency_s: cap.best.latency_s,
        cap_wait_s: cap.best.wait_s,
        cap_stops_binding: cap.cap_stops_binding,
        fixed_not_converged: fixed.not_converged.clone(),
        cap_not_converged: cap.not_converged.clone(),
        checks: Vec::new(),
    };
    let figures = vec![
        fig3,
        plots::delay_vs_rate(&rates)?,
        plots::batch_size(&sizes)?,
    ];
    Ok(BatchAnalysis {
        answer,
        figures,
        sizes,
        rates,
        rate_grid,
        dynamic_cap,
    })
}

pub(crate) fn batch_scenario(
    cfg: &PipelineConfig,
    policy: sim::Policy,
    lambda: f64,
) -> sim::Scenario {
    sim::Scenario {
        policy,
        arrivals: sim::Arrivals::Poisson { rate_rps: lambda },
        tokens: sim::Tokens::Law(sim::TokenLaw::Dist(cfg.workload.clone())),
        max_tokens: None,
        token_mode: TOKEN_MODE,
    }
}

pub(crate) fn simulate_batching(
    cfg: &PipelineConfig,
    k: BatchTime,
    b: &mut BatchAnalysis,
) -> Result<()> {
    let lambda = b.answer.arrival_rate_rps;
    let bt = k;
    // Fixed batching at K* and at its neighbours on the grid of candidates.
    let fixed_ks: Vec<usize> = {
        let ks: Vec<usize> = b.sizes.fixed[0]
            .points
            .iter()
            .map(|p| p.x as usize)
            .collect();
        let mut pick = vec![b.answer.fixed_k];
        if let Some(&last) = ks.last() {
            pick.push(last);
        }
        if let Some(&first) = ks.first() {
            pick.push(first);
        }
        pick.sort_unstable();
        pick.dedup();
        pick
    };
    let mut pts = Vec::new();
    for (i, &kk) in fixed_ks.iter().enumerate() {
        let r = run_sim(
            cfg,
            &batch_scenario(
                cfg,
                sim::Policy::Fixed {
                    batch: bt,
                    batch_size: kk as u32,
                },
                lambda,
            ),
            200 + i as u64,
        )?;
        if !r.is_stable() {
            continue;
        }
        let l = r.latency_s.mean;
        pts.push(Point::with_ci(kk as f64, l.value, l.half_width));
        if kk == b.answer.fixed_k {
            b.answer.checks.push(Comparison::new(
                format!("fixed batching mean latency at K* = {kk}"),
                "s",
                b.answer.fixed_latency_s,
                Method::Exact,
                Estimate {
                    value: l.value,
                    half_width: l.half_width,
                },
            ));
        }
    }
    b.sizes
        .fixed
        .push(Series::new("fixed K", Method::Simulation, pts).in_group("fixed"));
    let r = run_sim(
        cfg,
        &batch_scenario(
            cfg,
            sim::Policy::Dynamic {
                batch: bt,
                max_batch: Some(b.answer.cap_k as u32),
            },
            lambda,
        ),
        300,
    )?;
    let l = r.latency_s.mean;
    b.sizes.capped.push(
        Series::new(
            "dynamic, cap K",
            Method::Simulation,
            [Point::with_ci(b.answer.cap_k as f64, l.value, l.half_width)],
        )
        .in_group("cap"),
    );
    b.answer.checks.push(Comparison::new(
        format!(
            "dynamic batching mean latency with cap K* = {}",
            b.answer.cap_k
        ),
        "s",
        b.answer.cap_latency_s,
        Method::Exact,
        Estimate {
            value: l.value,
            half_width: l.half_width,
        },
    ));

    // Rate sweep: dynamic and elastic at three rates.
    let cap = b.dynamic_cap.map(|c| c as u32);
    let mut dyn_pts = Vec::new();
    let mut el_pts = Vec::new();
    for (j, &i) in SIM_RATE_IDX.iter().enumerate() {
        let Some(&r) = b.rate_grid.get(i) else {
            continue;
        };
        let d = run_sim(
            cfg,
            &batch_scenario(
                cfg,
                sim::Policy::Dynamic {
                    batch: bt,
                    max_batch: cap,
                },
                r,
            ),
            400 + j as u64,
        )?;
        if d.is_stable() {
            dyn_pts.push(Point::with_ci(
                r,
                d.latency_s.mean.value,
                d.latency_s.mean.half_width,
            ));
        }
        let e = run_sim(
            cfg,
            &batch_scenario(
                cfg,
                sim::Policy::Elastic {
                    batch: bt,
                    max_batch: cap,
                },
                r,
            ),
            500 + j as u64,
        )?;
        if e.is_stable() {
            el_pts.push(Point::with_ci(
                r,
                e.latency_s.mean.value,
                e.latency_s.mean.half_width,
            ));
        }
    }
    let dyn_label = b.rates.latency[0].label.clone();
    let el_label = b.rates.latency[1].label.clone();
    b.rates
        .latency
        .push(Series::new(dyn_label, Method::Simulation, dyn_pts).in_group("dynamic"));
    b.rates
        .latency
        .push(Series::new(el_label, Method::Simulation, el_pts).in_group("elastic"));
    b.figures[1] = plots::delay_vs_rate(&b.rates)?;
    b.figures[2] = plots::batch_size(&b.sizes)?;
    Ok(())
}
