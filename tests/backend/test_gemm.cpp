#include <doctest/doctest.h>
#include <tensortape/tensortape.hpp>

#include <array>
#include <cmath>
#include <cstring>
#include <vector>

namespace tt = tensortape;

namespace {

// C = alpha op(A) op(B) + beta C by the definition, in double.
template <class T>
std::vector<double> reference(bool ta, bool tb, int m, int n, int k, double alpha, const std::vector<T>& a, int lda, const std::vector<T>& b,
                              int ldb, double beta, const std::vector<T>& c, int ldc) {
    std::vector<double> out(c.begin(), c.end());
    for (int i = 0; i < m; ++i)
        for (int j = 0; j < n; ++j) {
            double s = 0;
            for (int p = 0; p < k; ++p) s += double(ta ? a[p * lda + i] : a[i * lda + p]) * double(tb ? b[j * ldb + p] : b[p * ldb + j]);
            out[i * ldc + j] = alpha * s + (beta == 0 ? 0.0 : beta * double(c[i * ldc + j]));
        }
    return out;
}

template <class T>
void check_gemm(bool ta, bool tb, int m, int n, int k, T alpha, T beta) {
    tt::Generator gen(static_cast<std::uint64_t>(m * 131 + n * 17 + k));
    const int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 1, ldc = n + 2;  // padded leading dims
    std::vector<T> a(static_cast<std::size_t>((ta ? k : m) * lda)), b(static_cast<std::size_t>((tb ? n : k) * ldb)),
        c(static_cast<std::size_t>(m * ldc));
    for (auto& v : a) v = T(gen.uniform() * 2 - 1);
    for (auto& v : b) v = T(gen.uniform() * 2 - 1);
    for (auto& v : c) v = T(gen.uniform() * 2 - 1);
    const auto expected = reference(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    tt::cpu::gemm<T>(ta, tb, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
    const double tol = std::is_same_v<T, float> ? 1e-4 : 1e-11;
    int bad = 0;
    for (int i = 0; i < m; ++i)
        for (int j = 0; j < n; ++j) {
            const double e = expected[static_cast<std::size_t>(i * ldc + j)], g = c[static_cast<std::size_t>(i * ldc + j)];
            bad += std::abs(e - g) > tol * (1 + std::abs(e)) * std::sqrt(double(k) + 1);
        }
    INFO("ta=", ta, " tb=", tb, " m=", m, " n=", n, " k=", k);
    CHECK(bad == 0);
    // Padding between rows is never written.
    for (int i = 0; i < m; ++i)
        for (int j = n; j < ldc; ++j) CHECK(c[static_cast<std::size_t>(i * ldc + j)] == T(expected[static_cast<std::size_t>(i * ldc + j)]));
}

}  // namespace

TEST_CASE("gemm: all transposes, odd sizes, alpha and beta, float and double") {
    const int sizes[][3] = {{1, 1, 1}, {3, 7, 5}, {13, 33, 17}, {1, 255, 3}, {37, 1, 300}, {64, 10, 128}, {129, 65, 257}, {7, 1031, 9}, {20, 100, 803}};
    for (bool ta : {false, true})
        for (bool tb : {false, true})
            for (const auto& s : sizes) {
                check_gemm<float>(ta, tb, s[0], s[1], s[2], 1.f, 0.f);
                check_gemm<double>(ta, tb, s[0], s[1], s[2], -0.5, 2.0);
            }
}

TEST_CASE("gemm: larger than one packed block in every dimension, with threads") {
    check_gemm<float>(false, false, 300, 4200, 600, 1.f, 1.f);
    check_gemm<double>(true, true, 211, 300, 513, 0.25, 0.0);
}

TEST_CASE("gemm: beta = 0 ignores NaNs already in C; k = 0 scales C") {
    std::vector<float> a(6, 1.f), b(6, 1.f), c(4, std::nanf(""));
    tt::cpu::gemm<float>(false, false, 2, 2, 3, 1.f, a.data(), 3, b.data(), 2, 0.f, c.data(), 2);
    for (float v : c) CHECK(v == 3.f);
    tt::cpu::gemm<float>(false, false, 2, 2, 0, 1.f, a.data(), 3, b.data(), 2, 0.5f, c.data(), 2);
    for (float v : c) CHECK(v == 1.5f);
}

TEST_CASE("gemm: fused epilogue adds row or column bias and applies relu") {
    const int m = 5, n = 37, k = 11;
    tt::Generator gen(3);
    std::vector<float> a(m * k), b(k * n), c(m * n), plain(m * n), rb(m), cb(n);
    for (auto& v : a) v = float(gen.uniform() * 2 - 1);
    for (auto& v : b) v = float(gen.uniform() * 2 - 1);
    for (auto& v : rb) v = float(gen.uniform() - 0.5);
    for (auto& v : cb) v = float(gen.uniform() - 0.5);
    tt::cpu::gemm<float>(false, false, m, n, k, 1.f, a.data(), k, b.data(), n, 0.f, plain.data(), n);
    tt::cpu::Epilogue<float> epi{rb.data(), cb.data(), tt::cpu::Activation::relu};
    tt::cpu::gemm<float>(false, false, m, n, k, 1.f, a.data(), k, b.data(), n, 0.f, c.data(), n, epi);
    for (int i = 0; i < m; ++i)
        for (int j = 0; j < n; ++j) CHECK(c[i * n + j] == doctest::Approx(std::max(0.f, plain[i * n + j] + rb[i] + cb[j])));
}

TEST_CASE("gemm: an A packed once serves several products, narrow and wide") {
    for (bool ta : {false, true})
        for (int n : {3, 37}) {  // narrow (at most one vector, even on SSE2) and wide
            const int m = 13, k = 300;
            tt::Generator gen(static_cast<std::uint64_t>(n));
            std::vector<float> a(m * k), b(k * n), c1(m * n), c2(m * n);
            for (auto& v : a) v = float(gen.uniform() - 0.5);
            for (auto& v : b) v = float(gen.uniform() - 0.5);
            const tt::cpu::PackedA<float> packed(ta, m, k, a.data(), ta ? m : k, n);
            for (int rep = 0; rep < 2; ++rep) {
                tt::cpu::gemm<float>(packed, n, false, b.data(), n, 1.f, 0.f, c1.data(), n);
                tt::cpu::gemm<float>(ta, false, m, n, k, 1.f, a.data(), ta ? m : k, b.data(), n, 0.f, c2.data(), n);
                for (int i = 0; i < m * n; ++i) CHECK(c1[i] == doctest::Approx(c2[i]).epsilon(1e-5));
            }
            CHECK_THROWS_AS(tt::cpu::gemm<float>(packed, n == 3 ? 37 : 3, false, b.data(), n, 1.f, 0.f, c1.data(), n), tt::value_error);
        }
}

TEST_CASE("gemm: the same bits on one thread and two, whichever way the threads split the product") {
    const int before = tt::num_threads();
    // Few row blocks split by columns, few split by rows (three slivers, seven depth blocks), many
    // row blocks sharing one packed B; each with a packed A and the fused epilogue.
    for (auto [m, n, k] : {std::array{64, 1000, 300}, std::array{64, 128, 1600}, std::array{200, 500, 300}, std::array{1000, 64, 300},
                           std::array{300, 4200, 600}}) {
        tt::Generator gen(static_cast<std::uint64_t>(m + n + k));
        std::vector<float> a(static_cast<std::size_t>(m * k)), b(static_cast<std::size_t>(k * n)), rb(static_cast<std::size_t>(m)), cb(static_cast<std::size_t>(n));
        for (auto* v : {&a, &b, &rb, &cb})
            for (auto& x : *v) x = float(gen.uniform() - 0.5);
        const tt::cpu::Epilogue<float> epi{rb.data(), cb.data(), tt::cpu::Activation::relu};
        std::vector<std::vector<float>> out;
        for (int threads : {1, 2}) {
            tt::set_num_threads(threads);
            std::vector<float> c(std::size_t(m) * n), cp(std::size_t(m) * n);
            tt::cpu::gemm<float>(false, false, m, n, k, 1.f, a.data(), k, b.data(), n, 0.f, c.data(), n, epi);
            const tt::cpu::PackedA<float> packed(false, m, k, a.data(), k, n);
            tt::cpu::gemm<float>(packed, n, false, b.data(), n, 1.f, 0.f, cp.data(), n, epi);
            CHECK(std::memcmp(c.data(), cp.data(), c.size() * sizeof(float)) == 0);
            out.push_back(std::move(c));
        }
        INFO("m=", m, " n=", n, " k=", k);
        CHECK(std::memcmp(out[0].data(), out[1].data(), out[0].size() * sizeof(float)) == 0);
    }
    tt::set_num_threads(before);
}
