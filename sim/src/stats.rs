//! Output analysis: log-bucketed histograms for percentiles, accumulation units (sections of
//! one run, or whole replications) and Student-t confidence intervals.
//!
//! Model (docs/models.md §11, "Statistics"): the first 1% of requests in arrival order are dropped as
//! warm-up; the rest of a run is cut into [`SECTIONS`] consecutive sections of equal request
//! count ("batch means"). A mean is estimated by the pooled ratio over all units and its 95%
//! half-width by `t(k−1) · sd(unit estimates) / √k` over the k units (sections, or independent
//! replications when more than one is run). Percentiles use the same construction on per-unit
//! histogram percentiles ("sectioning", Asmussen & Glynn, *Stochastic Simulation*, §IV.5).
//!
//! Percentiles come from a histogram whose buckets are [`SUB_BUCKETS`] equal slices of every
//! binary octave, so a reported percentile is within [`QUANTILE_REL_ERROR`] (2⁻⁸ ≈ 0.39%)
//! relative of the sample percentile for values in [`HIST_MIN_S`, `HIST_MAX_S`); smaller values
//! (including exact zeros, e.g. no wait) are reported as 0 (absolute error below 1 µs). The
//! memory is fixed (64 KiB per histogram) whatever the number of requests.

use statrs::distribution::{ContinuousCDF, StudentsT};

/// Number of sections (batch means) a run is cut into, docs/models.md §11.
pub const SECTIONS: usize = 30;
/// Log2 of the number of sub-buckets per octave.
const SUB_BITS: u32 = 7;
/// Sub-buckets per binary octave.
pub const SUB_BUCKETS: usize = 1 << SUB_BITS;
/// Smallest octave held, as a power of two (2⁻²⁰ s ≈ 0.95 µs).
const MIN_EXP: i64 = -20;
/// First octave not held (2⁴⁴ s); larger values land in the top bucket.
const MAX_EXP: i64 = 44;
/// Values below this are counted as zero.
pub const HIST_MIN_S: f64 = 1.0 / (1u64 << 20) as f64;
/// Values at or above this are clamped to the top bucket.
pub const HIST_MAX_S: f64 = (1u64 << 44) as f64;
/// Bucket count: one zero bucket plus the octaves.
const BUCKETS: usize = 1 + ((MAX_EXP - MIN_EXP) as usize) * SUB_BUCKETS;
/// Bit offset of the first held bucket in the `f64` bit pattern shifted by `52 − SUB_BITS`.
const OFFSET: i64 = ((MIN_EXP + 1023) << SUB_BITS) - 1;
/// Most values one histogram may hold (u32 bucket counts).
pub const MAX_COUNT_PER_HISTOGRAM: u64 = u32::MAX as u64;
/// Largest relative error of a reported percentile (half a bucket, bucket midpoints reported).
pub const QUANTILE_REL_ERROR: f64 = 1.0 / (2 * SUB_BUCKETS) as f64;

/// Histogram of non-negative values with log-spaced buckets (see the module docs).
#[derive(Clone)]
pub struct LogHistogram {
    /// Per-bucket counts; u32 halves the cache footprint (a section holds < 2³² requests, see
    /// [`MAX_COUNT_PER_HISTOGRAM`]).
    counts: Box<[u32]>,
    total: u64,
}

impl std::fmt::Debug for LogHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogHistogram")
            .field("total", &self.total)
            .finish()
    }
}

impl Default for LogHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LogHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
        }
    }

    /// Bytes held, independent of how many values were added.
    pub fn state_bytes(&self) -> usize {
        self.counts.len() * std::mem::size_of::<u32>() + std::mem::size_of::<Self>()
    }

    #[inline(always)]
    fn index(x: f64) -> usize {
        // For x ≥ 0 the bit pattern is monotone in x; shifting keeps exponent and the top
        // SUB_BITS mantissa bits. Zero, subnormals and anything below 2^MIN_EXP clamp to 0.
        let b = (x.to_bits() >> (52 - SUB_BITS)) as i64 - OFFSET;
        b.clamp(0, BUCKETS as i64 - 1) as usize
    }

    /// Add one value (negative values and NaN count as zero).
    #[inline(always)]
    pub fn add(&mut self, x: f64) {
        let i = if x > 0.0 { Self::index(x) } else { 0 };
        // SAFETY-free: index is clamped into range, the bounds check is elided or cheap.
        self.counts[i] += 1;
        self.total += 1;
    }

    /// Number of values added.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Add every count of `other` (saturating; pooled histograms are only read for quantiles,
    /// and a bucket holding 2³² values is far past any run length the simulator allows).
    pub fn merge(&mut self, other: &LogHistogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a = a.saturating_add(*b);
        }
        self.total += other.total;
    }

    /// Midpoint of bucket `i` (0 for the zero bucket).
    fn midpoint(i: usize) -> f64 {
        if i == 0 {
            return 0.0;
        }
        let lo = f64::from_bits(((i as i64 + OFFSET) as u64) << (52 - SUB_BITS));
        let hi = f64::from_bits(((i as i64 + 1 + OFFSET) as u64) << (52 - SUB_BITS));
        0.5 * (lo + hi)
    }

    /// The `p`-quantile (smallest value whose empirical CDF reaches `p`), to within
    /// [`QUANTILE_REL_ERROR`] relative. NaN when empty.
    pub fn quantile(&self, p: f64) -> f64 {
        self.quantiles([p])[0]
    }

    /// Several quantiles in one pass; `ps` ascending.
    pub fn quantiles<const K: usize>(&self, ps: [f64; K]) -> [f64; K] {
        let mut out = [f64::NAN; K];
        if self.total == 0 {
            return out;
        }
        let ranks = ps.map(|p| ((p * self.total as f64).ceil() as u64).clamp(1, self.total));
        let mut k = 0;
        let mut cum = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            cum += u64::from(c);
            while k < K && cum >= ranks[k] {
                out[k] = Self::midpoint(i);
                k += 1;
            }
            if k == K {
                return out;
            }
        }
        for o in out.iter_mut().skip(k) {
            *o = Self::midpoint(BUCKETS - 1);
        }
        out
    }
}

/// Sums over one unit of output analysis (a section of a run, or a whole replication).
#[derive(Debug, Clone, Default)]
pub struct Unit {
    /// Arrivals attributed to the unit.
    pub arrivals: u64,
    /// Requests served (they have a wait and a latency).
    pub served: u64,
    /// Requests lost to impatience.
    pub lost: u64,
    /// Σ wait of served requests (s).
    pub sum_wait: f64,
    /// Σ latency (sojourn) of served requests (s).
    pub sum_latency: f64,
    /// Σ wait over all requests, lost ones charged their patience (reneging) or 0 (balking).
    pub sum_wait_all: f64,
    /// Server busy time attributed to the unit (s).
    pub busy: f64,
    /// Batches started (single-server policies: one per served request).
    pub batches: u64,
    /// Requests in those batches.
    pub batch_requests: u64,
    /// Time spanned by the unit's arrivals (s).
    pub span: f64,
    /// Waits of served requests.
    pub wait_hist: LogHistogram,
    /// Latencies of served requests.
    pub latency_hist: LogHistogram,
    /// Served requests whose wait and latency both meet the run's attainment targets
    /// ([`crate::scenario::Targets`]; every served request when there are none).
    pub met: u64,
}

impl Unit {
    /// Pool `other` into `self`.
    pub fn merge(&mut self, o: &Unit) {
        self.arrivals += o.arrivals;
        self.served += o.served;
        self.lost += o.lost;
        self.sum_wait += o.sum_wait;
        self.sum_latency += o.sum_latency;
        self.sum_wait_all += o.sum_wait_all;
        self.busy += o.busy;
        self.batches += o.batches;
        self.batch_requests += o.batch_requests;
        self.span += o.span;
        self.wait_hist.merge(&o.wait_hist);
        self.latency_hist.merge(&o.latency_hist);
        self.met += o.met;
    }

    /// Bytes held by the unit (fixed).
    pub fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.wait_hist.state_bytes() + self.latency_hist.state_bytes()
            - 2 * std::mem::size_of::<LogHistogram>()
    }
}

pub use tokenq_core::Estimate;

/// Two-sided Student-t quantile `t_{(1+confidence)/2, df}`.
pub fn t_quantile(confidence: f64, df: usize) -> f64 {
    if df == 0 {
        return f64::NAN;
    }
    let t = StudentsT::new(0.0, 1.0, df as f64).expect("df >= 1 is a valid Student t");
    t.inverse_cdf(0.5 + confidence / 2.0)
}

/// The p-quantile of sorted samples by nearest rank: the smallest sample with at least a share
/// `p` of the samples at or below it (NaN when there are none).
pub fn sorted_quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let k = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[k - 1]
}

/// The mean of independent replications' values with its Student-t half-width at
/// `confidence` on `R − 1` degrees of freedom.
pub fn replications_interval(values: &[f64], confidence: f64) -> Estimate {
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    interval(mean, values.iter().copied(), confidence)
}

/// Interval around `point` from per-unit estimates `units` (non-finite ones are skipped).
pub fn interval(point: f64, units: impl IntoIterator<Item = f64>, confidence: f64) -> Estimate {
    let mut t_cache = TCache::new(confidence);
    interval_with(point, units, &mut t_cache)
}

/// Student-t quantiles of one confidence level, memoised by degrees of freedom.
#[derive(Debug)]
pub struct TCache {
    confidence: f64,
    cache: Vec<(usize, f64)>,
}

impl TCache {
    /// For `confidence` (e.g. 0.95).
    pub fn new(confidence: f64) -> Self {
        Self {
            confidence,
            cache: Vec::new(),
        }
    }
    /// `t_{(1+confidence)/2, df}`.
    pub fn get(&mut self, df: usize) -> f64 {
        if let Some(&(_, t)) = self.cache.iter().find(|(d, _)| *d == df) {
            return t;
        }
        let t = t_quantile(self.confidence, df);
        self.cache.push((df, t));
        t
    }
}

/// [`interval`] with memoised t quantiles.
pub fn interval_with(point: f64, units: impl IntoIterator<Item = f64>, t: &mut TCache) -> Estimate {
    let (mut k, mut mean, mut m2) = (0usize, 0.0f64, 0.0f64);
    for x in units.into_iter().filter(|x| x.is_finite()) {
        // Welford's update.
        k += 1;
        let d = x - mean;
        mean += d / k as f64;
        m2 += d * (x - mean);
    }
    if k < 2 {
        return Estimate {
            value: point,
            half_width: f64::NAN,
        };
    }
    let var = m2 / (k - 1) as f64;
    Estimate {
        value: point,
        half_width: t.get(k - 1) * (var / k as f64).sqrt(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_within_stated_relative_error() {
        let mut h = LogHistogram::new();
        let xs: Vec<f64> = (1..=10_000).map(|i| (i as f64) * 0.0137).collect();
        for &x in &xs {
            h.add(x);
        }
        for p in [0.01, 0.5, 0.9, 0.99, 1.0] {
            let exact = xs[((p * xs.len() as f64).ceil() as usize).max(1) - 1];
            let q = h.quantile(p);
            assert!(
                ((q - exact) / exact).abs() <= QUANTILE_REL_ERROR,
                "p={p}: {q} vs {exact}"
            );
        }
    }

    #[test]
    fn zero_and_tiny_values_go_to_zero_bucket_and_huge_values_clamp() {
        let mut h = LogHistogram::new();
        h.add(0.0);
        h.add(1e-9);
        h.add(-3.0);
        h.add(1e30);
        assert_eq!(h.total(), 4);
        assert_eq!(h.quantile(0.75), 0.0);
        assert!(h.quantile(1.0) >= HIST_MAX_S * (1.0 - QUANTILE_REL_ERROR));
        assert!(LogHistogram::new().quantile(0.5).is_nan());
    }

    #[test]
    fn bucket_edges_are_powers_of_two_aligned() {
        // 1.0 s and 2.0 s start buckets; their midpoints are 1 + 1/256 and 2 + 2/256.
        let mut h = LogHistogram::new();
        h.add(1.0);
        assert!((h.quantile(1.0) - (1.0 + 1.0 / 256.0)).abs() < 1e-12);
        let mut h = LogHistogram::new();
        h.add(2.0);
        assert!((h.quantile(1.0) - (2.0 + 2.0 / 256.0)).abs() < 1e-12);
        assert_eq!(LogHistogram::index(HIST_MIN_S), 1);
    }

    #[test]
    fn t_quantile_matches_tables() {
        // t_{0.975, 29} = 2.045230, t_{0.975, 9} = 2.262157 (standard tables).
        assert!((t_quantile(0.95, 29) - 2.045230).abs() < 1e-5);
        assert!((t_quantile(0.95, 9) - 2.262157).abs() < 1e-5);
    }

    #[test]
    fn interval_of_constant_units_is_zero_width_and_needs_two_units() {
        let e = interval(3.0, [3.0, 3.0, 3.0], 0.95);
        assert_eq!(e.half_width, 0.0);
        assert!(interval(3.0, [3.0, f64::NAN], 0.95).half_width.is_nan());
    }
}
