#!/usr/bin/env python3
# make_config_fixtures.py: writes tests/data/configs/<name>/config.json, the model configs that
# tests/unit/test_config.c parses. Each one is built with transformers' own config class and the
# values of a real released model, then serialized with to_json_string() (transformers 5.x writes
# `rope_parameters` and `dtype`). One MLX-quantized config is hand-written in the older format
# (rope_theta + rope_scaling, a "quantization" block with per-module overrides, REFERENCE.md).
# Made with: transformers 5.24.0 (installed with --no-deps; torch not needed).
import json
import os
import sys

import transformers
from transformers import (DeepseekV3Config, Gemma3TextConfig, LlamaConfig, MistralConfig, Qwen2Config,
                          Qwen3Config)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "configs")


def llama_3_1_8b_instruct():
    return LlamaConfig(
        vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=131072, rms_norm_eps=1e-5,
        rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 8192},
        bos_token_id=128000, eos_token_id=[128001, 128008, 128009], tie_word_embeddings=False,
        torch_dtype="bfloat16")


def mistral_7b_v0_1():
    return MistralConfig(
        vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=32768, rms_norm_eps=1e-5,
        rope_theta=10000.0, sliding_window=4096, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False,
        torch_dtype="bfloat16")


def qwen2_5_7b():
    return Qwen2Config(
        vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
        num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=131072, rms_norm_eps=1e-6,
        rope_theta=1000000.0, sliding_window=131072, use_sliding_window=False, max_window_layers=28,
        bos_token_id=151643, eos_token_id=151643, tie_word_embeddings=False, torch_dtype="bfloat16")


def qwen3_0_6b():
    return Qwen3Config(
        vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
        num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
        rms_norm_eps=1e-6, rope_theta=1000000.0, attention_bias=False, sliding_window=None,
        use_sliding_window=False, max_window_layers=28, bos_token_id=151643, eos_token_id=151645,
        tie_word_embeddings=True, torch_dtype="bfloat16")


def gemma_3_270m():
    return Gemma3TextConfig(
        vocab_size=262144, hidden_size=640, intermediate_size=2048, num_hidden_layers=18,
        num_attention_heads=4, num_key_value_heads=1, head_dim=256, max_position_embeddings=32768,
        rms_norm_eps=1e-6, rope_theta=1000000.0, rope_local_base_freq=10000.0, sliding_window=512,
        sliding_window_pattern=6, query_pre_attn_scalar=256, final_logit_softcapping=None,
        attn_logit_softcapping=None, hidden_activation="gelu_pytorch_tanh", bos_token_id=2, eos_token_id=1,
        pad_token_id=0, tie_word_embeddings=True, torch_dtype="bfloat16")


def deepseek_v3():
    # The released DeepSeek-V3 values (the architecture is the same at every size; only the JSON is kept).
    return DeepseekV3Config(
        vocab_size=129280, hidden_size=7168, intermediate_size=18432, moe_intermediate_size=2048,
        num_hidden_layers=61, num_attention_heads=128, num_key_value_heads=128, n_shared_experts=1,
        n_routed_experts=256, routed_scaling_factor=2.5, kv_lora_rank=512, q_lora_rank=1536,
        qk_rope_head_dim=64, v_head_dim=128, qk_nope_head_dim=128, n_group=8, topk_group=4,
        num_experts_per_tok=8, first_k_dense_replace=3, norm_topk_prob=True, moe_layer_freq=1,
        scoring_func="sigmoid", topk_method="noaux_tc", max_position_embeddings=163840, rms_norm_eps=1e-6,
        rope_theta=10000.0,
        rope_scaling={"type": "yarn", "factor": 40.0, "beta_fast": 32, "beta_slow": 1, "mscale": 1.0,
                      "mscale_all_dim": 1.0, "original_max_position_embeddings": 4096},
        bos_token_id=0, eos_token_id=1, tie_word_embeddings=False, torch_dtype="bfloat16")


def mlx_llama_3_2_1b_mixed_3_6():
    # Hand-written after REFERENCE.md "Quantization format": the older config format that MLX
    # checkpoints on the Hub carry, 3-bit affine by default, 6 bits for v_proj and down_proj in the
    # first eighth of the layers, the last eighth and every third layer between, the (tied)
    # embedding at 6 bits, and one module left unquantized (false).
    n_layers = 16
    quant = {"group_size": 64, "bits": 3, "mode": "affine"}
    eighth = n_layers // 8
    for i in range(n_layers):
        if i < eighth or i >= n_layers - eighth or (i - eighth) % 3 == 0:
            for m in ("self_attn.v_proj", "mlp.down_proj"):
                quant[f"model.layers.{i}.{m}"] = {"group_size": 64, "bits": 6}
    quant["model.embed_tokens"] = {"group_size": 32, "bits": 6}
    quant["model.layers.7.mlp.gate_proj"] = False
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 128256, "hidden_size": 2048,
        "intermediate_size": 8192, "num_hidden_layers": n_layers, "num_attention_heads": 32,
        "num_key_value_heads": 8, "head_dim": 64, "hidden_act": "silu", "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
        "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": True, "bos_token_id": 128000,
        "eos_token_id": [128001, 128008, 128009], "torch_dtype": "bfloat16",
        "quantization": quant, "quantization_config": quant,
    }


def write(name, text):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write(text)
    print(f"wrote {name}/config.json", file=sys.stderr)


def main():
    assert transformers.__version__.startswith("5."), transformers.__version__
    made = {
        "llama-3.1-8b-instruct": llama_3_1_8b_instruct,
        "mistral-7b-v0.1": mistral_7b_v0_1,
        "qwen2.5-7b": qwen2_5_7b,
        "qwen3-0.6b": qwen3_0_6b,
        "gemma-3-270m": gemma_3_270m,
        "deepseek-v3": deepseek_v3,
    }
    for name, make in made.items():
        write(name, make().to_json_string())
    write("mlx-llama-3.2-1b-mixed_3_6", json.dumps(mlx_llama_3_2_1b_mixed_3_6(), indent=2) + "\n")


if __name__ == "__main__":
    main()
