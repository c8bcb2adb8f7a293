// gguf_kv.c: GGUF metadata values: parsing every value type (arrays of numbers, of strings and
// nested arrays, all bound-checked against the file), the typed getters and the array helpers.
// The file-level parse (header, tensor infos, lookups) is in gguf.c.
#include <math.h>
#include <string.h>

#include "base/alloc.h"
#include "io/gguf_internal.h"

static const uint8_t type_size[GGUF_VAL_COUNT] = {
    [GGUF_VAL_UINT8] = 1,  [GGUF_VAL_INT8] = 1,  [GGUF_VAL_UINT16] = 2,  [GGUF_VAL_INT16] = 2,
    [GGUF_VAL_UINT32] = 4, [GGUF_VAL_INT32] = 4, [GGUF_VAL_FLOAT32] = 4, [GGUF_VAL_BOOL] = 1,
    [GGUF_VAL_UINT64] = 8, [GGUF_VAL_INT64] = 8, [GGUF_VAL_FLOAT64] = 8,
};

static const char *const type_name[GGUF_VAL_COUNT] = {
    "uint8", "int8",   "uint16", "int16",  "uint32", "int32",   "float32",
    "bool",  "string", "array",  "uint64", "int64",  "float64",
};

const char *gguf_value_type_name(gguf_value_type t) { return (unsigned)t < GGUF_VAL_COUNT ? type_name[t] : "?"; }

size_t gguf_value_type_size(gguf_value_type t) { return (unsigned)t < GGUF_VAL_COUNT ? type_size[t] : 0; }

static bool is_unsigned(gguf_value_type t) {
    return t == GGUF_VAL_UINT8 || t == GGUF_VAL_UINT16 || t == GGUF_VAL_UINT32 || t == GGUF_VAL_UINT64;
}
static bool is_signed(gguf_value_type t) {
    return t == GGUF_VAL_INT8 || t == GGUF_VAL_INT16 || t == GGUF_VAL_INT32 || t == GGUF_VAL_INT64;
}
static bool is_float(gguf_value_type t) { return t == GGUF_VAL_FLOAT32 || t == GGUF_VAL_FLOAT64; }

// Decodes one fixed-size value at p into the widened union fields.
static void decode_scalar(gguf_value_type t, const uint8_t *p, uint64_t *u, int64_t *i, double *f) {
    uint64_t raw = gguf_load_le(p, type_size[t]);
    switch (t) {
    case GGUF_VAL_INT8: *i = (int8_t)raw; break;
    case GGUF_VAL_INT16: *i = (int16_t)raw; break;
    case GGUF_VAL_INT32: *i = (int32_t)raw; break;
    case GGUF_VAL_INT64: *i = (int64_t)raw; break;
    case GGUF_VAL_FLOAT32: {
        uint32_t bits = (uint32_t)raw;
        float x;
        memcpy(&x, &bits, 4);
        *f = x;
        break;
    }
    case GGUF_VAL_FLOAT64: memcpy(f, &raw, 8); break;
    default: *u = raw; break; // unsigned and bool
    }
}

static rill_status check_type(gguf_cursor *c, uint64_t at, uint32_t t, const char *what) {
    if (t >= GGUF_VAL_COUNT) return gguf_bad(c, at, "unknown %s %u (known: 0..%d)", what, t, GGUF_VAL_COUNT - 1);
    return RILL_OK;
}

// Fixed-size elements: bounds, and bools must be 0 or 1 (the spec calls anything else invalid).
static rill_status skip_fixed(gguf_cursor *c, gguf_value_type t, uint64_t n) {
    uint64_t at = c->pos;
    rill_status st = gguf_skip(c, n * type_size[t], "array elements");
    if (st != RILL_OK || t != GGUF_VAL_BOOL) return st;
    for (uint64_t i = 0; i < n; i++)
        if (c->data[at + i] > 1)
            return gguf_bad(c, at + i, "bool element %llu is %u, neither 0 nor 1", (unsigned long long)i,
                            c->data[at + i]);
    return RILL_OK;
}

// Reads an array's element type and count and checks that the count can fit in the file.
static rill_status array_head(gguf_cursor *c, uint32_t *et, uint64_t *n) {
    uint64_t at = c->pos;
    rill_status st = gguf_rd_u32(c, et, "array element type");
    if (st == RILL_OK) st = check_type(c, at, *et, "array element type");
    if (st == RILL_OK) st = gguf_rd_u64(c, n, "array length");
    if (st != RILL_OK) return st;
    if (*n > GGUF_MAX_ARRAY)
        return gguf_bad(c, at + 4, "array length %llu exceeds the limit of %llu elements", (unsigned long long)*n,
                        (unsigned long long)GGUF_MAX_ARRAY);
    uint64_t min = *et == GGUF_VAL_STRING ? 8 : *et == GGUF_VAL_ARRAY ? 12 : type_size[*et];
    uint64_t left = c->size - c->pos;
    if (*n > left / min)
        return gguf_bad(c, at + 4, "array of %llu %s elements needs at least %llu bytes, only %llu left in the file",
                        (unsigned long long)*n, type_name[*et], (unsigned long long)(*n * min),
                        (unsigned long long)left);
    return RILL_OK;
}

// Walks an array nested at `depth`, checking every length; keeps nothing.
static rill_status skip_array(gguf_cursor *c, int depth) {
    if (depth > GGUF_MAX_DEPTH) return gguf_bad(c, c->pos, "arrays nested deeper than %d levels", GGUF_MAX_DEPTH);
    uint32_t et;
    uint64_t n;
    rill_status st = array_head(c, &et, &n);
    if (st != RILL_OK) return st;
    if (et == GGUF_VAL_STRING) {
        gguf_string s;
        for (uint64_t i = 0; i < n && st == RILL_OK; i++)
            st = gguf_rd_str(c, &s, GGUF_MAX_STRING, "string element", i);
        return st;
    }
    if (et == GGUF_VAL_ARRAY) {
        for (uint64_t i = 0; i < n && st == RILL_OK; i++)
            st = skip_array(c, depth + 1);
        return st;
    }
    return skip_fixed(c, (gguf_value_type)et, n);
}

static rill_status read_array(gguf_cursor *c, gguf_kv *kv) {
    uint32_t et;
    uint64_t n;
    rill_status st = array_head(c, &et, &n);
    if (st != RILL_OK) return st;
    kv->arr_type = (gguf_value_type)et;
    kv->arr_len = n;
    kv->arr_data = c->data + c->pos;
    uint64_t start = c->pos;
    if (et == GGUF_VAL_STRING && n > 0) {
        kv->arr_strs = rill_malloc(n * sizeof *kv->arr_strs);
        if (!kv->arr_strs) return RILL_ENOMEM;
        for (uint64_t i = 0; i < n && st == RILL_OK; i++)
            st = gguf_rd_str(c, &kv->arr_strs[i], GGUF_MAX_STRING, "string element", i);
    } else if (et == GGUF_VAL_ARRAY) {
        for (uint64_t i = 0; i < n && st == RILL_OK; i++)
            st = skip_array(c, 2);
    } else if (et != GGUF_VAL_STRING) {
        st = skip_fixed(c, kv->arr_type, n);
    }
    kv->arr_bytes = c->pos - start;
    return st;
}

rill_status gguf_read_value(gguf_cursor *c, gguf_kv *kv) {
    uint64_t at = c->pos;
    uint32_t t;
    rill_status st = gguf_rd_u32(c, &t, "value type");
    if (st == RILL_OK) st = check_type(c, at, t, "value type");
    if (st != RILL_OK) return st;
    kv->type = (gguf_value_type)t;
    if (t == GGUF_VAL_STRING) return gguf_rd_str(c, &kv->v.str, GGUF_MAX_STRING, "string", UINT64_MAX);
    if (t == GGUF_VAL_ARRAY) return read_array(c, kv);
    at = c->pos;
    st = gguf_skip(c, type_size[t], type_name[t]);
    if (st != RILL_OK) return st;
    decode_scalar(kv->type, c->data + at, &kv->v.u64, &kv->v.i64, &kv->v.f64);
    if (t == GGUF_VAL_BOOL && kv->v.u64 > 1)
        return gguf_bad(c, at, "bool value %u is neither 0 nor 1", (unsigned)kv->v.u64);
    return RILL_OK;
}

void gguf_kv_release(gguf_kv *kv) {
    rill_free(kv->arr_strs);
    kv->arr_strs = NULL;
}

// ---- getters ----

static bool int_value(gguf_value_type t, uint64_t u, int64_t i, bool *neg, uint64_t *mag) {
    if (is_unsigned(t)) {
        *neg = false;
        *mag = u;
        return true;
    }
    if (!is_signed(t)) return false;
    *neg = i < 0;
    *mag = i < 0 ? (uint64_t)(-(i + 1)) + 1 : (uint64_t)i;
    return true;
}

static bool to_i64(bool neg, uint64_t mag, int64_t *out) {
    if (!neg && mag > INT64_MAX) return false;
    *out = neg ? (int64_t)(-(int64_t)(mag - 1) - 1) : (int64_t)mag;
    return true;
}

bool gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    bool neg;
    uint64_t mag;
    if (!kv || !int_value(kv->type, kv->v.u64, kv->v.i64, &neg, &mag) || neg) return false;
    *out = mag;
    return true;
}

bool gguf_get_i64(const gguf_file *f, const char *key, int64_t *out) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    bool neg;
    uint64_t mag;
    if (!kv || !int_value(kv->type, kv->v.u64, kv->v.i64, &neg, &mag)) return false;
    return to_i64(neg, mag, out);
}

bool gguf_get_f64(const gguf_file *f, const char *key, double *out) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) return false;
    if (is_float(kv->type))
        *out = kv->v.f64;
    else if (is_unsigned(kv->type))
        *out = (double)kv->v.u64;
    else if (is_signed(kv->type))
        *out = (double)kv->v.i64;
    else
        return false;
    return true;
}

bool gguf_get_bool(const gguf_file *f, const char *key, bool *out) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv || kv->type != GGUF_VAL_BOOL) return false;
    *out = kv->v.u64 != 0;
    return true;
}

bool gguf_get_str(const gguf_file *f, const char *key, gguf_string *out) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv || kv->type != GGUF_VAL_STRING) return false;
    *out = kv->v.str;
    return true;
}

const gguf_kv *gguf_get_arr(const gguf_file *f, const char *key, gguf_value_type elem) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    return kv && kv->type == GGUF_VAL_ARRAY && kv->arr_type == elem ? kv : NULL;
}

// ---- array elements ----

static bool numeric_elem(const gguf_kv *kv, uint64_t i, uint64_t *u, int64_t *s, double *d) {
    if (!kv || kv->type != GGUF_VAL_ARRAY || i >= kv->arr_len) return false;
    gguf_value_type t = kv->arr_type;
    if (t == GGUF_VAL_STRING || t == GGUF_VAL_ARRAY) return false;
    decode_scalar(t, kv->arr_data + i * type_size[t], u, s, d);
    return true;
}

bool gguf_arr_i64(const gguf_kv *kv, uint64_t i, int64_t *out) {
    uint64_t u = 0;
    int64_t s = 0;
    double d = 0;
    if (!numeric_elem(kv, i, &u, &s, &d)) return false;
    gguf_value_type t = kv->arr_type;
    if (is_float(t)) {
        if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) || d != floor(d)) return false;
        *out = (int64_t)d;
        return true;
    }
    bool neg;
    uint64_t mag;
    if (!int_value(t == GGUF_VAL_BOOL ? GGUF_VAL_UINT8 : t, u, s, &neg, &mag)) return false;
    return to_i64(neg, mag, out);
}

bool gguf_arr_f64(const gguf_kv *kv, uint64_t i, double *out) {
    uint64_t u = 0;
    int64_t s = 0;
    double d = 0;
    if (!numeric_elem(kv, i, &u, &s, &d)) return false;
    gguf_value_type t = kv->arr_type;
    *out = is_float(t) ? d : is_signed(t) ? (double)s : (double)u;
    return true;
}

bool gguf_arr_str(const gguf_kv *kv, uint64_t i, gguf_string *out) {
    if (!kv || kv->type != GGUF_VAL_ARRAY || kv->arr_type != GGUF_VAL_STRING || i >= kv->arr_len) return false;
    *out = kv->arr_strs[i];
    return true;
}
