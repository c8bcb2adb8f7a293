// log.h: leveled logging to stderr. The level comes from rill_log_set_level() or from the
// environment variable RILL_LOG (error, warn, info, debug). Library code logs; it never prints.
#pragma once

typedef enum { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG } log_level;

void rill_log_set_level(log_level level);
log_level rill_log_get_level(void);
void rill_log(log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) rill_log(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) rill_log(LOG_WARN, __VA_ARGS__)
#define log_info(...) rill_log(LOG_INFO, __VA_ARGS__)
#define log_debug(...) rill_log(LOG_DEBUG, __VA_ARGS__)
