#!/usr/bin/env bash
# Profile Llama-2-7B (f16, random weights) on the first CUDA GPU with tokenq's defaults, fit it,
# and keep everything under OUT (docs/cuda.md). Used for tokenq's own GPU runs.
#
#   [BATCH=1,4,16] [INPUT=128,512] scripts/gpu-profile.sh TOKENQ OUT [extra tokenq profile flags]
#
# The grid defaults to batch 1,2,4,8,16,32 × input 64,128,256,512 × 128 output tokens.
# TOKENQ is a `--features cuda` binary (scripts/cuda-toolchain.sh build). The CUDA libraries it
# links (libcublas.so.13, libcublasLt.so.13, libcurand.so.10, libcudart.so.13) are looked up on
# LD_LIBRARY_PATH, then in the Python packages of this machine (nvidia-* wheels, e.g. PyTorch's).
set -euo pipefail
tokenq=$1 out=$2
shift 2
mkdir -p "$out"

if ! ldd "$tokenq" | grep -q 'not found'; then
  :
else
  for py in python3 python; do
    command -v "$py" >/dev/null || continue
    site=$("$py" -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null) || continue
    for s in $site; do
      for lib in "$s"/nvidia/cu13/lib "$s"/nvidia/*/lib; do
        [[ -d $lib ]] && LD_LIBRARY_PATH=$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
      done
    done
  done
  export LD_LIBRARY_PATH
fi
if ldd "$tokenq" | grep 'not found'; then
  echo "error: the CUDA libraries above are missing: put them on LD_LIBRARY_PATH" >&2
  exit 1
fi

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$out/gpu.csv"
"$tokenq" profile --model llama-2-7b --device cuda:0 --dtype f16 \
  --batch "${BATCH:-1,2,4,8,16,32}" --input "${INPUT:-64,128,256,512}" --output 128 \
  --out "$out/profile.parquet" --force "$@" 2>&1 | tee "$out/profile.txt"
"$tokenq" fit "$out/profile.parquet" -o "$out/coefficients.toml" --force \
  --device "$(head -2 "$out/gpu.csv" | tail -1 | cut -d, -f1)" --model llama-2-7b --dtype f16 \
  2>&1 | tee "$out/fit.txt"
