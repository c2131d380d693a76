//! How a number was obtained, and an estimate with its confidence interval.
//!
//! Every model result in tokenq carries a [`Method`] (docs/models.md, "Method labels"): a
//! reader must always know whether a value is exact, a bound, an approximation, a simulation
//! estimate with its interval, a measurement or a fitted line. [`Estimate`] is the one
//! point-and-interval type that the simulator, the comparisons and the reports share.

use serde::{Deserialize, Serialize};

/// How a number was obtained. Every model result carries one, and the CLI prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Exact up to floating point and a stated numerical tolerance.
    Exact,
    /// A proven (or, where stated, heuristic) upper bound.
    Bound,
    /// An approximation whose error is not controlled (e.g. De Kok–Tijms interpolation).
    Approximation,
    /// An estimate from the event-driven simulator, with a confidence interval.
    Simulation,
    /// A measurement (profiler timings).
    Measured,
    /// A least-squares fit to measurements.
    Fitted,
}

impl Method {
    /// The lower-case label used in tables, legends and JSON.
    pub fn label(self) -> &'static str {
        match self {
            Method::Exact => "exact",
            Method::Bound => "bound",
            Method::Approximation => "approximation",
            Method::Simulation => "simulation",
            Method::Measured => "measured",
            Method::Fitted => "fitted",
        }
    }
}

impl Method {
    /// Whether a series of this kind is drawn as markers (data) rather than as a line (model).
    pub fn is_points(self) -> bool {
        matches!(self, Method::Simulation | Method::Measured)
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// A point estimate with the half-width of its confidence interval (same unit as the value).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// Point estimate.
    pub value: f64,
    /// Half-width of the confidence interval (NaN when fewer than 2 units had data).
    pub half_width: f64,
}

impl Estimate {
    /// Lower end of the interval.
    pub fn lo(&self) -> f64 {
        self.value - self.half_width
    }
    /// Upper end of the interval.
    pub fn hi(&self) -> f64 {
        self.value + self.half_width
    }
    /// Whether `x` lies in the closed interval.
    pub fn contains(&self, x: f64) -> bool {
        x >= self.lo() && x <= self.hi()
    }
    /// `(x − value) / half_width`: how many half-widths `x` lies from the estimate (NaN
    /// without an interval).
    pub fn half_widths_to(&self, x: f64) -> f64 {
        if self.half_width > 0.0 {
            (x - self.value) / self.half_width
        } else {
            f64::NAN
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_ends_and_distance() {
        let e = Estimate {
            value: 10.0,
            half_width: 2.0,
        };
        assert_eq!((e.lo(), e.hi()), (8.0, 12.0));
        assert!(e.contains(8.0) && e.contains(12.0) && !e.contains(12.5));
        assert_eq!(e.half_widths_to(13.0), 1.5);
        let none = Estimate {
            value: 1.0,
            half_width: f64::NAN,
        };
        assert!(none.half_widths_to(2.0).is_nan());
    }

    #[test]
    fn labels_match_serde_names() {
        for m in [
            Method::Exact,
            Method::Bound,
            Method::Approximation,
            Method::Simulation,
            Method::Measured,
            Method::Fitted,
        ] {
            let json = toml::Value::try_from(m).unwrap();
            assert_eq!(json.as_str(), Some(m.label()));
        }
    }
}
