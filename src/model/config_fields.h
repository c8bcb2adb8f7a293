// config_fields.h: internal to model/config*.c. The one table that maps every scalar config field
// to its config.json key(s) and its GGUF key, the source (file + naming) that error messages use,
// and the steps shared by the JSON and GGUF readers: family defaults and the final derivation and
// validation of a filled config.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "model/config.h"

typedef enum { FIELD_INT, FIELD_F64, FIELD_BOOL, FIELD_STR } field_kind;

// One scalar field of some struct (rill_model_config, rope_scaling or quant_config).
typedef struct {
    field_kind kind;
    size_t offset;       // into the struct
    size_t cap;          // FIELD_STR: capacity of the char array
    const char *json[2]; // config.json key, then an alias (NULL when none)
    const char *gguf;    // GGUF key after "<arch>." (NULL when GGUF has none)
    double min, max;     // allowed range of numbers (null in JSON gives 0 and skips it)
    bool required;       // must be given (and non-null)
} config_field;

typedef struct {
    const config_field *fields; // [n]
    size_t n;
} config_table;

extern const config_table config_model_fields; // rill_model_config
extern const config_table config_rope_fields;  // rope_scaling
extern const config_table config_quant_fields; // quant_config and its overrides

// Where values come from, so that a message can name the file and the field as that file spells it.
typedef struct {
    const char *file;      // path or name of the document
    const char *gguf_arch; // GGUF: key prefix ("llama"); NULL for JSON
    const char *prefix;    // JSON: path of the object the fields live in ("", "text_config.")
    char buf[4][160];      // scratch for names: up to four may appear in one message
    int next_buf;
} config_src;

// The field's name in this source: "text_config.hidden_size" or "llama.embedding_length".
const char *config_field_name(config_src *src, const config_field *fd);
// The model field stored at `offset` in rill_model_config, named for this source.
const char *config_model_field_name(config_src *src, size_t offset);
// Checks a number against the field's range; names the field on failure.
rill_status config_check_range(config_src *src, const config_field *fd, double v);
// Stores a number (already range-checked) or string into the field.
void config_store_num(const config_field *fd, void *base, double v);
rill_status config_store_str(config_src *src, const config_field *fd, void *base, const char *s, size_t len);

// Maps a family name (config.json model_type or GGUF general.architecture) to its architecture.
bool config_arch_from_name(const char *name, bool gguf, model_arch *arch);
// transformers' defaults for this family; `hf_sizes` adds the MoE/MLA size defaults that the HF
// config classes carry (a GGUF file states them, and an absent key means "not used").
void config_set_defaults(rill_model_config *cfg, model_arch arch, bool hf_sizes);
// The family's default end-of-sequence id (transformers), -1 when it has none.
int config_default_eos(model_arch arch);
// Replaces the eos list with ids[0..n) (each checked to lie in [0, INT32_MAX]); `what` names the field.
rill_status config_set_eos(rill_model_config *cfg, config_src *src, const char *what, const int64_t *ids, int n);
// Sets type-specific defaults after the RoPE scaling type is known.
void config_rope_defaults(rope_scaling *rs);
bool config_rope_type_from_name(const char *name, rope_scaling_type *t);
// Checks bits and group size of MLX affine quantization; `what` names the JSON object.
rill_status config_check_quant(config_src *src, const char *what, int bits, int group_size);

// Required fields, head layout, per-layer attention kinds, family switches, MoE/MLA consistency.
// layer_attn may already be filled by the reader (layer_types); otherwise it is derived here.
rill_status config_finish(rill_model_config *cfg, config_src *src);
