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

// GFLOP/s of ours and of OpenBLAS for one case: two separate phases, each a median over a
// window of about a quarter second. Our pool and OpenBLAS's workers both spin a while after a
// call, so measuring them alternately would have each run beside the other's spinning threads.
struct Figures {
    double ours = 0, blas = 0;
};

template <class T>
struct Operands {
    tt::Tensor<T> a, b, c;
    explicit Operands(const Case& cs) {
        tt::Generator gen(1);
        a = tt::uniform<T>({cs.m, cs.k}, T(-1), T(1), gen);
        b = tt::uniform<T>({cs.k, cs.n}, T(-1), T(1), gen);
        c = tt::zeros<T>({cs.m, cs.n});
    }
};

inline int reps_for(const Case& cs, bool quick) {
    const double work = 2.0 * cs.m * cs.n * cs.k;
    return quick ? 5 : std::max(5, std::min(2000, static_cast<int>(5e10 / work)));
}

template <class T>
double ours_gflops(const Case& cs, int reps) {
    Operands<T> o(cs);
    auto f = [&] { tt::cpu::gemm<T>(false, false, cs.m, cs.n, cs.k, T(1), o.a.data(), cs.k, o.b.data(), cs.n, T(0), o.c.data(), cs.n); };
    f();
    return 2.0 * cs.m * cs.n * cs.k / bench::median_seconds(reps, f) / 1e9;
}

template <class T>
double blas_gflops([[maybe_unused]] const Case& cs, [[maybe_unused]] int reps) {
#ifdef TENSORTAPE_BENCH_OPENBLAS
    Operands<T> o(cs);
    auto f = [&] {
        if constexpr (std::is_same_v<T, float>)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cs.m, cs.n, cs.k, 1.f, o.a.data(), cs.k, o.b.data(), cs.n, 0.f, o.c.data(), cs.n);
        else
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cs.m, cs.n, cs.k, 1.0, o.a.data(), cs.k, o.b.data(), cs.n, 0.0, o.c.data(), cs.n);
    };
    f();
    return 2.0 * cs.m * cs.n * cs.k / bench::median_seconds(reps, f) / 1e9;
#else
    return 0;
#endif
}

// Parks OpenBLAS's workers: one thread, and time for the spinning ones to fall asleep.
inline void quiet_openblas() {
#ifdef TENSORTAPE_BENCH_OPENBLAS
    openblas_set_num_threads(1);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
#endif
}

template <class T>
void run_all(const std::vector<Case>& cases, int threads, double peak, bool quick, const char* dtype) {
    std::vector<Figures> figs(cases.size());
    quiet_openblas();
    tt::set_num_threads(threads);
    for (std::size_t i = 0; i < cases.size(); ++i) figs[i].ours = ours_gflops<T>(cases[i], reps_for(cases[i], quick));
    tt::set_num_threads(1);
#ifdef TENSORTAPE_BENCH_OPENBLAS
    openblas_set_num_threads(threads);
#endif
    for (std::size_t i = 0; i < cases.size(); ++i) figs[i].blas = blas_gflops<T>(cases[i], reps_for(cases[i], quick));
    quiet_openblas();
    for (std::size_t i = 0; i < cases.size(); ++i) {
        const Case& cs = cases[i];
        const double g_ours = figs[i].ours, g_blas = figs[i].blas;
        std::printf("{\"bench\": \"gemm\", \"case\": \"%s\", \"dtype\": \"%s\", \"m\": %d, \"n\": %d, \"k\": %d, \"threads\": %d, "
                    "\"tensortape_gflops\": %.1f, \"openblas_gflops\": %.1f, \"ratio_vs_openblas\": %.3f, \"fraction_of_peak\": %.3f}\n",
                    cs.name, dtype, cs.m, cs.n, cs.k, threads, g_ours, g_blas, g_blas > 0 ? g_ours / g_blas : 0.0, g_ours / peak);
    }
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
    for (int threads : {1, 2}) run_all<float>(cases, threads, threads == 1 ? peak1 : peak2, quick, "float32");
    run_all<double>({{"square", 512, 512, 512}, {"square", 1024, 1024, 1024}}, 2, peak2 / 2, quick, "float64");
    return 0;
}
