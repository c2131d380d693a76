//! KV-cache capacity: the largest batch whose KV cache (plus weights and the prefill's
//! transient activations) fits in memory, for each sequence length of the grid.
//!
//! `max_batch(S) = max { b : weights + point_bytes(b, n_in, S) ≤ budget }` with `S = n_in +
//! max_output`, where `point_bytes` is the backend's [`MemoryModel`] (for candle models:
//! `2·layers·kv_heads·head_dim·bytes(dtype)` per KV entry plus transients, see `models`).
//! The budget is free device memory on CUDA (measured after the weights are loaded, so the
//! weights are not counted twice) and `--memory-budget` (default: the kernel's
//! `MemAvailable`) on the CPU. This is the constraint `b·S ≤ KV capacity` that bounds batch
//! sizes in docs/models.md's batching models.

use crate::backend::MemoryModel;
use crate::error::ProfileError;
use crate::plan::Grid;
use serde::{Deserialize, Serialize};

/// Largest batch the binary search considers.
const MAX_BATCH_SEARCH: u64 = 1 << 24;
/// Bytes per GiB.
pub const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Capacity for one input length.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapacityEntry {
    pub input_tokens: u32,
    /// Input + max output tokens.
    pub seq_tokens: u32,
    /// Largest batch that fits (0: not even one sequence).
    pub max_batch: u64,
}

/// The memory budget and the capacity it allows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvCapacity {
    /// Where the budget came from: `--memory-budget`, `MemAvailable`, `free device memory`.
    pub source: String,
    pub budget_bytes: u64,
    /// Weights counted against the budget (0 when the budget is free memory after loading).
    pub weights_bytes: u64,
    pub entries: Vec<CapacityEntry>,
}

/// Largest `b` with `weights + point_bytes(b, input, seq) ≤ budget`.
pub fn max_batch(mem: &dyn MemoryModel, weights: u64, budget: u64, input: u64, seq: u64) -> u64 {
    let fits = |b: u64| weights.saturating_add(mem.point_bytes(b, input, seq)) <= budget;
    if !fits(1) {
        return 0;
    }
    let (mut lo, mut hi) = (1u64, MAX_BATCH_SEARCH);
    if fits(hi) {
        return hi;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Capacity for every input length of the grid; an error if a grid batch does not fit.
pub fn check_grid(
    grid: &Grid,
    mem: &dyn MemoryModel,
    budget_bytes: u64,
    weights_bytes: u64,
    source: &str,
) -> Result<KvCapacity, ProfileError> {
    let mut entries = Vec::new();
    for &n in &grid.input_tokens {
        let seq = n + grid.max_output;
        let cap = max_batch(
            mem,
            weights_bytes,
            budget_bytes,
            u64::from(n),
            u64::from(seq),
        );
        entries.push(CapacityEntry {
            input_tokens: n,
            seq_tokens: seq,
            max_batch: cap,
        });
    }
    let cap = KvCapacity {
        source: source.to_string(),
        budget_bytes,
        weights_bytes,
        entries,
    };
    if weights_bytes > budget_bytes {
        return Err(ProfileError::Memory(format!(
            "the weights need {:.2} GiB, more than the memory budget of {:.2} GiB ({source}): use a smaller --model or --dtype, or raise --memory-budget",
            weights_bytes as f64 / GIB,
            budget_bytes as f64 / GIB
        )));
    }
    let largest = *grid.batch_sizes.last().unwrap_or(&0);
    for e in &cap.entries {
        if u64::from(largest) > e.max_batch {
            let need = weights_bytes
                + mem.point_bytes(
                    u64::from(largest),
                    u64::from(e.input_tokens),
                    u64::from(e.seq_tokens),
                );
            return Err(ProfileError::Memory(format!(
                "batch {largest} at {} input + {} output tokens needs ≈ {:.2} GiB, more than the memory budget of {:.2} GiB ({source}); the largest batch that fits is {}: lower --batch or raise --memory-budget",
                e.input_tokens,
                grid.max_output,
                need as f64 / GIB,
                budget_bytes as f64 / GIB,
                e.max_batch
            )));
        }
    }
    Ok(cap)
}

/// The kernel's `MemAvailable`, bytes (Linux), if readable.
pub fn mem_available_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{ModelSpec, SizedModel};

    /// KV only: 1000 bytes per entry.
    struct Flat;
    impl MemoryModel for Flat {
        fn weights_bytes(&self) -> u64 {
            0
        }
        fn point_bytes(&self, b: u64, _n: u64, s: u64) -> u64 {
            b * s * 1000
        }
    }

    #[test]
    fn max_batch_is_the_floor_of_budget_over_kv() {
        // (budget − weights) / (S · 1000) = (1_000_000 − 100_000) / 96_000 = 9.375 → 9
        assert_eq!(max_batch(&Flat, 100_000, 1_000_000, 32, 96), 9);
        assert_eq!(max_batch(&Flat, 999_999, 1_000_000, 32, 96), 0);
    }

    #[test]
    fn a_grid_over_budget_is_a_one_line_error_naming_the_flags() {
        let g = Grid::new(vec![1, 16], vec![32], 64).unwrap();
        let e = check_grid(&g, &Flat, 1_000_000, 0, "--memory-budget")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("largest batch that fits is 10") && e.contains("--batch"),
            "{e}"
        );
        assert!(!e.contains('\n'));
        let ok = check_grid(&g, &Flat, 10_000_000, 0, "--memory-budget").unwrap();
        assert_eq!(ok.entries[0].max_batch, 104); // 10^7 / 96_000 = 104.2
    }

    #[test]
    fn llama_2_7b_on_an_80_gib_gpu_fits_a_plausible_batch() {
        // f16 weights 12.55 GiB; KV 0.5 MiB per token: at S = 2048 one sequence holds 1 GiB,
        // so ≈ 66 GiB of KV room gives at most 66 sequences; transients lower it a little.
        let m = ModelSpec::preset("llama-2-7b").unwrap();
        let sized = SizedModel {
            spec: &m,
            dtype_bytes: 2,
        };
        let w = sized.weights_bytes();
        let b = max_batch(&sized, w, 80 * (1 << 30), 1024, 2048);
        assert!((40..=66).contains(&b), "{b}");
    }
}
