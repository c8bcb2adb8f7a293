#!/usr/bin/env python3
# make_tiny_gguf.py: the tiny llama of tests/data/tiny/llama (llama3 RoPE scaling) written as a GGUF
# file the way llama.cpp's convert_hf_to_gguf.py writes llama models: Q and K rows permuted for
# interleaved-pair RoPE, and the llama3 scaling stored as per-frequency divisors in
# rope_freqs.weight. All tensors F32, so its logits must equal transformers' on the HF folder
# (tests/data/tiny/llama/logits.safetensors). Output: tests/data/tiny/llama_gguf/model.gguf.
# Made with: gguf 0.19.0, safetensors 0.8.0, numpy 2.4.
import json
import math
import os

import gguf
import numpy as np
from safetensors.numpy import load_file

HERE = os.path.dirname(__file__)
SRC = os.path.join(HERE, "..", "data", "tiny", "llama")
OUT = os.path.join(HERE, "..", "data", "tiny", "llama_gguf", "model.gguf")


def permute(w, n_head):  # llama.cpp's LlamaModel.permute
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def main():
    cfg = json.load(open(os.path.join(SRC, "config.json")))
    t = load_file(os.path.join(SRC, "model.safetensors"))
    rp = cfg["rope_parameters"]
    hd, nh, nkv = cfg["head_dim"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    w = gguf.GGUFWriter(OUT, "llama")
    w.add_name("tiny llama (rill fixture)")
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(nh)
    w.add_head_count_kv(nkv)
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_rope_dimension_count(hd)
    w.add_rope_freq_base(rp["rope_theta"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_vocab_size(cfg["vocab_size"])
    # llama3 scaling -> rope_freqs (convert_hf_to_gguf.py, LlamaModel.generate_extra_tensors)
    base, factor = rp["rope_theta"], rp["factor"]
    lo, hi, old = rp["low_freq_factor"], rp["high_freq_factor"], rp["original_max_position_embeddings"]
    freqs = 1.0 / (base ** (np.arange(0, hd, 2, dtype=np.float32) / hd))
    factors = []
    for f in freqs:
        wl = 2 * math.pi / f
        if wl < old / hi:
            factors.append(1)
        elif wl > old / lo:
            factors.append(factor)
        else:
            smooth = (old / wl - lo) / (hi - lo)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    w.add_tensor("rope_freqs.weight", np.array(factors, dtype=np.float32))
    w.add_tensor("token_embd.weight", t["model.embed_tokens.weight"])
    w.add_tensor("output_norm.weight", t["model.norm.weight"])
    w.add_tensor("output.weight", t["lm_head.weight"])
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w.add_tensor(f"blk.{i}.attn_norm.weight", t[p + "input_layernorm.weight"])
        w.add_tensor(f"blk.{i}.attn_q.weight", permute(t[p + "self_attn.q_proj.weight"], nh))
        w.add_tensor(f"blk.{i}.attn_k.weight", permute(t[p + "self_attn.k_proj.weight"], nkv))
        w.add_tensor(f"blk.{i}.attn_v.weight", t[p + "self_attn.v_proj.weight"])
        w.add_tensor(f"blk.{i}.attn_output.weight", t[p + "self_attn.o_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_norm.weight", t[p + "post_attention_layernorm.weight"])
        w.add_tensor(f"blk.{i}.ffn_gate.weight", t[p + "mlp.gate_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_up.weight", t[p + "mlp.up_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_down.weight", t[p + "mlp.down_proj.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print("wrote", OUT)


if __name__ == "__main__":
    main()
