// Fits y = 3x - 2 with one Dense unit and plain gradient descent: the smallest complete use of
// tensortape (tensors, parameters, a fused loss, backward, an in-place update).
#include <tensortape/tensortape.hpp>

#include <cstdio>

namespace tt = tensortape;

int main() {
    tt::manual_seed(0);
    auto x = tt::constant(tt::uniform<float>({256, 1}, -1.f, 1.f));
    auto y = tt::constant(tt::Var<float>(3.f * x - 2.f).value());  // targets
    auto w = tt::param(tt::randn<float>({1, 1}));
    auto b = tt::param(tt::zeros<float>({1}));

    for (int step = 0; step <= 200; ++step) {
        auto loss = tt::mean(tt::square(tt::matmul(x, w) + b - y));  // one fused expression
        w.zero_grad();
        b.zero_grad();
        tt::backward(loss);
        tt::update(w, w - 0.1f * tt::constant(w.grad()));  // in place, not recorded
        tt::update(b, b - 0.1f * tt::constant(b.grad()));
        if (step % 50 == 0) std::printf("step %3d  loss %.6f\n", step, static_cast<double>(loss.item()));
    }
    std::printf("w = %.4f (expected 3), b = %.4f (expected -2)\n", static_cast<double>(w.item()), static_cast<double>(b.item()));
    return 0;
}
