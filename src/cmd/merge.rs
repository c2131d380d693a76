//! `tokenq merge`: join the timings tables of `tokenq profile --shard I/N` runs (and their
//! `.runs.json` metadata) into one table. The work is `profiler::merge`.

use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

/// Join shard outputs of one profile into one timings table.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Timings tables written by `tokenq profile --shard I/N` (each with its .runs.json).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// The merged table (.parquet, or .csv).
    #[arg(long)]
    pub out: PathBuf,
    /// Overwrite an existing --out.
    #[arg(long)]
    pub force: bool,
    /// Merge even when grid points are missing (a shard not run, or failed points); they are
    /// listed in a warning. Without it such a merge is refused.
    #[arg(long)]
    pub allow_partial: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Run `tokenq merge`.
pub fn run(a: MergeArgs) -> Result<()> {
    let s = profiler::merge(&a.inputs, &a.out, a.force, a.allow_partial)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    println!(
        "merged {} input(s): {} rows, {} of {} grid points → {} (metadata {})",
        s.inputs,
        s.rows,
        s.points,
        s.grid_points,
        s.out.display(),
        s.meta.display()
    );
    if !s.missing_points.is_empty() {
        eprintln!(
            "warning: {} grid point(s) have no rows (missing shard or failed): point_id {:?}",
            s.missing_points.len(),
            s.missing_points
        );
    }
    Ok(())
}
