// api.h: the public model and generation API of rill.h (api.c) over the modules: what the API
// keeps next to a loaded model (its backend, stream and tokenizer), and helpers the CLI shares
// with it (a prompt's ids with mlx-lm's BOS rule, XTC's protected ids).
#pragma once
#include "generate/stream.h"
#include "model/model.h"
#include "rill.h"
#include "tokenizer/tokenizer.h"

struct api_model {
    rill_backend *be;    // opened by rill_model_load, closed by rill_model_free
    rill_stream *s;      // the compute stream every generation of the model runs on
    char *path;          // where the model came from (the tokenizer is loaded from there)
    rill_tokenizer *tok; // loaded on first use, or NULL
    bool busy;           // a generation holds the stream
};

// ids [*n] of text, parsing special tokens, with BOS added unless the text already starts with
// it (mlx-lm's stream_generate). *ids: free with rill_free.
rill_status api_prompt_ids(tokenizer *tok, const char *text, size_t len, int32_t **ids, int64_t *n);

// The ids XTC never removes, as mlx-lm picks them: the encoding of "\n" and every EOS id, plus
// extra [n_extra]. *ids: free with rill_free.
rill_status api_xtc_special(tokenizer *tok, const int32_t *extra, int n_extra, int32_t **ids, int *n);
