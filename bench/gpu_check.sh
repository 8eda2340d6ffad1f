#!/usr/bin/env bash
# The GPU check (README, GPU), on a machine with an NVIDIA GPU and a genlab built with
# `--features cuda`:
#   1. parity: each preset trained from one seed on the CPU's reference kernels and on the GPU,
#      the largest relative loss difference over the steps (`genlab parity`);
#   2. speed: images/s of each benchmark preset on the GPU, beside PyTorch's on the same GPU
#      (bench/reference/torch_bench.py --device cuda), one after the other, 3 repeats each.
# Writes the whole log to bench/results/<date>_gpu_<name>.txt and the JSON lines beside it.
#
#   bench/gpu_check.sh                       # target/release/genlab
#   GENLAB=path/to/genlab PYTHON=python3 bench/gpu_check.sh
#
# STEPS scales the parity runs (default 300 steps for the MLP presets, a third of that for
# conv_vae and a sixth for mnist_dcgan: candle's CPU convolutions make the reference side slow).
set -euo pipefail
cd "$(dirname "$0")/.."

GENLAB=${GENLAB:-${CARGO_TARGET_DIR:-target}/release/genlab}
PYTHON=${PYTHON:-python3}
STEPS=${STEPS:-300}
THREADS=${THREADS:-$(nproc)}

gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
slug=$(printf '%s' "$gpu" | tr -c 'A-Za-z0-9' '-' | tr -s '-' | sed 's/^-//; s/-$//')
mkdir -p bench/results
base="bench/results/$(date -u +%Y-%m-%dT%H%MZ)_gpu_${slug}"
log="$base.txt"
json="$base.jsonl"
: > "$json"

{
  echo "# genlab GPU check, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  "$GENLAB" --version
  echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $THREADS threads for the CPU side"
  echo
  echo "## Parity: the CPU's reference kernels against the GPU, same seed, losses step by step"
  # A preset over the tolerance is reported, not fatal: the rest of the check still runs.
  "$GENLAB" parity --device cuda --threads "$THREADS" --steps "$STEPS" \
    --preset mnist_vae,mnist_ae,mnist_beta_vae,mnist_mlp_gan || echo "(over the tolerance above)"
  "$GENLAB" parity --device cuda --threads "$THREADS" --steps $((STEPS / 3)) --preset conv_vae \
    || echo "(over the tolerance above)"
  "$GENLAB" parity --device cuda --threads "$THREADS" --steps $((STEPS / 6)) --batch 64 --preset mnist_dcgan \
    || echo "(over the tolerance above)"
  echo
  echo "## Speed on the GPU: batch 128, the median of 3 repeats"
  "$GENLAB" bench --device cuda --train-only --repeats 3 --json | tee -a "$json"
  "$PYTHON" bench/reference/torch_bench.py --device cuda --train-only --repeats 3 | tee -a "$json"
  echo
  "$PYTHON" - "$json" <<'EOF'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("kind") == "train":
        rows.setdefault(r["model"], {})[r["framework"]] = r["images_per_sec"]
print(f"{'model':<16} {'genlab img/s':>14} {'PyTorch img/s':>14} {'genlab/PyTorch':>15}")
for model, v in rows.items():
    g, t = v.get("genlab"), v.get("pytorch")
    ratio = f"{g / t:.2f}" if g and t else "-"
    print(f"{model:<16} {g or 0:>14.0f} {t or 0:>14.0f} {ratio:>15}")
EOF
} 2>&1 | tee "$log"
echo "wrote $log and $json"
