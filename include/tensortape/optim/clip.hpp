#pragma once
// Gradient clipping by global norm, as torch.nn.utils.clip_grad_norm_: every gradient is scaled
// by max_norm / (norm + 1e-6) when that is below 1.

#include <tensortape/autodiff/eval.hpp>
#include <tensortape/autodiff/var.hpp>
#include <tensortape/core/error.hpp>
#include <tensortape/ops/elementwise.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <span>
#include <vector>

namespace tensortape::optim {

namespace detail {

// Sum of squares in double. Independent partial sums keep the adds from waiting on each other
// (and let the compiler vectorize), which a single running sum cannot do without -ffast-math.
template <Floating T>
double sum_of_squares(const Tensor<T>& t, double scale) {
    constexpr std::size_t lanes = 8;
    std::array<double, lanes> acc{};
    if (t.is_contiguous()) {
        const T* p = t.data();
        const std::int64_t n = t.numel();
        std::int64_t i = 0;
        for (; i + std::int64_t(lanes) <= n; i += std::int64_t(lanes))
            for (std::size_t k = 0; k < lanes; ++k) {
                const double x = static_cast<double>(p[i + std::int64_t(k)]) * scale;
                acc[k] += x * x;
            }
        for (; i < n; ++i) {
            const double x = static_cast<double>(p[i]) * scale;
            acc[0] += x * x;
        }
    } else {
        t.for_each([&](const T& v) {
            const double x = static_cast<double>(v) * scale;
            acc[0] += x * x;
        });
    }
    double s = 0.0;
    for (double a : acc) s += a;
    return s;
}

template <Floating T>
double max_abs(const Tensor<T>& t) {
    double m = 0.0;
    t.for_each([&](const T& v) { m = std::max(m, std::abs(static_cast<double>(v))); });
    return m;
}

}  // namespace detail

// Scales the gradients of `params` (those that have one) so that their joint L2 norm is at most
// max_norm, and returns the norm they had. A NaN or Inf norm scales nothing: multiplying would
// turn every gradient into NaN, while leaving them lets the optimizer name the parameter at fault.
template <Floating T>
double clip_grad_norm(std::span<Var<T>> params, double max_norm) {
    if (!(max_norm >= 0.0)) fail<value_error>("clip_grad_norm", "max_norm must be non-negative, got ", max_norm);
    double sum = 0.0;
    for (const auto& p : params)
        if (p.has_grad()) sum += detail::sum_of_squares(p.grad(), 1.0);
    double norm = std::sqrt(sum);
    if (std::isinf(norm)) {
        // The squares overflowed (doubles beyond 1e154); measure again relative to the largest.
        double big = 0.0;
        for (const auto& p : params)
            if (p.has_grad()) big = std::max(big, detail::max_abs(p.grad()));
        if (std::isfinite(big)) {
            double scaled = 0.0;
            for (const auto& p : params)
                if (p.has_grad()) scaled += detail::sum_of_squares(p.grad(), 1.0 / big);
            norm = big * std::sqrt(scaled);
        }
    }
    if (!std::isfinite(norm)) return norm;
    const double coef = max_norm / (norm + 1e-6);
    if (coef >= 1.0) return norm;
    for (auto& p : params) {
        if (!p.has_grad()) continue;
        // Written in place through a handle that shares the gradient's storage; a gradient that
        // is a strided or broadcast view is copied instead (update() does), so shared elements
        // are not scaled twice, and the copy becomes the gradient.
        Var<T> g = constant(p.grad());
        tensortape::update(g, g * static_cast<T>(coef));
        p.set_grad(g.value());
    }
    return norm;
}

template <Floating T>
double clip_grad_norm(std::vector<Var<T>>& params, double max_norm) {
    return clip_grad_norm(std::span<Var<T>>(params), max_norm);
}

}  // namespace tensortape::optim
