#!/usr/bin/env bash
# A CUDA 13.0 build toolkit from NVIDIA's pip wheels, for `cargo build --release --features cuda`
# on a machine with no CUDA toolkit and no GPU (the binary loads the CUDA libraries at run time,
# vendor/README.md). Usage:
#   eval "$(bench/cuda_toolkit.sh /path/to/cuda13 [compute_cap])"
#   cargo build --release --features cuda --bin genlab
# Progress goes to stderr; stdout is only the `export` lines.
set -euo pipefail
dir=${1:?usage: $0 DIR [COMPUTE_CAP, default 90 (H100/H200)]}
cap=${2:-90}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
wheels="$dir/.wheels"

# nvcc (+ptxas, fatbinary, nvlink), cicc and libdevice (nvvm), the crt and runtime headers
# with libcudart (candle-kernels links its moe kernels against cudart), thrust/cub (cccl).
pip download --no-deps -q -d "$wheels" "nvidia-cuda-nvcc==13.0.*" "nvidia-nvvm==13.0.*" \
    "nvidia-cuda-crt==13.0.*" "nvidia-cuda-runtime==13.0.*" "nvidia-cuda-cccl==13.0.*" >&2

# Each wheel holds nvidia/cu13/{bin,include,lib,nvvm}: merged, they are the layout that
# bin/nvcc.profile expects (TOP = bin/..).
tmp=$(mktemp -d)
for w in "$wheels"/*.whl; do unzip -q -o "$w" 'nvidia/cu13/*' -d "$tmp"; done
cp -a "$tmp"/nvidia/cu13/. "$dir"/
rm -rf "$tmp"
chmod +x "$dir"/bin/* "$dir"/nvvm/bin/*
# candle-kernels links its kernels with -lcudart. A linker script under that name makes it the
# static cudart (which opens libcuda itself, when first used), so that the binary does not need
# libcudart.so.13 to start; cudarc opens the other CUDA libraries at run time.
rm -f "$dir/lib/libcudart.so"
echo "INPUT($dir/lib/libcudart_static.a)" > "$dir/lib/libcudart.so"
"$dir/bin/nvcc" --version | tail -1 >&2

# CUDA_COMPUTE_CAP keeps candle-kernels' build from asking nvidia-smi; LIBRARY_PATH lets the
# linker find that cudart.
cat <<VARS
export CUDA_HOME="$dir" CUDA_PATH="$dir" CUDA_COMPUTE_CAP=$cap
export PATH="$dir/bin:\$PATH" LIBRARY_PATH="$dir/lib\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
VARS
