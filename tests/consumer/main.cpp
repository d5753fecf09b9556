// Built by the consumer tests through find_package and FetchContent: includes the umbrella
// header and runs one backward pass, checked against the derivative by hand.
#include <tensortape/tensortape.hpp>

namespace tt = tensortape;

int main() {
    auto w = tt::param(tt::full<double>({3}, 2.0));
    auto loss = tt::sum(tt::square(w) * 0.5);
    tt::backward(loss);
    return w.grad()(1) == 2.0 ? 0 : 1;  // d/dw (w^2 / 2) = w
}
