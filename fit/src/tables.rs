//! Reading timings tables (docs/design.md "Contracts": one row per timed model step; columns
//! `run_id, point_id, rep, batch_size, input_tokens, step, context_tokens, wall_s, device_s`)
//! from Parquet or CSV files, shards included, with polars. A directory stands for every
//! `*.parquet` / `*.csv` file in it (the shards of one profile), read in name order.

use std::path::{Path, PathBuf};

use polars::prelude::*;

use tokenq_core::error::first_line;

use crate::error::{FitError, Result};
use crate::profile::{StepRow, check_rows};

/// Columns a timings table must have (`device_s` may be all null).
pub const REQUIRED_COLUMNS: [&str; 9] = crate::profile::TIMINGS_COLUMNS;

/// Which measured time to fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeColumn {
    /// `device_s` where every row has it, else `wall_s`.
    Auto,
    /// Host clock with the device synchronised.
    Wall,
    /// CUDA events.
    Device,
}

/// Steps read from one or more tables, with what was used.
#[derive(Debug, Clone, PartialEq)]
pub struct Steps {
    /// The rows.
    pub rows: Vec<StepRow>,
    /// The files read (shards expanded).
    pub files: Vec<PathBuf>,
    /// The column fitted: "wall_s" or "device_s".
    pub time_column: &'static str,
}

fn polars_err(path: &Path) -> impl Fn(PolarsError) -> FitError + '_ {
    move |e| FitError::Polars {
        path: path.to_path_buf(),
        message: first_line(&e.to_string()),
    }
}

/// Expand directories into their table files.
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut shard: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|source| FitError::Io {
                    path: p.clone(),
                    cause: source,
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| is_table(f))
                .collect();
            shard.sort();
            if shard.is_empty() {
                return Err(FitError::Empty {
                    what: format!(
                        "{} (no .parquet or .csv files in the directory)",
                        p.display()
                    ),
                });
            }
            out.extend(shard);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn is_table(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("parquet" | "pq" | "csv")
    )
}

/// Read one table into a DataFrame (Parquet unless the extension is `.csv`).
pub fn read_frame(path: &Path) -> Result<DataFrame> {
    let err = polars_err(path);
    if !path.exists() {
        return Err(FitError::Io {
            path: path.to_path_buf(),
            cause: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        });
    }
    if path.extension().and_then(|e| e.to_str()) == Some("csv") {
        if tokenq_core::timings::sniff_not_parquet(path).is_none() {
            return Err(FitError::Polars {
                path: path.to_path_buf(),
                message: "is a Parquet file, not CSV: rename it to .parquet".into(),
            });
        }
        CsvReadOptions::default()
            .with_has_header(true)
            .with_infer_schema_length(Some(10_000))
            .try_into_reader_with_file_path(Some(path.to_path_buf()))
            .map_err(&err)?
            .finish()
            .map_err(&err)
    } else {
        let file = std::fs::File::open(path).map_err(|source| FitError::Io {
            path: path.to_path_buf(),
            cause: source,
        })?;
        if let Some(why) = tokenq_core::timings::sniff_not_parquet(path) {
            return Err(FitError::Polars {
                path: path.to_path_buf(),
                message: why,
            });
        }
        ParquetReader::new(file).finish().map_err(&err)
    }
}

fn ints(df: &DataFrame, name: &str, path: &Path) -> Result<Vec<Option<i64>>> {
    let c = df
        .column(name)
        .map_err(polars_err(path))?
        .cast(&DataType::Int64)
        .map_err(polars_err(path))?;
    Ok(c.i64().map_err(polars_err(path))?.iter().collect())
}

fn floats(df: &DataFrame, name: &str, path: &Path) -> Result<Vec<Option<f64>>> {
    let c = df
        .column(name)
        .map_err(polars_err(path))?
        .cast(&DataType::Float64)
        .map_err(polars_err(path))?;
    Ok(c.f64().map_err(polars_err(path))?.iter().collect())
}

/// Read the step rows of one DataFrame. `time` picks the time column.
pub fn frame_to_rows(
    df: &DataFrame,
    path: &Path,
    time: TimeColumn,
) -> Result<(Vec<StepRow>, &'static str)> {
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    for c in REQUIRED_COLUMNS {
        if !names.iter().any(|n| n == c) {
            return Err(FitError::MissingColumn {
                path: path.to_path_buf(),
                column: c.into(),
                expected: REQUIRED_COLUMNS.join(", "),
            });
        }
    }
    if df.height() == 0 {
        return Err(FitError::Empty {
            what: path.display().to_string(),
        });
    }
    let run = df
        .column("run_id")
        .map_err(polars_err(path))?
        .cast(&DataType::String)
        .map_err(polars_err(path))?;
    let run: Vec<Option<String>> = run
        .str()
        .map_err(polars_err(path))?
        .iter()
        .map(|s| s.map(str::to_string))
        .collect();
    // The integer columns of the schema: point_id … context_tokens.
    let int_cols = &REQUIRED_COLUMNS[1..7];
    let ic: Vec<Vec<Option<i64>>> = int_cols
        .iter()
        .map(|c| ints(df, c, path))
        .collect::<Result<_>>()?;
    let wall = floats(df, "wall_s", path)?;
    let device = floats(df, "device_s", path)?;
    let (times, used) = match time {
        TimeColumn::Wall => (wall, "wall_s"),
        TimeColumn::Device => {
            if let Some(i) = device.iter().position(Option::is_none) {
                return Err(FitError::BadValue {
                    path: path.to_path_buf(),
                    what: format!(
                        "row {}: device_s is null (a CPU profile has no device times; use --time wall)",
                        i + 1
                    ),
                });
            }
            (device, "device_s")
        }
        TimeColumn::Auto => {
            if device.iter().all(Option::is_some) {
                (device, "device_s")
            } else {
                (wall, "wall_s")
            }
        }
    };
    let mut rows = Vec::with_capacity(df.height());
    for i in 0..df.height() {
        let null = |col: &str| FitError::BadValue {
            path: path.to_path_buf(),
            what: format!("row {}: column `{col}` is null", i + 1),
        };
        let int = |k: usize| -> Result<i64> {
            let v = ic[k][i].ok_or_else(|| null(int_cols[k]))?;
            if v < 0 {
                return Err(FitError::BadValue {
                    path: path.to_path_buf(),
                    what: format!("row {}: column `{}` = {v} is negative", i + 1, int_cols[k]),
                });
            }
            Ok(v)
        };
        let t = times[i].ok_or_else(|| null(used))?;
        if !t.is_finite() {
            return Err(FitError::NonFinite {
                path: path.to_path_buf(),
                column: used.into(),
                row: i + 1,
                value: t,
            });
        }
        rows.push(StepRow {
            run_id: run[i].clone().ok_or_else(|| null("run_id"))?,
            point_id: int(0)? as u64,
            rep: int(1)? as u32,
            batch_size: int(2)? as u32,
            input_tokens: int(3)? as u32,
            step: int(4)? as u32,
            context_tokens: int(5)? as u64,
            time_s: t,
        });
    }
    check_rows(&rows, path)?;
    Ok((rows, used))
}

/// Read and concatenate timings tables (files or shard directories).
pub fn read_steps(paths: &[PathBuf], time: TimeColumn) -> Result<Steps> {
    let files = expand(paths)?;
    if files.is_empty() {
        return Err(FitError::Config(
            "no timings table given (pass PROFILE files or directories)".into(),
        ));
    }
    let mut rows = Vec::new();
    let mut used_cols = Vec::new();
    for f in &files {
        let df = read_frame(f)?;
        let (r, used) = frame_to_rows(&df, f, time)?;
        rows.extend(r);
        used_cols.push(used);
    }
    // Auto must choose one column for all shards.
    let time_column = if used_cols.iter().all(|u| *u == "device_s") {
        "device_s"
    } else {
        "wall_s"
    };
    if time == TimeColumn::Auto && time_column == "wall_s" && used_cols.contains(&"device_s") {
        rows.clear();
        for f in &files {
            let df = read_frame(f)?;
            rows.extend(frame_to_rows(&df, f, TimeColumn::Wall)?.0);
        }
    }
    Ok(Steps {
        rows,
        files,
        time_column,
    })
}
