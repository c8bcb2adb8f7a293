#!/usr/bin/env python3
"""Write a GGUF model with a real architecture's shapes and random weights, for speed side by side:
the same file runs in llama.cpp (llama-bench) and in rill (`rill bench`), so the anchor and rill read
the same bytes (bench/gpu_anchor.sh). Every 2-D weight is Q4_0 or Q8_0 (as `llama-quantize --pure`
leaves them), or with --type q4_k_m the mix `llama-quantize` makes for Q4_K_M: Q4_K; Q6_K for the
output (the embeddings where tied) and for attn_v and ffn_down in the layers its use_more_bits rule
picks; rows whose width is not whole 256-value blocks fall back as it does, Q4_K to Q5_0 and Q6_K to
Q8_0. The norms are f32; a SentencePiece-style vocabulary of the preset's size (special tokens, the
256 byte tokens, then filler pieces). Speed does not depend on the weights' values; each distinct
shape and type gets one random array, written once per tensor of that shape (the engines still read
every tensor from its own place).

    python3 bench/gguf_synth.py --preset llama3-8b --type q4_0|q8_0|q4_k_m --out /tmp/l8.gguf [--gguf-py DIR]

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
# values and bytes per block, the byte offsets of its f16 factors, and how much smaller than the
# simple types' [0.002, 0.02) they are drawn (the K-quants multiply by 6-bit or int8 sub-scales too),
# so that every type's weights land in about the same range
BLOCK = {
    "q4_0": (32, 18, (0,), 1),
    "q5_0": (32, 22, (0,), 1),
    "q8_0": (32, 34, (0,), 1),
    "q4_k": (256, 144, (0, 2), 63),
    "q6_k": (256, 210, (208,), 128),
}
FILE_TYPES = {"q4_0": "MOSTLY_Q4_0", "q8_0": "MOSTLY_Q8_0", "q4_k_m": "MOSTLY_Q4_K_M"}
FALLBACK = {"q4_k": "q5_0", "q6_k": "q8_0"}  # llama-quantize's, for rows of partial 256-value blocks


def quant_array(rng, rows, cols, kind):
    """[rows][cols] weights as blocks of `kind`: random codes (and sub-scales), random f16 factors."""
    n, size, f16_at, shrink = BLOCK[kind]
    if cols % n:
        sys.exit(f"gguf_synth: {cols} columns are not whole blocks of {n}")
    blocks = rng.integers(0, 256, size=(rows, cols // n, size), dtype=np.uint8)
    for at in f16_at:
        d = (rng.uniform(0.002, 0.02, size=(rows, cols // n)) / shrink).astype(np.float16)
        blocks[:, :, at : at + 2] = d.view(np.uint8).reshape(rows, cols // n, 2)
    return blocks.reshape(rows, cols // n * size)


def more_bits(layer, n_layers):
    """llama-quantize's use_more_bits: the layers whose attn_v and ffn_down Q4_K_M keeps at Q6_K."""
    return layer < n_layers // 8 or layer >= 7 * n_layers // 8 or (layer - n_layers // 8) % 3 == 2


def block_kind(file_type, role, layer, n_layers, cols):
    """The block type of one tensor: the file's, or Q4_K_M's per-tensor choice."""
    if file_type != "q4_k_m":
        return file_type
    kind = "q4_k"
    if role == "output" or (role in ("v", "down") and more_bits(layer, n_layers)):
        kind = "q6_k"
    return FALLBACK[kind] if cols % BLOCK[kind][0] else kind


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), required=True)
    ap.add_argument("--type", choices=sorted(FILE_TYPES), default="q4_0")
    ap.add_argument("--out", required=True)
    ap.add_argument("--gguf-py", default=None)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    if a.gguf_py:
        sys.path.insert(0, a.gguf_py)
    import gguf  # noqa: E402 (after the path)

    p = PRESETS[a.preset]
    h, ffn, hd = p["hidden"], p["ffn"], p["hidden"] // p["heads"]
    ftype = getattr(gguf.LlamaFileType, FILE_TYPES[a.type])
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

    L, arrays = p["layers"], {}  # one random array per distinct (shape, block type)

    def add(name, role, rows, cols, layer=0):
        kind = block_kind(a.type, role, layer, L, cols)
        if (rows, cols, kind) not in arrays:
            arrays[(rows, cols, kind)] = quant_array(rng, rows, cols, kind)
        w.add_tensor(name, arrays[(rows, cols, kind)], raw_dtype=getattr(gguf.GGMLQuantizationType, kind.upper()))

    norm = rng.uniform(0.8, 1.2, size=h).astype(np.float32)
    add("token_embd.weight", "output" if p["tied"] else "embed", V, h)  # (tied: the output's type)
    w.add_tensor("output_norm.weight", norm)
    if not p["tied"]:
        add("output.weight", "output", V, h)
    for i in range(L):
        b = f"blk.{i}."
        w.add_tensor(b + "attn_norm.weight", norm)
        add(b + "attn_q.weight", "q", p["heads"] * hd, h, i)
        add(b + "attn_k.weight", "k", p["kv"] * hd, h, i)
        add(b + "attn_v.weight", "v", p["kv"] * hd, h, i)
        add(b + "attn_output.weight", "o", h, p["heads"] * hd, i)
        w.add_tensor(b + "ffn_norm.weight", norm)
        add(b + "ffn_gate.weight", "gate", ffn, h, i)
        add(b + "ffn_up.weight", "up", ffn, h, i)
        add(b + "ffn_down.weight", "down", h, ffn, i)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, a.out)  # (atomic: a reader never sees half a file)
    print(f"{a.out}: {a.preset}, {a.type}, {os.path.getsize(a.out) / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
