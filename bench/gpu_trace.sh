#!/bin/bash
# gpu_trace.sh: where a replayed decode step's time goes, kernel by kernel, from the GPU's own start
# and end times (CUPTI's activity records through bench/kernel_trace.c, LD_PRELOADed: nothing is added
# to the kernels, unlike gpu_timeline.sh's stamps, and nothing runs alone, unlike gpu_profile.sh's
# ncu). Builds rill as gpu.sh does, makes the `rill synth` models (Llama-3-8B and SmolLM2-135M
# shapes, 4-bit), decodes each with and without the tracer (the rates say how much it perturbs), and
# prints bench/kernel_trace.py's table per run. Run from the repo root on the device (carry
# [".debs"]): `bash bench/gpu_trace.sh [ENV=..]` (settings for every run).
set -u
OUT=${OUT:-/tmp/rill-trace-out}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
. bench/gpu_setup.sh
{ cmake -S . -B build-gpu $GEN -DRILL_WERROR=ON -DRILL_CUDA=ON && cmake --build build-gpu -j 16 --target rill-cli; } > "$OUT/trace-build.log" 2>&1 ||
    { tail -30 "$OUT/trace-build.log"; exit 1; }
CUDA_HOME=$(dirname "$(dirname "$(command -v nvcc)")")
cc -O2 -shared -fPIC -I"$CUDA_HOME/include" bench/kernel_trace.c -L"$CUDA_HOME/lib64" -L"$CUDA_HOME/lib" -lcupti \
    -Wl,-rpath,"$CUDA_HOME/lib64" -Wl,-rpath,"$CUDA_HOME/lib" -o /tmp/libktrace.so ||
    { echo "gpu_trace.sh: the tracer did not build (no CUPTI?)"; exit 1; }
RILL=build-gpu/bin/rill
[ -d /tmp/l8 ] || $RILL synth --preset llama3-8b --bits 4 --out /tmp/l8 > /dev/null || exit 1
[ -d /tmp/sm ] || $RILL synth --preset smollm2-135m --bits 4 --out /tmp/sm > /dev/null || exit 1
EXTRA=("$@")
tps() { python3 -c "import json,sys; print(round(json.load(sys.stdin)['stats']['generation_tps'],1))" 2> /dev/null; }
for run in "l8 16 128" "l8 16384 64" "sm 16 512"; do
    set -- $run
    ids=$(seq -s, 1000 $((999 + $2)))
    plain=$(env "${EXTRA[@]}" $RILL generate --device cuda --model /tmp/$1 --prompt-ids "$ids" --max-tokens $3 --json 2> /dev/null | tps)
    traced=$(env "${EXTRA[@]}" RILL_KTRACE_OUT="$OUT/$1-$2.csv" LD_PRELOAD=/tmp/libktrace.so $RILL generate --device cuda \
        --model /tmp/$1 --prompt-ids "$ids" --max-tokens $3 --json 2> "$OUT/$1-$2.log" | tps)
    python3 bench/kernel_trace.py "$OUT/$1-$2.csv" --label "$1, prompt $2, $3 tokens: decode $plain tok/s, $traced traced"
    gzip -f "$OUT/$1-$2.csv"
done
