// GEMM in GFLOP/s: tensortape's packed kernel against OpenBLAS (cblas_sgemm / cblas_dgemm in the
// same binary), square n = 64..2048 and the skinny shapes the training example produces, with 1
// and 2 threads, next to the FMA peak measured in the same run. JSON lines.
//
//   bench_gemm [--quick]      (--quick: fewer sizes and repetitions)

#include "bench_common.hpp"

#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#ifdef TENSORTAPE_BENCH_OPENBLAS
#include <cblas.h>
#endif

namespace tt = tensortape;

struct Case {
    const char* name;
    int m, n, k;
};

template <class T>
void run(const Case& cs, int threads, double peak, int reps, const char* dtype) {
    tt::Generator gen(1);
    auto a = tt::uniform<T>({cs.m, cs.k}, T(-1), T(1), gen), b = tt::uniform<T>({cs.k, cs.n}, T(-1), T(1), gen);
    auto c = tt::zeros<T>({cs.m, cs.n});
    const double flops = 2.0 * cs.m * cs.n * cs.k;
    tt::set_num_threads(threads);
    auto ours = [&] { tt::cpu::gemm<T>(false, false, cs.m, cs.n, cs.k, T(1), a.data(), cs.k, b.data(), cs.n, T(0), c.data(), cs.n); };
    ours();
    const double t_ours = bench::median_seconds(reps, ours);
    double t_blas = 0;
#ifdef TENSORTAPE_BENCH_OPENBLAS
    openblas_set_num_threads(threads);
    auto blas = [&] {
        if constexpr (std::is_same_v<T, float>)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cs.m, cs.n, cs.k, 1.f, a.data(), cs.k, b.data(), cs.n, 0.f, c.data(), cs.n);
        else
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cs.m, cs.n, cs.k, 1.0, a.data(), cs.k, b.data(), cs.n, 0.0, c.data(), cs.n);
    };
    blas();
    t_blas = bench::median_seconds(reps, blas);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // let OpenBLAS's workers stop spinning
#endif
    const double g_ours = flops / t_ours / 1e9;
    const double g_blas = t_blas > 0 ? flops / t_blas / 1e9 : 0;
    std::printf("{\"bench\": \"gemm\", \"case\": \"%s\", \"dtype\": \"%s\", \"m\": %d, \"n\": %d, \"k\": %d, \"threads\": %d, "
                "\"tensortape_gflops\": %.1f, \"openblas_gflops\": %.1f, \"ratio_vs_openblas\": %.3f, \"fraction_of_peak\": %.3f}\n",
                cs.name, dtype, cs.m, cs.n, cs.k, threads, g_ours, g_blas, g_blas > 0 ? g_ours / g_blas : 0.0, g_ours / peak);
    std::fflush(stdout);
}

int main(int argc, char** argv) {
    const bool quick = argc > 1 && !std::strcmp(argv[1], "--quick");
#ifdef TENSORTAPE_BENCH_OPENBLAS
    // OpenBLAS starts its workers when the library loads and they spin for a while: left alone they
    // take the second core from the FMA probe (which then shows no 2-thread scaling) and from us.
    openblas_set_num_threads(1);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
#endif
    const double peak1 = bench::fma_peak_gflops(1), peak2 = bench::fma_peak_gflops(2);
    std::printf("{\"bench\": \"fma_peak\", \"threads\": 1, \"gflops\": %.1f}\n{\"bench\": \"fma_peak\", \"threads\": 2, \"gflops\": %.1f, "
                "\"scaling\": %.2f, \"usable\": %s}\n",
                peak1, peak2, peak2 / peak1, peak2 / peak1 >= 1.7 ? "true" : "false");
    std::vector<Case> cases = {{"square", 64, 64, 64},     {"square", 128, 128, 128},   {"square", 256, 256, 256},
                               {"square", 512, 512, 512},  {"square", 1024, 1024, 1024}, {"square", 2048, 2048, 2048},
                               {"dense1_fwd", 64, 128, 1600}, {"dense2_fwd", 64, 10, 128}, {"dense1_dw", 1600, 128, 64},
                               {"conv2_fwd_im2col", 64, 169, 288}, {"conv2_fwd_batched", 64, 10816, 288}, {"conv1_fwd_im2col", 32, 676, 9}};
    if (quick) cases = {{"square", 256, 256, 256}, {"square", 1024, 1024, 1024}, {"dense1_fwd", 64, 128, 1600}, {"conv2_fwd_im2col", 64, 169, 288}};
    for (int threads : {1, 2})
        for (const auto& cs : cases) {
            const double work = 2.0 * cs.m * cs.n * cs.k;
            const int reps = quick ? 5 : std::max(5, std::min(200, static_cast<int>(2e9 / work)));
            run<float>(cs, threads, threads == 1 ? peak1 : peak2, reps, "float32");
        }
    for (const auto& cs : std::vector<Case>{{"square", 512, 512, 512}, {"square", 1024, 1024, 1024}})
        run<double>(cs, 2, peak2 / 2, 5, "float64");
    return 0;
}
