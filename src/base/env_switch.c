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
