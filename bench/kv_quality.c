// kv_quality.c: kv-quality, how much a quantized KV cache changes greedy generation (issue 5's
// acceptance: 256 greedy tokens with 8-bit KV equal those of the plain cache on >= 8 of 10 prompts
// in an 8k context; the mean KL divergence of the logprobs at 8 and 4 bits).
//
// For each text: its first `context - tokens` tokens (the model's tokenizer, no chat template) are
// prefilled into a plain cache (the backend's activation dtype: f32 on the CPU, bf16/f16 on CUDA)
// and into 8- and 4-bit quantized ones, the way `rill generate --kv-bits B --quantized-kv-start 0`
// does it (generate_start: chunks of 2048, every layer quantized after each chunk). Then `tokens`
// decode steps are teacher-forced with the plain cache's greedy tokens. At each step: KL(plain ||
// quantized) over the whole vocabulary, and whether the two argmaxes agree. A quantized cache's own
// greedy run equals the plain one for all steps exactly when the argmaxes agree at every forced
// step (both runs are the same up to their first disagreement), so the first disagreement is where
// its greedy text departs. EOS is not special: the steps go on through it (--ignore-eos).
//
// The runs go one after another (plain first, its logits kept on the host), so each cache's memory
// is measured alone; the model is deterministic, so this equals stepping the three side by side.
// --self-check adds a second plain run compared like the others: its KL must be 0 and no step may
// depart.
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/progress.h"
#include "cache/cache.h"
#include "generate/generate.h"
#include "model/model.h"
#include "rill.h"
#include "tokenizer/tokenizer.h"

enum { EXIT_OK = 0, EXIT_BAD_INPUT = 1, EXIT_BAD_USAGE = 2 };

static const char *USAGE =
    "usage: kv-quality --model PATH [--device cpu|cuda] [--threads N] [--context 8000] [--tokens 256]\n"
    "                  [--kv-group-size 64] [--quantized-kv-start 5000] [--json] [--self-check]\n"
    "                  FILE[+FILE...] ...\n"
    "Each FILE is a text prompt; a+b joins files a and b with a newline between them.";

static int fail_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail_usage(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("kv-quality: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs(" (kv-quality --help prints the usage)\n", stderr);
    return EXIT_BAD_USAGE;
}

static int fail_input(void) {
    fprintf(stderr, "kv-quality: %s\n", rill_last_error());
    return EXIT_BAD_INPUT;
}

static bool parse_long(const char *s, long lo, long hi, long *out) {
    if (!s) return false;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

// ---- the prompts ----

static rill_status read_file(const char *path, char **text, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return rill_fail(RILL_EIO, "%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = rill_malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0;) {
        n += got;
        if (n + 1 == cap) {
            char *b = rill_realloc(buf, cap *= 2);
            if (!b) rill_free(buf);
            buf = b;
        }
    }
    bool bad = ferror(f);
    fclose(f);
    if (!buf) return RILL_ENOMEM;
    if (bad) {
        rill_free(buf);
        return rill_fail(RILL_EIO, "%s: read failed", path);
    }
    buf[n] = 0;
    *text = buf;
    *len = n;
    return RILL_OK;
}

// The text of a prompt spec: a file, or (when no file has that name) files joined by '+', each
// followed by a newline when it does not end with one.
static rill_status read_spec(const char *spec, char **text, size_t *len) {
    FILE *probe = fopen(spec, "rb");
    if (probe || !strchr(spec, '+')) {
        if (probe) fclose(probe);
        return read_file(spec, text, len);
    }
    size_t n = 0;
    char *out = NULL, *names = strdup(spec);
    if (!names) return RILL_ENOMEM;
    rill_status st = RILL_OK;
    for (char *save = NULL, *p = strtok_r(names, "+", &save); p && st == RILL_OK; p = strtok_r(NULL, "+", &save)) {
        char *part;
        size_t k;
        if ((st = read_file(p, &part, &k)) != RILL_OK) break;
        char *o = rill_realloc(out, n + k + 2);
        if (!o) {
            rill_free(part);
            st = RILL_ENOMEM;
            break;
        }
        out = o;
        if (n && out[n - 1] != '\n') out[n++] = '\n';
        memcpy(out + n, part, k);
        n += k;
        out[n] = 0;
        rill_free(part);
    }
    free(names);
    if (st == RILL_OK && !out) st = rill_fail(RILL_EINVAL, "'%s' names no file", spec);
    if (st != RILL_OK) {
        rill_free(out);
        return st;
    }
    *text = out;
    *len = n;
    return RILL_OK;
}

// ---- one run over a prompt ----

// What is compared with the plain cache: 8 bits, 4 bits, and with --self-check the plain cache again.
enum { MAX_KINDS = 3 };

typedef struct {
    int bits;          // 0: plain (the backend's activation dtype)
    const char *label; // "plain", "8-bit", "4-bit", "plain again"
} cache_kind;

typedef struct {
    double prefill_s, decode_s;
    size_t kv_bytes;   // cache_nbytes after the last step
    size_t peak_bytes; // accounted memory the run added at its highest (cache, scratch, quantization)
} run_stats;

// The plain run's record: what each forced step fed, and what the plain cache's logits said.
typedef struct {
    int steps, vocab;
    int32_t *tokens; // [steps] the plain greedy token of each step (the next step's input)
    float *logits;   // [steps][vocab] the plain logits
    double *lse;     // [steps] logsumexp of each row of logits
    float *gap;      // [steps] the plain top-1 minus top-2 logit
} plain_record;

// A quantized (or repeated plain) run compared with the plain record, step by step.
typedef struct {
    int depart;               // first step whose argmax differs from the plain token; -1: none
    int32_t plain_tok, q_tok; // at depart
    float gap;                // the plain top-1 minus top-2 logit at depart
    int agree;                // steps whose argmax equals the plain token
    double kl_sum, kl_max;    // KL(plain || this) summed over the steps, and the largest
    run_stats rs;
} kind_result;

typedef struct {
    rill_model *m;
    rill_stream *s;
    int group_size;
    int64_t quantized_kv_start; // mlx-lm's: the cache is quantized once it holds this many positions
    int vocab;
    int32_t *ids_dev;  // [1] device: the input token of a step
    float *logits_dev; // [vocab] device f32: the logits converted for the download (activations not f32)
    float *logits;     // [vocab] host f32
} runner;

// Called with each step's logits [vocab] (host f32); returns the next step's input token.
typedef rill_status (*step_fn)(void *ctx, int step, const float *logits, int32_t *next);

// The index of the largest logit (ties: the lowest id, as the device sampler), and the runner-up's value.
static int32_t argmax2(const float *x, int n, float *second) {
    int32_t best = 0;
    float b1 = -INFINITY, b2 = -INFINITY;
    for (int i = 0; i < n; i++) {
        if (x[i] > b1) {
            b2 = b1;
            b1 = x[i];
            best = i;
        } else if (x[i] > b2)
            b2 = x[i];
    }
    if (second) *second = b2;
    return best;
}

static double logsumexp(const float *x, int n) {
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < n; i++)
        if (x[i] > mx) mx = x[i];
    for (int i = 0; i < n; i++)
        sum += exp((double)x[i] - mx);
    return mx + log(sum);
}

// One decode step on cache c: forward tok, quantize as generate's step does, logits to r->logits.
static rill_status forward_step(runner *r, rill_cache *c, int bits, int32_t tok) {
    rill_model *m = r->m;
    const rill_backend_ops *op = m->be->ops;
    op->upload(r->s, r->ids_dev, &tok, sizeof tok);
    rill_tensor ids = rill_tensor_2d(DTYPE_I32, 1, 1, r->ids_dev), logits;
    rill_status st = decoder_forward(m, c, r->s, &ids, false, &logits);
    if (st == RILL_OK) st = cache_maybe_quantize(c, r->s, r->quantized_kv_start, r->group_size, bits);
    if (st == RILL_OK && logits.cols != r->vocab)
        st = rill_fail(RILL_EINVAL, "the model's logits have %lld columns, not the vocabulary's %d",
                       (long long)logits.cols, r->vocab);
    if (st == RILL_OK) {
        if (logits.dtype != DTYPE_F32) { // GPU activations: convert on the device, then copy
            rill_tensor l32 = rill_tensor_2d(DTYPE_F32, 1, r->vocab, r->logits_dev);
            op->copy(r->s, &l32, &logits);
            logits = l32;
        }
        op->download(r->s, r->logits, logits.data, (size_t)r->vocab * sizeof(float));
    }
    op->sync(r->s);
    if (st == RILL_OK && op->stream_status) st = op->stream_status(r->s);
    return st;
}

// Prefills prompt[0 .. n-1) into a fresh cache of `bits` (generate_start: chunks of 2048,
// quantized from position 0), then runs `steps` decode steps from prompt[n-1], each fed the token
// that fn returns.
static rill_status run_cache(runner *r, const int32_t *prompt, int64_t n, int bits, int steps, step_fn fn, void *ctx,
                             run_stats *rs) {
    rill_model *m = r->m;
    memset(rs, 0, sizeof *rs);
    size_t base = rill_memory_current();
    rill_memory_reset_peak();
    rill_cache *cache = NULL;
    generator *g = NULL;
    rill_status st = model_make_prompt_cache(m, 0, &cache);
    generate_params p = generate_defaults();
    p.max_tokens = 0;       // the prefill alone: the decode steps below are forced
    p.host_sampling = true; // no device loop (it would bind the cache)
    p.kv_bits = bits;       // 0: the plain cache
    p.kv_group_size = r->group_size;
    p.quantized_kv_start = r->quantized_kv_start; // checked after each prefill chunk, as generate does
    if (st == RILL_OK) st = generate_start(m, cache, r->s, prompt, n, &p, &g);
    if (st == RILL_OK) rs->prefill_s = generate_prompt_seconds(g);
    generate_free(g); // the cache keeps prompt[0 .. n-1)
    double t0 = rill_now();
    int32_t tok = prompt[n - 1];
    for (int i = 0; i < steps && st == RILL_OK; i++) {
        if ((st = forward_step(r, cache, bits, tok)) != RILL_OK) {
            rill_error_prefix("step %d", i);
            break;
        }
        for (int j = 0; j < r->vocab; j++)
            if (!isfinite(r->logits[j])) {
                st = rill_fail(RILL_ERANGE, "step %d: logit %d is %g", i, j, (double)r->logits[j]);
                break;
            }
        if (st == RILL_OK) st = fn(ctx, i, r->logits, &tok);
    }
    rs->decode_s = rill_now() - t0;
    if (cache) rs->kv_bytes = cache_nbytes(cache);
    size_t peak = rill_memory_peak();
    rs->peak_bytes = peak > base ? peak - base : 0;
    cache_free(cache);
    decoder_release_scratch(m);
    return st;
}

static rill_status plain_step(void *ctx, int step, const float *logits, int32_t *next) {
    plain_record *pr = ctx;
    float *row = pr->logits + (size_t)step * pr->vocab;
    memcpy(row, logits, (size_t)pr->vocab * sizeof(float));
    float second;
    int32_t t = argmax2(row, pr->vocab, &second);
    pr->tokens[step] = t;
    pr->gap[step] = row[t] - second;
    pr->lse[step] = logsumexp(row, pr->vocab);
    *next = t;
    return RILL_OK;
}

typedef struct {
    const plain_record *pr;
    kind_result *res;
} compare_ctx;

static rill_status compare_step(void *ctx, int step, const float *logits, int32_t *next) {
    compare_ctx *c = ctx;
    const plain_record *pr = c->pr;
    kind_result *res = c->res;
    int vocab = pr->vocab;
    const float *x = pr->logits + (size_t)step * vocab;
    double lse_p = pr->lse[step], lse_q = logsumexp(logits, vocab), kl = 0;
    for (int j = 0; j < vocab; j++) { // sum p (log p - log q)
        double lp = (double)x[j] - lse_p, lq = (double)logits[j] - lse_q;
        kl += exp(lp) * (lp - lq);
    }
    res->kl_sum += kl;
    if (kl > res->kl_max) res->kl_max = kl;
    int32_t q = argmax2(logits, vocab, NULL), t = pr->tokens[step];
    if (q == t)
        res->agree++;
    else if (res->depart < 0) {
        res->depart = step;
        res->plain_tok = t;
        res->q_tok = q;
        res->gap = pr->gap[step];
    }
    *next = t; // teacher-forced: the plain cache's greedy token
    return RILL_OK;
}

// ---- the report ----

typedef struct {
    const char *spec;
    int64_t text_tokens; // tokens in the whole text
    run_stats plain;
    kind_result kinds[MAX_KINDS];
    double seconds;
} prompt_result;

static double mb(size_t b) { return (double)b / 1e6; }

static void print_table(const prompt_result *pr, int n_prompts, const cache_kind *kinds, int n_kinds, int steps) {
    printf("\n%-3s", "#");
    for (int k = 0; k < n_kinds; k++)
        printf(" | %-11s %7s %6s %8s %9s %9s", kinds[k].label, "agree", "depart", "gap", "mean KL", "max KL");
    printf(" | %7s\n", "seconds");
    for (int i = 0; i < n_prompts; i++) {
        printf("%-3d", i + 1);
        for (int k = 0; k < n_kinds; k++) {
            const kind_result *r = &pr[i].kinds[k];
            char dep[16] = "-", gap[16] = "-";
            if (r->depart >= 0) {
                snprintf(dep, sizeof dep, "%d", r->depart);
                snprintf(gap, sizeof gap, "%.4f", (double)r->gap);
            }
            printf(" | %-11s %3d/%-3d %6s %8s %9.2e %9.2e", r->depart < 0 ? "all equal" : "departs", r->agree, steps,
                   dep, gap, r->kl_sum / steps, r->kl_max);
        }
        printf(" | %7.1f\n", pr[i].seconds);
    }
}

typedef struct {
    int all_equal;      // prompts whose every step agrees
    double kl_mean;     // over all prompts and steps
    double kl_max;      // over all prompts and steps
    size_t kv_bytes;    // the largest over the prompts
    size_t peak_bytes;  // the largest over the prompts
    double prefill_tps; // prompt tokens over prefill seconds, all prompts
    double decode_tps;  // forced steps over decode seconds, all prompts
} kind_summary;

static kind_summary summarize(const prompt_result *pr, int n_prompts, int k, int64_t prompt_len, int steps) {
    kind_summary s = {0};
    double pre = 0, dec = 0;
    for (int i = 0; i < n_prompts; i++) {
        const run_stats *rs = k < 0 ? &pr[i].plain : &pr[i].kinds[k].rs;
        if (rs->kv_bytes > s.kv_bytes) s.kv_bytes = rs->kv_bytes;
        if (rs->peak_bytes > s.peak_bytes) s.peak_bytes = rs->peak_bytes;
        pre += rs->prefill_s;
        dec += rs->decode_s;
        if (k < 0) continue;
        const kind_result *r = &pr[i].kinds[k];
        if (r->depart < 0) s.all_equal++;
        s.kl_mean += r->kl_sum / ((double)n_prompts * steps);
        if (r->kl_max > s.kl_max) s.kl_max = r->kl_max;
    }
    s.prefill_tps = pre > 0 ? (double)(prompt_len - 1) * n_prompts / pre : 0;
    s.decode_tps = dec > 0 ? (double)steps * n_prompts / dec : 0;
    return s;
}

static json_t *run_json(const run_stats *rs) {
    return json_pack("{s:f,s:f,s:I,s:I}", "prefill_seconds", rs->prefill_s, "decode_seconds", rs->decode_s, "kv_bytes",
                     (json_int_t)rs->kv_bytes, "peak_bytes", (json_int_t)rs->peak_bytes);
}

static json_t *summary_json(const kind_summary *s, bool plain) {
    json_t *o = json_pack("{s:I,s:I,s:f,s:f}", "kv_bytes", (json_int_t)s->kv_bytes, "peak_bytes",
                          (json_int_t)s->peak_bytes, "prefill_tps", s->prefill_tps, "decode_tps", s->decode_tps);
    if (!plain) {
        json_object_set_new(o, "prompts_all_equal", json_integer(s->all_equal));
        json_object_set_new(o, "mean_kl", json_real(s->kl_mean));
        json_object_set_new(o, "max_kl", json_real(s->kl_max));
    }
    return o;
}

// ---- main ----

typedef struct {
    const char *model_path, *device;
    long threads, context, steps, group, kv_start;
    bool json, self_check, help;
    const char **specs; // [n_specs] the prompt specs (argv's positional arguments)
    int n_specs;
} options;

// Fills o from argv; EXIT_OK, or EXIT_BAD_USAGE with the message printed.
static int parse_args(int argc, char **argv, options *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long *target = NULL, lo = 0, hi = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            o->help = true;
            return EXIT_OK;
        } else if (!strcmp(a, "--model") || !strcmp(a, "--device")) {
            if (!v) return fail_usage("%s needs a value", a);
            if (!strcmp(a, "--model"))
                o->model_path = v;
            else if (strcmp(v, "cpu") && strcmp(v, "cuda"))
                return fail_usage("--device: '%s' is not cpu or cuda", v);
            else
                o->device = v;
            i++;
            continue;
        } else if (!strcmp(a, "--json")) {
            o->json = true;
            continue;
        } else if (!strcmp(a, "--self-check")) {
            o->self_check = true;
            continue;
        } else if (!strcmp(a, "--threads"))
            target = &o->threads, lo = 0, hi = 256;
        else if (!strcmp(a, "--context"))
            target = &o->context, lo = 2, hi = 1 << 24;
        else if (!strcmp(a, "--tokens"))
            target = &o->steps, lo = 1, hi = 1 << 20;
        else if (!strcmp(a, "--kv-group-size"))
            target = &o->group, lo = 32, hi = 128;
        else if (!strcmp(a, "--quantized-kv-start"))
            target = &o->kv_start, lo = 0, hi = 1 << 24;
        else if (a[0] == '-' && a[1])
            return fail_usage("unknown option '%s'", a);
        else {
            o->specs[o->n_specs++] = a;
            continue;
        }
        if (!parse_long(v, lo, hi, target)) return fail_usage("%s needs an integer in [%ld, %ld]", a, lo, hi);
        i++;
    }
    if (!o->model_path) return fail_usage("--model is required");
    if (o->n_specs == 0) return fail_usage("give at least one text file");
    if (o->group != 32 && o->group != 64 && o->group != 128)
        return fail_usage("--kv-group-size %ld: 32, 64 or 128", o->group);
    if (o->steps >= o->context)
        return fail_usage("--tokens %ld leaves no prompt in --context %ld (the prompt is context - tokens)", o->steps,
                          o->context);
    return EXIT_OK;
}

static const char *kind_key(const cache_kind *k) { return k->bits == 8 ? "kv8" : k->bits == 4 ? "kv4" : "plain_again"; }

int main(int argc, char **argv) {
    options opt = {.device = "cpu", .context = 8000, .steps = 256, .group = 64, .kv_start = 5000};
    opt.specs = calloc((size_t)argc, sizeof *opt.specs);
    if (!opt.specs) return fail_usage("out of memory");
    int rc = parse_args(argc, argv, &opt);
    if (rc != EXIT_OK || opt.help) {
        if (opt.help) printf("%s\n", USAGE);
        free(opt.specs);
        return rc;
    }
    const char *model_path = opt.model_path, *device = opt.device, **specs = opt.specs;
    long context = opt.context, steps = opt.steps, group = opt.group;
    bool json = opt.json, self_check = opt.self_check;
    int64_t prompt_len = context - steps;

    cache_kind kinds[MAX_KINDS] = {{8, "8-bit"}, {4, "4-bit"}, {0, "plain again"}};
    int n_kinds = self_check ? 3 : 2;
    int n_prompts = opt.n_specs;
    double t_start = rill_now();
    tokenizer *tok = NULL;
    rill_backend *be = NULL;
    rill_stream *s = NULL;
    rill_model *m = NULL;
    runner r = {0};
    plain_record rec = {0};
    int32_t **prompts = rill_calloc((size_t)n_prompts, sizeof *prompts); // [n_prompts][prompt_len]
    prompt_result *res = rill_calloc((size_t)n_prompts, sizeof *res);    // [n_prompts]
    rill_status st = prompts && res ? RILL_OK : RILL_ENOMEM;

    // Every text is read and tokenized before the model loads, so a missing or short one fails at once.
    if (st == RILL_OK) st = tokenizer_load(model_path, &tok);
    for (int i = 0; i < n_prompts && st == RILL_OK; i++) {
        char *text = NULL;
        size_t len = 0, n_ids = 0;
        int32_t *ids = NULL;
        if ((st = read_spec(specs[i], &text, &len)) != RILL_OK) break;
        st = tokenizer_encode(tok, text, len, TOKENIZER_ADD_SPECIAL, &ids, &n_ids);
        rill_free(text);
        if (st != RILL_OK) {
            rill_error_prefix("%s", specs[i]);
            break;
        }
        res[i].spec = specs[i];
        res[i].text_tokens = (int64_t)n_ids;
        if ((int64_t)n_ids < prompt_len) {
            rill_free(ids);
            st = rill_fail(RILL_ERANGE,
                           "%s: %zu tokens, fewer than the %lld the prompt needs (--context %ld - --tokens %ld); join "
                           "more files with '+'",
                           specs[i], n_ids, (long long)prompt_len, context, steps);
            break;
        }
        prompts[i] = ids; // the first prompt_len are used
    }

    if (st == RILL_OK) st = backend_open(device, (int)opt.threads, &be);
    if (st == RILL_OK) st = be->ops->stream_create(be, &s);
    if (st == RILL_OK) st = model_load(model_path, be, &m);
    if (st == RILL_OK) {
        int64_t ctx = m->cfg.max_position_embeddings;
        if (ctx > 0 && context > ctx)
            st = rill_fail(RILL_ERANGE, "--context %ld exceeds the model's %lld positions", context, (long long)ctx);
    }
    if (st == RILL_OK) {
        int vocab = m->cfg.vocab_size;
        r = (runner){m, s, (int)group, opt.kv_start, vocab, NULL, NULL, NULL};
        r.ids_dev = be->ops->alloc(be, sizeof(int32_t));
        r.logits = rill_malloc((size_t)vocab * sizeof(float));
        if (be->act_dtype != DTYPE_F32) r.logits_dev = be->ops->alloc(be, (size_t)vocab * sizeof(float));
        rec.steps = (int)steps;
        rec.vocab = vocab;
        rec.tokens = rill_malloc((size_t)steps * sizeof(int32_t));
        rec.logits = rill_malloc((size_t)steps * vocab * sizeof(float));
        rec.lse = rill_malloc((size_t)steps * sizeof(double));
        rec.gap = rill_malloc((size_t)steps * sizeof(float));
        if (!r.ids_dev || !r.logits || (be->act_dtype != DTYPE_F32 && !r.logits_dev) || !rec.tokens || !rec.logits ||
            !rec.lse || !rec.gap)
            st = RILL_ENOMEM;
    }
    if (st != RILL_OK) {
        rc = fail_input();
        goto out;
    }

    const char *plain_dtype = dtype_name(be->act_dtype);
    if (!json) {
        printf("kv-quality: model %s, device %s, plain cache %s, context %ld = prompt %lld + %ld forced greedy steps, "
               "KV groups of %ld, quantized from %ld positions\n",
               model_path, device, plain_dtype, context, (long long)prompt_len, steps, group, opt.kv_start);
        for (int i = 0; i < n_prompts; i++)
            printf("prompt %d: %s (%lld tokens)\n", i + 1, specs[i], (long long)res[i].text_tokens);
        fflush(stdout);
    }
    for (int i = 0; i < n_prompts; i++) {
        double t0 = rill_now();
        fprintf(stderr, "kv-quality: [%d/%d] %s: plain", i + 1, n_prompts, specs[i]);
        st = run_cache(&r, prompts[i], prompt_len, 0, (int)steps, plain_step, &rec, &res[i].plain);
        for (int k = 0; k < n_kinds && st == RILL_OK; k++) {
            fprintf(stderr, ", %s", kinds[k].label);
            kind_result *kr = &res[i].kinds[k];
            kr->depart = -1;
            compare_ctx cc = {&rec, kr};
            st = run_cache(&r, prompts[i], prompt_len, kinds[k].bits, (int)steps, compare_step, &cc, &kr->rs);
            if (st != RILL_OK) rill_error_prefix("%s", kinds[k].label);
        }
        res[i].seconds = rill_now() - t0;
        fprintf(stderr, st == RILL_OK ? " (%.1f s)\n" : "\n", res[i].seconds);
        if (st != RILL_OK) {
            rill_error_prefix("%s", specs[i]);
            rc = fail_input();
            goto out;
        }
    }
    double wall = rill_now() - t_start;

    kind_summary sum[MAX_KINDS], plain_sum = summarize(res, n_prompts, -1, prompt_len, (int)steps);
    for (int k = 0; k < n_kinds; k++)
        sum[k] = summarize(res, n_prompts, k, prompt_len, (int)steps);
    bool self_ok = !self_check || (sum[2].all_equal == n_prompts && sum[2].kl_max == 0);

    if (json) {
        json_t *o = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:I}", "model", model_path, "device", device, "plain_dtype",
                              plain_dtype, "context", (json_int_t)context, "prompt_tokens", (json_int_t)prompt_len,
                              "tokens", (json_int_t)steps, "kv_group_size", (json_int_t)group);
        json_object_set_new(o, "quantized_kv_start", json_integer((json_int_t)opt.kv_start));
        json_t *arr = json_array();
        for (int i = 0; i < n_prompts; i++) {
            json_t *p = json_pack("{s:s,s:I,s:f,s:o}", "file", specs[i], "text_tokens", (json_int_t)res[i].text_tokens,
                                  "seconds", res[i].seconds, "plain", run_json(&res[i].plain));
            for (int k = 0; k < n_kinds; k++) {
                const kind_result *kr = &res[i].kinds[k];
                json_t *q = json_pack("{s:b,s:I,s:f,s:f}", "all_equal", kr->depart < 0, "agree", (json_int_t)kr->agree,
                                      "mean_kl", kr->kl_sum / steps, "max_kl", kr->kl_max);
                if (kr->depart >= 0) {
                    json_object_set_new(q, "depart", json_integer(kr->depart));
                    json_object_set_new(q, "plain_token", json_integer(kr->plain_tok));
                    json_object_set_new(q, "q_token", json_integer(kr->q_tok));
                    json_object_set_new(q, "gap", json_real(kr->gap));
                } else
                    json_object_set_new(q, "depart", json_null());
                json_t *rj = run_json(&kr->rs);
                json_object_update(q, rj);
                json_decref(rj);
                json_object_set_new(p, kind_key(&kinds[k]), q);
            }
            json_array_append_new(arr, p);
        }
        json_object_set_new(o, "prompts", arr);
        json_t *so = json_pack("{s:o}", "plain", summary_json(&plain_sum, true));
        for (int k = 0; k < n_kinds; k++)
            json_object_set_new(so, kind_key(&kinds[k]), summary_json(&sum[k], false));
        json_object_set_new(o, "summary", so);
        json_object_set_new(o, "wall_seconds", json_real(wall));
        if (self_check) json_object_set_new(o, "self_check_ok", json_boolean(self_ok));
        char *txt = json_dumps(o, JSON_COMPACT);
        printf("%s\n", txt);
        free(txt);
        json_decref(o);
    } else {
        print_table(res, n_prompts, kinds, n_kinds, (int)steps);
        printf("(agree: steps whose argmax equals the plain cache's; depart: the first step that differs, where that "
               "cache's own greedy text departs; gap: the plain top-1 minus top-2 logit there; KL(plain || cache) "
               "per step)\n\n");
        printf("plain (%s): KV %.2f MB, peak +%.2f MB, prefill %.1f tok/s, decode %.1f tok/s\n", plain_dtype,
               mb(plain_sum.kv_bytes), mb(plain_sum.peak_bytes), plain_sum.prefill_tps, plain_sum.decode_tps);
        for (int k = 0; k < n_kinds; k++)
            printf("%s: %d/%d prompts with all %ld greedy tokens equal to the plain cache's; mean KL %.3e, max %.3e "
                   "(%d prompts x %ld steps); KV %.2f MB (%.2fx less), peak +%.2f MB, prefill %.1f tok/s, decode "
                   "%.1f tok/s\n",
                   kinds[k].label, sum[k].all_equal, n_prompts, steps, sum[k].kl_mean, sum[k].kl_max, n_prompts, steps,
                   mb(sum[k].kv_bytes), sum[k].kv_bytes ? (double)plain_sum.kv_bytes / (double)sum[k].kv_bytes : 0.0,
                   mb(sum[k].peak_bytes), sum[k].prefill_tps, sum[k].decode_tps);
        printf("issue 5 (8-bit: all greedy tokens equal on >= 80%% of the prompts; asked for 256 tokens on 10 prompts "
               "at an 8k context): %s here\n",
               sum[0].all_equal * 10 >= n_prompts * 8 ? "met" : "NOT met");
        if (self_check) printf("self-check (plain again: KL 0, no departure): %s\n", self_ok ? "ok" : "FAILED");
        printf("wall time %.1f s\n", wall);
    }
    if (!self_ok) {
        fprintf(stderr,
                "kv-quality: self-check failed: a second plain run differs from the first (mean KL %.3e, "
                "%d/%d prompts all equal): the runs are not deterministic\n",
                sum[2].kl_mean, sum[2].all_equal, n_prompts);
        rc = EXIT_BAD_INPUT;
    }

out:
    for (int i = 0; prompts && i < n_prompts; i++)
        rill_free(prompts[i]);
    rill_free(prompts);
    rill_free(res);
    rill_free(rec.tokens);
    rill_free(rec.logits);
    rill_free(rec.lse);
    rill_free(rec.gap);
    rill_free(r.logits);
    if (r.ids_dev) be->ops->free(be, r.ids_dev);
    if (r.logits_dev) be->ops->free(be, r.logits_dev);
    tokenizer_free(tok);
    model_free(m);
    if (s) be->ops->stream_destroy(s);
    backend_close(be);
    free(opt.specs);
    return rc;
}
