#!/usr/bin/env bash
# Profile one grid across a Slurm job array, one shard per array task, then merge.
#
#   sbatch --array=1-4 scripts/slurm-profile.sh            # 4 shards (one GPU each)
#   # the last task to finish merges; or run the merge by hand:
#   tokenq merge profiles/run/shard-*.parquet --out profiles/run.parquet
#
# Every task runs `tokenq profile --shard I/N` with identical flags, so the shards partition
# the grid deterministically (point_id mod N = I-1) and share one plan fingerprint, which
# `tokenq merge` checks. A preempted or killed task keeps its finished points: requeue it
# (`scontrol requeue`), and `--resume` continues where it stopped.
#
# Configure with environment variables (defaults in brackets):
#   TOKENQ   path to the tokenq binary built with --features cuda [target/release/tokenq]
#   MODEL    [llama-2-7b]   DEVICE [cuda:0]   DTYPE [f16]   WEIGHTS (a directory; empty = random)
#   BATCH    [1,2,4,8,16,32]   INPUT [128,512,1024]   OUTPUT [512]   REPS (empty = planned)
#   OUTDIR   [profiles/run]
#SBATCH --job-name=tokenq-profile
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --time=04:00:00
#SBATCH --requeue
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
N=${SLURM_ARRAY_TASK_COUNT:-${SLURM_ARRAY_TASK_MAX:?cannot tell the number of shards}}
mkdir -p "$OUTDIR"
OUT="$OUTDIR/shard-$I-of-$N.parquet"

args=(profile --model "$MODEL" --device "$DEVICE" --dtype "$DTYPE"
      --batch "$BATCH" --input "$INPUT" --output "$OUTPUT"
      --shard "$I/$N" --out "$OUT" --quiet)
[[ -n "${WEIGHTS:-}" ]] && args+=(--weights "$WEIGHTS")
[[ -n "${REPS:-}" ]] && args+=(--reps "$REPS")
# Resume if an earlier attempt of this task left finished points behind.
[[ -d "$OUT.parts" ]] && args+=(--resume)

if [[ -f "$OUT" ]]; then
  echo "shard $I/$N already complete: $OUT"
else
  "$TOKENQ" "${args[@]}"
fi

# The task that finds all N shards complete merges them (mkdir is an atomic lock).
shopt -s nullglob
done_shards=("$OUTDIR"/shard-*-of-"$N".parquet)
if (( ${#done_shards[@]} == N )) && mkdir "$OUTDIR/.merge-lock" 2>/dev/null; then
  "$TOKENQ" merge "${done_shards[@]}" --out "$OUTDIR.parquet" --force
  echo "merged $N shards into $OUTDIR.parquet"
fi
