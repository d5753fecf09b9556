// Conv2D forward + backward on the example network's layers (batch 64, 3x3 kernels):
//   conv1: 1 -> 32 channels on 28x28 (the input needs no gradient)
//   conv2: 32 -> 64 channels on 13x13 (the input needs one)
// GFLOP/s counted as PyTorch's profiler does (2 flops per multiply-add, for each product
// computed), next to the FMA peak measured in the same run. bench/conv.py runs PyTorch beside it.
//
//   bench_conv [--threads T] [--reps R]

#include "bench_common.hpp"

#include <cstdio>
#include <cstring>
#include <cstdlib>

namespace tt = tensortape;

struct Layer {
    const char* name;
    std::int64_t n, c, h, w, co;
    bool input_grad;
};

int main(int argc, char** argv) {
    int threads = tt::num_threads(), reps = 21;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
        else if (!std::strcmp(argv[i], "--reps")) reps = std::atoi(argv[i + 1]);
    }
    const double peak = bench::fma_peak_gflops(threads);
    std::printf("{\"bench\": \"fma_peak\", \"threads\": %d, \"gflops\": %.1f}\n", threads, peak);
    tt::set_num_threads(threads);
    for (const Layer& L : {Layer{"conv1", 64, 1, 28, 28, 32, false}, Layer{"conv2", 64, 32, 13, 13, 64, true}}) {
        tt::Generator gen(5);
        auto x = tt::Var<float>(tt::uniform<float>({L.n, L.c, L.h, L.w}, -1.f, 1.f, gen), L.input_grad);
        auto w = tt::param(tt::uniform<float>({L.co, L.c, 3, 3}, -0.1f, 0.1f, gen));
        auto b = tt::param(tt::zeros<float>({L.co}));
        const std::int64_t oh = L.h - 2, ow = L.w - 2;
        const auto gy = tt::uniform<float>({L.n, L.co, oh, ow}, -1.f, 1.f, gen);
        const double macs = double(L.n) * L.co * oh * ow * L.c * 9;
        const double flops = 2 * macs * (L.input_grad ? 3 : 2);
        auto fwd_bwd = [&] {
            x.zero_grad();
            w.zero_grad();
            b.zero_grad();
            auto y = tt::conv2d(x, w, b);
            tt::backward(y, gy);
        };
        auto fwd = [&] { auto y = tt::no_grad([&] { return tt::conv2d(x, w, b); }); };
        fwd_bwd();
        const double t = bench::median_seconds(reps, fwd_bwd);
        const double tf = bench::median_seconds(reps, fwd);
        std::printf("{\"bench\": \"conv2d\", \"impl\": \"tensortape\", \"layer\": \"%s\", \"threads\": %d, \"fwd_bwd_ms\": %.3f, "
                    "\"fwd_ms\": %.3f, \"gflops\": %.1f, \"fraction_of_peak\": %.3f}\n",
                    L.name, threads, t * 1e3, tf * 1e3, flops / t / 1e9, flops / t / 1e9 / peak);
        std::fflush(stdout);
    }
    return 0;
}
