// testlib.h: helpers shared by the unit tests: paths to models and fixtures, temporary files,
// fresh random inputs and NaN poisoning (a test must be able to fail).
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// $RILL_MODELS/<name>, or NULL when the file is absent (the caller then skips).
const char *test_model_path(const char *name);
// $RILL_TEST_DATA/<rel>: committed fixtures.
const char *test_data_path(const char *rel);
// A fresh path under $RILL_TMP (or /tmp) with the given suffix; the file does not exist yet.
const char *test_tmp_path(const char *suffix);
// Writes `n` bytes to a fresh temporary file and returns its path.
const char *test_write_tmp(const char *suffix, const void *data, size_t n);

// A random generator seeded from the clock (printed once, so a failure can be replayed with
// RILL_TEST_SEED=<seed>).
uint64_t test_rand_u64(void);
float test_rand_uniform(float lo, float hi);
float test_rand_normal(void);
void test_fill_normal(float *x, size_t n, float scale);
void test_poison_f32(float *x, size_t n); // NaN everywhere

// Runs a shell command; returns its exit status (or 128+signal when killed by one).
int test_run(const char *cmd, char *out, size_t out_cap);
