// chat_template.h: chat templates, the Jinja programs in tokenizer_config.json and GGUF metadata that
// turn a list of messages into a prompt. rill interprets the subset of jinja2 that real templates use,
// with transformers' settings (trim_blocks, lstrip_blocks, its tojson, raise_exception, strftime_now),
// and renders what transformers' apply_chat_template(tokenize=False) renders, character for character.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "rill.h"

typedef struct chat_template chat_template;

// Bounds that keep a hostile template from exhausting the machine; exceeding one is an error.
typedef struct chat_template_limits {
    size_t max_output;  // bytes of rendered text (default 16 MiB)
    size_t max_memory;  // bytes of values alive during one render (default 256 MiB)
    uint64_t max_steps; // loop iterations + calls + filter applications (default 4,000,000)
    int max_depth;      // nested macro calls (default 64)
} chat_template_limits;

// Parses `len` bytes of template source. On failure *out is NULL and the error message reads
// "chat template: line L, column C: <reason>".
rill_status chat_template_compile(const char *src, size_t len, chat_template **out);
void chat_template_free(chat_template *t); // NULL is allowed
void chat_template_set_limits(chat_template *t, const chat_template_limits *lim);

// Renders with the variables of `context` (a JSON object; every key is a template variable). On success
// *out is a NUL-terminated string of *out_len bytes, allocated with rill_malloc: free it with rill_free.
// A compiled template may be rendered from several threads at once.
rill_status chat_template_render(const chat_template *t, const json_t *context, char **out, size_t *out_len);

// What transformers' tokenizer.apply_chat_template(messages, tools=..., add_generation_prompt=...,
// tokenize=False, **extra_vars) renders: messages lose their null-valued keys, reasoning is aliased
// (reasoning_content/thinking/reasoning) as transformers does, `tools` and `documents` are none when
// absent, and bos_token/eos_token (NULL = not defined) may be overridden by extra_vars (a JSON object or
// NULL). *out as for chat_template_render; out_len may be NULL.
rill_status chat_template_apply(const chat_template *t, const json_t *messages, const json_t *tools,
                                bool add_generation_prompt, const char *bos_token, const char *eos_token,
                                const json_t *extra_vars, char **out, size_t *out_len);
