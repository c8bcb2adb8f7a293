// tokenize.c: `rill tokenize`: encode text with a model's tokenizer and print the ids as a JSON
// array (one array per line with --lines), decode a comma-separated list of ids to text, or time
// single-threaded encoding over the lines of a file (--bench, for bench/tokenizer_speed.py).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/alloc.h"
#include "cli.h"
#include "tokenizer/tokenizer.h"

static const char *USAGE = "tokenize --model PATH (--text T | --file F) [--no-special] [--no-add-special] "
                           "[--lines] [--bench SECONDS]\n       rill tokenize --model PATH --decode 1,2,3 "
                           "[--skip-special]";

static char *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return rill_fail(RILL_ENOTFOUND, "%s: cannot open", path), NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + len, 1, cap - len, f)) > 0;) {
        len += got;
        if (len == cap) {
            char *b = realloc(buf, cap *= 2);
            if (!b) free(buf);
            buf = b;
        }
    }
    fclose(f);
    if (!buf) return rill_fail(RILL_ENOMEM, "%s: out of memory", path), NULL;
    *n = len;
    return buf;
}

static int print_ids(tokenizer *t, const char *s, size_t n, unsigned flags) {
    int32_t *ids;
    size_t k;
    if (tokenizer_encode(t, s, n, flags, &ids, &k)) return cli_fail_input();
    putchar('[');
    for (size_t i = 0; i < k; i++)
        printf(i ? ", %d" : "%d", ids[i]);
    printf("]\n");
    rill_free(ids);
    return CLI_OK;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Encodes every line of the text (without its newline) over and over for `seconds`.
static int bench(tokenizer *t, const char *s, size_t n, unsigned flags, double seconds) {
    size_t bytes = 0, tokens = 0, rounds = 0;
    double t0 = now(), el;
    do {
        for (size_t a = 0; a < n;) {
            const char *nl = memchr(s + a, '\n', n - a);
            size_t b = nl ? (size_t)(nl - s) : n;
            int32_t *ids;
            size_t k;
            if (tokenizer_encode(t, s + a, b - a, flags, &ids, &k)) return cli_fail_input();
            rill_free(ids);
            bytes += b - a, tokens += k;
            a = b + 1;
        }
        rounds++;
    } while ((el = now() - t0) < seconds);
    printf("{\"rounds\": %zu, \"seconds\": %.4f, \"bytes\": %zu, \"tokens\": %zu, \"mb_per_s\": %.3f, "
           "\"tokens_per_s\": %.0f}\n",
           rounds, el, bytes, tokens, (double)bytes / el / 1e6, (double)tokens / el);
    return CLI_OK;
}

static int decode(tokenizer *t, const char *list, bool skip_special) {
    size_t cap = 64, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    for (const char *p = list; ids && *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > INT32_MAX || (*end && *end != ',')) {
            free(ids);
            return cli_fail_usage(USAGE, "--decode: \"%s\" is not a comma-separated list of ids", list);
        }
        if (n == cap) {
            int32_t *q = realloc(ids, (cap *= 2) * sizeof *ids);
            if (!q) free(ids);
            ids = q;
        }
        if (ids) ids[n++] = (int32_t)v;
        p = *end ? end + 1 : end;
    }
    if (!ids) return rill_fail(RILL_ENOMEM, "out of memory"), cli_fail_input();
    char *text;
    size_t len;
    rill_status st = tokenizer_decode(t, ids, n, skip_special, &text, &len);
    free(ids);
    if (st) return cli_fail_input();
    fwrite(text, 1, len, stdout);
    putchar('\n');
    rill_free(text);
    return CLI_OK;
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *text = NULL, *file = NULL, *ids = NULL;
    bool lines = false, skip_special = false;
    double bench_s = -1;
    unsigned flags = TOKENIZER_ADD_SPECIAL | TOKENIZER_PARSE_SPECIAL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: rill %s\n", USAGE);
            return CLI_OK;
        } else if (!strcmp(a, "--model") && has)
            model = argv[++i];
        else if (!strcmp(a, "--text") && has)
            text = argv[++i];
        else if (!strcmp(a, "--file") && has)
            file = argv[++i];
        else if (!strcmp(a, "--decode") && has)
            ids = argv[++i];
        else if (!strcmp(a, "--bench") && has)
            bench_s = atof(argv[++i]);
        else if (!strcmp(a, "--no-special"))
            flags &= ~(unsigned)TOKENIZER_PARSE_SPECIAL;
        else if (!strcmp(a, "--no-add-special"))
            flags &= ~(unsigned)TOKENIZER_ADD_SPECIAL;
        else if (!strcmp(a, "--skip-special"))
            skip_special = true;
        else if (!strcmp(a, "--lines"))
            lines = true;
        else
            return cli_fail_usage(USAGE, "unknown or incomplete option '%s'", a);
    }
    if (!model) return cli_fail_usage(USAGE, "--model is required");
    if (!!text + !!file + !!ids != 1) return cli_fail_usage(USAGE, "give exactly one of --text, --file, --decode");
    tokenizer *t;
    if (tokenizer_load(model, &t)) return cli_fail_input();
    int rc = CLI_OK;
    if (ids)
        rc = decode(t, ids, skip_special);
    else {
        size_t n = text ? strlen(text) : 0;
        char *buf = file ? read_file(file, &n) : NULL;
        const char *s = file ? buf : text;
        if (file && !buf)
            rc = cli_fail_input();
        else if (bench_s >= 0)
            rc = bench(t, s, n, flags, bench_s);
        else if (!lines)
            rc = print_ids(t, s, n, flags);
        else
            for (size_t a = 0; a < n && rc == CLI_OK;) {
                const char *nl = memchr(s + a, '\n', n - a);
                size_t b = nl ? (size_t)(nl - s) : n;
                rc = print_ids(t, s + a, b - a, flags);
                a = b + 1;
            }
        free(buf);
    }
    tokenizer_free(t);
    return rc;
}
