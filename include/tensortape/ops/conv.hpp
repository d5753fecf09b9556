#pragma once
// conv2d: NCHW input [N, C, H, W], weights [CO, C, KH, KW], optional bias [CO], with stride,
// padding and dilation, and an optional fused activation (relu) applied in the GEMM epilogue.
// Backward gives the input, weight and bias gradients (backend/cpu/conv.hpp).

#include <tensortape/autodiff/eval.hpp>
#include <tensortape/autodiff/function.hpp>
#include <tensortape/backend/cpu/conv.hpp>

#include <array>
#include <optional>

namespace tensortape {

using cpu::Activation;

struct Conv2dOptions {
    std::array<std::int64_t, 2> stride{1, 1};
    std::array<std::int64_t, 2> padding{0, 0};
    std::array<std::int64_t, 2> dilation{1, 1};
    Activation activation = Activation::none;
};

namespace detail {

inline cpu::ConvGeometry conv_geometry(const Shape& x, const Shape& w, const Conv2dOptions& o) {
    if (x.rank() != 4) fail<shape_error>("conv2d", "input must be [N, C, H, W], got shape ", x);
    if (w.rank() != 4) fail<shape_error>("conv2d", "weights must be [CO, C, KH, KW], got shape ", w);
    if (w[1] != x[1]) fail<shape_error>("conv2d", "input ", x, " has ", x[1], " channels but weights ", w, " expect ", w[1]);
    for (int i = 0; i < 2; ++i)
        if (o.stride[i] < 1 || o.dilation[i] < 1 || o.padding[i] < 0)
            fail<value_error>("conv2d", "stride and dilation must be >= 1 and padding >= 0, got stride ", o.stride[i], ", padding ",
                              o.padding[i], ", dilation ", o.dilation[i]);
    cpu::ConvGeometry g{x[0], x[1], x[2], x[3], w[0], w[2], w[3], o.stride[0], o.stride[1], o.padding[0], o.padding[1],
                        o.dilation[0], o.dilation[1], 0, 0};
    const std::int64_t eh = (g.kh - 1) * g.dh + 1, ew = (g.kw - 1) * g.dw + 1;
    if (g.h + 2 * g.ph < eh || g.w + 2 * g.pw < ew)
        fail<shape_error>("conv2d", "input ", x, " (padded by ", g.ph, ", ", g.pw, ") is smaller than the dilated kernel ", eh, "x", ew);
    g.oh = (g.h + 2 * g.ph - eh) / g.sh + 1;
    g.ow = (g.w + 2 * g.pw - ew) / g.sw + 1;
    return g;
}

template <Floating T>
Var<T> conv2d(const Var<T>& x, const Var<T>& w, const std::optional<Var<T>>& b, const Conv2dOptions& o) {
    const cpu::ConvGeometry g = conv_geometry(x.shape(), w.shape(), o);
    if (b && (b->rank() != 1 || b->shape()[0] != g.co))
        fail<shape_error>("conv2d", "bias of shape ", b->shape(), " for ", g.co, " output channels (expected [", g.co, "])");
    const Tensor<T> xc = x.value().contiguous(), wc = w.value().contiguous();
    const Tensor<T> bc = b ? b->value().contiguous() : Tensor<T>();
    Tensor<T> y(Shape{g.n, g.co, g.oh, g.ow});
    cpu::conv2d_forward(xc.data(), wc.data(), b ? bc.data() : nullptr, y.data(), g, o.activation);
    std::vector<Var<T>> in{x, w};
    if (b) in.push_back(*b);
    const bool relu = o.activation == Activation::relu;
    const Tensor<T> saved = relu ? y : Tensor<T>();  // relu's backward reads the output
    return record<T>("conv2d", y, std::move(in), [g, relu, y = saved](BackwardContext& ctx, const Tensor<T>& gy_in, std::span<const Var<T>> in) {
        const Tensor<T> gy = gy_in.contiguous();
        const Var<T>& x = in[0];
        const Var<T>& w = in[1];
        const bool need_b = in.size() > 2 && in[2].requires_grad();
        const bool need_w = w.requires_grad() || need_b;
        Tensor<T> gx = x.requires_grad() ? Tensor<T>(x.shape()) : Tensor<T>();
        Tensor<T> gw = need_w ? Tensor<T>(w.shape()) : Tensor<T>();
        Tensor<T> gb = need_w ? Tensor<T>(Shape{g.co}) : Tensor<T>();
        const Tensor<T> xc = x.value().contiguous(), wc = w.value().contiguous();
        // The fused relu's backward (mask dy where y > 0) happens inside, as dy is gathered.
        cpu::conv2d_backward(xc.data(), wc.data(), gy.data(), gx.defined() ? gx.data() : nullptr, need_w ? gw.data() : nullptr,
                             need_w ? gb.data() : nullptr, g, relu ? y.data() : nullptr);
        if (gx.defined()) ctx.accumulate(x.node(), std::move(gx));
        if (w.requires_grad()) ctx.accumulate(w.node(), std::move(gw));
        if (need_b) ctx.accumulate(in[2].node(), std::move(gb));
    });
}

}  // namespace detail

// y = activation(conv(x, w) + b). x: [N, C, H, W]; w: [CO, C, KH, KW]; b: [CO].
template <Differentiable X, Differentiable Wt, Differentiable Bt>
auto conv2d(X&& x, Wt&& w, Bt&& b, const Conv2dOptions& o = {}) {
    using T = operand_value_t<X>;
    return detail::conv2d<T>(eval(std::forward<X>(x)), eval(std::forward<Wt>(w)), std::optional<Var<T>>(eval(std::forward<Bt>(b))), o);
}

// Without a bias.
template <Differentiable X, Differentiable Wt>
auto conv2d(X&& x, Wt&& w, const Conv2dOptions& o = {}) {
    using T = operand_value_t<X>;
    return detail::conv2d<T>(eval(std::forward<X>(x)), eval(std::forward<Wt>(w)), std::nullopt, o);
}

}  // namespace tensortape
