#!/usr/bin/env python3
"""Side-by-side CPU speed: rill against its anchors, llama.cpp and mlx-lm (issue 6, "Anchors, side by side").

Every system runs the same model, prompt length (-p, random tokens), generation length (-g, EOS
ignored) and thread count, and the trials alternate A B C A B C in one invocation. Each anchor
runs in its own worker process that loads the model once and waits on a pipe between trials, so
an idle system costs nothing while another is timed. rill runs as
`build/bin/rill bench --model M -p P -g G -n 1 --threads T --json` (skipped with a note while that
subcommand does not exist).

Measures:
  pp   prompt tok/s: P random tokens in one forward pass from an empty cache (batch = P)
  tg   generation tok/s: G single-token steps after the P-token prompt (mlx_lm.benchmark's and
       `rill bench`'s definition)
  tg0  llama.cpp only: G steps from an empty cache (llama-bench's tg definition), for reference
plus the DRAM read bandwidth (a small C program, T threads, compiled here with cc -O2 -march=native;
numpy fallback), and appends a dated section to bench/RESULTS.md with `lscpu`'s model name and
flags, the bandwidth, every system's tok/s and the ratios rill/anchor, and the DRAM roofline use.

Anchors (installed by tests/interop/setup.sh when missing): llama-cpp-python 0.3.36 (its bundled
llama.cpp, CPU build), mlx 0.32.4 (mlx-cpu) + mlx-lm 0.32.2. llama-cpp-python does not ship the
llama-bench binary, so pp/tg are timed around llama_decode through its Python API.

Usage: bench/anchors.py [--cases smollm2-q4_1,smollm2-mlx8,gemma3-q4_k_m] [-p 512] [-g 128]
                        [-n 3] [--threads 2] [--no-setup] [--no-results] [--rill build/bin/rill]
Models (outside the repo, ~/.cache/rill/models): SmolLM2-135M-Instruct.Q4_1.gguf,
gemma-3-270m-Q4_K_M.gguf, SmolLM2-135M-Instruct-mlx-8bit/ and SmolLM2-135M-Instruct-mlx-4bit-g32/
(made by tests/ref/make_mlx_folders.sh), SmolLM2-135M-Instruct-f32/ (tests/ref/gguf_to_hf_folder.py).
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
M = os.path.expanduser("~/.cache/rill/models")

# name -> {system: model path}. The ratios rill/anchor are taken within a case.
CASES = {
    "smollm2-q4_1": {
        "desc": "SmolLM2-135M, GGUF Q4_1 (mlx-lm: the same model as MLX affine 4-bit, group 32 = Q4_1's layout)",
        "llamacpp": f"{M}/SmolLM2-135M-Instruct.Q4_1.gguf",
        "mlxlm": f"{M}/SmolLM2-135M-Instruct-mlx-4bit-g32",
        "rill": f"{M}/SmolLM2-135M-Instruct.Q4_1.gguf",
    },
    "smollm2-mlx8": {
        "desc": "SmolLM2-135M, MLX affine 8-bit group 64 (llama.cpp: GGUF Q8_0, requantized from the Q4_1 file)",
        "llamacpp": f"{M}/SmolLM2-135M-Instruct.Q8_0.gguf",
        "mlxlm": f"{M}/SmolLM2-135M-Instruct-mlx-8bit",
        "rill": f"{M}/SmolLM2-135M-Instruct-mlx-8bit",
    },
    "smollm2-f32": {
        "desc": "SmolLM2-135M, f32 HF folder (the dequantized GGUF weights); mlx-lm's reference speed",
        "mlxlm": f"{M}/SmolLM2-135M-Instruct-f32",
        "rill": f"{M}/SmolLM2-135M-Instruct-f32",
    },
    "gemma3-q4_k_m": {
        "desc": "Gemma 3 270M, GGUF Q4_K_M (no MLX folder: mlx-lm cannot read GGUF)",
        "llamacpp": f"{M}/gemma-3-270m-Q4_K_M.gguf",
        "rill": f"{M}/gemma-3-270m-Q4_K_M.gguf",
    },
}
DEFAULT_CASES = "smollm2-q4_1,smollm2-mlx8,gemma3-q4_k_m"

# ---------------------------------------------------------------- workers (run in child processes)

WORKER_LLAMACPP = r'''
import json, sys, time, random
import numpy as np
from llama_cpp import Llama
path, P, G, T = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
llm = Llama(model_path=path, n_ctx=P + G + 16, n_batch=max(P, 1), n_ubatch=max(P, 1), n_threads=T,
            n_threads_batch=T, logits_all=False, verbose=False, seed=0)
rng = random.Random(0)
nv = llm.n_vocab()
def last():
    return np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(nv,))
def trial():
    prompt = [rng.randrange(nv) for _ in range(P)]
    llm.reset()
    t0 = time.perf_counter(); llm.eval(prompt); t1 = time.perf_counter()
    tok = int(np.argmax(last()))
    t2 = time.perf_counter()
    for _ in range(G):
        llm.eval([tok]); tok = int(np.argmax(last()))
    t3 = time.perf_counter()
    llm.reset()                          # llama-bench's tg: from an empty cache
    tok = rng.randrange(nv)
    t4 = time.perf_counter()
    for _ in range(G):
        llm.eval([tok]); tok = int(np.argmax(last()))
    t5 = time.perf_counter()
    return {"prompt_tps": P / (t1 - t0), "generation_tps": G / (t3 - t2), "tg0_tps": G / (t5 - t4)}
trial()  # warm-up
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() != "run": break
    print(json.dumps(trial()), flush=True)
'''

WORKER_MLXLM = r'''
import json, sys, time
import mlx.core as mx
from mlx_lm import load
from mlx_lm.generate import generate_step
path, P, G, T = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
model, tok = load(path)
mx.random.seed(0)
vocab = model.args.vocab_size if hasattr(model, "args") else 49152
sampler = lambda x: mx.argmax(x, axis=-1)
def trial(P=P, G=G):
    prompt = mx.random.randint(0, vocab, (P,))
    mx.eval(prompt)
    # same timing points as mlx_lm.stream_generate: prompt time ends when the first token is out
    t0 = time.perf_counter(); n = 0
    for t, _ in generate_step(prompt, model, max_tokens=G, sampler=sampler):
        if n == 0:
            t1 = time.perf_counter()
        n += 1
    t2 = time.perf_counter()
    return {"prompt_tps": P / (t1 - t0), "generation_tps": (n - 1) / (t2 - t1) if n > 1 else 0.0,
            "peak_memory_gb": mx.get_peak_memory() / 1e9}
trial(min(P, 32), min(G, 8))  # warm-up: short, mlx's CPU backend is slow
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() != "run": break
    print(json.dumps(trial()), flush=True)
'''


class Worker:
    def __init__(self, name, code, model, P, G, T):
        env = dict(os.environ, OMP_NUM_THREADS=str(T), OPENBLAS_NUM_THREADS=str(T),
                   MKL_NUM_THREADS=str(T))
        self.name = name
        self.p = subprocess.Popen([sys.executable, "-c", code, model, str(P), str(G), str(T)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=env)
        line = self.p.stdout.readline()
        if line.strip() != "ready":
            err = self.p.stderr.read()[-1500:]
            self.p.kill()
            raise RuntimeError(f"{name} worker failed to start: {err}")

    def run(self):
        self.p.stdin.write("run\n"); self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name} worker died: {self.p.stderr.read()[-1500:]}")
        return json.loads(line)

    def close(self):
        try:
            self.p.stdin.close(); self.p.wait(timeout=30)
        except Exception:
            self.p.kill()


class Rill:
    def __init__(self, binary, model, P, G, T):
        self.cmd = [binary, "bench", "--model", model, "-p", str(P), "-g", str(G), "-n", "1",
                    "--threads", str(T), "--json"]

    def run(self):
        p = subprocess.run(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=900)
        if p.returncode != 0:
            raise RuntimeError(f"rill bench exit {p.returncode}: {p.stderr.strip()[-300:]}")
        obj = None
        for line in reversed(p.stdout.strip().splitlines()):
            if line.strip().startswith("{"):
                obj = json.loads(line); break
        if obj is None:
            raise RuntimeError("rill bench printed no JSON")
        if "mean" in obj and isinstance(obj["mean"], dict):
            obj = obj["mean"]
        return {k: obj[k] for k in ("prompt_tps", "generation_tps", "peak_memory_gb") if k in obj}

    def close(self):
        pass


def rill_bench_available(binary):
    if not os.access(binary, os.X_OK):
        return f"{os.path.relpath(binary, ROOT)} not built"
    p = subprocess.run([binary, "bench", "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = p.stdout.lower()
    if p.returncode != 0 and ("unknown" in out or "usage: rill <" in out or "no such" in out or "subcommand" in out):
        return "`rill bench` does not exist yet"
    if p.returncode not in (0, 1, 2) or "unknown command" in out or "unknown subcommand" in out:
        return "`rill bench` does not exist yet"
    return None

# ---------------------------------------------------------------- DRAM bandwidth

BW_C = r'''
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <immintrin.h>
typedef struct { const uint8_t *p; size_t n; double sink; } job;
static void *rd(void *a) {
    job *j = a; const uint8_t *p = j->p;
#ifdef __AVX2__
    __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i < j->n; i += 128) {
        s0 = _mm256_add_epi64(s0, _mm256_load_si256((const __m256i *)(p + i)));
        s1 = _mm256_add_epi64(s1, _mm256_load_si256((const __m256i *)(p + i + 32)));
        s2 = _mm256_add_epi64(s2, _mm256_load_si256((const __m256i *)(p + i + 64)));
        s3 = _mm256_add_epi64(s3, _mm256_load_si256((const __m256i *)(p + i + 96)));
    }
    s0 = _mm256_add_epi64(_mm256_add_epi64(s0, s1), _mm256_add_epi64(s2, s3));
    int64_t o[4]; _mm256_storeu_si256((__m256i *)o, s0); j->sink = (double)(o[0] + o[1] + o[2] + o[3]);
#else
    const uint64_t *q = (const uint64_t *)p; uint64_t s = 0;
    for (size_t i = 0; i < j->n / 8; i++) s += q[i];
    j->sink = (double)s;
#endif
    return NULL;
}
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
int main(int argc, char **argv) {
    int nt = argc > 1 ? atoi(argv[1]) : 2; size_t mb = argc > 2 ? (size_t)atol(argv[2]) : 1024;
    int reps = argc > 3 ? atoi(argv[3]) : 10;
    size_t n = mb << 20; uint8_t *buf = aligned_alloc(4096, n); if (!buf) return 1;
    memset(buf, 1, n);
    size_t per = (n / nt) & ~(size_t)127; double best = 0, sink = 0;
    for (int r = 0; r < reps; r++) {
        pthread_t th[64]; job jb[64];
        double t0 = now();
        for (int i = 0; i < nt; i++) { jb[i].p = buf + i * per; jb[i].n = per; pthread_create(&th[i], 0, rd, &jb[i]); }
        for (int i = 0; i < nt; i++) { pthread_join(th[i], 0); sink += jb[i].sink; }
        double gbs = (double)per * nt / (now() - t0) / 1e9;
        if (gbs > best) best = gbs;
    }
    printf("%.2f %g\n", best, sink > 0 ? 0.0 : 1.0);
    return 0;
}
'''


def dram_read_bandwidth(threads):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc:
        d = tempfile.mkdtemp(prefix="rill-bw-")
        src, exe = os.path.join(d, "bw.c"), os.path.join(d, "bw")
        with open(src, "w") as f:
            f.write(BW_C)
        r = subprocess.run([cc, "-O2", "-march=native", "-pthread", src, "-o", exe],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode == 0:
            out = subprocess.run([exe, str(threads), "1024", "10"], stdout=subprocess.PIPE, text=True).stdout
            shutil.rmtree(d, ignore_errors=True)
            return float(out.split()[0]), f"C reader, AVX2 loads, {threads} threads, 1 GiB, best of 10"
        shutil.rmtree(d, ignore_errors=True)
    import numpy as np  # fallback: numpy's sum is one thread
    a = np.ones(1 << 27, dtype=np.int64)
    best = 0.0
    for _ in range(5):
        t0 = time.perf_counter(); a.sum(); best = max(best, a.nbytes / (time.perf_counter() - t0) / 1e9)
    return best, "numpy sum, 1 thread, 1 GiB (no C compiler)"

# ---------------------------------------------------------------- machine description


def cpu_info():
    name, flags = platform.processor() or "?", []
    try:
        out = subprocess.run(["lscpu"], stdout=subprocess.PIPE, text=True).stdout
        for line in out.splitlines():
            k, _, v = line.partition(":")
            if k.strip() == "Model name":
                name = v.strip()
            elif k.strip() == "Flags":
                flags = v.split()
    except OSError:
        pass
    keep = ["sse4_2", "avx", "avx2", "fma", "f16c", "bmi2", "avx512f", "avx512bw", "avx512vl",
            "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16"]
    return name, [f for f in keep if f in flags], os.cpu_count()


def model_bytes(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path) if f.endswith(".safetensors"))
    return os.path.getsize(path)


def versions():
    import importlib.metadata as md
    v = {}
    for p in ("llama-cpp-python", "mlx", "mlx-lm"):
        try:
            v[p] = md.version(p)
        except md.PackageNotFoundError:
            v[p] = None
    try:
        v["rill"] = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], stdout=subprocess.PIPE,
                                   text=True).stdout.strip()
    except OSError:
        pass
    return v


def fmt(x, nd=1):
    return "—" if x is None else f"{x:.{nd}f}"


def main():
    ap = argparse.ArgumentParser(description="rill vs llama.cpp vs mlx-lm, side by side")
    ap.add_argument("--cases", default=DEFAULT_CASES, help=f"comma list of {', '.join(CASES)}")
    ap.add_argument("-p", type=int, default=512)
    ap.add_argument("-g", type=int, default=128)
    ap.add_argument("-n", type=int, default=3, help="timed trials per system (after one warm-up)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rill", default=os.path.join(ROOT, "build", "bin", "rill"))
    ap.add_argument("--systems", default="rill,llamacpp,mlxlm")
    ap.add_argument("--no-setup", action="store_true", help="do not run tests/interop/setup.sh")
    ap.add_argument("--no-results", action="store_true", help="do not append to bench/RESULTS.md")
    ap.add_argument("--results", default=os.path.join(HERE, "RESULTS.md"))
    args = ap.parse_args()

    if not args.no_setup:
        subprocess.run(["sh", os.path.join(ROOT, "tests", "interop", "setup.sh")], check=True)
    systems = args.systems.split(",")
    rill_note = rill_bench_available(args.rill) if "rill" in systems else "not selected"
    if rill_note:
        print(f"note: rill skipped: {rill_note}")

    name, flags, ncpu = cpu_info()
    load0 = os.getloadavg()[0]
    if load0 > 0.5 * (ncpu or 1):
        print(f"WARNING: load average {load0:.2f} on {ncpu} CPUs: something else is running; "
              "the figures will be low (llama.cpp's OpenMP build collapses when oversubscribed)")
    bw, bw_how = dram_read_bandwidth(args.threads)
    print(f"CPU: {name} ({ncpu} CPUs), flags: {' '.join(flags)}")
    print(f"DRAM read bandwidth: {bw:.2f} GB/s ({bw_how})")

    results = []  # (case, system, model, bytes, {metric: [values]}, note)
    for case in args.cases.split(","):
        spec = CASES[case]
        runners, notes = {}, {}
        for sysname in ("rill", "llamacpp", "mlxlm"):
            if sysname not in systems or sysname not in spec:
                continue
            path = spec[sysname]
            if not os.path.exists(path):
                notes[sysname] = f"model missing: {path}"
                continue
            if sysname == "rill" and rill_note:
                notes[sysname] = rill_note
                continue
            try:
                print(f"[{case}] loading {sysname}: {path}", flush=True)
                if sysname == "rill":
                    r = Rill(args.rill, path, args.p, args.g, args.threads)
                    r.run()  # warm-up
                else:
                    code = WORKER_LLAMACPP if sysname == "llamacpp" else WORKER_MLXLM
                    r = Worker(sysname, code, path, args.p, args.g, args.threads)
                runners[sysname] = r
            except Exception as e:  # noqa: BLE001 -- report and go on with the others
                notes[sysname] = f"failed: {str(e).strip().splitlines()[-1][:200]}"
        trials = {s: [] for s in runners}
        for i in range(args.n):  # A B C A B C
            for s, r in list(runners.items()):
                try:
                    t = r.run()
                except Exception as e:  # noqa: BLE001
                    notes[s] = f"failed in trial {i + 1}: {str(e).strip()[:200]}"
                    r.close(); del runners[s]
                    continue
                trials[s].append(t)
                print(f"[{case}] trial {i + 1} {s:9s} pp{args.p} {t['prompt_tps']:8.1f} tok/s   "
                      f"tg{args.g} {t['generation_tps']:7.1f} tok/s"
                      + (f"   (tg{args.g} from empty cache {t['tg0_tps']:.1f})" if "tg0_tps" in t else ""), flush=True)
        for r in runners.values():
            r.close()
        for s in ("rill", "llamacpp", "mlxlm"):
            if s in spec and s in systems:
                results.append((case, s, spec[s], model_bytes(spec[s]) if os.path.exists(spec[s]) else None,
                                trials.get(s, []), notes.get(s)))

    def mean(ts, k):
        v = [t[k] for t in ts if k in t]
        return statistics.mean(v) if v else None

    def sd(ts, k):
        v = [t[k] for t in ts if k in t]
        return statistics.stdev(v) if len(v) > 1 else 0.0

    today = datetime.date.today().isoformat()
    lines = [f"\n## Anchors side by side, {today}\n",
             f"- Machine: {name}, {ncpu} CPUs; flags: {' '.join(flags)}",
             f"- DRAM read bandwidth: **{bw:.2f} GB/s** ({bw_how})",
             f"- Load average (1 min) at start / end: {load0:.2f} / {os.getloadavg()[0]:.2f}",
             f"- Settings: -p {args.p} (random tokens) -g {args.g}, {args.threads} threads, "
             f"{args.n} trials each after a warm-up, alternating between systems",
             f"- Versions: " + ", ".join(f"{k} {v}" for k, v in versions().items() if v),
             "- pp = prompt tok/s; tg = generation tok/s after the prompt (mlx_lm.benchmark's definition); "
             "tg0 = llama.cpp generation from an empty cache (llama-bench's tg128). Roofline % = weight bytes × tg / bandwidth.",
             "",
             "| case | system | model | MiB | pp tok/s | tg tok/s | tg0 tok/s | roofline % (tg) | note |",
             "|---|---|---|---|---|---|---|---|---|"]
    for case, s, path, nbytes, ts, note in results:
        pp, tg, tg0 = mean(ts, "prompt_tps"), mean(ts, "generation_tps"), mean(ts, "tg0_tps")
        roof = (nbytes * tg / (bw * 1e9) * 100) if (tg and nbytes and bw) else None
        ppc = f"{fmt(pp)} ± {fmt(sd(ts, 'prompt_tps'))}" if pp else "—"
        tgc = f"{fmt(tg)} ± {fmt(sd(ts, 'generation_tps'))}" if tg else "—"
        lines.append(f"| {case} | {s} | {os.path.basename(path.rstrip('/'))} | "
                     f"{fmt(nbytes / 2**20 if nbytes else None, 0)} | {ppc} | {tgc} | {fmt(tg0)} | {fmt(roof, 0)} | {note or ''} |")
    # ratios rill / anchor within each case
    ratio_lines = []
    by = {(c, s): ts for c, s, _, _, ts, _ in results}
    for case in args.cases.split(","):
        r = by.get((case, "rill"))
        if not r:
            continue
        for a in ("llamacpp", "mlxlm"):
            ts = by.get((case, a))
            if not ts:
                continue
            ratio_lines.append(f"| {case} | rill / {a} | {mean(r, 'prompt_tps') / mean(ts, 'prompt_tps'):.2f}× | "
                               f"{mean(r, 'generation_tps') / mean(ts, 'generation_tps'):.2f}× |")
    if ratio_lines:
        lines += ["", "| case | ratio | pp | tg |", "|---|---|---|---|"] + ratio_lines
    else:
        lines += ["", "Ratios rill/anchor: not available (rill not measured: " + (rill_note or "see notes") + ")."]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_results:
        new = not os.path.exists(args.results)
        with open(args.results, "a", encoding="utf-8") as f:
            if new:
                f.write("# Benchmark results\n\nAppended by the scripts in bench/; newest last.\n")
            f.write(text)
        print(f"appended to {os.path.relpath(args.results, os.getcwd())}")


if __name__ == "__main__":
    sys.exit(main())
