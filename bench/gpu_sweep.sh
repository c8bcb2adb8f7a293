#!/bin/bash
# gpu_sweep.sh: decode speed under each value of one setting, alternated (A B C A B C ...), on the
# `rill synth` Llama-3-8B (short context) or SmolLM2-135M shape, 4-bit. For trying a kernel knob on
# the device in one short call: `bash bench/gpu_sweep.sh [-m l8|sm] [-r rounds] [-p prompt tokens]
# [-g tokens] VAR v1 v2 ...` ("-" as a value leaves VAR unset; -p 16384 -g 128 for a long cache). Installs the carried .debs and builds rill-cli as gpu.sh does.
set -u
MODEL=l8 ROUNDS=2 PROMPT=16 NTOK=""
while getopts "m:r:p:g:" o; do
    case $o in m) MODEL=$OPTARG ;; r) ROUNDS=$OPTARG ;; p) PROMPT=$OPTARG ;; g) NTOK=$OPTARG ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
VAR=$1
shift
cd "$(dirname "$0")/.."
. bench/gpu_setup.sh
{ cmake -S . -B build-gpu $GEN -DRILL_WERROR=ON -DRILL_CUDA=ON && cmake --build build-gpu -j 16 --target rill-cli; } > /tmp/sweep-build.log 2>&1 ||
    { tail -30 /tmp/sweep-build.log; exit 1; }
RILL=build-gpu/bin/rill
preset=$([ "$MODEL" = sm ] && echo smollm2-135m || echo llama3-8b)
n=${NTOK:-$([ "$MODEL" = sm ] && echo 1024 || echo 256)}
[ -d /tmp/$MODEL ] || $RILL synth --preset $preset --bits 4 --out /tmp/$MODEL > /dev/null || exit 1
echo "$(nvidia-smi --query-gpu=name --format=csv,noheader), $preset 4-bit, prompt $PROMPT, $n tokens, decode tok/s:"
for r in $(seq "$ROUNDS"); do
    for v in "$@"; do
        if [ "$v" = - ]; then e=""; else e="$VAR=$v"; fi
        tps=$(env $e $RILL generate --device cuda --model /tmp/$MODEL --prompt-ids "$(seq -s, 1000 $((999 + PROMPT)))" \
            --max-tokens $n --json 2> /dev/null | python3 -c "import json,sys; print(round(json.load(sys.stdin)['stats']['generation_tps'],1))" 2> /dev/null)
        echo "round $r  $VAR=$v  ${tps:-FAILED}"
    done
done
