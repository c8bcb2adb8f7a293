// testlib.c: paths, temporary files, seeded random inputs and poisoning for the unit tests.
#include "testlib.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char path_buf[8][4096];
static int path_slot;

static char *next_buf(void) { return path_buf[path_slot++ % 8]; }

const char *test_model_path(const char *name) {
    const char *dir = getenv("RILL_MODELS");
    char *p = next_buf();
    if (dir) snprintf(p, 4096, "%s/%s", dir, name);
    else snprintf(p, 4096, "%s/.cache/rill/models/%s", getenv("HOME") ? getenv("HOME") : "/root", name);
    struct stat st;
    return stat(p, &st) == 0 ? p : NULL;
}

const char *test_data_path(const char *rel) {
    const char *dir = getenv("RILL_TEST_DATA");
    char *p = next_buf();
    snprintf(p, 4096, "%s/%s", dir ? dir : "tests/data", rel);
    return p;
}

const char *test_tmp_path(const char *suffix) {
    static int counter;
    const char *dir = getenv("RILL_TMP");
    char *p = next_buf();
    snprintf(p, 4096, "%s/rill-test-%d-%d%s", dir ? dir : "/tmp", (int)getpid(), counter++, suffix);
    unlink(p);
    return p;
}

const char *test_write_tmp(const char *suffix, const void *data, size_t n) {
    const char *p = test_tmp_path(suffix);
    FILE *f = fopen(p, "wb");
    if (!f) return NULL;
    fwrite(data, 1, n, f);
    fclose(f);
    return p;
}

static uint64_t rng_state;

static void rng_seed(void) {
    if (rng_state) return;
    const char *s = getenv("RILL_TEST_SEED");
    rng_state = s ? strtoull(s, NULL, 10) : ((uint64_t)time(NULL) * 2654435761u) ^ (uint64_t)getpid() << 32;
    if (!rng_state) rng_state = 1;
    fprintf(stderr, "test seed: RILL_TEST_SEED=%llu\n", (unsigned long long)rng_state);
}

uint64_t test_rand_u64(void) {
    rng_seed();
    // xorshift64*
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

float test_rand_uniform(float lo, float hi) {
    return lo + (hi - lo) * (float)((test_rand_u64() >> 40) * (1.0 / 16777216.0));
}

float test_rand_normal(void) {
    double u1 = ((test_rand_u64() >> 11) + 1) * (1.0 / 9007199254740993.0);
    double u2 = (test_rand_u64() >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void test_fill_normal(float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = scale * test_rand_normal();
}

void test_poison_f32(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = NAN;
}

int test_run(const char *cmd, char *out, size_t out_cap) {
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t len = 0;
    if (out && out_cap) out[0] = '\0';
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) {
        if (out && len + 1 < out_cap) {
            size_t take = n < out_cap - 1 - len ? n : out_cap - 1 - len;
            memcpy(out + len, buf, take);
            len += take;
            out[len] = '\0';
        }
    }
    int status = pclose(p);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
