#!/bin/sh
# bench/kv_quality.sh: issue 5's quality check of the quantized KV cache in one command: builds
# kv-quality and runs it on the ten texts below (8,000-token context: 7,744 prompt tokens + 256
# teacher-forced greedy steps) with plain, 8-bit and 4-bit KV (bench/README.md says what it prints).
#   bench/kv_quality.sh [MODEL] [kv-quality options...]
#   bench/kv_quality.sh --device cuda --threads 16          # the default model
#   BUILD=build-gpu bench/kv_quality.sh ~/models/x.gguf --json --self-check
# MODEL defaults to SmolLM2-135M-Instruct Q4_1; BUILD (default build) is the CMake build folder,
# configured first (without the tests) when it has no CMakeCache.txt. Every text is a file of this
# repository, so the run needs nothing but a copy of it (and the model); a+b joins two files.
set -eu
cd "$(dirname "$0")/.."
MODEL=$HOME/.cache/rill/models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    MODEL=$1
    shift
fi
BUILD=${BUILD:-build}
[ -f "$BUILD/CMakeCache.txt" ] || cmake -S . -B "$BUILD" -DRILL_TESTS=OFF >/dev/null # no cmocka needed
cmake --build "$BUILD" -j "$(nproc)" --target kv-quality >/dev/null

# SmolLM2 tokens in each text when this was written: 9,179 10,352 10,958 9,903 13,154 12,350 13,546 12,773 20,892 >100k
exec "$BUILD/bin/kv-quality" --model "$MODEL" --context 8000 --tokens 256 "$@" \
    docs/cli.md+docs/api.md+docs/formats.md \
    docs/cuda.md+docs/performance.md+docs/memory.md \
    README.md+bench/RESULTS.md+tests/interop/README.md+tests/ref/TOKENIZER_SOURCES.md+tests/ref/chat_templates_SOURCES.md \
    bench/anchors.py+tests/interop/check_greedy.py \
    src/tokenizer/jinja_eval.c \
    src/cache/prompt_cache.c+src/cache/quantized_cache.c \
    tests/unit/test_backend_ops.c \
    src/backend/cuda/cuda_attention.cu+src/backend/cuda/cuda_gemv.cu \
    tests/data/chat_templates/expected.json \
    tests/data/tokenizers/corpus.jsonl
