//! Grid planning: points, shards, randomised order, repetitions.
//!
//! * The grid is batch sizes × input lengths; every point runs one pass of `max_output` output
//!   tokens (one prefill, `max_output − 1` decode steps), which covers every output length
//!   `n ≤ max_output`: e2e(n) = Σ_{k<n} step k (docs/design.md, "profile steps, then derive
//!   requests").
//! * `point_id` is the index in the canonical order (batch-major, each list sorted ascending),
//!   so it is the same on every machine. Shard `I/N` takes the points with
//!   `point_id mod N = I − 1` (round robin, so shards get similar mixes of small and large
//!   points); the shards partition the grid.
//! * Points run in a seeded random order (a Fisher–Yates shuffle) so slow drifts of the machine
//!   (thermal, background load) do not line up with batch size or input length.
//! * Repetitions follow hyperfine's rule: after warm-up, time one pass `t`; run
//!   `clamp(⌈min_time / t⌉, min_runs, max_runs)` passes in all.

use crate::error::ProfileError;
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
use serde::{Deserialize, Serialize};

/// The grid: batch sizes × input lengths, one maximum output length.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grid {
    pub batch_sizes: Vec<u32>,
    pub input_tokens: Vec<u32>,
    pub max_output: u32,
}

impl Grid {
    /// Validate and canonicalise (sort, deduplicate).
    pub fn new(
        mut batch_sizes: Vec<u32>,
        mut input_tokens: Vec<u32>,
        max_output: u32,
    ) -> Result<Self, ProfileError> {
        batch_sizes.sort_unstable();
        batch_sizes.dedup();
        input_tokens.sort_unstable();
        input_tokens.dedup();
        if batch_sizes.is_empty() || batch_sizes[0] == 0 {
            return Err(ProfileError::Config(
                "--batch needs at least one batch size ≥ 1, e.g. --batch 1,2,4,8".into(),
            ));
        }
        if input_tokens.is_empty() || input_tokens[0] == 0 {
            return Err(ProfileError::Config(
                "--input needs at least one input length ≥ 1 token, e.g. --input 32,128".into(),
            ));
        }
        if max_output == 0 {
            return Err(ProfileError::Config(
                "--output must be ≥ 1 token (the prefill yields the first)".into(),
            ));
        }
        Ok(Self {
            batch_sizes,
            input_tokens,
            max_output,
        })
    }

    /// All points in canonical order.
    pub fn points(&self) -> Vec<GridPoint> {
        let mut out = Vec::with_capacity(self.batch_sizes.len() * self.input_tokens.len());
        for &b in &self.batch_sizes {
            for &n in &self.input_tokens {
                out.push(GridPoint {
                    point_id: out.len() as u32,
                    batch_size: b,
                    input_tokens: n,
                });
            }
        }
        out
    }

    /// Longest sequence: input + output tokens.
    pub fn max_seq_tokens(&self) -> u32 {
        self.input_tokens.last().copied().unwrap_or(0) + self.max_output
    }
}

/// One (batch, input) point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GridPoint {
    pub point_id: u32,
    pub batch_size: u32,
    pub input_tokens: u32,
}

/// Shard `index` (1-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Parse `I/N` with `1 ≤ I ≤ N`.
    pub fn parse(s: &str) -> Result<Self, ProfileError> {
        let bad = || {
            ProfileError::Config(format!(
                "--shard `{s}` is not I/N with 1 ≤ I ≤ N, e.g. --shard 1/4"
            ))
        };
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if index == 0 || count == 0 || index > count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }

    /// Does this shard own the point?
    pub fn owns(&self, point_id: u32) -> bool {
        point_id % self.count == self.index - 1
    }
}

/// Points of one shard (all points without a shard), in canonical order.
pub fn shard_points(points: &[GridPoint], shard: Option<Shard>) -> Vec<GridPoint> {
    points
        .iter()
        .copied()
        .filter(|p| shard.is_none_or(|s| s.owns(p.point_id)))
        .collect()
}

/// The same points in a seeded random order.
pub fn shuffled(points: &[GridPoint], seed: u64) -> Vec<GridPoint> {
    let mut v = points.to_vec();
    v.shuffle(&mut StdRng::seed_from_u64(seed));
    v
}

/// Warm-up and repetition policy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RepPolicy {
    /// Untimed passes before the timed ones; each covers every shape the timed passes use.
    pub warmup_passes: u32,
    /// Keep repeating until this much time has been measured (hyperfine's `min_time`).
    pub min_time_s: f64,
    pub min_reps: u32,
    pub max_reps: u32,
}

impl Default for RepPolicy {
    fn default() -> Self {
        Self {
            warmup_passes: 1,
            min_time_s: 0.5,
            min_reps: 3,
            max_reps: 10,
        }
    }
}

impl RepPolicy {
    /// Exactly `n` repetitions (`--reps N`).
    pub fn fixed(n: u32) -> Self {
        Self {
            min_reps: n,
            max_reps: n,
            ..Self::default()
        }
    }

    pub fn validate(&self) -> Result<(), ProfileError> {
        if self.min_reps == 0 || self.max_reps < self.min_reps {
            return Err(ProfileError::Config(format!(
                "repetitions: need 1 ≤ --min-reps ({}) ≤ --max-reps ({})",
                self.min_reps, self.max_reps
            )));
        }
        if !(self.min_time_s.is_finite() && self.min_time_s >= 0.0) {
            return Err(ProfileError::Config(
                "--min-time must be a non-negative number of seconds".into(),
            ));
        }
        Ok(())
    }

    /// Total timed passes given the first timed pass took `first_pass_s` seconds.
    pub fn planned_reps(&self, first_pass_s: f64) -> u32 {
        let by_time = if first_pass_s > 0.0 {
            (self.min_time_s / first_pass_s).ceil()
        } else {
            f64::from(self.max_reps)
        };
        let by_time = if by_time.is_finite() {
            by_time.min(f64::from(u32::MAX)) as u32
        } else {
            self.max_reps
        };
        by_time.clamp(self.min_reps, self.max_reps)
    }
}

/// Largest `--output` (timed steps of one pass).
const MAX_OUTPUT: u32 = 1_000_000;
/// Largest grid (points of one profile).
const MAX_POINTS: usize = 100_000;
/// Most prompt tokens of one pass (batch × input).
const MAX_PROMPT_TOKENS: u64 = 100_000_000;
/// Most passes per point.
const MAX_REPS: u32 = 10_000;

/// Sizes the profiler would otherwise accept and then fail on (or run for days), refused
/// before any work with the flag named: `passes` is the most passes (timed or warm-up) of a
/// point.
pub fn check_work(
    batch: &[u32],
    input: &[u32],
    output: u32,
    passes: u32,
) -> Result<(), ProfileError> {
    let fail = |m: String| Err(ProfileError::Config(m));
    if output > MAX_OUTPUT {
        return fail(format!(
            "--output {output}: at most {MAX_OUTPUT} tokens per pass (one timed step each; the row buffer of one pass is allocated up front)"
        ));
    }
    let points = batch.len().saturating_mul(input.len());
    if points > MAX_POINTS {
        return fail(format!(
            "--batch × --input is {points} grid points: at most {MAX_POINTS}; profile fewer sizes, or split them over runs with --shard I/N"
        ));
    }
    let b = u64::from(batch.iter().copied().max().unwrap_or(0));
    let n = u64::from(input.iter().copied().max().unwrap_or(0));
    if b * n > MAX_PROMPT_TOKENS {
        return fail(format!(
            "--batch {b} × --input {n} = {} prompt tokens per pass: at most {MAX_PROMPT_TOKENS} (the prompts of a pass are held in memory)",
            b * n
        ));
    }
    if passes > MAX_REPS {
        return fail(format!(
            "--reps/--max-reps/--warmup: at most {MAX_REPS} passes per point, got {passes}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn shards_partition_the_grid() {
        let g = Grid::new(vec![8, 1, 2, 4, 2], vec![128, 32, 64], 16).unwrap();
        let all = g.points();
        assert_eq!(all.len(), 12);
        assert_eq!(g.batch_sizes, vec![1, 2, 4, 8]);
        for n in 1..=7 {
            let mut seen = HashSet::new();
            let mut total = 0;
            for i in 1..=n {
                let s = shard_points(&all, Some(Shard { index: i, count: n }));
                total += s.len();
                for p in s {
                    assert!(seen.insert(p.point_id), "point {} twice", p.point_id);
                }
            }
            assert_eq!(total, all.len());
            assert_eq!(seen.len(), all.len());
        }
    }

    #[test]
    fn shuffle_is_seeded_and_a_permutation() {
        let g = Grid::new(vec![1, 2, 4, 8], vec![32, 128], 8).unwrap();
        let p = g.points();
        let a = shuffled(&p, 42);
        assert_eq!(a, shuffled(&p, 42));
        assert_ne!(
            a, p,
            "8 points left in order by a shuffle: probability 1/40320"
        );
        let mut ids: Vec<u32> = a.iter().map(|x| x.point_id).collect();
        ids.sort_unstable();
        assert_eq!(ids, (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn reps_follow_the_hyperfine_rule() {
        let p = RepPolicy {
            warmup_passes: 1,
            min_time_s: 1.0,
            min_reps: 3,
            max_reps: 10,
        };
        assert_eq!(p.planned_reps(0.3), 4); // ⌈1/0.3⌉ = 4
        assert_eq!(p.planned_reps(2.0), 3); // floor at min
        assert_eq!(p.planned_reps(0.01), 10); // cap at max
        assert_eq!(p.planned_reps(0.0), 10);
        assert_eq!(RepPolicy::fixed(5).planned_reps(1e-9), 5);
    }

    #[test]
    fn bad_shards_and_grids_are_one_line_errors() {
        for s in ["0/4", "5/4", "1/0", "x", "1-4"] {
            let e = Shard::parse(s).unwrap_err().to_string();
            assert!(e.contains("--shard") && !e.contains('\n'));
        }
        assert_eq!(Shard::parse("2/4").unwrap(), Shard { index: 2, count: 4 });
        assert!(Grid::new(vec![0], vec![1], 1).is_err());
        assert!(Grid::new(vec![1], vec![], 1).is_err());
        assert!(Grid::new(vec![1], vec![1], 0).is_err());
    }
}
