#!/usr/bin/env python3
# make_safetensors_fixture.py: writes tests/data/safetensors/all_dtypes.safetensors with the
# reference implementation (safetensors 0.8.0, numpy 2.4.6): every dtype rill reads, a scalar, an
# empty tensor, eight dimensions, a UTF-8 name and __metadata__; and all_dtypes.json beside it with
# each tensor's dtype, shape, byte count and sha256, which test_safetensors.c checks rill against.
import hashlib
import json
import os
import sys

import numpy as np
import safetensors
from safetensors import TensorSpec, serialize_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "safetensors")


def bf16_bits(x):
    """float32 -> bfloat16 bit patterns (uint16), rounding to nearest even."""
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def make_tensors(rng):
    """name -> (safetensors dtype, numpy array holding the little-endian bytes, shape)."""
    def ints(dt, shape):
        info = np.iinfo(dt)
        return rng.integers(info.min, info.max, size=shape, dtype=dt, endpoint=True)

    t = {
        "f64.vec": ("F64", rng.standard_normal(5)),
        "f32.mat": ("F32", rng.standard_normal((3, 4)).astype(np.float32)),
        "f16.cube": ("F16", rng.standard_normal((2, 3, 2)).astype(np.float16)),
        "bf16.mat": ("BF16", bf16_bits(rng.standard_normal((4, 3)))),
        "i64": ("I64", ints(np.int64, (3,))),
        "i32": ("I32", ints(np.int32, (2, 2))),
        "i16": ("I16", ints(np.int16, (7,))),
        "i8": ("I8", ints(np.int8, (9,))),
        "u64": ("U64", ints(np.uint64, (3,))),
        "u32": ("U32", ints(np.uint32, (5,))),
        "u16": ("U16", ints(np.uint16, (6,))),
        "u8": ("U8", ints(np.uint8, (2, 8))),
        "bool": ("BOOL", rng.integers(0, 2, size=10).astype(np.bool_)),
        "scalar.f32": ("F32", np.array(3.25, dtype=np.float32)),
        "empty.f16": ("F16", np.zeros((0, 4), dtype=np.float16)),
        "u8.eight_dims": ("U8", ints(np.uint8, (1, 2, 1, 2, 1, 2, 1, 1))),
        "layers.0.caf\u00e9": ("I8", ints(np.int8, (3,))),
    }
    return {k: (dt, np.array(a, order="C")) for k, (dt, a) in t.items()}  # keeps 0-d arrays 0-d


NUMPY_NAME = {"BF16": "bfloat16"}  # TensorSpec takes numpy-style names; numpy has no bfloat16


def main():
    os.makedirs(OUT, exist_ok=True)
    tensors = make_tensors(np.random.default_rng(20250101))
    metadata = {"format": "np", "rill.fixture": "all_dtypes v1", "note": "\u00fcnicode \u2713"}
    specs = {
        k: TensorSpec(dtype=NUMPY_NAME.get(dt, a.dtype.name), shape=list(a.shape), data_ptr=a.ctypes.data,
                      data_len=a.nbytes)
        for k, (dt, a) in tensors.items()
    }
    path = os.path.join(OUT, "all_dtypes.safetensors")
    serialize_file(specs, path, metadata=metadata)
    sidecar = {
        "made_by": f"safetensors {safetensors.__version__}, numpy {np.__version__}",
        "metadata": metadata,
        "tensors": {
            k: {"dtype": dt, "shape": list(a.shape), "n_bytes": a.nbytes, "sha256": hashlib.sha256(a.tobytes()).hexdigest()}
            for k, (dt, a) in tensors.items()
        },
    }
    with open(os.path.join(OUT, "all_dtypes.json"), "w", encoding="utf-8") as f:
        json.dump(sidecar, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {path} ({os.path.getsize(path)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
