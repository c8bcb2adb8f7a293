#!/bin/bash
# gpu.sh: everything one device call does on the GPU machine (docs/cuda.md): unpack the carried
# .debs (scripts/device-debs), build rill with CUDA, run the op harness (every compiled backend;
# CUDA with bf16, f16 and f32 activations; compute-sanitizer with RILL_GPU_SANITIZER=1), the CUDA
# tests and the tiny models against the CPU, the op benchmarks (and bench/hbm_read.cu, the read
# ceiling), then `rill synth` models with real shapes through `rill generate --device cuda`, each
# speed-up also with its switch off (RILL_CUDA_PDL=0,
# RILL_CUDA_GEMV_DEPTH=1,1,1, RILL_FUSE_ADD=0, RILL_CUDA_ATTENTION=cores, RILL_CUDA_PREFILL_ATTN=gemm,
# RILL_CUDA_WARMUP=0, ...), and Llama-3-8B prefill both cold (a process's first) and warm (`rill bench`);
# prints a table last. Logs go to $OUT (<= 8 files). With RILL_GPU_HEAD=1 it also builds the committed
# tree (a carried .head.tar from scripts/head-tar, else git archive HEAD) in /tmp/head and runs its
# Llama decode alternately with this tree's (A/B on one card). RILL_GPU_QUICK=1 keeps the build, the checks and the main decode runs, alternated
# with RILL_GPU_AB (an env setting, default RILL_CUDA_FUSE_QX=0) or, with RILL_GPU_HEAD=1, with the
# committed tree; it skips the rest. Run it from the
# repo root: `bash bench/gpu.sh` (device: carry [".debs"]).
set -u
OUT=${OUT:-/tmp/rill-gpu-out}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
T0=$(date +%s)
stamp() { echo "[gpu.sh +$(($(date +%s) - T0))s] $*"; }

# 1. packages the image lacks, and the CMake generator (GEN)
. bench/gpu_setup.sh
stamp "packages ready"

# 2. the card
{
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader
    nvcc --version | tail -1
    date -u +%Y-%m-%dT%H:%MZ
} > /tmp/rill-card.txt 2>&1
cat /tmp/rill-card.txt

# 3. build (only what the checks need, so a half-written file elsewhere cannot stop them)
if ! { cmake -S . -B build-gpu $GEN -DRILL_WERROR=ON -DRILL_CUDA=ON &&
       cmake --build build-gpu -j 16 --target test_backend_ops test_cuda test_cuda_model rill-cli; } > "$OUT/build.log" 2>&1; then
    tail -40 "$OUT/build.log"
    echo "gpu.sh: build failed (log: build.log)"
    exit 1
fi
stamp "built"
if [ "${RILL_GPU_HEAD:-0}" = 1 ]; then # the committed tree, built while the checks run
    # (the device's copy of .git may be older than the local one: a carried .head.tar from
    # scripts/head-tar is the commit to compare with; else this machine's HEAD; say which)
    rm -rf /tmp/head && mkdir -p /tmp/head
    if [ -f .head.tar ]; then
        echo "HEAD (carried .head.tar): $(cat .head.txt 2>/dev/null)" | tee -a /tmp/rill-card.txt
        tar -x -f .head.tar -C /tmp/head
    else
        echo "HEAD on this machine: $(git log -1 --format='%h %s' HEAD | cut -c1-80)" | tee -a /tmp/rill-card.txt
        git archive HEAD | tar -x -C /tmp/head
    fi &&
        (cd /tmp/head && cmake -S . -B build $GEN -DRILL_CUDA=ON -DRILL_TESTS=OFF &&
            cmake --build build -j 8 --target rill-cli) > "$OUT/head.log" 2>&1 &
    HEAD_PID=$!
fi

# 4. correctness: the op harness per activation dtype, the CUDA tests, the tiny models
declare -A RES
: > "$OUT/ops.log"
for dt in bf16 f16 f32; do
    echo "== RILL_CUDA_DTYPE=$dt" >> "$OUT/ops.log"
    RILL_CUDA_DTYPE=$dt timeout 300 build-gpu/bin/test_backend_ops >> "$OUT/ops.log" 2>&1
    RES[ops_$dt]=$?
done
stamp "op harness done"
if [ "${RILL_GPU_SANITIZER:-0}" = 1 ]; then
    RILL_CUDA_DTYPE=bf16 timeout 240 compute-sanitizer --tool memcheck --error-exitcode 9 \
        build-gpu/bin/test_backend_ops > "$OUT/sanitizer.log" 2>&1
    RES[sanitizer]=$?
    timeout 300 compute-sanitizer --tool memcheck --error-exitcode 9 build-gpu/bin/test_cuda >> "$OUT/sanitizer.log" 2>&1
    RES[sanitizer_cuda]=$?
fi
timeout 300 build-gpu/bin/test_cuda > "$OUT/test_cuda.log" 2>&1
RES[test_cuda]=$?
RILL_CUDA_DTYPE=f16 timeout 300 build-gpu/bin/test_cuda >> "$OUT/test_cuda.log" 2>&1
RES[test_cuda_f16]=$?
# the resident-grid GEMV on every matrix of 2048 rows or more, with a ring of 4 words across row groups
RILL_CUDA_GEMV_STREAM=2,4 RILL_CUDA_GEMV_STREAM_ROWS=2048 timeout 300 build-gpu/bin/test_cuda >> "$OUT/test_cuda.log" 2>&1
RES[test_cuda_stream]=$?
timeout 300 build-gpu/bin/test_cuda_model > "$OUT/model.log" 2>&1
RES[tiny_models]=$?
stamp "cuda tests done"

QUICK=${RILL_GPU_QUICK:-0}
# 5. op benchmarks (not tests): decode GEMV bandwidth, prefill GEMM (the bf16 peak), attention
if [ "$QUICK" = 1 ]; then
    : > "$OUT/bench.log"
else
    timeout 300 build-gpu/bin/test_cuda bench > "$OUT/bench.log" 2>&1
    RES[op_bench]=$?
    # the card's uncached read rate per Llama-3-8B matrix, the decode GEMVs' ceiling (bench/hbm_read.cu)
    if nvcc -O3 -arch=sm_90 -o /tmp/hbm_read bench/hbm_read.cu > /dev/null 2>&1; then
        timeout 120 /tmp/hbm_read 2>&1 | sed 's/^/bench hbm_read /' >> "$OUT/bench.log"
    fi
fi
[ "$QUICK" = 1 ] || {
# decode attention: the warp-per-key kernel, the CUDA-core GQA kernel (before 2026-11-26 16:00Z), and it
# with the serial split merge (the committed code before then)
for v in warp-attn:RILL_CUDA_ATTENTION=warp cores-attn:RILL_CUDA_ATTENTION=cores \
    cores-serial:RILL_CUDA_ATTENTION=cores+RILL_CUDA_ATTN_MERGE=serial; do
    e=${v#*:}
    env ${e//+/ } timeout 300 build-gpu/bin/test_cuda bench attention 2>&1 | grep "attention decode" |
        sed "s/^bench /bench ${v%%:*} /" >> "$OUT/bench.log"
done
for r in 1 4; do # rows per warp of the large 4-bit GEMVs against the default (2 for one token)
    RILL_CUDA_GEMV_ROWS=$r timeout 300 build-gpu/bin/test_cuda bench 2>&1 | grep "gemv 4-bit" |
        sed "s/^bench /bench rows=$r /" >> "$OUT/bench.log"
done
# programmatic dependent launch off, the 4-bit GEMV's words in flight per row and lane (1 for every
# shape: the loop before 2026-11-26), and both
for v in pdl=0:RILL_CUDA_PDL=0 depth=111:RILL_CUDA_GEMV_DEPTH=1,1,1 neither:RILL_CUDA_PDL=0+RILL_CUDA_GEMV_DEPTH=1,1,1; do
    e=${v#*:}
    env ${e//+/ } timeout 300 build-gpu/bin/test_cuda bench gemv 2>&1 | grep "gemv 4-bit" |
        sed "s/^bench /bench ${v%%:*} /" >> "$OUT/bench.log"
done
# prefill attention through cuBLAS with S and P in memory (before 2026-11-26 17:00Z) against the flash kernel
RILL_CUDA_PREFILL_ATTN=gemm timeout 300 build-gpu/bin/test_cuda bench prefill 2>&1 | grep "attention prefill" |
    sed "s/^bench /bench gemm-attn /" >> "$OUT/bench.log"
}
stamp "op bench done"

# 6. end to end: synthetic models with real shapes (rill synth), `rill generate --device cuda`
RILL=build-gpu/bin/rill
E2E="$OUT/e2e.log"
: > "$E2E"
ids() { seq -s, 1000 $((999 + $1)); } # n prompt ids
run() { # name, model, prompt length, max tokens [, env]; BIN=... runs another build's rill
    local name=$1 model=$2 n=$3 m=$4
    local t0=$(date +%s)
    local j
    j=$(env ${5:-} timeout 300 ${BIN:-$RILL} generate --device cuda --model "$model" --prompt-ids "$(ids "$n")" \
        --max-tokens "$m" --json 2>> "$E2E")
    local rc=$?
    echo "$name rc=$rc wall=$(($(date +%s) - t0))s $j" >> "$E2E"
    python3 - "$name" "$n" "$j" <<'PY' >> /tmp/rill-e2e.txt
import json, sys
name, n, j = sys.argv[1], int(sys.argv[2]), sys.argv[3]
try:
    s = json.loads(j)["stats"]
    print(f"{name:34s} prompt {s['prompt_tokens']:6d} tok {s['prompt_tps']:10.1f} tok/s   decode {s['generation_tokens']:4d} tok {s['generation_tps']:8.1f} tok/s   peak {s['peak_memory_gb']:.2f} GB")
except Exception as e:
    print(f"{name:34s} FAILED ({e})")
PY
}
pbench() { # name, prompt tokens, trials [, env]: `rill bench` (one warm-up prefill, then the trials' mean)
    local name=$1 n=$2 t=$3
    local j
    j=$(env ${4:-} timeout 300 ${BIN:-$RILL} bench --model /tmp/l8 --device cuda -p "$n" -g 1 -n "$t" --json 2>> "$E2E")
    echo "$name rc=$? $j" >> "$E2E"
    python3 - "$name" "$n" "$j" <<'PY' >> /tmp/rill-e2e.txt
import json, sys
name, n, j = sys.argv[1], int(sys.argv[2]), sys.argv[3]
try:
    s = json.loads(j)
    print(f"{name:34s} prompt {n:6d} tok {s['prompt_tps']:10.1f} tok/s   (rill bench: warm, mean of {s['trials']})")
except Exception as e:
    print(f"{name:34s} FAILED ({e})")
PY
}
: > /tmp/rill-e2e.txt
AB=${RILL_GPU_AB:-RILL_CUDA_FUSE_QX=0}
if [ "$QUICK" = 1 ]; then # the main decode runs, alternated with the setting under test
    timeout 200 $RILL synth --preset smollm2-135m --bits 4 --out /tmp/sm >> "$E2E" 2>&1
    timeout 300 $RILL synth --preset llama3-8b --bits 4 --out /tmp/l8 >> "$E2E" 2>&1
    B_BIN=$RILL B_NAME=$AB # the other side: this tree with $AB, or with RILL_GPU_HEAD=1 the committed tree
    if [ -n "${HEAD_PID:-}" ] && wait "$HEAD_PID" && [ -x /tmp/head/build/bin/rill ]; then
        B_BIN=/tmp/head/build/bin/rill B_NAME=HEAD AB=""
    fi
    for i in 1 2 3; do
        run "smollm2-135m ($i)" /tmp/sm 16 1024
        BIN=$B_BIN run "smollm2-135m, $B_NAME ($i)" /tmp/sm 16 1024 "$AB"
        run "llama3-8b short ctx ($i)" /tmp/l8 16 256
        BIN=$B_BIN run "llama3-8b short ctx, $B_NAME ($i)" /tmp/l8 16 256 "$AB"
    done
    run "llama3-8b 16k ctx" /tmp/l8 16384 128
    BIN=$B_BIN run "llama3-8b 16k ctx, $B_NAME" /tmp/l8 16384 128 "$AB"
    pbench "llama3-8b prefill 2048, warm" 2048 3
elif timeout 200 $RILL synth --preset smollm2-135m --bits 4 --out /tmp/sm >> "$E2E" 2>&1; then
    run "smollm2-135m 4-bit, graphs" /tmp/sm 16 1024
    run "smollm2-135m 4-bit, graphs, x quantized apart" /tmp/sm 16 1024 RILL_CUDA_FUSE_QX=0
    run "smollm2-135m 4-bit, no graphs" /tmp/sm 16 1024 RILL_CUDA_GRAPHS=0
    run "smollm2-135m 4-bit, graphs, unfused" /tmp/sm 16 1024 RILL_FUSE=0
    run "smollm2-135m 4-bit, graphs, no PDL" /tmp/sm 16 1024 RILL_CUDA_PDL=0
    run "smollm2-135m 4-bit, graphs, no fused add" /tmp/sm 16 1024 RILL_FUSE_ADD=0
    run "smollm2-135m 4-bit, graphs, no mma attention" /tmp/sm 16 1024 RILL_CUDA_ATTENTION=cores
fi
stamp "smollm2 done"
if [ "$QUICK" != 1 ] && timeout 300 $RILL synth --preset llama3-8b --bits 4 --out /tmp/l8 >> "$E2E" 2>&1; then
    stamp "llama3-8b synthesized"
    run "llama3-8b 4-bit short ctx, graphs" /tmp/l8 16 256
    run "llama3-8b 4-bit short ctx, x quantized apart" /tmp/l8 16 256 RILL_CUDA_FUSE_QX=0
    run "llama3-8b 4-bit short ctx, no graphs" /tmp/l8 16 256 RILL_CUDA_GRAPHS=0
    run "llama3-8b 4-bit short ctx, unfused" /tmp/l8 16 256 RILL_FUSE=0
    run "llama3-8b 4-bit short ctx, 1 row per warp" /tmp/l8 16 256 RILL_CUDA_GEMV_ROWS=1
    run "llama3-8b 4-bit short ctx, 4 rows per warp" /tmp/l8 16 256 RILL_CUDA_GEMV_ROWS=4
    run "llama3-8b 4-bit short ctx, no PDL" /tmp/l8 16 256 RILL_CUDA_PDL=0
    run "llama3-8b 4-bit short ctx, depth 1,1,1" /tmp/l8 16 256 RILL_CUDA_GEMV_DEPTH=1,1,1
    run "llama3-8b 4-bit short ctx, no fused add" /tmp/l8 16 256 RILL_FUSE_ADD=0
    run "llama3-8b 4-bit short ctx, attention not PDL" /tmp/l8 16 256 RILL_CUDA_PDL_ATTENTION=0
    run "llama3-8b 4-bit short ctx, none of the three" /tmp/l8 16 256 "RILL_CUDA_PDL=0 RILL_CUDA_GEMV_DEPTH=1,1,1 RILL_FUSE_ADD=0"
    run "llama3-8b 4-bit short ctx, warp attention" /tmp/l8 16 256 RILL_CUDA_ATTN_MIN_KEYS=2048
    run "llama3-8b 4-bit prefill 2048" /tmp/l8 2049 1
    run "llama3-8b 4-bit prefill 2048, no cuBLAS warm-up" /tmp/l8 2049 1 RILL_CUDA_WARMUP=0
    run "llama3-8b 4-bit prefill 2048, gemm attention" /tmp/l8 2049 1 RILL_CUDA_PREFILL_ATTN=gemm
    pbench "llama3-8b 4-bit prefill 2048, warm" 2048 3
    pbench "llama3-8b 4-bit prefill 2048, warm, gemm attn" 2048 3 RILL_CUDA_PREFILL_ATTN=gemm
    pbench "llama3-8b 4-bit prefill 16k, warm" 16384 1
    run "llama3-8b 4-bit 16k ctx, graphs" /tmp/l8 16384 128
    run "llama3-8b 4-bit 16k ctx, warp attention" /tmp/l8 16384 128 RILL_CUDA_ATTENTION=warp
    run "llama3-8b 4-bit 16k ctx, cores attention" /tmp/l8 16384 128 RILL_CUDA_ATTENTION=cores
    run "llama3-8b 4-bit 16k ctx, cores, serial merge" /tmp/l8 16384 128 "RILL_CUDA_ATTENTION=cores RILL_CUDA_ATTN_MERGE=serial"
    run "llama3-8b 4-bit 16k ctx, serial merge" /tmp/l8 16384 128 RILL_CUDA_ATTN_MERGE=serial
    run "llama3-8b 4-bit 16k ctx, merge not PDL" /tmp/l8 16384 128 RILL_CUDA_PDL_MERGE=0
    run "llama3-8b 4-bit 16k ctx, no PDL" /tmp/l8 16384 128 RILL_CUDA_PDL=0
    run "llama3-8b 4-bit 16k ctx, attention not PDL" /tmp/l8 16384 128 RILL_CUDA_PDL_ATTENTION=0
    if [ -n "${HEAD_PID:-}" ] && wait "$HEAD_PID" && [ -x /tmp/head/build/bin/rill ]; then
        stamp "HEAD built; alternating runs"
        for i in 1 2; do
            BIN=/tmp/head/build/bin/rill run "HEAD: llama3-8b short ctx ($i)" /tmp/l8 16 256
            run "new: llama3-8b short ctx ($i)" /tmp/l8 16 256
            BIN=/tmp/head/build/bin/rill run "HEAD: llama3-8b 16k ctx ($i)" /tmp/l8 16384 128
            run "new: llama3-8b 16k ctx ($i)" /tmp/l8 16384 128
            BIN=/tmp/head/build/bin/rill run "HEAD: smollm2-135m ($i)" /tmp/sm 16 1024
            run "new: smollm2-135m ($i)" /tmp/sm 16 1024
        done
        for i in 1 2; do
            BIN=/tmp/head/build/bin/rill pbench "HEAD: llama3-8b prefill 2048 ($i)" 2048 3
            pbench "new: llama3-8b prefill 2048 ($i)" 2048 3
        done
        BIN=/tmp/head/build/bin/rill run "HEAD: llama3-8b prefill 2048, cold" /tmp/l8 2049 1
        run "new: llama3-8b prefill 2048, cold" /tmp/l8 2049 1
        BIN=/tmp/head/build/bin/rill pbench "HEAD: llama3-8b prefill 16k" 16384 1
        BIN=/tmp/head/build/bin/rill run "HEAD: smollm2-135m 4k ctx" /tmp/sm 4096 256
        run "new: smollm2-135m 4k ctx" /tmp/sm 4096 256
    elif [ -n "${HEAD_PID:-}" ]; then
        echo "HEAD build failed (head.log)"
    fi
fi
stamp "e2e done"
cat /tmp/rill-card.txt "$OUT/bench.log" > /tmp/rill-bench.log && mv /tmp/rill-bench.log "$OUT/bench.log"

# 7. the table
echo
echo "== failures (if any) =="
grep -h -E "relative error [0-9.e-]+ >|FAILED|ERROR SUMMARY: [1-9]|Invalid|error:|DIFFER" "$OUT"/ops.log \
    "$OUT/test_cuda.log" "$OUT/model.log" 2>/dev/null | head -30
echo
echo "== rill GPU checks: $(head -1 /tmp/rill-card.txt) =="
for k in ops_bf16 ops_f16 ops_f32 test_cuda test_cuda_f16 test_cuda_stream tiny_models op_bench sanitizer sanitizer_cuda; do
    [ -n "${RES[$k]:-}" ] && printf "%-14s exit %s\n" "$k" "${RES[$k]}"
done
grep -h -E "relative error|greedy|sampled" "$OUT/model.log" | cut -c1-150
echo
grep -E '^bench (rows=. |warp-attn |cores-attn |cores-serial |gemm-attn |pdl=0 |depth=111 |neither )?(gemm|gemv 4-bit g64|attention)' "$OUT/bench.log" |
    cut -c1-120
grep -E '^bench hbm_read .*(1056 blocks x  256 threads, 2 in flight|528 blocks x  512)' "$OUT/bench.log" | cut -c1-120
echo
cat /tmp/rill-e2e.txt
