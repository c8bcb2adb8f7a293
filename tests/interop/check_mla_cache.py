#!/usr/bin/env python3
"""MLA latent prompt-cache files between rill and mlx-lm, both ways, on the tiny deepseek_v3.

mlx-lm's deepseek_v3 caches the normed latent kv_latent as a KVCache's keys [1,1,S,kv_lora_rank]
and the roped k_pe as its values [1,1,S,qk_rope_head_dim]; rill's MLA cache must read and write
the same files. For KVCache and RotatingKVCache(48, keep=4) (built per layer, as check_rotating.py
does; prompt and continuation both wrap the ring):
  A. mlx-lm fills a cache from a prompt (generate_step, max_tokens=0) and saves it; rill and
     mlx-lm continue greedily from the same file with the same tokens.
  B. rill cache-prompt fills and saves one; mlx-lm's load_prompt_cache and rill continue from it.
The continuations must be equal token for token; the two files' rows in use (mlx-lm's KVCache saves\nits 256-row step buffer) must have equal shapes and scalars and agree within 1e-3.
First, as a baseline, both generate greedily from the prompt's ids without any cache file.

tests/data/tiny/deepseek_v3 has no tokenizer, so a temp folder gets its weights (symlinked), a
byte-level tokenizer.json for vocab 256 (BPE, GPT-2 ByteLevel pre-tokenizer/decoder, byte b = id b,
no merges; ids 0/1, the config's bos/eos, are plain byte tokens), a tokenizer_config.json and a
config.json with one translation: mlx-lm 0.32.2's deepseek_v3 reads only "rope_scaling" and
"rope_theta", not transformers 5's "rope_parameters", so both are copied up from it (rill reads
rope_parameters first, so it sees the same yarn either way). Without it mlx-lm runs unscaled RoPE
and its plain greedy run leaves rill's at the 5th token.

usage: check_mla_cache.py RILL_BIN [TMPDIR] [--kinds kv,rot] [-n N]
Exit 0 pass, 1 fail, 77 when mlx-lm is not importable. Packages: mlx 0.32.4, mlx-lm 0.32.2.
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
    from mlx_lm.models.cache import KVCache, RotatingKVCache, load_prompt_cache, save_prompt_cache
except Exception as e:  # noqa: BLE001
    print(f"SKIP: mlx-lm is not importable ({e})")
    sys.exit(77)

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "tiny", "deepseek_v3")
ap = argparse.ArgumentParser()
ap.add_argument("rill")
ap.add_argument("tmp", nargs="?", default=None)
ap.add_argument("--kinds", default="kv,rot")
ap.add_argument("-n", type=int, default=24)
args = ap.parse_args()
tmp = args.tmp or tempfile.mkdtemp()
model_dir = os.path.join(tmp, "deepseek_v3")
os.makedirs(model_dir, exist_ok=True)


def byte_symbols():  # GPT-2's bytes_to_unicode
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b), cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


cfg = json.load(open(os.path.join(SRC, "config.json")))
cfg["rope_scaling"] = dict(cfg["rope_parameters"])
cfg["rope_theta"] = cfg["rope_parameters"]["rope_theta"]
json.dump(cfg, open(os.path.join(model_dir, "config.json"), "w"), indent=1)
if not os.path.exists(os.path.join(model_dir, "model.safetensors")):
    os.symlink(os.path.abspath(os.path.join(SRC, "model.safetensors")), os.path.join(model_dir, "model.safetensors"))
sym = byte_symbols()
bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
tok = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
       "pre_tokenizer": bl, "post_processor": None, "decoder": bl,
       "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                 "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                 "vocab": {sym[b]: b for b in range(256)}, "merges": []}}
json.dump(tok, open(os.path.join(model_dir, "tokenizer.json"), "w"), ensure_ascii=False)
json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": cfg["max_position_embeddings"],
           "clean_up_tokenization_spaces": False}, open(os.path.join(model_dir, "tokenizer_config.json"), "w"))

model, tokenizer = load(model_dir)
r = subprocess.run([args.rill, "tokenize", "--model", model_dir, "--text", "hello"], capture_output=True, text=True)
print(f"tokenizer: mlx-lm 'hello' -> {tokenizer.encode('hello')}; rill tokenize -> {r.stdout.strip()!r}"
      + (f" (rc {r.returncode}: {r.stderr.strip()})" if r.returncode else ""))
ROT = 48
PROMPT = ("The river wound through the valley, past the old mill and the orchards, until it reached the sea. "
          "Tell me one story.")
IDS = tokenizer.encode(PROMPT)
CONT = tokenizer.encode(" Once upon a time,")
assert IDS == list(PROMPT.encode()) and CONT == list(b" Once upon a time,"), "mlx-lm's tokenizer is not byte-level"
greedy = lambda lp: mx.argmax(lp, axis=-1)  # noqa: E731


def mlx_gen(ids, n, cache=None):
    return [int(t) for t, _ in generate_step(mx.array(ids), model, max_tokens=n, prompt_cache=cache, sampler=greedy)]


def rill(sub, *extra):
    r = subprocess.run([args.rill, sub, "--model", model_dir, *extra], capture_output=True, text=True)
    if r.returncode:
        print(f"  rill {sub} failed (rc {r.returncode}): {r.stderr.strip()}")
        return None
    return r.stdout


def rill_gen(ids, n, *extra):
    out = rill("generate", "--prompt-ids", ",".join(map(str, ids)), "--max-tokens", str(n), "--temp", "0",
               "--ignore-eos", "--json", *extra)
    return out and json.loads(out.strip().splitlines()[-1])["tokens"]


def make_cache(kind):
    return [RotatingKVCache(max_size=ROT, keep=4) if kind == "rot" else KVCache() for _ in model.layers]


def read_saved(path, who):
    """Per layer the rows in use (index 2 of each layer's state is its offset, for both classes:
    mlx-lm's KVCache saves its whole 256-row step buffer, rill only the rows in use), plus the scalars."""
    arrs, _ = mx.load(path, return_metadata=True)
    sc = {k: v.item() for k, v in arrs.items() if v.ndim == 0}
    rows = {k: v[:, :, :min(v.shape[2], sc[k.split(".")[0] + ".2"])] for k, v in arrs.items() if v.ndim == 4}
    desc = sorted({f"{'keys' if k.endswith('.0') else 'values'} {tuple(v.shape)}" for k, v in rows.items()})
    files = sorted({arrs[k].shape[2] for k in rows})
    print(f"     saved by {who}: {', '.join(desc)} in each of {len(rows) // 2} layers (rows in the file {files}); "
          f"scalars {[sc[k] for k in sorted(sc)][:6]}...")
    return rows, sc


fails = 0
a, b = mlx_gen(IDS, args.n), rill_gen(IDS, args.n)
fails += a != b
print(f"{'ok  ' if a == b else 'FAIL'} baseline (no cache file), prompt {len(IDS)} ids: mlx-lm {a[:12]}..."
      + ("" if a == b else f"\n      rill   {b}"))
for kind in args.kinds.split(","):
    saved = {}
    for way in ("mlx->rill", "rill->mlx"):
        path = os.path.join(tmp, f"mla_{kind}_{'a' if way[0] == 'm' else 'b'}.safetensors")
        if way == "mlx->rill":
            cache = make_cache(kind)
            mlx_gen(IDS, 0, cache)
            save_prompt_cache(path, cache, {"model": model_dir, "tokenizer_config": "{}"})
        elif rill("cache-prompt", "--prompt", PROMPT, "--prompt-cache-file", path,
                  *(["--max-kv-size", str(ROT)] if kind == "rot" else [])) is None:
            print(f"FAIL {kind} {way}: rill cache-prompt failed")
            fails += 1
            continue
        saved[way] = read_saved(path, way.split("->")[0])
        a = mlx_gen(CONT, args.n, load_prompt_cache(path))
        b = rill_gen(CONT, args.n, "--prompt-cache-file", path)
        k = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), None) if b else None
        ok = a == b
        fails += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {kind:3s} {way}: mlx-lm {a[:12]}{'...' if len(a) > 12 else ''}"
              + ("" if ok else f"\n      rill   {b}" + (f"\n      first difference at token {k}" if k is not None else "")))
    if len(saved) == 2:
        (ra, sa), (rb, sb) = saved["mlx->rill"], saved["rill->mlx"]
        same = sa == sb and {k: v.shape for k, v in ra.items()} == {k: v.shape for k, v in rb.items()}
        diff = max(float(mx.abs(ra[k] - rb[k]).max()) for k in ra) if same else float("nan")
        same = same and diff < 1e-3
        fails += not same
        print(f"{'ok  ' if same else 'FAIL'} {kind:3s} the two files: shapes and scalars {'equal' if sa == sb else 'DIFFER'}"
              f", largest difference in the rows in use {diff:.2e}")
sys.exit(1 if fails else 0)
