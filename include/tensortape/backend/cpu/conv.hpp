#pragma once
// 2-D convolution, NCHW, by im2col + GEMM. Forward: each image's patches are unrolled into a
// [C*KH*KW, OH*OW] matrix in per-thread scratch and one GEMM writes the image's output in place,
// with bias and activation fused into its epilogue. Backward: images are taken in groups whose
// patches sit side by side in one [C*KH*KW, G*OH*OW] matrix, so one GEMM per group does the work
// of G small ones (for the weight gradient, a long depth instead of G short ones). Threads take
// whole images or groups. The group size depends on the layer's sizes only and the weight
// gradient's per-group partial sums are added in group order, so results do not depend on the
// thread count.

#include <tensortape/backend/cpu/activation.hpp>
#include <tensortape/backend/cpu/gemm.hpp>
#include <tensortape/backend/cpu/thread_pool.hpp>
#include <tensortape/core/allocator.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

namespace tensortape::cpu {

struct ConvGeometry {
    std::int64_t n, c, h, w;      // input
    std::int64_t co, kh, kw;      // weights
    std::int64_t sh, sw, ph, pw, dh, dw;
    std::int64_t oh, ow;          // output

    std::int64_t patch() const { return c * kh * kw; }
    std::int64_t pixels() const { return oh * ow; }
    // Images per backward group: the group's im2col matrix stays near 2 MiB (a core's L2 here),
    // and a batch makes at least 8 groups for the threads to share.
    std::int64_t group() const {
        const std::int64_t fit = (std::int64_t(1) << 19) / std::max<std::int64_t>(1, patch() * pixels());
        return std::clamp<std::int64_t>(fit, 1, std::max<std::int64_t>(1, (n + 7) / 8));
    }
    std::int64_t groups() const { return (n + group() - 1) / group(); }
};

// Output positions ow in [lo, hi) read input column ow * s - p + off inside [0, w).
inline void valid_range(std::int64_t out, std::int64_t s, std::int64_t p, std::int64_t off, std::int64_t in, std::int64_t& lo,
                        std::int64_t& hi) {
    // smallest o with o*s - p + off >= 0, and first o with o*s - p + off >= in
    const std::int64_t a = p - off;
    lo = a <= 0 ? 0 : (a + s - 1) / s;
    const std::int64_t b = in + p - off;
    hi = b <= 0 ? 0 : (b + s - 1) / s;
    lo = std::min(lo, out);
    hi = std::clamp(hi, lo, out);
}

// cols[(c*kh + i)*kw + j][oy*ow + ox] = x[c][oy*sh - ph + i*dh][ox*sw - pw + j*dw], 0 outside;
// rows of cols are ld apart.
//
// A row of cols is oh short segments (11 values for the example's conv2), so the per-segment
// work is what costs. Rows of zeros (vertical padding) are filled in one go, and with stride 1 and
// no horizontal padding a segment is one or two whole-vector copies, writing up to a vector's
// width past its end: the segments are written in order, so the next one overwrites the spill;
// the spill never leaves this image's part of the row, nor do the loads leave this image.
template <class T>
void im2col(const T* x, const ConvGeometry& g, T* cols, std::int64_t ld) {
    using B = simd::batch<T>;
    constexpr std::int64_t W = simd::width<T>;
    const T* x_end = x + g.c * g.h * g.w;
    const std::int64_t P = g.pixels();
    for (std::int64_t c = 0; c < g.c; ++c)
        for (std::int64_t i = 0; i < g.kh; ++i) {
            std::int64_t y0, y1;  // output rows whose input row is inside the image
            valid_range(g.oh, g.sh, g.ph, i * g.dh, g.h, y0, y1);
            for (std::int64_t j = 0; j < g.kw; ++j) {
                T* row = cols + ((c * g.kh + i) * g.kw + j) * ld;
                std::int64_t x0, x1;
                valid_range(g.ow, g.sw, g.pw, j * g.dw, g.w, x0, x1);
                std::fill_n(row, y0 * g.ow, T(0));
                const T* in = x + (c * g.h + y0 * g.sh - g.ph + i * g.dh) * g.w - g.pw + j * g.dw;
                T* out = row + y0 * g.ow;
                std::int64_t oy = y0;
                if (g.sw == 1 && x0 == 0 && x1 == g.ow) {
                    // Whole vectors while both the spill and the loads stay in bounds.
                    const std::int64_t vec = (g.ow + W - 1) / W * W;
                    for (; oy < y1 && oy * g.ow + vec <= P && in + vec <= x_end; ++oy, in += g.sh * g.w, out += g.ow)
                        for (std::int64_t k = 0; k < g.ow; k += W) B::load_unaligned(in + k).store_unaligned(out + k);
                }
                for (; oy < y1; ++oy, in += g.sh * g.w, out += g.ow) {
                    for (std::int64_t ox = 0; ox < x0; ++ox) out[ox] = T(0);
                    if (g.sw == 1) std::memcpy(out + x0, in + x0, static_cast<std::size_t>(x1 - x0) * sizeof(T));
                    else
                        for (std::int64_t ox = x0; ox < x1; ++ox) out[ox] = in[ox * g.sw];
                    for (std::int64_t ox = x1; ox < g.ow; ++ox) out[ox] = T(0);
                }
                std::fill(row + y1 * g.ow, row + P, T(0));  // after the segments: it overwrites their spill
            }
        }
}

// The adjoint of im2col: adds each column entry back to the input position it was read from,
// into one image's dx (the whole image is this call's: it may rewrite any of it).
//
// With stride 1 the kw entries that land in one input row are shifted copies of kw segments, so
// a vector of the input row is summed in registers from kw masked loads (one per j, its lanes the
// input columns that j reaches) and added to memory once, instead of kw scalar passes of ow adds.
template <class T>
void col2im_add(const T* cols, std::int64_t ld, const ConvGeometry& g, T* dx) {
    using B = simd::batch<T>;
    constexpr std::int64_t W = simd::width<T>;
    constexpr std::int64_t max_kw = 16;
    if (g.sw == 1 && g.kw <= max_kw) {
        // For each j: input columns [lo, hi) receive row j's entries, from column ix - off.
        std::int64_t lo[max_kw], hi[max_kw], off[max_kw];
        for (std::int64_t j = 0; j < g.kw; ++j) {
            std::int64_t x0, x1;
            valid_range(g.ow, 1, g.pw, j * g.dw, g.w, x0, x1);
            off[j] = j * g.dw - g.pw;
            lo[j] = x0 + off[j];
            hi[j] = x1 + off[j];
        }
        const T* dx_end = dx + g.c * g.h * g.w;
        for (std::int64_t c = 0; c < g.c; ++c)
            for (std::int64_t i = 0; i < g.kh; ++i) {
                const T* rows = cols + (c * g.kh + i) * g.kw * ld;
                std::int64_t y0, y1;
                valid_range(g.oh, g.sh, g.ph, i * g.dh, g.h, y0, y1);
                for (std::int64_t oy = y0; oy < y1; ++oy) {
                    T* out = dx + (c * g.h + oy * g.sh - g.ph + i * g.dh) * g.w;
                    for (std::int64_t t0 = 0; t0 < g.w; t0 += W) {
                        B acc(T(0));
                        for (std::int64_t j = 0; j < g.kw; ++j) {
                            const std::int64_t a = std::max(lo[j], t0), b = std::min(hi[j], t0 + W);
                            if (a < b)
                                acc += simd::load_lanes(rows + j * ld + oy * g.ow - off[j] + t0, static_cast<std::size_t>(a - t0),
                                                        static_cast<std::size_t>(b - t0));
                        }
                        // acc is zero past the row, so a whole vector that runs into the next
                        // row writes it back unchanged; only the image's last vector is partial.
                        if (out + t0 + W <= dx_end) {
                            (B::load_unaligned(out + t0) + acc).store_unaligned(out + t0);
                        } else {
                            const auto lanes = static_cast<std::size_t>(std::min(W, g.w - t0));
                            simd::store_partial(out + t0, simd::load_partial(out + t0, lanes) + acc, lanes);
                        }
                    }
                }
            }
        return;
    }
    for (std::int64_t c = 0; c < g.c; ++c)
        for (std::int64_t i = 0; i < g.kh; ++i)
            for (std::int64_t j = 0; j < g.kw; ++j) {
                const T* row = cols + ((c * g.kh + i) * g.kw + j) * ld;
                std::int64_t x0, x1;
                valid_range(g.ow, g.sw, g.pw, j * g.dw, g.w, x0, x1);
                for (std::int64_t oy = 0; oy < g.oh; ++oy) {
                    const std::int64_t iy = oy * g.sh - g.ph + i * g.dh;
                    if (iy < 0 || iy >= g.h) continue;
                    T* out = dx + (c * g.h + iy) * g.w - g.pw + j * g.dw;
                    const T* in = row + oy * g.ow;
                    for (std::int64_t ox = x0; ox < x1; ++ox) out[ox * g.sw] += in[ox];
                }
            }
}

// Sum of n contiguous values, vectorised (a scalar running sum is bound by the add latency).
template <class T>
T sum(const T* p, std::int64_t n) {
    using B = simd::batch<T>;
    constexpr std::int64_t W = simd::width<T>;
    B a0(T(0)), a1(T(0));
    std::int64_t i = 0;
    for (; i + 2 * W <= n; i += 2 * W) {
        a0 += B::load_unaligned(p + i);
        a1 += B::load_unaligned(p + i + W);
    }
    if (i + W <= n) {
        a0 += B::load_unaligned(p + i);
        i += W;
    }
    T s = simd::reduce_add(a0 + a1);
    for (; i < n; ++i) s += p[i];
    return s;
}

// Dot product of n contiguous values, vectorised, with two accumulators for the add latency.
template <class T>
T dot(const T* a, const T* b, std::int64_t n) {
    using B = simd::batch<T>;
    constexpr std::int64_t W = simd::width<T>;
    B a0(T(0)), a1(T(0));
    std::int64_t i = 0;
    for (; i + 2 * W <= n; i += 2 * W) {
        a0 = simd::fma(B::load_unaligned(a + i), B::load_unaligned(b + i), a0);
        a1 = simd::fma(B::load_unaligned(a + i + W), B::load_unaligned(b + i + W), a1);
    }
    T s = simd::reduce_add(a0 + a1);
    for (; i < n; ++i) s += a[i] * b[i];
    return s;
}

// out[q] += dot(a', b + q * ldb) for q < rows (at most 16) and *total += sum(a'), in one pass
// over a, where a' is a masked to where keep > 0 when keep is given (the gradient through a fused
// relu). The rows' accumulators are independent, so the loop runs at FMA throughput rather than
// add latency, and the masked gradient is never written out.
template <class T>
void add_dots(const T* a, const T* keep, const T* b, std::int64_t ldb, std::int64_t rows, std::int64_t n, T* out, T* total) {
    using B = simd::batch<T>;
    constexpr std::int64_t W = simd::width<T>;
    B acc[16], all(T(0));
    for (std::int64_t q = 0; q < rows; ++q) acc[q] = B(T(0));
    auto step = [&](B av, std::int64_t i, auto&& load) {
        if (keep) av = simd::select(load(keep + i) > B(T(0)), av, B(T(0)));
        all += av;
        for (std::int64_t q = 0; q < rows; ++q) acc[q] = simd::fma(av, load(b + q * ldb + i), acc[q]);
    };
    std::int64_t i = 0;
    for (; i + W <= n; i += W) step(B::load_unaligned(a + i), i, [](const T* p) { return B::load_unaligned(p); });
    if (i < n) {
        const auto r = static_cast<std::size_t>(n - i);
        step(simd::load_partial(a + i, r), i, [r](const T* p) { return simd::load_partial(p, r); });
    }
    for (std::int64_t q = 0; q < rows; ++q) out[q] += simd::reduce_add(acc[q]);
    *total += simd::reduce_add(all);
}

// A per-thread scratch block for one image's im2col matrix.
template <class T>
struct Scratch {
    std::size_t bytes;
    T* p;
    explicit Scratch(std::int64_t count) : bytes(static_cast<std::size_t>(count) * sizeof(T)), p(static_cast<T*>(allocate_bytes(bytes))) {}
    ~Scratch() { deallocate_bytes(p, bytes); }
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;
};

// The images [n0, n1) of a group.
inline void group_range(const ConvGeometry& g, std::int64_t gi, std::int64_t& n0, std::int64_t& n1) {
    n0 = gi * g.group();
    n1 = std::min(g.n, n0 + g.group());
}

// y[n] = act(W * cols(x[n]) + b), y of shape [N, CO, OH, OW]. The forward GEMM is wide enough
// per image, and writing each image's output in place saves the copy a group would need.
template <class T>
void conv2d_forward(const T* x, const T* w, const T* bias, T* y, const ConvGeometry& g, Activation act) {
    const Epilogue<T> epi{bias, nullptr, act};
    const std::int64_t P = g.pixels(), image = g.c * g.h * g.w;
    const PackedA<T> packed(false, g.co, g.patch(), w, g.patch(), P);  // the weights, packed once for every image
    parallel_for(g.n, [&](std::int64_t n) {
        Scratch<T> cols(g.patch() * P);
        im2col(x + n * image, g, cols.p, P);
        gemm<T>(packed, P, false, cols.p, P, T(1), T(0), y + n * g.co * P, P, epi);
    });
}

// Gradients from dy: dx (overwritten; null to skip), dw and db (overwritten; dw and db null to
// skip them, db alone may be null). With relu_out (the output of a fused relu), dy is first
// masked to where that output is positive, on the way into the group matrix.
template <class T>
void conv2d_backward(const T* x, const T* w, const T* dy, T* dx, T* dw, T* db, const ConvGeometry& g, const T* relu_out = nullptr) {
    const std::int64_t P = g.pixels(), image = g.c * g.h * g.w, wsize = g.co * g.patch();
    const std::int64_t groups = g.groups();
    std::vector<T> partial(dw ? static_cast<std::size_t>(groups * (wsize + g.co)) : 0);
    // W^T, packed once for every group's input-gradient product.
    std::optional<PackedA<T>> wt;
    if (dx) wt.emplace(true, g.patch(), g.co, w, g.patch(), std::min(g.n, g.group()) * P);
    parallel_for(groups, [&](std::int64_t gi) {
        std::int64_t n0, n1;
        group_range(g, gi, n0, n1);
        if (dw && !dx && g.patch() <= 16) {
            // A first layer (one input channel, 3x3: 9 patch rows) needs no input gradient, and
            // each weight gradient is a plain dot product: read dy where it lies, one image at a
            // time, instead of first copying the group's dy (its largest tensor) into a matrix.
            T* pw = partial.data() + gi * (wsize + g.co);
            std::fill_n(pw, wsize + g.co, T(0));
            Scratch<T> cols(g.patch() * P);
            for (std::int64_t n = n0; n < n1; ++n) {
                im2col(x + n * image, g, cols.p, P);
                for (std::int64_t o = 0; o < g.co; ++o) {
                    const std::int64_t at = (n * g.co + o) * P;
                    add_dots(dy + at, relu_out ? relu_out + at : nullptr, cols.p, P, g.patch(), P, pw + o * g.patch(), pw + wsize + o);
                }
            }
            return;
        }
        const std::int64_t ld = (n1 - n0) * P;
        // dy of the group as one [CO, G*P] matrix.
        Scratch<T> dyw(g.co * ld), cols(g.patch() * ld);
        for (std::int64_t n = n0; n < n1; ++n)
            for (std::int64_t o = 0; o < g.co; ++o) {
                T* dst = dyw.p + o * ld + (n - n0) * P;
                const std::int64_t at = (n * g.co + o) * P;
                if (relu_out) relu_backward(dy + at, relu_out + at, dst, P);
                else std::memcpy(dst, dy + at, static_cast<std::size_t>(P) * sizeof(T));
            }
        if (dw) {
            T* pw = partial.data() + gi * (wsize + g.co);
            for (std::int64_t n = n0; n < n1; ++n) im2col(x + n * image, g, cols.p + (n - n0) * P, ld);
            if (g.patch() <= 16) {
                // A first layer (one input channel, 3x3: 9 patch rows): a GEMM this thin is all
                // packing, while each weight gradient is a plain long dot product.
                for (std::int64_t o = 0; o < g.co; ++o)
                    for (std::int64_t q = 0; q < g.patch(); ++q) pw[o * g.patch() + q] = dot(dyw.p + o * ld, cols.p + q * ld, ld);
            } else {
                gemm<T>(false, true, g.co, g.patch(), ld, T(1), dyw.p, ld, cols.p, ld, T(0), pw, g.patch());
            }
            for (std::int64_t o = 0; o < g.co; ++o) pw[wsize + o] = sum(dyw.p + o * ld, ld);
        }
        if (dx) {
            gemm<T>(*wt, ld, false, dyw.p, ld, T(1), T(0), cols.p, ld);
            for (std::int64_t n = n0; n < n1; ++n) {
                T* dxn = dx + n * image;
                std::fill_n(dxn, image, T(0));
                col2im_add(cols.p + (n - n0) * P, ld, g, dxn);
            }
        }
    });
    if (!dw) return;
    std::fill_n(dw, wsize, T(0));
    if (db) std::fill_n(db, g.co, T(0));
    for (std::int64_t gi = 0; gi < groups; ++gi) {
        const T* pw = partial.data() + gi * (wsize + g.co);
        for (std::int64_t i = 0; i < wsize; ++i) dw[i] += pw[i];
        if (db)
            for (std::int64_t o = 0; o < g.co; ++o) db[o] += pw[wsize + o];
    }
}

}  // namespace tensortape::cpu
