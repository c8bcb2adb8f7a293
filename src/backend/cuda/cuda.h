// cuda.h: internal to the CUDA backend (C host glue and the .cu kernel files both include it).
// A stream is a cudaStream_t with its cuBLAS handle and a grow-only device scratch; ops only
// enqueue. A failed CUDA call sets the thread's message (naming the op) and the stream's sticky
// status, and the op does nothing more. Activations are bf16 unless RILL_CUDA_DTYPE says f16/f32.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "backend/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

// x quantized for the dp4a GEMV: per block of 32 values, int8 codes in two planes (x ~ d q1 +
// d / 254 q2, d = amax / 127: ~15 bits), d / 254 and the block's f32 sum; in the stream's scratch.
// The GEMV quantizes x itself (quant_x_kernel), or the op that produces x writes it this way
// (cuda_norm_matmul, cuda_act_matmul), which saves that launch. A GEMV that adds its output into
// the residual may also write the residual this way for the norm after it (cuda_res_epi).
typedef struct {
    int8_t *codes; // [2][n_blk][32]: plane 1, then plane 2; each 8 values ordered (0,2,4,6),(1,3,5,7)
    float *scale;  // [n_blk] d / 254
    float *sum;    // [n_blk]
    float *ss;     // [n_blk] (a prepared norm, cuda_matmul_add_norm) each block's sum of squares of x
    int64_t n_blk; // n_tok * n_in / 32, block b of token t at t * n_in / 32 + b
} cuda_qx;

// The norm a dp4a GEMV applies after its dot products, for an x prepared unnormalized (x * (w +
// add_one), cuda_res_epi): out = dot * rsqrt(sum(ss) / (32 n_ss) + eps) (+ bias). ss NULL: none.
typedef struct {
    const float *ss; // [n_ss] sums of squares per block of 32 values of x
    int n_ss;
    float eps;
} cuda_norm_epi;
// What a one-token GEMV that owns whole blocks of 32 output rows does after its dot products
// (cuda_gemv_add_norm): x[row] += out[row] (rounded as matmul, then add, store them), then x * (w +
// add) quantized into q, and each block's sum of squares into q.ss: the next norm, prepared.
typedef struct {
    void *x;        // [cols] the residual, of the activation dtype
    const float *w; // [cols] the next norm's weights
    float add;      // 1 for add_one norms, else 0
    cuda_qx q;
} cuda_res_epi;

struct rill_stream {
    rill_backend *be;
    cudaStream_t cs;
    cublasHandle_t blas;
    void *scratch;                  // [scratch_bytes] device bytes: dequantized tiles, attention partials
    size_t scratch_bytes;           // grows, never shrinks; ops on one stream share it in stream order
    rill_status status;             // the first failure on this stream, RILL_OK otherwise
    char error[256];                // its message
    bool capturing;                 // between graph_begin and graph_end
    struct cuda_timeline *timeline; // (RILL_CUDA_TIMELINE builds, cuda_timeline.c) NULL: off
    // The norm the last op prepared (cuda_matmul_add_norm): x [1][cols] holds the residual sum, q its
    // values times (w + add_one) quantized, q.ss their sums of squares per block of 32. The norm op
    // after it over the same x and weights takes it; any launch, upload, cuBLAS matmul, graph
    // capture or replay drops it (x NULL).
    struct {
        const void *x;
        const float *w; // [cols] f32
        float eps;
        bool add_one;
        int64_t cols;
        cuda_qx q;
    } prep;
    // x quantized by the op that wrote it (the decode attention quantizes its output as it stores
    // it): the dp4a GEMV over x [1][cols] next takes q instead of launching its own quantization.
    // Dropped whenever prep is (cuda_forget_prepared), and once taken.
    struct {
        const void *x;
        int64_t cols;
        cuda_qx q;
    } qx_ready;
};

// Drops what the last op prepared for the next (prep, qx_ready): anything that may write memory
// outside the ops that keep them calls it.
static inline void cuda_forget_prepared(rill_stream *s) {
    s->prep.x = NULL;
    s->qx_ready.x = NULL;
}

struct rill_graph {
    cudaGraphExec_t exec;
};

struct rill_event {
    cudaEvent_t ev;
};

// The L1/shared split each kernel asks for, set the first time it is launched (cuda_carveout.c;
// cuda_launch_cluster calls it).
void cuda_kernel_carveout(const void *kernel);

// Memory (cuda_memory.c): device blocks accounted through rill_memory_account.
void *cuda_alloc(rill_backend *be, size_t bytes);
void cuda_free(rill_backend *be, void *p);
void cuda_memory_close(rill_backend *be); // frees what is left (weights never freed)
// Device scratch of at least `bytes` on s, or NULL (message and status set).
void *cuda_scratch(rill_stream *s, size_t bytes, const char *op);
rill_status cuda_weight_load(rill_backend *be, const rill_weight *host, rill_weight *dev);
void cuda_weight_free(rill_backend *be, rill_weight *dev);

// Records a CUDA failure of `op` on s; returns true when err is cudaSuccess.
bool cuda_ok(rill_stream *s, cudaError_t err, const char *op);
// Records a failure that is not a CUDA error (a shape or dtype the kernels do not handle).
void cuda_reject(rill_stream *s, rill_status st, const char *op, const char *why);

// The ops (one .cu file each, or cuda_matmul.c).
void cuda_embed(rill_stream *s, rill_tensor *out, const rill_tensor *ids, const rill_weight *w, float scale);
void cuda_matmul(rill_stream *s, rill_tensor *out, const rill_tensor *x, const rill_weight *w);
void cuda_rmsnorm(rill_stream *s, rill_tensor *out, const rill_tensor *x, const float *w, float eps, bool add_one);
void cuda_add_rmsnorm(rill_stream *s, rill_tensor *out, rill_tensor *x, const rill_tensor *r, const float *w, float eps,
                      bool add_one);
void cuda_rope(rill_stream *s, rill_tensor *x, const rill_tensor *pos, const rill_rope_params *p);
void cuda_attention(rill_stream *s, rill_tensor *out, const rill_tensor *q, const rill_tensor *k, const rill_tensor *v,
                    const rill_attn_params *p);
// Prefill attention on the tensor cores (cuda_attention_gemm.cu): takes the call and returns true
// when it fits (more than 8 queries, host positions, q/k/v/out all f16 or all bf16); else false.
bool cuda_attention_gemm(rill_stream *s, rill_tensor *out, const rill_tensor *q, const rill_tensor *k,
                         const rill_tensor *v, const rill_attn_params *p);
// Prefill attention in one flash-attention kernel (cuda_attention_prefill.cu): takes the call and
// returns true when it fits (more than 8 queries, host positions, q/k/v/out all f16 or all bf16,
// head_dim = v_head_dim = 64 or 128, aligned rows) unless RILL_CUDA_PREFILL_ATTN=gemm; else false.
bool cuda_attention_prefill(rill_stream *s, rill_tensor *out, const rill_tensor *q, const rill_tensor *k,
                            const rill_tensor *v, const rill_attn_params *p);
void cuda_attention_append(rill_stream *s, rill_tensor *out, const rill_tensor *q, const rill_tensor *k_new,
                           const rill_tensor *v_new, rill_tensor *keys, rill_tensor *values, const int32_t *row,
                           const rill_attn_params *p);
void cuda_attention_q(rill_stream *s, rill_tensor *out, const rill_tensor *q, const rill_qkv *k, const rill_qkv *v,
                      const rill_attn_params *p);
void cuda_kv_quantize(rill_stream *s, rill_qkv *out, const rill_tensor *x);
void cuda_act_mul(rill_stream *s, rill_tensor *out, const rill_tensor *gate, const rill_tensor *up, rill_act act);
void cuda_add(rill_stream *s, rill_tensor *out, const rill_tensor *a, const rill_tensor *b);
void cuda_scale(rill_stream *s, rill_tensor *out, const rill_tensor *x, float scale);
void cuda_softcap(rill_stream *s, rill_tensor *out, const rill_tensor *x, float cap);
void cuda_copy(rill_stream *s, rill_tensor *out, const rill_tensor *x);
void cuda_moe_route(rill_stream *s, rill_tensor *idx, rill_tensor *weights, const rill_tensor *logits,
                    const float *bias, const rill_moe_params *p);
void cuda_moe_matmul(rill_stream *s, rill_tensor *out, const rill_tensor *x, const rill_weight *experts,
                     const rill_tensor *idx);
void cuda_moe_combine(rill_stream *s, rill_tensor *out, const rill_tensor *y, const rill_tensor *weights);
// The decode-loop ops (cuda_decode.cu).
void cuda_copy_at(rill_stream *s, rill_tensor *out, const rill_tensor *x, rill_tensor *out2, const rill_tensor *x2,
                  const int32_t *row);
void cuda_sample(rill_stream *s, rill_tensor *token, const rill_tensor *logits, float temp, int top_k, uint64_t seed,
                 int32_t *step, int32_t *publish);

// Matmul building blocks (cuda_gemv.cu, cuda_gemv_dp4a.cu, cuda_dequant.cu), used by cuda_matmul.c.
// Decode: out [n_tok][n_out] = x [n_tok][n_in] . W^T (+ bias) for n_tok <= CUDA_GEMV_MAX_TOK,
// weights read once per call (affine 4/8-bit fused, other bits generic, dense any dtype).
#define CUDA_GEMV_MAX_TOK 8
void cuda_gemv(rill_stream *s, rill_tensor *out, const rill_tensor *x, const rill_weight *w);

// Whether the dp4a GEMV (4- or 8-bit weights; cuda_gemv_dp4a.cu) takes n_tok rows of x in activation
// dtype dt for w.
bool cuda_gemv_dp4a_fits(const rill_weight *w, rill_dtype dt, int64_t n_tok);
// Whether matmul's GEMV would quantize such an x first (it fits, and the f32 GEMV does not pay): then
// x written already quantized saves a launch.
bool cuda_gemv_wants_qx(const rill_weight *w, rill_dtype dt, int64_t n_tok);
// Scratch for n_tok x n_in values quantized (false: message and status set).
bool cuda_qx_scratch(rill_stream *s, int64_t n_tok, int64_t n_in, cuda_qx *q, const char *op);
// q = x [n_tok][n_in] quantized.
void cuda_quantize_x(rill_stream *s, const cuda_qx *q, const rill_tensor *x);
// x quantized already by the op that wrote it (qx_ready), taken into *q; false where it was not.
bool cuda_take_quantized(rill_stream *s, const rill_tensor *x, cuda_qx *q);
// q = act(gate) * up (rounded to the activation dtype, as act_mul stores it) quantized.
void cuda_quantize_act(rill_stream *s, const cuda_qx *q, const rill_tensor *gate, const rill_tensor *up, rill_act act);
// out [n_tok][w.rows] = x . W^T (+ bias) from x quantized in q (n_tok = out->rows); w fits (above).
void cuda_gemv_dp4a(rill_stream *s, rill_tensor *out, const cuda_qx *q, const rill_weight *w);
// out [1][w.rows / 2] = act(gate) * up, the two halves of the GEMV over w (gate rows, then up rows).
// ne (or NULL): q was prepared unnormalized, and this is its norm.
void cuda_gemv_dp4a_act(rill_stream *s, rill_tensor *out, const cuda_qx *q, const rill_weight *w, rill_act act,
                        const cuda_norm_epi *ne);
// RoPE done by the dp4a GEMV of a stacked q/k/v weight for one token, in its epilogue: rows
// [0, n_rot_rows) are the rotated heads (q's, then k's) of head_dim rows each; pos: the device
// position (I32 [1]); the rest as rill_rope_params (rot_dims == head_dim unless interleaved).
typedef struct {
    const int32_t *pos;
    const float *inv_freq; // [rot_dims / 2]
    int rot_dims, head_dim, interleaved, n_rot_rows;
    float mscale;
} cuda_rope_epi;
// The timeline of a captured decode step (cuda_timeline.c, cuda_timeline.cu; RILL_CUDA_TIMELINE
// builds): per launch, the time from its pdl_wait returning to the next launch's, averaged over the
// replays, printed when the stream goes. Each .cu file registers the setter of its copy of the
// device symbols; the names come from cuda_launched while a graph is captured. Inside a kernel,
// timeline_phase(k) adds the time since block (0, 0, 0)'s pdl_wait returned to phase k's sum (k <
// CUDA_TIMELINE_PHASES; printed as means over the launches that mark it).
enum { CUDA_TIMELINE_PHASES = 16 };
typedef void (*cuda_timeline_attach_fn)(unsigned long long *t, unsigned *n, unsigned cap, unsigned long long *phases);
int cuda_timeline_register(cuda_timeline_attach_fn attach);
void cuda_timeline_name(rill_stream *s, const char *op);
void cuda_timeline_capture(rill_stream *s);
void cuda_timeline_before_replay(rill_stream *s);
void cuda_timeline_after_replay(rill_stream *s);
void cuda_timeline_report(rill_stream *s);
// (cuda_timeline.cu) sums[i] += t[i + 1] - t[i] for the n stamps of a replay; sums[cap]: replays.
void cuda_timeline_accumulate(rill_stream *s, const unsigned long long *t, const unsigned *n, double *sums,
                              unsigned cap);
// Whether the GEMV that cuda_gemv_add_norm runs takes x [1][w.rows] += a [1][w.cols] . W^T.
bool cuda_gemv_add_norm_fits(const rill_tensor *x, const rill_tensor *a, const rill_weight *w);
// That GEMV with its epilogue re (re->x is x's data).
void cuda_gemv_add_norm(rill_stream *s, const rill_tensor *a, const rill_weight *w, const cuda_res_epi *re);
// Whether the one-token dp4a GEMV runs w on the resident-grid stream kernel (6144 rows or more).
bool cuda_gemv_dp4a_streams(const rill_weight *w, int64_t n_tok);
// out [1][w.rows] = x . W^T from x quantized in q, the rows of re rotated (a warp per rotated pair).
void cuda_gemv_dp4a_rope(rill_stream *s, rill_tensor *out, const cuda_qx *q, const rill_weight *w,
                         const cuda_rope_epi *re, const cuda_norm_epi *ne);
// add_rmsnorm (rmsnorm when r is NULL) that also writes h quantized into q (cuda_rmsnorm.cu); false,
// with nothing launched, when the rows do not fit its 8-wide kernel (then run the op apart).
bool cuda_norm_quantize(rill_stream *s, rill_tensor *h, rill_tensor *x, const rill_tensor *r, const float *w, float eps,
                        bool add_one, const cuda_qx *q);
// The ops with the matmul after them fused in (cuda_matmul_fused.c; backend.h says what they compute).
void cuda_norm_matmul(rill_stream *s, rill_tensor *out, rill_tensor *h, rill_tensor *x, const rill_tensor *r,
                      const float *norm_w, float eps, bool add_one, const rill_weight *w);
bool cuda_norm_qkv_rope(rill_stream *s, rill_tensor *out, rill_tensor *h, rill_tensor *x, const rill_tensor *r,
                        const float *norm_w, float eps, bool add_one, const rill_weight *w, const rill_tensor *pos,
                        const rill_rope_params *p);
bool cuda_norm_mlp(rill_stream *s, rill_tensor *out, rill_tensor *g, rill_tensor *h, rill_tensor *x,
                   const rill_tensor *r, const float *norm_w, float eps, bool add_one, const rill_weight *gate_up,
                   rill_act act, const rill_weight *down, const rill_norm_next *next);
bool cuda_matmul_add_norm(rill_stream *s, rill_tensor *x, const rill_tensor *a, const rill_weight *w,
                          const rill_norm_next *next);
bool cuda_embed_norm(rill_stream *s, rill_tensor *out, const rill_tensor *ids, const rill_weight *w, float scale,
                     const rill_norm_next *next);
// One token's embedding into re->x (dt), preparing the norm after it (cuda_embed.cu).
void cuda_embed_prepare(rill_stream *s, const rill_tensor *ids, const rill_weight *w, float scale, rill_dtype dt,
                        const cuda_res_epi *re);
void cuda_act_matmul(rill_stream *s, rill_tensor *out, rill_tensor *gate, const rill_tensor *up, rill_act act,
                     const rill_weight *w);
// Rows [r0, r0 + n) of W dequantized to dt (the activation dtype): dst [n][w->cols].
void cuda_dequant_rows(rill_stream *s, void *dst, rill_dtype dt, const rill_weight *w, int64_t r0, int64_t n);
// out[t][o] += bias[o]   out [n_tok][n_out], bias [n_out] f32
void cuda_add_bias(rill_stream *s, rill_tensor *out, const float *bias);

// The backend (cuda_backend.c). act: DTYPE_BF16, DTYPE_F16 or DTYPE_F32. cuda_backend_open is
// what backend_open("cuda") calls: bf16, or the dtype named by $RILL_CUDA_DTYPE (bf16, f16, f32).
rill_status cuda_backend_open_dtype(rill_dtype act, rill_backend **out);
rill_status cuda_backend_open(int threads, rill_backend **out);
void cuda_backend_close(rill_backend *be);

#ifdef __cplusplus
}
#endif
