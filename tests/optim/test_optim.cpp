#include <doctest/doctest.h>
#include <tensortape/tensortape.hpp>
#include <tensortape/optim/optim.hpp>

#include <array>
#include <cmath>
#include <limits>
#include <numbers>
#include <string>
#include <vector>

namespace tt = tensortape;
namespace optim = tensortape::optim;

namespace {

// Every trajectory test starts from p = [1, -2, 0.5] and feeds the gradient [0.5, -1, 2] at each
// step. The expected values are written out by hand for the first step below; all of them agree
// with torch.optim (double precision) to the last printed digit.
tt::Tensor<double> start() { return tt::from_values<double>({3}, {1.0, -2.0, 0.5}); }
tt::Tensor<double> fixed_grad() { return tt::from_values<double>({3}, {0.5, -1.0, 2.0}); }

using Row = std::array<double, 3>;

template <class Make>
void expect_trajectory(Make make, std::initializer_list<Row> expected) {
    auto p = tt::param(start());
    auto opt = make(std::vector{p});
    int step = 0;
    for (const Row& row : expected) {
        ++step;
        p.set_grad(fixed_grad());
        opt.step();
        for (int k = 0; k < 3; ++k) {
            INFO("step ", step, ", element ", k);
            CHECK(p.value()(k) == doctest::Approx(row[static_cast<std::size_t>(k)]).epsilon(1e-12));
        }
    }
    CHECK(opt.step_count() == step);
}

template <tt::Floating T>
std::vector<T> values(const tt::Tensor<T>& t) {
    std::vector<T> v;
    t.for_each([&](const T& x) { v.push_back(x); });
    return v;
}

// Exact equality of two saved states: same names in the same order, same shapes, same bits.
template <tt::Floating T>
void check_same_state(const optim::StateDict<T>& a, const optim::StateDict<T>& b) {
    REQUIRE(a.size() == b.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
        INFO("entry ", a[i].first);
        CHECK(a[i].first == b[i].first);
        CHECK(a[i].second.shape() == b[i].second.shape());
        CHECK(values(a[i].second) == values(b[i].second));
    }
}

}  // namespace

// ---- SGD --------------------------------------------------------------------------------------

TEST_CASE("optim: plain SGD is p -= lr * g") {
    expect_trajectory([](auto ps) { return optim::SGD<double>(ps, 0.1); },
                      {{0.95, -1.9, 0.3}, {0.9, -1.8, 0.1}, {0.85, -1.7, -0.1}});
}

TEST_CASE("optim: SGD with momentum and weight decay") {
    // Step 1: g = grad + 0.01 p = [0.51, -1.02, 2.005]; buf = g; p -= 0.1 buf.
    // Step 2: g = grad + 0.01 p1; buf = 0.9 buf + g; p -= 0.1 buf.
    expect_trajectory([](auto ps) { return optim::SGD<double>(ps, {.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01}); },
                      {{0.949, -1.898, 0.2995},
                       {0.852151, -1.704302, -0.0812495},
                       {0.714134749, -1.428269498, -0.6238428005}});
}

TEST_CASE("optim: SGD with Nesterov momentum") {
    // Step 1: buf = g; p -= 0.1 (g + 0.9 buf) = p - 0.19 g.  Step 2: buf = 1.9 g; p -= 0.1 (g + 1.71 g).
    expect_trajectory([](auto ps) { return optim::SGD<double>(ps, 0.1, {.momentum = 0.9, .nesterov = true}); },
                      {{0.905, -1.81, 0.12}, {0.7695, -1.539, -0.422}, {0.59755, -1.1951, -1.1098}});
}

TEST_CASE("optim: SGD dampening does not apply to the first step") {
    // buf = g, then 0.9 g + 0.5 g = 1.4 g, then 0.9 * 1.4 g + 0.5 g = 1.76 g.
    expect_trajectory([](auto ps) { return optim::SGD<double>(ps, 0.1, {.momentum = 0.9, .dampening = 0.5}); },
                      {{0.95, -1.9, 0.3}, {0.88, -1.76, 0.02}, {0.792, -1.584, -0.332}});
}

TEST_CASE("optim: SGD refuses bad options") {
    auto p = tt::param(start());
    CHECK_THROWS_WITH_AS(optim::SGD<double>({p}, 0.1, {.nesterov = true}), doctest::Contains("sgd: Nesterov momentum needs momentum > 0"),
                         tt::value_error);
    CHECK_THROWS_WITH_AS(optim::SGD<double>({p}, -1.0), doctest::Contains("sgd: lr must be in [0, inf), got -1"), tt::value_error);
    CHECK_THROWS_WITH_AS(optim::SGD<double>({p, p}, 0.1), doctest::Contains("appears more than once"), tt::value_error);
    auto y = tt::Var<double>(p * 2.0);
    CHECK_THROWS_WITH_AS(optim::SGD<double>({y}, 0.1), doctest::Contains("not a leaf"), tt::value_error);
}

// ---- Adam, AdamW ------------------------------------------------------------------------------

TEST_CASE("optim: Adam") {
    // Step 1: m = 0.1 g, v = 0.001 g^2, so the step is lr * g / (|g| + 1e-8): each element moves
    // by 0.01 (minus 0.01 * 1e-8 / |g|). With a constant gradient m / sqrt(v) stays g / |g|
    // after bias correction, so every step moves by the same amount.
    expect_trajectory([](auto ps) { return optim::Adam<double>(ps, 0.01); },
                      {{0.9900000002, -1.9900000001, 0.49000000005},
                       {0.9800000004, -1.9800000002, 0.4800000001},
                       {0.9700000006, -1.9700000003, 0.47000000015}});
}

TEST_CASE("optim: Adam with L2 weight decay in the gradient") {
    // betas (0.8, 0.9). Step 1: g = grad + 0.1 p = [0.6, -1.2, 2.05], again a step of lr * g / (|g| + eps).
    expect_trajectory([](auto ps) { return optim::Adam<double>(ps, {.lr = 0.01, .beta1 = 0.8, .beta2 = 0.9, .weight_decay = 0.1}); },
                      {{0.9900000001666667, -1.9900000000833333, 0.49000000004878047},
                       {0.9800004915592707, -1.9800002448047234, 0.4800001430639725},
                       {0.970001793742449, -1.9700008930139818, 0.470000521805465}});
}

TEST_CASE("optim: AdamW decays the parameter, not the gradient") {
    auto p = tt::param(start());
    CHECK(optim::AdamW<double>({p}).options().weight_decay == 0.01);  // PyTorch's default
    CHECK(optim::Adam<double>({p}).options().weight_decay == 0.0);
    CHECK(optim::Adam<double>({p}).options().lr == 1e-3);
    CHECK(optim::AdamW<double>({p}, 0.5, {.lr = 0.1}).options().lr == 0.5);  // a separate lr wins
    // Default decay 0.01. Step 1: p = p * (1 - 0.01 * 0.01) - 0.01 * g / (|g| + eps).
    expect_trajectory([](auto ps) { return optim::AdamW<double>(ps, 0.01); },
                      {{0.9899000002, -1.9898000001, 0.48995000005},
                       {0.9798010103999801, -1.97960102019999, 0.47990100509999506},
                       {0.9697030304989401, -1.9694030601979702, 0.46985301504948507}});
    // lr 0.1, decay 0.5: step 1 is p * 0.95 - 0.1 * g / (|g| + eps).
    expect_trajectory([](auto ps) { return optim::AdamW<double>(ps, 0.1, {.weight_decay = 0.5}); },
                      {{0.850000002, -1.800000001, 0.3750000005},
                       {0.7075000039000006, -1.6100000019500005, 0.2562500009750007},
                       {0.5721250057050006, -1.4295000028525005, 0.14343750142625072}});
}

TEST_CASE("optim: Adam in float matches PyTorch's float steps") {
    auto p = tt::param(start().cast<float>());
    optim::Adam opt({p}, 0.01, {.weight_decay = 0.1});  // deduces Adam<float>
    static_assert(std::is_same_v<decltype(opt), optim::Adam<float>>);
    const std::array<std::array<float, 3>, 3> torch_f32{{{0.9900000095367432f, -1.9900000095367432f, 0.49000000953674316f},
                                                         {0.9800004363059998f, -1.9800002574920654f, 0.4800001382827759f},
                                                         {0.9700015783309937f, -1.9700008630752563f, 0.4700004756450653f}}};
    for (const auto& row : torch_f32) {
        p.set_grad(fixed_grad().cast<float>());
        opt.step();
        for (int k = 0; k < 3; ++k) CHECK(p.value()(k) == doctest::Approx(row[static_cast<std::size_t>(k)]).epsilon(2e-7));
    }
}

TEST_CASE("optim: Adam's bias correction counts the steps a parameter had a gradient") {
    auto a = tt::param(start());
    auto b = tt::param(start());
    optim::Adam<double> opt({a, b}, 0.01);
    a.set_grad(fixed_grad());
    opt.step();  // b has no gradient: untouched, no step counted
    CHECK(values(b.value()) == values(start()));
    CHECK(opt.param_step(0) == 1);
    CHECK(opt.param_step(1) == 0);
    for (const auto& [name, t] : opt.state())
        if (name.starts_with("1.")) CHECK(values(t) == std::vector<double>(name == "1.step" ? 1 : 3, 0.0));
    b.set_grad(fixed_grad());
    opt.step();  // a's second step, b's first: b moves by lr * g / (|g| + eps), bias-corrected as step 1
    CHECK(b.value()(0) == doctest::Approx(1.0 - 0.01 * 0.5 / (0.5 + 1e-8)).epsilon(1e-14));
    CHECK(b.value()(2) == doctest::Approx(0.5 - 0.01 * 2.0 / (2.0 + 1e-8)).epsilon(1e-14));
    CHECK(opt.param_step(1) == 1);
    CHECK(opt.step_count() == 2);
}

TEST_CASE("optim: Adam on a large 2-D float tensor agrees with a scalar reference") {
    // 37 x 29 elements: SIMD batches plus a scalar tail in every row of the fused loops.
    tt::Generator gen(7);
    const auto w0 = tt::randn<float>({37, 29}, gen);
    auto w = tt::param(w0.clone());
    optim::Adam<float> opt({w}, 0.003, {.beta1 = 0.85, .beta2 = 0.99, .eps = 1e-6, .weight_decay = 0.05});
    const auto start_values = values(w0);
    std::vector<double> p(start_values.begin(), start_values.end()), m(p.size(), 0.0), v(p.size(), 0.0);
    for (int t = 1; t <= 5; ++t) {
        const auto g = tt::randn<float>({37, 29}, gen);
        const auto gv = values(g);
        w.set_grad(g);
        opt.step();
        const double bc1 = 1 - std::pow(0.85, t), bc2 = 1 - std::pow(0.99, t);
        for (std::size_t i = 0; i < p.size(); ++i) {
            const double gi = gv[i] + 0.05 * p[i];
            m[i] = 0.85 * m[i] + 0.15 * gi;
            v[i] = 0.99 * v[i] + 0.01 * gi * gi;
            p[i] -= 0.003 / bc1 * m[i] / (std::sqrt(v[i]) / std::sqrt(bc2) + 1e-6);
        }
    }
    const auto got = values(w.value());
    double worst = 0;
    for (std::size_t i = 0; i < p.size(); ++i) worst = std::max(worst, std::abs(got[i] - p[i]));
    CHECK(worst < 2e-6);
}

TEST_CASE("optim: a training loop's optimizer steps allocate no tensor memory after warm-up") {
    auto w = tt::param(tt::full<float>({1000}, 1.0f));
    const auto g = tt::full<float>({1000}, 0.25f);
    optim::AdamW<float> adam({w}, 0.01);
    optim::RMSprop<float> rms({w}, 0.01, {.momentum = 0.5, .centered = true});
    optim::SGD<float> sgd({w}, 0.01, {.momentum = 0.9, .weight_decay = 1e-3, .nesterov = true});
    auto step_all = [&] {
        w.set_grad(g);
        adam.step();
        rms.step();
        sgd.step();
    };
    for (int i = 0; i < 5; ++i) step_all();
    const auto warm = tt::allocator_stats();
    const float* storage = w.value().data();
    for (int i = 0; i < 200; ++i) step_all();
    const auto end = tt::allocator_stats();
    CHECK(end.system_allocs == warm.system_allocs);
    CHECK(end.cache_hits == warm.cache_hits);
    CHECK(end.bytes_in_use == warm.bytes_in_use);
    CHECK(w.value().data() == storage);  // stepped in place
}

// ---- RMSprop ----------------------------------------------------------------------------------

TEST_CASE("optim: RMSprop") {
    // Step 1: s = 0.01 g^2, so p -= 0.01 g / (0.1 |g| + 1e-8): each element moves by about 0.1.
    expect_trajectory([](auto ps) { return optim::RMSprop<double>(ps, 0.01); },
                      {{0.900000019999996, -1.900000009999999, 0.40000000499999977},
                       {0.8291119095494123, -1.8291118945242906, 0.32911188701172894},
                       {0.7710870078067141, -1.771086989414703, 0.27108698021869654}});
}

TEST_CASE("optim: RMSprop centered") {
    // Step 1: s = 0.01 g^2, a = 0.01 g, den = sqrt(s - a^2) + eps = sqrt(0.0099) |g| + eps.
    expect_trajectory([](auto ps) { return optim::RMSprop<double>(ps, 0.01, {.centered = true}); },
                      {{0.899496238676095, -1.8994962285750878, 0.39949622352458364},
                       {0.8278920868083515, -1.8278920715801894, 0.3278920639661075},
                       {0.7689858036009652, -1.7689857849028527, 0.2689857755537955}});
}

TEST_CASE("optim: RMSprop centered with momentum and weight decay") {
    // alpha 0.9. Step 1: g = grad + 0.1 p; s = 0.1 g^2, a = 0.1 g, den = 0.3 |g| + eps,
    // buf = g / den, p -= 0.01 buf: each element moves by 1/30.
    expect_trajectory(
        [](auto ps) { return optim::RMSprop<double>(ps, 0.01, {.alpha = 0.9, .weight_decay = 0.1, .momentum = 0.9, .centered = true}); },
        {{0.9666666685185185, -1.9666666675925926, 0.46666666720867206},
         {0.9112434329735344, -1.9112096516066197, 0.41119569146782015},
         {0.8390344429958756, -1.8388846818140796, 0.3388229198963757}});
}

TEST_CASE("optim: centered RMSprop never takes the sqrt of a negative variance") {
    // s >= a^2 holds in exact arithmetic, but with a near-constant gradient s - a^2 tends to 0 and
    // rounding can make it negative (PyTorch 1.13 in float turns p into NaN after ~1200 steps of
    // the gradient [0.1, 0.3, 0.7] at lr 1e-3). A loaded state with s < a^2 forces the case.
    auto p = tt::param(tt::ones<float>({3}));
    optim::RMSprop<float> opt({p}, {.lr = 1e-3, .centered = true});
    auto st = opt.state();
    for (auto& [name, t] : st)
        if (name == "0.grad_avg") t = tt::full<float>({3}, 1.0f);  // square_avg stays 0
    opt.load_state(st);
    p.set_grad(tt::ones<float>({3}));
    opt.step();
    for (float x : values(p.value())) CHECK(std::isfinite(x));
}

// ---- the common step: gradients that are missing or not finite --------------------------------

TEST_CASE("optim: parameters without a gradient are left alone") {
    auto a = tt::param(start());
    auto frozen = tt::param(start());
    optim::SGD<double> opt({a, frozen}, 0.1, {.momentum = 0.9});
    a.set_grad(fixed_grad());
    opt.step();
    opt.step();
    CHECK(values(frozen.value()) == values(start()));
    CHECK(opt.param_step(1) == 0);
    CHECK(a.value()(0) == doctest::Approx(1.0 - 0.1 * 0.5 - 0.1 * 1.9 * 0.5));
}

TEST_CASE("optim: a non-finite gradient throws and changes no parameter and no state") {
    auto a = tt::param(start());
    auto b = tt::param(tt::from_values<double>({2, 2}, {1, 2, 3, 4}));
    b.set_name("layer.bias");
    auto c = tt::param(start());
    optim::Adam<double> opt({a, b, c}, 0.01);
    a.set_grad(fixed_grad());
    b.set_grad(tt::full<double>({2, 2}, 0.5));
    c.set_grad(fixed_grad());
    opt.step();

    const auto a_before = values(a.value()), b_before = values(b.value()), c_before = values(c.value());
    const auto state_before = opt.state();
    auto bad = tt::full<double>({2, 2}, 0.5);
    bad(1, 0) = std::numeric_limits<double>::quiet_NaN();
    b.set_grad(bad);  // a, listed before b, would have been stepped first by a careless loop
    CHECK_THROWS_WITH_AS(opt.step(),
                         doctest::Contains("tensortape: adam: the gradient of parameter 'layer.bias' (index 1, shape [2, 2]) has a "
                                           "non-finite value (nan at element 2) at step 2; the parameters and the optimizer state were "
                                           "left unchanged"),
                         tt::value_error);
    CHECK(values(a.value()) == a_before);
    CHECK(values(b.value()) == b_before);
    CHECK(values(c.value()) == c_before);
    check_same_state(opt.state(), state_before);
    CHECK(opt.step_count() == 1);

    auto inf_grad = fixed_grad();
    inf_grad(2) = -std::numeric_limits<double>::infinity();
    b.set_grad(tt::full<double>({2, 2}, 0.5));
    c.set_grad(inf_grad);
    CHECK_THROWS_WITH_AS(opt.step(), doctest::Contains("parameter 2 (shape [3]) has a non-finite value (-inf at element 2)"),
                         tt::value_error);
    check_same_state(opt.state(), state_before);

    SUBCASE("skip_nonfinite skips the whole step and counts it") {
        opt.skip_nonfinite = true;
        opt.step();
        opt.step();
        CHECK(opt.skipped_steps == 2);
        CHECK(opt.step_count() == 1);
        CHECK(values(a.value()) == a_before);
        CHECK(values(b.value()) == b_before);
        check_same_state(opt.state(), state_before);
        c.set_grad(fixed_grad());
        opt.step();  // finite again: steps as usual
        CHECK(opt.skipped_steps == 2);
        CHECK(opt.step_count() == 2);
        CHECK(a.value()(0) < a_before[0]);
    }
}

TEST_CASE("optim: a NaN in a float gradient or in a strided view of one is caught") {
    auto w = tt::param(tt::zeros<float>({4, 3}));
    optim::SGD<float> opt({w}, 0.1);
    auto g = tt::full<float>({3, 4}, 1.0f);
    g(2, 1) = std::numeric_limits<float>::quiet_NaN();
    w.set_grad(g.transpose());  // element (1, 2) of the view, row-major index 5
    CHECK_THROWS_WITH_AS(opt.step(), doctest::Contains("parameter 0 (shape [4, 3]) has a non-finite value (nan at element 5)"),
                         tt::value_error);
    CHECK(values(w.value()) == std::vector<float>(12, 0.0f));
}

TEST_CASE("optim: appended parameters join; removed or reshaped ones are refused") {
    auto a = tt::param(start());
    optim::Adam<double> opt({a}, 0.01);
    auto b = tt::param(start());
    opt.params.push_back(b);
    b.set_grad(fixed_grad());
    opt.step();
    CHECK(b.value()(0) == doctest::Approx(1.0 - 0.01 * 0.5 / (0.5 + 1e-8)));
    CHECK(opt.state().size() == 1 + 2 * 3);
    opt.params.pop_back();
    CHECK_THROWS_WITH_AS(opt.step(), doctest::Contains("parameters may be appended, not removed"), tt::value_error);
    opt.params.push_back(tt::param(tt::zeros<double>({4})));
    CHECK_THROWS_WITH_AS(opt.step(), doctest::Contains("parameter 1 has shape [4] but its optimizer state has shape [3]"), tt::shape_error);
}

// ---- state ------------------------------------------------------------------------------------

namespace {

// Steps `original` twice, saves, loads into `fresh` (over separate parameters with the same
// values), then steps both once more: they must agree bit for bit.
template <class Opt, class Make>
void check_resume(Make make, const std::vector<std::string>& expected_names) {
    auto p1 = tt::param(start());
    auto q1 = tt::param(tt::from_values<double>({2}, {3.0, -1.0}));
    Opt original = make(std::vector{p1, q1});
    auto step = [](Opt& opt, tt::Var<double>& p, tt::Var<double>& q, double k) {
        p.set_grad(fixed_grad());
        q.set_grad(tt::from_values<double>({2}, {k, -2.0 * k}));
        opt.step();
    };
    step(original, p1, q1, 1.0);
    step(original, p1, q1, 0.5);
    const auto saved = original.state();
    std::vector<std::string> names;
    for (const auto& e : saved) names.push_back(e.first);
    CHECK(names == expected_names);
    CHECK(saved[0].second.rank() == 0);
    CHECK(saved[0].second.item() == 2.0);

    auto p2 = tt::param(p1.value().clone());
    auto q2 = tt::param(q1.value().clone());
    Opt resumed = make(std::vector{p2, q2});
    resumed.load_state(saved);
    check_same_state(resumed.state(), saved);
    CHECK(resumed.step_count() == 2);

    step(original, p1, q1, -0.25);
    step(resumed, p2, q2, -0.25);
    CHECK(values(p1.value()) == values(p2.value()));
    CHECK(values(q1.value()) == values(q2.value()));
    check_same_state(original.state(), resumed.state());
    // The saved copy did not follow the original's third step.
    CHECK(saved[0].second.item() == 2.0);
}

}  // namespace

TEST_CASE("optim: state() and load_state() resume a run exactly") {
    check_resume<optim::Adam<double>>([](auto ps) { return optim::Adam<double>(ps, 0.01, {.weight_decay = 0.1}); },
                                      {"step", "0.step", "0.exp_avg", "0.exp_avg_sq", "1.step", "1.exp_avg", "1.exp_avg_sq"});
    check_resume<optim::AdamW<double>>([](auto ps) { return optim::AdamW<double>(ps, 0.01); },
                                       {"step", "0.step", "0.exp_avg", "0.exp_avg_sq", "1.step", "1.exp_avg", "1.exp_avg_sq"});
    check_resume<optim::SGD<double>>([](auto ps) { return optim::SGD<double>(ps, 0.1, {.momentum = 0.9, .nesterov = true}); },
                                     {"step", "0.step", "0.momentum_buffer", "1.step", "1.momentum_buffer"});
    check_resume<optim::SGD<double>>([](auto ps) { return optim::SGD<double>(ps, 0.1); }, {"step", "0.step", "1.step"});
    check_resume<optim::RMSprop<double>>(
        [](auto ps) { return optim::RMSprop<double>(ps, 0.01, {.momentum = 0.5, .centered = true}); },
        {"step", "0.step", "0.square_avg", "0.grad_avg", "0.momentum_buffer", "1.step", "1.square_avg", "1.grad_avg", "1.momentum_buffer"});
}

TEST_CASE("optim: load_state checks everything first and changes nothing on a mismatch") {
    auto p = tt::param(start());
    optim::Adam<double> opt({p}, 0.01);
    p.set_grad(fixed_grad());
    opt.step();
    const auto before = opt.state();

    // Valid new values first, the bad entry last: a load that copied as it checked would have
    // written the first ones already.
    auto other = before;
    other[0].second = tt::scalar_tensor<double>(7.0);
    other[1].second = tt::scalar_tensor<double>(7.0);
    other[2].second = tt::full<double>({3}, 9.0);

    SUBCASE("a wrong shape") {
        other[3].second = tt::zeros<double>({4});
        CHECK_THROWS_WITH_AS(opt.load_state(other),
                             doctest::Contains("adam: load_state: entry '0.exp_avg_sq' has shape [4], expected [3]; the state was left unchanged"),
                             tt::shape_error);
    }
    SUBCASE("an unknown name") {
        other.emplace_back("1.exp_avg", tt::zeros<double>({3}));
        CHECK_THROWS_WITH_AS(opt.load_state(other), doctest::Contains("unknown entry '1.exp_avg'"), tt::value_error);
    }
    SUBCASE("a missing name") {
        other.pop_back();
        CHECK_THROWS_WITH_AS(opt.load_state(other), doctest::Contains("entry '0.exp_avg_sq' is missing"), tt::value_error);
    }
    SUBCASE("a duplicate name") {
        other.push_back(other[2]);
        CHECK_THROWS_WITH_AS(opt.load_state(other), doctest::Contains("entry '0.exp_avg' appears twice"), tt::value_error);
    }
    SUBCASE("a step count that is not a whole number") {
        other[3].second = tt::zeros<double>({3});
        other[0].second = tt::scalar_tensor<double>(1.5);
        CHECK_THROWS_WITH_AS(opt.load_state(other), doctest::Contains("entry 'step' must be a non-negative whole number, got 1.5"),
                             tt::value_error);
    }
    SUBCASE("state from an optimizer with other buffers") {
        optim::RMSprop<double> rms({tt::param(start())}, 0.01);
        CHECK_THROWS_WITH_AS(opt.load_state(rms.state()), doctest::Contains("unknown entry '0.square_avg'"), tt::value_error);
    }
    check_same_state(opt.state(), before);
    CHECK(opt.step_count() == 1);
}

// ---- gradient clipping ------------------------------------------------------------------------

TEST_CASE("optim: clip_grad_norm returns the norm and scales the gradients down to max_norm") {
    auto a = tt::param(tt::zeros<double>({2}));
    auto b = tt::param(tt::zeros<double>({1, 1}));
    auto none = tt::param(tt::zeros<double>({3}));
    std::vector<tt::Var<double>> ps{a, b, none};
    a.set_grad(tt::from_values<double>({2}, {3.0, 4.0}));
    b.set_grad(tt::from_values<double>({1, 1}, {12.0}));
    const double* storage = a.grad().data();

    CHECK(optim::clip_grad_norm(ps, 100.0) == doctest::Approx(13.0).epsilon(1e-15));  // sqrt(9 + 16 + 144)
    CHECK(a.grad()(1) == 4.0);                                                        // under the limit: untouched

    CHECK(optim::clip_grad_norm(std::span(ps), 6.5) == doctest::Approx(13.0).epsilon(1e-15));
    const double coef = 6.5 / (13.0 + 1e-6);
    CHECK(a.grad()(0) == doctest::Approx(3.0 * coef).epsilon(1e-15));
    CHECK(a.grad()(1) == doctest::Approx(4.0 * coef).epsilon(1e-15));
    CHECK(b.grad()(0, 0) == doctest::Approx(12.0 * coef).epsilon(1e-15));
    CHECK(a.grad().data() == storage);  // in place
    CHECK_FALSE(none.has_grad());
    CHECK(optim::clip_grad_norm(ps, 6.5) == doctest::Approx(6.5).epsilon(1e-6));

    CHECK_THROWS_AS(optim::clip_grad_norm(ps, -1.0), tt::value_error);
}

TEST_CASE("optim: clip_grad_norm in float, over broadcast views, and with a NaN") {
    auto w = tt::param(tt::zeros<float>({4}));
    const auto source = tt::full<float>({1}, 2.0f);
    w.set_grad(source.broadcast_to({4}));  // one stored value seen four times
    std::vector<tt::Var<float>> ps{w};
    CHECK(optim::clip_grad_norm(ps, 1.0) == doctest::Approx(4.0));
    for (int k = 0; k < 4; ++k) CHECK(w.grad()(k) == doctest::Approx(2.0 / (4.0 + 1e-6)));
    CHECK(source(0) == 2.0f);  // the shared value was not scaled once per view element

    auto big = tt::param(tt::zeros<float>({1000}));
    big.set_grad(tt::full<float>({1000}, 0.1f));
    std::vector<tt::Var<float>> bs{big};
    CHECK(optim::clip_grad_norm(bs, 10.0) == doctest::Approx(std::sqrt(1000 * 0.01)).epsilon(1e-6));

    auto g = tt::full<float>({4}, 1.0f);
    g(3) = std::numeric_limits<float>::quiet_NaN();
    w.set_grad(g);
    CHECK(std::isnan(optim::clip_grad_norm(ps, 1.0)));
    CHECK(w.grad()(0) == 1.0f);  // left for the optimizer to report
}

TEST_CASE("optim: clip_grad_norm measures doubles whose squares overflow") {
    auto w = tt::param(tt::zeros<double>({2}));
    w.set_grad(tt::from_values<double>({2}, {3e200, 4e200}));
    std::vector<tt::Var<double>> ps{w};
    CHECK(optim::clip_grad_norm(ps, 1.0) == doctest::Approx(5e200));
    CHECK(w.grad()(0) == doctest::Approx(0.6));
    CHECK(w.grad()(1) == doctest::Approx(0.8));
}

// ---- schedulers -------------------------------------------------------------------------------

TEST_CASE("optim: StepLR") {
    auto p = tt::param(start());
    optim::SGD<double> opt({p}, 0.8);
    optim::StepLR sched(opt, 3, 0.5);
    CHECK(opt.lr == 0.8);
    const double expected[] = {0.8, 0.8, 0.4, 0.4, 0.4, 0.2, 0.2, 0.2, 0.1, 0.1};  // epochs 1..10
    for (double lr : expected) {
        sched.step();
        CHECK(opt.lr == doctest::Approx(lr).epsilon(1e-15));
    }
    CHECK(sched.last_epoch() == 10);
    CHECK(opt.options().lr == opt.lr);
}

TEST_CASE("optim: CosineAnnealingLR") {
    auto p = tt::param(start());
    optim::Adam<double> opt({p}, 1.0);
    optim::CosineAnnealingLR sched(opt, 10, 0.1);
    for (int epoch = 1; epoch <= 20; ++epoch) {
        sched.step();
        CHECK(opt.lr == doctest::Approx(0.1 + 0.9 * (1 + std::cos(std::numbers::pi * epoch / 10)) / 2).epsilon(1e-14));
        if (epoch == 5) CHECK(opt.lr == doctest::Approx(0.55).epsilon(1e-14));
        if (epoch == 10) CHECK(opt.lr == doctest::Approx(0.1).epsilon(1e-14));
        if (epoch == 20) CHECK(opt.lr == doctest::Approx(1.0).epsilon(1e-14));  // back up, as PyTorch's
    }
}

TEST_CASE("optim: ReduceLROnPlateau") {
    auto p = tt::param(start());
    optim::SGD<double> opt({p}, 1.0);
    SUBCASE("patience, relative threshold and min_lr") {
        optim::ReduceLROnPlateau sched(opt, 0.5, 2, 0.1);
        // 8.9995 does not beat the best (9) by the relative threshold 1e-4, so it counts as bad.
        const double metrics[] = {10, 9, 9, 9, 9, 8.9995, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9};
        const double lrs[] = {1, 1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125, 0.125, 0.125, 0.1, 0.1, 0.1, 0.1};
        for (std::size_t e = 0; e < std::size(metrics); ++e) {
            sched.step(metrics[e]);
            INFO("epoch ", e + 1);
            CHECK(opt.lr == lrs[e]);
        }
        CHECK(sched.best() == 9.0);
    }
    SUBCASE("cooldown, and a NaN metric counts as no improvement") {
        optim::ReduceLROnPlateau sched(opt, 0.1, 1, 0.0, 1e-4, 2);
        const double nan = std::numeric_limits<double>::quiet_NaN();
        const double metrics[] = {5, nan, 5, 5, 5, 5, 5, 4};
        // Reduce when bad > 1 (epoch 3), then 2 epochs of cooldown reset the count (4, 5), then
        // bad again at 6 and 7 -> reduce at 7; 4 is an improvement.
        const double lrs[] = {1, 1, 0.1, 0.1, 0.1, 0.1, 0.01, 0.01};
        for (std::size_t e = 0; e < std::size(metrics); ++e) {
            sched.step(metrics[e]);
            INFO("epoch ", e + 1);
            CHECK(opt.lr == doctest::Approx(lrs[e]).epsilon(1e-15));
        }
    }
    SUBCASE("max mode") {
        optim::ReduceLROnPlateau sched(opt, 0.5, 0, 0.0, 0.0, 0, optim::PlateauMode::max);
        sched.step(1.0);
        sched.step(2.0);
        CHECK(opt.lr == 1.0);
        sched.step(2.0);
        CHECK(opt.lr == 0.5);
    }
    CHECK_THROWS_AS(optim::ReduceLROnPlateau(opt, 1.5), tt::value_error);
}

// ---- end to end -------------------------------------------------------------------------------

TEST_CASE("optim: Adam fits y = 2x + 1") {
    tt::Generator gen(3);
    const auto xs = tt::uniform<float>({64, 1}, -1.f, 1.f, gen);
    auto x = tt::constant(xs);
    auto y = tt::constant(tt::Var<float>(2.f * x + 1.f).value());
    auto w = tt::param(tt::zeros<float>({1, 1}));
    auto b = tt::param(tt::zeros<float>({1}));
    optim::Adam opt({w, b}, 0.05);
    optim::StepLR sched(opt, 100, 0.5);
    double loss0 = 0, loss = 0;
    for (int step = 0; step < 400; ++step) {
        opt.zero_grad();
        auto l = tt::mean(tt::square(tt::matmul(x, w) + b - y));
        if (step == 0) loss0 = l.item();
        loss = l.item();
        tt::backward(l);
        opt.step();
        sched.step();
    }
    CHECK(loss < 1e-5 * loss0);
    CHECK(w.item() == doctest::Approx(2.0).epsilon(1e-3));
    CHECK(b.item() == doctest::Approx(1.0).epsilon(1e-3));
}
