#pragma once
// What the thread-replica tests and the MPI tests share: a small CNN, its data, one replica's
// data-parallel training, and the single-process reference that the deterministic mode must
// reproduce bit for bit: the same global batches, run as one micro-batch per rank, with the
// micro-batch gradients added in rank order.

#include <tensortape/tensortape.hpp>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace dptest {

namespace tt = tensortape;
namespace nn = tensortape::nn;

inline constexpr int classes = 5;

// Conv2D -> MaxPool2D -> Flatten -> Dense(relu) -> Dense: conv, GEMM, pooling and the loss all
// take part. `seed` sets the initial weights; replicas start from different ones on purpose.
inline std::unique_ptr<nn::Sequential<float>> make_model(std::uint64_t seed, std::int64_t hidden = 12) {
    tt::Generator gen(seed);
    auto m = std::make_unique<nn::Sequential<float>>();
    m->add<nn::Conv2D>(1, 3, 3, tt::Conv2dOptions{.activation = tt::Activation::relu}, true, nn::Init::glorot_uniform, gen);
    m->add<nn::MaxPool2D>(2);
    m->add<nn::Flatten>();
    m->add<nn::Dense>(27, hidden, tt::Activation::relu, true, nn::Init::glorot_uniform, gen);
    m->add<nn::Dense>(hidden, classes, tt::Activation::none, true, nn::Init::glorot_uniform, gen);
    return m;
}

// n images of 8x8 with labels in [0, classes).
inline tt::data::Dataset<float> make_data(std::int64_t n) {
    tt::Generator gen(99);
    auto x = tt::uniform<float>({n, 1, 8, 8}, -1.f, 1.f, gen);
    tt::Tensor<float> y({n});
    for (std::int64_t i = 0; i < n; ++i) y.data()[i] = static_cast<float>(gen.below(classes));
    return tt::data::Dataset<float>::make(x, y);
}

inline tt::Var<float> loss_of(nn::Module<float>& model, const tt::Tensor<float>& x, const tt::Tensor<float>& y) {
    return tt::nn::SparseCategoricalCrossentropy<float>{.from_logits = true}(model(tt::constant(x)), y);
}

inline std::vector<tt::Tensor<float>> values(const nn::Module<float>& model) {
    std::vector<tt::Tensor<float>> out;
    for (auto& [name, p] : model.named_parameters()) out.push_back(p.value().clone());
    return out;
}

inline bool bit_identical(const std::vector<tt::Tensor<float>>& a, const std::vector<tt::Tensor<float>>& b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (a[i].shape() != b[i].shape() || std::memcmp(a[i].data(), b[i].data(), sizeof(float) * std::size_t(a[i].numel())) != 0) return false;
    return true;
}

struct Run {
    int steps = 4;
    std::int64_t batch = 24;  // global
    std::int64_t examples = 96;
};

// One rank's data-parallel training; returns its final parameter values.
inline std::vector<tt::Tensor<float>> train_replica(tt::dist::Communicator& comm, tt::dist::DataParallelOptions o, Run run = {}) {
    auto model = make_model(100 + static_cast<std::uint64_t>(comm.rank()));
    tt::dist::DataParallel<float> dp(comm, model->named_parameters(), o);
    tt::optim::SGD<float> opt(model->parameters(), {.lr = 0.1, .momentum = 0.9});
    const auto data = make_data(run.examples);
    tt::data::DataLoader<float> loader(data, run.batch, true, 7, {comm.rank(), comm.size()});
    tt::Tensor<float> xb, yb;
    for (int step = 0; step < run.steps; ++step) {
        if (!loader.next(xb, yb)) loader.start_epoch(step), loader.next(xb, yb);
        opt.zero_grad();
        tt::backward(loss_of(*model, xb, yb));
        dp.synchronize();
        opt.step();
    }
    return values(*model);
}

// The same training in one process: each global batch as `ranks` micro-batches, gradients added
// in rank order and divided by the rank count, from rank 0's initial weights.
inline std::vector<tt::Tensor<float>> train_reference(int ranks, Run run = {}) {
    auto model = make_model(100);
    tt::optim::SGD<float> opt(model->parameters(), {.lr = 0.1, .momentum = 0.9});
    const auto data = make_data(run.examples);
    std::vector<std::unique_ptr<tt::data::DataLoader<float>>> loaders;
    for (int r = 0; r < ranks; ++r) loaders.push_back(std::make_unique<tt::data::DataLoader<float>>(data, run.batch, true, 7, tt::data::Shard{r, ranks}));
    const auto params = model->parameters();
    tt::Tensor<float> xb, yb;
    for (int step = 0; step < run.steps; ++step) {
        std::vector<tt::Tensor<float>> sum;
        for (int r = 0; r < ranks; ++r) {
            auto& loader = *loaders[static_cast<std::size_t>(r)];
            if (!loader.next(xb, yb)) loader.start_epoch(step), loader.next(xb, yb);
            opt.zero_grad();
            tt::backward(loss_of(*model, xb, yb));
            for (std::size_t i = 0; i < params.size(); ++i) {
                if (r == 0) {
                    sum.push_back(params[i].grad().clone());
                    continue;
                }
                float* acc = sum[i].data();
                const float* g = params[i].grad().data();
                for (std::int64_t j = 0; j < sum[i].numel(); ++j) acc[j] += g[j];
            }
        }
        for (std::size_t i = 0; i < params.size(); ++i) {
            float* acc = sum[i].data();
            for (std::int64_t j = 0; j < sum[i].numel(); ++j) acc[j] /= static_cast<float>(ranks);
            tt::Var<float>(params[i]).set_grad(sum[i]);
        }
        opt.step();
    }
    return values(*model);
}

}  // namespace dptest
