#pragma once
// The one place that includes xtensor, xtl and xsimd. Upstream renamed headers between xtensor
// 0.24 and 0.26 and functions between xsimd 8 and 11; keeping every include and every name we
// use from them here means a move to newer versions touches this file alone.

#include <xsimd/xsimd.hpp>
#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xtensor.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <type_traits>

namespace tensortape::simd {

template <class T>
using batch = xsimd::batch<T>;

// Lanes of the widest batch the target flags allow; 1 where T has no SIMD type.
template <class T>
inline constexpr std::size_t width = xsimd::batch<T>::size;

// Code written once for a batch and for the scalar tail of a row takes B = batch<T> or B = T.
template <class B>
struct scalar_of {
    using type = B;
};
template <class T>
struct scalar_of<batch<T>> {
    using type = T;
};
template <class B>
using scalar_t = typename scalar_of<B>::type;

template <class B>
inline constexpr bool is_batch = !std::is_same_v<B, scalar_t<B>>;

// A constant of the element type of B, as a B.
template <class B>
B c(double v) {
    return B(static_cast<scalar_t<B>>(v));
}

template <class B>
B load(const scalar_t<B>* p) {
    if constexpr (is_batch<B>) return batch<scalar_t<B>>::load_unaligned(p);
    else return *p;
}
template <class B>
void store(scalar_t<B>* p, const B& v) {
    if constexpr (is_batch<B>) v.store_unaligned(p);
    else *p = v;
}

// A store that bypasses the cache, for large buffers written once and not read soon: it saves
// the read-for-ownership of each line, a third of the traffic of a write. p must be aligned to
// the batch. Follow a run of them with stream_fence().
template <class B>
void stream(scalar_t<B>* p, const B& v) {
    using T = scalar_t<B>;
    if constexpr (!is_batch<B>) {
        *p = v;
    } else if constexpr (std::is_same_v<typename B::arch_type, xsimd::avx512bw> || std::is_same_v<typename B::arch_type, xsimd::avx512dq> ||
                         std::is_same_v<typename B::arch_type, xsimd::avx512cd> || std::is_same_v<typename B::arch_type, xsimd::avx512f>) {
        if constexpr (std::is_same_v<T, float>) _mm512_stream_ps(p, v);
        else if constexpr (std::is_same_v<T, double>) _mm512_stream_pd(p, v);
        else v.store_aligned(p);
    } else {
        v.store_aligned(p);
    }
}
// Partial batches: lanes [lo, hi) to or from memory, the other lanes of memory untouched (and,
// for loads, zero). Masked instructions where they are cheap: loads and stores on AVX-512, loads
// on AVX2 (masked-off lanes cannot fault, so p + lane may lie outside the buffer for the lanes not
// named); lane by lane elsewhere. (On AVX2 a lane-by-lane load cost a store-forwarding stall per
// call: it made the adjoint of im2col, which is mostly such edges, five times slower than on
// AVX-512. AVX2's masked store is microcoded on Zen 3 and slowed GEMM's edge tiles, so stores
// stay lane by lane there.)
namespace detail {
#if defined(__AVX2__)
// All-ones in the 32-bit (or 64-bit) lanes i with lo <= i < hi.
inline __m256i lane_mask32(std::size_t lo, std::size_t hi) {
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(lo)), iota),
                               _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(hi)), iota));
}
inline __m256i lane_mask64(std::size_t lo, std::size_t hi) {
    const __m256i iota = _mm256_setr_epi64x(0, 1, 2, 3);
    return _mm256_andnot_si256(_mm256_cmpgt_epi64(_mm256_set1_epi64x(static_cast<long long>(lo)), iota),
                               _mm256_cmpgt_epi64(_mm256_set1_epi64x(static_cast<long long>(hi)), iota));
}
#endif
template <class T>
inline constexpr bool is_512 = width<T> * sizeof(T) == 64;
template <class T>
inline constexpr bool is_256 = width<T> * sizeof(T) == 32;
}  // namespace detail

template <class T>
batch<T> load_lanes(const T* p, std::size_t lo, std::size_t hi) {
#if defined(__AVX512F__)
    if constexpr (detail::is_512<T> && std::is_same_v<T, float>)
        return _mm512_maskz_loadu_ps(static_cast<__mmask16>(((1u << hi) - 1) & ~((1u << lo) - 1)), p);
    if constexpr (detail::is_512<T> && std::is_same_v<T, double>)
        return _mm512_maskz_loadu_pd(static_cast<__mmask8>(((1u << hi) - 1) & ~((1u << lo) - 1)), p);
#endif
#if defined(__AVX2__)
    if constexpr (detail::is_256<T> && std::is_same_v<T, float>) return _mm256_maskload_ps(p, detail::lane_mask32(lo, hi));
    if constexpr (detail::is_256<T> && std::is_same_v<T, double>) return _mm256_maskload_pd(p, detail::lane_mask64(lo, hi));
#endif
    alignas(64) T lanes[width<T>] = {};
    for (std::size_t i = lo; i < hi; ++i) lanes[i] = p[i];
    return batch<T>::load_aligned(lanes);
}
// The first `count` lanes (0 < count <= width).
template <class T>
batch<T> load_partial(const T* p, std::size_t count) {
    return load_lanes(p, 0, count);
}
template <class T>
void store_partial(T* p, const batch<T>& v, std::size_t count) {
#if defined(__AVX512F__)
    if constexpr (detail::is_512<T> && std::is_same_v<T, float>) return _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << count) - 1), v);
    if constexpr (detail::is_512<T> && std::is_same_v<T, double>) return _mm512_mask_storeu_pd(p, static_cast<__mmask8>((1u << count) - 1), v);
#endif
    alignas(64) T lanes[width<T>];
    v.store_aligned(lanes);
    for (std::size_t i = 0; i < count; ++i) p[i] = lanes[i];
}

inline void stream_fence() {
#if defined(__SSE__)
    _mm_sfence();
#endif
}

// Horizontal folds run once per row, so a spill to the stack is cheap enough. (xsimd 8 has no
// horizontal max/min, and its hadd trips GCC 12's -Wmaybe-uninitialized on AVX-512.)
template <class T>
T reduce_add(const batch<T>& v) {
    alignas(64) T lanes[width<T>];
    v.store_aligned(lanes);
    T s = T(0);
    for (std::size_t i = 0; i < width<T>; ++i) s += lanes[i];
    return s;
}
template <class T>
T reduce_max(const batch<T>& v) {
    alignas(64) T lanes[width<T>];
    v.store_aligned(lanes);
    return *std::max_element(lanes, lanes + width<T>);
}
template <class T>
T reduce_min(const batch<T>& v) {
    alignas(64) T lanes[width<T>];
    v.store_aligned(lanes);
    return *std::min_element(lanes, lanes + width<T>);
}

// Math used by the elementwise functors. Every function takes a scalar T or a batch<T>, so one
// functor body serves the vector loop and its scalar tail (and, later, device code).
using xsimd::abs;
using xsimd::erf;
using xsimd::exp;
using xsimd::fma;
using xsimd::log;
using xsimd::log1p;
using xsimd::pow;
using xsimd::sqrt;
using xsimd::tanh;

template <class T>
T max(T a, T b) { return a > b ? a : b; }
template <class T>
batch<T> max(const batch<T>& a, const batch<T>& b) { return xsimd::max(a, b); }
template <class T>
T min(T a, T b) { return a < b ? a : b; }
template <class T>
batch<T> min(const batch<T>& a, const batch<T>& b) { return xsimd::min(a, b); }

template <class T>
T select(bool c, T a, T b) { return c ? a : b; }
template <class T>
batch<T> select(const xsimd::batch_bool<T>& c, const batch<T>& a, const batch<T>& b) {
    return xsimd::select(c, a, b);
}

// 1 where the condition holds, else 0, in the value type: lets a comparison feed arithmetic.
template <class T>
T mask(bool c) { return c ? T(1) : T(0); }
template <class T>
batch<T> mask(const xsimd::batch_bool<T>& c) { return xsimd::select(c, batch<T>(T(1)), batch<T>(T(0))); }

}  // namespace tensortape::simd
