//! Real GPU measurements turned into timed steps, so that the same fit runs on them
//! (`datasets/coefficients/README.md` describes every assembly in prose).
//!
//! * **Table I** of the paper (LLaMA-2-7b-chat, one A100, single requests): end-to-end
//!   latencies of (input, output) pairs. The line is fitted on the four input = 128 rows, as
//!   docs/models.md §1 does (a = 0.02299253 s/token, c = 0.186087 s, R² = 0.99758); the three rows at
//!   other prompt lengths are the held-out points.
//! * **Vidur** operator profiles (`mlp.csv`, one transformer layer's non-attention operators
//!   versus tokens in the batch, milliseconds, TP = 1). A step over T tokens takes
//!   `emb(T) + L·[input_layernorm + attn_pre_proj + attn_rope + attn_post_proj +
//!   post_attention_layernorm + mlp_up_proj + mlp_act + mlp_down_proj + 2·add](T)` with the
//!   operator medians, linear interpolation in T (L = 32 layers for Llama-2-7B). Attention
//!   kernels, the LM head and sampling are not in these files (Vidur's `attention.csv` was not
//!   copied), so the step time has no context dependence and is a lower bound.
//! * **LLMServingSim** per-layer tables (microseconds, vLLM 0.19, bf16), composed as in
//!   docs/serving.md "From per-layer tables":
//!   `t = embedding(T) + final_layernorm(T) + lm_head(S) + sampler(S) + L·[2·layernorm(T) +
//!   qkv_proj(T) + rotary_emb(T) + o_proj(T) + gate_up_proj(T) + act_fn(T) + down_proj(T) +
//!   attention(Σp, 0, n_d, ctx)]`, T = tokens in the step, S = sequences, L = 32. 1-D tables are
//!   interpolated linearly (linear extrapolation past the ends); the decode attention grid
//!   (n_decode × kv_decode at chunk 0) bilinearly; the prefill attention (chunk, no cache, no
//!   decodes) linearly in the chunk, with the batch's prompts as one chunk Σp, as docs/serving.md does.
//!
//! The imported steps form a virtual profile over [`ImportGrid`]: every batch size × prompt
//! length whose prefill fits the table's token range, a prefill step and decode steps up to
//! `output_tokens` (context before decode step k = p + k − 1). Batch-1 points keep every step
//! (they give the e2e curves); larger batches every `decode_stride`-th step.

use std::path::{Path, PathBuf};

use tokenq_core::coefficients::{KvCapacity, Provenance};
use tokenq_core::layers::{Interp1, TableStepModel};
use tokenq_core::step::{StepBatch, StepModel};

use crate::error::{FitError, Result};
use crate::profile::{E2ePoint, StepRow};

/// Decoder layers of Llama-2-7B and Llama-3.1-8B.
pub const LLAMA_7B_8B_LAYERS: usize = 32;
/// Paper §II-C: at most 49 concurrent requests of 1280 tokens fit in an A100's KV cache
/// (LLaMA-2-7b-chat).
pub const PAPER_A100_KV: (u64, u64) = (1280, 49);

/// The virtual profile an import is sampled on.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportGrid {
    /// Batch sizes, requests.
    pub batch_sizes: Vec<u32>,
    /// Prompt lengths, tokens.
    pub input_tokens: Vec<u32>,
    /// Output tokens per request (prefill + output_tokens − 1 decode steps).
    pub output_tokens: u32,
    /// Keep every this-many-th decode step for batch sizes above 1.
    pub decode_stride: u32,
}

impl Default for ImportGrid {
    fn default() -> Self {
        Self {
            batch_sizes: vec![1, 2, 4, 8, 16, 32, 64, 128, 256],
            input_tokens: vec![64, 128, 256, 512],
            output_tokens: 512,
            decode_stride: 16,
        }
    }
}

/// Timed steps assembled from third-party data, with their provenance.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    /// The virtual profile's steps.
    pub rows: Vec<StepRow>,
    /// Where they came from.
    pub provenance: Provenance,
    /// KV capacity, where the source states it.
    pub kv_capacity: Vec<KvCapacity>,
}

/// The paper's Table I: training points (input = 128), held-out points (other inputs).
#[derive(Debug, Clone, PartialEq)]
pub struct Table1 {
    /// Rows with 128 input tokens.
    pub train: Vec<E2ePoint>,
    /// Rows with other prompt lengths.
    pub test: Vec<E2ePoint>,
    /// Provenance.
    pub provenance: Provenance,
    /// The paper's KV-capacity statement.
    pub kv_capacity: Vec<KvCapacity>,
}

/// A small CSV table of plain values (no quoting): the third-party files are simple numeric CSV.
struct Csv {
    path: PathBuf,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Csv {
    fn read(path: &Path) -> Result<Self> {
        let (header, rows) = tokenq_core::csv::read_csv(path).map_err(|e| match e {
            tokenq_core::CoreError::File { msg, .. } if msg.starts_with("empty file") => {
                FitError::Empty {
                    what: path.display().to_string(),
                }
            }
            e => e.into(),
        })?;
        if rows.is_empty() {
            return Err(FitError::Empty {
                what: path.display().to_string(),
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            header,
            rows,
        })
    }

    fn col(&self, name: &str) -> Result<usize> {
        self.header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| FitError::MissingColumn {
                path: self.path.clone(),
                column: name.into(),
                expected: self.header.join(", "),
            })
    }

    fn num(&self, row: usize, col: usize) -> Result<f64> {
        let cell = self.rows[row].get(col).map_or("", String::as_str);
        let v: f64 = cell.parse().map_err(|_| FitError::BadValue {
            path: self.path.clone(),
            what: format!(
                "row {}: column `{}` = {cell:?} is not a number",
                row + 1,
                self.header[col]
            ),
        })?;
        if !v.is_finite() {
            return Err(FitError::NonFinite {
                path: self.path.clone(),
                column: self.header[col].clone(),
                row: row + 1,
                value: v,
            });
        }
        Ok(v)
    }
}

/// Read Table I (`input_tokens, output_tokens, time_s`).
pub fn table1(path: &Path) -> Result<Table1> {
    let csv = Csv::read(path)?;
    let (ci, co, ct) = (
        csv.col("input_tokens")?,
        csv.col("output_tokens")?,
        csv.col("time_s")?,
    );
    let mut train = Vec::new();
    let mut test = Vec::new();
    for r in 0..csv.rows.len() {
        let p = csv.num(r, ci)? as u32;
        let n = csv.num(r, co)? as u32;
        let point = E2ePoint {
            key: ("table1".into(), r as u64),
            input_tokens: p,
            output_tokens: n,
            per_rep_s: vec![csv.num(r, ct)?],
        };
        if p == 128 {
            train.push(point)
        } else {
            test.push(point)
        }
    }
    Ok(Table1 {
        train,
        test,
        provenance: Provenance {
            device: "NVIDIA A100".into(),
            model: "meta-llama/Llama-2-7b-chat".into(),
            dtype: "fp16 (not stated in the paper)".into(),
            sources: vec![path.display().to_string()],
            method: "paper Table I end-to-end latencies of single requests; line fitted on the four input = 128 rows, the rows at other prompt lengths held out".into(),
            time_column: "time_s (end-to-end, as printed)".into(),
            tool: tool(),
            profile_tool: None,
            license: Some("facts reported in arXiv 2407.05347 (Yang, Xu, Jiao 2024)".into()),
            notes: vec![
                "single requests only: no batch-size dependence (first_token/decode_step absent)".into(),
                "kv_capacity from the paper's text (Section II-C)".into(),
            ],
        },
        kv_capacity: vec![KvCapacity {
            sequence_tokens: PAPER_A100_KV.0,
            max_concurrent_requests: PAPER_A100_KV.1,
            source: "paper Section II-C (input 256 + output 1024 tokens)".into(),
        }],
    })
}

/// Vidur operators summed per layer, with how many times each runs in a layer.
const VIDUR_LAYER_OPS: [(&str, f64); 9] = [
    ("input_layernorm", 1.0),
    ("attn_pre_proj", 1.0),
    ("attn_rope", 1.0),
    ("attn_post_proj", 1.0),
    ("post_attention_layernorm", 1.0),
    ("mlp_up_proj", 1.0),
    ("mlp_act", 1.0),
    ("mlp_down_proj", 1.0),
    ("add", 2.0),
];

/// Import a Vidur `mlp.csv` (TP = 1 rows): step time versus tokens in the step.
pub fn vidur_mlp(path: &Path, device: &str, model: &str, grid: &ImportGrid) -> Result<Imported> {
    let csv = Csv::read(path)?;
    let c_tp = csv.col("num_tensor_parallel_workers")?;
    let c_tok = csv.col("num_tokens")?;
    let c_emb = csv.col("time_stats.emb.median")?;
    let ops: Vec<(usize, f64)> = VIDUR_LAYER_OPS
        .iter()
        .map(|(op, k)| Ok((csv.col(&format!("time_stats.{op}.median"))?, *k)))
        .collect::<Result<_>>()?;
    let mut pts = Vec::new();
    for r in 0..csv.rows.len() {
        if csv.num(r, c_tp)? != 1.0 {
            continue;
        }
        let mut layer_ms = 0.0;
        for &(c, k) in &ops {
            layer_ms += k * csv.num(r, c)?;
        }
        let step_ms = csv.num(r, c_emb)? + LLAMA_7B_8B_LAYERS as f64 * layer_ms;
        pts.push((csv.num(r, c_tok)?, step_ms * 1e-3));
    }
    if pts.len() < 2 {
        return Err(FitError::Empty {
            what: format!("{} (fewer than two TP = 1 rows)", path.display()),
        });
    }
    let f = Interp1::new(pts);
    let max_tokens = f.range().1;
    let rows = virtual_profile(grid, max_tokens, max_tokens, |kind| match kind {
        Step::Prefill { tokens, .. } => f.eval(tokens),
        Step::Decode { batch, .. } => f.eval(batch),
    });
    Ok(Imported {
        rows,
        provenance: Provenance {
            device: device.into(),
            model: model.into(),
            dtype: "fp16".into(),
            sources: vec![path.display().to_string()],
            method: format!(
                "Vidur per-operator medians (ms, TP=1, one layer) composed per step: emb(T) + {LLAMA_7B_8B_LAYERS}·[input_layernorm + attn_pre_proj + attn_rope + attn_post_proj + post_attention_layernorm + mlp_up_proj + mlp_act + mlp_down_proj + 2·add](T), T = tokens in the step, linear interpolation in T"
            ),
            time_column: "sum of operator median GPU times".into(),
            tool: tool(),
            profile_tool: Some("vidur profiling/mlp (sarathi-serve kernels), commit 7d47513".into()),
            license: Some("MIT (Microsoft Vidur)".into()),
            notes: vec![
                "attention kernels, LM head and sampling are not in Vidur's mlp.csv: steps carry no context dependence and are a lower bound on a served step".into(),
                "GPU kernel time only: no host or scheduling overhead".into(),
            ],
        },
        kv_capacity: Vec::new(),
    })
}

/// One step of the virtual profile.
enum Step {
    Prefill { tokens: f64, batch: f64 },
    Decode { batch: f64, context: f64 },
}

fn virtual_profile(
    grid: &ImportGrid,
    max_prefill_tokens: f64,
    max_batch_tokens: f64,
    time_s: impl Fn(Step) -> f64,
) -> Vec<StepRow> {
    let mut rows = Vec::new();
    let mut point = 0u64;
    for &b in &grid.batch_sizes {
        if f64::from(b) > max_batch_tokens {
            continue;
        }
        for &p in &grid.input_tokens {
            let tokens = f64::from(b) * f64::from(p);
            let has_prefill = tokens <= max_prefill_tokens;
            if !has_prefill && b == 1 {
                continue;
            }
            let mut push = |step: u32, t: f64| {
                rows.push(StepRow {
                    run_id: "import".into(),
                    point_id: point,
                    rep: 0,
                    batch_size: b,
                    input_tokens: p,
                    step,
                    context_tokens: if step == 0 {
                        0
                    } else {
                        u64::from(p + step - 1)
                    },
                    time_s: t,
                });
            };
            if has_prefill {
                push(
                    0,
                    time_s(Step::Prefill {
                        tokens,
                        batch: f64::from(b),
                    }),
                );
            }
            for k in 1..grid.output_tokens {
                if b > 1 && k % grid.decode_stride.max(1) != 0 {
                    continue;
                }
                push(
                    k,
                    time_s(Step::Decode {
                        batch: f64::from(b),
                        context: f64::from(p + k - 1),
                    }),
                );
            }
            point += 1;
        }
    }
    rows
}

/// Import LLMServingSim per-layer tables (Llama-3.1-8B, 32 layers).
pub fn llmservingsim(dir: &Path, device: &str, model: &str, grid: &ImportGrid) -> Result<Imported> {
    let t = TableStepModel::load(dir, LLAMA_7B_8B_LAYERS as u32, false)?;
    let (max_prefill, max_batch) = t.covered_prefill_and_decode();
    let rows = virtual_profile(grid, max_prefill, max_batch, |s| {
        t.step_time_s(&match s {
            Step::Prefill { tokens, batch } => StepBatch::prefill_of_batch(tokens, batch),
            Step::Decode { batch, context } => StepBatch::uniform_decode(batch, context),
        })
    });
    let files = ["dense.csv", "per_sequence.csv", "attention.csv"]
        .iter()
        .map(|f| dir.join(f).display().to_string())
        .collect();
    Ok(Imported {
        rows,
        provenance: Provenance {
            device: device.into(),
            model: model.into(),
            dtype: "bf16".into(),
            sources: files,
            method: format!(
                "LLMServingSim per-layer CUDA times (us) composed per step as docs/serving.md 'From per-layer tables': embedding(T) + final_layernorm(T) + lm_head(S) + sampler(S) + {LLAMA_7B_8B_LAYERS}·[2·layernorm(T) + qkv_proj + rotary_emb + o_proj + gate_up_proj + act_fn + down_proj + attention]; prefill attention of the batch's prompts as one chunk, decode attention bilinear in (n_decode, kv_decode)"
            ),
            time_column: "sum of per-layer CUDA kernel times".into(),
            tool: tool(),
            profile_tool: Some("LLMServingSim 2.0 profiler on vLLM 0.19 (commit 5daddb2)".into()),
            license: Some("MIT (CASYS Lab, KAIST)".into()),
            notes: vec![
                "GPU kernel time only: no host, scheduling or CUDA-graph effects (the profile ran eager)".into(),
                "prefill attention treats a batch's prompts as one chunk (overstates attention for b > 1 by at most its small share)".into(),
            ],
        },
        kv_capacity: Vec::new(),
    })
}

/// "tokenq fit <version>".
pub fn tool() -> String {
    format!("tokenq fit {}", env!("CARGO_PKG_VERSION"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_profile_shape() {
        let g = ImportGrid {
            batch_sizes: vec![1, 4],
            input_tokens: vec![8, 1000],
            output_tokens: 5,
            decode_stride: 2,
        };
        let rows = virtual_profile(&g, 2000.0, 100.0, |s| match s {
            Step::Prefill { tokens, .. } => tokens,
            Step::Decode { context, .. } => context,
        });
        // b=1: p=8 (5 steps), p=1000 (5 steps); b=4: p=8 prefill + steps 2,4; p=1000 no prefill (4000 > 2000): steps 2,4.
        assert_eq!(rows.len(), 5 + 5 + 3 + 2);
        let r = rows
            .iter()
            .find(|r| r.batch_size == 1 && r.input_tokens == 8 && r.step == 3)
            .unwrap();
        assert_eq!(r.context_tokens, 10);
        assert_eq!(r.time_s, 10.0);
    }
}

/// A source of real GPU data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The paper's Table I CSV.
    Table1,
    /// A Vidur `mlp.csv`.
    Vidur,
    /// A directory of LLMServingSim per-layer tables.
    LlmServingSim,
}

/// Import `path` and fit it: the whole `tokenq fit --from` path. `device`/`model` are required
/// for Vidur and LLMServingSim (the files do not name them); `dtype` overrides the default.
pub fn fit_source(
    source: Source,
    path: &Path,
    device: Option<&str>,
    model: Option<&str>,
    dtype: Option<&str>,
    opts: &crate::model::FitOptions,
) -> Result<tokenq_core::CoefficientsFile> {
    let mut file = match source {
        Source::Table1 => {
            let t = table1(path)?;
            let s = crate::model::fit_e2e(&t.train, Some(&t.test), opts)?;
            let mut f = tokenq_core::CoefficientsFile::new(t.provenance);
            f.single_request = Some(s);
            f.kv_capacity = t.kv_capacity;
            f
        }
        Source::Vidur | Source::LlmServingSim => {
            let need = |flag: &str, v: Option<&str>| match v {
                Some(s) if !s.trim().is_empty() => Ok(s.to_string()),
                _ => Err(FitError::Config(format!(
                    "--{flag} is required with --from {} (it goes into the file's provenance)",
                    if source == Source::Vidur {
                        "vidur"
                    } else {
                        "llmservingsim"
                    }
                ))),
            };
            let (device, model) = (need("device", device)?, need("model", model)?);
            let grid = ImportGrid::default();
            let imp = if source == Source::Vidur {
                vidur_mlp(path, &device, &model, &grid)?
            } else {
                llmservingsim(path, &device, &model, &grid)?
            };
            let mut prov = imp.provenance;
            prov.method = format!(
                "{}; virtual profile: batch sizes {:?}, prompts {:?} tokens, {} output tokens",
                prov.method, grid.batch_sizes, grid.input_tokens, grid.output_tokens
            );
            crate::model::fit_steps(&imp.rows, opts)?.into_file(prov, imp.kv_capacity)
        }
    };
    if let Some(d) = dtype {
        file.provenance.dtype = d.to_string();
    }
    Ok(file)
}
