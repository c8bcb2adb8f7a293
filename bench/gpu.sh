#!/bin/bash
# gpu.sh: everything one device call does on the GPU machine (docs/cuda.md): unpack the carried
# .debs (scripts/device-debs), build rill with CUDA, run the op harness (every compiled backend;
# CUDA with bf16, f16 and f32 activations), compute-sanitizer over it, the CUDA tests, then the
# benchmarks; prints a table last. Logs go to $OUT (8 files: at most 8 come back).
# Run it from the repo root: `bash bench/gpu.sh` (device: carry [".debs"]).
set -u
OUT=${OUT:-/tmp/rill-gpu-out}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
T0=$(date +%s)
stamp() { echo "[gpu.sh +$(($(date +%s) - T0))s] $*"; }

# 1. packages the image lacks; a package already installed there is left alone
for f in .debs/*.deb; do
    [ -e "$f" ] || continue
    pkg=$(basename "$f" | cut -d_ -f1)
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' && continue
    dpkg -x "$f" /
done
for l in /usr/lib/x86_64-linux-gnu/lib{jansson,cmocka,pcre2-8,utf8proc}.so; do # -dev links to our libs
    [ -e "$l" ] || ln -sf "$(ls "$l".[0-9]* 2>/dev/null | head -1)" "$l"
done
ldconfig
stamp "packages ready"

# 2. the card
{
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader
    nvcc --version | tail -1
    date -u +%Y-%m-%dT%H:%MZ
} > /tmp/rill-card.txt 2>&1
cat /tmp/rill-card.txt

# 3. build (only what the checks need, so a half-written file elsewhere cannot stop them)
GEN=""
command -v ninja > /dev/null && GEN="-G Ninja"
if ! { cmake -S . -B build-gpu $GEN -DRILL_WERROR=ON -DRILL_CUDA=ON &&
       cmake --build build-gpu -j 16 --target test_backend_ops test_cuda; } > "$OUT/build.log" 2>&1; then
    tail -40 "$OUT/build.log"
    echo "gpu.sh: build failed (log: build.log)"
    exit 1
fi
stamp "built"

# 4. correctness: the op harness per activation dtype, the sanitizer, the CUDA tests
declare -A RES
for dt in bf16 f16 f32; do
    RILL_CUDA_DTYPE=$dt timeout 300 build-gpu/bin/test_backend_ops > "$OUT/ops_$dt.log" 2>&1
    RES[ops_$dt]=$?
done
stamp "op harness done"
RILL_CUDA_DTYPE=bf16 timeout 240 compute-sanitizer --tool memcheck --error-exitcode 9 \
    build-gpu/bin/test_backend_ops > "$OUT/sanitizer.log" 2>&1
RES[sanitizer]=$?
stamp "sanitizer done"
timeout 300 build-gpu/bin/test_cuda > "$OUT/test_cuda.log" 2>&1
RES[test_cuda]=$?
stamp "cuda tests done"

# 5. benchmarks (not tests): decode GEMV bandwidth, prefill GEMM, decode attention
timeout 300 build-gpu/bin/test_cuda bench > "$OUT/bench.log" 2>&1
RES[bench]=$?
# the same with 4-bit weights kept on the f32 path, for the int8 (dp4a) path's gain
RILL_CUDA_GEMV=float timeout 120 build-gpu/bin/test_cuda bench 2>&1 | grep 'gemv 4-bit' | sed 's/^bench /bench f32-path /' >> "$OUT/bench.log"
# op harness on the 4-bit f32 path too (it is what f32 activations always use)
RILL_CUDA_GEMV=float timeout 300 build-gpu/bin/test_backend_ops > "$OUT/ops_f32path.log" 2>&1
RES[ops_gemvf]=$?
stamp "bench done"

cat /tmp/rill-card.txt "$OUT/bench.log" > /tmp/rill-bench.log && mv /tmp/rill-bench.log "$OUT/bench.log"

# 6. the table
echo
echo "== failures (if any) =="
grep -h -E "relative error|FAILED|ERROR SUMMARY: [1-9]|Invalid|error:" "$OUT"/ops_*.log "$OUT/sanitizer.log" \
    "$OUT/test_cuda.log" 2>/dev/null | head -30
echo
echo "== rill GPU checks: $(head -1 /tmp/rill-card.txt) =="
for k in ops_bf16 ops_f16 ops_f32 ops_gemvf sanitizer test_cuda bench; do
    f=$k; [ "$k" = ops_gemvf ] && f=ops_f32path
    summary=$(grep -h -E "PASSED|FAILED  \]|SKIPPED  \]|ERROR SUMMARY" "$OUT/$f.log" 2>/dev/null |
              tr -s ' ' | tr '\n' ' ' | cut -c1-90)
    printf "%-10s exit %-3s %s\n" "$k" "${RES[$k]}" "$summary"
done
echo
grep '^bench' "$OUT/bench.log"
