// bench.c: `rill bench`: prompt and generation speed the way llama-bench and mlx_lm.benchmark
// measure them. Random prompt tokens, EOS ignored (generation always runs -g tokens, greedy), one
// warm-up trial, then -n trials; each trial's prompt tok/s, generation tok/s and peak memory, then
// the mean. --profile wraps the backend's op table with timers and prints where the time went,
// per op kind (and matmul per weight shape), separately for prefill and decode.
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/progress.h"
#include "cli.h"
#include "generate/generate.h"
#include "rill.h"

int cmd_bench(int argc, char **argv);

static const char *USAGE = "bench --model PATH [-p 512] [-g 128] [-b 1] [-n 5] [--threads N] [--kv-bits 4|8]\n"
                           "       [--kv-group-size G] [--quantized-kv-start N] [--max-kv-size N]\n"
                           "       [--prefill-step-size N] [--seed S] [--device cpu|cuda] [--json] [--profile]";

// The cache of a trial: mlx-lm's make_prompt_cache (max_kv_size > 0: rotating layers) and KV
// quantization from quantized_kv_start (0 here: decode runs on the quantized cache throughout).
typedef struct {
    int kv_bits, kv_group_size;
    int64_t quantized_kv_start, max_kv_size;
} bench_cache;

// ---- the op profiler: a copy of the backend's table whose entries time the real ones ----

enum { P_EMBED, P_MATMUL, P_RMSNORM, P_ROPE, P_ATTN, P_ACT, P_ADD, P_SCALE, P_SOFTCAP, P_MOE, P_COPY, P_KINDS };
static const char *const kind_names[P_KINDS] = {"embed", "matmul", "rmsnorm", "rope", "attention", "act_mul",
                                                "add",   "scale",  "softcap", "moe",  "copy"};
#define MAX_SHAPES 32

typedef struct {
    double sec[P_KINDS];
    long calls[P_KINDS];
    struct {
        int64_t rows, cols;
        double sec;
        long calls;
    } mm[MAX_SHAPES]; // matmul per weight shape [n_out][n_in]
    int n_mm;
} phase_profile;

static const rill_backend_ops *real_ops;
static phase_profile prof[2]; // [0] prefill, [1] decode
static int cur_phase;         // which one the ops below count into (set by the host between phases)

// The CPU backend runs an op to completion inside the call (on its compute thread), so the wall
// time around the call is the op's time. A backend whose ops only enqueue would show launch costs.
#define TIMED(kind, call)                                                                                              \
    do {                                                                                                               \
        double t0_ = rill_now();                                                                                       \
        call;                                                                                                          \
        prof[cur_phase].sec[kind] += rill_now() - t0_;                                                                 \
        prof[cur_phase].calls[kind]++;                                                                                 \
    } while (0)

static void p_embed(rill_stream *s, rill_tensor *o, const rill_tensor *ids, const rill_weight *w, float sc) {
    TIMED(P_EMBED, real_ops->embed(s, o, ids, w, sc));
}
static void p_matmul(rill_stream *s, rill_tensor *o, const rill_tensor *x, const rill_weight *w) {
    double t0 = rill_now();
    real_ops->matmul(s, o, x, w);
    double dt = rill_now() - t0;
    phase_profile *p = &prof[cur_phase];
    p->sec[P_MATMUL] += dt;
    p->calls[P_MATMUL]++;
    int i = 0;
    while (i < p->n_mm && (p->mm[i].rows != w->rows || p->mm[i].cols != w->cols))
        i++;
    if (i == p->n_mm && p->n_mm < MAX_SHAPES) {
        p->mm[i].rows = w->rows, p->mm[i].cols = w->cols;
        p->n_mm++;
    }
    if (i < MAX_SHAPES) p->mm[i].sec += dt, p->mm[i].calls++;
}
static void p_rmsnorm(rill_stream *s, rill_tensor *o, const rill_tensor *x, const float *w, float eps, bool one) {
    TIMED(P_RMSNORM, real_ops->rmsnorm(s, o, x, w, eps, one));
}
static void p_rope(rill_stream *s, rill_tensor *x, const rill_tensor *pos, const rill_rope_params *rp) {
    TIMED(P_ROPE, real_ops->rope(s, x, pos, rp));
}
static void p_attention(rill_stream *s, rill_tensor *o, const rill_tensor *q, const rill_tensor *k,
                        const rill_tensor *v, const rill_attn_params *ap) {
    TIMED(P_ATTN, real_ops->attention(s, o, q, k, v, ap));
}
static void p_act_mul(rill_stream *s, rill_tensor *o, const rill_tensor *g, const rill_tensor *u, rill_act a) {
    TIMED(P_ACT, real_ops->act_mul(s, o, g, u, a));
}
static void p_add(rill_stream *s, rill_tensor *o, const rill_tensor *a, const rill_tensor *b) {
    TIMED(P_ADD, real_ops->add(s, o, a, b));
}
static void p_scale(rill_stream *s, rill_tensor *o, const rill_tensor *x, float sc) {
    TIMED(P_SCALE, real_ops->scale(s, o, x, sc));
}
static void p_softcap(rill_stream *s, rill_tensor *o, const rill_tensor *x, float cap) {
    TIMED(P_SOFTCAP, real_ops->softcap(s, o, x, cap));
}
static void p_copy(rill_stream *s, rill_tensor *o, const rill_tensor *x) { TIMED(P_COPY, real_ops->copy(s, o, x)); }
static void p_moe_route(rill_stream *s, rill_tensor *idx, rill_tensor *w, const rill_tensor *l, const float *b,
                        const rill_moe_params *mp) {
    TIMED(P_MOE, real_ops->moe_route(s, idx, w, l, b, mp));
}
static void p_moe_matmul(rill_stream *s, rill_tensor *o, const rill_tensor *x, const rill_weight *e,
                         const rill_tensor *idx) {
    TIMED(P_MOE, real_ops->moe_matmul(s, o, x, e, idx));
}
static void p_moe_combine(rill_stream *s, rill_tensor *o, const rill_tensor *y, const rill_tensor *w) {
    TIMED(P_MOE, real_ops->moe_combine(s, o, y, w));
}

static rill_backend_ops profiled;

static void profile_install(rill_backend *be) {
    real_ops = be->ops;
    profiled = *be->ops;
    profiled.embed = p_embed;
    profiled.matmul = p_matmul;
    profiled.rmsnorm = p_rmsnorm;
    profiled.rope = p_rope;
    profiled.attention = p_attention;
    profiled.act_mul = p_act_mul;
    profiled.add = p_add;
    profiled.scale = p_scale;
    profiled.softcap = p_softcap;
    profiled.copy = p_copy;
    if (real_ops->moe_route) profiled.moe_route = p_moe_route;
    if (real_ops->moe_matmul) profiled.moe_matmul = p_moe_matmul;
    if (real_ops->moe_combine) profiled.moe_combine = p_moe_combine;
    be->ops = &profiled;
}

static void profile_print(FILE *out, int phase, const char *name, double wall, long tokens) {
    const phase_profile *p = &prof[phase];
    double total = 0;
    for (int k = 0; k < P_KINDS; k++)
        total += p->sec[k];
    fprintf(out, "%s: %.3f s wall over %ld tokens, %.3f s in ops (%.1f%%)\n", name, wall, tokens, total,
            wall > 0 ? 100 * total / wall : 0);
    for (int k = 0; k < P_KINDS; k++)
        if (p->calls[k])
            fprintf(out, "  %-10s %8.2f ms/token %5.1f%%  %7ld calls  %7.1f us/call\n", kind_names[k],
                    1e3 * p->sec[k] / tokens, wall > 0 ? 100 * p->sec[k] / wall : 0, p->calls[k],
                    1e6 * p->sec[k] / p->calls[k]);
    for (int i = 0; i < p->n_mm; i++)
        fprintf(out, "    matmul [%5lld x %5lld] %8.2f ms/token %5.1f%%  %7.1f us/call\n", (long long)p->mm[i].rows,
                (long long)p->mm[i].cols, 1e3 * p->mm[i].sec / tokens, wall > 0 ? 100 * p->mm[i].sec / wall : 0,
                1e6 * p->mm[i].sec / p->mm[i].calls);
}

// ---- the trials ----

typedef struct {
    double prompt_tps, generation_tps, peak_gb;
    double prompt_s, gen_s;
} trial;

static uint64_t rng_state;
static uint32_t rng(void) { // xorshift64*
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1DULL) >> 32);
}

static rill_status run_trial(rill_model *m, rill_stream *s, int64_t n_prompt, int n_gen, int step,
                             const bench_cache *bc, trial *out) {
    int32_t *prompt = rill_malloc((size_t)n_prompt * sizeof(int32_t));
    if (!prompt) return RILL_ENOMEM;
    for (int64_t i = 0; i < n_prompt; i++)
        prompt[i] = (int32_t)(rng() % (uint32_t)m->cfg.vocab_size);
    rill_cache *cache = NULL;
    generator *g = NULL;
    rill_memory_reset_peak();
    rill_status st = model_make_prompt_cache(m, bc->max_kv_size, &cache);
    generate_params p = generate_defaults();
    p.kv_bits = bc->kv_bits;
    p.kv_group_size = bc->kv_group_size;
    p.quantized_kv_start = bc->quantized_kv_start;
    p.max_tokens = n_gen;
    p.sampling.temp = 0; // greedy; EOS is never checked here, so every trial runs n_gen tokens
    if (step > 0) p.prefill_step_size = step;
    cur_phase = 0;
    if (st == RILL_OK) st = generate_start(m, cache, s, prompt, n_prompt, &p, &g);
    cur_phase = 1;
    int got = 0;
    while (st == RILL_OK) {
        int32_t tok;
        const float *lp;
        bool done = false;
        if ((st = generate_next(g, &tok, &lp, &done)) != RILL_OK || done) break;
        got++;
    }
    if (st == RILL_OK) {
        out->prompt_s = generate_prompt_seconds(g);
        out->gen_s = generate_decode_seconds(g);
        out->prompt_tps = out->prompt_s > 0 ? (double)n_prompt / out->prompt_s : 0;
        // the decode clock starts at the first decode submission: got tokens in gen_s
        out->generation_tps = out->gen_s > 0 ? got / out->gen_s : 0;
    }
    generate_free(g);
    out->peak_gb = (double)rill_memory_peak() / 1e9;
    cache_free(cache);
    rill_free(prompt);
    decoder_release_scratch(m);
    return st;
}

static bool int_arg(const char *v, long lo, long hi, long *out) {
    if (!v) return false;
    char *end;
    long x = strtol(v, &end, 10);
    if (*end || end == v || x < lo || x > hi) return false;
    *out = x;
    return true;
}

int cmd_bench(int argc, char **argv) {
    const char *model_path = NULL, *device = "cpu";
    long n_prompt = 512, n_gen = 128, batch = 1, trials = 5, threads = 0, kv_bits = 0, step = 0, seed = 0;
    long kv_group = 64, kv_start = 0, max_kv = 0;
    bool json = false, profile = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long *target = NULL, lo = 0, hi = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: rill %s\n", USAGE);
            return CLI_OK;
        }
        if (!strcmp(a, "--model") || !strcmp(a, "-m")) {
            if (!v) return cli_fail_usage(USAGE, "%s needs a value", a);
            model_path = v;
            i++;
            continue;
        } else if (!strcmp(a, "--device")) {
            if (!v || (strcmp(v, "cpu") && strcmp(v, "cuda"))) return cli_fail_usage(USAGE, "--device: cpu or cuda");
            device = v;
            i++;
            continue;
        } else if (!strcmp(a, "--json")) {
            json = true;
            continue;
        } else if (!strcmp(a, "--profile")) {
            profile = true;
            continue;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt-tokens"))
            target = &n_prompt, lo = 1, hi = 1 << 20;
        else if (!strcmp(a, "-g") || !strcmp(a, "--generation-tokens"))
            target = &n_gen, lo = 1, hi = 1 << 20;
        else if (!strcmp(a, "-b") || !strcmp(a, "--batch-size"))
            target = &batch, lo = 1, hi = 1 << 12;
        else if (!strcmp(a, "-n") || !strcmp(a, "--num-trials"))
            target = &trials, lo = 1, hi = 1000;
        else if (!strcmp(a, "--threads") || !strcmp(a, "-t"))
            target = &threads, lo = 0, hi = 256;
        else if (!strcmp(a, "--kv-bits"))
            target = &kv_bits, lo = 0, hi = 16;
        else if (!strcmp(a, "--kv-group-size"))
            target = &kv_group, lo = 32, hi = 128;
        else if (!strcmp(a, "--quantized-kv-start"))
            target = &kv_start, lo = 0, hi = INT32_MAX;
        else if (!strcmp(a, "--max-kv-size"))
            target = &max_kv, lo = 1, hi = INT32_MAX;
        else if (!strcmp(a, "--prefill-step-size"))
            target = &step, lo = 1, hi = 1 << 20;
        else if (!strcmp(a, "--seed"))
            target = &seed, lo = 0, hi = 1L << 40;
        else
            return cli_fail_usage(USAGE, "unknown option '%s'", a);
        if (!int_arg(v, lo, hi, target)) return cli_fail_usage(USAGE, "%s needs an integer in [%ld, %ld]", a, lo, hi);
        i++;
    }
    if (!model_path) return cli_fail_usage(USAGE, "--model is required");
    if (batch != 1) return cli_fail_usage(USAGE, "-b %ld: only batch 1 is measured so far", batch);
    if (kv_bits == 16) kv_bits = 0; // 16: the plain cache, as llama-bench's f16
    if (kv_bits != 0 && kv_bits != 4 && kv_bits != 8)
        return cli_fail_usage(USAGE, "--kv-bits %ld: 4 or 8 (or 16 for the plain cache)", kv_bits);
    if (kv_group != 32 && kv_group != 64 && kv_group != 128)
        return cli_fail_usage(USAGE, "--kv-group-size %ld: 32, 64 or 128", kv_group);
    bench_cache bc = {(int)kv_bits, (int)kv_group, kv_start, max_kv};
    rng_state = 0x9E3779B97F4A7C15ULL ^ (uint64_t)seed;

    rill_backend *be = NULL;
    rill_stream *s = NULL;
    rill_model *m = NULL;
    int rc = CLI_OK;
    if (profile && strcmp(device, "cpu"))
        return cli_fail_usage(USAGE, "--profile times ops as they run: the CPU backend only (GPU ops only enqueue)");
    rill_status st = backend_open(device, (int)threads, &be);
    if (st == RILL_OK) st = be->ops->stream_create(be, &s);
    if (st == RILL_OK) st = model_load(model_path, be, &m);
    if (st != RILL_OK) {
        rc = cli_fail_input();
        goto out;
    }
    if (profile) profile_install(be);

    trial warm, *t = rill_calloc((size_t)trials, sizeof *t);
    if (!t) {
        rc = cli_fail_input();
        goto out;
    }
    if ((st = run_trial(m, s, n_prompt, (int)n_gen, (int)step, &bc, &warm)) != RILL_OK) {
        rill_free(t);
        rc = cli_fail_input();
        goto out;
    }
    memset(prof, 0, sizeof prof); // the warm-up is not profiled
    if (!json)
        printf("model %s, device %s, threads %ld (0: one per core), prompt %ld, generation %ld, %ld trials after one "
               "warm-up\n",
               model_path, device, threads, n_prompt, n_gen, trials);
    trial mean = {0};
    for (long i = 0; i < trials; i++) {
        if ((st = run_trial(m, s, n_prompt, (int)n_gen, (int)step, &bc, &t[i])) != RILL_OK) {
            rill_free(t);
            rc = cli_fail_input();
            goto out;
        }
        if (!json)
            printf("trial %ld: prompt_tps=%.2f, generation_tps=%.2f, peak_memory=%.3f GB\n", i + 1, t[i].prompt_tps,
                   t[i].generation_tps, t[i].peak_gb);
        mean.prompt_tps += t[i].prompt_tps / (double)trials;
        mean.generation_tps += t[i].generation_tps / (double)trials;
        mean.prompt_s += t[i].prompt_s;
        mean.gen_s += t[i].gen_s;
        if (t[i].peak_gb > mean.peak_gb) mean.peak_gb = t[i].peak_gb;
    }
    if (json) {
        json_t *o = json_pack("{s:s, s:s, s:i, s:i, s:i, s:i, s:f, s:f, s:f}", "model", model_path, "device", device,
                              "prompt_tokens", (json_int_t)n_prompt, "generation_tokens", (json_int_t)n_gen, "trials",
                              (json_int_t)trials, "threads", (json_int_t)threads, "prompt_tps", mean.prompt_tps,
                              "generation_tps", mean.generation_tps, "peak_memory_gb", mean.peak_gb);
        json_t *arr = json_array();
        for (long i = 0; i < trials; i++)
            json_array_append_new(arr, json_pack("{s:f, s:f, s:f}", "prompt_tps", t[i].prompt_tps, "generation_tps",
                                                 t[i].generation_tps, "peak_memory_gb", t[i].peak_gb));
        json_object_set_new(o, "trials_detail", arr);
        char *txt = json_dumps(o, JSON_COMPACT);
        printf("%s\n", txt);
        free(txt);
        json_decref(o);
    } else
        printf("Averages: prompt_tps=%.2f, generation_tps=%.2f, peak_memory=%.3f GB\n", mean.prompt_tps,
               mean.generation_tps, mean.peak_gb);
    if (profile) {
        FILE *po = json ? stderr : stdout;
        profile_print(po, 0, "prefill", mean.prompt_s, n_prompt * trials);
        profile_print(po, 1, "decode", mean.gen_s, n_gen * trials);
    }
    rill_free(t);
out:
    if (profile && be) be->ops = real_ops;
    model_free(m);
    if (s) be->ops->stream_destroy(s);
    backend_close(be);
    return rc;
}
