// cpu_gemm.c: the CPU's prefill matmul (more than 4 tokens) on AVX2 + FMA, out = x . W^T + bias in
// f32, exact to f32 rounding (prefill logits match the reference: the issue-4 acceptance). A task
// turns 16 weight rows into an f32 panel [cols][16] once, then a 6 x 16 register tile runs over the
// tokens, 6 at a time: per column, two panel vectors, six broadcasts of x and 12 FMAs into 12
// accumulators that stay in registers for the whole column loop (named, not an array: with an
// array GCC stored every accumulator back to the stack at each step, which made the kernel bound
// by stores at half the FMA rate).
#include "backend/cpu/cpu.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define GEMM_AVX2 1
#endif

int cpu_gemm_best_path(void) {
#ifdef GEMM_AVX2
    return CPU_PATH_AVX2;
#else
    return CPU_PATH_SCALAR;
#endif
}

#ifdef GEMM_AVX2
#define PANEL 16 // weight rows per panel (two vectors of 8)
#define TILE  6  // tokens per register tile

typedef struct {
    rill_stream *s;
    rill_tensor *out;
    const rill_tensor *x;
    const rill_weight *w;
} gemm_job;

// r [TILE][PANEL] = the tokens x[0..5] (rows of cols floats) against panel [cols][PANEL].
static void tile6x16(const float *panel, const float *const x[TILE], int64_t cols, float r[TILE][PANEL]) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    const float *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3], *x4 = x[4], *x5 = x[5];
    for (int64_t k = 0; k < cols; k++) {
        __m256 w0 = _mm256_load_ps(panel + k * PANEL), w1 = _mm256_load_ps(panel + k * PANEL + 8), b;
#define STEP(xt, a0, a1)                                                                                               \
    b = _mm256_broadcast_ss(xt + k);                                                                                   \
    a0 = _mm256_fmadd_ps(b, w0, a0);                                                                                   \
    a1 = _mm256_fmadd_ps(b, w1, a1);
        STEP(x0, c00, c01)
        STEP(x1, c10, c11)
        STEP(x2, c20, c21)
        STEP(x3, c30, c31)
        STEP(x4, c40, c41)
        STEP(x5, c50, c51)
#undef STEP
    }
    _mm256_storeu_ps(r[0], c00), _mm256_storeu_ps(r[0] + 8, c01);
    _mm256_storeu_ps(r[1], c10), _mm256_storeu_ps(r[1] + 8, c11);
    _mm256_storeu_ps(r[2], c20), _mm256_storeu_ps(r[2] + 8, c21);
    _mm256_storeu_ps(r[3], c30), _mm256_storeu_ps(r[3] + 8, c31);
    _mm256_storeu_ps(r[4], c40), _mm256_storeu_ps(r[4] + 8, c41);
    _mm256_storeu_ps(r[5], c50), _mm256_storeu_ps(r[5] + 8, c51);
}

static void gemm_task(void *arg, int task, int thread) {
    gemm_job *j = arg;
    const rill_weight *w = j->w;
    int64_t cols = w->cols, o0 = (int64_t)task * PANEL, n = w->rows - o0 < PANEL ? w->rows - o0 : PANEL;
    // thread scratch: one f32 row, the panel [cols][PANEL] (32-byte aligned), a row of zeros for the
    // tokens past the last in a partial tile
    int64_t cols16 = (cols + 15) & ~(int64_t)15;
    float *row = cpu_scratch(j->s, thread, (size_t)(cols16 * (PANEL + 2) + 16));
    float *panel = row + cols16, *zeros = panel + cols16 * PANEL;
    for (int64_t r = 0; r < PANEL; r++) {
        if (r < n) cpu_weight_row(w, o0 + r, row);
        for (int64_t k = 0; k < cols; k++)
            panel[k * PANEL + r] = r < n ? row[k] : 0.0f;
    }
    memset(zeros, 0, (size_t)cols * sizeof(float));
    int64_t nt = j->x->rows, xs = j->x->stride;
    const float *x = j->x->data;
    for (int64_t t0 = 0; t0 < nt; t0 += TILE) {
        int nv = nt - t0 < TILE ? (int)(nt - t0) : TILE;
        const float *xt[TILE];
        for (int t = 0; t < TILE; t++)
            xt[t] = t < nv ? x + (t0 + t) * xs : zeros;
        float r[TILE][PANEL];
        tile6x16(panel, xt, cols, r);
        for (int t = 0; t < nv; t++) {
            float *o = (float *)j->out->data + (t0 + t) * j->out->stride + o0;
            for (int64_t i = 0; i < n; i++)
                o[i] = r[t][i] + (w->bias ? w->bias[o0 + i] : 0.0f);
        }
    }
}
#endif

bool cpu_gemm(rill_stream *s, rill_tensor *out, const rill_tensor *x, const rill_weight *w) {
#ifdef GEMM_AVX2
    gemm_job j = {s, out, x, w};
    threadpool_run(s->pool, (int)((w->rows + PANEL - 1) / PANEL), gemm_task, &j);
    return true;
#else
    (void)s, (void)out, (void)x, (void)w;
    return false;
#endif
}
