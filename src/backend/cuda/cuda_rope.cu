// cuda_rope.cu: rotary position embedding in place. The angle pos * inv_freq[i] and its cos/sin are
// taken in double (positions reach 10^5 and an f32 angle there is off by more than the f32
// tolerance of the op tests), once per (token, pair, group of `per` heads): per = 1 for a few
// tokens (decode: one thread per head and pair, the most threads), ROPE_HEADS for prefill, where
// one sincos in double then serves 8 heads.
#include "backend/cuda/cuda_common.cuh"

enum { ROPE_HEADS = 8, ROPE_FEW_TOKENS = 8 };

// x: [n_tok][n_heads * head_dim] (row stride sx); pos: [n_tok] I32 (stride sp); inv_freq: [rot/2].
// n = n_tok * groups * half threads (< 2^31): idx = (t * groups + g) * half + i, group g = heads
// [g * per, min((g + 1) * per, n_heads)), per <= ROPE_HEADS.
template <typename T>
__global__ void rope_kernel(T *x, int64_t sx, const int32_t *pos, int64_t sp, rill_rope_params p, int n, int groups,
                            int per) {
    pdl_wait();
    pdl_trigger();
    int half = p.rot_dims / 2;
    for (int idx = blockIdx.x * blockDim.x + threadIdx.x; idx < n; idx += gridDim.x * blockDim.x) {
        int i = idx % half, tg = idx / half, g = tg % groups, t = tg / groups;
        float cf, sf;
        rope_cos_sin(pos[t * sp], p.inv_freq[i], p.mscale, &cf, &sf);
        int a = p.layout == ROPE_INTERLEAVED ? 2 * i : i;
        int b = p.layout == ROPE_INTERLEAVED ? 2 * i + 1 : i + half;
        int nh = min(per, p.n_heads - g * per);
        T *row = x + t * sx + (int64_t)(g * per) * p.head_dim;
        float x0[ROPE_HEADS], x1[ROPE_HEADS]; // every load before the first store (they may not alias)
#pragma unroll
        for (int j = 0; j < ROPE_HEADS; j++)
            if (j < nh) x0[j] = to_f32(row[j * p.head_dim + a]), x1[j] = to_f32(row[j * p.head_dim + b]);
#pragma unroll
        for (int j = 0; j < ROPE_HEADS; j++)
            if (j < nh) {
                row[j * p.head_dim + a] = from_f32<T>(x0[j] * cf - x1[j] * sf);
                row[j * p.head_dim + b] = from_f32<T>(x1[j] * cf + x0[j] * sf);
            }
    }
}

extern "C" void cuda_rope(rill_stream *s, rill_tensor *x, const rill_tensor *pos, const rill_rope_params *p) {
    if (p->rot_dims % 2 || p->rot_dims > p->head_dim || x->cols < (int64_t)p->n_heads * p->head_dim ||
        pos->rows < x->rows || pos->dtype != DTYPE_I32) {
        cuda_reject(s, RILL_EINVAL, "rope", "rot_dims, heads or positions do not fit x");
        return;
    }
    int per = x->rows > ROPE_FEW_TOKENS ? ROPE_HEADS : 1, groups = (p->n_heads + per - 1) / per;
    int64_t n = x->rows * groups * (p->rot_dims / 2);
    if (n == 0) return;
    if (n >= 0x7fffffff) {
        cuda_reject(s, RILL_ERANGE, "rope", "too many tokens");
        return;
    }
    CUDA_DISPATCH(s, "rope", x->dtype, T,
                  cuda_launch_pdl(s, rope_kernel<T>, cuda_blocks(n, 256), 256, 0, (T *)x->data, x->stride,
                                  (const int32_t *)pos->data, pos->stride, *p, (int)n, groups, per));
    cuda_launched(s, "rope");
}
