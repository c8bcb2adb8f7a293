#!/usr/bin/env python3
# check_safetensors.py FILE: reads a safetensors file that rill wrote with the reference
# implementation (safetensors 0.8.0, numpy 2.4.6) and checks every tensor's bytes against rill's
# test pattern: byte j of tensor N is (7*j + s) & 0xff, or (j + s) & 1 for BOOL, where s is the sum
# of N's UTF-8 bytes. Prints "name dtype [shape]" per tensor and "meta key=value"; exits 1 on a mismatch.
import sys

import numpy as np
from safetensors import deserialize, safe_open


def pattern(name, dtype, n):
    s = sum(name.encode("utf-8"))
    j = np.arange(n, dtype=np.uint64)
    return ((j + s) & 1 if dtype == "BOOL" else (7 * j + s) & 0xFF).astype(np.uint8).tobytes()


def main(path):
    with open(path, "rb") as f:
        raw = f.read()
    bad = []
    lines = []
    entries = dict(deserialize(raw))  # the reference parser: raw bytes, dtype, shape for every dtype
    with safe_open(path, framework="numpy") as f:  # what safetensors.numpy.load_file uses
        for name, e in sorted(entries.items()):
            if bytes(e["data"]) != pattern(name, e["dtype"], len(e["data"])):
                bad.append(f"{name}: bytes differ from the pattern")
            if e["dtype"] != "BF16":  # numpy has no bfloat16
                a = f.get_tensor(name)
                if list(a.shape) != list(e["shape"]) or a.tobytes() != bytes(e["data"]):
                    bad.append(f"{name}: numpy load gives shape {a.shape} or bytes that differ")
            lines.append(f"{name} {e['dtype']} {list(e['shape'])}")
        for k, v in sorted((f.metadata() or {}).items()):
            lines.append(f"meta {k}={v}")
    print("\n".join(lines))
    for b in bad:
        print("MISMATCH " + b)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
