// model_info.h: what `rill inspect` reports about a GGUF file, a safetensors file or a model
// folder, built once as a JSON object (the --json output) from which the text view is printed.
#pragma once
#include <jansson.h>

#include "base/status.h"

// Fills *out with a new JSON object: format, architecture, config fields, tensor and parameter
// counts, bytes per dtype or quantization type, tokenizer kind and chat template presence.
rill_status model_info_build(const char *path, json_t **out);
