#pragma once
// Elementwise ops. Each op is one functor: its forward `f` and its vector-Jacobian product
// `grad` (adj times the derivative), written once for scalars and SIMD batches. Calling an op
// builds an expression node; nothing runs until the expression is evaluated, and a chain of
// these ops runs as one fused loop forward and one fused loop backward.
//
// Derivatives at kinks follow PyTorch: relu'(0) = 0, abs'(0) = 0, clamp passes the gradient
// strictly inside its bounds, maximum/minimum split it evenly on ties.

#include <tensortape/autodiff/expr.hpp>

#include <numbers>

namespace tensortape {

namespace ops {

using simd::c;

// ---- binary ---------------------------------------------------------------------------------

struct Add {
    static constexpr const char* name = "add";
    static constexpr bool differentiable = true;
    template <class B> B f(B a, B b) const { return a + b; }
    template <class B> B grad_a(B adj, B, B, B) const { return adj; }
    template <class B> B grad_b(B adj, B, B, B) const { return adj; }
};

struct Sub {
    static constexpr const char* name = "sub";
    static constexpr bool differentiable = true;
    template <class B> B f(B a, B b) const { return a - b; }
    template <class B> B grad_a(B adj, B, B, B) const { return adj; }
    template <class B> B grad_b(B adj, B, B, B) const { return -adj; }
};

struct Mul {
    static constexpr const char* name = "mul";
    static constexpr bool differentiable = true;
    template <class B> B f(B a, B b) const { return a * b; }
    template <class B> B grad_a(B adj, B, B b, B) const { return adj * b; }
    template <class B> B grad_b(B adj, B a, B, B) const { return adj * a; }
};

struct Div {
    static constexpr const char* name = "div";
    static constexpr bool differentiable = true;
    template <class B> B f(B a, B b) const { return a / b; }
    template <class B> B grad_a(B adj, B, B b, B) const { return adj / b; }
    template <class B> B grad_b(B adj, B, B b, B y) const { return -adj * y / b; }
};

struct Pow {
    static constexpr const char* name = "pow";
    static constexpr bool differentiable = true;
    template <class B> B f(B a, B b) const { return simd::pow(a, b); }
    template <class B> B grad_a(B adj, B a, B b, B) const { return adj * b * simd::pow(a, b - c<B>(1)); }
    template <class B> B grad_b(B adj, B a, B, B y) const { return adj * y * simd::log(a); }
};

struct Maximum {
    static constexpr const char* name = "maximum";
    static constexpr bool differentiable = true;
    template <class B> B f(B a, B b) const { return simd::max(a, b); }
    template <class B> B grad_a(B adj, B a, B b, B) const {
        return simd::select(a > b, adj, simd::select(a == b, adj * c<B>(0.5), c<B>(0)));
    }
    template <class B> B grad_b(B adj, B a, B b, B) const {
        return simd::select(b > a, adj, simd::select(a == b, adj * c<B>(0.5), c<B>(0)));
    }
};

struct Minimum {
    static constexpr const char* name = "minimum";
    static constexpr bool differentiable = true;
    template <class B> B f(B a, B b) const { return simd::min(a, b); }
    template <class B> B grad_a(B adj, B a, B b, B) const {
        return simd::select(a < b, adj, simd::select(a == b, adj * c<B>(0.5), c<B>(0)));
    }
    template <class B> B grad_b(B adj, B a, B b, B) const {
        return simd::select(b < a, adj, simd::select(a == b, adj * c<B>(0.5), c<B>(0)));
    }
};

// Comparisons give 1 or 0 in the element type; they carry no gradient. They make masks for where().
#define TENSORTAPE_COMPARISON(Name, opname, op)                                        \
    struct Name {                                                                      \
        static constexpr const char* name = opname;                                    \
        static constexpr bool differentiable = false;                                  \
        template <class B> B f(B a, B b) const { return simd::select(a op b, c<B>(1), c<B>(0)); } \
    };
TENSORTAPE_COMPARISON(Greater, "greater", >)
TENSORTAPE_COMPARISON(GreaterEqual, "greater_equal", >=)
TENSORTAPE_COMPARISON(Less, "less", <)
TENSORTAPE_COMPARISON(LessEqual, "less_equal", <=)
TENSORTAPE_COMPARISON(Equal, "equal", ==)
TENSORTAPE_COMPARISON(NotEqual, "not_equal", !=)
#undef TENSORTAPE_COMPARISON

// ---- unary ----------------------------------------------------------------------------------

struct Neg {
    static constexpr const char* name = "neg";
    static constexpr bool differentiable = true;
    template <class B> B f(B x) const { return -x; }
    template <class B> B grad(B adj, B, B) const { return -adj; }
};

struct Exp {
    static constexpr const char* name = "exp";
    static constexpr bool differentiable = true;
    template <class B> B f(B x) const { return simd::exp(x); }
    template <class B> B grad(B adj, B, B y) const { return adj * y; }
};

struct Log {
    static constexpr const char* name = "log";
    static constexpr bool differentiable = true;
    template <class B> B f(B x) const { return simd::log(x); }
    template <class B> B grad(B adj, B x, B) const { return adj / x; }
};

struct Log1p {
    static constexpr const char* name = "log1p";
    static constexpr bool differentiable = true;
    template <class B> B f(B x) const { return simd::log1p(x); }
    template <class B> B grad(B adj, B x, B) const { return adj / (c<B>(1) + x); }
};

struct Sqrt {
    static constexpr const char* name = "sqrt";
    static constexpr bool differentiable = true;
    template <class B> B f(B x) const { return simd::sqrt(x); }
    template <class B> B grad(B adj, B, B y) const { return adj * c<B>(0.5) / y; }
};

struct Abs {
    static constexpr const char* name = "abs";
    static constexpr bool differentiable = true;
    template <class B> B f(B x) const { return simd::abs(x); }
    template <class B> B grad(B adj, B x, B) const {
        return simd::select(x > c<B>(0), adj, simd::select(x < c<B>(0), -adj, c<B>(0)));
    }
};

struct Square {
    static constexpr const char* name = "square";
    static constexpr bool differentiable = true;
    template <class B> B f(B x) const { return x * x; }
    template <class B> B grad(B adj, B x, B) const { return adj * c<B>(2) * x; }
};

// x ** p for a fixed exponent; pow(x, y) with a tensor exponent is the binary Pow.
template <class T>
struct PowScalar {
    static constexpr const char* name = "pow";
    static constexpr bool differentiable = true;
    T p;
    template <class B> B f(B x) const { return simd::pow(x, B(p)); }
    template <class B> B grad(B adj, B x, B) const { return adj * B(p) * simd::pow(x, B(p - T(1))); }
};

struct Tanh {
    static constexpr const char* name = "tanh";
    static constexpr bool differentiable = true;
    template <class B> B f(B x) const { return simd::tanh(x); }
    template <class B> B grad(B adj, B, B y) const { return adj * (c<B>(1) - y * y); }
};

struct Sigmoid {
    static constexpr const char* name = "sigmoid";
    static constexpr bool differentiable = true;
    template <class B> B f(B x) const { return c<B>(1) / (c<B>(1) + simd::exp(-x)); }
    template <class B> B grad(B adj, B, B y) const { return adj * y * (c<B>(1) - y); }
};

struct Relu {
    static constexpr const char* name = "relu";
    static constexpr bool differentiable = true;
    template <class B> B f(B x) const { return simd::max(x, c<B>(0)); }
    template <class B> B grad(B adj, B x, B) const { return simd::select(x > c<B>(0), adj, c<B>(0)); }
};

template <class T>
struct LeakyRelu {
    static constexpr const char* name = "leaky_relu";
    static constexpr bool differentiable = true;
    T slope;
    template <class B> B f(B x) const { return simd::select(x > c<B>(0), x, x * B(slope)); }
    template <class B> B grad(B adj, B x, B) const { return simd::select(x > c<B>(0), adj, adj * B(slope)); }
};

// The exact (erf) GELU, PyTorch's default.
struct Gelu {
    static constexpr const char* name = "gelu";
    static constexpr bool differentiable = true;
    template <class B> B f(B x) const { return c<B>(0.5) * x * (c<B>(1) + simd::erf(x * c<B>(std::numbers::sqrt2 / 2))); }
    template <class B> B grad(B adj, B x, B) const {
        const B cdf = c<B>(0.5) * (c<B>(1) + simd::erf(x * c<B>(std::numbers::sqrt2 / 2)));
        const B pdf = simd::exp(c<B>(-0.5) * x * x) * c<B>(0.5 * std::numbers::inv_sqrtpi * std::numbers::sqrt2);
        return adj * (cdf + x * pdf);
    }
};

// log(1 + e^x), written so that neither branch overflows.
struct Softplus {
    static constexpr const char* name = "softplus";
    static constexpr bool differentiable = true;
    template <class B> B f(B x) const { return simd::max(x, c<B>(0)) + simd::log1p(simd::exp(-simd::abs(x))); }
    template <class B> B grad(B adj, B x, B) const { return adj / (c<B>(1) + simd::exp(-x)); }
};

template <class T>
struct Clamp {
    static constexpr const char* name = "clamp";
    static constexpr bool differentiable = true;
    T lo, hi;
    template <class B> B f(B x) const { return simd::min(simd::max(x, B(lo)), B(hi)); }
    template <class B> B grad(B adj, B x, B) const {
        return simd::select(x > B(lo), simd::select(x < B(hi), adj, c<B>(0)), c<B>(0));
    }
};

}  // namespace ops

// ---- the public functions -------------------------------------------------------------------

template <class X, class Y> requires BinaryOperands<X, Y>
auto operator+(X&& x, Y&& y) { return make_binary(ops::Add{}, std::forward<X>(x), std::forward<Y>(y)); }
template <class X, class Y> requires BinaryOperands<X, Y>
auto operator-(X&& x, Y&& y) { return make_binary(ops::Sub{}, std::forward<X>(x), std::forward<Y>(y)); }
template <class X, class Y> requires BinaryOperands<X, Y>
auto operator*(X&& x, Y&& y) { return make_binary(ops::Mul{}, std::forward<X>(x), std::forward<Y>(y)); }
template <class X, class Y> requires BinaryOperands<X, Y>
auto operator/(X&& x, Y&& y) { return make_binary(ops::Div{}, std::forward<X>(x), std::forward<Y>(y)); }

// Arithmetic operators apply to Vars and expressions; on two plain Tensors they are left to the
// user (wrap one in constant() to build an expression).
template <Differentiable X>
auto operator-(X&& x) { return make_unary(ops::Neg{}, std::forward<X>(x)); }

template <class X, class Y> requires BinaryOperands<X, Y> && (!std::is_arithmetic_v<std::remove_cvref_t<Y>>)
auto pow(X&& x, Y&& y) { return make_binary(ops::Pow{}, std::forward<X>(x), std::forward<Y>(y)); }
template <class X, class Y> requires BinaryOperands<X, Y>
auto maximum(X&& x, Y&& y) { return make_binary(ops::Maximum{}, std::forward<X>(x), std::forward<Y>(y)); }
template <class X, class Y> requires BinaryOperands<X, Y>
auto minimum(X&& x, Y&& y) { return make_binary(ops::Minimum{}, std::forward<X>(x), std::forward<Y>(y)); }

template <class X, class Y> requires BinaryOperands<X, Y>
auto greater(X&& x, Y&& y) { return make_binary(ops::Greater{}, std::forward<X>(x), std::forward<Y>(y)); }
template <class X, class Y> requires BinaryOperands<X, Y>
auto greater_equal(X&& x, Y&& y) { return make_binary(ops::GreaterEqual{}, std::forward<X>(x), std::forward<Y>(y)); }
template <class X, class Y> requires BinaryOperands<X, Y>
auto less(X&& x, Y&& y) { return make_binary(ops::Less{}, std::forward<X>(x), std::forward<Y>(y)); }
template <class X, class Y> requires BinaryOperands<X, Y>
auto less_equal(X&& x, Y&& y) { return make_binary(ops::LessEqual{}, std::forward<X>(x), std::forward<Y>(y)); }
template <class X, class Y> requires BinaryOperands<X, Y>
auto equal(X&& x, Y&& y) { return make_binary(ops::Equal{}, std::forward<X>(x), std::forward<Y>(y)); }
template <class X, class Y> requires BinaryOperands<X, Y>
auto not_equal(X&& x, Y&& y) { return make_binary(ops::NotEqual{}, std::forward<X>(x), std::forward<Y>(y)); }

template <Differentiable X> auto neg(X&& x) { return make_unary(ops::Neg{}, std::forward<X>(x)); }
template <Differentiable X> auto exp(X&& x) { return make_unary(ops::Exp{}, std::forward<X>(x)); }
template <Differentiable X> auto log(X&& x) { return make_unary(ops::Log{}, std::forward<X>(x)); }
template <Differentiable X> auto log1p(X&& x) { return make_unary(ops::Log1p{}, std::forward<X>(x)); }
template <Differentiable X> auto sqrt(X&& x) { return make_unary(ops::Sqrt{}, std::forward<X>(x)); }
template <Differentiable X> auto abs(X&& x) { return make_unary(ops::Abs{}, std::forward<X>(x)); }
template <Differentiable X> auto square(X&& x) { return make_unary(ops::Square{}, std::forward<X>(x)); }
template <Differentiable X> auto tanh(X&& x) { return make_unary(ops::Tanh{}, std::forward<X>(x)); }
template <Differentiable X> auto sigmoid(X&& x) { return make_unary(ops::Sigmoid{}, std::forward<X>(x)); }
template <Differentiable X> auto relu(X&& x) { return make_unary(ops::Relu{}, std::forward<X>(x)); }
template <Differentiable X> auto gelu(X&& x) { return make_unary(ops::Gelu{}, std::forward<X>(x)); }
template <Differentiable X> auto softplus(X&& x) { return make_unary(ops::Softplus{}, std::forward<X>(x)); }

template <Differentiable X, class S> requires std::is_arithmetic_v<S>
auto pow(X&& x, S p) {
    using T = operand_value_t<X>;
    return make_unary(ops::PowScalar<T>{static_cast<T>(p)}, std::forward<X>(x));
}
template <Differentiable X>
auto leaky_relu(X&& x, double slope = 0.01) {
    using T = operand_value_t<X>;
    return make_unary(ops::LeakyRelu<T>{static_cast<T>(slope)}, std::forward<X>(x));
}
template <Differentiable X>
auto clamp(X&& x, double lo, double hi) {
    using T = operand_value_t<X>;
    if (!(lo <= hi)) fail<value_error>("clamp", "lower bound ", lo, " is above upper bound ", hi);
    return make_unary(ops::Clamp<T>{static_cast<T>(lo), static_cast<T>(hi)}, std::forward<X>(x));
}

// a where mask is non-zero, else b; mask, a and b broadcast together. The mask gets no gradient.
template <Operand M, class X, class Y>
    requires BinaryOperands<X, Y> && std::same_as<operand_value_t<M>, typename common_operand_value<X, Y>::type>
auto where(M&& mask, X&& a, Y&& b) {
    using T = operand_value_t<M>;
    auto m = as_expr<T>(std::forward<M>(mask));
    auto x = as_expr<T>(std::forward<X>(a));
    auto y = as_expr<T>(std::forward<Y>(b));
    return expr::Where<decltype(m), decltype(x), decltype(y)>(std::move(m), std::move(x), std::move(y));
}

}  // namespace tensortape
