#pragma once
// linear: y = activation(x W^T + b), x [N, IN], W [OUT, IN] (PyTorch's layout, so weights
// exchange by name and shape), b [OUT]. One GEMM with the bias and activation in its epilogue.

#include <tensortape/autodiff/eval.hpp>
#include <tensortape/autodiff/function.hpp>
#include <tensortape/backend/cpu/activation.hpp>
#include <tensortape/backend/cpu/gemm.hpp>
#include <tensortape/ops/conv.hpp>

#include <optional>

namespace tensortape {

namespace detail {

template <Floating T>
Tensor<T> relu_backward(const Tensor<T>& g, const Tensor<T>& y) {
    Tensor<T> out(g.shape());
    cpu::relu_backward(g.data(), y.data(), out.data(), g.numel());
    return out;
}

template <Floating T>
Var<T> linear(const Var<T>& x, const Var<T>& w, const std::optional<Var<T>>& b, Activation act) {
    const Shape& xs = x.shape();
    const Shape& ws = w.shape();
    if (xs.rank() != 2) fail<shape_error>("linear", "input must be [batch, features], got shape ", xs);
    if (ws.rank() != 2 || ws[1] != xs[1])
        fail<shape_error>("linear", "weights of shape ", ws, " for input of shape ", xs, " (expected [out, ", xs[1], "])");
    if (b && (b->rank() != 1 || b->shape()[0] != ws[0]))
        fail<shape_error>("linear", "bias of shape ", b->shape(), " for ", ws[0], " outputs (expected [", ws[0], "])");
    const std::int64_t n = xs[0], in = xs[1], out = ws[0];
    const Tensor<T> xc = x.value().contiguous(), wc = w.value().contiguous();
    const Tensor<T> bc = b ? b->value().contiguous() : Tensor<T>();
    Tensor<T> y(Shape{n, out});
    cpu::gemm<T>(false, true, n, out, in, T(1), xc.data(), in, wc.data(), in, T(0), y.data(), out,
                 cpu::Epilogue<T>{nullptr, b ? bc.data() : nullptr, act});
    std::vector<Var<T>> inputs{x, w};
    if (b) inputs.push_back(*b);
    const bool relu = act == Activation::relu;
    const Tensor<T> saved = relu ? y : Tensor<T>();
    return record<T>("linear", y, std::move(inputs), [relu, y = saved, n, in, out](BackwardContext& ctx, const Tensor<T>& g_in, std::span<const Var<T>> v) {
        const Tensor<T> g = relu ? detail::relu_backward(g_in.contiguous(), y) : g_in.contiguous();
        if (v[0].requires_grad()) {  // dx = g W
            Tensor<T> gx(Shape{n, in});
            cpu::gemm<T>(false, false, n, in, out, T(1), g.data(), out, v[1].value().contiguous().data(), in, T(0), gx.data(), in);
            ctx.accumulate(v[0].node(), std::move(gx));
        }
        if (v[1].requires_grad()) {  // dW = g^T x
            Tensor<T> gw(Shape{out, in});
            cpu::gemm<T>(true, false, out, in, n, T(1), g.data(), out, v[0].value().contiguous().data(), in, T(0), gw.data(), in);
            ctx.accumulate(v[1].node(), std::move(gw));
        }
        if (v.size() > 2 && v[2].requires_grad()) {  // db = column sums of g
            Tensor<T> gb = zeros<T>(Shape{out});
            for (std::int64_t i = 0; i < n; ++i)
                for (std::int64_t j = 0; j < out; ++j) gb.data()[j] += g.data()[i * out + j];
            ctx.accumulate(v[2].node(), std::move(gb));
        }
    });
}

}  // namespace detail

// y = activation(x W^T + b).
template <Differentiable X, Differentiable Wt, Differentiable Bt>
auto linear(X&& x, Wt&& w, Bt&& b, Activation act = Activation::none) {
    using T = operand_value_t<X>;
    return detail::linear<T>(eval(std::forward<X>(x)), eval(std::forward<Wt>(w)), std::optional<Var<T>>(eval(std::forward<Bt>(b))), act);
}
template <Differentiable X, Differentiable Wt>
auto linear(X&& x, Wt&& w, Activation act = Activation::none) {
    using T = operand_value_t<X>;
    return detail::linear<T>(eval(std::forward<X>(x)), eval(std::forward<Wt>(w)), std::nullopt, act);
}

}  // namespace tensortape
