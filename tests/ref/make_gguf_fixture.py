#!/usr/bin/env python3
# make_gguf_fixture.py: writes tests/data/gguf/all_types.gguf with the reference writer, the
# Python `gguf` package (gguf-py 0.19.0, GGUFWriter), plus all_types.json, the values it wrote.
# tests/unit/test_gguf.c reads both and checks that rill's reader sees exactly these values.
# Every metadata value type (arrays of numbers, of strings, and a nested array), alignment 64,
# and tensors of F32, F16 and Q8_0 (raw bytes in Q8_0 blocks). Run from the repo root.
import json
import os
import struct
import sys

import numpy as np
import gguf
from gguf import GGUFValueType as T

OUT_DIR = os.path.join(os.path.dirname(__file__), "..", "data", "gguf")
ALIGN = 64

# (key, type, value) for scalars; (key, ARRAY, element type, values) for arrays.
SCALARS = [
    ("t.u8", T.UINT8, 250),
    ("t.i8", T.INT8, -100),
    ("t.u16", T.UINT16, 65000),
    ("t.i16", T.INT16, -32000),
    ("t.u32", T.UINT32, 4000000000),
    ("t.i32", T.INT32, -2000000000),
    ("t.f32", T.FLOAT32, 0.15625),
    ("t.bool_true", T.BOOL, True),
    ("t.bool_false", T.BOOL, False),
    ("t.string", T.STRING, "h\u00e9llo, w\u00f6rld \u2713"),
    ("t.empty_string", T.STRING, ""),
    ("t.u64", T.UINT64, 18446744073709551615),
    ("t.i64", T.INT64, -9223372036854775807),
    ("t.f64", T.FLOAT64, 3.141592653589793),
]
ARRAYS = [
    ("t.arr_u8", T.UINT8, [0, 1, 255]),
    ("t.arr_i8", T.INT8, [-128, 0, 127]),
    ("t.arr_u16", T.UINT16, [1, 65535]),
    ("t.arr_i16", T.INT16, [-32768, 32767]),
    ("t.arr_u32", T.UINT32, [7, 4294967295]),
    ("t.arr_i32", T.INT32, [-5, 0, 5, 2147483647]),
    ("t.arr_f32", T.FLOAT32, [0.5, -2.25, 1e-3]),
    ("t.arr_bool", T.BOOL, [True, False, True]),
    ("t.arr_u64", T.UINT64, [0, 18446744073709551615]),
    ("t.arr_i64", T.INT64, [-9223372036854775808, 9223372036854775807]),
    ("t.arr_f64", T.FLOAT64, [2.5, -1e300]),
    ("t.arr_str", T.STRING, ["alpha", "", "\u00fcber", "a longer string with spaces"]),
    ("t.arr_nested", T.ARRAY, [[1, 2, 3], [4], [-5, 6]]),  # inner arrays of int32
]


def fnv1a64(data: bytes) -> str:
    h = 14695981039346656037
    for b in data:
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def json_value(t, v):
    # Integers as decimal strings (u64 does not fit a JSON parser's int64); floats as the exact
    # value the file holds (f32 rounded); strings and bools as they are.
    if t in (T.FLOAT32,):
        return float(np.float32(v))
    if t == T.FLOAT64 or t == T.BOOL or t == T.STRING:
        return v
    if t == T.ARRAY:
        return [[str(x) for x in inner] for inner in v]
    return str(v)


def q8_0_blocks(n_blocks: int) -> bytes:
    # Q8_0 block: f16 scale + 32 int8 quants (34 bytes); deterministic contents.
    out = bytearray()
    for b in range(n_blocks):
        out += np.float16(0.125 * (b + 1)).tobytes()
        out += bytes(((b * 7 + i * 3) - 64) & 0xFF for i in range(32))
    return bytes(out)


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    path = os.path.join(OUT_DIR, "all_types.gguf")
    w = gguf.GGUFWriter(path, arch="rilltest")  # writes general.architecture
    w.add_custom_alignment(ALIGN)  # writes general.alignment (uint32)
    expected = [
        {"key": "general.architecture", "type": "string", "value": "rilltest"},
        {"key": "general.alignment", "type": "uint32", "value": str(ALIGN)},
    ]
    for key, t, v in SCALARS:
        w.add_key_value(key, v, t)
        expected.append({"key": key, "type": t.name.lower(), "value": json_value(t, v)})
    for key, et, vals in ARRAYS:
        w.add_key_value(key, vals, T.ARRAY, sub_type=et)
        e = {"key": key, "type": "array", "elem": et.name.lower()}
        if et == T.ARRAY:
            e["inner"] = "int32"
            e["values"] = json_value(T.ARRAY, vals)
        else:
            e["values"] = [json_value(et, x) for x in vals]
        expected.append(e)

    f32 = (np.arange(24, dtype=np.float32) * 0.5 - 3.0).reshape(3, 8)
    f16 = (np.arange(40, dtype=np.float32) / 8.0 - 2.0).astype(np.float16).reshape(5, 8)
    q8 = np.frombuffer(q8_0_blocks(4), dtype=np.uint8).reshape(2, 68)  # 2 rows x 2 blocks = [2][64]
    tensors = [
        ("t.f32", f32, None, 0, [8, 3]),
        ("t.f16", f16, None, 1, [8, 5]),
        ("t.q8_0", q8, gguf.GGMLQuantizationType.Q8_0, 8, [64, 2]),
    ]
    tjson = []
    for name, arr, raw, type_num, ne in tensors:
        w.add_tensor(name, arr, raw_dtype=raw)
        data = arr.tobytes()
        tjson.append({"name": name, "type": type_num, "ne": ne, "n_bytes": len(data), "fnv1a64": fnv1a64(data)})

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    with open(os.path.join(OUT_DIR, "all_types.json"), "w") as f:
        json.dump({"writer": "gguf-py " + gguf_version(), "version": 3, "alignment": ALIGN, "kv": expected,
                   "tensors": tjson}, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(path, os.path.getsize(path), "bytes")


def gguf_version() -> str:
    from importlib.metadata import version
    return version("gguf")


if __name__ == "__main__":
    sys.exit(main())
