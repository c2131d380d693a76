//! Reading timings tables with polars: Parquet and CSV give the same rows; bad tables get
//! one-line errors naming the file and column.
#![cfg(feature = "tables")]

use fit::tables::{TimeColumn, read_steps};
use polars::prelude::*;

fn frame(device: Option<f64>) -> DataFrame {
    let n = 6;
    df!(
        "run_id" => vec!["r"; n],
        "point_id" => vec![0i64, 0, 0, 1, 1, 1],
        "rep" => vec![0i64; n],
        "batch_size" => vec![1i64, 1, 1, 4, 4, 4],
        "input_tokens" => vec![16i64; n],
        "step" => vec![0i64, 1, 2, 0, 1, 2],
        "context_tokens" => vec![0i64, 16, 17, 0, 16, 17],
        "wall_s" => vec![0.10, 0.020, 0.021, 0.30, 0.025, 0.026],
        "device_s" => vec![device; n],
    )
    .unwrap()
}

#[test]
fn parquet_and_csv_agree() {
    let dir = tempfile::tempdir().unwrap();
    let pq = dir.path().join("t.parquet");
    let csv = dir.path().join("t.csv");
    let mut df = frame(Some(0.5));
    ParquetWriter::new(std::fs::File::create(&pq).unwrap())
        .finish(&mut df)
        .unwrap();
    CsvWriter::new(std::fs::File::create(&csv).unwrap())
        .finish(&mut df)
        .unwrap();
    let a = read_steps(std::slice::from_ref(&pq), TimeColumn::Wall).unwrap();
    let b = read_steps(std::slice::from_ref(&csv), TimeColumn::Wall).unwrap();
    assert_eq!(a.rows, b.rows);
    assert_eq!(a.rows.len(), 6);
    assert_eq!(a.rows[3].batch_size, 4);
    assert_eq!(a.rows[1].time_s, 0.020);
    // Auto picks device_s when every row has it.
    let d = read_steps(&[pq], TimeColumn::Auto).unwrap();
    assert_eq!(d.time_column, "device_s");
    assert_eq!(d.rows[0].time_s, 0.5);
}

#[test]
fn null_device_times_fall_back_or_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let pq = dir.path().join("cpu.parquet");
    let mut df = frame(None);
    ParquetWriter::new(std::fs::File::create(&pq).unwrap())
        .finish(&mut df)
        .unwrap();
    let s = read_steps(std::slice::from_ref(&pq), TimeColumn::Auto).unwrap();
    assert_eq!(s.time_column, "wall_s");
    let e = read_steps(&[pq], TimeColumn::Device)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("device_s is null") && e.contains("cpu.parquet"),
        "{e}"
    );
    let mut df = frame(None).drop("step").unwrap();
    let bad = dir.path().join("bad.parquet");
    ParquetWriter::new(std::fs::File::create(&bad).unwrap())
        .finish(&mut df)
        .unwrap();
    let e = read_steps(&[bad], TimeColumn::Auto)
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing column `step`"), "{e}");
    assert!(!e.contains('\n'));
}
