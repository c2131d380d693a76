#!/usr/bin/env bash
# Regenerate the reference coefficient files in datasets/coefficients/ from the real GPU data
# shipped in datasets/ (paper Table I, Vidur operator profiles, LLMServingSim per-layer tables).
# Never edit the .toml files by hand: change the importer (fit/src/import.rs) and rerun this.
# The fit table each run prints is kept beside its file (*.txt).
#
# Usage: scripts/reference-coefficients.sh            (builds tokenq with the `tables` feature)
#        TOKENQ=path/to/tokenq scripts/reference-coefficients.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${TOKENQ:-}" ]]; then
  cargo build --quiet --no-default-features --features tables
  TOKENQ="${CARGO_TARGET_DIR:-target}/debug/tokenq"
fi
out=datasets/coefficients
mkdir -p "$out"

fit() { # name, then the arguments of `tokenq fit`
  local name=$1; shift
  "$TOKENQ" fit "$@" --holdout 0.2 --seed 0 --force -o "$out/$name.toml" > "$out/$name.txt"
  echo "wrote $out/$name.toml"
}

fit a100-llama-2-7b-table1 --from table1 datasets/paper/table1.csv
fit a100-llama-2-7b-vidur --from vidur \
  datasets/vidur/profiling/compute/a100/meta-llama/Llama-2-7b-hf/mlp.csv \
  --device "NVIDIA A100" --model meta-llama/Llama-2-7b-hf
fit h100-llama-2-7b-vidur --from vidur \
  datasets/vidur/profiling/compute/h100/meta-llama/Llama-2-7b-hf/mlp.csv \
  --device "NVIDIA H100" --model meta-llama/Llama-2-7b-hf
fit rtx4090-llama-3.1-8b-llmservingsim --from llmservingsim datasets/llmservingsim/RTX4090 \
  --device "NVIDIA GeForce RTX 4090" --model meta-llama/Llama-3.1-8B
fit rtxpro6000-llama-3.1-8b-llmservingsim --from llmservingsim datasets/llmservingsim/RTXPRO6000 \
  --device "NVIDIA RTX PRO 6000 Blackwell Server Edition" --model meta-llama/Llama-3.1-8B
