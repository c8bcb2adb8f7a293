#!/usr/bin/env python3
"""gemv_precision.py: how far a one-token 4-bit GEMV lands from the exact product under each way the
CUDA backend could feed it x (a precision study on the CPU, not a timing).

The 4-bit affine weights (mlx-lm's layout: w = s * q + b per group of 64, q in 0..15, s and b bf16) are
the same for every way; x is one token's activations rounded to bf16. The exact product is taken in
float64. The ways:
  dp4a      x in two int8 planes per block of 32 (x ~ d q1 + d/254 q2, d = amax/127: cuda_qx), the
            dot products exact in int32, then s * dot + b * sum(x) in f32: what the backend runs.
  1-plane   the same with one plane (x ~ d q1): on the CPU this moved SmolLM2's logits by 1.7e-2
            (docs/performance.md), the scale against which the others' errors can be read.
  f16-naive w dequantized to f16 (s q + b rounded), x in f16, a lane's products summed in f16 by
            fused multiply-adds (HFMA2) over its whole share of the row (cols / 32 values), the 32
            lanes then summed in f32.
  f16-sN    per group of 64: sums of (q - 8) x in f16 by fused multiply-adds over spans of N values
            (q - 8 exact in f16; N = 8: one 32-bit word of codes, 64: the whole group), the spans'
            sums added in f32, then s * dot + (b + 8 s) * sum(x) in f32 (sum(x) exact, as cuda_qx
            keeps it).
Printed per shape: the relative L2 error of each way, ||y - y_exact|| / ||y_exact|| over the rows
(what the op harness's rel_err measures; its bound is 1e-2 in bf16), and the error of rounding y_exact
to bf16 (the output's own rounding) for scale.

Usage: gemv_precision.py [--rows N] [--seed S]
"""
import argparse

import numpy as np


def bf16(a):
    """Round float32 values to bfloat16 (nearest even), returned as float32."""
    a = np.asarray(a, dtype=np.float32)
    u = a.view(np.uint32).astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return u.astype(np.uint32).view(np.float32)


def f16(a):
    return np.asarray(a, dtype=np.float32).astype(np.float16)


def fma16(a, b, c):
    """HFMA2: a * b + c in f16 with one rounding (the product of two f16 is exact in f32)."""
    return (a.astype(np.float32) * b.astype(np.float32) + c.astype(np.float32)).astype(np.float16)


def make_weights(rng, rows, cols, gs=64):
    q = rng.integers(0, 16, size=(rows, cols)).astype(np.float32)
    s = bf16(np.abs(rng.normal(0.0, 0.004, size=(rows, cols // gs))) + 1e-4)
    b = bf16(-8.0 * s * (1.0 + 0.1 * rng.normal(size=s.shape)))
    return q, s, b


def dequant(q, s, b, gs=64):
    return q * np.repeat(s, gs, axis=1) + np.repeat(b, gs, axis=1)


def x_normed(rng, cols):
    """A norm's output: N(0, 1) with a few large dims, times norm weights around 1."""
    x = rng.normal(size=cols)
    x[rng.choice(cols, size=max(1, cols // 500), replace=False)] *= 20.0
    return bf16(x * rng.uniform(0.3, 2.5, size=cols))


def x_act(rng, cols):
    """act(gate) * up: silu of one normal times another, heavy-tailed."""
    g, u = rng.normal(size=cols) * 2.0, rng.normal(size=cols) * 2.0
    x = g / (1.0 + np.exp(-g)) * u
    x[rng.choice(cols, size=max(1, cols // 1000), replace=False)] *= 30.0
    return bf16(x)


def way_dp4a(q, s, b, x, gs=64, planes=2):
    xb = x.reshape(-1, 32)
    amax = np.abs(xb).max(axis=1, keepdims=True)
    d = np.where(amax > 0, amax / 127.0, 0.0).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        q1 = np.where(d > 0, np.rint(xb * (127.0 / amax)), 0.0)
        q2 = np.where(d > 0, np.clip(np.rint((xb - q1 * d) * (254.0 / d)), -127, 127), 0.0)
    xq = (d * q1 + (d / 254.0 * q2 if planes == 2 else 0.0)).reshape(-1)  # what the int32 dots see
    xs = x.reshape(-1, gs).sum(axis=1)  # the exact sums cuda_qx keeps
    dots = (q * xq).reshape(q.shape[0], -1, gs).sum(axis=2)
    return (s * dots + b * xs).sum(axis=1)


def way_f16_naive(q, s, b, x, gs=64):
    w = f16(dequant(q, s, b, gs).astype(np.float32))
    x16 = f16(x)
    rows, cols = q.shape
    acc = np.zeros((rows, 32), dtype=np.float16)  # lane l takes the words l, l + 32, ... (8 values each)
    for c in range(cols):
        lane = (c // 8) % 32
        acc[:, lane] = fma16(w[:, c], x16[c], acc[:, lane])
    return acc.astype(np.float32).sum(axis=1)


def way_f16_group(q, s, b, x, span, gs=64):
    """Spans of `span` values of a group summed in f16 (a lane's share), then in f32."""
    rows, cols = q.shape
    qc = f16(q - 8.0)
    x16 = f16(x)
    xs = x.reshape(-1, gs).sum(axis=1)
    n_groups = cols // gs
    dots = np.zeros((rows, n_groups), dtype=np.float32)
    for g in range(n_groups):
        qg = qc[:, g * gs:(g + 1) * gs].reshape(rows, gs // span, span)
        xg = x16[g * gs:(g + 1) * gs].reshape(gs // span, span)
        part = np.zeros((rows, gs // span), dtype=np.float16)
        for i in range(span):
            part = fma16(qg[:, :, i], xg[None, :, i], part)
        dots[:, g] = part.astype(np.float32).sum(axis=1)
    return (s * dots + (b + 8.0 * s) * xs).sum(axis=1)


def rel(y, ref):
    return float(np.linalg.norm(y - ref) / np.linalg.norm(ref))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=512)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    shapes = [("q/k/v, o, gate/up input (Llama-3-8B: 4096)", 4096, x_normed),
              ("down input (Llama-3-8B: 14336)", 14336, x_act),
              ("SmolLM2 (576)", 576, x_normed),
              ("SmolLM2 down (1536)", 1536, x_act)]
    print(f"rows {args.rows}, seed {args.seed}; relative L2 error against the float64 product")
    print(f"{'shape':46} {'bf16 out':>9} {'dp4a':>9} {'1-plane':>9} {'f16-naive':>10} {'f16-s8':>9} {'f16-s32':>9}"
          f" {'f16-s64':>9}")
    for name, cols, xf in shapes:
        q, s, b = make_weights(rng, args.rows, cols)
        x = xf(rng, cols)
        ref = dequant(q.astype(np.float64), s.astype(np.float64), b.astype(np.float64)) @ x.astype(np.float64)
        errs = [rel(bf16(ref), ref), rel(way_dp4a(q, s, b, x), ref), rel(way_dp4a(q, s, b, x, planes=1), ref)]
        errs += [rel(way_f16_naive(q, s, b, x), ref)]
        errs += [rel(way_f16_group(q, s, b, x, span), ref) for span in (8, 32, 64)]
        print(f"{name:46} {errs[0]:9.2e} {errs[1]:9.2e} {errs[2]:9.2e} {errs[3]:10.2e} " +
              " ".join(f"{e:9.2e}" for e in errs[4:]))


if __name__ == "__main__":
    main()
