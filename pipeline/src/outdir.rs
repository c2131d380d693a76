//! The output directory of `tokenq pipeline`: before a run writes anything, the files an
//! earlier run left there are removed, so a report never sits beside another run's
//! coefficients, profile or figures (docs/usage.md "Reports").
//!
//! Only files tokenq writes are removed — `report.html`, `coefficients.toml`,
//! `profile.parquet` and its sidecar `profile.runs.json`, and the figures `fig*.svg` and
//! `plan-*.svg` (the capacity plan's, with `--slo`) — and
//! never one that this run reads (`--profile FILE`, `--coefficients FILE`). The unfinished
//! profile `profile.parquet.parts/` is left for `--resume` (or `--force`) to decide.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The files of the pipeline's own making in `dir`.
pub fn previous_outputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            matches!(
                name,
                "report.html" | "coefficients.toml" | "profile.parquet" | "profile.runs.json"
            ) || ((name.starts_with("fig") || name.starts_with("plan-")) && name.ends_with(".svg"))
        })
        .collect();
    found.sort();
    found
}

/// Remove [`previous_outputs`] of `dir`, except the files in `keep` (this run's inputs and
/// their sidecars). Returns what was removed.
pub fn remove_previous_outputs(dir: &Path, keep: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let same = |a: &Path, b: &Path| {
        std::fs::canonicalize(a)
            .ok()
            .zip(std::fs::canonicalize(b).ok())
            .is_some_and(|(x, y)| x == y)
    };
    let mut removed = Vec::new();
    for p in previous_outputs(dir) {
        if keep.iter().any(|k| same(k, &p)) {
            continue;
        }
        std::fs::remove_file(&p).with_context(|| {
            format!(
                "--out {}: cannot remove {} left by an earlier run",
                dir.display(),
                p.display()
            )
        })?;
        removed.push(p);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_only_tokenq_outputs_and_never_an_input() {
        let dir = std::env::temp_dir().join(format!("tokenq-outdir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.as_path();
        for f in [
            "report.html",
            "coefficients.toml",
            "profile.parquet",
            "profile.runs.json",
            "fig9-old.svg",
            "plan-goodput-vs-rate.svg",
            "notes.txt",
            "logo.svg",
        ] {
            std::fs::write(d.join(f), "x").unwrap();
        }
        std::fs::create_dir(d.join("profile.parquet.parts")).unwrap();
        let removed = remove_previous_outputs(d, &[d.join("coefficients.toml")]).unwrap();
        let names: Vec<String> = removed
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "fig9-old.svg",
                "plan-goodput-vs-rate.svg",
                "profile.parquet",
                "profile.runs.json",
                "report.html"
            ]
        );
        for kept in [
            "coefficients.toml",
            "notes.txt",
            "logo.svg",
            "profile.parquet.parts",
        ] {
            assert!(d.join(kept).exists(), "{kept}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
