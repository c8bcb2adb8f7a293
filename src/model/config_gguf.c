// config_gguf.c: fills a rill_model_config from GGUF metadata (llama.cpp's key names). Scalar
// fields come from the shared table in config.c; what GGUF says differently is translated here:
// vocab from the token list, tied embeddings from the absence of output.weight, biases from the
// tensors, Gemma 3's sliding-window pattern and DeepSeek's MLA head sizes and expert routing.
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "model/config_fields.h"

#define TRY(x)                                                                                                         \
    do {                                                                                                               \
        rill_status st_ = (x);                                                                                         \
        if (st_ != RILL_OK) return st_;                                                                                \
    } while (0)

// Reads one field from "<arch>.<fd->gguf>" (or the full key `key` when given); absent keys leave it.
static rill_status read_field(config_src *src, const gguf_file *f, const config_field *fd, const char *key,
                              void *base) {
    char full[160];
    if (!key) snprintf(full, sizeof full, "%s.%s", src->gguf_arch, fd->gguf);
    const char *k = key ? key : full;
    const gguf_kv *kv = gguf_find_kv(f, k);
    if (!kv) return RILL_OK;
    int64_t i = 0;
    double x = 0;
    bool b = false;
    gguf_string s = {0};
    bool ok = fd->kind == FIELD_INT    ? gguf_get_i64(f, k, &i)
              : fd->kind == FIELD_F64  ? gguf_get_f64(f, k, &x)
              : fd->kind == FIELD_BOOL ? gguf_get_bool(f, k, &b)
                                       : gguf_get_str(f, k, &s);
    static const char *want[] = {"an integer", "a number", "a boolean", "a string"};
    if (!ok)
        return rill_fail(RILL_EFORMAT, "%s: %s: has type %s, expected %s", src->file, k, gguf_value_type_name(kv->type),
                         want[fd->kind]);
    if (fd->kind == FIELD_STR) return config_store_str(src, fd, base, s.ptr, (size_t)s.len);
    if (fd->kind == FIELD_INT) x = (double)i;
    if (fd->kind == FIELD_BOOL) x = b;
    if (!(x >= fd->min && x <= fd->max) && fd->kind != FIELD_BOOL)
        return rill_fail(RILL_ERANGE, "%s: %s: %g is outside the allowed range [%g, %g]", src->file, k, x, fd->min,
                         fd->max);
    config_store_num(fd, base, x);
    return RILL_OK;
}

static rill_status read_table(config_src *src, const gguf_file *f, const config_table *t, void *base) {
    for (size_t i = 0; i < t->n; i++)
        if (t->fields[i].gguf) TRY(read_field(src, f, &t->fields[i], NULL, base));
    return RILL_OK;
}

// One integer that the table does not cover: "<arch>.<suffix>", or a full key when `full` is set.
static rill_status read_int(config_src *src, const gguf_file *f, const char *name, bool full, int64_t max, int *out) {
    config_field fd = {.kind = FIELD_INT, .cap = sizeof(int), .json = {name}, .gguf = name, .min = 0, .max = max};
    return read_field(src, f, &fd, full ? name : NULL, out);
}

static rill_status read_f64(config_src *src, const gguf_file *f, const char *suffix, double *out) {
    config_field fd = {.kind = FIELD_F64, .cap = sizeof(double), .json = {suffix}, .gguf = suffix, .max = 1e12};
    return read_field(src, f, &fd, NULL, out);
}

static rill_status read_arch(config_src *src, const gguf_file *f, rill_model_config *c) {
    static const config_field fd = {FIELD_STR,
                                    offsetof(rill_model_config, model_type),
                                    sizeof(((rill_model_config *)0)->model_type),
                                    {"general.architecture"}};
    if (!gguf_find_kv(f, "general.architecture"))
        return rill_fail(RILL_EFORMAT, "%s: general.architecture: required key is missing", src->file);
    TRY(read_field(src, f, &fd, "general.architecture", c));
    model_arch arch;
    if (!config_arch_from_name(c->model_type, true, &arch))
        return rill_fail(RILL_EUNSUPPORTED,
                         "%s: general.architecture: '%s' is not supported (llama, qwen2, qwen3, "
                         "gemma3, deepseek2)",
                         src->file, c->model_type);
    config_set_defaults(c, arch, false);
    src->gguf_arch = c->model_type;
    return RILL_OK;
}

static rill_status read_rope_scaling(config_src *src, const gguf_file *f, rill_model_config *c) {
    char key[160];
    snprintf(key, sizeof key, "%s.rope.scaling.type", src->gguf_arch);
    if (!gguf_find_kv(f, key)) return RILL_OK;
    gguf_string s;
    char name[32] = "";
    if (!gguf_get_str(f, key, &s)) return rill_fail(RILL_EFORMAT, "%s: %s: expected a string", src->file, key);
    snprintf(name, sizeof name, "%.*s", (int)(s.len < 31 ? s.len : 31), s.ptr);
    if (!config_rope_type_from_name(name, &c->rope_scaling.type))
        return rill_fail(RILL_EUNSUPPORTED, "%s: %s: RoPE scaling '%s' is not supported (none, linear, yarn)",
                         src->file, key, name);
    config_rope_defaults(&c->rope_scaling);
    TRY(read_table(src, f, &config_rope_fields, &c->rope_scaling));
    double log_mul = -1; // DeepSeek yarn: 0.1 * mscale_all_dim
    TRY(read_f64(src, f, "rope.scaling.yarn_log_multiplier", &log_mul));
    if (log_mul >= 0) c->rope_scaling.mscale = c->rope_scaling.mscale_all_dim = log_mul / 0.1;
    return RILL_OK;
}

static rill_status read_vocab_and_tokens(config_src *src, const gguf_file *f, rill_model_config *c) {
    const gguf_kv *tok = gguf_find_kv(f, "tokenizer.ggml.tokens");
    if (c->vocab_size == 0 && tok && tok->type == GGUF_VAL_ARRAY) {
        if (tok->arr_len == 0 || tok->arr_len > (1u << 24))
            return rill_fail(RILL_ERANGE, "%s: tokenizer.ggml.tokens: %llu tokens is out of range", src->file,
                             (unsigned long long)tok->arr_len);
        c->vocab_size = (int)tok->arr_len;
    }
    if (c->vocab_size == 0)
        return rill_fail(RILL_EFORMAT, "%s: %s.vocab_size: missing, and tokenizer.ggml.tokens is absent", src->file,
                         src->gguf_arch);
    TRY(read_int(src, f, "tokenizer.ggml.bos_token_id", true, INT32_MAX, &c->bos_id));
    int eos = config_default_eos(c->arch);
    TRY(read_int(src, f, "tokenizer.ggml.eos_token_id", true, INT32_MAX, &eos));
    int64_t id = eos;
    return config_set_eos(c, src, "tokenizer.ggml.eos_token_id", &id, eos >= 0);
}

static bool has_tensor(const gguf_file *f, const char *name) { return gguf_find_tensor(f, name) != NULL; }

static void read_tensor_facts(const gguf_file *f, rill_model_config *c) {
    c->tie_word_embeddings = !has_tensor(f, "output.weight");
    c->attention_bias = has_tensor(f, "blk.0.attn_output.bias");
    c->qkv_bias = has_tensor(f, "blk.0.attn_q.bias"); // config_finish adds attention_bias and qwen2
    c->mlp_bias = has_tensor(f, "blk.0.ffn_up.bias") || has_tensor(f, "blk.0.ffn_down.bias");
}

// Gemma 3: the pattern is a period (every n-th layer global) or one flag per layer (true = sliding);
// llama.cpp's default is a period of 6. The query scale is 1/sqrt(head_dim), except for the 27B
// model (62 layers), which scales by 1/sqrt(hidden/heads).
static rill_status read_gemma3(config_src *src, const gguf_file *f, rill_model_config *c) {
    char key[160];
    snprintf(key, sizeof key, "%s.attention.sliding_window_pattern", src->gguf_arch);
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (kv && kv->type != GGUF_VAL_ARRAY)
        TRY(read_int(src, f, "attention.sliding_window_pattern", false, 1 << 14, &c->sliding_window_pattern));
    if (kv && kv->type == GGUF_VAL_ARRAY && c->n_layers > 0) {
        if (kv->arr_len != (uint64_t)c->n_layers)
            return rill_fail(RILL_EFORMAT, "%s: %s: %llu entries for %d layers", src->file, key,
                             (unsigned long long)kv->arr_len, c->n_layers);
        c->layer_attn = rill_calloc((size_t)c->n_layers, sizeof *c->layer_attn);
        if (!c->layer_attn) return RILL_ENOMEM;
        for (int i = 0; i < c->n_layers; i++) {
            int64_t v;
            if (!gguf_arr_i64(kv, (uint64_t)i, &v))
                return rill_fail(RILL_EFORMAT, "%s: %s[%d]: expected a boolean", src->file, key, i);
            c->layer_attn[i] = v ? ATTN_SLIDING : ATTN_GLOBAL;
        }
        c->sliding_window_pattern = 0;
    }
    if (c->n_layers == 62 && c->n_heads > 0) c->query_pre_attn_scalar = (double)c->hidden_size / c->n_heads;
    return RILL_OK;
}

// DeepSeek V2/V3 ("deepseek2"). Newer converters absorb MLA into MQA form: key_length is then
// kv_lora_rank + rope dims and the per-head q/k and v sizes move to key_length_mla/value_length_mla.
static rill_status read_deepseek(config_src *src, const gguf_file *f, rill_model_config *c) {
    int key_len = c->head_dim, val_len = 0, gating = 0;
    TRY(read_int(src, f, "attention.value_length", false, 1 << 14, &val_len));
    TRY(read_int(src, f, "attention.key_length_mla", false, 1 << 14, &key_len));
    TRY(read_int(src, f, "attention.value_length_mla", false, 1 << 14, &val_len));
    TRY(read_int(src, f, "rope.dimension_count", false, 1 << 14, &c->qk_rope_head_dim));
    TRY(read_int(src, f, "expert_gating_func", false, 16, &gating));
    c->head_dim = key_len;
    c->v_head_dim = val_len;
    c->qk_nope_head_dim = key_len > c->qk_rope_head_dim ? key_len - c->qk_rope_head_dim : 0;
    c->n_kv_heads = c->n_heads; // as transformers counts them; GGUF's MQA form says 1
    snprintf(c->scoring_func, sizeof c->scoring_func, "%s", gating == 2 ? "sigmoid" : "softmax");
    snprintf(c->topk_method, sizeof c->topk_method, "%s",
             gating == 2      ? "noaux_tc"
             : c->n_group > 1 ? "group_limited_greedy"
                              : "greedy");
    return RILL_OK;
}

static rill_status parse(config_src *src, const gguf_file *f, rill_model_config *c) {
    TRY(read_arch(src, f, c));
    TRY(read_table(src, f, &config_model_fields, c));
    TRY(read_rope_scaling(src, f, c));
    TRY(read_vocab_and_tokens(src, f, c));
    read_tensor_facts(f, c);
    if (c->arch == MODEL_ARCH_GEMMA3) TRY(read_gemma3(src, f, c));
    if (c->arch == MODEL_ARCH_DEEPSEEK_V3) TRY(read_deepseek(src, f, c));
    return config_finish(c, src);
}

rill_status model_config_from_gguf(const gguf_file *f, const char *path, rill_model_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    config_src src = {.file = path, .prefix = ""};
    rill_status st = parse(&src, f, cfg);
    if (st != RILL_OK) model_config_free(cfg);
    return st;
}
