// synth.h: model folders with real shapes and random weights, for measuring speed where real
// models cannot travel (the GPU machine). The folder is what mlx_lm.convert writes: config.json
// (with the MLX quantization block when bits < 16) and safetensors shards with an index.
#pragma once
#include <stdint.h>

#include "base/status.h"

// The config.json text of a named preset (llama3-8b, qwen2.5-7b, smollm2-135m, ...), or NULL.
const char *synth_preset_config(const char *name);
// The preset names, NULL-terminated.
const char *const *synth_preset_names(void);

typedef struct {
    int bits;           // 4 or 8: MLX affine; 16: bf16 dense
    int group_size;     // affine group (64 unless set)
    uint64_t seed;      // random stream; the same seed gives the same files
    uint64_t shard_max; // bytes per shard before a new one starts
} synth_options;

// Writes the folder `out_dir` (created if missing) for the model that `config_json` describes.
rill_status synth_write_folder(const char *config_json, const char *config_name, const synth_options *opt,
                               const char *out_dir);
