//! Built-in token-length datasets, embedded in the binary with `include_str!`.
//!
//! Each is a compact `value,count` histogram derived from a public trace by
//! `scripts/derive-lengths.py`; provenance and licences are in `datasets/README.md`.
//! The product reads only these shipped copies at run time.

/// A built-in dataset: spec name, one-line description, embedded CSV text.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    /// The spec-string name (`--tokens sharegpt`).
    pub name: &'static str,
    /// What it is and where it came from.
    pub description: &'static str,
    /// The embedded `value,count` CSV.
    pub csv: &'static str,
}

/// Every built-in dataset, output lengths first.
pub const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "sharegpt",
        description: "ShareGPT output tokens (Llama-2 tokenizer, decode capped at 1024; sarathi-serve)",
        csv: include_str!("../../../datasets/lengths/sharegpt.csv"),
    },
    Builtin {
        name: "azure-conv",
        description: "Azure LLM inference 2023, conversation service, generated tokens",
        csv: include_str!("../../../datasets/lengths/azure-conv.csv"),
    },
    Builtin {
        name: "azure-code",
        description: "Azure LLM inference 2023, code service, generated tokens",
        csv: include_str!("../../../datasets/lengths/azure-code.csv"),
    },
    Builtin {
        name: "arxiv",
        description: "arXiv summarisation output tokens (Llama-2 tokenizer; vidur)",
        csv: include_str!("../../../datasets/lengths/arxiv.csv"),
    },
    Builtin {
        name: "sharegpt-input",
        description: "ShareGPT input (prompt) tokens (Llama-2 tokenizer; sarathi-serve)",
        csv: include_str!("../../../datasets/lengths/sharegpt-input.csv"),
    },
    Builtin {
        name: "azure-conv-input",
        description: "Azure LLM inference 2023, conversation service, context tokens",
        csv: include_str!("../../../datasets/lengths/azure-conv-input.csv"),
    },
    Builtin {
        name: "azure-code-input",
        description: "Azure LLM inference 2023, code service, context tokens",
        csv: include_str!("../../../datasets/lengths/azure-code-input.csv"),
    },
    Builtin {
        name: "arxiv-input",
        description: "arXiv summarisation input tokens (Llama-2 tokenizer; vidur)",
        csv: include_str!("../../../datasets/lengths/arxiv-input.csv"),
    },
];

/// Look up a built-in dataset by name (case-insensitive).
pub fn lookup(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name.eq_ignore_ascii_case(name))
}

/// Comma-separated list of the built-in names, for error messages.
pub fn names() -> String {
    BUILTINS
        .iter()
        .map(|b| b.name)
        .collect::<Vec<_>>()
        .join(", ")
}
