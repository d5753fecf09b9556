#include "gradcheck.hpp"

#include <cmath>
#include <limits>
#include <vector>

using V = std::vector<tt::Var<double>>;

namespace {

// conv2d by its definition.
tt::Tensor<double> reference_conv(const tt::Tensor<double>& x, const tt::Tensor<double>& w, const tt::Tensor<double>* b,
                                  const tt::Conv2dOptions& o) {
    const auto N = x.shape()[0], C = x.shape()[1], H = x.shape()[2], W = x.shape()[3];
    const auto CO = w.shape()[0], KH = w.shape()[2], KW = w.shape()[3];
    const auto OH = (H + 2 * o.padding[0] - o.dilation[0] * (KH - 1) - 1) / o.stride[0] + 1;
    const auto OW = (W + 2 * o.padding[1] - o.dilation[1] * (KW - 1) - 1) / o.stride[1] + 1;
    auto y = tt::zeros<double>({N, CO, OH, OW});
    for (std::int64_t n = 0; n < N; ++n)
        for (std::int64_t co = 0; co < CO; ++co)
            for (std::int64_t oy = 0; oy < OH; ++oy)
                for (std::int64_t ox = 0; ox < OW; ++ox) {
                    double s = b ? (*b)(co) : 0.0;
                    for (std::int64_t c = 0; c < C; ++c)
                        for (std::int64_t i = 0; i < KH; ++i)
                            for (std::int64_t j = 0; j < KW; ++j) {
                                const auto iy = oy * o.stride[0] - o.padding[0] + i * o.dilation[0];
                                const auto ix = ox * o.stride[1] - o.padding[1] + j * o.dilation[1];
                                if (iy >= 0 && iy < H && ix >= 0 && ix < W) s += x(n, c, iy, ix) * w(co, c, i, j);
                            }
                    y(n, co, oy, ox) = o.activation == tt::Activation::relu ? std::max(0.0, s) : s;
                }
    return y;
}

// One convolution to check: input N x C x H x W, CO filters of KH x KW, and the options.
struct ConvCase {
    std::int64_t n, c, h, w, co, kh, kw;
    tt::Conv2dOptions o;
};

}  // namespace

TEST_CASE("conv2d: matches the definition on odd sizes, strides, padding and dilation") {
    const ConvCase cases[] = {
        {1, 1, 1, 1, 1, 1, 1, {}},
        {1, 3, 7, 7, 5, 3, 3, {}},
        {2, 1, 28, 28, 32, 3, 3, {}},
        {3, 17, 13, 11, 7, 3, 2, {{2, 1}, {1, 0}, {1, 1}, tt::Activation::none}},
        {1, 5, 17, 17, 3, 3, 3, {{1, 1}, {2, 2}, {2, 2}, tt::Activation::relu}},
        {2, 6, 5, 9, 4, 1, 1, {}},  // pointwise: the input is its own im2col matrix
        {1, 2, 8, 8, 3, 2, 2, {{3, 3}, {1, 1}, {1, 1}, tt::Activation::relu}},
    };
    for (const auto& cs : cases) {
        const auto x = away_from_zero({cs.n, cs.c, cs.h, cs.w}, 61);
        const auto w = away_from_zero({cs.co, cs.c, cs.kh, cs.kw}, 62);
        const auto b = away_from_zero({cs.co}, 63);
        const auto expected = reference_conv(x, w, &b, cs.o);
        const auto got = tt::conv2d(tt::constant(x), tt::constant(w), tt::constant(b), cs.o);
        REQUIRE(got.shape() == expected.shape());
        int bad = 0;
        for (std::int64_t i = 0; i < expected.numel(); ++i) bad += std::abs(got.value().data()[i] - expected.data()[i]) > 1e-10;
        INFO("case c=", cs.c, " h=", cs.h, " co=", cs.co, " k=", cs.kh, "x", cs.kw);
        CHECK(bad == 0);
    }
}

TEST_CASE("conv2d: gradients of input, weights and bias") {
    gradcheck([](const V& v) { return tt::conv2d(v[0], v[1], v[2]); },
              {away_from_zero({2, 3, 5, 6}, 64), away_from_zero({4, 3, 3, 2}, 65), away_from_zero({4}, 66)});
    gradcheck([](const V& v) { return tt::conv2d(v[0], v[1], v[2], {{2, 1}, {1, 2}, {1, 2}, tt::Activation::none}); },
              {away_from_zero({1, 2, 7, 6}, 67), away_from_zero({3, 2, 2, 3}, 68), away_from_zero({3}, 69)});
    gradcheck([](const V& v) { return tt::conv2d(v[0], v[1], {{1, 1}, {0, 0}, {1, 1}, tt::Activation::relu}); },
              {away_from_zero({2, 2, 4, 4}, 70), away_from_zero({3, 2, 1, 1}, 71)});
    gradcheck([](const V& v) { return tt::conv2d(tt::tanh(v[0]), v[1], v[2], {{1, 1}, {1, 1}, {1, 1}, tt::Activation::relu}); },
              {away_from_zero({1, 3, 4, 5}, 72), away_from_zero({2, 3, 3, 3}, 73), away_from_zero({2}, 74)});
}

namespace {

// dx, dw, db of conv2d for an output gradient dy, by their definitions (in double).
struct ConvGrads {
    tt::Tensor<double> dx, dw, db;
};
ConvGrads reference_conv_grads(const tt::Tensor<double>& x, const tt::Tensor<double>& w, const tt::Tensor<double>& dy,
                               const tt::Conv2dOptions& o) {
    const auto N = x.shape()[0], C = x.shape()[1], H = x.shape()[2], W = x.shape()[3];
    const auto CO = w.shape()[0], KH = w.shape()[2], KW = w.shape()[3];
    const auto OH = dy.shape()[2], OW = dy.shape()[3];
    ConvGrads r{tt::zeros<double>(x.shape()), tt::zeros<double>(w.shape()), tt::zeros<double>({CO})};
    for (std::int64_t n = 0; n < N; ++n)
        for (std::int64_t co = 0; co < CO; ++co)
            for (std::int64_t oy = 0; oy < OH; ++oy)
                for (std::int64_t ox = 0; ox < OW; ++ox) {
                    const double g = dy(n, co, oy, ox);
                    r.db(co) += g;
                    for (std::int64_t c = 0; c < C; ++c)
                        for (std::int64_t i = 0; i < KH; ++i)
                            for (std::int64_t j = 0; j < KW; ++j) {
                                const auto iy = oy * o.stride[0] - o.padding[0] + i * o.dilation[0];
                                const auto ix = ox * o.stride[1] - o.padding[1] + j * o.dilation[1];
                                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                                r.dx(n, c, iy, ix) += g * w(co, c, i, j);
                                r.dw(co, c, i, j) += g * x(n, c, iy, ix);
                            }
                }
    return r;
}

template <class T>
tt::Tensor<T> cast(const tt::Tensor<double>& t) {
    auto r = tt::zeros<T>(t.shape());
    for (std::int64_t i = 0; i < t.numel(); ++i) r.data()[i] = static_cast<T>(t.data()[i]);
    return r;
}

template <class T>
void check_conv_grads(const ConvCase& cs, double tol) {
    const auto [n, c, h, wd, co, kh, kw, o] = cs;
    const auto x = away_from_zero({n, c, h, wd}, 82), w = away_from_zero({co, c, kh, kw}, 83), b = away_from_zero({co}, 84);
    auto xv = tt::Var<T>(cast<T>(x), true), wv = tt::Var<T>(cast<T>(w), true), bv = tt::Var<T>(cast<T>(b), true);
    auto y = tt::conv2d(xv, wv, bv, o);
    const auto dy = away_from_zero(y.shape(), 85);
    tt::backward(y, cast<T>(dy));
    const auto ref = reference_conv_grads(x, w, dy, o);
    auto worst = [](const tt::Tensor<T>& got, const tt::Tensor<double>& want) {
        double e = 0;
        for (std::int64_t i = 0; i < want.numel(); ++i) e = std::max(e, std::abs(double(got.data()[i]) - want.data()[i]) / (1 + std::abs(want.data()[i])));
        return e;
    };
    INFO("c=", c, " h=", h, " w=", wd, " co=", co, " k=", kh, "x", kw, " stride ", o.stride[0], ",", o.stride[1], " pad ", o.padding[0], ",",
         o.padding[1], " dilation ", o.dilation[0], ",", o.dilation[1]);
    CHECK(worst(xv.grad(), ref.dx) < tol);
    CHECK(worst(wv.grad(), ref.dw) < tol);
    CHECK(worst(bv.grad(), ref.db) < tol);
}

}  // namespace

TEST_CASE("conv2d: gradients match their definitions on rows wider than a vector, with padding, dilation and strides") {
    // Rows of 9 to 37 pixels span one to three SIMD vectors of either type, so the vector paths
    // of im2col and its adjoint meet every kind of edge.
    const ConvCase cases[] = {
        {2, 3, 13, 13, 5, 3, 3, {}},
        {1, 2, 9, 17, 3, 3, 5, {{1, 1}, {2, 2}, {1, 1}, tt::Activation::none}},
        {2, 2, 11, 20, 4, 3, 3, {{1, 1}, {1, 3}, {2, 2}, tt::Activation::none}},
        {1, 3, 10, 37, 2, 2, 4, {{2, 1}, {0, 1}, {1, 3}, tt::Activation::none}},
        {1, 2, 12, 19, 3, 3, 3, {{1, 2}, {1, 1}, {1, 1}, tt::Activation::none}},
        {1, 1, 6, 33, 2, 1, 17, {{1, 1}, {0, 0}, {1, 1}, tt::Activation::none}},  // wider than the vector path's kernel limit
    };
    for (const auto& cs : cases) {
        check_conv_grads<double>(cs, 1e-12);
        check_conv_grads<float>(cs, 1e-4);
    }
}

TEST_CASE("conv2d: a first layer's weight and bias gradients (constant input, thin patch), with and without relu") {
    // No input gradient and at most 16 patch rows take their own path: dot products straight from
    // dy, the relu mask applied on the fly.
    const auto x = away_from_zero({3, 1, 9, 8}, 75);
    for (auto act : {tt::Activation::none, tt::Activation::relu}) {
        gradcheck([&](const V& v) { return tt::conv2d(tt::constant(x), v[0], v[1], {{1, 1}, {0, 0}, {1, 1}, act}); },
                  {away_from_zero({4, 1, 3, 3}, 76), away_from_zero({4}, 77)});
        gradcheck([&](const V& v) { return tt::conv2d(tt::constant(x), v[0], v[1], {{2, 1}, {1, 1}, {1, 1}, act}); },
                  {away_from_zero({5, 1, 2, 3}, 78), away_from_zero({5}, 79)});
    }
    const auto x2 = away_from_zero({2, 2, 6, 7}, 80);  // two channels, 2x2: 8 patch rows
    gradcheck([&](const V& v) { return tt::conv2d(tt::constant(x2), v[0], {{1, 1}, {0, 0}, {1, 1}, tt::Activation::relu}); },
              {away_from_zero({3, 2, 2, 2}, 81)});
}

TEST_CASE("conv2d: bad shapes name the op and the shapes") {
    auto x = tt::param(tt::zeros<double>({1, 3, 5, 5}));
    CHECK_THROWS_WITH_AS(tt::conv2d(x, tt::param(tt::zeros<double>({4, 2, 3, 3}))),
                         doctest::Contains("conv2d: input [1, 3, 5, 5] has 3 channels but weights [4, 2, 3, 3] expect 2"), tt::shape_error);
    CHECK_THROWS_AS(tt::conv2d(x, tt::param(tt::zeros<double>({4, 3, 7, 7}))), tt::shape_error);
    CHECK_THROWS_AS(tt::conv2d(tt::param(tt::zeros<double>({3, 5, 5})), tt::param(tt::zeros<double>({4, 3, 3, 3}))), tt::shape_error);
    CHECK_THROWS_WITH_AS(tt::conv2d(x, tt::param(tt::zeros<double>({4, 3, 3, 3})), tt::param(tt::zeros<double>({3}))),
                         doctest::Contains("bias of shape [3]"), tt::shape_error);
    CHECK_THROWS_AS(tt::conv2d(x, tt::param(tt::zeros<double>({4, 3, 3, 3})), {{0, 1}, {0, 0}, {1, 1}, tt::Activation::none}),
                    tt::value_error);
    CHECK_FALSE(x.has_grad());
}

TEST_CASE("pooling: values, gradients and errors") {
    auto x = tt::constant(tt::arange<double>(16).reshape({1, 1, 4, 4}));
    auto m = tt::max_pool2d(x);
    CHECK(m.shape() == tt::Shape{1, 1, 2, 2});
    CHECK(m.value()(0, 0, 1, 1) == 15.0);
    auto a = tt::avg_pool2d(x);
    CHECK(a.value()(0, 0, 0, 0) == doctest::Approx((0 + 1 + 4 + 5) / 4.0));
    auto odd = tt::max_pool2d(tt::constant(tt::arange<double>(2 * 3 * 7 * 5).reshape({2, 3, 7, 5})), {{3, 2}, {2, 2}, {1, 1}});
    CHECK(odd.shape() == tt::Shape{2, 3, 4, 3});
    CHECK(tt::global_avg_pool2d(x).shape() == tt::Shape{1, 1});
    CHECK(tt::global_avg_pool2d(x).item() == doctest::Approx(7.5));

    gradcheck([](const V& v) { return tt::max_pool2d(v[0]); }, {away_from_zero({2, 3, 6, 5}, 75)});
    gradcheck([](const V& v) { return tt::max_pool2d(v[0], {{3, 3}, {2, 1}, {1, 1}}); }, {away_from_zero({1, 2, 5, 7}, 76)});
    gradcheck([](const V& v) { return tt::avg_pool2d(v[0], {{2, 3}, {1, 2}, {1, 1}}); }, {away_from_zero({2, 2, 5, 6}, 77)});
    gradcheck([](const V& v) { return tt::global_avg_pool2d(v[0]); }, {away_from_zero({2, 3, 4, 3}, 78)});

    CHECK_THROWS_WITH_AS(tt::max_pool2d(tt::param(tt::zeros<double>({1, 1, 1, 1}))), doctest::Contains("max_pool2d: input [1, 1, 1, 1]"),
                         tt::shape_error);
    CHECK_THROWS_AS(tt::max_pool2d(tt::param(tt::zeros<double>({4, 4}))), tt::shape_error);
    CHECK_THROWS_AS(tt::avg_pool2d(x, {{2, 2}, {2, 2}, {2, 2}}), tt::value_error);
}

TEST_CASE("max_pool2d propagates NaN like PyTorch") {
    auto x = tt::constant(tt::from_values<float>({1, 1, 2, 2}, {1.f, std::numeric_limits<float>::quiet_NaN(), 3.f, 2.f}));
    CHECK(std::isnan(tt::max_pool2d(x).item()));
}

TEST_CASE("max_pool2d 2x2 in float: every width, ties and NaNs resolved as in the window's row-major order") {
    // The float 2x2 kernel works on eight windows at a time; widths around that size and odd ones
    // (the last column unused) cover its full, partial and missing vectors. Values drawn from
    // {0, 1, 2} tie often; a few NaNs must win where they are the first in their window.
    tt::Generator gen(5);
    for (std::int64_t w : {2, 3, 5, 11, 15, 16, 17, 26, 33, 35})
        for (std::int64_t h : {2, 5}) {
            const std::int64_t planes = 3, oh = h / 2, ow = w / 2;
            std::vector<float> x(static_cast<std::size_t>(planes * h * w));
            for (auto& v : x) v = gen.uniform() < 0.05 ? std::numeric_limits<float>::quiet_NaN() : float(int(gen.uniform() * 3));
            std::vector<float> y(static_cast<std::size_t>(planes * oh * ow));
            std::vector<std::int32_t> at(y.size());
            tt::cpu::maxpool2d_forward(x.data(), y.data(), at.data(), tt::cpu::PoolGeometry{planes, h, w, 2, 2, 2, 2, 0, 0, oh, ow});
            int bad = 0;
            for (std::int64_t p = 0; p < planes; ++p)
                for (std::int64_t oy = 0; oy < oh; ++oy)
                    for (std::int64_t ox = 0; ox < ow; ++ox) {
                        const float* xp = x.data() + p * h * w;
                        std::int64_t best_at = 2 * oy * w + 2 * ox;
                        for (std::int64_t at_ : {2 * oy * w + 2 * ox + 1, (2 * oy + 1) * w + 2 * ox, (2 * oy + 1) * w + 2 * ox + 1}) {
                            const float best = xp[best_at], v = xp[at_];
                            if (!std::isnan(best) && (std::isnan(v) || v > best)) best_at = at_;
                        }
                        const std::size_t o = static_cast<std::size_t>((p * oh + oy) * ow + ox);
                        const float expected = xp[best_at];
                        bad += at[o] != best_at || (std::isnan(expected) ? !std::isnan(y[o]) : y[o] != expected);
                    }
            INFO("h=", h, " w=", w);
            CHECK(bad == 0);
        }
}
