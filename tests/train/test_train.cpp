#include <doctest/doctest.h>
#include <tensortape/tensortape.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace tt = tensortape;
namespace nn = tensortape::nn;
namespace fs = std::filesystem;

namespace {

struct TempDir {
    fs::path path;
    TempDir() : path(fs::temp_directory_path() / ("tensortape_train_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++))) {
        fs::create_directories(path);
    }
    ~TempDir() { fs::remove_all(path); }
    static int& counter() {
        static int c = 0;
        return c;
    }
};

// Two Gaussian blobs per class in 2-D: separable by a small MLP.
tt::data::Dataset<float> blobs(std::int64_t n, std::uint64_t seed) {
    tt::Generator g(seed);
    auto x = tt::Tensor<float>({n, 2});
    auto y = tt::Tensor<float>({n});
    for (std::int64_t i = 0; i < n; ++i) {
        const int c = static_cast<int>(i % 3);
        x(i, 0) = static_cast<float>(std::cos(2.1 * c) * 2 + g.normal() * 0.3);
        x(i, 1) = static_cast<float>(std::sin(2.1 * c) * 2 + g.normal() * 0.3);
        y(i) = static_cast<float>(c);
    }
    return tt::data::Dataset<float>::make(x, y);
}

std::shared_ptr<nn::Sequential<float>> mlp(std::uint64_t seed) {
    tt::Generator g(seed);
    auto m = std::make_shared<nn::Sequential<float>>();
    m->add<nn::Dense>(2, 16, tt::Activation::relu, true, nn::Init::he_uniform, g);
    m->add<nn::Dense>(16, 3, tt::Activation::none, true, nn::Init::glorot_uniform, g);
    return m;
}

}  // namespace

TEST_CASE("fit: learns a separable problem, reports history, evaluate and predict agree") {
    auto model = mlp(1);
    tt::optim::Adam<float> adam(model->parameters(), 0.05);
    const nn::Loss<float> loss = nn::SparseCategoricalCrossentropy<float>{};
    std::ostringstream out;
    tt::train::FitOptions<float> o{.epochs = 15, .batch_size = 16, .validation_split = 0.25, .seed = 3, .terminal = false, .out = &out};
    const auto h = tt::train::fit(*model, adam, loss, blobs(240, 2), o);
    REQUIRE(h.epochs.size() == 15);
    CHECK(h.epochs.back().at("accuracy") > 0.95);
    CHECK(h.epochs.back().at("val_accuracy") > 0.95);
    CHECK(h.epochs.back().at("loss") < h.epochs.front().at("loss"));
    // Plain output: one line per epoch, no carriage returns.
    const std::string text = out.str();
    CHECK(std::count(text.begin(), text.end(), '\n') == 15);
    CHECK(text.find('\r') == std::string::npos);
    CHECK(text.find("Epoch 15/15 - loss") != std::string::npos);

    const auto test = blobs(90, 9);
    const auto r = tt::train::evaluate(*model, loss, test);
    CHECK(r.examples == 90);
    CHECK(r.accuracy > 0.95);
    const auto pred = tt::train::predict(*model, test.x, 32);
    CHECK(pred.shape() == tt::Shape{90, 3});
    CHECK(nn::count_correct(pred, test.y) == static_cast<std::int64_t>(std::lround(r.accuracy * 90)));
}

TEST_CASE("fit: the same seed gives the same run") {
    auto run = [] {
        auto model = mlp(4);
        tt::optim::SGD<float> sgd(model->parameters(), 0.1);
        std::ostringstream out;
        tt::train::FitOptions<float> o{.epochs = 3, .batch_size = 8, .seed = 11, .verbose = false, .out = &out};
        return tt::train::fit(*model, sgd, nn::Loss<float>(nn::SparseCategoricalCrossentropy<float>{}), blobs(64, 5), o).series("loss");
    };
    CHECK(run() == run());
}

TEST_CASE("early stopping: patience, min_delta, mode and restoring the best weights") {
    nn::Sequential<float> m;
    auto& d = m.add<nn::Dense>(1, 1);
    tt::train::EarlyStopping<float> es({.monitor = "val_loss", .patience = 2, .min_delta = 0.01, .restore_best_weights = true});
    es.on_train_begin(m);
    const double losses[] = {1.0, 0.8, 0.795, 0.9, 0.7};  // 0.795 is within min_delta of 0.8: no improvement
    bool stopped = false;
    int at = -1;
    for (int e = 0; e < 5 && !stopped; ++e) {
        d.weight.mutable_value()(0, 0) = static_cast<float>(e);  // mark the epoch in the weights
        stopped = es.on_epoch_end(e, {{"val_loss", losses[e]}}, m);
        at = e;
    }
    CHECK(stopped);
    CHECK(at == 3);  // epochs 2 and 3 did not improve on epoch 1
    CHECK(es.best_epoch() == 1);
    tt::train::History h;
    es.on_train_end(m, h);
    CHECK(h.best_epoch == 1);
    CHECK(d.weight.value()(0, 0) == 1.0f);  // the weights of epoch 1

    tt::train::EarlyStopping<float> acc({.monitor = "val_accuracy", .patience = 1});
    acc.on_train_begin(m);
    CHECK_FALSE(acc.on_epoch_end(0, {{"val_accuracy", 0.5}}, m));
    CHECK_FALSE(acc.on_epoch_end(1, {{"val_accuracy", 0.6}}, m));  // higher is better for accuracy
    CHECK(acc.on_epoch_end(2, {{"val_accuracy", 0.55}}, m));
    CHECK_THROWS_WITH_AS(acc.on_epoch_end(3, {{"loss", 1.0}}, m), doctest::Contains("val_accuracy"), tt::value_error);
}

TEST_CASE("fit with EarlyStopping and CSVLogger stops early and logs every epoch") {
    TempDir dir;
    auto model = mlp(6);
    tt::optim::SGD<float> sgd(model->parameters(), 0.0);  // lr 0: validation loss never improves
    auto es = std::make_shared<tt::train::EarlyStopping<float>>(tt::train::EarlyStopping<float>::Options{.monitor = "val_loss", .patience = 2});
    const std::string csv = (dir.path / "log.csv").string();
    tt::train::FitOptions<float> o{.epochs = 10, .batch_size = 16, .validation_split = 0.2, .verbose = false};
    o.callbacks = {es, std::make_shared<tt::train::CSVLogger<float>>(csv)};
    const auto h = tt::train::fit(*model, sgd, nn::Loss<float>(nn::SparseCategoricalCrossentropy<float>{}), blobs(60, 1), o);
    CHECK(h.stopped_early);
    CHECK(h.epochs.size() == 3);
    std::ifstream in(csv);
    std::string header, line;
    std::getline(in, header);
    CHECK(header.rfind("epoch,", 0) == 0);
    CHECK(header.find("val_loss") != std::string::npos);
    int rows = 0;
    while (std::getline(in, line)) ++rows;
    CHECK(rows == 3);
}

TEST_CASE("checkpoints: round trip, mismatches refused with the model untouched, ModelCheckpoint") {
    TempDir dir;
    const std::string path = (dir.path / "model.safetensors").string();
    nn::Sequential<float> a, b;
    tt::Generator g1(1), g2(2);
    a.add<nn::Dense>(3, 4, tt::Activation::relu, true, nn::Init::glorot_uniform, g1);
    a.add<nn::BatchNorm>(4);
    b.add<nn::Dense>(3, 4, tt::Activation::relu, true, nn::Init::glorot_uniform, g2);
    b.add<nn::BatchNorm>(4);
    a.named_buffers()[0].second.fill(0.5f);
    tt::train::save_weights(a, path);
    tt::train::load_weights(b, path);
    for (std::size_t i = 0; i < a.named_parameters().size(); ++i)
        for (std::int64_t k = 0; k < a.named_parameters()[i].second.numel(); ++k)
            CHECK(a.named_parameters()[i].second.value().data()[k] == b.named_parameters()[i].second.value().data()[k]);
    CHECK(b.named_buffers()[0].second(2) == 0.5f);

    nn::Sequential<float> wrong;
    tt::Generator g3(3);
    wrong.add<nn::Dense>(3, 5, tt::Activation::none, true, nn::Init::glorot_uniform, g3);
    wrong.add<nn::BatchNorm>(5);
    const float before = wrong.named_parameters()[0].second.value()(0, 0);
    CHECK_THROWS_WITH_AS(tt::train::load_weights(wrong, path), doctest::Contains("tensor '0.weight'"), tt::error);
    CHECK(wrong.named_parameters()[0].second.value()(0, 0) == before);

    nn::Sequential<float> fewer;
    fewer.add<nn::Dense>(3, 4);
    CHECK_THROWS_WITH_AS(tt::train::load_weights(fewer, path), doctest::Contains("which the model does not have"), tt::error);
    tt::train::load_weights(fewer, path, false);  // non-strict: extra tensors ignored
    CHECK(fewer.named_parameters()[0].second.value()(1, 1) == a.named_parameters()[0].second.value()(1, 1));

    nn::Sequential<double> as_double;
    as_double.add<nn::Dense>(3, 4);
    as_double.add<nn::BatchNorm>(4);
    CHECK_THROWS_WITH_AS(tt::train::load_weights(as_double, path), doctest::Contains("F32"), tt::error);

    tt::train::ModelCheckpoint<float> ckpt({.path = (dir.path / "best.safetensors").string()});
    ckpt.on_train_begin(a);
    ckpt.on_epoch_end(0, {{"val_loss", 1.0}}, a);
    ckpt.on_epoch_end(1, {{"val_loss", 2.0}}, a);
    ckpt.on_epoch_end(2, {{"val_loss", 0.5}}, a);
    CHECK(ckpt.saves() == 2);
    CHECK(fs::exists(dir.path / "best.safetensors"));
}

TEST_CASE("checkpoints as .npy per tensor: round trip and a refused mismatch") {
    TempDir dir;
    nn::Sequential<float> a, b, c;
    tt::Generator g1(1), g2(2), g3(3);
    a.add<nn::Dense>(3, 4, tt::Activation::none, true, nn::Init::glorot_uniform, g1);
    b.add<nn::Dense>(3, 4, tt::Activation::none, true, nn::Init::glorot_uniform, g2);
    c.add<nn::Dense>(4, 4, tt::Activation::none, true, nn::Init::glorot_uniform, g3);
    tt::train::save_weights_npy(a, dir.path.string());
    CHECK(fs::exists(dir.path / "0.weight.npy"));
    tt::train::load_weights_npy(b, dir.path.string());
    CHECK(b.named_parameters()[0].second.value()(2, 1) == a.named_parameters()[0].second.value()(2, 1));
    const float before = c.named_parameters()[1].second.value()(0);
    CHECK_THROWS_WITH_AS(tt::train::load_weights_npy(c, dir.path.string()), doctest::Contains("0.weight.npy' has shape [4, 3]"), tt::error);
    CHECK(c.named_parameters()[1].second.value()(0) == before);
}

namespace {
// A module of one's own, composed of others: a residual block.
class Residual : public nn::Module<float> {
public:
    explicit Residual(std::int64_t width) {
        inner = register_module("inner", std::make_shared<nn::Dense<float>>(width, width, tt::Activation::relu));
        scale = register_parameter("scale", tt::full<float>({1}, 0.5f));
    }
    tt::Var<float> forward(const tt::Var<float>& x) override { return x + scale * inner->forward(x); }
    std::string describe() const override { return "Residual"; }
    std::shared_ptr<nn::Dense<float>> inner;
    tt::Var<float> scale;
};
}  // namespace

TEST_CASE("a user-defined module composed of others has dotted names and trains") {
    nn::Sequential<float> m;
    m.add(std::make_shared<Residual>(4));
    m.add<nn::Dense>(4, 2);
    const auto names = m.named_parameters();
    REQUIRE(names.size() == 5);
    CHECK(names[0].first == "0.scale");
    CHECK(names[1].first == "0.inner.weight");
    auto x = tt::constant(tt::full<float>({3, 4}, 0.3f));
    tt::backward(tt::sum(m(x)));
    for (auto& [n, p] : names) CHECK(p.has_grad());
}

TEST_CASE("optimizer state saved to a file resumes training identically; a wrong kind is refused") {
    TempDir dir;
    const std::string path = (dir.path / "adam.safetensors").string();
    auto make = [] {
        auto m = std::make_shared<nn::Sequential<float>>();
        tt::Generator g(5);
        m->add<nn::Dense>(2, 3, tt::Activation::none, true, nn::Init::glorot_uniform, g);
        return m;
    };
    auto x = tt::constant(tt::from_values<float>({2, 2}, {0.5f, -1.f, 2.f, 0.25f}));
    auto step = [&](nn::Sequential<float>& m, tt::optim::Optimizer<float>& opt) {
        opt.zero_grad();
        tt::backward(tt::sum(tt::square(m(x))));
        opt.step();
    };
    auto a = make();
    tt::optim::Adam<float> adam_a(a->parameters(), 0.01);
    step(*a, adam_a);
    step(*a, adam_a);
    adam_a.lr = 0.005;
    tt::train::save_weights(*a, (dir.path / "w.safetensors").string());
    tt::train::save_optimizer(adam_a, path);

    auto b = make();
    tt::train::load_weights(*b, (dir.path / "w.safetensors").string());
    tt::optim::Adam<float> adam_b(b->parameters(), 0.01);
    tt::train::load_optimizer(adam_b, path);
    CHECK(adam_b.lr == doctest::Approx(0.005));
    CHECK(adam_b.step_count() == 2);
    step(*a, adam_a);
    step(*b, adam_b);
    for (std::int64_t k = 0; k < 6; ++k)
        CHECK(a->named_parameters()[0].second.value().data()[k] == b->named_parameters()[0].second.value().data()[k]);

    tt::optim::SGD<float> sgd(b->parameters(), 0.1);
    CHECK_THROWS_WITH_AS(tt::train::load_optimizer(sgd, path), doctest::Contains("holds the state of 'adam', not of 'sgd'"), tt::error);
}
