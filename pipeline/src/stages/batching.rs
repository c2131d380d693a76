//! The batch-size question: fixed batching K*, the dynamic cap K*, latency against arrival rate
//! per policy, and their simulation checks (docs/models.md §4–§8).

use super::*;
use queueing::batch::optimize::Candidate;
use queueing::batch::{Padded, fixed_roots, solve_fixed};

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
    // Ties: the smallest K whose latency is within 0.1 % of the least (candidates ascend in K).
    let fixed_best = smallest_within(&fixed.candidates).unwrap_or_else(|| fixed.best.clone());
    let cap_best = smallest_within(&cap.candidates).unwrap_or_else(|| cap.best.clone());

    // Fig. 6 draws every stable fixed K up to --max-batch: the search stops where its lower
    // bound (K − 1)/(2λ) + E[T_K] exceeds the best latency, so the sizes past it are solved
    // here for the figure only.
    let padded = Padded {
        llm: &model,
        treatment: PaddedTreatment::Random,
    };
    let mut fixed_curve: Vec<(usize, f64)> = fixed
        .candidates
        .iter()
        .map(|c| (c.k, c.latency_s))
        .collect();
    let mut fixed_det_curve: Vec<(usize, f64)> = fixed_det
        .as_ref()
        .map(|fd| fd.candidates.iter().map(|c| (c.k, c.latency_s)).collect())
        .unwrap_or_default();
    let mut fixed_unsolved = fixed.not_converged.clone();
    let fixed_unstable: Vec<usize> = (1..=cfg.max_batch)
        .filter(|&k| lambda * model.padded_moments(k).0 >= k as f64)
        .collect();
    for k in fixed.searched_up_to + 1..=cfg.max_batch {
        let t = model.padded_moments(k).0;
        if lambda * t >= k as f64 {
            continue;
        }
        match solve_fixed(&padded, lambda, k, &opts) {
            Ok(sol) => fixed_curve.push((k, sol.latency_s)),
            Err(_) => fixed_unsolved.push(k),
        }
        if fixed_det.is_some()
            && let Ok(r) = fixed_roots(lambda, k, t)
        {
            fixed_det_curve.push((k, r.latency_s));
        }
    }
    let cap_unstable: Vec<usize> = (1..=cfg.max_batch)
        .filter(|&k| lambda * model.padded_moments(k).0 >= k as f64)
        .filter(|&k| cap.candidates.last().is_none_or(|c| k < c.k))
        .collect();

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
    let mut fixed_series = vec![
        Series::from_xy(
            "fixed K",
            Method::Exact,
            fixed_curve.iter().map(|&(k, l)| (k as f64, l)),
        )
        .in_group("fixed"),
    ];
    if fixed_det.is_some() {
        fixed_series.push(
            Series::from_xy(
                "fixed K, T_K := E[T_K] (paper eq 25)",
                Method::Approximation,
                fixed_det_curve.iter().map(|&(k, l)| (k as f64, l)),
            )
            .in_group("fixed"),
        );
    }
    fixed_unsolved.sort_unstable();
    let range_note = fig6_range_note(
        cfg.max_batch,
        &fixed_unstable,
        &fixed_unsolved,
        &cap,
        &cap_unstable,
    );
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
        best_fixed: Some(fixed_best.k as f64),
        best_cap: Some(cap_best.k as f64),
        range_note,
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
    let rate_grid: Vec<f64> = rate_fractions().iter().map(|f| f * max_rate).collect();
    // One point per rate, in parallel (the chains near saturation take the longest).
    use rayon::prelude::*;
    let sweep: Vec<_> = rate_grid
        .par_iter()
        .map(|&r| {
            let d = analyze(&BatchConfig {
                policy: Policy::Dynamic,
                max_batch: dynamic_cap,
                arrival_rate: r,
                model: model.clone(),
                chain: opts.clone(),
            })
            .ok()
            .map(|rep| (r, rep.estimates[0].latency_s));
            let b = if dynamic_cap.is_none()
                && let Some((alpha, tau0)) = model.linearisation()
                && let Ok(b) = inoue_bound(r, alpha, tau0)
            {
                Some((r, b.bound))
            } else {
                None
            };
            let e = analyze(&BatchConfig {
                policy: Policy::Elastic,
                max_batch: dynamic_cap,
                arrival_rate: r,
                model: model.clone(),
                chain: opts.clone(),
            })
            .ok()
            .map(|rep| (r, rep.estimates[0].latency_s, rep.estimates[0].method));
            (d, b, e)
        })
        .collect();
    let dyn_pts: Vec<(f64, f64)> = sweep.iter().filter_map(|p| p.0).collect();
    let bound_pts: Vec<(f64, f64)> = sweep.iter().filter_map(|p| p.1).collect();
    let el_pts: Vec<(f64, f64, Method)> = sweep.iter().filter_map(|p| p.2).collect();
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
        fixed_k: fixed_best.k,
        fixed_argmin_k: fixed.best.k,
        fixed_latency_s: fixed_best.latency_s,
        fixed_wait_s: fixed_best.wait_s,
        fixed_latency_percentiles_s: None,
        cap_k: cap_best.k,
        cap_argmin_k: cap.best.k,
        cap_latency_s: cap_best.latency_s,
        cap_wait_s: cap_best.wait_s,
        cap_latency_percentiles_s: None,
        fixed_unstable,
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

/// The smallest-K candidate whose mean latency is within [`TIE_REL`] of the least.
fn smallest_within(c: &[Candidate]) -> Option<Candidate> {
    let least = c.iter().map(|x| x.latency_s).min_by(f64::total_cmp)?;
    c.iter()
        .filter(|x| x.latency_s <= least + TIE_REL * least.abs())
        .min_by_key(|x| x.k)
        .cloned()
}

/// Which batch sizes Fig. 6 searched and why some are not drawn.
fn fig6_range_note(
    max_batch: usize,
    fixed_unstable: &[usize],
    fixed_unsolved: &[usize],
    cap: &queueing::batch::CapChoice,
    cap_unstable: &[usize],
) -> String {
    use queueing::batch::optimize::ranges;
    let mut s = format!("K from 1 to {max_batch} (--max-batch) searched.");
    if !fixed_unstable.is_empty() {
        s.push_str(&format!(
            " Fixed K = {} not drawn: unstable at this rate (λ·E[T_K] ≥ K).",
            ranges(fixed_unstable)
        ));
    }
    if !fixed_unsolved.is_empty() {
        s.push_str(&format!(
            " Fixed K = {} not drawn: too close to instability to solve.",
            ranges(fixed_unsolved)
        ));
    }
    if !cap_unstable.is_empty() {
        s.push_str(&format!(
            " Caps K = {} not drawn: unstable at this rate.",
            ranges(cap_unstable)
        ));
    }
    if !cap.not_converged.is_empty() {
        s.push_str(&format!(
            " Caps K = {} not drawn: too close to instability to solve.",
            ranges(&cap.not_converged)
        ));
    }
    if let Some(last) = cap.candidates.last()
        && last.k < max_batch
    {
        if cap.cap_stops_binding {
            s.push_str(&format!(
                " Caps above {} give the same latency as {} (the cap no longer binds), so the curve stops there.",
                last.k, last.k
            ));
        } else {
            s.push_str(&format!(
                " Caps above {} are unstable or unsolved at this rate.",
                last.k
            ));
        }
    }
    s
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
            b.answer.fixed_latency_percentiles_s = Some(Percentiles::simulated(&r.latency_s));
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
    if r.is_stable() {
        b.answer.cap_latency_percentiles_s = Some(Percentiles::simulated(&r.latency_s));
    }
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
    let fractions = rate_fractions();
    for (j, &target) in SIM_RATE_FRACTIONS.iter().enumerate() {
        let Some(i) = (0..fractions.len()).min_by(|&a, &b| {
            (fractions[a] - target)
                .abs()
                .total_cmp(&(fractions[b] - target).abs())
        }) else {
            continue;
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(k: usize, latency_s: f64) -> Candidate {
        Candidate {
            k,
            wait_s: latency_s / 2.0,
            latency_s,
        }
    }

    #[test]
    fn ties_go_to_the_smallest_k_within_a_tenth_of_a_percent() {
        // A flat tail: K = 19 is lowest by rounding noise, K = 7 is within 0.1 %.
        let c = [
            cand(5, 7.80),
            cand(6, 7.74),
            cand(7, 7.7240),
            cand(8, 7.7200),
            cand(19, 7.7190),
        ];
        assert_eq!(smallest_within(&c).unwrap().k, 7);
        // A clear minimum stays where it is.
        let c = [cand(1, 10.0), cand(2, 8.0), cand(3, 9.0)];
        assert_eq!(smallest_within(&c).unwrap().k, 2);
        assert!(smallest_within(&[]).is_none());
    }

    #[test]
    fn the_rate_sweep_is_denser_towards_saturation() {
        let f = rate_fractions();
        assert!(f.windows(2).all(|w| w[0] < w[1]), "{f:?}");
        assert!((f.last().unwrap() - (1.0 - CLOSEST_TO_SATURATION)).abs() < 1e-12);
        assert!(*f.last().unwrap() < 1.0);
        // Above ρ = 0.5 the gaps shrink towards 1.
        let high: Vec<f64> = f.iter().copied().filter(|&x| x >= 0.5).collect();
        let gaps: Vec<f64> = high.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.windows(2).all(|g| g[1] < g[0]), "{gaps:?}");
        assert!(f.iter().filter(|&&x| x > 0.9).count() >= 3, "{f:?}");
    }
}
