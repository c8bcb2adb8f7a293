// config.c: the parts of the model config shared by the config.json and GGUF readers: the field
// table (one row per scalar field, naming its JSON key and its GGUF key), transformers' family
// defaults, the final derivation and validation, the quantization lookup and freeing.
// The readers themselves live in config_json.c and config_gguf.c.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "model/config_fields.h"

#define BIG 1e12 // an upper bound for values that have no natural one (RoPE bases, scales)

#define FIELD(kind_, st, member, j0, j1, g, lo, hi, req)                                                               \
    {                                                                                                                  \
        .kind = kind_, .offset = offsetof(st, member), .cap = sizeof(((st *)0)->member), .json = {j0, j1}, .gguf = g,  \
        .min = lo, .max = hi, .required = req                                                                          \
    }
#define MI(member, j0, j1, g, lo, hi, req) FIELD(FIELD_INT, rill_model_config, member, j0, j1, g, lo, hi, req)
#define MF(member, j0, g, lo, hi)          FIELD(FIELD_F64, rill_model_config, member, j0, NULL, g, lo, hi, false)
#define MB(member, j0, g)                  FIELD(FIELD_BOOL, rill_model_config, member, j0, NULL, g, 0, 1, false)
#define MS(member, j0, j1)                 FIELD(FIELD_STR, rill_model_config, member, j0, j1, NULL, 0, 0, false)

static const config_field model_fields[] = {
    MI(vocab_size, "vocab_size", NULL, "vocab_size", 1, 1 << 24, true),
    MI(hidden_size, "hidden_size", NULL, "embedding_length", 1, 1 << 20, true),
    MI(intermediate_size, "intermediate_size", NULL, "feed_forward_length", 1, 1 << 22, true),
    MI(n_layers, "num_hidden_layers", NULL, "block_count", 1, 1 << 14, true),
    MI(n_heads, "num_attention_heads", NULL, "attention.head_count", 1, 1 << 14, true),
    MI(n_kv_heads, "num_key_value_heads", NULL, "attention.head_count_kv", 1, 1 << 14, false),
    MI(head_dim, "head_dim", NULL, "attention.key_length", 1, 1 << 14, false),
    MF(rms_norm_eps, "rms_norm_eps", "attention.layer_norm_rms_epsilon", 1e-12, 1),
    MS(hidden_act, "hidden_activation", "hidden_act"),
    MI(max_position_embeddings, "max_position_embeddings", NULL, "context_length", 1, 1 << 30, false),
    MB(tie_word_embeddings, "tie_word_embeddings", NULL),
    MS(torch_dtype, "torch_dtype", "dtype"),
    MF(rope_theta, "rope_theta", "rope.freq_base", 1e-3, BIG),
    MF(rope_local_theta, "rope_local_base_freq", "rope.freq_base_swa", 1e-3, BIG),
    MI(sliding_window, "sliding_window", NULL, "attention.sliding_window", 0, 1 << 30, false),
    MI(sliding_window_pattern, "sliding_window_pattern", "_sliding_window_pattern", NULL, 1, 1 << 14, false),
    MB(use_sliding_window, "use_sliding_window", NULL),
    MI(max_window_layers, "max_window_layers", NULL, NULL, 0, 1 << 14, false),
    MB(attention_bias, "attention_bias", NULL),
    MB(mlp_bias, "mlp_bias", NULL),
    MF(query_pre_attn_scalar, "query_pre_attn_scalar", NULL, 1e-6, BIG),
    MF(final_logit_softcapping, "final_logit_softcapping", "final_logit_softcapping", 0, BIG),
    MF(attn_logit_softcapping, "attn_logit_softcapping", "attn_logit_softcapping", 0, BIG),
    MI(n_routed_experts, "n_routed_experts", NULL, "expert_count", 0, 1 << 16, false),
    MI(n_shared_experts, "n_shared_experts", NULL, "expert_shared_count", 0, 1 << 16, false),
    MI(num_experts_per_tok, "num_experts_per_tok", NULL, "expert_used_count", 0, 1 << 16, false),
    MI(moe_intermediate_size, "moe_intermediate_size", NULL, "expert_feed_forward_length", 0, 1 << 22, false),
    MI(first_k_dense_replace, "first_k_dense_replace", NULL, "leading_dense_block_count", 0, 1 << 14, false),
    MI(moe_layer_freq, "moe_layer_freq", NULL, NULL, 1, 1 << 14, false),
    MI(n_group, "n_group", NULL, "expert_group_count", 0, 1 << 16, false),
    MI(topk_group, "topk_group", NULL, "expert_group_used_count", 0, 1 << 16, false),
    MF(routed_scaling_factor, "routed_scaling_factor", "expert_weights_scale", 0, BIG),
    MB(norm_topk_prob, "norm_topk_prob", "expert_weights_norm"),
    MS(scoring_func, "scoring_func", NULL),
    MS(topk_method, "topk_method", NULL),
    MI(q_lora_rank, "q_lora_rank", NULL, "attention.q_lora_rank", 0, 1 << 20, false),
    MI(kv_lora_rank, "kv_lora_rank", NULL, "attention.kv_lora_rank", 0, 1 << 20, false),
    MI(qk_nope_head_dim, "qk_nope_head_dim", NULL, NULL, 0, 1 << 14, false),
    MI(qk_rope_head_dim, "qk_rope_head_dim", NULL, NULL, 0, 1 << 14, false),
    MI(v_head_dim, "v_head_dim", NULL, NULL, 0, 1 << 14, false),
};

#define RF(member, j0, g, lo, hi) FIELD(FIELD_F64, rope_scaling, member, j0, NULL, g, lo, hi, false)
static const config_field rope_fields[] = {
    RF(factor, "factor", "rope.scaling.factor", 1e-6, 1e6),
    RF(low_freq_factor, "low_freq_factor", NULL, 1e-6, 1e6),
    RF(high_freq_factor, "high_freq_factor", NULL, 1e-6, 1e6),
    FIELD(FIELD_INT, rope_scaling, original_max_position_embeddings, "original_max_position_embeddings", NULL,
          "rope.scaling.original_context_length", 1, 1 << 30, false),
    RF(beta_fast, "beta_fast", "rope.scaling.yarn_beta_fast", 0, 1e6),
    RF(beta_slow, "beta_slow", "rope.scaling.yarn_beta_slow", 0, 1e6),
    RF(mscale, "mscale", NULL, 0, 1e6),
    RF(mscale_all_dim, "mscale_all_dim", NULL, 0, 1e6),
};

static const config_field quant_fields[] = {
    FIELD(FIELD_INT, quant_config, group_size, "group_size", NULL, NULL, 1, 1 << 16, true),
    FIELD(FIELD_INT, quant_config, bits, "bits", NULL, NULL, 1, 64, true),
    FIELD(FIELD_STR, quant_config, mode, "mode", NULL, NULL, 0, 0, false),
};

#define TABLE(t)                                                                                                       \
    { t, sizeof(t) / sizeof(t[0]) }
const config_table config_model_fields = TABLE(model_fields);
const config_table config_rope_fields = TABLE(rope_fields);
const config_table config_quant_fields = TABLE(quant_fields);

// ---- names, ranges, storing ----

const char *config_field_name(config_src *src, const config_field *fd) {
    char *buf = src->buf[src->next_buf++ % 4];
    if (src->gguf_arch && fd->gguf)
        snprintf(buf, sizeof src->buf[0], "%s.%s", src->gguf_arch, fd->gguf);
    else
        snprintf(buf, sizeof src->buf[0], "%s%s", src->prefix ? src->prefix : "", fd->json[0]);
    return buf;
}

const char *config_model_field_name(config_src *src, size_t offset) {
    for (size_t i = 0; i < config_model_fields.n; i++)
        if (model_fields[i].offset == offset) return config_field_name(src, &model_fields[i]);
    return "?";
}

rill_status config_check_range(config_src *src, const config_field *fd, double v) {
    if (fd->kind == FIELD_BOOL || fd->kind == FIELD_STR || (v >= fd->min && v <= fd->max)) return RILL_OK;
    return rill_fail(RILL_ERANGE, "%s: %s: %g is outside the allowed range [%g, %g]", src->file,
                     config_field_name(src, fd), v, fd->min, fd->max);
}

void config_store_num(const config_field *fd, void *base, double v) {
    char *p = (char *)base + fd->offset;
    switch (fd->kind) {
    case FIELD_INT: *(int *)p = (int)v; break;
    case FIELD_F64: *(double *)p = v; break;
    case FIELD_BOOL: *(bool *)p = v != 0; break;
    case FIELD_STR: p[0] = '\0'; break;
    }
}

rill_status config_store_str(config_src *src, const config_field *fd, void *base, const char *s, size_t len) {
    if (len >= fd->cap || memchr(s, '\0', len))
        return rill_fail(RILL_ERANGE, "%s: %s: string of %zu bytes is too long or holds a NUL (at most %zu)", src->file,
                         config_field_name(src, fd), len, fd->cap - 1);
    char *p = (char *)base + fd->offset;
    memcpy(p, s, len);
    p[len] = '\0';
    return RILL_OK;
}

// ---- families ----

static const struct {
    const char *name;  // our name, and config.json model_type
    const char *alias; // another model_type of the same family
    const char *gguf;  // GGUF general.architecture
} arch_names[MODEL_ARCH_COUNT] = {
    [MODEL_ARCH_LLAMA] = {"llama", NULL, "llama"},
    [MODEL_ARCH_MISTRAL] = {"mistral", NULL, NULL},
    [MODEL_ARCH_QWEN2] = {"qwen2", NULL, "qwen2"},
    [MODEL_ARCH_QWEN3] = {"qwen3", NULL, "qwen3"},
    [MODEL_ARCH_GEMMA3] = {"gemma3", "gemma3_text", "gemma3"},
    [MODEL_ARCH_DEEPSEEK_V3] = {"deepseek_v3", NULL, "deepseek2"},
};

const char *model_arch_name(model_arch arch) {
    return (unsigned)arch < MODEL_ARCH_COUNT ? arch_names[arch].name : "unknown";
}

bool config_arch_from_name(const char *name, bool gguf, model_arch *arch) {
    for (int a = 0; a < MODEL_ARCH_COUNT; a++) {
        const char *n1 = gguf ? arch_names[a].gguf : arch_names[a].name;
        const char *n2 = gguf ? NULL : arch_names[a].alias;
        if ((n1 && !strcmp(name, n1)) || (n2 && !strcmp(name, n2))) {
            *arch = (model_arch)a;
            return true;
        }
    }
    return false;
}

static const char *rope_names[] = {"default", "linear", "dynamic", "llama3", "yarn"};

const char *rope_scaling_name(rope_scaling_type t) {
    return (unsigned)t < sizeof rope_names / sizeof rope_names[0] ? rope_names[t] : "unknown";
}

bool config_rope_type_from_name(const char *name, rope_scaling_type *t) {
    if (!strcmp(name, "none")) name = "default"; // GGUF spelling
    for (size_t i = 0; i < sizeof rope_names / sizeof rope_names[0]; i++)
        if (!strcmp(name, rope_names[i])) {
            *t = (rope_scaling_type)i;
            return true;
        }
    return false;
}

void config_rope_defaults(rope_scaling *rs) {
    rope_scaling_type t = rs->type;
    *rs = (rope_scaling){.type = t, .factor = 1};
    if (t == ROPE_SCALING_LLAMA3) {
        rs->low_freq_factor = 1;
        rs->high_freq_factor = 4;
        rs->original_max_position_embeddings = 8192;
    } else if (t == ROPE_SCALING_YARN) {
        rs->beta_fast = 32;
        rs->beta_slow = 1;
        rs->mscale = 1;
    }
}

static void set_str(char *dst, size_t cap, const char *s) { snprintf(dst, cap, "%s", s); }

// DeepSeek-V3's MoE and MLA sizes as transformers' DeepseekV3Config defaults them.
static void deepseek_hf_sizes(rill_model_config *c) {
    c->moe_intermediate_size = 2048;
    c->n_shared_experts = 1;
    c->n_routed_experts = 256;
    c->num_experts_per_tok = 8;
    c->first_k_dense_replace = 3;
    c->n_group = 8;
    c->topk_group = 4;
    c->routed_scaling_factor = 2.5;
    c->q_lora_rank = 1536;
    c->kv_lora_rank = 512;
    c->qk_nope_head_dim = 128;
    c->qk_rope_head_dim = 64;
    c->v_head_dim = 128;
}

void config_set_defaults(rill_model_config *c, model_arch arch, bool hf_sizes) {
    c->arch = arch;
    c->rms_norm_eps = 1e-6;
    c->rope_theta = 10000;
    c->rope_scaling = (rope_scaling){.type = ROPE_SCALING_NONE, .factor = 1};
    c->max_position_embeddings = 2048;
    c->bos_id = -1;
    c->moe_layer_freq = 1;
    set_str(c->hidden_act, sizeof c->hidden_act, "silu");
    switch (arch) {
    case MODEL_ARCH_LLAMA: c->bos_id = 1; break;
    case MODEL_ARCH_MISTRAL:
        c->bos_id = 1;
        c->max_position_embeddings = 4096 * 32;
        c->sliding_window = 4096;
        break;
    case MODEL_ARCH_QWEN2:
    case MODEL_ARCH_QWEN3:
        c->max_position_embeddings = 32768;
        c->sliding_window = 4096;
        c->max_window_layers = 28;
        if (arch == MODEL_ARCH_QWEN3 && hf_sizes) c->head_dim = 128;
        break;
    case MODEL_ARCH_GEMMA3:
        c->bos_id = 2;
        c->max_position_embeddings = 131072;
        c->rope_theta = 1e6;
        c->rope_local_theta = 1e4;
        c->sliding_window = 4096;
        c->sliding_window_pattern = 6;
        c->tie_word_embeddings = true;
        set_str(c->hidden_act, sizeof c->hidden_act, "gelu_pytorch_tanh");
        if (hf_sizes) {
            c->head_dim = 256;
            c->query_pre_attn_scalar = 256;
        }
        break;
    case MODEL_ARCH_DEEPSEEK_V3:
        c->bos_id = 0;
        c->max_position_embeddings = 4096;
        c->norm_topk_prob = true;
        set_str(c->scoring_func, sizeof c->scoring_func, "sigmoid");
        set_str(c->topk_method, sizeof c->topk_method, "noaux_tc");
        if (hf_sizes) deepseek_hf_sizes(c);
        break;
    default: break;
    }
}

int config_default_eos(model_arch arch) {
    switch (arch) {
    case MODEL_ARCH_LLAMA:
    case MODEL_ARCH_MISTRAL: return 2;
    case MODEL_ARCH_GEMMA3:
    case MODEL_ARCH_DEEPSEEK_V3: return 1;
    default: return -1;
    }
}

rill_status config_set_eos(rill_model_config *cfg, config_src *src, const char *what, const int64_t *ids, int n) {
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] > INT32_MAX)
            return rill_fail(RILL_ERANGE, "%s: %s: token id %lld is out of range", src->file, what, (long long)ids[i]);
    int *e = n ? rill_malloc((size_t)n * sizeof *e) : NULL;
    if (n && !e) return RILL_ENOMEM;
    for (int i = 0; i < n; i++)
        e[i] = (int)ids[i];
    rill_free(cfg->eos_ids);
    cfg->eos_ids = e;
    cfg->n_eos = n;
    return RILL_OK;
}

rill_status config_check_quant(config_src *src, const char *what, int bits, int group_size) {
    if (bits < 2 || bits > 8 || bits == 7)
        return rill_fail(RILL_EUNSUPPORTED, "%s: %s.bits: %d bits is not supported (2, 3, 4, 5, 6 or 8)", src->file,
                         what, bits);
    if (group_size != 16 && group_size != 32 && group_size != 64 && group_size != 128)
        return rill_fail(RILL_EUNSUPPORTED, "%s: %s.group_size: %d is not supported (32, 64 or 128; 16 for repacks)",
                         src->file, what, group_size);
    return RILL_OK;
}

// ---- derivation and validation ----

#define NAME(member) config_model_field_name(src, offsetof(rill_model_config, member))

static rill_status check_required(rill_model_config *c, config_src *src) {
    for (size_t i = 0; i < config_model_fields.n; i++) {
        const config_field *fd = &model_fields[i];
        if (fd->required && *(int *)((char *)c + fd->offset) == 0)
            return rill_fail(RILL_EFORMAT, "%s: %s: required field is missing", src->file, config_field_name(src, fd));
    }
    return RILL_OK;
}

static rill_status finish_heads(rill_model_config *c, config_src *src) {
    if (c->n_kv_heads == 0) c->n_kv_heads = c->n_heads;
    if (c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads)
        return rill_fail(RILL_EFORMAT, "%s: %s: %d key/value heads do not divide %d attention heads", src->file,
                         NAME(n_kv_heads), c->n_kv_heads, c->n_heads);
    if (c->kv_lora_rank > 0) { // MLA: the q/k head is a no-RoPE part and a RoPE part
        if (c->qk_rope_head_dim <= 0 || c->qk_nope_head_dim <= 0 || c->v_head_dim <= 0)
            return rill_fail(RILL_EFORMAT, "%s: %s, %s, %s: MLA (kv_lora_rank %d) needs all three head sizes",
                             src->file, NAME(qk_nope_head_dim), NAME(qk_rope_head_dim), NAME(v_head_dim),
                             c->kv_lora_rank);
        c->head_dim = c->qk_nope_head_dim + c->qk_rope_head_dim;
        return RILL_OK;
    }
    if (c->head_dim == 0) {
        if (c->hidden_size % c->n_heads)
            return rill_fail(RILL_EFORMAT, "%s: %s: %d heads do not divide hidden_size %d (and head_dim is not given)",
                             src->file, NAME(n_heads), c->n_heads, c->hidden_size);
        c->head_dim = c->hidden_size / c->n_heads;
    }
    return RILL_OK;
}

static attn_kind derived_kind(const rill_model_config *c, int layer) {
    switch (c->arch) {
    case MODEL_ARCH_GEMMA3:
        return c->sliding_window_pattern > 0 && (layer + 1) % c->sliding_window_pattern ? ATTN_SLIDING : ATTN_GLOBAL;
    case MODEL_ARCH_MISTRAL: return c->sliding_window > 0 ? ATTN_SLIDING : ATTN_GLOBAL;
    case MODEL_ARCH_QWEN2:
    case MODEL_ARCH_QWEN3:
        return c->use_sliding_window && c->sliding_window > 0 && layer >= c->max_window_layers ? ATTN_SLIDING
                                                                                               : ATTN_GLOBAL;
    default: return ATTN_GLOBAL;
    }
}

static rill_status finish_layers(rill_model_config *c, config_src *src) {
    if (!c->layer_attn) {
        c->layer_attn = rill_calloc((size_t)c->n_layers, sizeof *c->layer_attn);
        if (!c->layer_attn) return RILL_ENOMEM;
        for (int i = 0; i < c->n_layers; i++)
            c->layer_attn[i] = derived_kind(c, i);
    }
    bool any = false;
    for (int i = 0; i < c->n_layers; i++)
        any |= c->layer_attn[i] == ATTN_SLIDING;
    if (!any)
        c->sliding_window = 0;
    else if (c->sliding_window <= 0)
        return rill_fail(RILL_EFORMAT, "%s: %s: some layers use sliding attention but no window is given", src->file,
                         NAME(sliding_window));
    return RILL_OK;
}

static rill_status finish_moe(rill_model_config *c, config_src *src) {
    if (c->n_routed_experts == 0) return RILL_OK;
    if (c->num_experts_per_tok < 1 || c->num_experts_per_tok > c->n_routed_experts)
        return rill_fail(RILL_EFORMAT, "%s: %s: %d experts per token out of %d", src->file, NAME(num_experts_per_tok),
                         c->num_experts_per_tok, c->n_routed_experts);
    if (c->moe_intermediate_size <= 0)
        return rill_fail(RILL_EFORMAT, "%s: %s: required for a MoE model", src->file, NAME(moe_intermediate_size));
    if (c->n_group > 0 && (c->n_routed_experts % c->n_group || c->topk_group < 1 || c->topk_group > c->n_group))
        return rill_fail(RILL_EFORMAT, "%s: %s, %s: %d groups with top %d do not fit %d experts", src->file,
                         NAME(n_group), NAME(topk_group), c->n_group, c->topk_group, c->n_routed_experts);
    if (c->first_k_dense_replace > c->n_layers)
        return rill_fail(RILL_EFORMAT, "%s: %s: %d dense layers but only %d layers", src->file,
                         NAME(first_k_dense_replace), c->first_k_dense_replace, c->n_layers);
    return RILL_OK;
}

rill_status config_finish(rill_model_config *c, config_src *src) {
    rill_status st = check_required(c, src);
    if (st == RILL_OK) st = finish_heads(c, src);
    if (st == RILL_OK) st = finish_layers(c, src);
    if (st == RILL_OK) st = finish_moe(c, src);
    if (st != RILL_OK) return st;
    if (c->rope_local_theta == 0) c->rope_local_theta = c->rope_theta;
    if (c->arch == MODEL_ARCH_GEMMA3 && c->query_pre_attn_scalar == 0) c->query_pre_attn_scalar = c->head_dim;
    c->qkv_bias = c->qkv_bias || c->attention_bias || c->arch == MODEL_ARCH_QWEN2;
    c->qk_norm = c->arch == MODEL_ARCH_QWEN3 || c->arch == MODEL_ARCH_GEMMA3;
    return RILL_OK;
}

// ---- public helpers ----

bool model_config_quant_for(const rill_model_config *cfg, const char *module_path, int *bits, int *group_size) {
    const quant_config *q = &cfg->quant;
    if (!q->enabled) return false;
    int b = q->bits, g = q->group_size;
    for (int i = 0; i < q->n_overrides; i++) {
        const quant_override *o = &q->overrides[i];
        if (strcmp(o->module, module_path)) continue;
        if (!o->quantized) return false;
        b = o->bits;
        g = o->group_size;
        break;
    }
    if (bits) *bits = b;
    if (group_size) *group_size = g;
    return true;
}

void model_config_free(rill_model_config *cfg) {
    if (!cfg) return;
    rill_free(cfg->layer_attn);
    rill_free(cfg->eos_ids);
    for (int i = 0; i < cfg->quant.n_overrides; i++)
        rill_free(cfg->quant.overrides[i].module);
    rill_free(cfg->quant.overrides);
    memset(cfg, 0, sizeof *cfg);
}
