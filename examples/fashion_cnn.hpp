#pragma once
// What the two Fashion-MNIST examples share: their command line, the seed's CNN, a resident
// memory probe and the --json report. fashion_mnist_cnn.cpp trains it in one process;
// data_parallel_mnist.cpp trains it on several replicas.

#include <tensortape/tensortape.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace example {

namespace tt = tensortape;
namespace nn = tensortape::nn;

struct Args {
    std::string data = tt::data::default_fashion_mnist_dir;
    int epochs = 10;
    std::int64_t batch = 64;  // with replicas: the global batch, shared among them
    int threads = 0;          // kernel threads (per replica or process); 0: the default
    std::int64_t limit = 0;
    std::uint64_t seed = 42;
    std::string save, json;
    // data_parallel_mnist only
    int replicas = 2;
    std::int64_t bucket_kib = 0;  // 0: the reducer's default
    bool deterministic = false;
    std::string compression = "none";
};

// Parses the flags; `data_parallel` admits the reducer's flags too.
inline Args parse(int argc, char** argv, const char* program, const char* about, bool data_parallel) {
    const std::string common = "[--data DIR] [--epochs N] [--batch N] [--threads N] [--limit N] [--seed S] [--save FILE] [--json FILE]";
    const std::string extra = data_parallel ? " [--replicas N] [--bucket-kib N] [--deterministic] [--compression none|bf16|fp16]" : "";
    auto usage = [&](const std::string& msg) {
        std::fprintf(stderr, "%s\nusage: %s %s%s\n", msg.c_str(), program, common.c_str(), extra.c_str());
        std::exit(2);
    };
    Args a;
    for (int i = 1; i < argc; ++i) {
        const std::string flag = argv[i];
        if (flag == "--help" || flag == "-h") usage(about);
        if (data_parallel && flag == "--deterministic") {
            a.deterministic = true;
            continue;
        }
        if (i + 1 >= argc) usage("missing value after " + flag);
        const char* v = argv[++i];
        auto number = [&](long long lo) {
            char* end = nullptr;
            const long long n = std::strtoll(v, &end, 10);
            if (!end || *end || n < lo) usage("bad value for " + flag + ": " + v);
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
        else if (data_parallel && flag == "--replicas") a.replicas = static_cast<int>(number(1));
        else if (data_parallel && flag == "--bucket-kib") a.bucket_kib = number(1);
        else if (data_parallel && flag == "--compression") {
            a.compression = v;
            if (a.compression != "none" && a.compression != "bf16" && a.compression != "fp16") usage("bad value for --compression: " + a.compression);
        } else usage("unknown flag " + flag);
    }
    return a;
}

// The seed's Keras CNN:
//   Conv2D(32, 3x3, relu) -> MaxPool(2) -> Conv2D(64, 3x3, relu) -> MaxPool(2) -> Flatten
//   -> Dense(128, relu) -> Dense(10)
// bias + relu run in the GEMM epilogue of each Conv2D and Dense.
inline std::unique_ptr<nn::Sequential<float>> make_cnn(std::uint64_t seed) {
    tt::Generator init(seed);
    const tt::Conv2dOptions relu{.activation = tt::Activation::relu};
    auto model = std::make_unique<nn::Sequential<float>>();
    model->add<nn::Conv2D>(1, 32, 3, relu, true, nn::Init::glorot_uniform, init);
    model->add<nn::MaxPool2D>(2);
    model->add<nn::Conv2D>(32, 64, 3, relu, true, nn::Init::glorot_uniform, init);
    model->add<nn::MaxPool2D>(2);
    model->add<nn::Flatten>();
    model->add<nn::Dense>(64 * 5 * 5, 128, tt::Activation::relu, true, nn::Init::glorot_uniform, init);
    model->add<nn::Dense>(128, 10, tt::Activation::none, true, nn::Init::glorot_uniform, init);
    return model;
}

// Resident memory of this process in MiB (Linux), to show that it stays flat across epochs.
inline double resident_mib() {
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

// The --json report: per-epoch logs, memory, the test result and `extra` figures (numbers, or
// strings when quoted by the caller).
inline void write_json(const std::string& path, const tt::train::History& history, const std::vector<double>& rss,
                       const tt::train::EvalResult& test, const std::map<std::string, std::string>& extra) {
    std::ofstream js(path);
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
    for (std::size_t e = 0; e < rss.size(); ++e) js << (e ? ", " : "") << rss[e];
    js << "], \"best_epoch\": " << history.best_epoch + 1 << ", \"test_accuracy\": " << test.accuracy << ", \"test_loss\": " << test.loss;
    for (const auto& [k, v] : extra) js << ", \"" << k << "\": " << v;
    js << "}\n";
    if (!js) throw tt::error("tensortape: example: cannot write " + path);
}

}  // namespace example
