#!/usr/bin/env python3
"""Prompt-cache files between rill and mlx-lm, both ways (issue 5's acceptance).

For each kind (KVCache, QuantizedKVCache 8 and 4 bits, RotatingKVCache):
  A. mlx-lm fills a cache from a prompt and saves it (save_prompt_cache); rill loads it and
     continues greedily from a few more tokens; mlx-lm does the same from the same file.
  B. rill fills and saves a cache (rill cache-prompt); mlx-lm's load_prompt_cache reads it and
     continues greedily; rill continues from the same file.
The two continuations must be equal token for token. Exit 0 pass, 1 fail, 77 when mlx-lm is not
importable or the model is missing (skipped).

usage: check_prompt_cache.py RILL_BIN MODEL_DIR [TMPDIR] [--kinds kv,q8,q4,rot] [-n N]
Packages: mlx 0.32.4 (mlx[cpu]) and mlx-lm 0.32.2.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

try:
    import mlx.core as mx
    from mlx_lm import load
    from mlx_lm.generate import generate_step
    from mlx_lm.models.cache import (KVCache, RotatingKVCache, load_prompt_cache,
                                     save_prompt_cache)
except Exception as e:  # noqa: BLE001
    print(f"SKIP: mlx-lm is not importable ({e})")
    sys.exit(77)

ap = argparse.ArgumentParser()
ap.add_argument("rill")
ap.add_argument("model")
ap.add_argument("tmp", nargs="?", default=None)
ap.add_argument("--kinds", default="kv,q8,q4,rot")
ap.add_argument("-n", type=int, default=24)
args = ap.parse_args()
if not os.path.isdir(args.model):
    print(f"SKIP: no model at {args.model}")
    sys.exit(77)
tmp = args.tmp or tempfile.mkdtemp()
os.makedirs(tmp, exist_ok=True)

model, tokenizer = load(args.model)
ROT = 48  # ring size for the rotating cases: the prompt and the continuation both wrap it

PROMPT = ("The river wound through the valley, past the old mill and the orchards, until it reached the sea. "
          "Every spring the water rose, and the people of the town told stories about the year it flooded "
          "the square. Tell me one of those stories.")
CONT = tokenizer.encode(" Once upon a time, in that town,", add_special_tokens=False)


def mlx_continue(path, n):
    cache = load_prompt_cache(path)
    out = []
    for tok, _ in generate_step(mx.array(CONT), model, max_tokens=n, prompt_cache=cache,
                                sampler=lambda lp: mx.argmax(lp, axis=-1)):
        out.append(int(tok))
    return out


def rill_continue(path, n):
    ids = ",".join(str(t) for t in CONT)
    r = subprocess.run([args.rill, "generate", "--model", args.model, "--prompt-cache-file", path,
                        "--prompt-ids", ids, "--max-tokens", str(n), "--temp", "0", "--ignore-eos", "--json"],
                       capture_output=True, text=True)
    if r.returncode:
        print(r.stderr)
        return None
    return json.loads(r.stdout)["tokens"]


def mlx_save(kind, path):
    ids = tokenizer.encode(PROMPT)
    if kind == "rot":
        cache = [RotatingKVCache(max_size=ROT, keep=4) for _ in model.layers]
    else:
        cache = [KVCache() for _ in model.layers]
    bits = {"q8": 8, "q4": 4}.get(kind)
    for _ in generate_step(mx.array(ids), model, max_tokens=0, prompt_cache=cache, kv_bits=bits,
                           kv_group_size=64, quantized_kv_start=0):
        pass
    save_prompt_cache(path, cache, {"model": args.model, "tokenizer_config": "{}"})


def rill_save(kind, path):
    cmd = [args.rill, "cache-prompt", "--model", args.model, "--prompt", PROMPT, "--prompt-cache-file", path]
    if kind in ("q8", "q4"):
        cmd += ["--kv-bits", kind[1], "--quantized-kv-start", "0"]
    if kind == "rot":
        cmd += ["--max-kv-size", str(ROT)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        print(r.stderr)
        return False
    return True


fails = 0
for kind in args.kinds.split(","):
    for way in ("mlx->rill", "rill->mlx"):
        path = os.path.join(tmp, f"pc_{kind}_{'a' if way[0] == 'm' else 'b'}.safetensors")
        if way == "mlx->rill":
            mlx_save(kind, path)
        elif not rill_save(kind, path):
            print(f"FAIL {kind} {way}: rill cache-prompt failed")
            fails += 1
            continue
        a = mlx_continue(path, args.n)
        b = rill_continue(path, args.n)
        ok = a == b
        fails += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {kind:4s} {way}: mlx-lm {a[:12]}{'...' if len(a) > 12 else ''}"
              + ("" if ok else f"\n      rill   {b}"))
sys.exit(1 if fails else 0)
