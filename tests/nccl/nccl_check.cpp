// Builds the NCCL communicator against the CUDA toolkit, and where a GPU is present runs the
// collectives on it with one rank per GPU (threads as bootstrap). Without a GPU it exits with
// 77, which ctest reports as skipped: the build itself is the check there.

#include <tensortape/dist/nccl.hpp>
#include <tensortape/dist/thread_group.hpp>

#include <cstdio>
#include <vector>

namespace dist = tensortape::dist;

int main() {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
        std::printf("no CUDA device: NCCL communicator compiled, not run\n");
        return 77;
    }
    int failures = 0;
    dist::run_replicas(devices, [&](dist::Communicator& boot) {
        dist::NcclCommunicator comm(boot, boot.rank());
        const int n = comm.size(), r = comm.rank();
        std::vector<float> x(1 << 20, float(r + 1));
        comm.all_reduce_sum(std::span<float>(x));
        if (x[12345] != float(n * (n + 1) / 2)) ++failures;
        std::vector<std::uint16_t> in(std::size_t(4 * n)), out(std::size_t(4 * n));
        for (int j = 0; j < 4 * n; ++j) in[std::size_t(j)] = std::uint16_t(100 * r + j / 4);
        comm.all_to_all(std::span<const std::uint16_t>(in), std::span<std::uint16_t>(out));
        for (int q = 0; q < n; ++q)
            if (out[std::size_t(4 * q)] != std::uint16_t(100 * q + r)) ++failures;
        std::vector<double> g(3, double(r)), all(std::size_t(3 * n));
        comm.all_gather(std::span<const double>(g), std::span<double>(all));
        for (int q = 0; q < n; ++q)
            if (all[std::size_t(3 * q)] != double(q)) ++failures;
        std::vector<float> b(100, float(r));
        comm.broadcast(std::span<float>(b), n - 1);
        if (b[0] != float(n - 1)) ++failures;
        comm.barrier();
    });
    std::printf("NCCL on %d GPU(s): %s\n", devices, failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
