#!/usr/bin/env bash
# Build tokenq's `cuda` feature on any Linux x86_64 machine, with or without a GPU, from PyPI
# wheels alone (docs/cuda.md).
#
#   scripts/cuda-toolchain.sh setup  [DIR]   install CUDA 13.0's compiler and libraries into
#                                            DIR (default .cuda-toolchain) and lay out a CUDA
#                                            root DIR/root with a link-time stub of libcuda
#   scripts/cuda-toolchain.sh env    [DIR]   print the environment a build needs (eval it)
#   scripts/cuda-toolchain.sh build  [DIR] [CARGO ARGS]
#                                            setup if needed, then cargo build --features cuda
#                                            with CARGO ARGS (default --release; CI passes
#                                            --profile dev to reuse its test build's deps)
#
# CUDA_COMPUTE_CAP selects the GPU generation the kernels are compiled for: 80 (A100), 86
# (RTX 30xx, A10), 89 (RTX 4090, L40S), 90 (H100, H200; the default), 100/120 (Blackwell).
# candle compiles PTX for that one capability; a driver JIT-compiles PTX only for the same or a
# newer generation, so build once per generation you run on.
#
# Another CUDA version: change CUDA_WHEELS below to the matching nvidia-* wheel versions (the
# wheels lay their files out under nvidia/cu<MAJOR>/) and CUDA_MAJOR.
set -euo pipefail

CUDA_MAJOR=13
CUDA_WHEELS=(
  nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88
  nvidia-cuda-nvrtc==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85
  nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35
)

cmd=${1:-build}
here=$(cd "$(dirname "$0")/.." && pwd)
dir=$(realpath -m "${2:-$here/.cuda-toolchain}")
shift $(( $# < 2 ? $# : 2 ))
cargo_args=("$@")
[[ ${#cargo_args[@]} -gt 0 ]] || cargo_args=(--release)
root=$dir/root

# Driver API symbols cudarc's bindings name, taken from its source in the cargo registry.
cudarc_symbols() {
  local src
  src=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -maxdepth 2 -type d -name 'cudarc-0.19*' | sort | tail -1)
  [[ -n $src ]] || { (cd "$here" && cargo fetch --quiet) && src=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -maxdepth 2 -type d -name 'cudarc-0.19*' | sort | tail -1); }
  [[ -n $src ]] || { echo "error: cudarc 0.19 is not in the cargo registry; run cargo fetch" >&2; exit 1; }
  grep -rhoE '\bcu[A-Z][A-Za-z0-9_]*\b' "$src/src/driver/sys" | sort -u
}

setup() {
  if [[ -x $root/bin/nvcc && -f $root/lib64/stubs/libcuda.so ]]; then
    echo "CUDA toolchain ready in $root"
    return
  fi
  echo "installing CUDA $CUDA_MAJOR wheels into $dir/venv (about 1.5 GB)"
  python3 -m venv "$dir/venv"
  "$dir/venv/bin/pip" install --quiet --disable-pip-version-check "${CUDA_WHEELS[@]}"
  local nv
  nv=$("$dir/venv/bin/python" -c 'import nvidia, os; print(os.path.dirname(nvidia.__path__[0] + "/"))')/cu$CUDA_MAJOR
  [[ -d $nv/bin ]] || { echo "error: $nv/bin missing: the wheels changed layout" >&2; exit 1; }
  rm -rf "$root"
  mkdir -p "$root/bin" "$root/lib64/stubs"
  for f in "$nv"/bin/*; do ln -s "$f" "$root/bin/"; done
  ln -s "$nv/include" "$root/include"
  [[ -d $nv/nvvm ]] && ln -s "$nv/nvvm" "$root/nvvm"
  # Development links libfoo.so -> libfoo.so.N for the libraries candle links.
  for lib in cublas cublasLt cudart curand nvrtc; do
    local so
    so=$(find "$nv/lib" -maxdepth 1 -name "lib$lib.so.*" | sort | head -1)
    [[ -n $so ]] || { echo "error: lib$lib.so.* not found in $nv/lib" >&2; exit 1; }
    ln -sf "$so" "$root/lib64/lib$lib.so"
    ln -sf "$so" "$root/lib64/$(basename "$so")"
  done
  # Link-time stub of the driver library (the machine's driver provides it at run time).
  cudarc_symbols | sed 's/.*/void &(void) {}/' > "$dir/libcuda_stub.c"
  cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$root/lib64/stubs/libcuda.so" "$dir/libcuda_stub.c"
  ln -sf libcuda.so "$root/lib64/stubs/libcuda.so.1"
  echo "CUDA toolchain ready in $root ($(wc -l < "$dir/libcuda_stub.c") driver symbols stubbed)"
}

env_lines() {
  cat <<EOF
export CUDA_HOME=$root CUDA_ROOT=$root CUDA_PATH=$root
export PATH=$root/bin:\$PATH
export LIBRARY_PATH=$root/lib64:$root/lib64/stubs\${LIBRARY_PATH:+:\$LIBRARY_PATH}
export CUDA_COMPUTE_CAP=\${CUDA_COMPUTE_CAP:-90}
EOF
}

case $cmd in
  setup) setup ;;
  env) env_lines ;;
  build)
    setup
    eval "$(env_lines)"
    cd "$here"
    echo "cargo build --features cuda ${cargo_args[*]} (CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP)"
    cargo build --features cuda "${cargo_args[@]}"
    echo "built tokenq with CUDA; at run time put the CUDA libraries on the"
    echo "loader path: LD_LIBRARY_PATH=$root/lib64 (libcublas.so.$CUDA_MAJOR, libcurand.so.10, libcudart.so.$CUDA_MAJOR)"
    ;;
  *) echo "usage: $0 setup|env|build [DIR]" >&2; exit 2 ;;
esac
