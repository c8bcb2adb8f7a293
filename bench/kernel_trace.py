#!/usr/bin/env python3
"""kernel_trace.py: where a replayed decode step's time goes, from bench/kernel_trace.c's CSV (the
GPU's own start and end of every kernel, no stamps in the kernels).

Usage: kernel_trace.py TRACE.csv [--label TEXT]

The replays are the graph launches (one correlation id each) with the most common kernel count;
the first 3 are skipped. In each, kernels are taken in start order, and for kernel i:
  advance = end_i - the latest end before it (the first kernel's start for the first): how far it
            moves the step's finish line (these sum to the replay's span);
  head    = start_i - end_{i-1}: negative where PDL started it before the kernel before it ended.
Printed per kernel (name and grid): launches per step, mean duration, mean head, and the advance per
step in microseconds and as a share of the replay's span; then the span, the gaps between replays
(the host's part of a step) and the step time they add up to.
"""
import collections
import csv
import re
import subprocess
import sys


def demangle(names):
    try:
        out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True, check=True)
        return dict(zip(names, out.stdout.split("\n")))
    except (OSError, subprocess.CalledProcessError):
        return {n: n for n in names}


def short(name):
    name = re.sub(r"\(.*\)$", "", name)  # the parameter list
    name = name.replace("__nv_bfloat16", "bf16").replace("__half", "f16").replace("(int)", "").replace("void ", "")
    return name[:90]


def main():
    path = sys.argv[1]
    label = sys.argv[sys.argv.index("--label") + 1] if "--label" in sys.argv else path
    groups = collections.defaultdict(list)
    with open(path) as f:
        for row in csv.reader(f):
            if len(row) < 9 or row[1] == "0":  # graph nodes only
                continue
            corr, start, end = int(row[0]), int(row[2]), int(row[3])
            groups[corr].append((start, end, f"{row[8]}|{row[4]}x{row[5]}x{row[6]}"))
    if not groups:
        print(f"{label}: no graph kernels in the trace")
        return 1
    sizes = collections.Counter(len(g) for g in groups.values())
    n_kernels = sizes.most_common(1)[0][0]
    replays = sorted((sorted(g) for g in groups.values() if len(g) == n_kernels), key=lambda g: g[0][0])[3:]
    if not replays:
        print(f"{label}: too few replays")
        return 1
    names = demangle(sorted({k[2].split("|")[0] for g in replays for k in g}))
    stats = collections.OrderedDict()  # (name, grid) -> [count, dur, head, advance]
    spans, gaps = [], []
    for i, g in enumerate(replays):
        latest = g[0][0]
        prev_end = None
        for start, end, key in g:
            adv = max(0, end - latest)
            latest = max(latest, end)
            head = start - prev_end if prev_end is not None else 0
            prev_end = end
            raw, grid = key.split("|")
            s = stats.setdefault((short(names.get(raw, raw)), grid), [0, 0, 0, 0])
            s[0] += 1
            s[1] += end - start
            s[2] += head
            s[3] += adv
        spans.append(g[-1][1] - g[0][0])
        if i + 1 < len(replays):
            gaps.append(replays[i + 1][0][0] - g[-1][1])
    n = len(replays)
    span = sum(spans) / n / 1e3
    gap = sum(gaps) / len(gaps) / 1e3 if gaps else 0.0
    print(f"== {label}: {n} replays of {n_kernels} kernels; span {span:.1f} us, gap to the next replay {gap:.1f} us,"
          f" step {span + gap:.1f} us ({1e6 / (span + gap):.1f} tok/s)")
    print(f"{'per step':>8} {'dur us':>7} {'head us':>8} {'advance us':>11} {'share':>6}  kernel [grid]")
    for (name, grid), (c, dur, head, adv) in sorted(stats.items(), key=lambda kv: -kv[1][3]):
        print(f"{c / n:8.1f} {dur / c / 1e3:7.2f} {head / c / 1e3:8.2f} {adv / n / 1e3:11.1f} {adv / n / 1e3 / span:6.1%}"
              f"  {name} [{grid}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
