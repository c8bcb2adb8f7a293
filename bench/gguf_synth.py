#!/usr/bin/env python3
"""Write a GGUF model with a real architecture's shapes and random weights, for speed side by side:
the same file runs in llama.cpp (llama-bench) and in rill (`rill bench`), so the anchor and rill read
the same bytes (bench/gpu_anchor.sh). Every 2-D weight is Q4_0 or Q8_0 (as `llama-quantize --pure`
leaves them), the norms f32; a SentencePiece-style vocabulary of the preset's size (special tokens,
the 256 byte tokens, then filler pieces). Speed does not depend on the weights' values; each
distinct shape gets one random array, written once per tensor of that shape (the engines still read
every tensor from its own place).

    python3 bench/gguf_synth.py --preset llama3-8b --type q4_0 --out /tmp/l8.gguf [--gguf-py DIR]

--gguf-py: a directory holding the `gguf` package (llama.cpp's gguf-py), where it is not installed.
"""
import argparse
import os
import sys

import numpy as np

PRESETS = {
    # hidden, layers, heads, kv heads, ffn, vocab, rope base, tied embeddings
    "llama3-8b": dict(hidden=4096, layers=32, heads=32, kv=8, ffn=14336, vocab=128256, rope=500000.0, tied=False),
    "smollm2-135m": dict(hidden=576, layers=30, heads=9, kv=3, ffn=1536, vocab=49152, rope=100000.0, tied=True),
}
BLOCK = {"q4_0": (32, 18), "q8_0": (32, 34)}  # values and bytes per block


def quant_array(rng, rows, cols, kind):
    """[rows][cols] weights as blocks of `kind`: an f16 scale in [0.002, 0.02), then random codes."""
    n, size = BLOCK[kind]
    if cols % n:
        sys.exit(f"gguf_synth: {cols} columns are not whole blocks of {n}")
    blocks = rng.integers(0, 256, size=(rows, cols // n, size), dtype=np.uint8)
    d = rng.uniform(0.002, 0.02, size=(rows, cols // n)).astype(np.float16)
    blocks[:, :, 0:2] = d.view(np.uint8).reshape(rows, cols // n, 2)
    return blocks.reshape(rows, cols // n * size)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), required=True)
    ap.add_argument("--type", choices=sorted(BLOCK), default="q4_0")
    ap.add_argument("--out", required=True)
    ap.add_argument("--gguf-py", default=None)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    if a.gguf_py:
        sys.path.insert(0, a.gguf_py)
    import gguf  # noqa: E402 (after the path)

    p = PRESETS[a.preset]
    h, ffn, hd = p["hidden"], p["ffn"], p["hidden"] // p["heads"]
    qt = {"q4_0": gguf.GGMLQuantizationType.Q4_0, "q8_0": gguf.GGMLQuantizationType.Q8_0}[a.type]
    ftype = {"q4_0": gguf.LlamaFileType.MOSTLY_Q4_0, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[a.type]
    rng = np.random.default_rng(a.seed)

    tmp = a.out + ".tmp"
    w = gguf.GGUFWriter(tmp, "llama")
    w.add_name(f"{a.preset} random ({a.type})")
    w.add_context_length(8192)
    w.add_embedding_length(h)
    w.add_block_count(p["layers"])
    w.add_feed_forward_length(ffn)
    w.add_head_count(p["heads"])
    w.add_head_count_kv(p["kv"])
    w.add_rope_freq_base(p["rope"])
    w.add_rope_dimension_count(hd)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(p["vocab"])
    w.add_file_type(ftype)

    # the vocabulary: <unk> <s> </s>, the byte tokens, then filler pieces
    V = p["vocab"]
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [2, 3, 3] + [6] * 256
    tokens += [f"\u2581t{i}" for i in range(V - len(tokens))]
    types += [1] * (V - len(types))
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * 259 + [-float(i) for i in range(V - 259)])
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)

    shapes = {  # one random array per distinct shape
        "q": quant_array(rng, p["heads"] * hd, h, a.type),
        "kv": quant_array(rng, p["kv"] * hd, h, a.type),
        "o": quant_array(rng, h, p["heads"] * hd, a.type),
        "ff": quant_array(rng, ffn, h, a.type),
        "down": quant_array(rng, h, ffn, a.type),
        "emb": quant_array(rng, V, h, a.type),
    }
    norm = rng.uniform(0.8, 1.2, size=h).astype(np.float32)
    w.add_tensor("token_embd.weight", shapes["emb"], raw_dtype=qt)
    w.add_tensor("output_norm.weight", norm)
    if not p["tied"]:
        w.add_tensor("output.weight", shapes["emb"], raw_dtype=qt)
    for i in range(p["layers"]):
        b = f"blk.{i}."
        w.add_tensor(b + "attn_norm.weight", norm)
        w.add_tensor(b + "attn_q.weight", shapes["q"], raw_dtype=qt)
        w.add_tensor(b + "attn_k.weight", shapes["kv"], raw_dtype=qt)
        w.add_tensor(b + "attn_v.weight", shapes["kv"], raw_dtype=qt)
        w.add_tensor(b + "attn_output.weight", shapes["o"], raw_dtype=qt)
        w.add_tensor(b + "ffn_norm.weight", norm)
        w.add_tensor(b + "ffn_gate.weight", shapes["ff"], raw_dtype=qt)
        w.add_tensor(b + "ffn_up.weight", shapes["ff"], raw_dtype=qt)
        w.add_tensor(b + "ffn_down.weight", shapes["down"], raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, a.out)  # (atomic: a reader never sees half a file)
    print(f"{a.out}: {a.preset}, {a.type}, {os.path.getsize(a.out) / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
