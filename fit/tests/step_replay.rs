//! The step-time model fitted from per-layer tables, checked on the steps a real workload's
//! replay runs (docs/serving.md "Fitted"): the fit's error on those steps is small, and a replay
//! with the fitted model agrees with the table replay.

use std::path::PathBuf;

use fit::steptime::{fit_from_tables, replay_check};
use sim::continuous::{EngineConfig, SimOptions, TableStepModel, simulate, workload};

fn data(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../datasets/llmservingsim")
        .join(p)
}

fn rel(a: f64, b: f64) -> f64 {
    ((a - b) / b).abs()
}

/// The shipped 300-request ShareGPT workload replays on both GPUs with both step models;
/// the fitted model's error on the replay's own steps is small, and the two models' TPOT
/// means agree within the fitted model's step bias plus 5%.
#[test]
fn sharegpt_replays_on_both_gpus() {
    let reqs = workload::read_trace(&data("sharegpt-llama-3.1-8b-300-sps10.lengths.csv")).unwrap();
    assert_eq!(reqs.len(), 300);
    assert_eq!(
        reqs.iter().filter(|r| r.prefix_parent.is_some()).count(),
        32
    );
    for (gpu, seqs, blocks) in [("RTX4090", 256, 2588), ("RTXPRO6000", 128, 36578)] {
        let c = EngineConfig {
            max_num_seqs: seqs,
            ..EngineConfig::with_kv_blocks(blocks)
        };
        let table = TableStepModel::load(&data(gpu), 32, false).unwrap();
        let opts = SimOptions {
            record_steps: true,
            ..Default::default()
        };
        let rt = simulate(&reqs, &c, &table, opts).unwrap();
        assert_eq!(rt.completed, 300);
        assert!(rt.peak_kv_blocks <= blocks);
        let coef = fit_from_tables(&table, gpu, &c, 7).unwrap();
        let steps: Vec<_> = rt.steps.iter().map(|(b, t)| (b.features(), *t)).collect();
        let check = replay_check(&coef, gpu, &steps);
        assert!(check.sum_bias_pct.abs() < 10.0, "{gpu}: {check:?}");
        let fitted = coef;
        let rf = simulate(&reqs, &c, &fitted, SimOptions::default()).unwrap();
        assert_eq!(rf.completed, 300);
        let d = rel(rf.tpot.mean_s, rt.tpot.mean_s) * 100.0;
        assert!(
            d < check.sum_bias_pct.abs() + 5.0,
            "{gpu}: TPOT differs by {d}%"
        );
    }
}
