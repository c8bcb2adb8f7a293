#!/usr/bin/env python3
# make_gguf_quant_fixture.py: writes tests/data/gguf_quant/<TYPE>.bin (raw GGUF blocks) and
# <TYPE>.f32 (their f32 decoding by gguf-py, little-endian) for the 13 types rill decodes.
# Made with gguf 0.19.0 (gguf.quants.quantize / gguf.quants.dequantize) and numpy 2.4.6.
# Blocks come from gguf's own quantizer where it has one, and as random bytes with random
# finite f16 scales (negative, subnormal and zero ones included) for every block type.
# Usage: python3 tests/ref/make_gguf_quant_fixture.py [out_dir]
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES

# Byte offsets of the f16 fields (d, dmin, m) inside each block type.
F16_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}
QUANTIZABLE = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]
N_RANDOM_BLOCKS = 6
N_QUANTIZED_BLOCKS = 4
N_PLAIN = 128

rng = np.random.default_rng(20240611)


def random_finite_f16(n):
    """f16 bit patterns: mostly any finite value, plus subnormals, zeros and typical scales."""
    out = np.empty(n, dtype=np.uint16)
    for i in range(n):
        kind = rng.integers(0, 4)
        if kind == 0:  # any finite value: exponent field < 31
            bits = int(rng.integers(0, 0x7C00))
        elif kind == 1:  # subnormal (or zero)
            bits = int(rng.integers(0, 0x0400))
        else:  # a typical weight scale
            bits = int(np.float16(rng.uniform(1e-4, 0.1)).view(np.uint16))
        out[i] = bits | (int(rng.integers(0, 2)) << 15)
    return out


def random_blocks(qtype, n_blocks):
    _, type_size = GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for off in F16_FIELDS[qtype]:
        blocks[:, off:off + 2] = random_finite_f16(n_blocks).view(np.uint8).reshape(n_blocks, 2)
    return blocks.reshape(-1)


def quantized_blocks(qtype, n_blocks):
    block_size, _ = GGML_QUANT_SIZES[qtype]
    data = (rng.standard_normal(n_blocks * block_size) * 0.05).astype(np.float32)
    return gguf.quants.quantize(data.reshape(1, -1), qtype).reshape(-1)


def plain_data(qtype):
    if qtype == T.F32:
        x = (rng.standard_normal(N_PLAIN) * 0.1).astype(np.float32)
        x[:4] = [0.0, -0.0, 1e-40, -3e-39]  # zeros and f32 subnormals
        return x.view(np.uint8)
    if qtype == T.F16:
        return random_finite_f16(N_PLAIN).view(np.uint8)
    # BF16: any bit pattern whose exponent is not all ones
    bits = rng.integers(0, 0x7F80, size=N_PLAIN, dtype=np.uint16)
    bits |= (rng.integers(0, 2, size=N_PLAIN, dtype=np.uint16) << 15).astype(np.uint16)
    return bits.view(np.uint8)


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "data", "gguf_quant")
    os.makedirs(out_dir, exist_ok=True)
    for qtype in [T.F32, T.F16, T.BF16, *F16_FIELDS]:
        if qtype in F16_FIELDS:
            parts = [random_blocks(qtype, N_RANDOM_BLOCKS)]
            if qtype in QUANTIZABLE:
                parts.append(quantized_blocks(qtype, N_QUANTIZED_BLOCKS))
            raw = np.concatenate(parts)
        else:
            raw = plain_data(qtype)
        raw = np.ascontiguousarray(raw, dtype=np.uint8)
        values = gguf.quants.dequantize(raw, qtype).astype("<f4", copy=False).reshape(-1)
        raw.tofile(os.path.join(out_dir, qtype.name + ".bin"))
        values.tofile(os.path.join(out_dir, qtype.name + ".f32"))
        print(f"{qtype.name}: {raw.size} bytes -> {values.size} values")


if __name__ == "__main__":
    main()
