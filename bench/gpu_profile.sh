#!/bin/bash
# gpu_profile.sh: where a decode step's time goes on the GPU, kernel by kernel. Builds rill with
# CUDA, makes the `rill synth` models (Llama-3-8B and SmolLM2-135M shapes, 4-bit), and runs a
# 4-token greedy decode of each under Nsight Compute (ncu; the device image has no nsys), graph
# nodes profiled one by one; prints the last decode step's kernels grouped by name and grid: time,
# launches, DRAM TB/s. ncu runs each kernel alone at base clocks with caches flushed, so the sum is
# more than a replayed step takes (2.28 ms measured for Llama-3-8B where the kernels add to 3.34 ms):
# the shares, not the sums, are what to read. Logs go to $OUT. Run from the repo root on the device
# (carry [".debs"]): `bash bench/gpu_profile.sh`; RILL_PROFILE_ENV="X=1 Y=2" adds settings.
set -u
OUT=${OUT:-/tmp/rill-profile-out}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
. bench/gpu_setup.sh
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
[ -n "$NCU" ] || { echo "gpu_profile.sh: no ncu on this machine"; exit 1; }
{ cmake -S . -B build-gpu $GEN -DRILL_CUDA=ON && cmake --build build-gpu -j 16 --target rill-cli; } > "$OUT/build.log" 2>&1 ||
    { tail -30 "$OUT/build.log"; exit 1; }
RILL=build-gpu/bin/rill
$RILL synth --preset llama3-8b --bits 4 --out /tmp/l8 > /dev/null && $RILL synth --preset smollm2-135m --bits 4 --out /tmp/sm > /dev/null
for name in l8 sm; do
    # 4 decoded tokens; every kernel of the run (graph nodes one by one) timed alone
    env ${RILL_PROFILE_ENV:-} timeout 400 "$NCU" --graph-profiling node --csv --metrics \
        gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum "$RILL" generate --device cuda \
        --model /tmp/$name --prompt-ids "$(seq -s, 1000 1015)" --max-tokens 4 > "$OUT/$name.csv" 2> "$OUT/$name.log"
    echo "== $name (ncu rc $?): the last decode step, kernel by kernel in isolation"
    python3 - "$OUT/$name.csv" <<'PY'
import csv, collections, sys
lines = [l for l in open(sys.argv[1]) if l.startswith('"')]
k = collections.OrderedDict()
for r in csv.DictReader(lines):
    e = k.setdefault(r["ID"], {"name": r["Kernel Name"], "grid": r["Grid Size"], "block": r["Block Size"]})
    v = float(r["Metric Value"].replace(",", ""))
    u = r["Metric Unit"]
    scale = {"ns": 1e-3, "nsecond": 1e-3, "us": 1, "usecond": 1, "ms": 1e3, "msecond": 1e3, "byte": 1, "Kbyte": 1e3,
             "Mbyte": 1e6, "Gbyte": 1e9}.get(u, 1)
    e[r["Metric Name"]] = v * scale
ks = list(k.values())
ends = [i for i, e in enumerate(ks) if "sample" in e["name"]]
if len(ends) < 2:
    print("fewer than two sample kernels; kernels:", len(ks)); sys.exit(0)
step = ks[ends[-2] + 1 : ends[-1] + 1]
groups = collections.OrderedDict()
for e in step:
    n = e["name"].split("(")[0].split("<")[0].replace("void ", "")
    key = (n, e["grid"])
    g = groups.setdefault(key, [0, 0.0, 0.0])
    g[0] += 1
    g[1] += e.get("gpu__time_duration.sum", 0)
    g[2] += e.get("dram__bytes_read.sum", 0) + e.get("dram__bytes_write.sum", 0)
tot = sum(g[1] for g in groups.values())
print(f"{len(step)} kernels, {tot:.1f} us of kernel time in isolation")
print(f"{'share':>6} {'us':>8} {'n':>4} {'us each':>8} {'TB/s':>6}  kernel (grid)")
for (n, grid), (c, t, b) in sorted(groups.items(), key=lambda x: -x[1][1])[:18]:
    print(f"{100 * t / tot:5.1f}% {t:8.1f} {c:4d} {t / c:8.2f} {b / (t * 1e-6) / 1e12 if t else 0:6.2f}  {n[:60]} {grid}")
PY
done
