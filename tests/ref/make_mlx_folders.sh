#!/bin/sh
# Makes the MLX affine-quantized SmolLM2 folders that issue 6 benchmarks and that rill's MLX loader
# reads, from the f32 HF folder of tests/ref/gguf_to_hf_folder.py (the dequantized GGUF weights),
# with mlx-lm's own converter (mlx-lm 0.32.2, mlx 0.32.4):
#   ~/.cache/rill/models/SmolLM2-135M-Instruct-mlx-8bit      -q --q-bits 8 (group 64), f32 scales/biases/norms
#   ~/.cache/rill/models/SmolLM2-135M-Instruct-mlx-4bit-g32  -q --q-bits 4 --q-group-size 32 (Q4_1's layout), f32
# --dtype float32, not the hub checkpoint's bfloat16: mlx's CPU backend is ~8x slower with bf16 scales
# (8-bit SmolLM2 decode: 0.74 tok/s with bf16, ~6 tok/s with f32, mlx 0.32.4 on the 2-core EPYC), and
# these folders are mlx-lm's speed anchor. Set MLX_DTYPE=bfloat16 for the hub-like variant.
# Idempotent: a folder that already holds config.json is left alone.
set -eu
PY=${PYTHON:-python3}
M=${RILL_MODELS:-$HOME/.cache/rill/models}
SRC=$M/SmolLM2-135M-Instruct-f32
HERE=$(cd "$(dirname "$0")" && pwd)
[ -f "$SRC/config.json" ] || "$PY" "$HERE/gguf_to_hf_folder.py" "$M/SmolLM2-135M-Instruct.Q4_1.gguf" "$SRC"
mk() {  # name, convert args...
    out=$M/$1; shift
    if [ -f "$out/config.json" ]; then echo "have $out"; return; fi
    rm -rf "$out.tmp"
    "$PY" -m mlx_lm convert --hf-path "$SRC" --mlx-path "$out.tmp" --dtype "${MLX_DTYPE:-float32}" "$@"
    mv "$out.tmp" "$out"
    echo "wrote $out"
}
mk SmolLM2-135M-Instruct-mlx-8bit -q --q-bits 8 --q-group-size 64
mk SmolLM2-135M-Instruct-mlx-4bit-g32 -q --q-bits 4 --q-group-size 32
