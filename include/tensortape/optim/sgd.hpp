#pragma once
// Stochastic gradient descent with momentum, dampening, Nesterov momentum and L2 weight decay,
// step for step as torch.optim.SGD:
//   g   = grad + weight_decay * p
//   buf = g                                      on a parameter's first step
//   buf = momentum * buf + (1 - dampening) * g   after it
//   p  -= lr * (nesterov ? g + momentum * buf : buf)      (p -= lr * g without momentum)

#include <tensortape/optim/optimizer.hpp>

#include <initializer_list>

namespace tensortape::optim {

// Designated initializers read like PyTorch's keywords: SGD<float>(params, {.lr = 0.1, .momentum = 0.9}).
struct SGDOptions {
    double lr = 1e-3;
    double momentum = 0.0;
    double dampening = 0.0;
    double weight_decay = 0.0;
    bool nesterov = false;
};

template <Floating T>
class SGD : public Optimizer<T> {
public:
    explicit SGD(std::vector<Var<T>> params, SGDOptions options = {})
        : Optimizer<T>("sgd", std::move(params), options.lr,
                       options.momentum != 0.0 ? std::vector<std::string>{"momentum_buffer"} : std::vector<std::string>{}),
          o_(options) {
        constexpr double inf = std::numeric_limits<double>::infinity();
        detail::check_range("sgd", "momentum", o_.momentum, 0.0, false, inf, true);
        detail::check_range("sgd", "dampening", o_.dampening, -inf, true, inf, true);
        detail::check_range("sgd", "weight_decay", o_.weight_decay, 0.0, false, inf, true);
        if (o_.nesterov && (o_.momentum <= 0.0 || o_.dampening != 0.0))
            fail<value_error>("sgd", "Nesterov momentum needs momentum > 0 and dampening 0, got momentum ", o_.momentum, " and dampening ",
                              o_.dampening);
    }
    // The learning rate given apart; it overrides options.lr.
    SGD(std::vector<Var<T>> params, double lr, SGDOptions options = {}) : SGD(std::move(params), detail::with_lr(options, lr)) {}

    // The options, with the current learning rate.
    SGDOptions options() const { return detail::with_lr(o_, this->lr); }

protected:
    void update(std::size_t i, Var<T>& p) override {
        const T lr = static_cast<T>(this->lr);
        const Var<T> grad = constant(p.grad());
        detail::with_l2(grad, p, o_.weight_decay, [&](const auto& g) {
            if (o_.momentum == 0.0) {
                tensortape::update(p, p - lr * g);
                return;
            }
            Var<T>& buf = this->slot(i, 0);
            const T m = static_cast<T>(o_.momentum);
            if (this->param_step(i) == 1) tensortape::update(buf, g);
            else tensortape::update(buf, m * buf + static_cast<T>(1.0 - o_.dampening) * g);
            if (o_.nesterov) tensortape::update(p, p - lr * (g + m * buf));
            else tensortape::update(p, p - lr * buf);
        });
    }

private:
    SGDOptions o_;
};

template <Floating T>
SGD(std::initializer_list<Var<T>>, SGDOptions = {}) -> SGD<T>;
template <Floating T>
SGD(std::initializer_list<Var<T>>, double, SGDOptions = {}) -> SGD<T>;

}  // namespace tensortape::optim
