#pragma once
// Evaluating expressions: the fused forward loop, the fused backward loop, and the GradFn that
// an evaluated expression leaves on the runtime tape.
//
// Forward: one pass over the output; every leaf is read once per element, no temporaries.
// Backward: one pass that recomputes the forward values in registers (cheaper than storing
// them: the pass is memory-bound) and runs the whole expression's vector-Jacobian product,
// writing each input's gradient once. A gradient buffer that is fresh is assigned, not added
// to, so it needs no zero fill.

#include <tensortape/autodiff/expr.hpp>
#include <tensortape/backend/cpu/loop.hpp>

#include <algorithm>
#include <array>
#include <memory>
#include <vector>

namespace tensortape {

namespace detail {

// Gradients at least this large are written with streaming stores.
inline constexpr std::int64_t stream_bytes = std::int64_t(16) << 20;

// Operand 0 is the output (or its gradient); operands 1.. are the leaves in visiting order.
template <Expression E>
auto expression_layout(E& e, const Shape& out) {
    std::array<Strides, E::leaves + 1> st;
    st[0] = contiguous_strides(out);
    int k = 1;
    e.visit_leaves([&](auto& leaf) {
        leaf.bind(k);
        const Shape s = leaf.shape();
        st[k++] = broadcast_strides(s, contiguous_strides(s), out);
    });
    return cpu::make_layout<E::leaves + 1>(out, st);
}

template <Expression E, class Layout>
void begin_row(E& e, const Layout& L, const std::array<std::int64_t, E::leaves + 1>& off) {
    int k = 1;
    e.visit_leaves([&](auto& leaf) {
        leaf.begin_row(off[k], L.strides[k].back() == 0);
        ++k;
    });
}

template <Expression E>
void end_row(E& e) {
    e.visit_leaves([](auto& leaf) { leaf.end_row(); });
}

// Where the adjoint of the output comes from: a gradient tensor, or one value for every element
// (the gradient of sum/mean).
template <Floating T>
struct TensorAdjoint {
    const T* base;
    const T* ptr = nullptr;
    void begin_row(std::int64_t off) { ptr = base + off; }
    template <class B>
    B at(std::int64_t j) const { return simd::load<B>(ptr + j); }
};
template <Floating T>
struct ConstantAdjoint {
    T value;
    void begin_row(std::int64_t) {}
    template <class B>
    B at(std::int64_t) const { return B(value); }
};

template <Expression E>
using value_of = typename E::value_type;

// Writes the expression's values into out (contiguous, shape e.shape()).
template <Expression E>
void run_forward(const E& e, value_of<E>* out) {
    using T = value_of<E>;
    using B = simd::batch<T>;
    constexpr std::int64_t W = simd::width<T>;
    E proto = e;
    const auto L = expression_layout(proto, proto.shape());
    const auto plan = cpu::plan_chunks(L.rows, L.cols, W);
    cpu::for_each_chunk(plan, true, [&](cpu::Chunk c) {
        E k = proto;
        for (std::int64_t r = c.row0; r < c.row1; ++r) {
            const auto off = L.row_offsets(r);
            begin_row(k, L, off);
            T* o = out + off[0];
            std::int64_t j = c.col0;
            for (; j + W <= c.col1; j += W) simd::store<B>(o + j, k.template fwd<B>(j).v);
            for (; j < c.col1; ++j) o[j] = k.template fwd<T>(j).v;
        }
    });
}

// The sum of the expression's values, in double. Deterministic: chunks are fixed, partials are
// added in chunk order.
template <Expression E>
double run_sum(const E& e) {
    using T = value_of<E>;
    using B = simd::batch<T>;
    constexpr std::int64_t W = simd::width<T>;
    E proto = e;
    const auto L = expression_layout(proto, proto.shape());
    const auto plan = cpu::plan_chunks(L.rows, L.cols, W);
    std::vector<double> partial(static_cast<std::size_t>(plan.count), 0.0);
    cpu::for_each_chunk(plan, true, [&](cpu::Chunk c) {
        E k = proto;
        double total = 0.0;
        for (std::int64_t r = c.row0; r < c.row1; ++r) {
            begin_row(k, L, L.row_offsets(r));
            std::int64_t j = c.col0;
            // Lanes accumulate in T over blocks of 1024 values, then into a double: a float lane
            // that summed a whole chunk would lose about 1e-5 of a large total.
            while (j + 2 * W <= c.col1) {
                B acc0(T(0)), acc1(T(0));
                const std::int64_t block_end = std::min(c.col1, j + 1024);
                for (; j + 2 * W <= block_end; j += 2 * W) {
                    acc0 += k.template fwd<B>(j).v;
                    acc1 += k.template fwd<B>(j + W).v;
                }
                total += static_cast<double>(simd::reduce_add(acc0 + acc1));
            }
            for (; j < c.col1; ++j) total += static_cast<double>(k.template fwd<T>(j).v);
        }
        partial[static_cast<std::size_t>(c.index)] = total;
    });
    double s = 0.0;
    for (double p : partial) s += p;
    return s;
}

// Sends `adjoint` (the gradient of the expression's output) to the leaves' gradient slots.
template <Expression E, class Adjoint>
void run_backward(BackwardContext& ctx, E& e, const Shape& out_shape, Adjoint adjoint) {
    using T = value_of<E>;
    using B = simd::batch<T>;
    constexpr std::int64_t W = simd::width<T>;
    const auto L = expression_layout(e, out_shape);

    // Modes are set in the order bwd writes: the first writer of a fresh buffer assigns, every
    // later one adds. Leaves no gradient reaches (under a mask) stay at skip.
    bool reduces = false;  // some gradient sums over broadcast axes: threads would race on it
    e.visit_leaves([](auto& leaf) { leaf.mode = GradMode::skip; });
    std::vector<const NodeBase*> writers;
    e.visit_grad_leaves([&](auto& leaf) { writers.push_back(&leaf.var.node()); });
    e.visit_grad_leaves([&](auto& leaf) {
        if (!leaf.var.requires_grad()) return;
        auto& node = leaf.var.node();
        if (node.version != leaf.version)
            fail<autodiff_error>("backward", "an input of shape ", leaf.shape(),
                                 " was modified in place after it was used; its gradient would be wrong");
        auto slot = ctx.target<T>(node, leaf.shape());
        const bool broadcast = L.broadcasts(leaf.operand);
        if (slot.fresh && broadcast) slot.tensor->fill(T(0));
        leaf.mode = slot.fresh && !broadcast ? GradMode::assign : GradMode::add;
        // Past the last-level cache a gradient would be evicted before anyone reads it anyway;
        // but not when a second occurrence of the same input reads it back right away.
        leaf.stream = leaf.mode == GradMode::assign && std::count(writers.begin(), writers.end(), &node) == 1 &&
                      slot.tensor->numel() * static_cast<std::int64_t>(sizeof(T)) >= stream_bytes;
        leaf.gbase = slot.tensor->data();
        reduces = reduces || broadcast;
    });
    e.prepare();
    if (!e.needs_grad()) return;

    const auto plan = cpu::plan_chunks(L.rows, L.cols, W);
    cpu::for_each_chunk(plan, !reduces, [&](cpu::Chunk c) {
        E kx = e;
        Adjoint adj = adjoint;
        for (std::int64_t r = c.row0; r < c.row1; ++r) {
            const auto off = L.row_offsets(r);
            begin_row(kx, L, off);
            adj.begin_row(off[0]);
            std::int64_t j = c.col0;
            for (; j + W <= c.col1; j += W) {
                const auto t = kx.template fwd<B>(j);
                kx.bwd(t, adj.template at<B>(j), j);
            }
            for (; j < c.col1; ++j) {
                const auto t = kx.template fwd<T>(j);
                kx.bwd(t, adj.template at<T>(j), j);
            }
            end_row(kx);
        }
        simd::stream_fence();
    });
}

template <Expression E>
void expression_inputs(E& e, std::vector<NodeBase*>& out) {
    e.visit_grad_leaves([&](auto& leaf) {
        if (leaf.var.requires_grad()) out.push_back(&leaf.var.node());
    });
}

// The tape entry of an evaluated elementwise expression.
template <Expression E>
struct ExpressionGradFn final : GradFnBase {
    using T = value_of<E>;
    mutable E e;
    Shape shape;

    ExpressionGradFn(E x, Shape s) : e(std::move(x)), shape(s) {}
    const char* name() const override { return "elementwise"; }
    void inputs(std::vector<NodeBase*>& out) const override { expression_inputs(e, out); }
    void backward(BackwardContext& ctx, NodeBase& self) override {
        const Tensor<T>& g = ctx.grad_of<T>(self);
        run_backward(ctx, e, shape, TensorAdjoint<T>{g.data()});
    }
};

// Records the expression's versions of its inputs, so backward can tell if one was overwritten.
template <Expression E>
void snapshot_versions(E& e) {
    e.visit_leaves([](auto& leaf) { leaf.version = leaf.var.node().version; });
}

}  // namespace detail

// Evaluates an expression (or passes a Var through): the forward value, plus a GradFn when an
// input requires a gradient and recording is on.
template <Operand X>
auto eval(X&& x) {
    using T = operand_value_t<X>;
    using D = std::remove_cvref_t<X>;
    if constexpr (std::is_same_v<D, Var<T>>) {
        return Var<T>(x);
    } else {
        auto e = as_expr<T>(std::forward<X>(x));
        if constexpr (std::is_same_v<decltype(e), expr::Leaf<T>>) {
            return e.var;
        } else {
            const Shape s = e.shape();
            Tensor<T> out(s);
            detail::run_forward(e, out.data());
            std::unique_ptr<GradFnBase> fn;
            if (grad_enabled() && e.requires_grad()) {
                detail::snapshot_versions(e);
                fn = std::make_unique<detail::ExpressionGradFn<decltype(e)>>(std::move(e), s);
            }
            return make_result<T>(std::move(out), std::move(fn));
        }
    }
}

// Overwrites v's value with the expression, in place and unrecorded: the fused, allocation-free
// form of an optimizer step, `update(w, w - lr * constant(w.grad()))`. Each element is read before
// it is written, so the expression may read v itself. Bumps v's version: a graph that saw the old
// value refuses to run backward.
template <Floating T, Operand X>
    requires std::same_as<operand_value_t<X>, T>
void update(Var<T>& v, X&& x) {
    auto e = as_expr<T>(std::forward<X>(x));
    if (e.shape() != v.shape())
        fail<shape_error>("update", "expression of shape ", e.shape(), " for a Var of shape ", v.shape());
    Tensor<T>& dst = v.mutable_value();
    if (!dst.is_contiguous()) dst = dst.clone();
    detail::run_forward(e, dst.data());
}

template <Floating T>
template <Expression E>
    requires std::same_as<typename std::remove_cvref_t<E>::value_type, T>
Var<T>::Var(const E& expr) : Var(eval(expr)) {}

}  // namespace tensortape
