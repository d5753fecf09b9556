#include <doctest/doctest.h>
#include <tensortape/tensortape.hpp>

#include <thread>

namespace tt = tensortape;

TEST_CASE("engine: gradients accumulate across backward calls until zero_grad") {
    auto w = tt::param(tt::full<double>({2}, 3.0));
    tt::backward(tt::sum(tt::square(w)));
    CHECK(w.grad()(0) == 6.0);
    tt::backward(tt::sum(w * 2.0));
    CHECK(w.grad()(0) == 8.0);
    w.zero_grad();
    CHECK_FALSE(w.has_grad());
}

TEST_CASE("engine: a graph across statements and a loop") {
    auto w = tt::param(tt::full<double>({1}, 0.5));
    tt::Var<double> h = tt::constant(tt::full<double>({1}, 2.0));
    for (int i = 0; i < 3; ++i) h = tt::tanh(h * w);  // three tape entries
    tt::backward(tt::sum(h));
    // d/dw of tanh(tanh(tanh(2w) w) w) at w = 0.5, by the chain rule by hand.
    const double w0 = 0.5, a1 = std::tanh(2 * w0), a2 = std::tanh(a1 * w0), a3 = std::tanh(a2 * w0);
    const double d1 = (1 - a1 * a1) * 2;
    const double d2 = (1 - a2 * a2) * (d1 * w0 + a1);
    const double d3 = (1 - a3 * a3) * (d2 * w0 + a2);
    CHECK(w.grad()(0) == doctest::Approx(d3).epsilon(1e-12));
}

TEST_CASE("engine: grad() returns gradients and leaves .grad untouched") {
    auto a = tt::param(tt::full<double>({3}, 2.0));
    auto b = tt::param(tt::full<double>({3}, 5.0));
    auto unused = tt::param(tt::full<double>({2}, 1.0));
    auto y = tt::sum(a * b);
    auto g = tt::grad(y, {a, b, unused});
    CHECK(g[0](0) == 5.0);
    CHECK(g[1](2) == 2.0);
    CHECK(g[2](1) == 0.0);
    CHECK_FALSE(a.has_grad());
    CHECK_FALSE(b.has_grad());
}

TEST_CASE("engine: no_grad and detach record nothing") {
    auto w = tt::param(tt::full<double>({2}, 1.0));
    {
        tt::NoGradGuard guard;
        auto y = tt::sum(w * 2.0);
        CHECK_FALSE(y.requires_grad());
        CHECK_THROWS_AS(tt::backward(y), tt::autodiff_error);
    }
    auto d = tt::detach(w);
    CHECK_FALSE(d.requires_grad());
    auto y = tt::sum(w * tt::detach(w));
    tt::backward(y);
    CHECK(w.grad()(0) == 1.0);  // only the non-detached factor contributes
    auto z = tt::no_grad([&] { return tt::Var<double>(w * 3.0); });
    CHECK_FALSE(z.requires_grad());
}

TEST_CASE("engine: misuse gets a clear autodiff_error") {
    auto w = tt::param(tt::full<double>({2}, 1.0));
    auto y = tt::sum(tt::square(w));
    tt::backward(y);
    CHECK_THROWS_WITH_AS(tt::backward(y), doctest::Contains("already released"), tt::autodiff_error);

    auto y2 = tt::sum(tt::square(w));
    tt::backward(y2, tt::BackwardOptions{.retain_graph = true});
    tt::backward(y2);  // allowed once more

    auto h = tt::Var<double>(tt::exp(w));
    auto loss = tt::sum(h * w);
    w.mutable_value()(0) = 4.0;  // the saved input changed under the graph
    CHECK_THROWS_WITH_AS(tt::backward(loss), doctest::Contains("modified in place"), tt::autodiff_error);

    auto v = tt::Var<double>(w * 2.0);
    CHECK_THROWS_WITH_AS(tt::backward(v), doctest::Contains("implicit gradient needs a single value"), tt::autodiff_error);
    CHECK_THROWS_AS(tt::backward(v, tt::zeros<double>({3})), tt::shape_error);
}

TEST_CASE("engine: threads build and differentiate their own graphs side by side") {
    std::vector<double> results(4);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([t, &results] {
            auto w = tt::param(tt::full<double>({64}, 1.0 + t));
            for (int step = 0; step < 200; ++step) {
                w.zero_grad();
                tt::backward(tt::sum(tt::square(w) * 0.5));
                results[static_cast<std::size_t>(t)] = w.grad()(63);
            }
        });
    for (auto& th : threads) th.join();
    for (int t = 0; t < 4; ++t) CHECK(results[static_cast<std::size_t>(t)] == 1.0 + t);
}

TEST_CASE("engine: 100,000 forward+backward steps keep memory flat") {
    // A small training loop: the allocator must serve every step from its cache after warm-up,
    // and the live bytes must not grow (no graph or gradient left behind).
    auto w = tt::param(tt::full<float>({16, 4}, 0.1f));
    auto b = tt::param(tt::zeros<float>({4}));
    auto x = tt::constant(tt::full<float>({8, 16}, 0.5f));
    auto labels = tt::from_values<std::int32_t>({8}, {0, 1, 2, 3, 0, 1, 2, 3});
    auto step = [&] {
        w.zero_grad();
        b.zero_grad();
        auto loss = tt::cross_entropy(tt::relu(tt::matmul(x, w) + b), labels);
        tt::backward(loss);
        tt::update(w, w - 0.01f * tt::constant(w.grad()));
    };
    for (int i = 0; i < 100; ++i) step();
    const auto warm = tt::allocator_stats();
    for (int i = 0; i < 100000; ++i) step();
    const auto end = tt::allocator_stats();
    CHECK(end.system_allocs == warm.system_allocs);
    CHECK(end.bytes_in_use == warm.bytes_in_use);
    CHECK(end.peak_bytes == warm.peak_bytes);
}

TEST_CASE("engine: update() writes an expression into a Var in place") {
    auto w = tt::param(tt::full<double>({4}, 1.0));
    const double* before = w.value().data();
    tt::backward(tt::sum(tt::square(w)));
    tt::update(w, w - 0.25 * tt::constant(w.grad()));
    CHECK(w.value().data() == before);  // no new storage
    CHECK(w.value()(3) == 0.5);
    CHECK_THROWS_WITH_AS(tt::update(w, tt::constant(tt::zeros<double>({3}))), doctest::Contains("update: expression of shape [3]"),
                         tt::shape_error);
    CHECK(w.value()(0) == 0.5);  // a refused update leaves the value as it was
}

TEST_CASE("backward: a leaf's grad_ready_hook runs once, as soon as its gradient is complete") {
    // y = w2 * relu(w1 * x): w2's gradient is complete before w1's is computed.
    auto x = tt::constant(tt::full<double>({4}, 2.0));
    auto w1 = tt::param(tt::full<double>({4}, 0.5));
    auto w2 = tt::param(tt::full<double>({4}, 3.0));
    std::vector<std::string> events;
    w1.set_grad_ready_hook([&] { events.push_back(w2.has_grad() ? "w1 after w2" : "w1 first"); });
    w2.set_grad_ready_hook([&] { events.push_back(w1.has_grad() ? "w2 after w1" : "w2 while w1 pending"); });
    tt::Var<double> h = tt::relu(w1 * x);
    tt::Var<double> y = tt::sum(w2 * h + w2);  // w2 used twice in one expression: one hook call
    tt::backward(y);
    CHECK(events == std::vector<std::string>{"w2 while w1 pending", "w1 after w2"});
    CHECK(w2.grad().data()[0] == doctest::Approx(2.0));
    CHECK(w1.grad().data()[0] == doctest::Approx(6.0));
    // grad() leaves .grad() alone and calls no hooks.
    tt::Var<double> z = tt::sum(w2 * w2);
    (void)tt::grad(z, {w2});
    CHECK(events.size() == 2);
    // A leaf that is the output itself still gets its hook.
    tt::backward(w2, tt::ones<double>({4}));
    CHECK(events.size() == 3);
    w2.set_grad_ready_hook({});
    tt::backward(w2, tt::ones<double>({4}));
    CHECK(events.size() == 3);
}
