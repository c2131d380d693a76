//! The service-time law as the lattice solve of [`super`] sees it: `R(x) = E[min(S, x)]`,
//! `R₂(x) = E[min(S, x)²]/2`, `T(x) = E[(S − x)⁺]`, `P(S > x)`, its heaviest atom and, for
//! purely atomic laws, its atoms.

use crate::dist::TokenDist;
use crate::impatience::ServiceLaw;
use crate::mg1::{QueueError, validate_limit};

/// Probability below which the tail of a continuous token law is cut (unbounded laws).
const TOKEN_TAIL_CUT: f64 = 1e-16;
/// Atomic service laws with at most this many atoms get the sojourn time by a direct sum
/// over the atoms (see [`Svc::service_atoms`]).
pub(super) const MAX_DIRECT_ATOMS: usize = 4096;

/// Prefix sums of a histogram for `E[min(N, m)^k]` and `P(N > x)` in O(log K).
#[derive(Debug, Clone)]
pub(super) struct Atoms {
    values: Vec<f64>,
    /// `Σ_{j<k} v_j p_j`, `Σ_{j<k} v_j² p_j` (length K + 1).
    m1: Vec<f64>,
    m2: Vec<f64>,
    /// `Σ_{j≥k} p_j` (length K + 1), summed from the top.
    tail: Vec<f64>,
    probs: Vec<f64>,
}

impl Atoms {
    fn new(values: Vec<f64>, probs: Vec<f64>) -> Self {
        let k = values.len();
        let mut m1 = vec![0.0; k + 1];
        let mut m2 = vec![0.0; k + 1];
        let mut tail = vec![0.0; k + 1];
        for j in 0..k {
            m1[j + 1] = m1[j] + values[j] * probs[j];
            m2[j + 1] = m2[j] + values[j] * values[j] * probs[j];
        }
        for j in (0..k).rev() {
            tail[j] = tail[j + 1] + probs[j];
        }
        Atoms {
            values,
            m1,
            m2,
            tail,
            probs,
        }
    }

    /// `(E[min(N, l)], E[min(N, l)²])`.
    fn clipped(&self, l: f64) -> (f64, f64) {
        let k = self.values.partition_point(|&v| v <= l);
        let t = self.tail[k];
        (self.m1[k] + l * t, self.m2[k] + l * l * t)
    }

    /// `P(N > x)`.
    fn sf(&self, x: f64) -> f64 {
        self.tail[self.values.partition_point(|&v| v <= x)]
    }

    /// `P(N ≥ x)`.
    fn sf_incl(&self, x: f64) -> f64 {
        self.tail[self.values.partition_point(|&v| v < x)]
    }
}

/// The service law as the solver sees it.
#[derive(Debug, Clone)]
pub(super) enum Svc {
    Exponential {
        mean: f64,
    },
    Deterministic {
        value: f64,
    },
    /// `S = a·min(N, l) + c`; `atoms` for histograms and point masses.
    Tokens {
        tokens: TokenDist,
        atoms: Option<Box<Atoms>>,
        l: f64,
        a: f64,
        c: f64,
        /// Largest value of S (`∞` for an unbounded law).
        s_max: f64,
        /// `(E[S], E[S²])`.
        es: f64,
    },
}

impl Svc {
    pub(super) fn new(law: &ServiceLaw) -> Result<Self, QueueError> {
        let positive = |v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(v)
            } else {
                Err(QueueError::Invalid {
                    what: "service time",
                    why: format!("must be a finite number > 0 s, got {v}"),
                })
            }
        };
        Ok(match law {
            ServiceLaw::Exponential { mean_s } => Svc::Exponential {
                mean: positive(*mean_s)?,
            },
            ServiceLaw::Deterministic { value_s } => Svc::Deterministic {
                value: positive(*value_s)?,
            },
            ServiceLaw::Tokens {
                tokens,
                max_tokens,
                service,
            } => {
                validate_limit(*max_tokens)?;
                service.validate()?;
                tokens.validate().map_err(|why| QueueError::Invalid {
                    what: "token distribution",
                    why,
                })?;
                let atoms = match tokens {
                    TokenDist::Empirical(_) | TokenDist::Constant { .. } => tokens
                        .atoms()
                        .map(|(values, probs)| Box::new(Atoms::new(values, probs))),
                    _ => None,
                };
                let (a, c) = (service.per_token_s, service.intercept_s);
                let hi = tokens.support().1;
                let top = max_tokens.min(hi);
                let s_max = if a == 0.0 {
                    c
                } else if top.is_finite() {
                    a * top + c
                } else {
                    f64::INFINITY
                };
                let (m1, m2) = tokens.clipped_moments(*max_tokens);
                Svc::Tokens {
                    tokens: tokens.clone(),
                    atoms,
                    l: *max_tokens,
                    a,
                    c,
                    s_max,
                    es: service.moments(m1, m2).0,
                }
            }
        })
    }

    /// `E[S]`.
    pub(super) fn mean(&self) -> f64 {
        match *self {
            Svc::Exponential { mean } => mean,
            Svc::Deterministic { value } => value,
            Svc::Tokens { es, .. } => es,
        }
    }

    /// A point beyond which S has (almost) no mass, for the initial range.
    pub(super) fn upper(&self) -> f64 {
        match self {
            Svc::Exponential { mean } => *mean,
            Svc::Deterministic { value } => *value,
            Svc::Tokens {
                tokens,
                a,
                c,
                l,
                s_max,
                ..
            } => {
                if s_max.is_finite() {
                    *s_max
                } else {
                    a * tokens.isf(TOKEN_TAIL_CUT).min(*l) + c
                }
            }
        }
    }

    /// Position of the heaviest atom of S, if S has atoms.
    pub(super) fn heaviest_atom(&self) -> Option<f64> {
        match self {
            Svc::Exponential { .. } => None,
            Svc::Deterministic { value } => Some(*value),
            Svc::Tokens {
                tokens,
                atoms,
                l,
                a,
                c,
                ..
            } => {
                if *a == 0.0 {
                    return Some(*c);
                }
                let hi = tokens.support().1;
                // The clip atom at aL + c, of mass P(N ≥ L).
                let mut best: Option<(f64, f64)> = None;
                if *l < hi || (atoms.is_some() && *l <= hi) {
                    let mass = match (atoms, tokens) {
                        (Some(at), _) => at.sf_incl(*l),
                        (None, TokenDist::DiscreteUniform { .. }) => tokens.sf(l.ceil() - 1.0),
                        _ => tokens.sf(*l),
                    };
                    if mass > 0.0 {
                        best = Some((mass, a * l + c));
                    }
                }
                let single = match (atoms, tokens) {
                    (Some(at), _) => at
                        .values
                        .iter()
                        .zip(&at.probs)
                        .filter(|(v, _)| **v < *l)
                        .map(|(&v, &p)| (p, a * v + c))
                        .max_by(|x, y| x.0.total_cmp(&y.0)),
                    (None, TokenDist::DiscreteUniform { lo, hi }) if (*lo as f64) < *l => {
                        Some((1.0 / (hi - lo + 1) as f64, a * *lo as f64 + c))
                    }
                    _ => None,
                };
                if let Some(s) = single {
                    if best.is_none_or(|b| s.0 > b.0) {
                        best = Some(s);
                    }
                }
                best.map(|b| b.1)
            }
        }
    }

    /// `(E[min(S, x)], E[min(S, x)²]/2)`.
    pub(super) fn min_moments(&self, x: f64) -> (f64, f64) {
        match self {
            Svc::Exponential { mean } => {
                let u = x / mean;
                let e = (-u).exp();
                // ∫_0^x u e^{−u/m} du = m²(1 − e^{−u}(1 + u)); series for small u.
                let r2 = if u < 1e-3 {
                    mean * mean * u * u * (0.5 - u / 3.0 + u * u / 8.0)
                } else {
                    mean * mean * (1.0 - e * (1.0 + u))
                };
                (-mean * (-u).exp_m1(), r2)
            }
            Svc::Deterministic { value } => {
                let v = x.min(*value);
                (v, 0.5 * v * v)
            }
            Svc::Tokens {
                tokens,
                atoms,
                l,
                a,
                c,
                ..
            } => {
                if x <= *c || *a == 0.0 {
                    let v = x.min(*c);
                    return (v, 0.5 * v * v);
                }
                let m = ((x - c) / a).min(*l);
                let (n1, n2) = match atoms {
                    Some(at) => at.clipped(m),
                    None => tokens.clipped_moments(m),
                };
                (c + a * n1, 0.5 * (c * c + 2.0 * a * c * n1 + a * a * n2))
            }
        }
    }

    /// `min_moments` at `x_k = k h`, k < count; constant beyond the support.
    pub(super) fn min_moments_grid(&self, h: f64, count: usize) -> (Vec<f64>, Vec<f64>) {
        let mut r = Vec::with_capacity(count);
        let mut r2 = Vec::with_capacity(count);
        let top = match self {
            Svc::Deterministic { value } => *value,
            Svc::Tokens { s_max, .. } => *s_max,
            Svc::Exponential { .. } => f64::INFINITY,
        };
        let at_top = if top.is_finite() {
            Some(self.min_moments(top))
        } else {
            None
        };
        for k in 0..count {
            let x = k as f64 * h;
            let (a, b) = match at_top {
                Some(v) if x >= top => v,
                _ => self.min_moments(x),
            };
            r.push(a);
            r2.push(b);
        }
        (r, r2)
    }

    /// `T(x) = E[(S − x)⁺] = E[S] − E[min(S, x)]`.
    pub(super) fn excess(&self, x: f64) -> f64 {
        if let Svc::Tokens { s_max, .. } | Svc::Deterministic { value: s_max } = self {
            if x >= *s_max {
                return 0.0;
            }
        }
        self.excess_from_r(self.min_moments(x).0)
    }

    pub(super) fn excess_from_r(&self, r: f64) -> f64 {
        (self.mean() - r).max(0.0)
    }

    /// `P(S > x)`.
    pub(super) fn sf(&self, x: f64) -> f64 {
        match self {
            Svc::Exponential { mean } => {
                if x <= 0.0 {
                    1.0
                } else {
                    (-x / mean).exp()
                }
            }
            Svc::Deterministic { value } => f64::from(u8::from(x < *value)),
            Svc::Tokens {
                tokens,
                atoms,
                l,
                a,
                c,
                s_max,
                ..
            } => {
                if x >= *s_max {
                    0.0
                } else if x < *c {
                    1.0
                } else {
                    // a > 0 here (a = 0 gives s_max = c).
                    let m = ((x - c) / a).min(*l);
                    match atoms {
                        Some(at) => at.sf(m),
                        None => tokens.sf(m),
                    }
                }
            }
        }
    }
}

impl Svc {
    /// The atoms `(values, probabilities)` of S, ascending, when S is purely atomic with at most
    /// [`MAX_DIRECT_ATOMS`] atoms (histograms, point masses, deterministic service).
    pub(super) fn service_atoms(&self) -> Option<(Vec<f64>, Vec<f64>)> {
        match self {
            Svc::Exponential { .. } => None,
            Svc::Deterministic { value } => Some((vec![*value], vec![1.0])),
            Svc::Tokens {
                tokens, l, a, c, ..
            } => {
                if *a == 0.0 {
                    return Some((vec![*c], vec![1.0]));
                }
                if let TokenDist::DiscreteUniform { lo, hi } = tokens {
                    if hi - lo >= MAX_DIRECT_ATOMS as u64 {
                        return None;
                    }
                }
                let (vs, ps) = tokens.atoms()?;
                if vs.len() > MAX_DIRECT_ATOMS {
                    return None;
                }
                let mut values: Vec<f64> = Vec::with_capacity(vs.len());
                let mut probs: Vec<f64> = Vec::with_capacity(vs.len());
                for (v, p) in vs.into_iter().zip(ps) {
                    let s = a * v.min(*l) + c;
                    match (values.last(), probs.last_mut()) {
                        (Some(&last), Some(q)) if last == s => *q += p,
                        _ => {
                            values.push(s);
                            probs.push(p);
                        }
                    }
                }
                Some((values, probs))
            }
        }
    }
}
