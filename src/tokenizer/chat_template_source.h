// chat_template_source.h: where a model keeps its chat template and the special-token strings the
// template sees (bos_token, eos_token): GGUF metadata (tokenizer.chat_template, token ids), or a
// model folder (chat_template.jinja, chat_template.json, tokenizer_config.json).
#pragma once
#include "rill.h"

typedef struct {
    char *template_src; // NUL-terminated Jinja source; NULL when the model has none
    char *bos_token;    // the text of the BOS token; NULL when none is defined
    char *eos_token;    // the text of the EOS token; NULL when none is defined
    char *origin;       // where the template came from, for messages ("x.gguf: tokenizer.chat_template")
} chat_template_source;

// Reads what `path` (a GGUF file or a model folder) holds. `name` picks one of several named
// templates in tokenizer_config.json (NULL: "default", else the first).
rill_status chat_template_source_load(const char *path, const char *name, chat_template_source *out);
void chat_template_source_free(chat_template_source *s);
