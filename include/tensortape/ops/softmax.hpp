#pragma once
// softmax, log_softmax and cross-entropy from logits. All subtract the row maximum before
// exponentiating, so logits of 1e4 neither overflow nor lose the answer.

#include <tensortape/autodiff/eval.hpp>
#include <tensortape/autodiff/function.hpp>

#include <cmath>
#include <concepts>
#include <limits>

namespace tensortape {

namespace detail {

// Calls f(base offset, stride) for every lane along `axis` of a contiguous shape: each call
// sees one vector of extent shape[axis].
template <class F>
void for_each_lane(const Shape& s, int axis, F&& f) {
    std::int64_t inner = 1;
    for (int i = axis + 1; i < s.rank(); ++i) inner *= s[i];
    const std::int64_t outer = s.numel() / std::max<std::int64_t>(1, s[axis] * inner);
    for (std::int64_t o = 0; o < outer; ++o)
        for (std::int64_t i = 0; i < inner; ++i) f(o * s[axis] * inner + i, inner);
}

// y = log_softmax(x) along the lanes, returned as a new tensor.
template <Floating T>
Tensor<T> log_softmax_values(const Tensor<T>& xin, int axis) {
    const Tensor<T> x = xin.contiguous();
    Tensor<T> y(x.shape());
    const std::int64_t n = x.shape()[axis];
    for_each_lane(x.shape(), axis, [&](std::int64_t base, std::int64_t st) {
        const T* xp = x.data() + base;
        T* yp = y.data() + base;
        T m = -std::numeric_limits<T>::infinity();
        for (std::int64_t k = 0; k < n; ++k) m = std::max(m, xp[k * st]);
        if (!std::isfinite(m)) m = T(0);
        T s = T(0);
        for (std::int64_t k = 0; k < n; ++k) s += std::exp(xp[k * st] - m);
        // (x - m) - log(s), not x - (m + log(s)): the latter rounds log(s) to the spacing of m.
        const T log_s = std::log(s);
        for (std::int64_t k = 0; k < n; ++k) yp[k * st] = (xp[k * st] - m) - log_s;
    });
    return y;
}

template <Floating T>
Var<T> softmax(const Var<T>& x, int axis) {
    axis = normalize_axis("softmax", axis, x.rank());
    Tensor<T> y = log_softmax_values(x.value(), axis);
    for (auto& v : y.span()) v = std::exp(v);
    return record<T>("softmax", y, {x}, [axis, y](BackwardContext& ctx, const Tensor<T>& g, std::span<const Var<T>> in) {
        // dx = y * (g - sum(g * y)) along the axis.
        Tensor<T> gx(y.shape());
        const std::int64_t n = y.shape()[axis];
        for_each_lane(y.shape(), axis, [&](std::int64_t base, std::int64_t st) {
            T dot = T(0);
            for (std::int64_t k = 0; k < n; ++k) dot += g.data()[base + k * st] * y.data()[base + k * st];
            for (std::int64_t k = 0; k < n; ++k) gx.data()[base + k * st] = y.data()[base + k * st] * (g.data()[base + k * st] - dot);
        });
        ctx.accumulate(in[0].node(), std::move(gx));
    });
}

template <Floating T>
Var<T> log_softmax(const Var<T>& x, int axis) {
    axis = normalize_axis("log_softmax", axis, x.rank());
    Tensor<T> y = log_softmax_values(x.value(), axis);
    return record<T>("log_softmax", y, {x}, [axis, y](BackwardContext& ctx, const Tensor<T>& g, std::span<const Var<T>> in) {
        // dx = g - softmax * sum(g) along the axis.
        Tensor<T> gx(y.shape());
        const std::int64_t n = y.shape()[axis];
        for_each_lane(y.shape(), axis, [&](std::int64_t base, std::int64_t st) {
            T total = T(0);
            for (std::int64_t k = 0; k < n; ++k) total += g.data()[base + k * st];
            for (std::int64_t k = 0; k < n; ++k)
                gx.data()[base + k * st] = g.data()[base + k * st] - std::exp(y.data()[base + k * st]) * total;
        });
        ctx.accumulate(in[0].node(), std::move(gx));
    });
}

}  // namespace detail

template <Differentiable X>
auto softmax(X&& x, int axis = -1) { return detail::softmax(eval(std::forward<X>(x)), axis); }

template <Differentiable X>
auto log_softmax(X&& x, int axis = -1) { return detail::log_softmax(eval(std::forward<X>(x)), axis); }

enum class Reduction { mean, sum, none };

// Cross-entropy of logits [n, classes] against integer class labels [n]; fused with log-softmax
// (gradient: softmax - onehot). Reduction::none gives the [n] per-example losses.
template <Differentiable X, std::integral L>
auto cross_entropy(X&& logits, const Tensor<L>& labels, Reduction reduction = Reduction::mean) {
    auto z = eval(std::forward<X>(logits));
    using T = operand_value_t<X>;
    const Shape& s = z.shape();
    if (s.rank() != 2) fail<shape_error>("cross_entropy", "logits must be [batch, classes], got shape ", s);
    if (labels.rank() != 1 || labels.shape()[0] != s[0])
        fail<shape_error>("cross_entropy", "labels of shape ", labels.shape(), " do not match logits of shape ", s, " (expected [", s[0], "])");
    const std::int64_t n = s[0], classes = s[1];
    const Tensor<L> lab = labels.contiguous();
    for (std::int64_t i = 0; i < n; ++i)
        if (lab.data()[i] < 0 || static_cast<std::int64_t>(lab.data()[i]) >= classes)
            fail<value_error>("cross_entropy", "label ", +lab.data()[i], " at index ", i, " is outside [0, ", classes, ")");
    Tensor<T> logp = detail::log_softmax_values(z.value(), 1);
    Tensor<T> losses(Shape{n});
    for (std::int64_t i = 0; i < n; ++i) losses.data()[i] = -logp.data()[i * classes + lab.data()[i]];
    Tensor<T> out;
    if (reduction == Reduction::none) {
        out = losses;
    } else {
        double total = 0;
        for (std::int64_t i = 0; i < n; ++i) total += losses.data()[i];
        if (reduction == Reduction::mean) total /= static_cast<double>(std::max<std::int64_t>(1, n));
        out = scalar_tensor<T>(static_cast<T>(total));
    }
    return record<T>("cross_entropy", std::move(out), {z},
                     [logp, lab, reduction, n, classes](BackwardContext& ctx, const Tensor<T>& g, std::span<const Var<T>> in) {
                         Tensor<T> gx(logp.shape());
                         const T scale = reduction == Reduction::mean ? T(1) / static_cast<T>(std::max<std::int64_t>(1, n)) : T(1);
                         for (std::int64_t i = 0; i < n; ++i) {
                             const T gi = (reduction == Reduction::none ? g.data()[i] : g.item()) * scale;
                             for (std::int64_t k = 0; k < classes; ++k) {
                                 const T p = std::exp(logp.data()[i * classes + k]);
                                 gx.data()[i * classes + k] = gi * (p - (k == lab.data()[i] ? T(1) : T(0)));
                             }
                         }
                         ctx.accumulate(in[0].node(), std::move(gx));
                     });
}

}  // namespace tensortape
