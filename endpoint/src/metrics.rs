//! Summaries of a run with `vllm bench serve`'s field names and definitions.
//!
//! What is measured, per successful request (`error == None`), all in milliseconds:
//! * **TTFT** = first token chunk arrival − *scheduled* send time. (vLLM measures from the
//!   actual send; measuring from the schedule adds the client's lateness, reported separately,
//!   and keeps an overloaded client from hiding queueing delay.)
//! * **E2EL** = last token chunk arrival − scheduled send time.
//! * **TPOT** = (E2EL − TTFT) / (output_tokens − 1), only for requests with more than one
//!   output token (`usage.completion_tokens`, else the token chunk count).
//! * **ITL** = every gap between consecutive token chunks, pooled over all requests.
//! * **Lateness** = actual − scheduled send time, over every sent request (failed ones too).
//!
//! How: exact order statistics of the sorted values, percentiles by linear interpolation
//! between closest ranks (numpy's default, as `vllm bench serve` uses: rank `p/100·(n−1)`);
//! median = 50th percentile; std is the population standard deviation (numpy's `ddof=0`). An
//! empty set reports 0 for every statistic, as vLLM does.
//!
//! Throughputs divide by `duration_s` = latest request end − earliest scheduled send, over all
//! records. Tokens: output = `usage.completion_tokens` (else chunk count), input =
//! `usage.prompt_tokens` (else the requested input length), of successful requests.
//! `request_goodput` = successful requests meeting every given SLO (`<=`, TPOT of a
//! one-token request counting as 0) / `duration_s`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::client::RequestRecord;

/// The percentiles reported when none are asked for.
pub const DEFAULT_PERCENTILES: [f64; 3] = [50.0, 90.0, 99.0];

/// Service-level objectives for goodput; `None` fields are not checked.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Slo {
    /// Largest acceptable TTFT.
    pub ttft_ms: Option<f64>,
    /// Largest acceptable TPOT.
    pub tpot_ms: Option<f64>,
    /// Largest acceptable end-to-end latency.
    pub e2el_ms: Option<f64>,
}

/// Mean, median, standard deviation and percentiles of one latency, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyStats {
    /// Number of values.
    pub count: usize,
    /// Arithmetic mean.
    pub mean_ms: f64,
    /// 50th percentile.
    pub median_ms: f64,
    /// Population standard deviation.
    pub std_ms: f64,
    /// `(percentile, value_ms)` for each requested percentile, in the order asked.
    pub percentiles_ms: Vec<(f64, f64)>,
}

impl LatencyStats {
    /// Statistics of `values_ms` (any order).
    pub fn from_values(values_ms: &[f64], percentiles: &[f64]) -> Self {
        let mut sorted = values_ms.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let (mean, std) = if n == 0 {
            (0.0, 0.0)
        } else {
            let mean = sorted.iter().sum::<f64>() / n as f64;
            let var = sorted.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
            (mean, var.sqrt())
        };
        LatencyStats {
            count: n,
            mean_ms: mean,
            median_ms: percentile(&sorted, 50.0),
            std_ms: std,
            percentiles_ms: percentiles
                .iter()
                .map(|&p| (p, percentile(&sorted, p)))
                .collect(),
        }
    }

    /// The value of percentile `p` if it was computed.
    pub fn percentile_ms(&self, p: f64) -> Option<f64> {
        self.percentiles_ms
            .iter()
            .find(|(q, _)| *q == p)
            .map(|(_, v)| *v)
    }
}

/// Percentile `p` (0–100) of an ascending slice by linear interpolation between closest ranks
/// (numpy's default): rank `p/100 · (n − 1)`. 0 for an empty slice.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        1 => sorted[0],
        n => {
            let rank = (p.clamp(0.0, 100.0) / 100.0) * (n - 1) as f64;
            let lo = rank.floor() as usize;
            let hi = rank.ceil() as usize;
            sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
        }
    }
}

/// Client send lateness (actual − scheduled send time), milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatenessStats {
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Maximum.
    pub max_ms: f64,
}

/// The summary of a run. Serialises to a flat JSON object with `vllm bench serve`'s keys
/// (`completed`, `request_throughput`, `mean_ttft_ms`, `p99_itl_ms`, …; percentile keys are
/// `p{p}_{metric}_ms` with `p` written without a fraction when whole), plus `duration_s`,
/// `failed`, `errors` (count by [`crate::RequestError::kind`]) and `*_lateness_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Successful requests.
    pub completed: usize,
    /// Failed requests.
    pub failed: usize,
    /// Failed requests by error kind.
    pub errors: BTreeMap<String, usize>,
    /// Latest request end − earliest scheduled send.
    pub duration_s: f64,
    /// Input tokens of successful requests.
    pub total_input_tokens: u64,
    /// Output tokens of successful requests.
    pub total_output_tokens: u64,
    /// `completed / duration_s`.
    pub request_throughput: f64,
    /// `total_output_tokens / duration_s`.
    pub output_throughput: f64,
    /// `(total_input_tokens + total_output_tokens) / duration_s`.
    pub total_token_throughput: f64,
    /// Successful requests meeting every SLO / `duration_s`; `None` without SLOs.
    pub request_goodput: Option<f64>,
    /// Time to first token.
    pub ttft: LatencyStats,
    /// Time per output token after the first.
    pub tpot: LatencyStats,
    /// Inter-token (inter-chunk) latency.
    pub itl: LatencyStats,
    /// End-to-end latency.
    pub e2el: LatencyStats,
    /// Client send lateness.
    pub lateness: LatenessStats,
}

const MS: f64 = 1000.0;

impl Summary {
    /// Summarises `records` with the given percentiles (see [`DEFAULT_PERCENTILES`]) and
    /// optional SLOs for goodput.
    pub fn from_records(records: &[RequestRecord], percentiles: &[f64], slo: Option<&Slo>) -> Self {
        let ok: Vec<&RequestRecord> = records.iter().filter(|r| r.is_ok()).collect();
        let mut errors = BTreeMap::new();
        for e in records.iter().filter_map(|r| r.error.as_ref()) {
            *errors.entry(e.kind().to_owned()).or_insert(0) += 1;
        }
        let start = records
            .iter()
            .map(|r| r.scheduled_send_s)
            .fold(f64::INFINITY, f64::min);
        let end = records
            .iter()
            .map(|r| r.end_s)
            .fold(f64::NEG_INFINITY, f64::max);
        let duration_s = if records.is_empty() {
            0.0
        } else {
            (end - start).max(0.0)
        };
        let per_s = |x: f64| {
            if duration_s > 0.0 {
                x / duration_s
            } else {
                0.0
            }
        };

        let total_input_tokens: u64 = ok.iter().map(|r| u64::from(r.input_tokens())).sum();
        let total_output_tokens: u64 = ok.iter().map(|r| u64::from(r.output_tokens())).sum();
        let ttfts: Vec<f64> = ok
            .iter()
            .filter_map(|r| r.ttft_s())
            .map(|s| s * MS)
            .collect();
        let e2els: Vec<f64> = ok
            .iter()
            .filter_map(|r| r.e2el_s())
            .map(|s| s * MS)
            .collect();
        let tpots: Vec<f64> = ok
            .iter()
            .filter_map(|r| r.tpot_s())
            .map(|s| s * MS)
            .collect();
        let itls: Vec<f64> = ok
            .iter()
            .flat_map(|r| r.token_times_s.windows(2).map(|w| (w[1] - w[0]) * MS))
            .collect();

        let request_goodput = slo.map(|slo| {
            let good = ok
                .iter()
                .filter(|r| {
                    let within = |limit: Option<f64>, v: Option<f64>| {
                        limit.is_none_or(|l| v.unwrap_or(0.0) * MS <= l)
                    };
                    within(slo.ttft_ms, r.ttft_s())
                        && within(slo.tpot_ms, r.tpot_s())
                        && within(slo.e2el_ms, r.e2el_s())
                })
                .count();
            per_s(good as f64)
        });

        let mut late: Vec<f64> = records.iter().map(|r| r.lateness_s() * MS).collect();
        late.sort_by(f64::total_cmp);
        let lateness = LatenessStats {
            mean_ms: if late.is_empty() {
                0.0
            } else {
                late.iter().sum::<f64>() / late.len() as f64
            },
            p50_ms: percentile(&late, 50.0),
            p99_ms: percentile(&late, 99.0),
            max_ms: late.last().copied().unwrap_or(0.0),
        };

        Summary {
            completed: ok.len(),
            failed: records.len() - ok.len(),
            errors,
            duration_s,
            total_input_tokens,
            total_output_tokens,
            request_throughput: per_s(ok.len() as f64),
            output_throughput: per_s(total_output_tokens as f64),
            total_token_throughput: per_s((total_input_tokens + total_output_tokens) as f64),
            request_goodput,
            ttft: LatencyStats::from_values(&ttfts, percentiles),
            tpot: LatencyStats::from_values(&tpots, percentiles),
            itl: LatencyStats::from_values(&itls, percentiles),
            e2el: LatencyStats::from_values(&e2els, percentiles),
            lateness,
        }
    }

    /// The flat JSON object described on [`Summary`].
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        let mut put = |k: &str, v: serde_json::Value| {
            m.insert(k.to_owned(), v);
        };
        put("duration_s", self.duration_s.into());
        put("completed", self.completed.into());
        put("failed", self.failed.into());
        put("errors", serde_json::json!(self.errors));
        put("total_input_tokens", self.total_input_tokens.into());
        put("total_output_tokens", self.total_output_tokens.into());
        put("request_throughput", self.request_throughput.into());
        put(
            "request_goodput",
            self.request_goodput
                .map_or(serde_json::Value::Null, Into::into),
        );
        put("output_throughput", self.output_throughput.into());
        put("total_token_throughput", self.total_token_throughput.into());
        for (name, stats) in [
            ("ttft", &self.ttft),
            ("tpot", &self.tpot),
            ("itl", &self.itl),
            ("e2el", &self.e2el),
        ] {
            put(&format!("mean_{name}_ms"), stats.mean_ms.into());
            put(&format!("median_{name}_ms"), stats.median_ms.into());
            put(&format!("std_{name}_ms"), stats.std_ms.into());
            for &(p, v) in &stats.percentiles_ms {
                put(&format!("p{}_{name}_ms", percentile_label(p)), v.into());
            }
        }
        put("mean_lateness_ms", self.lateness.mean_ms.into());
        put("p50_lateness_ms", self.lateness.p50_ms.into());
        put("p99_lateness_ms", self.lateness.p99_ms.into());
        put("max_lateness_ms", self.lateness.max_ms.into());
        serde_json::Value::Object(m)
    }
}

/// `99.0` → `"99"`, `99.9` → `"99.9"` (vLLM's key style).
fn percentile_label(p: f64) -> String {
    if p.fract() == 0.0 {
        format!("{p:.0}")
    } else {
        p.to_string()
    }
}

impl Serialize for Summary {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_matches_hand_computed_numpy_linear() {
        let v = [1.0, 2.0, 3.0, 4.0, 10.0];
        // rank = p/100·4: p50 → 2 → 3; p90 → 3.6 → 4 + 0.6·6 = 7.6; p99 → 3.96 → 9.76.
        assert_eq!(percentile(&v, 50.0), 3.0);
        assert!((percentile(&v, 90.0) - 7.6).abs() < 1e-12);
        assert!((percentile(&v, 99.0) - 9.76).abs() < 1e-12);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 100.0), 10.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
        assert_eq!(percentile(&[4.0], 99.0), 4.0);
    }

    #[test]
    fn stats_population_std() {
        let s = LatencyStats::from_values(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0], &[50.0]);
        assert_eq!(s.mean_ms, 5.0);
        assert_eq!(s.std_ms, 2.0);
        assert_eq!(s.median_ms, 4.5);
        assert_eq!(s.percentile_ms(50.0), Some(4.5));
        assert_eq!(s.percentile_ms(90.0), None);
    }

    #[test]
    fn labels() {
        assert_eq!(percentile_label(99.0), "99");
        assert_eq!(percentile_label(99.9), "99.9");
    }
}
