#pragma once
// RMSprop, step for step as torch.optim.RMSprop:
//   g   = grad + weight_decay * p
//   s   = alpha * s + (1 - alpha) * g * g
//   a   = g_avg + (1 - alpha) * (g - g_avg)       centered only (PyTorch's lerp)
//   den = sqrt(centered ? max(s - a * a, 0) : s) + eps
//   buf = momentum * buf + g / den,  p -= lr * buf   with momentum
//   p  -= lr * g / den                               without
// The denominator is recomputed inside the pass that uses it rather than stored: a pass that
// reads s (and a) again is cheaper than writing and reading a temporary.

#include <tensortape/optim/optimizer.hpp>

#include <initializer_list>

namespace tensortape::optim {

struct RMSpropOptions {
    double lr = 1e-2;
    double alpha = 0.99;
    double eps = 1e-8;
    double weight_decay = 0.0;
    double momentum = 0.0;
    bool centered = false;
};

template <Floating T>
class RMSprop : public Optimizer<T> {
public:
    explicit RMSprop(std::vector<Var<T>> params, RMSpropOptions options = {})
        : Optimizer<T>("rmsprop", std::move(params), options.lr, slot_names(options)), o_(options) {
        constexpr double inf = std::numeric_limits<double>::infinity();
        detail::check_range("rmsprop", "alpha", o_.alpha, 0.0, false, 1.0, false);
        detail::check_range("rmsprop", "eps", o_.eps, 0.0, false, inf, true);
        detail::check_range("rmsprop", "weight_decay", o_.weight_decay, 0.0, false, inf, true);
        detail::check_range("rmsprop", "momentum", o_.momentum, 0.0, false, inf, true);
    }
    // The learning rate given apart; it overrides options.lr.
    RMSprop(std::vector<Var<T>> params, double lr, RMSpropOptions options = {}) : RMSprop(std::move(params), detail::with_lr(options, lr)) {}

    // The options, with the current learning rate.
    RMSpropOptions options() const { return detail::with_lr(o_, this->lr); }

protected:
    void update(std::size_t i, Var<T>& p) override {
        const T lr = static_cast<T>(this->lr), alpha = static_cast<T>(o_.alpha), one_minus_alpha = static_cast<T>(1.0 - o_.alpha);
        const T eps = static_cast<T>(o_.eps), momentum = static_cast<T>(o_.momentum);
        Var<T>& s = this->slot(i, 0);
        const Var<T> grad = constant(p.grad());
        detail::with_l2(grad, p, o_.weight_decay, [&](const auto& g) {
            tensortape::update(s, alpha * s + one_minus_alpha * g * g);
            auto apply = [&](const auto& den) {
                if (o_.momentum > 0.0) {
                    Var<T>& buf = this->slot(i, o_.centered ? 2 : 1);
                    tensortape::update(buf, momentum * buf + g / den);
                    tensortape::update(p, p - lr * buf);
                } else {
                    tensortape::update(p, p - lr * g / den);
                }
            };
            if (o_.centered) {
                Var<T>& a = this->slot(i, 1);
                tensortape::update(a, a + one_minus_alpha * (g - a));
                // s >= a^2 holds exactly but not always after rounding (a near-constant gradient
                // drives their difference to 0); PyTorch would take the sqrt of a tiny negative
                // number there and turn the parameter into NaN for good.
                apply(tensortape::sqrt(tensortape::maximum(s - a * a, T(0))) + eps);
            } else {
                apply(tensortape::sqrt(s) + eps);
            }
        });
    }

private:
    static std::vector<std::string> slot_names(const RMSpropOptions& o) {
        std::vector<std::string> names{"square_avg"};
        if (o.centered) names.emplace_back("grad_avg");
        if (o.momentum > 0.0) names.emplace_back("momentum_buffer");
        return names;
    }

    RMSpropOptions o_;
};

template <Floating T>
RMSprop(std::initializer_list<Var<T>>, RMSpropOptions = {}) -> RMSprop<T>;
template <Floating T>
RMSprop(std::initializer_list<Var<T>>, double, RMSpropOptions = {}) -> RMSprop<T>;

}  // namespace tensortape::optim
