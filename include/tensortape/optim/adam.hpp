#pragma once
// Adam and AdamW, step for step as torch.optim.Adam / AdamW (amsgrad off). With t the number of
// steps in which this parameter had a gradient:
//   Adam:  g = grad + weight_decay * p            AdamW: g = grad;  p *= 1 - lr * weight_decay
//   m = m + (1 - beta1) * (g - m)                 (PyTorch's lerp, same rounding)
//   v = beta2 * v + (1 - beta2) * g * g
//   p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// Three fused passes per parameter (m, v, p); AdamW's decay rides in the last one.

#include <tensortape/optim/optimizer.hpp>

#include <initializer_list>

namespace tensortape::optim {

// Designated initializers read like PyTorch's keywords: Adam<float>(params, {.lr = 3e-4, .beta2 = 0.99}).
struct AdamOptions {
    double lr = 1e-3;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0.0;  // L2, added to the gradient
};

// PyTorch's AdamW defaults: the same, with decoupled decay 0.01.
struct AdamWOptions {
    double lr = 1e-3;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 1e-2;  // decoupled: shrinks the parameter, not the gradient
};

namespace detail {

template <Floating T>
class AdamBase : public Optimizer<T> {
protected:
    enum : std::size_t { exp_avg, exp_avg_sq };

    AdamBase(const char* name, std::vector<Var<T>> params, AdamOptions o, bool decoupled)
        : Optimizer<T>(name, std::move(params), o.lr, {"exp_avg", "exp_avg_sq"}), o_(o), decoupled_(decoupled) {
        constexpr double inf = std::numeric_limits<double>::infinity();
        check_range(name, "beta1", o_.beta1, 0.0, false, 1.0, true);
        check_range(name, "beta2", o_.beta2, 0.0, false, 1.0, true);
        check_range(name, "eps", o_.eps, 0.0, false, inf, true);
        check_range(name, "weight_decay", o_.weight_decay, 0.0, false, inf, true);
    }

    AdamOptions o_;

    void update(std::size_t i, Var<T>& p) override {
        const double t = static_cast<double>(this->param_step(i));
        const double bias1 = 1.0 - std::pow(o_.beta1, t);
        const double bias2_sqrt = std::sqrt(1.0 - std::pow(o_.beta2, t));
        const T step_size = static_cast<T>(this->lr / bias1);
        const T one_minus_b1 = static_cast<T>(1.0 - o_.beta1), b2 = static_cast<T>(o_.beta2), one_minus_b2 = static_cast<T>(1.0 - o_.beta2);
        const T b2s = static_cast<T>(bias2_sqrt), eps = static_cast<T>(o_.eps);
        Var<T>& m = this->slot(i, exp_avg);
        Var<T>& v = this->slot(i, exp_avg_sq);
        const Var<T> grad = constant(p.grad());

        with_l2(grad, p, decoupled_ ? 0.0 : o_.weight_decay, [&](const auto& g) {
            tensortape::update(m, m + one_minus_b1 * (g - m));
            tensortape::update(v, b2 * v + one_minus_b2 * g * g);
        });
        const auto adam_step = step_size * m / (tensortape::sqrt(v) / b2s + eps);
        if (decoupled_ && o_.weight_decay != 0.0) tensortape::update(p, p * static_cast<T>(1.0 - this->lr * o_.weight_decay) - adam_step);
        else tensortape::update(p, p - adam_step);
    }

private:
    bool decoupled_;
};

}  // namespace detail

template <Floating T>
class Adam : public detail::AdamBase<T> {
public:
    explicit Adam(std::vector<Var<T>> params, AdamOptions options = {}) : detail::AdamBase<T>("adam", std::move(params), options, false) {}
    // The learning rate given apart; it overrides options.lr.
    Adam(std::vector<Var<T>> params, double lr, AdamOptions options = {}) : Adam(std::move(params), detail::with_lr(options, lr)) {}

    // The options, with the current learning rate.
    AdamOptions options() const { return detail::with_lr(this->o_, this->lr); }
};

template <Floating T>
class AdamW : public detail::AdamBase<T> {
public:
    explicit AdamW(std::vector<Var<T>> params, AdamWOptions options = {})
        : detail::AdamBase<T>("adamw", std::move(params), {options.lr, options.beta1, options.beta2, options.eps, options.weight_decay}, true) {}
    // The learning rate given apart; it overrides options.lr.
    AdamW(std::vector<Var<T>> params, double lr, AdamWOptions options = {}) : AdamW(std::move(params), detail::with_lr(options, lr)) {}

    // The options, with the current learning rate.
    AdamWOptions options() const {
        const AdamOptions& o = this->o_;
        return {this->lr, o.beta1, o.beta2, o.eps, o.weight_decay};
    }
};

template <Floating T>
Adam(std::initializer_list<Var<T>>, AdamOptions = {}) -> Adam<T>;
template <Floating T>
Adam(std::initializer_list<Var<T>>, double, AdamOptions = {}) -> Adam<T>;
template <Floating T>
AdamW(std::initializer_list<Var<T>>, AdamWOptions = {}) -> AdamW<T>;
template <Floating T>
AdamW(std::initializer_list<Var<T>>, double, AdamWOptions = {}) -> AdamW<T>;

}  // namespace tensortape::optim
