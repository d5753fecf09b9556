#pragma once
// Shared by the benchmarks: medians of repeated runs, and the machine's FMA peak measured in the
// same run (the figure every kernel is judged against; on a shared VM it moves).

#include <tensortape/tensortape.hpp>

#include <algorithm>
#include <chrono>
#include <thread>
#include <vector>

namespace bench {

using Clock = std::chrono::steady_clock;

template <class F>
double median_seconds(int reps, F&& f) {
    std::vector<double> t;
    for (int r = 0; r < reps; ++r) {
        const auto t0 = Clock::now();
        f();
        t.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

// GFLOP/s of independent float FMAs on `threads` threads (2 flops per lane per FMA). The chains
// must all live in registers: 16 of them on AVX-512's 32, 12 on AVX2's 16 (with 16 there, the
// two constants pushed the chains onto the stack and the "peak" came out at 60 % of what GEMM
// reaches). Either is enough to cover 2 FMA pipes x 4 cycles of latency.
inline double fma_peak_gflops(int threads) {
    using B = tensortape::simd::batch<float>;
    constexpr int chains = B::size * sizeof(float) >= 64 ? 16 : 12;
    const long iters = 40'000'000;
    std::vector<float> sink(static_cast<std::size_t>(threads));
    auto work = [&](int t) {
        B acc[chains];
        for (int i = 0; i < chains; ++i) acc[i] = B(float(i) * 1e-3f);
        const B m(0.999999f), a(1e-7f);
        for (long it = 0; it < iters; ++it)
#pragma GCC unroll 16
            for (int i = 0; i < chains; ++i) acc[i] = tensortape::simd::fma(acc[i], m, a);
        float s = 0;
        for (int i = 0; i < chains; ++i) s += tensortape::simd::reduce_add(acc[i]);
        sink[static_cast<std::size_t>(t)] = s;
    };
    const double secs = median_seconds(3, [&] {
        std::vector<std::thread> ts;
        for (int t = 1; t < threads; ++t) ts.emplace_back(work, t);
        work(0);
        for (auto& th : ts) th.join();
    });
    return 2.0 * B::size * chains * double(iters) * threads / secs / 1e9;
}

}  // namespace bench
