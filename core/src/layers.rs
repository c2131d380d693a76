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
//! (mean − min)/(max − min), max context, prefill context); a missing bucket uses the profile's
//! `meta.yaml` `skew_fit.per_tp.<N>.alpha_default` when there is one, else
//! [`SKEW_ALPHA_DEFAULT`]. The chunk bucket is the smallest profiled chunk ≥ Σp (0 without
//! prefill). [`TableStepModel::open`] turns the correction on by default when the table folder
//! holds `skew_fit.csv`.
//!
//! Several GPUs (docs/serving.md "Several GPUs"): the model's own layer list comes from the model
//! yaml's `sequence` beside the tables (e.g. Qwen3 adds `qk_norm`; an MoE model has the MoE block
//! instead of the dense MLP), else from the layers `dense.csv` has; the layer count and shape from
//! `model_config.json`. Under tensor parallelism N the tables are one rank's shard (`tpN/`) and
//! every `o_proj` and `down_proj` is followed by a ring all-reduce of T·hidden activations
//! (2(N − 1) messages of D/N bytes, each `link_latency + bytes/link_bw`). The MoE block is
//! `moe.csv` at the tokens and activated experts of one EP rank (upstream's BALANCED gate), plus,
//! under EP, an all-gather of ⌊T/ep⌋·(hidden + experts) and a reduce-scatter of T·hidden
//! activations. [`StepModel::padded_step_time_s`] gives one DP rank's step when the group pads
//! every rank to the same token count.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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

/// α of the skew correction by bucket. Labels are kept as indices into the bucket edges below
/// (the CSV's `n_label`, `skew_rate_label`, `kv_big_label`, `kp_label` strings).
#[derive(Debug, Clone)]
pub struct SkewTable {
    pcs: Vec<u32>,
    alpha: HashMap<(u32, u8, u8, u8, u8), f64>,
}

/// `n_label` values, in bucket order (n ≤ 2, 4, …, 256; above).
const N_LABELS: [&str; 9] = [
    "n<=2", "n<=4", "n<=8", "n<=16", "n<=32", "n<=64", "n<=128", "n<=256", "n>256",
];
const SKEW_LABELS: [&str; 5] = ["sr<=5%", "sr<=15%", "sr<=40%", "sr<=70%", "sr>70%"];
const KV_BIG_LABELS: [&str; 4] = ["kvB<=1k", "kvB<=4k", "kvB<=16k", "kvB>16k"];
const KP_LABELS: [&str; 7] = [
    "kp=0", "kp<=512", "kp<=1k", "kp<=2k", "kp<=4k", "kp<=8k", "kp>8k",
];

fn n_label(n: u32) -> u8 {
    // n ≤ 2 → 0, ≤ 4 → 1, …, ≤ 256 → 7 (larger batches share the last edge).
    let mut e = 2u32;
    let mut i = 0u8;
    while e < n && e < 256 {
        e *= 2;
        i += 1;
    }
    i
}

fn skew_label(sr: f64) -> u8 {
    if sr <= 0.05 {
        0
    } else if sr <= 0.15 {
        1
    } else if sr <= 0.40 {
        2
    } else if sr <= 0.70 {
        3
    } else {
        4
    }
}

fn kv_big_label(kv: u32) -> u8 {
    if kv <= 1024 {
        0
    } else if kv <= 4096 {
        1
    } else if kv <= 16_384 {
        2
    } else {
        3
    }
}

fn kp_label(kp: u64) -> u8 {
    match kp {
        0 => 0,
        1..=512 => 1,
        513..=1024 => 2,
        1025..=2048 => 3,
        2049..=4096 => 4,
        4097..=8192 => 5,
        _ => 6,
    }
}

fn label_index(labels: &[&str], s: &str) -> Option<u8> {
    labels.iter().position(|l| *l == s).map(|i| i as u8)
}

impl SkewTable {
    /// α for a batch; `default` where the table has no bucket.
    pub fn alpha_or(&self, b: &StepBatch, default: f64) -> f64 {
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
            skew_label(sr),
            kv_big_label(b.decode_context_max),
            kp_label(b.prefill_context),
        );
        self.alpha.get(&key).copied().unwrap_or(default)
    }

    /// α for a batch ([`SKEW_ALPHA_DEFAULT`] where the table has no bucket).
    pub fn alpha(&self, b: &StepBatch) -> f64 {
        self.alpha_or(b, SKEW_ALPHA_DEFAULT)
    }

    fn load(spath: &Path) -> Result<Self, CoreError> {
        let (header, rows) = read_csv(spath)?;
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
                    .ok_or_else(|| ferr(spath, format!("missing column `{n}`")))
            })
            .collect::<Result<_, _>>()?;
        let mut alpha = HashMap::new();
        let mut pcs = Vec::new();
        for (k, r) in rows.iter().enumerate() {
            let g = |j: usize| r.get(idx[j]).map(String::as_str).unwrap_or("");
            let pc: u32 = g(0)
                .parse()
                .map_err(|_| ferr(spath, format!("line {}: bad pc `{}`", k + 2, g(0))))?;
            let a: f64 = g(5)
                .parse()
                .map_err(|_| ferr(spath, format!("line {}: bad alpha `{}`", k + 2, g(5))))?;
            pcs.push(pc);
            // A label outside the bucket edges above names no bucket a batch can fall in.
            if let (Some(n), Some(s), Some(kv), Some(kp)) = (
                label_index(&N_LABELS, g(1)),
                label_index(&SKEW_LABELS, g(2)),
                label_index(&KV_BIG_LABELS, g(3)),
                label_index(&KP_LABELS, g(4)),
            ) {
                alpha.insert((pc, n, s, kv, kp), a);
            }
        }
        pcs.sort_unstable();
        pcs.dedup();
        if pcs.is_empty() {
            return Err(ferr(spath, "no data rows"));
        }
        Ok(SkewTable { pcs, alpha })
    }
}

/// One link of the interconnect as upstream's cluster configuration describes it
/// (docs/serving.md "Several GPUs"): every message of a collective costs
/// `latency + bytes / bandwidth`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Link {
    /// `link_bw`, GB/s, read as 2^30 bytes per second (16 GB/s = 17.18 bytes/ns).
    pub bandwidth_gb_s: f64,
    /// `link_latency`, nanoseconds per message.
    pub latency_ns: f64,
}

impl Default for Link {
    /// The cluster configurations of the RTX PRO 6000 runs: 16 GB/s, 20 µs per message.
    fn default() -> Self {
        Self {
            bandwidth_gb_s: 16.0,
            latency_ns: 20_000.0,
        }
    }
}

impl Link {
    /// Bytes per nanosecond.
    pub fn bytes_per_ns(&self) -> f64 {
        self.bandwidth_gb_s * 1_073_741_824.0 / 1e9
    }

    /// One message of `bytes`, µs.
    pub fn message_us(&self, bytes: f64) -> f64 {
        (self.latency_ns + bytes / self.bytes_per_ns()) * 1e-3
    }

    /// Ring all-reduce of `bytes` over `ranks`: 2(N − 1) messages of bytes/N, µs.
    pub fn all_reduce_us(&self, bytes: f64, ranks: u32) -> f64 {
        if ranks <= 1 {
            return 0.0;
        }
        let n = f64::from(ranks);
        2.0 * (n - 1.0) * self.message_us(bytes / n)
    }

    /// Ring all-gather of a per-rank chunk of `chunk_bytes` over `ranks`: N − 1 messages of
    /// the chunk, µs.
    pub fn all_gather_us(&self, chunk_bytes: f64, ranks: u32) -> f64 {
        if ranks <= 1 {
            return 0.0;
        }
        f64::from(ranks - 1) * self.message_us(chunk_bytes)
    }

    /// Ring reduce-scatter of a `bytes` buffer over `ranks`: N − 1 messages of bytes/N, µs.
    pub fn reduce_scatter_us(&self, bytes: f64, ranks: u32) -> f64 {
        if ranks <= 1 {
            return 0.0;
        }
        let n = f64::from(ranks);
        (n - 1.0) * self.message_us(bytes / n)
    }
}

/// How one engine's model is spread over GPUs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Parallelism {
    /// Tensor-parallel degree: the tables are one rank's shard (`tpN/`), and every row-parallel
    /// layer (`o_proj`, `down_proj`) is followed by an all-reduce over the N ranks.
    pub tensor_parallel: u32,
    /// Expert-parallel ranks the MoE experts are split over (1: none). Each rank runs its share
    /// of the token–expert pairs, and the MoE block adds an all-gather and a reduce-scatter.
    pub expert_parallel: u32,
    /// The link the collectives run on.
    pub link: Link,
}

impl Default for Parallelism {
    fn default() -> Self {
        Self {
            tensor_parallel: 1,
            expert_parallel: 1,
            link: Link::default(),
        }
    }
}

/// What [`TableStepModel::open`] loads.
#[derive(Debug, Clone, Copy, Default)]
pub struct TableOptions {
    /// Decoder layers; `None`: `num_hidden_layers` of `model_config.json` beside the tables, else
    /// [`LLAMA_3_1_8B_LAYERS`].
    pub layers: Option<u32>,
    /// Skew correction; `None`: on when the table directory holds `skew_fit.csv` (unless the
    /// profile's `meta.yaml` says `skew_fit: enabled: false`).
    pub skew: Option<bool>,
    /// TP degree, EP ranks and link.
    pub parallel: Parallelism,
}

/// The model's shape, from the Hugging Face `model_config.json` beside the tables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelShape {
    /// `model_type` (names the layer-sequence yaml, e.g. `qwen3.yaml`).
    pub model_type: String,
    /// `hidden_size`.
    pub hidden_size: u32,
    /// `num_hidden_layers`.
    pub num_hidden_layers: u32,
    /// `num_experts` (`num_local_experts`), 0 for a dense model.
    pub num_experts: u32,
    /// `num_experts_per_tok` (top-k), 0 for a dense model.
    pub experts_per_token: u32,
    /// Bytes per activation element (`torch_dtype`: 2 for bf16/f16, 4 for f32).
    pub activation_bytes: u32,
}

/// The first value of `"key"` in a JSON text (a number or a string, unquoted). Enough for the
/// flat Hugging Face configs and run settings tokenq reads; the crate stays without a JSON parser.
pub fn json_scalar(text: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\"");
    let mut from = 0;
    while let Some(i) = text[from..].find(&pat) {
        let rest = text[from + i + pat.len()..].trim_start();
        if let Some(v) = rest.strip_prefix(':') {
            let v = v.trim_start();
            if let Some(s) = v.strip_prefix('"') {
                return s.find('"').map(|e| s[..e].to_string());
            }
            let end = v
                .find(|c: char| c == ',' || c == '}' || c == ']' || c.is_whitespace())
                .unwrap_or(v.len());
            return Some(v[..end].to_string());
        }
        from += i + pat.len();
    }
    None
}

impl ModelShape {
    /// Read `model_config.json`.
    pub fn read(path: &Path) -> Result<Self, CoreError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ferr(path, format!("cannot read ({e})")))?;
        let num = |key: &str| -> Result<Option<u32>, CoreError> {
            match json_scalar(&text, key) {
                None => Ok(None),
                Some(v) if v == "null" => Ok(None),
                Some(v) => v.parse::<u32>().map(Some).map_err(|_| {
                    ferr(
                        path,
                        format!("`{key}` = `{v}` is not a non-negative integer"),
                    )
                }),
            }
        };
        let need = |key: &str| -> Result<u32, CoreError> {
            num(key)?.ok_or_else(|| {
                ferr(
                    path,
                    format!("no `{key}`; expected a Hugging Face model config"),
                )
            })
        };
        let activation_bytes = match json_scalar(&text, "torch_dtype").as_deref() {
            Some("float32") => 4,
            _ => 2,
        };
        Ok(Self {
            model_type: json_scalar(&text, "model_type").unwrap_or_default(),
            hidden_size: need("hidden_size")?,
            num_hidden_layers: need("num_hidden_layers")?,
            num_experts: match num("num_experts")? {
                Some(e) => e,
                None => num("num_local_experts")?.unwrap_or(0),
            },
            experts_per_token: num("num_experts_per_tok")?.unwrap_or(0),
            activation_bytes,
        })
    }
}

/// The value at `path` (keys by indentation) of a YAML text, as written after the colon
/// (quotes removed). Enough for the profiler's `meta.yaml` and model yaml: block mappings
/// whose leaves are scalars or flow lists `[a, b]`; list items (`- …`) are skipped.
pub fn yaml_value(text: &str, path: &[&str]) -> Option<String> {
    let mut stack: Vec<(usize, String)> = Vec::new();
    for line in text.lines() {
        let body = line.split(" #").next().unwrap_or("");
        let trimmed = body.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('-') {
            continue;
        }
        let indent = body.len() - trimmed.len();
        let (key, value) = match trimmed.split_once(':') {
            Some((k, v)) => (k.trim().trim_matches(['\'', '"']), v.trim()),
            None => continue,
        };
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        stack.push((indent, key.to_string()));
        if stack.len() == path.len() && stack.iter().zip(path).all(|((_, k), p)| k == p) {
            return Some(value.trim_matches(['\'', '"']).to_string());
        }
    }
    None
}

/// The names of a YAML flow list `[a, b, c]` (empty for `[]` or a missing value).
fn flow_list(v: Option<String>) -> Vec<String> {
    v.map(|s| {
        s.trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect()
    })
    .unwrap_or_default()
}

/// `round()` as Python does it (half to even), which upstream's expert routing uses.
fn round_half_even(x: f64) -> f64 {
    x.round_ties_even()
}

/// The MoE block table `moe.csv`: one row of (tokens → µs) per number of activated experts.
#[derive(Debug, Clone)]
pub struct MoeTable {
    experts: Vec<f64>,
    rows: Vec<Interp1>,
}

impl MoeTable {
    fn load(path: &Path) -> Result<Self, CoreError> {
        let rows = numeric_rows(path, ["tokens", "activated_experts", "time_us"], false)?;
        let mut by: Vec<(f64, Vec<(f64, f64)>)> = Vec::new();
        for (_, v) in rows {
            match by.iter_mut().find(|(e, _)| *e == v[1]) {
                Some((_, pts)) => pts.push((v[0], v[2])),
                None => by.push((v[1], vec![(v[0], v[2])])),
            }
        }
        by.sort_by(|a, b| a.0.total_cmp(&b.0));
        Ok(Self {
            experts: by.iter().map(|(e, _)| *e).collect(),
            rows: by.into_iter().map(|(_, p)| Interp1::new(p)).collect(),
        })
    }

    fn row(&self, i: usize, tokens: f64) -> f64 {
        let r = &self.rows[i];
        if tokens <= r.xs[0] {
            r.ys[0]
        } else {
            r.eval(tokens)
        }
    }

    /// µs of one MoE block for `tokens` tokens hitting `experts` distinct experts (upstream's
    /// `_lookup_moe`): bracket the expert rows (clamped below the first, extrapolated above the
    /// last), interpolate each row linearly in tokens (clamped below its first point,
    /// extrapolated above its last), and blend the two rows linearly in experts. Both arguments
    /// are taken as at least 1.
    pub fn eval(&self, tokens: f64, experts: f64) -> f64 {
        let (t, a) = (tokens.max(1.0), experts.max(1.0));
        let n = self.experts.len();
        let i = self.experts.partition_point(|&e| e <= a);
        let (lo, hi) = if i == 0 || n < 2 {
            (0, 0)
        } else if i >= n {
            (n - 2, n - 1)
        } else {
            (i - 1, i)
        };
        let v0 = self.row(lo, t);
        if lo == hi {
            return v0;
        }
        let v1 = self.row(hi, t);
        let (a0, a1) = (self.experts[lo], self.experts[hi]);
        v0 + (a - a0) / (a1 - a0) * (v1 - v0)
    }
}

/// The MoE layer of a model: its table and routing shape.
#[derive(Debug, Clone)]
struct Moe {
    table: MoeTable,
    experts: u32,
    top_k: u32,
}

/// Per-layer table step model.
#[derive(Debug, Clone)]
pub struct TableStepModel {
    dir: PathBuf,
    /// Dense tables by name (`dense.csv`), in the order below.
    dense: Vec<Interp1>,
    dense_names: Vec<String>,
    /// Dense layers run once per step at T tokens (prologue and head: embedding, final_layernorm).
    step_dense: Vec<usize>,
    /// Per-sequence layers run once per step at S sequences (lm_head, sampler).
    per_seq: Vec<Interp1>,
    /// Dense layers of one decoder layer, with how often each runs.
    decoder: Vec<(usize, f64)>,
    attention: AttentionGrid,
    skew: Option<SkewTable>,
    skew_by_default: bool,
    alpha_default: f64,
    moe: Option<Moe>,
    shape: Option<ModelShape>,
    parallel: Parallelism,
    /// All-reduces per decoder layer under TP (one after each `o_proj` and `down_proj`).
    all_reduces_per_layer: u32,
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

/// The rows of a per-layer CSV (`layer, <x_col>, time_us`), grouped by layer in file order.
type LayerRows = Vec<(String, Vec<(f64, f64)>)>;

fn layer_rows(path: &Path, x_col: &str) -> Result<LayerRows, CoreError> {
    let rows = numeric_rows(path, ["layer", x_col, "time_us"], true)?;
    let mut out: LayerRows = Vec::new();
    for (n, v) in rows {
        match out.iter_mut().find(|(m, _)| *m == n) {
            Some((_, pts)) => pts.push((v[1], v[2])),
            None => out.push((n, vec![(v[1], v[2])])),
        }
    }
    Ok(out)
}

fn layer_tables(path: &Path, rows: &LayerRows, layers: &[&str]) -> Result<Vec<Interp1>, CoreError> {
    let mut out = Vec::new();
    for l in layers {
        let pts = rows
            .iter()
            .find(|(n, _)| n == l)
            .map(|(_, p)| p.clone())
            .unwrap_or_default();
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

/// The profile files beside a table directory: `model_config.json`, `meta.yaml` and the model
/// yaml (`<model_type>.yaml`), in the directory or its parent (upstream's `<model>/tpN/` layout).
#[derive(Debug, Default)]
struct ProfileFiles {
    config: Option<PathBuf>,
    meta: Option<PathBuf>,
    model_yaml: Option<PathBuf>,
}

fn profile_files(dir: &Path) -> ProfileFiles {
    let places: Vec<&Path> = std::iter::once(dir).chain(dir.parent()).collect();
    let find = |name: &str| places.iter().map(|p| p.join(name)).find(|p| p.is_file());
    let config = find("model_config.json");
    let meta = find("meta.yaml");
    let model_type = config
        .as_ref()
        .and_then(|c| std::fs::read_to_string(c).ok())
        .and_then(|t| json_scalar(&t, "model_type"));
    let model_yaml = model_type.and_then(|m| find(&format!("{m}.yaml")));
    ProfileFiles {
        config,
        meta,
        model_yaml,
    }
}

/// The directory of the tables for TP degree `tp`: `dir/tpN` when it exists, else `dir`
/// itself, which must then be named `tpN` when N > 1 (a shard's tables are not the whole
/// model's).
fn tables_for_tp(dir: &Path, tp: u32) -> Result<PathBuf, CoreError> {
    let sub = dir.join(format!("tp{tp}"));
    if sub.join("dense.csv").is_file() {
        return Ok(sub);
    }
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let named = name.strip_prefix("tp").and_then(|n| n.parse::<u32>().ok());
    match named {
        Some(m) if m != tp => Err(ferr(
            dir,
            format!(
                "these are tp{m} tables but the engine runs tensor parallel {tp}; give the model folder or its tp{tp}/ folder"
            ),
        )),
        None if tp > 1 => Err(ferr(
            dir,
            format!(
                "tensor parallel {tp} needs one rank's shard tables (a tp{tp}/ folder, as LLMServingSim's profiler writes them); this folder has none"
            ),
        )),
        _ if !dir.join("dense.csv").is_file() => {
            let mut have: Vec<String> = std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.path().join("dense.csv").is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("tp"))
                .collect();
            have.sort();
            if have.is_empty() {
                Ok(dir.to_path_buf())
            } else {
                Err(ferr(
                    dir,
                    format!(
                        "no tp{tp}/ tables here (this model folder has {}); give the tensor-parallel degree they were profiled for",
                        have.join(", ")
                    ),
                ))
            }
        }
        _ => Ok(dir.to_path_buf()),
    }
}

/// The layers around the attention of one decoder layer in tokenq's order, and where the
/// per-step ones go, for a table directory without a model yaml: the Llama composition of
/// docs/serving.md, plus `qk_norm` (Qwen3) and any other dense layer the table has, and the
/// MoE block instead of the dense MLP when `moe` is set.
fn default_sequence(dense_names: &[String], moe: bool) -> (Vec<String>, Vec<(String, f64)>) {
    let has = |n: &str| dense_names.iter().any(|d| d == n);
    let mut dec: Vec<(String, f64)> = vec![("layernorm".into(), 2.0), ("qkv_proj".into(), 1.0)];
    if has("qk_norm") {
        dec.push(("qk_norm".into(), 1.0));
    }
    dec.push(("rotary_emb".into(), 1.0));
    dec.push(("o_proj".into(), 1.0));
    if !moe {
        for n in ["gate_up_proj", "act_fn", "down_proj"] {
            dec.push((n.into(), 1.0));
        }
    }
    let step: Vec<String> = vec!["embedding".into(), "final_layernorm".into()];
    for n in dense_names {
        if !step.contains(n) && !dec.iter().any(|(d, _)| d == n) {
            dec.push((n.clone(), 1.0));
        }
    }
    (step, dec)
}

impl TableStepModel {
    /// Load `dense.csv`, `per_sequence.csv`, `attention.csv` (and `skew_fit.csv` when `skew`)
    /// from `dir`, for a model of `layers` decoder layers, on one GPU.
    pub fn load(dir: &Path, layers: u32, skew: bool) -> Result<Self, CoreError> {
        Self::open(
            dir,
            &TableOptions {
                layers: Some(layers),
                skew: Some(skew),
                parallel: Parallelism::default(),
            },
        )
    }

    /// Load the tables of `dir` (or of its `tpN/` folder for tensor parallel N), with the
    /// model's own layer list (the model yaml's `sequence` beside the tables, else the layers
    /// `dense.csv` has), its layer count and shape from `model_config.json`, the MoE block from
    /// `moe.csv`, and the collectives of `opts.parallel`.
    pub fn open(dir: &Path, opts: &TableOptions) -> Result<Self, CoreError> {
        if !dir.is_dir() {
            return Err(ferr(
                dir,
                "not a directory; --step-table expects a folder with dense.csv, per_sequence.csv and attention.csv",
            ));
        }
        let par = opts.parallel;
        if par.tensor_parallel == 0 || par.expert_parallel == 0 {
            return Err(CoreError::Setting {
                flag: "tensor-parallel",
                need: "at least 1 (and expert-parallel ranks at least 1)",
                got: "0".into(),
                fix: "use 1 for one GPU",
            });
        }
        if !(par.link.bandwidth_gb_s.is_finite()
            && par.link.bandwidth_gb_s > 0.0
            && par.link.latency_ns.is_finite()
            && par.link.latency_ns >= 0.0)
        {
            return Err(CoreError::Setting {
                flag: "link-bandwidth-gb-s",
                need: "a positive bandwidth (and a latency ≥ 0 ns)",
                got: format!(
                    "{} GB/s, {} ns",
                    par.link.bandwidth_gb_s, par.link.latency_ns
                ),
                fix: "the cluster configurations use 16 GB/s and 20000 ns",
            });
        }
        let tdir = tables_for_tp(dir, par.tensor_parallel)?;
        let files = profile_files(&tdir);
        let shape = match &files.config {
            Some(p) => Some(ModelShape::read(p)?),
            None => None,
        };
        let layers = opts
            .layers
            .or(shape.as_ref().map(|s| s.num_hidden_layers))
            .unwrap_or(LLAMA_3_1_8B_LAYERS);
        if layers == 0 {
            return Err(CoreError::Setting {
                flag: "layers",
                need: "at least 1",
                got: "0".into(),
                fix: "give the model's decoder layer count (32 for Llama-3.1-8B)",
            });
        }
        let dpath = tdir.join("dense.csv");
        let drows = layer_rows(&dpath, "tokens")?;
        let dense_in_table: Vec<String> = drows.iter().map(|(n, _)| n.clone()).collect();
        let ppath = tdir.join("per_sequence.csv");
        let prows = layer_rows(&ppath, "sequences")?;

        // The MoE table: beside the tables, else the tp1 one (upstream profiles MoE at tp1 only).
        let moe_path = [
            tdir.join("moe.csv"),
            tdir.parent()
                .map(|p| p.join("tp1").join("moe.csv"))
                .unwrap_or_default(),
        ]
        .into_iter()
        .find(|p| p.is_file());
        let yaml_text = files
            .model_yaml
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok());
        let seq = |section: &str| {
            flow_list(
                yaml_text
                    .as_deref()
                    .and_then(|t| yaml_value(t, &["sequence", section])),
            )
        };
        let is_moe = match (&shape, &yaml_text) {
            (Some(s), _) if s.num_experts > 0 => true,
            (_, Some(_)) => !seq("mlp_moe").is_empty() && seq("mlp_dense").is_empty(),
            _ => moe_path.is_some() && !dense_in_table.iter().any(|n| n == "gate_up_proj"),
        };
        // The layer list: the model yaml's sequence, else the default composition.
        let (step_names, per_seq_names, dec_names) = if yaml_text.is_some() {
            let mut dec: Vec<(String, f64)> = Vec::new();
            let mlp = if is_moe { "mlp_moe" } else { "mlp_dense" };
            for n in ["pre_attn", "post_attn", mlp]
                .iter()
                .flat_map(|s| seq(s))
                .filter(|n| n != "attention" && n != "moe")
            {
                match dec.iter_mut().find(|(d, _)| *d == n) {
                    Some((_, c)) => *c += 1.0,
                    None => dec.push((n, 1.0)),
                }
            }
            let around: Vec<String> = seq("prologue").into_iter().chain(seq("head")).collect();
            let is_per_seq = |n: &String| prows.iter().any(|(p, _)| p == n);
            let step: Vec<String> = around.iter().filter(|n| !is_per_seq(n)).cloned().collect();
            let per: Vec<String> = around.iter().filter(|n| is_per_seq(n)).cloned().collect();
            (step, per, dec)
        } else {
            let (step, dec) = default_sequence(&dense_in_table, is_moe);
            let per: Vec<String> = PER_SEQUENCE_LAYERS.iter().map(|s| s.to_string()).collect();
            (step, per, dec)
        };
        let mut dense_names: Vec<String> = step_names.clone();
        for (n, _) in &dec_names {
            if !dense_names.contains(n) {
                dense_names.push(n.clone());
            }
        }
        let names: Vec<&str> = dense_names.iter().map(String::as_str).collect();
        let dense = layer_tables(&dpath, &drows, &names)?;
        let pnames: Vec<&str> = per_seq_names.iter().map(String::as_str).collect();
        let per_seq = layer_tables(&ppath, &prows, &pnames)?;
        let pos = |n: &str| dense_names.iter().position(|d| d == n).expect("listed");
        let step_dense = step_names.iter().map(|n| pos(n)).collect();
        let decoder: Vec<(usize, f64)> = dec_names.iter().map(|(n, c)| (pos(n), *c)).collect();
        let all_reduces_per_layer = dec_names
            .iter()
            .filter(|(n, _)| n == "o_proj" || n == "down_proj")
            .map(|(_, c)| *c as u32)
            .sum();

        let apath = tdir.join("attention.csv");
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

        // Skew: on by default when the table directory holds skew_fit.csv (and the profile
        // does not switch it off); α for a missing bucket from meta.yaml for this TP degree.
        let meta_text = files
            .meta
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok());
        let meta = |path: &[&str]| meta_text.as_deref().and_then(|t| yaml_value(t, path));
        let spath = tdir.join("skew_fit.csv");
        let skew_by_default = opts.skew.is_none()
            && spath.is_file()
            && meta(&["skew_fit", "enabled"]).as_deref() != Some("false");
        let skew = if opts.skew == Some(true) || skew_by_default {
            if !spath.exists() {
                return Err(ferr(
                    &spath,
                    "missing; --skew needs skew_fit.csv beside the tables (or drop --skew)",
                ));
            }
            Some(SkewTable::load(&spath)?)
        } else {
            None
        };
        let tp_key = par.tensor_parallel.to_string();
        let alpha_default = meta(&["skew_fit", "per_tp", &tp_key, "alpha_default"])
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(SKEW_ALPHA_DEFAULT);

        let need_shape = |what: &str| {
            ferr(
                &tdir,
                format!(
                    "{what} needs the model's shape: put its Hugging Face model_config.json (hidden_size, num_experts, num_experts_per_tok) beside the tables or in the folder above"
                ),
            )
        };
        let moe = if is_moe {
            let Some(p) = &moe_path else {
                return Err(ferr(
                    &tdir.join("moe.csv"),
                    "missing; an MoE model's step time needs the MoE block table (tokens, activated_experts, time_us)",
                ));
            };
            let s = shape.as_ref().ok_or_else(|| need_shape("the MoE block"))?;
            if s.num_experts == 0 || s.experts_per_token == 0 {
                return Err(need_shape("the MoE block"));
            }
            Some(Moe {
                table: MoeTable::load(p)?,
                experts: s.num_experts,
                top_k: s.experts_per_token.min(s.num_experts),
            })
        } else {
            None
        };
        if par.expert_parallel > 1 && moe.is_none() {
            return Err(ferr(
                &tdir,
                "expert parallelism needs an MoE model (moe.csv and a model_config.json with num_experts)",
            ));
        }
        if (par.tensor_parallel > 1 || par.expert_parallel > 1) && shape.is_none() {
            return Err(need_shape("the collectives' sizes"));
        }
        Ok(Self {
            dir: if tdir == dir { dir.to_path_buf() } else { tdir },
            dense,
            dense_names,
            step_dense,
            per_seq,
            decoder,
            attention,
            skew,
            skew_by_default,
            alpha_default,
            moe,
            shape,
            parallel: par,
            all_reduces_per_layer,
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
                t_mean + s.alpha_or(b, self.alpha_default) * (t_max - t_mean)
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
        let seqs = self
            .per_seq
            .iter()
            .map(|f| f.range().1)
            .fold(f64::INFINITY, f64::min);
        let last = |v: &[u32]| v.last().map_or(0.0, |&x| f64::from(x));
        let prefill = &self.attention.regimes[2];
        let decode = &self.attention.regimes[1];
        let chunk = last(&prefill.chunks);
        let nd = decode.nds.first().map_or(0.0, |v| last(v));
        (dense_tokens.min(chunk), seqs.min(nd))
    }

    /// Dense layers of one decoder layer at T tokens, µs (2·layernorm + projections + MLP, and
    /// whatever else the model's layer list has, e.g. Qwen3's qk_norm; not the MoE block).
    pub fn decoder_dense_us(&self, t: f64) -> f64 {
        let mut us = 0.0;
        for &(i, times) in &self.decoder {
            us += times * self.dense[i].eval(t);
        }
        us
    }

    /// The dense layers of one decoder layer, with how often each runs.
    pub fn decoder_layers(&self) -> Vec<(&str, f64)> {
        self.decoder
            .iter()
            .map(|&(i, c)| (self.dense_names[i].as_str(), c))
            .collect()
    }

    /// Decoder layers.
    pub fn layers(&self) -> u32 {
        self.layers
    }

    /// The model's shape, when `model_config.json` was found.
    pub fn shape(&self) -> Option<&ModelShape> {
        self.shape.as_ref()
    }

    /// TP degree, EP ranks and link.
    pub fn parallelism(&self) -> Parallelism {
        self.parallel
    }

    /// Whether the MLP is an MoE block (`moe.csv`).
    pub fn is_moe(&self) -> bool {
        self.moe.is_some()
    }

    /// Whether the skew correction is applied, and whether that was the default (the table
    /// directory holds `skew_fit.csv`) rather than asked for.
    pub fn skew(&self) -> (bool, bool) {
        (self.skew.is_some(), self.skew_by_default)
    }

    /// α of the skew correction for a bucket the table does not have.
    pub fn skew_alpha_default(&self) -> f64 {
        self.alpha_default
    }

    /// The directory the tables were read from (`tpN/` when chosen from a model folder).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `moe.csv` at (tokens, activated experts), µs (see [`MoeTable::eval`]); `None` for a
    /// dense model.
    pub fn moe_table_us(&self, tokens: f64, experts: f64) -> Option<f64> {
        self.moe.as_ref().map(|m| m.table.eval(tokens, experts))
    }

    /// Tokens and activated experts of one EP rank for a step of T tokens per rank (upstream's
    /// BALANCED gate): tokens = round(T·(1 − ((ep − 1)/ep)^k)), experts = min(round(T·k/ep),
    /// E/ep); without EP: (T, min(T·k, E)). `None` for a dense model.
    pub fn moe_rank_load(&self, t: u32) -> Option<(f64, f64)> {
        let m = self.moe.as_ref()?;
        let ep = self.parallel.expert_parallel.max(1);
        let (t, k, e) = (f64::from(t), f64::from(m.top_k), f64::from(m.experts));
        if ep == 1 {
            return Some((t, (t * k).min(e)));
        }
        let epf = f64::from(ep);
        let hit = 1.0 - ((epf - 1.0) / epf).powi(m.top_k as i32);
        let tokens = round_half_even(t * hit);
        let per_rank = f64::from((m.experts / ep).max(1));
        let experts = round_half_even(t * k / epf).min(per_rank);
        Some((tokens, experts))
    }

    /// One MoE block on one EP rank at T tokens per rank, µs (0 for a dense model).
    pub fn moe_us(&self, t: u32) -> f64 {
        match (self.moe_rank_load(t), &self.moe) {
            (Some((tok, exp)), Some(m)) if tok > 0.0 => m.table.eval(tok, exp.max(1.0)),
            _ => 0.0,
        }
    }

    /// Collectives of one decoder layer at T tokens per rank, µs: under TP, an all-reduce of
    /// T·hidden activations after each `o_proj` and `down_proj`; under EP, the MoE block's
    /// all-gather of ⌊T/ep⌋·(hidden + experts) and reduce-scatter of T·hidden activations.
    pub fn layer_collectives_us(&self, t: u32) -> f64 {
        let Some(s) = &self.shape else { return 0.0 };
        let (tp, ep) = (self.parallel.tensor_parallel, self.parallel.expert_parallel);
        let link = &self.parallel.link;
        let bytes = f64::from(s.activation_bytes);
        let tf = f64::from(t);
        let hidden = f64::from(s.hidden_size);
        let mut us = 0.0;
        if tp > 1 {
            us +=
                f64::from(self.all_reduces_per_layer) * link.all_reduce_us(tf * hidden * bytes, tp);
        }
        if ep > 1
            && let Some(m) = &self.moe
        {
            let chunk = f64::from((t / ep).max(1)) * (hidden + f64::from(m.experts)) * bytes;
            us += link.all_gather_us(chunk, ep) + link.reduce_scatter_us(tf * hidden * bytes, ep);
        }
        us
    }

    /// Collectives of a whole step at T tokens per rank, seconds (L × one layer's).
    pub fn step_collectives_s(&self, t: u32) -> f64 {
        f64::from(self.layers) * self.layer_collectives_us(t) * US
    }

    /// One rank's step in µs, the batch padded to `padded` tokens (dense layers, the MoE block
    /// and the collectives see the padded tokens, lm_head and the sampler one sequence per
    /// padding token, attention only the real requests).
    fn rank_us(&self, b: &StepBatch, padded: u32) -> f64 {
        let real = b.tokens();
        let pad = padded.saturating_sub(real);
        let tokens = real + pad;
        let t = f64::from(tokens);
        let s = f64::from(b.sequences() + pad);
        if t == 0.0 {
            return 0.0;
        }
        let mut us = 0.0;
        for &i in &self.step_dense {
            us += self.dense[i].eval(t);
        }
        for f in &self.per_seq {
            us += f.eval(s);
        }
        let mut layer = self.decoder_dense_us(t) + self.attention_us(b);
        if self.moe.is_some() {
            layer += self.moe_us(tokens);
        }
        if self.parallel.tensor_parallel > 1 || self.parallel.expert_parallel > 1 {
            layer += self.layer_collectives_us(tokens);
        }
        us + f64::from(self.layers) * layer
    }
}

impl StepModel for TableStepModel {
    fn step_time_s(&self, b: &StepBatch) -> f64 {
        self.rank_us(b, 0) * US
    }

    fn padded_step_time_s(&self, b: &StepBatch, padded_tokens: u32) -> f64 {
        self.rank_us(b, padded_tokens) * US
    }

    fn describe(&self) -> String {
        let mut extra = String::new();
        if let Some(m) = &self.moe {
            extra += &format!(
                ", MoE block from moe.csv ({} experts, top-{})",
                m.experts, m.top_k
            );
        }
        let (tp, ep) = (self.parallel.tensor_parallel, self.parallel.expert_parallel);
        if tp > 1 {
            extra += &format!(
                ", TP{tp} shard with {} all-reduces per layer",
                self.all_reduces_per_layer
            );
        }
        if ep > 1 {
            extra += &format!(", EP{ep} with an all-gather and a reduce-scatter per layer");
        }
        if tp > 1 || ep > 1 {
            let l = self.parallel.link;
            extra += &format!(
                " (ring, {} GB/s, {} µs per message)",
                l.bandwidth_gb_s,
                l.latency_ns / 1e3
            );
        }
        format!(
            "per-layer tables {} ({} layers{extra}{})",
            self.dir.display(),
            self.layers,
            match (&self.skew, self.skew_by_default) {
                (Some(_), true) =>
                    ", skew correction (on by default with skew_fit.csv; --no-skew turns it off)",
                (Some(_), false) => ", skew correction",
                (None, _) => "",
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
    fn yaml_and_json_readers() {
        let y = "a: 1\nskew_fit:\n  enabled: true # on\n  per_tp:\n    1:\n      alpha_default: 0.057\n    2:\n      alpha_default: 0.0649\n      n_bins: [0, 2]\nsequence:\n  pre_attn:  [layernorm, qkv_proj]\n  mlp_moe:   []\n";
        assert_eq!(yaml_value(y, &["a"]).as_deref(), Some("1"));
        assert_eq!(
            yaml_value(y, &["skew_fit", "enabled"]).as_deref(),
            Some("true")
        );
        assert_eq!(
            yaml_value(y, &["skew_fit", "per_tp", "2", "alpha_default"]).as_deref(),
            Some("0.0649")
        );
        assert_eq!(
            yaml_value(y, &["skew_fit", "per_tp", "3", "alpha_default"]),
            None
        );
        assert_eq!(
            flow_list(yaml_value(y, &["sequence", "pre_attn"])),
            ["layernorm", "qkv_proj"]
        );
        assert!(flow_list(yaml_value(y, &["sequence", "mlp_moe"])).is_empty());
        let j = r#"{"hidden_size": 2048, "model_type": "qwen3_moe", "rope_scaling": null,
            "nested": {"x": 1}, "num_experts":128}"#;
        assert_eq!(json_scalar(j, "hidden_size").as_deref(), Some("2048"));
        assert_eq!(json_scalar(j, "model_type").as_deref(), Some("qwen3_moe"));
        assert_eq!(json_scalar(j, "rope_scaling").as_deref(), Some("null"));
        assert_eq!(json_scalar(j, "num_experts").as_deref(), Some("128"));
        assert_eq!(json_scalar(j, "missing"), None);
        assert_eq!(round_half_even(382.5), 382.0);
        assert_eq!(round_half_even(383.5), 384.0);
    }

    #[test]
    fn bracket_weights() {
        assert_eq!(bracket(&[10, 20], 15.0), [(0, 0.5), (1, 0.5)]);
        assert_eq!(bracket(&[10, 20], 5.0), [(0, 1.0), (0, 0.0)]);
        assert_eq!(bracket(&[10, 20], 25.0), [(1, 1.0), (1, 0.0)]);
    }
}
