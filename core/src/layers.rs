//! Step time composed from per-layer kernel tables, LLMServingSim's composition (docs/serving.md
//! "From per-layer tables"; data layout of `datasets/llmservingsim/<GPU>/`, times in µs per
//! layer instance). This is the one reader of those tables: the continuous-batching replay
//! steps through it and `fit` imports virtual profiles from it.
//!
//! ```text
//! t = embedding(T) + final_layernorm(T) + lm_head(S) + sampler(S)
//!   + L · [ 2·layernorm(T) + qkv_proj(T) + rotary_emb(T) + o_proj(T) + gate_up_proj(T) + act_fn(T)
//!           + down_proj(T) + attention(Σp, Σkv_p, n_d, mean decode context) ]
//! ```
//!
//! T = tokens in the step, S = sequences, L decoder layers (32 for Llama-3.1-8B). 1-D tables
//! are interpolated linearly, with linear extrapolation past either end. The attention table is
//! a set of (prefill chunk, n_decode) slices, each a (possibly ragged) grid over (kv_prefill,
//! kv_decode); it is interpolated linearly on each axis: between the two neighbouring chunk
//! values, then the two neighbouring n_decode values, then within each slice between the two
//! neighbouring kv_prefill rows that cover the kv_decode value, and along kv_decode within a
//! row. The regimes "no prefill" (chunk 0) / "prefill" and "no decode" (n_decode 0) / "decode"
//! are kept apart (a 5-token chunk uses the 16-token slice, never half of the chunk-0 slice);
//! where the grid has no slice for a (chunk, n_decode) the nearest slice is used, and kv values
//! outside a slice's range are clamped to it.
//!
//! Optional skew correction (`skew_fit.csv`): for a decode batch with uneven contexts,
//! `t_attn = t(mean) + α·(t(max) − t(mean))`, α from buckets of (prefill chunk, n_d, skew rate
//! (mean − min)/(max − min), max context, prefill context); a missing bucket uses
//! [`SKEW_ALPHA_DEFAULT`]. The chunk bucket is the smallest profiled chunk ≥ Σp (0 without
//! prefill).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::csv::read_csv;
use crate::error::CoreError;
use crate::step::{StepBatch, StepModel};

/// Layers of `dense.csv` the composition needs.
pub const DENSE_LAYERS: [&str; 9] = [
    "embedding",
    "final_layernorm",
    "layernorm",
    "qkv_proj",
    "rotary_emb",
    "o_proj",
    "gate_up_proj",
    "act_fn",
    "down_proj",
];
/// Layers of `per_sequence.csv` the composition needs.
pub const PER_SEQUENCE_LAYERS: [&str; 2] = ["lm_head", "sampler"];
/// Decoder layers of Llama-3.1-8B.
pub const LLAMA_3_1_8B_LAYERS: u32 = 32;
/// α for a skew bucket the table does not have (docs/serving.md "From per-layer tables").
pub const SKEW_ALPHA_DEFAULT: f64 = 0.0543;
const US: f64 = 1e-6;

/// Piecewise-linear function of one variable.
#[derive(Debug, Clone)]
pub struct Interp1 {
    xs: Vec<f64>,
    ys: Vec<f64>,
}

impl Interp1 {
    /// From points (sorted here; duplicate x values are averaged).
    pub fn new(mut pts: Vec<(f64, f64)>) -> Self {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut xs: Vec<f64> = Vec::with_capacity(pts.len());
        let mut ys: Vec<f64> = Vec::with_capacity(pts.len());
        let mut cnt: Vec<f64> = Vec::with_capacity(pts.len());
        for (x, y) in pts {
            if xs.last() == Some(&x) {
                let k = ys.len() - 1;
                ys[k] += y;
                cnt[k] += 1.0;
            } else {
                xs.push(x);
                ys.push(y);
                cnt.push(1.0);
            }
        }
        for (y, c) in ys.iter_mut().zip(cnt) {
            *y /= c;
        }
        Self { xs, ys }
    }

    /// Lowest and highest x.
    pub fn range(&self) -> (f64, f64) {
        (self.xs[0], self.xs[self.xs.len() - 1])
    }

    fn segment(&self, x: f64) -> usize {
        // Index i of the segment [x_i, x_{i+1}] used for x (clamped to the end segments).
        let n = self.xs.len();
        let i = self.xs.partition_point(|&v| v <= x);
        i.saturating_sub(1).min(n - 2)
    }

    /// Value at x, extrapolating linearly past either end.
    pub fn eval(&self, x: f64) -> f64 {
        if self.xs.len() == 1 {
            return self.ys[0];
        }
        let i = self.segment(x);
        let (x0, x1, y0, y1) = (self.xs[i], self.xs[i + 1], self.ys[i], self.ys[i + 1]);
        y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    }

    /// Value at x clamped into the table's range.
    pub fn eval_clamped(&self, x: f64) -> f64 {
        let (lo, hi) = self.range();
        self.eval(x.clamp(lo, hi))
    }
}

/// Neighbours of `x` in sorted `v` with linear weights; clamps to the nearest end.
fn bracket(v: &[u32], x: f64) -> [(usize, f64); 2] {
    debug_assert!(!v.is_empty());
    let n = v.len();
    let i = v.partition_point(|&a| f64::from(a) <= x);
    if i == 0 {
        return [(0, 1.0), (0, 0.0)];
    }
    if i == n {
        return [(n - 1, 1.0), (n - 1, 0.0)];
    }
    let (a, b) = (f64::from(v[i - 1]), f64::from(v[i]));
    let w = (x - a) / (b - a);
    [(i - 1, 1.0 - w), (i, w)]
}

/// One (chunk, n_decode) slice: rows over kv_prefill, each a function of kv_decode.
#[derive(Debug, Clone)]
struct Slice {
    kp: Vec<u32>,
    rows: Vec<Interp1>,
    /// Lowest and highest kv_decode over all rows.
    kd_lo: f64,
    kd_hi: f64,
}

impl Slice {
    fn new(kp: Vec<u32>, rows: Vec<Interp1>) -> Self {
        let kd_lo = rows
            .iter()
            .map(|r| r.range().0)
            .fold(f64::INFINITY, f64::min);
        let kd_hi = rows
            .iter()
            .map(|r| r.range().1)
            .fold(f64::NEG_INFINITY, f64::max);
        Self {
            kp,
            rows,
            kd_lo,
            kd_hi,
        }
    }

    fn eval(&self, kp: f64, kd: f64) -> f64 {
        // Among the rows whose kv_decode range covers kd (clamped into the slice's range), the
        // nearest kv_prefill row at or below kp and the nearest above; one of them at the ends.
        let kd = kd.clamp(self.kd_lo, self.kd_hi);
        let mut lower: Option<usize> = None;
        let mut upper: Option<usize> = None;
        for (i, (k, r)) in self.kp.iter().zip(&self.rows).enumerate() {
            let (a, b) = r.range();
            if !(a <= kd && kd <= b) {
                continue;
            }
            let k = f64::from(*k);
            if k <= kp {
                if lower.is_none_or(|j| f64::from(self.kp[j]) < k) {
                    lower = Some(i);
                }
            } else if upper.is_none_or(|j| f64::from(self.kp[j]) > k) {
                upper = Some(i);
            }
        }
        match (lower, upper) {
            (Some(i), Some(j)) => {
                let (k0, k1) = (f64::from(self.kp[i]), f64::from(self.kp[j]));
                let w = (kp - k0) / (k1 - k0);
                (1.0 - w) * self.rows[i].eval_clamped(kd) + w * self.rows[j].eval_clamped(kd)
            }
            (Some(i), None) | (None, Some(i)) => self.rows[i].eval_clamped(kd),
            // No row covers kd (cannot happen when one row spans the slice's range): clamp.
            (None, None) => bracket(&self.kp, kp)
                .iter()
                .filter(|(_, w)| *w != 0.0)
                .map(|&(i, w)| w * self.rows[i].eval_clamped(kd))
                .sum(),
        }
    }
}

/// Slices of one regime (prefill or not × decode or not), by chunk then n_decode.
#[derive(Debug, Clone, Default)]
struct Regime {
    chunks: Vec<u32>,
    nds: Vec<Vec<u32>>,
    slice: Vec<Vec<usize>>,
}

/// The 4-D attention table.
#[derive(Debug, Clone)]
pub struct AttentionGrid {
    /// Indexed by `2·(chunk > 0) + (n_decode > 0)`.
    regimes: [Regime; 4],
    slices: Vec<Slice>,
}

/// Rows of one slice: kv_prefill → points (kv_decode, time).
type SliceRows = HashMap<u32, Vec<(f64, f64)>>;

impl AttentionGrid {
    fn from_rows(rows: &[[f64; 5]]) -> Self {
        let mut map: HashMap<(u32, u32), SliceRows> = HashMap::new();
        for r in rows {
            map.entry((r[0] as u32, r[2] as u32))
                .or_default()
                .entry(r[1] as u32)
                .or_default()
                .push((r[3], r[4]));
        }
        let mut keys: Vec<(u32, u32)> = map.keys().copied().collect();
        keys.sort_unstable();
        let mut regimes: [Regime; 4] = Default::default();
        let mut slices = Vec::new();
        for key in keys {
            let mut rows_map = map.remove(&key).unwrap_or_default();
            let mut kps: Vec<u32> = rows_map.keys().copied().collect();
            kps.sort_unstable();
            let rows = kps
                .iter()
                .map(|k| Interp1::new(rows_map.remove(k).unwrap_or_default()))
                .collect();
            let g = &mut regimes[2 * usize::from(key.0 > 0) + usize::from(key.1 > 0)];
            if g.chunks.last() != Some(&key.0) {
                g.chunks.push(key.0);
                g.nds.push(Vec::new());
                g.slice.push(Vec::new());
            }
            g.nds.last_mut().unwrap().push(key.1);
            g.slice.last_mut().unwrap().push(slices.len());
            slices.push(Slice::new(kps, rows));
        }
        Self { regimes, slices }
    }

    /// Attention time (table units) for a prefill chunk `c` on `kp` cached tokens plus `nd`
    /// decodes with context `kd` each; NaN when the table has no slice of that regime.
    pub fn eval(&self, c: u32, kp: f64, nd: u32, kd: f64) -> f64 {
        if c == 0 && nd == 0 {
            return 0.0;
        }
        let g = &self.regimes[2 * usize::from(c > 0) + usize::from(nd > 0)];
        if g.chunks.is_empty() {
            return f64::NAN;
        }
        let mut t = 0.0;
        for (ci, wc) in bracket(&g.chunks, f64::from(c)) {
            if wc == 0.0 {
                continue;
            }
            for (ni, wn) in bracket(&g.nds[ci], f64::from(nd)) {
                if wn == 0.0 {
                    continue;
                }
                t += wc * wn * self.slices[g.slice[ci][ni]].eval(kp, kd);
            }
        }
        t
    }
}

/// α of the skew correction by bucket.
#[derive(Debug, Clone)]
pub struct SkewTable {
    pcs: Vec<u32>,
    alpha: HashMap<(u32, String, String, String, String), f64>,
}

fn n_label(n: u32) -> String {
    let mut e = 2u32;
    while e < n && e < 256 {
        e *= 2;
    }
    format!("n<={e}")
}

fn skew_label(sr: f64) -> &'static str {
    if sr <= 0.05 {
        "sr<=5%"
    } else if sr <= 0.15 {
        "sr<=15%"
    } else if sr <= 0.40 {
        "sr<=40%"
    } else if sr <= 0.70 {
        "sr<=70%"
    } else {
        "sr>70%"
    }
}

fn kv_big_label(kv: u32) -> &'static str {
    if kv <= 1024 {
        "kvB<=1k"
    } else if kv <= 4096 {
        "kvB<=4k"
    } else if kv <= 16_384 {
        "kvB<=16k"
    } else {
        "kvB>16k"
    }
}

fn kp_label(kp: u64) -> &'static str {
    match kp {
        0 => "kp=0",
        1..=512 => "kp<=512",
        513..=1024 => "kp<=1k",
        1025..=2048 => "kp<=2k",
        2049..=4096 => "kp<=4k",
        4097..=8192 => "kp<=8k",
        _ => "kp>8k",
    }
}

impl SkewTable {
    /// α for a batch.
    pub fn alpha(&self, b: &StepBatch) -> f64 {
        let pc = if b.prefill_tokens == 0 {
            0
        } else {
            let i = self.pcs.partition_point(|&p| p < b.prefill_tokens);
            self.pcs[i.min(self.pcs.len() - 1)]
        };
        let (lo, hi) = (
            f64::from(b.decode_context_min),
            f64::from(b.decode_context_max),
        );
        let sr = (b.mean_decode_context() - lo) / (hi - lo);
        let key = (
            pc,
            n_label(b.n_decode),
            skew_label(sr).to_string(),
            kv_big_label(b.decode_context_max).to_string(),
            kp_label(b.prefill_context).to_string(),
        );
        self.alpha.get(&key).copied().unwrap_or(SKEW_ALPHA_DEFAULT)
    }
}

/// Per-layer table step model.
#[derive(Debug, Clone)]
pub struct TableStepModel {
    dir: PathBuf,
    dense: Vec<Interp1>,
    lm_head: Interp1,
    sampler: Interp1,
    attention: AttentionGrid,
    skew: Option<SkewTable>,
    layers: u32,
}

fn ferr(path: &Path, msg: impl Into<String>) -> CoreError {
    CoreError::File {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

fn numeric_rows<const K: usize>(
    path: &Path,
    need: [&str; K],
    text_first: bool,
) -> Result<Vec<(String, [f64; K])>, CoreError> {
    let (header, rows) = read_csv(path)?;
    let idx: Vec<usize> = need
        .iter()
        .map(|n| {
            header.iter().position(|h| h == n).ok_or_else(|| {
                ferr(
                    path,
                    format!("missing column `{n}`; expected columns {need:?}"),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(rows.len());
    for (k, r) in rows.iter().enumerate() {
        let mut v = [0.0; K];
        let mut name = String::new();
        for (j, &c) in idx.iter().enumerate() {
            let s = r.get(c).map(String::as_str).unwrap_or("");
            if text_first && j == 0 {
                name = s.to_string();
                continue;
            }
            v[j] = s
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| {
                    ferr(
                        path,
                        format!(
                            "line {}: `{}` = `{s}` is not a non-negative number",
                            k + 2,
                            need[j]
                        ),
                    )
                })?;
        }
        out.push((name, v));
    }
    if out.is_empty() {
        return Err(ferr(path, "no data rows"));
    }
    Ok(out)
}

fn layer_tables(path: &Path, x_col: &str, layers: &[&str]) -> Result<Vec<Interp1>, CoreError> {
    let rows = numeric_rows(path, ["layer", x_col, "time_us"], true)?;
    let mut out = Vec::new();
    for l in layers {
        let pts: Vec<(f64, f64)> = rows
            .iter()
            .filter(|(n, _)| n == l)
            .map(|(_, v)| (v[1], v[2]))
            .collect();
        if pts.is_empty() {
            return Err(ferr(
                path,
                format!(
                    "layer `{l}` is missing; the step model needs layers {layers:?} (LLMServingSim layout)"
                ),
            ));
        }
        if pts.len() < 2 {
            return Err(ferr(
                path,
                format!("layer `{l}` has one point; need at least two to interpolate"),
            ));
        }
        out.push(Interp1::new(pts));
    }
    Ok(out)
}

impl TableStepModel {
    /// Load `dense.csv`, `per_sequence.csv`, `attention.csv` (and `skew_fit.csv` when `skew`)
    /// from `dir`, for a model of `layers` decoder layers.
    pub fn load(dir: &Path, layers: u32, skew: bool) -> Result<Self, CoreError> {
        if !dir.is_dir() {
            return Err(ferr(
                dir,
                "not a directory; --step-table expects a folder with dense.csv, per_sequence.csv and attention.csv",
            ));
        }
        if layers == 0 {
            return Err(CoreError::Setting {
                flag: "layers",
                need: "at least 1",
                got: "0".into(),
                fix: "give the model's decoder layer count (32 for Llama-3.1-8B)",
            });
        }
        let dense = layer_tables(&dir.join("dense.csv"), "tokens", &DENSE_LAYERS)?;
        let mut per = layer_tables(
            &dir.join("per_sequence.csv"),
            "sequences",
            &PER_SEQUENCE_LAYERS,
        )?;
        let sampler = per.pop().expect("two layers");
        let lm_head = per.pop().expect("two layers");
        let apath = dir.join("attention.csv");
        let arows: Vec<[f64; 5]> = numeric_rows(
            &apath,
            [
                "prefill_chunk",
                "kv_prefill",
                "n_decode",
                "kv_decode",
                "time_us",
            ],
            false,
        )?
        .into_iter()
        .map(|(_, v)| v)
        .collect();
        let attention = AttentionGrid::from_rows(&arows);
        for (want_p, want_d, what) in [
            (false, true, "decode-only (prefill_chunk 0, n_decode > 0)"),
            (true, false, "prefill-only (prefill_chunk > 0, n_decode 0)"),
            (true, true, "mixed (prefill_chunk > 0, n_decode > 0)"),
        ] {
            let t = attention.eval(u32::from(want_p) * 16, 0.0, u32::from(want_d), 16.0);
            if !t.is_finite() {
                return Err(ferr(
                    &apath,
                    format!("no {what} rows; the attention grid needs all three regimes"),
                ));
            }
        }
        let skew = if skew {
            let spath = dir.join("skew_fit.csv");
            if !spath.exists() {
                return Err(ferr(
                    &spath,
                    "missing; --skew needs skew_fit.csv beside the tables (or drop --skew)",
                ));
            }
            let (header, rows) = read_csv(&spath)?;
            let need = [
                "pc",
                "n_label",
                "skew_rate_label",
                "kv_big_label",
                "kp_label",
                "alpha",
            ];
            let idx: Vec<usize> = need
                .iter()
                .map(|n| {
                    header
                        .iter()
                        .position(|h| h == n)
                        .ok_or_else(|| ferr(&spath, format!("missing column `{n}`")))
                })
                .collect::<Result<_, _>>()?;
            let mut alpha = HashMap::new();
            let mut pcs = Vec::new();
            for (k, r) in rows.iter().enumerate() {
                let g = |j: usize| r.get(idx[j]).map(String::as_str).unwrap_or("");
                let pc: u32 = g(0)
                    .parse()
                    .map_err(|_| ferr(&spath, format!("line {}: bad pc `{}`", k + 2, g(0))))?;
                let a: f64 = g(5)
                    .parse()
                    .map_err(|_| ferr(&spath, format!("line {}: bad alpha `{}`", k + 2, g(5))))?;
                pcs.push(pc);
                alpha.insert(
                    (
                        pc,
                        g(1).to_string(),
                        g(2).to_string(),
                        g(3).to_string(),
                        g(4).to_string(),
                    ),
                    a,
                );
            }
            pcs.sort_unstable();
            pcs.dedup();
            if pcs.is_empty() {
                return Err(ferr(&spath, "no data rows"));
            }
            Some(SkewTable { pcs, alpha })
        } else {
            None
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            dense,
            lm_head,
            sampler,
            attention,
            skew,
            layers,
        })
    }

    /// Attention time per layer in µs, with the skew correction when enabled.
    pub fn attention_us(&self, b: &StepBatch) -> f64 {
        let c = b.prefill_tokens;
        let kp = b.prefill_context as f64;
        let mean = b.mean_decode_context();
        let t_mean = self.attention.eval(c, kp, b.n_decode, mean);
        match &self.skew {
            Some(s) if b.n_decode >= 2 && b.decode_context_max > b.decode_context_min => {
                let t_max = self
                    .attention
                    .eval(c, kp, b.n_decode, f64::from(b.decode_context_max));
                t_mean + s.alpha(b) * (t_max - t_mean)
            }
            _ => t_mean,
        }
    }

    /// The largest prefill (tokens in one chunk) and decode batch (requests) the tables cover
    /// without extrapolation: the smaller of the dense/per-sequence tables' ends and the
    /// attention grid's prefill-only chunks and decode-only batch sizes.
    pub fn covered_prefill_and_decode(&self) -> (f64, f64) {
        let dense_tokens = self
            .dense
            .iter()
            .map(|f| f.range().1)
            .fold(f64::INFINITY, f64::min);
        let seqs = self.lm_head.range().1.min(self.sampler.range().1);
        let last = |v: &[u32]| v.last().map_or(0.0, |&x| f64::from(x));
        let prefill = &self.attention.regimes[2];
        let decode = &self.attention.regimes[1];
        let chunk = last(&prefill.chunks);
        let nd = decode.nds.first().map_or(0.0, |v| last(v));
        (dense_tokens.min(chunk), seqs.min(nd))
    }

    /// Dense layers of one decoder layer at T tokens, µs (2·layernorm + projections + MLP).
    pub fn decoder_dense_us(&self, t: f64) -> f64 {
        let d = &self.dense;
        2.0 * d[2].eval(t)
            + d[3].eval(t)
            + d[4].eval(t)
            + d[5].eval(t)
            + d[6].eval(t)
            + d[7].eval(t)
            + d[8].eval(t)
    }
}

impl StepModel for TableStepModel {
    fn step_time_s(&self, b: &StepBatch) -> f64 {
        let t = f64::from(b.tokens());
        let s = f64::from(b.sequences());
        if t == 0.0 {
            return 0.0;
        }
        let d = &self.dense;
        let us = d[0].eval(t)
            + d[1].eval(t)
            + self.lm_head.eval(s)
            + self.sampler.eval(s)
            + f64::from(self.layers) * (self.decoder_dense_us(t) + self.attention_us(b));
        us * US
    }

    fn describe(&self) -> String {
        format!(
            "per-layer tables {} ({} layers{})",
            self.dir.display(),
            self.layers,
            if self.skew.is_some() {
                ", skew correction"
            } else {
                ""
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interp_inside_and_outside() {
        let f = Interp1::new(vec![(2.0, 20.0), (1.0, 10.0), (4.0, 30.0), (4.0, 50.0)]);
        assert_eq!(f.eval(1.5), 15.0);
        assert_eq!(f.eval(3.0), 30.0); // (20 + 40)/2: knot 4 averages 30 and 50
        assert_eq!(f.eval(0.0), 0.0); // extrapolated with the first segment
        assert_eq!(f.eval(6.0), 60.0); // and the last
        assert_eq!(f.eval_clamped(6.0), 40.0);
        assert_eq!(Interp1::new(vec![(1.0, 7.0)]).eval(3.0), 7.0);
    }

    #[test]
    fn bracket_weights() {
        assert_eq!(bracket(&[10, 20], 15.0), [(0, 0.5), (1, 0.5)]);
        assert_eq!(bracket(&[10, 20], 5.0), [(0, 1.0), (0, 0.0)]);
        assert_eq!(bracket(&[10, 20], 25.0), [(1, 1.0), (1, 0.0)]);
    }
}
