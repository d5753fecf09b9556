#pragma once
// Reductions: sum, mean, max, min, logsumexp, over all axes or chosen ones, with keepdims.
//
// sum(e) and mean(e) over all axes of an elementwise expression are fused: the expression is
// never materialised; the forward is one reducing loop and the backward is the expression's
// fused backward loop with a constant adjoint. So `mean(square(pred - y))` reads pred and y once
// forward and once backward.

#include <tensortape/autodiff/eval.hpp>
#include <tensortape/autodiff/function.hpp>
#include <tensortape/backend/cpu/reduce.hpp>

#include <cmath>
#include <vector>

namespace tensortape {

using Axes = std::vector<int>;

namespace detail {

template <Expression E>
struct SumGradFn final : GradFnBase {
    using T = typename E::value_type;
    mutable E e;
    Shape shape;
    double scale;

    SumGradFn(E x, Shape s, double k) : e(std::move(x)), shape(s), scale(k) {}
    const char* name() const override { return "sum"; }
    void inputs(std::vector<NodeBase*>& out) const override { expression_inputs(e, out); }
    void backward(BackwardContext& ctx, NodeBase& self) override {
        const T g = ctx.grad_of<T>(self).item();
        run_backward(ctx, e, shape, ConstantAdjoint<T>{static_cast<T>(g * scale)});
    }
};

template <Differentiable X>
auto reduce_all(X&& x, bool mean) {
    using T = operand_value_t<X>;
    auto e = as_expr<T>(std::forward<X>(x));
    const Shape s = e.shape();
    const double n = static_cast<double>(s.numel());
    const double scale = mean ? 1.0 / n : 1.0;
    if (mean && s.numel() == 0) fail<value_error>("mean", "mean of an empty tensor of shape ", s);
    Tensor<T> out = scalar_tensor<T>(static_cast<T>(run_sum(e) * scale));
    std::unique_ptr<GradFnBase> fn;
    if (grad_enabled() && e.requires_grad()) {
        snapshot_versions(e);
        fn = std::make_unique<SumGradFn<decltype(e)>>(std::move(e), s, scale);
    }
    return make_result<T>(std::move(out), std::move(fn));
}

// The output shape of a reduction: `kept` (reduced axes as 1) or with them removed.
inline Shape reduced_shape(const Shape& in, const Shape& kept, std::span<const int> axes, bool keepdims) {
    if (keepdims) return kept;
    Shape out;
    for (int i = 0; i < in.rank(); ++i) {
        bool reduced = axes.empty();
        for (int a : axes) reduced = reduced || normalize_axis("reduce", a, in.rank()) == i;
        if (!reduced) out.push_back(in[i]);
    }
    return out;
}

// Calls f(offset into x, offset into the kept-shape tensor) for every element of x.
template <class F>
void for_each_pair(const Shape& s, const Shape& kept, F&& f) {
    const auto L = cpu::make_layout<2>(s, {contiguous_strides(s), broadcast_strides(kept, contiguous_strides(kept), s)});
    for (std::int64_t r = 0; r < L.rows; ++r) {
        const auto off = L.row_offsets(r);
        const std::int64_t step = L.strides[1].back();
        for (std::int64_t j = 0; j < L.cols; ++j) f(off[0] + j, off[1] + j * step);
    }
}

template <Floating T>
Tensor<T> broadcast_back(const Tensor<T>& g, const Shape& kept, const Shape& in) {
    return g.reshape(kept).broadcast_to(in).clone();
}

template <class Fold, Floating T>
Var<T> extreme(const char* op, const Var<T>& x, std::span<const int> axes, bool keepdims) {
    const Shape s = x.shape();
    if (s.numel() == 0) fail<value_error>(op, "reduction of an empty tensor of shape ", s);
    const Shape kept = cpu::kept_shape(op, s, axes);
    Tensor<T> out(kept);
    cpu::reduce<Fold>(x.value(), out);
    const Shape res = reduced_shape(s, kept, axes, keepdims);
    return record<T>(op, out.reshape(res), {x}, [kept, out](BackwardContext& ctx, const Tensor<T>& g, std::span<const Var<T>> in) {
        // The gradient goes to the elements equal to the extreme, split evenly among ties.
        const Shape& s = in[0].shape();
        const T* xv = in[0].value().data();
        const Tensor<T> gk = g.reshape(kept);
        Tensor<T> count = zeros<T>(kept);
        for_each_pair(s, kept, [&](std::int64_t i, std::int64_t k) { count.data()[k] += xv[i] == out.data()[k] ? T(1) : T(0); });
        Tensor<T> gx(s);
        for_each_pair(s, kept, [&](std::int64_t i, std::int64_t k) {
            gx.data()[i] = xv[i] == out.data()[k] ? gk.data()[k] / count.data()[k] : T(0);
        });
        ctx.accumulate(in[0].node(), std::move(gx));
    });
}

}  // namespace detail

// Sum of all elements (a 0-d Var); fused with an elementwise argument.
template <Differentiable X>
auto sum(X&& x) { return detail::reduce_all(std::forward<X>(x), false); }

// Mean of all elements (a 0-d Var); fused with an elementwise argument.
template <Differentiable X>
auto mean(X&& x) { return detail::reduce_all(std::forward<X>(x), true); }

// Sum over `axes` (all when empty); keepdims leaves them with extent 1.
template <Floating T>
Var<T> sum(const Var<T>& x, const Axes& axes, bool keepdims = false) {
    const Shape s = x.shape();
    const Shape kept = cpu::kept_shape("sum", s, axes);
    Tensor<T> out(kept);
    cpu::reduce<cpu::SumFold>(x.value(), out);
    return record<T>("sum", out.reshape(detail::reduced_shape(s, kept, axes, keepdims)), {x},
                     [kept](BackwardContext& ctx, const Tensor<T>& g, std::span<const Var<T>> in) {
                         ctx.accumulate(in[0].node(), detail::broadcast_back(g, kept, in[0].shape()));
                     });
}

template <Floating T>
Var<T> mean(const Var<T>& x, const Axes& axes, bool keepdims = false) {
    const Shape s = x.shape();
    const Shape kept = cpu::kept_shape("mean", s, axes);
    const std::int64_t n = s.numel() / std::max<std::int64_t>(1, kept.numel());
    if (n == 0) fail<value_error>("mean", "mean over empty axes of shape ", s);
    Tensor<T> out(kept);
    cpu::reduce<cpu::SumFold>(x.value(), out);
    const T inv = T(1) / static_cast<T>(n);
    for (auto& v : out.span()) v *= inv;
    return record<T>("mean", out.reshape(detail::reduced_shape(s, kept, axes, keepdims)), {x},
                     [kept, inv](BackwardContext& ctx, const Tensor<T>& g, std::span<const Var<T>> in) {
                         Tensor<T> gx = detail::broadcast_back(g, kept, in[0].shape());
                         for (auto& v : gx.span()) v *= inv;
                         ctx.accumulate(in[0].node(), std::move(gx));
                     });
}

template <Floating T>
Var<T> max(const Var<T>& x, const Axes& axes = {}, bool keepdims = false) {
    return detail::extreme<cpu::MaxFold>("max", x, axes, keepdims);
}
template <Floating T>
Var<T> min(const Var<T>& x, const Axes& axes = {}, bool keepdims = false) {
    return detail::extreme<cpu::MinFold>("min", x, axes, keepdims);
}

// log(sum(exp(x))) over `axes`, computed as m + log(sum(exp(x - m))) with m the maximum, so it
// neither overflows nor underflows.
template <Floating T>
Var<T> logsumexp(const Var<T>& x, const Axes& axes = {}, bool keepdims = false) {
    const Shape s = x.shape();
    if (s.numel() == 0) fail<value_error>("logsumexp", "reduction of an empty tensor of shape ", s);
    const Shape kept = cpu::kept_shape("logsumexp", s, axes);
    Tensor<T> m(kept);
    cpu::reduce<cpu::MaxFold>(x.value(), m);
    Tensor<T> acc = zeros<T>(kept);
    const Tensor<T> xc = x.value().contiguous();
    const T* xv = xc.data();
    detail::for_each_pair(s, kept, [&](std::int64_t i, std::int64_t k) {
        const T mk = std::isfinite(m.data()[k]) ? m.data()[k] : T(0);
        acc.data()[k] += std::exp(xv[i] - mk);
    });
    Tensor<T> out(kept);
    for (std::int64_t k = 0; k < kept.numel(); ++k) {
        const T mk = std::isfinite(m.data()[k]) ? m.data()[k] : T(0);
        out.data()[k] = mk + std::log(acc.data()[k]);
    }
    return record<T>("logsumexp", out.reshape(detail::reduced_shape(s, kept, axes, keepdims)), {x},
                     [kept, out](BackwardContext& ctx, const Tensor<T>& g, std::span<const Var<T>> in) {
                         const Tensor<T> xc = in[0].value().contiguous();
                         const Tensor<T> gk = g.reshape(kept);
                         Tensor<T> gx(in[0].shape());
                         detail::for_each_pair(in[0].shape(), kept, [&](std::int64_t i, std::int64_t k) {
                             gx.data()[i] = gk.data()[k] * std::exp(xc.data()[i] - out.data()[k]);
                         });
                         ctx.accumulate(in[0].node(), std::move(gx));
                     });
}

// The axis reductions also take an expression, evaluated first.
template <class X>
concept UnevaluatedExpression = Expression<X>;

template <UnevaluatedExpression X>
auto sum(X&& x, const Axes& axes, bool keepdims = false) { return sum(eval(std::forward<X>(x)), axes, keepdims); }
template <UnevaluatedExpression X>
auto mean(X&& x, const Axes& axes, bool keepdims = false) { return mean(eval(std::forward<X>(x)), axes, keepdims); }
template <UnevaluatedExpression X>
auto max(X&& x, const Axes& axes = {}, bool keepdims = false) { return max(eval(std::forward<X>(x)), axes, keepdims); }
template <UnevaluatedExpression X>
auto min(X&& x, const Axes& axes = {}, bool keepdims = false) { return min(eval(std::forward<X>(x)), axes, keepdims); }
template <UnevaluatedExpression X>
auto logsumexp(X&& x, const Axes& axes = {}, bool keepdims = false) { return logsumexp(eval(std::forward<X>(x)), axes, keepdims); }

}  // namespace tensortape
