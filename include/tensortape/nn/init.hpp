#pragma once
// Weight initialisers (Glorot/Xavier and He/Kaiming, uniform and normal), seeded through a
// Generator so that a network starts from the same weights on every platform. fan_in and fan_out
// follow PyTorch: for a weight [out, in, k...], fan_in = in * prod(k), fan_out = out * prod(k).

#include <tensortape/core/tensor.hpp>

#include <cmath>

namespace tensortape::nn {

enum class Init { glorot_uniform, glorot_normal, he_uniform, he_normal, zeros };

inline std::pair<double, double> fans(const Shape& w) {
    if (w.rank() < 2) return {double(w.numel()), double(w.numel())};
    double receptive = 1;
    for (int i = 2; i < w.rank(); ++i) receptive *= double(w[i]);
    return {double(w[1]) * receptive, double(w[0]) * receptive};
}

template <Floating T>
Tensor<T> initialize(const Shape& shape, Init how, Generator& gen) {
    const auto [fan_in, fan_out] = fans(shape);
    switch (how) {
        case Init::glorot_uniform: {
            const double a = std::sqrt(6.0 / (fan_in + fan_out));
            return uniform<T>(shape, T(-a), T(a), gen);
        }
        case Init::glorot_normal: return normal<T>(shape, T(0), T(std::sqrt(2.0 / (fan_in + fan_out))), gen);
        case Init::he_uniform: {
            const double a = std::sqrt(6.0 / fan_in);
            return uniform<T>(shape, T(-a), T(a), gen);
        }
        case Init::he_normal: return normal<T>(shape, T(0), T(std::sqrt(2.0 / fan_in)), gen);
        case Init::zeros: return zeros<T>(shape);
    }
    return zeros<T>(shape);
}

}  // namespace tensortape::nn
