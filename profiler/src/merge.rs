//! Join shard outputs (`tokenq merge`): the timings tables are stacked and sorted by
//! (point_id, rep, step); the metadata sidecars are combined (runs, point records, shards).
//! Every input must come from the same plan (same fingerprint: grid, seed, model, dtype,
//! weights, repetition policy) and no grid point may appear twice. Points of the grid that no
//! input covers are reported, not invented.

use crate::error::ProfileError;
use crate::runner::{META_SCHEMA, ProfileMeta, meta_path, read_meta, write_meta};
use crate::table::{self, Format};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// What a merge produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergeSummary {
    pub out: PathBuf,
    pub meta: PathBuf,
    pub inputs: usize,
    pub rows: usize,
    /// Grid points with rows.
    pub points: usize,
    pub grid_points: usize,
    /// Grid points that no input covers (or that failed in every input).
    pub missing_points: Vec<u32>,
}

/// Merge timings tables (each with its `.runs.json` sidecar) into `out`.
pub fn merge(
    inputs: &[PathBuf],
    out: &Path,
    overwrite: bool,
    allow_partial: bool,
) -> Result<MergeSummary, ProfileError> {
    if inputs.is_empty() {
        return Err(ProfileError::Config(
            "merge needs at least one input table, e.g. tokenq merge shard-*.parquet --out all.parquet".into(),
        ));
    }
    if out.is_dir() {
        return Err(ProfileError::output(
            out,
            "is a directory: --out names the merged table file, e.g. --out all.parquet",
        ));
    }
    let same = |p: &Path| {
        std::fs::canonicalize(p)
            .ok()
            .zip(std::fs::canonicalize(out).ok())
            .is_some_and(|(a, b)| a == b)
    };
    if let Some(p) = inputs.iter().find(|p| same(p)) {
        return Err(ProfileError::output(
            out,
            format!(
                "is also an input ({}): merging into it would replace that shard; choose another --out",
                p.display()
            ),
        ));
    }
    if out.exists() && !overwrite {
        return Err(ProfileError::output(
            out,
            "already exists: choose another --out, or pass --force to overwrite",
        ));
    }
    let _lock = crate::lock::OutputLock::acquire(out)?;
    crate::lock::check_sidecar(out)?;
    let mut metas: Vec<ProfileMeta> = Vec::new();
    for p in inputs {
        let mp = meta_path(p);
        if !mp.exists() {
            return Err(ProfileError::output(
                &mp,
                format!(
                    "missing: every input needs the metadata sidecar written beside it by `tokenq profile` ({})",
                    p.display()
                ),
            ));
        }
        let m = read_meta(&mp)?;
        if m.schema != META_SCHEMA {
            return Err(ProfileError::output(
                &mp,
                format!("schema `{}`, expected `{META_SCHEMA}`", m.schema),
            ));
        }
        if let Some(first) = metas.first() {
            if first.fingerprint != m.fingerprint {
                return Err(ProfileError::output(
                    &mp,
                    format!(
                        "comes from a different plan than {} (grid, seed, model, dtype, weights or repetitions differ): merge only shards of one profile",
                        inputs[0].display()
                    ),
                ));
            }
        }
        metas.push(m);
    }
    let mut seen = BTreeSet::new();
    let mut frames = Vec::new();
    for (p, m) in inputs.iter().zip(&metas) {
        for r in m.points.iter().filter(|r| r.status == "ok") {
            if !seen.insert(r.point_id) {
                return Err(ProfileError::output(
                    p,
                    format!(
                        "grid point {} is also in an earlier input: each point must come from one shard",
                        r.point_id
                    ),
                ));
            }
        }
        frames.push(table::read_frame(p)?);
    }
    let first = metas[0].clone();
    let grid_points = first.grid.points();
    let missing: Vec<u32> = grid_points
        .iter()
        .map(|p| p.point_id)
        .filter(|id| !seen.contains(id))
        .collect();
    if !missing.is_empty() && !allow_partial {
        return Err(ProfileError::Config(format!(
            "the inputs cover {} of {} grid points; missing point_id {missing:?}: rerun the shard(s) that own them (tokenq profile --shard I/N --resume), or pass --allow-partial to merge what is there",
            seen.len(),
            grid_points.len()
        )));
    }
    let mut df = table::concat_sorted(frames).map_err(|e| ProfileError::table(out, e))?;
    table::write_frame(&mut df, out, Format::from_path(out))?;
    let mut merged = ProfileMeta {
        shards: vec![],
        runs: vec![],
        points: vec![],
        kv_capacity: first.kv_capacity.clone(),
        ..first
    };
    for m in metas {
        merged.shards.extend(m.shards);
        merged.runs.extend(m.runs);
        merged.points.extend(m.points);
    }
    merged.points.sort_by_key(|r| r.point_id);
    merged.shards.sort_by_key(|s| (s.count, s.index));
    let mp = meta_path(out);
    write_meta(&mp, &merged)?;
    Ok(MergeSummary {
        out: out.to_path_buf(),
        meta: mp,
        inputs: inputs.len(),
        rows: df.height(),
        points: seen.len(),
        grid_points: grid_points.len(),
        missing_points: missing,
    })
}
