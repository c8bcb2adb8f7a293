#!/usr/bin/env python3
"""Converts a llama-architecture GGUF (SmolLM2-135M-Instruct Q4_1) into a Hugging Face-layout model
folder in f32 with the DEQUANTIZED GGUF weights, so that mlx-lm (and transformers) run exactly the
weights that llama.cpp runs. This is the "same weights in an MLX folder" of issue 4's acceptance.

  config.json            llama fields (LlamaForCausalLM), tied embeddings
  model.safetensors      f32: model.embed_tokens.weight, model.layers.N.self_attn.{q,k,v,o}_proj.weight,
                         model.layers.N.mlp.{gate,up,down}_proj.weight, input_layernorm,
                         post_attention_layernorm, model.norm.weight
  tokenizer.json         from the GGUF metadata via transformers' GGUF tokenizer converter (no torch)
  tokenizer_config.json  chat template, special tokens
  generation_config.json bos/eos

llama.cpp's convert_hf_to_gguf.py permutes the rows of Q and K (it regroups each head's rows from
the HF "rotate_half" order [x0..x31, x32..x63] into interleaved pairs, so that its NORM-mode rope
rotates adjacent elements). This script undoes that permutation, so the folder is in HF's layout.

Usage: gguf_to_hf_folder.py [MODEL.gguf] [OUT_DIR]
  defaults: ~/.cache/rill/models/SmolLM2-135M-Instruct.Q4_1.gguf
            ~/.cache/rill/models/SmolLM2-135M-Instruct-f32/
Made with gguf 0.19.0, numpy 2.4.6, safetensors 0.8.0, transformers 5.24.0, tokenizers 0.23.3.
"""
import json
import os
import sys

import gguf
import numpy as np
from safetensors.numpy import save_file

MODELS = os.path.expanduser("~/.cache/rill/models")


def field_value(field):
    t = field.types[0]
    if t == gguf.GGUFValueType.ARRAY:
        if field.types[1] == gguf.GGUFValueType.STRING:
            return [bytes(field.parts[i]).decode("utf-8") for i in field.data]
        return [field.parts[i].tolist()[0] for i in field.data]
    if t == gguf.GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    return field.parts[field.data[0]].tolist()[0]


def unpermute(w, n_head):
    """Inverse of llama.cpp's permute(w, n_head): rows of each head go from interleaved pairs
    (GGUF) back to halves (HF)."""
    out_dim = w.shape[0]
    hd = out_dim // n_head
    return w.reshape(n_head, hd // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def dequant(t):
    a = gguf.quants.dequantize(t.data, t.tensor_type)
    # numpy shape is reversed GGUF ne: (ne1, ne0) = (out, in), which is HF's layout
    shape = tuple(int(x) for x in reversed(t.shape.tolist()))
    return np.ascontiguousarray(a.reshape(shape).astype(np.float32))


def export_tokenizer(meta, out_dir):
    from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_TOKENIZER_MAPPING, convert_gguf_tokenizer

    tok_dict = {
        name: meta["tokenizer." + key]
        for key, name in GGUF_TOKENIZER_MAPPING["tokenizer"].items()
        if "tokenizer." + key in meta
    }
    backend, _ = convert_gguf_tokenizer(meta["general.architecture"], tok_dict)
    backend.save(os.path.join(out_dir, "tokenizer.json"))
    tokens = meta["tokenizer.ggml.tokens"]
    types = meta.get("tokenizer.ggml.token_type", [])
    bos = tokens[meta["tokenizer.ggml.bos_token_id"]]
    eos = tokens[meta["tokenizer.ggml.eos_token_id"]]
    unk_id = meta.get("tokenizer.ggml.unknown_token_id")
    pad_id = meta.get("tokenizer.ggml.padding_token_id")
    added = {}
    for i, (s, ty) in enumerate(zip(tokens, types)):
        if ty == 3:  # CONTROL
            added[str(i)] = {"content": s, "lstrip": False, "normalized": False, "rstrip": False,
                             "single_word": False, "special": True}
    cfg = {
        "tokenizer_class": "GPT2Tokenizer",
        "add_bos_token": bool(meta.get("tokenizer.ggml.add_bos_token", False)),
        "add_prefix_space": bool(meta.get("tokenizer.ggml.add_space_prefix", False)),
        "added_tokens_decoder": added,
        "bos_token": bos,
        "eos_token": eos,
        "unk_token": tokens[unk_id] if unk_id is not None else None,
        "pad_token": tokens[pad_id] if pad_id is not None else None,
        "clean_up_tokenization_spaces": False,
        "model_max_length": int(meta.get("llama.context_length", 8192)),
        "chat_template": meta.get("tokenizer.chat_template"),
    }
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2, ensure_ascii=False)
    with open(os.path.join(out_dir, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        json.dump({k: cfg[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")}, f, indent=2)


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(MODELS, "SmolLM2-135M-Instruct.Q4_1.gguf")
    out_dir = sys.argv[2] if len(sys.argv) > 2 else os.path.join(MODELS, "SmolLM2-135M-Instruct-f32")
    r = gguf.GGUFReader(src)
    meta = {k: field_value(f) for k, f in r.fields.items()}
    arch = meta["general.architecture"]
    if arch != "llama":
        sys.exit(f"gguf_to_hf_folder: architecture {arch!r} not supported (llama only)")
    p = arch + "."
    n_layer = int(meta[p + "block_count"])
    n_head = int(meta[p + "attention.head_count"])
    n_head_kv = int(meta.get(p + "attention.head_count_kv", n_head))
    hidden = int(meta[p + "embedding_length"])
    tensors = {t.name: t for t in r.tensors}
    vocab = int(meta.get(p + "vocab_size", len(meta["tokenizer.ggml.tokens"])))
    tied = "output.weight" not in tensors

    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "bos_token_id": int(meta["tokenizer.ggml.bos_token_id"]),
        "eos_token_id": int(meta["tokenizer.ggml.eos_token_id"]),
        "pad_token_id": int(meta.get("tokenizer.ggml.padding_token_id", meta["tokenizer.ggml.eos_token_id"])),
        "hidden_act": "silu",
        "hidden_size": hidden,
        "intermediate_size": int(meta[p + "feed_forward_length"]),
        "max_position_embeddings": int(meta[p + "context_length"]),
        "num_attention_heads": n_head,
        "num_hidden_layers": n_layer,
        "num_key_value_heads": n_head_kv,
        "head_dim": int(meta.get(p + "rope.dimension_count", hidden // n_head)),
        "rms_norm_eps": float(np.float32(meta[p + "attention.layer_norm_rms_epsilon"])),
        "rope_theta": float(meta.get(p + "rope.freq_base", 10000.0)),
        "rope_scaling": None,
        "tie_word_embeddings": tied,
        "torch_dtype": "float32",
        "vocab_size": vocab,
        "use_cache": True,
    }
    # rms_norm_eps: GGUF stores f32 9.99999974e-06; write the value HF's config has
    if abs(config["rms_norm_eps"] - 1e-5) < 1e-9:
        config["rms_norm_eps"] = 1e-5

    names = {
        "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
        "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
        "attn_output": "self_attn.o_proj",
        "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
    }
    out = {"model.embed_tokens.weight": dequant(tensors["token_embd.weight"]),
           "model.norm.weight": dequant(tensors["output_norm.weight"])}
    if not tied:
        out["lm_head.weight"] = dequant(tensors["output.weight"])
    for i in range(n_layer):
        for g, h in names.items():
            w = dequant(tensors[f"blk.{i}.{g}.weight"])
            if g == "attn_q":
                w = unpermute(w, n_head)
            elif g == "attn_k":
                w = unpermute(w, n_head_kv)
            out[f"model.layers.{i}.{h}.weight"] = w
    used = {"token_embd.weight", "output_norm.weight", "output.weight"} | {
        f"blk.{i}.{g}.weight" for i in range(n_layer) for g in names}
    extra = [n for n in tensors if n not in used and not n.startswith("rope_")]
    if extra:
        sys.exit(f"gguf_to_hf_folder: unhandled tensors: {extra[:5]}")

    os.makedirs(out_dir, exist_ok=True)
    tmp = os.path.join(out_dir, "model.safetensors.tmp")
    save_file(out, tmp, metadata={"format": "pt"})
    os.replace(tmp, os.path.join(out_dir, "model.safetensors"))
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"],
                   "pad_token_id": config["pad_token_id"]}, f, indent=2)
    export_tokenizer(meta, out_dir)
    n = sum(a.size for a in out.values())
    print(f"wrote {out_dir}: {len(out)} tensors, {n} params, f32")


if __name__ == "__main__":
    main()
