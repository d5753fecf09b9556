#pragma once
// The standard layers. Each is a Module whose forward calls one op; layers with weights create
// them with a seeded initialiser and register them under PyTorch's names and layouts
// (Linear: weight [out, in], bias [out]; Conv2d: weight [out, in, kh, kw], bias [out]).
// Where an activation follows a Dense or Conv2D, pass it to the layer: it runs in the GEMM
// epilogue instead of as a separate pass.

#include <tensortape/nn/init.hpp>
#include <tensortape/nn/module.hpp>
#include <tensortape/ops/conv.hpp>
#include <tensortape/ops/elementwise.hpp>
#include <tensortape/ops/linear.hpp>
#include <tensortape/ops/norm.hpp>
#include <tensortape/ops/pool.hpp>
#include <tensortape/ops/shape.hpp>
#include <tensortape/ops/softmax.hpp>

#include <sstream>
#include <string>

namespace tensortape::nn {

inline const char* activation_name(Activation a) { return a == Activation::relu ? ", relu" : ""; }

// Fully connected: y = activation(x W^T + b), x [N, in].
template <Floating T = float>
class Dense : public Module<T> {
public:
    Dense(std::int64_t in, std::int64_t out, Activation act = Activation::none, bool bias = true, Init init = Init::glorot_uniform,
          Generator& gen = default_generator())
        : in_(in), out_(out), act_(act) {
        if (in < 1 || out < 1) fail<value_error>("Dense", "sizes must be positive, got ", in, " -> ", out);
        weight = this->register_parameter("weight", initialize<T>(Shape{out, in}, init, gen));
        if (bias) this->bias = this->register_parameter("bias", zeros<T>(Shape{out}));
    }
    Var<T> forward(const Var<T>& x) override {
        return bias.defined() ? tensortape::linear(x, weight, bias, act_) : tensortape::linear(x, weight, act_);
    }
    std::string describe() const override {
        std::ostringstream os;
        os << "Dense(" << in_ << ", " << out_ << activation_name(act_) << ")";
        return os.str();
    }
    Var<T> weight, bias;

private:
    std::int64_t in_, out_;
    Activation act_;
};
template <Floating T = float>
using Linear = Dense<T>;

// 2-D convolution over NCHW input.
template <Floating T = float>
class Conv2D : public Module<T> {
public:
    Conv2D(std::int64_t in, std::int64_t out, std::array<std::int64_t, 2> kernel, Conv2dOptions o = {}, bool bias = true,
           Init init = Init::glorot_uniform, Generator& gen = default_generator())
        : in_(in), out_(out), kernel_(kernel), o_(o) {
        if (in < 1 || out < 1 || kernel[0] < 1 || kernel[1] < 1)
            fail<value_error>("Conv2D", "channels and kernel must be positive, got ", in, " -> ", out, ", kernel ", kernel[0], "x", kernel[1]);
        weight = this->register_parameter("weight", initialize<T>(Shape{out, in, kernel[0], kernel[1]}, init, gen));
        if (bias) this->bias = this->register_parameter("bias", zeros<T>(Shape{out}));
    }
    Conv2D(std::int64_t in, std::int64_t out, std::int64_t kernel, Conv2dOptions o = {}, bool bias = true, Init init = Init::glorot_uniform,
           Generator& gen = default_generator())
        : Conv2D(in, out, {kernel, kernel}, o, bias, init, gen) {}
    Var<T> forward(const Var<T>& x) override {
        return bias.defined() ? tensortape::conv2d(x, weight, bias, o_) : tensortape::conv2d(x, weight, o_);
    }
    std::string describe() const override {
        std::ostringstream os;
        os << "Conv2D(" << in_ << ", " << out_ << ", kernel " << kernel_[0] << "x" << kernel_[1];
        if (o_.stride != std::array<std::int64_t, 2>{1, 1}) os << ", stride " << o_.stride[0] << "x" << o_.stride[1];
        if (o_.padding != std::array<std::int64_t, 2>{0, 0}) os << ", padding " << o_.padding[0] << "x" << o_.padding[1];
        os << activation_name(o_.activation) << ")";
        return os.str();
    }
    Var<T> weight, bias;

private:
    std::int64_t in_, out_;
    std::array<std::int64_t, 2> kernel_;
    Conv2dOptions o_;
};

template <Floating T = float>
class MaxPool2D : public Module<T> {
public:
    explicit MaxPool2D(Pool2dOptions o = {}) : o_(o) {}
    explicit MaxPool2D(std::int64_t kernel) : o_{{kernel, kernel}, {0, 0}, {0, 0}} {}
    Var<T> forward(const Var<T>& x) override { return max_pool2d(x, o_); }
    std::string describe() const override { return "MaxPool2D(" + std::to_string(o_.kernel[0]) + "x" + std::to_string(o_.kernel[1]) + ")"; }

private:
    Pool2dOptions o_;
};

template <Floating T = float>
class AvgPool2D : public Module<T> {
public:
    explicit AvgPool2D(Pool2dOptions o = {}) : o_(o) {}
    explicit AvgPool2D(std::int64_t kernel) : o_{{kernel, kernel}, {0, 0}, {0, 0}} {}
    Var<T> forward(const Var<T>& x) override { return avg_pool2d(x, o_); }
    std::string describe() const override { return "AvgPool2D(" + std::to_string(o_.kernel[0]) + "x" + std::to_string(o_.kernel[1]) + ")"; }

private:
    Pool2dOptions o_;
};

template <Floating T = float>
class GlobalAvgPool2D : public Module<T> {
public:
    Var<T> forward(const Var<T>& x) override { return global_avg_pool2d(x); }
    std::string describe() const override { return "GlobalAvgPool2D()"; }
};

// [N, ...] -> [N, prod(...)].
template <Floating T = float>
class Flatten : public Module<T> {
public:
    Var<T> forward(const Var<T>& x) override { return flatten(x); }
    std::string describe() const override { return "Flatten()"; }
};

// Activations as layers (for use in Sequential after layers that cannot fuse them).
#define TENSORTAPE_ACTIVATION_LAYER(Name, expr)                                      \
    template <Floating T = float>                                                     \
    class Name : public Module<T> {                                                   \
    public:                                                                           \
        Var<T> forward(const Var<T>& x) override { return expr; }                     \
        std::string describe() const override { return #Name "()"; }                  \
    };
TENSORTAPE_ACTIVATION_LAYER(ReLU, tensortape::relu(x))
TENSORTAPE_ACTIVATION_LAYER(Tanh, tensortape::tanh(x))
TENSORTAPE_ACTIVATION_LAYER(Sigmoid, tensortape::sigmoid(x))
TENSORTAPE_ACTIVATION_LAYER(GELU, tensortape::gelu(x))
#undef TENSORTAPE_ACTIVATION_LAYER

template <Floating T = float>
class LeakyReLU : public Module<T> {
public:
    explicit LeakyReLU(double slope = 0.01) : slope_(slope) {}
    Var<T> forward(const Var<T>& x) override { return tensortape::leaky_relu(x, slope_); }
    std::string describe() const override { return "LeakyReLU(" + std::to_string(slope_) + ")"; }

private:
    double slope_;
};

template <Floating T = float>
class Softmax : public Module<T> {
public:
    explicit Softmax(int axis = -1) : axis_(axis) {}
    Var<T> forward(const Var<T>& x) override { return tensortape::softmax(x, axis_); }
    std::string describe() const override { return "Softmax()"; }

private:
    int axis_;
};

// Zeroes each element with probability p in training and scales the rest by 1 / (1 - p); the
// identity in evaluation. The mask is a constant in the expression, so the product is fused.
template <Floating T = float>
class Dropout : public Module<T> {
public:
    explicit Dropout(double p = 0.5, std::uint64_t seed = 0xd0) : p_(p), gen_(seed) {
        if (!(p >= 0.0 && p < 1.0)) fail<value_error>("Dropout", "probability must be in [0, 1), got ", p);
    }
    Var<T> forward(const Var<T>& x) override {
        if (!this->training() || p_ == 0.0) return x;
        Tensor<T> mask(x.shape());
        const T keep = T(1.0 / (1.0 - p_));
        for (auto& m : mask.span()) m = gen_.uniform() < p_ ? T(0) : keep;
        return x * constant(std::move(mask));
    }
    std::string describe() const override { return "Dropout(" + std::to_string(p_) + ")"; }

private:
    double p_;
    Generator gen_;
};

// Batch normalisation over the channel axis of [N, C] (1-D) or [N, C, H, W] (2-D).
template <Floating T = float>
class BatchNorm : public Module<T> {
public:
    explicit BatchNorm(std::int64_t channels, double momentum = 0.1, double eps = 1e-5) : c_(channels), momentum_(momentum), eps_(eps) {
        weight = this->register_parameter("weight", ones<T>(Shape{channels}));
        bias = this->register_parameter("bias", zeros<T>(Shape{channels}));
        running_mean = this->register_buffer("running_mean", zeros<T>(Shape{channels}));
        running_var = this->register_buffer("running_var", ones<T>(Shape{channels}));
    }
    Var<T> forward(const Var<T>& x) override {
        return batch_norm(x, weight, bias, running_mean, running_var, {this->training(), momentum_, eps_});
    }
    std::string describe() const override { return "BatchNorm(" + std::to_string(c_) + ")"; }
    Var<T> weight, bias;
    Tensor<T> running_mean, running_var;

private:
    std::int64_t c_;
    double momentum_, eps_;
};
template <Floating T = float>
using BatchNorm1D = BatchNorm<T>;
template <Floating T = float>
using BatchNorm2D = BatchNorm<T>;

template <Floating T = float>
class LayerNorm : public Module<T> {
public:
    explicit LayerNorm(Shape normalized, double eps = 1e-5) : eps_(eps) {
        weight = this->register_parameter("weight", ones<T>(normalized));
        bias = this->register_parameter("bias", zeros<T>(normalized));
    }
    Var<T> forward(const Var<T>& x) override { return layer_norm(x, weight, bias, eps_); }
    std::string describe() const override { return "LayerNorm(" + weight.shape().str() + ")"; }
    Var<T> weight, bias;

private:
    double eps_;
};

// A table of `num` vectors of `dim` values; forward takes integer-valued indices.
template <Floating T = float>
class Embedding : public Module<T> {
public:
    Embedding(std::int64_t num, std::int64_t dim, Generator& gen = default_generator()) {
        weight = this->register_parameter("weight", normal<T>(Shape{num, dim}, T(0), T(1), gen));
    }
    Var<T> forward(const Tensor<std::int64_t>& indices) { return embedding(weight, indices); }
    // Indices held as floating values (as a Dataset stores them) are checked to be whole numbers.
    Var<T> forward(const Var<T>& x) override {
        Tensor<std::int64_t> idx(x.shape());
        const Tensor<T> v = x.value().contiguous();
        for (std::int64_t i = 0; i < v.numel(); ++i) {
            if (v.data()[i] != std::floor(v.data()[i])) fail<value_error>("Embedding", "index ", v.data()[i], " at position ", i, " is not a whole number");
            idx.data()[i] = static_cast<std::int64_t>(v.data()[i]);
        }
        return embedding(weight, idx);
    }
    std::string describe() const override { return "Embedding(" + weight.shape().str() + ")"; }
    Var<T> weight;
};

}  // namespace tensortape::nn
