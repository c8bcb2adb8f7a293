#!/usr/bin/env python3
"""Writes tests/data/tokenizers/lossy_utf8.txt: invalid UTF-8 byte strings and what Python's
bytes.decode("utf-8", "replace") makes of them (the repair rill applies before encoding; Rust's
String::from_utf8_lossy agrees). One line per case: input hex, a space, output hex. Seeded.
Made with CPython 3.11.
"""
import os
import random

rng = random.Random(7)
cases = [b"\x80", b"\xc3", b"\xc3\x28", b"\xe2\x82", b"\xe2\x82\x28", b"\xf0\x9f\x98", b"\xed\xa0\x80", b"\xc0\xaf",
         b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80", b"\xff\xfe", b"a\xe0\x80\xafb", b"\xef\xbf\xbf", b"\xf0\x80\x80"]
pieces = [b"a", b" ", b"\xc3\xa9", b"\xe2\x82\xac", b"\xf0\x9f\x98\x80", b"\x80", b"\xbf", b"\xc2", b"\xe0", b"\xed",
          b"\xf0", b"\xf4", b"\xf5", b"\xff", b"\xa0", b"\x9f", b"\x90", b"\x8f"]
for _ in range(400):
    cases.append(b"".join(rng.choice(pieces) for _ in range(rng.randrange(1, 10))))
for _ in range(200):
    cases.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 12))))
out = os.path.join(os.path.dirname(__file__), "..", "data", "tokenizers", "lossy_utf8.txt")
with open(out, "w") as f:
    for c in cases:
        f.write(c.hex() + " " + c.decode("utf-8", "replace").encode("utf-8").hex() + "\n")
