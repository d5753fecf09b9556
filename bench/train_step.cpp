// Where a training step of the example CNN spends its time: forward and backward of each layer,
// the loss, the optimizer step, and the batch copy, for one batch of random Fashion-MNIST-sized
// inputs (medians over repetitions). JSON lines; the total is compared with a whole measured step.
//
//   bench_train_step [--batch N] [--threads N] [--reps R]

#include "bench_common.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace tt = tensortape;
namespace nn = tensortape::nn;

int main(int argc, char** argv) {
    std::int64_t batch = 64;
    int threads = tt::num_threads(), reps = 51;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!std::strcmp(argv[i], "--batch")) batch = std::atoll(argv[i + 1]);
        else if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
        else if (!std::strcmp(argv[i], "--reps")) reps = std::atoi(argv[i + 1]);
    }
    tt::set_num_threads(threads);
    tt::Generator gen(1);
    const tt::Conv2dOptions relu{.activation = tt::Activation::relu};
    nn::Sequential<float> model;
    model.add<nn::Conv2D>(1, 32, 3, relu, true, nn::Init::glorot_uniform, gen);
    model.add<nn::MaxPool2D>(2);
    model.add<nn::Conv2D>(32, 64, 3, relu, true, nn::Init::glorot_uniform, gen);
    model.add<nn::MaxPool2D>(2);
    model.add<nn::Flatten>();
    model.add<nn::Dense>(1600, 128, tt::Activation::relu, true, nn::Init::glorot_uniform, gen);
    model.add<nn::Dense>(128, 10, tt::Activation::none, true, nn::Init::glorot_uniform, gen);
    tt::optim::Adam<float> adam(model.parameters(), 1e-3);
    const auto x = tt::uniform<float>({batch, 1, 28, 28}, 0.f, 1.f, gen);
    auto labels = tt::Tensor<float>({batch});
    for (std::int64_t i = 0; i < batch; ++i) labels(i) = static_cast<float>(i % 10);
    const nn::SparseCategoricalCrossentropy<float> loss;

    // Inputs of every layer, from one forward pass.
    std::vector<tt::Tensor<float>> inputs{x};
    {
        tt::NoGradGuard ng;
        for (std::size_t l = 0; l < model.size(); ++l) inputs.push_back(model[l](tt::constant(inputs.back())).value());
    }
    double total = 0;
    for (std::size_t l = 0; l < model.size(); ++l) {
        // The first layer's input needs no gradient (it is data); every later one does.
        const bool input_grad = l > 0;
        const double fwd = bench::median_seconds(reps, [&] {
            tt::NoGradGuard ng;
            (void)model[l](tt::constant(inputs[l]));
        });
        const auto gy = tt::uniform<float>(inputs[l + 1].shape(), -1.f, 1.f, gen);
        const double fwd_bwd = bench::median_seconds(reps, [&] {
            model.zero_grad();
            auto in = tt::Var<float>(inputs[l], input_grad);
            if (!input_grad && model[l].parameters().empty()) return;
            tt::backward(model[l](in), gy);
        });
        total += fwd_bwd;
        std::printf("{\"bench\": \"train_step\", \"part\": \"%zu %s\", \"forward_ms\": %.3f, \"backward_ms\": %.3f}\n", l,
                    model[l].describe().c_str(), fwd * 1e3, (fwd_bwd - fwd) * 1e3);
    }
    auto logits = tt::param(inputs.back().clone());
    const double t_loss = bench::median_seconds(reps, [&] {
        logits.zero_grad();
        tt::backward(loss(logits, labels));
    });
    tt::backward(loss(model(tt::constant(x)), labels));  // gradients for every parameter
    const double t_opt = bench::median_seconds(reps, [&] { adam.step(); });
    std::printf("{\"bench\": \"train_step\", \"part\": \"loss fwd+bwd\", \"ms\": %.3f}\n{\"bench\": \"train_step\", \"part\": \"adam step\", \"ms\": %.3f}\n",
                t_loss * 1e3, t_opt * 1e3);
    const double whole = bench::median_seconds(reps, [&] {
        adam.zero_grad();
        tt::backward(loss(model(tt::constant(x)), labels));
        adam.step();
    });
    total += t_loss + t_opt;
    std::printf("{\"bench\": \"train_step\", \"batch\": %lld, \"threads\": %d, \"sum_of_parts_ms\": %.3f, \"whole_step_ms\": %.3f, "
                "\"examples_per_second\": %.0f}\n",
                static_cast<long long>(batch), threads, total * 1e3, whole * 1e3, double(batch) / whole);
    return 0;
}
