#!/usr/bin/env python3
"""bench/kv_quality.sh's measurement done by mlx-lm itself: how its own QuantizedKVCache (8 and 4 bits)
changes greedy generation against its own plain KVCache on SmolLM2, on the same ten texts, so that
rill's kv-quality numbers (issue 5: 8-bit equal for all 256 steps on >= 8 of 10 prompts) can be
compared with what the reference implementation's cache format reaches on this model.

For each text (the list is parsed from bench/kv_quality.sh, so the two cannot drift; a+b joins
files with a newline): the first context - tokens ids (tokenizer.encode: special tokens added, no
chat template) are prefilled as generate_step does (chunks of 2048 over all but the last id,
maybe_quantize_kv_cache after each chunk: a cache becomes QuantizedKVCache after the chunk in which
it reaches --start positions, and is checked again after every decode step). Then `tokens` steps
from the last prompt id, teacher-forced with the plain cache's argmax. Reported per quantized cache:
the first step whose argmax differs from the plain one (with the plain top-2 logit gap there), and
the mean KL(plain || quantized) of the log-softmax over all steps (float64).

The three caches are stepped side by side. Until the plain cache reaches --start they are the same
cache (same ops on the same inputs), so the quantized ones are forked from it with to_quantized at
that point, exactly as maybe_quantize_kv_cache would convert their own copy; --separate runs each
cache from scratch instead (3x the prefill; used once to confirm the numbers are identical).
The plain cache is f32 on the f32 folder (rill's GPU run used f16).

usage: check_kv_quality_mlx.py MODEL_DIR [--context 8000] [--tokens 256] [--group 64] [--start 5000]
                               [--json OUT] [--limit N] [--separate] [--rev REV]
                               [--resume]
--json is rewritten after every prompt; --resume keeps the prompts it already holds (same settings).
--rev 3b9328d gives the texts as they were when rill's numbers in bench/RESULTS.md were measured.
Speed: mlx[cpu] links the reference BLAS; `LD_PRELOAD=/lib/x86_64-linux-gnu/libopenblas.so.0
OPENBLAS_NUM_THREADS=1` is ~6x faster. Even so an 8k prompt takes ~25-30 min on one core, most of it
in the quantized caches' last prefill chunk (mx.quantized_matmul attention over 6-8k positions).
Exit 0 after a run, 77 when mlx-lm is not importable or the model is missing.
Packages: mlx 0.32.4 (mlx[cpu]) and mlx-lm 0.32.2.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

try:
    import mlx.core as mx
    import numpy as np
    from mlx_lm import load
    from mlx_lm.generate import maybe_quantize_kv_cache
    from mlx_lm.models.cache import make_prompt_cache
except Exception as e:  # noqa: BLE001
    print(f"SKIP: mlx-lm is not importable ({e})")
    sys.exit(77)

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--context", type=int, default=8000)
ap.add_argument("--tokens", type=int, default=256)
ap.add_argument("--group", type=int, default=64)
ap.add_argument("--start", type=int, default=5000)
ap.add_argument("--json")
ap.add_argument("--limit", type=int)
ap.add_argument("--separate", action="store_true")
ap.add_argument("--resume", action="store_true", help="keep the prompts already in --json's file")
ap.add_argument("--rev", help="read bench/kv_quality.sh and the texts from this git revision (default: the work tree)")
a = ap.parse_args()
if not os.path.isdir(a.model):
    print(f"SKIP: no model at {a.model}")
    sys.exit(77)



def read(path):
    if a.rev:
        return subprocess.run(["git", "-C", ROOT, "show", f"{a.rev}:{path}"], capture_output=True, check=True).stdout.decode()
    return open(os.path.join(ROOT, path), encoding="utf-8").read()


# The specs: the indented one-word lines after the `exec` line of bench/kv_quality.sh.
sh = read("bench/kv_quality.sh")
specs = [m.group(1) for m in re.finditer(r"^\s+([\w./+-]+)\s*\\?$", sh.split("\nexec ", 1)[1], re.M)]
specs = specs[: a.limit] if a.limit else specs


def text_of(spec):
    out = ""
    for p in spec.split("+"):
        if out and not out.endswith("\n"):
            out += "\n"
        out += read(p)
    return out


model, tokenizer = load(a.model)
n_prompt = a.context - a.tokens
BITS = (8, 4)
PREFILL = 2048  # generate_step's prefill_step_size


def call(cache, ids, bits):
    """One model call on a cache, then generate_step's quantization check; returns the last logits."""
    logits = model(mx.array(ids)[None], cache=cache)[:, -1, :]
    maybe_quantize_kv_cache(cache, a.start, a.group, bits)
    return logits


def run_prompt(ids):
    plain = make_prompt_cache(model)
    q = {b: make_prompt_cache(model) if a.separate else None for b in BITS}  # None: still the plain cache

    def step_all(chunk):
        out = {0: call(plain, chunk, None)}
        for b in BITS:
            if q[b] is not None:
                out[b] = call(q[b], chunk, b)
        if any(q[b] is None for b in BITS) and plain[0].offset >= a.start:
            for b in BITS:  # what maybe_quantize_kv_cache does to its cache at this point
                q[b] = [c.to_quantized(group_size=a.group, bits=b) for c in plain]
        mx.eval([c.state for c in plain] + [c.state for b in BITS if q[b] for c in q[b]])
        return out

    rest = ids
    while len(rest) > 1:
        n = min(PREFILL, len(rest) - 1)
        step_all(rest[:n])
        rest = rest[n:]
        mx.clear_cache()
    res = {b: {"depart": None, "agree": 0, "kl": []} for b in BITS}
    tok = rest[0]
    for i in range(a.tokens):
        out = step_all([tok])
        lp = {k: v - mx.logsumexp(v, keepdims=True) for k, v in out.items()}
        lp = {k: np.array(v.astype(mx.float32)).reshape(-1).astype(np.float64) for k, v in lp.items()}
        p = lp[0]
        t = int(np.argmax(p))
        gap = float(p[t] - np.partition(p, -2)[-2])
        for b in BITS:
            r, x = res[b], lp.get(b, p)  # before the fork the quantized cache is the plain one
            r["kl"].append(float(np.sum(np.exp(p) * (p - x))))
            qt = int(np.argmax(x))
            if qt == t:
                r["agree"] += 1
            elif r["depart"] is None:
                r.update(depart=i, gap=gap, plain_token=t, q_token=qt)
        tok = t  # teacher-forced: the plain cache's greedy token
        if i % 256 == 0:
            mx.clear_cache()
    for r in res.values():
        r["mean_kl"], r["max_kl"] = float(np.mean(r["kl"])), float(np.max(r["kl"]))
        del r["kl"]
    return res


print(f"check_kv_quality_mlx: {a.model}, plain cache {model.layers[0].self_attn.q_proj.weight.dtype}, context "
      f"{a.context} = prompt {n_prompt} + {a.tokens} forced greedy steps, KV groups of {a.group}, quantized from "
      f"{a.start} positions, texts from {a.rev or 'the work tree'}{' (caches run separately)' if a.separate else ''}",
      flush=True)
SETTINGS = {"model": a.model, "context": a.context, "prompt_tokens": n_prompt, "tokens": a.tokens,
            "kv_group_size": a.group, "quantized_kv_start": a.start, "rev": a.rev}
done = {}  # --resume: the prompts already in --json's file (written after every prompt) are not run again
if a.resume and a.json and os.path.exists(a.json):
    old = json.load(open(a.json))
    if {k: old.get(k) for k in SETTINGS} != SETTINGS:
        sys.exit(f"{a.json} was made with other settings: {dict((k, old.get(k)) for k in SETTINGS)}")
    done = {p["file"]: p for p in old["prompts"]}


def line(k, r, note=""):
    parts = []
    for b in BITS:
        q = r[f"kv{b}"]
        where = "none" if q["depart"] is None else f"step {q['depart']} (gap {q['gap']:.4f})"
        parts.append(f"{b}-bit depart {where}, agree {q['agree']}, mean KL {q['mean_kl']:.3e}")
    return f"prompt {k}: {r['file']} ({r['text_tokens']} tokens): " + "; ".join(parts) + f"; {r['seconds']:.1f} s{note}"


def summarize(results):
    return {f"kv{b}": {"prompts_all_equal": sum(r[f"kv{b}"]["depart"] is None for r in results),
                       "mean_kl": float(np.mean([r[f"kv{b}"]["mean_kl"] for r in results])),
                       "max_kl": max(r[f"kv{b}"]["max_kl"] for r in results)} for b in BITS}


results, t_all = [], time.time()
for k, spec in enumerate(specs, 1):
    if spec in done:
        results.append(done[spec])
        print(line(k, done[spec], f" (from {a.json})"), flush=True)
        continue
    ids = tokenizer.encode(text_of(spec))
    if len(ids) < n_prompt:
        sys.exit(f"{spec}: {len(ids)} tokens, fewer than the {n_prompt} the prompt needs")
    t0 = time.time()
    res = run_prompt(ids[:n_prompt])
    results.append({"file": spec, "text_tokens": len(ids), "seconds": time.time() - t0,
                    **{f"kv{b}": res[b] for b in BITS}})
    print(line(k, results[-1]), flush=True)
    if a.json:
        with open(a.json + ".tmp", "w") as f:
            json.dump({**SETTINGS, "separate": a.separate, "prompts": results, "summary": summarize(results),
                       "seconds": sum(r["seconds"] for r in results),
                       "versions": {"mlx": mx.__version__, "mlx_lm": __import__("mlx_lm").__version__}}, f, indent=1)
        os.replace(a.json + ".tmp", a.json)

summary = summarize(results)
for b in BITS:
    s = summary[f"kv{b}"]
    print(f"{b}-bit: {s['prompts_all_equal']}/{len(results)} prompts with all {a.tokens} greedy tokens equal to the "
          f"plain cache's; mean KL {s['mean_kl']:.3e}, max {s['max_kl']:.3e} ({len(results)} prompts x {a.tokens} steps)")
print(f"wall time {time.time() - t_all:.1f} s here, {sum(r['seconds'] for r in results):.1f} s over all prompts")
