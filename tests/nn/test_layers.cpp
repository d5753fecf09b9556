#include "gradcheck.hpp"

#include <tensortape/nn/nn.hpp>

namespace nn = tensortape::nn;
using V = std::vector<tt::Var<double>>;

TEST_CASE("linear: gradients with and without bias and fused relu; values match matmul") {
    const auto x = away_from_zero({5, 7}, 81), w = away_from_zero({3, 7}, 82), b = away_from_zero({3}, 83);
    gradcheck([](const V& v) { return tt::linear(v[0], v[1], v[2]); }, {x, w, b});
    gradcheck([](const V& v) { return tt::linear(v[0], v[1], v[2], tt::Activation::relu); }, {x, w, b});
    gradcheck([](const V& v) { return tt::linear(v[0], v[1]); }, {x, w});
    auto y = tt::linear(tt::constant(x), tt::constant(w), tt::constant(b));
    auto ref = tt::Var<double>(tt::matmul(tt::constant(x), tt::transpose(tt::constant(w))) + tt::constant(b));
    for (std::int64_t i = 0; i < y.numel(); ++i) CHECK(y.value().data()[i] == doctest::Approx(ref.value().data()[i]));
    CHECK_THROWS_WITH_AS(tt::linear(tt::constant(x), tt::constant(away_from_zero({3, 6}, 84))),
                         doctest::Contains("linear: weights of shape [3, 6] for input of shape [5, 7]"), tt::shape_error);
}

TEST_CASE("batch_norm: training and evaluation gradients, running statistics") {
    const auto x4 = away_from_zero({3, 2, 3, 2}, 85), x2 = away_from_zero({6, 4}, 86);
    gradcheck(
        [](const V& v) {
            auto rm = tt::zeros<double>({2}), rv = tt::ones<double>({2});
            return tt::batch_norm(v[0], v[1], v[2], rm, rv);
        },
        {x4, away_from_zero({2}, 87), away_from_zero({2}, 88)}, {.atol = 1e-5, .rtol = 1e-4});
    gradcheck(
        [](const V& v) {
            auto rm = tt::zeros<double>({4}), rv = tt::ones<double>({4});
            return tt::batch_norm(v[0], v[1], v[2], rm, rv);
        },
        {x2, away_from_zero({4}, 89), away_from_zero({4}, 90)}, {.atol = 1e-5, .rtol = 1e-4});
    gradcheck(
        [](const V& v) {
            auto rm = tt::full<double>({4}, 0.3), rv = tt::full<double>({4}, 2.0);
            return tt::batch_norm(v[0], v[1], v[2], rm, rv, {.training = false});
        },
        {x2, away_from_zero({4}, 91), away_from_zero({4}, 92)});

    // Running statistics follow PyTorch: momentum 0.1, unbiased variance.
    auto x = tt::constant(tt::from_values<double>({4, 1}, {1, 2, 3, 4}));
    auto rm = tt::zeros<double>({1}), rv = tt::ones<double>({1});
    auto y = tt::batch_norm(x, tt::param(tt::ones<double>({1})), tt::param(tt::zeros<double>({1})), rm, rv);
    CHECK(rm(0) == doctest::Approx(0.25));
    CHECK(rv(0) == doctest::Approx(0.9 + 0.1 * (5.0 / 3.0)));
    CHECK(y.value()(0, 0) == doctest::Approx((1 - 2.5) / std::sqrt(1.25 + 1e-5)));
}

TEST_CASE("layer_norm and embedding: gradients") {
    gradcheck([](const V& v) { return tt::layer_norm(v[0], v[1], v[2]); },
              {away_from_zero({3, 5}, 93), away_from_zero({5}, 94), away_from_zero({5}, 95)}, {.atol = 1e-5, .rtol = 1e-4});
    gradcheck([](const V& v) { return tt::layer_norm(v[0], v[1], v[2]); },
              {away_from_zero({2, 3, 4}, 96), away_from_zero({3, 4}, 97), away_from_zero({3, 4}, 98)}, {.atol = 1e-5, .rtol = 1e-4});
    const auto idx = tt::from_values<std::int64_t>({2, 3}, {0, 2, 2, 1, 0, 4});
    gradcheck([&](const V& v) { return tt::embedding(v[0], idx); }, {away_from_zero({5, 3}, 99)});
    CHECK_THROWS_WITH_AS(tt::embedding(tt::param(tt::zeros<double>({5, 3})), tt::from_values<std::int64_t>({1}, {5})),
                         doctest::Contains("embedding: index 5 at position 0 is outside [0, 5)"), tt::value_error);
}

TEST_CASE("layers: PyTorch names and shapes, modes, reproducible seeded initialisation") {
    tt::Generator g1(7), g2(7);
    nn::Sequential<double> a, b;
    for (auto* m : {&a, &b}) {
        auto& gen = m == &a ? g1 : g2;
        m->add<nn::Conv2D>(1, 4, 3, tt::Conv2dOptions{.activation = tt::Activation::relu}, true, nn::Init::he_normal, gen);
        m->add<nn::BatchNorm>(4);
        m->add<nn::MaxPool2D>(2);
        m->add<nn::Flatten>();
        m->add<nn::Dropout>(0.5);
        m->add<nn::Dense>(4 * 3 * 3, 3, tt::Activation::none, true, nn::Init::glorot_uniform, gen);
    }
    const auto names = a.named_parameters();
    REQUIRE(names.size() == 6);
    CHECK(names[0].first == "0.weight");
    CHECK(names[0].second.shape() == tt::Shape{4, 1, 3, 3});
    CHECK(names[2].first == "1.weight");
    CHECK(names[5].first == "5.bias");
    CHECK(a.named_buffers()[0].first == "1.running_mean");
    for (std::size_t i = 0; i < names.size(); ++i)
        for (std::int64_t k = 0; k < names[i].second.numel(); ++k)
            CHECK(names[i].second.value().data()[k] == b.named_parameters()[i].second.value().data()[k]);

    auto x = tt::constant(tt::uniform<double>({2, 1, 8, 8}, -1, 1, g1));
    CHECK(a(x).shape() == tt::Shape{2, 3});
    a.eval();
    CHECK_FALSE(a[4].training());
    auto e1 = a(x), e2 = a(x);  // evaluation: dropout off, running statistics: deterministic
    for (std::int64_t k = 0; k < e1.numel(); ++k) CHECK(e1.value().data()[k] == e2.value().data()[k]);

    // Glorot uniform bound: sqrt(6 / (fan_in + fan_out)).
    nn::Dense<double> d(100, 50, tt::Activation::none, true, nn::Init::glorot_uniform, g1);
    const double bound = std::sqrt(6.0 / 150);
    for (auto v : d.weight.value().span()) CHECK(std::abs(v) <= bound);
    CHECK_THROWS_AS(nn::Dense<double>(0, 3), tt::value_error);
    CHECK_THROWS_AS(nn::Dropout<double>(1.0), tt::value_error);
}

TEST_CASE("dropout: scales kept values, identity in evaluation, gradient through the mask") {
    nn::Dropout<double> drop(0.25, 3);
    auto x = tt::param(tt::ones<double>({1000}));
    auto y = drop(x);
    int zeros = 0;
    for (auto v : y.value().span()) {
        CHECK((v == 0.0 || v == doctest::Approx(1 / 0.75)));
        zeros += v == 0.0;
    }
    CHECK(zeros > 180);
    CHECK(zeros < 320);
    tt::backward(tt::sum(y));
    for (std::int64_t i = 0; i < 1000; ++i) CHECK(x.grad()(i) == y.value()(i));
    drop.eval();
    CHECK(drop(x).value()(5) == 1.0);
}

TEST_CASE("losses: values and gradients") {
    const auto z = away_from_zero({4, 3}, 101);
    const auto labels = tt::from_values<double>({4}, {0, 2, 1, 1});
    nn::SparseCategoricalCrossentropy<double> scce;
    CHECK(scce(tt::constant(z), labels).item() == doctest::Approx(tt::cross_entropy(tt::constant(z), tt::from_values<std::int32_t>({4}, {0, 2, 1, 1})).item()));
    nn::SparseCategoricalCrossentropy<double> scce_p{.from_logits = false};
    gradcheck([&](const V& v) { return scce_p(tt::softmax(v[0]), labels); }, {z});
    CHECK(scce_p(tt::softmax(tt::constant(z)), labels).item() == doctest::Approx(scce(tt::constant(z), labels).item()).epsilon(1e-6));
    CHECK_THROWS_WITH_AS(scce(tt::constant(z), tt::from_values<double>({4}, {0, 3, 1, 1})),
                         doctest::Contains("label 3 at index 1 is not a class index in [0, 3)"), tt::value_error);
    CHECK_THROWS_AS(scce(tt::constant(z), tt::from_values<double>({4}, {0, 1.5, 1, 1})), tt::value_error);

    auto soft = tt::from_values<double>({4, 3}, {1, 0, 0, 0.2, 0.3, 0.5, 0, 1, 0, 0.1, 0.8, 0.1});
    nn::CategoricalCrossentropy<double> cce;
    gradcheck([&](const V& v) { return cce(v[0], soft); }, {z});
    nn::BinaryCrossentropy<double> bce;
    const auto t01 = tt::from_values<double>({4, 3}, {1, 0, 1, 0, 0, 1, 1, 1, 0, 0.5, 0, 1});
    gradcheck([&](const V& v) { return bce(v[0], t01); }, {z});
    // With logits of 1e3 the logistic loss stays finite.
    CHECK(std::isfinite(bce(tt::constant(tt::full<double>({1}, 1e3)), tt::zeros<double>({1})).item()));
    CHECK(bce(tt::constant(tt::full<double>({1}, 1e3)), tt::zeros<double>({1})).item() == doctest::Approx(1e3));
    nn::BinaryCrossentropy<double> bce_p{.from_logits = false};
    gradcheck([&](const V& v) { return bce_p(tt::sigmoid(v[0]), t01); }, {z});
    nn::MeanSquaredError<double> mse;
    gradcheck([&](const V& v) { return mse(v[0], soft); }, {z});
    CHECK(mse(tt::constant(tt::from_values<double>({2}, {1, 3})), tt::from_values<double>({2}, {0, 1})).item() == doctest::Approx(2.5));
    CHECK_THROWS_AS(mse(tt::constant(z), labels), tt::shape_error);
}

TEST_CASE("batch_norm and layer_norm: bad shapes name the op and the shapes") {
    auto rm = tt::zeros<double>({3}), rv = tt::ones<double>({3});
    auto g3 = tt::param(tt::ones<double>({3})), b3 = tt::param(tt::zeros<double>({3}));
    CHECK_THROWS_WITH_AS(tt::batch_norm(tt::param(tt::zeros<double>({4, 5})), g3, b3, rm, rv),
                         doctest::Contains("batch_norm: parameter of shape [3] for 5 channels"), tt::shape_error);
    CHECK_THROWS_WITH_AS(tt::batch_norm(tt::param(tt::zeros<double>({4, 3, 2})), g3, b3, rm, rv),
                         doctest::Contains("batch_norm: input must be [N, C] or [N, C, H, W], got shape [4, 3, 2]"), tt::shape_error);
    CHECK_THROWS_AS(tt::batch_norm(tt::param(tt::zeros<double>({1, 3})), g3, b3, rm, rv), tt::value_error);  // one value per channel
    CHECK(rm(0) == 0.0);  // refused calls leave the running statistics alone
    CHECK_THROWS_WITH_AS(tt::layer_norm(tt::param(tt::zeros<double>({2, 4})), g3, b3),
                         doctest::Contains("layer_norm: gamma [3] and beta [3] must both match the trailing axes of input [2, 4]"),
                         tt::shape_error);
}
