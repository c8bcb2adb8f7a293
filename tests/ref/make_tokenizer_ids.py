#!/usr/bin/env python3
"""Writes the expected ids of the tokenizer corpus for one tokenizer.json, with HF tokenizers:
one line per corpus line, the ids space-separated (encode with add_special_tokens=False, special
tokens parsed). Plain text so that the C test reads it without zlib.

Usage: make_tokenizer_ids.py TOKENIZER.json CORPUS.jsonl OUT.ids
Made with tokenizers 0.23.3.
"""
import json
import sys

from tokenizers import Tokenizer


def main():
    tok = Tokenizer.from_file(sys.argv[1])
    lines = [json.loads(line) for line in open(sys.argv[2], encoding="utf-8")]
    encs = tok.encode_batch(lines, add_special_tokens=False)
    with open(sys.argv[3], "w") as f:
        for e in encs:
            f.write(" ".join(map(str, e.ids)) + "\n")


if __name__ == "__main__":
    main()
