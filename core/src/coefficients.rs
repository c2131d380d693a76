//! The coefficients file: the contract between measurement and prediction (docs/design.md
//! "Coefficients file").
//!
//! A TOML file with a versioned schema (`schema_version`), units in every key name, and these
//! sections, each optional so that a partial profile still yields a usable file:
//!
//! * `[single_request]` — the paper's Fig. 2a line `T(n) = per_token_s·n + intercept_s`:
//!   end-to-end latency of one request that generates `n` output tokens (docs/models.md §1, `S = a·n + c`).
//!   Optional richer term: `+ per_input_token_s·(p − input_tokens)` for prompt length `p`.
//! * `[first_token]` — `t1(b) = slope_s_per_req·b + intercept_s` (paper Fig. 2b, docs/models.md §5 `k1, k2`):
//!   the prefill step that yields the first token of a batch of `b` requests. Optional richer
//!   term `+ per_prefill_token_s·b·(p − input_tokens)`.
//! * `[decode_step]` — `t2(b) = slope_s_per_req·b + intercept_s` (docs/models.md §5 `k3, k4`): one later
//!   decode step of the batch. Optional richer term `+ per_context_token_s·b·(ctx − context_tokens)`.
//! * `[[kv_capacity]]` — the largest number of concurrent requests of a given sequence length
//!   that fit in the KV cache, where it was measured.
//! * `[provenance]` — where the numbers came from: source files, device, model, dtype, tool.
//!
//! Each fitted section carries its 95% intervals, its fit quality (R², MAPE, worst error, on
//! fitted and on held-out points) and the ranges it was fitted on. The richer terms are written
//! as corrections around a reference value, so a reader that ignores them gets the plain line
//! at that reference (e.g. the paper's k1..k4 at the profile's reference prompt length).
//!
//! Sections this version does not know (e.g. a step-time model added later) are kept verbatim
//! in [`CoefficientsFile::extra`] and written back unchanged.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, first_line};

type Result<T> = std::result::Result<T, CoreError>;

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// The whole coefficients file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoefficientsFile {
    /// Schema version; readers refuse versions they do not know.
    pub schema_version: u32,
    /// Where the numbers came from.
    pub provenance: Provenance,
    /// The single-request line (paper Fig. 2a).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub single_request: Option<SingleRequest>,
    /// First-token (prefill) time versus batch size, `k1, k2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_token: Option<FirstToken>,
    /// Per-decode-step time versus batch size, `k3, k4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode_step: Option<DecodeStep>,
    /// KV-cache capacity, where measured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kv_capacity: Vec<KvCapacity>,
    /// Step-time model for continuous batching (docs/serving.md "Fitted"; [`crate::step`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_time: Option<crate::step::StepTimeCoefficients>,
    /// Sections and keys this schema version does not define, kept as they were read.
    #[serde(flatten)]
    pub extra: toml::Table,
}

/// Where the profile came from.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Provenance {
    /// Device, e.g. "NVIDIA A100-SXM4-80GB" or "cpu".
    pub device: String,
    /// Model, e.g. "meta-llama/Llama-2-7b-hf".
    pub model: String,
    /// Numeric type of weights and activations, e.g. "fp16".
    pub dtype: String,
    /// The input files (timings tables, imported data), as given.
    pub sources: Vec<String>,
    /// How the timed steps were obtained or assembled.
    pub method: String,
    /// Which time column was fitted ("wall_s", "device_s", or the imported quantity).
    pub time_column: String,
    /// The tool that wrote this file, with its version.
    pub tool: String,
    /// Version of the tool that recorded the profile, where the tables say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_tool: Option<String>,
    /// Licence of third-party source data, where it applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// Free-form remarks (what the fit leaves out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// How good a fit is. Percentages are relative to observed times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitQuality {
    /// The regression model kept, e.g. "t = c0 + c1·b".
    pub model: String,
    /// "ols" or "wls" (weights 1/spread² of the repetitions).
    pub weighting: String,
    /// How the intervals were obtained.
    pub interval_method: String,
    /// Points the coefficients were fitted on.
    pub points_fitted: usize,
    /// R² on the fitted points.
    pub r2: f64,
    /// Mean absolute percentage error on the fitted points.
    pub mape_pct: f64,
    /// Largest absolute percentage error on the fitted points.
    pub worst_error_pct: f64,
    /// Points held out (0: no held-out check).
    pub holdout_points: usize,
    /// MAPE on held-out points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout_mape_pct: Option<f64>,
    /// Largest absolute percentage error on held-out points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout_worst_error_pct: Option<f64>,
    /// Richer models tried and why they were kept or dropped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub model_selection: Vec<String>,
}

/// The ranges a quantity was fitted on (inclusive); predictions outside extrapolate.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ValidRange {
    /// Batch sizes, requests.
    pub batch_size_req: [u64; 2],
    /// Prompt lengths, tokens.
    pub input_tokens: [u64; 2],
    /// Output lengths (single-request line), tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<[u64; 2]>,
    /// Per-request KV context before a decode step, tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_tokens: Option<[u64; 2]>,
}

/// `T(n) = per_token_s·n + intercept_s [+ per_input_token_s·(p − input_tokens)]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SingleRequest {
    /// Slope `a`, seconds per output token.
    pub per_token_s: f64,
    /// Intercept `c`, seconds.
    pub intercept_s: f64,
    /// Reference prompt length the line holds at, tokens.
    pub input_tokens: u64,
    /// Richer term: seconds per prompt token away from `input_tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_input_token_s: Option<f64>,
    /// 95% intervals, keyed by coefficient name.
    pub ci95: BTreeMap<String, [f64; 2]>,
    /// Standard errors, keyed by coefficient name.
    pub std_err: BTreeMap<String, f64>,
    /// Fit quality.
    pub quality: FitQuality,
    /// Fitted ranges.
    pub range: ValidRange,
}

/// `t1(b) = slope_s_per_req·b + intercept_s [+ per_prefill_token_s·b·(p − input_tokens)]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FirstToken {
    /// `k1`, seconds per request in the batch.
    pub slope_s_per_req: f64,
    /// `k2`, seconds.
    pub intercept_s: f64,
    /// Reference prompt length the line holds at, tokens.
    pub input_tokens: u64,
    /// Richer term: seconds per prefill token away from the reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_prefill_token_s: Option<f64>,
    /// 95% intervals, keyed by coefficient name.
    pub ci95: BTreeMap<String, [f64; 2]>,
    /// Standard errors, keyed by coefficient name.
    pub std_err: BTreeMap<String, f64>,
    /// Fit quality.
    pub quality: FitQuality,
    /// Fitted ranges.
    pub range: ValidRange,
}

/// `t2(b) = slope_s_per_req·b + intercept_s [+ per_context_token_s·b·(ctx − context_tokens)]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecodeStep {
    /// `k3`, seconds per request in the batch.
    pub slope_s_per_req: f64,
    /// `k4`, seconds.
    pub intercept_s: f64,
    /// Reference per-request context the line holds at, tokens.
    pub context_tokens: u64,
    /// Richer term: seconds per cached context token away from the reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_context_token_s: Option<f64>,
    /// 95% intervals, keyed by coefficient name.
    pub ci95: BTreeMap<String, [f64; 2]>,
    /// Standard errors, keyed by coefficient name.
    pub std_err: BTreeMap<String, f64>,
    /// Fit quality.
    pub quality: FitQuality,
    /// Fitted ranges.
    pub range: ValidRange,
}

/// At most `max_concurrent_requests` requests of `sequence_tokens` tokens fit in the KV cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvCapacity {
    /// Sequence length (prompt + output), tokens.
    pub sequence_tokens: u64,
    /// Largest batch, requests.
    pub max_concurrent_requests: u64,
    /// Where the figure comes from.
    pub source: String,
}

const HEADER: &str = "\
# tokenq coefficients file (schema_version 1). Written by a program: regenerate, do not edit.
# single_request: T(n)  = per_token_s*n + intercept_s                     (paper Fig. 2a)
# first_token:    t1(b) = slope_s_per_req*b + intercept_s   (k1, k2)       (paper Fig. 2b)
# decode_step:    t2(b) = slope_s_per_req*b + intercept_s   (k3, k4)       (paper Fig. 2b)
";

impl SingleRequest {
    /// `T(n)` in seconds at the reference prompt length.
    pub fn latency_s(&self, output_tokens: f64) -> f64 {
        self.per_token_s * output_tokens + self.intercept_s
    }
}

impl FirstToken {
    /// `t1(b)` in seconds at the reference prompt length.
    pub fn time_s(&self, batch: f64) -> f64 {
        self.slope_s_per_req * batch + self.intercept_s
    }
}

impl DecodeStep {
    /// `t2(b)` in seconds at the reference context.
    pub fn time_s(&self, batch: f64) -> f64 {
        self.slope_s_per_req * batch + self.intercept_s
    }
}

/// A TOML error as one line naming where it is: `line N, key `table.key`: message` (the key
/// when the error points at a value, the line alone for a syntax error).
pub fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = first_line(e.message());
    let Some(span) = e.span() else {
        return message;
    };
    let start = span.start.min(text.len());
    let before = &text[..start];
    let line_no = before.matches('\n').count() + 1;
    // The key: on the line holding the error, or the nearest line above with `key =` (a
    // multi-line array).
    let lines: Vec<&str> = text.lines().collect();
    let key_line = (0..line_no.min(lines.len()))
        .rev()
        .map(|i| lines[i].trim())
        .find(|l| !l.starts_with('[') && !l.starts_with('#') && l.contains('='));
    let header = lines[..line_no.min(lines.len())]
        .iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    let this_line = lines.get(line_no - 1).map_or("", |l| l.trim());
    let is_header = this_line.starts_with('[');
    match key_line
        .and_then(|l| l.split_once('='))
        .map(|(k, _)| k.trim())
    {
        Some(k) if !is_header && !k.is_empty() => {
            let key = match header {
                Some(h) if !h.is_empty() => format!("{h}.{k}"),
                _ => k.to_string(),
            };
            format!("line {line_no}, key `{key}`: {message}")
        }
        _ => format!("line {line_no}: {message}"),
    }
}

impl CoefficientsFile {
    /// An empty file with the current schema and the given provenance.
    pub fn new(provenance: Provenance) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            provenance,
            single_request: None,
            first_token: None,
            decode_step: None,
            kv_capacity: Vec::new(),
            step_time: None,
            extra: toml::Table::new(),
        }
    }

    /// Read, check the schema version, and validate a coefficients file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| CoreError::Io {
            path: path.to_path_buf(),
            cause: source,
        })?;
        Self::from_toml_str(&text, path)
    }

    /// Parse from TOML text; `path` is used in messages only.
    pub fn from_toml_str(text: &str, path: &Path) -> Result<Self> {
        let toml_err = |message: String| CoreError::Toml {
            path: path.to_path_buf(),
            message,
        };
        let table: toml::Table =
            toml::from_str(text).map_err(|e| toml_err(describe_toml_error(text, &e)))?;
        match table.get("schema_version") {
            None => {
                return Err(toml_err(
                    "no `schema_version` key (is this a tokenq coefficients file?)".into(),
                ));
            }
            Some(toml::Value::Integer(v)) if *v == i64::from(SCHEMA_VERSION) => {}
            Some(toml::Value::Integer(v)) => {
                return Err(CoreError::UnsupportedSchema {
                    path: path.to_path_buf(),
                    found: *v,
                    supported: SCHEMA_VERSION,
                });
            }
            Some(other) => {
                return Err(toml_err(format!(
                    "`schema_version` must be an integer, found {other}"
                )));
            }
        }
        let file: Self = table.try_into().map_err(|e: toml::de::Error| {
            // The table has no positions: parse the text again for the line and key.
            match toml::from_str::<Self>(text) {
                Err(located) if located.span().is_some() => {
                    toml_err(describe_toml_error(text, &located))
                }
                _ => toml_err(first_line(&e.to_string())),
            }
        })?;
        file.validate().map_err(|message| CoreError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(file)
    }

    /// The TOML text, with a comment header giving the formulas.
    pub fn to_toml_string(&self) -> String {
        let body = toml::to_string(self).expect("a coefficients file always serialises to TOML");
        format!("{HEADER}\n{body}")
    }

    /// Validate, then write to `path` (through a temporary file, so a failure leaves no
    /// half-written file).
    pub fn write(&self, path: &Path) -> Result<()> {
        self.validate().map_err(|message| CoreError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        let io = |source| CoreError::Io {
            path: path.to_path_buf(),
            cause: source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, self.to_toml_string()).map_err(|source| CoreError::Io {
            path: tmp.clone(),
            cause: source,
        })?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Check that the file can drive the queueing models: a known schema, at least one fitted
    /// quantity, finite coefficients, positive times over the fitted ranges.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.schema_version != SCHEMA_VERSION {
            return Err(format!(
                "schema_version {} (this tokenq writes {SCHEMA_VERSION})",
                self.schema_version
            ));
        }
        if self.single_request.is_none()
            && self.first_token.is_none()
            && self.decode_step.is_none()
            && self.step_time.is_none()
        {
            return Err(
                "no fitted quantity ([single_request], [first_token], [decode_step] or [step_time])".into(),
            );
        }
        let finite = |name: &str, v: f64| {
            if v.is_finite() {
                Ok(())
            } else {
                Err(format!("{name} = {v} is not a finite number"))
            }
        };
        if let Some(s) = &self.single_request {
            finite("single_request.per_token_s", s.per_token_s)?;
            finite("single_request.intercept_s", s.intercept_s)?;
            if let Some(v) = s.per_input_token_s {
                finite("single_request.per_input_token_s", v)?;
            }
            if s.per_token_s <= 0.0 {
                return Err(format!(
                    "single_request.per_token_s = {} s must be positive",
                    s.per_token_s
                ));
            }
            let n_min = s.range.output_tokens.map_or(1, |r| r[0]).max(1) as f64;
            if s.latency_s(n_min) <= 0.0 {
                return Err(format!(
                    "single_request gives T({n_min}) = {:.4} s <= 0",
                    s.latency_s(n_min)
                ));
            }
        }
        let check_line = |name: &str, slope: f64, intercept: f64, range: &ValidRange| {
            finite(&format!("{name}.slope_s_per_req"), slope)?;
            finite(&format!("{name}.intercept_s"), intercept)?;
            for b in [
                range.batch_size_req[0].max(1),
                range.batch_size_req[1].max(1),
            ] {
                let t = slope * b as f64 + intercept;
                if t <= 0.0 {
                    return Err(format!("{name} gives t({b}) = {t:.6} s <= 0"));
                }
            }
            Ok(())
        };
        if let Some(f) = &self.first_token {
            check_line("first_token", f.slope_s_per_req, f.intercept_s, &f.range)?;
            if let Some(v) = f.per_prefill_token_s {
                finite("first_token.per_prefill_token_s", v)?;
            }
        }
        if let Some(d) = &self.decode_step {
            check_line("decode_step", d.slope_s_per_req, d.intercept_s, &d.range)?;
            if let Some(v) = d.per_context_token_s {
                finite("decode_step.per_context_token_s", v)?;
            }
        }
        for k in &self.kv_capacity {
            if k.sequence_tokens == 0 || k.max_concurrent_requests == 0 {
                return Err(
                    "kv_capacity entries need positive sequence_tokens and max_concurrent_requests"
                        .into(),
                );
            }
        }
        Ok(())
    }

    /// `(per_token_s, intercept_s)` of the single-request line, if fitted.
    pub fn single_request_line(&self) -> Option<(f64, f64)> {
        self.single_request
            .as_ref()
            .map(|s| (s.per_token_s, s.intercept_s))
    }

    /// The paper's `[k1, k2, k3, k4]` (seconds per request, seconds), if both batch lines are
    /// fitted.
    pub fn batch_k(&self) -> Option<[f64; 4]> {
        let f = self.first_token.as_ref()?;
        let d = self.decode_step.as_ref()?;
        Some([
            f.slope_s_per_req,
            f.intercept_s,
            d.slope_s_per_req,
            d.intercept_s,
        ])
    }
}
