#pragma once
// 16-bit payloads for gradient buckets: bfloat16 (float's range, 8 significant bits) and IEEE
// half (10 significant bits, range up to 65504). Both round to nearest even. Compressing with
// error feedback (the rounding error of one step is added to the next step's gradient) keeps
// the long-run sum of what was sent equal to the sum of the true gradients.

#include <bit>
#include <cstddef>
#include <cstdint>

namespace tensortape::dist {

enum class Compression : std::uint8_t { none, bf16, fp16 };

constexpr const char* compression_name(Compression c) {
    switch (c) {
        case Compression::none: return "none";
        case Compression::bf16: return "bf16";
        case Compression::fp16: return "fp16";
    }
    return "?";
}

inline std::uint16_t to_bf16(float f) {
    const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 0x0040u);  // NaN stays NaN
    return static_cast<std::uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

inline float from_bf16(std::uint16_t h) { return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16); }

inline std::uint16_t to_fp16(float f) {
    const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
    const std::uint32_t sign = (x >> 16) & 0x8000u;
    const std::uint32_t a = x & 0x7fffffffu;
    if (a >= 0x7f800000u) return static_cast<std::uint16_t>(sign | (a > 0x7f800000u ? 0x7e00u : 0x7c00u));
    if (a >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // rounds to >= 65520: infinity
    if (a < 0x38800000u) {
        // Below half's smallest normal (2^-14): adding 0.5f, whose unit in the last place is
        // 2^-24 (half's subnormal step), rounds to a multiple of that step in the low bits.
        const float r = std::bit_cast<float>(a) + 0.5f;
        return static_cast<std::uint16_t>(sign | (std::bit_cast<std::uint32_t>(r) - 0x3f000000u));
    }
    std::uint32_t h = a - 0x38000000u;  // exponent bias 127 -> 15
    h += 0xfffu + ((h >> 13) & 1u);
    return static_cast<std::uint16_t>(sign | (h >> 13));
}

inline float from_fp16(std::uint16_t h) {
    const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    const std::uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) {
        const float v = static_cast<float>(m) * 0x1p-24f;
        return sign ? -v : v;
    }
    if (e == 31) return std::bit_cast<float>(sign | 0x7f800000u | (m << 13));
    return std::bit_cast<float>(sign | ((e + 112u) << 23) | (m << 13));
}

inline std::uint16_t compress(Compression c, float f) { return c == Compression::bf16 ? to_bf16(f) : to_fp16(f); }
inline float decompress(Compression c, std::uint16_t h) { return c == Compression::bf16 ? from_bf16(h) : from_fp16(h); }

namespace detail {

template <Compression C>
std::uint16_t encode(float f) {
    if constexpr (C == Compression::bf16) return to_bf16(f);
    else return to_fp16(f);
}
template <Compression C>
float decode(std::uint16_t h) {
    if constexpr (C == Compression::bf16) return from_bf16(h);
    else return from_fp16(h);
}

template <Compression C, class T>
void compress_loop(const T* src, T* residual, std::uint16_t* dst, std::size_t n) {
    if (!residual) {
        for (std::size_t i = 0; i < n; ++i) dst[i] = encode<C>(static_cast<float>(src[i]));
        return;
    }
    for (std::size_t i = 0; i < n; ++i) {
        const float v = static_cast<float>(src[i] + residual[i]);
        dst[i] = encode<C>(v);
        residual[i] = static_cast<T>(v - decode<C>(dst[i]));
    }
}

template <Compression C, class T>
void decompress_loop(const std::uint16_t* src, T* dst, std::size_t n, bool add) {
    if (add)
        for (std::size_t i = 0; i < n; ++i) dst[i] += static_cast<T>(decode<C>(src[i]));
    else
        for (std::size_t i = 0; i < n; ++i) dst[i] = static_cast<T>(decode<C>(src[i]));
}

}  // namespace detail

// dst[i] = compress(src[i] + residual[i]); residual[i] = what that rounding lost. Pass a null
// residual for plain compression. (The format is chosen outside the loop so that it vectorises.)
template <class T>
void compress_with_feedback(Compression c, const T* src, T* residual, std::uint16_t* dst, std::size_t n) {
    if (c == Compression::bf16) detail::compress_loop<Compression::bf16>(src, residual, dst, n);
    else detail::compress_loop<Compression::fp16>(src, residual, dst, n);
}

// dst[i] = decompress(src[i]), or dst[i] += it when `add`.
template <class T>
void decompress_into(Compression c, const std::uint16_t* src, T* dst, std::size_t n, bool add = false) {
    if (c == Compression::bf16) detail::decompress_loop<Compression::bf16>(src, dst, n, add);
    else detail::decompress_loop<Compression::fp16>(src, dst, n, add);
}

}  // namespace tensortape::dist
