#!/bin/sh
# Installs the independent anchors that tests/interop and bench/anchors.py compare rill with.
# Idempotent: each package is installed only when missing (quick when everything is present).
# Not part of scripts/setup: CI must not compile llama.cpp on every run.
#
#   llama-cpp-python 0.3.36  (compiles its bundled llama.cpp from source: several minutes on 2 cores;
#                             CPU-only build, tuned for this host with GGML_NATIVE,
#                             no multimodal (LLAVA_BUILD=OFF) library)
#   mlx-lm 0.32.2            (on mlx[cpu] / mlx-cpu 0.32.4)
#   gguf, numpy, safetensors, jinja2, transformers, tokenizers: for tests/ref/gguf_to_hf_folder.py
#
# Set RILL_ANCHOR_PIN=0 to take the newest versions instead of the pinned ones.
set -eu

PY=${PYTHON:-python3}
pin=${RILL_ANCHOR_PIN:-1}
v() { if [ "$pin" = 1 ]; then echo "$1==$2"; else echo "$1"; fi; }

have() { "$PY" -c "import importlib.metadata as m, sys; m.version(sys.argv[1])" "$1" 2>/dev/null; }

if ! have mlx; then
    "$PY" -m pip install -q "$(v 'mlx[cpu]' 0.32.4)"
fi
for p in numpy safetensors gguf jinja2 tokenizers; do
    have "$p" || "$PY" -m pip install -q "$p"
done
if ! have transformers; then
    # without torch: only the tokenizer converters are used
    "$PY" -m pip install -q --no-deps transformers
fi
if ! have mlx-lm; then
    "$PY" -m pip install -q "$(v mlx-lm 0.32.2)"
fi
if ! have llama-cpp-python; then
    echo "setup.sh: building llama-cpp-python from source (several minutes on 2 cores)..." >&2
    CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=ON -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_BLAS=OFF -DGGML_VULKAN=OFF -DLLAVA_BUILD=OFF}" \
    CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} \
        "$PY" -m pip install -q "$(v llama-cpp-python 0.3.36)"
fi
"$PY" - <<'PY'
import importlib.metadata as m
print("anchors:", ", ".join(f"{p} {m.version(p)}" for p in ("llama-cpp-python", "mlx", "mlx-lm")))
PY
