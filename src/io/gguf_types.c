// gguf_types.c: block sizes and byte sizes of the GGUF tensor types.
#include "io/gguf_types.h"

static const gguf_dtype_traits gguf_traits[GGUF_DTYPE_COUNT] = {
    [GGUF_DTYPE_F32] = {"F32", 1, 4},         [GGUF_DTYPE_F16] = {"F16", 1, 2},
    [GGUF_DTYPE_Q4_0] = {"Q4_0", 32, 18},     [GGUF_DTYPE_Q4_1] = {"Q4_1", 32, 20},
    [GGUF_DTYPE_Q5_0] = {"Q5_0", 32, 22},     [GGUF_DTYPE_Q5_1] = {"Q5_1", 32, 24},
    [GGUF_DTYPE_Q8_0] = {"Q8_0", 32, 34},     [GGUF_DTYPE_Q8_1] = {"Q8_1", 32, 36},
    [GGUF_DTYPE_Q2_K] = {"Q2_K", 256, 84},    [GGUF_DTYPE_Q3_K] = {"Q3_K", 256, 110},
    [GGUF_DTYPE_Q4_K] = {"Q4_K", 256, 144},   [GGUF_DTYPE_Q5_K] = {"Q5_K", 256, 176},
    [GGUF_DTYPE_Q6_K] = {"Q6_K", 256, 210},   [GGUF_DTYPE_Q8_K] = {"Q8_K", 256, 292},
    [GGUF_DTYPE_IQ2_XXS] = {"IQ2_XXS", 256, 66}, [GGUF_DTYPE_IQ2_XS] = {"IQ2_XS", 256, 74},
    [GGUF_DTYPE_IQ3_XXS] = {"IQ3_XXS", 256, 98}, [GGUF_DTYPE_IQ1_S] = {"IQ1_S", 256, 50},
    [GGUF_DTYPE_IQ4_NL] = {"IQ4_NL", 32, 18},  [GGUF_DTYPE_IQ3_S] = {"IQ3_S", 256, 110},
    [GGUF_DTYPE_IQ2_S] = {"IQ2_S", 256, 82},   [GGUF_DTYPE_IQ4_XS] = {"IQ4_XS", 256, 136},
    [GGUF_DTYPE_I8] = {"I8", 1, 1},           [GGUF_DTYPE_I16] = {"I16", 1, 2},
    [GGUF_DTYPE_I32] = {"I32", 1, 4},         [GGUF_DTYPE_I64] = {"I64", 1, 8},
    [GGUF_DTYPE_F64] = {"F64", 1, 8},         [GGUF_DTYPE_IQ1_M] = {"IQ1_M", 256, 56},
    [GGUF_DTYPE_BF16] = {"BF16", 1, 2},       [GGUF_DTYPE_TQ1_0] = {"TQ1_0", 256, 54},
    [GGUF_DTYPE_TQ2_0] = {"TQ2_0", 256, 66},  [GGUF_DTYPE_MXFP4] = {"MXFP4", 32, 17},
};

const gguf_dtype_traits *gguf_dtype_info(uint32_t t) {
    if (t >= GGUF_DTYPE_COUNT || !gguf_traits[t].name) return 0;
    return &gguf_traits[t];
}
