#!/usr/bin/env python3
# make_tiny_models.py: tiny random-initialised models of every supported architecture, built with
# transformers + torch from fixed seeds and saved as safetensors + config.json under
# tests/data/tiny/<arch>/, with reference logits (f32, every position) for 3 prompts of random
# token ids in logits.safetensors ("p<i>.ids" I32 [n], "p<i>.logits" F32 [n][vocab]).
# Made with: torch 2.15.0, transformers 5.24.0, safetensors 0.8.0 (CPU, float32, eager attention).
# Usage: python3 tests/ref/make_tiny_models.py [OUT_DIR]   (default tests/data/tiny)
import os
import sys

import torch
from safetensors.torch import save_file
import transformers
from transformers import AutoModelForCausalLM

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "data", "tiny")
VOCAB = 256
PROMPT_LENS = (7, 19, 40)  # the last one passes the sliding windows below

COMMON = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
              rms_norm_eps=1e-5, torch_dtype="float32")

MODELS = {
    "llama": (transformers.LlamaConfig, dict(
        COMMON, head_dim=16, tie_word_embeddings=False,
        rope_parameters=dict(rope_type="llama3", rope_theta=10000.0, factor=8.0, low_freq_factor=1.0,
                             high_freq_factor=4.0, original_max_position_embeddings=64))),
    "mistral": (transformers.MistralConfig, dict(
        COMMON, head_dim=16, sliding_window=8, tie_word_embeddings=False,
        rope_parameters=dict(rope_type="default", rope_theta=1e6))),
    "qwen2": (transformers.Qwen2Config, dict(
        COMMON, tie_word_embeddings=True, use_sliding_window=False,
        rope_parameters=dict(rope_type="default", rope_theta=1e6))),
    "qwen3": (transformers.Qwen3Config, dict(
        COMMON, head_dim=24, tie_word_embeddings=True, use_sliding_window=False,
        rope_parameters=dict(rope_type="default", rope_theta=1e6))),
    "gemma3": (transformers.Gemma3TextConfig, dict(
        COMMON, num_hidden_layers=4, head_dim=32, num_key_value_heads=1, query_pre_attn_scalar=24,
        sliding_window=8, layer_types=["sliding_attention", "full_attention", "sliding_attention",
                                       "full_attention"],
        final_logit_softcapping=30.0, attn_logit_softcapping=None,  # transformers ignores it for gemma3 tie_word_embeddings=True,
        hidden_activation="gelu_pytorch_tanh",
        rope_parameters={"full_attention": dict(rope_type="linear", factor=4.0, rope_theta=1e6),
                         "sliding_attention": dict(rope_type="default", rope_theta=1e4)})),
    # MLA (q and kv low-rank, decoupled RoPE with yarn); layer 0 dense, then MoE with a shared expert
    # and group-limited routing (4 groups of 2 experts, top 2 groups, 2 experts per token)
    "deepseek_v3": (transformers.DeepseekV3Config, dict(
        COMMON, num_key_value_heads=4, q_lora_rank=48, kv_lora_rank=32, qk_rope_head_dim=8,
        qk_nope_head_dim=16, v_head_dim=24, first_k_dense_replace=1, n_routed_experts=8, n_shared_experts=1,
        moe_intermediate_size=32, num_experts_per_tok=2, n_group=4, topk_group=2, routed_scaling_factor=2.5,
        norm_topk_prob=True, tie_word_embeddings=False,
        rope_parameters=dict(rope_type="yarn", rope_theta=10000.0, factor=4.0,
                             original_max_position_embeddings=128, beta_fast=32, beta_slow=1, mscale=1.0,
                             mscale_all_dim=1.0))),
}


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        named = list(model.named_parameters()) + [(n, b) for n, b in model.named_buffers() if "correction" in n]
        for name, p in named:
            if "norm" in name:  # around the identity scale (gemma stores w - 1)
                base = 0.0 if "gemma" in type(model).__name__.lower() else 1.0
                p.copy_(base + 0.2 * torch.randn(p.shape, generator=g))
            elif "embed" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            elif name.endswith("bias") or "e_score_correction" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5)


def main():
    for i, (arch, (cls, kw)) in enumerate(MODELS.items()):
        torch.manual_seed(1000 + i)
        cfg = cls(**kw)
        cfg._attn_implementation = "eager"
        model = AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.float32, attn_implementation="eager")
        model.eval()
        randomize(model, 2000 + i)
        d = os.path.join(OUT, arch)
        os.makedirs(d, exist_ok=True)
        model.save_pretrained(d, safe_serialization=True)
        g = torch.Generator().manual_seed(3000 + i)
        tensors = {}
        with torch.no_grad():
            for k, n in enumerate(PROMPT_LENS):
                ids = torch.randint(0, VOCAB, (1, n), generator=g)
                logits = model(ids).logits[0].float()
                tensors[f"p{k}.ids"] = ids[0].to(torch.int32).contiguous()
                tensors[f"p{k}.logits"] = logits.contiguous()
        save_file(tensors, os.path.join(d, "logits.safetensors"),
                  metadata={"torch": torch.__version__, "transformers": transformers.__version__})
        for f in os.listdir(d):
            if f not in ("config.json", "model.safetensors", "logits.safetensors"):
                os.remove(os.path.join(d, f))
        print(arch, sum(p.numel() for p in model.parameters()), "params")


if __name__ == "__main__":
    main()
