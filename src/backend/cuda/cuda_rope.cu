// cuda_rope.cu: rotary position embedding in place, one thread per (token, head, pair). The angle
// pos * inv_freq[i] and its cos/sin are taken in double: positions reach 10^5 and an f32 angle
// there is off by more than the f32 tolerance of the op tests.
#include "backend/cuda/cuda_common.cuh"

// x: [n_tok][n_heads * head_dim] (row stride sx); pos: [n_tok] I32 (stride sp); inv_freq: [rot/2]
template <typename T>
__global__ void rope_kernel(T *x, int64_t sx, const int32_t *pos, int64_t sp, rill_rope_params p, int64_t n_tok) {
    pdl_wait();
    pdl_trigger();
    int half = p.rot_dims / 2;
    int64_t n = n_tok * p.n_heads * half;
    for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < n;
         idx += (int64_t)gridDim.x * blockDim.x) {
        int i = (int)(idx % half);
        int64_t th = idx / half;
        int h = (int)(th % p.n_heads);
        int64_t t = th / p.n_heads;
        double s, c;
        sincos((double)pos[t * sp] * (double)p.inv_freq[i], &s, &c);
        float cf = (float)c * p.mscale, sf = (float)s * p.mscale;
        T *head = x + t * sx + (int64_t)h * p.head_dim;
        int a = p.layout == ROPE_INTERLEAVED ? 2 * i : i;
        int b = p.layout == ROPE_INTERLEAVED ? 2 * i + 1 : i + half;
        float x0 = to_f32(head[a]), x1 = to_f32(head[b]);
        head[a] = from_f32<T>(x0 * cf - x1 * sf);
        head[b] = from_f32<T>(x1 * cf + x0 * sf);
    }
}

extern "C" void cuda_rope(rill_stream *s, rill_tensor *x, const rill_tensor *pos, const rill_rope_params *p) {
    if (p->rot_dims % 2 || p->rot_dims > p->head_dim || x->cols < (int64_t)p->n_heads * p->head_dim ||
        pos->rows < x->rows || pos->dtype != DTYPE_I32) {
        cuda_reject(s, RILL_EINVAL, "rope", "rot_dims, heads or positions do not fit x");
        return;
    }
    int64_t n = x->rows * p->n_heads * (p->rot_dims / 2);
    if (n == 0) return;
    CUDA_DISPATCH(s, "rope", x->dtype, T,
                  cuda_launch_pdl(s, rope_kernel<T>, cuda_blocks(n, 256), 256, 0, (T *)x->data, x->stride,
                                  (const int32_t *)pos->data, pos->stride, *p, x->rows));
    cuda_launched(s, "rope");
}
