// weights.c: binds a model's weights by name from GGUF (token_embd, blk.N.attn_q, ...) or from
// HF/MLX safetensors (model.layers.N.self_attn.q_proj, ...; MLX quantized modules as
// .weight/.scales/.biases with per-module bits). Dense f32/f16/bf16 and MLX affine data are used
// in place in the mapping; GGUF Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q4_K/Q5_K/Q6_K are repacked exactly to affine; other
// GGUF types are decoded to f32 once. Every shape is checked against the config, naming the tensor.
// With m->measure_only (model_measure) the same walk checks every name and shape but allocates no
// tensor: it adds the bytes loading would allocate to m->planned_bytes (rill estimate).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/half.h"
#include "model/model.h"
#include "quant/affine.h"
#include "quant/gguf_dequant.h"
#include "quant/gguf_repack.h"

typedef struct {
    rill_model *m;
    const char *path; // for messages
} binder;

rill_status weights_keep(rill_model *m, void *p) {
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? 2 * m->cap_owned : 64;
        void **n = rill_realloc(m->owned, (size_t)cap * sizeof *n);
        if (!n) return RILL_ENOMEM;
        m->owned = n;
        m->cap_owned = cap;
    }
    m->owned[m->n_owned++] = p;
    return RILL_OK;
}

static rill_status keep_affine(rill_model *m, const affine_tensor *t) {
    if (m->n_affine == m->cap_affine) {
        int cap = m->cap_affine ? 2 * m->cap_affine : 64;
        void *n = rill_realloc(m->affine_owned, (size_t)cap * sizeof(affine_tensor));
        if (!n) return RILL_ENOMEM;
        m->affine_owned = n;
        m->cap_affine = cap;
    }
    ((affine_tensor *)m->affine_owned)[m->n_affine++] = *t;
    return RILL_OK;
}

// Drops the whole pages of [p, p + n) from the process (a read-only file mapping: a later read
// would fetch them again from the file).
static void drop_pages(const void *p, size_t n) {
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0 || !p) return;
    uintptr_t a = ((uintptr_t)p + (uintptr_t)page - 1) & ~((uintptr_t)page - 1),
              e = ((uintptr_t)p + n) & ~((uintptr_t)page - 1);
    if (e > a) madvise((void *)a, e - a, MADV_DONTNEED);
}

static rill_status shape_error(binder *b, const char *name, const char *got, int64_t rows, int64_t cols) {
    if (cols > 0)
        return rill_fail(RILL_EFORMAT, "%s: tensor '%s' has shape %s, the config needs [%lld, %lld]", b->path, name,
                         got, (long long)rows, (long long)cols);
    return rill_fail(RILL_EFORMAT, "%s: tensor '%s' has shape %s, the config needs [%lld]", b->path, name, got,
                     (long long)rows);
}

// ---- GGUF ----

static void gguf_shape_str(const gguf_tensor *t, char *buf, size_t cap) {
    // outermost first, as config shapes are written
    int n = snprintf(buf, cap, "[");
    for (int d = (int)t->n_dims - 1; d >= 0; d--)
        n += snprintf(buf + n, cap - (size_t)n, "%llu%s", (unsigned long long)t->ne[d], d ? ", " : "]");
}

// llama.cpp's activation rounding for a weight of this GGUF type (see rill_act_quant).
static rill_act_quant gguf_act_quant(gguf_dtype type) {
    switch (type) {
    case GGUF_DTYPE_Q4_0:
    case GGUF_DTYPE_Q5_0:
    case GGUF_DTYPE_Q8_0: return ACT_QUANT_Q8_0;
    case GGUF_DTYPE_Q4_1:
    case GGUF_DTYPE_Q5_1: return ACT_QUANT_Q8_1;
    default: return ACT_QUANT_NONE;
    }
}

static rill_status gguf_linear(binder *b, const char *name, int64_t rows, int64_t cols, rill_weight *w) {
    rill_model *m = b->m;
    const gguf_tensor *t = gguf_find_tensor(m->gguf, name);
    if (!t) return rill_fail(RILL_ENOTFOUND, "%s: tensor '%s' is missing", b->path, name);
    if (t->n_dims != 2 || (int64_t)t->ne[0] != cols || (int64_t)t->ne[1] != rows) {
        char s[96];
        gguf_shape_str(t, s, sizeof s);
        return shape_error(b, name, s, rows, cols);
    }
    memset(w, 0, sizeof *w);
    w->rows = rows;
    w->cols = cols;
    if (t->type == GGUF_DTYPE_F32 || t->type == GGUF_DTYPE_F16 || t->type == GGUF_DTYPE_BF16) {
        w->kind = WEIGHT_DENSE;
        w->dtype = t->type == GGUF_DTYPE_F32 ? DTYPE_F32 : t->type == GGUF_DTYPE_F16 ? DTYPE_F16 : DTYPE_BF16;
        w->data = t->data;
        m->mapped_bytes += t->n_bytes;
        return RILL_OK;
    }
    if (m->measure_only) { // what the two paths below would allocate
        bool repack = gguf_repack_supported(t->type);
        m->planned_bytes +=
            repack ? gguf_repack_bytes(t->type, (uint64_t)rows, (uint64_t)cols) : (size_t)(rows * cols) * sizeof(float);
        w->kind = repack ? WEIGHT_AFFINE : WEIGHT_DENSE;
        w->dtype = DTYPE_F32;
        if (repack) gguf_repack_format(t->type, &w->bits, &w->group_size); // (for the backend's weight_load_bytes)
        w->act_quant = gguf_act_quant(t->type);                            // (names the narrowable types)
        return RILL_OK;
    }
    if (gguf_repack_supported(t->type)) {
        affine_tensor a;
        rill_status st = gguf_repack_affine(t->type, t->data, t->n_bytes, (uint64_t)rows, (uint64_t)cols, &a);
        if (st != RILL_OK) {
            rill_error_prefix("%s: tensor '%s'", b->path, name);
            return st;
        }
        if ((st = keep_affine(m, &a)) != RILL_OK) {
            affine_free(&a);
            return st;
        }
        drop_pages(t->data, t->n_bytes); // (read once: the repacked copy is the weight now)
        w->kind = WEIGHT_AFFINE;
        w->dtype = a.scale_dtype;
        w->bits = a.bits;
        w->group_size = a.group_size;
        w->packed = a.packed;
        w->scales = a.scales;
        w->biases = a.biases;
        w->act_quant = gguf_act_quant(t->type);
        return RILL_OK;
    }
    // Other block types: decoded to f32 once.
    float *f = rill_malloc((size_t)(rows * cols) * sizeof(float));
    if (!f) return RILL_ENOMEM;
    rill_status st = gguf_dequantize(t->type, t->data, t->n_bytes, f, (uint64_t)(rows * cols));
    if (st == RILL_OK) st = weights_keep(m, f);
    if (st != RILL_OK) {
        rill_free(f);
        rill_error_prefix("%s: tensor '%s'", b->path, name);
        return st;
    }
    drop_pages(t->data, t->n_bytes); // (read once, as above)
    w->kind = WEIGHT_DENSE;
    w->dtype = DTYPE_F32;
    w->data = f;
    return RILL_OK;
}

// A 1-D f32 vector of n elements (norm weights, biases), as host f32.
static rill_status gguf_vector(binder *b, const char *name, int64_t n, const float **out) {
    const gguf_tensor *t = gguf_find_tensor(b->m->gguf, name);
    if (!t) return rill_fail(RILL_ENOTFOUND, "%s: tensor '%s' is missing", b->path, name);
    if (t->n_dims != 1 || (int64_t)t->ne[0] != n) {
        char s[96];
        gguf_shape_str(t, s, sizeof s);
        return shape_error(b, name, s, n, 0);
    }
    if (t->type == GGUF_DTYPE_F32 && ((uintptr_t)t->data & 3) == 0) {
        *out = (const float *)t->data;
        b->m->mapped_bytes += t->n_bytes;
        return RILL_OK;
    }
    if (b->m->measure_only) {
        b->m->planned_bytes += (size_t)n * sizeof(float);
        *out = NULL;
        return RILL_OK;
    }
    float *f = rill_malloc((size_t)n * sizeof(float));
    if (!f) return RILL_ENOMEM;
    rill_status st = gguf_dequantize(t->type, t->data, t->n_bytes, f, (uint64_t)n);
    if (st == RILL_OK) st = weights_keep(b->m, f);
    if (st != RILL_OK) {
        rill_free(f);
        rill_error_prefix("%s: tensor '%s'", b->path, name);
        return st;
    }
    *out = f;
    return RILL_OK;
}

// ---- safetensors (HF and MLX) ----

static void st_shape_str(const safetensors_tensor *t, char *buf, size_t cap) {
    int n = snprintf(buf, cap, "[");
    for (int d = 0; d < t->n_dims; d++)
        n += snprintf(buf + n, cap - (size_t)n, "%llu%s", (unsigned long long)t->shape[d],
                      d + 1 < t->n_dims ? ", " : "");
    snprintf(buf + n, cap - (size_t)n, "]");
}

static bool float_dtype(rill_dtype dt) { return dt == DTYPE_F32 || dt == DTYPE_F16 || dt == DTYPE_BF16; }

static const safetensors_tensor *st_find(binder *b, const char *module, const char *suffix, char *name, size_t cap) {
    snprintf(name, cap, "%s.%s", module, suffix);
    return safetensors_set_find(b->m->st, name);
}

static rill_status st_linear(binder *b, const char *module, int64_t rows, int64_t cols, rill_weight *w) {
    char name[256], sname[256], bname[256], s[96];
    const safetensors_tensor *t = st_find(b, module, "weight", name, sizeof name);
    if (!t) return rill_fail(RILL_ENOTFOUND, "%s: tensor '%s' is missing", b->path, name);
    memset(w, 0, sizeof *w);
    w->rows = rows;
    w->cols = cols;
    int bits, group;
    const safetensors_tensor *sc = st_find(b, module, "scales", sname, sizeof sname);
    if (sc && model_config_quant_for(&b->m->cfg, module, &bits, &group)) {
        const safetensors_tensor *bi = st_find(b, module, "biases", bname, sizeof bname);
        if (!bi) return rill_fail(RILL_ENOTFOUND, "%s: tensor '%s' is missing (quantized module)", b->path, bname);
        if (t->dtype != DTYPE_U32 || t->n_dims != 2 || (int64_t)t->shape[0] != rows ||
            (int64_t)t->shape[1] * 32 != cols * bits) {
            st_shape_str(t, s, sizeof s);
            return rill_fail(RILL_EFORMAT, "%s: tensor '%s' is %s %s; %d-bit [%lld, %lld] needs U32 [%lld, %lld]",
                             b->path, name, dtype_name(t->dtype), s, bits, (long long)rows, (long long)cols,
                             (long long)rows, (long long)(cols * bits / 32));
        }
        const safetensors_tensor *parts[2] = {sc, bi};
        const char *pnames[2] = {sname, bname};
        for (int i = 0; i < 2; i++)
            if (!float_dtype(parts[i]->dtype) || parts[i]->dtype != sc->dtype || parts[i]->n_dims != 2 ||
                (int64_t)parts[i]->shape[0] != rows || (int64_t)parts[i]->shape[1] * group != cols) {
                st_shape_str(parts[i], s, sizeof s);
                return rill_fail(
                    RILL_EFORMAT, "%s: tensor '%s' is %s %s; group %d needs [%lld, %lld] of one float dtype", b->path,
                    pnames[i], dtype_name(parts[i]->dtype), s, group, (long long)rows, (long long)(cols / group));
            }
        affine_tensor a;
        rill_status st = affine_wrap(&a, (uint64_t)rows, (uint64_t)cols, bits, group, sc->dtype,
                                     (const uint32_t *)t->data, sc->data, bi->data);
        if (st != RILL_OK) {
            rill_error_prefix("%s: tensor '%s'", b->path, name);
            return st;
        }
        b->m->mapped_bytes += t->n_bytes + sc->n_bytes + bi->n_bytes;
        w->kind = WEIGHT_AFFINE;
        w->dtype = sc->dtype;
        w->bits = bits;
        w->group_size = group;
        w->packed = a.packed;
        w->scales = a.scales;
        w->biases = a.biases;
        return RILL_OK;
    }
    if (!float_dtype(t->dtype) || t->n_dims != 2 || (int64_t)t->shape[0] != rows || (int64_t)t->shape[1] != cols) {
        st_shape_str(t, s, sizeof s);
        return rill_fail(RILL_EFORMAT, "%s: tensor '%s' is %s %s, the config needs a float [%lld, %lld]", b->path, name,
                         dtype_name(t->dtype), s, (long long)rows, (long long)cols);
    }
    w->kind = WEIGHT_DENSE;
    w->dtype = t->dtype;
    w->data = t->data;
    b->m->mapped_bytes += t->n_bytes;
    return RILL_OK;
}

static rill_status st_vector(binder *b, const char *name, int64_t n, const float **out) {
    const safetensors_tensor *t = safetensors_set_find(b->m->st, name);
    if (!t) return rill_fail(RILL_ENOTFOUND, "%s: tensor '%s' is missing", b->path, name);
    if (!float_dtype(t->dtype) || t->n_dims != 1 || (int64_t)t->shape[0] != n) {
        char s[96];
        st_shape_str(t, s, sizeof s);
        return shape_error(b, name, s, n, 0);
    }
    if (b->m->measure_only) {
        b->m->planned_bytes += (size_t)n * sizeof(float);
        *out = NULL;
        return RILL_OK;
    }
    float *f = rill_malloc((size_t)n * sizeof(float));
    if (!f) return RILL_ENOMEM;
    for (int64_t i = 0; i < n; i++) {
        if (t->dtype == DTYPE_F32)
            memcpy(&f[i], t->data + 4 * i, 4);
        else {
            uint16_t h;
            memcpy(&h, t->data + 2 * i, 2);
            f[i] = t->dtype == DTYPE_F16 ? f16_to_f32(h) : bf16_to_f32(h);
        }
    }
    rill_status st = weights_keep(b->m, f);
    if (st != RILL_OK) rill_free(f);
    *out = f;
    return st;
}

// ---- to the backend ----

static rill_status dev_vector(binder *b, const float *host, int64_t n, float **out) {
    rill_model *m = b->m;
    if (m->measure_only) {
        m->planned_bytes += (size_t)n * sizeof(float);
        *out = NULL;
        return RILL_OK;
    }
    return model_upload_vector(m, host, n, out);
}

// Weights repacked from GGUF Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 blocks (act_quant names them) keep the file's
// f16 factors, exactly, as f16 when they go to the backend (affine_narrow_to_f16): 4 bytes per 32
// weights instead of 8, which decode reads at every token. The backends compute scale * q + bias in
// f32, so the weight's values are unchanged. (Host-only weights, such as MLA's kv_b, stay f32.)
static rill_status narrow_factors(rill_model *m, rill_weight *w) {
    if (w->kind != WEIGHT_AFFINE || w->dtype != DTYPE_F32 || w->act_quant == ACT_QUANT_NONE) return RILL_OK;
    affine_tensor *owned = m->affine_owned;
    for (int k = m->n_affine - 1; k >= 0; k--) { // (from the end: w was repacked last, or nearly)
        if (owned[k].packed != w->packed) continue;
        bool narrowed;
        rill_status st = affine_narrow_to_f16(&owned[k], &narrowed);
        if (st == RILL_OK && narrowed) {
            w->dtype = DTYPE_F16;
            w->scales = owned[k].scales;
            w->biases = owned[k].biases;
        }
        return st;
    }
    return RILL_OK;
}

// Measuring: the host bytes the backend's weight_load would allocate for w (the CPU widens codes of
// 2-6 bits to one byte each), less what narrow_factors will save.
static void plan_weight_load(rill_model *m, const rill_weight *w) {
    if (m->be->ops->weight_load_bytes) m->planned_bytes += m->be->ops->weight_load_bytes(m->be, w);
    if (w->kind == WEIGHT_AFFINE && w->act_quant != ACT_QUANT_NONE)
        m->planned_bytes -=
            2 * ((size_t)(w->rows * (w->cols / w->group_size)) + 1) * (sizeof(float) - sizeof(uint16_t));
}

// A linear layer (+ optional bias) by its GGUF name and HF module path, in host memory (the
// bias already on the backend).
static rill_status host_linear(binder *b, const char *gguf_name, const char *hf_module, int64_t rows, int64_t cols,
                               bool with_bias, rill_weight *out) {
    rill_weight host;
    char name[256];
    rill_status st;
    const float *bias = NULL;
    if (b->m->gguf) {
        snprintf(name, sizeof name, "%s.weight", gguf_name);
        st = gguf_linear(b, name, rows, cols, &host);
        if (st == RILL_OK && with_bias) {
            snprintf(name, sizeof name, "%s.bias", gguf_name);
            st = gguf_vector(b, name, rows, &bias);
        }
    } else {
        st = st_linear(b, hf_module, rows, cols, &host);
        if (st == RILL_OK && with_bias) {
            snprintf(name, sizeof name, "%s.bias", hf_module);
            st = st_vector(b, name, rows, &bias);
        }
    }
    if (st != RILL_OK) return st;
    if (bias || (with_bias && b->m->measure_only)) { // (measuring: the host copy may be only planned)
        float *d;
        if ((st = dev_vector(b, bias, rows, &d)) != RILL_OK) return st;
        host.bias = d;
    }
    *out = host;
    return RILL_OK;
}

static void release_copied(rill_model *m, const rill_weight *parts, int n);

// The same, handed to the backend.
static rill_status linear(binder *b, const char *gguf_name, const char *hf_module, int64_t rows, int64_t cols,
                          bool with_bias, rill_weight *out) {
    rill_weight host;
    rill_status st = host_linear(b, gguf_name, hf_module, rows, cols, with_bias, &host);
    if (st != RILL_OK) return st;
    if (b->m->measure_only) { // shapes only (LoRA sizes); nothing to hand to the backend but its planned bytes
        plan_weight_load(b->m, &host);
        *out = host;
        return RILL_OK;
    }
    if ((st = narrow_factors(b->m, &host)) != RILL_OK) return st;
    if ((st = b->m->be->ops->weight_load(b->m->be, &host, out)) == RILL_OK) release_copied(b->m, &host, 1);
    return st;
}

// True when parts[n] (host, no biases) can be stacked into one weight: one kind, dtype, width and,
// when affine, bits, group and activation rounding.
static bool stackable(const rill_weight *parts, int n) {
    for (int i = 0; i < n; i++) {
        const rill_weight *a = &parts[0], *w = &parts[i];
        if (w->bias || w->kind != a->kind || w->dtype != a->dtype || w->cols != a->cols) return false;
        if (w->kind == WEIGHT_AFFINE &&
            (w->bits != a->bits || w->group_size != a->group_size || w->act_quant != a->act_quant))
            return false;
    }
    return true;
}

// Rows of `total` rows: parts[0] first, then parts[1], ... (memcpy of each part's arrays).
static void stack_array(void *dst, const rill_weight *parts, int n, size_t row_bytes, int which) {
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        const void *src = which == 0   ? parts[i].data
                          : which == 1 ? (const void *)parts[i].packed
                          : which == 2 ? parts[i].scales
                                       : parts[i].biases;
        memcpy((char *)dst + at, src, (size_t)parts[i].rows * row_bytes);
        at += (size_t)parts[i].rows * row_bytes;
    }
}

// Host bytes of w's arrays: its codes, scales and biases, or its dense data.
static size_t host_bytes(const rill_weight *w) {
    size_t es = dtype_size(w->dtype);
    if (w->kind == WEIGHT_DENSE) return (size_t)(w->rows * w->cols) * es;
    return (size_t)(w->rows * w->cols * w->bits / 8) + 2 * (size_t)(w->rows * (w->cols / w->group_size)) * es;
}

// Once the rows of parts[n] live on elsewhere (a stacked copy the model keeps for a backend that
// uses weights in place, or a backend's own copy), the parts' own storage goes: arrays loading made
// (GGUF blocks repacked or decoded) are freed, mapped ones stop counting as resident and their
// pages are dropped.
static void release_parts(rill_model *m, const rill_weight *parts, int n) {
    affine_tensor *owned_affine = m->affine_owned;
    for (int i = 0; i < n; i++) {
        const rill_weight *w = &parts[i];
        bool freed = false;
        for (int k = m->n_affine - 1; k >= 0 && !freed; k--) // (the parts were repacked last)
            if (w->kind == WEIGHT_AFFINE && owned_affine[k].packed == w->packed) {
                affine_free(&owned_affine[k]);
                owned_affine[k] = owned_affine[--m->n_affine];
                freed = true;
            }
        for (int k = m->n_owned - 1; k >= 0 && !freed; k--)
            if (w->kind == WEIGHT_DENSE && m->owned[k] == w->data) {
                rill_free(m->owned[k]);
                m->owned[k] = m->owned[--m->n_owned];
                freed = true;
            }
        if (freed) continue;
        m->mapped_bytes -= host_bytes(w); // (what loading it added)
        if (w->kind == WEIGHT_DENSE)
            drop_pages(w->data, host_bytes(w));
        else {
            size_t groups = (size_t)(w->rows * (w->cols / w->group_size)) * dtype_size(w->dtype);
            drop_pages(w->packed, (size_t)(w->rows * w->cols * w->bits / 8));
            drop_pages(w->scales, groups);
            drop_pages(w->biases, groups);
        }
    }
}

// The same once a backend that copies weights (not weights_in_place: the GPU) holds its own copy of
// parts[n]: the host keeps nothing of a matrix the device holds (a GGUF Q8_0 Llama-3-8B held its
// repacked blocks on both, 17.9 GB at peak for 8.5 GB of weights). Measuring loads nothing to release.
static void release_copied(rill_model *m, const rill_weight *parts, int n) {
    if (!m->measure_only && !m->be->ops->weights_in_place) release_parts(m, parts, n);
}

// One backend weight with the rows of parts[n] stacked in order. A backend that copies weights
// gets the stacked host rows, which are freed at once; one that uses them in place keeps them
// (with the model's blocks). Either way the parts' storage is released. RILL_EUNSUPPORTED when the
// parts cannot be stacked.
static rill_status load_stacked(rill_model *m, const rill_weight *parts, int n, rill_weight *out) {
    if (!stackable(parts, n)) return RILL_EUNSUPPORTED;
    rill_weight w = parts[0];
    w.rows = 0;
    for (int i = 0; i < n; i++)
        w.rows += parts[i].rows;
    void *bufs[3] = {0};
    size_t row[3];
    int n_arrays = w.kind == WEIGHT_DENSE ? 1 : 3;
    if (w.kind == WEIGHT_DENSE)
        row[0] = (size_t)w.cols * dtype_size(w.dtype);
    else {
        row[0] = (size_t)(w.cols * w.bits / 32) * 4;
        row[1] = row[2] = (size_t)(w.cols / w.group_size) * dtype_size(w.dtype);
    }
    rill_status st = RILL_OK;
    for (int a = 0; a < n_arrays && st == RILL_OK; a++) {
        bufs[a] = rill_malloc((size_t)w.rows * row[a]);
        if (!bufs[a])
            st = RILL_ENOMEM;
        else
            stack_array(bufs[a], parts, n, row[a], w.kind == WEIGHT_DENSE ? 0 : a + 1);
    }
    if (st == RILL_OK) {
        if (w.kind == WEIGHT_DENSE)
            w.data = bufs[0];
        else {
            w.packed = bufs[0];
            w.scales = bufs[1];
            w.biases = bufs[2];
        }
        st = m->be->ops->weight_load(m->be, &w, out);
    }
    bool keep = st == RILL_OK && m->be->ops->weights_in_place;
    for (int a = 0; keep && a < n_arrays; a++)
        if ((st = weights_keep(m, bufs[a])) == RILL_OK) bufs[a] = NULL;
    if (keep && st != RILL_OK) m->be->ops->weight_free(m->be, out);
    for (int a = 0; a < 3; a++)
        rill_free(bufs[a]);
    if (st == RILL_OK) release_parts(m, parts, n); // (their rows live on in the kept copy or the backend's)
    return st;
}

// Loads parts[n] (host) for the backend: as one stacked weight into *stacked when the backend
// wants fused projections and they allow it (then each part keeps only its shape), else one by one.
static rill_status load_parts(binder *b, rill_weight *parts, int n, rill_weight *stacked) {
    rill_model *m = b->m;
    if (m->measure_only) { // shapes only, and what the backend's weight_load would allocate for the parts
        for (int i = 0; i < n; i++)
            plan_weight_load(m, &parts[i]);
        return RILL_OK;
    }
    memset(stacked, 0, sizeof *stacked);
    for (int i = 0; i < n; i++) {
        rill_status st = narrow_factors(m, &parts[i]);
        if (st != RILL_OK) return st;
    }
    const char *env = getenv("RILL_FUSE"); // "0": load the parts apart (to measure one way against the other)
    if (m->be->ops->fuse_projections && n > 1 && !(env && !strcmp(env, "0"))) {
        rill_status st = load_stacked(m, parts, n, stacked);
        if (st == RILL_OK) {
            for (int i = 0; i < n; i++)
                parts[i] = (rill_weight){.kind = parts[i].kind, .rows = parts[i].rows, .cols = parts[i].cols};
            return RILL_OK;
        }
        if (st != RILL_EUNSUPPORTED) return st;
    }
    for (int i = 0; i < n; i++) {
        rill_weight host = parts[i];
        rill_status st = m->be->ops->weight_load(m->be, &host, &parts[i]);
        if (st != RILL_OK) return st;
        release_copied(m, &host, 1);
    }
    return RILL_OK;
}

static rill_status vector(binder *b, const char *gguf_name, const char *hf_name, int64_t n, float **out) {
    const float *host;
    rill_status st = b->m->gguf ? gguf_vector(b, gguf_name, n, &host) : st_vector(b, hf_name, n, &host);
    if (st != RILL_OK) return st;
    return dev_vector(b, host, n, out);
}

#define TRY(x)                                                                                                         \
    do {                                                                                                               \
        rill_status st_ = (x);                                                                                         \
        if (st_ != RILL_OK) return st_;                                                                                \
    } while (0)

// A MoE layer's router, routed experts (one weight per expert) and shared experts. GGUF files stack
// the experts in 3-D tensors, which are not bound yet.
static rill_status bind_moe(binder *b, int l, layer_weights *L) {
    rill_model *m = b->m;
    const rill_model_config *c = &m->cfg;
    int64_t hidden = c->hidden_size, E = c->n_routed_experts, mi = c->moe_intermediate_size;
    int64_t si = mi * (c->n_shared_experts > 0 ? c->n_shared_experts : 1);
    char g[96] = "", h[128];
    if (m->gguf)
        return rill_fail(RILL_EUNSUPPORTED, "%s: layer %d: GGUF mixture-of-experts tensors are not supported yet",
                         b->path, l);
    L->moe = true;
    snprintf(h, sizeof h, "model.layers.%d.mlp.gate", l);
    TRY(linear(b, "", h, E, hidden, false, &L->router));
    snprintf(h, sizeof h, "model.layers.%d.mlp.gate.e_score_correction_bias", l);
    if (safetensors_set_find(m->st, h)) TRY(vector(b, "", h, E, &L->router_bias));
    L->ex_gate = rill_calloc((size_t)E * 3, sizeof(rill_weight));
    if (!L->ex_gate) return RILL_ENOMEM;
    TRY(weights_keep(m, L->ex_gate));
    L->ex_up = L->ex_gate + E;
    L->ex_down = L->ex_gate + 2 * E;
    for (int64_t e = 0; e < E; e++) {
        snprintf(h, sizeof h, "model.layers.%d.mlp.experts.%lld.gate_proj", l, (long long)e);
        TRY(linear(b, g, h, mi, hidden, false, &L->ex_gate[e]));
        snprintf(h, sizeof h, "model.layers.%d.mlp.experts.%lld.up_proj", l, (long long)e);
        TRY(linear(b, g, h, mi, hidden, false, &L->ex_up[e]));
        snprintf(h, sizeof h, "model.layers.%d.mlp.experts.%lld.down_proj", l, (long long)e);
        TRY(linear(b, g, h, hidden, mi, false, &L->ex_down[e]));
    }
    if (c->n_shared_experts > 0) {
        snprintf(h, sizeof h, "model.layers.%d.mlp.shared_experts.gate_proj", l);
        TRY(linear(b, g, h, si, hidden, false, &L->sh_gate));
        snprintf(h, sizeof h, "model.layers.%d.mlp.shared_experts.up_proj", l);
        TRY(linear(b, g, h, si, hidden, false, &L->sh_up));
        snprintf(h, sizeof h, "model.layers.%d.mlp.shared_experts.down_proj", l);
        TRY(linear(b, g, h, hidden, si, false, &L->sh_down));
    }
    return RILL_OK;
}

static rill_status bind_all(rill_model *m, const char *path) {
    binder b = {m, path};
    const rill_model_config *c = &m->cfg;
    const decoder_traits *tr = m->traits;
    int64_t hidden = c->hidden_size, hd = c->head_dim, q_dim = (int64_t)c->n_heads * hd,
            kv_dim = (int64_t)c->n_kv_heads * hd, ffn = c->intermediate_size;

    TRY(linear(&b, "token_embd", "model.embed_tokens", c->vocab_size, hidden, false, &m->embed));
    bool has_head = m->gguf ? gguf_find_tensor(m->gguf, "output.weight") != NULL
                            : safetensors_set_find(m->st, "lm_head.weight") != NULL;
    if (has_head && !(c->tie_word_embeddings && !m->gguf))
        TRY(linear(&b, "output", "lm_head", c->vocab_size, hidden, false, &m->lm_head));
    else
        m->lm_head = m->embed;
    TRY(vector(&b, "output_norm.weight", "model.norm.weight", hidden, &m->final_norm));

    for (int l = 0; l < c->n_layers; l++) {
        layer_weights *L = &m->layers[l];
        char g[64], h[96], g2[96], h2[128];
#define G(x)  (snprintf(g, sizeof g, "blk.%d.%s", l, x), g)
#define H(x)  (snprintf(h, sizeof h, "model.layers.%d.%s", l, x), h)
#define GN(x) (snprintf(g2, sizeof g2, "blk.%d.%s.weight", l, x), g2)
#define HN(x) (snprintf(h2, sizeof h2, "model.layers.%d.%s.weight", l, x), h2)
        if (m->mla) {
            int64_t qk = c->qk_nope_head_dim + c->qk_rope_head_dim, heads = c->n_heads;
            if (c->q_lora_rank > 0) {
                TRY(linear(&b, G("attn_q_a"), H("self_attn.q_a_proj"), c->q_lora_rank, hidden, false, &L->q_a));
                TRY(vector(&b, GN("attn_q_a_norm"), HN("self_attn.q_a_layernorm"), c->q_lora_rank, &L->q_a_norm));
                TRY(linear(&b, G("attn_q_b"), H("self_attn.q_b_proj"), heads * qk, c->q_lora_rank, false, &L->q_b));
            } else
                TRY(linear(&b, G("attn_q"), H("self_attn.q_proj"), heads * qk, hidden, false, &L->q));
            TRY(linear(&b, G("attn_kv_a_mqa"), H("self_attn.kv_a_proj_with_mqa"), c->kv_lora_rank + c->qk_rope_head_dim,
                       hidden, false, &L->kv_a));
            TRY(vector(&b, GN("attn_kv_a_norm"), HN("self_attn.kv_a_layernorm"), c->kv_lora_rank, &L->kv_a_norm));
            TRY(host_linear(&b, G("attn_kv_b"), H("self_attn.kv_b_proj"), heads * (c->qk_nope_head_dim + c->v_head_dim),
                            c->kv_lora_rank, false, &L->kv_b));
            TRY(mla_absorb(m, &L->kv_b, L));
            release_copied(m, &L->kv_b, 1); // (a backend that copies has the absorbed weights)
            rill_weight shape = {.kind = L->kv_b.kind, .rows = L->kv_b.rows, .cols = L->kv_b.cols};
            L->kv_b = shape; // (its data now live on in the absorbed weights)
            TRY(linear(&b, G("attn_output"), H("self_attn.o_proj"), hidden, heads * c->v_head_dim, c->attention_bias,
                       &L->o));
        } else {
            rill_weight qkv[3];
            TRY(host_linear(&b, G("attn_q"), H("self_attn.q_proj"), q_dim, hidden, c->qkv_bias, &qkv[0]));
            TRY(host_linear(&b, G("attn_k"), H("self_attn.k_proj"), kv_dim, hidden, c->qkv_bias, &qkv[1]));
            TRY(host_linear(&b, G("attn_v"), H("self_attn.v_proj"), kv_dim, hidden, c->qkv_bias, &qkv[2]));
            // (qk-norm normalizes q and k per head in place: they stay apart)
            if (c->qk_norm)
                for (int i = 0; i < 3; i++)
                    TRY(load_parts(&b, &qkv[i], 1, &L->qkv));
            else
                TRY(load_parts(&b, qkv, 3, &L->qkv));
            L->q = qkv[0];
            L->k = qkv[1];
            L->v = qkv[2];
            TRY(linear(&b, G("attn_output"), H("self_attn.o_proj"), hidden, q_dim, c->attention_bias, &L->o));
        }
        if (model_layer_is_moe(c, l))
            TRY(bind_moe(&b, l, L));
        else {
            rill_weight gu[2];
            TRY(host_linear(&b, G("ffn_gate"), H("mlp.gate_proj"), ffn, hidden, c->mlp_bias, &gu[0]));
            TRY(host_linear(&b, G("ffn_up"), H("mlp.up_proj"), ffn, hidden, c->mlp_bias, &gu[1]));
            TRY(load_parts(&b, gu, 2, &L->gate_up));
            L->gate = gu[0];
            L->up = gu[1];
            TRY(linear(&b, G("ffn_down"), H("mlp.down_proj"), hidden, ffn, c->mlp_bias, &L->down));
        }
        TRY(vector(&b, GN("attn_norm"), HN("input_layernorm"), hidden, &L->attn_norm));
        TRY(vector(&b, GN("ffn_norm"), HN(tr->hf_ffn_norm), hidden, &L->ffn_norm));
        if (tr->sandwich_norms) {
            TRY(vector(&b, GN("post_attention_norm"), HN("post_attention_layernorm"), hidden, &L->post_attn_norm));
            TRY(vector(&b, GN("post_ffw_norm"), HN("post_feedforward_layernorm"), hidden, &L->post_ffn_norm));
        }
        if (c->qk_norm) {
            TRY(vector(&b, GN("attn_q_norm"), HN("self_attn.q_norm"), hd, &L->q_norm));
            TRY(vector(&b, GN("attn_k_norm"), HN("self_attn.k_norm"), hd, &L->k_norm));
        }
#undef G
#undef H
#undef GN
#undef HN
    }
    return RILL_OK;
}

rill_status weights_bind(rill_model *m, const char *path) {
    rill_status st = bind_all(m, path);
    if (st == RILL_OK && m->measure_only) { // mapped bytes are only planned: nothing to account
        m->planned_bytes += m->mapped_bytes;
        m->mapped_bytes = 0;
    } else if (st == RILL_OK)
        rill_memory_account((ptrdiff_t)m->mapped_bytes); // mapped weights in use stay resident
    else
        m->mapped_bytes = 0;
    return st;
}
