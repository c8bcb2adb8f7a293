// rill.h: the public C API of librill, the only header a user includes.
// Every fallible function returns a rill_status; rill_last_error() then says what failed and
// where (file, field or tensor, byte offset, reason). Library functions never print or exit.
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum rill_status {
    RILL_OK = 0,
    RILL_EINVAL,       // bad argument from the caller
    RILL_EIO,          // the operating system refused (open, read, write, mmap)
    RILL_EFORMAT,      // a file's contents are malformed or hostile
    RILL_ENOMEM,       // an allocation failed or a size limit was exceeded
    RILL_EUNSUPPORTED, // well-formed, but not something rill handles (yet)
    RILL_ENOTFOUND,    // a named file, key or tensor is absent
    RILL_ERANGE,       // a value lies outside its allowed range
} rill_status;

// The message of the last failure on this thread ("" if none).
const char *rill_last_error(void);
void rill_clear_error(void);
const char *rill_status_name(rill_status st);

// Memory accounting: every large allocation in rill goes through one accounted allocator.
size_t rill_memory_current(void); // bytes allocated now
size_t rill_memory_peak(void);    // highest value of rill_memory_current since the last reset
void rill_memory_reset_peak(void);

#define RILL_VERSION "0.1.0"

#ifdef __cplusplus
}
#endif
