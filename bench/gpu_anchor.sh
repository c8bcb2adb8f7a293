#!/bin/bash
# gpu_anchor.sh: rill against llama.cpp on the device machine's GPU, side by side on the same GGUF
# files (bench/gguf_synth.py: Llama-3-8B and SmolLM2-135M shapes, random weights, Q4_0 unless TYPE
# says q8_0 or q4_k_m). llama.cpp cannot be installed there (no network), so its source travels with the tree:
# an ignored folder holding llama.cpp's CMake project (LCPP, default .anchor/llama.cpp; carry it,
# with .debs). In one call it builds rill and llama.cpp's llama-bench (CUDA, this card's architecture
# only; its flash attention unless FA=OFF) side by side, writes the two models meanwhile, then
# alternates llama-bench (-ngl 99, -p 512 -n 128: tg from an empty cache) and `rill bench --device
# cuda -p 512 -g 128` (tg after the 512 prompt) per model, ROUNDS times, and prints one table. Run
# from the repo root on the device: `bash bench/gpu_anchor.sh` [ROUNDS=2 TYPE=q4_0 FA=ON LCPP=dir];
# logs and JSON go to $ANCHOR_LOG (or /tmp/anchor).
set -u
cd "$(dirname "$0")/.."
LCPP=${LCPP:-.anchor/llama.cpp}
TYPE=${TYPE:-q4_0}
ROUNDS=${ROUNDS:-2}
FA=${FA:-ON} # llama.cpp's flash-attention kernels (its build: ~300 s with them on an H100 machine's 16 cores)
LOG=${ANCHOR_LOG:-/tmp/anchor}
mkdir -p "$LOG"
[ -f "$LCPP/CMakeLists.txt" ] || { echo "gpu_anchor: no llama.cpp source at $LCPP (carry it)"; exit 1; }
. bench/gpu_setup.sh
LB=/tmp/lcpp-build
T0=$(date +%s)
(cmake -S "$LCPP" -B $LB $GEN -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DGGML_CUDA_FA=$FA -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_CURL=OFF &&
    cmake --build $LB -j 12 --target llama-bench) > "$LOG/lcpp-build.log" 2>&1 &
LPID=$!
{ cmake -S . -B build-gpu $GEN -DRILL_WERROR=ON -DRILL_CUDA=ON && cmake --build build-gpu -j 4 --target rill-cli; } \
    > "$LOG/rill-build.log" 2>&1 || { tail -30 "$LOG/rill-build.log"; exit 1; }
for m in smollm2-135m llama3-8b; do
    python3 bench/gguf_synth.py --preset $m --type "$TYPE" --out /tmp/$m.gguf --gguf-py "$LCPP/gguf-py" || exit 1
done
wait $LPID || { tail -30 "$LOG/lcpp-build.log"; echo "gpu_anchor: llama.cpp did not build"; exit 1; }
echo "builds and models ready after $(($(date +%s) - T0)) s"
LBENCH=$(find $LB -name llama-bench -type f -perm -u+x | head -1)
echo "$(nvidia-smi --query-gpu=name --format=csv,noheader), GGUF $TYPE, random weights, pp512 / tg128 tok/s"
for r in $(seq "$ROUNDS"); do
    for m in smollm2-135m llama3-8b; do
        "$LBENCH" -m /tmp/$m.gguf -ngl 99 -fa $([ "$FA" = ON ] && echo 1 || echo 0) -p 512 -n 128 -r 3 -o json > "$LOG/lcpp-$m-$r.json" 2>> "$LOG/lcpp.log"
        timeout 300 build-gpu/bin/rill bench --model /tmp/$m.gguf --device cuda -p 512 -g 128 -n 3 --json \
            > "$LOG/rill-$m-$r.json" 2>> "$LOG/rill.log"
        python3 - "$LOG/lcpp-$m-$r.json" "$LOG/rill-$m-$r.json" "$m" "$r" << 'EOF'
import json, sys
def lcpp(path):
    try:
        rows = json.load(open(path))
    except Exception:
        return None, None
    pp = next((x["avg_ts"] for x in rows if x.get("n_prompt") and not x.get("n_gen")), None)
    tg = next((x["avg_ts"] for x in rows if x.get("n_gen") and not x.get("n_prompt")), None)
    return pp, tg
def rill(path):
    try:
        j = json.load(open(path))
    except Exception:
        return None, None
    return j.get("prompt_tps"), j.get("generation_tps")
lp, lt = lcpp(sys.argv[1])
rp, rt = rill(sys.argv[2])
f = lambda v: f"{v:10.1f}" if v else "    FAILED"
ratio = lambda a, b: f"{a / b:5.2f}x" if a and b else "   - "
print(f"round {sys.argv[4]}  {sys.argv[3]:13s} llama.cpp pp512 {f(lp)} tg128 {f(lt)}   rill pp512 {f(rp)} tg128 {f(rt)}"
      f"   rill/llama.cpp pp {ratio(rp, lp)} tg {ratio(rt, lt)}")
EOF
    done
done
