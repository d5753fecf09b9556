#pragma once
// 2-D pooling, NCHW. Max pooling records the flat index (within the image plane) of each
// window's maximum, so its backward is one scatter pass; average pooling divides by the window
// area including padding (PyTorch's count_include_pad default).

#include <tensortape/backend/cpu/thread_pool.hpp>
#include <tensortape/core/compat.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>

namespace tensortape::cpu {

struct PoolGeometry {
    std::int64_t planes, h, w;  // planes = N * C
    std::int64_t kh, kw, sh, sw, ph, pw;
    std::int64_t oh, ow;
};

// The window maximum and its position, without data-dependent branches (with random data a
// branch on "larger than the best so far" mispredicts about once per window, which made this
// loop a fifth of a training step). A NaN is taken and then kept: PyTorch propagates NaN.
template <class T>
inline void take_if_larger(T v, std::int64_t at, T& best, std::int64_t& best_at) {
    const bool take = !(v <= best) && best == best;
    best = take ? v : best;
    best_at = take ? at : best_at;
}

#if defined(__AVX2__)
// Eight 2x2 windows of one output row, from the 16 columns that start at r0 and at r1 (only the
// first `in` of them exist; the missing ones read as zero and feed only outputs past `out`). The
// first `out` maxima go to y and their flat indices (base is r0's) to at. Same choice as
// take_if_larger in the scalar order: each row's left before right, then row 0 before row 1;
// the first NaN wins. Even and odd columns come apart with in-lane shuffles, which leave the
// windows in the order 0 1 4 5 2 3 6 7; one 64-bit permute at the end puts them back.
inline void max_pool_2x2_eight(const float* r0, const float* r1, std::int32_t w, std::int32_t base, int in, int out, float* y,
                               std::int32_t* at) {
    auto load = [&](const float* p, __m256& a, __m256& b) {
        if (in >= 16) {
            a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 8);
            return;
        }
        a = _mm256_maskload_ps(p, simd::detail::lane_mask32(0, static_cast<std::size_t>(std::min(in, 8))));
        b = _mm256_maskload_ps(p + 8, simd::detail::lane_mask32(0, static_cast<std::size_t>(std::max(in - 8, 0))));
    };
    auto take = [](__m256 v, __m256 best) {  // !(v <= best) && best == best, as in take_if_larger
        return _mm256_andnot_ps(_mm256_cmp_ps(v, best, _CMP_LE_OQ), _mm256_cmp_ps(best, best, _CMP_EQ_OQ));
    };
    auto row_max = [&](const float* r, __m256& best, __m256& right) {
        __m256 a, b;
        load(r, a, b);
        best = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
        const __m256 odd = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
        right = take(odd, best);
        best = _mm256_blendv_ps(best, odd, right);
    };
    __m256 best0, right0, best1, right1;
    row_max(r0, best0, right0);
    row_max(r1, best1, right1);
    const __m256 lower = take(best1, best0);
    const __m256 best = _mm256_blendv_ps(best0, best1, lower);
    const __m256i col = _mm256_and_si256(_mm256_castps_si256(_mm256_blendv_ps(right0, right1, lower)), _mm256_set1_epi32(1));
    const __m256i row = _mm256_and_si256(_mm256_castps_si256(lower), _mm256_set1_epi32(w));
    constexpr int order = _MM_SHUFFLE(3, 1, 2, 0);
    const __m256 vy = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(best), order));
    const __m256i vat = _mm256_add_epi32(_mm256_permute4x64_epi64(_mm256_add_epi32(col, row), order),
                                         _mm256_add_epi32(_mm256_set1_epi32(base), _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14)));
    if (out >= 8) {
        _mm256_storeu_ps(y, vy);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(at), vat);
        return;
    }
    alignas(32) float ty[8];
    alignas(32) std::int32_t tat[8];
    _mm256_store_ps(ty, vy);
    _mm256_store_si256(reinterpret_cast<__m256i*>(tat), vat);
    for (int i = 0; i < out; ++i) y[i] = ty[i], at[i] = tat[i];
}
#endif

template <class T>
void maxpool2d_forward(const T* x, T* y, std::int32_t* argmax, const PoolGeometry& g) {
    parallel_for(g.planes, [&](std::int64_t pl) {
        const T* xp = x + pl * g.h * g.w;
        T* yp = y + pl * g.oh * g.ow;
        std::int32_t* ap = argmax + pl * g.oh * g.ow;
        const bool plain2x2 = g.kh == 2 && g.kw == 2 && g.sh == 2 && g.sw == 2 && g.ph == 0 && g.pw == 0;
        for (std::int64_t oy = 0; oy < g.oh; ++oy) {
            if (plain2x2) {  // the common case: four fixed reads, no bounds
                const T* r0 = xp + 2 * oy * g.w;
                const T* r1 = r0 + g.w;
                std::int64_t ox = 0;
#if defined(__AVX2__)
                // Eight windows at a time. (The scalar loop, branch-free in the source, compiled
                // to branches that mispredicted about once per window: a 2x2 pool over 64x32x26x26
                // took 1 ms, as long as the convolution before it.)
                if constexpr (std::is_same_v<T, float>) {
                    for (; ox < g.ow; ox += 8)
                        max_pool_2x2_eight(r0 + 2 * ox, r1 + 2 * ox, static_cast<std::int32_t>(g.w), static_cast<std::int32_t>(2 * oy * g.w + 2 * ox),
                                           static_cast<int>(std::min<std::int64_t>(16, g.w - 2 * ox)),
                                           static_cast<int>(std::min<std::int64_t>(8, g.ow - ox)), yp + oy * g.ow + ox, ap + oy * g.ow + ox);
                }
#endif
                for (; ox < g.ow; ++ox) {
                    const std::int64_t c = 2 * ox, base = 2 * oy * g.w + c;
                    T best = r0[c];
                    std::int64_t at = base;
                    take_if_larger(r0[c + 1], base + 1, best, at);
                    take_if_larger(r1[c], base + g.w, best, at);
                    take_if_larger(r1[c + 1], base + g.w + 1, best, at);
                    yp[oy * g.ow + ox] = best;
                    ap[oy * g.ow + ox] = static_cast<std::int32_t>(at);
                }
                continue;
            }
            const std::int64_t y0 = std::max<std::int64_t>(0, oy * g.sh - g.ph), y1 = std::min(g.h, oy * g.sh - g.ph + g.kh);
            for (std::int64_t ox = 0; ox < g.ow; ++ox) {
                const std::int64_t x0 = std::max<std::int64_t>(0, ox * g.sw - g.pw), x1 = std::min(g.w, ox * g.sw - g.pw + g.kw);
                T best = -std::numeric_limits<T>::infinity();
                std::int64_t at = y0 * g.w + x0;
                for (std::int64_t iy = y0; iy < y1; ++iy)
                    for (std::int64_t ix = x0; ix < x1; ++ix) take_if_larger(xp[iy * g.w + ix], iy * g.w + ix, best, at);
                yp[oy * g.ow + ox] = best;
                ap[oy * g.ow + ox] = static_cast<std::int32_t>(at);
            }
        }
    });
}

// dx (overwritten) from dy through the recorded argmax.
template <class T>
void maxpool2d_backward(const T* dy, const std::int32_t* argmax, T* dx, const PoolGeometry& g) {
    parallel_for(g.planes, [&](std::int64_t pl) {
        T* dxp = dx + pl * g.h * g.w;
        for (std::int64_t i = 0; i < g.h * g.w; ++i) dxp[i] = T(0);
        const T* dyp = dy + pl * g.oh * g.ow;
        const std::int32_t* ap = argmax + pl * g.oh * g.ow;
        for (std::int64_t o = 0; o < g.oh * g.ow; ++o)
            if (ap[o] >= 0) dxp[ap[o]] += dyp[o];
    });
}

template <class T>
void avgpool2d_forward(const T* x, T* y, const PoolGeometry& g) {
    const T inv = T(1) / static_cast<T>(g.kh * g.kw);
    parallel_for(g.planes, [&](std::int64_t pl) {
        const T* xp = x + pl * g.h * g.w;
        T* yp = y + pl * g.oh * g.ow;
        for (std::int64_t oy = 0; oy < g.oh; ++oy)
            for (std::int64_t ox = 0; ox < g.ow; ++ox) {
                T s = T(0);
                for (std::int64_t i = 0; i < g.kh; ++i) {
                    const std::int64_t iy = oy * g.sh - g.ph + i;
                    if (iy < 0 || iy >= g.h) continue;
                    for (std::int64_t j = 0; j < g.kw; ++j) {
                        const std::int64_t ix = ox * g.sw - g.pw + j;
                        if (ix >= 0 && ix < g.w) s += xp[iy * g.w + ix];
                    }
                }
                yp[oy * g.ow + ox] = s * inv;
            }
    });
}

template <class T>
void avgpool2d_backward(const T* dy, T* dx, const PoolGeometry& g) {
    const T inv = T(1) / static_cast<T>(g.kh * g.kw);
    parallel_for(g.planes, [&](std::int64_t pl) {
        T* dxp = dx + pl * g.h * g.w;
        for (std::int64_t i = 0; i < g.h * g.w; ++i) dxp[i] = T(0);
        const T* dyp = dy + pl * g.oh * g.ow;
        for (std::int64_t oy = 0; oy < g.oh; ++oy)
            for (std::int64_t ox = 0; ox < g.ow; ++ox) {
                const T v = dyp[oy * g.ow + ox] * inv;
                for (std::int64_t i = 0; i < g.kh; ++i) {
                    const std::int64_t iy = oy * g.sh - g.ph + i;
                    if (iy < 0 || iy >= g.h) continue;
                    for (std::int64_t j = 0; j < g.kw; ++j) {
                        const std::int64_t ix = ox * g.sw - g.pw + j;
                        if (ix >= 0 && ix < g.w) dxp[iy * g.w + ix] += v;
                    }
                }
            }
    });
}

}  // namespace tensortape::cpu
