#!/usr/bin/env bash
# Profile one grid across a Slurm job array, one shard per array task, then merge.
#
#   sbatch --array=1-4 scripts/slurm-profile.sh            # GPU: 4 shards, one GPU each
#   DEVICE=cpu DTYPE=f32 sbatch --gres=none --cpus-per-task=4 --array=1-4 scripts/slurm-profile.sh
#                                                           # CPU: no GPU requested
#   # the last task to finish merges; or run the merge by hand:
#   tokenq merge profiles/run/shard-*-of-4.parquet --out profiles/run.parquet
#
# GPU or CPU. The `#SBATCH` lines below ask for one GPU (`--gres=gpu:1`), 8 CPUs and 4 hours per
# task. Options on the sbatch command line override them (tested with Slurm 22.05): a CPU run
# submits with `--gres=none`, which drops the GPU request (on a cluster without GPUs the
# directive alone is refused: "Invalid generic resource (gres) specification"), and with
# `--cpus-per-task` no larger than a node's CPUs (a request no node can hold stays pending with
# reason PartitionConfig). On CPU the task's tokenq uses SLURM_CPUS_PER_TASK threads
# (RAYON_NUM_THREADS, unless already set).
#
# Every task runs `tokenq profile --shard I/N` with identical flags, so the shards partition
# the grid deterministically (point_id mod N = I-1) and share one plan fingerprint, which
# `tokenq merge` checks. Use 1-based, contiguous task ids (`--array=1-N`, optionally `%K` to run
# at most K at once). Each finished point is on disk at once, so a preempted or killed task
# keeps its finished points: requeue it (`scontrol requeue JOBID_I`, or preemption with
# `--requeue`, set below) and its next attempt adds `--resume`, profiles only the points still
# missing, and says so in its log ("N resumed"; the log is appended to, not overwritten). A task
# whose shard is already complete does nothing but the merge check.
#
# The task that finds all N shards complete (the table, its .runs.json and no unfinished
# OUT.parts directory) merges them into OUTDIR.parquet (mkdir is the atomic lock, so only one
# task merges). A task cancelled for good (`scancel JOBID_I`) leaves its shard incomplete: no
# merge happens, and merging the shards that exist by hand names the grid points still missing.
# Rerun that task alone (`sbatch --array=I ...` with N given as SHARDS=N) to complete the grid.
#
# Configure with environment variables (defaults in brackets); sbatch passes the submitting
# shell's environment to the tasks:
#   TOKENQ   path to the tokenq binary (built with --features cuda for a GPU) [target/release/tokenq]
#   MODEL    [llama-2-7b]   DEVICE [cuda:0]   DTYPE [f16]   WEIGHTS (a directory; empty = random)
#   BATCH    [1,2,4,8,16,32]   INPUT [128,512,1024]   OUTPUT [512]   REPS (empty = planned)
#   OUTDIR   [profiles/run]   SHARDS (empty = the array's task count)
#
# scripts/slurm-local.sh starts a one-node Slurm on 127.0.0.1 to try this on any machine;
# tests/slurm.rs runs it end to end there (sharding, requeue and resume, a cancelled task).
#SBATCH --job-name=tokenq-profile
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --time=04:00:00
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=slurm-%A_%a.out
set -euo pipefail

TOKENQ=${TOKENQ:-target/release/tokenq}
MODEL=${MODEL:-llama-2-7b}
DEVICE=${DEVICE:-cuda:0}
DTYPE=${DTYPE:-f16}
BATCH=${BATCH:-1,2,4,8,16,32}
INPUT=${INPUT:-128,512,1024}
OUTPUT=${OUTPUT:-512}
OUTDIR=${OUTDIR:-profiles/run}

: "${SLURM_ARRAY_TASK_ID:?run under sbatch --array=1-N (1-based task ids)}"
I=$SLURM_ARRAY_TASK_ID
if [[ -n "${SHARDS:-}" ]]; then
  N=$SHARDS
else
  N=${SLURM_ARRAY_TASK_COUNT:?cannot tell the number of shards: set SHARDS=N}
  if [[ "${SLURM_ARRAY_TASK_MIN:-1}" != 1 || "${SLURM_ARRAY_TASK_MAX:-$N}" != "$N" ]]; then
    echo "error: task ids ${SLURM_ARRAY_TASK_MIN:-?}..${SLURM_ARRAY_TASK_MAX:-?} with $N tasks: submit --array=1-N, or set SHARDS=N to rerun some tasks of an N-shard profile" >&2
    exit 2
  fi
fi
if (( I < 1 || I > N )); then
  echo "error: task id $I outside 1..$N: submit --array=1-N (1-based task ids)" >&2
  exit 2
fi

case $DEVICE in
  cpu)
    export RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-}}
    [[ -z "$RAYON_NUM_THREADS" ]] && unset RAYON_NUM_THREADS
    if [[ -n "${SLURM_JOB_GPUS:-}${CUDA_VISIBLE_DEVICES:-}" ]]; then
      echo "note: DEVICE=cpu but this task holds GPU(s) ${SLURM_JOB_GPUS:-$CUDA_VISIBLE_DEVICES}: submit with --gres=none" >&2
    fi
    ;;
  cuda*)
    if [[ -z "${CUDA_VISIBLE_DEVICES:-}" && -z "${SLURM_JOB_GPUS:-}" ]]; then
      echo "note: DEVICE=$DEVICE but Slurm allocated no GPU to this task (was it submitted with --gres=none?)" >&2
    fi
    ;;
esac

mkdir -p "$OUTDIR"
OUT="$OUTDIR/shard-$I-of-$N.parquet"
echo "task $I/$N (job ${SLURM_ARRAY_JOB_ID:-${SLURM_JOB_ID:-?}}_$I, attempt $(( ${SLURM_RESTART_COUNT:-0} + 1 ))) on $(hostname) at $(date -u +%FT%TZ): $OUT"

# Complete: the table and its metadata are written, and no unfinished parts are left.
complete() { [[ -f "$OUTDIR/shard-$1-of-$N.parquet" && -f "$OUTDIR/shard-$1-of-$N.runs.json" && ! -d "$OUTDIR/shard-$1-of-$N.parquet.parts" ]]; }

args=(profile --model "$MODEL" --device "$DEVICE" --dtype "$DTYPE"
      --batch "$BATCH" --input "$INPUT" --output "$OUTPUT"
      --shard "$I/$N" --out "$OUT" --quiet)
[[ -n "${WEIGHTS:-}" ]] && args+=(--weights "$WEIGHTS")
[[ -n "${REPS:-}" ]] && args+=(--reps "$REPS")

if complete "$I"; then
  echo "shard $I/$N already complete: $OUT"
else
  # Resume if an earlier attempt of this task left finished points behind.
  if [[ -d "$OUT.parts" ]]; then
    args+=(--resume)
    echo "resuming: an earlier attempt left $(find "$OUT.parts" -name 'point-*.parquet' | wc -l) finished point(s) in $OUT.parts"
  fi
  "$TOKENQ" "${args[@]}"
fi

# The task that finds all N shards complete merges them (mkdir is an atomic lock).
shards=()
for ((k = 1; k <= N; k++)); do
  complete "$k" || { echo "shard $k/$N not complete yet: the task that completes the last shard merges"; exit 0; }
  shards+=("$OUTDIR/shard-$k-of-$N.parquet")
done
if mkdir "$OUTDIR/.merge-lock" 2>/dev/null; then
  if "$TOKENQ" merge "${shards[@]}" --out "$OUTDIR.parquet" --force; then
    echo "merged $N shards into $OUTDIR.parquet"
  else
    rmdir "$OUTDIR/.merge-lock"   # let a rerun try again
    exit 1
  fi
fi
