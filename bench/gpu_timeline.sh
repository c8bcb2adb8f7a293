#!/bin/bash
# gpu_timeline.sh: where a captured decode step's time goes inside the graph, launch by launch. Builds
# rill with -DRILL_CUDA_TIMELINE=ON (in build-timeline: every kernel's block 0 stamps %globaltimer
# when its pdl_wait returns; src/backend/cuda/cuda_timeline.c), makes the `rill synth` models
# (Llama-3-8B and SmolLM2-135M shapes, 4-bit), and decodes with RILL_CUDA_TIMELINE=1: the report
# (stderr) gives per launch name the microseconds it adds to the step's critical path, overlap with
# PDL included, averaged over the replays; then the first launches in order. Unlike ncu
# (bench/gpu_profile.sh: each kernel alone, caches flushed, base clocks), the launches add up to the
# step. Run from the repo root on the device (carry [".debs"]): `bash bench/gpu_timeline.sh [ENV=..]`
# (settings for both runs, e.g. RILL_CUDA_QKV_ROPE=0).
set -u
cd "$(dirname "$0")/.."
. bench/gpu_setup.sh
{ cmake -S . -B build-timeline $GEN -DRILL_CUDA=ON -DRILL_CUDA_TIMELINE=ON &&
  cmake --build build-timeline -j 16 --target rill-cli; } > /tmp/timeline-build.log 2>&1 ||
    { tail -30 /tmp/timeline-build.log; exit 1; }
RILL=build-timeline/bin/rill
[ -d /tmp/l8 ] || $RILL synth --preset llama3-8b --bits 4 --out /tmp/l8 > /dev/null || exit 1
[ -d /tmp/sm ] || $RILL synth --preset smollm2-135m --bits 4 --out /tmp/sm > /dev/null || exit 1
EXTRA=("$@")
for run in "l8 16 256" "l8 16384 128" "sm 16 1024"; do
    set -- $run
    echo "== $1, prompt $2, $3 tokens"
    env "${EXTRA[@]}" RILL_CUDA_TIMELINE=1 $RILL generate --device cuda --model /tmp/$1 \
        --prompt-ids "$(seq -s, 1000 $((999 + $2)))" --max-tokens $3 --json 2>&1 >/tmp/timeline.json |
        grep -v '^\s*$'
    python3 -c "import json; s=json.load(open('/tmp/timeline.json'))['stats']; print('decode', round(s['generation_tps'],1), 'tok/s (with the stamps)')"
done
