// Communicators over threads, compression, the gradient reducer and data-parallel fit, with 1 to
// 4 replicas in one process. The MPI versions of the same checks are in tests/mpi/.

#include "dist/dp_common.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

namespace tt = tensortape;
namespace dist = tensortape::dist;

namespace {

// Runs f(comm) on every rank and returns what each rank's f threw (empty when nothing).
template <class F>
std::vector<std::string> errors_of(int n, F f, double timeout = 30) {
    std::vector<std::string> out(static_cast<std::size_t>(n));
    dist::run_replicas(
        n,
        [&](dist::Communicator& comm) {
            try {
                f(comm);
            } catch (const std::exception& e) {
                out[static_cast<std::size_t>(comm.rank())] = e.what();
            }
        },
        timeout);
    return out;
}

}  // namespace

TEST_CASE("threads: all_reduce_sum and _average, broadcast, all_gather, all_to_all for 1 to 4 ranks") {
    for (int n = 1; n <= 4; ++n) {
        CAPTURE(n);
        std::atomic<int> failures{0};
        dist::run_replicas(n, [&](dist::Communicator& comm) {
            const int r = comm.rank();
            for (std::size_t count : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{1031}, std::size_t{5000}}) {
                std::vector<float> f(count);
                std::vector<std::int64_t> k(count);
                for (std::size_t i = 0; i < count; ++i) f[i] = float(i % 13) + 0.25f * float(r), k[i] = std::int64_t(i) * (r + 1);
                comm.all_reduce_sum(std::span<float>(f));
                comm.all_reduce_sum(std::span<std::int64_t>(k));
                for (std::size_t i = 0; i < count; ++i) {
                    const float want = float(n) * float(i % 13) + 0.25f * float(n * (n - 1) / 2);
                    if (f[i] != want || k[i] != std::int64_t(i) * n * (n + 1) / 2) ++failures;
                }
            }
            std::vector<double> mean(5, double(r));
            comm.all_reduce_average(std::span<double>(mean));
            for (double v : mean) failures += v != double(n - 1) / 2;
            for (int root = 0; root < n; ++root) {
                std::vector<double> b(300, double(r));
                comm.broadcast(std::span<double>(b), root);
                for (double v : b) failures += v != double(root);
            }
            std::vector<std::int64_t> mine{r, 10 * r}, all(std::size_t(2 * n));
            comm.all_gather(std::span<const std::int64_t>(mine), std::span<std::int64_t>(all));
            for (int q = 0; q < n; ++q) failures += all[std::size_t(2 * q)] != q || all[std::size_t(2 * q + 1)] != 10 * q;
            // Part j of rank r's input is 100 * r + j; rank r receives 100 * q + r from each q.
            std::vector<std::uint16_t> in(std::size_t(3 * n)), out(std::size_t(3 * n));
            for (int j = 0; j < n; ++j)
                for (int e = 0; e < 3; ++e) in[std::size_t(3 * j + e)] = std::uint16_t(100 * r + j);
            comm.all_to_all(std::span<const std::uint16_t>(in), std::span<std::uint16_t>(out));
            for (int q = 0; q < n; ++q)
                for (int e = 0; e < 3; ++e) failures += out[std::size_t(3 * q + e)] != std::uint16_t(100 * q + r);
            comm.barrier();
        });
        CHECK(failures == 0);
    }
}

TEST_CASE("threads: asynchronous work runs in submission order while the caller goes on") {
    dist::run_replicas(2, [&](dist::Communicator& comm) {
        std::vector<float> a(1000, 1.f), b(1000, 2.f);
        std::vector<int> order;
        dist::Work wa = comm.submit("a", [&] { comm.all_reduce_sum(std::span<float>(a)), order.push_back(1); });
        dist::Work wb = comm.submit("b", [&] { comm.all_reduce_sum(std::span<float>(b)), order.push_back(2); });
        wb.wait();
        CHECK(wa.done());
        CHECK(order == std::vector<int>{1, 2});
        CHECK(a[999] == 2.f);
        CHECK(b[0] == 4.f);
    });
}

TEST_CASE("threads: ranks that call different collectives all get an error naming both calls") {
    const auto errors = errors_of(3, [](dist::Communicator& comm) {
        std::vector<float> x(16, 1.f);
        if (comm.rank() == 2) comm.broadcast(std::span<float>(x), 0);
        else comm.all_reduce_sum(std::span<float>(x));
    });
    for (const auto& e : errors) {
        CHECK(e.find("rank 0 called all_reduce of 16 float32") != std::string::npos);
        CHECK(e.find("rank 2 called broadcast of 16 float32") != std::string::npos);
    }
}

TEST_CASE("threads: a stalled rank is a timeout error naming the collective and the missing rank") {
    const auto errors = errors_of(
        2,
        [](dist::Communicator& comm) {
            std::vector<float> x(256, 1.f);
            if (comm.rank() == 1) std::this_thread::sleep_for(std::chrono::milliseconds(600));
            comm.all_reduce_sum(std::span<float>(x));
        },
        0.2);
    INFO(errors[0]);
    CHECK(errors[0].find("timeout") != std::string::npos);
    CHECK(errors[0].find("all_reduce of 256 float32") != std::string::npos);
    CHECK(errors[0].find("rank 1 has not joined") != std::string::npos);
    // The late rank finds the group aborted instead of waiting forever.
    CHECK(errors[1].find("aborted") != std::string::npos);
}

TEST_CASE("run_replicas: a replica that throws stops the others and its error is the one rethrown") {
    try {
        dist::run_replicas(3, [](dist::Communicator& comm) {
            std::vector<float> x(8, 1.f);
            if (comm.rank() == 1) throw tt::value_error("tensortape: replica: rank 1 broke");
            comm.all_reduce_sum(std::span<float>(x));
        });
        FAIL("no error");
    } catch (const tt::error& e) {
        CHECK(std::string(e.what()) == "tensortape: replica: rank 1 broke");
    }
}

TEST_CASE("compression: bf16 and fp16 round to nearest even") {
    using dist::from_bf16, dist::from_fp16, dist::to_bf16, dist::to_fp16;
    CHECK(to_fp16(1.f) == 0x3c00);
    CHECK(to_fp16(-2.f) == 0xc000);
    CHECK(to_fp16(65504.f) == 0x7bff);
    CHECK(to_fp16(65520.f) == 0x7c00);  // the first value that rounds to infinity
    CHECK(to_fp16(65519.f) == 0x7bff);
    CHECK(to_fp16(0x1p-24f) == 0x0001);  // smallest subnormal
    CHECK(to_fp16(0x1p-25f) == 0x0000);  // ties to even: zero
    CHECK(to_fp16(0x1.8p-25f) == 0x0001);
    CHECK(to_fp16(0x1p-14f) == 0x0400);  // smallest normal
    CHECK(to_fp16(0.1f) == 0x2e66);
    CHECK(to_fp16(1.f + 0x1p-11f) == 0x3c00);  // tie between 1 and 1+2^-10: even is 1
    CHECK(to_fp16(1.f + 0x1.8p-11f) == 0x3c01);
    CHECK(std::isnan(from_fp16(to_fp16(std::nanf("")))));
    CHECK(to_bf16(1.f) == 0x3f80);
    CHECK(to_bf16(1.f + 0x1p-8f) == 0x3f80);  // tie: even
    CHECK(to_bf16(1.f + 0x1.8p-8f) == 0x3f81);
    CHECK(std::isnan(from_bf16(to_bf16(std::nanf("")))));
    tt::Generator gen(5);
    for (int i = 0; i < 20000; ++i) {
        const float x = float(gen.uniform() * 2 - 1) * std::ldexp(1.f, int(gen.below(30)) - 14);
        CHECK(std::fabs(from_fp16(to_fp16(x)) - x) <= std::fabs(x) * 0x1p-11f + 0x1p-25f);
        CHECK(std::fabs(from_bf16(to_bf16(x)) - x) <= std::fabs(x) * 0x1p-8f);
    }
}

TEST_CASE("compression: error feedback keeps the running sum of what was sent close to the true sum") {
    const std::size_t n = 64;
    std::vector<float> g(n), residual(n, 0.f), sent_sum(n, 0.f), true_sum(n, 0.f);
    std::vector<std::uint16_t> q(n);
    tt::Generator gen(3);
    for (int step = 0; step < 500; ++step) {
        for (std::size_t i = 0; i < n; ++i) g[i] = 1e-3f * float(1.0 + gen.uniform()), true_sum[i] += g[i];
        dist::compress_with_feedback(dist::Compression::bf16, g.data(), residual.data(), q.data(), n);
        for (std::size_t i = 0; i < n; ++i) sent_sum[i] += dist::from_bf16(q[i]);
    }
    for (std::size_t i = 0; i < n; ++i) CHECK(std::fabs(sent_sum[i] - true_sum[i]) <= 1e-5f + 1e-4f * true_sum[i]);
}

TEST_CASE("DataParallel: rank 0's parameters reach every rank and gradients are averaged, 1 to 4 ranks") {
    for (int n = 1; n <= 4; ++n) {
        CAPTURE(n);
        std::vector<std::vector<tt::Tensor<float>>> grads(static_cast<std::size_t>(n)), params(static_cast<std::size_t>(n));
        std::vector<std::size_t> buckets(static_cast<std::size_t>(n));
        const auto data = dptest::make_data(40);
        dist::run_replicas(n, [&](dist::Communicator& comm) {
            const auto r = static_cast<std::size_t>(comm.rank());
            auto model = dptest::make_model(10 + r);
            // Tiny buckets: several of them, reduced while backward runs.
            dist::DataParallel<float> dp(comm, model->named_parameters(), {.bucket_bytes = 400, .first_bucket_bytes = 200});
            buckets[r] = dp.bucket_plan().size();
            params[r] = dptest::values(*model);
            const auto part = data.slice(std::int64_t(r) * 10, std::int64_t(r) * 10 + 10);
            tt::backward(dptest::loss_of(*model, part.x, part.y));
            dp.synchronize();
            for (auto& [name, p] : model->named_parameters()) grads[r].push_back(p.grad().clone());
        });
        // Rank 0's model, run on each rank's part, averaged: what every rank must hold.
        auto model = dptest::make_model(10);
        CHECK(dptest::bit_identical(params[0], dptest::values(*model)));
        const auto ps = model->parameters();
        std::vector<tt::Tensor<double>> expected;
        for (auto& p : ps) expected.push_back(tt::zeros<double>(p.shape()));
        for (int r = 0; r < n; ++r) {
            const auto part = data.slice(r * 10, r * 10 + 10);
            model->zero_grad();
            tt::backward(dptest::loss_of(*model, part.x, part.y));
            for (std::size_t i = 0; i < ps.size(); ++i)
                for (std::int64_t j = 0; j < ps[i].numel(); ++j) expected[i].data()[j] += double(ps[i].grad().data()[j]) / n;
        }
        CHECK(buckets[0] >= 4);
        for (int r = 0; r < n; ++r) {
            CHECK(dptest::bit_identical(params[std::size_t(r)], params[0]));
            CHECK(dptest::bit_identical(grads[std::size_t(r)], grads[0]));
            for (std::size_t i = 0; i < ps.size(); ++i)
                for (std::int64_t j = 0; j < ps[i].numel(); ++j)
                    CHECK(grads[std::size_t(r)][i].data()[j] == doctest::Approx(expected[i].data()[j]).epsilon(1e-5));
        }
    }
}

TEST_CASE("DataParallel: deterministic mode is bit-identical to one process summing micro-batches in rank order") {
    for (int n = 1; n <= 4; ++n) {
        CAPTURE(n);
        const auto reference = dptest::train_reference(n);
        for (bool deterministic : {true, false}) {
            CAPTURE(deterministic);
            std::vector<std::vector<tt::Tensor<float>>> out(static_cast<std::size_t>(n));
            dist::run_replicas(n, [&](dist::Communicator& comm) {
                out[static_cast<std::size_t>(comm.rank())] =
                    dptest::train_replica(comm, {.bucket_bytes = 512, .first_bucket_bytes = 256, .deterministic = deterministic});
            });
            // The default mode divides before summing (like DDP), so only the deterministic mode
            // promises the reference's bits; in both, the replicas stay identical.
            for (int r = 0; r < n; ++r) {
                if (deterministic) CHECK(dptest::bit_identical(out[std::size_t(r)], reference));
                CHECK(dptest::bit_identical(out[std::size_t(r)], out[0]));
            }
        }
    }
    // The reference is not trivially equal to everything: other rank counts give other bits.
    CHECK_FALSE(dptest::bit_identical(dptest::train_reference(2), dptest::train_reference(3)));
}

TEST_CASE("DataParallel: parameter lists that differ across ranks are an error on every rank naming the parameter") {
    const auto errors = errors_of(3, [](dist::Communicator& comm) {
        auto model = dptest::make_model(1, comm.rank() == 2 ? 13 : 12);
        dist::DataParallel<float> dp(comm, model->named_parameters());
    });
    for (const auto& e : errors) {
        INFO(e);
        CHECK(e.find("parameter lists differ") != std::string::npos);
        CHECK(e.find("parameter 2 is '3.weight' [13, 27] float32 on rank 2 but '3.weight' [12, 27] float32 on rank 0") != std::string::npos);
    }
    const auto option_errors = errors_of(2, [](dist::Communicator& comm) {
        auto model = dptest::make_model(1);
        dist::DataParallel<float> dp(comm, model->named_parameters(), {.deterministic = comm.rank() == 1});
    });
    for (const auto& e : option_errors) CHECK(e.find("ranks were set up differently") != std::string::npos);
}

TEST_CASE("DataParallel: a parameter without a gradient is an error naming it, unless declared may_be_unused") {
    auto run = [](dist::DataParallelOptions o) {
        return errors_of(2, [o](dist::Communicator& comm) {
            auto model = dptest::make_model(1);
            auto extra = tt::param(tt::ones<float>({3}));
            auto named = model->named_parameters();
            named.emplace_back("extra", extra);
            dist::DataParallel<float> dp(comm, named, o);
            const auto data = dptest::make_data(4);
            tt::backward(dptest::loss_of(*model, data.x, data.y));
            dp.synchronize();
            CHECK(extra.has_grad());
            CHECK(extra.grad().data()[0] == 0.f);
        });
    };
    for (const auto& e : run({})) CHECK(e.find("parameter 'extra' got no gradient in this step") != std::string::npos);
    for (const auto& e : run({.may_be_unused = {"extra"}})) CHECK(e.empty());
}

TEST_CASE("DataParallel: no_sync accumulates micro-batches and the next synchronize reduces their sum") {
    std::vector<std::vector<tt::Tensor<float>>> grads(2);
    const auto data = dptest::make_data(16);
    dist::run_replicas(2, [&](dist::Communicator& comm) {
        const auto r = comm.rank();
        auto model = dptest::make_model(4);
        dist::DataParallel<float> dp(comm, model->named_parameters());
        {
            auto guard = dp.no_sync();
            tt::backward(dptest::loss_of(*model, data.x.slice(0, 4 * r, 4 * r + 4), data.y.slice(0, 4 * r, 4 * r + 4)));
        }
        tt::backward(dptest::loss_of(*model, data.x.slice(0, 8 + 4 * r, 12 + 4 * r), data.y.slice(0, 8 + 4 * r, 12 + 4 * r)));
        dp.synchronize();
        for (auto& p : model->parameters()) grads[std::size_t(r)].push_back(p.grad().clone());
        // A second backward without synchronize in between is refused, not silently summed.
        tt::backward(dptest::loss_of(*model, data.x.slice(0, 0, 4), data.y.slice(0, 0, 4)));
        CHECK_THROWS_WITH_AS(tt::backward(dptest::loss_of(*model, data.x.slice(0, 0, 4), data.y.slice(0, 0, 4))),
                             doctest::Contains("received a second gradient before synchronize()"), dist::dist_error);
        dp.synchronize();
    });
    auto model = dptest::make_model(4);
    for (int q = 0; q < 4; ++q) tt::backward(dptest::loss_of(*model, data.x.slice(0, 4 * q, 4 * q + 4), data.y.slice(0, 4 * q, 4 * q + 4)));
    const auto ps = model->parameters();
    for (std::size_t i = 0; i < ps.size(); ++i)
        for (std::int64_t j = 0; j < ps[i].numel(); ++j) CHECK(grads[0][i].data()[j] == doctest::Approx(ps[i].grad().data()[j] / 2).epsilon(1e-5));
    CHECK(dptest::bit_identical(grads[0], grads[1]));
}

TEST_CASE("DataParallel: bf16 and fp16 compression average within their precision") {
    for (auto c : {dist::Compression::bf16, dist::Compression::fp16}) {
        std::vector<std::vector<tt::Tensor<float>>> grads(3), exact(3);
        const auto data = dptest::make_data(30);
        for (int pass = 0; pass < 2; ++pass)
            dist::run_replicas(3, [&](dist::Communicator& comm) {
                const auto r = comm.rank();
                auto model = dptest::make_model(6);
                dist::DataParallel<float> dp(comm, model->named_parameters(), {.compression = pass ? c : dist::Compression::none});
                tt::backward(dptest::loss_of(*model, data.x.slice(0, 10 * r, 10 * r + 10), data.y.slice(0, 10 * r, 10 * r + 10)));
                dp.synchronize();
                for (auto& p : model->parameters()) (pass ? grads : exact)[std::size_t(r)].push_back(p.grad().clone());
            });
        const float tol = c == dist::Compression::bf16 ? 0x1p-7f : 0x1p-10f;
        for (std::size_t i = 0; i < exact[0].size(); ++i) {
            float scale = 0;
            for (std::int64_t j = 0; j < exact[0][i].numel(); ++j) scale = std::max(scale, std::fabs(exact[0][i].data()[j]));
            for (std::int64_t j = 0; j < exact[0][i].numel(); ++j) CHECK(std::fabs(grads[1][i].data()[j] - exact[0][i].data()[j]) <= 2 * tol * scale);
        }
        CHECK(dptest::bit_identical(grads[0], grads[2]));
    }
}

TEST_CASE("DataLoader with a Shard: the ranks' parts of each batch are the single-process batch, in rank order") {
    const auto data = dptest::make_data(23);
    tt::data::DataLoader<float> whole(data, 8, true, 11);
    std::vector<std::unique_ptr<tt::data::DataLoader<float>>> parts;
    for (int r = 0; r < 3; ++r) parts.push_back(std::make_unique<tt::data::DataLoader<float>>(data, 8, true, 11, tt::data::Shard{r, 3}));
    CHECK(parts[0]->batches() == 3);  // 8 + 8 + 7: the short batch still has a row for every rank
    tt::Tensor<float> x, y, xr, yr;
    int batches = 0;
    while (whole.next(x, y)) {
        std::vector<tt::Tensor<float>> pieces;
        for (auto& p : parts) {
            REQUIRE(p->next(xr, yr));
            CHECK(p->global_batch_rows() == x.shape()[0]);
            pieces.push_back(yr.clone());
        }
        const auto joined = tt::concatenate<float>(std::span<const tt::Tensor<float>>(pieces), 0);
        CHECK(std::memcmp(joined.data(), y.data(), sizeof(float) * std::size_t(y.numel())) == 0);
        ++batches;
    }
    CHECK(batches == 3);
    for (auto& p : parts) CHECK_FALSE(p->next(xr, yr));
    // 22 examples in batches of 8 leave 6; over 4 ranks fine, but 2 rows over 3 ranks are dropped.
    CHECK(tt::data::DataLoader<float>(data.slice(0, 18), 8, false, 0, {0, 3}).batches() == 2);
    CHECK_THROWS_WITH_AS(tt::data::DataLoader<float>(data, 2, false, 0, {0, 3}), doctest::Contains("cannot be shared by 3 ranks"), tt::value_error);
}

TEST_CASE("fit with DataParallel over 2 replicas: identical replicas, one history, rank 0 prints") {
    const auto data = dptest::make_data(96);
    std::vector<std::vector<tt::Tensor<float>>> out(2);
    std::vector<tt::train::History> histories(2);
    std::vector<std::string> printed(2);
    dist::run_replicas(2, [&](dist::Communicator& comm) {
        const auto r = static_cast<std::size_t>(comm.rank());
        auto model = dptest::make_model(20 + r);
        dist::DataParallel<float> dp(comm, model->named_parameters());
        tt::optim::Adam<float> opt(model->parameters(), 1e-2);
        std::ostringstream os;
        tt::train::FitOptions<float> o{.epochs = 3, .batch_size = 16, .validation_split = 0.25, .seed = 1, .terminal = false, .out = &os};
        o.data_parallel = &dp;
        histories[r] = tt::train::fit(*model, opt, tt::nn::Loss<float>(tt::nn::SparseCategoricalCrossentropy<float>{.from_logits = true}), data, o);
        out[r] = dptest::values(*model);
        printed[r] = os.str();
    });
    CHECK(dptest::bit_identical(out[0], out[1]));
    REQUIRE(histories[0].epochs.size() == 3);
    for (std::size_t e = 0; e < 3; ++e) {
        CHECK(histories[0].epochs[e].at("loss") == histories[1].epochs[e].at("loss"));
        CHECK(histories[0].epochs[e].at("val_loss") == histories[1].epochs[e].at("val_loss"));
    }
    CHECK(histories[0].epochs[2].at("loss") < histories[0].epochs[0].at("loss"));
    CHECK(printed[0].find("val_loss") != std::string::npos);
    CHECK(printed[1].empty());
}
