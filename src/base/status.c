// status.c: the per-thread error message behind rill_status.
#include "base/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum { ERROR_MSG_CAP = 1024 };
static _Thread_local char error_msg[ERROR_MSG_CAP];

rill_status rill_fail(rill_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_msg, sizeof error_msg, fmt, ap);
    va_end(ap);
    return st;
}

void rill_error_prefix(const char *fmt, ...) {
    char prefix[512], old[ERROR_MSG_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, error_msg, sizeof old);
    size_t n = strlen(prefix);
    memcpy(error_msg, prefix, n);
    memcpy(error_msg + n, ": ", 2);
    size_t room = sizeof error_msg - n - 3;
    size_t m = strnlen(old, room);
    memcpy(error_msg + n + 2, old, m);
    error_msg[n + 2 + m] = '\0';
}

const char *rill_last_error(void) { return error_msg; }

void rill_clear_error(void) { error_msg[0] = '\0'; }

const char *rill_status_name(rill_status st) {
    switch (st) {
    case RILL_OK: return "ok";
    case RILL_EINVAL: return "invalid argument";
    case RILL_EIO: return "i/o error";
    case RILL_EFORMAT: return "bad format";
    case RILL_ENOMEM: return "out of memory";
    case RILL_EUNSUPPORTED: return "unsupported";
    case RILL_ENOTFOUND: return "not found";
    case RILL_ERANGE: return "out of range";
    }
    return "unknown status";
}
