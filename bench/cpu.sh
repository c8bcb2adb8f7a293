#!/bin/sh
# bench/cpu.sh: the CPU numbers of issue 6 in one command, on a quiet machine:
#   bench/cpu.sh [MODEL] [RILL]
# 1. rill bench at 1 and 2 threads (pp512 / tg128, 5 trials) and the 2-thread/1-thread ratios;
# 2. where the time goes at 2 threads (--profile), for docs/performance.md;
# 3. the anchors side by side (bench/anchors.py: llama.cpp and mlx-lm, A B A B, DRAM bandwidth,
#    appends to bench/RESULTS.md).
# Check `uptime` first: the load average should be well under 1.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
MODEL=${1:-$HOME/.cache/rill/models/SmolLM2-135M-Instruct.Q4_1.gguf}
RILL=${2:-$HERE/../build/bin/rill}
N=${N:-5}
echo "# $(date -u +%FT%TZ) $(uname -n), load: $(cut -d' ' -f1-3 /proc/loadavg), model: $MODEL"
for t in 1 2; do
    "$RILL" bench --model "$MODEL" -p 512 -g 128 -n "$N" --threads $t --json >"/tmp/rill-bench-t$t.json"
    echo "threads $t: $(cat /tmp/rill-bench-t$t.json)"
done
python3 - <<'PY'
import json
a = json.load(open("/tmp/rill-bench-t1.json")); b = json.load(open("/tmp/rill-bench-t2.json"))
print(f"scaling 2 threads / 1 thread: pp512 {b['prompt_tps'] / a['prompt_tps']:.2f}x, "
      f"tg128 {b['generation_tps'] / a['generation_tps']:.2f}x")
PY
"$RILL" bench --model "$MODEL" -p 512 -g 128 -n 2 --threads 2 --profile
if [ "${ANCHORS:-1}" = 1 ]; then python3 "$HERE/anchors.py" --rill "$RILL" -n "$N" --threads 2; fi
