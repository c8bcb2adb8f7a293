#!/usr/bin/env python3
# make_smollm2_logits.py: reference logits for SmolLM2-135M-Instruct.Q4_1.gguf from transformers,
# which dequantizes the GGUF (from_pretrained(..., gguf_file=...)) and runs it in f32 (eager).
# For 3 prompts of random token ids it stores, at every position, the top-10 token ids and their
# logits: tests/data/smollm2_logits.safetensors ("p<i>.ids" I32 [n], "p<i>.top_ids" I32 [n][10],
# "p<i>.top_logits" F32 [n][10]).
# Made with: torch 2.15.0, transformers 5.24.0, gguf 0.19.0 (CPU, float32).
# The same for Gemma 3 270M Q4_K_M (K-quants, sliding layers): tests/data/gemma3_logits.safetensors.
# Usage: python3 tests/ref/make_smollm2_logits.py [MODEL_DIR]
import os
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

MODEL_DIR = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser("~/.cache/rill/models")
DATA = os.path.join(os.path.dirname(__file__), "..", "data")
# (gguf file, output, first token, prompt lengths: gemma's pass its 512-token window)
MODELS = (("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2_logits.safetensors", 1, (9, 33, 70)),
          ("gemma-3-270m-Q4_K_M.gguf", "gemma3_logits.safetensors", 2, (9, 40, 530)))
TOPK = 10


def main():
    for gguf_name, out_name, first, lens in MODELS:
        run(gguf_name, os.path.join(DATA, out_name), first, lens)


def run(GGUF, OUT, first, LENS):
    model = AutoModelForCausalLM.from_pretrained(MODEL_DIR, gguf_file=GGUF, dtype=torch.float32,
                                                 attn_implementation="eager")
    model.eval()
    g = torch.Generator().manual_seed(4242)
    out = {}
    with torch.no_grad():
        for k, n in enumerate(LENS):
            ids = torch.randint(0, model.config.vocab_size, (1, n), generator=g)
            ids[0, 0] = first  # SmolLM2: <|im_start|>, as a chat prompt begins; gemma: <bos>
            logits = model(ids).logits[0].float()
            top = torch.topk(logits, TOPK, dim=-1)
            out[f"p{k}.ids"] = ids[0].to(torch.int32).contiguous()
            out[f"p{k}.top_ids"] = top.indices.to(torch.int32).contiguous()
            out[f"p{k}.top_logits"] = top.values.contiguous()
    save_file(out, OUT, metadata={"model": GGUF, "torch": torch.__version__,
                                  "transformers": transformers.__version__})
    print("wrote", OUT)


if __name__ == "__main__":
    main()
