// config_json.c: fills a rill_model_config from an HF or MLX config.json. It reads both the older
// layout (rope_theta + rope_scaling, torch_dtype) and transformers 5's (rope_parameters, flat or
// keyed by layer type, and dtype), Gemma 3's nested text_config, and MLX's quantization block
// with per-module overrides. Messages name the file and the JSON path of the field.
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "model/config_fields.h"

#define TRY(x)                                                                                                         \
    do {                                                                                                               \
        rill_status st_ = (x);                                                                                         \
        if (st_ != RILL_OK) return st_;                                                                                \
    } while (0)

static const char *json_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

static rill_status type_error(config_src *src, const char *key, const char *want, const json_t *v) {
    return rill_fail(RILL_EFORMAT, "%s: %s%s: expected %s, got %s", src->file, src->prefix, key, want, json_kind(v));
}

// Reads one value into its field; null stores zero (or ""), meaning "not used".
static rill_status read_value(config_src *src, const config_field *fd, const char *key, const json_t *v, void *base) {
    if (json_is_null(v)) {
        config_store_num(fd, base, 0);
        return RILL_OK;
    }
    switch (fd->kind) {
    case FIELD_INT:
        if (!json_is_integer(v)) return type_error(src, key, "an integer", v);
        break;
    case FIELD_F64:
        if (!json_is_number(v)) return type_error(src, key, "a number", v);
        break;
    case FIELD_BOOL:
        if (!json_is_boolean(v)) return type_error(src, key, "a boolean", v);
        config_store_num(fd, base, json_is_true(v));
        return RILL_OK;
    case FIELD_STR:
        if (!json_is_string(v)) return type_error(src, key, "a string", v);
        return config_store_str(src, fd, base, json_string_value(v), json_string_length(v));
    }
    double x = json_number_value(v);
    TRY(config_check_range(src, fd, x));
    config_store_num(fd, base, x);
    return RILL_OK;
}

static rill_status read_table(config_src *src, const config_table *t, const json_t *obj, void *base) {
    for (size_t i = 0; i < t->n; i++) {
        const config_field *fd = &t->fields[i];
        for (int k = 0; k < 2 && fd->json[k]; k++) {
            const json_t *v = json_object_get(obj, fd->json[k]);
            if (!v) continue;
            TRY(read_value(src, fd, fd->json[k], v, base));
            break;
        }
    }
    return RILL_OK;
}

// Runs read_table on the object at `key` (inside the current prefix), with the prefix extended.
static rill_status read_nested(config_src *src, const char *key, const json_t *obj, const config_table *t, void *base) {
    if (!json_is_object(obj)) return type_error(src, key, "an object", obj);
    char pre[256];
    snprintf(pre, sizeof pre, "%s%s.", src->prefix, key);
    const char *saved = src->prefix;
    src->prefix = pre;
    rill_status st = read_table(src, t, obj, base);
    src->prefix = saved;
    return st;
}

// ---- RoPE ----

static const config_field theta_field = {
    .kind = FIELD_F64, .offset = 0, .cap = sizeof(double), .json = {"rope_theta"}, .min = 1e-3, .max = 1e12};

// One scaling object: its type ("rope_type" or "type"), the type's parameters, and maybe rope_theta.
static rill_status read_rope_obj(config_src *src, const char *key, const json_t *obj, rope_scaling *rs, double *theta) {
    if (!json_is_object(obj)) return type_error(src, key, "an object", obj);
    const char *tkey = json_object_get(obj, "rope_type") ? "rope_type" : "type";
    const json_t *t = json_object_get(obj, tkey);
    if (!t)
        return rill_fail(RILL_EFORMAT, "%s: %s%s.rope_type: required field is missing", src->file, src->prefix, key);
    if (!json_is_string(t)) return type_error(src, tkey, "a string", t);
    if (!config_rope_type_from_name(json_string_value(t), &rs->type))
        return rill_fail(RILL_EUNSUPPORTED,
                         "%s: %s%s.%s: RoPE scaling '%s' is not supported (linear, dynamic, llama3, yarn)", src->file,
                         src->prefix, key, tkey, json_string_value(t));
    config_rope_defaults(rs);
    TRY(read_nested(src, key, obj, &config_rope_fields, rs));
    const json_t *th = json_object_get(obj, "rope_theta");
    if (!theta || !th) return RILL_OK;
    char pre[256];
    snprintf(pre, sizeof pre, "%s%s.", src->prefix, key);
    config_src inner = *src;
    inner.prefix = pre;
    return read_value(&inner, &theta_field, "rope_theta", th, theta);
}

// transformers 5 writes rope_parameters (gemma3: one per layer type); older files rope_scaling.
static rill_status read_rope(config_src *src, const json_t *body, rill_model_config *c) {
    const json_t *rp = json_object_get(body, "rope_parameters");
    if (rp && !json_is_null(rp)) {
        if (!json_is_object(rp)) return type_error(src, "rope_parameters", "an object", rp);
        const json_t *full = json_object_get(rp, "full_attention");
        const json_t *slide = json_object_get(rp, "sliding_attention");
        if (!full && !slide) return read_rope_obj(src, "rope_parameters", rp, &c->rope_scaling, &c->rope_theta);
        if (full) TRY(read_rope_obj(src, "rope_parameters.full_attention", full, &c->rope_scaling, &c->rope_theta));
        if (!slide) return RILL_OK;
        rope_scaling local = {0};
        TRY(read_rope_obj(src, "rope_parameters.sliding_attention", slide, &local, &c->rope_local_theta));
        if (local.type != ROPE_SCALING_NONE)
            return rill_fail(RILL_EUNSUPPORTED,
                             "%s: %srope_parameters.sliding_attention: scaled RoPE on sliding "
                             "layers is not supported",
                             src->file, src->prefix);
        return RILL_OK;
    }
    const json_t *rs = json_object_get(body, "rope_scaling");
    if (!rs || json_is_null(rs)) return RILL_OK;
    return read_rope_obj(src, "rope_scaling", rs, &c->rope_scaling, NULL);
}

// ---- layers and tokens ----

static rill_status read_layer_types(config_src *src, const json_t *body, rill_model_config *c) {
    const json_t *lt = json_object_get(body, "layer_types");
    if (!lt || json_is_null(lt) || c->n_layers <= 0) return RILL_OK; // a missing layer count is reported later
    if (!json_is_array(lt)) return type_error(src, "layer_types", "an array", lt);
    if (json_array_size(lt) != (size_t)c->n_layers)
        return rill_fail(RILL_EFORMAT, "%s: %slayer_types: %zu entries for %d layers", src->file, src->prefix,
                         json_array_size(lt), c->n_layers);
    c->layer_attn = rill_calloc((size_t)c->n_layers, sizeof *c->layer_attn);
    if (!c->layer_attn) return RILL_ENOMEM;
    for (int i = 0; i < c->n_layers; i++) {
        const char *s = json_string_value(json_array_get(lt, (size_t)i));
        if (s && !strcmp(s, "full_attention"))
            c->layer_attn[i] = ATTN_GLOBAL;
        else if (s && !strcmp(s, "sliding_attention"))
            c->layer_attn[i] = ATTN_SLIDING;
        else
            return rill_fail(RILL_EUNSUPPORTED,
                             "%s: %slayer_types[%d]: expected \"full_attention\" or "
                             "\"sliding_attention\", got %s",
                             src->file, src->prefix, i, s ? s : "a non-string");
    }
    return RILL_OK;
}

#define MAX_EOS 64

static rill_status read_tokens(config_src *src, const json_t *body, rill_model_config *c) {
    const json_t *b = json_object_get(body, "bos_token_id");
    if (b && json_is_null(b))
        c->bos_id = -1;
    else if (b && (!json_is_integer(b) || json_integer_value(b) < 0 || json_integer_value(b) > INT32_MAX))
        return type_error(src, "bos_token_id", "a token id", b);
    else if (b)
        c->bos_id = (int)json_integer_value(b);

    const json_t *e = json_object_get(body, "eos_token_id");
    int64_t ids[MAX_EOS];
    int n = 0;
    if (!e) {
        ids[0] = config_default_eos(c->arch);
        n = ids[0] >= 0;
    } else if (json_is_integer(e)) {
        ids[n++] = json_integer_value(e);
    } else if (json_is_array(e) && json_array_size(e) <= MAX_EOS) {
        for (size_t i = 0; i < json_array_size(e); i++) {
            const json_t *x = json_array_get(e, i);
            if (!json_is_integer(x)) return type_error(src, "eos_token_id[]", "an integer", x);
            ids[n++] = json_integer_value(x);
        }
    } else if (!json_is_null(e)) {
        return type_error(src, "eos_token_id", "an integer or a list of at most 64", e);
    }
    char what[96];
    snprintf(what, sizeof what, "%seos_token_id", src->prefix);
    return config_set_eos(c, src, what, ids, n);
}

// ---- quantization ----

static bool is_quant_param(const char *key) {
    for (size_t i = 0; i < config_quant_fields.n; i++)
        if (!strcmp(key, config_quant_fields.fields[i].json[0])) return true;
    return false;
}

static rill_status read_override(config_src *src, const char *qkey, const char *module, const json_t *v,
                                 quant_override *o, const quant_config *q) {
    size_t len = strlen(module);
    o->module = rill_malloc(len + 1);
    if (!o->module) return RILL_ENOMEM;
    memcpy(o->module, module, len + 1);
    o->quantized = json_is_true(v) || json_is_object(v);
    o->bits = q->bits;
    o->group_size = q->group_size;
    if (!json_is_object(v)) return RILL_OK;
    char what[320];
    snprintf(what, sizeof what, "%s[\"%s\"]", qkey, module);
    quant_config p = {.bits = q->bits, .group_size = q->group_size};
    memcpy(p.mode, q->mode, sizeof p.mode);
    TRY(read_nested(src, what, v, &config_quant_fields, &p));
    TRY(config_check_quant(src, what, p.bits, p.group_size));
    o->bits = p.bits;
    o->group_size = p.group_size;
    return RILL_OK;
}

static rill_status read_overrides(config_src *src, const char *qkey, const json_t *q, quant_config *qc) {
    size_t n = 0;
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)q, key, v) n += !is_quant_param(key) && (json_is_object(v) || json_is_boolean(v));
    if (n == 0) return RILL_OK;
    qc->overrides = rill_calloc(n, sizeof *qc->overrides);
    if (!qc->overrides) return RILL_ENOMEM;
    json_object_foreach((json_t *)q, key, v) {
        if (is_quant_param(key) || !(json_is_object(v) || json_is_boolean(v))) continue;
        TRY(read_override(src, qkey, key, v, &qc->overrides[qc->n_overrides++], qc));
    }
    return RILL_OK;
}

// MLX writes "quantization" (and mirrors it as "quantization_config"); other tools write a
// quantization_config with a quant_method, which is recorded and left to the weight loader.
static rill_status read_quant(config_src *src, const json_t *root, quant_config *qc) {
    const char *qkey = "quantization";
    const json_t *q = json_object_get(root, qkey);
    if (!q || json_is_null(q)) q = json_object_get(root, qkey = "quantization_config");
    if (!q || json_is_null(q)) return RILL_OK;
    if (!json_is_object(q)) return type_error(src, qkey, "an object", q);
    const json_t *m = json_object_get(q, "quant_method");
    if (m) {
        static const config_field method = {
            FIELD_STR, offsetof(quant_config, method), sizeof qc->method, {"quant_method"}};
        char pre[64];
        snprintf(pre, sizeof pre, "%s.", qkey);
        config_src inner = *src;
        inner.prefix = pre;
        return read_value(&inner, &method, "quant_method", m, qc);
    }
    snprintf(qc->mode, sizeof qc->mode, "affine");
    TRY(read_nested(src, qkey, q, &config_quant_fields, qc));
    if (!qc->bits || !qc->group_size)
        return rill_fail(RILL_EFORMAT, "%s: %s.%s: required field is missing", src->file, qkey,
                         qc->bits ? "group_size" : "bits");
    if (strcmp(qc->mode, "affine"))
        return rill_fail(RILL_EUNSUPPORTED, "%s: %s.mode: '%s' quantization is not supported (affine)", src->file, qkey,
                         qc->mode);
    TRY(config_check_quant(src, qkey, qc->bits, qc->group_size));
    qc->enabled = true;
    return read_overrides(src, qkey, q, qc);
}

// ---- the document ----

static const config_field model_type_field = {
    FIELD_STR, offsetof(rill_model_config, model_type), sizeof(((rill_model_config *)0)->model_type), {"model_type"}};

static rill_status read_arch(config_src *src, const json_t *root, rill_model_config *c) {
    const json_t *mt = json_object_get(root, "model_type");
    if (!mt) return rill_fail(RILL_EFORMAT, "%s: model_type: required field is missing", src->file);
    TRY(read_value(src, &model_type_field, "model_type", mt, c));
    model_arch arch;
    if (!config_arch_from_name(c->model_type, false, &arch))
        return rill_fail(RILL_EUNSUPPORTED,
                         "%s: model_type: '%s' is not supported (llama, mistral, qwen2, qwen3, "
                         "gemma3, gemma3_text, deepseek_v3)",
                         src->file, c->model_type);
    config_set_defaults(c, arch, true);
    return RILL_OK;
}

static rill_status parse_root(config_src *src, const json_t *root, rill_model_config *c) {
    if (!json_is_object(root)) return rill_fail(RILL_EFORMAT, "%s: the top level is not a JSON object", src->file);
    TRY(read_arch(src, root, c));
    const json_t *body = root; // Gemma 3 with a vision tower nests the language model's fields
    const json_t *tc = json_object_get(root, "text_config");
    if (c->arch == MODEL_ARCH_GEMMA3 && json_is_object(tc)) {
        body = tc;
        src->prefix = "text_config.";
    }
    TRY(read_table(src, &config_model_fields, body, c));
    TRY(read_rope(src, body, c));
    TRY(read_layer_types(src, body, c));
    TRY(read_tokens(src, body, c));
    TRY(config_finish(c, src));
    src->prefix = "";
    return read_quant(src, root, &c->quant);
}

static rill_status parse_doc(json_t *root, const char *name, rill_model_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    config_src src = {.file = name, .prefix = ""};
    rill_status st = parse_root(&src, root, cfg);
    json_decref(root);
    if (st != RILL_OK) model_config_free(cfg);
    return st;
}

rill_status model_config_from_json_file(const char *path, rill_model_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    if (!root && json_error_code(&err) == json_error_cannot_open_file)
        return rill_fail(RILL_EIO, "%s: %s", path, err.text);
    if (!root) return rill_fail(RILL_EFORMAT, "%s:%d:%d: %s", path, err.line, err.column, err.text);
    return parse_doc(root, path, cfg);
}

rill_status model_config_from_json_string(const char *text, const char *name, rill_model_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    if (!name) name = "config.json";
    json_error_t err;
    json_t *root = json_loads(text, 0, &err);
    if (!root) return rill_fail(RILL_EFORMAT, "%s:%d:%d: %s", name, err.line, err.column, err.text);
    return parse_doc(root, name, cfg);
}
