// archs.c: the table from architecture to traits. A new family adds its file and one line here.
#include "model/model.h"

extern const decoder_traits arch_llama_traits, arch_qwen2_traits, arch_qwen3_traits, arch_gemma3_traits,
    arch_deepseek_v3_traits;

const decoder_traits *arch_traits(model_arch arch) {
    switch (arch) {
    case MODEL_ARCH_LLAMA:
    case MODEL_ARCH_MISTRAL: return &arch_llama_traits;
    case MODEL_ARCH_QWEN2: return &arch_qwen2_traits;
    case MODEL_ARCH_QWEN3: return &arch_qwen3_traits;
    case MODEL_ARCH_GEMMA3: return &arch_gemma3_traits;
    case MODEL_ARCH_DEEPSEEK_V3: return &arch_deepseek_v3_traits;
    default: return NULL;
    }
}
