// rope.c: RoPE frequencies computed once at load: inv_freq[i] = theta^(-2i/dims), then the
// config's scaling (linear, llama3's smooth band, yarn's ramp between interpolation and
// extrapolation) as transformers' rope init functions define them. "dynamic" equals plain
// RoPE up to original_max_position_embeddings and is treated as plain.
#include <math.h>

#include "model/model.h"

static double yarn_mscale(double scale, double m) { return scale <= 1 ? 1.0 : 0.1 * m * log(scale) + 1.0; }

// The dimension index whose wavelength makes `rotations` turns over max_pos positions.
static double yarn_dim(double rotations, int dims, double theta, int max_pos) {
    return dims * log(max_pos / (rotations * 2 * M_PI)) / (2 * log(theta));
}

void rope_inv_freq(const rill_model_config *cfg, double theta, bool scaled, int dims, float *inv_freq, float *mscale) {
    const rope_scaling *rs = &cfg->rope_scaling;
    int half = dims / 2;
    *mscale = 1.0f;
    double lo = 0, hi = 0;
    if (scaled && rs->type == ROPE_SCALING_YARN) {
        int max_pos =
            rs->original_max_position_embeddings ? rs->original_max_position_embeddings : cfg->max_position_embeddings;
        lo = floor(yarn_dim(rs->beta_fast, dims, theta, max_pos));
        hi = ceil(yarn_dim(rs->beta_slow, dims, theta, max_pos));
        if (lo < 0) lo = 0;
        if (hi > dims - 1) hi = dims - 1;
        if (lo == hi) hi += 0.001;
        double m = rs->mscale && rs->mscale_all_dim
                       ? yarn_mscale(rs->factor, rs->mscale) / yarn_mscale(rs->factor, rs->mscale_all_dim)
                       : yarn_mscale(rs->factor, 1.0);
        *mscale = (float)m;
    }
    for (int i = 0; i < half; i++) {
        // transformers computes base ** (arange(0, dim, 2) / dim) in f32 (int64 arange cast to float)
        float expo = (float)(2 * i) / (float)dims;
        double f = 1.0 / pow(theta, (double)expo);
        if (scaled) switch (rs->type) {
            case ROPE_SCALING_LINEAR: f /= rs->factor; break;
            case ROPE_SCALING_LLAMA3: {
                double old = rs->original_max_position_embeddings ? rs->original_max_position_embeddings : 8192;
                double low_wl = old / rs->low_freq_factor, high_wl = old / rs->high_freq_factor;
                double wl = 2 * M_PI / f;
                if (wl > low_wl)
                    f /= rs->factor;
                else if (wl >= high_wl) {
                    double smooth = (old / wl - rs->low_freq_factor) / (rs->high_freq_factor - rs->low_freq_factor);
                    f = (1 - smooth) * f / rs->factor + smooth * f;
                }
                break;
            }
            case ROPE_SCALING_YARN: {
                double ramp = (i - lo) / (hi - lo);
                ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
                double extrap = 1 - ramp; // share of the unscaled frequency
                f = f / rs->factor * (1 - extrap) + f * extrap;
                break;
            }
            default: break;
            }
        inv_freq[i] = (float)f;
    }
}
