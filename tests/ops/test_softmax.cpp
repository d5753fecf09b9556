#include "gradcheck.hpp"

using V = std::vector<tt::Var<double>>;

TEST_CASE("softmax and log_softmax: gradients along any axis") {
    const auto x = away_from_zero({3, 4}, 51);
    gradcheck([](const V& v) { return tt::softmax(v[0]); }, {x});
    gradcheck([](const V& v) { return tt::softmax(v[0], 0); }, {x});
    gradcheck([](const V& v) { return tt::log_softmax(v[0]); }, {x});
    gradcheck([](const V& v) { return tt::log_softmax(v[0] * 3.0, 0); }, {away_from_zero({2, 3, 2}, 52)});
}

TEST_CASE("cross_entropy: gradient and value") {
    const auto labels = tt::from_values<std::int64_t>({4}, {0, 2, 1, 2});
    gradcheck([&](const V& v) { return tt::cross_entropy(v[0], labels); }, {away_from_zero({4, 3}, 53)});
    gradcheck([&](const V& v) { return tt::cross_entropy(v[0], labels, tt::Reduction::none); }, {away_from_zero({4, 3}, 54)});
    gradcheck([&](const V& v) { return tt::cross_entropy(v[0], labels, tt::Reduction::sum); }, {away_from_zero({4, 3}, 55)});
    auto z = tt::constant(tt::from_values<double>({1, 3}, {1, 2, 3}));
    const double expected = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)) - 2.0;
    CHECK(tt::cross_entropy(z, tt::from_values<std::int32_t>({1}, {1})).item() == doctest::Approx(expected));
}

TEST_CASE("cross_entropy and softmax are stable for logits of 1e4") {
    auto z = tt::param(tt::from_values<float>({2, 3}, {1e4f, 0.f, -1e4f, -1e4f, 1e4f, 1e4f}));
    auto loss = tt::cross_entropy(z, tt::from_values<std::int32_t>({2}, {0, 1}));
    CHECK(std::isfinite(loss.item()));
    CHECK(loss.item() == doctest::Approx(std::log(2.0) / 2).epsilon(1e-4));
    tt::backward(loss);
    for (auto g : z.grad().span()) CHECK(std::isfinite(g));
    auto p = tt::softmax(tt::constant(tt::from_values<float>({2}, {1e4f, 1e4f})));
    CHECK(p.value()(0) == doctest::Approx(0.5));
}

TEST_CASE("cross_entropy: bad labels and shapes are refused with the op's name") {
    auto z = tt::param(tt::zeros<double>({2, 3}));
    CHECK_THROWS_WITH_AS(tt::cross_entropy(z, tt::from_values<std::int32_t>({2}, {0, 3})),
                         doctest::Contains("cross_entropy: label 3 at index 1 is outside [0, 3)"), tt::value_error);
    CHECK_THROWS_AS(tt::cross_entropy(z, tt::from_values<std::int32_t>({3}, {0, 1, 2})), tt::shape_error);
    CHECK_FALSE(z.has_grad());
}
