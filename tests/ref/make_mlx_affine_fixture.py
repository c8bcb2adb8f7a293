# make_mlx_affine_fixture.py: writes tests/data/mlx_affine/fixture.safetensors with mlx 0.32.4
# (pip mlx[cpu]): for bits 2,3,4,5,6,8 x groups 32,64,128 x scales f16,bf16,f32, an 8 x 256
# matrix w (fixed seed) and mx.quantize/mx.dequantize's weight, scales, biases, deq and mse,
# named "b4_g64_f16.w", ".weight", ... (see mlx_quantize_live.py). Rows 0-5 are normal * 0.05;
# row 6 holds constant groups (0 and 0.0375); row 7 is |normal| * 0.05 (one sign only).
import os
import sys

import mlx.core as mx
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mlx_quantize_live import quantize_all  # noqa: E402

ROWS, COLS = 8, 256


def matrix(rng):
    w = rng.standard_normal((ROWS, COLS)).astype(np.float32) * 0.05
    w[6, : COLS // 2] = 0.0
    w[6, COLS // 2 :] = 0.0375
    w[7] = np.abs(w[7])
    return w


def main():
    out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "mlx_affine")
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(20250101)
    inputs = {}
    for dt in ("f16", "bf16", "f32"):
        for bits in (2, 3, 4, 5, 6, 8):
            for group in (32, 64, 128):
                inputs[f"b{bits}_g{group}_{dt}.w"] = mx.array(matrix(rng))
    out = quantize_all(inputs)
    path = os.path.join(out_dir, "fixture.safetensors")
    mx.save_safetensors(path, out, metadata={"mlx_version": mx.__version__, "script": "tests/ref/make_mlx_affine_fixture.py"})
    print(path, os.path.getsize(path), "bytes,", len(out), "tensors, mlx", mx.__version__)


if __name__ == "__main__":
    main()
