// cuda_embed.cu: token embedding: out[t][:] = dequant(w)[ids[t]][:] * scale for dense or affine
// rows of any bits, blocks of 256 columns per token, so that each thread waits for one element's
// loads (a block per token walked Llama-3-8B's 4,096 columns 16 loads deep: 12.8 us of a decode
// step on an H100). An id outside [0, rows) yields a row of zeros rather than a read out of bounds
// (rule 6); the caller validates ids against the vocabulary. For a decode step the embedding may also
// prepare the first norm (cuda_embed_prepare): the first layer's norm launch goes.
#include "backend/cuda/cuda_common.cuh"

// out: [n_tok][w.cols] (stride so); ids: [n_tok] I32 (stride si)
template <typename T>
__global__ void embed_kernel(T *out, int64_t so, const int32_t *ids, int64_t si, rill_weight w, float scale) {
    pdl_wait();
    pdl_trigger();
    int64_t t = blockIdx.x;
    int32_t id = ids[t * si];
    bool ok = id >= 0 && id < w.rows;
    for (int64_t c = blockIdx.y * (int64_t)blockDim.x + threadIdx.x; c < w.cols; c += (int64_t)gridDim.y * blockDim.x)
        out[t * so + c] = from_f32<T>(ok ? weight_at(w, id, c) * scale : 0.0f);
}

extern "C" void cuda_embed(rill_stream *s, rill_tensor *out, const rill_tensor *ids, const rill_weight *w,
                           float scale) {
    if (out->cols != w->cols || ids->rows < out->rows || ids->dtype != DTYPE_I32) {
        cuda_reject(s, RILL_EINVAL, "embed", "ids, weight and out do not fit");
        return;
    }
    if (out->rows == 0) return;
    if (out->rows > 0x7fffffff) {
        cuda_reject(s, RILL_ERANGE, "embed", "too many tokens");
        return;
    }
    dim3 grid((unsigned)out->rows, (unsigned)((w->cols + 255) / 256 < 65535 ? (w->cols + 255) / 256 : 65535));
    CUDA_DISPATCH(s, "embed", out->dtype, T,
                  cuda_launch_pdl(s, embed_kernel<T>, grid, 256, 0, (T *)out->data, out->stride,
                                  (const int32_t *)ids->data, ids->stride, *w, scale));
    cuda_launched(s, "embed");
}

// One token's row into re.x with the norm after it prepared (cuda_res_epi): warp b of the grid owns
// values [32 b, 32 b + 32). ids: [1] I32.
template <typename T>
__global__ void embed_prepare_kernel(const int32_t *ids, rill_weight w, float scale, cuda_res_epi re) {
    const int lane = threadIdx.x & 31;
    const int64_t blk = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const bool live = blk < re.q.n_blk;             // (warp-uniform)
    float nw = live ? re.w[blk * 32 + lane] : 0.0f; // read while the kernel before still runs
    pdl_wait();
    pdl_trigger();
    if (!live) return;
    int32_t id = ids[0];
    float f = id >= 0 && id < w.rows ? weight_at(w, id, blk * 32 + lane) * scale : 0.0f;
    prepare_block<T>(re, blk, to_f32(from_f32<T>(f)), nw, lane);
}

extern "C" void cuda_embed_prepare(rill_stream *s, const rill_tensor *ids, const rill_weight *w, float scale,
                                   rill_dtype dt, const cuda_res_epi *re) {
    enum { WARPS = 4 };
    unsigned grid = (unsigned)((re->q.n_blk + WARPS - 1) / WARPS);
    CUDA_DISPATCH(
        s, "embed_norm", dt, T,
        cuda_launch_pdl(s, embed_prepare_kernel<T>, grid, WARPS * 32, 0, (const int32_t *)ids->data, *w, scale, *re));
    cuda_launched(s, "embed_norm");
}
