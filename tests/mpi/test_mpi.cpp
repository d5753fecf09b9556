// The data-parallel checks over MPI. ctest runs this program under mpiexec with 1, 2, 3 and 4
// ranks (tests/CMakeLists.txt); every rank runs every test case, and a failure on any rank fails
// the run.

#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <tensortape/dist/mpi.hpp>

#include "dist/dp_common.hpp"

#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace tt = tensortape;
namespace dist = tensortape::dist;

namespace {
dist::MpiCommunicator* world = nullptr;
}

TEST_CASE("mpi: all_reduce_sum and _average, broadcast, all_gather, all_to_all") {
    dist::Communicator& comm = *world;
    const int n = comm.size(), r = comm.rank();
    for (std::size_t count : {std::size_t{0}, std::size_t{1}, std::size_t{1031}, std::size_t{100000}}) {
        std::vector<double> x(count);
        for (std::size_t i = 0; i < count; ++i) x[i] = double(i % 7) + r;
        comm.all_reduce_sum(std::span<double>(x));
        for (std::size_t i = 0; i < count; ++i) REQUIRE(x[i] == double(n) * double(i % 7) + n * (n - 1) / 2);
    }
    std::vector<double> mean(9, double(r));
    comm.all_reduce_average(std::span<double>(mean));
    CHECK(mean[8] == double(n - 1) / 2);
    for (int root = 0; root < n; ++root) {
        std::vector<float> b(100, float(r));
        comm.broadcast(std::span<float>(b), root);
        CHECK(b[99] == float(root));
    }
    std::vector<std::int64_t> mine{r, -r}, all(std::size_t(2 * n));
    comm.all_gather(std::span<const std::int64_t>(mine), std::span<std::int64_t>(all));
    for (int q = 0; q < n; ++q) CHECK(all[std::size_t(2 * q + 1)] == -q);
    const auto parts = static_cast<std::size_t>(n);
    std::vector<std::uint16_t> in(parts), out(parts);
    for (int j = 0; j < n; ++j) in[std::size_t(j)] = std::uint16_t(100 * r + j);
    comm.all_to_all(std::span<const std::uint16_t>(in), std::span<std::uint16_t>(out));
    for (int q = 0; q < n; ++q) CHECK(out[std::size_t(q)] == std::uint16_t(100 * q + r));
    comm.barrier();
}

TEST_CASE("mpi: deterministic DataParallel is bit-identical to one process summing micro-batches in rank order") {
    const auto mine = dptest::train_replica(*world, {.bucket_bytes = 512, .first_bucket_bytes = 256, .deterministic = true});
    CHECK(dptest::bit_identical(mine, dptest::train_reference(world->size())));
    // And with the defaults (MPI_Allreduce, one bucket): the replicas agree with each other.
    const auto fast = dptest::train_replica(*world, {});
    std::vector<float> first(static_cast<std::size_t>(fast.back().numel()));
    std::copy(fast.back().data(), fast.back().data() + fast.back().numel(), first.begin());
    world->broadcast(std::span<float>(first), 0);
    CHECK(std::equal(first.begin(), first.end(), fast.back().data()));
}

TEST_CASE("mpi: compressed buckets average within bf16 precision") {
    const auto exact = dptest::train_replica(*world, {.deterministic = true}, {.steps = 1});
    const auto packed = dptest::train_replica(*world, {.compression = dist::Compression::bf16}, {.steps = 1});
    for (std::size_t i = 0; i < exact.size(); ++i)
        for (std::int64_t j = 0; j < exact[i].numel(); ++j) CHECK(packed[i].data()[j] == doctest::Approx(exact[i].data()[j]).epsilon(0.02).scale(0.05));
}

TEST_CASE("mpi: parameter lists that differ across ranks are an error on every rank") {
    if (world->size() < 2) return;
    auto model = dptest::make_model(1, world->rank() == world->size() - 1 ? 11 : 12);
    try {
        dist::DataParallel<float> dp(*world, model->named_parameters());
        FAIL("no error");
    } catch (const dist::dist_error& e) {
        INFO(e.what());
        CHECK(std::string(e.what()).find("'3.weight' [11, 27] float32 on rank " + std::to_string(world->size() - 1)) != std::string::npos);
    }
}

TEST_CASE("mpi: a stalled rank is a timeout naming the collective, and the run goes on once it catches up") {
    if (world->size() < 2) return;
    std::vector<float> x(64, 1.f);
    if (world->rank() == 1) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1500));
        world->all_reduce_sum(std::span<float>(x));
    } else {
        world->set_timeout(0.3);
        try {
            world->all_reduce_sum(std::span<float>(x));
            FAIL("no timeout");
        } catch (const dist::dist_error& e) {
            INFO(e.what());
            CHECK(std::string(e.what()).find("all_reduce of 64 float32") != std::string::npos);
        }
        world->set_timeout(120);
    }
    world->barrier();  // queued behind the late all_reduce, which completes first
    CHECK(x[0] == float(world->size()));
}

int main(int argc, char** argv) {
    dist::MpiCommunicator comm(MPI_COMM_WORLD, &argc, &argv);
    comm.set_timeout(120);
    world = &comm;
    doctest::Context context(argc, argv);
    const int failed = context.run() != 0 ? 1 : 0;
    // Every rank leaves with the same verdict, so mpiexec reports a failure on any rank.
    std::int64_t any = failed;
    comm.all_reduce_sum(std::span<std::int64_t>(&any, 1));
    return any ? 1 : 0;
}
