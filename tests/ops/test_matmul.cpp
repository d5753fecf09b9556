#include "gradcheck.hpp"

using V = std::vector<tt::Var<double>>;

namespace {
// Reference product by the definition.
tt::Tensor<double> reference(const tt::Tensor<double>& a, const tt::Tensor<double>& b) {
    const auto m = a.shape()[0], k = a.shape()[1], n = b.shape()[1];
    auto c = tt::zeros<double>({m, n});
    for (std::int64_t i = 0; i < m; ++i)
        for (std::int64_t j = 0; j < n; ++j)
            for (std::int64_t p = 0; p < k; ++p) c(i, j) += a(i, p) * b(p, j);
    return c;
}
}  // namespace

TEST_CASE("matmul: 2-D values on odd sizes") {
    for (auto [m, k, n] : {std::tuple{1, 1, 1}, {3, 7, 5}, {17, 3, 1}, {2, 33, 19}}) {
        const auto a = away_from_zero({m, k}, 31), b = away_from_zero({k, n}, 32);
        auto c = tt::matmul(tt::constant(a), tt::constant(b));
        const auto r = reference(a, b);
        for (std::int64_t i = 0; i < m * n; ++i) CHECK(c.value().data()[i] == doctest::Approx(r.data()[i]));
    }
}

TEST_CASE("matmul: gradients, 2-D and batched with broadcast batch axes") {
    gradcheck([](const V& v) { return tt::matmul(v[0], v[1]); }, {away_from_zero({3, 4}, 33), away_from_zero({4, 5}, 34)});
    gradcheck([](const V& v) { return tt::matmul(v[0], v[1]); }, {away_from_zero({2, 3, 4}, 35), away_from_zero({2, 4, 2}, 36)});
    gradcheck([](const V& v) { return tt::matmul(v[0], v[1]); }, {away_from_zero({2, 1, 3, 4}, 37), away_from_zero({3, 4, 2}, 38)});
    gradcheck([](const V& v) { return tt::matmul(tt::tanh(v[0]), v[1]); }, {away_from_zero({3, 4}, 39), away_from_zero({4, 1}, 40)});
}

TEST_CASE("matmul: bad shapes name the op and both shapes") {
    auto a = tt::param(tt::zeros<double>({2, 3}));
    auto b = tt::param(tt::zeros<double>({4, 5}));
    CHECK_THROWS_WITH_AS(tt::matmul(a, b), doctest::Contains("matmul: inner dimensions differ: [2, 3] @ [4, 5]"), tt::shape_error);
    CHECK_THROWS_AS(tt::matmul(a, tt::param(tt::zeros<double>({3}))), tt::shape_error);
    CHECK_THROWS_AS(tt::matmul(tt::param(tt::zeros<double>({2, 2, 3})), tt::param(tt::zeros<double>({3, 3, 1}))), tt::shape_error);
}
