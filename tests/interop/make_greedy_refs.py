#!/usr/bin/env python3
"""Greedy-generation references for issue 4 ("Greedy generation against llama.cpp and mlx-lm").

For 10 varied prompts (chat-templated and raw; English, code, other languages, numbers, a long one):
  - the prompt is tokenized ONCE by llama.cpp's tokenizer on the GGUF (BOS only if the GGUF asks
    for it: SmolLM2's has add_bos_token = false, so there is none), and the ids are stored, so the
    comparison never depends on rill's tokenizer;
  - llama.cpp (llama-cpp-python, n_threads=2) produces 128 greedy tokens from those ids;
  - mlx-lm produces 128 greedy tokens from the same ids on the f32 HF/MLX folder that
    tests/ref/gguf_to_hf_folder.py makes from the same GGUF (dequantized weights).
EOS is ignored (generation always runs 128 steps); the first EOS position is recorded.
At each step the top-2 logit gap (logit of the argmax minus the runner-up) and the runner-up id are
recorded, so a comparison can tell a real departure from a near-tie.

Writes tests/interop/data/smollm2_greedy.json:
  {"model": ..., "n_tokens": 128, "eos_ids": [...],
   "prompts": [{"name", "kind", "text", "ids": [...],
                "llamacpp": {"tokens", "top2_gap", "second", "eos_at"},
                "mlxlm":    {"tokens", "top2_gap", "second", "eos_at"}}],
   "agreement": {...}, "versions": {...}}

Usage: make_greedy_refs.py [--gguf PATH] [--hf-dir PATH] [--out PATH] [--n 128]
Made with llama-cpp-python 0.3.36 (llama.cpp bundled), mlx 0.32.4 (mlx-cpu), mlx-lm 0.32.2,
jinja2 3.1.6, numpy 2.4.6, gguf 0.19.0. Run tests/interop/setup.sh first.
"""
import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")

import numpy as np

MODELS = os.path.expanduser("~/.cache/rill/models")
HERE = os.path.dirname(os.path.abspath(__file__))

LONG_TEXT = (
    "The history of computing is often told as a story of machines, but it is just as much a story "
    "of people and of the problems they were trying to solve. In the early nineteenth century, "
    "Charles Babbage designed the Difference Engine to compute mathematical tables without the "
    "errors that plagued human calculators. His later design, the Analytical Engine, had a mill "
    "for arithmetic and a store for numbers, ideas that map closely onto the processor and memory "
    "of a modern computer. Ada Lovelace, writing notes on a translation of a paper about the "
    "engine, described how it might manipulate symbols other than numbers, and she wrote what is "
    "often called the first program: a method for computing Bernoulli numbers.\n\n"
    "A century later, the needs of war accelerated the work. Codebreakers at Bletchley Park built "
    "Colossus to attack German teleprinter ciphers, while in the United States ENIAC was built to "
    "compute artillery firing tables. These machines were enormous, filled rooms, consumed a great "
    "deal of power and were programmed by rewiring panels or setting switches. The idea of storing "
    "the program in the same memory as the data, described by John von Neumann and others, made "
    "computers far more flexible, and it remains the basis of nearly every computer built since.\n\n"
    "The invention of the transistor in 1947 and of the integrated circuit about a decade later "
    "made computers smaller, cheaper and more reliable. Mainframes served large organisations in "
    "the 1960s, minicomputers brought computing to laboratories and universities in the 1970s, and "
    "the microprocessor made the personal computer possible. By the 1990s, networks connected "
    "these machines into the internet, and software became an industry of its own.\n\n"
    "Question: Which machine was built to attack German teleprinter ciphers, and what idea made "
    "later computers far more flexible?\nAnswer:"
)

# (name, kind, content). kind "chat": a list of messages rendered with the GGUF's chat template
# (add_generation_prompt); kind "raw": the text as is.
PROMPTS = [
    ("chat_capital", "chat", [{"role": "user", "content": "What is the capital of France?"}]),
    ("chat_code", "chat", [{"role": "user", "content": "Write a Python function that checks whether a number is prime."}]),
    ("raw_story", "raw", "Once upon a time, in a small village at the edge of a great forest,"),
    ("raw_code_c", "raw", "#include <stdio.h>\n\n/* Print the first n Fibonacci numbers. */\nint main(void) {\n"),
    ("raw_french", "raw", "La tour Eiffel est située à Paris. Elle a été construite en"),
    ("chat_spanish", "chat", [{"role": "user", "content": "¿Cuál es el río más largo del mundo? Responde en español."}]),
    ("raw_numbers", "raw", "1, 1, 2, 3, 5, 8, 13, 21, 34,"),
    ("chat_multiturn", "chat", [
        {"role": "system", "content": "You are a concise assistant who answers in one or two sentences."},
        {"role": "user", "content": "How many legs does a spider have?"},
        {"role": "assistant", "content": "A spider has eight legs."},
        {"role": "user", "content": "And an insect? Also give 3 examples of insects."}]),
    ("raw_mixed_unicode", "raw", "Translations of 'thank you': German: Danke. Japanese: ありがとう. Chinese: 谢谢. Russian:"),
    ("raw_long", "raw", LONG_TEXT),
]


def render_chat(template, messages, bos, eos):
    import jinja2
    env = jinja2.Environment(loader=jinja2.BaseLoader(), trim_blocks=False, lstrip_blocks=False)
    return env.from_string(template).render(messages=messages, add_generation_prompt=True,
                                            bos_token=bos, eos_token=eos)


def top2(logits):
    logits = np.asarray(logits, dtype=np.float32)
    i1 = int(np.argmax(logits))
    v1 = float(logits[i1])
    l2 = logits.copy()
    l2[i1] = -np.inf
    i2 = int(np.argmax(l2))
    return i1, i2, v1 - float(l2[i2])


def last_logits(llm):
    # logits of the last token of the last batch (llama-cpp-python 0.3.x no longer copies them into
    # llm.scores unless logits_all, which would change the output rows llama.cpp computes)
    ptr = llm._ctx.get_logits_ith(-1)
    return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).copy()


def run_llamacpp(llm, ids, n):
    llm.reset()
    llm.eval(ids)
    toks, gaps, second = [], [], []
    for step in range(n):
        logits = last_logits(llm)
        t, s, g = top2(logits)
        toks.append(t); second.append(s); gaps.append(round(g, 5))
        if step + 1 < n:
            llm.eval([t])
    return toks, gaps, second


def run_mlxlm(model, ids, n):
    import mlx.core as mx
    from mlx_lm.generate import generate_step

    toks, gaps, second = [], [], []
    sampler = lambda logprobs: mx.argmax(logprobs, axis=-1)
    for tok, logprobs in generate_step(mx.array(ids), model, max_tokens=n, sampler=sampler):
        lp = np.array(logprobs.astype(mx.float32)).reshape(-1)  # log-softmax: same gaps as logits
        t, s, g = top2(lp)
        tok = int(tok)
        if tok != t:
            raise RuntimeError(f"mlx sampler token {tok} != argmax {t}")
        toks.append(t); second.append(s); gaps.append(round(g, 5))
    return toks, gaps, second


def first_eos(tokens, eos_ids):
    for i, t in enumerate(tokens):
        if t in eos_ids:
            return i
    return None


def agreement(prompts, ka="llamacpp", kb="mlxlm", tie=0.02):
    rows = []
    for p in prompts:
        a, b = p[ka], p[kb]
        d = next((i for i, (x, y) in enumerate(zip(a["tokens"], b["tokens"])) if x != y), None)
        row = {"name": p["name"], "first_diff": d}
        if d is not None:
            row["gap_a"] = a["top2_gap"][d]
            row["gap_b"] = b["top2_gap"][d]
            row["near_tie"] = min(a["top2_gap"][d], b["top2_gap"][d]) <= tie
        rows.append(row)
    n_equal = sum(r["first_diff"] is None for r in rows)
    return {"pair": f"{ka} vs {kb}", "tie_threshold": tie, "identical_sequences": n_equal, "n": len(rows),
            "per_prompt": rows}


def versions():
    import importlib.metadata as md
    v = {}
    for pkg in ("llama-cpp-python", "mlx", "mlx-cpu", "mlx-lm", "numpy", "jinja2", "gguf"):
        try:
            v[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    v["python"] = platform.python_version()
    return v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", default=os.path.join(MODELS, "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--hf-dir", default=os.path.join(MODELS, "SmolLM2-135M-Instruct-f32"))
    ap.add_argument("--out", default=os.path.join(HERE, "data", "smollm2_greedy.json"))
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gguf-f32", default=os.path.join(MODELS, "SmolLM2-135M-Instruct.F32.gguf"),
                    help="made from --gguf with llama_model_quantize(ALL_F32) when missing")
    ap.add_argument("--keep", default="", help="comma list of llamacpp,llamacpp_f32,mlxlm: reuse those "
                    "results from the existing --out file where the prompt ids are unchanged")
    args = ap.parse_args()
    keep = set(filter(None, args.keep.split(",")))
    old = {}
    if keep and os.path.exists(args.out):
        with open(args.out, encoding="utf-8") as f:
            old = {p["name"]: p for p in json.load(f)["prompts"]}

    from llama_cpp import Llama
    llm = Llama(model_path=args.gguf, n_ctx=2048, n_batch=512, n_threads=args.threads,
                n_threads_batch=args.threads, logits_all=False, verbose=False, seed=0)
    meta = llm.metadata
    bos_id, eos_id = llm.token_bos(), llm.token_eos()
    detok = lambda i: llm.detokenize([i], special=True).decode("utf-8", "replace")
    template = meta["tokenizer.chat_template"]
    eos_ids = sorted({eos_id})
    eot = llm._model.token_eot() if hasattr(llm._model, "token_eot") else -1
    if eot is not None and eot >= 0:
        eos_ids = sorted(set(eos_ids) | {eot})

    # does llama.cpp add BOS for this GGUF? (tokenizer.ggml.add_bos_token; false for SmolLM2)
    bos_added = len(llm.tokenize(b"a", add_bos=True)) > len(llm.tokenize(b"a", add_bos=False))
    prompts = []
    for name, kind, content in PROMPTS:
        text = render_chat(template, content, detok(bos_id), detok(eos_id)) if kind == "chat" else content
        # add_bos=True lets llama.cpp decide: it adds BOS only where the GGUF's add_bos_token says so
        ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=(kind == "chat"))
        prompts.append({"name": name, "kind": kind, "text": text, "ids": [int(i) for i in ids]})

    def kept(p, key):
        o = old.get(p["name"])
        if key in keep and o and o["ids"] == p["ids"] and key in o and len(o[key]["tokens"]) == args.n:
            p[key] = o[key]
            return True
        return False

    def llama_pass(llm, key, label):
        t0 = time.time()
        for p in prompts:
            if kept(p, key):
                continue
            toks, gaps, second = run_llamacpp(llm, p["ids"], args.n)
            p[key] = {"tokens": toks, "top2_gap": gaps, "second": second, "eos_at": first_eos(toks, eos_ids)}
            print(f"{label} {p['name']:20s} {len(p['ids']):4d} prompt ids  eos_at={p[key]['eos_at']}  "
                  f"{llm.detokenize(toks[:24]).decode('utf-8', 'replace')!r}", flush=True)
        print(f"{label} done in {time.time() - t0:.1f}s", flush=True)

    llama_pass(llm, "llamacpp", "llama.cpp")
    del llm

    # llama.cpp on an F32 GGUF holding the same (dequantized) weights: no activation quantization,
    # so it is the llama.cpp counterpart of mlx-lm on the f32 folder
    if not os.path.exists(args.gguf_f32):
        import llama_cpp
        qp = llama_cpp.llama_model_quantize_default_params()
        qp.ftype = llama_cpp.LLAMA_FTYPE_ALL_F32
        qp.allow_requantize = True
        qp.nthread = args.threads
        if llama_cpp.llama_model_quantize(args.gguf.encode(), (args.gguf_f32 + ".tmp").encode(), qp) != 0:
            sys.exit("llama_model_quantize to F32 failed")
        os.replace(args.gguf_f32 + ".tmp", args.gguf_f32)
    llm = Llama(model_path=args.gguf_f32, n_ctx=2048, n_batch=512, n_threads=args.threads,
                n_threads_batch=args.threads, logits_all=False, verbose=False, seed=0)
    llama_pass(llm, "llamacpp_f32", "llama.cpp F32")
    del llm

    from mlx_lm import load
    model, _tok = load(args.hf_dir)
    t0 = time.time()
    for p in prompts:
        if kept(p, "mlxlm"):
            continue
        toks, gaps, second = run_mlxlm(model, p["ids"], args.n)
        p["mlxlm"] = {"tokens": toks, "top2_gap": gaps, "second": second, "eos_at": first_eos(toks, eos_ids)}
        print(f"mlx-lm    {p['name']:20s} eos_at={p['mlxlm']['eos_at']}  {_tok.decode(toks[:24])!r}", flush=True)
    print(f"mlx-lm done in {time.time() - t0:.1f}s", flush=True)

    ags = [agreement(prompts, "llamacpp", "mlxlm"), agreement(prompts, "llamacpp_f32", "mlxlm"),
           agreement(prompts, "llamacpp", "llamacpp_f32")]
    out = {
        "model": os.path.basename(args.gguf),
        "mlx_folder": "SmolLM2-135M-Instruct-f32 (tests/ref/gguf_to_hf_folder.py: dequantized GGUF weights, f32)",
        "gguf_f32": os.path.basename(args.gguf_f32) + " (llama_model_quantize ALL_F32 of the Q4_1 file: same weights)",
        "n_tokens": args.n,
        "bos_added": bos_added,
        "eos_ids": eos_ids,
        "note": "EOS ignored: 128 tokens always; eos_at = index of the first EOS (null if none); "
                "eos_ids = llama.cpp's end-of-generation ids (EOS and EOT). "
                "top2_gap = top-1 minus top-2 logit at that step (f32); second = the runner-up id.",
        "prompts": prompts,
        "agreement": ags,
        "versions": versions(),
        "generated": time.strftime("%Y-%m-%d"),
        "threads": args.threads,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    os.replace(tmp, args.out)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")
    for ag in ags:
        print(f"{ag['pair']}: {ag['identical_sequences']}/{ag['n']} identical over {args.n} tokens")
        for r in ag["per_prompt"]:
            if r["first_diff"] is not None:
                print(f"  {r['name']:20s} first diff at {r['first_diff']:3d}  gaps {r['gap_a']:.4f} / "
                      f"{r['gap_b']:.4f}  near_tie={r['near_tie']}")


if __name__ == "__main__":
    sys.exit(main())
