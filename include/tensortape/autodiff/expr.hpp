#pragma once
// Expression templates: the compile-time half of the tape.
//
// `sigmoid(a * x + b) * x` builds Binary<Mul, Unary<Sigmoid, Binary<Add, Binary<Mul, Leaf,
// Leaf>, Leaf>>, Leaf>. Nothing runs until it is evaluated (eval.hpp). Each node has
//   fwd<B>(j)          the value at column j of the current row, as a batch B (or a scalar for
//                      the row's tail), returned together with its children's values: a Val is
//                      the tape of one SIMD batch, kept in registers by the compiler;
//   bwd(val, adj, j)   the vector-Jacobian product: sends adj through the node's derivative to
//                      its children, reading the forward values from the Val.
//   visit_leaves(f)       every leaf, in evaluation order (the kernel's operands);
//   visit_grad_leaves(f)  the leaves a gradient can reach, in the order bwd writes them (not
//                         those under a comparison or a where() mask).
// So the forward and the adjoint sweep of a whole expression are one inlined loop body.
//
// Nodes hold their children by value and leaves hold a Var (a shared node), so an expression
// kept in `auto` keeps its operands alive: it can never read a dead temporary.

#include <tensortape/autodiff/var.hpp>
#include <tensortape/core/compat.hpp>
#include <tensortape/core/shape.hpp>

#include <cstdint>
#include <type_traits>
#include <utility>

namespace tensortape {


// The node types live in an inline namespace so that argument-dependent lookup on an expression
// finds the operators declared in tensortape (an expression's type names only its node types).
inline namespace expr {

using simd::c;
using simd::load;
using simd::store;
using simd::is_batch;

// The per-batch tape: a node's value and its children's tapes.
template <class B>
struct Val0 {
    B v;
};
template <class B, class VA>
struct Val1 {
    B v;
    VA a;
};
template <class B, class VA, class VB>
struct Val2 {
    B v;
    VA a;
    VB b;
};
template <class B, class VC, class VA, class VB>
struct Val3 {
    B v;
    VC c;
    VA a;
    VB b;
};

enum class GradMode : std::uint8_t { skip, assign, add };

// ---- leaves -------------------------------------------------------------------------------

// A Var read by the expression. The members after `var` are the kernel's cursor for the current
// row; each thread works on its own copy of the expression.
template <Floating T>
struct Leaf {
    using value_type = T;
    static constexpr int leaves = 1;

    Var<T> var;
    std::uint64_t version = 0;  // the value's version when the expression was evaluated

    Tensor<T> held;             // the value, contiguous
    const T* base = nullptr;
    const T* ptr = nullptr;
    T* gbase = nullptr;
    T* gptr = nullptr;
    bool inner_broadcast = false;  // the value repeats along the row
    GradMode mode = GradMode::skip;
    bool stream = false;           // assign the gradient with cache-bypassing stores
    bool stream_row = false;       // ... and this row's start allows it
    simd::batch<T> gacc = simd::batch<T>(T(0));
    T gacc_tail = T(0);

    explicit Leaf(Var<T> v) : var(std::move(v)) {}

    Shape shape() const { return var.shape(); }
    bool requires_grad() const { return var.requires_grad(); }
    bool needs_grad() const { return mode != GradMode::skip; }
    template <class F>
    void visit_leaves(F&& f) { f(*this); }
    template <class F>
    void visit_grad_leaves(F&& f) { f(*this); }
    void prepare() {}

    int operand = 0;               // index in the kernel's layout

    void bind(int k) {
        operand = k;
        held = var.value().contiguous();
        base = held.data();
    }
    void begin_row(std::int64_t offset, bool broadcast_inner) {
        ptr = base + offset;
        inner_broadcast = broadcast_inner;
        if (mode != GradMode::skip) {
            gptr = gbase + offset;
            stream_row = stream && reinterpret_cast<std::uintptr_t>(gptr) % alignment == 0;
            gacc = simd::batch<T>(T(0));
            gacc_tail = T(0);
        }
    }
    void end_row() {
        if (mode != GradMode::skip && inner_broadcast) *gptr += simd::reduce_add(gacc) + gacc_tail;
    }

    template <class B>
    Val0<B> fwd(std::int64_t j) const {
        return {inner_broadcast ? B(*ptr) : load<B>(ptr + j)};
    }
    template <class B>
    void bwd(const Val0<B>&, const B& adj, std::int64_t j) {
        if (inner_broadcast) {
            if constexpr (is_batch<B>) gacc += adj;
            else gacc_tail += adj;
        } else if (mode == GradMode::assign) {
            if (stream_row) simd::stream<B>(gptr + j, adj);
            else store<B>(gptr + j, adj);
        } else {
            store<B>(gptr + j, load<B>(gptr + j) + adj);
        }
    }
};

// A number in an expression (`2 * x`): no storage, no gradient.
template <Floating T>
struct Scalar {
    using value_type = T;
    static constexpr int leaves = 0;
    T value;

    Shape shape() const { return {}; }
    bool requires_grad() const { return false; }
    bool needs_grad() const { return false; }
    template <class F>
    void visit_leaves(F&&) {}
    template <class F>
    void visit_grad_leaves(F&&) {}
    void prepare() {}
    template <class B>
    Val0<B> fwd(std::int64_t) const {
        return {B(value)};
    }
    template <class B>
    void bwd(const Val0<B>&, const B&, std::int64_t) {}
};

// ---- interior nodes -------------------------------------------------------------------------
// An op functor has a `name`, `differentiable`, and
//   unary:  f(x)            grad(adj, x, y)          -> adj * dy/dx
//   binary: f(a, b)         grad_a(adj, a, b, y)     grad_b(adj, a, b, y)

template <class Op, class A>
struct Unary {
    using value_type = typename A::value_type;
    static constexpr int leaves = A::leaves;
    Op op;
    A a;
    bool need = false;

    Unary(Op o, A x) : op(std::move(o)), a(std::move(x)) {}

    Shape shape() const { return a.shape(); }
    bool requires_grad() const { return Op::differentiable && a.requires_grad(); }
    bool needs_grad() const { return need; }
    template <class F>
    void visit_leaves(F&& f) { a.visit_leaves(f); }
    template <class F>
    void visit_grad_leaves(F&& f) {
        if constexpr (Op::differentiable) a.visit_grad_leaves(f);
    }
    void prepare() {
        a.prepare();
        need = Op::differentiable && a.needs_grad();
    }
    template <class B>
    auto fwd(std::int64_t j) const {
        auto va = a.template fwd<B>(j);
        return Val1<B, decltype(va)>{op.f(va.v), va};
    }
    template <class B, class V>
    void bwd(const V& t, const B& adj, std::int64_t j) {
        if constexpr (Op::differentiable)
            if (need) a.bwd(t.a, op.grad(adj, t.a.v, t.v), j);
    }
};

template <class Op, class A, class Bx>
struct Binary {
    using value_type = typename A::value_type;
    static constexpr int leaves = A::leaves + Bx::leaves;
    Op op;
    A a;
    Bx b;
    Shape shape_;
    bool need_a = false, need_b = false;

    Binary(Op o, A x, Bx y) : op(std::move(o)), a(std::move(x)), b(std::move(y)), shape_(broadcast_shapes(Op::name, a.shape(), b.shape())) {}

    Shape shape() const { return shape_; }
    bool requires_grad() const { return Op::differentiable && (a.requires_grad() || b.requires_grad()); }
    bool needs_grad() const { return need_a || need_b; }
    template <class F>
    void visit_leaves(F&& f) {
        a.visit_leaves(f);
        b.visit_leaves(f);
    }
    template <class F>
    void visit_grad_leaves(F&& f) {
        if constexpr (Op::differentiable) {
            a.visit_grad_leaves(f);
            b.visit_grad_leaves(f);
        }
    }
    void prepare() {
        a.prepare();
        b.prepare();
        need_a = Op::differentiable && a.needs_grad();
        need_b = Op::differentiable && b.needs_grad();
    }
    template <class B>
    auto fwd(std::int64_t j) const {
        auto va = a.template fwd<B>(j);
        auto vb = b.template fwd<B>(j);
        return Val2<B, decltype(va), decltype(vb)>{op.f(va.v, vb.v), va, vb};
    }
    template <class B, class V>
    void bwd(const V& t, const B& adj, std::int64_t j) {
        if constexpr (Op::differentiable) {
            if (need_a) a.bwd(t.a, op.grad_a(adj, t.a.v, t.b.v, t.v), j);
            if (need_b) b.bwd(t.b, op.grad_b(adj, t.a.v, t.b.v, t.v), j);
        }
    }
};

// where(mask, a, b): a where mask is non-zero, else b. The mask gets no gradient.
template <class C, class A, class Bx>
struct Where {
    using value_type = typename A::value_type;
    static constexpr int leaves = C::leaves + A::leaves + Bx::leaves;
    C cond;
    A a;
    Bx b;
    Shape shape_;
    bool need_a = false, need_b = false;

    Where(C m, A x, Bx y) : cond(std::move(m)), a(std::move(x)), b(std::move(y)) {
        shape_ = broadcast_shapes("where", broadcast_shapes("where", cond.shape(), a.shape()), b.shape());
    }

    Shape shape() const { return shape_; }
    bool requires_grad() const { return a.requires_grad() || b.requires_grad(); }
    bool needs_grad() const { return need_a || need_b; }
    template <class F>
    void visit_leaves(F&& f) {
        cond.visit_leaves(f);
        a.visit_leaves(f);
        b.visit_leaves(f);
    }
    template <class F>
    void visit_grad_leaves(F&& f) {
        a.visit_grad_leaves(f);
        b.visit_grad_leaves(f);
    }
    void prepare() {
        cond.prepare();
        a.prepare();
        b.prepare();
        need_a = a.needs_grad();
        need_b = b.needs_grad();
    }
    template <class B>
    auto fwd(std::int64_t j) const {
        auto vc = cond.template fwd<B>(j);
        auto va = a.template fwd<B>(j);
        auto vb = b.template fwd<B>(j);
        return Val3<B, decltype(vc), decltype(va), decltype(vb)>{simd::select(vc.v != c<B>(0), va.v, vb.v), vc, va, vb};
    }
    template <class B, class V>
    void bwd(const V& t, const B& adj, std::int64_t j) {
        const auto on = t.c.v != c<B>(0);
        if (need_a) a.bwd(t.a, simd::select(on, adj, c<B>(0)), j);
        if (need_b) b.bwd(t.b, simd::select(on, c<B>(0), adj), j);
    }
};

}  // namespace expr

template <Floating T>
struct is_expression<expr::Leaf<T>> : std::true_type {};
template <Floating T>
struct is_expression<expr::Scalar<T>> : std::true_type {};
template <class Op, class A>
struct is_expression<expr::Unary<Op, A>> : std::true_type {};
template <class Op, class A, class B>
struct is_expression<expr::Binary<Op, A, B>> : std::true_type {};
template <class C, class A, class B>
struct is_expression<expr::Where<C, A, B>> : std::true_type {};

// ---- operands: what may appear in an expression -------------------------------------------

template <class X>
struct operand_value {
    using type = void;
};
template <Floating T>
struct operand_value<Var<T>> {
    using type = T;
};
template <Floating T>
struct operand_value<Tensor<T>> {
    using type = T;
};
template <Expression E>
struct operand_value<E> {
    using type = typename E::value_type;
};

// A Var, an expression or a floating tensor: something that carries an element type.
template <class X>
concept Operand = !std::is_void_v<typename operand_value<std::remove_cvref_t<X>>::type>;
template <class X>
using operand_value_t = typename operand_value<std::remove_cvref_t<X>>::type;

// A Var or an expression: what makes an arithmetic operator build an expression. Two plain
// tensors do not (wrap one in constant()), so Tensor arithmetic is never silently an expression.
template <class X>
concept Differentiable = Expression<X> || std::is_same_v<std::remove_cvref_t<X>, Var<operand_value_t<X>>>;

// An operand, or a plain number that takes the other operand's element type.
template <class X, class T>
concept OperandOf = (Operand<X> && std::same_as<operand_value_t<X>, T>) || std::is_arithmetic_v<std::remove_cvref_t<X>>;

// Turns an operand into an expression node of element type T.
template <Floating T, class X>
auto as_expr(X&& x) {
    using D = std::remove_cvref_t<X>;
    if constexpr (Expression<D>) return D(std::forward<X>(x));
    else if constexpr (std::is_same_v<D, Var<T>>) return expr::Leaf<T>(x);
    else if constexpr (std::is_same_v<D, Tensor<T>>) return expr::Leaf<T>(Var<T>(x));
    else if constexpr (std::is_arithmetic_v<D>) return expr::Scalar<T>{static_cast<T>(x)};
    else static_assert(sizeof(D) == 0, "tensortape: not an operand of an expression");
}

// Builds op(x) as a node.
template <class Op, Differentiable X>
auto make_unary(Op op, X&& x) {
    using T = operand_value_t<X>;
    using A = decltype(as_expr<T>(std::forward<X>(x)));
    return expr::Unary<Op, A>(std::move(op), as_expr<T>(std::forward<X>(x)));
}

// The element type of a binary expression: the one its non-number operands share.
template <class X, class Y>
struct common_operand_value {
    using type = std::conditional_t<Operand<X>, operand_value_t<X>, operand_value_t<Y>>;
};

template <class X, class Y>
concept BinaryOperands = (Differentiable<X> || Differentiable<Y>) &&
                         OperandOf<X, typename common_operand_value<X, Y>::type> &&
                         OperandOf<Y, typename common_operand_value<X, Y>::type>;

template <class Op, class X, class Y>
    requires BinaryOperands<X, Y>
auto make_binary(Op op, X&& x, Y&& y) {
    using T = typename common_operand_value<X, Y>::type;
    using A = decltype(as_expr<T>(std::forward<X>(x)));
    using B = decltype(as_expr<T>(std::forward<Y>(y)));
    return expr::Binary<Op, A, B>(std::move(op), as_expr<T>(std::forward<X>(x)), as_expr<T>(std::forward<Y>(y)));
}

}  // namespace tensortape
