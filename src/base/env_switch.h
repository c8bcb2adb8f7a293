// env_switch.h: on/off switches read from the environment, for measuring one code path against
// another (RILL_FUSE_ADD=0, RILL_CUDA_PAIR_ACT=0, ...). A switch is on unless its variable is "0",
// and is read once per process: the caller keeps the answer in a static int that starts at -1.
#pragma once
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

// Whether `name` is not set to "0"; *state: -1 until the first call, then the answer.
bool env_switch_on(const char *name, int *state);

#ifdef __cplusplus
}
#endif
