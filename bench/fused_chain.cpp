// The fused chain y = sum(sigmoid(a * x + b) * x), forward + backward to a, x and b, over
// 10 million floats, next to a triad loop (c = a + s * b) measured in the same run.
// Prints JSON lines; bench/fused_chain.py runs this next to PyTorch and prints the ratios.
//
//   bench_fused_chain [--n N] [--reps R] [--threads T]

#include "bench_common.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace tt = tensortape;

template <class F>
double median_ms(int reps, F&& f) {
    return bench::median_seconds(reps, std::forward<F>(f)) * 1e3;
}

int main(int argc, char** argv) {
    std::int64_t n = 10'000'000;
    int reps = 21, threads = tt::num_threads();
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!std::strcmp(argv[i], "--n")) n = std::atoll(argv[i + 1]);
        else if (!std::strcmp(argv[i], "--reps")) reps = std::atoi(argv[i + 1]);
        else if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    }
    tt::set_num_threads(threads);

    tt::Generator gen(7);
    auto a = tt::param(tt::uniform<float>({n}, -1.f, 1.f, gen));
    auto x = tt::param(tt::uniform<float>({n}, -1.f, 1.f, gen));
    auto b = tt::param(tt::uniform<float>({n}, -1.f, 1.f, gen));

    float checksum = 0;
    auto step = [&] {
        a.zero_grad();
        x.zero_grad();
        b.zero_grad();
        auto y = tt::sum(tt::sigmoid(a * x + b) * x);
        tt::backward(y);
        checksum = y.item() + x.grad()(0);
    };
    step();  // warm the allocator cache and the pool
    const double chain = median_ms(reps, step);
    const double fwd = median_ms(reps, [&] { checksum += tt::no_grad([&] { return tt::sum(tt::sigmoid(a * x + b) * x); }).item(); });

    // Triad over the same element count and the same threads: c = a + s * b.
    auto ta = tt::full<float>({n}, 1.f), tb = tt::full<float>({n}, 2.f), tc = tt::full<float>({n}, 0.f);
    const float s = 3.f;
    const auto plan = tt::cpu::plan_chunks(1, n, 16);
    auto triad = [&] {
        tt::cpu::for_each_chunk(plan, true, [&](tt::cpu::Chunk c) {
            const float* pa = ta.data();
            const float* pb = tb.data();
            float* pc = tc.data();
            for (std::int64_t i = c.col0; i < c.col1; ++i) pc[i] = pa[i] + s * pb[i];
        });
    };
    triad();
    const double triad_ms = median_ms(reps, triad);
    const double triad_gbs = 3.0 * 4.0 * static_cast<double>(n) / (triad_ms * 1e6);
    // Least traffic of the chain: forward reads a, x, b; backward reads them again and writes
    // three gradients. 36 bytes per element.
    const double chain_gbs = 36.0 * static_cast<double>(n) / (chain * 1e6);

    std::printf("{\"bench\": \"fused_chain\", \"impl\": \"tensortape\", \"n\": %lld, \"threads\": %d, \"median_ms\": %.3f, "
                "\"forward_median_ms\": %.3f, \"effective_GBps\": %.2f}\n",
                static_cast<long long>(n), threads, chain, fwd, chain_gbs);
    std::printf("{\"bench\": \"triad\", \"impl\": \"c++ loop\", \"n\": %lld, \"threads\": %d, \"median_ms\": %.3f, \"GBps\": %.2f}\n",
                static_cast<long long>(n), threads, triad_ms, triad_gbs);
    std::printf("{\"bench\": \"fused_chain_vs_triad\", \"fraction_of_triad_bandwidth\": %.3f, \"checksum\": %.3g}\n",
                chain_gbs / triad_gbs, static_cast<double>(checksum + tc.data()[0]));
    return 0;
}
