#!/usr/bin/env python3
# make_smollm2_hashes.py: per-tensor fingerprints of SmolLM2-135M-Instruct.Q4_1.gguf decoded by
# gguf-py: name, GGUF type, shape (GGUF order, ne[0] first), sha256 of the f32 little-endian
# values in GGUF element order, and their sum and sum of squares in f64.
# Made with gguf 0.19.0 (gguf.GGUFReader, gguf.quants.dequantize) and numpy 2.4.6.
# Usage: python3 tests/ref/make_smollm2_hashes.py [model.gguf] [out.json]
import hashlib
import json
import os
import sys

import numpy as np
import gguf

DEFAULT_MODEL = os.path.expanduser("~/.cache/rill/models/SmolLM2-135M-Instruct.Q4_1.gguf")
DEFAULT_OUT = os.path.join(os.path.dirname(__file__), "..", "data", "smollm2_q4_1_tensors.json")


def fingerprint(t):
    values = gguf.quants.dequantize(t.data, t.tensor_type)
    values = np.ascontiguousarray(values, dtype="<f4").reshape(-1)
    wide = values.astype(np.float64)
    return {
        "name": t.name,
        "type": t.tensor_type.name,
        "shape": [int(n) for n in t.shape],
        "sha256": hashlib.sha256(values.tobytes()).hexdigest(),
        "sum": float(np.sum(wide)),
        "sumsq": float(np.sum(wide * wide)),
    }


def main():
    model = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_MODEL
    out = sys.argv[2] if len(sys.argv) > 2 else DEFAULT_OUT
    reader = gguf.GGUFReader(model)
    tensors = [fingerprint(t) for t in reader.tensors]
    doc = {"model": os.path.basename(model), "gguf_version": "0.19.0", "tensors": tensors}
    with open(out, "w") as f:  # one tensor per line
        head = json.dumps({k: v for k, v in doc.items() if k != "tensors"})[:-1]
        f.write(head + ', "tensors": [\n')
        f.write(",\n".join(json.dumps(t) for t in tensors))
        f.write("\n]}\n")
    print(f"{len(tensors)} tensors -> {out}")


if __name__ == "__main__":
    main()
