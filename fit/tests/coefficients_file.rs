//! The coefficients file: round trip, schema refusal, validation, unknown sections kept.

use std::path::Path;

use fit::import::{ImportGrid, table1, vidur_mlp};
use fit::{FitOptions, fit_e2e, fit_steps};
use tokenq_core::{CoefficientsFile, CoreError};

fn data(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../datasets")
        .join(rel)
}

fn full_file() -> CoefficientsFile {
    let imp = vidur_mlp(
        &data("vidur/profiling/compute/a100/meta-llama/Llama-2-7b-hf/mlp.csv"),
        "NVIDIA A100",
        "meta-llama/Llama-2-7b-hf",
        &ImportGrid::default(),
    )
    .unwrap();
    fit_steps(&imp.rows, &FitOptions::default())
        .unwrap()
        .into_file(imp.provenance, imp.kv_capacity)
}

#[test]
fn round_trip_through_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/c.toml");
    let f = full_file();
    f.write(&path).unwrap();
    let back = CoefficientsFile::read(&path).unwrap();
    assert_eq!(back, f);
    assert!(!dir.path().join("sub/c.toml.tmp").exists());
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("# tokenq coefficients file"));
    assert!(text.contains("per_token_s = "));
    assert!(text.contains("[first_token]"));
    assert_eq!(
        back.batch_k().unwrap()[0],
        f.first_token.unwrap().slope_s_per_req
    );
}

#[test]
fn table1_file_round_trips_with_kv_capacity() {
    let t = table1(&data("paper/table1.csv")).unwrap();
    let s = fit_e2e(&t.train, Some(&t.test), &FitOptions::default()).unwrap();
    let mut f = CoefficientsFile::new(t.provenance);
    f.single_request = Some(s);
    f.kv_capacity = t.kv_capacity;
    let text = f.to_toml_string();
    let back = CoefficientsFile::from_toml_str(&text, Path::new("t1.toml")).unwrap();
    assert_eq!(back, f);
    assert_eq!(back.kv_capacity[0].max_concurrent_requests, 49);
    let (a, c) = back.single_request_line().unwrap();
    assert!((a - 0.02299253).abs() < 5e-9 && (c - 0.186087).abs() < 5e-7);
    assert!(back.batch_k().is_none());
}

#[test]
fn unknown_schema_version_is_refused_with_the_file_name() {
    let text = full_file()
        .to_toml_string()
        .replace("schema_version = 1", "schema_version = 7");
    let e = CoefficientsFile::from_toml_str(&text, Path::new("gpu.toml")).unwrap_err();
    assert!(matches!(e, CoreError::UnsupportedSchema { found: 7, .. }));
    let msg = e.to_string();
    assert!(
        msg.starts_with("gpu.toml: coefficients schema_version 7 is not supported"),
        "{msg}"
    );
    assert!(!msg.contains('\n'));
    let e = CoefficientsFile::from_toml_str("x = 1", Path::new("gpu.toml")).unwrap_err();
    assert!(e.to_string().contains("no `schema_version`"), "{e}");
}

#[test]
fn sections_of_later_versions_are_kept() {
    let text = format!(
        "{}\n[future_section]\nsome_time_s = 0.5\n",
        full_file().to_toml_string()
    );
    let f = CoefficientsFile::from_toml_str(&text, Path::new("x.toml")).unwrap();
    assert!(f.extra.contains_key("future_section"));
    let again = CoefficientsFile::from_toml_str(&f.to_toml_string(), Path::new("x.toml")).unwrap();
    assert_eq!(again, f);
}

#[test]
fn invalid_values_are_refused() {
    let mut f = full_file();
    f.decode_step.as_mut().unwrap().intercept_s = -1.0;
    let e =
        CoefficientsFile::from_toml_str(&f.to_toml_string(), Path::new("bad.toml")).unwrap_err();
    assert!(e.to_string().contains("decode_step gives t("), "{e}");
    let mut f = full_file();
    f.single_request.as_mut().unwrap().per_token_s = f64::NAN;
    assert!(
        f.write(Path::new("/nonexistent/never.toml"))
            .unwrap_err()
            .to_string()
            .contains("not a finite")
    );
    let e =
        CoefficientsFile::from_toml_str("schema_version = 1\n[provenance]\n", Path::new("p.toml"))
            .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("p.toml: not a valid coefficients file"),
        "{e}"
    );
}
