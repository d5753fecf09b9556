#pragma once
// gradcheck: compares the gradients that backward computes with central finite differences, in
// double precision. The function may return any shape; it is reduced to a scalar with fixed
// random weights, so every output element's vector-Jacobian product is checked, not just the sum.

#include <doctest/doctest.h>
#include <tensortape/tensortape.hpp>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

namespace tt = tensortape;

struct GradcheckOptions {
    double eps = 1e-6;
    double atol = 1e-6;
    double rtol = 1e-5;
};

using GradFunction = std::function<tt::Var<double>(const std::vector<tt::Var<double>>&)>;

inline void gradcheck(const GradFunction& f, const std::vector<tt::Tensor<double>>& inputs, GradcheckOptions opt = {}) {
    tt::Generator gen(1234);
    std::vector<tt::Var<double>> vars;
    for (const auto& t : inputs) vars.push_back(tt::param(t.clone()));
    const tt::Var<double> out = f(vars);
    const tt::Tensor<double> weights = tt::uniform<double>(out.shape(), 0.5, 1.5, gen);

    // Analytic: d(sum(out * weights))/d(inputs) through grad(), seeded with the weights.
    std::vector<tt::Tensor<double>> analytic;
    for (std::size_t i = 0; i < vars.size(); ++i) analytic.push_back(tt::zeros<double>(vars[i].shape()));
    tt::backward(out, weights);
    for (std::size_t i = 0; i < vars.size(); ++i)
        if (vars[i].has_grad()) analytic[i] = vars[i].grad();

    auto objective = [&](const std::vector<tt::Var<double>>& xs) {
        tt::NoGradGuard guard;
        const tt::Var<double> y = f(xs);
        double s = 0;
        const auto yv = y.value().contiguous();
        for (std::int64_t k = 0; k < yv.numel(); ++k) s += yv.data()[k] * weights.data()[k];
        return s;
    };

    for (std::size_t i = 0; i < vars.size(); ++i) {
        std::vector<tt::Var<double>> probe;
        for (const auto& t : inputs) probe.push_back(tt::constant(t.clone()));
        tt::Tensor<double>& x = probe[i].mutable_value();
        for (std::int64_t k = 0; k < x.numel(); ++k) {
            const double orig = x.data()[k];
            x.data()[k] = orig + opt.eps;
            const double up = objective(probe);
            x.data()[k] = orig - opt.eps;
            const double down = objective(probe);
            x.data()[k] = orig;
            const double numeric = (up - down) / (2 * opt.eps);
            const double got = analytic[i].data()[k];
            INFO("input ", i, " of shape ", inputs[i].shape().str(), ", element ", k, ": analytic ", got, ", numeric ", numeric);
            CHECK(std::abs(got - numeric) <= opt.atol + opt.rtol * std::abs(numeric));
        }
    }
}

// Random inputs kept away from 0 by at least `gap` (away from kinks of relu, abs, ...).
inline tt::Tensor<double> away_from_zero(const tt::Shape& s, std::uint64_t seed, double gap = 0.1, double scale = 1.0) {
    tt::Generator gen(seed);
    auto t = tt::uniform<double>(s, -scale, scale, gen);
    for (auto& v : t.span()) v = v < 0 ? v - gap : v + gap;
    return t;
}

inline tt::Tensor<double> positive(const tt::Shape& s, std::uint64_t seed, double lo = 0.2, double hi = 2.0) {
    tt::Generator gen(seed);
    return tt::uniform<double>(s, lo, hi, gen);
}
