#pragma once
// Backward passes of the activations that GEMM epilogues fuse (cpu::Activation).

#include <tensortape/core/compat.hpp>

#include <cstdint>

namespace tensortape::cpu {

// out = g where the activation's output y is positive, else 0: relu's backward read from its
// output, since the pre-activation was never stored.
template <class T>
void relu_backward(const T* g, const T* y, T* out, std::int64_t n) {
    using B = simd::batch<T>;
    constexpr std::int64_t W = simd::width<T>;
    std::int64_t i = 0;
    for (; i + W <= n; i += W)
        simd::select(B::load_unaligned(y + i) > B(T(0)), B::load_unaligned(g + i), B(T(0))).store_unaligned(out + i);
    for (; i < n; ++i) out[i] = y[i] > T(0) ? g[i] : T(0);
}

}  // namespace tensortape::cpu
