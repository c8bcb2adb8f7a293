// env_switch.c: see env_switch.h.
#include "base/env_switch.h"

#include <stdlib.h>
#include <string.h>

bool env_switch_on(const char *name, int *state) {
    if (*state < 0) {
        const char *e = getenv(name);
        *state = !(e && !strcmp(e, "0"));
    }
    return *state != 0;
}

int64_t env_count(const char *name, int64_t fallback, int64_t *state) {
    if (*state < 0) {
        const char *e = getenv(name);
        char *end = NULL;
        long long v = e && *e ? strtoll(e, &end, 10) : -1;
        *state = end && !*end && v >= 0 ? (int64_t)v : fallback;
    }
    return *state;
}
