// cpu_ops.c: the CPU backend's light ops (embedding, RMSNorm, RoPE, elementwise, copy) on f32
// activations. They are memory-bound and small next to matmul and attention, so they run on the
// calling thread; other dtypes go through the reference.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "base/simd_exp.h"
#include "backend/ref.h"

static bool f32(const rill_tensor *t) { return t->dtype == DTYPE_F32; }
static float *row(const rill_tensor *t, int64_t r) { return (float *)t->data + r * t->stride; }

void cpu_embed(rill_stream *s, rill_tensor *out, const rill_tensor *ids, const rill_weight *w, float scale) {
    cpu_enter(s);
    if (!f32(out)) {
        ref_embed(out, ids, w, scale);
        return;
    }
    for (int64_t t = 0; t < out->rows; t++) {
        float *o = row(out, t);
        cpu_weight_row(w, ((const int32_t *)ids->data)[t * ids->stride], o);
        if (scale != 1.0f)
            for (int64_t c = 0; c < out->cols; c++)
                o[c] *= scale;
    }
}

void cpu_rmsnorm(rill_stream *s, rill_tensor *out, const rill_tensor *x, const float *w, float eps, bool add_one) {
    cpu_enter(s);
    if (!f32(out) || !f32(x)) {
        ref_rmsnorm(out, x, w, eps, add_one);
        return;
    }
    float one = add_one ? 1.0f : 0.0f;
    for (int64_t t = 0; t < x->rows; t++) {
        const float *xi = row(x, t);
        float *o = row(out, t);
        double ss = 0; // in f64, as llama.cpp sums (and closer to the exact sum the reference takes)
        for (int64_t c = 0; c < x->cols; c++)
            ss += (double)xi[c] * xi[c];
        float inv = 1.0f / sqrtf((float)(ss / (double)x->cols) + eps);
        for (int64_t c = 0; c < x->cols; c++)
            o[c] = xi[c] * inv * (w[c] + one);
    }
}

void cpu_rope(rill_stream *s, rill_tensor *x, const rill_tensor *pos, const rill_rope_params *p) {
    cpu_enter(s);
    if (!f32(x)) {
        ref_rope(x, pos, p);
        return;
    }
    int half = p->rot_dims / 2;
    float *cs = cpu_scratch(s, 0, (size_t)p->rot_dims); // cos [half] then sin [half]
    for (int64_t t = 0; t < x->rows; t++) {
        double position = ((const int32_t *)pos->data)[t * pos->stride];
        for (int i = 0; i < half; i++) {
            double angle = position * p->inv_freq[i];
            cs[i] = (float)cos(angle) * p->mscale;
            cs[half + i] = (float)sin(angle) * p->mscale;
        }
        for (int h = 0; h < p->n_heads; h++) {
            float *v = row(x, t) + (int64_t)h * p->head_dim;
            int step = p->layout == ROPE_INTERLEAVED ? 2 : 1, other = p->layout == ROPE_INTERLEAVED ? 1 : half;
            for (int i = 0; i < half; i++) {
                float *a = v + i * step, *b = a + other;
                float x0 = *a, x1 = *b, c = cs[i], sn = cs[half + i];
                *a = x0 * c - x1 * sn;
                *b = x1 * c + x0 * sn;
            }
        }
    }
}

typedef struct {
    rill_tensor *out;
    const rill_tensor *gate, *up;
    rill_act act;
} act_job;

#define ACT_ROWS 16 // rows per task

// SiLU(g) * u = g / (1 + e^-g) * u; GELU-tanh(g) * u = g * u * (1 - 1 / (e^(2y) + 1)), y = sqrt(2 / pi)
// (g + 0.044715 g^3), which is 0.5 g (1 + tanh y) u, eight lanes at a time where the build has AVX2.
// SiLU keeps libm's expf: with the vector exp (~2 ulp) rill's greedy tokens over a 4-bit KV cache
// left mlx-lm's at a near-tie (tests/interop/check_prompt_cache.py, q4 rill->mlx), and SiLU is ~2%
// of decode either way.
static void act_task(void *arg, int task, int thread) {
    (void)thread;
    act_job *j = arg;
    const float k = 0.7978845608028654f; // sqrt(2 / pi)
    int64_t t1 = (int64_t)(task + 1) * ACT_ROWS < j->out->rows ? (int64_t)(task + 1) * ACT_ROWS : j->out->rows;
    for (int64_t t = (int64_t)task * ACT_ROWS; t < t1; t++) {
        const float *g = row(j->gate, t), *u = row(j->up, t);
        float *o = row(j->out, t);
        int64_t c = 0;
#ifdef SIMD_EXP
        const __m256 one = _mm256_set1_ps(1.0f);
        if (j->act == ACT_GELU_TANH) // (SiLU: expf per element, below; see the comment above)
            for (; c + 8 <= j->out->cols; c += 8) {
                __m256 gv = _mm256_loadu_ps(g + c), gu = _mm256_mul_ps(gv, _mm256_loadu_ps(u + c));
                __m256 g3 = _mm256_mul_ps(_mm256_mul_ps(gv, gv), gv);
                __m256 y = _mm256_mul_ps(_mm256_set1_ps(k), _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), g3, gv));
                __m256 e = simd_exp8(_mm256_add_ps(y, y)); // 1 + tanh y = 2 - 2 / (e^2y + 1)
                __m256 half1p = _mm256_sub_ps(one, _mm256_div_ps(one, _mm256_add_ps(e, one)));
                _mm256_storeu_ps(o + c, _mm256_mul_ps(gu, half1p));
            }
#endif
        for (; c < j->out->cols; c++)
            o[c] = j->act == ACT_SILU
                       ? g[c] / (1.0f + expf(-g[c])) * u[c]
                       : 0.5f * g[c] * (1.0f + tanhf(k * (g[c] + 0.044715f * g[c] * g[c] * g[c]))) * u[c];
    }
}

void cpu_act_mul(rill_stream *s, rill_tensor *out, const rill_tensor *gate, const rill_tensor *up, rill_act act) {
    cpu_enter(s);
    if (!f32(out) || !f32(gate) || !f32(up)) {
        ref_act_mul(out, gate, up, act);
        return;
    }
    act_job j = {out, gate, up, act};
    threadpool_run(s->pool, (int)((out->rows + ACT_ROWS - 1) / ACT_ROWS), act_task, &j);
}

void cpu_add(rill_stream *s, rill_tensor *out, const rill_tensor *a, const rill_tensor *b) {
    cpu_enter(s);
    if (!f32(out) || !f32(a) || !f32(b)) {
        ref_add(out, a, b);
        return;
    }
    for (int64_t t = 0; t < out->rows; t++) {
        const float *x = row(a, t), *y = row(b, t);
        float *o = row(out, t);
        for (int64_t c = 0; c < out->cols; c++)
            o[c] = x[c] + y[c];
    }
}

void cpu_scale(rill_stream *s, rill_tensor *out, const rill_tensor *x, float scale) {
    cpu_enter(s);
    if (!f32(out) || !f32(x)) {
        ref_scale(out, x, scale);
        return;
    }
    for (int64_t t = 0; t < out->rows; t++) {
        const float *xi = row(x, t);
        float *o = row(out, t);
        for (int64_t c = 0; c < out->cols; c++)
            o[c] = xi[c] * scale;
    }
}

void cpu_softcap(rill_stream *s, rill_tensor *out, const rill_tensor *x, float cap) {
    cpu_enter(s);
    if (!f32(out) || !f32(x)) {
        ref_softcap(out, x, cap);
        return;
    }
    for (int64_t t = 0; t < out->rows; t++) {
        const float *xi = row(x, t);
        float *o = row(out, t);
        for (int64_t c = 0; c < out->cols; c++)
            o[c] = cap * tanhf(xi[c] / cap);
    }
}

void cpu_copy(rill_stream *s, rill_tensor *out, const rill_tensor *x) {
    cpu_enter(s);
    if (!f32(out) || !f32(x)) {
        ref_copy(out, x);
        return;
    }
    for (int64_t t = 0; t < out->rows; t++)
        memcpy(row(out, t), row(x, t), (size_t)out->cols * sizeof(float));
}
