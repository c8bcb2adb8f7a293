// model_info.c: builds the `rill inspect` report for a GGUF file, a safetensors file or a model
// folder (config.json + safetensors shards + tokenizer files). Everything it reads goes through
// the hostile-input readers (gguf.c, safetensors_*.c, config.c); this file only summarizes.
#include "io/model_info.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/gguf.h"
#include "io/safetensors.h"
#include "model/config.h"

// Adds `bytes` to report["bytes_by_type"][type].
static void add_bytes(json_t *report, const char *type, uint64_t bytes) {
    json_t *by = json_object_get(report, "bytes_by_type");
    json_t *cur = json_object_get(by, type);
    json_int_t n = (cur ? json_integer_value(cur) : 0) + (json_int_t)bytes;
    json_object_set_new(by, type, json_integer(n));
}

static json_t *new_report(const char *format, const char *path) {
    json_t *r = json_object();
    json_object_set_new(r, "path", json_string(path));
    json_object_set_new(r, "format", json_string(format));
    json_object_set_new(r, "bytes_by_type", json_object());
    return r;
}

// The config fields every report carries, from the one config struct (config.h).
static void add_config(json_t *report, const rill_model_config *cfg) {
    json_object_set_new(report, "architecture", json_string(cfg->model_type));
    json_t *c = json_object();
    json_object_set_new(c, "n_layers", json_integer(cfg->n_layers));
    json_object_set_new(c, "hidden_size", json_integer(cfg->hidden_size));
    json_object_set_new(c, "n_heads", json_integer(cfg->n_heads));
    json_object_set_new(c, "n_kv_heads", json_integer(cfg->n_kv_heads));
    json_object_set_new(c, "head_dim", json_integer(cfg->head_dim));
    json_object_set_new(c, "intermediate_size", json_integer(cfg->intermediate_size));
    json_object_set_new(c, "vocab_size", json_integer(cfg->vocab_size));
    json_object_set_new(c, "max_position_embeddings", json_integer(cfg->max_position_embeddings));
    json_object_set_new(c, "rope_theta", json_real(cfg->rope_theta));
    json_object_set_new(c, "rms_norm_eps", json_real(cfg->rms_norm_eps));
    json_object_set_new(c, "tie_word_embeddings", json_boolean(cfg->tie_word_embeddings));
    if (cfg->sliding_window) json_object_set_new(c, "sliding_window", json_integer(cfg->sliding_window));
    if (cfg->n_routed_experts) {
        json_object_set_new(c, "n_routed_experts", json_integer(cfg->n_routed_experts));
        json_object_set_new(c, "num_experts_per_tok", json_integer(cfg->num_experts_per_tok));
    }
    if (cfg->kv_lora_rank) json_object_set_new(c, "kv_lora_rank", json_integer(cfg->kv_lora_rank));
    if (cfg->quant.enabled) {
        json_t *q = json_object();
        json_object_set_new(q, "bits", json_integer(cfg->quant.bits));
        json_object_set_new(q, "group_size", json_integer(cfg->quant.group_size));
        json_object_set_new(c, "quantization", q);
    }
    json_object_set_new(report, "config", c);
}

static void add_tokenizer(json_t *report, const char *kind, int64_t vocab, int chat_template) {
    json_t *t = json_object();
    json_object_set_new(t, "kind", kind ? json_string(kind) : json_null());
    if (vocab >= 0) json_object_set_new(t, "vocab_size", json_integer(vocab));
    json_object_set_new(report, "tokenizer", t);
    json_object_set_new(report, "chat_template", json_boolean(chat_template));
}

static const char *gguf_tokenizer_kind(const char *model) {
    if (!strcmp(model, "gpt2")) return "byte-level BPE (gpt2)";
    if (!strcmp(model, "llama")) return "SentencePiece BPE (llama)";
    return model;
}

static rill_status inspect_gguf(const char *path, json_t **out) {
    gguf_file *f;
    rill_status st = gguf_open(path, &f);
    if (st != RILL_OK) return st;
    json_t *r = new_report("gguf", path);
    json_object_set_new(r, "gguf_version", json_integer(f->version));
    gguf_string s;
    if (gguf_get_str(f, "general.name", &s)) json_object_set_new(r, "name", json_stringn(s.ptr, s.len));
    rill_model_config cfg;
    st = model_config_from_gguf(f, path, &cfg);
    if (st != RILL_OK) goto fail;
    add_config(r, &cfg);
    model_config_free(&cfg);

    uint64_t params = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        params += t->n_elements;
        add_bytes(r, gguf_dtype_info(t->type)->name, t->n_bytes);
    }
    json_object_set_new(r, "tensor_count", json_integer((json_int_t)f->n_tensors));
    json_object_set_new(r, "parameter_count", json_integer((json_int_t)params));

    char model[64] = "";
    if (gguf_get_str(f, "tokenizer.ggml.model", &s)) snprintf(model, sizeof model, "%.*s", (int)s.len, s.ptr);
    const gguf_kv *tokens = gguf_find_kv(f, "tokenizer.ggml.tokens");
    add_tokenizer(r, model[0] ? gguf_tokenizer_kind(model) : NULL,
                  tokens && tokens->type == GGUF_VAL_ARRAY ? (int64_t)tokens->arr_len : -1,
                  gguf_find_kv(f, "tokenizer.chat_template") != NULL);
    gguf_close(f);
    *out = r;
    return RILL_OK;
fail:
    json_decref(r);
    gguf_close(f);
    return st;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !memcmp(s + n - m, suffix, m);
}

// Counts the tensors of a safetensors set. An MLX-quantized linear layer (`X.weight` as U32 with
// `X.scales` beside it) counts as one "affine-qB-gG" entry of weight + scales + biases bytes,
// with its logical parameter count; the bits come from the config's quantization block.
static void count_tensors(json_t *r, const safetensors_set *set, const rill_model_config *cfg) {
    uint64_t params = 0;
    char module[512], label[64];
    for (size_t i = 0; i < set->n_tensors; i++) {
        const safetensors_tensor *t = set->tensors[i];
        int bits = 0, group = 0;
        bool quantized = false;
        if (cfg && t->dtype == DTYPE_U32 && ends_with(t->name, ".weight") && strlen(t->name) < sizeof module - 8) {
            snprintf(module, sizeof module, "%.*s", (int)(strlen(t->name) - 7), t->name);
            char scales[sizeof module + 8];
            snprintf(scales, sizeof scales, "%s.scales", module);
            quantized = safetensors_set_find(set, scales) && model_config_quant_for(cfg, module, &bits, &group);
        }
        if (quantized) {
            params += t->n_elements * 32 / (uint64_t)bits;
            snprintf(label, sizeof label, "affine-q%d-g%d", bits, group);
            add_bytes(r, label, t->n_bytes);
            continue;
        }
        if (cfg && (ends_with(t->name, ".scales") || ends_with(t->name, ".biases"))) {
            snprintf(module, sizeof module, "%.*s", (int)(strlen(t->name) - 7), t->name);
            char weight[sizeof module + 8];
            snprintf(weight, sizeof weight, "%s.weight", module);
            const safetensors_tensor *w = safetensors_set_find(set, weight);
            if (w && w->dtype == DTYPE_U32 && model_config_quant_for(cfg, module, &bits, &group)) {
                snprintf(label, sizeof label, "affine-q%d-g%d", bits, group);
                add_bytes(r, label, t->n_bytes);
                continue;
            }
        }
        params += t->n_elements;
        add_bytes(r, dtype_name(t->dtype), t->n_bytes);
    }
    json_object_set_new(r, "tensor_count", json_integer((json_int_t)set->n_tensors));
    json_object_set_new(r, "parameter_count", json_integer((json_int_t)params));
}

static bool file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

// True when `node` or any object nested in it has "type": `type` (Sequence pre-tokenizers and
// decoders nest their parts); the depth is bounded against hostile nesting.
static bool has_type(const json_t *node, const char *type, int depth) {
    if (depth > 16) return false;
    if (json_is_object(node)) {
        const char *t = json_string_value(json_object_get(node, "type"));
        if (t && !strcmp(t, type)) return true;
        const char *key;
        json_t *value;
        json_object_foreach((json_t *)node, key, value) if (has_type(value, type, depth + 1)) return true;
    } else if (json_is_array(node)) {
        size_t i;
        json_t *value;
        json_array_foreach(node, i, value) if (has_type(value, type, depth + 1)) return true;
    }
    return false;
}

// tokenizer.json's model type ("BPE", "Unigram", ...), with "byte-level" when its pre-tokenizer
// or decoder is ByteLevel; and whether a chat template ships in tokenizer_config.json or beside it.
static rill_status inspect_folder_tokenizer(json_t *r, const char *dir) {
    char path[4096];
    const char *kind = NULL;
    char kind_buf[64];
    int64_t vocab = -1;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (file_exists(path)) {
        json_error_t err;
        json_t *tok = json_load_file(path, 0, &err);
        if (!tok)
            return rill_fail(RILL_EFORMAT, "%s: line %d, column %d: %s", path, err.line, err.column, err.text);
        json_t *model = json_object_get(tok, "model");
        const char *type = json_string_value(json_object_get(model, "type"));
        bool byte_level = has_type(json_object_get(tok, "pre_tokenizer"), "ByteLevel", 0) ||
                          has_type(json_object_get(tok, "decoder"), "ByteLevel", 0);
        snprintf(kind_buf, sizeof kind_buf, "%s%s", byte_level ? "byte-level " : "", type ? type : "unknown");
        kind = kind_buf;
        json_t *vocab_obj = json_object_get(model, "vocab");
        if (json_is_object(vocab_obj)) vocab = (int64_t)json_object_size(vocab_obj);
        else if (json_is_array(vocab_obj)) vocab = (int64_t)json_array_size(vocab_obj);
        json_decref(tok);
    }
    int chat = 0;
    snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
    if (file_exists(path)) chat = 1;
    snprintf(path, sizeof path, "%s/chat_template.json", dir);
    if (file_exists(path)) chat = 1;
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    if (!chat && file_exists(path)) {
        json_error_t err;
        json_t *tc = json_load_file(path, 0, &err);
        if (!tc)
            return rill_fail(RILL_EFORMAT, "%s: line %d, column %d: %s", path, err.line, err.column, err.text);
        chat = json_object_get(tc, "chat_template") != NULL;
        json_decref(tc);
    }
    add_tokenizer(r, kind, vocab, chat);
    return RILL_OK;
}

static rill_status inspect_folder(const char *dir, json_t **out) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (!file_exists(path)) return rill_fail(RILL_ENOTFOUND, "%s: not a model folder: no config.json", dir);
    rill_model_config cfg;
    rill_status st = model_config_from_json_file(path, &cfg);
    if (st != RILL_OK) return st;
    safetensors_set *set;
    st = safetensors_set_open(dir, &set);
    if (st != RILL_OK) {
        model_config_free(&cfg);
        return st;
    }
    json_t *r = new_report("folder", dir);
    json_object_set_new(r, "files", json_integer((json_int_t)set->n_files));
    add_config(r, &cfg);
    count_tensors(r, set, &cfg);
    safetensors_set_close(set);
    model_config_free(&cfg);
    st = inspect_folder_tokenizer(r, dir);
    if (st != RILL_OK) {
        json_decref(r);
        return st;
    }
    *out = r;
    return RILL_OK;
}

static rill_status inspect_safetensors(const char *path, json_t **out) {
    safetensors_set *set;
    rill_status st = safetensors_set_open(path, &set);
    if (st != RILL_OK) return st;
    json_t *r = new_report("safetensors", path);
    json_t *meta = json_object();
    const safetensors_file *f = set->files[0];
    for (size_t i = 0; i < f->n_meta; i++) json_object_set_new(meta, f->meta_keys[i], json_string(f->meta_values[i]));
    json_object_set_new(r, "metadata", meta);
    count_tensors(r, set, NULL);
    safetensors_set_close(set);
    *out = r;
    return RILL_OK;
}

rill_status model_info_build(const char *path, json_t **out) {
    struct stat st;
    if (stat(path, &st) != 0)
        return rill_fail(errno == ENOENT ? RILL_ENOTFOUND : RILL_EIO, "%s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) return inspect_folder(path, out);
    unsigned char magic[4] = {0};
    FILE *fp = fopen(path, "rb");
    if (!fp) return rill_fail(RILL_EIO, "%s: cannot open: %s", path, strerror(errno));
    size_t got = fread(magic, 1, 4, fp);
    fclose(fp);
    if (got == 4 && !memcmp(magic, "GGUF", 4)) return inspect_gguf(path, out);
    if (ends_with(path, ".gguf")) return inspect_gguf(path, out); // reports the bad magic
    return inspect_safetensors(path, out);
}
