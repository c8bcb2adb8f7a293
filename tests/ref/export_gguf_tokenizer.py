#!/usr/bin/env python3
"""Exports the tokenizer of a GGUF file to tokenizer.json with transformers' own GGUF converter
(transformers.integrations.gguf.gguf_tokenizer_mapping.convert_gguf_tokenizer), the reference that
rill's GGUF loader must agree with. transformers' GGUF reader needs torch, which we do not install;
the metadata is read with the `gguf` package instead and handed to the same converter.

Usage: export_gguf_tokenizer.py MODEL.gguf OUT/tokenizer.json [--pretty]
Made with transformers 5.24.0, tokenizers 0.23.3, gguf 0.19.0.
"""
import sys

import gguf
from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_TOKENIZER_MAPPING, convert_gguf_tokenizer


def value(field):
    t = field.types[0]
    if t == gguf.GGUFValueType.ARRAY:
        if field.types[1] == gguf.GGUFValueType.STRING:
            return [bytes(field.parts[i]).decode("utf-8") for i in field.data]
        return [field.parts[i].tolist()[0] for i in field.data]
    if t == gguf.GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    return field.parts[field.data[0]].tolist()[0]


def main():
    src, out = sys.argv[1], sys.argv[2]
    reader = gguf.GGUFReader(src)
    meta = {k: value(f) for k, f in reader.fields.items() if k.startswith("tokenizer.") or k == "general.architecture"}
    tokenizer_dict = {
        name: meta["tokenizer." + key]
        for key, name in GGUF_TOKENIZER_MAPPING["tokenizer"].items()
        if "tokenizer." + key in meta
    }
    backend, _ = convert_gguf_tokenizer(meta["general.architecture"], tokenizer_dict)
    with open(out, "w", encoding="utf-8") as f:
        f.write(backend.to_str(pretty="--pretty" in sys.argv))


if __name__ == "__main__":
    main()
