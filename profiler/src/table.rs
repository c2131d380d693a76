//! The timings table (docs/design.md "Contracts"), read and written through polars.
//!
//! One row per timed model step, columns exactly [`COLUMNS`]:
//! `run_id` (string), `point_id`, `rep`, `batch_size`, `input_tokens`, `step`,
//! `context_tokens` (u32), `wall_s`, `device_s` (f64; `device_s` null on the CPU).
//! Step 0 is the prefill (it yields the first token); step k ≥ 1 is the k-th decode step;
//! `context_tokens` counts the KV entries before the step (0 for the prefill,
//! `input_tokens + k − 1` for decode step k).
//!
//! Parquet by default; CSV when the path ends in `.csv`. Files are written to a temporary name
//! and renamed, so a reader never sees half a file.

use crate::error::ProfileError;
use crate::plan::GridPoint;
use crate::stats::StepRow;
use polars::prelude::*;
use std::path::{Path, PathBuf};

/// Column names, in order: the timings-table contract shared with the reader in `fit`.
pub const COLUMNS: [&str; 9] = tokenq_core::TIMINGS_COLUMNS;

/// File format of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Parquet,
    Csv,
}

impl Format {
    /// `.csv` → CSV, anything else → Parquet.
    pub fn from_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("csv") => Self::Csv,
            _ => Self::Parquet,
        }
    }
}

/// The canonical schema.
pub fn schema() -> Schema {
    let u = DataType::UInt32;
    Schema::from_iter([
        Field::new("run_id".into(), DataType::String),
        Field::new("point_id".into(), u.clone()),
        Field::new("rep".into(), u.clone()),
        Field::new("batch_size".into(), u.clone()),
        Field::new("input_tokens".into(), u.clone()),
        Field::new("step".into(), u.clone()),
        Field::new("context_tokens".into(), u),
        Field::new("wall_s".into(), DataType::Float64),
        Field::new("device_s".into(), DataType::Float64),
    ])
}

/// The rows of one grid point as a frame.
pub fn point_frame(run_id: &str, point: &GridPoint, rows: &[StepRow]) -> PolarsResult<DataFrame> {
    let n = rows.len();
    df!(
        "run_id" => vec![run_id; n],
        "point_id" => vec![point.point_id; n],
        "rep" => rows.iter().map(|r| r.rep).collect::<Vec<u32>>(),
        "batch_size" => vec![point.batch_size; n],
        "input_tokens" => vec![point.input_tokens; n],
        "step" => rows.iter().map(|r| r.step).collect::<Vec<u32>>(),
        "context_tokens" => rows.iter().map(|r| r.context_tokens).collect::<Vec<u32>>(),
        "wall_s" => rows.iter().map(|r| r.wall_s).collect::<Vec<f64>>(),
        "device_s" => rows.iter().map(|r| r.device_s).collect::<Vec<Option<f64>>>(),
    )
}

/// An empty frame with the canonical schema.
pub fn empty_frame() -> DataFrame {
    DataFrame::empty_with_schema(&schema())
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

/// Write a frame atomically (temporary file, then rename).
pub fn write_frame(df: &mut DataFrame, path: &Path, format: Format) -> Result<(), ProfileError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| ProfileError::io(dir, e))?;
    }
    let tmp = tmp_path(path);
    let file = std::fs::File::create(&tmp).map_err(|e| ProfileError::io(&tmp, e))?;
    let res = match format {
        Format::Parquet => ParquetWriter::new(file).finish(df).map(|_| ()),
        Format::Csv => {
            let mut file = file;
            CsvWriter::new(&mut file).include_header(true).finish(df)
        }
    };
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(ProfileError::table(path, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| ProfileError::io(path, e))
}

/// Read a timings table (format from the extension) and check its columns.
pub fn read_frame(path: &Path) -> Result<DataFrame, ProfileError> {
    let df = match Format::from_path(path) {
        Format::Parquet => {
            let file = std::fs::File::open(path).map_err(|e| ProfileError::io(path, e))?;
            if let Some(why) = tokenq_core::timings::sniff_not_parquet(path) {
                return Err(ProfileError::table(path, why));
            }
            ParquetReader::new(file)
                .finish()
                .map_err(|e| ProfileError::table(path, e))?
        }
        Format::Csv => {
            if tokenq_core::timings::sniff_not_parquet(path).is_none() {
                return Err(ProfileError::table(
                    path,
                    "is a Parquet file, not CSV: rename it to .parquet",
                ));
            }
            // The schema below is applied by position: check the header names first.
            let text = std::fs::read_to_string(path).map_err(|e| ProfileError::io(path, e))?;
            let header: Vec<&str> = text
                .lines()
                .next()
                .unwrap_or("")
                .split(',')
                .map(|h| h.trim().trim_matches('"'))
                .collect();
            if header != COLUMNS {
                return Err(ProfileError::table(
                    path,
                    format!(
                        "not a timings table: header {header:?}, expected {}",
                        COLUMNS.join(",")
                    ),
                ));
            }
            CsvReadOptions::default()
                .with_has_header(true)
                .with_schema(Some(Arc::new(schema())))
                .try_into_reader_with_file_path(Some(path.to_path_buf()))
                .and_then(|r| r.finish())
                .map_err(|e| ProfileError::table(path, e))?
        }
    };
    canonical(df).map_err(|e| ProfileError::table(path, format!("not a timings table: {e}")))
}

/// Select the canonical columns in order with the canonical types.
fn canonical(df: DataFrame) -> PolarsResult<DataFrame> {
    let s = schema();
    let cols = s
        .iter()
        .map(|(name, dt)| df.column(name.as_str()).and_then(|c| c.cast(dt)))
        .collect::<PolarsResult<Vec<Column>>>()?;
    DataFrame::new(df.height(), cols)
}

/// Stack frames and sort by (point_id, rep, step).
pub fn concat_sorted(frames: Vec<DataFrame>) -> PolarsResult<DataFrame> {
    let mut acc = empty_frame();
    for f in frames {
        acc.vstack_mut_owned(f)?;
    }
    acc.sort(
        ["point_id", "rep", "step"],
        SortMultipleOptions::default().with_maintain_order(true),
    )
}

/// One row reduced to (point_id, rep, step, context_tokens, wall_s).
pub type RowTuple = (u32, u32, u32, u32, f64);

/// The rows of a frame, for checks and tests.
pub fn frame_rows(df: &DataFrame) -> PolarsResult<Vec<RowTuple>> {
    let p = df.column("point_id")?.u32()?;
    let r = df.column("rep")?.u32()?;
    let s = df.column("step")?.u32()?;
    let c = df.column("context_tokens")?.u32()?;
    let w = df.column("wall_s")?.f64()?;
    Ok((0..df.height())
        .map(|i| {
            (
                p.get(i).unwrap_or(0),
                r.get(i).unwrap_or(0),
                s.get(i).unwrap_or(0),
                c.get(i).unwrap_or(0),
                w.get(i).unwrap_or(f64::NAN),
            )
        })
        .collect())
}

/// Per-point means of a timings table, in the metric definitions of docs/design.md.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PointStats {
    pub point_id: u32,
    pub batch_size: u32,
    pub input_tokens: u32,
    pub reps: u32,
    /// Mean prefill (step 0) time, seconds: TTFT without queueing.
    pub ttft_s: f64,
    /// Mean decode-step time, seconds: TPOT (and the mean ITL) without queueing.
    pub tpot_s: Option<f64>,
    /// Mean time of the whole pass, seconds: e2e of a request of `output_tokens` tokens.
    pub e2e_s: f64,
    pub output_tokens: u32,
}

/// Means per point (sorted by point_id).
pub fn point_stats(df: &DataFrame) -> PolarsResult<Vec<PointStats>> {
    use std::collections::{BTreeMap, BTreeSet};
    #[derive(Default)]
    struct Acc {
        batch: u32,
        input: u32,
        reps: BTreeSet<u32>,
        prefill_sum: f64,
        prefill_n: u32,
        decode_sum: f64,
        decode_n: u32,
        steps: u32,
    }
    let rows = frame_rows(df)?;
    let b = df.column("batch_size")?.u32()?;
    let n = df.column("input_tokens")?.u32()?;
    let mut acc: BTreeMap<u32, Acc> = BTreeMap::new();
    for (i, (p, rep, step, _ctx, w)) in rows.into_iter().enumerate() {
        let e = acc.entry(p).or_insert_with(|| Acc {
            batch: b.get(i).unwrap_or(0),
            input: n.get(i).unwrap_or(0),
            ..Acc::default()
        });
        e.reps.insert(rep);
        if step == 0 {
            e.prefill_sum += w;
            e.prefill_n += 1;
        } else {
            e.decode_sum += w;
            e.decode_n += 1;
        }
        e.steps = e.steps.max(step + 1);
    }
    Ok(acc
        .into_iter()
        .map(|(p, a)| {
            let r = a.reps.len() as u32;
            PointStats {
                point_id: p,
                batch_size: a.batch,
                input_tokens: a.input,
                reps: r,
                ttft_s: a.prefill_sum / f64::from(a.prefill_n.max(1)),
                tpot_s: (a.decode_n > 0).then(|| a.decode_sum / f64::from(a.decode_n)),
                e2e_s: (a.prefill_sum + a.decode_sum) / f64::from(r.max(1)),
                output_tokens: a.steps,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DataFrame {
        let p = GridPoint {
            point_id: 2,
            batch_size: 4,
            input_tokens: 16,
        };
        let rows = [
            StepRow {
                rep: 0,
                step: 0,
                context_tokens: 0,
                wall_s: 0.5,
                device_s: None,
            },
            StepRow {
                rep: 0,
                step: 1,
                context_tokens: 16,
                wall_s: 0.25,
                device_s: Some(0.2),
            },
        ];
        point_frame("r1", &p, &rows).unwrap()
    }

    #[test]
    fn parquet_and_csv_round_trip_with_the_contract_columns() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["t.parquet", "t.csv"] {
            let path = dir.path().join(name);
            let mut df = sample();
            write_frame(&mut df, &path, Format::from_path(&path)).unwrap();
            let back = read_frame(&path).unwrap();
            let names: Vec<String> = back
                .get_column_names()
                .iter()
                .map(|s| s.to_string())
                .collect();
            assert_eq!(names, COLUMNS);
            assert_eq!(
                frame_rows(&back).unwrap(),
                vec![(2, 0, 0, 0, 0.5), (2, 0, 1, 16, 0.25)]
            );
            let d = back.column("device_s").unwrap().f64().unwrap();
            assert_eq!((d.get(0), d.get(1)), (None, Some(0.2)));
        }
    }

    #[test]
    fn a_file_without_the_columns_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.csv");
        std::fs::write(&path, "a,b\n1,2\n").unwrap();
        let e = read_frame(&path).unwrap_err().to_string();
        assert!(e.contains("x.csv"), "{e}");
    }
}
