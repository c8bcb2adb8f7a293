// status.h: rill's error values and the per-thread error message.
// Every fallible function returns a rill_status; on failure it also leaves a message that names
// the file, the field or tensor, the byte offset and the reason. rill_fail() sets both at once.
#pragma once
#include "rill.h"

// Sets the thread's error message (printf-style) and returns `st`, so that callers can write
// `return rill_fail(RILL_EFORMAT, "%s: ...", path, ...)`.
rill_status rill_fail(rill_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Prepends "prefix: " to the current message (for adding context on the way up).
void rill_error_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
