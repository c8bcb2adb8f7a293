#!/usr/bin/env python3
# make_bad_gguf.py: writes tests/data/bad/gguf/<defect>.gguf, small hostile GGUF files with one
# defect each (built byte by byte with struct, Python 3 standard library only). A reader must
# reject every one with a message that names the problem, and never crash. tests/unit/test_gguf.c
# holds the expected message of each file; CLI tests run `rill inspect` over all of them.
import os
import struct

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "bad", "gguf")

U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
F32_T, Q4_0_T = 0, 2


def s(x) -> bytes:
    b = x.encode() if isinstance(x, str) else x
    return struct.pack("<Q", len(b)) + b


def kv(key, vtype, payload: bytes) -> bytes:
    return s(key) + struct.pack("<I", vtype) + payload


def kv_u32(key, v):
    return kv(key, U32, struct.pack("<I", v))


def ti(name, ne, dtype=F32_T, offset=0) -> bytes:
    return s(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne) + struct.pack("<IQ", dtype, offset)


def gguf(kvs=(), tis=(), data=b"", n_kv=None, n_tensors=None, version=3, magic=b"GGUF", align=32, vfmt="<I"):
    n_kv = len(kvs) if n_kv is None else n_kv
    n_tensors = len(tis) if n_tensors is None else n_tensors
    out = magic + struct.pack(vfmt, version) + struct.pack("<QQ", n_tensors, n_kv) + b"".join(kvs) + b"".join(tis)
    if tis:
        out += b"\0" * (-len(out) % align)
    return out + data


def valid():
    return gguf([kv("general.architecture", STR, s("llama"))], [ti("w", [4])], struct.pack("<4f", 1, 2, 3, 4))


def nested(depth):
    # an array of one array of one array ... of one uint8
    inner = struct.pack("<IQ", U8, 1) + b"\x07"
    for _ in range(depth - 1):
        inner = struct.pack("<IQ", ARR, 1) + inner
    return inner


ARCH = kv("general.architecture", STR, s("llama"))
DATA = struct.pack("<16f", *range(16))  # 64 bytes of tensor data: one F32 [16]

DEFECTS = {
    "empty_file": b"",
    "bad_magic": gguf([ARCH], magic=b"GGML"),
    "truncated_header": valid()[:13],
    "version_1": gguf([ARCH], version=1),
    "version_99": gguf([ARCH], version=99),
    "big_endian": gguf([ARCH], vfmt=">I"),
    "tensor_count_impossible": gguf([ARCH], n_tensors=1000000),
    "tensor_count_absurd": gguf([ARCH], n_tensors=1 << 40),
    "kv_count_impossible": gguf([ARCH], n_kv=1000000),
    "kv_count_absurd": gguf([ARCH], n_kv=0xFFFFFFFFFFFFFFFF),
    "key_past_eof": gguf(n_kv=1) + struct.pack("<Q", 5000) + b"general.",
    "key_with_nul": gguf([kv(b"general.\0name", STR, s("x"))]),
    "string_past_eof": gguf([kv("general.name", STR, struct.pack("<Q", 1000) + b"abc")]),
    "string_absurd": gguf([kv("general.name", STR, struct.pack("<Q", 99999999999) + b"abc")]),
    "unknown_value_type": gguf([kv("general.name", 13, b"\0" * 8)]),
    "bool_not_0_or_1": gguf([kv("t.flag", BOOL, b"\x07")]),
    "scalar_past_eof": gguf([ARCH], n_kv=2) + s("t.u64") + struct.pack("<I", U64) + b"\1\2\3",
    "unknown_array_type": gguf([kv("t.arr", ARR, struct.pack("<IQ", 42, 1) + b"\0" * 8)]),
    "array_past_eof": gguf([kv("t.arr", ARR, struct.pack("<IQ", U32, 1000000) + b"\0" * 16)]),
    "array_absurd": gguf([kv("t.arr", ARR, struct.pack("<IQ", U8, 1 << 40) + b"\0" * 16)]),
    "array_string_past_eof": gguf([kv("t.arr", ARR, struct.pack("<IQ", STR, 2) + s("ok") + struct.pack("<Q", 77) + b"x")]),
    "array_nested_too_deep": gguf([kv("t.arr", ARR, nested(20))]),
    "duplicate_key": gguf([ARCH, kv_u32("llama.block_count", 30), kv_u32("llama.block_count", 31)]),
    "alignment_not_pow2": gguf([ARCH, kv_u32("general.alignment", 48)], [ti("w", [16])], DATA, align=48),
    "alignment_zero": gguf([ARCH, kv_u32("general.alignment", 0)], [ti("w", [16])], DATA),
    "alignment_string": gguf([ARCH, kv("general.alignment", STR, s("32"))], [ti("w", [16])], DATA),
    "tensor_name_past_eof": gguf([ARCH], n_tensors=1) + struct.pack("<Q", 900) + b"blk.0" + b"\0" * 27,
    "tensor_unknown_type": gguf([ARCH], [ti("w", [16], dtype=77)], DATA),
    "tensor_n_dims_0": gguf([ARCH], [s("w") + struct.pack("<IIQ", 0, F32_T, 0)], DATA),
    "tensor_n_dims_5": gguf([ARCH], [ti("w", [1, 1, 1, 1, 16])], DATA),
    "tensor_dim_negative": gguf([ARCH], [ti("w", [(1 << 64) - 16])], DATA),
    "tensor_dims_overflow": gguf([ARCH], [ti("w", [1 << 32, 1 << 32])], DATA),
    "tensor_block_misfit": gguf([ARCH], [ti("w", [33], dtype=Q4_0_T)], b"\0" * 64),
    "tensor_data_past_eof": gguf([ARCH], [ti("w", [1024])], DATA),
    "tensor_offset_past_eof": gguf([ARCH], [ti("w", [16], offset=1 << 62)], DATA),
    "tensor_misaligned": gguf([ARCH], [ti("w", [8]), ti("v", [8], offset=36)], DATA + DATA),
    "tensor_overlap": gguf([ARCH], [ti("w", [16]), ti("v", [16], offset=32)], DATA + DATA),
    "duplicate_tensor": gguf([ARCH], [ti("w", [16]), ti("w", [16], offset=64)], DATA + DATA),
}


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    for name, data in DEFECTS.items():
        with open(os.path.join(OUT_DIR, name + ".gguf"), "wb") as f:
            f.write(data)
    print("wrote %d files to %s" % (len(DEFECTS), os.path.normpath(OUT_DIR)))


if __name__ == "__main__":
    main()
