//! Tests of the token-length laws against docs/models.md §1 / §9.1 closed forms and independent
//! quadrature.

use super::*;
use crate::numeric::gauss_legendre_on;
use approx::assert_relative_eq;
use rand::SeedableRng;

fn ln7() -> TokenDist {
    TokenDist::parse("lognormal:7,0.7").unwrap()
}

/// `∫_0^L P(N > u) du` and `∫_0^L 2u P(N > u) du` by composite Gauss–Legendre on `pieces`
/// panels per smooth stretch (an independent route to the clipped moments). The support's
/// ends are panel boundaries, so the kinks of `sf` there cost no accuracy.
fn clipped_by_quadrature(d: &TokenDist, l: f64, pieces: usize) -> (f64, f64) {
    let (lo, hi) = d.support();
    let mut m1 = 0.0;
    let mut m2 = 0.0;
    let mut cuts = vec![0.0];
    if lo > 0.0 && lo < l {
        cuts.push(lo);
    }
    cuts.push(l.min(hi));
    for w in cuts.windows(2) {
        let h = (w[1] - w[0]) / pieces as f64;
        for k in 0..pieces {
            let (x, wt) = gauss_legendre_on(20, w[0] + k as f64 * h, w[0] + (k + 1) as f64 * h);
            for (u, wi) in x.iter().zip(&wt) {
                let s = d.sf(*u);
                m1 += wi * s;
                m2 += wi * 2.0 * u * s;
            }
        }
    }
    (m1, m2)
}

#[test]
fn lognormal_clipped_moments_match_math_9_1() {
    let d = ln7();
    // (L, E[N_L], E[N_L²]) from docs/models.md §9.1 cases A1, A2, A1b, A0.
    let cases = [
        (1600.0, 1082.846538, 1378670.010),
        (3000.0, 1304.123732, 2327661.066),
        (1300.0, 978.923596, 1078930.302),
        (f64::INFINITY, 1401.081896, 3204286.492),
    ];
    for (l, m1, m2) in cases {
        let (a, b) = d.clipped_moments(l);
        assert!((a - m1).abs() < 5e-7, "L={l}: E[N_L] {a} vs {m1}");
        assert!((b - m2).abs() < 5e-3, "L={l}: E[N_L²] {b} vs {m2}");
    }
    assert!((d.mean() - 1401.081896).abs() < 5e-7);
    assert!((d.second_moment() - 3204286.492).abs() < 5e-3);
}

#[test]
fn lognormal_cdf_matches_paper_probabilities() {
    let d = ln7();
    // docs/models.md §3: P(N < 1600) = 0.705283 (paper 70.53%), P(N < 1300) = 0.596008.
    assert!((d.cdf(1600.0) - 0.705283).abs() < 5e-7);
    assert!((d.cdf(1300.0) - 0.596008).abs() < 5e-7);
    assert_relative_eq!(d.cdf(1600.0) + d.sf(1600.0), 1.0, epsilon = 1e-15);
    // Median e^7.
    assert_relative_eq!(d.quantile(0.5), 7f64.exp(), max_relative = 1e-13);
}

#[test]
fn empirical_a4_matches_math_9_1() {
    let e = Empirical::from_weights(&[100.0, 500.0, 2000.0], &[0.5, 0.3, 0.2], "A4").unwrap();
    let d = TokenDist::Empirical(e);
    let (m1, m2) = d.clipped_moments(1000.0);
    assert_relative_eq!(m1, 400.0, max_relative = 1e-14);
    assert_relative_eq!(m2, 280000.0, max_relative = 1e-14);
    assert_eq!(d.cdf(99.0), 0.0);
    assert_relative_eq!(d.cdf(100.0), 0.5);
    assert_relative_eq!(d.sf(500.0), 0.2, epsilon = 1e-15);
    assert_eq!(d.quantile(0.5), 100.0);
    assert_eq!(d.quantile(0.51), 500.0);
    assert_eq!(d.quantile(1.0), 2000.0);
    assert_eq!(d.isf(0.2), 500.0);
    assert_eq!(d.isf(0.19), 2000.0);
    assert_eq!(d.isf(0.0), 2000.0);
    assert_eq!(d.isf(1.0), 100.0);
    assert_eq!(d.support(), (100.0, 2000.0));
}

#[test]
fn uniform_closed_forms() {
    let d = TokenDist::parse("uniform:0,1000").unwrap();
    // docs/models.md §1: ((L² − lo²)/2 + L(hi − L))/(hi − lo) at L = 600 → 420; second 216000.
    let (m1, m2) = d.clipped_moments(600.0);
    assert_relative_eq!(m1, 420.0, max_relative = 1e-14);
    assert_relative_eq!(m2, 216000.0, max_relative = 1e-14);
    assert_relative_eq!(d.mean(), 500.0);
    assert_relative_eq!(d.second_moment(), 1.0e6 / 3.0, max_relative = 1e-14);
    assert_relative_eq!(d.quantile(0.25), 250.0);
    assert_relative_eq!(d.isf(0.25), 750.0);
}

#[test]
fn discrete_uniform_closed_forms() {
    let d = TokenDist::parse("duniform:0,1000").unwrap();
    assert_relative_eq!(d.mean(), 500.0, max_relative = 1e-14);
    // Σ_{n=0}^{1000} n² / 1001 = 1000·2001/6.
    assert_relative_eq!(
        d.second_moment(),
        1000.0 * 2001.0 / 6.0,
        max_relative = 1e-14
    );
    // Clipping agrees with the atom sum.
    let (v, p) = d.atoms().unwrap();
    for l in [0.5, 10.0, 333.3, 999.0, 1000.0, 5000.0] {
        let direct: f64 = v.iter().zip(&p).map(|(x, q)| x.min(l) * q).sum();
        let direct2: f64 = v.iter().zip(&p).map(|(x, q)| x.min(l).powi(2) * q).sum();
        let (m1, m2) = d.clipped_moments(l);
        assert_relative_eq!(m1, direct, max_relative = 1e-12);
        assert_relative_eq!(m2, direct2, max_relative = 1e-12);
    }
    assert_relative_eq!(d.cdf(10.0), 11.0 / 1001.0, max_relative = 1e-14);
    assert_eq!(d.quantile(11.0 / 1001.0), 10.0);
    assert_eq!(d.quantile(0.0), 0.0);
    assert_eq!(d.quantile(1.0), 1000.0);
}

#[test]
fn half_normal_moments() {
    // "Truncated standard Gaussian" of docs/models.md §10.12: N(0,1) on [0, ∞): mean √(2/π), E[X²] = 1.
    let d = TokenDist::parse("normal:0,1").unwrap();
    assert_relative_eq!(
        d.mean(),
        (2.0 / std::f64::consts::PI).sqrt(),
        max_relative = 1e-14
    );
    assert_relative_eq!(d.second_moment(), 1.0, max_relative = 1e-14);
    assert_relative_eq!(
        d.cdf(1.0),
        2.0 * 0.841_344_746_068_542_9 - 1.0,
        max_relative = 1e-13
    );
    // Far from the bounds, N(800, 20²) on [0, ∞) is the plain normal.
    let n = TokenDist::parse("normal:800,20").unwrap();
    assert_relative_eq!(n.mean(), 800.0, max_relative = 1e-14);
    assert_relative_eq!(
        n.second_moment(),
        800.0 * 800.0 + 400.0,
        max_relative = 1e-14
    );
}

#[test]
fn clipped_moments_equal_quadrature_of_the_survival_function() {
    let laws = [
        "lognormal:7,0.7",
        "lognormal:5,1.5",
        "normal:800,200",
        "normal:300,400,100,900",
        "uniform:100,900",
        "normal:0,1,0,3",
    ];
    for spec in laws {
        let d = TokenDist::parse(spec).unwrap();
        for l in [0.5, 1.0, 150.0, 600.0, 1600.0] {
            let (q1, q2) = clipped_by_quadrature(&d, l, 400);
            let (m1, m2) = d.clipped_moments(l);
            assert!(
                (m1 - q1).abs() <= 1e-9 * q1.abs() + 1e-12,
                "{spec} L={l}: E[N_L] {m1} vs quadrature {q1}"
            );
            assert!(
                (m2 - q2).abs() <= 1e-9 * q2.abs() + 1e-12,
                "{spec} L={l}: E[N_L²] {m2} vs quadrature {q2}"
            );
        }
    }
}

#[test]
fn quantile_and_isf_invert_cdf_and_sf() {
    for spec in [
        "lognormal:7,0.7",
        "normal:800,200",
        "normal:300,400,100,900",
        "normal:0,1,5,inf",
        "uniform:3,9",
    ] {
        let d = TokenDist::parse(spec).unwrap();
        for p in [1e-12, 1e-6, 0.01, 0.3, 0.5, 0.8, 0.999] {
            let x = d.quantile(p);
            assert_relative_eq!(d.cdf(x), p, max_relative = 1e-8, epsilon = 1e-13);
        }
        for s in [1e-14, 1e-9, 1e-4, 0.2, 0.6] {
            let x = d.isf(s);
            assert_relative_eq!(d.sf(x), s, max_relative = 1e-8, epsilon = 1e-15);
        }
    }
    // Heavy tail: the 1 − 1e-15 quantile of the lognormal without cancellation.
    let d = ln7();
    let x = d.isf(1e-15);
    assert_relative_eq!(d.sf(x), 1e-15, max_relative = 1e-10);
    // Far-truncated normal keeps relative accuracy where 1 − cdf would be 0.
    let t = TokenDist::parse("normal:0,1,10,inf").unwrap();
    assert_relative_eq!(
        t.sf(11.0),
        crate::numeric::norm_sf(11.0) / crate::numeric::norm_sf(10.0),
        max_relative = 1e-12
    );
    assert!(t.mean() > 10.0 && t.mean() < 10.2);
}

#[test]
fn sampling_matches_moments() {
    let mut rng = rand_xoshiro_free_rng(7);
    for spec in [
        "lognormal:7,0.7",
        "normal:800,200",
        "uniform:0,1000",
        "duniform:1,6",
        "const:42",
    ] {
        let d = TokenDist::parse(spec).unwrap();
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| d.sample(&mut rng)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let sd = d.variance().sqrt();
        // 5 standard errors.
        assert!(
            (mean - d.mean()).abs() <= 5.0 * sd / (n as f64).sqrt() + 1e-12,
            "{spec}: {mean}"
        );
        let (lo, hi) = d.support();
        assert!(xs.iter().all(|x| *x >= lo && *x <= hi), "{spec}");
    }
    let e = TokenDist::Empirical(
        Empirical::from_weights(&[1.0, 2.0, 10.0], &[1.0, 1.0, 2.0], "t").unwrap(),
    );
    let n = 100_000;
    let tens = (0..n).filter(|_| e.sample(&mut rng) == 10.0).count();
    assert!((tens as f64 / n as f64 - 0.5).abs() < 0.01);
}

fn rand_xoshiro_free_rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

#[test]
fn constant_law() {
    let d = TokenDist::parse("const:500").unwrap();
    assert_eq!(d.clipped_moments(300.0), (300.0, 90000.0));
    assert_eq!(d.clipped_moments(800.0), (500.0, 250000.0));
    assert_eq!(d.cdf(499.9), 0.0);
    assert_eq!(d.cdf(500.0), 1.0);
    assert_eq!(d.sf(500.0), 0.0);
    assert_eq!(d.quantile(0.3), 500.0);
}

#[test]
fn bad_specs_are_one_line_errors() {
    for bad in [
        "lognormal:7",
        "lognormal:7,0",
        "lognormal:7,-1",
        "lognormal:NaN,1",
        "uniform:5,5",
        "uniform:-1,5",
        "uniform:a,5",
        "duniform:1.5,3",
        "normal:0,0",
        "normal:0,1,5,2",
        "normal:0,1,100,inf",
        "const:-3",
        "weibull:1,2",
        "nosuchdataset",
        "empirical:",
        "empirical:/nonexistent/file.csv",
        "uniform:0,inf",
        "",
    ] {
        let e = TokenDist::parse(bad).expect_err(bad).to_string();
        assert!(!e.contains('\n'), "{bad}: multi-line error {e}");
        assert!(!e.is_empty());
    }
}

#[test]
fn csv_histogram_and_raw_samples() {
    let h = Empirical::from_csv_str("value,count\n100,5\n500,3\n2000,2\n", None, "h.csv").unwrap();
    assert_eq!(h.values, vec![100.0, 500.0, 2000.0]);
    assert_relative_eq!(h.probs[0], 0.5);
    let p = Empirical::from_csv_str(
        "# comment\nvalue,prob\n2000,0.2\n100,0.5\n500,0.3\n",
        None,
        "p.csv",
    )
    .unwrap();
    assert_eq!(p.values, h.values);
    let raw = Empirical::from_csv_str(
        "id,output_tokens\n1,10\n2,20\n3,10\n",
        Some("output_tokens"),
        "r.csv",
    )
    .unwrap();
    assert_eq!(raw.values, vec![10.0, 20.0]);
    assert_relative_eq!(raw.probs[0], 2.0 / 3.0);
    let by_index = Empirical::from_csv_str("1,10\n2,20\n3,10\n", Some("1"), "r.csv").unwrap();
    assert_eq!(
        by_index,
        Empirical {
            source: "r.csv".into(),
            ..raw.clone()
        }
    );
    let single = Empirical::from_csv_str("7\n8\n9\n", None, "s.csv").unwrap();
    assert_relative_eq!(TokenDist::Empirical(single).mean(), 8.0);

    for (text, col) in [
        ("", None),
        ("value,count\n", None),
        ("# only a comment\n", None),
        ("value,count\n100,x\n", None),
        ("value,count\n100,-1\n", None),
        ("value,count\n100,0\n", None),
        ("a,b\n1,2\n", None),
        ("a,b\n1,2\n", Some("c")),
        ("a\n-5\n", None),
    ] {
        let e = Empirical::from_csv_str(text, col, "bad.csv")
            .expect_err(text)
            .to_string();
        assert!(e.starts_with("bad.csv: "), "{e}");
        assert!(!e.contains('\n'));
    }
}

#[test]
fn empirical_spec_reads_a_file_and_column() {
    let dir = std::env::temp_dir().join(format!("tokenq-dist-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("lens.csv");
    std::fs::write(&f, "req,out\n1,100\n2,500\n3,2000\n4,100\n").unwrap();
    let d = TokenDist::parse(&format!("empirical:{}:out", f.display())).unwrap();
    assert_relative_eq!(d.mean(), 675.0);
    let h = dir.join("hist.csv");
    std::fs::write(&h, "value,prob\n100,0.5\n500,0.3\n2000,0.2\n").unwrap();
    let d = TokenDist::parse(&format!("empirical:{}", h.display())).unwrap();
    assert_relative_eq!(d.clipped_moments(1000.0).0, 400.0, max_relative = 1e-14);
    let e = TokenDist::parse(&format!("empirical:{}", f.display()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("lens.csv") && e.contains("COLUMN"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Mean of a column of a raw trace in `../shared/data` (tests only; the product never reads it).
fn raw_trace_mean(rel: &str, column: &str) -> Option<(f64, usize)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data")
        .join(rel);
    let text = std::fs::read_to_string(&path).ok()?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next()?.split(',').collect();
    let idx = header.iter().position(|h| h.trim() == column)?;
    let (mut sum, mut n) = (0.0, 0usize);
    for line in lines.filter(|l| !l.trim().is_empty()) {
        sum += line.split(',').nth(idx)?.trim().parse::<f64>().ok()?;
        n += 1;
    }
    Some((sum / n as f64, n))
}

/// `E[N²]` of a raw trace column.
fn raw_trace_second_moment(rel: &str, column: &str) -> Option<f64> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data")
        .join(rel);
    let text = std::fs::read_to_string(&path).ok()?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next()?.split(',').collect();
    let idx = header.iter().position(|h| h.trim() == column)?;
    let (mut sum, mut n) = (0.0, 0usize);
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let v: f64 = line.split(',').nth(idx)?.trim().parse().ok()?;
        sum += v * v;
        n += 1;
    }
    Some(sum / n as f64)
}

#[test]
fn builtin_means_match_the_raw_traces() {
    let cases = [
        (
            "sharegpt",
            "sarathi-serve/sharegpt_8k_filtered_stats_llama2_tokenizer.csv",
            "num_decode_tokens",
        ),
        (
            "sharegpt-input",
            "sarathi-serve/sharegpt_8k_filtered_stats_llama2_tokenizer.csv",
            "num_prefill_tokens",
        ),
        (
            "azure-conv",
            "azure-llm-inference-2023/AzureLLMInferenceTrace_conv.csv",
            "GeneratedTokens",
        ),
        (
            "azure-conv-input",
            "azure-llm-inference-2023/AzureLLMInferenceTrace_conv.csv",
            "ContextTokens",
        ),
        (
            "azure-code",
            "azure-llm-inference-2023/AzureLLMInferenceTrace_code.csv",
            "GeneratedTokens",
        ),
        (
            "azure-code-input",
            "azure-llm-inference-2023/AzureLLMInferenceTrace_code.csv",
            "ContextTokens",
        ),
        (
            "arxiv",
            "vidur/processed_traces/arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv",
            "num_decode_tokens",
        ),
        (
            "arxiv-input",
            "vidur/processed_traces/arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv",
            "num_prefill_tokens",
        ),
    ];
    assert_eq!(builtin::BUILTINS.len(), cases.len());
    let mut checked = 0;
    for (name, rel, col) in cases {
        let d = TokenDist::parse(name).unwrap();
        let TokenDist::Empirical(e) = &d else {
            panic!("{name} is not empirical")
        };
        assert_eq!(e.source, name);
        assert!(
            e.values.len() < 400,
            "{name}: not compact ({} atoms)",
            e.values.len()
        );
        // Also documented in the README table of datasets/README.md (trace means).
        if let Some((mean, n)) = raw_trace_mean(rel, col) {
            // Atoms are bin means rounded to 4 decimals: the mean agrees to 1e-4 tokens.
            assert!(
                (d.mean() - mean).abs() < 1e-4,
                "{name}: {} vs trace {mean}",
                d.mean()
            );
            assert!(n > 1000);
            // Second moment: the within-bin spread is dropped, ≤ 1e-4 relative (README claim).
            let m2 = raw_trace_second_moment(rel, col).unwrap();
            assert!(
                (d.second_moment() - m2).abs() <= 1e-4 * m2,
                "{name}: E[N²] {} vs trace {m2}",
                d.second_moment()
            );
            checked += 1;
        }
    }
    // Off the project tree (no ../shared/data) the comparison is skipped, never faked.
    if std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data")
        .is_dir()
    {
        assert_eq!(checked, cases.len());
    }
}
