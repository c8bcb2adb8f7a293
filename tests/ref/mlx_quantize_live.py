# mlx_quantize_live.py: runs mx.quantize and mx.dequantize (mlx 0.32.4, CPU) on every matrix
# "b<bits>_g<group>_<f16|bf16|f32>.w" of an input safetensors file and writes, per matrix, the
# input again (.w) with the packed weight (.weight), scales, biases, dequantized output (.deq) and
# the mean squared error of .deq against .w (.mse, f32 [1]; mlx cannot save f64). Used by tests/unit/test_affine.c (live
# check) and by make_mlx_affine_fixture.py.  Usage: mlx_quantize_live.py IN.safetensors OUT.safetensors
import re
import sys

import mlx.core as mx
import numpy as np

DTYPES = {"f16": mx.float16, "bf16": mx.bfloat16, "f32": mx.float32}
NAME = re.compile(r"^b(\d+)_g(\d+)_(f16|bf16|f32)\.w$")


def quantize_one(w, bits, group):
    """w: [rows][cols] in the scales' dtype. Returns the tensors written for one matrix."""
    weight, scales, biases = mx.quantize(w, group_size=group, bits=bits)
    deq = mx.dequantize(weight, scales, biases, group_size=group, bits=bits)
    diff = np.array(deq.astype(mx.float32), dtype=np.float64) - np.array(w.astype(mx.float32), dtype=np.float64)
    mse = mx.array(np.array([np.mean(diff * diff)]), dtype=mx.float32)
    return {"w": w, "weight": weight, "scales": scales, "biases": biases, "deq": deq, "mse": mse}


def quantize_all(inputs):
    """inputs: {name: array} with names like b4_g64_f16.w; returns the flat output dict."""
    out = {}
    for name, w in sorted(inputs.items()):
        m = NAME.match(name)
        if not m:
            continue
        bits, group, dt = int(m.group(1)), int(m.group(2)), m.group(3)
        prefix = name[: -len(".w")]
        for key, value in quantize_one(w.astype(DTYPES[dt]), bits, group).items():
            out[prefix + "." + key] = value
    mx.eval(out)
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: mlx_quantize_live.py IN.safetensors OUT.safetensors")
    out = quantize_all(mx.load(sys.argv[1]))
    mx.save_safetensors(sys.argv[2], out, metadata={"mlx_version": mx.__version__})


if __name__ == "__main__":
    main()
