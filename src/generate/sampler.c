// sampler.c: the processors and filters of sampler.h, following mlx-lm's sample_utils.py rule for
// rule (which tokens each filter keeps, ties included), with our own seeded generator.
#include "generate/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/simd_exp.h"

sampler_params sampler_defaults(void) {
    sampler_params p = {0};
    p.top_p = 1.0f;
    p.min_tokens_to_keep = 1;
    p.xtc_threshold = 0.1f;
    return p;
}

logits_params logits_defaults(void) {
    logits_params p = {0};
    p.repetition_context_size = p.presence_context_size = p.frequency_context_size = 20;
    return p;
}

rill_status sampler_check(const sampler_params *p, int vocab) {
    if (!(p->temp >= 0) || !isfinite(p->temp)) return rill_fail(RILL_ERANGE, "temp %g must be >= 0", p->temp);
    if (!(p->top_p >= 0 && p->top_p <= 1)) return rill_fail(RILL_ERANGE, "top_p %g must lie in [0, 1]", p->top_p);
    if (!(p->min_p >= 0 && p->min_p <= 1)) return rill_fail(RILL_ERANGE, "min_p %g must lie in [0, 1]", p->min_p);
    if (p->top_k < 0) return rill_fail(RILL_ERANGE, "top_k %d must be >= 0", p->top_k);
    if (p->min_tokens_to_keep < 1)
        return rill_fail(RILL_ERANGE, "min_tokens_to_keep %d must be >= 1", p->min_tokens_to_keep);
    if (!(p->xtc_probability >= 0 && p->xtc_probability <= 1))
        return rill_fail(RILL_ERANGE, "xtc_probability %g must lie in [0, 1]", p->xtc_probability);
    if (!(p->xtc_threshold >= 0 && p->xtc_threshold <= 0.5f))
        return rill_fail(RILL_ERANGE, "xtc_threshold %g must lie in [0, 0.5]", p->xtc_threshold);
    for (int i = 0; i < p->n_xtc_special; i++)
        if (p->xtc_special[i] < 0 || p->xtc_special[i] >= vocab)
            return rill_fail(RILL_ERANGE, "XTC special token %d is outside the vocabulary (%d)", p->xtc_special[i],
                             vocab);
    return RILL_OK;
}

rill_status logits_check(const logits_params *p, int vocab) {
    for (int i = 0; i < p->n_bias; i++)
        if (p->bias_ids[i] < 0 || p->bias_ids[i] >= vocab)
            return rill_fail(RILL_ERANGE, "logit bias for token %d, outside the vocabulary (%d)", p->bias_ids[i],
                             vocab);
    if (p->repetition_penalty < 0)
        return rill_fail(RILL_ERANGE, "repetition_penalty %g must be > 0", p->repetition_penalty);
    if (p->repetition_context_size < 0 || p->presence_context_size < 0 || p->frequency_context_size < 0)
        return rill_fail(RILL_ERANGE, "penalty context sizes must be >= 0");
    return RILL_OK;
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next_u64(sampler *s) {
    uint64_t *r = s->rng, out = rotl(r[1] * 5, 7) * 9, t = r[1] << 17;
    r[2] ^= r[0];
    r[3] ^= r[1];
    r[1] ^= r[2];
    r[0] ^= r[3];
    r[2] ^= t;
    r[3] = rotl(r[3], 45);
    return out;
}

double sampler_uniform(sampler *s) { return (double)(next_u64(s) >> 11) * (1.0 / 9007199254740992.0); }

rill_status sampler_init(sampler *s, const sampler_params *p, int vocab) {
    memset(s, 0, sizeof *s);
    rill_status st = sampler_check(p, vocab);
    if (st != RILL_OK) return st;
    s->p = *p;
    s->vocab = vocab;
    uint64_t z = p->seed;
    for (int i = 0; i < 4; i++) { // splitmix64 seeding
        z += 0x9e3779b97f4a7c15ull;
        uint64_t x = z;
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
        s->rng[i] = x ^ (x >> 31);
    }
    s->work = rill_malloc((size_t)vocab * sizeof(float));
    s->order = rill_malloc((size_t)vocab * sizeof(int32_t));
    s->counts = rill_calloc((size_t)vocab, sizeof(int32_t));
    s->filtered = rill_malloc((size_t)vocab * sizeof(float));
    if (!s->work || !s->order || !s->counts || !s->filtered) {
        sampler_free(s);
        return RILL_ENOMEM;
    }
    return RILL_OK;
}

void sampler_free(sampler *s) {
    rill_free(s->work);
    rill_free(s->order);
    rill_free(s->counts);
    rill_free(s->filtered);
    memset(s, 0, sizeof *s);
}

// ---- processors ----

void logits_process(sampler *s, const logits_params *p, const int32_t *history, int64_t n_hist, float *logits) {
    for (int i = 0; i < p->n_bias; i++)
        logits[p->bias_ids[i]] += p->bias_values[i];
    if (p->repetition_penalty > 0 && p->repetition_penalty != 1.0f && p->repetition_context_size > 0) {
        int64_t from = n_hist > p->repetition_context_size ? n_hist - p->repetition_context_size : 0;
        for (int64_t i = from; i < n_hist; i++) { // each distinct token once
            int32_t t = history[i];
            if (s->counts[t]) continue;
            s->counts[t] = 1;
            logits[t] = logits[t] < 0 ? logits[t] * p->repetition_penalty : logits[t] / p->repetition_penalty;
        }
        for (int64_t i = from; i < n_hist; i++)
            s->counts[history[i]] = 0;
    }
    if (p->presence_penalty != 0 && p->presence_context_size > 0) {
        int64_t from = n_hist > p->presence_context_size ? n_hist - p->presence_context_size : 0;
        for (int64_t i = from; i < n_hist; i++) {
            int32_t t = history[i];
            if (s->counts[t]) continue;
            s->counts[t] = 1;
            logits[t] -= p->presence_penalty;
        }
        for (int64_t i = from; i < n_hist; i++)
            s->counts[history[i]] = 0;
    }
    if (p->frequency_penalty != 0 && p->frequency_context_size > 0) {
        int64_t from = n_hist > p->frequency_context_size ? n_hist - p->frequency_context_size : 0;
        for (int64_t i = from; i < n_hist; i++)
            logits[history[i]] -= p->frequency_penalty;
    }
}

// On the decode loop's critical path (the next step waits for the sampled token): with a 262,144-token
// vocabulary (Gemma 3) one exp() in double per entry took ~4 ms per token. The vector path takes the
// exponentials 8 at a time in f32 (~2 ulp each) and sums them in f32 over 256 entries, then in double.
void log_softmax(const float *logits, int vocab, float *logprobs) {
    int i = 0;
    float mx = -INFINITY;
    double sum = 0;
#ifdef SIMD_EXP
    __m256 vmx = _mm256_set1_ps(-INFINITY);
    for (; i + 8 <= vocab; i += 8)
        vmx = _mm256_max_ps(vmx, _mm256_loadu_ps(logits + i));
    float lanes[8];
    _mm256_storeu_ps(lanes, vmx);
    for (int k = 0; k < 8; k++)
        mx = lanes[k] > mx ? lanes[k] : mx;
#endif
    for (; i < vocab; i++)
        if (logits[i] > mx) mx = logits[i];
    i = 0;
#ifdef SIMD_EXP
    vmx = _mm256_set1_ps(mx);
    while (i + 8 <= vocab) {
        __m256 part = _mm256_setzero_ps();
        for (int end = i + 256 < vocab ? i + 256 : vocab; i + 8 <= end; i += 8)
            part = _mm256_add_ps(part, simd_exp8(_mm256_sub_ps(_mm256_loadu_ps(logits + i), vmx)));
        _mm256_storeu_ps(lanes, part);
        for (int k = 0; k < 8; k++)
            sum += lanes[k];
    }
#endif
    for (; i < vocab; i++)
        sum += exp((double)logits[i] - mx);
    float lse = mx + (float)log(sum);
    for (i = 0; i < vocab; i++)
        logprobs[i] = logits[i] - lse;
}

// ---- filters ----

static _Thread_local const float *sort_key; // qsort has no context argument
static int by_value_asc(const void *a, const void *b) {
    float x = sort_key[*(const int32_t *)a], y = sort_key[*(const int32_t *)b];
    if (x != y) return x < y ? -1 : 1;
    return *(const int32_t *)a < *(const int32_t *)b ? -1 : 1; // stable by id
}

// s->order = token ids by ascending lp.
static void sort_ids(sampler *s, const float *lp) {
    for (int i = 0; i < s->vocab; i++)
        s->order[i] = i;
    sort_key = lp;
    qsort(s->order, (size_t)s->vocab, sizeof(int32_t), by_value_asc);
}

// top-p: with probabilities sorted ascending, keep those whose cumulative sum exceeds 1 - p.
static void top_p(sampler *s, float *lp, float p) {
    sort_ids(s, lp);
    double cum = 0;
    for (int i = 0; i < s->vocab; i++) {
        int32_t t = s->order[i];
        cum += exp((double)lp[t]);
        if (!(cum > 1.0 - p)) lp[t] = -INFINITY;
    }
}

// min-p: keep logprob >= max + log(min_p), and always the `keep` most likely.
static void min_p(sampler *s, float *lp, float mp, int keep) {
    sort_ids(s, lp);
    int n = s->vocab;
    float thr = lp[s->order[n - 1]] + logf(mp);
    for (int i = 0; i < n - keep; i++) {
        int32_t t = s->order[i];
        if (lp[t] < thr) lp[t] = -INFINITY;
    }
}

// XTC: remove every token above the threshold except the least likely of them; specials stay.
static void xtc(sampler *s, float *lp) {
    if (!(sampler_uniform(s) < s->p.xtc_probability)) return;
    double thr = s->p.xtc_threshold, least = INFINITY;
    for (int i = 0; i < s->vocab; i++) {
        double pr = exp((double)lp[i]);
        if (pr > thr && pr < least) least = pr;
    }
    for (int i = 0; i < s->vocab; i++)
        s->work[i] = lp[i];
    for (int i = 0; i < s->vocab; i++)
        if (exp((double)s->work[i]) > least) lp[i] = -INFINITY;
    for (int i = 0; i < s->p.n_xtc_special; i++)
        lp[s->p.xtc_special[i]] = s->work[s->p.xtc_special[i]];
}

// top-k: keep the k largest.
static void top_k(sampler *s, float *lp, int k) {
    if (k >= s->vocab) return;
    sort_ids(s, lp);
    for (int i = 0; i < s->vocab - k; i++)
        lp[s->order[i]] = -INFINITY;
}

void sampler_filter(sampler *s, float *lp) {
    const sampler_params *p = &s->p;
    if (p->top_p > 0 && p->top_p < 1) top_p(s, lp, p->top_p);
    if (p->min_p > 0) min_p(s, lp, p->min_p, p->min_tokens_to_keep);
    if (p->xtc_probability > 0) xtc(s, lp);
    if (p->top_k > 0) top_k(s, lp, p->top_k);
}

int32_t sampler_sample(sampler *s, const float *logprobs) {
    int n = s->vocab;
    if (s->p.temp == 0) {
        int32_t best = 0;
        for (int i = 1; i < n; i++)
            if (logprobs[i] > logprobs[best]) best = i;
        return best;
    }
    float *copy = s->filtered;
    memcpy(copy, logprobs, (size_t)n * sizeof(float));
    sampler_filter(s, copy);
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < n; i++)
        if (copy[i] > mx) mx = copy[i];
    for (int i = 0; i < n; i++)
        sum += copy[i] == -INFINITY ? 0 : exp(((double)copy[i] - mx) / s->p.temp);
    double u = sampler_uniform(s) * sum, acc = 0;
    int32_t pick = -1, last = 0;
    for (int i = 0; i < n && pick < 0; i++) {
        if (copy[i] == -INFINITY) continue;
        last = i;
        acc += exp(((double)copy[i] - mx) / s->p.temp);
        if (u < acc) pick = i;
    }
    return pick >= 0 ? pick : last;
}
