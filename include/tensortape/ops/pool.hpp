#pragma once
// Pooling over NCHW: max_pool2d (argmax kept for a one-pass backward), avg_pool2d (the window
// area, padding included, divides), global_avg_pool2d ([N, C, H, W] -> [N, C]).

#include <tensortape/autodiff/eval.hpp>
#include <tensortape/autodiff/function.hpp>
#include <tensortape/backend/cpu/pool.hpp>
#include <tensortape/ops/reduce.hpp>

#include <array>

namespace tensortape {

struct Pool2dOptions {
    std::array<std::int64_t, 2> kernel{2, 2};
    std::array<std::int64_t, 2> stride{0, 0};  // 0: equal to the kernel, as in Keras and PyTorch
    std::array<std::int64_t, 2> padding{0, 0};
};

namespace detail {

inline cpu::PoolGeometry pool_geometry(const char* op, const Shape& x, const Pool2dOptions& o) {
    if (x.rank() != 4) fail<shape_error>(op, "input must be [N, C, H, W], got shape ", x);
    cpu::PoolGeometry g{x[0] * x[1], x[2], x[3], o.kernel[0], o.kernel[1], o.stride[0] ? o.stride[0] : o.kernel[0],
                        o.stride[1] ? o.stride[1] : o.kernel[1], o.padding[0], o.padding[1], 0, 0};
    if (g.kh < 1 || g.kw < 1 || g.sh < 1 || g.sw < 1 || g.ph < 0 || g.pw < 0 || 2 * g.ph > g.kh || 2 * g.pw > g.kw)
        fail<value_error>(op, "kernel ", g.kh, "x", g.kw, ", stride ", g.sh, "x", g.sw, ", padding ", g.ph, "x", g.pw,
                          ": kernel and stride must be >= 1 and padding at most half the kernel");
    if (g.h + 2 * g.ph < g.kh || g.w + 2 * g.pw < g.kw)
        fail<shape_error>(op, "input ", x, " is smaller than the ", g.kh, "x", g.kw, " window");
    g.oh = (g.h + 2 * g.ph - g.kh) / g.sh + 1;
    g.ow = (g.w + 2 * g.pw - g.kw) / g.sw + 1;
    return g;
}

template <Floating T>
Var<T> max_pool2d(const Var<T>& x, const Pool2dOptions& o) {
    const cpu::PoolGeometry g = pool_geometry("max_pool2d", x.shape(), o);
    const Shape& s = x.shape();
    const Tensor<T> xc = x.value().contiguous();
    Tensor<T> y(Shape{s[0], s[1], g.oh, g.ow});
    Tensor<std::int32_t> argmax(y.shape());
    cpu::maxpool2d_forward(xc.data(), y.data(), argmax.data(), g);
    return record<T>("max_pool2d", std::move(y), {x}, [g, argmax](BackwardContext& ctx, const Tensor<T>& gy, std::span<const Var<T>> in) {
        Tensor<T> gx(in[0].shape());
        cpu::maxpool2d_backward(gy.contiguous().data(), argmax.data(), gx.data(), g);
        ctx.accumulate(in[0].node(), std::move(gx));
    });
}

template <Floating T>
Var<T> avg_pool2d(const Var<T>& x, const Pool2dOptions& o) {
    const cpu::PoolGeometry g = pool_geometry("avg_pool2d", x.shape(), o);
    const Shape& s = x.shape();
    const Tensor<T> xc = x.value().contiguous();
    Tensor<T> y(Shape{s[0], s[1], g.oh, g.ow});
    cpu::avgpool2d_forward(xc.data(), y.data(), g);
    return record<T>("avg_pool2d", std::move(y), {x}, [g](BackwardContext& ctx, const Tensor<T>& gy, std::span<const Var<T>> in) {
        Tensor<T> gx(in[0].shape());
        cpu::avgpool2d_backward(gy.contiguous().data(), gx.data(), g);
        ctx.accumulate(in[0].node(), std::move(gx));
    });
}

}  // namespace detail

template <Differentiable X>
auto max_pool2d(X&& x, const Pool2dOptions& o = {}) { return detail::max_pool2d(eval(std::forward<X>(x)), o); }

template <Differentiable X>
auto avg_pool2d(X&& x, const Pool2dOptions& o = {}) { return detail::avg_pool2d(eval(std::forward<X>(x)), o); }

// Mean over the spatial axes: [N, C, H, W] -> [N, C].
template <Differentiable X>
auto global_avg_pool2d(X&& x) {
    auto v = eval(std::forward<X>(x));
    if (v.rank() != 4) fail<shape_error>("global_avg_pool2d", "input must be [N, C, H, W], got shape ", v.shape());
    return mean(v, {2, 3});
}

}  // namespace tensortape
