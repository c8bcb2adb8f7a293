#!/usr/bin/env python3
# make_bad_safetensors.py: writes the hostile safetensors files under tests/data/bad/safetensors/,
# one small file per defect, named after it. test_safetensors.c expects each to be rejected with a
# message naming the defect; `rill inspect` tests iterate over tests/data/bad/**. Plain Python 3
# (struct + json), no third-party package.
import json
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "bad", "safetensors")


def st(header, data=b"", length=None):
    """A file: 8-byte little-endian header length, the header (str or bytes), then data."""
    h = header if isinstance(header, bytes) else header.encode("utf-8")
    return struct.pack("<Q", len(h) if length is None else length) + h + data


def one(dtype="F32", shape=(2,), offsets=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


def hdr(**tensors):
    return json.dumps(tensors)


FILES = {
    "truncated_header": b"\x10\x00\x00\x00\x00",
    "header_past_eof": st('{"a": {}}', length=1000),
    "absurd_header_length": st("{}", length=1 << 62),
    "empty_header": st(""),
    "bad_json": st('{"w": {"dtype": "F32",, "shape": [1]}}'),
    "non_object_header": st("[1, 2, 3]"),
    "invalid_utf8_name": st(b'{"\xff\xfe": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}', b"\x01"),
    "duplicate_tensor_name": st('{"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, '
                                '"w": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}}', b"\x01\x02"),
    "tensor_not_object": st('{"w": 5}'),
    "missing_dtype": st(json.dumps({"w": {"shape": [2], "data_offsets": [0, 8]}}), bytes(8)),
    "dtype_not_string": st(hdr(w=one(dtype=5)), bytes(8)),
    "unknown_dtype": st(hdr(w=one(dtype="F128")), bytes(8)),
    "unsupported_dtype_f8": st(hdr(w=one(dtype="F8_E4M3", shape=(8,))), bytes(8)),
    "missing_shape": st(json.dumps({"w": {"dtype": "F32", "data_offsets": [0, 8]}}), bytes(8)),
    "negative_shape": st(hdr(w=one(shape=(-1, 2))), bytes(8)),
    "non_integer_shape": st(hdr(w=one(shape=(2.0,))), bytes(8)),
    "too_many_dims": st(hdr(w=one(dtype="U8", shape=(1,) * 9, offsets=(0, 1))), b"\x01"),
    "shape_overflow": st(hdr(w=one(shape=(1 << 32, 1 << 32, 1 << 32))), bytes(8)),
    "missing_offsets": st(json.dumps({"w": {"dtype": "F32", "shape": [2]}}), bytes(8)),
    "offsets_not_pair": st(hdr(w=one(offsets=(0,))), bytes(8)),
    "offsets_negative": st(hdr(w=one(offsets=(-8, 0))), bytes(8)),
    "offsets_reversed": st(hdr(w=one(offsets=(8, 0))), bytes(8)),
    "offset_too_big_integer": st(hdr(w=one(offsets=(0, 1 << 64))), bytes(8)),
    "offsets_past_end": st(hdr(w=one(shape=(4,), offsets=(0, 16))), bytes(8)),
    "shape_bytes_mismatch": st(hdr(w=one(shape=(2, 2), offsets=(0, 12))), bytes(12)),
    "overlapping_offsets": st(hdr(a=one(offsets=(0, 8)), b=one(offsets=(4, 12))), bytes(12)),
    "empty_tensor_inside_another": st(hdr(a=one(offsets=(0, 8)), e=one(shape=(0,), offsets=(4, 4))), bytes(8)),
    "offsets_gap": st(hdr(a=one(shape=(1,), offsets=(0, 4)), b=one(shape=(1,), offsets=(8, 12))), bytes(12)),
    "trailing_bytes": st(hdr(a=one(shape=(1,), offsets=(0, 4))), bytes(8)),
    "metadata_not_object": st(json.dumps({"__metadata__": ["a"], "w": one()}), bytes(8)),
    "metadata_value_not_string": st(json.dumps({"__metadata__": {"k": 1}, "w": one()}), bytes(8)),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, content in FILES.items():
        with open(os.path.join(OUT, name + ".safetensors"), "wb") as f:
            f.write(content)


if __name__ == "__main__":
    main()
