// log.c: leveled logging to stderr, one line per call.
#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int current_level = -1; // -1: not yet read from RILL_LOG

static log_level level_from_env(void) {
    const char *s = getenv("RILL_LOG");
    if (!s) return LOG_WARN;
    if (!strcmp(s, "error")) return LOG_ERROR;
    if (!strcmp(s, "info")) return LOG_INFO;
    if (!strcmp(s, "debug")) return LOG_DEBUG;
    return LOG_WARN;
}

void rill_log_set_level(log_level level) { current_level = (int)level; }

log_level rill_log_get_level(void) {
    if (current_level < 0) current_level = (int)level_from_env();
    return (log_level)current_level;
}

void rill_log(log_level level, const char *fmt, ...) {
    if (level > rill_log_get_level()) return;
    static const char *names[] = {"error", "warn", "info", "debug"};
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "rill [%s] %s\n", names[level], line);
}
