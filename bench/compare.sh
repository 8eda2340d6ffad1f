#!/usr/bin/env bash
# genlab against the PyTorch reference, interleaved (genlab, PyTorch, genlab, PyTorch, …) so that
# both sides see the same machine load, at 2 threads and at 1 thread. Writes every raw JSON line
# to bench/results/<date>_<nproc>cpu_<cpu>.jsonl and prints a table of the medians
# (bench/table.py, which also reprints the table of any earlier results file).
#
#   bench/compare.sh                      # 3 rounds, threads 2 and 1
#   ROUNDS=5 THREADS="1" bench/compare.sh --models mnist_vae,mnist_mlp_gan
#
# Extra arguments go to both sides (--models, --steps, --warmup, --repeats, --quick,
# --train-only: training only, no sgemm peak or loads on either side).
# PYTHON is the interpreter with torch (default /work/venv-torch/bin/python; see
# bench/reference/README.md). CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-"2 1"}
PYTHON=${PYTHON:-/work/venv-torch/bin/python}
TARGET=${CARGO_TARGET_DIR:-target}

cargo build --release --bin genlab
GENLAB="$TARGET/release/genlab"
"$PYTHON" -c "import torch" || { echo "no torch for $PYTHON: see bench/reference/README.md" >&2; exit 1; }

nproc=$(nproc)
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
slug=$(printf '%s' "$cpu" | tr -c 'A-Za-z0-9' '-' | tr -s '-' | sed 's/^-//; s/-$//')
mkdir -p bench/results
out="bench/results/$(date -u +%Y-%m-%dT%H%MZ)_${nproc}cpu_${slug}.jsonl"
: > "$out"

# Tags each JSON line with the round and the thread count of the invocation (a JSON object
# starts with `{`).
tag() { sed "s/^{/{\"round\": $1, \"pool\": $2, /" >> "$out"; }

# `--train-only` (no sgemm peak, no loads) already implies what `--no-loads` asks, and the
# bench refuses the two together.
train_only=0
for a in "$@"; do [ "$a" = --train-only ] && train_only=1; done

first=1
for t in $THREADS; do
  for r in $(seq 1 "$ROUNDS"); do
    # The load times once; the sgemm peak (at 1 and N threads) and training every round, so
    # that each round's share of the peak compares figures of the same moment (this machine's
    # speed drifts by 20% within a run).
    extra=(--no-loads)
    { [ "$first" = 1 ] || [ "$train_only" = 1 ]; } && extra=()
    echo "threads $t, round $r/$ROUNDS: genlab" >&2
    "$GENLAB" bench --json --threads "$t" "${extra[@]}" "$@" | tag "$r" "$t"
    echo "threads $t, round $r/$ROUNDS: pytorch" >&2
    "$PYTHON" bench/reference/torch_bench.py --threads "$t" "$@" | tag "$r" "$t"
    first=0
  done
done

python3 bench/table.py "$out"
