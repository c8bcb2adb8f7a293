// cache_cli.c: what generate, chat and cache-prompt share about caches: the cache of a run, fresh
// (make_prompt_cache with --max-kv-size) or loaded from --prompt-cache-file and checked against the
// model and the --kv-bits / --kv-group-size flags as mlx-lm checks them; the --kv-* flags.
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cache/prompt_cache.h"
#include "cli.h"
#include "model/model.h"

static bool same_path(const char *a, const char *b) {
    if (!strcmp(a, b)) return true;
    char ra[PATH_MAX], rb[PATH_MAX];
    return realpath(a, ra) && realpath(b, rb) && !strcmp(ra, rb);
}

rill_status cli_make_cache(rill_model *m, rill_stream *s, const char *model_path, const char *cache_file,
                           int64_t max_kv_size, int kv_bits, int kv_group_size, rill_cache **out) {
    *out = NULL;
    if (!cache_file) return model_make_prompt_cache(m, max_kv_size, out);
    cache_shape sh = model_cache_shape(m);
    prompt_cache_meta meta;
    rill_status st = prompt_cache_load(cache_file, &sh, s, out, &meta);
    if (st != RILL_OK) return st;
    const char *made = prompt_cache_meta_get(&meta, "model");
    if (made && !same_path(made, model_path))
        st = rill_fail(RILL_EINVAL, "%s: the prompt cache was made with the model '%s', not '%s'", cache_file, made,
                       model_path);
    const cache_layer *l0 = (*out)->layers[0];
    if (st == RILL_OK && !strcmp(l0->ops->class_name, "QuantizedKVCache")) {
        cache_state stt = {0};
        // bits and group size of the loaded cache, from its state (items 3 and 4)
        if (l0->ops->get_state(l0, s, sh.n_kv_heads, &stt) == RILL_OK) {
            int64_t gs = 0, bits = 0;
            for (int i = 0; i < stt.n_items; i++) {
                if (!strcmp(stt.items[i].path, "3")) gs = stt.items[i].value;
                if (!strcmp(stt.items[i].path, "4")) bits = stt.items[i].value;
            }
            if (kv_bits && kv_bits != bits)
                st = rill_fail(RILL_EINVAL, "--kv-bits %d does not match the %lld-bit cache in %s", kv_bits,
                               (long long)bits, cache_file);
            else if (kv_group_size != gs)
                st = rill_fail(RILL_EINVAL, "--kv-group-size %d does not match the cache's group size %lld in %s",
                               kv_group_size, (long long)gs, cache_file);
        }
        cache_state_free(&stt);
    }
    prompt_cache_meta_free(&meta);
    if (st != RILL_OK) {
        cache_free(*out);
        *out = NULL;
    }
    return st;
}
