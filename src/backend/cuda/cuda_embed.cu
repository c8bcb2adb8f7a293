// cuda_embed.cu: token embedding: out[t][:] = dequant(w)[ids[t]][:] * scale for dense or affine
// rows of any bits, one block per token. An id outside [0, rows) yields a row of zeros rather
// than a read out of bounds (rule 6); the caller validates ids against the vocabulary.
#include "backend/cuda/cuda_common.cuh"

// out: [n_tok][w.cols] (stride so); ids: [n_tok] I32 (stride si)
template <typename T>
__global__ void embed_kernel(T *out, int64_t so, const int32_t *ids, int64_t si, rill_weight w, float scale) {
    pdl_wait();
    pdl_trigger();
    int64_t t = blockIdx.x;
    int32_t id = ids[t * si];
    bool ok = id >= 0 && id < w.rows;
    for (int64_t c = threadIdx.x; c < w.cols; c += blockDim.x)
        out[t * so + c] = from_f32<T>(ok ? weight_at(w, id, c) * scale : 0.0f);
}

extern "C" void cuda_embed(rill_stream *s, rill_tensor *out, const rill_tensor *ids, const rill_weight *w,
                           float scale) {
    if (out->cols != w->cols || ids->rows < out->rows || ids->dtype != DTYPE_I32) {
        cuda_reject(s, RILL_EINVAL, "embed", "ids, weight and out do not fit");
        return;
    }
    if (out->rows == 0) return;
    CUDA_DISPATCH(s, "embed", out->dtype, T,
                  cuda_launch_pdl(s, embed_kernel<T>, (unsigned)out->rows, 256, 0, (T *)out->data, out->stride,
                                  (const int32_t *)ids->data, ids->stride, *w, scale));
    cuda_launched(s, "embed");
}
