#pragma once
// Shape ops with gradients: reshape, flatten, squeeze/unsqueeze, transpose/permute, slice,
// concat, broadcast_to. reshape is free on contiguous data; the others produce a contiguous
// result, so every kernel downstream reads plain rows.

#include <tensortape/autodiff/eval.hpp>
#include <tensortape/autodiff/function.hpp>
#include <tensortape/backend/cpu/reduce.hpp>

#include <vector>

namespace tensortape {

namespace detail {

template <Floating T>
Var<T> reshape(const Var<T>& x, const Shape& shape) {
    Tensor<T> out = x.value().reshape(shape);
    return record<T>("reshape", std::move(out), {x}, [](BackwardContext& ctx, const Tensor<T>& g, std::span<const Var<T>> in) {
        ctx.accumulate(in[0].node(), g.reshape(in[0].shape()));
    });
}

template <Floating T>
Var<T> permute(const Var<T>& x, const Dims& perm) {
    Tensor<T> out = x.value().permute(perm).clone();
    Dims inverse = perm;
    for (int i = 0; i < perm.rank(); ++i) inverse[normalize_axis("permute", static_cast<int>(perm[i]), perm.rank())] = i;
    return record<T>("permute", std::move(out), {x}, [inverse](BackwardContext& ctx, const Tensor<T>& g, std::span<const Var<T>> in) {
        ctx.accumulate(in[0].node(), g.permute(inverse).clone());
    });
}

template <Floating T>
Var<T> slice(const Var<T>& x, int axis, std::int64_t start, std::int64_t stop, std::int64_t step) {
    const Tensor<T> view = x.value().slice(axis, start, stop, step);
    // Recover the resolved bounds from the view so backward writes exactly where forward read.
    const int ax = normalize_axis("slice", axis, x.rank());
    const std::int64_t first = x.value().numel() == 0 ? 0 : (view.data() - x.value().data()) / std::max<std::int64_t>(1, x.value().strides()[ax]);
    const std::int64_t count = view.shape()[ax];
    return record<T>("slice", view.clone(), {x}, [ax, first, count, step](BackwardContext& ctx, const Tensor<T>& g, std::span<const Var<T>> in) {
        Tensor<T> gx = zeros<T>(in[0].shape());
        gx.slice(ax, first, first + (count - 1) * step + 1, step).assign(g);
        ctx.accumulate(in[0].node(), std::move(gx));
    });
}

template <Floating T>
Var<T> concat(const std::vector<Var<T>>& xs, int axis) {
    std::vector<Tensor<T>> values;
    for (const auto& x : xs) values.push_back(x.value());
    if (values.empty()) fail<value_error>("concat", "needs at least one input");
    Tensor<T> out = concatenate<T>(std::span<const Tensor<T>>(values), axis);
    const int ax = normalize_axis("concat", axis, out.rank());
    return record<T>("concat", std::move(out), xs, [ax](BackwardContext& ctx, const Tensor<T>& g, std::span<const Var<T>> in) {
        std::int64_t at = 0;
        for (const auto& x : in) {
            const std::int64_t n = x.shape()[ax];
            if (x.requires_grad()) ctx.accumulate(x.node(), g.slice(ax, at, at + n).clone());
            at += n;
        }
    });
}

template <Floating T>
Var<T> broadcast_to(const Var<T>& x, const Shape& shape) {
    Tensor<T> out = x.value().broadcast_to(shape).clone();
    return record<T>("broadcast_to", std::move(out), {x}, [](BackwardContext& ctx, const Tensor<T>& g, std::span<const Var<T>> in) {
        ctx.accumulate(in[0].node(), cpu::sum_to(g, in[0].shape()));
    });
}

}  // namespace detail

// Same data, new shape (one extent may be -1).
template <Differentiable X>
auto reshape(X&& x, const Shape& shape) { return detail::reshape(eval(std::forward<X>(x)), shape); }

// Keeps axis 0 and folds the rest into one: [n, ...] -> [n, prod(...)].
template <Differentiable X>
auto flatten(X&& x) {
    auto v = eval(std::forward<X>(x));
    if (v.rank() < 1) fail<shape_error>("flatten", "needs at least one axis, got shape ", v.shape());
    return detail::reshape(v, Shape{v.shape()[0], -1});
}

template <Differentiable X>
auto unsqueeze(X&& x, int axis) {
    auto v = eval(std::forward<X>(x));
    Shape s = v.shape();
    s.insert(normalize_axis("unsqueeze", axis, s.rank() + 1), 1);
    return detail::reshape(v, s);
}
template <Differentiable X>
auto squeeze(X&& x, int axis) {
    auto v = eval(std::forward<X>(x));
    Shape s = v.shape();
    const int a = normalize_axis("squeeze", axis, s.rank());
    if (s[a] != 1) fail<shape_error>("squeeze", "axis ", axis, " of shape ", s, " has extent ", s[a], ", expected 1");
    s.erase(a);
    return detail::reshape(v, s);
}

// Result axis i is input axis perm[i].
template <Differentiable X>
auto permute(X&& x, const Dims& perm) { return detail::permute(eval(std::forward<X>(x)), perm); }

// Swaps two axes (default: the last two).
template <Differentiable X>
auto transpose(X&& x, int a = -2, int b = -1) {
    auto v = eval(std::forward<X>(x));
    if (v.rank() < 2) fail<shape_error>("transpose", "needs at least 2 axes, got shape ", v.shape());
    a = normalize_axis("transpose", a, v.rank());
    b = normalize_axis("transpose", b, v.rank());
    Dims perm = Dims::filled(v.rank(), 0);
    for (int i = 0; i < v.rank(); ++i) perm[i] = i;
    std::swap(perm[a], perm[b]);
    return detail::permute(v, perm);
}

// Elements [start, stop) with a positive step along one axis; negative bounds count from the end.
template <Differentiable X>
auto slice(X&& x, int axis, std::int64_t start, std::int64_t stop, std::int64_t step = 1) {
    return detail::slice(eval(std::forward<X>(x)), axis, start, stop, step);
}

// Joins along an existing axis.
template <Floating T>
Var<T> concat(const std::vector<Var<T>>& xs, int axis = 0) { return detail::concat(xs, axis); }

template <Differentiable X>
auto broadcast_to(X&& x, const Shape& shape) { return detail::broadcast_to(eval(std::forward<X>(x)), shape); }

}  // namespace tensortape
