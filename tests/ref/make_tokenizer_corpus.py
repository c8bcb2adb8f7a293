#!/usr/bin/env python3
"""Builds tests/data/tokenizers/corpus.jsonl: the inputs on which rill's tokenizers must give the
same ids as HF tokenizers. One JSON string per line (so an input may hold newlines, tabs, NULs).

Sources, all local (seeded, so the file is reproducible on the same machine):
  - Python sources of the Debian python3 package (/usr/lib/python3*): code, indentation, strings;
  - glibc locale data (/usr/share/i18n/locales): day / month names and other strings in many
    scripts, decoded from their <Uxxxx> notation;
  - Debian package docs (/usr/share/doc/*/copyright, changelogs): English prose;
  - generated lines: emoji (ZWJ sequences, flags, skin tones), runs of spaces / tabs / newlines,
    numbers, strings that look like special tokens, combining marks, RTL text, odd Unicode
    (noncharacters, private use, controls), contractions, mixed case.
Usage: make_tokenizer_corpus.py [OUT] (default tests/data/tokenizers/corpus.jsonl).
"""
import glob
import gzip
import json
import os
import random
import re
import sys

RNG = random.Random(20250301)
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "data", "tokenizers", "corpus.jsonl")
MAX_LEN = 400  # characters per input


def clip(s):
    return s[:MAX_LEN]


def python_lines(n):
    files = sorted(glob.glob("/usr/lib/python3*/**/*.py", recursive=True))
    RNG.shuffle(files)
    out = []
    for f in files:
        try:
            text = open(f, encoding="utf-8").read()
        except (UnicodeDecodeError, OSError):
            continue
        lines = text.split("\n")
        i = 0
        while i < len(lines) and len(out) < n:
            k = RNG.choice([1, 1, 1, 2, 3, 5])  # some inputs span several lines
            chunk = "\n".join(lines[i : i + k])
            i += k + RNG.randrange(0, 40)
            if chunk.strip() or RNG.random() < 0.05:
                out.append(clip(chunk))
        if len(out) >= n:
            break
    return out


def locale_lines(n):
    out = []
    pat = re.compile(r'"((?:<U[0-9A-Fa-f]{4,8}>)+)"')
    for f in sorted(glob.glob("/usr/share/i18n/locales/*")):
        try:
            text = open(f, encoding="utf-8", errors="replace").read()
        except OSError:
            continue
        words = []
        for m in pat.finditer(text):
            s = "".join(chr(int(u, 16)) for u in re.findall(r"<U([0-9A-Fa-f]+)>", m.group(1)))
            if any(ord(c) > 0x7F for c in s) or RNG.random() < 0.1:
                words.append(s)
        RNG.shuffle(words)
        for i in range(0, min(len(words), 60), 3):
            out.append(clip(RNG.choice([" ", ", ", " - ", "\t", "  "]).join(words[i : i + RNG.randrange(1, 6)])))
    RNG.shuffle(out)
    return out[:n]


def doc_lines(n):
    out = []
    files = sorted(glob.glob("/usr/share/doc/*/copyright")) + sorted(glob.glob("/usr/share/doc/*/changelog*.gz"))
    for f in files:
        try:
            if f.endswith(".gz"):
                text = gzip.open(f, "rt", encoding="utf-8", errors="replace").read(20000)
            else:
                text = open(f, encoding="utf-8", errors="replace").read(20000)
        except (OSError, EOFError):
            continue
        paras = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
        for p in paras[:8]:
            out.append(clip(p if RNG.random() < 0.3 else " ".join(p.split())))
    RNG.shuffle(out)
    return out[:n]


SPECIAL_LIKE = [
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<s>", "</s>", "<unk>", "<pad>", "<bos>", "<eos>",
    "<start_of_turn>", "<end_of_turn>", "<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>",
    "<|end_header_id|>", "<0x0A>", "<0xFF>", "<mask>", "[multimodal]", "<unused0>", "<think>", "</think>",
    "<|im_", "im_end|>", "<|", "|>", "<<s>>", "<s><s>", "< s >", "<|reserved_special_token_5|>",
    "<filename>", "<jupyter_code>", "<gh_stars>",
]
EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷", "🇯🇵", "🏳️‍🌈", "❤️", "✨", "🤖", "🧪", "👩🏿‍🚀", "🫠", "©️", "1️⃣", "🦀"]
ODD = ["\u200b", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u180e", "\u0085", "\u2028", "\u2029", "\u3000", "\u00a0",
       "\u202f", "\ufffd", "\ufffe"[0:0] + "\uffff", "\U0010fffd", "\ue000", "\U000e0001", "\u0301", "\u0308\u0301",
       "e\u0301", "\u1e9b\u0323", "\ufb01", "\u2126", "\u212b", "\u00c5", "ﬀ", "①", "½", "²", "\u0130", "ß", "ẞ", "ſ",
       "\x00", "\x01", "\x1b[31m", "\x7f", "\t", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x1f", "\u061c", "\u200f"]
WORDS = ["the", "The", "THE", "don't", "DON'T", "I'm", "we'll", "they've", "she'd", "it's", "Ok", "hello", "world",
         "naïve", "café", "Zürich", "straße", "Ελληνικά", "русский", "中文", "日本語", "한국어", "العربية", "עברית",
         "हिन्दी", "தமிழ்", "ไทย", "ქართული", "Հայերեն", "አማርኛ", "ᚠᛇᚻ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "ℌ𝔢𝔩𝔩𝔬", "x²", "π", "∑", "∞"]


def generated(n):
    out = []
    for _ in range(n):
        kind = RNG.randrange(9)
        if kind == 0:  # whitespace runs and newlines
            parts = [RNG.choice(WORDS) + RNG.choice([" ", "  ", "   ", "\t", "\n", "\n\n", " \n ", "\r\n", "    \n\n\n"])
                     for _ in range(RNG.randrange(1, 8))]
            s = "".join(parts)
            if RNG.random() < 0.3:
                s = RNG.choice([" ", "  ", "\n", "\t "]) + s
        elif kind == 1:  # numbers
            s = " ".join(RNG.choice([str(RNG.randrange(10 ** RNG.randrange(1, 15))), f"{RNG.random() * 1e4:.3f}",
                                     "1,234,567", "3.14159e-10", "0x1F", "2024-03-01", "12:30:45", "+49 30 1234567",
                                     "١٢٣٤", "１２３", "一二三", "Ⅻ"]) for _ in range(RNG.randrange(1, 8)))
        elif kind == 2:  # special-token look-alikes
            s = "".join(RNG.choice(SPECIAL_LIKE + WORDS + [" ", "  ", "\n", ""]) for _ in range(RNG.randrange(1, 10)))
        elif kind == 3:  # emoji
            s = "".join(RNG.choice(EMOJI + WORDS + [" "]) for _ in range(RNG.randrange(1, 10)))
        elif kind == 4:  # odd Unicode
            s = "".join(RNG.choice(ODD + WORDS + [" "]) for _ in range(RNG.randrange(1, 12)))
        elif kind == 5:  # random code points from assigned-heavy blocks
            blocks = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x52F), (0x590, 0x6FF), (0x900, 0xDFF), (0xE00, 0xEFF),
                      (0x1100, 0x11FF), (0x1E00, 0x1FFF), (0x2000, 0x2BFF), (0x3000, 0x30FF), (0x4E00, 0x4FFF),
                      (0xAC00, 0xAD00), (0x1F300, 0x1F6FF), (0x1D400, 0x1D7FF), (0x10000, 0x1007F)]
            cps = []
            for _ in range(RNG.randrange(1, 30)):
                a, b = RNG.choice(blocks)
                c = RNG.randrange(a, b + 1)
                if 0xD800 <= c <= 0xDFFF:
                    c = 0x41
                cps.append(chr(c))
            s = "".join(cps)
        elif kind == 6:  # contractions and case
            s = " ".join(RNG.choice(["'s", "'S", "'t", "'re", "'VE", "'m", "'ll", "'d", "''", "'", "’s", "x's",
                                     "Don't", "O'Neil", "rock'n'roll"] + WORDS) for _ in range(RNG.randrange(1, 10)))
        elif kind == 7:  # code-ish punctuation
            s = "".join(RNG.choice(["{", "}", "()", "[]", ";", "::", "->", "=>", "!=", "==", "&&", "||", "/*", "*/",
                                    "#include", "<stdio.h>", "    ", "\t", "\n", "x", "_foo", "BAR", "0", "'a'",
                                    '"str"', "\\n", "$", "@", "%", "^", "`", "~~~"]) for _ in range(RNG.randrange(1, 20)))
        else:  # long repeated runs
            s = RNG.choice(["a", " ", "\n", "=", "-", "ab", "😀", "é", "0", "\t", "!?"]) * RNG.randrange(1, 120)
        out.append(clip(s))
    return out


def main():
    lines = python_lines(8000) + locale_lines(4000) + doc_lines(3000) + generated(9000)
    lines += ["", " ", "  ", "\n", "\n\n", "\t", " \n", "a", "A", "<s>", " <s> ", "<|im_start|>user\nhi<|im_end|>"]
    RNG.shuffle(lines)
    os.makedirs(os.path.dirname(os.path.abspath(OUT)), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        for s in lines:
            f.write(json.dumps(s, ensure_ascii=False) + "\n")
    print(f"{OUT}: {len(lines)} lines, {os.path.getsize(OUT)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
