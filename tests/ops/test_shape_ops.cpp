#include "gradcheck.hpp"

using V = std::vector<tt::Var<double>>;

TEST_CASE("shape ops: gradients") {
    const auto x = away_from_zero({2, 3, 4}, 41);
    gradcheck([](const V& v) { return tt::reshape(v[0] * 2.0, {4, -1}); }, {x});
    gradcheck([](const V& v) { return tt::flatten(v[0]); }, {x});
    gradcheck([](const V& v) { return tt::transpose(v[0]); }, {x});
    gradcheck([](const V& v) { return tt::permute(v[0], {2, 0, 1}); }, {x});
    gradcheck([](const V& v) { return tt::slice(v[0], 1, 1, 3); }, {x});
    gradcheck([](const V& v) { return tt::slice(v[0], -1, 0, 4, 3); }, {x});
    gradcheck([](const V& v) { return tt::concat<double>({v[0], v[1]}, 1); }, {x, away_from_zero({2, 2, 4}, 42)});
    gradcheck([](const V& v) { return tt::broadcast_to(v[0], {3, 2, 4}); }, {away_from_zero({2, 1}, 43)});
    gradcheck([](const V& v) { return tt::squeeze(tt::unsqueeze(v[0], 1), 1); }, {away_from_zero({3, 2}, 44)});
}

TEST_CASE("shape ops: values") {
    auto x = tt::constant(tt::arange<double>(6).reshape({2, 3}));
    auto t = tt::transpose(x);
    CHECK(t.shape() == tt::Shape{3, 2});
    CHECK(t.value()(2, 1) == 5.0);
    auto s = tt::slice(x, 1, 0, 3, 2);
    CHECK(s.shape() == tt::Shape{2, 2});
    CHECK(s.value()(1, 1) == 5.0);
    auto c = tt::concat<double>({x, x}, 0);
    CHECK(c.shape() == tt::Shape{4, 3});
    CHECK(c.value()(3, 2) == 5.0);
}

TEST_CASE("shape ops: bad input names the op and the shapes") {
    auto x = tt::param(tt::zeros<double>({2, 3}));
    CHECK_THROWS_WITH_AS(tt::reshape(x, {4, 2}), doctest::Contains("reshape: cannot reshape [2, 3]"), tt::shape_error);
    CHECK_THROWS_AS(tt::permute(x, {0, 0}), tt::value_error);
    CHECK_THROWS_WITH_AS(tt::concat<double>({x, tt::param(tt::zeros<double>({2, 4}))}, 0), doctest::Contains("concatenate"), tt::shape_error);
    CHECK_THROWS_AS(tt::broadcast_to(x, {3, 3}), tt::shape_error);
    CHECK_THROWS_AS(tt::squeeze(x, 0), tt::shape_error);
}
