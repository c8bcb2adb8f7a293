// synth.c: writes a model folder with real shapes and random weights (rill synth). Values are
// drawn so the model is numerically tame (weights ~ U(-0.035, 0.035), norms near 1), and packed
// affine weights are random codes with per-group scales and biases of the same spread, written
// straight in MLX's layout: speed depends on the shapes and bytes, never on the values.
#include "model/synth.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/alloc.h"
#include "base/atomic_file.h"
#include "base/half.h"
#include "base/progress.h"
#include "io/safetensors.h"
#include "model/config.h"

typedef struct {
    const char *name;
    const char *config;
} preset;

static const preset presets[] = {
    {"smollm2-135m",
     "{\"model_type\":\"llama\",\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":49152,\"hidden_size\":576,"
     "\"intermediate_size\":1536,\"num_hidden_layers\":30,\"num_attention_heads\":9,\"num_key_value_heads\":3,"
     "\"rms_norm_eps\":1e-05,\"rope_theta\":100000.0,\"max_position_embeddings\":8192,\"tie_word_embeddings\":true,"
     "\"hidden_act\":\"silu\",\"bos_token_id\":1,\"eos_token_id\":2,\"torch_dtype\":\"bfloat16\"}"},
    {"llama3-8b",
     "{\"model_type\":\"llama\",\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":128256,\"hidden_size\":4096,"
     "\"intermediate_size\":14336,\"num_hidden_layers\":32,\"num_attention_heads\":32,\"num_key_value_heads\":8,"
     "\"rms_norm_eps\":1e-05,\"rope_theta\":500000.0,\"max_position_embeddings\":131072,"
     "\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
     "\"original_max_position_embeddings\":8192},\"tie_word_embeddings\":false,\"hidden_act\":\"silu\","
     "\"bos_token_id\":128000,\"eos_token_id\":[128001,128008,128009],\"torch_dtype\":\"bfloat16\"}"},
    {"llama3.2-1b",
     "{\"model_type\":\"llama\",\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":128256,\"hidden_size\":2048,"
     "\"intermediate_size\":8192,\"num_hidden_layers\":16,\"num_attention_heads\":32,\"num_key_value_heads\":8,"
     "\"head_dim\":64,\"rms_norm_eps\":1e-05,\"rope_theta\":500000.0,\"max_position_embeddings\":131072,"
     "\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":32.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
     "\"original_max_position_embeddings\":8192},\"tie_word_embeddings\":true,\"hidden_act\":\"silu\","
     "\"bos_token_id\":128000,\"eos_token_id\":[128001,128008,128009],\"torch_dtype\":\"bfloat16\"}"},
    {"qwen2.5-7b",
     "{\"model_type\":\"qwen2\",\"architectures\":[\"Qwen2ForCausalLM\"],\"vocab_size\":152064,\"hidden_size\":3584,"
     "\"intermediate_size\":18944,\"num_hidden_layers\":28,\"num_attention_heads\":28,\"num_key_value_heads\":4,"
     "\"rms_norm_eps\":1e-06,\"rope_theta\":1000000.0,\"max_position_embeddings\":32768,\"sliding_window\":131072,"
     "\"use_sliding_window\":false,\"max_window_layers\":28,\"tie_word_embeddings\":false,\"hidden_act\":\"silu\","
     "\"bos_token_id\":151643,\"eos_token_id\":151645,\"torch_dtype\":\"bfloat16\"}"},
    {"qwen3-0.6b",
     "{\"model_type\":\"qwen3\",\"architectures\":[\"Qwen3ForCausalLM\"],\"vocab_size\":151936,\"hidden_size\":1024,"
     "\"intermediate_size\":3072,\"num_hidden_layers\":28,\"num_attention_heads\":16,\"num_key_value_heads\":8,"
     "\"head_dim\":128,\"rms_norm_eps\":1e-06,\"rope_theta\":1000000.0,\"max_position_embeddings\":40960,"
     "\"tie_word_embeddings\":true,\"hidden_act\":\"silu\",\"attention_bias\":false,\"bos_token_id\":151643,"
     "\"eos_token_id\":151645,\"torch_dtype\":\"bfloat16\"}"},
    {"gemma3-270m",
     "{\"model_type\":\"gemma3_text\",\"architectures\":[\"Gemma3ForCausalLM\"],\"vocab_size\":262144,"
     "\"hidden_size\":640,\"intermediate_size\":2048,\"num_hidden_layers\":18,\"num_attention_heads\":4,"
     "\"num_key_value_heads\":1,\"head_dim\":256,\"rms_norm_eps\":1e-06,\"rope_theta\":1000000.0,"
     "\"rope_local_base_freq\":10000.0,\"sliding_window\":512,\"max_position_embeddings\":32768,"
     "\"query_pre_attn_scalar\":256,\"hidden_activation\":\"gelu_pytorch_tanh\",\"tie_word_embeddings\":true,"
     "\"bos_token_id\":2,\"eos_token_id\":[1,106],\"torch_dtype\":\"bfloat16\"}"},
};

const char *synth_preset_config(const char *name) {
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (!strcmp(presets[i].name, name)) return presets[i].config;
    return NULL;
}

const char *const *synth_preset_names(void) {
    static const char *names[sizeof presets / sizeof presets[0] + 1];
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        names[i] = presets[i].name;
    return names;
}

// One tensor of the plan: a linear layer (quantized when bits < 16), a norm or a bias vector.
typedef enum { T_LINEAR, T_NORM, T_BIAS } tensor_role;

typedef struct {
    char name[128];
    tensor_role role;
    uint64_t rows, cols; // [rows][cols]; vectors have rows == 1
} planned_tensor;

typedef struct {
    planned_tensor *items; // [n]
    size_t n, cap;
} tensor_plan;

static rill_status plan_add(tensor_plan *p, tensor_role role, uint64_t rows, uint64_t cols, const char *fmt,
                            int layer) {
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 64;
        planned_tensor *items = rill_realloc(p->items, cap * sizeof *items);
        if (!items) return RILL_ENOMEM;
        p->items = items;
        p->cap = cap;
    }
    planned_tensor *t = &p->items[p->n++];
    snprintf(t->name, sizeof t->name, fmt, layer);
    t->role = role;
    t->rows = rows;
    t->cols = cols;
    return RILL_OK;
}

// The HF tensor names and shapes of a llama-family model (llama, mistral, qwen2, qwen3, gemma3).
static rill_status plan_model(const rill_model_config *c, tensor_plan *p) {
    if (c->arch == MODEL_ARCH_DEEPSEEK_V3)
        return rill_fail(RILL_EUNSUPPORTED, "synth: %s (MLA + MoE) is not synthesized yet", c->model_type);
    uint64_t h = (uint64_t)c->hidden_size, ff = (uint64_t)c->intermediate_size, hd = (uint64_t)c->head_dim;
    uint64_t q_dim = (uint64_t)c->n_heads * hd, kv_dim = (uint64_t)c->n_kv_heads * hd;
    rill_status st = plan_add(p, T_LINEAR, (uint64_t)c->vocab_size, h, "model.embed_tokens.weight", 0);
    for (int l = 0; l < c->n_layers && st == RILL_OK; l++) {
        st = plan_add(p, T_NORM, 1, h, "model.layers.%d.input_layernorm.weight", l);
        if (!st) st = plan_add(p, T_LINEAR, q_dim, h, "model.layers.%d.self_attn.q_proj.weight", l);
        if (!st) st = plan_add(p, T_LINEAR, kv_dim, h, "model.layers.%d.self_attn.k_proj.weight", l);
        if (!st) st = plan_add(p, T_LINEAR, kv_dim, h, "model.layers.%d.self_attn.v_proj.weight", l);
        if (!st) st = plan_add(p, T_LINEAR, h, q_dim, "model.layers.%d.self_attn.o_proj.weight", l);
        if (!st && c->qkv_bias) {
            st = plan_add(p, T_BIAS, 1, q_dim, "model.layers.%d.self_attn.q_proj.bias", l);
            if (!st) st = plan_add(p, T_BIAS, 1, kv_dim, "model.layers.%d.self_attn.k_proj.bias", l);
            if (!st) st = plan_add(p, T_BIAS, 1, kv_dim, "model.layers.%d.self_attn.v_proj.bias", l);
        }
        if (!st && c->qk_norm) {
            st = plan_add(p, T_NORM, 1, hd, "model.layers.%d.self_attn.q_norm.weight", l);
            if (!st) st = plan_add(p, T_NORM, 1, hd, "model.layers.%d.self_attn.k_norm.weight", l);
        }
        if (!st) st = plan_add(p, T_NORM, 1, h, "model.layers.%d.post_attention_layernorm.weight", l);
        if (!st && c->arch == MODEL_ARCH_GEMMA3) {
            st = plan_add(p, T_NORM, 1, h, "model.layers.%d.pre_feedforward_layernorm.weight", l);
            if (!st) st = plan_add(p, T_NORM, 1, h, "model.layers.%d.post_feedforward_layernorm.weight", l);
        }
        if (!st) st = plan_add(p, T_LINEAR, ff, h, "model.layers.%d.mlp.gate_proj.weight", l);
        if (!st) st = plan_add(p, T_LINEAR, ff, h, "model.layers.%d.mlp.up_proj.weight", l);
        if (!st) st = plan_add(p, T_LINEAR, h, ff, "model.layers.%d.mlp.down_proj.weight", l);
    }
    if (!st) st = plan_add(p, T_NORM, 1, h, "model.norm.weight", 0);
    if (!st && !c->tie_word_embeddings) st = plan_add(p, T_LINEAR, (uint64_t)c->vocab_size, h, "lm_head.weight", 0);
    return st;
}

// splitmix64: a fast, seedable stream for the random values.
static uint64_t next_random(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float uniform(uint64_t *s, float lo, float hi) {
    return lo + (hi - lo) * (float)((next_random(s) >> 40) * (1.0 / 16777216.0));
}

static const float WEIGHT_SPREAD = 0.035f; // U(-a, a) has the std of N(0, 0.02)

static void fill_bf16(uint16_t *x, uint64_t n, float lo, float hi, uint64_t *s) {
    for (uint64_t i = 0; i < n; i++)
        x[i] = f32_to_bf16(uniform(s, lo, hi));
}

// One tensor's arrays as they go into the shard: a dense bf16 array, or packed + scales + biases.
typedef struct {
    void *data[3];          // [weight | packed, scales, biases]
    safetensors_entry e[3]; // entries pointing at data
    uint64_t shape[3][2];
    char names[3][160];
    int n; // entries used
} tensor_arrays;

static rill_status make_arrays(const planned_tensor *t, const synth_options *o, uint64_t *s, tensor_arrays *a) {
    memset(a, 0, sizeof *a);
    bool quantized = t->role == T_LINEAR && o->bits < 16;
    if (!quantized) {
        uint64_t n = t->rows * t->cols;
        a->data[0] = rill_malloc(n * 2);
        if (!a->data[0]) return RILL_ENOMEM;
        if (t->role == T_NORM)
            fill_bf16(a->data[0], n, 0.9f, 1.1f, s);
        else
            fill_bf16(a->data[0], n, -WEIGHT_SPREAD, WEIGHT_SPREAD, s);
        snprintf(a->names[0], sizeof a->names[0], "%s", t->name);
        a->shape[0][0] = t->rows;
        a->shape[0][1] = t->cols;
        int dims = t->rows == 1 ? 1 : 2;
        a->e[0] =
            (safetensors_entry){a->names[0], DTYPE_BF16, dims, dims == 1 ? &a->shape[0][1] : a->shape[0], a->data[0]};
        a->n = 1;
        return RILL_OK;
    }
    uint64_t words = t->rows * (t->cols * (uint64_t)o->bits / 32),
             groups = t->rows * (t->cols / (uint64_t)o->group_size);
    a->data[0] = rill_malloc(words * 4);
    a->data[1] = rill_malloc(groups * 2);
    a->data[2] = rill_malloc(groups * 2);
    if (!a->data[0] || !a->data[1] || !a->data[2]) return RILL_ENOMEM;
    uint64_t *w64 = a->data[0];
    for (uint64_t i = 0; i < words / 2; i++)
        w64[i] = next_random(s);
    if (words & 1) ((uint32_t *)a->data[0])[words - 1] = (uint32_t)next_random(s);
    float levels = (float)((1 << o->bits) - 1);
    uint16_t *scales = a->data[1], *biases = a->data[2];
    for (uint64_t g = 0; g < groups; g++) {
        float scale = uniform(s, 1.6f, 2.4f) * WEIGHT_SPREAD / levels;
        scales[g] = f32_to_bf16(scale);
        biases[g] = f32_to_bf16(-scale * levels / 2);
    }
    size_t base = strlen(t->name) - strlen(".weight");
    static const char *suffix[3] = {"weight", "scales", "biases"};
    for (int k = 0; k < 3; k++) {
        snprintf(a->names[k], sizeof a->names[k], "%.*s.%s", (int)base, t->name, suffix[k]);
        a->shape[k][0] = t->rows;
        a->shape[k][1] = k == 0 ? t->cols * (uint64_t)o->bits / 32 : t->cols / (uint64_t)o->group_size;
        a->e[k] = (safetensors_entry){a->names[k], k == 0 ? DTYPE_U32 : DTYPE_BF16, 2, a->shape[k], a->data[k]};
    }
    a->n = 3;
    return RILL_OK;
}

static void free_arrays(tensor_arrays *a) {
    for (int k = 0; k < 3; k++)
        rill_free(a->data[k]);
    memset(a, 0, sizeof *a);
}

static uint64_t arrays_bytes(const tensor_arrays *a) {
    uint64_t n = 0;
    for (int k = 0; k < a->n; k++)
        n += rill_alloc_size(a->data[k]);
    return n;
}

// Writes config.json: the input config plus MLX's quantization block (mirrored under
// quantization_config) when the weights are quantized.
static rill_status write_config(const char *config_json, const char *config_name, const synth_options *o,
                                const char *dir) {
    json_error_t err;
    json_t *cfg = json_loads(config_json, 0, &err);
    if (!cfg) return rill_fail(RILL_EFORMAT, "%s: line %d, column %d: %s", config_name, err.line, err.column, err.text);
    if (o->bits < 16) {
        json_t *q = json_pack("{s:i, s:i, s:s}", "group_size", o->group_size, "bits", o->bits, "mode", "affine");
        json_object_set(cfg, "quantization", q);
        json_object_set_new(cfg, "quantization_config", q);
    }
    char *text = json_dumps(cfg, JSON_INDENT(2));
    json_decref(cfg);
    if (!text) return rill_fail(RILL_ENOMEM, "synth: cannot format config.json");
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    rill_status st = atomic_file_write_all(path, text, strlen(text));
    free(text);
    return st;
}

// Writes the shard files (each up to shard_max bytes) and model.safetensors.index.json.
static rill_status write_shards(const tensor_plan *plan, const synth_options *o, const char *dir) {
    uint64_t seed = o->seed ? o->seed : 1, total = 0;
    json_t *weight_map = json_object();
    tensor_arrays *arrays = rill_calloc(plan->n, sizeof *arrays);
    safetensors_entry *entries = rill_calloc(3 * plan->n, sizeof *entries);
    if (!arrays || !entries || !weight_map) {
        rill_free(arrays);
        rill_free(entries);
        json_decref(weight_map);
        return rill_fail(RILL_ENOMEM, "synth: out of memory");
    }
    rill_status st = RILL_OK;
    progress bar;
    progress_begin(&bar, "synth", plan->n);
    int shard = 0;
    for (size_t i = 0; i < plan->n && st == RILL_OK;) {
        uint64_t bytes = 0;
        size_t n_entries = 0, end = i;
        while (end < plan->n && (end == i || bytes < o->shard_max)) {
            st = make_arrays(&plan->items[end], o, &seed, &arrays[end]);
            end++; // a partly made arrays[end - 1] is freed below like the others
            if (st != RILL_OK) break;
            bytes += arrays_bytes(&arrays[end - 1]);
            for (int k = 0; k < arrays[end - 1].n; k++)
                entries[n_entries++] = arrays[end - 1].e[k];
        }
        if (st == RILL_OK) {
            char name[64], path[4096];
            snprintf(name, sizeof name, "model-%05d.safetensors", ++shard);
            snprintf(path, sizeof path, "%s/%s", dir, name);
            st = safetensors_write(path, entries, n_entries, NULL, NULL, 0);
            for (size_t k = 0; k < n_entries; k++)
                json_object_set_new(weight_map, entries[k].name, json_string(name));
            total += bytes;
        }
        for (size_t t = i; t < end; t++)
            free_arrays(&arrays[t]);
        i = end;
        progress_update(&bar, end);
    }
    progress_end(&bar);
    if (st == RILL_OK) {
        json_t *index =
            json_pack("{s:{s:I}, s:o}", "metadata", "total_size", (json_int_t)total, "weight_map", weight_map);
        char *text = json_dumps(index, JSON_INDENT(2));
        json_decref(index);
        char path[4096];
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
        st = text ? atomic_file_write_all(path, text, strlen(text)) : rill_fail(RILL_ENOMEM, "synth: out of memory");
        free(text);
    } else {
        json_decref(weight_map);
    }
    rill_free(arrays);
    rill_free(entries);
    return st;
}

rill_status synth_write_folder(const char *config_json, const char *config_name, const synth_options *opt,
                               const char *out_dir) {
    synth_options o = *opt;
    if (o.bits != 4 && o.bits != 8 && o.bits != 16)
        return rill_fail(RILL_EINVAL, "synth: --bits %d: choose 4 or 8 (affine) or 16 (bf16)", o.bits);
    if (!o.group_size) o.group_size = 64;
    if (!o.shard_max) o.shard_max = (uint64_t)2 << 30;
    rill_model_config cfg;
    rill_status st = model_config_from_json_string(config_json, config_name, &cfg);
    if (st != RILL_OK) return st;
    tensor_plan plan = {0};
    st = plan_model(&cfg, &plan);
    for (size_t i = 0; st == RILL_OK && o.bits < 16 && i < plan.n; i++)
        if (plan.items[i].role == T_LINEAR && plan.items[i].cols % (uint64_t)o.group_size)
            st = rill_fail(RILL_EINVAL, "synth: %s has %llu columns, not a multiple of the group size %d",
                           plan.items[i].name, (unsigned long long)plan.items[i].cols, o.group_size);
    model_config_free(&cfg);
    if (st == RILL_OK && mkdir(out_dir, 0755) != 0 && errno != EEXIST)
        st = rill_fail(RILL_EIO, "%s: cannot create the folder: %s", out_dir, strerror(errno));
    if (st == RILL_OK) st = write_shards(&plan, &o, out_dir);
    if (st == RILL_OK) st = write_config(config_json, config_name, &o, out_dir);
    rill_free(plan.items);
    return st;
}
