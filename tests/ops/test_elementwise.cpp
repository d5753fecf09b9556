#include "gradcheck.hpp"

#include <cmath>
#include <string>

using V = std::vector<tt::Var<double>>;

TEST_CASE("elementwise: unary ops match finite differences") {
    const tt::Shape s{3, 5};
    const auto x = away_from_zero(s, 1);
    const auto p = positive(s, 2);
    gradcheck([](const V& v) { return tt::Var<double>(-v[0]); }, {x});
    gradcheck([](const V& v) { return tt::Var<double>(tt::neg(v[0])); }, {x});
    gradcheck([](const V& v) { return tt::Var<double>(tt::exp(v[0])); }, {x});
    gradcheck([](const V& v) { return tt::Var<double>(tt::log(v[0])); }, {p});
    gradcheck([](const V& v) { return tt::Var<double>(tt::log1p(v[0])); }, {p});
    gradcheck([](const V& v) { return tt::Var<double>(tt::sqrt(v[0])); }, {p});
    gradcheck([](const V& v) { return tt::Var<double>(tt::abs(v[0])); }, {x});
    gradcheck([](const V& v) { return tt::Var<double>(tt::square(v[0])); }, {x});
    gradcheck([](const V& v) { return tt::Var<double>(tt::pow(v[0], 2.5)); }, {p});
    gradcheck([](const V& v) { return tt::Var<double>(tt::tanh(v[0])); }, {x});
    gradcheck([](const V& v) { return tt::Var<double>(tt::sigmoid(v[0])); }, {x});
    gradcheck([](const V& v) { return tt::Var<double>(tt::relu(v[0])); }, {x});
    gradcheck([](const V& v) { return tt::Var<double>(tt::leaky_relu(v[0], 0.2)); }, {x});
    gradcheck([](const V& v) { return tt::Var<double>(tt::gelu(v[0])); }, {x});
    gradcheck([](const V& v) { return tt::Var<double>(tt::softplus(v[0])); }, {x});
    gradcheck([](const V& v) { return tt::Var<double>(tt::clamp(v[0], -0.5, 0.7)); }, {x});
}

TEST_CASE("elementwise: binary ops match finite differences, with broadcasting both ways") {
    const auto a = away_from_zero({2, 3, 4}, 3);
    const auto row = positive({4}, 4);
    const auto col = positive({2, 1, 1}, 5);
    gradcheck([](const V& v) { return tt::Var<double>(v[0] + v[1]); }, {a, row});
    gradcheck([](const V& v) { return tt::Var<double>(v[1] - v[0]); }, {a, col});
    gradcheck([](const V& v) { return tt::Var<double>(v[0] * v[1]); }, {a, row});
    gradcheck([](const V& v) { return tt::Var<double>(v[0] / v[1]); }, {a, col});
    gradcheck([](const V& v) { return tt::Var<double>(v[1] / v[0]); }, {a, row});
    gradcheck([](const V& v) { return tt::Var<double>(tt::pow(v[0], v[1])); }, {positive({2, 3, 4}, 6), row});
    gradcheck([](const V& v) { return tt::Var<double>(tt::maximum(v[0], v[1])); }, {a, row});
    gradcheck([](const V& v) { return tt::Var<double>(tt::minimum(v[0], v[1])); }, {a, col});
    // Both operands broadcast: [3, 1] with [1, 4] gives [3, 4].
    gradcheck([](const V& v) { return tt::Var<double>(v[0] * v[1] + v[0]); }, {away_from_zero({3, 1}, 7), away_from_zero({1, 4}, 8)});
    // Scalars on either side.
    gradcheck([](const V& v) { return tt::Var<double>(2.0 * v[0] - 1.0 / (v[0] * v[0] + 3.0)); }, {a});
}

TEST_CASE("elementwise: a fused chain with a repeated leaf") {
    // x appears twice: both occurrences add into one gradient; a and b broadcast along rows.
    gradcheck([](const V& v) { return tt::Var<double>(tt::sigmoid(v[0] * v[1] + v[2]) * v[1]); },
              {away_from_zero({1, 6}, 9), away_from_zero({4, 6}, 10), away_from_zero({4, 1}, 11)});
    // Long rows take the SIMD path with a scalar tail (37 = 4 * 8 + 5 doubles).
    gradcheck([](const V& v) { return tt::Var<double>(tt::tanh(v[0]) * tt::exp(v[0] * 0.5) + v[0]); }, {away_from_zero({2, 37}, 12)});
}

TEST_CASE("elementwise: where and comparisons") {
    const auto x = away_from_zero({4, 5}, 13);
    gradcheck([](const V& v) { return tt::Var<double>(tt::where(tt::greater(v[0], 0.0), v[0] * 3.0, tt::square(v[1]))); },
              {x, away_from_zero({5}, 14)});
    auto a = tt::constant(tt::from_values<double>({4}, {1, 2, 3, 4}));
    tt::Var<double> m = tt::less_equal(a, 2.0);
    CHECK(m.value()(0) == 1.0);
    CHECK(m.value()(1) == 1.0);
    CHECK(m.value()(2) == 0.0);
    CHECK_FALSE(m.requires_grad());
}

TEST_CASE("elementwise: values in float match the scalar definitions") {
    auto x = tt::constant(tt::from_values<float>({5}, {-3.f, -0.5f, 0.f, 0.5f, 3.f}));
    tt::Var<float> y = tt::gelu(x);
    for (int i = 0; i < 5; ++i) {
        const double v = x.value()(i);
        CHECK(y.value()(i) == doctest::Approx(0.5 * v * (1 + std::erf(v / std::sqrt(2.0)))).epsilon(1e-5));
    }
    tt::Var<float> sp = tt::softplus(tt::constant(tt::from_values<float>({3}, {-100.f, 0.f, 100.f})));
    CHECK(sp.value()(0) == doctest::Approx(0.0).epsilon(1e-6));
    CHECK(sp.value()(1) == doctest::Approx(std::log(2.0)));
    CHECK(sp.value()(2) == doctest::Approx(100.0));
}

TEST_CASE("elementwise: relu at its kink has gradient 0, like PyTorch") {
    auto x = tt::param(tt::from_values<double>({3}, {-1, 0, 1}));
    tt::backward(tt::sum(tt::relu(x)));
    CHECK(x.grad()(0) == 0.0);
    CHECK(x.grad()(1) == 0.0);
    CHECK(x.grad()(2) == 1.0);
}

TEST_CASE("elementwise: mismatched shapes throw a shape_error naming the op and both shapes") {
    auto a = tt::param(tt::zeros<double>({2, 3}));
    auto b = tt::param(tt::zeros<double>({4, 3}));
    try {
        auto e = a * b;
        (void)e;
        FAIL("expected a shape_error");
    } catch (const tt::shape_error& err) {
        const std::string msg = err.what();
        CHECK(msg.find("mul") != std::string::npos);
        CHECK(msg.find("[2, 3]") != std::string::npos);
        CHECK(msg.find("[4, 3]") != std::string::npos);
    }
    CHECK_THROWS_AS((void)tt::Var<double>(tt::sigmoid(a) + b), tt::shape_error);
    CHECK_THROWS_AS((void)tt::clamp(a, 1.0, -1.0), tt::value_error);
    CHECK_FALSE(a.has_grad());  // nothing ran, nothing was half-computed
}

TEST_CASE("elementwise: an expression held in auto keeps its operands alive") {
    auto make = [] {
        auto w = tt::param(tt::full<double>({3}, 2.0));
        auto e = tt::square(w) * 3.0;  // w goes out of scope with this lambda
        return std::make_pair(e, w);
    };
    auto [e, w] = make();
    tt::Var<double> y = tt::sum(e);
    CHECK(y.item() == doctest::Approx(36.0));
    tt::backward(y);
    CHECK(w.grad()(0) == doctest::Approx(12.0));
    // The expression alone also works after every named handle is gone.
    auto only = [] { return tt::exp(tt::param(tt::zeros<double>({2}))) + 1.0; }();
    tt::Var<double> z = only;
    CHECK(z.value()(1) == doctest::Approx(2.0));
}
