// The seed's Keras CNN, in C++, on Fashion-MNIST (28x28 grey images of 10 kinds of clothing):
//   Conv2D(32, 3x3, relu) -> MaxPool(2) -> Conv2D(64, 3x3, relu) -> MaxPool(2) -> Flatten
//   -> Dense(128, relu) -> Dense(10)
// trained with Adam (lr 1e-3), batch 64, 80/20 train/validation split, EarlyStopping(patience 3,
// restore best weights), then evaluated on the 10,000 test images.
//
//   fashion_mnist_cnn [--data DIR] [--epochs N] [--batch N] [--threads N] [--limit N] [--seed S]
//                     [--save FILE] [--json FILE]
//
// --data defaults to the folder the Debian package dataset-fashion-mnist installs; the original
// MNIST digit files work as well. --limit uses only the first N training images.

#include "fashion_cnn.hpp"

#include <cstdio>
#include <string>

namespace tt = tensortape;
namespace nn = tensortape::nn;

int main(int argc, char** argv) {
    const example::Args args = example::parse(argc, argv, "fashion_mnist_cnn", "Trains the seed's CNN on Fashion-MNIST.", false);
    if (args.threads > 0) tt::set_num_threads(args.threads);
    try {
        auto mnist = tt::data::load_mnist<float>(args.data);
        auto train = mnist.train;
        if (args.limit > 0 && args.limit < train.size()) train = train.slice(0, args.limit);
        std::printf("data: %lld training images (%lld for validation), %lld test images, from %s\n",
                    static_cast<long long>(train.size()), static_cast<long long>(train.size() / 5),
                    static_cast<long long>(mnist.test.size()), args.data.c_str());

        auto cnn = example::make_cnn(args.seed);
        auto& model = *cnn;
        std::printf("%s\n%lld parameters, %d threads\n", model.describe().c_str(), static_cast<long long>(model.parameter_count()),
                    tt::num_threads());

        tt::optim::Adam<float> adam(model.parameters(), 1e-3);
        const nn::Loss<float> loss = nn::SparseCategoricalCrossentropy<float>{.from_logits = true};
        auto early = std::make_shared<tt::train::EarlyStopping<float>>(
            tt::train::EarlyStopping<float>::Options{.monitor = "val_loss", .patience = 3, .restore_best_weights = true});
        tt::train::FitOptions<float> fit{.epochs = args.epochs, .batch_size = args.batch, .validation_split = 0.2, .seed = args.seed};
        auto memory = std::make_shared<example::MemoryLog>();
        fit.callbacks.push_back(early);
        fit.callbacks.push_back(memory);

        const auto history = tt::train::fit(model, adam, loss, train, fit);
        const auto test = tt::train::evaluate(model, loss, mnist.test);
        std::printf("test accuracy: %.4f (loss %.4f, %lld images)%s\n", test.accuracy, test.loss, static_cast<long long>(test.examples),
                    history.stopped_early ? ", stopped early" : "");
        if (!memory->rss.empty())
            std::printf("resident memory after each epoch (MiB): first %.1f, last %.1f\n", memory->rss.front(), memory->rss.back());

        if (!args.save.empty()) {
            tt::train::save_weights(model, args.save);
            std::printf("weights saved to %s\n", args.save.c_str());
        }
        if (!args.json.empty())
            example::write_json(args.json, history, memory->rss, test,
                                {{"threads", std::to_string(tt::num_threads())}, {"batch", std::to_string(args.batch)}});
    } catch (const tt::error& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
    return 0;
}
