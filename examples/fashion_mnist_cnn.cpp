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

#include <tensortape/tensortape.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

namespace tt = tensortape;
namespace nn = tensortape::nn;

namespace {

struct Args {
    std::string data = tt::data::default_fashion_mnist_dir;
    int epochs = 10;
    std::int64_t batch = 64;
    int threads = 0;
    std::int64_t limit = 0;
    std::uint64_t seed = 42;
    std::string save, json;
};

// Resident memory of this process in MiB (Linux), to show that it stays flat across epochs.
double resident_mib() {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::strtod(line.c_str() + 6, nullptr) / 1024.0;
    return 0.0;
}

// Records the resident memory after each epoch.
class MemoryLog : public tt::train::Callback<float> {
public:
    bool on_epoch_end(int, const tt::train::Logs&, nn::Module<float>&) override {
        rss.push_back(resident_mib());
        return false;
    }
    std::vector<double> rss;
};

[[noreturn]] void usage(const char* msg) {
    std::fprintf(stderr,
                 "%s\nusage: fashion_mnist_cnn [--data DIR] [--epochs N] [--batch N] [--threads N] [--limit N] [--seed S] "
                 "[--save FILE] [--json FILE]\n",
                 msg);
    std::exit(2);
}

Args parse(int argc, char** argv) {
    Args a;
    for (int i = 1; i < argc; ++i) {
        const std::string flag = argv[i];
        if (flag == "--help" || flag == "-h") usage("Trains the seed's CNN on Fashion-MNIST.");
        if (i + 1 >= argc) usage(("missing value after " + flag).c_str());
        const char* v = argv[++i];
        char* end = nullptr;
        auto number = [&](long long lo) {
            const long long n = std::strtoll(v, &end, 10);
            if (!end || *end || n < lo) usage(("bad value for " + flag + ": " + v).c_str());
            return n;
        };
        if (flag == "--data") a.data = v;
        else if (flag == "--epochs") a.epochs = static_cast<int>(number(0));
        else if (flag == "--batch") a.batch = number(1);
        else if (flag == "--threads") a.threads = static_cast<int>(number(1));
        else if (flag == "--limit") a.limit = number(1);
        else if (flag == "--seed") a.seed = static_cast<std::uint64_t>(number(0));
        else if (flag == "--save") a.save = v;
        else if (flag == "--json") a.json = v;
        else usage(("unknown flag " + flag).c_str());
    }
    return a;
}

}  // namespace

int main(int argc, char** argv) {
    const Args args = parse(argc, argv);
    if (args.threads > 0) tt::set_num_threads(args.threads);
    try {
        auto mnist = tt::data::load_mnist<float>(args.data);
        auto train = mnist.train;
        if (args.limit > 0 && args.limit < train.size()) train = train.slice(0, args.limit);
        std::printf("data: %lld training images (%lld for validation), %lld test images, from %s\n",
                    static_cast<long long>(train.size()), static_cast<long long>(train.size() / 5),
                    static_cast<long long>(mnist.test.size()), args.data.c_str());

        tt::Generator init(args.seed);
        const tt::Conv2dOptions relu{.activation = tt::Activation::relu};
        nn::Sequential<float> model;
        model.add<nn::Conv2D>(1, 32, 3, relu, true, nn::Init::glorot_uniform, init);
        model.add<nn::MaxPool2D>(2);
        model.add<nn::Conv2D>(32, 64, 3, relu, true, nn::Init::glorot_uniform, init);
        model.add<nn::MaxPool2D>(2);
        model.add<nn::Flatten>();
        model.add<nn::Dense>(64 * 5 * 5, 128, tt::Activation::relu, true, nn::Init::glorot_uniform, init);
        model.add<nn::Dense>(128, 10, tt::Activation::none, true, nn::Init::glorot_uniform, init);
        std::printf("%s\n%lld parameters, %d threads\n", model.describe().c_str(), static_cast<long long>(model.parameter_count()),
                    tt::num_threads());

        tt::optim::Adam<float> adam(model.parameters(), 1e-3);
        const nn::Loss<float> loss = nn::SparseCategoricalCrossentropy<float>{.from_logits = true};
        auto early = std::make_shared<tt::train::EarlyStopping<float>>(
            tt::train::EarlyStopping<float>::Options{.monitor = "val_loss", .patience = 3, .restore_best_weights = true});
        tt::train::FitOptions<float> fit{.epochs = args.epochs, .batch_size = args.batch, .validation_split = 0.2, .seed = args.seed};
        auto memory = std::make_shared<MemoryLog>();
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
        if (!args.json.empty()) {
            std::ofstream js(args.json);
            js << "{\"epochs\": [";
            for (std::size_t e = 0; e < history.epochs.size(); ++e) {
                js << (e ? ", " : "") << "{";
                bool first = true;
                for (const auto& [k, v] : history.epochs[e]) {
                    js << (first ? "" : ", ") << "\"" << k << "\": " << v;
                    first = false;
                }
                js << "}";
            }
            js << "], \"rss_mib_after_epoch\": [";
            for (std::size_t e = 0; e < memory->rss.size(); ++e) js << (e ? ", " : "") << memory->rss[e];
            js << "], \"best_epoch\": " << history.best_epoch + 1 << ", \"test_accuracy\": " << test.accuracy
               << ", \"test_loss\": " << test.loss << ", \"threads\": " << tt::num_threads() << ", \"batch\": " << args.batch << "}\n";
            if (!js) throw tt::error("tensortape: fashion_mnist_cnn: cannot write " + args.json);
        }
    } catch (const tt::error& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
    return 0;
}
