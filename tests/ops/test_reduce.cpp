#include "gradcheck.hpp"

using V = std::vector<tt::Var<double>>;

TEST_CASE("reduce: sum and mean, fused and over axes") {
    const auto x = away_from_zero({3, 4, 5}, 21);
    gradcheck([](const V& v) { return tt::sum(v[0]); }, {x});
    gradcheck([](const V& v) { return tt::mean(tt::square(v[0]) * v[0]); }, {x});
    gradcheck([](const V& v) { return tt::sum(v[0], {1}); }, {x});
    gradcheck([](const V& v) { return tt::sum(v[0], {0, 2}, true); }, {x});
    gradcheck([](const V& v) { return tt::mean(v[0], {-1}); }, {x});
    gradcheck([](const V& v) { return tt::mean(v[0] * 2.0, {0}, true); }, {x});
}

TEST_CASE("reduce: shapes with and without keepdims") {
    auto x = tt::constant(tt::arange<double>(24).reshape({2, 3, 4}));
    CHECK(tt::sum(x, {1}).shape() == tt::Shape{2, 4});
    CHECK(tt::sum(x, {1}, true).shape() == tt::Shape{2, 1, 4});
    CHECK(tt::sum(x).shape() == tt::Shape{});
    CHECK(tt::sum(x).item() == doctest::Approx(276.0));
    CHECK(tt::mean(x, {0, 1, 2}).item() == doctest::Approx(11.5));
    auto s = tt::sum(x, {2});
    CHECK(s.value()(1, 2) == doctest::Approx(20 + 21 + 22 + 23));
    CHECK(tt::max(x, {1}).value()(0, 3) == 11.0);
    CHECK(tt::min(x).item() == 0.0);
}

TEST_CASE("reduce: max, min and logsumexp gradients") {
    const auto x = away_from_zero({3, 5}, 22);
    gradcheck([](const V& v) { return tt::max(v[0], {1}); }, {x});
    gradcheck([](const V& v) { return tt::min(v[0], {0}, true); }, {x});
    gradcheck([](const V& v) { return tt::max(v[0]); }, {x});
    gradcheck([](const V& v) { return tt::logsumexp(v[0], {1}); }, {x});
    gradcheck([](const V& v) { return tt::logsumexp(v[0]); }, {x});
}

TEST_CASE("reduce: max splits the gradient evenly among ties") {
    auto x = tt::param(tt::from_values<double>({4}, {1, 3, 3, 2}));
    tt::backward(tt::max(x));
    CHECK(x.grad()(0) == 0.0);
    CHECK(x.grad()(1) == 0.5);
    CHECK(x.grad()(2) == 0.5);
}

TEST_CASE("reduce: logsumexp is stable for large values") {
    auto x = tt::constant(tt::from_values<float>({3}, {1e4f, 1e4f, -1e4f}));
    CHECK(tt::logsumexp(x).item() == doctest::Approx(1e4 + std::log(2.0)));
}

TEST_CASE("reduce: a fused float sum over many elements is accurate and does not depend on threads") {
    auto x = tt::constant(tt::full<float>({1000003}, 0.1f));
    const int before = tt::num_threads();
    tt::set_num_threads(1);
    const float one = tt::sum(x * 1.0f).item();
    tt::set_num_threads(2);
    const float two = tt::sum(x * 1.0f).item();
    tt::set_num_threads(before);
    CHECK(one == two);
    CHECK(one == doctest::Approx(100000.3).epsilon(1e-5));
}

TEST_CASE("reduce: bad axes throw a value_error naming the op") {
    auto x = tt::constant(tt::zeros<double>({2, 3}));
    CHECK_THROWS_WITH_AS(tt::sum(x, {2}), doctest::Contains("sum"), tt::value_error);
    CHECK_THROWS_AS(tt::max(tt::constant(tt::zeros<double>({0}))), tt::value_error);
}
