// All-reduce bus bandwidth: tensortape's reducer against raw MPI_Allreduce, in the same run.
//
//   mpirun -np 2 ./build/bench/bench_allreduce [--max-mib 64]
//
// One JSON line per message size (1 KiB to 64 MiB of float32), rank 0 prints. Bus bandwidth as
// nccl-tests defines it: bytes / time * 2(n-1)/n, which makes figures comparable across rank
// counts. Each repetition starts after a barrier and counts the slowest rank's time; variants are
// interleaved within a repetition, so a noisy moment hits all of them; medians are printed.
//   raw       MPI_Allreduce(MPI_IN_PLACE, ..., MPI_SUM) on a float buffer
//   comm      MpiCommunicator::all_reduce_sum: the same call from the progress thread, which is
//             what a gradient bucket goes through (the ratio target applies to this one)
//   sync      DataParallel::synchronize() for one parameter of that size: the bucket packing
//             (copy with the 1/n scale) plus the reduction; what a training step waits for
//             when nothing overlaps
//   det       the same in deterministic mode (all-to-all, rank-ordered sum, all-gather)
//   bf16      the same with bf16 compression and error feedback

#if TENSORTAPE_HAS_MPI

#include <tensortape/dist/mpi.hpp>
#include <tensortape/tensortape.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace tt = tensortape;
namespace dist = tensortape::dist;

namespace {

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
    dist::MpiCommunicator comm(MPI_COMM_WORLD, &argc, &argv);
    std::size_t max_mib = 64;
    for (int i = 1; i + 1 < argc; ++i)
        if (std::strcmp(argv[i], "--max-mib") == 0) max_mib = static_cast<std::size_t>(std::atoll(argv[i + 1]));
    tt::set_num_threads(1);
    const int n = comm.size();
    const double bus = n > 1 ? 2.0 * (n - 1) / n : 1.0;

    for (std::size_t bytes = 1024; bytes <= max_mib << 20; bytes *= 4) {
        const std::size_t count = bytes / sizeof(float);
        std::vector<float> raw(count, 1.f), via(count, 1.f);
        auto grad = tt::full<float>({static_cast<std::int64_t>(count)}, 1.f);

        struct Variant {
            const char* name;
            std::function<void()> run;
            std::vector<double> seconds;
        };
        std::vector<Variant> variants;
        variants.push_back({"raw", [&] { MPI_Allreduce(MPI_IN_PLACE, raw.data(), static_cast<int>(count), MPI_FLOAT, MPI_SUM, comm.handle()); }, {}});
        variants.push_back({"comm", [&] { comm.all_reduce_sum(std::span<float>(via)); }, {}});
        // One reducer per mode, each over its own parameter; a bucket as large as the message.
        std::vector<tt::Var<float>> params;
        std::vector<std::unique_ptr<dist::DataParallel<float>>> reducers;
        const std::pair<const char*, dist::DataParallelOptions> modes[] = {
            {"sync", {}}, {"det", {.deterministic = true}}, {"bf16", {.compression = dist::Compression::bf16}}};
        for (const auto& [name, options] : modes) {
            auto o = options;
            o.bucket_bytes = o.first_bucket_bytes = bytes;
            params.push_back(tt::param(tt::zeros<float>({static_cast<std::int64_t>(count)})));
            reducers.push_back(std::make_unique<dist::DataParallel<float>>(comm, std::vector{std::pair{std::string("w"), params.back()}}, o));
            auto* dp = reducers.back().get();
            tt::Var<float> p = params.back();
            variants.push_back({name, [dp, p, &grad]() mutable {
                                    p.set_grad(grad);  // as backward leaves it: a separate tensor, packed by synchronize
                                    dp->synchronize();
                                },
                                {}});
        }

        const int reps = static_cast<int>(std::clamp<std::size_t>((std::size_t{256} << 20) / (bytes * 4), 5, 200));
        for (int rep = -2; rep < reps; ++rep) {  // two warm-up rounds
            for (auto& v : variants) {
                MPI_Barrier(comm.handle());
                const double t0 = MPI_Wtime();
                v.run();
                double t = MPI_Wtime() - t0;
                MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, comm.handle());
                if (rep >= 0) v.seconds.push_back(t);
            }
        }
        if (comm.rank() != 0) continue;
        const double raw_s = median(variants[0].seconds);
        std::printf("{\"bench\": \"allreduce\", \"ranks\": %d, \"bytes\": %zu, \"reps\": %d", n, bytes, reps);
        for (auto& v : variants) {
            const double s = median(v.seconds);
            std::printf(", \"%s_us\": %.2f, \"%s_busbw_gbs\": %.3f", v.name, s * 1e6, v.name, double(bytes) / s * bus / 1e9);
        }
        std::printf(", \"comm_vs_raw\": %.3f, \"sync_vs_raw\": %.3f}\n", raw_s / median(variants[1].seconds), raw_s / median(variants[2].seconds));
        std::fflush(stdout);
    }
    return 0;
}

#else

#include <cstdio>

int main() {
    std::printf("{\"bench\": \"allreduce\", \"skipped\": \"built without MPI (install libopenmpi-dev and reconfigure)\"}\n");
    return 0;
}

#endif
