//! Write one reference coefficients file from real GPU data without the polars build:
//! `cargo run -p fit --no-default-features --example reference -- SOURCE PATH OUT.toml [DEVICE MODEL]`
//! with SOURCE = table1 | vidur | llmservingsim. Same code path as `tokenq fit --from`
//! (`fit::import::fit_source`); prints the fit table. Used by `scripts/reference-coefficients.sh`.

use std::path::Path;
use std::process::ExitCode;

use fit::FitOptions;
use fit::import::{Source, fit_source};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: reference table1|vidur|llmservingsim PATH OUT.toml [DEVICE MODEL]";
    if args.len() != 3 && args.len() != 5 {
        eprintln!("{usage}");
        return ExitCode::from(2);
    }
    let source = match args[0].as_str() {
        "table1" => Source::Table1,
        "vidur" => Source::Vidur,
        "llmservingsim" => Source::LlmServingSim,
        other => {
            eprintln!("unknown source {other:?}; {usage}");
            return ExitCode::from(2);
        }
    };
    let result = fit_source(
        source,
        Path::new(&args[1]),
        args.get(3).map(String::as_str),
        args.get(4).map(String::as_str),
        None,
        &FitOptions::default(),
    )
    .and_then(|f| {
        f.write(Path::new(&args[2]))?;
        Ok(f)
    });
    match result {
        Ok(f) => {
            print!("{}", fit::report::render(&f));
            println!("wrote {}", args[2]);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
