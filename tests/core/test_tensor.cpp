#include <doctest/doctest.h>
#include <tensortape/tensortape.hpp>

#include <sstream>

namespace tt = tensortape;

TEST_CASE("shape: broadcasting follows NumPy and errors name both shapes") {
    CHECK(tt::broadcast_shapes("add", {2, 1, 4}, {3, 1}) == tt::Shape{2, 3, 4});
    CHECK(tt::broadcast_shapes("add", {}, {5}) == tt::Shape{5});
    CHECK_THROWS_WITH_AS(tt::broadcast_shapes("add", {2, 3}, {4, 3}), doctest::Contains("add: shapes [2, 3] and [4, 3]"), tt::shape_error);
    CHECK(tt::contiguous_strides({2, 3, 4}) == tt::Strides{12, 4, 1});
    CHECK_THROWS_AS(tt::Shape({1, 2, 3, 4, 5, 6, 7, 8, 9}), tt::value_error);
}

TEST_CASE("loop layout: axes coalesce where every operand allows") {
    const tt::Shape s{4, 5, 6};
    const auto full = tt::contiguous_strides(s);
    auto L = tt::cpu::make_layout<2>(s, {full, full});
    CHECK(L.rows == 1);
    CHECK(L.cols == 120);
    const tt::Shape bias{6};
    auto B = tt::cpu::make_layout<2>(s, {full, tt::broadcast_strides(bias, tt::contiguous_strides(bias), s)});
    CHECK(B.rows == 20);
    CHECK(B.cols == 6);
}

TEST_CASE("tensor: creation, element access and dtype") {
    auto z = tt::zeros<float>({2, 3});
    CHECK(z.numel() == 6);
    CHECK(z.is_contiguous());
    CHECK(reinterpret_cast<std::uintptr_t>(z.data()) % 64 == 0);
    auto a = tt::arange<double>(0.0, 1.0, 0.25);
    CHECK(a.shape() == tt::Shape{4});
    CHECK(a(3) == 0.75);
    auto f = tt::full<std::int32_t>({2}, 7);
    CHECK(f(1) == 7);
    CHECK(f.dtype() == tt::DType::i32);
    CHECK_THROWS_AS(tt::zeros<float>({2, -1}), tt::value_error);
    CHECK_THROWS_AS(z(2, 0), tt::value_error);
    CHECK_THROWS_AS(z.item(), tt::shape_error);
}

TEST_CASE("tensor: seeded random numbers are reproducible") {
    tt::Generator g1(42), g2(42);
    auto a = tt::randn<float>({100}, g1);
    auto b = tt::randn<float>({100}, g2);
    for (int i = 0; i < 100; ++i) CHECK(a(i) == b(i));
    auto u = tt::uniform<double>({1000}, -1.0, 1.0, g1);
    double lo = 1, hi = -1, mean = 0;
    for (auto v : u.span()) {
        lo = std::min(lo, v);
        hi = std::max(hi, v);
        mean += v / 1000;
    }
    CHECK(lo >= -1.0);
    CHECK(hi < 1.0);
    CHECK(std::abs(mean) < 0.1);
}

TEST_CASE("tensor: views share storage; clone and contiguous copy") {
    auto t = tt::arange<double>(12).reshape({3, 4});
    auto tr = t.transpose();
    CHECK(tr.shape() == tt::Shape{4, 3});
    CHECK_FALSE(tr.is_contiguous());
    CHECK(tr(3, 2) == 11.0);
    CHECK(tr.shares_storage_with(t));
    auto c = tr.contiguous();
    CHECK(c.is_contiguous());
    CHECK(c(3, 2) == 11.0);
    auto s = t.slice(1, 1, 4, 2);
    CHECK(s.shape() == tt::Shape{3, 2});
    CHECK(s(2, 1) == 11.0);
    s(0, 0) = -1;
    CHECK(t(0, 1) == -1.0);
    auto p = tt::arange<double>(24).reshape({2, 3, 4}).permute({2, 0, 1});
    CHECK(p.shape() == tt::Shape{4, 2, 3});
    CHECK(p(1, 1, 2) == 21.0);
    auto r = t.reshape({-1});
    CHECK(r.shape() == tt::Shape{12});
    CHECK_THROWS_AS(t.reshape({5, -1}), tt::shape_error);
    auto b = tt::arange<double>(3).broadcast_to({2, 3});
    CHECK(b(1, 2) == 2.0);
    CHECK(b.strides()[0] == 0);
}

TEST_CASE("tensor: concatenate and stack") {
    auto a = tt::ones<float>({2, 2});
    auto b = tt::zeros<float>({2, 3});
    auto c = tt::concatenate<float>({a, b}, 1);
    CHECK(c.shape() == tt::Shape{2, 5});
    CHECK(c(1, 1) == 1.0f);
    CHECK(c(1, 2) == 0.0f);
    CHECK_THROWS_WITH_AS(tt::concatenate<float>({a, b}, 0), doctest::Contains("concatenate: tensor 1 has shape [2, 3]"), tt::shape_error);
    auto s = tt::stack<float>({a, a, a}, 1);
    CHECK(s.shape() == tt::Shape{2, 3, 2});
    CHECK_THROWS_AS(tt::stack<float>({a, b}), tt::shape_error);
}

TEST_CASE("tensor: printing") {
    std::ostringstream os;
    os << tt::arange<float>(4).reshape({2, 2});
    CHECK(os.str() == "tensor([[0, 1],\n        [2, 3]], shape=[2, 2], dtype=float32)");
    std::ostringstream big;
    big << tt::zeros<double>({2000});
    CHECK(big.str().find("...") != std::string::npos);
}

TEST_CASE("xtensor interop: zero-copy view out, copy of any expression in, borrowed container") {
    auto t = tt::arange<double>(6).reshape({2, 3});
    auto view = tt::as_xtensor(t);
    CHECK(view(1, 2) == 5.0);
    view(0, 0) = 42.0;
    CHECK(t(0, 0) == 42.0);  // writes go through: no copy
    auto tv = t.transpose();
    auto tview = tt::as_xtensor(tv);
    CHECK(tview(2, 1) == 5.0);

    xt::xarray<double> xa = {{1.0, 2.0}, {3.0, 4.0}};
    auto from = tt::from_xtensor(xa * 2.0 + 1.0);
    CHECK(from.shape() == tt::Shape{2, 2});
    CHECK(from(1, 0) == 7.0);

    auto borrowed = tt::borrow(xa);
    CHECK(borrowed(1, 1) == 4.0);
    borrowed(1, 1) = -4.0;
    CHECK(xa(1, 1) == -4.0);
}

TEST_CASE("allocator: freed blocks are reused without going to the system") {
    tt::release_cached_memory();
    { auto a = tt::zeros<float>({1 << 20}); }
    const auto before = tt::allocator_stats();
    for (int i = 0; i < 10; ++i) {
        auto a = tt::zeros<float>({1 << 20});
        auto b = tt::zeros<float>({(1 << 20) - 7});  // same size class
        (void)b;
    }
    const auto after = tt::allocator_stats();
    CHECK(after.system_allocs - before.system_allocs <= 1);
    CHECK(after.cache_hits - before.cache_hits >= 19);
}
