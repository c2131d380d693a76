#!/usr/bin/env python3
"""Derive tokenq's built-in token-length histograms from public traces.

Usage (from the repository root):

    python3 scripts/derive-lengths.py DATA_DIR [OUT_DIR]

DATA_DIR is a folder holding the public traces under the paths listed in SOURCES (the Azure LLM
inference traces 2023, ShareGPT and arXiv summarisation lengths; origins in datasets/README.md),
OUT_DIR defaults to datasets/lengths. Standard library only; the output is deterministic, so re-running it must
leave `git diff datasets/lengths` empty. Never edit the CSVs by hand.

Binning (compact but mean-preserving):
  * every integer length 0..EXACT_UP_TO is its own atom;
  * above that, lengths are grouped into bins [lo, hi) whose width grows geometrically
    (hi = ceil(lo * (1 + REL_WIDTH))), and each bin is represented by the mean of the
    lengths that fall into it (rounded to VALUE_DECIMALS decimals).
So the histogram's mean equals the trace's mean (up to that rounding), every atom lies inside
the range it stands for, and P(N <= x) is exact at every bin edge.
Output format: `value,count` (the format `empirical:PATH` reads as a histogram), `#` comments.
"""

import csv
import math
import os
import sys

EXACT_UP_TO = 64
REL_WIDTH = 0.02
VALUE_DECIMALS = 4

# (name, relative path, column, description)
SOURCES = [
    ("sharegpt", "sarathi-serve/sharegpt_8k_filtered_stats_llama2_tokenizer.csv", "num_decode_tokens",
     "ShareGPT output (decode) tokens, Llama-2 tokenizer, total <= 8192, decode capped at 1024 (sarathi-serve)"),
    ("sharegpt-input", "sarathi-serve/sharegpt_8k_filtered_stats_llama2_tokenizer.csv", "num_prefill_tokens",
     "ShareGPT input (prefill) tokens, Llama-2 tokenizer (sarathi-serve)"),
    ("azure-conv", "azure-llm-inference-2023/AzureLLMInferenceTrace_conv.csv", "GeneratedTokens",
     "Azure LLM inference trace 2023, conversation service, generated tokens"),
    ("azure-conv-input", "azure-llm-inference-2023/AzureLLMInferenceTrace_conv.csv", "ContextTokens",
     "Azure LLM inference trace 2023, conversation service, context (prompt) tokens"),
    ("azure-code", "azure-llm-inference-2023/AzureLLMInferenceTrace_code.csv", "GeneratedTokens",
     "Azure LLM inference trace 2023, code service, generated tokens"),
    ("azure-code-input", "azure-llm-inference-2023/AzureLLMInferenceTrace_code.csv", "ContextTokens",
     "Azure LLM inference trace 2023, code service, context (prompt) tokens"),
    ("arxiv", "vidur/processed_traces/arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv",
     "num_decode_tokens", "arXiv summarisation output (decode) tokens, Llama-2 tokenizer, total <= 4k (vidur)"),
    ("arxiv-input", "vidur/processed_traces/arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv",
     "num_prefill_tokens", "arXiv summarisation input (prefill) tokens, Llama-2 tokenizer (vidur)"),
]


def read_column(path, column):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        out = []
        for row in reader:
            v = int(float(row[column]))
            if v < 0:
                raise ValueError(f"{path}: negative length {v}")
            out.append(v)
    if not out:
        raise ValueError(f"{path}: no rows")
    return out


def bin_edges(max_value):
    edges = list(range(0, EXACT_UP_TO + 2))  # [k, k+1) for k <= EXACT_UP_TO
    lo = EXACT_UP_TO + 1
    while lo <= max_value:
        hi = max(lo + 1, math.ceil(lo * (1.0 + REL_WIDTH)))
        edges.append(hi)
        lo = hi
    return edges


def histogram(values):
    edges = bin_edges(max(values))
    counts = {}
    sums = {}
    import bisect
    for v in values:
        b = bisect.bisect_right(edges, v) - 1
        counts[b] = counts.get(b, 0) + 1
        sums[b] = sums.get(b, 0) + v
    rows = []
    for b in sorted(counts):
        rows.append((round(sums[b] / counts[b], VALUE_DECIMALS), counts[b], edges[b], edges[b + 1]))
    return rows


def fmt_value(v):
    s = f"{v:.{VALUE_DECIMALS}f}".rstrip("0").rstrip(".")
    return s


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: scripts/derive-lengths.py DATA_DIR [OUT_DIR] (DATA_DIR: the public traces)")
    data = sys.argv[1]
    out_dir = sys.argv[2] if len(sys.argv) > 2 else "datasets/lengths"
    os.makedirs(out_dir, exist_ok=True)
    for name, rel, column, desc in SOURCES:
        values = read_column(os.path.join(data, rel), column)
        rows = histogram(values)
        n = len(values)
        mean = sum(values) / n
        with open(os.path.join(out_dir, f"{name}.csv"), "w", newline="") as f:
            f.write(f"# tokenq built-in `{name}`: {desc}\n")
            f.write(f"# source: {rel}, column {column}; {n} requests, mean {mean:.6f}, "
                    f"min {min(values)}, max {max(values)}\n")
            f.write(f"# derived by scripts/derive-lengths.py: atoms 0..{EXACT_UP_TO} exact, then bins "
                    f"[lo, ceil(lo*{1 + REL_WIDTH})) represented by their mean; do not edit by hand\n")
            f.write("value,count\n")
            for value, count, _, _ in rows:
                f.write(f"{fmt_value(value)},{count}\n")
        print(f"{name}: {n} requests, {len(rows)} atoms, mean {mean:.4f}")


if __name__ == "__main__":
    main()
