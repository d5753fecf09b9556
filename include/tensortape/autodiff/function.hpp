#pragma once
// record(): how a non-elementwise op (matmul, a reduction, a shape op) puts itself on the tape.
// The op computes its output, then hands record() its inputs and a backward lambda
//     (BackwardContext& ctx, const Tensor<T>& g, std::span<const Var<T>> in)
// that adds each input's gradient with ctx.accumulate. The forward and backward of an op thus
// sit side by side in the op's own header.

#include <tensortape/autodiff/var.hpp>

#include <initializer_list>
#include <span>
#include <vector>

namespace tensortape {

namespace detail {

template <Floating T, class F>
struct LambdaGradFn final : GradFnBase {
    const char* op;
    std::vector<Var<T>> in;
    F f;

    LambdaGradFn(const char* o, std::vector<Var<T>> i, F fn) : op(o), in(std::move(i)), f(std::move(fn)) {}
    const char* name() const override { return op; }
    void inputs(std::vector<NodeBase*>& out) const override {
        for (const auto& v : in)
            if (v.requires_grad()) out.push_back(&v.node());
    }
    void backward(BackwardContext& ctx, NodeBase& self) override {
        const Tensor<T>& g = ctx.grad_of<T>(self);
        f(ctx, g, std::span<const Var<T>>(in));
    }
};

}  // namespace detail

// Whether any of the inputs needs a gradient (and recording is on): ops skip saving tensors
// for backward otherwise.
template <Floating T>
bool needs_grad(std::initializer_list<Var<T>> in) {
    if (!grad_enabled()) return false;
    for (const auto& v : in)
        if (v.requires_grad()) return true;
    return false;
}

template <Floating T, class F>
Var<T> record(const char* op, Tensor<T> out, std::vector<Var<T>> in, F&& backward) {
    bool any = false;
    for (const auto& v : in) any = any || v.requires_grad();
    if (!any || !grad_enabled()) return Var<T>(std::move(out), false);
    return make_result<T>(std::move(out),
                          std::make_unique<detail::LambdaGradFn<T, std::decay_t<F>>>(op, std::move(in), std::forward<F>(backward)));
}

}  // namespace tensortape
