#pragma once
// 2-D pooling, NCHW. Max pooling records the flat index (within the image plane) of each
// window's maximum, so its backward is one scatter pass; average pooling divides by the window
// area including padding (PyTorch's count_include_pad default).

#include <tensortape/backend/cpu/thread_pool.hpp>

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
                for (std::int64_t ox = 0; ox < g.ow; ++ox) {
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
