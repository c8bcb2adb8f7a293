// stream.c: stream_generate: pulls tokens from generate_next, stops at EOS (any of the tokenizer's
// ids or the extra ones) or at max_tokens, turns tokens into text through the streaming
// detokenizer and reports the stats with every response, as mlx-lm's GenerationResponse does.
#include "generate/stream.h"

#include "base/progress.h"

// mlx-lm's set: the tokenizer's EOS ids (with generation_config.json's), the model config's
// eos_token_id (which also serves a run without a tokenizer), and the extra ones.
static bool is_eos(const rill_model *m, tokenizer *tok, const int32_t *extra, int n_extra, int32_t id) {
    if (tok && tokenizer_is_eos(tok, id)) return true;
    for (int i = 0; i < m->cfg.n_eos; i++)
        if (m->cfg.eos_ids[i] == id) return true;
    for (int i = 0; i < n_extra; i++)
        if (extra[i] == id) return true;
    return false;
}

rill_status stream_generate(rill_model *m, tokenizer *tok, rill_cache *cache, rill_stream *s, const int32_t *prompt,
                            int64_t n, const generate_params *p, const int32_t *extra_eos, int n_extra,
                            stream_callback cb, void *ctx) {
    generator *g;
    tokenizer_stream *ds = NULL;
    rill_status st = RILL_OK;
    if (tok && (st = tokenizer_stream_new(tok, true, &ds)) != RILL_OK) return st;
    if ((st = generate_start(m, cache, s, prompt, n, p, &g)) != RILL_OK) {
        tokenizer_stream_free(ds);
        return st;
    }
    stream_response r = {0};
    r.prompt_tokens = n;
    double tp = generate_prompt_seconds(g);
    r.prompt_tps = tp > 0 ? (double)n / tp : 0;
    for (;;) {
        bool done;
        int32_t id;
        const float *lp;
        if ((st = generate_next(g, &id, &lp, &done)) != RILL_OK) break;
        double td = generate_decode_seconds(g);
        r.generation_tokens = generate_returned(g);
        r.generation_tps = td > 0 ? (double)r.generation_tokens / td : 0;
        r.peak_memory_gb = (double)rill_memory_peak() / 1e9;
        r.text = "";
        r.text_len = 0;
        if (done || (!p->ignore_eos && is_eos(m, tok, extra_eos, n_extra, id))) {
            r.token = done ? -1 : id;
            r.logprobs = done ? NULL : lp;
            if (ds && (st = tokenizer_stream_finish(ds, &r.text, &r.text_len)) != RILL_OK) break;
            r.finish_reason = done ? "length" : "stop";
            cb(ctx, &r);
            break;
        }
        r.token = id;
        r.logprobs = lp;
        if (ds && (st = tokenizer_stream_push(ds, id, &r.text, &r.text_len)) != RILL_OK) break;
        if (p->max_tokens >= 0 && r.generation_tokens == p->max_tokens) { // the last one: flush, say "length"
            const char *rest;
            size_t rest_len;
            // the pushed piece goes out first, then the held-back rest with the finish reason
            if (cb(ctx, &r)) break;
            r.text = "";
            r.text_len = 0;
            if (ds && (st = tokenizer_stream_finish(ds, &rest, &rest_len)) != RILL_OK) break;
            if (ds) {
                r.text = rest;
                r.text_len = rest_len;
            }
            r.token = -1;
            r.logprobs = NULL;
            r.finish_reason = "length";
            cb(ctx, &r);
            break;
        }
        if (cb(ctx, &r)) break;
    }
    generate_free(g);
    tokenizer_stream_free(ds);
    return st;
}
