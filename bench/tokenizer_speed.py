#!/usr/bin/env python3
"""Single-threaded encode throughput: rill (`rill tokenize --bench`) against HF tokenizers, on the
same inputs: the lines of tests/data/tokenizers/corpus.jsonl, joined and split on newlines.
HF runs with RAYON_NUM_THREADS=1 two ways: a Python loop of Tokenizer.encode (what a caller
pays per text) and one encode_batch call (no per-call Python overhead). Prints a Markdown table.

Usage: bench/tokenizer_speed.py [--rill build/bin/rill] [--seconds 3] NAME=TOKENIZER[,HF_JSON] ...
  NAME=path            rill and HF both load path (a tokenizer.json folder or file)
  NAME=gguf,json       rill loads the GGUF, HF the tokenizer.json exported from it
Made with tokenizers 0.23.3.
"""
import argparse
import json
import os
import subprocess
import sys
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
from tokenizers import Tokenizer  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def hf_json(path):
    return os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path


def timed(fn, seconds):
    rounds, t0 = 0, time.perf_counter()
    while True:
        fn()
        rounds += 1
        el = time.perf_counter() - t0
        if el >= seconds:
            return rounds, el


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rill", default=os.path.join(ROOT, "build", "bin", "rill"))
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("models", nargs="+")
    args = ap.parse_args()
    corpus = os.path.join(ROOT, "tests", "data", "tokenizers", "corpus.jsonl")
    text = "\n".join(json.loads(line) for line in open(corpus, encoding="utf-8"))
    lines = text.split("\n")
    nbytes = sum(len(s.encode("utf-8")) for s in lines)
    flat = os.path.join("/tmp", f"rill-bench-corpus-{os.getpid()}.txt")
    with open(flat, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"{len(lines)} lines, {nbytes / 1e6:.2f} MB; single thread\n")
    print("| tokenizer | rill MB/s | HF encode loop MB/s | HF encode_batch MB/s | rill / loop | rill / batch |")
    print("|---|---|---|---|---|---|")
    for spec in args.models:
        name, paths = spec.split("=", 1)
        rill_path, _, hf_path = paths.partition(",")
        hf = Tokenizer.from_file(hf_json(hf_path or rill_path))
        out = subprocess.run([args.rill, "tokenize", "--model", rill_path, "--file", flat, "--no-add-special",
                              "--bench", str(args.seconds)], check=True, capture_output=True, text=True).stdout
        r = json.loads(out)
        rill_mbs = r["mb_per_s"]
        hf.encode_batch(lines[:2000], add_special_tokens=False)  # warm up
        rounds, el = timed(lambda: [hf.encode(s, add_special_tokens=False) for s in lines], args.seconds)
        loop_mbs = nbytes * rounds / el / 1e6
        rounds, el = timed(lambda: hf.encode_batch(lines, add_special_tokens=False), args.seconds)
        batch_mbs = nbytes * rounds / el / 1e6
        print(f"| {name} | {rill_mbs:.2f} | {loop_mbs:.2f} | {batch_mbs:.2f} | {rill_mbs / loop_mbs:.2f}x | "
              f"{rill_mbs / batch_mbs:.2f}x |")
    os.unlink(flat)


if __name__ == "__main__":
    sys.exit(main())
