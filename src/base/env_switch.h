// env_switch.h: on/off switches and counts read from the environment, for measuring one code path
// against another (RILL_FUSE_ADD=0, RILL_CUDA_GEMV_STREAM_ROWS=2048, ...). A switch is on unless its
// variable is "0"; a count is the variable's value when that is a number >= 0, else a default. Both
// are read once per process: the caller keeps the answer in a static that starts at -1.
#pragma once
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Whether `name` is not set to "0"; *state: -1 until the first call, then the answer.
bool env_switch_on(const char *name, int *state);
// `name`'s value when it is set to a number >= 0, else fallback (>= 0); *state: -1 until the first call.
int64_t env_count(const char *name, int64_t fallback, int64_t *state);

#ifdef __cplusplus
}
#endif
