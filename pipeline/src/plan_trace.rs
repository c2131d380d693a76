//! A recorded trace as the capacity planner's workload (`tokenq plan --trace`; docs/usage.md
//! "tokenq plan"): its arrival times and its requests' prompt and output lengths, instead of
//! Poisson arrivals and token laws.
//!
//! At a total rate R the trace's time axis is stretched so that its mean rate
//! `(n − 1)/(last − first arrival)` becomes R (the bursts keep their shape); the output lengths
//! are clipped at the max-token limit, as a server with `max_tokens = L` stops. Each
//! configuration then replays the whole trace once from an empty system: the statistics are
//! the trace's own (simulation of a fixed workload, no sampling interval), except that a random
//! router's draws are replicated. The share of requests the limit leaves whole is the trace's
//! share with output ≤ L (its empirical law, [`PlanTrace::output_law`]).

use std::path::Path;

use anyhow::{Result, bail};
use queueing::dist::{Empirical, TokenDist};
use sim::continuous::Request;

/// The trace the planner replays.
#[derive(Debug, Clone)]
pub struct PlanTrace {
    /// The requests, arrivals in seconds from the first, as recorded.
    pub requests: Vec<Request>,
    /// The trace's own mean rate, req/s.
    pub mean_rate_rps: f64,
    /// The trace as named (`--trace`).
    pub source: String,
}

impl PlanTrace {
    /// Read `--trace SPEC`: a built-in name (azure-conv, azure-code) or a file, as
    /// `tokenq replay --trace` reads it.
    pub fn load(spec: &str) -> Result<Self> {
        Self::new(crate::replay::read_trace(Path::new(spec))?, spec)
    }

    /// From requests in arrival order.
    pub fn new(mut requests: Vec<Request>, source: &str) -> Result<Self> {
        let n = requests.len();
        if n < 2 {
            bail!("--trace {source}: a trace needs at least 2 requests");
        }
        let t0 = requests[0].arrival_s;
        for r in &mut requests {
            r.arrival_s -= t0;
        }
        let span = requests[n - 1].arrival_s;
        if !(span.is_finite() && span > 0.0) {
            bail!("--trace {source}: every request arrives at the same instant; no rate to scale");
        }
        Ok(Self {
            requests,
            mean_rate_rps: (n - 1) as f64 / span,
            source: source.to_string(),
        })
    }

    /// The empirical law of the output lengths (for the limits searched and the share served
    /// whole).
    pub fn output_law(&self) -> Result<TokenDist> {
        self.law("output", |r| r.output_tokens)
    }

    /// The empirical law of the prompt lengths (continuous batching's capacity scale).
    pub fn input_law(&self) -> Result<TokenDist> {
        self.law("input", |r| r.input_tokens)
    }

    fn law(&self, what: &str, len: fn(&Request) -> u32) -> Result<TokenDist> {
        let v: Vec<f64> = self.requests.iter().map(|r| f64::from(len(r))).collect();
        Empirical::from_samples(&v, format!("{} {what} tokens", self.source))
            .map(TokenDist::Empirical)
            .map_err(|e| anyhow::anyhow!("--trace {}: {e}", self.source))
    }

    /// How much the time axis is stretched to run at `rate_rps`.
    fn stretch(&self, rate_rps: f64) -> f64 {
        self.mean_rate_rps / rate_rps
    }

    /// The requests at total rate `rate_rps`, outputs clipped at `max_tokens` (at least 1).
    pub fn requests_at(&self, rate_rps: f64, max_tokens: f64) -> Vec<Request> {
        let k = self.stretch(rate_rps);
        self.requests
            .iter()
            .map(|r| Request {
                arrival_s: r.arrival_s * k,
                output_tokens: (f64::from(r.output_tokens).min(max_tokens.floor()).max(1.0)) as u32,
                ..*r
            })
            .collect()
    }

    /// Arrival times at total rate `rate_rps` and the output lengths as recorded.
    pub fn feed_at(&self, rate_rps: f64) -> (Vec<f64>, Vec<f64>) {
        let k = self.stretch(rate_rps);
        self.requests
            .iter()
            .map(|r| (r.arrival_s * k, f64::from(r.output_tokens)))
            .unzip()
    }

    /// `trace azure-conv (19366 requests recorded at 5.25 req/s)`.
    pub fn describe(&self) -> String {
        format!(
            "trace {} ({} requests recorded at {:.4} req/s, its time axis stretched to each rate)",
            self.source,
            self.requests.len(),
            self.mean_rate_rps
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace() -> PlanTrace {
        let reqs = [(10.0, 5, 100), (12.0, 6, 300), (14.0, 7, 200)]
            .map(|(t, i, o)| Request::new(t, i, o))
            .to_vec();
        PlanTrace::new(reqs, "t").unwrap()
    }

    #[test]
    fn rate_stretches_time_and_the_limit_clips_outputs() {
        let t = trace();
        // 2 gaps over 4 s: 0.5 req/s as recorded.
        assert_eq!(t.mean_rate_rps, 0.5);
        let r = t.requests_at(1.0, 250.0);
        assert_eq!(
            r.iter().map(|r| r.arrival_s).collect::<Vec<_>>(),
            [0.0, 1.0, 2.0]
        );
        assert_eq!(
            r.iter().map(|r| r.output_tokens).collect::<Vec<_>>(),
            [100, 250, 200]
        );
        assert_eq!(r[1].input_tokens, 6);
        let (a, o) = t.feed_at(0.25);
        assert_eq!(a, [0.0, 4.0, 8.0]);
        assert_eq!(o, [100.0, 300.0, 200.0]);
        let law = t.output_law().unwrap();
        assert!((law.cdf(200.0) - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(law.cdf(99.0), 0.0);
    }

    #[test]
    fn degenerate_traces_are_refused() {
        let one = vec![Request::new(0.0, 1, 1)];
        assert!(PlanTrace::new(one, "x").is_err());
        let same = vec![Request::new(1.0, 1, 1), Request::new(1.0, 1, 1)];
        let e = PlanTrace::new(same, "x").unwrap_err().to_string();
        assert!(e.starts_with("--trace x:"), "{e}");
    }
}
