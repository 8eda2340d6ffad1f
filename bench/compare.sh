#!/usr/bin/env bash
# genlab against the PyTorch reference, interleaved (genlab, PyTorch, genlab, PyTorch, …) so that
# both sides see the same machine load, at 2 threads and at 1 thread. Writes every raw JSON line
# to bench/results/<date>_<nproc>cpu_<cpu>.jsonl and prints a table of the medians.
#
#   bench/compare.sh                      # 3 rounds, threads 2 and 1
#   ROUNDS=5 THREADS="1" bench/compare.sh --models mnist_vae,mnist_mlp_gan
#
# Extra arguments go to both sides (--models, --steps, --warmup, --repeats, --quick).
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

# Tags each JSON line with the round (a JSON object starts with `{`).
tag() { sed "s/^{/{\"round\": $1, /" >> "$out"; }

first=1
for t in $THREADS; do
  for r in $(seq 1 "$ROUNDS"); do
    # The sgemm peak (at 1 and N threads) and the load times once; training every round.
    extra=(--train-only)
    [ "$first" = 1 ] && extra=()
    echo "threads $t, round $r/$ROUNDS: genlab" >&2
    "$GENLAB" bench --json --threads "$t" "${extra[@]}" "$@" | tag "$r"
    echo "threads $t, round $r/$ROUNDS: pytorch" >&2
    "$PYTHON" bench/reference/torch_bench.py --threads "$t" "${extra[@]}" "$@" | tag "$r"
    first=0
  done
done

"$PYTHON" - "$out" <<'EOF'
import json, statistics, sys
from collections import defaultdict

lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ips = defaultdict(list)  # (model, threads, framework) -> per-round median images/s
for l in lines:
    if l.get("kind") == "train":
        ips[(l["model"], l["threads"], l["framework"])].append(l["images_per_sec"])
machine = next((l for l in lines if l.get("kind") == "machine"), {})
print(f"\n{machine.get('cpu', '?')}, {machine.get('nproc', '?')} cores, {machine.get('date', '')}")
for l in lines:
    if l.get("kind") == "sgemm":
        print(f"sgemm {l['n']}³ {l['framework']:<8} {l['threads']} thread(s): {l['gflops']:.1f} GFLOP/s peak, {l['gflops_median']:.1f} median")
rounds = max((l.get("round", 1) for l in lines), default=0)
print(f"\nmedian images/s over {rounds} interleaved rounds (each round itself a median of repeats)\n")
print(f"{'model':<14} {'threads':>7} {'genlab':>10} {'pytorch':>10} {'ratio':>7}")
models = list(dict.fromkeys(k[0] for k in ips))
for threads in sorted({k[1] for k in ips}, reverse=True):
    for m in models:
        g, p = ips.get((m, threads, "genlab")), ips.get((m, threads, "pytorch"))
        if not g and not p:
            continue
        gm = statistics.median(g) if g else float("nan")
        pm = statistics.median(p) if p else float("nan")
        ratio = gm / pm if g and p else float("nan")
        print(f"{m:<14} {threads:>7} {gm:>10.0f} {pm:>10.0f} {ratio:>7.2f}")
print(f"\nraw: {sys.argv[1]}")
EOF
