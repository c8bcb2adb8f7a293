// gen_flags.c: the generation flags `rill chat` shares with `rill generate` (mlx-lm's names,
// ranges and defaults, REFERENCE.md): sampling, logits processors, --max-tokens, --seed,
// --extra-eos-token, --ignore-eos, --prefill-step-size, --threads, --device and the cache flags
// --max-kv-size, --kv-bits, --kv-group-size, --quantized-kv-start. Out-of-range values are usage
// errors that name the flag and the allowed range.
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

void cli_gen_opts_init(cli_gen_opts *o) {
    memset(o, 0, sizeof *o);
    o->p = generate_defaults();
    o->p.max_tokens = 100;          // the CLI's default
    o->p.quantized_kv_start = 5000; // the CLI's default (mlx_lm.generate's)
    o->device = "cpu";
}

bool cli_parse_long(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

char *cli_read_all(FILE *f) {
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0;) {
        n += got;
        if (n + 1 == cap) {
            char *bigger = realloc(buf, cap *= 2);
            if (!bigger) free(buf);
            buf = bigger;
        }
    }
    if (buf) buf[n] = 0;
    return buf;
}

bool cli_parse_double(const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) return false;
    *out = v;
    return true;
}

typedef enum { F_INT, F_FLOAT } kind;

typedef struct {
    const char *name, *alias;
    kind k;
    double lo, hi;
    size_t at; // offset of the field in cli_gen_opts
} flag;

#define OFF(f) offsetof(cli_gen_opts, f)
static const flag flags[] = {
    {"--max-tokens", "-m", F_INT, -1, INT32_MAX, OFF(p.max_tokens)},
    {"--temp", NULL, F_FLOAT, 0, 1e6, OFF(p.sampling.temp)},
    {"--top-p", NULL, F_FLOAT, 0, 1, OFF(p.sampling.top_p)},
    {"--min-p", NULL, F_FLOAT, 0, 1, OFF(p.sampling.min_p)},
    {"--top-k", NULL, F_INT, 0, INT32_MAX, OFF(p.sampling.top_k)},
    {"--min-tokens-to-keep", NULL, F_INT, 1, INT32_MAX, OFF(p.sampling.min_tokens_to_keep)},
    {"--xtc-probability", NULL, F_FLOAT, 0, 1, OFF(p.sampling.xtc_probability)},
    {"--xtc-threshold", NULL, F_FLOAT, 0, 0.5, OFF(p.sampling.xtc_threshold)},
    {"--repetition-penalty", NULL, F_FLOAT, 1e-6, 1e6, OFF(p.processing.repetition_penalty)},
    {"--repetition-context-size", NULL, F_INT, 0, INT32_MAX, OFF(p.processing.repetition_context_size)},
    {"--presence-penalty", NULL, F_FLOAT, -1e6, 1e6, OFF(p.processing.presence_penalty)},
    {"--frequency-penalty", NULL, F_FLOAT, -1e6, 1e6, OFF(p.processing.frequency_penalty)},
    {"--prefill-step-size", NULL, F_INT, 1, INT32_MAX, OFF(p.prefill_step_size)},
    {"--threads", NULL, F_INT, 1, 256, OFF(threads)},
    {"--max-kv-size", NULL, F_INT, 1, INT32_MAX, OFF(max_kv_size)},
    {"--kv-group-size", NULL, F_INT, 32, 128, OFF(p.kv_group_size)},
    {"--quantized-kv-start", NULL, F_INT, 0, INT32_MAX, OFF(p.quantized_kv_start)},
};

int cli_gen_flag(cli_gen_opts *o, int argc, char **argv, int *i, const char *usage, bool *matched) {
    const char *a = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    *matched = true;
    for (size_t f = 0; f < sizeof flags / sizeof flags[0]; f++) {
        const flag *F = &flags[f];
        if (strcmp(a, F->name) && !(F->alias && !strcmp(a, F->alias))) continue;
        if (!v) return cli_fail_usage(usage, "%s needs a value", a);
        (*i)++;
        void *dst = (char *)o + F->at;
        if (F->k == F_INT) {
            long x;
            if (!cli_parse_long(v, (long)F->lo, (long)F->hi, &x))
                return cli_fail_usage(usage, "%s: '%s' is not an integer in [%ld, %ld]", a, v, (long)F->lo,
                                      (long)F->hi);
            *(int *)dst = (int)x;
        } else {
            double x;
            if (!cli_parse_double(v, F->lo, F->hi, &x))
                return cli_fail_usage(usage, "%s: '%s' is not a number in [%g, %g]", a, v, F->lo, F->hi);
            *(float *)dst = (float)x;
        }
        return CLI_OK;
    }
    if (!strcmp(a, "--seed") || !strcmp(a, "--extra-eos-token") || !strcmp(a, "--device")) {
        if (!v) return cli_fail_usage(usage, "%s needs a value", a);
        (*i)++;
        long x;
        if (!strcmp(a, "--seed")) {
            if (!cli_parse_long(v, 0, LONG_MAX, &x)) return cli_fail_usage(usage, "--seed: '%s' is not a count", v);
            o->p.sampling.seed = (uint64_t)x;
        } else if (!strcmp(a, "--device")) {
            if (strcmp(v, "cpu") && strcmp(v, "cuda"))
                return cli_fail_usage(usage, "--device: '%s' is not cpu or cuda", v);
            o->device = v;
        } else {
            if (o->n_extra_eos == CLI_MAX_EXTRA_EOS || !cli_parse_long(v, 0, INT32_MAX, &x))
                return cli_fail_usage(usage, "--extra-eos-token: '%s' is not a token id (%d at most)", v,
                                      CLI_MAX_EXTRA_EOS);
            o->extra_eos[o->n_extra_eos++] = (int32_t)x;
        }
        return CLI_OK;
    }
    if (!strcmp(a, "--kv-bits")) { // the quantized cache has 4- and 8-bit codes
        long x;
        if (!v || !cli_parse_long(v, 4, 8, &x) || (x != 4 && x != 8))
            return cli_fail_usage(usage, "--kv-bits: '%s' is not 4 or 8", v ? v : "");
        (*i)++;
        o->p.kv_bits = (int)x;
        return CLI_OK;
    }
    if (!strcmp(a, "--wired")) {
        o->wired = true;
        return CLI_OK;
    }
    if (!strcmp(a, "--ignore-eos")) {
        o->p.ignore_eos = true;
        return CLI_OK;
    }
    *matched = false;
    return CLI_OK;
}

int cli_gen_check_vocab(const cli_gen_opts *o, int vocab, const char *usage) {
    for (int i = 0; i < o->n_extra_eos; i++)
        if (o->extra_eos[i] >= vocab)
            return cli_fail_usage(usage, "--extra-eos-token %d is outside the vocabulary (%d)", o->extra_eos[i], vocab);
    return CLI_OK;
}

void cli_wire_model(const rill_model *m, const char *device, bool verbose) {
    if (strcmp(device, "cpu")) {
        fprintf(stderr, "rill: --wired pins host memory; with --device %s the weights live on the device: ignored\n",
                device);
        return;
    }
    size_t bytes = 0;
    if (model_wire(m, &bytes) != RILL_OK)
        fprintf(stderr, "rill: warning: %s\n", rill_last_error());
    else if (verbose)
        fprintf(stderr, "[INFO] wired %.1f MB of weights (mlock)\n", (double)bytes / 1e6);
}
