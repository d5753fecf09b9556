#pragma once
// Losses, each a small callable (prediction, target) -> scalar Var, averaged over the batch.
// `from_logits` is explicit where it matters, as in Keras: true means the prediction is raw
// scores and the loss applies (log-)softmax or the sigmoid itself, fused and stable.
// Class labels travel as whole numbers in the target tensor (as a Dataset stores them).

#include <tensortape/ops/elementwise.hpp>
#include <tensortape/ops/reduce.hpp>
#include <tensortape/ops/softmax.hpp>

#include <cmath>
#include <functional>
#include <string>

namespace tensortape::nn {

template <Floating T>
using Loss = std::function<Var<T>(const Var<T>& prediction, const Tensor<T>& target)>;

namespace detail {

// Class labels from a target tensor of whole numbers, checked against the class count.
template <Floating T>
Tensor<std::int32_t> labels_of(const char* op, const Tensor<T>& target, std::int64_t classes) {
    const Tensor<T> t = target.contiguous();
    Tensor<std::int32_t> out(t.shape());
    for (std::int64_t i = 0; i < t.numel(); ++i) {
        const T v = t.data()[i];
        if (!(v >= 0) || v != std::floor(v) || v >= static_cast<T>(classes))
            fail<value_error>(op, "label ", v, " at index ", i, " is not a class index in [0, ", classes, ")");
        out.data()[i] = static_cast<std::int32_t>(v);
    }
    return out;
}

template <Floating T>
void same_shape(const char* op, const Var<T>& p, const Tensor<T>& t) {
    if (p.shape() != t.shape()) fail<shape_error>(op, "prediction of shape ", p.shape(), " and target of shape ", t.shape(), " differ");
}

}  // namespace detail

// Integer class labels [N] against predictions [N, C].
template <Floating T = float>
struct SparseCategoricalCrossentropy {
    bool from_logits = true;
    static constexpr const char* name = "sparse_categorical_crossentropy";

    Var<T> operator()(const Var<T>& pred, const Tensor<T>& target) const {
        if (pred.rank() != 2) fail<shape_error>(name, "predictions must be [batch, classes], got shape ", pred.shape());
        const auto labels = detail::labels_of(name, target, pred.shape()[1]);
        if (from_logits) return cross_entropy(pred, labels);
        if (labels.rank() != 1 || labels.shape()[0] != pred.shape()[0])
            fail<shape_error>(name, "labels of shape ", labels.shape(), " for predictions of shape ", pred.shape());
        Tensor<T> onehot = zeros<T>(pred.shape());
        for (std::int64_t i = 0; i < labels.numel(); ++i) onehot(i, labels.data()[i]) = T(1);
        const double eps = 1e-7;
        return -sum(log(clamp(pred, eps, 1.0)) * constant(onehot)) / static_cast<T>(pred.shape()[0]);
    }
};

// Probability targets [N, C] (one-hot or soft) against predictions [N, C].
template <Floating T = float>
struct CategoricalCrossentropy {
    bool from_logits = true;
    static constexpr const char* name = "categorical_crossentropy";

    Var<T> operator()(const Var<T>& pred, const Tensor<T>& target) const {
        detail::same_shape(name, pred, target);
        if (pred.rank() != 2) fail<shape_error>(name, "predictions must be [batch, classes], got shape ", pred.shape());
        const T n = static_cast<T>(pred.shape()[0]);
        if (from_logits) return -sum(log_softmax(pred) * constant(target)) / n;
        return -sum(log(clamp(pred, 1e-7, 1.0)) * constant(target)) / n;
    }
};

// Targets in [0, 1] against one score or probability per output.
template <Floating T = float>
struct BinaryCrossentropy {
    bool from_logits = true;
    static constexpr const char* name = "binary_crossentropy";

    Var<T> operator()(const Var<T>& pred, const Tensor<T>& target) const {
        detail::same_shape(name, pred, target);
        const auto t = constant(target);
        // max(z, 0) - z t + log(1 + e^-|z|): the logistic loss without overflow.
        if (from_logits) return mean(relu(pred) - pred * t + log1p(exp(-abs(pred))));
        const auto p = clamp(pred, 1e-7, 1.0 - 1e-7);
        return -mean(t * log(p) + (1.0 - t) * log(1.0 - p));
    }
};

template <Floating T = float>
struct MeanSquaredError {
    static constexpr const char* name = "mean_squared_error";

    Var<T> operator()(const Var<T>& pred, const Tensor<T>& target) const {
        detail::same_shape(name, pred, target);
        return mean(square(pred - constant(target)));
    }
};

// Examples whose highest score is at the label (predictions [N, C], labels [N]).
template <Floating T>
std::int64_t count_correct(const Tensor<T>& pred, const Tensor<T>& labels) {
    if (pred.rank() != 2 || labels.numel() != pred.shape()[0]) return 0;
    const Tensor<T> p = pred.contiguous(), l = labels.contiguous();
    const std::int64_t n = p.shape()[0], c = p.shape()[1];
    std::int64_t correct = 0;
    for (std::int64_t i = 0; i < n; ++i) {
        const T* row = p.data() + i * c;
        std::int64_t best = 0;
        for (std::int64_t k = 1; k < c; ++k)
            if (row[k] > row[best]) best = k;
        correct += static_cast<T>(best) == l.data()[i];
    }
    return correct;
}

}  // namespace tensortape::nn
